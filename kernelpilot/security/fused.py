"""Rarity, and the fused detector: lm + mismatch + rarity + novelty, kept only where it beats its parts.

- rarity: how rare a trace's n-grams were in training: per call -log((count + 0.5) / total) (a
  gram never seen scores highest, one seen once next); the stream is the mean over the last
  `frame` calls, the trace its worst run of `frame` calls (attacks are local; a trace shorter
  than that: its mean). Where mismatch gives every seen gram 0, rarity still separates the
  common from the once-seen.
- fused: each part's score becomes a calibrated z-score (its calibration normals' median and 99th
  percentile: z = (x - median) / (p99 - median)), and the rule combines them: the mean or the
  maximum of the parts' z, or one part alone. The rule is chosen on dev cells made of normal
  traces only (never the test split) by kernelpilot.security.chooser: folds that leave groups
  out, each with whole foreign traces and with foreign calls spliced into normal ones; detection
  at 1% and AUC weighed alike, and a combination kept only where it beats each of its parts in
  every cell and the best part by a margin; otherwise fused is its best part."""
from __future__ import annotations

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.security import chooser as C
from kernelpilot.security import detectors as D
from kernelpilot.security.metrics import Scored, auc, threshold
from kernelpilot.security.sequence import LM, Mismatch, Novelty, moving_mean

PARTS = ("lm", "mismatch", "rarity", "novelty")
DEV_CALLS = 2000     # per-service and UNM dev traces are judged on their first 2,000 calls
DEV_FOLDS = 3        # groups left out in 3 folds


def worst_run(pos: np.ndarray, k: int) -> float:
    """The largest mean over k consecutive values (the mean when there are at most k)."""
    if not len(pos):
        return 0.0
    if len(pos) <= k:
        return float(pos.mean())
    c = np.concatenate([[0.0], np.cumsum(pos, dtype=np.float64)])
    return float(((c[k:] - c[:-k]) / k).max())


class Rarity(Mismatch):
    kind = "rarity"

    def __init__(self, vocab, n: int = 6, frame: int = 30, **kw):
        super().__init__(vocab, n=n, frame=frame, **kw)
        self.counts = np.zeros(0, dtype=np.int64)
        self.total = 0

    def fit(self, seqs, seed=0):
        if not seqs or not sum(len(s) for s in seqs):
            raise KpError("the rarity detector needs normal traces with calls to train on (the profile is empty)")
        g = np.concatenate([self.grams(s) for s in seqs if len(s)])
        self.table, self.counts = np.unique(g, return_counts=True)
        self.total = int(len(g))
        return self

    def position_scores(self, seq):
        g = self.grams(seq)
        if not len(self.table):
            return np.zeros(len(g))
        i = np.minimum(np.searchsorted(self.table, g), len(self.table) - 1)
        cnt = np.where(self.table[i] == g, self.counts[i], 0)
        return -np.log((cnt + 0.5) / (self.total + 0.5))

    def trace_score(self, seq):
        return worst_run(self.position_scores(seq), self.frame)

    def scored(self, seq) -> Scored:
        pos = self.position_scores(seq)
        return Scored(worst_run(pos, self.frame), np.arange(1, len(pos) + 1), moving_mean(pos, self.frame))

    def params(self):
        return {**super().params(), "counts": [int(x) for x in self.counts], "total": self.total}

    def load(self, p):
        super().load(p)
        self.counts, self.total = np.array(p["counts"], dtype=np.int64), int(p["total"])
        if len(self.counts) != len(self.table):
            raise KpError("rarity detector: counts and table differ in length")
        return self


def normaliser(normal) -> tuple[float, float]:
    """(median, p99 - median) of normal scores: z = (x - median) / scale."""
    v = np.asarray(normal, dtype=np.float64)
    if not len(v):
        return 0.0, 1.0
    med = float(np.median(v))
    scale = float(np.quantile(v, 0.99)) - med
    return med, scale if scale > 1e-12 else 1.0


WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9)  # a pair's weighted rules: the first part's weight


