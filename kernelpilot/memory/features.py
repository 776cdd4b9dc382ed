"""Per-request features for learned replacement: what is known about an object when it is
requested. All are log2(1 + x) so trees split on orders of magnitude.

  delta1..3  the last three gaps between requests to the object (virtual time; NEVER if unseen)
  freq       requests to the object so far (this one included, saturating at 16)
  size       object size in bytes
  mean_gap   mean gap since the object was first seen (a stationary rate estimate)
"""
from __future__ import annotations

import numpy as np
from numba import njit

NAMES = ["delta1", "delta2", "delta3", "freq", "size", "mean_gap"]
N_FEAT = 6
NEVER = 40.0  # log2 of "no such gap": larger than any real one
FREQ_CAP = 16  # counts saturate, so old objects look like the training data


@njit(cache=True, inline="always")
def lg(x):
    return np.log2(1.0 + x)


@njit(cache=True, inline="always")
def update(o, t, s, last, d1, d2, cnt, out, first, seen):
    """Record request t to object o (size s) and write its features into out[0:6]."""
    if last[o] >= 0:
        gap = t - last[o]
        out[0] = lg(gap)
        out[1] = d1[o]
        out[2] = d2[o]
        d2[o] = d1[o]
        d1[o] = lg(gap)
    else:
        out[0] = NEVER
        out[1] = NEVER
        out[2] = NEVER
        d1[o] = NEVER
        d2[o] = NEVER
    if cnt[o] < FREQ_CAP:
        cnt[o] += 1
    out[3] = lg(cnt[o])
    out[4] = lg(s)
    if seen[o] == 0:
        first[o] = t
        out[5] = NEVER
    else:
        out[5] = lg((t - first[o]) / seen[o])
    seen[o] += 1
    last[o] = t


@njit(cache=True)
def table(ids, sz, n_obj):
    """Feature rows for every request (n x N_FEAT float64)."""
    n = ids.shape[0]
    X = np.empty((n, N_FEAT), np.float64)
    first = np.zeros(n_obj, np.int64)
    seen = np.zeros(n_obj, np.int64)
    last = np.full(n_obj, -1, np.int64)
    d1 = np.zeros(n_obj, np.float64)
    d2 = np.zeros(n_obj, np.float64)
    cnt = np.zeros(n_obj, np.int64)
    for t in range(n):
        update(ids[t], t, sz[t], last, d1, d2, cnt, X[t], first, seen)
    return X


def distance_target(nxt: np.ndarray) -> np.ndarray:
    """log2 of the distance to the object's next request; NEVER-ish for none."""
    n = len(nxt)
    dist = np.where(nxt < 0, 4 * n, nxt - np.arange(n))
    return np.log2(1.0 + dist)
