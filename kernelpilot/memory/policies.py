"""Classic replacement policies as numba kernels over dense object ids.

Every kernel takes `ids` (dense int64, 0..n_obj-1), `sz` (int64 size per request), `cap` (cache
size in the same unit) and `n_obj`, and returns a uint8 array: 1 where the request hit. The
semantics follow libCacheSim's (find -> evict while full -> insert), so miss ratios match.
Queues are intrusive doubly linked lists: head = newest, tail = oldest, `prv` points to the head.
"""
from __future__ import annotations

import numpy as np
from numba import njit

NONE = -1


@njit(cache=True, inline="always")
def _ev(evl, t, v):
    """Log that object v left the cache (or was not admitted) at request t, when logging:
    evl[0, 0] counts the rows, rows 1.. hold (t, v); v = -1 - x: x is back in the cache.
    Without a log this compiles to nothing."""
    if evl is not None:
        k = evl[0, 0] + 1
        evl[k, 0] = t
        evl[k, 1] = v
        evl[0, 0] = k


@njit(cache=True, inline="always")
def _unlink(prv, nxt, H, T, q, i):
    p = prv[i]
    n = nxt[i]
    if p >= 0:
        nxt[p] = n
    else:
        H[q] = n
    if n >= 0:
        prv[n] = p
    else:
        T[q] = p
    prv[i] = -1
    nxt[i] = -1


@njit(cache=True, inline="always")
def _push(prv, nxt, H, T, q, i):
    prv[i] = -1
    nxt[i] = H[q]
    if H[q] >= 0:
        prv[H[q]] = i
    else:
        T[q] = i
    H[q] = i


@njit(cache=True, inline="always")
def _append(prv, nxt, H, T, q, i):
    nxt[i] = -1
    prv[i] = T[q]
    if T[q] >= 0:
        nxt[T[q]] = i
    else:
        H[q] = i
    T[q] = i


@njit(cache=True, nogil=True)
def _lists(n_obj, k):
    """k intrusive queues over n_obj objects: prev, next, heads, tails."""
    return (np.full(n_obj, -1, np.int64), np.full(n_obj, -1, np.int64),
            np.full(k, -1, np.int64), np.full(k, -1, np.int64))


@njit(cache=True, nogil=True)
def _fifo_lru_init(ids, cap, n_obj):
    prv, nxt, H, T = _lists(n_obj, 1)
    inc = np.zeros(n_obj, np.bool_)
    osz = np.zeros(n_obj, np.int64)
    sc = np.zeros(1, np.int64)
    return (prv, nxt, H, T, inc, osz, sc)


@njit(cache=True, nogil=True)
def _fifo_lru_run(ids, sz, cap, t0, t1, hit, evl, state, lru):
    """Requests [t0, t1) on the state from `_fifo_lru_init` (hits into hit[t0:t1])."""
    prv, nxt, H, T, inc, osz, sc = state
    occ = np.int64(sc[0])
    for t in range(t0, t1):
        i = ids[t]
        if inc[i]:
            hit[t] = 1
            if lru and H[0] != i:
                _unlink(prv, nxt, H, T, 0, i)
                _push(prv, nxt, H, T, 0, i)
            continue
        s = sz[t]
        while occ + s > cap:
            v = T[0]
            _unlink(prv, nxt, H, T, 0, v)
            inc[v] = False
            occ -= osz[v]
            _ev(evl, t, v)
        _push(prv, nxt, H, T, 0, i)
        inc[i] = True
        osz[i] = s
        occ += s
    sc[0] = occ


@njit(cache=True, nogil=True)
def _fifo_run(ids, sz, cap, t0, t1, hit, evl, state):
    _fifo_lru_run(ids, sz, cap, t0, t1, hit, evl, state, False)


@njit(cache=True, nogil=True)
def _lru_run(ids, sz, cap, t0, t1, hit, evl, state):
    _fifo_lru_run(ids, sz, cap, t0, t1, hit, evl, state, True)


@njit(cache=True, nogil=True)
def fifo(ids, sz, cap, n_obj, evl=None):
    hit = np.zeros(ids.shape[0], np.uint8)
    _fifo_run(ids, sz, cap, 0, ids.shape[0], hit, evl, _fifo_lru_init(ids, cap, n_obj))
    return hit


@njit(cache=True, nogil=True)
def lru(ids, sz, cap, n_obj, evl=None):
    hit = np.zeros(ids.shape[0], np.uint8)
    _lru_run(ids, sz, cap, 0, ids.shape[0], hit, evl, _fifo_lru_init(ids, cap, n_obj))
    return hit


