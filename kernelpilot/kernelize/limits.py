"""Limits checked before anything is compiled or loaded, each failing with one clear line."""
from __future__ import annotations

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.models.validate import MAX_MLP_WIDTH as MLP_MAX_WIDTH
from kernelpilot.models.validate import MAX_TREE_DEPTH as CODE_MAX_DEPTH

TARGETS = ("bpf-map", "bpf-code", "c")
MAX_FEATURES = 32          # the feature vector a kernel program carries
MAP_MAX_DEPTH = 16         # bounded loop in the map interpreter
MAP_MAX_NODES = 8192       # nodes per model slot
MAP_MAX_TREES = 64
BPF_STACK = 512            # bytes
BPF_INSN_BUDGET = 1_000_000  # verified instructions; also the program size limit for root
CODE_INSNS_PER_NODE = 3    # compare + branch (+ load), measured ~2.6 on clang 14


def estimate(m) -> dict:
    """Size figures for a model: depth, nodes, estimated BPF instructions and stack bytes."""
    if m.kind in ("tree", "forest"):
        nodes = int(m.params["feature"].size)
        trees = int(m.params["roots"].size)
        return {"depth": int(m.meta["depth"]), "nodes": nodes, "trees": trees,
                "insns_est": nodes * CODE_INSNS_PER_NODE + 4 * trees + 40,
                "stack_est": 4 * m.n_features + 16}
    if m.kind == "mlp":
        shape = m.meta["shape"]
        macs = sum(a * b for a, b in zip(shape, shape[1:]))
        return {"shape": shape, "macs": macs, "insns_est": 3 * macs + 12 * shape[0] + 40,
                "stack_est": 4 * (sum(shape[:-1])) + 8 * 4}
    return {}


def check_limits(m, target: str) -> dict:
    if target not in TARGETS:
        raise KpError(f"unknown target '{target}'; expected one of {', '.join(TARGETS)}")
    if m.kind not in ("tree", "forest", "mlp"):
        raise KpError(f"unsupported model type '{m.kind}' for target {target}; "
                      "kernelize takes trees, forests and MLPs")
    m.require_quantized()
    est = estimate(m)
    if target != "c" and m.n_features > MAX_FEATURES:
        raise KpError(f"model has {m.n_features} features; eBPF targets take at most {MAX_FEATURES}")
    if m.kind == "mlp":
        if target == "bpf-map":
            raise KpError("unsupported model type 'mlp' for target bpf-map; use --target bpf-code")
        if max(est["shape"]) > MLP_MAX_WIDTH:
            raise KpError(f"MLP layer width {max(est['shape'])} exceeds {MLP_MAX_WIDTH}")
    else:
        p = m.params
        inner = p["feature"] >= 0
        if np.any(p["feature"][inner] >= m.n_features):
            raise KpError("model tests a feature index beyond its feature list")
        if target == "bpf-map":
            if est["depth"] > MAP_MAX_DEPTH:
                raise KpError(f"tree depth {est['depth']} exceeds the map interpreter's limit of "
                              f"{MAP_MAX_DEPTH}; retrain with max_depth<={MAP_MAX_DEPTH} or use bpf-code")
            if est["nodes"] > MAP_MAX_NODES:
                raise KpError(f"model has {est['nodes']} nodes; a map slot holds at most {MAP_MAX_NODES}")
            if est["trees"] > MAP_MAX_TREES:
                raise KpError(f"model has {est['trees']} trees; the map interpreter takes at most "
                              f"{MAP_MAX_TREES}")
        elif est["depth"] > CODE_MAX_DEPTH:
            raise KpError(f"tree depth {est['depth']} exceeds {CODE_MAX_DEPTH} for unrolled code")
    if target != "c":
        if est["stack_est"] > BPF_STACK:
            raise KpError(f"model needs about {est['stack_est']} bytes of stack; eBPF allows {BPF_STACK}")
        if target == "bpf-code" and est["insns_est"] > BPF_INSN_BUDGET:
            raise KpError(f"model needs about {est['insns_est']} BPF instructions; the verifier "
                          f"budget is {BPF_INSN_BUDGET}")
    return est
