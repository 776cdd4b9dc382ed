"""Random quantized models at the edges of what the validator allows (int32 thresholds and leaves
up to the sums the kernel can add, every feature, depths up to the map interpreter's limit, MLP
scales up to a 64-bit product): test fixtures for "accepted means verified and bit-exact"."""
from __future__ import annotations

import numpy as np

from kernelpilot.models.format import Model

I32_MIN, I32_MAX = -(2**31), 2**31 - 1


def _int32(rng, lo=I32_MIN, hi=I32_MAX) -> int:
    pick = rng.random()
    if pick < 0.15:
        return int(rng.choice([lo, hi, 0, -1, 1]))
    if pick < 0.5:
        return int(rng.integers(-64, 65))
    return int(rng.integers(lo, hi, endpoint=True))


def random_trees(rng, output: str = "binary", n_features: int = 8, n_trees: int = 4, max_depth: int = 6) -> Model:
    """A forest (or, for output 'label', one tree) with absolute child indices, quantized as is."""
    if output == "label":
        n_trees = 1
    k = int(rng.integers(2, 6)) if output == "label" else 2
    bias = _int32(rng, -(2**28), 2**28)
    leaf_lim = (I32_MAX - abs(bias)) // n_trees  # one leaf per tree plus the bias stays in int32
    feat, left, right, thr, val, roots = [], [], [], [], [], []

    def grow(depth: int) -> int:
        i = len(feat)
        feat.append(-1), left.append(-1), right.append(-1), thr.append(0), val.append(0)
        if depth < max_depth and (depth == 0 or rng.random() < 0.75):
            feat[i] = int(rng.integers(0, n_features))
            thr[i] = _int32(rng)
            left[i] = grow(depth + 1)
            right[i] = grow(depth + 1)
        else:
            val[i] = int(rng.integers(0, k)) if output == "label" else _int32(rng, -leaf_lim, leaf_lim)
        return i

    for _ in range(n_trees):
        roots.append(len(feat))
        grow(0)
    p = {"feature": np.array(feat, np.int32), "left": np.array(left, np.int32), "right": np.array(right, np.int32),
         "threshold": np.array(thr, np.float64), "value": np.array(val, np.float64),
         "roots": np.array(roots, np.int32), "q_threshold": np.array(thr, np.int32), "q_value": np.array(val, np.int32)}
    depth = _depth(p)
    meta = {"source": "fuzz", "task": "regress" if output == "score" else "classify", "output": output,
            "depth": depth, "n_trees": n_trees, "n_nodes": len(feat), "bias": float(bias),
            "quant": {"feature_shift": [0] * n_features, "value_shift": 0, "score_scale": 1.0, "bias_q": bias}}
    if output != "score":
        meta["classes"] = list(range(k))
    if output == "binary":
        meta["quant"]["threshold_q"] = meta["threshold"] = _int32(rng)
    if output == "label":
        meta["quant"] = {"feature_shift": [0] * n_features, "value_shift": 0}
    return Model("tree" if output == "label" else "forest", [f"f{i}" for i in range(n_features)], p, meta)


def _depth(p) -> int:
    def d(j):
        return 0 if p["feature"][j] < 0 else 1 + max(d(p["left"][j]), d(p["right"][j]))
    return max(d(int(r)) for r in p["roots"])


def random_mlp(rng, n_features: int = 6, widths=(8, 4), output: str = "binary") -> Model:
    """An integer MLP with int8 weights, biases up to what an int32 accumulator holds, input scales
    from tiny to a 64-bit product, and requantization shifts anywhere in 0..31."""
    shape = [n_features, *widths, 1]
    p = {}
    for i, (a, b) in enumerate(zip(shape, shape[1:])):
        W = rng.integers(-127, 128, (a, b))
        room = I32_MAX - int(np.abs(W).sum(axis=0).max()) * 127
        p[f"q_W{i}"] = W.astype(np.int8)
        p[f"q_b{i}"] = rng.integers(-room, room, b, endpoint=True).astype(np.int32) if rng.random() < 0.5 \
            else rng.integers(-2000, 2000, b).astype(np.int32)
        p[f"W{i}"], p[f"b{i}"] = W.astype(np.float64), p[f"q_b{i}"].astype(np.float64)
    p["q_shift"] = rng.integers(0, 32, len(shape) - 2).astype(np.int32)
    p["q_off"] = np.array([_int32(rng) for _ in range(n_features)], np.int64)
    mul = rng.choice([0, 1, 1 << 10, 1 << 24, 1 << 31, 1 << 40], n_features) * rng.random(n_features)
    p["q_mul"] = mul.astype(np.int64)
    p["q_lim"] = np.array([min((128 << 24) // max(int(m), 1) + 1, (2**62 - 1) // max(int(m), 1), 2**33)
                           for m in p["q_mul"]], np.int64)
    p["mean"], p["std"] = np.zeros(n_features), np.ones(n_features)
    meta = {"source": "fuzz", "task": "classify" if output == "binary" else "regress", "output": output,
            "n_layers": len(shape) - 1, "threshold": 0.0, "shape": shape,
            "quant": {"feature_shift": [0] * n_features, "weight_bits": 8, "in_shift": 24, "out_scale": 1.0,
                      "threshold_q": _int32(rng)}}
    if output == "binary":
        meta["classes"] = [0, 1]
    return Model("mlp", [f"x{i}" for i in range(n_features)], p, meta)
