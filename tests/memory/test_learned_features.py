"""File-group features, the complete-tree walk the learned kernel uses, and the reuse policy."""
import numpy as np
from numba import njit

from kernelpilot.memory import features as F, models, sim, trace as T


def test_group_features_tell_scanned_from_reread_files():
    # file 1 is read sequentially once (pages 0..3); file 2 has page 0 read three times
    raw = np.array([(1 << 28) | 0, (1 << 28) | 1, (2 << 28) | 0, (1 << 28) | 2, (2 << 28) | 0,
                    (1 << 28) | 3, (2 << 28) | 0], np.int64)
    d = np.unique(raw, return_inverse=True)[1].astype(np.int64)
    X = F.table(d, raw, np.ones(len(raw), np.int64), int(d.max()) + 1, 4)
    col = {n: X[:, F.NAMES.index(n)] for n in ("seq", "greuse", "gpages", "gdelta")}
    assert col["seq"].tolist() == [0, 1, 0, 1, 0, 1, 0]
    assert col["greuse"][5] == 0.0 and col["greuse"][6] == 2 / 3  # scanned file vs re-read file
    assert col["gpages"][5] == np.log2(5) and col["gpages"][6] == 1.0
    assert col["gdelta"][0] == F.NEVER and col["gdelta"][3] == np.log2(3)  # file 1: t=1 -> t=3


def test_group_gap_and_size_shortcuts_equal_the_plain_expressions():
    """update skips a log2 and an exp for a group gap of 1 and a size of 1: the same bits."""
    import math
    rng = np.random.default_rng(4)
    raw = (rng.integers(0, 3, 5000) << 28) | rng.integers(0, 200, 5000)
    raw[1000:3000] = (7 << 28) | np.arange(2000)  # a run in one group: gaps of 1
    sz = rng.choice([1, 1, 1, 4096, 7], 5000)
    d = np.unique(raw, return_inverse=True)[1].astype(np.int64)
    cap = 60
    X = F.table(d, raw, sz, int(d.max()) + 1, cap)
    h = max(1.0, cap * F.EDC_HALF[1])
    last, gedc = {}, {}
    for t, (r, s) in enumerate(zip(raw.tolist(), sz.tolist())):
        g = r >> 28
        assert X[t, F.NAMES.index("size")] == math.log2(1.0 + s)
        if g in last:
            gap = t - last[g]
            assert X[t, F.NAMES.index("gdelta")] == math.log2(1.0 + gap)
            gedc[g] = 1.0 + gedc[g] * math.exp(-gap * F.LN2 / h)
        else:
            gedc[g] = 1.0
        last[g] = t
        assert X[t, F.NAMES.index("gedc")] == gedc[g]


def _plain_features(raw, sz, cap):
    """Every feature of every request from the definitions (features.py's docstring) in Python's
    math: log2 and exp for each gap and count, no table."""
    import math
    hl = [max(1.0, h * cap) for h in F.EDC_HALF]
    last, dl, edc, cnt, first_t = {}, {}, {}, {}, {}
    glast, gedc, gcnt, gre, gpg = {}, {}, {}, {}, {}
    rows = []
    for t, (r, s) in enumerate(zip(raw.tolist(), sz.tolist())):
        o, g, pg = r, r >> 28, r & ((1 << 28) - 1)
        if o in last:
            gap = t - last[o]
            dl[o] = [math.log2(1.0 + gap)] + dl[o][:-1]
            edc[o] = [1.0 + e * math.exp(-gap * F.LN2 / h) for e, h in zip(edc[o], hl)]
        else:
            dl[o], edc[o], first_t[o], cnt[o] = [F.NEVER] * F.N_DELTA, [1.0] * F.N_EDC, t, 0
        cnt[o] += 1
        if g in glast:
            ggap = t - glast[g]
            gd, gedc[g] = math.log2(1.0 + ggap), 1.0 + gedc[g] * math.exp(-ggap * F.LN2 / hl[1])
        else:
            gd, gedc[g], gcnt[g], gre[g] = F.NEVER, 1.0, 0, 0
        gcnt[g] += 1
        gre[g] += o in last
        seq = 1.0 if pg == gpg.get(g, -2) + 1 else 0.0
        rows.append(dl[o] + edc[o] + [math.log2(1.0 + cnt[o]), math.log2(1.0 + s), gd, gedc[g],
                                      gre[g] / gcnt[g], math.log2(1.0 + gcnt[g] - gre[g]), seq,
                                      math.log2((1.0 + t - first_t[o]) / cnt[o])])
        last[o], glast[g], gpg[g] = t, t, pg
    return np.array(rows)


