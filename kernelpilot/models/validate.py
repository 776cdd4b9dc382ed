"""The model validator: run on every load, before anything else reads the file. A model is code that
ends up inside the kernel, so each array is checked for dtype, shape and range, each tree for
links that stay inside it and reach every node once (no cycle, no shared child), the depth and
width bounds below (kernelize/limits.py reads them), finite thresholds and weights, and
quantization fields that the integer predictor, the C emitter and the map encoder can use without
overflow.

Errors are one `KpError` line: `<file>: <field>: <problem>`, naming the first bad element."""
from __future__ import annotations

import math

import numpy as np

from kernelpilot.errors import KpError

OUTPUTS = ("label", "score", "binary")
ARRAY_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                "float32", "float64")
MAX_TREE_DEPTH = 64            # deepest tree any target compiles (unrolled eBPF, C)
MAX_MLP_WIDTH = 64             # widest MLP layer
MAX_ELEMENTS = 1 << 22          # per array in a model file (a map slot holds 8192 nodes)
MAX_FEATURES = 4096             # the C target has no feature limit; a file with more is not ours
MAX_NODES = 1 << 20
MAX_LAYERS = 8
MAX_SHIFT = 31
I32_MIN, I32_MAX = -(2**31), 2**31 - 1


def fail(where: str, field: str, problem: str) -> None:
    raise KpError(f"{where}: {field}: {problem}")


# --- the raw file ---------------------------------------------------------------------------------

def parse_param(where: str, name: str, v) -> np.ndarray:
    """One `params` entry of a JSON model ({dtype, shape, data}) -> array, with its size bounded first."""
    field = f"params.{name}"
    if not isinstance(v, dict):
        fail(where, field, f"expected an object with dtype, shape and data, got {type(v).__name__}")
    dtype, shape, data = v.get("dtype"), v.get("shape"), v.get("data")
    if dtype not in ARRAY_DTYPES:
        fail(where, f"{field}.dtype", f"{_short(dtype)} is not one of {', '.join(ARRAY_DTYPES)}")
    if not isinstance(shape, list) or len(shape) > 4 or \
            not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_ELEMENTS for s in shape):
        fail(where, f"{field}.shape", f"{_short(shape)} is not a list of at most 4 sizes in 0..{MAX_ELEMENTS}")
    size = math.prod(shape)
    if size > MAX_ELEMENTS:
        fail(where, f"{field}.shape", f"{shape} holds {size} elements; at most {MAX_ELEMENTS}")
    if not isinstance(data, list) or len(data) != size:
        fail(where, f"{field}.data", f"expected a flat list of {size} numbers, got "
             f"{len(data) if isinstance(data, list) else type(data).__name__}")
    for i, x in enumerate(data):
        if not isinstance(x, (int, float)) or (isinstance(x, bool) and dtype != "bool"):
            fail(where, f"{field}.data[{i}]", f"{_short(x)} is not a number")
    try:
        arr = np.asarray(data, dtype=np.float64 if dtype.startswith("float") else np.int64)
    except (OverflowError, ValueError, TypeError):
        fail(where, f"{field}.data", "holds a number too large for a model array")
    if not dtype.startswith("float"):
        info = np.iinfo(dtype) if dtype != "bool" else np.iinfo(np.uint8)
        bad = np.flatnonzero((arr < info.min) | (arr > info.max) | (arr != np.floor(arr)))
        if dtype == "bool":
            bad = np.flatnonzero((arr != 0) & (arr != 1))
        if bad.size:
            i = int(bad[0])
            fail(where, f"{field}.data[{i}]", f"{data[i]} does not fit {dtype}")
    return arr.astype(dtype).reshape(shape)


