"""Synthetic task mixes (interactive, I/O-bound, batch) for models and the simulator.

A workload is each task's sequence of CPU bursts and the sleeps that follow them. Replaying it
through the CFS-like simulator with `trace=True` gives sched_switch/sched_wakeup events in the
foundation's schema, so the same feature code runs on synthetic and recorded traces.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kernelpilot.errors import KpError

US, MS, S = 1_000, 1_000_000, 1_000_000_000
LATENCY, BATCH = 1, 0  # class labels


@dataclass
class Workload:
    """Tasks as burst/sleep sequences (ns). sleeps[i][k] follows bursts[i][k]."""
    pids: np.ndarray
    start: np.ndarray
    bursts: list[np.ndarray]
    sleeps: list[np.ndarray]
    weight: np.ndarray
    label: np.ndarray  # LATENCY or BATCH (-1 unknown)
    comm: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.pids)

    def total_burst(self) -> int:
        return int(sum(int(b.sum()) for b in self.bursts))


def _regime_bursts(rng, n, medians, stay=0.9, sigma=0.35):
    """Bursts from a sticky Markov chain over regimes: the structure a learned predictor can use."""
    state = rng.integers(len(medians))
    out = np.empty(n)
    for k in range(n):
        if rng.random() > stay:
            state = rng.integers(len(medians))
        out[k] = medians[state] * rng.lognormal(0.0, sigma)
    return out


def _task(rng, kind, horizon):
    if kind == "interactive":  # short handling bursts, frame-like periodic sleeps
        n = int(horizon / (8 * MS)) + 4
        b = _regime_bursts(rng, n, [80 * US, 400 * US, 1.5 * MS], stay=0.85)
        s = rng.choice([4 * MS, 8 * MS, 16 * MS]) * rng.uniform(0.8, 1.2, n)
    elif kind == "io":  # short bursts between device waits
        n = int(horizon / (2 * MS)) + 4
        b = _regime_bursts(rng, n, [30 * US, 150 * US], stay=0.95, sigma=0.5)
        s = rng.exponential(2 * MS, n) + 200 * US
    elif kind == "chatty":  # batch that syncs often: medium bursts, short waits
        n = int(horizon / (12 * MS)) + 4
        b = _regime_bursts(rng, n, [6 * MS, 15 * MS], stay=0.9)
        s = rng.exponential(0.5 * MS, n) + 50 * US
    elif kind == "hog":  # never sleeps
        return np.array([int(horizon * 2)]), np.array([10 * US])
    else:  # batch: long CPU phases
        n = int(horizon / (150 * MS)) + 4
        b = _regime_bursts(rng, n, [60 * MS, 250 * MS], stay=0.8, sigma=0.5)
        s = rng.exponential(1 * MS, n) + 100 * US
    return b.astype(np.int64).clip(5 * US), s.astype(np.int64).clip(10 * US)


def generate(seed: int = 0, n_interactive: int = 4, n_io: int = 4, n_batch: int = 3, n_chatty: int = 1,
             horizon_s: float = 2.0, n_hog: int = 0) -> Workload:
    """A reproducible task mix. Batch tasks demand more CPU than there is, as on a loaded host."""
    rng = np.random.default_rng(seed)
    horizon = int(horizon_s * S)
    kinds = ["interactive"] * n_interactive + ["io"] * n_io + ["batch"] * n_batch + ["chatty"] * n_chatty + ["hog"] * n_hog
    bursts, sleeps = [], []
    for k in kinds:
        b, s = _task(rng, k, horizon)
        bursts.append(b)
        sleeps.append(s)
    n = len(kinds)
    label = np.array([LATENCY if k in ("interactive", "io") else BATCH for k in kinds])
    if not kinds:
        raise KpError("empty task mix")
    return Workload(pids=np.arange(1000, 1000 + n, dtype=np.int64),
                    start=rng.integers(0, 20 * MS, n).astype(np.int64),
                    bursts=bursts, sleeps=sleeps, weight=np.full(n, 1024, dtype=np.int64),
                    label=label, comm=kinds)
