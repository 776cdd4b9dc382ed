"""Learned replacement policies, all trained on OPT (Belady) at the cache size they serve.

lrb      LRB-like: a boosted-tree regressor predicts log2(time left to the object's next request,
         capped far past OPT's horizon) from the features of its last request (deltas, decayed
         counters) and its age (time idle since, in half log2 steps); on eviction, sample K
         cached objects and evict the one predicted to come back last. Trained on a prefix, then
         refit online on schedule from what the trace has shown (see `run`).
imitate  Belady imitation: a boosted-tree classifier predicts whether OPT hits the object's next
         request; on eviction, sample K and evict the lowest confidence (stale objects first,
         ties to the most recent).
reuse    LRB's Belady-boundary idea: a classifier predicts whether the next request comes within
         the horizon (about how long OPT keeps an object); evict the sampled object idle past the
         horizon, else the one least likely to come back within it. With the file features
         (features.py) it can tell a file read once from a file re-read.

All run the trees inside numba, lazily (at eviction sampling, once per request, lrb once per
age step).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from kernelpilot.errors import KpError
from kernelpilot.memory import features as F, policies

MIX_LEARNED = "lrb"  # the mixture's learned expert: what train("mix", ...) fits

N_TREES, DEPTH, SAMPLES, K = 30, 4, 40_000, 32
# lrb's tree depth, chosen on the dev traces' training halves only (`kpilot bench memory --only
# devsplit`: trained on each half's first half, scored on its second, 69 cells with room): depth 3
# was below the best classic in 28 (depth 4: 23, depth 6: 16; 64 samples per eviction at depth 4: 23),
# median gap closed -3.6% (-7.4% at depth 4), in 0.73x the time
LRB_DEPTH = 3
REUSE_HORIZON = 2.0  # reuse: the horizon in OPT horizons (cache / OPT miss ratio)
HORIZON_CAP = 100  # lrb: next requests further than this many OPT horizons all look alike


@njit(cache=True)
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


def complete(m):
    """The model's trees as complete binary trees of one depth (array layout: node j's children
    are 2j+1, 2j+2): features and thresholds (trees x 2^D - 1), leaf values (trees x 2^D), bias.
    A leaf above depth D becomes nodes that always go left (threshold +inf) down to copies of
    its value; a walk is then D steps with no branch on the node kind."""
    feat, thr, left, right, val, roots, bias = _arrays(m)

    def depth(j):
        return 0 if feat[j] < 0 else 1 + max(depth(left[j]), depth(right[j]))
    D = max(1, max(depth(int(r)) for r in roots))
    cf = np.zeros((len(roots), 2 ** D - 1), np.int64)
    ct = np.full((len(roots), 2 ** D - 1), np.inf)
    cv = np.zeros((len(roots), 2 ** D), np.float64)

    def fill(r, j, c, lvl):
        if lvl == D:
            cv[r, c - (2 ** D - 1)] = val[j]
            return
        if feat[j] >= 0:
            cf[r, c], ct[r, c] = feat[j], thr[j]
            fill(r, left[j], 2 * c + 1, lvl + 1)
            fill(r, right[j], 2 * c + 2, lvl + 1)
        else:  # a leaf: always left, its value in every leaf below
            fill(r, j, 2 * c + 1, lvl + 1)
            fill(r, j, 2 * c + 2, lvl + 1)
    for r, root in enumerate(roots):
        fill(r, int(root), 0, 0)
    return cf, ct, cv, bias


@njit(cache=True)
def _walk(X, i, cf, ct, cv, bias):
    """The score of row X[i] (rows and an index, not a row's view: see F.update)."""
    s = bias
    n_int = ct.shape[1]
    for r in range(cf.shape[0]):
        j = 0
        while j < n_int:
            j = 2 * j + 1 + (X[i, cf[r, j]] > ct[r, j])
        s += cv[r, j - n_int]
    return s


@njit(cache=True)
def _rewalk(X, i, cf, ct, cv, ta, bias, ia, pos):
    """_walk of X[i] (the same sum, tree by tree in order), each tree resumed at node pos[i, r]; -> (score,
    the first age that passes a threshold on feature `ia` (the age) where a path went left:
    ta, see age_steps). pos[i, r] becomes the first node of the path that went left on the age
    (the leaf where none did): until the age reaches that first age every tree takes the same
    path, and after, each tree's path above pos[i, r] still stands (it read the age only going
    right)."""
    s = bias
    n_int = ct.shape[1]
    lim = np.inf
    for r in range(cf.shape[0]):
        j = np.int64(pos[i, r])
        p = -1
        while j < n_int:
            f = cf[r, j]
            right = X[i, f] > ct[r, j]
            if f == ia and not right:
                if p < 0:
                    p = j
                if ta[r, j] < lim:
                    lim = ta[r, j]
            j = 2 * j + 1 + right
        pos[i, r] = j if p < 0 else p
        s += cv[r, j - n_int]
    return s, lim


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
def _rand(st, n):
    """xorshift64: a fixed, cheap sample stream (results reproduce exactly)."""
    x = st[0]
    x ^= x << np.uint64(13)
    x ^= x >> np.uint64(7)
    x ^= x << np.uint64(17)
    st[0] = x
    # the 31 high bits mod n in 32 bits (n < 2^31): the same draw as in 64, at a third of the cost
    return np.int64(np.uint32(x >> np.uint64(33)) % np.uint32(n))


def _state(n_obj, n_grp, seed):
    """The learned kernel's state, kept between segments (a retrain sits between two)."""
    return (np.full(1, np.uint64(0x9E3779B97F4A7C15) + np.uint64(seed), np.uint64),
            *F.state_nb(n_obj, n_grp),
            np.empty((n_obj, F.N_FEAT + 1), np.float64),  # features at the last request (lrb: and the age)
            np.zeros(n_obj, np.float64), np.zeros(n_obj, np.float64),  # key, gap
            np.zeros(n_obj, np.bool_),  # fresh: key/gap are the model's output for the last request
            np.full(n_obj, -1, np.int64),  # slot: index in `cached`
            np.empty(n_obj, np.int64),  # cached
            np.zeros(n_obj, np.int64),  # object sizes
            np.zeros(2, np.int64))  # objects cached, bytes cached


@njit(cache=True)
def _bucket(age):
    """lrb's age feature: log2(1 + idle time) in half steps (age_bucket, one age)."""
    return np.floor(2.0 * np.log2(1.0 + age)) / 2.0


@njit(cache=True)
def _next_bucket(age, lim):
    """The first idle time past `age` whose bucket is above `lim` (at least age's bucket).
    Found by _bucket itself around the closed form (the next half step's 2^(q/2) - 1), so it
    agrees with _bucket exactly."""
    a = max(age + 1, np.int64(np.ceil(2.0 ** ((np.floor(2.0 * lim) + 1.0) / 2.0) - 1.0)))
    while a - 1 > age and _bucket(a - 1) > lim:
        a -= 1
    while _bucket(a) <= lim:
        a += 1
    return a


@njit(cache=True)
def _pick_lrb(t, k, nc, st, cached, last, xs, key, gap, fresh, pos, cf, ct, cv, ta, bias, cs):
    """lrb's eviction at request t: of k objects drawn from the nc cached, the one predicted to
    come back last. An object is scored again only once its age bucket passes a threshold
    where one of its trees' paths went left (gap: the time it does; -1 after its request or a
    refit), each tree from where its path first went left on the age (pos); in between every
    path, so the score, is the same. key holds 2^score. The draws come first, so that their
    loads overlap: the same draws, scores and choice as scoring each one as it is drawn."""
    for q in range(k):
        cs[q] = cached[_rand(st, nc)]
    for q in range(k):
        c = cs[q]
        if t >= gap[c]:
            xs[c, F.N_FEAT] = _bucket(t - last[c])
            if not fresh[c]:  # requested (or refit) since its last score: from the roots
                for r in range(pos.shape[1]):
                    pos[c, r] = 0
            sc, lim = _rewalk(xs, c, cf, ct, cv, ta, bias, F.N_FEAT, pos)
            key[c] = 2.0 ** sc  # the time left, as t + 2^score compared
            gap[c] = last[c] + lim
            fresh[c] = True
    best = cs[0]
    bscore = t + key[best]
    for q in range(1, k):
        v = t + key[cs[q]]
        if v > bscore:
            bscore = v
            best = cs[q]
    return best


@njit(cache=True, nogil=True)
def _segment(ids, grp, page, sz, cap, hl, cf, ct, cv, bias, mode, horizon, k, t0, t1, hit, evl, rec,
             st, last, dl, edc, cnt, glast, gedc, gcnt, gpg, xs, key, gap, fresh, slot, cached, osz, occ_nc,
             pos, ta):
    """Requests [t0, t1) of the one kernel for the three policies (state in, state out). Each
    request updates the object's features; an eviction samples k cached objects and evicts the
    worst. An object is scored lazily: the first time it is sampled after a request (the
    prediction is kept until it is requested again), so hot objects that come back before being
    sampled cost no tree walk.
      mode 0 (lrb)      the model predicts log2 of the distance to the object's next request;
                        evict the latest predicted return (an overdue object is predicted again
                        from now: after as long as predicted)
      mode 3 (lrb, with the age) the model predicts log2 of the time left to the object's
                        next request from its last request's features and its age bucket
                        (age_bucket); evict the latest predicted return (_pick_lrb: scored
                        again only when the age changes a path)
      mode 1 (imitate)  the model, given an object's features at its request, predicts the
                        log-odds that OPT keeps it; evict the least confident (half steps), an
                        object idle past twice its last gap and the horizon counts as averse;
                        ties go to the most recent (a loop larger than the cache keeps a fixed
                        part, as OPT does)
      mode 2 (reuse)    the model predicts the log-odds that the next request comes within the
                        horizon; an object idle past the horizon is evicted first (the oldest),
                        else the lowest probability."""
    nc = occ_nc[0]
    occ = occ_nc[1]
    cs = np.empty(k, np.int64)  # mode 3: the sampled objects
    for t in range(t0, t1):
        i = ids[t]
        s = sz[t]
        F.update(i, grp[t], page[t], t, s, last, dl, edc, cnt, glast, gedc, gcnt, gpg, hl, xs, i)
        fresh[i] = False
        gap[i] = -1.0
        if rec.shape[0] > 0:  # lrb's refits read the rows (features.table's, built on the way)
            for f in range(F.N_FEAT):
                rec[t, f] = xs[i, f]
        if slot[i] >= 0:
            hit[t] = 1
            continue
        while occ + s > cap:
            best = -1
            bscore = -1e300
            if mode == 3:
                best = _pick_lrb(t, min(k, nc), nc, st, cached, last, xs, key, gap, fresh, pos,
                                 cf, ct, cv, ta, bias, cs)
            for _ in range(min(k, nc) if mode != 3 else 0):
                c = cached[_rand(st, nc)]
                age = t - last[c]
                if not fresh[c]:
                    sc = _walk(xs, c, cf, ct, cv, bias)
                    fresh[c] = True
                    key[c] = last[c] + 2.0 ** sc if mode == 0 else sc
                    gap[c] = 2.0 * 2.0 ** xs[c, 0] if mode == 1 else 2.0 ** sc
                if mode == 0:
                    v = key[c]
                    if v < t:  # overdue: it has not come back as predicted
                        v = t + gap[c]
                elif mode == 1:
                    v = -np.floor(key[c] * 2.0) + (100.0 if age > gap[c] and age > horizon else 0.0) - 1e-9 * age
                else:
                    v = -key[c] + (100.0 if age > 2.0 * horizon else 0.0) + 1e-9 * age
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
    occ_nc[0] = nc
    occ_nc[1] = occ


MODES = {"lrb": 0, "imitate": 1, "reuse": 2}


# lrb with the age (LRB's training points): on the 80 dev cells below the best classic in 22 of 65
# with room (7 without), median share of the gap closed -9% (-48%)
AGE = True
# lrb's online retraining (set in the model's meta by train): every RETRAIN_EVERY requests after
# its training prefix, check the model on the latest settled requests (at least a horizon old);
# where its error grew past DRIFT x its fit's, refit on the last RETRAIN_WINDOW settled requests and
# keep the refit only if it predicts those latest ones better. No refit where OPT's horizon is over
# half the window: few requests settle (on the dev cells the three with the longest horizons lost
# 1-7 points to their refits). Dev cells (500 k prefixes x 1/5/10/20%): below the best classic in
# 25 of 65 with room (22 without refits), median gap closed -7% (-9%), at 6.7x lrb's run time
RETRAIN_EVERY, RETRAIN_WINDOW, RETRAIN_SAMPLES = 50_000, 200_000, 20_000
DRIFT = 1.1
CHECK_ROWS = 4000


def retrain_times(model, n: int) -> list[int]:
    """Requests before which lrb checks its model (its schedule): every `retrain_every` requests
    after the model's training prefix."""
    every = int(model.meta.get("retrain_every", 0))
    start = int(model.meta.get("train_requests", n))
    return list(range(start + every, n, every)) if every > 0 else []


def run(policy: str, tr, sz: np.ndarray, cap: int, model, evl=None, refits: list | None = None) -> np.ndarray:
    """Hit flags of a learned policy over `tr`. lrb checks its model on schedule (retrain_times)
    and refits from what the trace has shown before; `refits` gets a dict per check (refit)."""
    return Run(policy, tr, sz, cap, model, evl, refits).to(len(tr))


class Run:
    """One run of a learned policy over `tr`, served in parts: `to(end)` serves the requests up
    to `end` (the checks and refits on schedule before it), `hit` holds the flags so far. Parts
    give the same hits, log and refits as one run: the kernel keeps its state between them."""

    def __init__(self, policy: str, tr, sz: np.ndarray, cap: int, model, evl=None, refits: list | None = None):
        d, n_obj, self.nxt = tr.dense()
        g, pg, n_grp = tr.groups()
        self.horizon = float(model.meta.get("horizon_per_cache", 4.0)) * cap
        self.hit = np.zeros(len(d), np.uint8)
        self.state = _state(n_obj, n_grp, 1)
        self.cur, self.trees = model, complete(model)
        self.mode = 3 if policy == "lrb" and model.meta.get("age_feature") else MODES[policy]
        self.pos, self.ta = _paths(n_obj if self.mode == 3 else 0, self.trees), age_steps(self.trees)
        times = retrain_times(model, len(d)) if policy == "lrb" else []
        if times and self.horizon > int(model.meta.get("retrain_window", RETRAIN_WINDOW)) / 2:
            if refits is not None:  # no check could refit: skip the feature table
                refits.extend(refit(None, None, t, self.horizon, model)[1] for t in times)
            times = []
        # the feature rows refits read (features use the past only), filled as the kernel goes
        self.X = np.empty((len(d) if times else 0, F.N_FEAT), np.float64)
        self.times, self.refits, self.evl, self.t = times, refits, evl, 0
        self.args = (d, g, pg, sz, cap, F.half_lives(cap))

    def to(self, end: int) -> np.ndarray:
        end = min(int(end), len(self.hit))
        while self.t < end:
            t1 = min([t for t in self.times if t > self.t] + [end])
            _segment(*self.args, *self.trees, self.mode, self.horizon, K, self.t, t1, self.hit, self.evl,
                     self.X, *self.state, self.pos, self.ta)
            self.t = t1
            if t1 in self.times:
                self._check(t1)
        return self.hit

    def _check(self, t1: int) -> None:
        m, info = refit(self.X, self.nxt, t1, self.horizon, self.cur)
        if self.refits is not None:
            self.refits.append(info)
        if m is not None:
            self.cur, self.trees = m, complete(m)
            self.state[_FRESH][:] = False  # cached objects get the new model's prediction
            self.state[_FRESH - 1][:] = -1.0  # (lrb: its walks start again at the roots)
            self.pos, self.ta = _paths(len(self.pos), self.trees), age_steps(self.trees)


_FRESH = 12  # index of `fresh` in _state's tuple (gap just before it)


def age_steps(trees) -> np.ndarray:
    """Per node of the complete trees, where it splits on lrb's age (the feature after F.NAMES):
    the first idle time whose bucket is above its threshold (a walk that went left there holds
    until then); elsewhere inf."""
    cf, ct, _, _ = trees
    out = np.full(ct.shape, np.inf)
    for r, j in zip(*np.nonzero(cf == F.N_FEAT)):
        if ct[r, j] < 60.0:  # (2^30 requests idle: never reached)
            out[r, j] = float(_next_bucket(-1, ct[r, j]))
    return out


def _paths(n_obj, trees):
    """lrb's resume points (_rewalk): a node per object and tree."""
    cf, _, cv, _ = trees
    return np.zeros((n_obj, cf.shape[0]), np.uint8 if 2 * cv.shape[1] <= 256 else np.int64)


def _lrb_dist(pos: np.ndarray, nxt: np.ndarray, horizon: float) -> np.ndarray:
    """Distance to the next request, capped at HORIZON_CAP horizons; nxt < 0: not seen again
    (beyond the cap)."""
    cap_at = HORIZON_CAP * horizon
    return np.where(nxt < 0, cap_at, np.minimum(nxt - pos, cap_at)).astype(np.float64)


def _lrb_target(pos: np.ndarray, nxt: np.ndarray, horizon: float) -> np.ndarray:
    """lrb's label: log2(1 + distance to the next request), capped at HORIZON_CAP horizons."""
    return np.log2(1.0 + _lrb_dist(pos, nxt, horizon))


def feature_names(meta: dict) -> list[str]:
    """The features a saved model reads: the request's, then (lrb with the age) the age."""
    return F.NAMES + ["age"] if meta.get("age_feature") else list(F.NAMES)


def age_bucket(age):
    """The age feature: log2(1 + idle time) in half steps (the kernel rescores on a change)."""
    return np.floor(2.0 * np.log2(1.0 + np.asarray(age, np.float64))) / 2.0


def _with_age(X, pos, nxt, horizon, idle_max, seed):
    """Rows for lrb with the age (LRB's training points): each request's object seen idle for
    an age drawn log-uniformly below its distance to the next request (and below `idle_max`,
    what is known idle); the label is log2(1 + the time left to its next request)."""
    dist = _lrb_dist(pos, nxt, horizon)
    lim = np.minimum(dist, idle_max)
    u = np.random.default_rng(seed).uniform(0.0, 1.0, len(pos))
    a = np.minimum(np.floor(2.0 ** (u * np.log2(1.0 + lim))) - 1.0, lim - 1.0).clip(0.0)
    return np.hstack([X, age_bucket(a)[:, None]]), np.log2(1.0 + dist - a)


# lrb's fits: "hist" (histogram boosting, 255 bins a feature: memory/histboost.py, scikit-learn's
# HistGradientBoostingRegressor redone in numba, the same trees), "sklearn" (scikit-learn's own
# fit of the same model, one thread) or "exact" (GradientBoostingRegressor, exact splits). 20 k
# rows x 19 features at load 13: 0.22 s (sklearn) against 4.7 s (exact); exact refits took 93% of
# lrb's run time on orm-busy (500 k, 10%; one core, load 3.5: 1.18 M requests/s with sklearn's
# histogram refits, 0.12 exact). The first fit (TRAIN_FIT, once, before the trace is served) stays
# exact: on the devsplit (69 cells with room) exact first fits with histogram refits put lrb below
# the best classic in 27 (all exact: 28, all histogram: 26), median gap closed -2.4% (-3.6%,
# -6.6%); vote with lrb in 27 (27, 23), vote or lrb in 36 (37, 33)
FIT = "hist"  # the refits, while the trace is served
TRAIN_FIT = "exact"


def _fit_lrb(X, y, how: str | None = None):
    from kernelpilot.models.format import Model
    names = feature_names({"age_feature": X.shape[1] > F.N_FEAT})
    how = how or FIT
    if how == "hist":
        from kernelpilot.memory import histboost
        params, meta, fitted = histboost.fit(X, y, N_TREES, LRB_DEPTH, 0.2)
        m = Model("forest", names, params, dict(meta, source="kernelpilot.memory.histboost", task="regress",
                                                 output="score"))
        m.meta["fit_mse"] = float(np.mean((fitted - y) ** 2))  # its predictions are score_rows'
        return m
    if how == "sklearn":
        from sklearn.ensemble import HistGradientBoostingRegressor
        est = HistGradientBoostingRegressor(max_iter=N_TREES, max_depth=LRB_DEPTH, learning_rate=0.2,
                                            max_leaf_nodes=None, early_stopping=False, random_state=0)
        with _one_thread():  # one core (OpenMP threads spin on a loaded host: 20x slower)
            m = _from_hist(est.fit(X, y), names)
    else:
        from sklearn.ensemble import GradientBoostingRegressor

        from kernelpilot.models.trees import from_sklearn_trees
        est = GradientBoostingRegressor(n_estimators=N_TREES, max_depth=LRB_DEPTH, learning_rate=0.2,
                                        random_state=0).fit(X, y)
        m = from_sklearn_trees(est, names)
    m.meta["fit_mse"] = float(np.mean((score_rows(m, X) - y) ** 2))  # lrb's drift check compares to it
    return m


def _one_thread():
    from threadpoolctl import threadpool_limits
    return threadpool_limits(1)


def _from_hist(est, names):
    """A fitted HistGradientBoostingRegressor as the ensemble layout of models/trees.py (go left
    when x <= threshold; the leaves hold their shrunk values, the bias is the baseline). Our
    features have no missing values, so its missing-value routes are never taken."""
    from kernelpilot.models.format import Model
    cols = {k: [] for k in ("feature", "threshold", "left", "right", "value", "roots")}
    base, depth = 0, 0
    for (pred,) in est._predictors:
        nd = pred.nodes
        leaf = nd["is_leaf"].astype(bool)
        cols["feature"].append(np.where(leaf, -1, nd["feature_idx"]).astype(np.int32))
        cols["threshold"].append(np.where(leaf, 0.0, nd["num_threshold"]).astype(np.float64))
        cols["left"].append(np.where(leaf, -1, nd["left"].astype(np.int64) + base).astype(np.int32))
        cols["right"].append(np.where(leaf, -1, nd["right"].astype(np.int64) + base).astype(np.int32))
        cols["value"].append(np.where(leaf, nd["value"], 0.0).astype(np.float64))
        cols["roots"].append(np.array([base], np.int32))
        depth = max(depth, int(nd["depth"].max()))
        base += len(nd)
    params = {k: np.concatenate(v) for k, v in cols.items()}
    meta = {"source": "sklearn.HistGradientBoostingRegressor", "task": "regress", "output": "score",
            "bias": float(np.ravel(est._baseline_prediction)[0]), "depth": depth,
            "n_trees": len(est._predictors), "n_nodes": int(base)}
    return Model("forest", names, params, meta)


def _settled(X, nxt, rows, now, horizon, age, seed):
    """Feature rows and labels of requests `rows` (each at least a horizon before `now`) as known
    at `now`: a next request at or after `now` is not read (not seen by then: beyond OPT's
    horizon, LRB's Belady-boundary label)."""
    seen = np.where(nxt[rows] < now, nxt[rows], -1)
    if age:
        return _with_age(X[rows], rows, seen, horizon, now - rows, seed)
    return X[rows], _lrb_target(rows, seen, horizon)


def refit(X: np.ndarray, nxt: np.ndarray, now: int, horizon: float, model):
    """lrb's check before request `now`, from requests before it only -> (new model or None,
    what was done). The latest settled requests (at least a horizon old) check the model; where
    its error there exceeds DRIFT x its fit's, a refit on the settled requests before them
    replaces it if it predicts them better."""
    hi = int(now - horizon)
    lo = max(0, hi - int(model.meta.get("retrain_window", RETRAIN_WINDOW)))
    info = {"at": now, "refit": False}
    if horizon > int(model.meta.get("retrain_window", RETRAIN_WINDOW)) / 2:
        return None, dict(info, why="OPT's horizon is over half the window")
    if hi - lo < 5 * CHECK_ROWS // 4:
        return None, dict(info, why="too few settled requests")
    cut = hi - CHECK_ROWS // 4 - (hi - lo) // 5
    age = bool(model.meta.get("age_feature"))
    Xc, yc = _settled(X, nxt, cut + _sample(hi - cut, CHECK_ROWS, now), now, horizon, age, now + 1)
    err = float(np.mean((score_rows(model, Xc) - yc) ** 2))
    info["error"], info["fit_error"] = round(err, 4), model.meta.get("fit_mse")
    if "fit_mse" in model.meta and err <= DRIFT * float(model.meta["fit_mse"]):
        return None, dict(info, why="no drift")
    rows = lo + _sample(cut - lo, int(model.meta.get("retrain_samples", RETRAIN_SAMPLES)), now)
    m = _fit_lrb(*_settled(X, nxt, rows, now, horizon, age, now))
    new = float(np.mean((score_rows(m, Xc) - yc) ** 2))
    info.update(rows=len(rows), new_error=round(new, 4))
    if new >= err:
        return None, dict(info, why="the refit predicts no better")
    m.meta.update({k: v for k, v in model.meta.items() if k not in m.meta and k != "fit_mse"},
                  fitted_before=now)
    return m, dict(info, refit=True, why="drift")


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


def train(policy: str, tr, cache_size: int | None = None, unit: bool = True, end: int | None = None,
          horizon_factor: float = REUSE_HORIZON):
    """Fit the model of `policy` on requests [0, end) of `tr` -> kernelpilot Model. All learn
    from OPT at `cache_size` (the features and the horizon are relative to it):
      lrb      regress log2 of the next-request distance, capped at OPT's horizon
      imitate  classify whether OPT hits the object's next request
      reuse    classify whether the next request comes within OPT's horizon (LRB's Belady
               boundary), the horizon scaled by `horizon_factor`"""
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor

    from kernelpilot.memory.trace import Trace
    from kernelpilot.models.trees import from_sklearn_trees
    if policy == "mix":
        policy = MIX_LEARNED
    if policy not in MODES:
        raise KpError(f"unknown learned policy '{policy}'; choose {', '.join(MODES)} or mix")
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
    if policy == "reuse":
        horizon *= horizon_factor / 2.0
    X = F.table(d, part.ids, sz, n_obj, cap)
    # the last requests' next request may lie past the prefix (censored): leave them out
    usable = max(int(end - horizon), int(end * 0.5), 100)
    rows = _sample(min(usable, end), SAMPLES)
    kw = dict(n_estimators=N_TREES, max_depth=DEPTH, learning_rate=0.2, random_state=0)
    if policy == "lrb":
        if AGE:
            m = _fit_lrb(*_with_age(X[rows], rows, nxt[rows], horizon, np.inf, 0), TRAIN_FIT)
        else:
            m = _fit_lrb(X[rows], _lrb_target(rows, nxt[rows], horizon), TRAIN_FIT)
        m.meta.update(age_feature=AGE)
        m.meta.update(target=f"log2 distance to the next request, capped at {HORIZON_CAP} x OPT's horizon",
                      retrain_every=RETRAIN_EVERY, retrain_window=RETRAIN_WINDOW,
                      retrain_samples=RETRAIN_SAMPLES)
        m.meta.update(policy=policy, unit=bool(unit), trained_on=tr.name, train_requests=end,
                      cache_size=cap, horizon_per_cache=horizon / cap)
        return m
    else:
        if policy == "imitate":
            y = np.where(nxt >= 0, opt_hit[np.maximum(nxt, 0)], 0).astype(np.int64)
            meta = {"target": "OPT hits the object's next request"}
        else:
            y = (F.distance(nxt, 2 * horizon + 1) <= horizon).astype(np.int64)
            meta = {"target": "the next request comes within the horizon"}
        if y[rows].min() == y[rows].max():
            y[rows[0]] = 1 - y[rows[0]]  # one class only: keep the fit defined
        est = GradientBoostingClassifier(**kw).fit(X[rows], y[rows])
    m = from_sklearn_trees(est, F.NAMES)
    m.meta.update(meta, policy=policy, unit=bool(unit), trained_on=tr.name, train_requests=end,
                  cache_size=cap, horizon_per_cache=horizon / cap)
    return m