def check_array(where: str, name: str, a) -> np.ndarray:
    """An array read from an npz model: plain numeric dtype, bounded size."""
    a = np.asarray(a)
    if a.dtype.name not in ARRAY_DTYPES:
        fail(where, f"params.{name}", f"dtype {a.dtype} is not one of {', '.join(ARRAY_DTYPES)}")
    if a.size > MAX_ELEMENTS:
        fail(where, f"params.{name}", f"{a.size} elements; at most {MAX_ELEMENTS}")
    return a


def _short(x) -> str:
    s = repr(x)
    return s if len(s) <= 40 else s[:37] + "..."


# --- helpers on arrays ----------------------------------------------------------------------------

def _arr(where, p, name, kinds: str, ndim: int, size: int | None = None) -> np.ndarray:
    """params[name]: present, of dtype kind in `kinds` ('i' int, 'f' float, 'b' bool), ndim, size."""
    if name not in p:
        fail(where, f"params.{name}", "missing")
    a = np.asarray(p[name])
    if a.dtype.kind not in kinds or a.dtype.name not in ARRAY_DTYPES:
        want = {"i": "integer", "f": "float", "if": "number", "iu": "integer"}.get(kinds, kinds)
        fail(where, f"params.{name}", f"dtype {a.dtype} is not {want}")
    if a.ndim != ndim:
        fail(where, f"params.{name}", f"has {a.ndim} dimensions, expected {ndim}")
    if size is not None and a.shape[0] != size:
        fail(where, f"params.{name}", f"has {a.shape[0]} entries, expected {size}")
    return a


def _finite(where, field, a) -> None:
    bad = np.flatnonzero(~np.isfinite(np.asarray(a, dtype=np.float64).ravel()))
    if bad.size:
        i = int(bad[0])
        fail(where, f"{field}[{_index(a, i)}]", f"{np.asarray(a).ravel()[i]} is not finite")


def _in_range(where, field, a, lo, hi) -> None:
    a = np.asarray(a)
    bad = np.flatnonzero(((a < lo) | (a > hi)).ravel())
    if bad.size:
        i = int(bad[0])
        fail(where, f"{field}[{_index(a, i)}]", f"{a.ravel()[i]} is outside {lo}..{hi}")


def _index(a, i: int) -> str:
    a = np.asarray(a)
    return str(i) if a.ndim <= 1 else ",".join(str(int(j)) for j in np.unravel_index(i, a.shape))


def _int(where, field, v, lo, hi) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
            or (isinstance(v, (float, np.floating)) and (not math.isfinite(v) or v != int(v))):
        fail(where, field, f"{_short(v)} is not an integer")
    if not lo <= int(v) <= hi:
        fail(where, field, f"{_short(int(v))} is outside {lo}..{hi}")
    return int(v)


def _num(where, field, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        fail(where, field, f"{_short(v)} is not a number")
    try:
        f = float(v)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f):
        fail(where, field, f"{_short(v)} is not finite")
    return f


def _list(where, field, v, n: int | None = None) -> list:
    if not isinstance(v, list):
        fail(where, field, f"expected a list, got {type(v).__name__}")
    if n is not None and len(v) != n:
        fail(where, field, f"has {len(v)} entries, expected {n}")
    return v


# --- the model ------------------------------------------------------------------------------------

def validate(m, where: str = "model"):
    """Check a loaded `Model` completely; returns it, or raises KpError naming the first bad field."""
    names = m.feature_names
    if not 1 <= len(names) <= MAX_FEATURES:
        fail(where, "feature_names", f"{len(names)} names; a model takes 1..{MAX_FEATURES} features")
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if not n or n in seen:
            fail(where, f"feature_names[{i}]", f"{_short(n)} is empty or repeats feature_names[{seen.get(n)}]")
        seen[n] = i
    if not isinstance(m.meta, dict):
        fail(where, "meta", f"expected an object, got {type(m.meta).__name__}")
    if not isinstance(m.params, dict):
        fail(where, "params", f"expected an object, got {type(m.params).__name__}")
    if m.kind == "ngram":
        _ngram(m, where)
        return m
    out = m.meta.get("output")
    if out not in OUTPUTS:
        fail(where, "meta.output", f"{_short(out)} is not one of {', '.join(OUTPUTS)}")
    if out != "score":
        classes = _list(where, "meta.classes", m.meta.get("classes"))
        if len(classes) < 2 or (out == "binary" and len(classes) != 2):
            fail(where, "meta.classes", f"{len(classes)} classes for output {out}")
    if "train_summary" in m.meta:
        _summary(m, where)
    if m.kind in ("tree", "forest"):
        _trees(m, where)
    elif m.kind == "mlp":
        _mlp(m, where)
    return m


