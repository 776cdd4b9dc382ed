"""lrb's online retraining: it checks its model on schedule and refits from the past only."""
import numpy as np

from kernelpilot.memory import models, trace as T
from kernelpilot.models.format import Model


def _model(tr, cap, start, every):
    m = models.train("lrb", tr, cap, True, start)
    m.meta.update(retrain_every=every, retrain_samples=4000)
    return m


def _run(tr, cap, m):
    log = []
    return models.run("lrb", tr, np.ones(len(tr), np.int64), cap, m, refits=log), log


def test_lrb_checks_on_schedule_and_refits_when_the_workload_changes():
    # a loop, then a skewed workload over other objects: the first model no longer fits
    tr = T.Trace(np.concatenate([T.loop(20_000, 300, 3).ids, T.zipf(20_000, 3000, 0.9, 4).ids + 10**6]), 1)
    m = _model(tr, 120, 20_000, 5000)
    hit, log = _run(tr, 120, m)
    assert [e["at"] for e in log] == [25_000, 30_000, 35_000] == models.retrain_times(m, len(tr))
    done = [e for e in log if e["refit"]]
    assert done and all(e["new_error"] < e["error"] and e["error"] > models.DRIFT * e["fit_error"] for e in done)
    still, _ = _run(tr, 120, Model(m.kind, m.feature_names, m.params, dict(m.meta, retrain_every=0)))
    first = done[0]["at"]
    assert np.array_equal(hit[:first], still[:first])  # identical until the first refit
    assert not np.array_equal(hit, still)  # the refit changed what was evicted


def test_lrb_never_reads_the_future_of_a_check():
    """Requests after P do not change a single decision before P: the same hits on the prefix
    alone, on the whole trace and on one whose requests after P are different."""
    tr = T.Trace(np.concatenate([T.loop(20_000, 300, 3).ids, T.zipf(20_000, 3000, 0.9, 4).ids + 10**6]), 1)
    P = 33_000
    other = T.Trace(np.concatenate([tr.ids[:P], tr.ids[P:][::-1] + 3]), 1)
    prefix = T.Trace(tr.ids[:P], 1)
    m = _model(tr, 100, 20_000, 4000)
    runs = []
    for t in (tr, other, prefix):
        hit, log = _run(t, 100, m)
        runs.append((hit[:P], [e for e in log if e["at"] < P]))
    assert len(runs[0][1]) == 3 and any(e["refit"] for e in runs[0][1])
    for hit, log in runs[1:]:
        assert np.array_equal(hit, runs[0][0]) and log == runs[0][1]


def test_check_is_skipped_without_settled_rows():
    tr = T.mixed(8_000, 500, 1)
    d, n_obj, nxt = tr.dense()
    m = _model(tr, 50, 3000, 1000)
    X = np.zeros((len(d), models.F.N_FEAT))
    new, info = models.refit(X, nxt, 3500, horizon=3000.0, model=m)  # nothing a horizon old yet
    assert new is None and info["why"] == "too few settled requests"
    new, info = models.refit(X, nxt, 7900, horizon=100.0, model=m)
    assert "error" in info


def test_no_refit_where_the_horizon_outgrows_the_window():
    tr = T.mixed(30_000, 1500, 3)
    m = _model(tr, 120, 15_000, 5000)
    m.meta["retrain_window"] = int(m.meta["horizon_per_cache"] * 120)  # under twice the horizon
    hit, log = _run(tr, 120, m)
    assert [e["at"] for e in log] == [20_000, 25_000] and not any(e["refit"] for e in log)
    assert all(e["why"] == "OPT's horizon is over half the window" for e in log)
    fixed, _ = _run(tr, 120, Model(m.kind, m.feature_names, m.params, dict(m.meta, retrain_every=0)))
    assert np.array_equal(hit, fixed)
