"""Per-request features for learned replacement: what is known about an object when it is
requested (LRB's deltas plus EDC-like decayed counters) and about its group (for page traces the
file: the request id is inode << 28 | page). Gaps are log2(1 + x), so trees split on orders of
magnitude; gaps and half-lives are in requests.

  delta1..6  the last six gaps between requests to the object (NEVER if there were fewer)
  edc1..4    decayed request counters, c = 1 + c * 2^(-gap / h), half-lives h = cache x 1/4, 1, 4, 16
  freq       requests to the object so far (this one included), log2(1 + n), not capped
  size       object size in bytes
  gdelta     gap since the group's previous request
  gedc       the group's decayed request counter (half-life one cache size)
  greuse     share of the group's requests so far that were re-requests (a file scanned once: 0)
  gpages     distinct objects of the group seen so far
  seq        1 when the object follows the group's previous object (page + 1: a sequential read)
  rate       mean gap over the object's life (since its first request), log2: its popularity

freq and rate count every request, cached or not (Perfect LFU's signal): they let a model keep
the popular objects of a skewed trace. With freq capped at 16 and no rate, lrb was below the best
classic policy in 5 of 13 bench cells with room to Belady; with them, in 8.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from kernelpilot.traces.requests import groups

N_DELTA, N_EDC = 6, 4
NAMES = ([f"delta{k + 1}" for k in range(N_DELTA)] + [f"edc{k + 1}" for k in range(N_EDC)] +
         ["freq", "size", "gdelta", "gedc", "greuse", "gpages", "seq", "rate"])
N_FEAT = len(NAMES)
NEVER = 40.0  # log2 of "no such gap": larger than any real one
EDC_HALF = (0.25, 1.0, 4.0, 16.0)
LN2 = math.log(2.0)


# gaps and counts below TAB read log2(1 + x) and the counters' decays from a table (update's own
# expressions, computed once a run: the same bits at a fraction of a log2's and four exps' cost)
TAB = 4096


def half_lives(cap: int) -> np.ndarray:
    """update's constants: row 0 the counters' half-lives, then the group counter's decay over
    one request (update's own expression for a gap of 1: most group gaps are 1); row 1 + x for
    x < TAB: log2(1 + x), then each counter's decay over a gap of x."""
    hl = [max(1.0, h * cap) for h in EDC_HALF]
    return _tables(np.array(hl + [math.exp(-1 * LN2 / hl[1])]))


@njit(cache=True)
def _tables(head):
    out = np.empty((TAB + 1, N_EDC + 1))
    out[0] = head
    for x in range(TAB):
        out[1 + x, 0] = math.log2(1.0 + x)
        for k in range(N_EDC):
            out[1 + x, 1 + k] = math.exp(-x * LN2 / head[k])
    return out


@njit(cache=True, inline="always")
def _log2_1p(x, hl):
    """log2(1 + x) for an integer x >= 0 (from the table below TAB)."""
    return hl[1 + x, 0] if x < TAB else math.log2(1.0 + x)


@njit(cache=True)
def state_nb(n_obj, n_grp):
    """Per-object state (last request, deltas, decayed counters, (requests, first request)) and per-group state
    (last request, decayed counter, requests, re-requests, last page)."""
    return (np.full(n_obj, -1, np.int64), np.full((n_obj, N_DELTA), NEVER),
            np.zeros((n_obj, N_EDC)), np.zeros((n_obj, 2), np.int64),
            np.full(n_grp, -1, np.int64), np.zeros(n_grp), np.zeros((n_grp, 2), np.int64),
            np.full(n_grp, -2, np.int64))


@njit(cache=True)
def update(o, g, pg, t, s, last, dl, edc, cnt, glast, gedc, gcnt, gpg, hl, out, row):
    """Record request t to object o (size s, group g, page pg); write its features into out[row]
    (the table and its row, not a row's view: a view costs two atomic reference counts)."""
    first = last[o] < 0
    if not first:
        gap = t - last[o]
        for k in range(N_DELTA - 1, 0, -1):
            dl[o, k] = dl[o, k - 1]
        if gap < TAB:
            dl[o, 0] = hl[1 + gap, 0]
            for k in range(N_EDC):
                edc[o, k] = 1.0 + edc[o, k] * hl[1 + gap, 1 + k]
        else:
            dl[o, 0] = math.log2(1.0 + gap)
            for k in range(N_EDC):
                edc[o, k] = 1.0 + edc[o, k] * math.exp(-gap * LN2 / hl[0, k])
    else:
        for k in range(N_EDC):
            edc[o, k] = 1.0
    last[o] = t
    for k in range(N_DELTA):
        out[row, k] = dl[o, k]
    for k in range(N_EDC):
        out[row, N_DELTA + k] = edc[o, k]
    if first:
        cnt[o, 1] = t
    cnt[o, 0] += 1
    j = N_DELTA + N_EDC
    out[row, j] = _log2_1p(cnt[o, 0], hl)
    out[row, j + 1] = 1.0 if s == 1 else math.log2(1.0 + s)  # log2(2) is exactly 1
    if glast[g] >= 0:
        ggap = t - glast[g]
        if ggap == 1:  # the same values as below, without a log2 and an exp
            out[row, j + 2] = 1.0
            gedc[g] = 1.0 + gedc[g] * hl[0, N_EDC]
        elif ggap < TAB:
            out[row, j + 2] = hl[1 + ggap, 0]
            gedc[g] = 1.0 + gedc[g] * hl[1 + ggap, 2]
        else:
            out[row, j + 2] = math.log2(1.0 + ggap)
            gedc[g] = 1.0 + gedc[g] * math.exp(-ggap * LN2 / hl[0, 1])
    else:
        out[row, j + 2] = NEVER
        gedc[g] = 1.0
    glast[g] = t
    gcnt[g, 0] += 1
    if not first:
        gcnt[g, 1] += 1
    out[row, j + 3] = gedc[g]
    out[row, j + 4] = gcnt[g, 1] / gcnt[g, 0]
    out[row, j + 5] = _log2_1p(gcnt[g, 0] - gcnt[g, 1], hl)
    out[row, j + 6] = 1.0 if pg == gpg[g] + 1 else 0.0
    out[row, j + 7] = math.log2((1.0 + t - cnt[o, 1]) / cnt[o, 0])  # mean gap over the object's life
    gpg[g] = pg


@njit(cache=True)
def _table(ids, grp, page, sz, hl, last, dl, edc, cnt, glast, gedc, gcnt, gpg):
    X = np.empty((ids.shape[0], N_FEAT), np.float64)
    for t in range(ids.shape[0]):
        update(ids[t], grp[t], page[t], t, sz[t], last, dl, edc, cnt, glast, gedc, gcnt, gpg, hl, X, t)
    return X


def table(ids, raw_ids, sz, n_obj: int, cap: int) -> np.ndarray:
    """Feature rows for every request (n x N_FEAT float64)."""
    g, pg, n_grp = groups(raw_ids)
    return _table(ids, g, pg, sz, half_lives(cap), *state_nb(n_obj, n_grp))


def distance(nxt: np.ndarray, cap_at: float) -> np.ndarray:
    """Distance (requests) to each request's next request of the same object, capped at
    `cap_at` (beyond it every object is equally good to evict: LRB's relaxed Belady boundary)."""
    n = len(nxt)
    return np.where(nxt < 0, cap_at, np.minimum(nxt - np.arange(n), cap_at)).astype(np.float64)