def _summary(m, where) -> None:
    s = m.meta["train_summary"]
    feats = s.get("features") if isinstance(s, dict) else None
    if not isinstance(feats, dict):
        fail(where, "meta.train_summary.features", "missing or not an object")
    for n in m.feature_names:
        f = feats.get(n)
        if not isinstance(f, dict):
            fail(where, f"meta.train_summary.features.{n}", "missing")
        lo = _num(where, f"meta.train_summary.features.{n}.min", f.get("min"))
        hi = _num(where, f"meta.train_summary.features.{n}.max", f.get("max"))
        if lo > hi:
            fail(where, f"meta.train_summary.features.{n}", f"min {lo} > max {hi}")


def _feature_shifts(m, where, q) -> list[int]:
    fs = _list(where, "meta.quant.feature_shift", q.get("feature_shift"), m.n_features)
    return [_int(where, f"meta.quant.feature_shift[{i}]", v, 0, MAX_SHIFT) for i, v in enumerate(fs)]


def _quant(m, where) -> dict | None:
    if "quant" not in m.meta:  # Model.quantized is this test: a null quant is quantized and bad
        return None
    q = m.meta["quant"]
    if not isinstance(q, dict):
        fail(where, "meta.quant", f"expected an object, got {type(q).__name__}")
    return q


