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


TRAIN_MIXES = [{}, {"n_hog": 1},
               dict(n_interactive=2, n_io=2, n_batch=0, n_chatty=0, n_hog=1),
               dict(n_interactive=1, n_io=1, n_batch=1, n_chatty=1, n_hog=2)]


def synthetic_training(seeds=(0, 1, 2), horizon_s: float = 3.0, bursts: bool = True):
    """(burst predictor or None, classifier) trained on synthetic task mixes (loaded and light
    hosts, with and without CPU hogs): the agent's default models."""
    from kernelpilot.sched.synth import synthetic_trace
    traces = [synthetic_trace(s * 10 + i, horizon_s=horizon_s, **mix)
              for s in seeds for i, mix in enumerate(TRAIN_MIXES)]
    feats = [F.extract(ev) for ev, _ in traces]
    Xs, ys = [], []
    for (ev, wl), f in zip(traces, feats):
        X, y = labelled_windows(f, ev, dict(zip(wl.pids.tolist(), wl.label.tolist())))
        Xs.append(X)
        ys.append(y)
    return train_bursts(feats) if bursts else None, M.TaskClassifier.fit(np.vstack(Xs), np.concatenate(ys))


def default_classifier() -> M.TaskClassifier:
    """The agent's classifier when no --model is given (about a second to train)."""
    return synthetic_training(seeds=(0,), horizon_s=2.0, bursts=False)[1]


def load_classifier(path) -> M.TaskClassifier:
    d = M.load_json(path)
    tree = M.Tree.from_json(d.get("classifier", d))
    if tree.kind != "classifier":
        raise KpError(f"{path} holds a {tree.kind}, not a task classifier")
    return M.TaskClassifier(tree)
