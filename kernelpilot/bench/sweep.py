"""`kpilot bench sweep`: the same sweep cells in one process and on local Ray, side by side, and a
DuckDB query over 10 M recorded events.

- sweep: the dev traces of ../shared/datasets/cache (each read to a prefix) x 12 policies x 4 sizes, run by
  one process, then by Ray tasks on this host's cores; the two result sets must be identical.
- query: `kpilot record` of a syscall-heavy real command (dd with 1-byte blocks) to >= 10 M events, then
  three typical queries over the Parquet file through `kpilot query`'s views.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

POLICIES = ["fifo", "lru", "clock", "lfu", "arc", "2q", "lirs", "s3fifo", "sieve", "plfu", "belady", "lrb"]
SIZES = ["0.01", "0.05", "0.1", "0.2"]
PREFIX = {False: 200_000, True: 50_000}
QUICK_TRACES = ("lirs/cpp.trace.gz", "lirs/cs.trace.gz", "lirs/ps.trace.gz", "cache2k/web07.trace.xz")
QUERIES = {
    "top_syscalls_per_program": "SELECT comm, n.name, count(*) AS calls FROM trace JOIN syscall_names n ON a0 = n.nr "
                                "WHERE kind = 'syscall' GROUP BY ALL ORDER BY calls DESC LIMIT 10",
    "events_per_second": "SELECT ts_ns // 1000000000 AS s, count(*) FROM trace GROUP BY 1 ORDER BY 1",
    "count_by_kind": "SELECT kind, count(*) FROM trace GROUP BY kind",
}


def _traces(quick: bool) -> list[str]:
    from kernelpilot.datasets import datasets_dir
    root = datasets_dir() / "cache"
    if quick:
        return [str(root / t) for t in QUICK_TRACES if (root / t).exists()]
    return sorted(str(p) for p in root.rglob("*") if p.is_file())


def _sweep_side_by_side(quick: bool) -> dict:
    from kernelpilot.fleet.sweep import sweep
    traces = _traces(quick)
    if not traces:
        return {"skipped": "no dev traces (../shared/datasets/cache or $KPILOT_DATASETS)"}
    policies, sizes = (POLICIES[:6] + ["belady"], SIZES[:2]) if quick else (POLICIES, SIZES)
    limit = PREFIX[quick]
    import pyarrow.parquet as pq
    with tempfile.TemporaryDirectory() as d:
        one, ray = Path(d) / "one.parquet", Path(d) / "ray.parquet"
        # warm numba's cache and the trace readers first, so neither side pays the compile
        sweep(traces[:1], policies, sizes[:1], Path(d) / "warm.parquet", "local", workers=1, limit=1000)
        t0 = time.perf_counter()
        sweep(traces, policies, sizes, one, "local", workers=1, limit=limit)
        t_one = time.perf_counter() - t0
        import ray as ray_mod
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray_mod.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            t0 = time.perf_counter()
            sweep(traces, policies, sizes, ray, "ray", limit=limit)
            t_ray = time.perf_counter() - t0
        finally:
            ray_mod.shutdown()
        key = lambda r: (r["trace"], r["policy"], r["size_spec"])  # noqa: E731
        a = {key(r): r["miss_ratio"] for r in pq.read_table(one).to_pylist()}
        b = {key(r): r["miss_ratio"] for r in pq.read_table(ray).to_pylist()}
    return {"traces": len(traces), "policies": policies, "sizes": sizes, "requests_per_trace": limit,
            "cells": len(a), "one_process_s": round(t_one, 2), "ray_s": round(t_ray, 2),
            "ray_speedup_x": round(t_one / t_ray, 3), "cores": os.cpu_count(),
            "identical_results": a == b, "target_speedup_x": 1.8,
            "note": "Ray's time includes starting its local instance's workers; cells = traces x policies x sizes"}


def _query_bench(quick: bool) -> dict:
    from kernelpilot.fleet.query import connect, run_query
    if os.geteuid() != 0:
        return {"skipped": "recording needs root (eBPF)"}
    kpilot = [sys.executable, "-m", "kernelpilot.cli"]
    count = 1_000_000 if quick else 10_000_000  # dd: one read + one write per byte (the ring drops up to half under the flood)
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "dd.parquet"
        r = subprocess.run([*kpilot, "record", "-e", "syscalls", "-o", str(out), "--", "dd", "if=/dev/zero",
                            "of=/dev/null", "bs=1", f"count={count}", "status=none"], capture_output=True, text=True)
        if r.returncode != 0:
            return {"skipped": f"record failed: {r.stderr.strip()[-200:]}"}
        t0 = time.perf_counter()
        run_query("SELECT 1", [out])  # what a `kpilot query` adds: views, the syscall name table
        t_open = time.perf_counter() - t0
        con, _ = connect([out])
        n = con.execute("SELECT count(*) FROM trace").fetchone()[0]
        times = {}
        for name, sql in QUERIES.items():
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                con.execute(sql).fetchall()
                best = min(best, time.perf_counter() - t0)
            times[name] = round(best, 3)
        con.close()
        size = out.stat().st_size
    return {"events": int(n), "file_mb": round(size / 2**20, 1), "query_seconds_best_of_3": times,
            "max_query_seconds": max(times.values()), "open_views_seconds": round(t_open, 3),
            "target_s": 1.0, "target_events": 10_000_000}


def run(quick: bool = False) -> dict:
    try:
        import duckdb  # noqa: F401
        import ray  # noqa: F401
    except ImportError as e:
        from kernelpilot.errors import KpError
        raise KpError(f"bench sweep needs the scale extra ({e.name} missing): pip install 'kernelpilot[scale]'") from None
    return {"protocol": "learned policies (lrb) train on the first half of each trace prefix; every policy is "
                        "scored on the second half; one process and Ray run the same cells",
            "sweep": _sweep_side_by_side(quick), "query": _query_bench(quick)}