@njit(cache=True, nogil=True)
def _clock_init(ids, cap, n_obj):
    prv, nxt, H, T = _lists(n_obj, 1)
    inc = np.zeros(n_obj, np.bool_)
    ref = np.zeros(n_obj, np.int8)
    osz = np.zeros(n_obj, np.int64)
    sc = np.zeros(1, np.int64)
    return (prv, nxt, H, T, inc, ref, osz, sc)


@njit(cache=True, nogil=True)
def _clock_run(ids, sz, cap, t0, t1, hit, evl, state):
    """Requests [t0, t1) on the state from `_clock_init` (hits into hit[t0:t1])."""
    prv, nxt, H, T, inc, ref, osz, sc = state
    occ = np.int64(sc[0])
    for t in range(t0, t1):
        i = ids[t]
        if inc[i]:
            hit[t] = 1
            ref[i] = 1
            continue
        s = sz[t]
        while occ + s > cap:
            v = T[0]
            while ref[v] >= 1:
                ref[v] -= 1
                _unlink(prv, nxt, H, T, 0, v)
                _push(prv, nxt, H, T, 0, v)
                v = T[0]
            _unlink(prv, nxt, H, T, 0, v)
            inc[v] = False
            occ -= osz[v]
            _ev(evl, t, v)
        _push(prv, nxt, H, T, 0, i)
        inc[i] = True
        ref[i] = 0
        osz[i] = s
        occ += s
    sc[0] = occ


@njit(cache=True, nogil=True)
def clock(ids, sz, cap, n_obj, evl=None):
    """FIFO with reinsertion, 1-bit reference counter (libCacheSim Clock)."""
    hit = np.zeros(ids.shape[0], np.uint8)
    _clock_run(ids, sz, cap, 0, ids.shape[0], hit, evl, _clock_init(ids, cap, n_obj))
    return hit


@njit(cache=True, nogil=True)
def _sieve_init(ids, cap, n_obj):
    prv, nxt, H, T = _lists(n_obj, 1)
    inc = np.zeros(n_obj, np.bool_)
    vis = np.zeros(n_obj, np.int8)
    osz = np.zeros(n_obj, np.int64)
    sc = np.array([0, -1], np.int64)
    return (prv, nxt, H, T, inc, vis, osz, sc)


@njit(cache=True, nogil=True)
def _sieve_run(ids, sz, cap, t0, t1, hit, evl, state):
    """Requests [t0, t1) on the state from `_sieve_init` (hits into hit[t0:t1])."""
    prv, nxt, H, T, inc, vis, osz, sc = state
    occ = np.int64(sc[0])
    hand = np.int64(sc[1])
    for t in range(t0, t1):
        i = ids[t]
        if inc[i]:
            hit[t] = 1
            vis[i] = 1
            continue
        s = sz[t]
        while occ + s > cap:
            v = hand if hand >= 0 else T[0]
            while vis[v] > 0:
                vis[v] -= 1
                v = prv[v] if prv[v] >= 0 else T[0]
            hand = prv[v]
            _unlink(prv, nxt, H, T, 0, v)
            inc[v] = False
            occ -= osz[v]
            _ev(evl, t, v)
        _push(prv, nxt, H, T, 0, i)
        inc[i] = True
        vis[i] = 0
        osz[i] = s
        occ += s
    sc[0] = occ
    sc[1] = hand


@njit(cache=True, nogil=True)
def sieve(ids, sz, cap, n_obj, evl=None):
    hit = np.zeros(ids.shape[0], np.uint8)
    _sieve_run(ids, sz, cap, 0, ids.shape[0], hit, evl, _sieve_init(ids, cap, n_obj))
    return hit


@njit(cache=True, inline="always")
def _pop_least(prv, nxt, H, T, minf, hi):
    """LFU lists (one per count): remove the oldest object of the lowest non-empty count;
    returns it and the new lowest non-empty count."""
    v = H[minf]
    _unlink(prv, nxt, H, T, minf, v)
    if H[minf] < 0:
        for g in range(minf + 1, hi + 1):
            if H[g] >= 0:
                return v, g
    return v, minf


@njit(cache=True, inline="always")
def _bump(prv, nxt, H, T, f, i, minf):
    """LFU lists: move object i from count f to f + 1; returns the new lowest non-empty count."""
    _unlink(prv, nxt, H, T, f, i)
    _append(prv, nxt, H, T, f + 1, i)
    return f + 1 if minf == f and H[f] < 0 else minf


