"""lrb's refits (memory/histboost.py) fit what scikit-learn's HistGradientBoostingRegressor fits:
the same trees, thresholds, leaf values and baseline, bit for bit, and the same lrb runs."""
import numpy as np
import pytest

from kernelpilot.memory import features as F, histboost, models, trace as T


def _rows():
    """lrb's refit rows on a generated trace (features with ties, a constant size column, the age)."""
    tr = T.mixed(30_000, 1500, 5)
    d, n_obj, nxt = tr.dense()
    X = F.table(d, tr.ids, np.ones(len(d), np.int64), n_obj, 150)
    rows = models._sample(25_000, 6000, 1)
    return models._with_age(X[rows], rows, np.where(nxt[rows] < 26_000, nxt[rows], -1), 2000.0, 26_000 - rows, 1)


def _cases():
    rng = np.random.default_rng(0)
    return [_rows(),
            (rng.normal(size=(3000, 5)), rng.normal(size=3000)),  # over 255 distinct values: percentiles
            (rng.integers(0, 4, size=(800, 3)).astype(float), rng.normal(size=800)),  # few values, ties
            (np.ones((300, 2)), rng.normal(size=300)),  # nothing to split
            (rng.normal(size=(30, 2)), rng.normal(size=30))]  # under 2 x min_samples_leaf


@pytest.mark.parametrize("case", range(5))
def test_the_fit_is_scikit_learn_s(case):
    X, y = _cases()[case]
    ours, ref = models._fit_lrb(X, y, "hist"), models._fit_lrb(X, y, "sklearn")
    assert set(ours.params) == set(ref.params)
    for k in ref.params:
        assert ours.params[k].dtype == ref.params[k].dtype and np.array_equal(ours.params[k], ref.params[k]), k
    for k in ("bias", "depth", "n_trees", "n_nodes", "fit_mse"):
        assert ours.meta[k] == ref.meta[k], k


def test_thresholds_and_bins_are_the_bin_mapper_s():
    from sklearn.ensemble._hist_gradient_boosting.binning import _BinMapper
    for X, _ in _cases():
        thr, BT = histboost.bins(X)
        bm = _BinMapper(n_bins=256, random_state=0).fit(X)
        assert all(np.array_equal(a, b) for a, b in zip(thr, bm.bin_thresholds_))
        assert np.array_equal(BT.T, bm.transform(X))


def test_lrb_runs_the_same_with_either_fit(monkeypatch):
    tr = T.Trace(np.concatenate([T.loop(20_000, 300, 3).ids, T.zipf(20_000, 3000, 0.9, 4).ids + 10**6]), 1)
    m = models.train("lrb", tr, 120, True, 20_000)
    m.meta.update(retrain_every=5000, retrain_samples=4000)
    sz = np.ones(len(tr), np.int64)
    runs = []
    for how in ("sklearn", "hist"):
        monkeypatch.setattr(models, "FIT", how)
        log = []
        runs.append((models.run("lrb", tr, sz, 120, m, refits=log), log))
    assert sum(e["refit"] for e in runs[0][1]) >= 1
    assert np.array_equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
