"""Integer quantization with stated scales, and the report of accuracy lost versus the float model.

Features: the kernel passes int32 x_int = floor(x * 2**feature_shift[i]); the shift is 0 for a
column that is integer in the training data (counts, sizes, ids), else the largest shift <= 16 that
keeps the column inside 2**30. Trees: thresholds floor(t * 2**fs); leaf values round(v * 2**vs).
MLP: inputs rescaled to int8, weights int8 (or int16), int32 accumulators, ReLU, shift requant."""
from __future__ import annotations

import math

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.models.predict import MLP_IN_SHIFT, mlp_int_layers, predict_float, predict_int

I32 = 2**31 - 1
MAX_SHIFT = 16


def _shift_for(maxabs: float) -> int:
    if maxabs <= 0:
        return MAX_SHIFT
    return int(max(0, min(MAX_SHIFT, math.floor(math.log2(2**30 / maxabs)))))


def feature_shifts(X, n: int) -> list[int]:
    if X is None:
        return [0] * n
    shifts = []
    for i in range(n):
        col = X[:, i]
        shifts.append(0 if np.all(col == np.floor(col)) else _shift_for(float(np.abs(col).max())))
    return shifts


def features_to_int(m, X) -> np.ndarray:
    m.require_quantized()
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2 or X.shape[1] != m.n_features:
        raise KpError(f"feature rows have shape {X.shape}, the model expects {m.n_features} features")
    fs = np.asarray(m.meta["quant"]["feature_shift"], dtype=np.float64)
    return np.clip(np.floor(X * 2.0**fs), -I32 - 1, I32).astype(np.int32)


def _quantize_trees(m, fs, bits):
    p, meta = m.params, m.meta
    inner = p["feature"] >= 0
    f = np.where(inner, p["feature"], 0)
    thr = np.floor(p["threshold"] * 2.0 ** np.asarray(fs, dtype=np.float64)[f])
    p["q_threshold"] = np.where(inner, np.clip(thr, -I32 - 1, I32), 0).astype(np.int32)
    q = {"feature_shift": fs}
    if meta["output"] == "label":
        p["q_value"] = np.where(inner, 0, p["value"]).astype(np.int32)
        q["value_shift"] = 0
        return q
    leaf_max = [np.abs(p["value"][(p["feature"] < 0) & (tree_ids(p) == t)]).max(initial=0)
                for t in range(len(p["roots"]))]
    worst = abs(meta.get("bias", 0.0)) + abs(meta.get("threshold", 0.0)) + float(sum(leaf_max))
    vs = _shift_for(worst)
    p["q_value"] = np.where(inner, 0, np.round(p["value"] * 2.0**vs)).astype(np.int32)
    q.update(value_shift=vs, score_scale=2.0**vs, bias_q=int(round(meta.get("bias", 0.0) * 2**vs)),
             threshold_q=int(math.floor(meta.get("threshold", 0.0) * 2**vs)))
    return q


def tree_ids(p) -> np.ndarray:
    """Which tree each node belongs to."""
    ids = np.zeros(p["feature"].size, dtype=np.int64)
    for t, r in enumerate(p["roots"]):
        ids[r:] = t
    return ids


