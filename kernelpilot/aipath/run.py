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
from kernelpilot.errors import KpError

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


def demo_command(steps: int = 20, device: str = "cpu") -> list[str]:
    return [sys.executable, str(Path(__file__).with_name("workload.py")), str(steps), device]


def _start_probe(source: str, uprobe_spec: str | None, default_uprobes: bool, notes: list[str]):
    """aipath's own probe (named ioctls, uprobes), or None with a note where it cannot run."""
    from kernelpilot.aipath import uprobes as U
    from kernelpilot.aipath.probe import AipathProbe
    targets, why = [], []
    if uprobe_spec:
        t, why = U.resolve(U.parse_specs(uprobe_spec))
        targets += t
    if default_uprobes:
        targets += [d for d in U.default_targets()[0] if (d.path, d.offset) not in {(t.path, t.offset) for t in targets}]
    notes += why
    if source not in ("auto", "ebpf") or os.geteuid() != 0:
        notes.append("ioctl names and uprobes need the eBPF source and root: not recorded")
        return None, []
    try:
        return AipathProbe(targets), targets
    except KpError as e:
        notes.append(f"ioctl names and uprobes not recorded: {e}")
        return None, []


def trace_ai(argv: list[str], source: str = "auto", keep: str | None = None, on_poll=None,
             quiet: bool = False, uprobes: str | None = None, default_uprobes: bool = True,
             probe: bool = True) -> dict:
    """Run `argv` under the tracer and return its AI path (layers, phases, host, GPU).
    quiet: the program's stdout goes to stderr. uprobes: 'LIB:SYM,...' to probe besides the
    default set (default_uprobes); probe=False leaves aipath's own probe out (no ioctl names)."""
    from kernelpilot.traces.record import host_meta, trace_command
    gpu = GpuSampler()
    last = [0.0]
    notes: list[str] = []
    ap, targets = _start_probe(source, uprobes, default_uprobes, notes) if probe else (None, [])

    def poll(total, src):
        now = time.monotonic()
        if now - last[0] > 0.5:
            last[0] = now
            gpu.sample()
        if ap is not None:
            ap.poll()
        if on_poll:
            on_poll(total, src)

    vm0, ru0 = vmstat(), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    try:
        ev, summary = trace_command(argv, GROUPS, source=source, on_poll=poll,
                                    stdout=sys.stderr.fileno() if quiet else None,
                                    on_start=ap.watch if ap is not None else None)
        wall = time.monotonic() - t0
        recs = ap.ioctls() if ap is not None else None
        ustats = ap.uprobe_stats() if ap is not None else {}
        if ap is not None:
            notes += ap.notes
            if ap.dropped():
                notes.append(f"the ioctl probe dropped {ap.dropped():,} records (ring full)")
    finally:
        if ap is not None:
            ap.close()
    vm1, ru1 = vmstat(), resource.getrusage(resource.RUSAGE_CHILDREN)
    if keep:
        from kernelpilot.traces.store import write_trace
        write_trace(keep, ev, {**host_meta(GROUPS, argv), "source": summary["source"]})
    result = analyse_events(ev, argv)
    if recs is not None:
        from kernelpilot.aipath.driverpath import enrich
        enrich(result, recs)
        result["uprobes"] = uprobe_result(ustats, targets, ev)
    result.update(source=summary["source"], dropped=summary["dropped"], exit_code=summary["exit_code"],
                  notes=summary["notes"] + notes, gpu=gpu.result())
    result["host"] = {"wall_s": round(wall, 3),
        "vmstat": {k: vm1.get(k, 0) - vm0.get(k, 0) for k in vm1},
        "rusage": {"user_s": round(ru1.ru_utime - ru0.ru_utime, 3), "system_s": round(ru1.ru_stime - ru0.ru_stime, 3),
                   "max_rss_bytes": ru1.ru_maxrss * 1024, "major_faults": ru1.ru_majflt - ru0.ru_majflt,
                   "minor_faults": ru1.ru_minflt - ru0.ru_minflt}}
    return result


def uprobe_result(ustats: dict, targets, ev: np.ndarray) -> dict:
    """The `uprobes` section: what was probed and, per function, calls/bytes/time, per phase (the
    probe counts markers: phase 0 is before the first one)."""
    from kernelpilot.aipath.markers import find_markers
    from kernelpilot.aipath.probe import uprobe_section
    marks = [name for _, name in find_markers(ev)]
    names = ["startup" if marks else "run", *marks]
    return {"probed": [t.label for t in targets], "functions": uprobe_section(ustats, targets, names),
            "time_note": "time inside a call runs from its uprobe to its uretprobe, so it includes the "
                         "probes' own cost (kpilot bench aipath measures it)"}


def analyse_events(ev: np.ndarray, argv=None) -> dict:
    r = analyse(ev)
    r = {"bench": "aipath", "command": list(argv) if argv else None, **r}
    return r