def candidates(parts) -> list[str]:
    """Rules: each part alone, then 'mean:a+b(+c)' and 'max:...' over every subset of two or more,
    and for every pair the weighted ones: 'wmean:a+b@w' (w z_a + (1 - w) z_b) and 'wmax:a+b@w' (an
    OR of the parts, max(w z_a, (1 - w) z_b): a alarms past t / w, b past t / (1 - w))."""
    parts = [p for p in PARTS if p in parts]
    out = list(parts)
    pairs = [[a, b] for i, a in enumerate(parts) for b in parts[i + 1:]]
    subsets = pairs if len(parts) == 2 else [parts] + pairs
    if len(parts) >= 2:
        for s in subsets:
            out += [f"mean:{'+'.join(s)}", f"max:{'+'.join(s)}"]
        for a, b in pairs:
            out += [f"{how}:{a}+{b}@{w:g}" for how in ("wmean", "wmax") for w in WEIGHTS]
    return out


def rule_parts(rule: str) -> list[str]:
    return rule.split(":", 1)[1].split("@")[0].split("+") if ":" in rule else [rule]


def combine(rule: str, z: dict[str, np.ndarray]) -> np.ndarray:
    """Apply a rule to z-scores (arrays of the same shape per part)."""
    ps = rule_parts(rule)
    if ":" not in rule:
        return np.asarray(z[rule], dtype=np.float64)
    stack = np.stack([np.asarray(z[p], dtype=np.float64) for p in ps])
    how = rule.split(":", 1)[0]
    if how in ("wmean", "wmax"):
        w = float(rule.rsplit("@", 1)[1])
        stack = stack * np.array([w, 1 - w]).reshape(2, *([1] * (stack.ndim - 1)))
        return stack.sum(axis=0) if how == "wmean" else stack.max(axis=0)
    return stack.mean(axis=0) if how == "mean" else stack.max(axis=0)


def choose(dev_normal: dict[str, np.ndarray], dev_novel: dict[str, np.ndarray]) -> dict:
    """The rule on one dev cell (per part, trace scores of dev normal and dev novel traces)."""
    return choose_cells([("all", dev_normal, dev_novel)])


def choose_cells(cells) -> dict:
    """The rule on dev cells [(name, {part: normal scores}, {part: novel scores})] by
    kernelpilot.security.chooser's protocol; every candidate's dev figures beside it."""
    parts = [p for p in PARTS if cells and p in cells[0][1]]
    if not parts:
        raise KpError(f"the fused detector needs at least one of {', '.join(PARTS)}")
    return C.choose_cells(cells, candidates(parts), rule_parts, combine, normaliser)


def leave_groups_out(train, cal, vocab, parts, group, score, max_calls=None, seed=0, part_kw=None, **make_kw):
    """Dev cells of normal traces only (kernelpilot.security.chooser): groups (services, programs)
    dealt round-robin into DEV_FOLDS folds; per fold the parts are refitted on the other groups'
    training traces (part_kw: {part: settings}, those of the fit judged on test) and
    score(detector, seqs) the calibration traces (first max_calls calls). Normal: the other
    groups' calibration traces; `whole` novel: the fold's calibration traces not identical to a
    remaining training trace; `spliced` novel: the normal ones with chooser.SPLICE calls of those.
    Returns ([(cell name, {part: normal scores}, {part: novel scores})], description)."""
    groups = sorted({group(t) for t in train})
    folds = [groups[i::DEV_FOLDS] for i in range(min(DEV_FOLDS, len(groups)))]
    if len(folds) < 2:
        return [], "fewer than two groups: no dev split"
    cal_seqs = [vocab.encode(t.calls[:max_calls]) for t in cal]
    cells = []
    for hold in folds:
        keep = [t for t in train if group(t) not in hold]
        seen = {tuple(t.calls[:max_calls]) for t in keep}
        seqs = [vocab.encode(t.calls[:max_calls]) for t in keep]
        nov = [i for i, t in enumerate(cal) if group(t) in hold and tuple(t.calls[:max_calls]) not in seen]
        nor = [i for i, t in enumerate(cal) if group(t) not in hold]
        mixed = C.spliced([cal_seqs[i] for i in nor], [cal_seqs[i] for i in nov])
        sc = {}
        for p in parts:
            det = part_kinds()[p](vocab, **dict(make_kw, **(part_kw or {}).get(p, {}))).fit(seqs, seed)
            sc[p] = (np.asarray(score(det, cal_seqs)), np.asarray(score(det, mixed)) if mixed else np.zeros(0))
        name = "+".join(hold)
        cells.append((f"{name}:whole", {p: v[0][nor] for p, v in sc.items()}, {p: v[0][nov] for p, v in sc.items()}))
        cells.append((f"{name}:spliced", {p: v[0][nor] for p, v in sc.items()}, {p: v[1] for p, v in sc.items()}))
    kw = "; ".join(f"{p} {k}" for p, k in (part_kw or {}).items() if p in parts)
    return cells, (f"{len(folds)} folds leaving groups out ({'; '.join('+'.join(f) for f in folds)}), each with "
                   f"whole and spliced ({C.SPLICE} calls) novel traces; parts refitted ({kw or 'default settings'}); "
                   f"first {max_calls or 'all'} calls")


