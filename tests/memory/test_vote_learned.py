"""lrb as an expert of vote (memory/vote.py, `run(learned=...)`): before the end of its training
prefix it has no say, nothing is fetched with it among the experts, and on a real dev slice where
lrb leads the vote takes its lead. lrb's histogram fits (memory/models.py) score as scikit-learn's."""
import sys
from pathlib import Path

import numpy as np
import pytest

from kernelpilot.datasets import datasets_dir
from kernelpilot.memory import mix, models, policies, trace as T, vote

sys.path.insert(0, str(Path(__file__).parent))
from cache_cases import CASES, cells  # noqa: E402
from test_vote import _replay  # noqa: E402


def _run_with_log(fn, d, sz, cap, n_obj):
    log = mix._logs(1, len(d))[0]
    return fn(d, sz, cap, n_obj, log), log


@pytest.mark.parametrize("cap", [20, 100])
def test_learned_expert_has_no_say_before_its_prefix_ends(cap):
    # Perfect LFU stands in for the learned expert on a skewed trace, where it is far ahead of LRU
    tr = T.zipf(30_000, 2500, 1.0, 1)
    d, n_obj, _ = tr.dense()
    sz = np.ones(len(d), np.int64)
    lru = policies.lru(d, sz, cap, n_obj)
    pl = _run_with_log(policies.plfu, d, sz, cap, n_obj)
    assert pl[0].mean() > lru.mean() + 0.05  # the slice is what the test says
    half = len(d) // 2
    h_never = vote.run(d, sz, cap, n_obj, experts=("lru",), learned=pl, learned_from=len(d))[0]
    assert (h_never == lru).all()  # never scored: LRU exactly
    h_half = vote.run(d, sz, cap, n_obj, experts=("lru",), learned=pl, learned_from=half)[0]
    assert (h_half[:half] == lru[:half]).all()  # no say before its prefix ends
    # from there it leads: the second half well above LRU's hits, near Perfect LFU's
    assert h_half[half:].mean() > lru[half:].mean() + 0.04
    assert h_half[-half // 2:].mean() >= pl[0][-half // 2:].mean() - 0.01


@pytest.mark.parametrize("make", CASES)
def test_nothing_fetched_with_a_learned_expert(make):
    d, sz, n_obj, caps = cells(make)
    for cap in caps:
        learned = _run_with_log(policies.plfu, d, sz, cap, n_obj)
        evl = np.zeros((len(d) + 2, 2), np.int64)
        h = vote.run(d, sz, cap, n_obj, evl=evl, learned=learned, learned_from=len(d) // 3)[0]
        bad, foreign, top = _replay(d, sz, h, evl, n_obj, cap)
        assert evl[0, 0] > 0 and bad == 0 and foreign == 0 and top <= cap, cap


def test_learned_expert_as_a_function_is_the_same():
    tr = T.mixed(30_000, 1200, 2)
    d, n_obj, _ = tr.dense()
    sz = np.ones(len(d), np.int64)
    pl = _run_with_log(policies.plfu, d, sz, 100, n_obj)
    a = vote.run(d, sz, 100, n_obj, learned=pl, learned_from=10_000)[0]
    b = vote.run(d, sz, 100, n_obj, learned=lambda evl: policies.plfu(d, sz, 100, n_obj, evl),
                 learned_from=10_000)[0]
    assert (a == b).all()


DEV = datasets_dir() / "cache"


@pytest.mark.skipif(not DEV.is_dir(), reason=f"no shared cache traces at {DEV}")
def test_vote_takes_lrbs_lead_on_a_real_slice():
    # ps (LIRS paper), first 60 k requests, 5% of the footprint: lrb, trained on the first half,
    # is 9 points below S3-FIFO, the best classic, on the second; the classic vote stays at S3-FIFO,
    # the vote with lrb 6 points below it (lrb enters vote.ENTER cache sizes behind: 3 points lost)
    tr = T.load(str(DEV / "lirs/ps.trace.gz"), limit=60_000)
    d, n_obj, _ = tr.dense()
    sz = np.ones(len(d), np.int64)
    cap, half = int(0.05 * tr.footprint()), len(d) // 2
    m = models.train("lrb", tr, cap, True, half)
    log = mix._logs(1, len(d))[0]
    lrb = models.run("lrb", tr, sz, cap, m, log)
    mr = lambda h: 1.0 - float(h[half:].mean())  # noqa: E731
    best = min(mr(policies.CLASSIC[p](d, sz, cap, n_obj)) for p in vote.EXPERTS)
    assert mr(lrb) < best - 0.05  # the slice is what the test says
    with_lrb = mr(vote.run(d, sz, cap, n_obj, learned=(lrb, log), learned_from=half)[0])
    assert mr(vote.vote(d, sz, cap, n_obj)) > best - 0.005  # without lrb: the best classic's level
    assert with_lrb < best - 0.05 and with_lrb < mr(lrb) + 0.04


def test_histogram_fit_scores_as_sklearn_and_saves(tmp_path):
    from sklearn.ensemble import HistGradientBoostingRegressor

    from kernelpilot.models import validate
    from kernelpilot.models.format import Model
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, models.F.N_FEAT + 1))
    y = X[:, 0] + 2 * np.sin(X[:, 3]) + 0.1 * rng.normal(size=3000)
    m = models._fit_lrb(X, y)
    est = HistGradientBoostingRegressor(max_iter=models.N_TREES, max_depth=models.LRB_DEPTH, learning_rate=0.2,
                                        max_leaf_nodes=None, early_stopping=False, random_state=0).fit(X, y)
    assert np.allclose(models.score_rows(m, X), est.predict(X), rtol=0, atol=1e-9)
    validate.validate(m)
    back = Model.load(m.save(tmp_path / "lrb.npz"))
    assert np.array_equal(models.score_rows(back, X), models.score_rows(m, X))
    cf, ct, cv, bias = models.complete(m)  # the kernel's layout walks to the same scores
    assert cf.shape[1] == 2 ** models.LRB_DEPTH - 1