def test_features_equal_their_plain_expressions_below_and_above_the_table():
    """update reads log2(1 + x) and the decays from a table for gaps and counts below F.TAB and
    computes them above: the same bits as the expressions, both sides of the table's end."""
    rng = np.random.default_rng(7)
    n = 30_000
    raw = (rng.integers(0, 3, n) << 28) | rng.integers(0, 5000, n)  # object gaps around the table's end
    raw[:6000] = (5 << 28) | rng.integers(0, 40, 6000)  # hot objects, in two runs: group 5 idles
    raw[20_000:26_000] = (5 << 28) | rng.integers(0, 40, 6000)  # past F.TAB in between
    raw[1::6] = 9 << 28  # one object requested past F.TAB times
    sz = rng.choice([1, 1, 1, 4096, 7], n)
    d = np.unique(raw, return_inverse=True)[1].astype(np.int64)
    for cap in (50, 3000):
        X = F.table(d, raw, sz, int(d.max()) + 1, cap)
        assert np.array_equal(X, _plain_features(raw, sz, cap)), cap
    gaps = np.diff(np.nonzero(raw == raw[0])[0])
    assert gaps.max() > F.TAB > gaps.min() and (raw == 9 << 28).sum() > F.TAB  # both sides


@njit
def _walk_rows(X, cf, ct, cv, bias):
    out = np.empty(X.shape[0])
    for i in range(X.shape[0]):
        out[i] = models._walk(X, i, cf, ct, cv, bias)
    return out


def test_complete_tree_walk_equals_the_model():
    tr = T.zipf(20_000, 1500, 0.9, 3)
    for policy in ("lrb", "reuse"):
        m = models.train(policy, tr, 100)
        X = np.random.default_rng(1).uniform(0, 25, (500, m.n_features))  # lrb: and the age
        walk = _walk_rows(X, *models.complete(m))
        assert np.array_equal(walk, models.score_rows(m, X))  # bit for bit: same trees, same order
        if policy == "lrb":  # a regressor: the saved model's own prediction
            assert np.allclose(walk, m.predict_float(X))


def test_reuse_policy_beats_lru_on_held_out_zipf_and_reproduces():
    tr = T.zipf(60_000, 3000, 0.9, 4)
    m = models.train("reuse", tr, 150, end=30_000, horizon_factor=2.0)
    a = sim.simulate(tr, "reuse", 150, model=m, eval_from=30_000)
    b = sim.simulate(tr, "reuse", 150, model=m, eval_from=30_000)
    assert a.miss_ratio == b.miss_ratio  # a fixed sample stream: the same result every run
    assert a.miss_ratio < sim.simulate(tr, "lru", 150, eval_from=30_000).miss_ratio
    assert a.miss_ratio > sim.simulate(tr, "belady", 150, eval_from=30_000).miss_ratio


def test_learned_policy_never_trains_on_the_scored_half():
    """run_sim (and the bench) train on requests [0, start) only: a model fitted there is the same
    whatever the scored half holds, and equals one fitted on the prefix alone."""
    from kernelpilot.memory.cli import run_sim
    tr = T.mixed(20_000, 600, 1)
    other = T.Trace(np.concatenate([tr.ids[:10_000], tr.ids[10_000:][::-1] + 7]), 1)
    a, b = models.train("lrb", tr, 60, True, 10_000), models.train("lrb", other, 60, True, 10_000)
    prefix = models.train("lrb", T.Trace(tr.ids[:10_000], 1), 60, True)
    for k in a.params:
        assert np.array_equal(a.params[k], b.params[k]) and np.array_equal(a.params[k], prefix.params[k]), k
    assert a.meta["train_requests"] == 10_000
    out = run_sim(tr, ["lrb"], [60], train_frac=0.5)
    assert out["eval_from"] == 10_000
    ref = sim.simulate(tr, "lrb", 60, model=prefix, eval_from=10_000).miss_ratio
    assert out["results"][0]["miss_ratio"] == ref
