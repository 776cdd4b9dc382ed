import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

KPILOT = str(Path(sys.executable).parent / "kpilot")


def kpilot(*args, timeout=300):
    return subprocess.run([KPILOT, *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    from kernelpilot.security.synth import make_corpus
    root = tmp_path_factory.mktemp("adfa")
    info = make_corpus(root, n_train=120, n_valid=150, attacks_per_family=6, folders_per_family=3, seed=3)
    return root, info


@pytest.fixture(scope="session")
def model_file(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "m.json"
    r = kpilot("security", "train", "--normal", corpus[0], "-o", out, "--epochs", "2")
    assert r.returncode == 0, r.stderr
    return out


def need_root_ebpf():
    if os.geteuid() != 0:
        pytest.skip("needs root for eBPF")
    if not Path("/sys/kernel/btf/vmlinux").exists():
        pytest.skip("kernel has no BTF")


def pump(w, pred, timeout=20.0):
    """Step the watcher until pred(lines) holds or the deadline passes; all lines seen."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines += w.step()
        if pred(lines):
            return lines
        time.sleep(0.05)
    return lines