@njit(cache=True, nogil=True)
def _lfu_init(ids, cap, n_obj):
    prv, nxt, H, T = _lists(n_obj, np.bincount(ids, minlength=n_obj).max() + 2)
    freq = np.zeros(n_obj, np.int64)
    osz = np.zeros(n_obj, np.int64)
    sc = np.array([0, 1, 1], np.int64)
    return (prv, nxt, H, T, freq, osz, sc)


@njit(cache=True, nogil=True)
def _lfu_run(ids, sz, cap, t0, t1, hit, evl, state):
    """Requests [t0, t1) on the state from `_lfu_init` (hits into hit[t0:t1])."""
    prv, nxt, H, T, freq, osz, sc = state
    occ = np.int64(sc[0])
    minf = np.int64(sc[1])
    hi = np.int64(sc[2])
    for t in range(t0, t1):
        i = ids[t]
        f = freq[i]
        if f > 0:
            hit[t] = 1
            freq[i] = f + 1
            if f + 1 > hi:
                hi = f + 1
            minf = _bump(prv, nxt, H, T, f, i, minf)
            continue
        s = sz[t]
        while occ + s > cap:
            v, minf = _pop_least(prv, nxt, H, T, minf, hi)
            freq[v] = 0
            occ -= osz[v]
            _ev(evl, t, v)
        minf = 1
        freq[i] = 1
        _append(prv, nxt, H, T, 1, i)
        osz[i] = s
        occ += s
    sc[0] = occ
    sc[1] = minf
    sc[2] = hi


@njit(cache=True, nogil=True)
def lfu(ids, sz, cap, n_obj, evl=None):
    """LFU, FIFO among equal frequencies; frequency forgotten on eviction."""
    hit = np.zeros(ids.shape[0], np.uint8)
    _lfu_run(ids, sz, cap, 0, ids.shape[0], hit, evl, _lfu_init(ids, cap, n_obj))
    return hit


@njit(cache=True, nogil=True)
def _plfu_init(ids, cap, n_obj):
    prv, nxt, H, T = _lists(n_obj, np.bincount(ids, minlength=n_obj).max() + 2)
    cnt = np.zeros(n_obj, np.int64)  # requests so far, cached or not
    inc = np.zeros(n_obj, np.bool_)
    osz = np.zeros(n_obj, np.int64)
    sc = np.array([0, 0, 1, 1], np.int64)
    return (prv, nxt, H, T, cnt, inc, osz, sc)


@njit(cache=True, nogil=True)
def _plfu_run(ids, sz, cap, t0, t1, hit, evl, state):
    """Requests [t0, t1) on the state from `_plfu_init` (hits into hit[t0:t1])."""
    prv, nxt, H, T, cnt, inc, osz, sc = state
    occ = np.int64(sc[0])
    nc = np.int64(sc[1])
    minf = np.int64(sc[2])
    hi = np.int64(sc[3])
    for t in range(t0, t1):
        i = ids[t]
        f = cnt[i]
        cnt[i] = f + 1
        if f + 1 > hi:
            hi = f + 1
        if inc[i]:
            hit[t] = 1
            minf = _bump(prv, nxt, H, T, f, i, minf)
            continue
        s = sz[t]
        if s > cap:
            _ev(evl, t, i)
            continue
        while occ + s > cap:
            v, minf = _pop_least(prv, nxt, H, T, minf, hi)
            inc[v] = False
            nc -= 1
            occ -= osz[v]
            _ev(evl, t, v)
        if nc == 0 or f + 1 < minf:
            minf = f + 1
        inc[i] = True
        nc += 1
        _append(prv, nxt, H, T, f + 1, i)
        osz[i] = s
        occ += s
    sc[0] = occ
    sc[1] = nc
    sc[2] = minf
    sc[3] = hi


@njit(cache=True, nogil=True)
def plfu(ids, sz, cap, n_obj, evl=None):
    """Perfect LFU: like `lfu`, but an object's count covers all its requests, also those made
    while it was out of the cache (counts are never forgotten); FIFO among equal counts. Kept for
    the skewed, popularity-driven traces (database lookups) where it beats every policy above."""
    hit = np.zeros(ids.shape[0], np.uint8)
    _plfu_run(ids, sz, cap, 0, ids.shape[0], hit, evl, _plfu_init(ids, cap, n_obj))
    return hit


