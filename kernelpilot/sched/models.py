"""Scheduling models and the baselines they are measured against.

- Next-burst predictor: a depth-limited regression tree on the task's burst history, against the
  textbook exponential average (alpha = 1/2) and a PELT-like time-decayed average.
- Latency-critical vs batch classifier: a small classification tree, against scx_lavd-like and
  scx_bpfland-like heuristics.
- Load forecaster: least-squares autoregression on utilisation lags, against EWMA and last value.
- Power estimate: linear in utilisation.
Trees live in the shared model format (kernelpilot.models: JSON, integer-quantized, kernelizable);
nothing is pickled.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kernelpilot.errors import KpError

BURST_FEATURES = ["lag1", "lag2", "lag3", "lag4", "ewma", "pelt", "mean", "std", "sleep_before", "n",
                  "comm_prior", "sleep_mean"]
PELT_HALF_LIFE_MS = 32.0


def save_json(obj: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(obj))


def load_json(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise KpError(f"model file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise KpError(f"model file {path} is not valid JSON ({e.__class__.__name__})") from None


def load_model(path: str | Path, task: str):
    """A shared-format model file (kernelpilot.models) holding a scheduling model of `task`."""
    from kernelpilot.models import Model
    d = load_json(path)
    m = Model.from_dict(d, str(path))
    if m.meta.get("sched_task") != task:
        raise KpError(f"{path} holds a {m.meta.get('sched_task') or m.kind} model, not a {task}")
    return m


# --- next-burst prediction ---------------------------------------------------------------------

def exp_average(seq: np.ndarray, alpha: float = 0.5, tau0: float | None = None) -> np.ndarray:
    """Textbook tau_{n+1} = alpha t_n + (1 - alpha) tau_n; element k predicts seq[k]."""
    seq = np.asarray(seq, float)
    out = np.empty(len(seq))
    tau = float(seq[0]) if tau0 is None and len(seq) else (tau0 or 0.0)
    for k in range(len(seq)):
        out[k] = tau
        tau = alpha * seq[k] + (1 - alpha) * tau
    return out


def pelt_average(seq: np.ndarray, ends: np.ndarray, half_life_ms: float = PELT_HALF_LIFE_MS) -> np.ndarray:
    """PELT-like: the average decays by y^(elapsed ms) with y^32 = 1/2 between bursts."""
    seq, ends = np.asarray(seq, float), np.asarray(ends, float)
    out = np.empty(len(seq))
    avg = float(seq[0]) if len(seq) else 0.0
    for k in range(len(seq)):
        out[k] = avg
        dt = (ends[k] - ends[k - 1]) / 1e6 if k else half_life_ms
        w = 1.0 - 0.5 ** (dt / half_life_ms)
        avg = avg + w * (seq[k] - avg)
    return out


def burst_features(bursts: np.ndarray, prior=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """From `features.extract(...).bursts` rows: (X, y_ns, usable, rows), one row per burst, each
    predicted from what is known at its wakeup: earlier bursts, the sleeps so far and the task's
    comm class (`prior[task index]`: typical log1p burst in us of tasks with that name, -1 unknown).
    `usable` marks bursts that were seen whole and have history (for training and scoring);
    `rows` are the burst rows sorted by task then start, the order of X."""
    if bursts.ndim != 2 or bursts.shape[1] < 8:
        raise KpError("burst rows must come from kernelpilot.sched.features.extract")
    rows = bursts[np.lexsort((bursts[:, 1], bursts[:, 0]))]
    X = np.full((len(rows), len(BURST_FEATURES)), -1.0)
    for t in np.unique(rows[:, 0]):
        idx = np.flatnonzero(rows[:, 0] == t)
        b = rows[idx]
        seq = b[:, 2].astype(float)
        lg = np.log1p(seq / 1e3)
        ew = np.log1p(exp_average(seq) / 1e3)
        pe = np.log1p(pelt_average(seq, b[:, 3]) / 1e3)
        csum, csq = np.cumsum(lg), np.cumsum(lg ** 2)
        sl = np.where(b[:, 4] >= 0, np.log1p(b[:, 4].clip(0) / 1e3), np.nan)
        ssum = np.nancumsum(sl)
        scnt = np.cumsum(~np.isnan(sl))
        pr = -1.0 if prior is None or t >= len(prior) else float(prior[t])
        n, x = len(seq), X[idx]
        for j in range(1, min(n - 1, 4) + 1):  # the last 4 bursts, most recent first
            x[j:, j - 1] = lg[:-j]
        if n > 1:
            k = np.arange(1, n)
            mean = csum[:-1] / k
            x[1:, 4], x[1:, 5], x[1:, 6] = ew[1:], pe[1:], mean
            sq = np.array([m ** 2 for m in mean.tolist()])  # C pow(), not m * m: identical trees to the loop's
            x[1:, 7] = np.sqrt(np.maximum(csq[:-1] / k - sq, 0.0))
        x[0, 7] = 0.0
        x[:, 8] = np.where(b[:, 4] >= 0, np.log1p(b[:, 4].clip(0) / 1e3), -1.0)
        x[:, 9] = np.minimum(np.arange(n), 1000)
        x[:, 10] = pr
        x[:, 11] = np.where(scnt > 0, ssum / np.maximum(scnt, 1), -1.0)
        X[idx] = x
    usable = (rows[:, 7] == 0) & (X[:, 9] >= 1)
    return X, rows[:, 2].astype(float), usable, rows


class BurstPredictor:
    """Regression tree correcting the exponential average: it predicts log(burst / exp-average),
    so it scales to burst lengths it has not seen. Leaves hold the median correction (for MAE).
    The tree is a kernelpilot.models.Model (kind tree, output score)."""

    def __init__(self, model):
        self.model = model

    @staticmethod
    def base(X) -> np.ndarray:
        X = np.asarray(X, float)
        # no history yet: the prior for the task's comm class when known, else 1 ms
        first = np.where(X[:, 10] >= 0, X[:, 10], np.log1p(1000.0))
        return np.where(X[:, 9] >= 1, X[:, 4], first)

    @classmethod
    def fit(cls, X, y, max_depth: int = 8, seed: int = 0, comm_prior: dict | None = None) -> "BurstPredictor":
        from sklearn.tree import DecisionTreeRegressor

        from kernelpilot.models import from_sklearn
        est = DecisionTreeRegressor(max_depth=max_depth, min_samples_leaf=20, random_state=seed)
        r = np.log1p(np.asarray(y, float) / 1e3) - cls.base(X)
        est.fit(X, r)
        # leaf value: the median correction weighted by the burst scale, which minimises the
        # absolute error in microseconds (the figure scored), not only the error in log terms
        leaves, w = est.apply(X), np.expm1(cls.base(X)) + 1.0
        for leaf in np.unique(leaves):
            est.tree_.value[leaf, 0, 0] = _weighted_median(r[leaves == leaf], w[leaves == leaf])
        m = from_sklearn(est, BURST_FEATURES, X)
        m.meta.update(sched_task="burst predictor", target="log1p(burst_us) - log1p(base_us)",
                      comm_prior=comm_prior or {})
        return cls(m)

    MAX_CORRECTION = float(np.log(16.0))  # the tree may move the average at most 16x either way

    def predict_ns(self, X) -> np.ndarray:
        c = self.model.predict_float(X).clip(-self.MAX_CORRECTION, self.MAX_CORRECTION)
        return np.expm1(self.base(X) + c).clip(0) * 1e3

    def task_prior(self, comms: list[str]) -> np.ndarray:
        """Per task (by its comm) the learned typical log1p burst in us, -1 where unknown."""
        from kernelpilot.sched.features import comm_class
        cp = self.model.meta.get("comm_prior", {})
        return np.array([cp.get(comm_class(c), -1.0) for c in comms])

    def predict_rows(self, rows: list[np.ndarray], prior: dict | None = None) -> list[np.ndarray]:
        """Predicted length of each burst in `rows` (per task, as features.workload returns)."""
        return [self.predict_ns(burst_features(r, prior)[0]) for r in rows]


def _weighted_median(v, w) -> float:
    o = np.argsort(v)
    c = np.cumsum(w[o])
    return float(v[o][np.searchsorted(c, c[-1] / 2)])


def burst_errors(y, pred) -> dict:
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    return {"mae_us": float(np.abs(y - pred).mean() / 1e3),
            "mean_abs_log_ratio": float(np.abs(np.log1p(y / 1e3) - np.log1p(pred / 1e3)).mean())}


# --- latency-critical vs batch -----------------------------------------------------------------

def lavd_heuristic(X) -> np.ndarray:
    """scx_lavd-like: latency criticality grows with wakeup/wait frequency and short runtime;
    tasks above the current average are latency-critical."""
    X = np.asarray(X, float)
    score = np.log2(1 + X[:, 1]) + np.log2(1 + X[:, 1] + X[:, 2]) - (X[:, 3] / 16.0 - 1.0)
    return (score > score.mean()).astype(int)


def bpfland_heuristic(X, nvcsw_thresh: float = 10.0, slice_us: float = 5000.0) -> np.ndarray:
    """scx_bpfland-like: interactive if it sleeps voluntarily often and its bursts are short."""
    X = np.asarray(X, float)
    from kernelpilot.sched.features import log2q4_inverse
    return ((X[:, 1] >= nvcsw_thresh) & (log2q4_inverse(X[:, 3]) < slice_us)).astype(int)


class TaskClassifier:
    """Classification tree over features.CLASS_FEATURES (all integers, so the kernel's int32
    features are the same numbers); 1 = latency-critical. Holds a kernelpilot.models.Model."""

    def __init__(self, model):
        self.model = model

    @classmethod
    def fit(cls, X, y, max_depth: int = 4, seed: int = 0) -> "TaskClassifier":
        from sklearn.tree import DecisionTreeClassifier

        from kernelpilot.models import from_sklearn
        from kernelpilot.sched.features import CLASS_FEATURES
        X, y = np.asarray(X, np.int64), np.asarray(y)
        if len(np.unique(y)) < 2:
            raise KpError("classifier training needs both latency-critical and batch examples")
        est = DecisionTreeClassifier(max_depth=max_depth, min_samples_leaf=3, random_state=seed,
                                     class_weight="balanced")
        est.fit(X, y)
        m = from_sklearn(est, CLASS_FEATURES, X, y)
        m.meta["sched_task"] = "task classifier"
        return cls(m)

    def predict(self, X) -> np.ndarray:
        """The integer model's verdict (what the eBPF classifier computes)."""
        return self.model.predict_int(self.model.to_int(np.asarray(X, np.int64))).astype(int)


