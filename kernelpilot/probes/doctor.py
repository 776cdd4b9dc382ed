"""What this host allows: root, BTF, eBPF program types, tracefs, sched_ext, DAMON, zram, PSI,
cgroups, GPU. Each check is a real probe of the kernel, not a guess from the version."""
from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

from kernelpilot.bpf.build import BTF_PATH


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _exists(path: str) -> bool:
    try:
        return Path(path).exists()
    except PermissionError:
        return False


def _bpf_types() -> dict:
    from kernelpilot.errors import KpError
    from kernelpilot.probes.libbpf import probe_prog_type
    out = {}
    for name in ("tracepoint", "raw_tracepoint", "perf_event", "struct_ops", "xdp", "tracing", "lsm"):
        try:
            out[name] = probe_prog_type(name)
        except KpError:
            out[name] = False
    return out


def checks() -> dict:
    root = os.geteuid() == 0
    lsm = _read("/sys/kernel/security/lsm")
    try:
        tracefs = Path("/sys/kernel/tracing/events").exists()
    except PermissionError:
        tracefs = False
    if not tracefs and root:
        from kernelpilot.traces.sources import ensure_tracefs
        try:
            ensure_tracefs()
            tracefs = True
        except Exception:
            pass
    types = _bpf_types() if root else {}
    cg2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    unified = Path("/sys/fs/cgroup/unified/cgroup.controllers").exists()
    gpus = sorted(glob.glob("/dev/nvidia[0-9]*") + glob.glob("/dev/dri/renderD*") + glob.glob("/dev/accel/*"))
    return {
        "kernel": os.uname().release,
        "root": root,
        "btf": BTF_PATH.exists(),
        "bpf_syscall": root and bool(types.get("tracepoint")),
        "bpf_prog_types": types,
        "kprobes": _exists("/sys/kernel/tracing/kprobe_events"),
        "bpf_lsm": "bpf" in lsm.split(","),
        "sched_ext": Path("/sys/kernel/sched_ext").exists(),
        "tracefs": tracefs,
        "damon": Path("/sys/kernel/mm/damon/admin").exists(),
        "damon_in_use": damon_in_use(),
        "zram": Path("/sys/class/zram-control").exists(),
        "psi": Path("/proc/pressure/cpu").exists() and bool(_read("/proc/pressure/cpu")),
        "cgroup": "v2" if cg2 else ("hybrid (v1 + v2 at /sys/fs/cgroup/unified)" if unified else "v1"),
        "clang": bool(shutil.which("clang")),
        "bpftool": bool(shutil.which("bpftool") or Path("/usr/sbin/bpftool").exists()),
        "autogroup": _read("/proc/sys/kernel/sched_autogroup_enabled") == "1",
        "eevdf_custom_slices": _custom_slices() if root else None,
        "sched_actuation": sched_actuation(),
        "gpu": gpus or None,
        "nvidia_smi": bool(shutil.which("nvidia-smi")),
    }


def _custom_slices() -> bool:
    from kernelpilot.sched.knobs import slices_supported
    return slices_supported()[0]


def sched_actuation() -> str:
    """How `kpilot sched run` orders tasks across sessions here (autogroup nice, cgroup weights or
    per-task nice), and why."""
    from kernelpilot.sched.session import choose_actuation
    mode, why = choose_actuation()
    return f"{mode} ({why})"


def damon_in_use() -> list[str]:
    """Running kdamonds (someone else's: kernelpilot never starts or changes one, since writing
    nr_kdamonds resets them all), each as 'kdamond N: ops, actions'."""
    base = Path("/sys/kernel/mm/damon/admin/kdamonds")
    out = []
    for d in sorted(base.glob("[0-9]*")) if base.is_dir() else []:
        if _read(d / "state") != "on":
            continue
        ops = sorted({_read(c / "operations") for c in d.glob("contexts/[0-9]*")} - {""})
        acts = sorted({_read(a) for a in d.glob("contexts/[0-9]*/schemes/[0-9]*/action")} - {""})
        out.append(f"kdamond {d.name}: {', '.join(ops) or '?'}" + (f", {', '.join(acts)}" if acts else ""))
    return out


def best_source(c: dict) -> tuple[str, str]:
    """Which live source record will use, and why."""
    if c["root"] and c["btf"] and c["bpf_syscall"] and c["clang"]:
        return "ebpf", "root, BTF and eBPF tracepoints are available"
    if c["tracefs"] and c["root"]:
        why = "no BTF" if not c["btf"] else ("clang missing" if not c["clang"] else "eBPF not permitted")
        return "tracefs", f"eBPF unavailable ({why}); ftrace events work"
    return "proc", "neither eBPF nor tracefs is allowed (not root): /proc sampling"
