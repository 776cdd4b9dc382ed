"""Detection metrics, every detector on the same split: AUC, detection rate at a fixed false-positive
rate (per trace and per window), detection latency from attack start, per attack family."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from kernelpilot.security.features import Trace, window_bounds

FPRS = (0.01, 0.001)


def _thr(normal_scores: np.ndarray, fpr: float) -> float:
    """The smallest threshold with at most `fpr` of normal scores strictly above it."""
    s = np.sort(normal_scores)
    k = int(np.floor(fpr * len(s)))
    return float(s[len(s) - 1 - k]) if len(s) else 0.0


def _dr(attack_scores, normal_scores, fpr) -> float:
    return float(np.mean(np.asarray(attack_scores) > _thr(normal_scores, fpr))) if len(attack_scores) else 0.0


def _auc(attack, normal) -> float | None:
    if not len(attack) or not len(normal):
        return None
    y = np.r_[np.zeros(len(normal)), np.ones(len(attack))]
    return round(float(roc_auc_score(y, np.r_[normal, attack])), 4)


def _pct(x):
    return {f"dr_at_{f * 100:g}pct_fpr": round(x(f), 4) for f in FPRS}


def evaluate_detector(det, normal_seqs, attack_seqs, attacks: list[Trace]) -> dict:
    nw = [det.window_scores(s) for s in normal_seqs]
    aw = [det.window_scores(s) for s in attack_seqs]
    # a trace's score: its worst window, or the detector's own whole-trace score (mismatch, lm)
    n_trace = np.array([det.trace_score(s) if hasattr(det, "scored") else w.max() for s, w in zip(normal_seqs, nw)])
    a_trace = np.array([det.trace_score(s) if hasattr(det, "scored") else w.max() for s, w in zip(attack_seqs, aw)])
    n_win = np.concatenate(nw)
    a_win, lat_calls, lat_s = [], [], []
    thr_w = _thr(n_win, 0.01)
    for t, w in zip(attacks, aw):
        ends = window_bounds(len(t), det.window, det.stride)
        attack_part = ends > t.attack_start + min(det.window, len(t) - t.attack_start) // 2
        a_win.append(w[attack_part])
        hit = np.flatnonzero((w > thr_w) & (ends > t.attack_start))
        if len(hit):
            end = int(ends[hit[0]])
            lat_calls.append(end - t.attack_start)
            if t.ts is not None and len(t.ts) == len(t):
                lat_s.append((int(t.ts[end - 1]) - int(t.ts[t.attack_start])) / 1e9)
    a_win = np.concatenate(a_win) if a_win else np.zeros(0)
    out = {"trace": {"auc": _auc(a_trace, n_trace), **_pct(lambda f: _dr(a_trace, n_trace, f))},
           "window": {"auc": _auc(a_win, n_win), **_pct(lambda f: _dr(a_win, n_win, f)),
                      "n_normal": int(len(n_win)), "n_attack": int(len(a_win))},
           "latency": {"detected_share": round(len(lat_calls) / max(1, len(attacks)), 4),
                       "median_calls": float(np.median(lat_calls)) if lat_calls else None,
                       "p90_calls": float(np.quantile(lat_calls, 0.9)) if lat_calls else None}}
    if lat_s:
        out["latency"].update(median_s=round(float(np.median(lat_s)), 4),
                              max_s=round(float(np.max(lat_s)), 4))
    fams = {}
    thr_t = _thr(n_trace, 0.01)
    for fam in sorted({t.family for t in attacks}):
        idx = [i for i, t in enumerate(attacks) if t.family == fam]
        s = a_trace[idx]
        fams[fam] = {"n": len(idx), "auc": _auc(s, n_trace),
                     "dr_at_1pct_fpr": round(float(np.mean(s > thr_t)), 4)}
    out["families"] = fams
    return out


def evaluate(model, normal: list[Trace], attacks: list[Trace], kinds=None) -> dict:
    """{detector: metrics} for every detector of the model, on the same normal and attack traces."""
    ns = model.encode(normal, "normal data")
    as_ = model.encode(attacks, "attack data") if attacks else []
    return {k: evaluate_detector(d, ns, as_, attacks) for k, d in model.detectors.items()
            if kinds is None or k in kinds}


def summary(results: dict) -> dict:
    """One line per detector: the figures the issue's targets name."""
    return {k: {"trace_auc": r["trace"]["auc"], "trace_dr_1pct": r["trace"]["dr_at_1pct_fpr"],
                "trace_dr_0.1pct": r["trace"]["dr_at_0.1pct_fpr"], "window_auc": r["window"]["auc"],
                "window_dr_1pct": r["window"]["dr_at_1pct_fpr"],
                "median_latency_calls": r["latency"]["median_calls"]}
            for k, r in results.items()}
