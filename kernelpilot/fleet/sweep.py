"""`kpilot memory sweep`: trace x policy x size cells as tasks, on a local process pool or on Ray.

One function (`run_cell`) computes a cell, whatever runs it: a process pool locally (`--engine local`)
or Ray tasks (`--engine ray`, on a cluster with `--address`). Results are one Parquet row per cell;
cells already in the output file are skipped (resumable). Every cell uses one protocol: learned
policies train on the first `train_frac` of the trace, and every policy is scored on the rest.
"""
from __future__ import annotations

import glob
import os
import time
from pathlib import Path

from kernelpilot.errors import KpError

COLUMNS = ("trace", "policy", "size_spec", "cache_size", "requests", "eval_from", "miss_ratio",
           "byte_miss_ratio", "seconds")
KEY = ("trace", "policy", "size_spec")


def expand_traces(spec: str) -> list[str]:
    """A folder (its files), a glob, a comma list of files, or synth:NAME entries."""
    out = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        if part.startswith("synth:"):
            out.append(part)
        elif Path(part).is_dir():
            out += sorted(str(p) for p in Path(part).rglob("*") if p.is_file() and not p.name.startswith("."))
        elif any(c in part for c in "*?["):
            hits = sorted(glob.glob(part, recursive=True))
            if not hits:
                raise KpError(f"no trace matches {part}")
            out += [h for h in hits if Path(h).is_file()]
        elif Path(part).is_file():
            out.append(part)
        else:
            raise KpError(f"trace not found: {part}")
    if not out:
        raise KpError("no traces given")
    return out


_LOADED: dict = {}


def _load(trace: str, fmt: str, limit: int | None):
    """The trace, kept for the next cells a worker process runs on it (cells come trace by trace)."""
    key = (trace, fmt, limit)
    if key not in _LOADED:
        from kernelpilot.memory.trace import load
        _LOADED.clear()
        _LOADED[key] = load(trace, fmt, limit=limit)
    return _LOADED[key]


def run_cell(trace: str, policy: str, size_spec: str, fmt: str = "auto", limit: int | None = None,
             train_frac: float = 0.5) -> dict:
    """Miss ratio of one policy at one size on one trace (fractions < 1 are of the footprint)."""
    from kernelpilot.memory import mix, models, sim
    tr = _load(trace, fmt, limit)
    size = sim.sizes_from_spec(tr, size_spec, unit=True)[0]
    start = int(len(tr) * train_frac)
    model = None
    if policy in sim.LEARNED:
        model = models.train(mix.LEARNED if policy == "mix" else policy, tr, size, True, start)
    t0 = time.perf_counter()
    r = sim.simulate(tr, policy, size, True, model=model, eval_from=start)
    return {"trace": trace, "policy": policy, "size_spec": size_spec, "cache_size": int(size),
            "requests": len(tr), "eval_from": start, "miss_ratio": r.miss_ratio,
            "byte_miss_ratio": r.byte_miss_ratio, "seconds": time.perf_counter() - t0}


def run_cells(trace: str, policy: str, sizes: list[str], **args) -> list[dict]:
    """One policy at several sizes on one trace: one Ray task, so a worker reads each trace once and
    the scheduler sees a few hundred tasks rather than one per cell."""
    return [run_cell(trace, policy, s, **args) for s in sizes]


def _done(out: Path) -> tuple[set, list[dict]]:
    if not out.exists():
        return set(), []
    import pyarrow.parquet as pq
    try:
        rows = pq.read_table(out).to_pylist()
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise KpError(f"{out}: cannot resume from it ({str(e).splitlines()[0]}); move it away or give another -o")
    if rows and not set(COLUMNS) <= set(rows[0]):
        raise KpError(f"{out} is not sweep results (columns {', '.join(sorted(rows[0]))})")
    return {tuple(r[k] for k in KEY) for r in rows}, rows


def _write(out: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    pq.write_table(pa.Table.from_pylist([{c: r[c] for c in COLUMNS} for r in rows]), tmp)
    os.replace(tmp, out)  # never a half-written results file


def _reachable(address: str, timeout: float = 3.0) -> None:
    """Fail in seconds, with one line, where Ray itself would retry for minutes."""
    import socket
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise KpError(f"bad Ray address '{address}': use HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise KpError(f"cannot reach Ray at {address}: {e.strerror or e}") from None


def _check_ray(address: str | None):
    try:
        import ray
    except ImportError:
        raise KpError("--engine ray needs Ray: pip install 'kernelpilot[scale]' (or pip install ray)") from None
    if not ray.is_initialized():
        if address and address != "auto":
            _reachable(address)
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False, **({} if address else {"num_cpus": os.cpu_count()}))
        except Exception as e:  # ConnectionError, RuntimeError, ValueError depending on the address
            raise KpError(f"cannot reach Ray at {address or 'a new local instance'}: "
                          f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
    return ray


def sweep(traces: list[str], policies: list[str], sizes: list[str], out: Path, engine: str = "local",
          address: str | None = None, workers: int | None = None, fmt: str = "auto", limit: int | None = None,
          train_frac: float = 0.5, progress=None) -> dict:
    """Run every missing cell; rows are written to `out` as cells finish. Returns a summary."""
    if engine not in ("local", "ray"):
        raise KpError(f"unknown engine '{engine}'; choose local or ray")
    if not 0.0 <= train_frac < 1.0:
        raise KpError(f"--train-frac must be in [0, 1) (got {train_frac})")
    if out.is_dir():
        raise KpError(f"{out} is a folder; give a file for the results")
    probe = out.with_name(f".{out.name}.{os.getpid()}.probe")
    try:
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise KpError(f"cannot write {out}: {e.strerror}") from None
    from kernelpilot.memory.trace import load
    for t in traces:  # fail on a bad trace now, with its name, not in a worker
        load(t, fmt, limit=1000 if limit is None else min(limit, 1000))
    done, rows = _done(out)
    todo = [(t, p, s) for t in traces for p in policies for s in sizes if (t, p, s) not in done]
    t0 = time.perf_counter()
    args = dict(fmt=fmt, limit=limit, train_frac=train_frac)
    if engine == "ray":
        ray = _check_ray(address)
        remote = ray.remote(run_cells)
        groups: dict[tuple, list[str]] = {}
        for t, p, s in todo:  # in trace order: consecutive tasks share a trace a worker has read
            groups.setdefault((t, p), []).append(s)
        pending = [remote.remote(t, p, ss, **args) for (t, p), ss in groups.items()]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                got = ray.get(ready[0])
                rows.extend(got)
            except ray.exceptions.RayTaskError as e:
                cause = e.cause if isinstance(getattr(e, "cause", None), KpError) else None
                _write(out, rows) if rows else None
                raise (cause or KpError(f"a sweep task failed: {str(e).splitlines()[0]}")) from None
            _write(out, rows)
            progress and progress(len(got))
    elif (workers or os.cpu_count() or 1) <= 1 or len(todo) <= 1:
        for c in todo:
            rows.append(run_cell(*c, **args))
            _write(out, rows)
            progress and progress()
    else:
        from concurrent.futures import ProcessPoolExecutor, as_completed
        import multiprocessing as mp
        with ProcessPoolExecutor(workers or os.cpu_count(), mp_context=mp.get_context("spawn")) as ex:
            futs = [ex.submit(run_cell, *c, **args) for c in todo]
            for f in as_completed(futs):
                rows.append(f.result())
                _write(out, rows)
                progress and progress()
    return {"output": str(out), "cells": len(rows), "ran": len(todo), "skipped": len(done),
            "engine": engine, "seconds": round(time.perf_counter() - t0, 3)}
