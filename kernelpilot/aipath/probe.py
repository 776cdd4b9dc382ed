"""aipath's own eBPF probe (bpf/ap_probe.bpf.c) beside the main tracer: every ioctl on a device
file with its duration and the first bytes of its argument, and uprobes on runtime functions
(calls, bytes, time inside, per phase). It follows the processes it is given and their children."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from kernelpilot.aipath import uprobes as U
from kernelpilot.aipath.devices import proc_devices
from kernelpilot.errors import KpError

SRC = Path(__file__).with_name("bpf") / "ap_probe.bpf.c"
ARG_BYTES = 32
IOCTL_DTYPE = np.dtype([("ts", "<u8"), ("dur_ns", "<u8"), ("pid", "<u4"), ("tgid", "<u4"), ("cmd", "<u4"),
                        ("fd", "<i4"), ("rdev", "<u8"), ("ino", "<u8"), ("ret", "<i8"), ("mode", "<u4"), ("_pad", "<u4"),
                        ("arg", "u1", ARG_BYTES)])
assert IOCTL_DTYPE.itemsize == 96  # struct ap_ioctl
MAX_UPROBED = 64  # processes whose uprobes are set (each costs two perf events per function)
ACCEL_NAMES = ("nvidia", "drm", "accel", "kfd", "neuron", "habanalabs")


def accel_majors() -> set[int]:
    """Character-device majors of GPU/accelerator drivers (their ioctl arguments are copied)."""
    return {m for m, name in proc_devices()["char"].items() if name.lower().startswith(ACCEL_NAMES)} | {195, 226, 261}


class AipathProbe:
    """Load, follow `pids`, attach the ioctl probes and the uprobes of `targets`; `poll()` while the
    program runs, `result()` after. Attach problems become one-line `notes`, never an exception."""

    def __init__(self, targets: list[U.Target] = (), copy_majors=None, ioctls: bool = True, returns: bool = True):
        from kernelpilot.bpf.build import build_object
        from kernelpilot.probes.libbpf import BpfObject
        progs = ["ap_fork", "ap_marker"] + (["ap_ioctl_enter", "ap_ioctl_exit"] if ioctls else []) \
            + (["ap_uentry", "ap_uret"] if targets else [])
        self.obj = BpfObject(build_object(SRC), autoload=progs)
        self.targets = list(targets)
        self.returns = returns  # False: entry probes only (calls and bytes, no time inside)
        self.uprobed: set[int] = set()
        self._capped = False
        self.notes: list[str] = []
        self.parts: list[np.ndarray] = []
        self.reader = None
        try:
            for m in sorted(accel_majors() if copy_majors is None else set(copy_majors)):
                self.obj.map("ap_copy").update(m, b"\1")
            for p in progs[:4] if ioctls else progs[:2]:
                self.obj.program(p).attach()
            if ioctls:
                from kernelpilot.probes.ringbuf import RingReader
                self.reader = RingReader(self.obj.map("ap_ring"), IOCTL_DTYPE)
        except BaseException:
            self.close()
            raise

    def watch(self, pid: int) -> None:
        """Follow process `pid` (and the children it forks from now on); set its uprobes."""
        self.obj.map("ap_tgids").update(int(pid).to_bytes(4, "little"), b"\1")
        self._uprobe(int(pid), first=True)

    def _uprobe(self, pid: int, first: bool = False) -> None:
        """uprobes for one process (a perf event each: they do not pass to its children, so poll()
        sets them on the children the kernel side has seen fork, up to MAX_UPROBED processes)."""
        from kernelpilot.probes.libbpf import BpfError
        self.uprobed.add(pid)
        entry, ret = self.obj.programs.get("ap_uentry"), self.obj.programs.get("ap_uret")
        for i, t in enumerate(self.targets):
            cookie = U.cookie_of(i, t)
            try:
                entry.attach_uprobe(t.path, t.offset, pid=pid, cookie=cookie)
                if self.returns:
                    ret.attach_uprobe(t.path, t.offset, pid=pid, retprobe=True, cookie=cookie)
            except BpfError as e:
                if getattr(e, "errno", None) == 3:  # ESRCH
                    if first:
                        self.notes.append(f"uprobes: process {pid} exited before the uprobes were attached")
                    return
                if first:
                    self.notes.append(f"uprobes: {t.label}: {e}")

    def poll(self) -> None:
        if self.reader is not None:
            b = self.reader.poll()
            if len(b):
                self.parts.append(b)
        if self.targets and self.uprobed:
            for k in self.obj.map("ap_tgids").keys():
                pid = int.from_bytes(k, "little")
                if pid in self.uprobed:
                    continue
                if len(self.uprobed) >= MAX_UPROBED:
                    if not self._capped:
                        self._capped = True
                        self.notes.append(f"uprobes: set on the first {MAX_UPROBED} processes only")
                    break
                self._uprobe(pid)

    def ioctls(self) -> np.ndarray:
        self.poll()
        if self.reader is not None:
            rest = self.reader.drain(idle_s=0.02, timeout_s=0.5)
            if len(rest):
                self.parts.append(rest)
        out = np.concatenate(self.parts) if self.parts else np.empty(0, dtype=IOCTL_DTYPE)
        self.parts = [out] if len(out) else []
        return out[np.argsort(out["ts"], kind="stable")]

    def dropped(self) -> int:
        raw = self.obj.map("ap_state").lookup(1)
        return int.from_bytes(raw[:8], "little") if raw else 0

    def uprobe_stats(self) -> dict[tuple[int, int], tuple[int, int, int, int]]:
        """{(target index, phase index): (calls, returns, bytes, ns)} summed over CPUs (struct ap_ustat)."""
        if "ap_ustats" not in self.obj.maps or not self.targets:
            return {}
        m = self.obj.map("ap_ustats")
        slot = (m.value_size + 7) // 8 * 8
        out = {}
        for k, v in m.items():
            func, phase = struct.unpack("<II", k)
            arr = np.frombuffer(v, dtype="<u8").reshape(-1, slot // 8)[:, :4].sum(axis=0)
            out[(func, phase)] = tuple(int(x) for x in arr)
        return out

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        if self.obj is not None:
            self.obj.close()
            self.obj = None


def uprobe_section(probe_stats: dict, targets: list[U.Target], phase_names: list[str]) -> dict:
    """The JSON `uprobes` section: per function (library:symbol, summed over the files of a library
    name) calls, returns, bytes, time inside, and the same per phase."""
    funcs: dict[str, dict] = {}
    for (i, ph), (calls, rets, nbytes, ns) in sorted(probe_stats.items()):
        if i >= len(targets):
            continue
        t = targets[i]
        key = f"{t.lib}:{t.symbol}"
        f = funcs.setdefault(key, {"library": t.lib, "symbol": t.symbol, "files": [], "calls": 0, "returns": 0,
                                   "bytes": 0, "time_s": 0.0, "by_phase": {}})
        if t.path not in f["files"]:
            f["files"].append(t.path)
        f["calls"] += calls
        f["returns"] += rets
        f["bytes"] += nbytes
        f["time_s"] += ns / 1e9
        name = phase_names[ph] if ph < len(phase_names) else f"phase {ph}"
        p = f["by_phase"].setdefault(name, {"calls": 0, "bytes": 0, "time_s": 0.0})
        p["calls"] += calls
        p["bytes"] += nbytes
        p["time_s"] += ns / 1e9
    for f in funcs.values():
        f["time_s"] = round(f["time_s"], 6)
        f["mean_ns"] = round(f["time_s"] * 1e9 / f["returns"], 1) if f["returns"] else None
        for p in f["by_phase"].values():
            p["time_s"] = round(p["time_s"], 6)
    return funcs


def require_ebpf(source: str) -> None:
    if source not in ("auto", "ebpf"):
        raise KpError(f"--uprobes needs the eBPF source (got --source {source})")
    if os.geteuid() != 0:
        raise KpError("uprobes and ioctl arguments need root (CAP_BPF + CAP_PERFMON)", exit_code=3)