def fuse(rule: str, cal: dict[str, list[Scored]], *groups: dict[str, list[Scored]]) -> list[list[Scored]]:
    """Fused Scored traces for calibration and each further group, z-scores from calibration:
    offline by the parts' offline scores, streams position by position (every part scores every call)."""
    ps = rule_parts(rule)
    off = {p: normaliser([s.score for s in cal[p]]) for p in ps}
    stm = {p: normaliser([s.stream.max() for s in cal[p]]) for p in ps}
    out = []
    for g in (cal, *groups):
        n = len(g[ps[0]])
        res = []
        for i in range(n):
            z_off = {p: np.array([(g[p][i].score - off[p][0]) / off[p][1]]) for p in ps}
            z_st = {p: (g[p][i].stream - stm[p][0]) / stm[p][1] for p in ps}
            res.append(Scored(float(combine(rule, z_off)[0]), g[ps[0]][i].ends, combine(rule, z_st)))
        out.append(res)
    return out


class Fused(D.Detector):
    """The fused detector inside a SecurityModel (`kpilot security train --detectors ...,fused`): its
    parts' window scores as z-scores (calibration windows), combined by the rule chosen on a dev
    split that leaves programs (Trace.comm) out. On the real dev sets devsets fuses trace scores."""
    kind = "fused"

    def __init__(self, vocab, **kw):
        super().__init__(vocab, **kw)
        self.rule, self.norm, self.parts, self.part_names, self.choice = "", {}, {}, [], {}

    def fit(self, seqs, seed=0):
        raise KpError("the fused detector is built from its parts (lm, mismatch, rarity, novelty): train it together "
                      "with them, or run `kpilot security eval --dataset fhids|unm`")

    def build(self, dets: dict, fit_traces, cal_traces, seed=0) -> "Fused":
        parts = [p for p in PARTS if p in dets]
        if not parts or not cal_traces:
            raise KpError(f"the fused detector needs one of {', '.join(PARTS)} and calibration traces")
        kw = {"window": self.window, "stride": self.stride}
        part_kw = {"lm": {"steps": dets["lm"].steps}} if "lm" in dets else None
        cells, how = leave_groups_out(fit_traces, cal_traces, self.vocab, parts, lambda t: t.comm or "-",
                                      lambda d, seqs: [float(d.window_scores(x).max()) for x in seqs],
                                      seed=seed, part_kw=part_kw, **kw)
        self.choice = {**(choose_cells(cells) if cells else _no_dev(parts)), "dev_split": how}
        self.rule = self.choice["rule"]
        self.parts = {p: dets[p] for p in rule_parts(self.rule)}
        self.part_names = list(self.parts)
        cal = [self.vocab.encode(t.calls) for t in cal_traces]
        self.norm = {p: normaliser(np.concatenate([d.window_scores(x) for x in cal])) for p, d in self.parts.items()}
        return self

    def window_scores(self, seq):
        return combine(self.rule, {p: (self.parts[p].window_scores(seq) - m) / sc for p, (m, sc) in self.norm.items()})

    def params(self):
        return {"rule": self.rule, "parts": self.part_names, "norm": {p: list(v) for p, v in self.norm.items()},
                "choice": self.choice}

    def load(self, p):
        self.rule, self.part_names, self.choice = str(p["rule"]), [str(x) for x in p["parts"]], p.get("choice", {})
        self.norm = {k: (float(v[0]), float(v[1])) for k, v in p["norm"].items()}
        if rule_parts(self.rule) != self.part_names or set(self.norm) != set(self.part_names):
            raise KpError("fused detector: its rule, parts and normalisers disagree")
        return self


def _no_dev(parts) -> dict:
    return {"rule": parts[0], "ensemble_kept": False, "dev": {}, "n_dev_normal": 0, "n_dev_novel": 0,
            "why": "empty dev split: first part kept"}


def part_kinds() -> dict:
    """The detectors fused can combine, by kind (PARTS), built here: not through the registry, which imports fused."""
    return {c.kind: c for c in (LM, Mismatch, Rarity, Novelty)}
