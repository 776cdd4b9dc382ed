"""Live experiments on this host: the prefetcher cuts major faults, and swap experiments tear
down zram, swap and the memory cgroup on every exit path."""
import os
import signal
import sys
from pathlib import Path

import pytest

from kernelpilot.errors import KpError
from kernelpilot.memory import live

sys.path.insert(0, str(Path(__file__).resolve().parent))
from swap_state import host_swap_state as _state, start_experiment  # noqa: E402

KPILOT = str(Path(sys.executable).with_name("kpilot"))
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="live memory experiments need root")


def _need_zram_cgroup():
    if not Path("/sys/class/zram-control/hot_add").exists():
        pytest.skip("zram-control is not available on this kernel")
    if not (live.MemCgroup.ROOT / "memory.limit_in_bytes").exists():
        pytest.skip("cgroup-v1 memory controller is not mounted")


def test_prefetch_cuts_major_faults():
    before = live.readahead_knob(Path("/var/tmp")).read_text()
    r = live.prefetch_experiment([], None, 256, 7919, True, count=4096, ra_kb=128)
    assert r["kernel_readahead"]["exit_code"] == 0 and r["learned_prefetch"]["exit_code"] == 0
    assert r["kernel_readahead"]["major_faults"] > 1000  # the pattern defeats readahead
    assert r["major_fault_cut"] >= 0.5, r
    assert live.readahead_knob(Path("/var/tmp")).read_text() == before
    assert not Path(r["file"]).exists()


def test_swap_normal_exit_tears_down():
    _need_zram_cgroup()
    before = _state()
    r = live.swap_experiment([], 48, 128, True, rounds=300)
    assert r["kernel_reclaim"]["exit_code"] == 0
    assert r["kernel_reclaim"]["pswpout"] > 0  # the limit really forced swapping
    assert _state() == before


def test_swap_exception_tears_down():
    _need_zram_cgroup()
    before = _state()
    with pytest.raises(KpError, match="cannot run"):
        live.swap_experiment(["/nonexistent-kpilot-cmd"], 48, 128, True)
    assert _state() == before


def test_swap_sigterm_tears_down():
    _need_zram_cgroup()
    before = _state()
    p = start_experiment([KPILOT, "memory", "live", "swap", "--enforce", "--limit-mb", "48",
                          "--zram-mb", "128", "--", "sleep", "60"], before)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode != 0
    assert "Traceback" not in err
    assert _state() == before
