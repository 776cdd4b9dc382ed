"""`mix`: an online expert follower within a fraction of a point of miss ratio of its best expert
(follow the leader with hysteresis, rebuilding the cache from the leader's shadow on a switch).

Every expert (S3-FIFO and ARC, which lead on most real traces, LIRS for loops, LRU, Perfect LFU
for skewed popularity, the other classics the bench lists, so that the mixture never trails the
best classic by more than its bound, and the learned LRB predictor) runs as a shadow cache of the
full size over the same requests, logging what it evicts, so its contents are known at every
request. The real cache is always a copy of one expert, the leader: it serves request t as the
leader does. The leader is the expert with the fewest misses counted since every expert became available (the
learned one from the end of its training prefix, where its hits stop being in-sample); a
challenger takes over when it has `MARGIN` cache sizes fewer misses than the leader (hysteresis:
near-tied experts do not take turns). One more expert is virtual: a tracker that follows whichever
expert has the fewest misses decayed over `TRACK_HALF` cache sizes (its contents are that
expert's), so phases where different experts lead can be won (below every fixed expert) while the
bound against the best fixed expert stays. On a switch the real cache drops what the new leader does
not hold and fetches what it holds and the real cache does not (`fetched`, reported apart: it is
traffic that no request asked for, at most one cache size per switch). So the mixture's misses
are the leaders' misses: over the span since every expert became available they are at most
the best expert's plus (switches + 1) x (hysteresis + 1) (follow the leader: a leader starts as
the best and is left within a miss over the hysteresis of it); the price is the fetched traffic.
Copying a leader's contents on demand instead (the follower before this one) lost up to 7 points
on ARC's P3: the learned expert's edge lies in objects it has held for long, and the real cache
only got them back one miss at a time. Everything is online: each choice uses requests before it.

Speed (`serve`): running every expert costs their sum per request, so experts far behind stop for
good (successive elimination: `eliminate`, a Hoeffding width with the confidence split over the
checks, after a warm-up); a stopped expert cannot be resumed, so the bound above holds over the
experts kept, and the rule only guarantees to keep the best expert where requests are
independent draws. The classics run side by side a chunk at a time (policies.RESUMABLE); the
learned expert runs to its check, and on to the end only if kept (its run resumed, not redone).
"""
from __future__ import annotations

import math
import os
from typing import NamedTuple

import numpy as np
from numba import njit

from kernelpilot.memory import policies
from kernelpilot.memory.models import MIX_LEARNED as LEARNED  # the learned expert

# 2Q, CLOCK, LFU, FIFO and SIEVE lead some dev cells (OLTP, P2, orm-busy, sprite) by up to 0.9
# points over the five before them; with them mix is below the best classic in 26 of the 65 cells
# with room (23 without), at twice the cost per request
EXPERTS = ("s3fifo", "arc", "lirs", "lru", "plfu", "2q", "clock", "lfu", "fifo", "sieve")
# hysteresis in cache sizes of misses, chosen on the dev traces (500 k request prefixes x
# 1/5/10/20%, the bench's cells): 0.005 had a worst regret of 0.3 points; 0.003 cut it to 0.2 at
# 12% more fetched traffic, 0.01 let it grow to 0.6, counts of 1-16 misses flapped between
# near-tied experts (P2 at 20%: fetched more than a request's worth per request)
MARGIN = 0.005
# the tracker: half-life and switching lead in cache sizes. On the same cells the mixture was below
# the best classic in 23 of the 65 cells with room (7 without the tracker, 28 with half-life 1,
# whose flapping let the worst regret double to 0.6 points) at the same worst regret (0.3)
TRACK_HALF, TRACK_MARGIN = 2.0, 0.05
TRACKER = "tracker"


