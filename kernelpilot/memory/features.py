"""Per-request features for learned replacement: what is known about an object when it is
requested (LRB's deltas plus EDC-like decayed counters). Gaps are log2(1 + x), so trees split on
orders of magnitude; gaps and half-lives are in requests.

  delta1..6  the last six gaps between requests to the object (NEVER if there were fewer)
  edc1..4    decayed request counters, c = 1 + c * 2^(-gap / h), half-lives h = cache x 1/4, 1, 4, 16
  freq       requests to the object so far (this one included, saturating at 16)
  size       object size in bytes
"""
from __future__ import annotations

import numpy as np
from numba import njit

N_DELTA, N_EDC = 6, 4
NAMES = [f"delta{k + 1}" for k in range(N_DELTA)] + [f"edc{k + 1}" for k in range(N_EDC)] + ["freq", "size"]
N_FEAT = len(NAMES)
NEVER = 40.0  # log2 of "no such gap": larger than any real one
FREQ_CAP = 16  # counts saturate, so old objects look like the training data
EDC_HALF = (0.25, 1.0, 4.0, 16.0)


def half_lives(cap: int) -> np.ndarray:
    return np.array([max(1.0, h * cap) for h in EDC_HALF])


@njit(cache=True)
def state_nb(n_obj):
    """Per-object state: last request, saved deltas, decayed counters, counts."""
    return (np.full(n_obj, -1, np.int64), np.full((n_obj, N_DELTA), NEVER),
            np.zeros((n_obj, N_EDC)), np.zeros(n_obj, np.int64))


@njit(cache=True, inline="always")
def update(o, t, s, last, dl, edc, cnt, hl, out):
    """Record request t to object o (size s); write its features into out[0:N_FEAT]."""
    if last[o] >= 0:
        gap = t - last[o]
        for k in range(N_DELTA - 1, 0, -1):
            dl[o, k] = dl[o, k - 1]
        dl[o, 0] = np.log2(1.0 + gap)
        for k in range(N_EDC):
            edc[o, k] = 1.0 + edc[o, k] * 2.0 ** (-gap / hl[k])
    else:
        for k in range(N_EDC):
            edc[o, k] = 1.0
    last[o] = t
    for k in range(N_DELTA):
        out[k] = dl[o, k]
    for k in range(N_EDC):
        out[N_DELTA + k] = edc[o, k]
    if cnt[o] < FREQ_CAP:
        cnt[o] += 1
    out[N_DELTA + N_EDC] = np.log2(1.0 + cnt[o])
    out[N_DELTA + N_EDC + 1] = np.log2(1.0 + s)


@njit(cache=True)
def _table(ids, sz, hl, last, dl, edc, cnt):
    X = np.empty((ids.shape[0], N_FEAT), np.float64)
    for t in range(ids.shape[0]):
        update(ids[t], t, sz[t], last, dl, edc, cnt, hl, X[t])
    return X


def table(ids, sz, n_obj: int, cap: int) -> np.ndarray:
    """Feature rows for every request (n x N_FEAT float64)."""
    return _table(ids, sz, half_lives(cap), *state_nb(n_obj))


def distance(nxt: np.ndarray, cap_at: float) -> np.ndarray:
    """Distance (requests) to each request's next request of the same object, capped at
    `cap_at` (beyond it every object is equally good to evict: LRB's relaxed Belady boundary)."""
    n = len(nxt)
    return np.where(nxt < 0, cap_at, np.minimum(nxt - np.arange(n), cap_at)).astype(np.float64)
