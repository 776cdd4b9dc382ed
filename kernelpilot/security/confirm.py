"""Stage 2 for a batch of windows from the ring, vectorized: every record's calls (the window and
its context, oldest first) right-aligned in one (m, 64) array, 6-gram hashes per position exactly
as features.ngram_hashes computes them on the record's calls, novelty against the host's stide
table, the model's table of the program and the program's live profile."""
from __future__ import annotations

import numpy as np

from kernelpilot.security.detectors import _member
from kernelpilot.security.syscalls import UNKNOWN, number_to_name

MULT = np.uint64(1000003)


class BatchScorer:
    def __init__(self, model, stide, ctx: int = 64, window: int = 32):
        names = number_to_name("x86_64")
        # syscall number (u16 in the record) -> vocabulary id + 1; 0 is "before the first call"
        self.ids = np.array([model.vocab.index.get(names.get(nr, UNKNOWN), 0) + 1 for nr in range(1 << 16)],
                            dtype=np.uint64)
        self.n, self.table, self.ctx, self.window = stide.n, stide.table, ctx, window

    def hashes(self, calls: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(m, ctx) n-gram hashes, right-aligned, and the (m,) number of calls each row holds."""
        m, c = calls.shape
        n = np.minimum(counts.astype(np.int64), c)
        col = np.arange(c)[None, :] - (c - n)[:, None]          # source column per target position
        ids = np.where(col >= 0, self.ids[np.take_along_axis(calls, np.maximum(col, 0), 1)], np.uint64(0))
        h = np.zeros((m, c), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for k in range(self.n):
                sh = np.zeros_like(ids)
                sh[:, k:] = ids[:, :c - k]
                h = h * MULT + sh
        return h, n

    def window_mask(self, n: np.ndarray) -> np.ndarray:
        """(m, window) True where the last-window position holds a call."""
        w = np.minimum(n, self.window)
        return np.arange(self.window)[None, :] >= (self.window - w)[:, None]

    @staticmethod
    def share(novel: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return (novel & mask).sum(1) / np.maximum(mask.sum(1), 1)

    def novel(self, h: np.ndarray, table: np.ndarray) -> np.ndarray:
        return ~_member(h.ravel(), table).reshape(h.shape)
