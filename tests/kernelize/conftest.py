import os

import pytest

from kernelpilot.models import demo


@pytest.fixture
def bpf_ok():
    if os.geteuid() != 0:
        pytest.skip("needs root to load eBPF")
    from kernelpilot.probes.libbpf import probe_prog_type
    if not probe_prog_type("xdp"):
        pytest.skip("kernel lacks XDP programs (needed for BPF_PROG_TEST_RUN)")


@pytest.fixture(scope="session")
def models():
    """Demo models trained once: a depth-8 tree, a 32-tree forest, boosting, a 16-8-1 MLP."""
    return {k: demo.train(k, n=6000)[0] for k in demo.KINDS}
