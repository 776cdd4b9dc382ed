"""Scratch folders a killed run leaves behind are removed by the next run of the same kind."""
import os
import signal
import subprocess
import sys

from kernelpilot.agent.rollback import start_time
from kernelpilot.scratch import scratch_dir, sweep_stale

CHILD = ("import sys, time\nfrom pathlib import Path\nfrom kernelpilot.scratch import scratch_dir\n"
         "d = scratch_dir('t-kill', Path(sys.argv[1]))\n(d / 'big.dat').write_bytes(b'x' * 4096)\n"
         "print(d, flush=True)\ntime.sleep(60)\n")


def test_killed_owner_folder_goes_with_the_next_run(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    left = tmp_path / os.path.basename(p.stdout.readline().strip())
    assert (left / "big.dat").is_file()
    assert left.name.startswith(f"kpilot-t-kill-{p.pid}-{start_time(p.pid)}-")
    mine = scratch_dir("t-kill", tmp_path)  # the owner still runs: its folder stays
    assert left.is_dir() and mine.is_dir()
    p.send_signal(signal.SIGKILL)
    p.wait()
    again = scratch_dir("t-kill", tmp_path)
    assert not left.exists()  # kill -9 skipped every finally; the next run cleaned up
    assert mine.is_dir() and again.is_dir()  # this process is alive: its folders stay


def test_sweep_keeps_other_kinds_foreign_names_and_reused_pids(tmp_path):
    me, start = os.getpid(), start_time(os.getpid())
    reused = tmp_path / f"kpilot-a-{me}-{start - 1}-x1"  # this pid, another task's start time
    other = tmp_path / f"kpilot-b-999999999-1-x2"  # another kind
    foreign = tmp_path / "kpilot-a-notours"
    longer = tmp_path / "kpilot-a-b-999999999-1-x3"  # kind "a-b", not "a"
    for d in (reused, other, foreign, longer):
        d.mkdir()
    assert sweep_stale("a", tmp_path) == [reused]
    assert other.is_dir() and foreign.is_dir() and longer.is_dir()
    assert sweep_stale("a-b", tmp_path) == [longer]


def test_scratch_block_removes_its_folder_on_every_way_out(tmp_path):
    import pytest
    from kernelpilot.scratch import scratch
    with scratch("t-block", tmp_path) as d:
        (d / "f").write_text("x")
    assert not d.exists()
    with pytest.raises(RuntimeError):
        with scratch("t-block", tmp_path) as d:
            raise RuntimeError
    assert not d.exists()
