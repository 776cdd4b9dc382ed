import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_kpilot(*args, env=None, timeout=120, user=None, input=None):
    """Run the real CLI in a subprocess; returns CompletedProcess (text)."""
    cmd = [sys.executable, "-m", "kernelpilot.cli", *map(str, args)]
    if user:
        cmd = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups", "--inh-caps=-all", *cmd]
    e = {**os.environ, **(env or {}), "COLUMNS": "200"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=e, cwd=ROOT, input=input)


@pytest.fixture
def kpilot():
    return run_kpilot


def need_root():
    if os.geteuid() != 0:
        pytest.skip("needs root (eBPF)")


@pytest.fixture
def bpf_ok():
    """Root and BPF_PROG_TEST_RUN (XDP programs), for running a program on given input."""
    if os.geteuid() != 0:
        pytest.skip("needs root to load eBPF")
    from kernelpilot.probes.libbpf import probe_prog_type
    if not probe_prog_type("xdp"):
        pytest.skip("kernel lacks XDP programs (needed for BPF_PROG_TEST_RUN)")


# Tests that watch or load the whole host (system-wide probes that count benign activity, live
# latency or fault ratios, zram/swap, fixed ports; the guide's host-wide blocks, marked in
# tests/guide) run alone, after the rest:
# `make test` runs everything else on both cores (pytest-xdist), then these one at a time.
SERIAL = (
    "tests/security/test_watch_e2e.py",
    "tests/security/test_watch_rules.py",
    "tests/security/test_live.py",
    "tests/security/test_continued_learning.py",  # timed phases of a live watch
    "tests/security/test_cpu_burn.py",
    "tests/foundation/test_main_job.py",
    "tests/sched/test_sched_live.py",
    "tests/memory/test_memory_live.py",
    "tests/memory/test_swap",
    "tests/agent/test_agent_run.py",
    "tests/agent/test_bench",
    "tests/kernelize/test_bench.py",
    "tests/aipath/test_bench",
)


def pytest_configure(config):
    config.addinivalue_line("markers", "serial: runs alone (make test runs these after the parallel part)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.startswith(SERIAL) or item.get_closest_marker("serial"):
            item.add_marker(pytest.mark.serial)
