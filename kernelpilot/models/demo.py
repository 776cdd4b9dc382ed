"""A synthetic data set and the demo models used by tests, the benchmark and the guide:
16 features, half integer counts (like event counts), half continuous (like rates)."""
from __future__ import annotations

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.models.format import Model
from kernelpilot.models.trees import from_sklearn

N_FEATURES = 16
NAMES = [f"count{i}" for i in range(8)] + [f"rate{i}" for i in range(8)]
KINDS = ("tree", "forest", "gbm", "mlp")


def make_data(n: int = 20000, seed: int = 0):
    rng = np.random.default_rng(seed)
    counts = rng.poisson(lam=np.arange(1, 9) * 4, size=(n, 8)).astype(np.float64)
    rates = rng.normal(size=(n, 8)) * np.linspace(0.5, 4, 8)
    X = np.hstack([counts, rates])
    s = (counts[:, 0] - 4) * 0.6 + (counts[:, 3] > 16) * 2 - counts[:, 5] / 12 + rates[:, 1] * rates[:, 2] \
        + np.sin(rates[:, 4]) * 2 + rng.normal(scale=0.5, size=n)
    y = (s > np.median(s)).astype(np.int64)
    return X, y


def train(kind: str, n: int = 20000, seed: int = 0, depth: int | None = None,
          trees: int | None = None) -> tuple[Model, np.ndarray, np.ndarray]:
    """Train a demo model; returns (quantized model, X, y)."""
    from sklearn import ensemble, neural_network, tree
    X, y = make_data(n, seed)
    if kind == "tree":
        est = tree.DecisionTreeClassifier(max_depth=depth or 8, random_state=seed)
    elif kind == "forest":
        est = ensemble.RandomForestClassifier(n_estimators=trees or 32, max_depth=depth or 6,
                                              random_state=seed, n_jobs=1)
    elif kind == "gbm":
        est = ensemble.GradientBoostingClassifier(n_estimators=trees or 16, max_depth=depth or 3,
                                                  random_state=seed)
    elif kind == "mlp":
        est = neural_network.MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, random_state=seed)
        mean, std = X.mean(axis=0), X.std(axis=0)
        est.fit((X - mean) / std, y)
        from kernelpilot.models.mlp import from_mlp
        m = from_mlp(list(zip(est.coefs_, est.intercepts_)), NAMES, "classify",
                     scaling=(mean, std), source="sklearn.MLPClassifier")
        from kernelpilot.models.format import train_summary
        m.meta["train_summary"] = train_summary(X, NAMES)
        m.quantize(X, y)
        return m, X, y
    else:
        raise KpError(f"unknown demo model '{kind}'; choose from {', '.join(KINDS)}")
    est.fit(X, y)
    return from_sklearn(est, NAMES, X, y), X, y