def _trees(m, where) -> None:
    p, meta = m.params, m.meta
    feat = _arr(where, p, "feature", "i", 1)
    n = feat.size
    if not 1 <= n <= MAX_NODES:
        fail(where, "params.feature", f"{n} nodes; a model holds 1..{MAX_NODES}")
    left = _arr(where, p, "left", "i", 1, n)
    right = _arr(where, p, "right", "i", 1, n)
    thr = _arr(where, p, "threshold", "if", 1, n)
    val = _arr(where, p, "value", "if", 1, n)
    roots = _arr(where, p, "roots", "i", 1)
    _finite(where, "params.threshold", thr)
    _finite(where, "params.value", val)
    nt = roots.size
    if nt < 1 or nt > n:
        fail(where, "params.roots", f"{nt} trees for {n} nodes")
    if int(roots[0]) != 0:
        fail(where, "params.roots[0]", f"{roots[0]}: the first tree starts at node 0")
    bad = np.flatnonzero(np.diff(roots.astype(np.int64)) <= 0)
    if bad.size or int(roots[-1]) >= n:
        i = int(bad[0]) + 1 if bad.size else nt - 1
        fail(where, f"params.roots[{i}]", f"{roots[i]}: roots must increase and stay below {n}")
    if m.kind == "tree" and nt != 1:
        fail(where, "params.roots", f"a tree model has one root, not {nt}")
    _in_range(where, "params.feature", feat, -1, m.n_features - 1)
    inner = feat >= 0
    ends = np.append(roots.astype(np.int64), n)
    tree = np.repeat(np.arange(nt), np.diff(ends))
    lo, hi = ends[tree], ends[tree + 1] - 1
    for name, child in (("left", left), ("right", right)):
        c = child.astype(np.int64)
        bad = np.flatnonzero(inner & ((c < lo) | (c > hi)))
        if bad.size:
            i = int(bad[0])
            fail(where, f"params.{name}[{i}]", f"child index {c[i]} is outside tree {tree[i]} "
                 f"(nodes {lo[i]}..{hi[i]})")
    depth = _tree_depth(where, feat, left, right, roots, ends)
    want = {"n_trees": nt, "n_nodes": n}
    if "depth" not in meta:
        fail(where, "meta.depth", "missing")
    d = _int(where, "meta.depth", meta["depth"], 0, MAX_TREE_DEPTH)
    if d != depth:
        fail(where, "meta.depth", f"says {d}, the trees are {depth} deep")
    for k, v in want.items():
        if k in meta and _int(where, f"meta.{k}", meta[k], 0, MAX_NODES) != v:
            fail(where, f"meta.{k}", f"says {meta[k]}, the arrays hold {v}")
    out = meta["output"]
    if out == "label":
        if m.kind != "tree":
            fail(where, "meta.output", "label output needs a single tree (kind 'tree')")
        k = len(meta["classes"])
        leafv = np.where(inner, 0, val)
        bad = np.flatnonzero((leafv != np.floor(leafv)) | (leafv < 0) | (leafv >= k))
        if bad.size:
            i = int(bad[0])
            fail(where, f"params.value[{i}]", f"leaf {val[i]} is not a class index 0..{k - 1}")
    for k in ("bias", "threshold"):
        if k in meta:
            _num(where, f"meta.{k}", meta[k])
    q = _quant(m, where)
    if q is None:
        return
    _feature_shifts(m, where, q)
    qt = _arr(where, p, "q_threshold", "i", 1, n)
    qv = _arr(where, p, "q_value", "i", 1, n)
    _in_range(where, "params.q_threshold", qt, I32_MIN, I32_MAX)
    _in_range(where, "params.q_value", qv, I32_MIN, I32_MAX)
    for k in ("bias_q", "threshold_q"):  # the map slot's header carries both, whatever the output
        if k in q:
            _int(where, f"meta.quant.{k}", q[k], I32_MIN, I32_MAX)
    if out == "label":
        k = len(meta["classes"])
        leafq = np.where(inner, 0, qv.astype(np.int64))
        _in_range(where, "params.q_value", leafq, 0, k - 1)
        return
    _int(where, "meta.quant.value_shift", q.get("value_shift"), 0, MAX_SHIFT)
    bias = _int(where, "meta.quant.bias_q", q.get("bias_q"), I32_MIN, I32_MAX)
    if out == "binary":
        _int(where, "meta.quant.threshold_q", q.get("threshold_q"), I32_MIN, I32_MAX)
    # the sum of one leaf per tree plus the bias must stay inside int32 (the kernel adds in 32 bits)
    leaves = np.where(inner, 0, np.abs(qv.astype(np.int64)))
    worst = abs(bias) + int(np.maximum.reduceat(leaves, ends[:-1]).sum())
    if worst > I32_MAX:
        fail(where, "params.q_value", f"bias plus the largest leaf of each tree reach {worst}, "
             "beyond an int32 sum")


def _tree_depth(where, feat, left, right, roots, ends) -> int:
    """Walk every tree breadth-first from its root: each node reached once, depth bounded."""
    n = feat.size
    parents = np.zeros(n, dtype=np.int64)
    inner = feat >= 0
    np.add.at(parents, left[inner].astype(np.int64), 1)
    np.add.at(parents, right[inner].astype(np.int64), 1)
    is_root = np.zeros(n, dtype=bool)
    is_root[roots.astype(np.int64)] = True
    bad = np.flatnonzero(parents[is_root] > 0)
    if bad.size:
        r = int(np.flatnonzero(is_root)[bad[0]])
        fail(where, f"params.roots[{int(np.searchsorted(ends, r))}]",
             f"node {r} is a root and also a child: the links contain a cycle")
    bad = np.flatnonzero(parents > 1)
    if bad.size:
        fail(where, "params.left/right", f"node {int(bad[0])} has {parents[bad[0]]} parents: "
             "the links must form trees")
    depth, level, seen = 0, roots.astype(np.int64), 0
    for d in range(MAX_TREE_DEPTH + 1):
        seen += level.size
        kids = level[inner[level]]
        if kids.size == 0:
            depth = d
            break
        level = np.concatenate([left[kids], right[kids]]).astype(np.int64)
    else:
        fail(where, "meta.depth", f"the trees are deeper than {MAX_TREE_DEPTH}")
    if seen != n:
        # every node has at most one parent and no root is a child, so a node not reached sits on a cycle
        fail(where, "params.left/right", f"{n - seen} of {n} nodes are not reached from a root "
             "(the links contain a cycle or unused nodes)")
    return depth