@njit(cache=True, nogil=True)
def _arc_init(ids, cap, n_obj):
    prv, nxt, H, T = _lists(n_obj, 4)
    where = np.full(n_obj, -1, np.int8)
    osz = np.zeros(n_obj, np.int64)
    L = np.zeros(4, np.int64)  # bytes per list
    sc = np.zeros(1, np.float64)
    return (prv, nxt, H, T, where, osz, L, sc)


@njit(cache=True, nogil=True)
def _arc_run(ids, sz, cap, t0, t1, hit, evl, state):
    """Requests [t0, t1) on the state from `_arc_init` (hits into hit[t0:t1])."""
    T1, T2, B1, B2 = 0, 1, 2, 3
    prv, nxt, H, T, where, osz, L, sc = state
    p = np.float64(sc[0])
    for t in range(t0, t1):
        i = ids[t]
        w = where[i]
        s = sz[t]
        if w == T1 or w == T2:
            hit[t] = 1
            _unlink(prv, nxt, H, T, w, i)
            _push(prv, nxt, H, T, T2, i)
            L[w] -= osz[i]
            L[T2] += osz[i]
            where[i] = T2
            continue
        in_b1 = w == B1
        in_b2 = w == B2
        if in_b1:
            p = min(p + max(L[B2] / L[B1], 1.0), float(cap))
        elif in_b2:
            p = max(p - max(L[B1] / L[B2], 1.0), 0.0)
        if in_b1 or in_b2:
            _unlink(prv, nxt, H, T, w, i)
            L[w] -= osz[i]
            where[i] = -1
        if s > cap:
            _ev(evl, t, i)
            continue
        while L[T1] + L[T2] + s > cap:
            if in_b1 or in_b2:
                _arc_replace(prv, nxt, H, T, where, osz, L, p, in_b2, evl, t)
            elif L[T1] + L[B1] + s > cap:
                if L[B1] > 0:
                    v = T[B1]
                    _unlink(prv, nxt, H, T, B1, v)
                    L[B1] -= osz[v]
                    where[v] = -1
                    _arc_replace(prv, nxt, H, T, where, osz, L, p, in_b2, evl, t)
                else:
                    v = T[T1]
                    _unlink(prv, nxt, H, T, T1, v)
                    L[T1] -= osz[v]
                    where[v] = -1
                    _ev(evl, t, v)
            else:
                if L[0] + L[1] + L[2] + L[3] >= 2 * cap and L[B2] > 0:
                    v = T[B2]
                    _unlink(prv, nxt, H, T, B2, v)
                    L[B2] -= osz[v]
                    where[v] = -1
                _arc_replace(prv, nxt, H, T, where, osz, L, p, in_b2, evl, t)
        q = T2 if (in_b1 or in_b2) else T1
        _push(prv, nxt, H, T, q, i)
        where[i] = q
        osz[i] = s
        L[q] += s
    sc[0] = p


@njit(cache=True, nogil=True)
def arc(ids, sz, cap, n_obj, evl=None):
    """ARC (Megiddo & Modha) with a float p, as libCacheSim implements it."""
    hit = np.zeros(ids.shape[0], np.uint8)
    _arc_run(ids, sz, cap, 0, ids.shape[0], hit, evl, _arc_init(ids, cap, n_obj))
    return hit


@njit(cache=True, nogil=True)
def _arc_replace(prv, nxt, H, T, where, osz, L, p, in_b2, evl, t):
    if (L[0] > 0 and (L[0] > p or (L[0] == p and in_b2))) or L[1] == 0:
        a, b = 0, 2
    else:
        a, b = 1, 3
    v = T[a]
    _unlink(prv, nxt, H, T, a, v)
    L[a] -= osz[v]
    L[b] += osz[v]
    _push(prv, nxt, H, T, b, v)
    where[v] = b
    _ev(evl, t, v)


@njit(cache=True, nogil=True)
def _twoq_init(ids, cap, n_obj):
    prv, nxt, H, T = _lists(n_obj, 3)
    where = np.full(n_obj, -1, np.int8)
    osz = np.zeros(n_obj, np.int64)
    L = np.zeros(3, np.int64)
    return (prv, nxt, H, T, where, osz, L)


