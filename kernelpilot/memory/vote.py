"""`vote`: one cache whose every victim its experts choose by vote; nothing is ever copied into it.

The experts (the classic policies of mix.EXPERTS) run as shadow caches of the full size over the
same requests and log what they evict (their ghost histories). Each expert's weight is
exp(-(its misses - the fewest) / (TAU x cache size)), misses decayed with a half-life of `HALF`
cache sizes: a miss on an object in an expert's history is that expert's regret (Hedge, as LeCaR
and Cacheus weight theirs). The real cache admits only what a request misses. When it must
evict, each expert names its candidate: the cached object it evicted longest ago of those the
real cache still holds (its queue: a shadow's evictions of objects the real cache holds, in
order). Each candidate gets the summed weight of the experts that no longer hold it, and the
candidate with the most goes (ties: the one of the expert with the fewest misses). With one
expert far ahead this is that expert's choice; where several are close, what they agree to drop
goes first. An expert holding every cached object cannot name one; if none can, the real cache's
least recent object goes (`fallbacks`). Unlike mix's follower, a change of leader fetches
nothing: the real cache reaches a new leader's contents one miss at a time.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from kernelpilot.memory.policies import _ev, _push, _unlink

# chosen on the devsplit only (training halves, 69 cells with room; docs/guide/memory.md): below
# the best classic in 22 with these (half-lives 4-32, temperatures 0.02-0.2: 18-21; the five
# experts mix listed first: 18), median gap closed 0.0%
EXPERTS = ("s3fifo", "arc", "lirs", "lru", "plfu", "2q", "clock", "lfu", "fifo", "sieve")
HALF = 8.0  # half-life of the misses counted, in cache sizes
TAU = 0.02  # weight temperature: misses behind the best, in cache sizes, that divide a weight by e


def vote(d, sz, cap: int, n_obj: int, evl=None):
    """Hit flags (uint8) per request, as the classic kernels; evl logs what leaves (policies._ev)."""
    return run(d, sz, cap, n_obj, evl=evl)[0]


def run(d, sz, cap: int, n_obj: int, experts=EXPERTS, half: float = HALF, tau: float = TAU,
        threads: int | None = 1, evl=None):
    """-> (hit per request (uint8), fallbacks, evictions named per expert). The experts run
    in full first (mix.expert_logs), `threads` at once."""
    from kernelpilot.memory import mix
    names, hits, logs = mix.expert_logs(d, sz, cap, n_obj, None, experts, threads=threads)
    return follow(d, sz, cap, n_obj, hits, logs, half, tau, evl)


def follow(d, sz, cap: int, n_obj: int, hits, logs, half: float = HALF, tau: float = TAU, evl=None):
    """The voting cache over the experts' hits (k x n) and eviction logs (mix.expert_logs)."""
    mean_sz = max(1.0, float(np.mean(sz))) if len(sz) else 1.0
    decay = 2.0 ** (-1.0 / max(64.0, half * cap / mean_sz))
    return _vote(d, sz, np.int64(cap), n_obj, hits, logs, decay, max(1e-9, tau * cap / mean_sz), evl)


@njit(cache=True, inline="always")
def _q_unlink(qp, qn, QH, QT, e, i):
    a, b = qp[e, i], qn[e, i]
    if a >= 0:
        qn[e, a] = b
    else:
        QH[e] = b
    if b >= 0:
        qp[e, b] = a
    else:
        QT[e] = a
    qp[e, i] = -1
    qn[e, i] = -1


@njit(cache=True, inline="always")
def _q_append(qp, qn, QH, QT, e, i):
    qn[e, i] = -1
    qp[e, i] = QT[e]
    if QT[e] >= 0:
        qn[e, QT[e]] = i
    else:
        QH[e] = i
    QT[e] = i


@njit(cache=True, nogil=True)
def _vote(ids, sz, cap, n_obj, hits, logs, decay, temp, evl):
    k, n = hits.shape
    inq = np.zeros((k, n_obj), np.bool_)  # v cached here, gone from shadow e: in e's queue
    qp = np.full((k, n_obj), -1, np.int64)
    qn = np.full((k, n_obj), -1, np.int64)
    QH = np.full(k, -1, np.int64)
    QT = np.full(k, -1, np.int64)
    shadow = np.zeros((k, n_obj), np.bool_)  # shadow e's contents, replayed from its log
    rp = np.full(n_obj, -1, np.int64)  # the real cache by recency (the fallback)
    rn = np.full(n_obj, -1, np.int64)
    RH = np.full(1, -1, np.int64)
    RT = np.full(1, -1, np.int64)
    inc = np.zeros(n_obj, np.bool_)
    osz = np.zeros(n_obj, np.int64)
    ptr = np.ones(k, np.int64)
    miss = np.zeros(k)
    w = np.zeros(k)
    named = np.zeros(k, np.int64)
    hit = np.zeros(n, np.uint8)
    occ, fallbacks = np.int64(0), np.int64(0)
    for t in range(n):
        x = ids[t]
        cached = inc[x]
        if cached:
            hit[t] = 1
            if RH[0] != x:
                _unlink(rp, rn, RH, RT, 0, x)
                _push(rp, rn, RH, RT, 0, x)
        for e in range(k):  # the shadows serve request t
            miss[e] = miss[e] * decay + (1 - hits[e, t])
            if hits[e, t] == 0:
                shadow[e, x] = True  # admitted, or not and logged as gone below
                if inq[e, x]:
                    _q_unlink(qp, qn, QH, QT, e, x)
                    inq[e, x] = False
            while ptr[e] <= logs[e, 0, 0] and logs[e, ptr[e], 0] == t:
                v = logs[e, ptr[e], 1]
                ptr[e] += 1
                if v < 0:  # -1 - v is back in the shadow (LIRS)
                    v = -1 - v
                    shadow[e, v] = True
                    if inq[e, v]:
                        _q_unlink(qp, qn, QH, QT, e, v)
                        inq[e, v] = False
                else:
                    shadow[e, v] = False
                    if inc[v] and not inq[e, v]:
                        _q_append(qp, qn, QH, QT, e, v)
                        inq[e, v] = True
        if cached:
            continue
        s = sz[t]
        if s > cap:
            _ev(evl, t, x)
            continue
        if occ + s > cap:
            best = 0
            for e in range(1, k):
                if miss[e] < miss[best]:
                    best = e
            for e in range(k):
                w[e] = np.exp(-(miss[e] - miss[best]) / temp)
        while occ + s > cap:
            v, top, by = QH[best], -1.0, best
            for f in range(k):
                c = QH[f]
                if c < 0:
                    continue
                vote = 0.0
                for e in range(k):
                    if inq[e, c]:
                        vote += w[e]
                if vote > top or (vote == top and f == best):
                    top, v, by = vote, c, f
            if v < 0:
                v = RT[0]
                fallbacks += 1
            else:
                named[by] += 1
            for e in range(k):
                if inq[e, v]:
                    _q_unlink(qp, qn, QH, QT, e, v)
                    inq[e, v] = False
            _unlink(rp, rn, RH, RT, 0, v)
            inc[v] = False
            occ -= osz[v]
            _ev(evl, t, v)
        inc[x] = True
        osz[x] = s
        occ += s
        _push(rp, rn, RH, RT, 0, x)
        for e in range(k):
            if not shadow[e, x]:  # the shadow did not keep it
                _q_append(qp, qn, QH, QT, e, x)
                inq[e, x] = True
    return hit, fallbacks, named