def _mlp(m, where) -> None:
    p, meta = m.params, m.meta
    F = m.n_features
    L = _int(where, "meta.n_layers", meta.get("n_layers"), 1, MAX_LAYERS)
    shape = _list(where, "meta.shape", meta.get("shape"), L + 1)
    width = F
    for i in range(L):
        W = _arr(where, p, f"W{i}", "if", 2, width)
        b = _arr(where, p, f"b{i}", "if", 1, W.shape[1])
        _finite(where, f"params.W{i}", W)
        _finite(where, f"params.b{i}", b)
        if not 1 <= W.shape[1] <= MAX_MLP_WIDTH:
            fail(where, f"params.W{i}", f"{W.shape[1]} units; 1..{MAX_MLP_WIDTH} are supported")
        width = W.shape[1]
    if width != 1:
        fail(where, f"params.W{L - 1}", f"the MLP ends in {width} units, not one")
    real = [F] + [int(p[f"W{i}"].shape[1]) for i in range(L)]
    if [_int(where, f"meta.shape[{i}]", s, 1, MAX_FEATURES) for i, s in enumerate(shape)] != real:
        fail(where, "meta.shape", f"says {shape}, the weights give {real}")
    mean = _arr(where, p, "mean", "if", 1, F)
    std = _arr(where, p, "std", "if", 1, F)
    _finite(where, "params.mean", mean)
    _finite(where, "params.std", std)
    bad = np.flatnonzero(std <= 0)
    if bad.size:
        fail(where, f"params.std[{int(bad[0])}]", f"{std[bad[0]]} is not > 0")
    _num(where, "meta.threshold", meta.get("threshold", 0.0))
    q = _quant(m, where)
    if q is None:
        return
    _feature_shifts(m, where, q)
    bits = _int(where, "meta.quant.weight_bits", q.get("weight_bits"), 8, 16)
    if bits not in (8, 16):
        fail(where, "meta.quant.weight_bits", f"{bits} is not 8 or 16")
    off = _arr(where, p, "q_off", "i", 1, F)
    mul = _arr(where, p, "q_mul", "i", 1, F)
    lim = _arr(where, p, "q_lim", "i", 1, F)
    _in_range(where, "params.q_off", off, I32_MIN, I32_MAX)
    _in_range(where, "params.q_mul", mul, 0, 2**40)
    _in_range(where, "params.q_lim", lim, 0, 2**33)
    prod = lim.astype(np.float64) * mul.astype(np.float64)
    bad = np.flatnonzero(prod >= 2.0**62)
    if bad.size:  # (x - off) clipped to +-lim, times mul: must stay inside int64
        i = int(bad[0])
        fail(where, f"params.q_lim[{i}]", f"{lim[i]} x q_mul {mul[i]} overflows a 64-bit product")
    qmax = 127 if bits == 8 else 32767
    for i in range(L):
        W = _arr(where, p, f"q_W{i}", "i", 2, real[i])
        b = _arr(where, p, f"q_b{i}", "i", 1, real[i + 1])
        if W.shape[1] != real[i + 1]:
            fail(where, f"params.q_W{i}", f"shape {list(W.shape)}, expected {real[i:i + 2]}")
        _in_range(where, f"params.q_W{i}", W, -qmax, qmax)
        _in_range(where, f"params.q_b{i}", b, I32_MIN, I32_MAX)
        bound = np.abs(b.astype(np.int64)) + np.abs(W.astype(np.int64)).sum(axis=0) * 127
        j = int(np.argmax(bound))
        if bound[j] > I32_MAX:
            fail(where, f"params.q_W{i}", f"unit {j} can reach {bound[j]}, beyond an int32 accumulator")
    sh = _arr(where, p, "q_shift", "i", 1, L - 1)
    _in_range(where, "params.q_shift", sh, 0, MAX_SHIFT)
    if meta["output"] == "binary":
        _int(where, "meta.quant.threshold_q", q.get("threshold_q"), I32_MIN, I32_MAX)