@njit(cache=True, nogil=True)
def _twoq_run(ids, sz, cap, t0, t1, hit, evl, state):
    """Requests [t0, t1) on the state from `_twoq_init` (hits into hit[t0:t1])."""
    AIN, AOUT, AM = 0, 1, 2
    ain_cap = np.int64(cap * 0.25)
    aout_cap = np.int64(cap * 0.5)
    am_cap = cap - ain_cap
    prv, nxt, H, T, where, osz, L = state
    for t in range(t0, t1):
        i = ids[t]
        w = where[i]
        s = sz[t]
        if w == AIN:
            hit[t] = 1
            continue
        ghost = False
        if w == AOUT:
            _unlink(prv, nxt, H, T, AOUT, i)
            L[AOUT] -= osz[i]
            where[i] = -1
            ghost = True
        elif w == AM:
            hit[t] = 1
            _unlink(prv, nxt, H, T, AM, i)
            _push(prv, nxt, H, T, AM, i)
            continue
        if s > ain_cap or s > cap:
            _ev(evl, t, i)
            continue
        while L[AIN] + L[AM] + s > cap:
            if L[AIN] > ain_cap:
                v = T[AIN]
                _unlink(prv, nxt, H, T, AIN, v)
                L[AIN] -= osz[v]
                _ev(evl, t, v)
                # ghost insert with FIFO eviction of the ghost queue
                while L[AOUT] + osz[v] > aout_cap and T[AOUT] >= 0:
                    g = T[AOUT]
                    _unlink(prv, nxt, H, T, AOUT, g)
                    L[AOUT] -= osz[g]
                    where[g] = -1
                if osz[v] <= aout_cap:
                    _push(prv, nxt, H, T, AOUT, v)
                    L[AOUT] += osz[v]
                    where[v] = AOUT
                else:
                    where[v] = -1
            else:
                v = T[AM]
                _unlink(prv, nxt, H, T, AM, v)
                L[AM] -= osz[v]
                where[v] = -1
                _ev(evl, t, v)
        if ghost:
            if s <= am_cap:
                while L[AM] + s > am_cap:
                    v = T[AM]
                    _unlink(prv, nxt, H, T, AM, v)
                    L[AM] -= osz[v]
                    where[v] = -1
                    _ev(evl, t, v)
                _push(prv, nxt, H, T, AM, i)
                where[i] = AM
                L[AM] += s
                osz[i] = s
            else:
                _ev(evl, t, i)
        else:
            _push(prv, nxt, H, T, AIN, i)
            where[i] = AIN
            L[AIN] += s
            osz[i] = s


@njit(cache=True, nogil=True)
def twoq(ids, sz, cap, n_obj, evl=None):
    """2Q: Ain FIFO (25%), Aout ghost FIFO (50%), Am LRU (rest), as in libCacheSim."""
    hit = np.zeros(ids.shape[0], np.uint8)
    _twoq_run(ids, sz, cap, 0, ids.shape[0], hit, evl, _twoq_init(ids, cap, n_obj))
    return hit


@njit(cache=True, nogil=True)
def _s3fifo_init(ids, cap, n_obj):
    prv, nxt, H, T = _lists(n_obj, 3)
    where = np.full(n_obj, -1, np.int8)
    freq = np.zeros(n_obj, np.int64)
    osz = np.zeros(n_obj, np.int64)
    L = np.zeros(3, np.int64)
    sc = np.zeros(1, np.bool_)
    return (prv, nxt, H, T, where, freq, osz, L, sc)


@njit(cache=True, nogil=True)
def _s3fifo_run(ids, sz, cap, t0, t1, hit, evl, state):
    """Requests [t0, t1) on the state from `_s3fifo_init` (hits into hit[t0:t1])."""
    S, M, G = 0, 1, 2
    s_cap = np.int64(cap * 0.1)
    m_cap = cap - s_cap
    g_cap = np.int64(cap * 0.9)
    prv, nxt, H, T, where, freq, osz, L, sc = state
    has_evicted = np.bool_(sc[0])
    for t in range(t0, t1):
        i = ids[t]
        w = where[i]
        s = sz[t]
        if w == S or w == M:
            hit[t] = 1
            freq[i] += 1
            continue
        ghost = False
        if w == G:
            _unlink(prv, nxt, H, T, G, i)
            L[G] -= osz[i]
            where[i] = -1
            ghost = True
        if s > s_cap or s > cap:
            _ev(evl, t, i)
            continue
        while L[S] + L[M] + s > cap:
            has_evicted = True
            if L[M] > m_cap or L[S] == 0:
                while L[M] > 0:  # main: 2-bit clock
                    v = T[M]
                    _unlink(prv, nxt, H, T, M, v)
                    if freq[v] >= 1:
                        freq[v] = min(freq[v], 3) - 1
                        _push(prv, nxt, H, T, M, v)
                    else:
                        L[M] -= osz[v]
                        where[v] = -1
                        _ev(evl, t, v)
                        break
            else:
                while L[S] > 0:
                    v = T[S]
                    _unlink(prv, nxt, H, T, S, v)
                    L[S] -= osz[v]
                    if freq[v] >= 2:
                        _push(prv, nxt, H, T, M, v)
                        L[M] += osz[v]
                        where[v] = M
                        freq[v] = 0
                    else:
                        where[v] = -1
                        _ev(evl, t, v)
                        if g_cap > 0 and osz[v] <= g_cap:
                            while L[G] + osz[v] > g_cap:
                                g = T[G]
                                _unlink(prv, nxt, H, T, G, g)
                                L[G] -= osz[g]
                                where[g] = -1
                            _push(prv, nxt, H, T, G, v)
                            L[G] += osz[v]
                            where[v] = G
                        break
        if ghost:
            q = M
        elif s >= s_cap:
            _ev(evl, t, i)
            continue
        elif (not has_evicted) and L[S] >= s_cap:
            q = M
        else:
            q = S
        _push(prv, nxt, H, T, q, i)
        where[i] = q
        L[q] += s
        osz[i] = s
        freq[i] = 0
    sc[0] = has_evicted


