"""`kpilot bench fuzz`: every loader against generated inputs (kernelpilot/fuzz), then every
distinct model file the validator accepted through the kernel: verifier and bit-exact parity.

Protocol (printed in the JSON): per loader, inputs i = 0..n-1 take seed i mod (seeds) and mutation
family i mod 9 (bit flip, truncate, random bytes, out of range, wrong type, NaN, deep nesting,
huge sizes, dropped field) with numpy's Generator seeded (SEED, loader index); seeds are the
committed corpus (tests/fuzz/corpus) plus excerpts of the real recordings in ../shared/datasets
and the package's sample trace where present. A failure is any outcome but a one-line KpError or
an object its consumer could use: another exception, a run past the deadline, a changed input, a
file left behind. Target: 0 failures over >= 10,000 inputs per loader (--quick: 300)."""
from __future__ import annotations

import hashlib
import logging
import os
import time
import warnings
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np

from kernelpilot.fuzz import mutate as M
from kernelpilot.fuzz import run as R
from kernelpilot.fuzz import targets as T

SEED = 16
FULL, QUICK = 10_000, 300
KERNEL_MODELS = {True: 4, False: 16}  # accepted mutants per model loader through the kernel check
MODEL_TARGETS = ("model-tree", "model-forest", "model-gbm", "model-mlp", "model-mlp-npz")


def fuzz_target(name: str, n: int, keep_models: int = 0) -> dict:
    """n generated inputs through one loader; returns the tally, timing and (for model loaders)
    up to keep_models distinct accepted files, for the kernel check."""
    logging.disable(logging.WARNING)  # journals log each skipped entry
    warnings.filterwarnings("ignore")
    target = T.TARGETS[name]
    seeds = T.seeds(name)
    rng = np.random.default_rng([SEED, sorted(T.TARGETS).index(name)])
    results, kept, seen = [], [], set()
    per_family = {f: {"inputs": 0, "failures": 0} for f in M.FAMILIES}
    t0 = time.perf_counter()
    for i in range(n):
        family = M.FAMILIES[i % len(M.FAMILIES)]
        data = M.mutate(seeds[i % len(seeds)][1], target.fmt, family, rng)
        outcome, detail = R.run_one(target, data)
        results.append((outcome, f"{family}: {detail}"))
        per_family[family]["inputs"] += 1
        per_family[family]["failures"] += outcome not in (R.OK, R.REJECTED)
        if outcome == R.OK and len(kept) < keep_models:
            h = hashlib.sha256(data).digest()
            if h not in seen and data not in (s for _, s in seeds):
                seen.add(h)
                kept.append((family, data))
    out = R.tally(results)
    out.update(seconds=round(time.perf_counter() - t0, 1), seeds=len(seeds),
               real_seeds=len(T.real_seeds(name)), per_family=per_family)
    out["inputs_per_s"] = round(out["inputs"] / max(out["seconds"], 1e-9), 1)
    return {"name": name, "tally": out, "kept": kept}


def kernel_check(kept: list[tuple[str, str, bytes]], n_vectors: int) -> dict:
    """Each accepted model file through every target it fits: the verifier's verdict and parity."""
    import tempfile
    from pathlib import Path

    from kernelpilot.errors import KpError
    from kernelpilot.kernelize import harness, limits
    from kernelpilot.models.format import Model
    if os.geteuid() != 0:
        return {"skipped": "needs root to load eBPF"}
    out = {"models": 0, "target_runs": 0, "verifier_rejected": 0, "parity_mismatch": 0,
           "over_limits": 0, "by_target": {t: 0 for t in limits.TARGETS}, "failures": []}
    with tempfile.TemporaryDirectory() as d:
        for name, family, data in kept:
            p = Path(d) / f"m{out['models']}{T.TARGETS[name].suffix}"
            p.write_bytes(data)
            m = Model.load(p)
            out["models"] += 1
            for t in limits.TARGETS:
                try:
                    limits.check_limits(m, t)
                except KpError:
                    out["over_limits"] += 1
                    continue
                r = harness.check(m, [t], n=n_vectors, repeat=10)["targets"][t]
                out["target_runs"] += 1
                out["by_target"][t] += 1
                if r.get("verifier", "accepted") != "accepted":
                    out["verifier_rejected"] += 1
                    out["failures"].append(f"{name}/{family}/{t}: {r['verifier'][:160]}")
                elif r["parity"]["rate"] != 1.0:
                    out["parity_mismatch"] += 1
                    out["failures"].append(f"{name}/{family}/{t}: parity {r['parity']}")
    return out


def run(quick: bool = False) -> dict:
    n = QUICK if quick else FULL
    names = sorted(T.TARGETS)
    keep = KERNEL_MODELS[quick]
    t0 = time.perf_counter()
    workers = max(1, min(2, os.cpu_count() or 1))
    done = []
    with ProcessPoolExecutor(workers) as pool:
        jobs = [pool.submit(fuzz_target, x, n, keep if x in MODEL_TARGETS else 0) for x in names]
        for job in as_completed(jobs):  # one line per loader on stderr: a long run shows where it is
            r = job.result()
            done.append(r)
            t = r["tally"]
            print(f"fuzz: {r['name']}: {t['inputs']} inputs, {sum(t['failures'].values())} failures, "
                  f"{t['seconds']} s ({len(done)}/{len(names)})", file=sys.stderr, flush=True)
    done.sort(key=lambda r: r["name"])
    loaders = {r["name"]: r["tally"] for r in done}
    failures = {k: sum(t["failures"][k] for t in loaders.values()) for k in R.FAILURES}
    kept = [(r["name"], fam, data) for r in done for fam, data in r["kept"]]
    t1 = time.perf_counter()
    kernel = kernel_check(kept, n_vectors=2000 if quick else 20_000)
    return {
        "protocol": __doc__.split("\n\n", 1)[1].replace("\n", " "),
        "inputs_per_loader": n, "loaders": loaders,
        "summary": {"loaders": len(loaders), "inputs": sum(t["inputs"] for t in loaders.values()),
                    "accepted": sum(t[R.OK] for t in loaders.values()),
                    "rejected_one_line": sum(t[R.REJECTED] for t in loaders.values()),
                    "failures_by_kind": failures, "failures": sum(failures.values()),
                    "min_inputs_per_loader": min(t["inputs"] for t in loaders.values()),
                    "target_met": sum(failures.values()) == 0 and n >= FULL,
                    "fuzz_seconds": round(t1 - t0, 1), "workers": workers},
        "kernel": {**kernel, "seconds": round(time.perf_counter() - t1, 1)},
    }
