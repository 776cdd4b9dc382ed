"""Reference predictors. `predict_int` is THE ground truth: the kernel programs and the C code must
agree with it bit for bit. Outputs are integers: class index (label/binary) or a scaled score."""
from __future__ import annotations

import numpy as np

from kernelpilot.errors import KpError

MLP_IN_SHIFT = 24  # input requantization: a = ((x - off) * mul) >> 24


def _walk(p, thr, X, roots):
    """Walk every tree for every row; returns leaf indices, shape (n_rows, n_trees)."""
    feat, left, right = p["feature"], p["left"], p["right"]
    n = X.shape[0]
    rows = np.arange(n)[:, None]
    idx = np.broadcast_to(roots, (n, len(roots))).copy()
    for _ in range(int(feat.size) + 1):
        f = feat[idx]
        inner = f >= 0
        if not inner.any():
            return idx
        go_left = X[rows, np.where(inner, f, 0)] <= thr[idx]
        idx = np.where(inner, np.where(go_left, left[idx], right[idx]), idx)
    raise KpError("tree walk did not end: the model's node links contain a cycle")


def _combine(m, leaves_vals, bias, thr, integer):
    out = m.meta["output"]
    if out == "label":
        return leaves_vals[:, 0].astype(np.int64)
    s = leaves_vals.sum(axis=1) + bias
    if out == "score":
        return s
    return (s > thr).astype(np.int64)


def _check_X(m, X, integer):
    X = np.asarray(X)
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2 or X.shape[1] != m.n_features:
        raise KpError(f"feature rows have shape {X.shape}, the model expects {m.n_features} features")
    return X.astype(np.int64) if integer else X.astype(np.float64)


def predict_float(m, X) -> np.ndarray:
    if m.kind == "ngram":
        return predict_int(m, X)
    X = _check_X(m, X, integer=False)
    p = m.params
    if m.kind in ("tree", "forest"):
        leaves = _walk(p, p["threshold"], X, p["roots"])
        return _combine(m, p["value"][leaves], m.meta.get("bias", 0.0),
                        m.meta.get("threshold", 0.0), False)
    if m.kind == "mlp":
        a = (X - p["mean"]) / p["std"]
        L = m.meta["n_layers"]
        for i in range(L):
            a = a @ p[f"W{i}"] + p[f"b{i}"]
            if i < L - 1:
                a = np.maximum(a, 0.0)
        s = a[:, 0]
        return s if m.meta["output"] == "score" else (s > m.meta["threshold"]).astype(np.int64)
    raise KpError(f"no predictor for model kind {m.kind}")


def mlp_int_layers(m, Xint: np.ndarray) -> np.ndarray:
    """Integer MLP: int64 input scaling, int8 activations, int32 accumulators, shift requant."""
    p, q = m.params, m.meta["quant"]
    d = np.clip(Xint - p["q_off"], -p["q_lim"], p["q_lim"])
    a = np.clip((d * p["q_mul"]) >> MLP_IN_SHIFT, -127, 127)
    L = m.meta["n_layers"]
    for i in range(L):
        acc = a @ p[f"q_W{i}"].astype(np.int64) + p[f"q_b{i}"].astype(np.int64)
        if i < L - 1:
            a = np.minimum(np.maximum(acc, 0) >> int(p["q_shift"][i]), 127)
    if np.abs(acc).max(initial=0) >= 2**31:
        raise KpError("integer MLP accumulator overflowed int32 (quantization bug)")
    return acc[:, 0]


def pack_ngrams(grams: np.ndarray, vocab_size: int) -> np.ndarray:
    base = np.int64(vocab_size)
    out = np.zeros(grams.shape[:-1], dtype=np.int64)
    for j in range(grams.shape[-1]):
        out = out * base + grams[..., j]
    return out


def _ngram_windows(m, W) -> np.ndarray:
    """Windows (rows of token ids, length >= n) -> 1 when the summed score > threshold."""
    W = np.asarray(W, dtype=np.int64)
    n, V = m.meta["n"], len(m.meta["vocab"])
    if W.ndim != 2 or W.shape[1] < n:
        raise KpError(f"n-gram windows must be rows of at least {n} token ids")
    table = dict(zip(pack_ngrams(m.params["keys"], V).tolist(), m.params["scores"].tolist()))
    idx = np.arange(W.shape[1] - n + 1)[:, None] + np.arange(n)
    packed = pack_ngrams(W[:, idx], V)
    unseen = m.meta["unseen_score"]
    score = np.vectorize(lambda k: table.get(k, unseen), otypes=[np.int64])(packed).sum(axis=1)
    return (score > m.meta["threshold"]).astype(np.int64)


def predict_int(m, Xint) -> np.ndarray:
    """Integer reference. Xint: int32 feature rows as the kernel sees them (see Model.to_int)."""
    m.require_quantized()
    if m.kind == "ngram":  # windows of token ids, any length >= n
        return _ngram_windows(m, Xint)
    X = _check_X(m, Xint, integer=True)
    p, q = m.params, m.meta["quant"]
    if m.kind in ("tree", "forest"):
        leaves = _walk(p, p["q_threshold"].astype(np.int64), X, p["roots"])
        return _combine(m, p["q_value"].astype(np.int64)[leaves], q.get("bias_q", 0),
                        q.get("threshold_q", 0), True)
    if m.kind == "mlp":
        s = mlp_int_layers(m, X)
        return s if m.meta["output"] == "score" else (s > q["threshold_q"]).astype(np.int64)
    raise KpError(f"no integer predictor for model kind {m.kind}")