def _ngram(m, where) -> None:
    p, meta = m.params, m.meta
    n = _int(where, "meta.n", meta.get("n"), 1, 8)
    vocab = _list(where, "meta.vocab", meta.get("vocab"))
    V = len(vocab)
    if V < 1 or V ** n >= 2**62:
        fail(where, "meta.vocab", f"{V} tokens: {V}^{n} n-grams do not fit a 64-bit key")
    if m.n_features != n:
        fail(where, "feature_names", f"{m.n_features} names for n-grams of length {n}")
    keys = _arr(where, p, "keys", "i", 2)
    if keys.shape[1] != n:
        fail(where, "params.keys", f"rows of {keys.shape[1]} tokens, expected {n}")
    _in_range(where, "params.keys", keys, 0, V - 1)
    scores = _arr(where, p, "scores", "i", 1, keys.shape[0])
    _in_range(where, "params.scores", scores, I32_MIN, I32_MAX)
    _int(where, "meta.unseen_score", meta.get("unseen_score"), I32_MIN, I32_MAX)
    _int(where, "meta.threshold", meta.get("threshold"), -(2**62), 2**62)
    if "quant" not in meta:
        fail(where, "meta.quant", "missing (n-gram models are integer: {\"note\": ...})")


def check_features(m, names, where: str = "model", consumer: str = "this command") -> None:
    """The consumer reads features by position: the model's names must be exactly `names`."""
    names = list(names)
    if m.feature_names != names:
        i = next((i for i, (a, b) in enumerate(zip(m.feature_names, names)) if a != b),
                 min(len(names), m.n_features))
        got = m.feature_names[i] if i < m.n_features else "(none)"
        want = names[i] if i < len(names) else "(none)"
        fail(where, f"feature_names[{i}]", f"{_short(got)}, but {consumer} gives {_short(want)} "
             f"({m.n_features} names, {len(names)} expected)")


def check_depth(m, max_depth: int, where: str = "model", consumer: str = "this command") -> None:
    """Consumers that lay trees out as complete binary trees (2^depth nodes each) bound the depth."""
    if m.kind in ("tree", "forest") and int(m.meta["depth"]) > max_depth:
        fail(where, "meta.depth", f"{m.meta['depth']}; {consumer} takes trees of depth <= {max_depth}")


def check_document(doc, where: str, ints: dict[str, tuple[int, int]] | None = None) -> None:
    """A JSON model document of another layout (the security model): every number finite, and the
    named top-level integers inside their ranges."""
    stack = [(doc, "")]
    while stack:
        v, path = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            fail(where, path.lstrip(".") or "(document)", f"{v} is not finite")
        elif isinstance(v, dict):
            stack.extend(reversed([(x, f"{path}.{k}") for k, x in v.items()]))  # document order
        elif isinstance(v, list):
            stack.extend(reversed([(x, f"{path}[{i}]") for i, x in enumerate(v)]))
    for k, (lo, hi) in (ints or {}).items():
        _int(where, k, doc.get(k), lo, hi)
