"""Thresholds from more normal traces than calibration holds: the training traces cross-fitted.

Fixed on 2026-12-04 (21:30 UTC) from UNM's training and calibration traces only (no intrusion read;
its author had seen `bench security --quick --only unm` at 4901660, whose verdicts were those of
the runs before). Why: `metrics.threshold` at 1% keeps floor(0.01 n) of n calibration scores above
it, so a new normal trace exchangeable with them passes it with probability (floor(0.01 n) + 1) /
(n + 1): live_lpr's 113 traces 1.75%, synth_sendmail's 40 2.4%, xlock's 14 6.7%, login's and ps's
5 16.7%. `conformal_threshold` keeps 1% only from n = 99 up. And xlock's normal profile is far from
full: 29 of its 43 training traces hold a 6-gram no other one holds, 10 of its 14 calibration traces
one unseen in training, so the largest of 14 calibration scores is passed by a new normal trace one
time in 15, and one of 14 test normals over it is what chance gives.

The rule: a detector whose scores cannot rise as its training set grows (MONOTONE: tables of seen
grams or contexts; the trace score and the stream only fall as a table fills) also scores its
training traces cross-fitted: dealt into FOLDS folds by a fixed seed, each fold scored by the
detector refitted on the others. A fold model saw less than the full one, so its score of a held-out
trace is at least what the full model gives a trace like it: pooled with the calibration scores, the
conformal threshold over the pool keeps its bound with n = training + calibration traces (xlock 57,
live_lpr 453). Other detectors (rarity's counts, freq, tree, lm, cnn) pool nothing. A fused rule is
pooled where every part of it is MONOTONE (its z-scores and combinations increase with each part)."""
from __future__ import annotations

import numpy as np

from kernelpilot.security.metrics import Scored, conformal_threshold
from kernelpilot.security.sequence import scored

MONOTONE = ("mismatch", "lfc", "hamming", "stide", "novelty")
FOLDS = 5


def folds(n: int, seed: int = 0, k: int = FOLDS) -> np.ndarray:
    """Each training trace's fold, 0..k-1 (a fixed permutation dealt round-robin)."""
    out = np.empty(n, dtype=np.int64)
    out[np.random.default_rng(seed).permutation(n)] = np.arange(n) % k
    return out


def crossfit(make, seqs, seed: int = 0, k: int = FOLDS) -> list[Scored] | None:
    """Every training sequence scored by make() fitted on the other folds; None with fewer than k."""
    if len(seqs) < k:
        return None
    f = folds(len(seqs), seed, k)
    out: list = [None] * len(seqs)
    for j in range(k):
        idx = np.flatnonzero(f == j)
        det = make().fit([seqs[i] for i in np.flatnonzero(f != j)], seed)
        for i, s in zip(idx, scored(det, [seqs[i] for i in idx])):
            out[i] = s
    return out


def pooled_thresholds(cal: list[Scored], extra: list[Scored] | None, fpr: float = 0.01) -> dict:
    """Conformal thresholds over the calibration and pooled traces: offline and on stream maxima."""
    pool = list(cal) + list(extra or [])
    return {"offline": conformal_threshold([s.score for s in pool], fpr),
            "streaming": conformal_threshold([float(s.stream.max()) for s in pool], fpr), "n_pool": len(pool)}
