"""Cross-session knobs on the real kernel: autogroup nice, EEVDF slice, cpu.idle; journaled and
restored (also by the guardian after SIGKILL); tasks that exit or change session mid-change."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))
from agent_helpers import PY, ROOT, run_dir, wait_for  # noqa: E402,F401

from kernelpilot.agent.journal import Journal  # noqa: E402
from kernelpilot.agent.rollback import start_time  # noqa: E402
from kernelpilot.sched import knobs  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change other tasks' scheduling")


def session_sleeper():
    """`sleep` in a session of its own (setsid), as a program started from another terminal."""
    p = subprocess.Popen(["sleep", "120"], start_new_session=True)
    assert wait_for(lambda: knobs.autogroup_of(p.pid)[0] != knobs.autogroup_of(os.getpid())[0], 5)
    return p


def target(pid):
    return {"tid": pid, "start": start_time(pid), "autogroup": knobs.autogroup_of(pid)[0]}


@pytest.fixture
def sleeper():
    p = session_sleeper()
    yield p
    p.kill()
    p.wait()


def test_autogroup_nice_set_and_restored(sleeper, run_dir):
    before = knobs.autogroup_of(sleeper.pid)[1]
    with Journal("test", enforce=True) as j:
        assert j.change("autogroup", target(sleeper.pid), 9)
        assert knobs.autogroup_of(sleeper.pid)[1] == 9
    assert knobs.autogroup_of(sleeper.pid)[1] == before


def test_autogroup_dry_run_changes_nothing(sleeper):
    j = Journal("test", enforce=False)
    assert j.change("autogroup", target(sleeper.pid), 9) and j.counts["planned"] == 1
    assert knobs.autogroup_of(sleeper.pid)[1] == 0


AGENT = """
import sys, time
from kernelpilot.agent.journal import Journal
from kernelpilot.agent.rollback import start_time
from kernelpilot.sched import knobs
pid = int(sys.argv[1])
j = Journal("test", enforce=True).open()
t = {"tid": pid, "start": start_time(pid)}
j.change("autogroup", dict(t, autogroup=knobs.autogroup_of(pid)[0]), 11)
j.change("slice", t, 5_000_000)
print("changed", flush=True)
time.sleep(60)
"""


def test_guardian_restores_autogroup_and_slice_after_sigkill(sleeper, run_dir):
    a = subprocess.Popen([PY, "-c", AGENT, str(sleeper.pid)], stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
    assert a.stdout.readline().strip() == "changed"
    assert knobs.autogroup_of(sleeper.pid)[1] == 11 and knobs.getattr_(sleeper.pid).sched_runtime == 5_000_000
    a.send_signal(signal.SIGKILL)
    a.wait()
    assert wait_for(lambda: knobs.autogroup_of(sleeper.pid)[1] == 0, 15)
    assert wait_for(lambda: knobs.getattr_(sleeper.pid).sched_runtime == knobs.base_slice_ns(), 5)
    assert wait_for(lambda: not list(run_dir.glob("*.jsonl")), 5)


def test_slice_set_and_restored_read_back_with_getattr(sleeper, run_dir):
    ok, why = knobs.slices_supported()
    if not ok:
        pytest.skip(why)
    os.sched_setscheduler(sleeper.pid, os.SCHED_BATCH | os.SCHED_RESET_ON_FORK, os.sched_param(0))
    t = {"tid": sleeper.pid, "start": start_time(sleeper.pid)}
    with Journal("test", enforce=True) as j:
        assert j.change("slice", t, 200_000)
        a = knobs.getattr_(sleeper.pid)
        assert a.sched_runtime == 200_000
        assert a.sched_policy == os.SCHED_BATCH and a.sched_flags & knobs.SCHED_FLAG_RESET_ON_FORK  # kept
    a = knobs.getattr_(sleeper.pid)
    assert a.sched_runtime == knobs.base_slice_ns() and a.sched_policy == os.SCHED_BATCH


def _cpu_mount():
    for line in Path("/proc/self/mounts").read_text().splitlines():
        dev, mnt, fstype, opts = line.split()[:4]
        if (fstype == "cgroup" and "cpu" in opts.split(",")) or (
                fstype == "cgroup2" and "cpu" in (Path(mnt) / "cgroup.controllers").read_text().split()):
            if (Path(mnt) / "cpu.idle").exists() or fstype == "cgroup2":
                return Path(mnt)
    return None


def test_cpu_idle_set_and_restored_on_a_temp_cgroup(run_dir):
    mount = _cpu_mount()
    if mount is None:
        pytest.skip("no cgroup cpu controller with cpu.idle")
    g = mount / f"kp-test-idle-{os.getpid()}"
    g.mkdir()
    try:
        if not (g / "cpu.idle").exists():
            pytest.skip("this kernel has no cpu.idle")
        with Journal("test", enforce=True) as j:
            assert j.change("cpu_idle", {"path": str(g)}, 1)
            assert (g / "cpu.idle").read_text().strip() == "1"
        assert (g / "cpu.idle").read_text().strip() == "0"
    finally:
        g.rmdir()


def test_task_exited_before_change_is_gone_not_an_error(run_dir):
    p = session_sleeper()
    t = target(p.pid)
    p.kill()
    p.wait()
    with Journal("test", enforce=True) as j:
        assert not j.change("autogroup", t, 9) and not j.change("slice", {"tid": t["tid"], "start": t["start"]}, 1)
        assert j.counts["gone"] == 2 and j.counts["applied"] == 0


SETSID_LATER = """
import os, sys, time
sys.stdin.readline()
os.setsid()
print("moved", flush=True)
time.sleep(60)
"""


def test_task_changing_session_mid_change_leaves_nothing_changed(run_dir):
    p = subprocess.Popen([sys.executable, "-c", SETSID_LATER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, start_new_session=False)
    try:
        t = target(p.pid)  # recorded while it is in our session
        p.stdin.write("go\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "moved"
        with Journal("test", enforce=True) as j:
            assert not j.change("autogroup", t, 12) and j.counts["gone"] == 1
        assert knobs.autogroup_of(p.pid)[1] == 0 and knobs.autogroup_of(os.getpid())[1] == 0
    finally:
        p.kill()
        p.wait()


def test_rollback_finds_the_session_after_the_target_exits(run_dir):
    """The changed autogroup outlives the task it was set through: rollback restores it through
    another task of the same session."""
    leader = subprocess.Popen(["sh", "-c", "sleep 120 & sleep 120 & echo $!; wait"], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        other = int(leader.stdout.readline())
        t = target(other)
        j = Journal("test", enforce=True).open()
        assert j.change("autogroup", t, 8)
        assert knobs.autogroup_of(leader.pid)[1] == 8
        os.kill(other, signal.SIGKILL)
        assert wait_for(lambda: start_time(other) is None, 5)
        j.close()
        assert knobs.autogroup_of(leader.pid)[1] == 0
    finally:
        os.killpg(leader.pid, signal.SIGKILL)  # the session's other sleep too
        leader.wait()


def test_init_session_reads_as_root_autogroup_and_is_never_written():
    """Tasks of init's session (CI runners that never call setsid) print an empty autogroup file."""
    if open("/proc/1/autogroup").read().strip():
        pytest.skip("PID 1 here sits in an autogroup of its own")
    assert knobs.autogroup_of(1) == (knobs.ROOT_AUTOGROUP, 0)
    with pytest.raises(OSError, match="init's session"):
        knobs.KNOBS["autogroup"][1]({"tid": 1, "start": start_time(1), "autogroup": knobs.ROOT_AUTOGROUP}, 5)
