"""The AI path as layers, whole run and per phase, plus a terminal drawing of it."""
from __future__ import annotations

import numpy as np

from kernelpilot.aipath.features import Trace
from kernelpilot.aipath.markers import find_markers


def phases_of(ev: np.ndarray, t_first: int, t_last: int) -> list[tuple[str, int, int]]:
    """(name, t0, t1) windows between markers; before the first marker is "startup" (exec and
    interpreter start). Without markers the whole run is one phase, "run"."""
    marks = find_markers(ev)
    if not marks:
        return [("run", t_first, t_last + 1)]
    out = []
    if marks[0][0] > t_first:
        out.append(("startup", t_first, marks[0][0]))
    for i, (t, name) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else t_last + 1
        out.append((name, t, end))
    return out


def analyse(ev: np.ndarray, tgids=None) -> dict:
    """Layers for the whole run and for each phase."""
    tr = Trace(ev, tgids)
    if not len(tr.sc):
        from kernelpilot.errors import KpError
        raise KpError("the trace has no system calls of the traced program: record with the syscalls group")
    whole = tr.window(tr.t_first, tr.t_last + 1)
    phases = []
    for name, t0, t1 in phases_of(tr.ev, tr.t_first, tr.t_last):
        p = tr.window(t0, t1)
        p.update(name=name, start_s=round((t0 - tr.t_first) / 1e9, 4), t0_ns=int(t0), t1_ns=int(t1))
        phases.append(p)
    return {"tgids": [int(t) for t in tr.tgids], "layers": whole["layers"], "seconds": whole["seconds"],
            "events": whole["events"], "phases": phases}


def _fmt_bytes(n) -> str:
    if n is None:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _cell(layer: dict) -> str:
    parts = [f"{layer['count']:,} {layer['count_unit']}"]
    if layer.get("bytes"):
        parts.append(f"{_fmt_bytes(layer['bytes'])} {layer.get('bytes_unit', '')}".strip())
    if layer.get("time_s"):
        parts.append(f"{layer['time_s']:.3f} s {layer.get('time_unit', '')}".strip())
    return ", ".join(parts)


def _detail_line(layer: dict) -> str:
    d = layer["detail"]
    n = layer["name"]
    if n == "system calls":
        return "  ".join(f"{c} {v['count']:,}" for c, v in d["by_category"].items())
    if n == "memory":
        return f"write faults {d['write_faults']:,}, mmaps {d['mmaps']:,}, munmap {_fmt_bytes(d['munmap_bytes'])}"
    if n == "scheduler":
        return (f"involuntary {d['involuntary']:,}, voluntary {d['voluntary']:,}, migrations {d['migrations']:,}, "
                f"blocked {d['blocked_s']:.3f} s")
    if n == "files / page cache":
        return f"misses {d['misses']:,} ({_fmt_bytes(d['miss_bytes'])}), file faults {d['file_faults']:,}"
    if n == "devices":
        return "  ".join(f"{p} [{v.get('kernel_driver') or v['driver']}] ioctl {v['ioctls']}{_top_names(v)}"
                         + (f" {v['ioctl_time_s'] * 1e3:.2f} ms in calls" if v.get("ioctl_time_s") else "")
                         + f" mmap {v['mmaps']}" + (f" {_fmt_bytes(v['mmap_bytes'])}" if v.get("mmap_bytes") else "")
                         for p, v in d["files"].items()) or "no device files used"
    if n == "user space":
        return f"{d['processes']} processes"
    if n == "hardware":
        return f"CPUs {d['cpus']}, utilisation {d['cpu_utilisation']}"
    return ""


def _top_names(dev: dict, k: int = 3) -> str:
    names = list((dev.get("ioctls_by_name") or {}).items())[:k]
    cats = ", ".join(f"{c} {v['count']}" for c, v in (dev.get("ioctls_by_category") or {}).items())
    return (" (" + ", ".join(f"{n} {v['count']}" for n, v in names) + f"; {cats})") if names else ""


PHASE_COLUMNS = (("syscalls", 1, "count"), ("blocked s", 1, "time_s"), ("faults", 2, "count"),
                 ("touched", 2, "bytes"), ("CPU wait s", 3, "time_s"), ("cache lookups", 4, "count"),
                 ("device ops", 5, "count"), ("CPU s", 6, "time_s"))


def render(result: dict, console) -> None:
    """The path top to bottom (whole run), then one row per phase."""
    from rich.markup import escape
    from rich.table import Table
    console.print(f"[bold]AI path of[/] {' '.join(result.get('command') or ['(trace)'])}  "
                  f"[dim]{result['seconds']:.2f} s, {result['events']:,} events, source {result.get('source')}[/]")
    for i, layer in enumerate(result["layers"]):
        console.print(f"[bold cyan]{layer['name']:>18}[/] | {_cell(layer)}")
        console.print(f"{'':>18} | [dim]{escape(_detail_line(layer))}[/]")
        if i + 1 < len(result["layers"]):
            console.print(f"{'':>18} v")
    t = Table(title="per phase")
    t.add_column("phase", style="bold")
    t.add_column("s", justify="right")
    for name, _, _ in PHASE_COLUMNS:
        t.add_column(name, justify="right")
    for p in result["phases"]:
        cells = []
        for _, li, key in PHASE_COLUMNS:
            v = p["layers"][li][key]
            cells.append(_fmt_bytes(v) if key == "bytes" else f"{v:.3f}" if key == "time_s" else f"{v:,}")
        t.add_row(p["name"], f"{p['seconds']:.2f}", *cells)
    console.print(t)
    funcs = (result.get("uprobes") or {}).get("functions") or {}
    if funcs:
        u = Table(title="user-space runtime (uprobes)")
        for c in ("function", "calls", "bytes", "time inside s", "mean us"):
            u.add_column(c, justify="left" if c == "function" else "right")
        for name, f in sorted(funcs.items(), key=lambda kv: -kv[1]["calls"]):
            u.add_row(name, f"{f['calls']:,}", _fmt_bytes(f["bytes"]) if f["bytes"] else "", f"{f['time_s']:.3f}",
                      f"{f['mean_ns'] / 1e3:.1f}" if f["mean_ns"] is not None else "")
        console.print(u)
    gpu = result.get("gpu") or {}
    if gpu.get("available"):
        for g in gpu["gpus"]:
            console.print(f"GPU {g['name']}: mean utilisation {g['gpu_util_mean']}%, "
                          f"max memory used {_fmt_bytes(g['mem_used_max'])} of {_fmt_bytes(g['mem_total'])}")
    elif gpu:
        console.print(f"[dim]GPU: {gpu.get('reason')}[/]")
    host = result.get("host") or {}
    if host.get("rusage"):
        r = host["rusage"]
        console.print(f"[dim]process CPU: user {r['user_s']:.2f} s, system {r['system_s']:.2f} s, "
                      f"max RSS {_fmt_bytes(r['max_rss_bytes'])}; THP faults (host-wide) "
                      f"{host.get('vmstat', {}).get('thp_fault_alloc', 0)}[/]")
