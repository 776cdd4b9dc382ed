"""Train the scheduling models on traces and compare them with their baselines side by side."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.sched import features as F
from kernelpilot.sched import models as M
from kernelpilot.sched.sim import POLICIES, simulate

WINDOW_NS = 200_000_000


def comm_prior(feats: list[F.SchedFeatures], min_tasks: int = 2) -> dict[str, float]:
    """Per comm class, the median log1p(first burst in us) of its tasks (classes seen in at least
    `min_tasks` tasks): what a task's first burst is likely to be before it has any history."""
    first: dict[str, list[float]] = {}
    for f in feats:
        b = f.complete()
        for i in np.unique(b[:, 0]):
            if f.traced is None or f.traced[i]:
                first.setdefault(F.comm_class(f.comm[i]), []).append(np.log1p(b[b[:, 0] == i][0, 2] / 1e3))
    return {c: float(np.median(v)) for c, v in first.items() if len(v) >= min_tasks}


def _prior(cp: dict, f: F.SchedFeatures) -> np.ndarray:
    return np.array([cp.get(F.comm_class(c), -1.0) for c in f.comm])


def train_bursts(feats: list[F.SchedFeatures]) -> M.BurstPredictor:
    cp = comm_prior(feats)
    Xs, ys = [], []
    for f in feats:
        X, y, ok, _ = M.burst_features(f.bursts, _prior(cp, f))
        ok = ok | ((f.bursts[np.lexsort((f.bursts[:, 1], f.bursts[:, 0]))][:, 7] == 0) & (X[:, 10] >= 0))
        Xs.append(X[ok])
        ys.append(y[ok])
    X, y = np.vstack(Xs), np.concatenate(ys)
    if len(y) < 50:
        raise KpError(f"only {len(y)} complete bursts to train on; record a longer trace")
    return M.BurstPredictor.fit(X, y, comm_prior=cp)


def compare_bursts(model: M.BurstPredictor, f: F.SchedFeatures) -> dict:
    """Error on bursts with history (model vs exponential and PELT-like averages), and on first
    bursts (model with comm-class prior vs the 1 ms guess a history-only predictor has)."""
    X, y, ok, rows = M.burst_features(f.bursts, model.task_prior(f.comm))
    whole = rows[:, 7] == 0
    Xh, yh = X[ok], y[ok]
    if not len(yh):
        raise KpError("test trace has no complete bursts with history")
    out = {"bursts": int(len(yh)),
           "model": M.burst_errors(yh, model.predict_ns(Xh)),
           "exp_avg_alpha_0.5": M.burst_errors(yh, np.expm1(Xh[:, 4]) * 1e3),
           "pelt_like": M.burst_errors(yh, np.expm1(Xh[:, 5]) * 1e3)}
    out["mae_ratio_vs_exp_avg"] = out["model"]["mae_us"] / max(out["exp_avg_alpha_0.5"]["mae_us"], 1e-9)
    first = whole & (X[:, 9] == 0)
    if first.any():
        out["first_bursts"] = {"bursts": int(first.sum()),
                               "model": M.burst_errors(y[first], model.predict_ns(X[first])),
                               "guess_1ms": M.burst_errors(y[first], np.full(int(first.sum()), 1e6))}
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
    pred = predictor.predict_rows(rows, predictor.task_prior(f.comm))
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


@dataclass
class Item:
    """One trace with its features and ground-truth task classes (pid -> 1 latency / 0 batch)."""
    name: str
    events: np.ndarray
    f: F.SchedFeatures
    labels: dict[int, int]
    _windows: tuple | None = field(default=None, repr=False, compare=False)

    def windows(self):
        """Computed once: held_out trains on every other item in each fold."""
        if self._windows is None:
            self._windows = labelled_windows(self.f, self.events, self.labels)
        return self._windows


def synthetic_items(seeds=(0,), horizon_s: float = 2.0) -> list[Item]:
    """Synthetic task mixes (loaded and light hosts, with and without CPU hogs)."""
    from kernelpilot.sched.sim import synthetic_trace
    out = []
    for s in seeds:
        for i, mix in enumerate(TRAIN_MIXES):
            ev, wl = synthetic_trace(s * 10 + i, horizon_s=horizon_s, **mix)
            out.append(Item(f"synthetic-{s * 10 + i}", ev, F.extract(ev), dict(zip(wl.pids.tolist(), wl.label.tolist()))))
    return out


