"""UNM's pooled threshold (kernelpilot.security.crossfit): training traces cross-fitted beside the
calibration ones, for detectors whose scores only fall as training grows; on synthetic normals
whose profile is not full (a rare variant in many traces) and on a small hand-made tarball."""
import numpy as np
import pytest

from kernelpilot.security import crossfit as X
from kernelpilot.security import devsets
from kernelpilot.security.features import Vocabulary
from kernelpilot.security.metrics import conformal_threshold
from kernelpilot.security.registry import make
from kernelpilot.security.sequence import scored
from test_datasets import _tar

CALLS = [f"c{i}" for i in range(12)]


def _normal(rng, n):
    """A loop of 4 calls; a third of the traces also run a short stretch of 3 random calls:
    a 6-gram profile from tens of such traces is far from full (xlock's case)."""
    out = []
    for _ in range(n):
        t = ["c0", "c1", "c2", "c3"] * int(rng.integers(20, 40))
        if rng.random() < 0.33:
            i = int(rng.integers(4, len(t) - 4))
            t[i:i] = [str(c) for c in rng.choice(CALLS[4:], 3)]
        out.append(t)
    return out


@pytest.mark.parametrize("kind", X.MONOTONE)
def test_monotone_detectors_score_no_higher_when_trained_on_more(kind):
    """The premise of pooling: a superset's model never scores a trace higher, offline or streaming."""
    rng = np.random.default_rng(1)
    v = Vocabulary(CALLS)
    train = [v.encode(t) for t in _normal(rng, 40)]
    probe = [v.encode(t) for t in _normal(rng, 60)]
    small, big = make(kind, v).fit(train[:15], 0), make(kind, v).fit(train, 0)
    for a, b in zip(scored(small, probe), scored(big, probe)):
        assert b.score <= a.score + 1e-12 and b.stream.max() <= a.stream.max() + 1e-12


def test_pooled_threshold_keeps_false_alarms_that_a_small_calibration_cannot():
    """30 training and 10 calibration traces (the largest of 10 is passed by a new normal one time
    in 11); pooled with the 30 cross-fitted training scores the threshold holds on fresh normals."""
    v = Vocabulary(CALLS)
    old, new = [], []
    for seed in range(12):
        rng = np.random.default_rng(100 + seed)
        tr, cal, fresh = ([v.encode(t) for t in _normal(rng, n)] for n in (30, 10, 300))
        det = make("mismatch", v).fit(tr, 0)
        sc, sf = scored(det, cal), [s.score for s in scored(det, fresh)]
        cf = X.crossfit(lambda: make("mismatch", v), tr)
        t_old = conformal_threshold([s.score for s in sc], 0.01)
        thr = X.pooled_thresholds(sc, cf)
        assert thr["n_pool"] == 40 and thr["offline"] >= t_old
        old.append(np.mean(np.array(sf) > t_old))
        new.append(np.mean(np.array(sf) > thr["offline"]))
    assert np.mean(old) > 0.04          # the calibration alone: about 1 in 11
    assert np.mean(new) < 1 / 41 + 0.005 and np.mean(new) < np.mean(old) / 3  # the pool: 40 traces


def test_crossfit_scores_each_trace_by_a_model_that_never_saw_it():
    v = Vocabulary(CALLS)
    seqs = [v.encode(["c0", "c1", "c2", "c3"] * 10 + [c] * 8) for c in CALLS[4:9]]  # each has calls of its own
    cf = X.crossfit(lambda: make("mismatch", v), seqs)
    assert all(s.score > 0 for s in cf)  # a model that had seen it would score it 0
    assert X.crossfit(lambda: make("mismatch", v), seqs[:4]) is None  # fewer traces than folds
    f = X.folds(23)
    assert sorted(np.bincount(f)) == [4, 4, 5, 5, 5] and (X.folds(23) == f).all()


def test_unm_reports_the_pooled_threshold_per_program(tmp_path):
    files = {}
    rng = np.random.default_rng(0)
    for prog, base in (("8.Inetd", [3, 4, 5, 6]), ("9.Login", [7, 8, 9, 10])):
        for i in range(20):
            calls = base * (3 + i % 3) + ([int(rng.integers(20, 40))] if i % 4 == 0 else [])
            files[f"UNM/{prog}/normal/n{i}.int"] = "".join(f"{i + 1} {c}\n" for c in calls)
        files[f"UNM/{prog}/intrusion/a.int"] = "".join(f"1 {c}\n" for c in [1, 2, 1, 2] * 3)
    res = devsets.run("unm", _tar(tmp_path / "u.tar.xz", files), ("mismatch", "rarity", "fused"))
    for r in res["programs"].values():
        n_tr, n_cal = r["n_train"], r["n_calibration"]
        m, ra = r["detectors"]["mismatch"], r["detectors"]["rarity"]
        assert m["pooled_1pct"]["offline"]["n_pool"] == n_tr + n_cal  # mismatch: training cross-fitted too
        assert ra["pooled_1pct"] == ra["conformal_1pct"]  # rarity's counts can rise: calibration only
        assert m["pooled_1pct"]["offline"]["threshold"] >= m["conformal_1pct"]["offline"]["threshold"]
        fz = r["detectors"]["fused"]
        pooled = fz["pooled_1pct"]["offline"]["n_pool"]
        assert pooled == (n_tr + n_cal if "rarity" not in fz["rule"]["rule"] else n_cal)
    assert "pooled_offline_ok" in res["summary"]["mismatch"] and "pooled_1pct" in res["protocol"]
