"""The session agent on real processes in sessions of their own: a CPU hog's session gets a higher
autogroup nice, an interactive task a short EEVDF slice and its session a lower one; all restored
on exit and after SIGKILL (guardian); the actuation choice and bad input."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))
from agent_helpers import ROOT, run_dir, wait_for  # noqa: E402,F401

from kernelpilot.sched import knobs  # noqa: E402
from kernelpilot.sched.session import choose_actuation, tree_pids  # noqa: E402
from kernelpilot.sched.live import descendants  # noqa: E402

KPILOT = str(ROOT / ".venv/bin/kpilot")
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change other tasks' scheduling")
INTERACTIVE = "import time\nwhile True:\n    time.sleep(0.002); sum(range(300))"


def in_session(code):
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


def agent(pid, *extra):
    return subprocess.Popen([KPILOT, "sched", "run", "--enforce", "--actuation", "autogroup", "--pid", str(pid),
                             "--interval", "0.2", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def hog():
    p = in_session("while True: pass")
    yield p
    p.kill()
    p.wait()


def test_tree_walk_matches_the_full_scan():
    p = subprocess.Popen(["sh", "-c", "sleep 30 & (sleep 30 & wait) & wait"], start_new_session=True)
    try:
        assert wait_for(lambda: len(descendants({p.pid})) == 4, 5)
        assert tree_pids({p.pid}) == descendants({p.pid})
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def test_actuation_choice_follows_the_host():
    mode, why = choose_actuation()
    ag = knobs.autogroup_enabled()
    own = [ln.split(":", 2)[2] for ln in Path("/proc/self/cgroup").read_text().splitlines()
           if "cpu" in ln.split(":")[1].split(",")]
    if ag and own and own[0] == "/":
        assert mode == "autogroup" and "autogroup" in why
    else:
        assert mode in ("cgroup", "task")


@root_only
@pytest.mark.parametrize("how", ["duration", "sigkill"])
def test_hog_session_autogroup_nice_and_restore(hog, run_dir, how):
    a = agent(hog.pid, "--batch-session-nice", "10", *(["--duration", "6"] if how == "duration" else []))
    assert wait_for(lambda: knobs.autogroup_of(hog.pid)[1] == 10, 30)
    assert knobs.autogroup_of(os.getpid())[1] == 0  # the agent's own session is never touched
    if how == "sigkill":
        a.send_signal(signal.SIGKILL)
    out, err = a.communicate(timeout=30)
    assert wait_for(lambda: knobs.autogroup_of(hog.pid)[1] == 0, 10), err
    assert wait_for(lambda: os.sched_getscheduler(hog.pid) == os.SCHED_OTHER, 5)
    assert wait_for(lambda: not list(run_dir.glob("*.jsonl")), 5)
    if how == "duration":
        assert a.returncode == 0 and "autogroup nice 10" in out and "all changes restored" in out


@root_only
def test_interactive_task_short_slice_and_session_boost(run_dir):
    ok, why = knobs.slices_supported()
    p = in_session(INTERACTIVE)
    try:
        a = agent(p.pid)
        assert wait_for(lambda: knobs.autogroup_of(p.pid)[1] == -10, 30)
        if ok:
            assert wait_for(lambda: knobs.getattr_(p.pid).sched_runtime == 100_000, 5)
        assert os.getpriority(os.PRIO_PROCESS, p.pid) == -10
        a.terminate()  # SIGTERM: restores and reports, as at the end of --duration
        out, err = a.communicate(timeout=30)
        assert a.returncode == 0 and "latency-critical" in out, err
        assert knobs.autogroup_of(p.pid)[1] == 0 and os.getpriority(os.PRIO_PROCESS, p.pid) == 0
        assert knobs.getattr_(p.pid).sched_runtime == knobs.base_slice_ns()
    finally:
        p.kill()
        p.wait()


@root_only
def test_hog_session_left_alone_by_default(hog, run_dir):
    """A build's session keeps its weight against unrelated sessions unless asked."""
    r = subprocess.run([KPILOT, "sched", "run", "--enforce", "--pid", str(hog.pid), "--interval", "0.2",
                        "--duration", "3"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "batch" in r.stdout and "autogroup nice" not in r.stdout, r.stderr
    assert knobs.autogroup_of(hog.pid)[1] == 0


@pytest.mark.parametrize("args,msg", [(["--actuation", "magic"], "--actuation must be one of"),
                                      (["--batch-session-nice", "25"], "--batch-session-nice must be between")])
def test_bad_session_options_are_one_line_errors(args, msg):
    r = subprocess.run([KPILOT, "sched", "run", *args, "--duration", "1"], capture_output=True, text=True)
    assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr


@root_only
def test_cgroup_actuation_with_cpu_idle_for_true_background(hog, run_dir):
    from kernelpilot.sched.policies import cpu_cgroup
    found = cpu_cgroup()
    if not found:
        pytest.skip("no cgroup cpu controller")
    group = Path(found[1]) / "kernelpilot.batch"
    if group.exists():
        pytest.skip(f"{group} exists (another agent running)")
    a = agent(hog.pid, "--actuation", "cgroup", "--idle")
    assert wait_for(lambda: (group / "cpu.idle").exists() and (group / "cpu.idle").read_text().strip() == "1", 30)
    assert wait_for(lambda: "kernelpilot.batch" in Path(f"/proc/{hog.pid}/cgroup").read_text(), 10)
    assert os.sched_getscheduler(hog.pid) == os.SCHED_IDLE
    a.terminate()
    out, err = a.communicate(timeout=30)
    assert a.returncode == 0 and "all changes restored" in out, err
    assert not group.exists() and os.sched_getscheduler(hog.pid) == os.SCHED_OTHER
