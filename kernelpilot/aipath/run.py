"""Trace an AI program and lay its path out: the tracer, host counters (/proc/vmstat, rusage)
and GPU samples (NVML, where present) around one run."""
from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

from kernelpilot.aipath.layers import analyse
from kernelpilot.aipath.nvml import GpuSampler

GROUPS = ["syscalls", "mm", "faults", "sched", "files"]
VMSTAT_KEYS = ("pgfault", "pgmajfault", "thp_fault_alloc", "thp_fault_fallback", "thp_collapse_alloc",
               "pswpin", "pswpout", "pgpgin", "pgpgout", "numa_hint_faults")


def vmstat() -> dict:
    out = {}
    try:
        for line in Path("/proc/vmstat").read_text().splitlines():
            k, v = line.split()
            if k in VMSTAT_KEYS:
                out[k] = int(v)
    except OSError:
        pass
    return out


def demo_command(steps: int = 20) -> list[str]:
    return [sys.executable, str(Path(__file__).with_name("workload.py")), str(steps)]


def trace_ai(argv: list[str], source: str = "auto", keep: str | None = None, on_poll=None,
             quiet: bool = False) -> dict:
    """Run `argv` under the tracer and return its AI path (layers, phases, host, GPU).
    quiet: the program's stdout goes to stderr."""
    from kernelpilot.traces.record import host_meta, trace_command
    gpu = GpuSampler()
    last = [0.0]

    def poll(total, src):
        now = time.monotonic()
        if now - last[0] > 0.5:
            last[0] = now
            gpu.sample()
        if on_poll:
            on_poll(total, src)

    vm0, ru0 = vmstat(), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    ev, summary = trace_command(argv, GROUPS, source=source, on_poll=poll,
                                stdout=sys.stderr.fileno() if quiet else None)
    wall = time.monotonic() - t0
    vm1, ru1 = vmstat(), resource.getrusage(resource.RUSAGE_CHILDREN)
    if keep:
        from kernelpilot.traces.store import write_trace
        write_trace(keep, ev, {**host_meta(GROUPS, argv), "source": summary["source"]})
    result = analyse_events(ev, argv)
    result.update(source=summary["source"], dropped=summary["dropped"], exit_code=summary["exit_code"],
                  notes=summary["notes"], gpu=gpu.result())
    result["host"] = {"wall_s": round(wall, 3),
        "vmstat": {k: vm1.get(k, 0) - vm0.get(k, 0) for k in vm1},
        "rusage": {"user_s": round(ru1.ru_utime - ru0.ru_utime, 3), "system_s": round(ru1.ru_stime - ru0.ru_stime, 3),
                   "max_rss_bytes": ru1.ru_maxrss * 1024, "major_faults": ru1.ru_majflt - ru0.ru_majflt,
                   "minor_faults": ru1.ru_minflt - ru0.ru_minflt}}
    return result


def analyse_events(ev: np.ndarray, argv=None) -> dict:
    r = analyse(ev)
    r = {"bench": "aipath", "command": list(argv) if argv else None, **r}
    return r
