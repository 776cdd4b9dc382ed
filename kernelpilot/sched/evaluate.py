"""Train the scheduling models on traces and compare them with their baselines side by side."""
from __future__ import annotations

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.sched import features as F
from kernelpilot.sched import models as M
from kernelpilot.sched.sim import POLICIES, simulate

WINDOW_NS = 200_000_000


def train_bursts(feats: list[F.SchedFeatures]) -> M.BurstPredictor:
    Xs, ys = [], []
    for f in feats:
        X, y, ok, _ = M.burst_features(f.bursts)
        Xs.append(X[ok])
        ys.append(y[ok])
    X, y = np.vstack(Xs), np.concatenate(ys)
    if len(y) < 50:
        raise KpError(f"only {len(y)} complete bursts to train on; record a longer trace")
    return M.BurstPredictor.fit(X, y)


def compare_bursts(model: M.BurstPredictor, f: F.SchedFeatures) -> dict:
    X, y, ok, _ = M.burst_features(f.bursts)
    X, y = X[ok], y[ok]
    if not len(y):
        raise KpError("test trace has no complete bursts with history")
    out = {"bursts": int(len(y)),
           "model": M.burst_errors(y, model.predict_ns(X)),
           "exp_avg_alpha_0.5": M.burst_errors(y, np.expm1(X[:, 4]) * 1e3),
           "pelt_like": M.burst_errors(y, np.expm1(X[:, 5]) * 1e3)}
    out["mae_ratio_vs_exp_avg"] = out["model"]["mae_us"] / max(out["exp_avg_alpha_0.5"]["mae_us"], 1e-9)
    return out


def labelled_windows(f: F.SchedFeatures, events: np.ndarray, labels: dict[int, int]):
    """Per-window classifier rows for the tasks whose label is known (pid -> 0/1)."""
    X, ids = F.windowed_class_features(f, events, WINDOW_NS)
    y = np.array([labels.get(int(f.pids[i]), -1) for i in ids])
    return X[y >= 0], y[y >= 0]


def compare_classifiers(model: M.TaskClassifier, X, y) -> dict:
    out = {"windows": int(len(y)), "model": M.class_scores(y, model.predict(X)),
           "lavd_like": M.class_scores(y, M.lavd_heuristic(X)),
           "bpfland_like": M.class_scores(y, M.bpfland_heuristic(X))}
    return out


def compare_policies(f: F.SchedFeatures, predictor: M.BurstPredictor, ncpu: int = 2,
                     latency_pids: set[int] | None = None) -> dict:
    """Replay the trace's tasks under every policy; predicted policies use `predictor`."""
    wl, rows = F.workload(f)
    if latency_pids:
        wl.label = np.array([1 if int(p) in latency_pids else 0 for p in wl.pids])
    pred = predictor.predict_rows(rows)
    res = {p: simulate(wl, p, ncpu=ncpu, pred=pred).metrics(wl.label) for p in POLICIES}
    tat = {p: r["turnaround_mean_us"] for p, r in res.items()}
    res["ratios"] = {"srpt_pred_vs_srpt_oracle": tat["srpt-pred"] / tat["srpt"],
                     "srpt_pred_vs_cfs": tat["srpt-pred"] / tat["cfs"],
                     "sjf_pred_vs_sjf_oracle": tat["sjf-pred"] / tat["sjf"]}
    res["tasks"] = wl.n
    return res
