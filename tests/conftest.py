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
