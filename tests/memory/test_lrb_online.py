"""lrb's online retraining: it refits on schedule, from the past only."""
import numpy as np

from kernelpilot.memory import models, trace as T


def _model(tr, cap, start, every):
    m = models.train("lrb", tr, cap, True, start)
    m.meta.update(retrain_every=every, retrain_samples=4000)
    return m


def test_lrb_refits_on_schedule_from_settled_rows():
    tr = T.mixed(40_000, 1500, 2)
    m = _model(tr, 120, 20_000, 5000)
    log = []
    hit = models.run("lrb", tr, np.ones(len(tr), np.int64), 120, m, refits=log)
    assert [t for t, _ in log] == [25_000, 30_000, 35_000] == models.retrain_times(m, len(tr))
    assert all(rows == 4000 for _, rows in log)  # each refit had enough settled rows
    fixed = dict(m.meta, retrain_every=0)
    m.meta = fixed
    still = models.run("lrb", tr, np.ones(len(tr), np.int64), 120, m)
    assert np.array_equal(hit[:25_000], still[:25_000])  # identical until the first refit
    assert not np.array_equal(hit, still)  # the refits changed what was evicted


def test_lrb_never_reads_the_future_of_a_refit():
    """Requests after P do not change a single decision before P: the same hits on the prefix
    alone, on the whole trace and on one whose requests after P are different."""
    tr = T.mixed(40_000, 1500, 5)
    P = 33_000
    other = T.Trace(np.concatenate([tr.ids[:P], tr.ids[P:][::-1] + 3]), 1)
    prefix = T.Trace(tr.ids[:P], 1)
    m = _model(tr, 100, 20_000, 4000)
    runs = []
    for t in (tr, other, prefix):
        log = []
        runs.append((models.run("lrb", t, np.ones(len(t), np.int64), 100, m, refits=log)[:P],
                     [e for e in log if e[0] < P]))
    assert len(runs[0][1]) == 3
    for hit, log in runs[1:]:
        assert np.array_equal(hit, runs[0][0]) and log == runs[0][1]


def test_refit_is_skipped_without_settled_rows():
    tr = T.mixed(6_000, 500, 1)
    d, n_obj, nxt = tr.dense()
    m = _model(tr, 50, 3000, 1000)
    X = np.zeros((len(d), models.F.N_FEAT))
    assert models.refit(X, nxt, 3500, horizon=3000.0, model=m) is None  # nothing a horizon old yet
    assert models.refit(X, nxt, 5500, horizon=100.0, model=m) is not None
