"""`kpilot bench kernelize`: ns per inference for a depth-8 tree, a 32-tree forest and a 16-8-1 MLP,
side by side: in the kernel (map interpreter, unrolled; BPF_PROG_TEST_RUN, net of the empty
harness; and on a real tracepoint trigger), numpy (batched, single) and the compiled C via ctypes
(one call per inference, crossing included). Parity of every kernel form over the test vectors."""
from __future__ import annotations

import os
import time

import numpy as np

from kernelpilot.kernelize.harness import parity, sample_vectors
from kernelpilot.kernelize.kernel import deploy_code, deploy_map
from kernelpilot.kernelize.native import NativeModel
from kernelpilot.models import demo

MODELS = {"tree_depth8": ("tree", {"depth": 8}), "forest_32": ("forest", {"trees": 32, "depth": 6}),
          "mlp_16_8_1": ("mlp", {})}


def _per_call(fn, n: int) -> float:
    t = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - t) / n


def _tracepoint_ns(km, n: int) -> float:
    from kernelpilot.probes.libbpf import enable_stats
    with enable_stats():
        tp = km.attach_tracepoint(os.getpid())
        before = tp.run_stats()
        for _ in range(n):
            os.getppid()
        after = tp.run_stats()
        tp.detach()
    runs = after["run_cnt"] - before["run_cnt"]
    return (after["run_time_ns"] - before["run_time_ns"]) / runs if runs else float("nan")


def bench_model(kind: str, opts: dict, quick: bool) -> dict:
    m, _, _ = demo.train(kind, n=8000 if quick else 20000, **opts)
    n_par = 20_000 if quick else 100_000
    X = sample_vectors(m, n_par)
    few = X[: 8 if quick else 32]
    repeat = 3000 if quick else 20000
    out: dict = {"model": {"kind": m.kind, "depth": m.meta.get("depth"), "trees": m.meta.get("n_trees"),
                           "nodes": int(m.params["feature"].size) if "feature" in m.params else None,
                           "shape": m.meta.get("shape")}}
    forms = ([("map", deploy_map)] if kind != "mlp" else []) + [("unrolled", deploy_code)]
    for name, deploy in forms:
        with deploy(m) as km:
            ns = km.ns_per_inference(few, repeat=repeat)
            out[f"kernel_{name}"] = {"ns": ns["ns_net"], "ns_with_harness": ns["ns_harness"],
                                     "parity": parity(m, km.predict, X=X)["rate"], **km.stats()}
            if name == "unrolled":
                out["kernel_tracepoint_ns"] = _tracepoint_ns(km, 5000 if quick else 20000)
    big = X if len(X) >= 20000 else np.tile(X, (20000 // len(X) + 1, 1))
    t = time.perf_counter_ns()
    m.predict_int(big)
    out["numpy_batched_ns"] = (time.perf_counter_ns() - t) / len(big)
    row = X[:1]
    out["numpy_single_ns"] = _per_call(lambda: m.predict_int(row), 300 if quick else 2000)
    nat = NativeModel(m)
    ptr, fn = X.ctypes.data, nat.fn
    out["c_ctypes_single_ns"] = _per_call(lambda: fn(ptr), 20000 if quick else 200000)
    out["c_parity"] = parity(m, nat.predict, X=X[:20000])["rate"]
    k = out["kernel_unrolled"]["ns"]
    out["ratios"] = {"c_single_over_kernel_unrolled": out["c_ctypes_single_ns"] / max(k, 0.1),
                     "numpy_single_over_kernel_unrolled": out["numpy_single_ns"] / max(k, 0.1),
                     "numpy_batched_over_kernel_unrolled": out["numpy_batched_ns"] / max(k, 0.1)}
    if "kernel_map" in out:
        out["ratios"]["map_over_unrolled"] = out["kernel_map"]["ns"] / max(k, 0.1)
    return out


def run(quick: bool = False) -> dict:
    t0 = time.time()
    res = {name: bench_model(kind, opts, quick) for name, (kind, opts) in MODELS.items()}
    tree = res["tree_depth8"]
    res["targets"] = {
        "tree_depth8_in_kernel_le_30ns": tree["kernel_unrolled"]["ns"] <= 30,
        "unrolled_faster_than_map": all(r["kernel_unrolled"]["ns"] < r["kernel_map"]["ns"]
                                        for r in res.values() if "kernel_map" in r),
        "kernel_tree_ge_5x_faster_than_c_ctypes_single":
            tree["ratios"]["c_single_over_kernel_unrolled"] >= 5,
        "parity_100pct": all(r[f]["parity"] == 1.0 for r in res.values() if isinstance(r, dict) and "model" in r
                             for f in ("kernel_map", "kernel_unrolled") if f in r),
    }
    res["notes"] = ("kernel ns: BPF_PROG_TEST_RUN (XDP) duration per repetition minus the same harness "
                    "without the model; kernel_tracepoint_ns: run_time_ns/run_cnt of the unrolled model on "
                    "raw_syscalls/sys_enter (pid filter and feature fill included); parity vectors: "
                    f"{20_000 if quick else 100_000} per model")
    res["seconds"] = round(time.time() - t0, 1)
    return res
