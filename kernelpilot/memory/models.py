"""Learned replacement policies.

lrb      LRB-like: a boosted-tree regressor predicts log2(distance to the next request) from the
         request's features; on eviction, sample K cached objects and evict the one predicted to
         come back last (objects past their predicted return use their age instead).
imitate  Belady imitation (Hawkeye-like): a boosted-tree classifier trained on OPT's decisions
         predicts whether OPT would keep the object until its next request; evict the newest
         "averse" object first (as if not admitted), else the least recently used "friendly" one.

Both evaluate the trees inside numba, once per request.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from kernelpilot.errors import KpError
from kernelpilot.memory import features as F
from kernelpilot.memory.policies import _push, _unlink

N_TREES, DEPTH, SAMPLES, K = 30, 4, 40_000, 32


@njit(cache=True, inline="always")
def _score(x, feat, thr, left, right, val, roots, bias):
    s = bias
    for r in range(roots.shape[0]):
        j = roots[r]
        while feat[j] >= 0:
            j = left[j] if x[feat[j]] <= thr[j] else right[j]
        s += val[j]
    return s


def _arrays(m):
    p = m.params
    return (p["feature"].astype(np.int64), p["threshold"].astype(np.float64),
            p["left"].astype(np.int64), p["right"].astype(np.int64),
            p["value"].astype(np.float64), p["roots"].astype(np.int64), float(m.meta.get("bias", 0.0)))


def score_rows(m, X) -> np.ndarray:
    feat, thr, left, right, val, roots, bias = _arrays(m)
    return _score_rows(np.ascontiguousarray(X, np.float64), feat, thr, left, right, val, roots, bias)


@njit(cache=True)
def _score_rows(X, feat, thr, left, right, val, roots, bias):
    out = np.empty(X.shape[0], np.float64)
    for i in range(X.shape[0]):
        out[i] = _score(X[i], feat, thr, left, right, val, roots, bias)
    return out


@njit(cache=True)
def _lrb(ids, sz, cap, n_obj, feat, thr, left, right, val, roots, bias, k, seed):
    np.random.seed(seed)
    n = ids.shape[0]
    last = np.full(n_obj, -1, np.int64)
    d1 = np.zeros(n_obj, np.float64)
    d2 = np.zeros(n_obj, np.float64)
    cnt = np.zeros(n_obj, np.int64)
    x = np.empty(F.N_FEAT, np.float64)
    first = np.zeros(n_obj, np.int64)
    seen = np.zeros(n_obj, np.int64)
    pred = np.zeros(n_obj, np.float64)  # predicted time of the next request
    slot = np.full(n_obj, -1, np.int64)  # index in `cached`
    cached = np.empty(n_obj, np.int64)
    nc = 0
    osz = np.zeros(n_obj, np.int64)
    occ = 0
    hit = np.zeros(n, np.uint8)
    for t in range(n):
        i = ids[t]
        s = sz[t]
        F.update(i, t, s, last, d1, d2, cnt, x, first, seen)
        pred[i] = t + 2.0 ** _score(x, feat, thr, left, right, val, roots, bias)
        if slot[i] >= 0:
            hit[t] = 1
            continue
        while occ + s > cap:
            best = -1
            bscore = -1.0
            for _ in range(min(k, nc)):
                c = cached[np.random.randint(nc)]
                sc = pred[c]
                if sc < t:  # overdue: it has not come back as predicted
                    sc = t + 2.0 * (t - last[c])
                if sc > bscore:
                    bscore = sc
                    best = c
            j = slot[best]
            nc -= 1
            cached[j] = cached[nc]
            slot[cached[j]] = j
            slot[best] = -1
            occ -= osz[best]
        slot[i] = nc
        cached[nc] = i
        nc += 1
        osz[i] = s
        occ += s
    return hit


@njit(cache=True)
def _imitate(ids, sz, cap, n_obj, feat, thr, left, right, val, roots, bias):
    n = ids.shape[0]
    last = np.full(n_obj, -1, np.int64)
    d1 = np.zeros(n_obj, np.float64)
    d2 = np.zeros(n_obj, np.float64)
    cnt = np.zeros(n_obj, np.int64)
    x = np.empty(F.N_FEAT, np.float64)
    first = np.zeros(n_obj, np.int64)
    seen = np.zeros(n_obj, np.int64)
    prv = np.full(n_obj, -1, np.int64)
    nxt = np.full(n_obj, -1, np.int64)
    H = np.full(2, -1, np.int64)  # 0: averse, 1: friendly
    T = np.full(2, -1, np.int64)
    where = np.full(n_obj, -1, np.int8)
    osz = np.zeros(n_obj, np.int64)
    occ = 0
    hit = np.zeros(n, np.uint8)
    for t in range(n):
        i = ids[t]
        s = sz[t]
        F.update(i, t, s, last, d1, d2, cnt, x, first, seen)
        q = 1 if _score(x, feat, thr, left, right, val, roots, bias) > 0.0 else 0
        w = where[i]
        if w >= 0:
            hit[t] = 1
            if q == 1 or w == 1:  # averse hits keep their place (loops keep a fixed set)
                _unlink(prv, nxt, H, T, w, i)
                _push(prv, nxt, H, T, q, i)
                where[i] = q
            continue
        while occ + s > cap:
            # averse: evict the newest (OPT would not keep it); else the LRU friendly one
            v = H[0] if H[0] >= 0 else T[1]
            a = 0 if H[0] >= 0 else 1
            _unlink(prv, nxt, H, T, a, v)
            where[v] = -1
            occ -= osz[v]
        _push(prv, nxt, H, T, q, i)
        where[i] = q
        osz[i] = s
        occ += s
    return hit


def run(policy: str, tr, sz: np.ndarray, cap: int, model) -> np.ndarray:
    d, n_obj, _ = tr.dense()
    a = _arrays(model)
    if policy == "lrb":
        return _lrb(d, sz, cap, n_obj, *a, K, 1)
    return _imitate(d, sz, cap, n_obj, *a)


# ---- training ---------------------------------------------------------------------------------

def _sample(n: int, m: int, seed: int = 0) -> np.ndarray:
    if n <= m:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, m, replace=False))


def train(policy: str, tr, cache_size: int | None = None, unit: bool = True, end: int | None = None):
    """Fit the model of `policy` on requests [0, end) of `tr` -> kernelpilot Model.
    imitate needs the cache size (OPT's decisions depend on it)."""
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor

    from kernelpilot.memory.trace import Trace
    from kernelpilot.models.trees import from_sklearn_trees
    end = len(tr) if end is None else int(end)
    if end < 100:
        raise KpError(f"too few requests to train on ({end}); need at least 100")
    part = Trace(tr.ids[:end], tr.sizes[:end], name=tr.name)
    d, n_obj, nxt = part.dense()
    sz = np.ones(end, np.int64) if unit else part.sizes
    X = F.table(d, sz, n_obj)
    # rows near the end have no known next request yet (censored): train on the first 80%
    rows = _sample(max(int(end * 0.8), 100), SAMPLES)
    if policy == "lrb":
        y = F.distance_target(nxt)
        est = GradientBoostingRegressor(n_estimators=N_TREES, max_depth=DEPTH, learning_rate=0.2,
                                        random_state=0).fit(X[rows], y[rows])
        meta = {"target": "log2 distance to next request"}
    elif policy == "imitate":
        if cache_size is None:
            raise KpError("imitate needs a cache size to learn OPT's decisions at")
        from kernelpilot.memory import policies
        opt_hit = policies.belady(d, sz, int(cache_size), n_obj, nxt)
        y = np.where(nxt >= 0, opt_hit[np.maximum(nxt, 0)], 0).astype(np.int64)
        if y.min() == y.max():
            y[rows[0]] = 1 - y[rows[0]]  # one class only: keep the fit defined
        est = GradientBoostingClassifier(n_estimators=N_TREES, max_depth=DEPTH, learning_rate=0.2,
                                         random_state=0).fit(X[rows], y[rows])
        meta = {"target": "OPT keeps the object until its next request", "cache_size": int(cache_size)}
    else:
        raise KpError(f"unknown learned policy '{policy}'; choose lrb or imitate")
    m = from_sklearn_trees(est, F.NAMES)
    m.meta.update(meta, policy=policy, unit=bool(unit), trained_on=tr.name, train_requests=end)
    return m
