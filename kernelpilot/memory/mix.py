"""`mix`: an online expert follower aiming at half a point of regret against its best expert (in
the spirit of LeCaR/CACHEUS, with whole-policy experts).

Every expert (S3-FIFO and ARC, which lead on most real traces, LIRS for loops, LRU, Perfect LFU
for skewed popularity, and the learned LRB predictor) runs as a shadow cache of the full size over
the same requests, logging what it evicts. The learner tracks
each expert's misses, exponentially decayed (half-life `HALF` cache sizes of requests), and
follows the one with the fewest. A switch costs misses while the real cache converges (up to what
it holds that the challenger does not), so it switches when the challenger's lead, counted for as
long as the current leader has led (a lead that lasts is worth more), exceeds `MARGIN` cache sizes
plus `COST` times that difference. Per eviction the real cache takes the leader's choice: it evicts
the object the leader evicted when it holds it, else the resident object the leader dropped longest
ago (the leader's state is a set; the real cache converges toward it), and it does not admit what
the leader did not admit. With a stable leader the real cache holds exactly the leader's contents.
There is no hard bound: a burst of hits on objects the followed expert had dropped (ARC's P2/P3:
a re-read that only LRU-like experts kept) is lost to any follower that did not hold them. The
learned expert may lead only after its training prefix (its hits there are in-sample).
Everything is online: each decision uses requests up to now only.
"""
from __future__ import annotations

import os

import numpy as np
from numba import njit

from kernelpilot.memory import policies
from kernelpilot.memory.policies import _lists, _push, _unlink

EXPERTS = ("s3fifo", "arc", "lirs", "lru", "plfu")
LEARNED = "lrb"  # the learned expert (its model is what `models.train("mix", ...)` fits)
# window half-life and switching margin, in cache sizes, and the share of what the real cache holds
# and the challenger does not that a switch must win back; chosen on the dev traces (200 k request
# prefixes x 1/5/10/20%): 4, 0.05, 0.25 had the lowest mean regret (0.12 points) and the fewest
# cells over half a point (4 of 80); half-lives of 2-16 and charges of 0.5-1 did worse, no charge
# flapped on loops, 64 (tuned on program traces) reacted too late
HALF, MARGIN, COST = 4.0, 0.05, 0.25


def expert_logs(d, sz, cap: int, n_obj: int, learned=None, experts=EXPERTS, threads: int | None = None):
    """Run the experts; returns (names, hits (k x n uint8), eviction logs (k x (m, 2))).
    threads: how many at once (default: one per core; their kernels release the GIL)."""
    from concurrent.futures import ThreadPoolExecutor
    runs = [(e, lambda evl, e=e: policies.CLASSIC[e](d, sz, cap, n_obj, evl)) for e in experts]
    if learned is not None:
        runs.append((LEARNED, learned))
    logs = [np.zeros((len(d) + 2, 2), np.int64) for _ in runs]
    workers = threads or min(len(runs), os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        hits = list(pool.map(lambda fn, evl: fn(evl), [fn for _, fn in runs], logs))
    return [name for name, _ in runs], np.stack(hits), logs


def follow(names, hits, logs, d, sz, cap: int, n_obj: int, half: float = HALF, margin: float = MARGIN,
           cost: float = COST, learned_from: int = 0):
    """The follower over the experts' hits and logs (from expert_logs) -> (hit flags, requests
    led per expert, switches). The learned expert may lead from request `learned_from` on (where
    its training data ends: before, its hits are in-sample and would flatter it); it starts there
    level with the leader."""
    k = len(names)
    since = np.array([learned_from if nm == LEARNED else 0 for nm in names], np.int64)
    m = max(int(lg[0, 0]) for lg in logs)
    lt = np.full((k, m + 1), -1, np.int64)
    lv = np.zeros((k, m + 1), np.int64)
    for e, lg in enumerate(logs):
        c = int(lg[0, 0])
        lt[e, :c] = lg[1:c + 1, 0]
        lv[e, :c] = lg[1:c + 1, 1]
    mean_sz = max(1.0, float(sz.mean()))
    window = max(64.0, half * cap / mean_sz)
    hit, leaders, switches = _follow(d, sz, cap, n_obj, hits, lt, lv, 2.0 ** (-1.0 / window),
                                     margin * cap / mean_sz, cost / mean_sz, since)
    return hit, dict(zip(names, np.bincount(leaders, minlength=k).tolist())), int(switches)


def run(d, sz, cap: int, n_obj: int, learned=None, half: float = HALF, margin: float = MARGIN,
        experts=EXPERTS, threads: int | None = None, cost: float = COST, learned_from: int = 0):
    """Hit flags of the mixture and requests led per expert; `learned(evl)` runs the learned
    expert with an eviction log. The first expert leads until another is ahead."""
    names, hits, logs = expert_logs(d, sz, cap, n_obj, learned, experts, threads)
    hit, led, _ = follow(names, hits, logs, d, sz, cap, n_obj, half, margin, cost, learned_from)
    return hit, led


@njit(cache=True, nogil=True)
def _follow(ids, sz, cap, n_obj, hits, lt, lv, decay, margin, cost, since):
    k, n = hits.shape
    mem = np.zeros((k, n_obj), np.bool_)  # experts' contents, replayed from their logs
    eocc = np.zeros(k, np.int64)  # and how much each holds
    diff = np.zeros(k, np.int64)  # what the real cache holds that each expert does not
    lsz = np.zeros(n_obj, np.int64)  # each object's size at its last request
    ptr = np.zeros(k, np.int64)
    miss = np.zeros(k, np.float64)  # decayed misses
    lead = 0
    switches = 0
    t_led = 0
    window = 1.0 / (1.0 - decay)  # requests the decayed counts span
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
                if in_r[x]:
                    diff[e] -= osz[x]
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
                        if in_r[v]:
                            diff[e] -= osz[v]
                    if e == lead and in_d[v]:
                        _unlink(dp, dn, DH, DT, 0, v)
                        in_d[v] = False
                    continue
                if mem[e, v]:
                    mem[e, v] = False
                    eocc[e] -= lsz[v]
                    if in_r[v]:
                        diff[e] += osz[v]
                if e == lead and in_r[v] and not in_d[v]:
                    _push(dp, dn, DH, DT, 0, v)
                    in_d[v] = True
            miss[e] = miss[e] * decay + (1.0 - hits[e, t])
        best = lead
        for e in range(k):
            if since[e] == t:
                miss[e] = miss[lead]
            if since[e] <= t and miss[e] < miss[best]:
                best = e
        # the lead per request, over the window, is worth as much again for as long as the current
        # leader has led (at least a window; at most since the challenger could lead): switch when
        # that pays for the switch
        adv = miss[lead] - miss[best]
        if best != lead and adv > margin and \
                adv * max(1.0, (t - max(t_led, since[best])) / window) > margin + cost * diff[best]:
            lead = best  # the dropped list is now relative to the new leader
            switches += 1
            t_led = t
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
            for e in range(k):
                if not mem[e, v]:
                    diff[e] -= osz[v]
        _push(rp, rn, RH, RT, 0, x)
        in_r[x] = True
        osz[x] = s
        occ += s
        for e in range(k):
            if not mem[e, x]:
                diff[e] += s
    return hit, leaders, switches
