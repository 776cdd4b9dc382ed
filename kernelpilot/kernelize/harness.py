"""Parity and cost: feature vectors through the in-kernel model (and the C) versus the integer
reference model, and the `--check` report (verifier verdict, sizes, parity, ns per inference)."""
from __future__ import annotations

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.kernelize import limits

I32 = np.iinfo(np.int32)


def sample_vectors(m, n: int, seed: int = 1) -> np.ndarray:
    """Int32 feature rows that exercise the model: half drawn over the training range, half right
    at the thresholds (x = t and t + 1, both sides of each test) or at saturation for an MLP."""
    rng = np.random.default_rng(seed)
    F = m.n_features
    summ = m.meta.get("train_summary", {}).get("features")
    if summ:
        lo = m.to_int(np.array([[summ[f]["min"] for f in m.feature_names]]))[0].astype(np.int64)
        hi = m.to_int(np.array([[summ[f]["max"] for f in m.feature_names]]))[0].astype(np.int64)
        span = np.maximum(hi - lo, 1)
        lo, hi = np.maximum(lo - span // 4, I32.min), np.minimum(hi + span // 4, I32.max)
    else:
        lo, hi = np.full(F, -1000), np.full(F, 1000)
    X = rng.integers(lo, hi + 1, size=(n, F), dtype=np.int64)
    edge = rng.random((n, F)) < 0.5
    edge[: n // 2] = False
    if m.kind in ("tree", "forest"):
        p = m.params
        inner = p["feature"] >= 0
        for f in range(F):
            t = p["q_threshold"][inner & (p["feature"] == f)].astype(np.int64)
            if t.size:
                picks = t[rng.integers(0, t.size, n)] + rng.integers(0, 2, n)
                X[:, f] = np.where(edge[:, f], picks, X[:, f])
    else:
        extreme = rng.choice(np.array([I32.min, -1, 0, 1, I32.max], dtype=np.int64), size=(n, F))
        X = np.where(edge & (rng.random((n, F)) < 0.2), extreme, X)
    return np.clip(X, I32.min, I32.max).astype(np.int32)


def parity(m, predict, n: int = 100_000, X=None) -> dict:
    X = sample_vectors(m, n) if X is None else X
    ref = m.predict_int(X)
    got = predict(X)
    bad = np.flatnonzero(got != ref)
    out = {"n": int(len(X)), "agree": int(len(X) - bad.size), "rate": float(1 - bad.size / max(len(X), 1))}
    if bad.size:
        i = int(bad[0])
        out["first_mismatch"] = {"x": X[i].tolist(), "want": int(ref[i]), "got": int(got[i])}
    return out


def check(m, targets=None, n: int = 100_000, repeat: int = 20000) -> dict:
    """Build, load and verify each target; parity over n vectors; ns per inference."""
    from kernelpilot.kernelize.kernel import deploy_code, deploy_map
    from kernelpilot.kernelize.native import NativeModel
    from kernelpilot.probes.libbpf import BpfError
    if targets is None:
        targets = (["bpf-map"] if m.kind in ("tree", "forest") else []) + ["bpf-code", "c"]
    report = {"model": m.describe(), "n": n, "targets": {}}
    X = sample_vectors(m, n)
    for t in targets:
        r: dict = {"limits": limits.check_limits(m, t)}
        if t == "c":
            nat = NativeModel(m)
            r["compiler"] = "gcc -ffreestanding -nostdlib: ok"
            r["parity"] = parity(m, nat.predict, X=X)
        else:
            try:
                km = deploy_map(m) if t == "bpf-map" else deploy_code(m)
            except BpfError as e:
                r["verifier"] = f"rejected: {e}"
                report["targets"][t] = r
                continue
            with km:
                r["verifier"] = "accepted"
                r.update(km.stats())
                r["parity"] = parity(m, km.predict, X=X)
                r["ns_per_inference"] = km.ns_per_inference(X[:16], repeat=repeat)
        report["targets"][t] = r
    report["ok"] = all(r.get("verifier", "accepted") == "accepted" and r["parity"]["rate"] == 1.0
                       for r in report["targets"].values())
    return report


def require_ok(report: dict) -> None:
    for t, r in report["targets"].items():
        if r.get("verifier", "accepted") != "accepted":
            raise KpError(f"{t}: {r['verifier']}")
        if r["parity"]["rate"] != 1.0:
            raise KpError(f"{t}: parity {r['parity']['agree']}/{r['parity']['n']} "
                          f"(first mismatch {r['parity'].get('first_mismatch')})")
