"""The live agent on real processes: enforce, restore on exit and after kill -9, bad input."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))
from agent_helpers import ROOT, nice_of, run_dir, wait_for  # noqa: E402,F401

KPILOT = str(ROOT / ".venv/bin/kpilot")
GROUP = [Path(m) / g for m in ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup", "/sys/fs/cgroup/unified")
         for g in ("kernelpilot.batch", "kernelpilot.latency")]


def busy():
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def settings(pid):
    cg = Path(f"/proc/{pid}/cgroup").read_text()
    return nice_of(pid), os.sched_getscheduler(pid), cg


@pytest.fixture
def hog():
    if os.geteuid() != 0:
        pytest.skip("needs root to change other tasks' scheduling")
    p = busy()
    time.sleep(0.3)
    yield p
    p.kill()
    p.wait()


def agent(pid, *extra):
    return subprocess.Popen([KPILOT, "sched", "run", "--enforce", "--pid", str(pid), "--interval", "0.2",
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_dry_run_plans_without_changing(hog, run_dir):
    before = settings(hog.pid)
    r = subprocess.run([KPILOT, "sched", "run", "--pid", str(hog.pid), "--duration", "1.5", "--interval", "0.2"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "batch" in r.stdout and "would change" in r.stdout and f"task {hog.pid}" in r.stdout
    assert settings(hog.pid) == before and not any(g.exists() for g in GROUP)


@pytest.mark.parametrize("how", ["duration", "sigkill"])
def test_enforce_then_restore(hog, run_dir, how):
    before = settings(hog.pid)
    a = agent(hog.pid, "--cgroup", "--batch-nice", "10", *(["--duration", "4"] if how == "duration" else []))
    assert wait_for(lambda: os.sched_getscheduler(hog.pid) == os.SCHED_BATCH and nice_of(hog.pid) == 10, 20)
    assert wait_for(lambda: "kernelpilot.batch" in Path(f"/proc/{hog.pid}/cgroup").read_text(), 5)
    if how == "sigkill":
        a.send_signal(signal.SIGKILL)  # no chance to clean up: the guardian must
    out, err = a.communicate(timeout=30)
    assert wait_for(lambda: settings(hog.pid) == before, 10), (settings(hog.pid), before, err)
    assert wait_for(lambda: not any(g.exists() for g in GROUP), 5)
    assert wait_for(lambda: not list(run_dir.glob("*.jsonl")), 5)
    if how == "duration":
        assert a.returncode == 0 and "all changes restored" in out


def test_task_exiting_mid_run_is_no_crash(run_dir):
    p = busy()
    a = agent(p.pid, "--duration", "3")
    assert wait_for(lambda: os.sched_getscheduler(p.pid) == os.SCHED_BATCH, 20)
    p.kill()
    p.wait()
    out, err = a.communicate(timeout=30)
    assert a.returncode == 0 and "Traceback" not in err
    assert not any(g.exists() for g in GROUP)


@pytest.mark.parametrize("args,msg", [
    (["--pid", "999999999"], "no such process"),
    (["--duration", "-1"], "--duration must be positive"),
    (["--batch-nice", "30"], "--batch-nice must be between 0 and 19"),
    (["--model", "/nonexistent.json"], "model file not found"),
])
def test_run_bad_input(args, msg, run_dir):
    r = subprocess.run([KPILOT, "sched", "run", *args], capture_output=True, text=True)
    assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr


def test_bad_model_and_trace_files(tmp_path):
    bad = tmp_path / "m.json"
    bad.write_text("{not json")
    r = subprocess.run([KPILOT, "sched", "run", "--model", str(bad), "--duration", "1"], capture_output=True, text=True)
    assert r.returncode == 2 and "not valid JSON" in r.stderr
    junk = tmp_path / "t.parquet"
    junk.write_bytes(b"garbage")
    r = subprocess.run([KPILOT, "sched", "simulate", "--trace", str(junk)], capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" not in r.stderr and "kpilot: error" in r.stderr


def test_train_and_use_saved_model(tmp_path, hog, run_dir):
    m = tmp_path / "model.json"
    r = subprocess.run([KPILOT, "sched", "train", "--synthetic", "-o", str(m)], capture_output=True, text=True)
    assert r.returncode == 0 and m.exists() and b"pickle" not in m.read_bytes()
    r = subprocess.run([KPILOT, "sched", "run", "--model", str(m), "--pid", str(hog.pid), "--duration", "1.2",
                        "--interval", "0.2"], capture_output=True, text=True)
    assert r.returncode == 0 and "batch" in r.stdout


BOOSTED_CHILD = """
import os, subprocess, time
end = time.monotonic() + 20
while os.getpriority(os.PRIO_PROCESS, 0) >= 0 and time.monotonic() < end:
    time.sleep(0.001)
c = subprocess.Popen(["sleep", "0.2"])
print(os.getpriority(os.PRIO_PROCESS, 0), os.getpriority(os.PRIO_PROCESS, c.pid), flush=True)
c.wait()
time.sleep(30)
"""


def test_latency_boost_is_not_inherited(run_dir):
    if os.geteuid() != 0:
        pytest.skip("needs root to raise priority")
    p = subprocess.Popen([sys.executable, "-c", BOOSTED_CHILD], stdout=subprocess.PIPE, text=True)
    a = agent(p.pid, "--duration", "6")
    try:
        mine, child = map(int, p.stdout.readline().split())
        assert mine == -10 and child == 0                     # reset-on-fork: the child starts at nice 0
        assert os.sched_getscheduler(p.pid) & os.SCHED_RESET_ON_FORK
        out, err = a.communicate(timeout=30)
        assert a.returncode == 0 and "latency-critical" in out, err
        assert nice_of(p.pid) == 0 and os.sched_getscheduler(p.pid) == os.SCHED_OTHER  # restored
    finally:
        p.kill()
        p.wait()
