"""Stage 2 for a batch of windows from the ring, vectorized: every record's calls (the window and
its context, oldest first) right-aligned in one (m, 64) array, 6-gram hashes per position exactly
as features.ngram_hashes computes them on the record's calls, novelty against the host's stide
table, the model's table of the program and the program's live profile."""
from __future__ import annotations

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.security.detectors import _member
from kernelpilot.security.syscalls import UNKNOWN, number_to_name

MULT = np.uint64(1000003)


class BatchScorer:
    def __init__(self, model, stide=None, ctx: int = 64, window: int = 32):
        """stide: the host's stide detector (None: hashes only, for the program profiles). The calls
        the model's stide and program tables skip (Stide.skip) are left out of every row here too."""
        names = number_to_name("x86_64")
        # syscall number (u16 in the record) -> vocabulary id + 1; 0 is "before the first call"
        self.ids = np.array([model.vocab.index.get(names.get(nr, UNKNOWN), 0) + 1 for nr in range(1 << 16)],
                            dtype=np.uint64)
        progs = model.programs
        self.n = stide.n if stide is not None else (progs.n if progs is not None else 6)
        if progs is not None and progs.n != self.n:
            raise KpError(f"the model's stide uses {self.n}-grams, the program profiles {progs.n}-grams")
        skip = stide.skip if stide is not None else (progs.skip if progs is not None else ())
        if progs is not None and set(progs.skip) != set(skip):
            raise KpError("the model's stide and program profiles skip different calls")
        # by vocabulary id + 1, as Stide.kept: a skipped name the vocabulary lacks is an unknown call
        self.skipped = np.zeros(len(model.vocab) + 1, dtype=bool)
        self.skipped[[model.vocab.index[s] + 1 for s in skip if s in model.vocab.index]] = True
        self.table = stide.table if stide is not None else np.zeros(0, dtype=np.uint64)
        self.ctx, self.window = ctx, window

    def ids_of(self, calls: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(m, ctx) vocabulary ids + 1 of the calls kept (not skipped), right-aligned (0 before
        them), and the (m,) number of calls each row holds."""
        m, c = calls.shape
        n = np.minimum(counts.astype(np.int64), c)
        ids = self.ids[calls]
        short = np.flatnonzero(n < c)
        if len(short):  # a record from a trace start: its n calls move to the end, zeros before
            col = np.arange(c)[None, :] - (c - n[short])[:, None]
            ids[short] = np.where(col >= 0, np.take_along_axis(ids[short], np.maximum(col, 0), 1), np.uint64(0))
        drop = self.skipped[ids]
        rows = np.flatnonzero(drop.any(1))
        if len(rows):  # the kept calls close up to the right, in order
            d, r = drop[rows], ids[rows]
            r = np.take_along_axis(r, np.argsort(~d & (r > 0), axis=1, kind="stable"), 1)
            n = n.copy()
            n[rows] -= d.sum(1)
            r[np.arange(c)[None, :] < (c - n[rows])[:, None]] = 0
            ids[rows] = r
        return ids, n

    def whole(self, n: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """(m, ctx) True where a row's n-gram is whole: every kept call of a record from a trace
        start (the zeros before it are the start), else those with n - 1 kept calls before them."""
        first = self.ctx - n + np.where(counts <= self.ctx, 0, self.n - 1)
        return np.arange(self.ctx)[None, :] >= first[:, None]

    def grams(self, ids: np.ndarray, first: int = 0) -> np.ndarray:
        """n-gram hashes of columns first.. (as ngram_hashes: h = h * MULT + the call k back;
        uint64 arithmetic wraps)."""
        lo = max(first - (self.n - 1), 0)
        sub = ids[:, lo:]
        h = sub.copy()
        for k in range(1, self.n):
            h *= MULT
            h[:, k:] += sub[:, :-k]
        return h[:, first - lo:]

    def hashes(self, calls: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(m, ctx) n-gram hashes, right-aligned, and the (m,) number of calls each row holds."""
        ids, n = self.ids_of(calls, counts)
        return self.grams(ids), n

    def window_mask(self, n: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
        """(m, window) True where the last-window position holds a call (with counts: a call whose
        n-gram is whole, see whole(); calls skipped can leave a record's context short of it)."""
        if counts is not None:
            return self.whole(n, counts)[:, self.ctx - self.window:]
        w = np.minimum(n, self.window)
        return np.arange(self.window)[None, :] >= (self.window - w)[:, None]

    @staticmethod
    def share(novel: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return (novel & mask).sum(1) / np.maximum(mask.sum(1), 1)

    @staticmethod
    def novel(h: np.ndarray, table: np.ndarray) -> np.ndarray:
        """h not in the sorted table (a binary search: the tables are small enough for the cache)."""
        return ~_member(h.ravel(), table).reshape(h.shape)