# successive elimination (see `eliminate`): the experts are compared once they have each seen
# WARM requests and WARM_CACHES cache sizes, with confidence DELTA, the requests taken in dependent
# blocks of BLOCK; an expert found behind never runs again. On the 80 dev cells (full runs replayed
# offline) the best expert of the scored half was pruned in 3 cells with one request per block and
# WARM alone (3.5-4.1 points lost on P2 and P3, where 100 k requests are 2-5 cache sizes: still
# cold), in none with these; on orm-busy (2 M requests, 10%) the experts then cost 20% of their
# full runs
WARM, WARM_CACHES, BLOCK, DELTA = 100_000, 20, 2, 1e-3
CHUNK = 16_384  # requests the experts serve between two checks
# chunks the experts serve in one call, the checks then made at each chunk's end (an expert found
# behind has its surplus undone: the same hits): interleaving them a chunk at a time thrashed
# their states (vote on orm-busy, 2 M requests: the shadows 267-355 ms against 205)
SPAN = 4


class Followed(NamedTuple):
    hit: np.ndarray  # per request, the mixture's hit flag (uint8)
    led: dict  # requests the real cache copied each expert (and were led by the tracker)
    switches: int  # changes of leader (the tracker counts as one expert)
    copies: int  # changes of the expert copied (each may fetch up to a cache)
    fetched: np.ndarray  # per request, what a change just before it fetched (objects' sizes)
    pruned: dict = {}  # expert -> request from which it no longer ran (successive elimination)
    hits: np.ndarray | None = None  # the experts' hits (rows as `names`; a pruned one's end at its prune)
    names: tuple = ()


def width(m: int, k: int, delta: float = DELTA, block: int = BLOCK) -> float:
    """Misses by which the truly best of k experts may trail another after m requests, with
    probability at most delta, where blocks of `block` requests are independent draws (the
    independent reference model for block=1): each block adds a difference in [-block, block] of
    mean <= 0 to (best's misses - other's), so Hoeffding bounds each of the k - 1 sums by
    sqrt(2 m block ln((k - 1) / delta)) (union bound)."""
    return math.sqrt(2.0 * m * block * math.log(max(k - 1, 1) / delta))


def eliminate(misses: np.ndarray, m: int, delta: float = DELTA) -> np.ndarray:
    """Successive elimination at one checkpoint: experts (misses over the same m requests) that
    trail the fewest by more than `width` -> mask of the ones to drop. Never drops all of them."""
    misses = np.asarray(misses, np.int64)
    return misses - misses.min() > width(m, len(misses), delta)


def learned_expert(policy: str, tr, sz, cap: int, model):
    """The learned expert as mix runs it: fn(evl, end=None) -> its hits on requests [0, end),
    logging into evl with the trace's dense ids. A prefix is served as the start of the full
    run (models.Run: the policy looks only back, so the same hits and log as the full run's
    first `end` requests); fn.resume() then serves the rest of that run, into the same log, and
    returns its hits over the whole trace, so a kept expert is not run again from the start."""
    from kernelpilot.memory import models
    runs = []

    def fn(evl, end=None):
        r = models.Run(policy, tr, sz, cap, model, evl)
        if end is None or end >= len(sz):
            return r.to(len(sz))
        runs[:] = [r]  # kept for resume (its state: the kernel's, its feature rows)
        return r.to(end)[:end].copy()

    def resume():
        return runs.pop().to(len(sz))
    fn.prefix_ok = True
    fn.resume = resume
    return fn


