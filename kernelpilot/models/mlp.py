"""Import a small ReLU multilayer perceptron from numpy weights, a PyTorch state dict or
scikit-learn's MLPClassifier/MLPRegressor. One output unit: a score (regression) or a logit
(binary: class 1 when the logit > threshold). Weights are stored as W{l} with shape (in, out)."""
from __future__ import annotations

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.models.format import Model

MAX_WIDTH = 64


def from_mlp(layers, feature_names, task: str = "classify", scaling=None, threshold: float = 0.0,
             source: str = "numpy") -> Model:
    """layers: [(W, b), ...] with W of shape (in, out); ReLU between layers, none at the output.
    scaling: optional (mean, std) applied to the features before the first layer."""
    feature_names = list(feature_names)
    if task not in ("classify", "regress"):
        raise KpError(f"unknown task '{task}'; expected classify or regress")
    if not layers:
        raise KpError("an MLP needs at least one layer")
    params, width = {}, len(feature_names)
    for i, (W, b) in enumerate(layers):
        W = np.asarray(W, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64).ravel()
        if W.ndim != 2 or W.shape[0] != width or b.shape != (W.shape[1],):
            raise KpError(f"MLP layer {i}: weights {W.shape} / bias {b.shape} do not follow "
                          f"a layer of width {width}")
        if W.shape[1] > MAX_WIDTH:
            raise KpError(f"MLP layer {i} has {W.shape[1]} units; at most {MAX_WIDTH} are supported")
        params[f"W{i}"], params[f"b{i}"], width = W, b, W.shape[1]
    if width != 1:
        raise KpError(f"the MLP ends in {width} units; kernelize supports one output unit")
    mean = np.zeros(len(feature_names)) if scaling is None else np.asarray(scaling[0], float)
    std = np.ones(len(feature_names)) if scaling is None else np.asarray(scaling[1], float)
    if mean.shape != (len(feature_names),) or std.shape != mean.shape or np.any(std <= 0):
        raise KpError("MLP scaling must be (mean, std) per feature with std > 0")
    params["mean"], params["std"] = mean, std
    meta = {"source": source, "task": task, "output": "binary" if task == "classify" else "score",
            "n_layers": len(layers), "threshold": float(threshold),
            "shape": [len(feature_names)] + [params[f"W{i}"].shape[1] for i in range(len(layers))]}
    if task == "classify":
        meta["classes"] = [0, 1]
    return Model("mlp", feature_names, params, meta)


def from_torch(module_or_state, feature_names, task="classify", scaling=None) -> Model:
    """A torch nn.Sequential of Linear/ReLU (or its state_dict): Linear weights are (out, in)."""
    state = module_or_state.state_dict() if hasattr(module_or_state, "state_dict") else module_or_state
    arrays = {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v)
              for k, v in state.items()}
    weights = [k for k in arrays if k.endswith("weight")]
    layers = []
    for k in weights:
        bk = k[: -len("weight")] + "bias"
        if bk not in arrays:
            raise KpError(f"torch layer {k} has no bias")
        layers.append((arrays[k].T, arrays[bk]))
    return from_mlp(layers, feature_names, task, scaling, source="torch")


def is_sklearn_mlp(est) -> bool:
    return type(est).__name__ in ("MLPClassifier", "MLPRegressor")


def from_sklearn_mlp(est, feature_names, X=None) -> Model:
    name = type(est).__name__
    if not hasattr(est, "coefs_"):
        raise KpError(f"{name} is not fitted")
    if est.activation != "relu":
        raise KpError(f"{name} uses activation '{est.activation}'; kernelize supports relu")
    if name == "MLPClassifier" and len(est.classes_) != 2:
        raise KpError(f"{name} with {len(est.classes_)} classes is not supported; use binary")
    m = from_mlp(list(zip(est.coefs_, est.intercepts_)), feature_names,
                 "classify" if name == "MLPClassifier" else "regress", source=f"sklearn.{name}")
    if name == "MLPClassifier":
        m.meta["classes"] = est.classes_.tolist()
    return m