def class_scores(y, pred) -> dict:
    y, pred = np.asarray(y), np.asarray(pred)
    tp = int(((pred == 1) & (y == 1)).sum())
    prec = tp / max(int((pred == 1).sum()), 1)
    rec = tp / max(int((y == 1).sum()), 1)
    return {"accuracy": float((y == pred).mean()), "f1": float(2 * prec * rec / max(prec + rec, 1e-12))}


# --- load forecasting --------------------------------------------------------------------------

def last_value(series, horizon: int = 1) -> np.ndarray:
    s = np.asarray(series, float)
    return s[:-horizon]


def ewma(series, alpha: float = 0.3) -> np.ndarray:
    """Element i: the EWMA of series[:i+1]."""
    s = np.asarray(series, float)
    out = np.empty(len(s))
    m = s[0] if len(s) else 0.0
    for i, v in enumerate(s):
        m = alpha * v + (1 - alpha) * m
        out[i] = m
    return out


def ewma_forecast(series, horizon: int = 1, alpha: float = 0.3) -> np.ndarray:
    return ewma(series, alpha)[:-horizon]


EWMA_ALPHAS = (0.1, 0.2, 0.3, 0.5, 0.7, 0.9)


def best_alpha(series, horizon: int) -> float:
    """The EWMA smoothing that forecasts `series` best: the baseline is tuned as fairly as the model."""
    s = np.asarray(series, float)
    return min(EWMA_ALPHAS, key=lambda a: np.abs(ewma_forecast(s, horizon, a) - s[horizon:]).mean())