def expert_logs(d, sz, cap: int, n_obj: int, learned=None, experts=EXPERTS, threads: int | None = None):
    """Run the experts in full; returns (names, hits (k x n uint8), eviction logs (k x (n + 2) x 2,
    one per expert: row 0 counts the rows that follow)).
    threads: how many at once (default: one per core; their kernels release the GIL)."""
    from concurrent.futures import ThreadPoolExecutor
    runs = [(e, lambda evl, e=e: policies.CLASSIC[e](d, sz, cap, n_obj, evl)) for e in experts]
    if learned is not None:
        runs.append((LEARNED, learned))
    logs = _logs(len(runs), len(d))
    workers = threads or min(len(runs), os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        hits = list(pool.map(lambda fn, evl: fn(evl), [fn for _, fn in runs], list(logs)))
    return [name for name, _ in runs], np.stack(hits), logs


def _logs(k: int, n: int) -> np.ndarray:
    logs = np.empty((k, n + 2, 2), np.int64)  # pages are touched only as rows are written
    logs[:, 0, 0] = 0
    return logs


def serve(d, sz, cap: int, n_obj: int, learned=None, margin: float = MARGIN, experts=EXPERTS,
          learned_from: int = 0, track: bool = True, prune: bool = True, warm: int | None = None,
          delta: float = DELTA, chunk: int = CHUNK, threads: int | None = 1) -> Followed:
    """The mixture with successive elimination. The classic experts run side by side, `chunk`
    requests at a time (policies.RESUMABLE); after each chunk from request `warm` on (default:
    WARM requests, at least WARM_CACHES cache sizes of mean-size objects), those
    that `eliminate` drops (misses since the start) stop for good. The j-th check uses
    confidence delta / (j (j + 1)), so that the checks together keep the best expert with
    probability >= 1 - delta under the independent reference model. The learned expert (a
    `learned_expert`, or any fn(evl)) runs to `learned_from + warm` and is compared over
    [learned_from, learned_from + warm) with the classics still running then; kept, it runs in
    full. The follower follows each expert while it runs; its bound (misses <= the best kept
    expert's + (switches + 1) x (hysteresis + 1)) holds over the experts kept.
    prune=False: every expert in full."""
    n = len(d)
    names = tuple(experts) + ((LEARNED,) if learned is not None else ())
    k, kc = len(names), len(experts)
    if warm is None:
        warm = max(WARM, int(WARM_CACHES * cap / max(1.0, float(sz.mean()))))
    hits, logs, until = shadows(d, sz, cap, n_obj, experts, prune, warm, delta, chunk,
                                threads or min(k, os.cpu_count() or 1), k)
    if learned is not None:
        cl = min(n, learned_from + warm)
        cut = prune and cl < n and getattr(learned, "prefix_ok", False)
        if cut:
            hits[k - 1, :cl] = learned(logs[k - 1], cl)
            rows = [e for e in range(kc) if until[e] >= cl] + [k - 1]  # the classics running at cl, lrb
            m = (cl - learned_from) - hits[rows, learned_from:cl].sum(1, dtype=np.int64)
            if eliminate(m, cl - learned_from, delta)[-1]:
                until[k - 1] = cl
        if until[k - 1] == n and cut and hasattr(learned, "resume"):
            hits[k - 1] = learned.resume()  # kept: its run goes on from cl
        elif until[k - 1] == n:
            logs[k - 1, 0, 0] = 0
            hits[k - 1] = learned(logs[k - 1])
    f = follow(names, hits, logs, d, sz, cap, n_obj, margin, learned_from, track, until)
    return f._replace(pruned={names[e]: int(until[e]) for e in range(k) if until[e] < n}, hits=hits,
                      names=names)


def shadows(d, sz, cap: int, n_obj: int, experts=EXPERTS, prune: bool = True, warm: int | None = None,
            delta: float = DELTA, chunk: int = CHUNK, threads: int = 1, rows: int | None = None):
    """The classic experts side by side, `chunk` requests at a time (policies.RESUMABLE), `threads`
    at once; after each chunk from request `warm` on (default as serve's), those that `eliminate`
    drops (misses since the start) stop for good (prune=False: none). -> (hits, eviction logs,
    until: per expert the request from which it no longer ran), with `rows` rows (default: one
    per expert; serve leaves the last for its learned expert)."""
    from concurrent.futures import ThreadPoolExecutor
    n, kc = len(d), len(experts)
    k = rows or kc
    if warm is None:
        warm = max(WARM, int(WARM_CACHES * cap / max(1.0, float(sz.mean()))))
    hits = np.zeros((k, n), np.uint8)
    logs = _logs(k, n)
    until = np.full(k, n, np.int64)
    runs = [policies.RESUMABLE[e][1] for e in experts]
    states = [policies.RESUMABLE[e][0](d, cap, n_obj) for e in experts]
    # one thread: the kernels run here (a pool's hand-off per chunk cost vote a fifth of its time)
    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
    alive, misses, checks = list(range(kc)), np.zeros(kc, np.int64), 0
    for s0 in range(0, n, chunk * SPAN):
        s1 = min(n, s0 + chunk * SPAN)
        if pool is None:
            for e in alive:
                runs[e](d, sz, cap, s0, s1, hits[e], logs[e], states[e])
        else:
            list(pool.map(lambda e: runs[e](d, sz, cap, s0, s1, hits[e], logs[e], states[e]), alive))
        for t0 in range(s0, s1, chunk):  # the checks, at each chunk's end as before
            t1 = min(n, t0 + chunk)
            for e in alive:
                misses[e] += (t1 - t0) - int(hits[e, t0:t1].sum())
            if prune and warm <= t1 < n and len(alive) > 1:
                checks += 1
                drop = eliminate(misses[alive], t1, delta / (checks * (checks + 1)))
                for e in [e for e, x in zip(alive, drop) if x]:
                    until[e] = t1
                    _cut(hits[e], logs[e], t1, s1)
                alive = [e for e, x in zip(alive, drop) if not x]
    if pool is not None:
        pool.shutdown()
    return hits, logs, until


def _cut(hit, log, t1: int, s1: int) -> None:
    """Undo an expert's run on requests [t1, s1) (it stopped at t1 within a span): its hits there
    0 and its log's rows from t1 on dropped, as if it had stopped at t1."""
    hit[t1:s1] = 0
    c = int(log[0, 0])
    log[0, 0] = int(np.searchsorted(log[1:c + 1, 0], t1, "left"))


def follow(names, hits, logs, d, sz, cap: int, n_obj: int, margin: float = MARGIN,
           learned_from: int = 0, track: bool = True, until=None) -> Followed:
    """The follower over the experts' hits and logs (from expert_logs). The learned expert may
    lead from request `learned_from` on (where its training data ends: before, its hits are
    in-sample and would flatter it); all counts restart there. track: add the tracker.
    until: per expert, the request from which it no longer runs (pruned; default: none)."""
    k = len(names)
    since = np.array([learned_from if nm == LEARNED else 0 for nm in names], np.int64)
    until = np.full(k, len(d), np.int64) if until is None else np.asarray(until, np.int64)
    if not (isinstance(logs, np.ndarray) and logs.ndim == 3):  # a list of logs: stack them
        stacked = np.zeros((k, max(int(lg[0, 0]) for lg in logs) + 1, 2), np.int64)
        for e, lg in enumerate(logs):
            stacked[e, :int(lg[0, 0]) + 1] = lg[:int(lg[0, 0]) + 1]
        logs = stacked
    mean_sz = max(1.0, float(sz.mean()))
    trk = np.zeros(0, np.int64)
    if track:
        window = max(64.0, TRACK_HALF * cap / mean_sz)
        trk, trk_hit = _track(hits, 2.0 ** (-1.0 / window), TRACK_MARGIN * cap / mean_sz, since, until)
        since, until = np.append(since, 0), np.append(until, len(d))
    else:
        trk_hit = np.zeros(0, np.uint8)
    hit, led_n, copied_n, switches, copies, fetched = _follow(
        d, sz, n_obj, hits, trk_hit, logs, max(1.0, margin * cap / mean_sz), since, until, trk)
    led = dict(zip(names, copied_n[:k].tolist()))
    if track:
        led[TRACKER] = int(led_n[k])
    return Followed(hit, led, int(switches), int(copies), fetched)


def run(d, sz, cap: int, n_obj: int, learned=None, margin: float = MARGIN, experts=EXPERTS,
        threads: int | None = None, learned_from: int = 0, track: bool = True, prune: bool = True):
    """Hit flags of the mixture and requests copied per expert; `learned(evl)` runs the learned
    expert with an eviction log. The first expert leads until another is ahead."""
    f = serve(d, sz, cap, n_obj, learned, margin, experts, learned_from, track, prune, threads=threads)
    return f.hit, f.led


@njit(cache=True, nogil=True)
def _track(hits, decay, margin, since, until):
    """The tracker: follows the expert with the fewest decayed misses once it leads by `margin`
    (an expert that stopped running, at once); the learned expert starts level with the leader.
    -> (expert copied, hit) per request."""
    k, n = hits.shape
    miss = np.zeros(k, np.float64)
    alive = np.ones(k, np.bool_)
    lead = 0
    leaders = np.zeros(n, np.int64)
    hit = np.zeros(n, np.uint8)
    for t in range(n):
        for e in range(k):
            if until[e] == t:
                alive[e] = False
        best = lead
        if not alive[lead]:
            for e in range(k):
                if alive[e] and since[e] <= t:
                    best = e
                    break
        for e in range(k):
            if since[e] == t and t > 0:
                miss[e] = miss[best]
            if alive[e] and since[e] <= t and miss[e] < miss[best]:
                best = e
        if not alive[lead] or miss[lead] - miss[best] > margin:
            lead = best
        leaders[t] = lead
        hit[t] = hits[lead, t]
        for e in range(k):
            if alive[e]:
                miss[e] = miss[e] * decay + (1 - hits[e, t])
    return leaders, hit


@njit(cache=True, nogil=True)
def _follow(ids, sz, n_obj, hits, trk_hit, logs, margin, since, until, trk):
    """hits: the experts' rows; trk_hit (when `trk` is not empty) the tracker's, whose contents at
    request t are those of expert trk[t]. An expert is followed while it runs (t < until).
    -> (hit, requests led per expert, requests copied per expert, switches, copies, fetched)"""
    kr, n = hits.shape
    k = kr + 1 if trk.shape[0] else kr
    mem = np.zeros((n_obj, kr), np.bool_)  # their contents, replayed from their logs (by object)
    lsz = np.zeros(n_obj, np.int64)  # each object's size at its last request
    ptr = np.ones(kr, np.int64)  # next row of each log
    miss = np.zeros(k, np.int64)  # misses since every expert became available
    alive = np.ones(k, np.bool_)
    act = np.arange(kr)  # the real experts still running: act[:na]
    na = kr
    lead = 0
    row = 0  # the expert the real cache copies
    switches = 0
    hit = np.zeros(n, np.uint8)
    led = np.zeros(k, np.int64)
    copied = np.zeros(k, np.int64)
    copies = 0
    fetched = np.zeros(n, np.int64)
    for t in range(n):
        for j in range(na - 1, -1, -1):
            e = act[j]
            if until[e] == t:
                alive[e] = False
                na -= 1
                act[j:na] = act[j + 1:na + 1].copy()
        best = lead
        if not alive[lead]:
            for e in range(k):
                if alive[e] and since[e] <= t:
                    best = e
                    break
        for e in range(k):
            if since[e] == t and t > 0:
                miss[:] = 0
            if alive[e] and since[e] <= t and miss[e] < miss[best]:
                best = e
        if not alive[lead] or miss[lead] - miss[best] > margin:
            lead = best
            switches += 1
        new = trk[t] if lead >= kr else lead
        if new != row:
            # the real cache becomes a copy of `new`: fetch what it holds that `row` did not
            f = 0
            for v in range(n_obj):
                if mem[v, new] and not mem[v, row]:
                    f += lsz[v]
            fetched[t] = f
            if t > 0:
                copies += 1
            row = new
        led[lead] += 1
        copied[row] += 1
        hit[t] = hits[lead, t] if lead < kr else trk_hit[t]
        x = ids[t]
        lsz[x] = sz[t]
        for j in range(na):
            e = act[j]
            miss[e] += 1 - hits[e, t]
        if k > kr:
            miss[kr] += 1 - trk_hit[t]
        for j in range(na):
            e = act[j]
            if hits[e, t] == 0:
                mem[x, e] = True  # admitted, or not and logged as gone at once below
            while ptr[e] <= logs[e, 0, 0] and logs[e, ptr[e], 0] == t:
                v = logs[e, ptr[e], 1]
                ptr[e] += 1
                if v < 0:  # -1 - x: x is back in the cache (LIRS keeps a block it just evicted)
                    mem[-1 - v, e] = True
                else:
                    mem[v, e] = False
    return hit, led, copied, switches, copies, fetched