@njit(cache=True, nogil=True)
def s3fifo(ids, sz, cap, n_obj, evl=None):
    """S3-FIFO: 10% small FIFO, 90% main FIFO with 2-bit clock, ghost FIFO (90%)."""
    hit = np.zeros(ids.shape[0], np.uint8)
    _s3fifo_run(ids, sz, cap, 0, ids.shape[0], hit, evl, _s3fifo_init(ids, cap, n_obj))
    return hit


@njit(cache=True, nogil=True)
def _lirs_init(ids, cap, n_obj):
    st = np.zeros(8, np.int64)  # lir_b, hir_b, occ, s_bytes, lir_lim, hir_lim
    hir_lim = max(np.int64(1), np.int64(0.01 * cap))
    st[4] = cap - hir_lim
    st[5] = hir_lim
    P = np.full((3, n_obj), -1, np.int64)  # prev per list: S, Q, NH
    N = np.full((3, n_obj), -1, np.int64)
    H = np.full(3, -1, np.int64)
    T = np.full(3, -1, np.int64)
    mem = np.zeros((3, n_obj), np.bool_)
    lir = np.zeros(n_obj, np.bool_)
    res = np.zeros(n_obj, np.bool_)
    osz = np.zeros(n_obj, np.int64)
    return (st, P, N, H, T, mem, lir, res, osz)