def recorded_items(traces=None) -> list[Item]:
    """Recorded real workloads (default: the committed fixtures), labelled by program."""
    from kernelpilot.sched import workloads as W
    out = []
    for name, ev in (W.fixtures() if traces is None else traces):
        f = F.extract(ev)
        out.append(Item(name, ev, f, W.labels(f)))
    return out


def fit_models(items: list[Item], bursts: bool = True):
    """(burst predictor or None, classifier) trained on `items`."""
    Xs, ys = zip(*[it.windows() for it in items])
    clf = M.TaskClassifier.fit(np.vstack(Xs), np.concatenate(ys))
    return (train_bursts([it.f for it in items]) if bursts else None), clf


def training(recorded: bool = True, seeds=(0, 1)):
    """The models `kpilot sched train` saves: synthetic mixes plus the recorded fixtures."""
    return fit_models(synthetic_items(seeds) + (recorded_items() if recorded else []))


def held_out(recorded: list[Item], synthetic: list[Item], ncpu: int = 2) -> dict:
    """Leave one workload out: train on the synthetic mixes and the other workloads' traces (a
    trace named 'w@fresh' is the same workload as 'w'), score bursts, simulated policies and the
    classifier on the held-out trace."""
    out = {}
    wl = lambda it: it.name.split("@")[0]  # noqa: E731
    for it in recorded:
        bp, clf = fit_models(synthetic + [o for o in recorded if wl(o) != wl(it)])
        lat = {p for p, c in it.labels.items() if c == 1}
        r = {"events": int(len(it.events)), "bursts": compare_bursts(bp, it.f),
             "simulation": compare_policies(it.f, bp, ncpu=ncpu, latency_pids=lat)}
        X, y = it.windows()
        if len(y):
            r["classifier"] = compare_classifiers(clf, X, y)
            r["classifier"]["classes"] = {"latency": int((y == 1).sum()), "batch": int((y == 0).sum())}
        out[it.name] = r
    return out


def synthetic_training(seeds=(0, 1, 2), horizon_s: float = 3.0, bursts: bool = True):
    """(burst predictor or None, classifier) trained on synthetic task mixes only."""
    return fit_models(synthetic_items(seeds, horizon_s), bursts)


def default_classifier() -> M.TaskClassifier:
    """The agent's classifier when no --model is given: synthetic mixes and the recorded fixtures.
    Cached (JSON, keyed by the code and fixtures it is trained from) so an agent starts fast."""
    import hashlib
    import os
    from pathlib import Path

    from kernelpilot.models import Model
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    trained_by = [here / f"{m}.py" for m in ("evaluate", "features", "models", "synth", "sim", "workloads")]
    for f in sorted([*trained_by, *(here / "data" / "traces").glob("*.parquet")]):
        h.update(f.name.encode() + f.read_bytes())
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kernelpilot"
    path = cache / f"sched-default-classifier-{h.hexdigest()[:16]}.json"
    try:
        return M.TaskClassifier(Model.load(path))
    except (OSError, KpError, ValueError, KeyError):
        pass
    clf = fit_models(synthetic_items((0,), 2.0) + recorded_items(), bursts=False)[1]
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.json")
        clf.model.save(tmp)
        os.replace(tmp, path)
        for old in cache.glob("sched-default-classifier-*.json"):  # older code's copies
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:
        pass  # no cache: trained again next time
    return clf


def load_classifier(path) -> M.TaskClassifier:
    from pathlib import Path

    from kernelpilot.models import Model
    if Path(path).suffix == ".npz":
        m = Model.load(path)
        if m.meta.get("sched_task") != "task classifier":
            raise KpError(f"{path} is not a task classifier")
    else:
        m = M.load_model(path, "task classifier")
    from kernelpilot.models.validate import check_features
    from kernelpilot.sched.features import CLASS_FEATURES
    check_features(m, CLASS_FEATURES, str(path), "the task classifier")
    return M.TaskClassifier(m)
