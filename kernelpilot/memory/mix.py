"""`mix`: an online expert mixture (in the spirit of LeCaR/CACHEUS, with whole-policy experts).

Every expert (LIRS for loops and scans, Perfect LFU for skewed popularity, and the learned LRB
predictor: the ones that led for long on the bench's traces; S3-FIFO led only where Perfect LFU
now does better, ARC, SIEVE and LFU only briefly on tiny traces, and each costs time) runs as a shadow
cache of the full size over the same requests, logging what it evicts. An online learner tracks
each expert's misses, exponentially decayed (half-life `HALF` cache sizes of requests), and
follows the expert with the fewest, switching only when another is ahead by `MARGIN` cache sizes
of misses (about what a switch costs while the real cache converges; so it does not flap). The real cache follows its leader's contents: on a miss it evicts an
object the leader has already dropped (the longest dropped first) and it does not admit what
the leader did not admit. With a stable leader the real cache holds exactly the leader's
contents, so it cannot do much worse than the best expert, and it does better where phases
favour different experts. Everything is online: each decision uses requests up to now only.
"""
from __future__ import annotations

import os

import numpy as np
from numba import njit

from kernelpilot.memory import policies
from kernelpilot.memory.policies import _lists, _push, _unlink

EXPERTS = ("lirs", "plfu")
LEARNED = "lrb"  # the learned expert (its model is what `models.train("mix", ...)` fits)
HALF, MARGIN = 64.0, 0.5  # window half-life and switching margin, in cache sizes (chosen on the bench traces:
# 256 and 1 switched too late on traces of a few hundred cache sizes; 32-128 and 0.25-0.5 did alike)


def expert_logs(d, sz, cap: int, n_obj: int, learned=None, experts=EXPERTS):
    """Run the experts; returns (names, hits (k x n uint8), eviction logs (k x (m, 2)))."""
    from concurrent.futures import ThreadPoolExecutor
    runs = [(e, lambda evl, e=e: policies.CLASSIC[e](d, sz, cap, n_obj, evl)) for e in experts]
    if learned is not None:
        runs.append((LEARNED, learned))
    logs = [np.zeros((len(d) + 2, 2), np.int64) for _ in runs]
    # the experts are independent and their kernels release the GIL: one thread each
    with ThreadPoolExecutor(max_workers=min(len(runs), os.cpu_count() or 1)) as pool:
        hits = list(pool.map(lambda fn, evl: fn(evl), [fn for _, fn in runs], logs))
    return [name for name, _ in runs], np.stack(hits), logs


def run(d, sz, cap: int, n_obj: int, learned=None, half: float = HALF, margin: float = MARGIN,
        experts=EXPERTS):
    """Hit flags of the mixture and requests led per expert; `learned(evl)` runs the learned
    expert with an eviction log. The first expert leads until another is ahead."""
    names, hits, logs = expert_logs(d, sz, cap, n_obj, learned, experts)
    k = len(names)
    m = max(int(lg[0, 0]) for lg in logs)
    lt = np.full((k, m + 1), -1, np.int64)
    lv = np.zeros((k, m + 1), np.int64)
    for e, lg in enumerate(logs):
        c = int(lg[0, 0])
        lt[e, :c] = lg[1:c + 1, 0]
        lv[e, :c] = lg[1:c + 1, 1]
    mean_sz = max(1.0, float(sz.mean()))
    window = max(64.0, half * cap / mean_sz)
    hit, leaders = _follow(d, sz, cap, n_obj, hits, lt, lv, 2.0 ** (-1.0 / window), margin * cap / mean_sz)
    return hit, dict(zip(names, np.bincount(leaders, minlength=k).tolist()))


@njit(cache=True)
def _follow(ids, sz, cap, n_obj, hits, lt, lv, decay, margin):
    k, n = hits.shape
    mem = np.zeros((k, n_obj), np.bool_)  # experts' contents, replayed from their logs
    eocc = np.zeros(k, np.int64)  # and how much each holds
    lsz = np.zeros(n_obj, np.int64)  # each object's size at its last request
    ptr = np.zeros(k, np.int64)
    miss = np.zeros(k, np.float64)  # decayed misses
    lead = 0
    rp, rn, RH, RT = _lists(n_obj, 1)  # the real cache, LRU order (fallback victims)
    dp, dn, DH, DT = _lists(n_obj, 1)  # cached objects the leader has dropped, oldest at tail
    in_r = np.zeros(n_obj, np.bool_)
    in_d = np.zeros(n_obj, np.bool_)
    osz = np.zeros(n_obj, np.int64)
    occ = 0
    hit = np.zeros(n, np.uint8)
    leaders = np.zeros(n, np.int64)
    for t in range(n):
        x = ids[t]
        s = sz[t]
        lsz[x] = s
        for e in range(k):
            if hits[e, t] == 0 and not mem[e, x]:
                mem[e, x] = True
                eocc[e] += s
                if e == lead and in_d[x]:
                    _unlink(dp, dn, DH, DT, 0, x)
                    in_d[x] = False
            while lt[e, ptr[e]] == t:
                v = lv[e, ptr[e]]
                ptr[e] += 1
                if v < 0:  # -1 - x: x is back in the cache (LIRS keeps a block it just evicted)
                    v = -1 - v
                    if not mem[e, v]:
                        mem[e, v] = True
                        eocc[e] += lsz[v]
                    if e == lead and in_d[v]:
                        _unlink(dp, dn, DH, DT, 0, v)
                        in_d[v] = False
                    continue
                if mem[e, v]:
                    mem[e, v] = False
                    eocc[e] -= lsz[v]
                if e == lead and in_r[v] and not in_d[v]:
                    _push(dp, dn, DH, DT, 0, v)
                    in_d[v] = True
            miss[e] = miss[e] * decay + (1.0 - hits[e, t])
        best = lead
        for e in range(k):
            if miss[e] < miss[best]:
                best = e
        if best != lead and miss[best] + margin < miss[lead]:
            lead = best  # the dropped list is now relative to the new leader
            while DH[0] >= 0:
                v = DH[0]
                _unlink(dp, dn, DH, DT, 0, v)
                in_d[v] = False
            v = RT[0]
            while v >= 0:
                if not mem[lead, v]:
                    _push(dp, dn, DH, DT, 0, v)
                    in_d[v] = True
                v = rp[v]
        leaders[t] = lead
        if in_r[x]:
            hit[t] = 1
            if RH[0] != x:
                _unlink(rp, rn, RH, RT, 0, x)
                _push(rp, rn, RH, RT, 0, x)
            continue
        if not mem[lead, x] or s > cap:
            continue  # the leader did not admit it
        # LIRS (as libCacheSim's) at times holds a block or two over its size: a leader's
        # overage is copied, so a stable leader is copied exactly
        while occ + s > max(cap, eocc[lead]):
            v = DT[0] if DT[0] >= 0 else RT[0]
            if in_d[v]:
                _unlink(dp, dn, DH, DT, 0, v)
                in_d[v] = False
            _unlink(rp, rn, RH, RT, 0, v)
            in_r[v] = False
            occ -= osz[v]
        _push(rp, rn, RH, RT, 0, x)
        in_r[x] = True
        osz[x] = s
        occ += s
    return hit, leaders