@njit(cache=True, nogil=True)
def _lirs_run(ids, sz, cap, t0, t1, hit, evl, state):
    """Requests [t0, t1) on the state from `_lirs_init` (hits into hit[t0:t1])."""
    st, P, N, H, T, mem, lir, res, osz = state
    for t in range(t0, t1):
        i = ids[t]
        s = sz[t]
        in_s = mem[0, i]
        in_q = mem[1, i]
        if in_s:
            _lr_touch(P, N, H, T, 0, i)
        if in_q:
            _lr_touch(P, N, H, T, 1, i)
        if in_s and lir[i]:
            hit[t] = 1
            _lirs_prune(P, N, H, T, mem, lir, res, osz, st, evl, t)
        elif in_s and res[i]:
            hit[t] = 1
            if in_q:
                st[1] -= osz[i]
                _lr_del(P, N, H, T, mem, 1, i)
                st[2] -= osz[i]
            while st[0] + osz[i] > st[4]:
                _lirs_evict_lir(P, N, H, T, mem, lir, res, osz, st, evl, t)
            lir[i] = True
            st[0] += osz[i]
            st[2] += osz[i]
        elif (not in_s) and in_q:
            hit[t] = 1
            while st[0] + osz[i] > st[4]:
                _lirs_evict_lir(P, N, H, T, mem, lir, res, osz, st, evl, t)
            if not mem[1, i]:  # evicted just above, yet it stays resident (as in libCacheSim)
                _ev(evl, t, -1 - i)
            if mem[0, i]:
                _lr_del(P, N, H, T, mem, 0, i)
                st[3] -= osz[i]
            _lr_add(P, N, H, T, mem, 0, i)
            st[3] += osz[i]
            lir[i] = False
            res[i] = True
        else:
            # miss: can_insert, evict while full, insert
            if s > cap:
                _lirs_limit(P, N, H, T, mem, res, osz, st, cap, evl, t)
                _ev(evl, t, i)
                continue
            nr_s = in_s  # non-resident HIR in S
            if nr_s:
                while st[0] + osz[i] > st[4]:
                    _lirs_evict_lir(P, N, H, T, mem, lir, res, osz, st, evl, t)
                if mem[2, i]:
                    _lr_del(P, N, H, T, mem, 2, i)
            else:
                if s > st[4] or s > st[5]:
                    _lirs_limit(P, N, H, T, mem, res, osz, st, cap, evl, t)
                    _ev(evl, t, i)
                    continue
                if st[0] + s > st[4] and st[1] + s > st[5]:
                    while st[1] + s > st[5]:
                        _lirs_evict_hir(P, N, H, T, mem, res, osz, st, evl, t)
            while st[2] + s > cap:
                before = st[2]
                if nr_s and mem[0, i] and not lir[i] and not res[i]:
                    while st[1] >= st[5] and T[1] >= 0:
                        _lirs_evict_hir(P, N, H, T, mem, res, osz, st, evl, t)
                    _lirs_evict_lir(P, N, H, T, mem, lir, res, osz, st, evl, t)
                elif not mem[0, i] and not mem[1, i]:
                    if st[0] + s > st[4] and st[1] + s > st[5]:
                        _lirs_evict_hir(P, N, H, T, mem, res, osz, st, evl, t)
                if st[2] == before:
                    break
            if mem[0, i] and not lir[i] and not res[i]:
                lir[i] = True
                res[i] = True
                st[0] += osz[i]
                st[2] += osz[i]
            elif not mem[0, i] and not mem[1, i]:
                osz[i] = s
                _lr_add(P, N, H, T, mem, 0, i)
                st[3] += s
                res[i] = True
                if st[0] + s <= st[4]:
                    lir[i] = True
                    st[0] += s
                else:
                    lir[i] = False
                    _lr_add(P, N, H, T, mem, 1, i)
                    st[1] += s
                st[2] += s
        _lirs_limit(P, N, H, T, mem, res, osz, st, cap, evl, t)


@njit(cache=True, nogil=True)
def lirs(ids, sz, cap, n_obj, evl=None):
    """LIRS (Jiang & Zhang 2002) with 1% for resident HIR blocks, stack S bounded to 2x the
    cache by dropping non-resident entries (the NH queue): libCacheSim's multi-LRU version."""
    hit = np.zeros(ids.shape[0], np.uint8)
    _lirs_run(ids, sz, cap, 0, ids.shape[0], hit, evl, _lirs_init(ids, cap, n_obj))
    return hit


@njit(cache=True, inline="always")
def _lr_touch(P, N, H, T, q, i):
    if H[q] != i:
        _unlink(P[q], N[q], H, T, q, i)
        _push(P[q], N[q], H, T, q, i)


@njit(cache=True, inline="always")
def _lr_del(P, N, H, T, mem, q, i):
    _unlink(P[q], N[q], H, T, q, i)
    mem[q, i] = False


@njit(cache=True, inline="always")
def _lr_add(P, N, H, T, mem, q, i):
    _push(P[q], N[q], H, T, q, i)
    mem[q, i] = True


@njit(cache=True, inline="always")
def _lr_gone(P, N, H, T, mem, res, v, evl, t):
    """Drop v from the stack S; a resident entry that is in neither S nor Q has left the cache."""
    _lr_del(P, N, H, T, mem, 0, v)
    if res[v] and not mem[1, v]:
        _ev(evl, t, v)


@njit(cache=True, nogil=True)
def _lirs_prune(P, N, H, T, mem, lir, res, osz, st, evl, t):
    while T[0] != H[0]:
        v = T[0]
        if lir[v]:
            break
        if not res[v] and mem[2, v]:
            _lr_del(P, N, H, T, mem, 2, v)
        _lr_gone(P, N, H, T, mem, res, v, evl, t)
        st[3] -= osz[v]


@njit(cache=True, nogil=True)
def _lirs_evict_hir(P, N, H, T, mem, res, osz, st, evl, t):
    v = T[1]
    st[1] -= osz[v]
    _lr_del(P, N, H, T, mem, 1, v)
    if mem[0, v]:
        res[v] = False
        if mem[2, v]:
            _lr_del(P, N, H, T, mem, 2, v)
        _lr_add(P, N, H, T, mem, 2, v)
    st[2] -= osz[v]
    _ev(evl, t, v)


