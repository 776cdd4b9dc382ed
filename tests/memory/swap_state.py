"""What a swap experiment changes on the host (swaps, zram devices, kpilot memory groups), and
starting one until it has really set up; shared by the live memory and swap tests."""
import subprocess
import time
from pathlib import Path

import pytest

from kernelpilot.memory.swaplab import V1_ROOT, pressure_root


def host_swap_state():
    swaps = [l.split()[0] for l in Path("/proc/swaps").read_text().splitlines()[1:]]
    zram = sorted(p.name for p in Path("/sys/block").glob("zram*"))
    cgs = sorted(p.name for p in V1_ROOT.glob("kpilot-*"))
    pr = pressure_root()
    v2 = sorted(p.name for p in pr.glob("kpilot-*")) if pr else []
    return swaps, zram, cgs, v2


def start_experiment(cmd, before, env=None, stdout=subprocess.DEVNULL):
    """Popen(cmd), returned once it has a memory group of its own (one another run left behind does
    not count) and its zram swap on; killed (never left half-started to the next test) otherwise."""
    p = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, text=True, env=env)

    def ready():
        s = host_swap_state()
        return any(c.startswith("kpilot-swap") for c in set(s[2]) - set(before[2])) and len(s[0]) > len(before[0])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not ready() and p.poll() is None:
        time.sleep(0.05)
    if not ready():
        p.kill()
        _, err = p.communicate(timeout=60)
        pytest.fail(f"experiment never set up (exit {p.returncode}): {err[-500:]}")
    return p
