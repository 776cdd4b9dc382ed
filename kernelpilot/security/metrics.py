"""What a user gets from a detector on a fixed split, thresholds set on calibration normals only.

A scorer gives each trace (a) one offline score after the whole trace and (b) a stream: scores at
call positions as calls arrive. Figures, per attack family and overall:
- trace AUC of the offline score, test normal vs test attacks;
- offline detection at 1% / 5% trace FPR: threshold = the calibration normal traces' score quantile;
- streaming detection: alarm at the first stream score above a threshold that lets 1% / 5% of
  calibration normal traces ever alarm; detection rate on test attacks, false-alarm rate on test
  normals, latency in calls from the trace's start (attack_start) to the first alarm;
- LID-DS style: detection rate plus false alarms on test normals, counted as alarmed positions and
  as consecutive false alarms (a run of consecutive alarmed positions counts once)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FPRS = (0.01, 0.05)


@dataclass
class Scored:
    """One trace's scores: offline, and the stream (positions = calls seen, scores)."""
    score: float
    ends: np.ndarray
    stream: np.ndarray


def threshold(normal: np.ndarray, fpr: float) -> float:
    """The smallest value with at most `fpr` of `normal` strictly above it (alarm: score > value)."""
    s = np.sort(np.asarray(normal, dtype=np.float64))
    if not len(s):
        return float("inf")
    return float(s[len(s) - 1 - int(np.floor(fpr * len(s)))])


def conformal_threshold(normal: np.ndarray, fpr: float) -> float:
    """The k-th smallest of n calibration scores, k = ceil((n + 1)(1 - fpr)) (at most n): a new
    normal trace exchangeable with them passes it with probability <= fpr when k <= n. Below
    n = 1/fpr - 1 (99 traces at 1%) that is the largest calibration score, stide's own rule."""
    s = np.sort(np.asarray(normal, dtype=np.float64))
    if not len(s):
        return float("inf")
    k = min(len(s), int(np.ceil((len(s) + 1) * (1 - fpr) - 1e-9)))
    return float(s[k - 1])


def auc(normal, attack) -> float | None:
    normal, attack = np.asarray(normal, dtype=np.float64), np.asarray(attack, dtype=np.float64)
    if not len(normal) or not len(attack):
        return None
    from sklearn.metrics import roc_auc_score
    y = np.r_[np.zeros(len(normal)), np.ones(len(attack))]
    return round(float(roc_auc_score(y, np.r_[normal, attack])), 4)


def first_alarm(s: Scored, thr: float, start: int = 0) -> int | None:
    """Calls from `start` until the first stream score above thr at or after it, or None."""
    hit = np.flatnonzero((s.stream > thr) & (s.ends > start))
    return None if not len(hit) else int(s.ends[hit[0]]) - start


def runs(alarm: np.ndarray) -> int:
    """Runs of consecutive True values (LID-DS consecutive false alarms)."""
    a = np.asarray(alarm, dtype=bool)
    return int(a[0] + np.sum(a[1:] & ~a[:-1])) if len(a) else 0


def _rate(x) -> float | None:
    return round(float(np.mean(x)), 4) if len(x) else None


def evaluate_scores(cal: list[Scored], test_normal: list[Scored], attacks: list[Scored],
                    families: list[str], starts: list[int] | None = None) -> dict:
    """Every figure above from scored traces; thresholds from `cal` only."""
    starts = starts or [0] * len(attacks)
    cal_off = np.array([s.score for s in cal])
    cal_max = np.array([s.stream.max() for s in cal])
    n_off = np.array([s.score for s in test_normal])
    a_off = np.array([s.score for s in attacks])
    fams = sorted(set(families))
    by = {f: [i for i, x in enumerate(families) if x == f] for f in fams}
    out = {"n_calibration": len(cal), "n_test_normal": len(test_normal), "n_attack": len(attacks),
           "trace_auc": auc(n_off, a_off), "offline": {}, "streaming": {},
           "families": {f: {"n": len(by[f]), "trace_auc": auc(n_off, a_off[by[f]])} for f in fams}}
    for fpr in FPRS:
        key = f"{fpr * 100:g}pct"
        t_off = threshold(cal_off, fpr)
        hit = a_off > t_off
        out["offline"][key] = {"threshold": round(t_off, 6), "detection_rate": _rate(hit),
                               "test_normal_fpr": _rate(n_off > t_off)}
        t_str = threshold(cal_max, fpr)
        lat = [first_alarm(s, t_str, st) for s, st in zip(attacks, starts)]
        det = np.array([x is not None for x in lat])
        alarms = [s.stream > t_str for s in test_normal]
        n_pos = int(sum(len(s.stream) for s in test_normal))
        out["streaming"][key] = {
            "threshold": round(t_str, 6), "detection_rate": _rate(det),
            "false_alarm_rate": _rate([a.any() for a in alarms]),
            "false_alarms": int(sum(a.sum() for a in alarms)),
            "consecutive_false_alarms": int(sum(runs(a) for a in alarms)), "normal_positions": n_pos,
            "median_latency_calls": _median([x for x in lat if x is not None])}
        for f in fams:
            fl = [lat[i] for i in by[f]]
            out["families"][f][f"offline_dr_{key}"] = _rate(hit[by[f]])
            out["families"][f][f"streaming_dr_{key}"] = _rate([x is not None for x in fl])
            out["families"][f][f"median_latency_calls_{key}"] = _median([x for x in fl if x is not None])
    return out


def _median(x) -> float | None:
    return float(np.median(x)) if len(x) else None