@njit(cache=True, nogil=True)
def _lirs_evict_lir(P, N, H, T, mem, lir, res, osz, st, evl, t):
    v = T[0]
    st[0] -= osz[v]
    _lr_del(P, N, H, T, mem, 0, v)
    st[3] -= osz[v]
    st[2] -= osz[v]
    if osz[v] <= st[5]:
        while st[1] + osz[v] > st[5]:
            _lirs_evict_hir(P, N, H, T, mem, res, osz, st, evl, t)
        if mem[1, v]:
            _lr_del(P, N, H, T, mem, 1, v)
        _lr_add(P, N, H, T, mem, 1, v)
        st[1] += osz[v]
        st[2] += osz[v]
    else:
        _ev(evl, t, v)
    lir[v] = False
    res[v] = True
    _lirs_prune(P, N, H, T, mem, lir, res, osz, st, evl, t)


@njit(cache=True, nogil=True)
def _lirs_limit(P, N, H, T, mem, res, osz, st, cap, evl, t):
    while st[3] > 2 * cap and T[2] >= 0:
        v = T[2]
        _lr_del(P, N, H, T, mem, 2, v)
        if mem[0, v]:
            _lr_gone(P, N, H, T, mem, res, v, evl, t)
            st[3] -= osz[v]


@njit(cache=True, nogil=True)
def _heap_push(hk, hv, n, k, v):
    j = n
    hk[j] = k
    hv[j] = v
    while j > 0:
        p = (j - 1) >> 1
        if hk[p] >= hk[j]:
            break
        hk[p], hk[j] = hk[j], hk[p]
        hv[p], hv[j] = hv[j], hv[p]
        j = p
    return n + 1


@njit(cache=True, nogil=True)
def _heap_pop(hk, hv, n):
    n -= 1
    hk[0] = hk[n]
    hv[0] = hv[n]
    j = 0
    while True:
        l = 2 * j + 1
        if l >= n:
            break
        c = l
        if l + 1 < n and hk[l + 1] > hk[l]:
            c = l + 1
        if hk[c] <= hk[j]:
            break
        hk[c], hk[j] = hk[j], hk[c]
        hv[c], hv[j] = hv[j], hv[c]
        j = c
    return n


@njit(cache=True, nogil=True)
def belady(ids, sz, cap, n_obj, nxt_pos):
    """Belady's OPT: evict the object whose next request is furthest away (never = first)."""
    n = ids.shape[0]
    hk = np.empty(n + 1, np.int64)
    hv = np.empty(n + 1, np.int64)
    hn = 0
    inc = np.zeros(n_obj, np.bool_)
    key = np.zeros(n_obj, np.int64)
    osz = np.zeros(n_obj, np.int64)
    hit = np.zeros(n, np.uint8)
    occ = 0
    for t in range(n):
        i = ids[t]
        k = nxt_pos[t]
        if k < 0:
            k = n + t  # never again: furthest, ties broken by recency
        if inc[i]:
            hit[t] = 1
            key[i] = k
            hn = _heap_push(hk, hv, hn, k, i)
            continue
        s = sz[t]
        while occ + s > cap:
            while True:
                kk = hk[0]
                v = hv[0]
                hn = _heap_pop(hk, hv, hn)
                if inc[v] and key[v] == kk:
                    break
            inc[v] = False
            occ -= osz[v]
        inc[i] = True
        key[i] = k
        osz[i] = s
        occ += s
        hn = _heap_push(hk, hv, hn, k, i)
    return hit


# the same policies, resumable: state = init(ids, cap, n_obj); run(ids, sz, cap, t0, t1, hit,
# evl, state) serves requests [t0, t1) (the whole-trace kernels above are init + one run)
RESUMABLE = {"fifo": (_fifo_lru_init, _fifo_run), "lru": (_fifo_lru_init, _lru_run),
             "clock": (_clock_init, _clock_run), "lfu": (_lfu_init, _lfu_run), "arc": (_arc_init, _arc_run),
             "2q": (_twoq_init, _twoq_run), "lirs": (_lirs_init, _lirs_run),
             "s3fifo": (_s3fifo_init, _s3fifo_run), "sieve": (_sieve_init, _sieve_run),
             "plfu": (_plfu_init, _plfu_run)}
CLASSIC = {"fifo": fifo, "lru": lru, "clock": clock, "lfu": lfu, "arc": arc, "2q": twoq,
           "lirs": lirs, "s3fifo": s3fifo, "sieve": sieve, "plfu": plfu}
