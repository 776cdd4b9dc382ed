"""The journal and rollback on real tasks: clean exit, signals, SIGKILL (guardian), stale journals."""
import json
import os
import signal
import subprocess

import pytest

from kernelpilot.agent.journal import Journal
from kernelpilot.agent.rollback import start_time
from agent_helpers import PY, ROOT, nice_of, run_dir, sleeper, start_agent, wait_for  # noqa: F401


def target(pid):
    return {"tid": pid, "start": start_time(pid)}


def test_close_restores_nice_and_policy(run_dir, sleeper):
    pid = sleeper.pid
    with Journal("t", enforce=True) as j:
        assert j.change("nice", target(pid), 5)
        assert j.change("policy", target(pid), [os.SCHED_BATCH, 0])
        assert nice_of(pid) == 5 and os.sched_getscheduler(pid) == os.SCHED_BATCH
        lines = [json.loads(x) for x in j.path.read_text().splitlines()]
        assert [x["old"] for x in lines[1:]] == [0, [os.SCHED_OTHER, 0]]  # old values on disk first
    assert nice_of(pid) == 0 and os.sched_getscheduler(pid) == os.SCHED_OTHER
    assert list(run_dir.iterdir()) == []


def test_dry_run_changes_nothing(run_dir, sleeper):
    with Journal("t") as j:
        assert j.change("nice", target(sleeper.pid), 9)
        assert nice_of(sleeper.pid) == 0
        assert j.planned == [f"nice of task {sleeper.pid}: 0 -> 9"]
    assert list(run_dir.iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_agent_death_restores(run_dir, sleeper, sig):
    agent = start_agent(sleeper.pid)
    assert nice_of(sleeper.pid) == 7 and os.sched_getscheduler(sleeper.pid) == os.SCHED_IDLE
    agent.send_signal(sig)
    agent.wait(timeout=10)
    assert wait_for(lambda: nice_of(sleeper.pid) == 0 and os.sched_getscheduler(sleeper.pid) == os.SCHED_OTHER)
    assert wait_for(lambda: not list(run_dir.glob("*.jsonl")))


def test_task_exits_mid_change_and_pid_reuse(run_dir):
    p = subprocess.Popen(["sleep", "30"])
    t = target(p.pid)
    with Journal("t", enforce=True) as j:
        assert j.change("nice", t, 3)
        p.kill()
        p.wait()
        assert not j.change("nice", t, 4)           # gone: logged, not raised
        assert j.counts["gone"] == 1
        stale = {"tid": os.getpid(), "start": start_time(os.getpid()) + 1}  # same pid, other task
        assert not j.change("nice", stale, 4)
        assert j.counts["gone"] == 2 and nice_of(os.getpid()) == 0
    assert j.counts["applied"] == 1


def test_rate_limit(run_dir, sleeper):
    with Journal("t", enforce=True, max_actions_per_s=2, guardian=False) as j:
        results = [j.change("nice", target(sleeper.pid), v) for v in (1, 2, 3, 4)]
    assert results.count(False) >= 1 and j.counts["rate_limited"] >= 1
    assert nice_of(sleeper.pid) == 0


def test_permission_denied_as_nobody(run_dir, sleeper):
    code = ("import sys, os; from kernelpilot.agent.journal import Journal;"
            "from kernelpilot.agent.rollback import start_time;"
            "p=int(sys.argv[1]); j=Journal('t', enforce=True, guardian=False).open();"
            "ok=j.change('nice', {'tid': p, 'start': start_time(p)}, 5); j.close();"
            "print(ok, j.counts['denied'])")
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", PY, "-c", code,
                        str(sleeper.pid)], capture_output=True, text=True, cwd=str(ROOT),
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "1"]
    assert nice_of(sleeper.pid) == 0


def kpilot(*args, env=None):
    return subprocess.run([str(ROOT / ".venv/bin/kpilot"), *args], capture_output=True, text=True, env=env)


def test_stale_journal_rollback_cli(run_dir, sleeper):
    pid = sleeper.pid
    os.setpriority(os.PRIO_PROCESS, pid, 6)  # as a dead agent left it
    dead = subprocess.Popen(["true"])
    dead.wait()
    j = run_dir / f"journal-{dead.pid}-1.jsonl"
    j.write_text(json.dumps({"type": "header", "owner": "x", "pid": dead.pid, "start": 1}) + "\n"
                 + json.dumps({"type": "change", "knob": "nice", "target": target(pid), "old": 0, "new": 6})
                 + "\n{\"type\": \"chan")  # torn last line from a crash
    r = kpilot("agent", "status")
    assert "STALE" in r.stdout
    r = kpilot("agent", "rollback")
    assert r.returncode == 0 and "'restored': 1" in r.stdout
    assert nice_of(pid) == 0 and not j.exists()


def test_rollback_cli_bad_input(run_dir, tmp_path):
    r = kpilot("agent", "rollback", str(tmp_path / "missing.jsonl"))
    assert r.returncode == 2 and "journal not found" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    r = kpilot("agent", "rollback", str(bad))
    assert r.returncode == 2 and "not a kernelpilot journal" in r.stderr
