"""Learned replacement policies, both trained on OPT (Belady) at the cache size they serve.

lrb      LRB-like: a boosted-tree regressor predicts log2(distance to the next request, capped
         far past OPT's horizon) from the request's features (deltas, decayed counters); on
         eviction, sample K cached objects and evict the one predicted to come back last.
imitate  Belady imitation: a boosted-tree classifier predicts whether OPT hits the object's next
         request; on eviction, sample K and evict the lowest confidence (stale objects first,
         ties to the most recent).

Both run the trees inside numba, once per request.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from kernelpilot.errors import KpError
from kernelpilot.memory import features as F, policies

N_TREES, DEPTH, SAMPLES, K = 30, 4, 40_000, 32
HORIZON_CAP = 100  # lrb: next requests further than this many OPT horizons all look alike


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
def _learned(ids, sz, cap, n_obj, hl, feat, thr, left, right, val, roots, bias, mode, horizon, k, seed,
             evl=None):
    """One kernel for both policies. Each request updates the object's features; an eviction
    samples k cached objects and evicts the worst:
      mode 0 (lrb)      the model predicts log2 of the distance to the object's next request;
                        evict the latest predicted return (an overdue object is predicted again
                        from now: after as long as predicted)
      mode 1 (imitate)  the model, given an object's features at its request, predicts the
                        log-odds that OPT keeps it; evict the least confident (half steps), an
                        object idle past twice its last gap and the horizon counts as averse;
                        ties go to the most recent (a loop larger than the cache keeps a fixed
                        part, as OPT does)."""
    np.random.seed(seed)
    n = ids.shape[0]
    last, dl, edc, cnt = F.state_nb(n_obj)
    xs = np.empty((n_obj, F.N_FEAT), np.float64)  # features at the last request
    key = np.zeros(n_obj, np.float64)
    gap = np.zeros(n_obj, np.float64)
    slot = np.full(n_obj, -1, np.int64)  # index in `cached`
    cached = np.empty(n_obj, np.int64)
    nc = 0
    osz = np.zeros(n_obj, np.int64)
    occ = 0
    hit = np.zeros(n, np.uint8)
    for t in range(n):
        i = ids[t]
        s = sz[t]
        F.update(i, t, s, last, dl, edc, cnt, hl, xs[i])
        sc = _score(xs[i], feat, thr, left, right, val, roots, bias)
        key[i] = t + 2.0 ** sc if mode == 0 else sc
        gap[i] = 2.0 * 2.0 ** xs[i, 0] if mode == 1 else 2.0 ** sc
        if slot[i] >= 0:
            hit[t] = 1
            continue
        while occ + s > cap:
            best = -1
            bscore = -1e300
            for _ in range(min(k, nc)):
                c = cached[np.random.randint(nc)]
                age = t - last[c]
                if mode == 0:
                    v = key[c]
                    if v < t:  # overdue: it has not come back as predicted
                        v = t + gap[c]
                else:
                    v = -np.floor(key[c] * 2.0) + (100.0 if age > gap[c] and age > horizon else 0.0) - 1e-9 * age
                if v > bscore:
                    bscore = v
                    best = c
            j = slot[best]
            nc -= 1
            cached[j] = cached[nc]
            slot[cached[j]] = j
            slot[best] = -1
            occ -= osz[best]
            policies._ev(evl, t, best)
        slot[i] = nc
        cached[nc] = i
        nc += 1
        osz[i] = s
        occ += s
    return hit


def run(policy: str, tr, sz: np.ndarray, cap: int, model, evl=None) -> np.ndarray:
    d, n_obj, _ = tr.dense()
    mode = {"lrb": 0, "imitate": 1}[policy]
    horizon = float(model.meta.get("horizon_per_cache", 4.0)) * cap
    return _learned(d, sz, cap, n_obj, F.half_lives(cap), *_arrays(model), mode, horizon, K, 1, evl)


# ---- training ---------------------------------------------------------------------------------

def _sample(n: int, m: int, seed: int = 0) -> np.ndarray:
    if n <= m:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, m, replace=False))


def horizon_of(opt_hit: np.ndarray, cap: int) -> float:
    """How long (requests) OPT keeps an object it will not hit again, roughly: the cache size
    over OPT's miss ratio, doubled."""
    m = max(1.0 - float(opt_hit.mean()), 1e-3)
    return 2.0 * cap / m


def train(policy: str, tr, cache_size: int | None = None, unit: bool = True, end: int | None = None):
    """Fit the model of `policy` on requests [0, end) of `tr` -> kernelpilot Model. Both learn
    from OPT at `cache_size` (the features and the horizon are relative to it):
      lrb      regress log2 of the next-request distance, capped at OPT's horizon
      imitate  classify whether OPT hits the object's next request"""
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor

    from kernelpilot.memory.trace import Trace
    from kernelpilot.models.trees import from_sklearn_trees
    policy = "lrb" if policy == "mix" else policy  # the mixture's learned expert
    if policy not in ("lrb", "imitate"):
        raise KpError(f"unknown learned policy '{policy}'; choose lrb, imitate or mix")
    end = len(tr) if end is None else int(end)
    if end < 100:
        raise KpError(f"too few requests to train on ({end}); need at least 100")
    part = Trace(tr.ids[:end], tr.sizes[:end], name=tr.name)
    d, n_obj, nxt = part.dense()
    sz = np.ones(end, np.int64) if unit else part.sizes
    if cache_size is None:
        cache_size = max(1, part.footprint(unit) // 10)
    cap = int(cache_size)
    if cap <= 0:
        raise KpError(f"cache size must be > 0 (got {cap})")
    opt_hit = policies.belady(d, sz, cap, n_obj, nxt)
    horizon = horizon_of(opt_hit, cap)
    X = F.table(d, sz, n_obj, cap)
    # the last requests' next request may lie past the prefix (censored): leave them out
    usable = max(int(end - horizon), int(end * 0.5), 100)
    rows = _sample(min(usable, end), SAMPLES)
    kw = dict(n_estimators=N_TREES, max_depth=DEPTH, learning_rate=0.2, random_state=0)
    if policy == "lrb":
        y = np.log2(1.0 + F.distance(nxt, HORIZON_CAP * horizon))
        est = GradientBoostingRegressor(**kw).fit(X[rows], y[rows])
        names = F.NAMES
        meta = {"target": f"log2 distance to the next request, capped at {HORIZON_CAP} x OPT's horizon"}
    else:
        y = np.where(nxt >= 0, opt_hit[np.maximum(nxt, 0)], 0).astype(np.int64)
        if y[rows].min() == y[rows].max():
            y[rows[0]] = 1 - y[rows[0]]  # one class only: keep the fit defined
        est = GradientBoostingClassifier(**kw).fit(X[rows], y[rows])
        names = F.NAMES
        meta = {"target": "OPT hits the object's next request"}
    m = from_sklearn_trees(est, names)
    m.meta.update(meta, policy=policy, unit=bool(unit), trained_on=tr.name, train_requests=end,
                  cache_size=cap, horizon_per_cache=horizon / cap)
    return m
