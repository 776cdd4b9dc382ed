"""How the lm turns per-call negative log-likelihoods (NLL) into a trace score and a stream, and
how that rule is chosen: on the chooser's dev cells only, never on a test split.

Written down on 2026-12-04 (05:30 UTC), before any test run with it. The lm's whole-trace mean
ranks well (FHIDS test AUC 0.96) but catches little at 1% of normal traces: a short foreign stretch
in a long trace moves the mean little. The candidate grid, fixed here:
- `mean`: the mean NLL per call (the rule until now); stream: the mean over the last `swin` calls;
- `win:W`, W in 8, 16, 32, 64, 128: the largest mean NLL over W consecutive calls (the mean for a
  trace of at most W calls); stream: that window mean at every call from the W-th on (a shorter
  trace: once, at its end), so the stream's largest value is the trace score and a streaming
  alarm comes at the first window crossing;
- `share:q`, q in 0.99, 0.999: the share of a trace's calls whose NLL exceeds the q-quantile of
  per-call NLLs on training traces (`LM.cuts`, set at fit on up to CUT_CALLS training calls);
  stream: that share over the last `swin` calls.

The rule for choosing (`choose`): per dev cell (FHIDS: per leave-services-out fold, `whole` and
`spliced`, the lm refitted with the test fit's settings; UNM: this program's lm, the other programs'
traces whole and spliced into its calibration traces), each candidate's DR at 1% of the cell's
normals and AUC, J = (DR + AUC) / 2 (kernelpilot.security.chooser). Chosen: the candidate with the
largest mean J over the cells; a candidate other than `mean` only where its mean J beats `mean`'s by
chooser.MARGIN (0.01), else `mean`; ties go to the earlier in the grid. No dev cells: `mean`.
Since 2026-12-04 18:50 UTC (before any test run with it) only rules passing chooser.eligible's
guards are candidates (every cell's normals scored with >= RES_MIN of the finest rule's distinct
values: a `share` rule scores every repeat of a common training trace 0; mean dev AUC within
AUC_MARGIN of the best rule's); `mean` not among them: the best eligible rule."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.security import chooser as C

GRID = ("mean", "win:8", "win:16", "win:32", "win:64", "win:128", "share:0.99", "share:0.999")
DEFAULT = "mean"
CUT_QS = (0.99, 0.999)
CUT_CALLS = 200_000   # per-call training NLLs the share cuts are taken from (a fixed random subset)


@dataclass
class Calls:
    """One trace's per-call NLLs with the cuts of the model that scored them (dev cells)."""
    nll: np.ndarray
    cuts: dict


def check(rule: str) -> str:
    if rule not in GRID:
        raise KpError(f"lm rule '{rule}' is not one of {', '.join(GRID)}")
    return rule


def _moving(pos, k):
    c = np.concatenate([[0.0], np.cumsum(pos, dtype=np.float64)])
    i = np.arange(1, len(pos) + 1)
    lo = np.maximum(i - k, 0)
    return (c[i] - c[lo]) / (i - lo)


def _flags(nll, rule, cuts) -> np.ndarray:
    q = rule.split(":", 1)[1]
    if q not in cuts:
        raise KpError(f"lm rule {rule}: the model has no training cut for {q} (retrain it)")
    return (np.asarray(nll) > cuts[q]).astype(np.float64)


def trace_score(nll, rule: str, cuts: dict) -> float:
    nll = np.asarray(nll, dtype=np.float64)
    if not len(nll):
        return 0.0
    if rule == "mean":
        return float(nll.mean())
    if rule.startswith("win:"):
        w = int(rule[4:])
        if len(nll) <= w:
            return float(nll.mean())
        c = np.concatenate([[0.0], np.cumsum(nll)])
        return float(((c[w:] - c[:-w]) / w).max())
    return float(_flags(nll, rule, cuts).mean())


def stream(nll, rule: str, cuts: dict, swin: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions = calls seen, scores) of the stream for the rule."""
    nll = np.asarray(nll, dtype=np.float64)
    n = len(nll)
    if rule.startswith("win:"):
        w = int(rule[4:])
        if n <= w:
            return np.array([n]), np.array([float(nll.mean()) if n else 0.0])
        c = np.concatenate([[0.0], np.cumsum(nll)])
        return np.arange(w, n + 1), (c[w:] - c[:-w]) / w
    pos = nll if rule == "mean" else _flags(nll, rule, cuts)
    return np.arange(1, n + 1), _moving(pos, swin)


def choose(cells) -> dict:
    """The rule by the protocol above. cells: [(name, [Calls of dev normals], [Calls of dev novel])]."""
    cells = [c for c in cells if len(c[1]) and len(c[2])]
    if not cells:
        return {"rule": DEFAULT, "why": "no dev cells: the mean kept", "dev": {}}
    normal = {n: {r: [trace_score(x.nll, r, x.cuts) for x in nor] for r in GRID} for n, nor, _ in cells}
    novel = {n: {r: [trace_score(x.nll, r, x.cuts) for x in nov] for r in GRID} for n, _, nov in cells}
    fig = {n: C.cell_figures(normal[n], novel[n], GRID, lambda r, z: z[r], lambda v: (0.0, 1.0)) for n in normal}
    j = {r: float(np.mean([(fig[n][r][0] + fig[n][r][1]) / 2 for n in fig])) for r in GRID}
    elig, res = C.eligible(fig, GRID, GRID)
    best = max(elig, key=lambda r: (j[r], -GRID.index(r)))
    rule = best if DEFAULT not in elig or j[best] >= j[DEFAULT] + C.MARGIN else DEFAULT
    return {"rule": rule, "best_by_j": best, "eligible": elig,
            "dev": {r: {"j": round(j[r], 4), "dr_1pct": round(float(np.mean([fig[n][r][0] for n in fig])), 4),
                        "resolution": round(res[r], 4),
                        "auc": round(float(np.mean([fig[n][r][1] for n in fig])), 4),
                        "cells": {n: [round(fig[n][r][0], 4), round(fig[n][r][1], 4)] for n in fig}} for r in GRID},
            "cells": {n: [len(nor), len(nov)] for n, nor, nov in cells},
            "criterion": f"eligible rules only (chooser.eligible: resolution >= {C.RES_MIN}, mean AUC within "
                         f"{C.AUC_MARGIN} of the best); largest mean J = (DR@1% + AUC) / 2 over the dev cells; not "
                         f"'mean' unless it gains {C.MARGIN} or is not eligible; ties: the earlier in {list(GRID)}"}
