"""Helpers shared by the agent and sched live tests: a journal dir, a sleeping target, an agent."""
import os
import shutil
import signal
import tempfile
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PY = str(ROOT / ".venv/bin/python")


@pytest.fixture
def rdir(tmp_path, monkeypatch):
    """The agent's run dir (lock, socket) for one test: agents of different tests never meet."""
    d = tmp_path / "run"
    d.mkdir()
    monkeypatch.setenv("KPILOT_RUN_DIR", str(d))
    return d


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A small security model (tree + stide) trained on a synthetic corpus: a fixture, no figure."""
    from kernelpilot.security.synth import make_corpus
    d = tmp_path_factory.mktemp("sensor-model")
    make_corpus(d / "c", n_train=60, n_valid=60, attacks_per_family=3, folders_per_family=2, seed=5)
    r = subprocess.run([sys.executable, "-m", "kernelpilot.cli", "security", "train", "--normal", str(d / "c"),
                        "-o", str(d / "m.json"), "--epochs", "1", "--detectors", "stide,tree"],  # all four: 3.5x as long
                       capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return d / "m.json"


@pytest.fixture
def run_dir(monkeypatch):
    """A journal directory anyone may write (the permission test runs as nobody)."""
    d = Path(tempfile.mkdtemp(prefix="kp-run-"))
    d.chmod(0o777)
    monkeypatch.setenv("KPILOT_RUN_DIR", str(d))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def sleeper():
    p = subprocess.Popen(["sleep", "120"])
    yield p
    p.kill()
    p.wait()


def nice_of(pid):
    return os.getpriority(os.PRIO_PROCESS, pid)


def wait_for(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


AGENT = """
import os, sys, time
from kernelpilot.agent.journal import Journal
from kernelpilot.agent.rollback import start_time
pid = int(sys.argv[1])
j = Journal("test", enforce=True).open()
t = {"tid": pid, "start": start_time(pid)}
j.change("nice", t, 7)
j.change("policy", t, [os.SCHED_IDLE, 0])
print("changed", flush=True)
time.sleep(60)
"""


def start_agent(pid, env=None):
    p = subprocess.Popen([PY, "-c", AGENT, str(pid)], stdout=subprocess.PIPE, text=True, env=env,
                         cwd=str(ROOT))
    assert p.stdout.readline().strip() == "changed"
    return p


@contextmanager
def killed_if_left(p):
    """Yield p; if the block fails while p still runs, kill it (no agent outlives its test)."""
    try:
        yield p
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def stop_cleanly(p, timeout=60):
    """SIGTERM p: it must exit 0 without a traceback. Returns (stdout, stderr)."""
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err
    assert "Traceback" not in err
    return out, err
