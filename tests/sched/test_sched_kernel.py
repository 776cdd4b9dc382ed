"""The in-kernel classifier: bit-exact with the Python integer model (kernelize's harness and on
live sched_switch windows), and the live agent acting on its verdicts."""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kernelpilot.sched import evaluate as E
from kernelpilot.sched import features as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))
from agent_helpers import ROOT, run_dir, wait_for  # noqa: E402,F401

KPILOT = str(ROOT / ".venv/bin/kpilot")


@pytest.fixture(scope="module")
def clf():
    if os.geteuid() != 0:
        pytest.skip("loading BPF programs needs root")
    return E.fit_models(E.synthetic_items((0,), 2.0), bursts=False)[1]


def test_parity_harness_and_live_windows(clf):
    from kernelpilot.kernelize import parity
    from kernelpilot.sched.kernel import KernelClassifier
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    sleeper = subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(0.001)"])
    try:
        with KernelClassifier(clf.model, window_ms=100) as k:
            p = parity(clf.model, k.predict, n=20000)             # BPF_PROG_TEST_RUN vs predict_int
            assert p["agree"] == p["n"] == 20000, p
            assert wait_for(lambda: {hog.pid, sleeper.pid} <= set(k.verdicts()), 10)
            time.sleep(0.5)
            v = k.verdicts()
        X = np.array([x.x for x in v.values()], np.int64)
        C = np.array([x.counters for x in v.values()], np.int64)
        assert len(v) >= 2
        assert np.array_equal(F.class_features(*C.T), X)          # kernel features == Python's
        assert np.array_equal(clf.predict(X), [x.cls for x in v.values()])  # kernel verdict == model
        assert v[hog.pid].cls == 0 and v[hog.pid].counters[3] <= 2  # never sleeps: batch
        assert v[sleeper.pid].counters[3] > 20                    # voluntary switches counted
    finally:
        hog.kill()
        sleeper.kill()
        hog.wait()
        sleeper.wait()


def test_agent_acts_on_kernel_verdicts(clf, run_dir):
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        a = subprocess.Popen([KPILOT, "sched", "run", "--kernel", "--enforce", "--pid", str(hog.pid),
                              "--interval", "0.2", "--window-ms", "100", "--duration", "4"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert wait_for(lambda: os.sched_getscheduler(hog.pid) == os.SCHED_BATCH, 20)
        out, err = a.communicate(timeout=40)
        assert a.returncode == 0, err
        assert "in-kernel verdict" in out and f"[{hog.pid}] batch" in out
        assert wait_for(lambda: os.sched_getscheduler(hog.pid) == os.SCHED_OTHER, 10)
    finally:
        hog.kill()
        hog.wait()


def test_kernel_bad_input(clf, tmp_path):
    r = subprocess.run([KPILOT, "sched", "run", "--kernel", "--window-ms", "1", "--duration", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--window-ms must be at least 10" in r.stderr
    # a model over other features cannot go into the classifier program
    from sklearn.tree import DecisionTreeClassifier

    from kernelpilot.models import from_sklearn
    X = np.arange(40).reshape(20, 2)
    m = from_sklearn(DecisionTreeClassifier(max_depth=2).fit(X, X[:, 0] > 20), ["a", "b"], X)
    m.meta["sched_task"] = "task classifier"
    m.save(tmp_path / "m.json")
    r = subprocess.run([KPILOT, "sched", "run", "--kernel", "--model", str(tmp_path / "m.json"), "--duration", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr  # refused on load (feature names) or by the kernel side
    assert "needs a model over" in r.stderr or "but the task classifier gives 'util_q10'" in r.stderr