def _quantize_mlp(m, fs, X, bits):
    p, meta = m.params, m.meta
    qmax = {8: 127, 16: 32767}.get(bits)
    if qmax is None:
        raise KpError(f"MLP weights can be 8 or 16 bits, not {bits}")
    fsc = 2.0 ** np.asarray(fs, dtype=np.float64)
    zmax = 4.0
    if X is not None:
        z = np.abs((X - p["mean"]) / p["std"])
        zmax = float(np.clip(np.percentile(z, 99.9), 1.0, 8.0))
    s_a = 127.0 / zmax
    p["q_off"] = np.round(p["mean"] * fsc).astype(np.int64)
    p["q_mul"] = np.round(2.0**MLP_IN_SHIFT * s_a / (p["std"] * fsc)).astype(np.int64)
    p["q_lim"] = ((128 << MLP_IN_SHIFT) // np.maximum(p["q_mul"], 1) + 1).astype(np.int64)
    q = {"feature_shift": fs, "weight_bits": bits, "input_scale": s_a, "in_shift": MLP_IN_SHIFT}
    L = meta["n_layers"]
    shifts, scales = [], [s_a]
    calib = None
    if X is not None:
        d = np.clip(np.floor(X * fsc).astype(np.int64) - p["q_off"], -p["q_lim"], p["q_lim"])
        calib = np.clip((d * p["q_mul"]) >> MLP_IN_SHIFT, -127, 127)
    for i in range(L):
        W, b = p[f"W{i}"], p[f"b{i}"]
        s_w = qmax / max(float(np.abs(W).max()), 1e-12)
        Wq = np.round(W * s_w).astype(np.int8 if bits == 8 else np.int16)
        bq = np.round(b * s_a * s_w)
        bound = np.abs(bq) + np.abs(Wq.astype(np.int64)).sum(axis=0) * 127
        if bound.max() >= 2**31:
            raise KpError(f"MLP layer {i} could overflow an int32 accumulator; use 8-bit weights")
        p[f"q_W{i}"], p[f"q_b{i}"] = Wq, bq.astype(np.int32)
        if i == L - 1:
            q["out_scale"] = s_a * s_w
            break
        if calib is not None:
            acc = calib @ Wq.astype(np.int64) + bq.astype(np.int64)
            top = float(np.maximum(acc, 0).max(initial=0))
        else:
            top = float(bound.max())
        sh = max(0, math.ceil(math.log2(top / 127))) if top > 127 else 0
        shifts.append(sh)
        if calib is not None:
            calib = np.minimum(np.maximum(acc, 0) >> sh, 127)
        s_a = s_a * s_w / 2**sh
        scales.append(s_a)
    p["q_shift"] = np.array(shifts, dtype=np.int32)
    q["act_scales"] = scales
    q["threshold_q"] = int(math.floor(meta.get("threshold", 0.0) * q["out_scale"]))
    return q


def quantize(m, X=None, y=None, bits: int = 8) -> dict:
    """Quantize `m` in place; returns the report (also in m.meta['quant']['report'])."""
    if X is not None:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != m.n_features:
            raise KpError(f"calibration data has shape {X.shape}, expected (n, {m.n_features})")
    fs = feature_shifts(X, m.n_features)
    if m.kind in ("tree", "forest"):
        q = _quantize_trees(m, fs, bits)
    elif m.kind == "mlp":
        q = _quantize_mlp(m, fs, X, bits)
    else:
        raise KpError(f"quantization does not apply to {m.kind} models (they are integer already)")
    m.meta["quant"] = q
    q["report"] = accuracy_report(m, X, y)
    return q["report"]


def accuracy_report(m, X, y=None) -> dict:
    if X is None:
        return {"note": "no data given: features are taken as integers; loss not measured"}
    f = predict_float(m, X)
    i = predict_int(m, m.to_int(X))
    rep = {"n": int(len(X))}
    if m.meta["output"] == "score":
        scale = m.meta["quant"].get("score_scale") or m.meta["quant"]["out_scale"]
        err = np.abs(i / scale - f)
        rep.update(max_abs_error=float(err.max(initial=0)), mean_abs_error=float(err.mean()))
        if y is not None:
            rep.update(rmse_float=float(np.sqrt(np.mean((f - y) ** 2))),
                       rmse_int=float(np.sqrt(np.mean((i / scale - y) ** 2))))
        return rep
    rep["agreement"] = float(np.mean(f == i))
    if y is not None:
        classes = np.asarray(m.meta["classes"])
        rep["accuracy_float"] = float(np.mean(classes[f] == np.asarray(y)))
        rep["accuracy_int"] = float(np.mean(classes[i] == np.asarray(y)))
        rep["accuracy_loss"] = rep["accuracy_float"] - rep["accuracy_int"]
    return rep
