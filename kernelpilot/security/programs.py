"""Per-program normal behaviour: each program (keyed by comm) gets its own table of normal n-grams;
a window scores the share of its n-grams that program never made. Programs seen too little in
training fall back to the global stide table. The live confirm uses this together with the global
model, so a window is confirmed only when it is unusual for the whole host and for its own program."""
from __future__ import annotations

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.security.detectors import _member, without
from kernelpilot.security.features import STRIDE, WINDOW, Trace, ngram_hashes, window_means

MIN_CALLS = 400  # below this a program's own table is too thin to judge by: use the global one
# A program's threshold: this quantile of its own held-out windows (not their maximum: one odd
# held-out window of `python`, which runs many different scripts, once raised its bar above every
# window of the ransomware scenario's encryption loop)
PROGRAM_Q = 0.999


class Programs:
    def __init__(self, n: int = 6, window: int = WINDOW, stride: int = STRIDE, min_calls: int = MIN_CALLS,
                 skip=(), vocab=None):
        """skip: syscall names left out before n-grams (as the host's Stide), by vocab's ids."""
        self.n, self.window, self.stride, self.min_calls = n, window, stride, min_calls
        self.skip, self.vocab = tuple(skip), vocab
        self.tables: dict[str, np.ndarray] = {}
        self.calls: dict[str, int] = {}
        self.fallback = np.zeros(0, dtype=np.uint64)
        self.thresholds: dict[str, float] = {}  # per program, from held-out normal windows
        self.base = 0.0                          # the floor (floor()); no program goes below

    @staticmethod
    def key(comm: str) -> str:
        """Programs by name; comm is cut to 15 bytes by the kernel, so keys are too."""
        return comm.encode()[:15].decode(errors="ignore")

    def fit(self, traces: list[Trace], seqs: list[np.ndarray]) -> "Programs":
        grams: dict[str, list[np.ndarray]] = {}
        for t, s in zip(traces, seqs):
            k = self.key(t.comm)
            s = self.kept(s)
            grams.setdefault(k, []).append(ngram_hashes(s, self.n))
            self.calls[k] = self.calls.get(k, 0) + len(s)
        self.tables = {k: np.unique(np.concatenate(g)) for k, g in grams.items() if self.calls[k] >= self.min_calls}
        self.fallback = np.unique(np.concatenate([g for gs in grams.values() for g in gs]))
        return self

    def table(self, comm: str) -> np.ndarray:
        return self.tables.get(self.key(comm), self.fallback)

    def known(self, comm: str) -> bool:
        return self.key(comm) in self.tables

    def kept(self, seq: np.ndarray) -> np.ndarray:
        return without(seq, self.vocab, self.skip) if self.skip else seq

    def window_scores(self, seq: np.ndarray, comm: str) -> np.ndarray:
        novel = (~_member(ngram_hashes(self.kept(seq), self.n), self.table(comm))).astype(np.float64)
        return window_means(novel, self.window, self.stride)

    def calibrate(self, traces: list[Trace], seqs: list[np.ndarray], q: float = 0.999,
                  q_program: float = PROGRAM_Q) -> "Programs":
        """Thresholds: the floor, the global q-quantile of held-out normal windows robust to any one
        program (floor()), raised per program to the q_program-quantile of its own held-out windows."""
        per: dict[str, list[np.ndarray]] = {}
        for t, s in zip(traces, seqs):
            k = self.key(t.comm) if self.known(t.comm) else ""
            per.setdefault(k, []).append(self.window_scores(s, t.comm))
        if not per:
            return self
        self.base = floor({k: np.concatenate(ws) for k, ws in per.items()}, q)
        self.thresholds = {k: max(self.base, float(np.quantile(np.concatenate(ws), q_program)))
                           for k, ws in per.items() if k}
        return self

    def threshold(self, comm: str) -> float:
        return self.thresholds.get(self.key(comm), self.base)

    def params(self) -> dict:
        return {"n": self.n, "min_calls": self.min_calls, "skip": list(self.skip), "calls": self.calls, "base": self.base,
                "thresholds": self.thresholds,
                "fallback": [int(x) for x in self.fallback],
                "tables": {k: [int(x) for x in v] for k, v in self.tables.items()}}

    @classmethod
    def load(cls, p: dict, window: int = WINDOW, stride: int = STRIDE, vocab=None) -> "Programs":
        try:
            me = cls(int(p["n"]), window, stride, int(p["min_calls"]), tuple(str(x) for x in p.get("skip", ())),
                     vocab)
            me.calls = {str(k): int(v) for k, v in p["calls"].items()}
            me.fallback = np.array(p["fallback"], dtype=np.uint64)
            me.tables = {str(k): np.array(v, dtype=np.uint64) for k, v in p["tables"].items()}
            me.base = float(p["base"])
            me.thresholds = {str(k): float(v) for k, v in p["thresholds"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise KpError(f"per-program tables in the model are corrupt ({type(e).__name__})") from None
        return me


def floor(per: dict[str, np.ndarray], q: float) -> float:
    """The q-quantile of the held-out windows of all programs, robust to any single one: the lowest
    such quantile with one program's windows left out. One program whose held-out windows are novel
    for it (a threaded server's threads, cut apart differently in training) otherwise lifts every
    program's threshold with it, up to 1.0, where no window can pass."""
    allw = np.concatenate(list(per.values()))
    base = float(np.quantile(allw, q))
    if len(per) < 2:
        return base
    for k in per:
        rest = np.concatenate([w for j, w in per.items() if j != k])
        if len(rest):
            base = min(base, float(np.quantile(rest, q)))
    return base
