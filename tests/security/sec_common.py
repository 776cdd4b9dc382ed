"""Helpers the security tests import by this name (`from sec_common import ...`): a plain module,
since `from conftest import` takes whichever conftest.py pytest loaded last (tests/kernelize's
when both areas run in one pytest)."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

KPILOT = str(Path(sys.executable).parent / "kpilot")


def kpilot(*args, timeout=300):
    return subprocess.run([KPILOT, *map(str, args)], capture_output=True, text=True, timeout=timeout)


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