def _since_change(s: np.ndarray, jump: float = 0.3, cap: int = 100) -> np.ndarray:
    """Samples since the last jump of more than `jump` between neighbours (time in the phase)."""
    out, k = np.empty(len(s)), cap
    for i in range(len(s)):
        k = 0 if i and abs(s[i] - s[i - 1]) > jump else min(k + 1, cap)
        out[i] = k
    return out


def _mix(s: np.ndarray, exog, horizon: int, eta: float, decay: float) -> np.ndarray:
    """Online exponentially weighted mixture of simple forecasters; element t is the forecast
    made at t for t+horizon, using only errors already known at t."""
    import os
    experts = [ewma(s, a) for a in EWMA_ALPHAS] + [s]
    experts += [np.minimum(np.asarray(v, float) / (os.cpu_count() or 1), 1.0)
                for k, v in (exog or {}).items() if k.endswith("runq")]
    E = np.array(experts)
    loss, out = np.zeros(len(E)), np.empty(len(s) - horizon)
    for t in range(len(s) - horizon):
        if t >= horizon:
            loss = decay * loss + np.abs(E[:, t - horizon] - s[t])
        w = np.exp(-eta * (loss - loss.min()))
        out[t] = w @ E[:, t] / w.sum()
    return out


class LoadForecaster:
    """util[t+h] from what an EWMA of utilisation lacks: the last `lags` samples and their trend,
    a fast and a slow EWMA, time since the last large change (time in phase) and exogenous
    signals (`exog`: run-queue length, PSI per period and avg10; each as is, its change and its
    EWMA). Every candidate (ridge, a depth-3 tree, small gradient boosting with absolute loss, the error scored)
    learns the correction to the tuned EWMA; the one chosen on a validation split (never the
    test) is used only if it beats the EWMA there by more than 5 %, else the EWMA is.
    "mix" is online instead: experts (EWMAs of every smoothing, the last value and the run queue
    over the CPU count) weighted by exp(-eta * their decayed recent absolute error), so the
    weight moves to whichever suits the current phase; eta and decay are fitted on training."""

    KINDS = ("ridge", "tree", "gbm", "mix")
    MIX_GRID = [(eta, decay) for eta in (5.0, 20.0, 50.0) for decay in (0.8, 0.9, 0.97)]

    def __init__(self, kind: str, lags: int, horizon: int, alpha: float, coef=None, model=None,
                 exog_names=()):
        self.kind, self.lags, self.horizon, self.alpha = kind, lags, horizon, alpha
        self.coef, self.model = None if coef is None else np.asarray(coef, float), model
        self.exog_names = tuple(exog_names)

    @staticmethod
    def design(series, lags, exog=None) -> np.ndarray:
        """One row per full window of `lags` samples (row j ends at sample lags-1+j)."""
        s = np.asarray(series, float)
        n = len(s)
        cols = [s[lags - 1 - j: n - j] for j in range(lags)]
        prev3 = np.array([s[max(0, i - 3):i].mean() if i else s[0] for i in range(n)])
        win = np.lib.stride_tricks.sliding_window_view(s, lags)
        cols += [ewma(s, 0.5)[lags - 1:], ewma(s, 0.1)[lags - 1:], (s - prev3)[lags - 1:],
                 win.std(1), np.log1p(_since_change(s))[lags - 1:]]
        for x in (exog or {}).values():
            x = np.asarray(x, float)
            if len(x) != n:
                raise KpError(f"exogenous load signal has {len(x)} samples, the series {n}")
            cols += [x[lags - 1:], np.diff(x, prepend=x[0])[lags - 1:], ewma(x, 0.3)[lags - 1:]]
        return np.column_stack(cols)

    @classmethod
    def fit(cls, series, lags: int = 8, horizon: int = 1, exog=None, val_frac: float = 0.3,
            ridge: float = 1e-2, kinds=KINDS) -> "LoadForecaster":
        s = np.asarray(series, float)
        if len(s) < lags + horizon + 40:
            raise KpError(f"load series too short to fit ({len(s)} samples)")
        exog = {k: np.asarray(v, float) for k, v in (exog or {}).items()}
        cut = int(len(s) * (1 - val_frac))
        alpha = best_alpha(s[:cut], horizon)
        part = lambda a, b: {k: v[a:b] for k, v in exog.items()}  # noqa: E731
        fits = {"ewma": cls("ewma", lags, horizon, alpha)}
        for kind in kinds:
            fits[kind] = cls._fit_kind(kind, s[:cut], part(0, cut), lags, horizon, alpha, ridge)
        vs, ve = s[cut - lags + 1:], part(cut - lags + 1, None)
        truth = vs[lags - 1 + horizon:]
        val = {k: float(np.abs(m.predict(vs, ve) - truth).mean()) for k, m in fits.items()}
        kind = min(val, key=val.get)
        if val[kind] > 0.95 * val["ewma"]:  # a model must clearly beat the EWMA to be used
            kind = "ewma"
        best = cls._fit_kind(kind, s, exog, lags, horizon, best_alpha(s, horizon), ridge)
        best.validation = val
        return best

    @classmethod
    def _fit_kind(cls, kind, s, exog, lags, horizon, alpha, ridge):
        """Every kind learns the correction to the tuned EWMA, so shrinkage pulls it to the EWMA."""
        names = tuple(exog or {})
        if kind == "ewma":
            return cls("ewma", lags, horizon, alpha, exog_names=names)
        if kind == "mix":
            truth = s[lags - 1 + horizon:]
            err = {g: np.abs(_mix(s, exog, horizon, *g)[lags - 1:] - truth).mean() for g in cls.MIX_GRID}
            return cls("mix", lags, horizon, alpha, coef=min(err, key=err.get), exog_names=names)
        A = cls.design(s, lags, exog)[:-horizon]
        b = s[lags - 1 + horizon:] - ewma_forecast(s, horizon, alpha)[lags - 1:]
        if kind == "ridge":
            mu, sd = A.mean(0), A.std(0) + 1e-9
            Z = (A - mu) / sd
            w = np.linalg.solve(Z.T @ Z + ridge * len(Z) * np.eye(Z.shape[1]), Z.T @ (b - b.mean()))
            coef = np.append(w / sd, b.mean() - (mu / sd) @ w)
            return cls("ridge", lags, horizon, alpha, coef=coef, exog_names=names)
        from sklearn.ensemble import GradientBoostingRegressor
        from sklearn.tree import DecisionTreeRegressor

        from kernelpilot.models import from_sklearn
        leaf = max(30, len(b) // 40)
        est = (DecisionTreeRegressor(max_depth=3, min_samples_leaf=max(20, len(b) // 20), random_state=0)
               if kind == "tree" else
               GradientBoostingRegressor(loss="absolute_error", n_estimators=100, max_depth=2, learning_rate=0.05,
                                         min_samples_leaf=leaf, subsample=0.8, random_state=0)).fit(A, b)
        model = from_sklearn(est, [f"f{i}" for i in range(A.shape[1])], A)
        return cls(kind, lags, horizon, alpha, model=model, exog_names=names)

    def predict(self, series, exog=None) -> np.ndarray:
        """Forecasts aligned with series[lags-1+h:] (one per full window of lags)."""
        s = np.asarray(series, float)
        base = ewma_forecast(s, self.horizon, self.alpha)[self.lags - 1:]
        if self.kind == "ewma":
            return base
        if tuple(exog or {}) != self.exog_names:
            raise KpError(f"load forecaster needs signals {list(self.exog_names)}, got {list(exog or {})}")
        if self.kind == "mix":
            return _mix(s, exog, self.horizon, *self.coef)[self.lags - 1:]
        A = self.design(s, self.lags, exog)[:-self.horizon]
        if self.kind == "ridge":
            return (base + np.column_stack([A, np.ones(len(A))]) @ self.coef).clip(0, 1)
        return (base + self.model.predict_float(A)).clip(0, 1)


def forecast_errors(series, lags: int = 8, horizon: int = 1, train_frac: float = 0.6, exog=None,
                    model: LoadForecaster | None = None) -> dict:
    """Fit on the first part of the series (or use `model`), compare MAE on the rest against the
    EWMA (its alpha tuned on the same training part) and the last value. Every candidate's test
    MAE is reported too (chosen or not), so the choice can be judged."""
    s = np.asarray(series, float)
    cut = int(len(s) * train_frac) if model is None else lags - 1
    ex = {k: np.asarray(v, float) for k, v in (exog or {}).items()}
    part = lambda a, b: {k: v[a:b] for k, v in ex.items()}  # noqa: E731
    fitted_here = model is None
    if fitted_here:
        model = LoadForecaster.fit(s[:cut], lags, horizon, part(0, cut))
    alpha = model.alpha
    test, te = s[cut - lags + 1:], part(cut - lags + 1, None)
    truth = test[lags - 1 + horizon:]
    mae = lambda f: float(np.abs(f - truth).mean())  # noqa: E731
    out = {"chosen": model.kind, "model_mae": mae(model.predict(test, te)),
           "ewma_mae": mae(ewma_forecast(test, horizon, alpha)[lags - 1:]), "ewma_alpha": alpha,
           "last_value_mae": mae(last_value(test, horizon)[lags - 1:]), "samples_test": int(len(truth)),
           "signals": ["util"] + list(ex)}
    if hasattr(model, "validation"):
        out["validation_mae"] = model.validation
    if fitted_here:
        tr = part(0, cut)
        out["test_mae_if_chosen"] = {k: mae(LoadForecaster._fit_kind(k, s[:cut], tr, lags, horizon, alpha, 1e-2)
                                            .predict(test, te)) for k in LoadForecaster.KINDS}
    out["mae_ratio_vs_ewma"] = out["model_mae"] / max(out["ewma_mae"], 1e-12)
    out["mae_ratio_vs_last_value"] = out["model_mae"] / max(out["last_value_mae"], 1e-12)
    return out


# --- power -------------------------------------------------------------------------------------

class PowerModel:
    """Watts = idle + (max - idle) * utilisation, per CPU. Fitted from RAPL where the host has it;
    otherwise typical server-core figures (an assumption, reported as such)."""

    def __init__(self, idle_w: float = 2.0, max_w: float = 9.0, fitted: bool = False):
        self.idle_w, self.max_w, self.fitted = idle_w, max_w, fitted

    def watts(self, util, ncpu: int) -> np.ndarray:
        return ncpu * (self.idle_w + (self.max_w - self.idle_w) * np.clip(np.asarray(util, float), 0, 1))

    @classmethod
    def fit(cls, util, watts, ncpu: int) -> "PowerModel":
        a, b = np.polyfit(np.asarray(util, float), np.asarray(watts, float) / ncpu, 1)
        return cls(b, a + b, fitted=True)
