"""Live event sources, all with one interface: start(), poll() -> numpy events, stats(), stop().

- EbpfSource: kernelpilot's BPF programs, filtered in the kernel, read in bulk from a ring buffer.
- TracefsSource: ftrace text events, for hosts where eBPF is not allowed but tracefs is.
- ProcSource: periodic /proc samples, where neither is (no root).
open_source("auto") picks the first that works and says which."""
from __future__ import annotations

import os
import re
import struct
import time
from pathlib import Path

import numpy as np

from kernelpilot.errors import CapabilityError, KpError
from kernelpilot.traces import schema as S
from kernelpilot.traces.store import LiveSource

# program names per event group (kernelpilot/bpf/kp_trace.bpf.c)
PROGRAMS = {
    "sched": ["kp_sched_switch", "kp_sched_wakeup", "kp_sched_wakeup_new"],
    "syscalls": ["kp_sys_enter"],
    "faults": ["kp_page_fault"],
    "mm": ["kp_mmap", "kp_munmap", "kp_ioctl"],
    "files": ["kp_file_read", "kp_file_miss", "kp_file_fault"],
    "proc": ["kp_proc_fork", "kp_proc_exit", "kp_proc_exec"],
}
FILTER_PIDS, FILTER_CGROUP, FILTER_COMM, UNWATCH_AT_SWITCH = 1, 2, 4, 8
TRACEFS = Path("/sys/kernel/tracing")


def ensure_tracefs() -> Path:
    """Mount tracefs if it is missing (root only)."""
    try:
        if (TRACEFS / "events").exists():
            if not os.access(TRACEFS / "instances", os.W_OK):
                raise CapabilityError("tracefs is not writable by this user (needs root)")
            return TRACEFS
    except PermissionError:
        raise CapabilityError("tracefs is not readable by this user (needs root)") from None
    if os.geteuid() == 0:
        os.system(f"mount -t tracefs nodev {TRACEFS} 2>/dev/null")
        if (TRACEFS / "events").exists():
            return TRACEFS
    raise CapabilityError("tracefs is not mounted at /sys/kernel/tracing (mount -t tracefs nodev /sys/kernel/tracing)")


def cgroup_id(path: str) -> int:
    """A cgroup v2 id is the inode number of its directory."""
    p = Path(path)
    if not p.is_absolute():
        p = Path("/sys/fs/cgroup/unified") / path
    if not p.is_dir():
        raise KpError(f"cgroup not found: {p}")
    return os.stat(p).st_ino


def threads_of(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return [pid]


def clean_comm(ev: np.ndarray) -> None:
    """Zero the bytes after a comm's first NUL (the kernel copies the string, not the padding)."""
    if len(ev):
        off = S.EVENT_DTYPE.fields["comm"][1]
        b = ev.view(np.uint8).reshape(len(ev), S.EVENT_DTYPE.itemsize)[:, off: off + 16]
        b[np.cumsum(b == 0, axis=1, dtype=np.uint8) > 0] = 0


def pid_max() -> int:
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        return 4194304


def set_pid_bit(bits_map, pid: int, on: bool = True) -> None:
    """Set or clear one thread id in kp_pidbits (a u64 bitmap array)."""
    raw = bits_map.lookup(pid >> 6)
    word = int.from_bytes(raw, "little") if raw else 0
    word = word | (1 << (pid & 63)) if on else word & ~(1 << (pid & 63))
    bits_map.update(pid >> 6, word.to_bytes(8, "little"))


class CommResolver:
    """Fills the comm of events the kernel sent without one (syscalls, page faults) with the
    task's comm at that moment: the latest earlier event (by time) of the same thread that
    carried one (switches and execs do), from this batch or the names kept from earlier ones
    (batched kinds arrive late, so a thread's exec may come a batch before its older switches),
    else what /proc says."""

    HISTORY = 4  # names kept per thread, with the time each was seen

    def __init__(self):
        self.known: dict[int, bytes] = {}
        self.history: dict[int, list[tuple[int, bytes]]] = {}

    def __call__(self, ev: np.ndarray) -> None:
        n = len(ev)
        if not n:
            return
        has = ev["comm"] != b""
        hp, hts, hc = [], [], []
        for p in np.unique(ev["pid"][~has]).tolist() if self.history else ():
            for t, c in self.history.get(p, ()):
                hp.append(p)
                hts.append(t)
                hc.append(c)
        m = len(hp)  # earlier batches' names go first, as carriers at their own times
        pid = np.r_[np.array(hp, dtype=ev["pid"].dtype), ev["pid"]]
        ts = np.r_[np.array(hts, dtype=ev["ts"].dtype), ev["ts"]]
        comm = np.r_[np.array(hc, dtype="S16"), ev["comm"]]
        has_all = np.r_[np.ones(m, bool), has]
        k = m + n
        order = np.lexsort((np.arange(k), ts, pid))  # by thread, then time, then arrival
        pid_s, has_s = pid[order], has_all[order]
        last = np.maximum.accumulate(np.where(has_s, np.arange(k), -1))
        start = np.r_[0, np.flatnonzero(pid_s[1:] != pid_s[:-1]) + 1]
        group_start = np.repeat(start, np.diff(np.r_[start, k]))
        fill = ~has_s & (last >= group_start)
        comm[order[fill]] = comm[order[last[fill]]]
        rest = ~has_s & ~fill
        if rest.any():
            pids, inv = np.unique(pid_s[rest], return_inverse=True)
            comm[order[rest]] = np.array([self._lookup(int(p)) for p in pids], dtype="S16")[inv]
        ev["comm"] = comm[m:]
        ends = np.r_[start[1:], k] - 1  # each thread's latest comm, for later batches
        self.known.update(zip(pid_s[ends].tolist(), comm[order[ends]].tolist()))
        self._remember(ev[has])

    def _remember(self, carriers: np.ndarray) -> None:
        """Keep each thread's names as they changed (time of the first event under each)."""
        if not len(carriers):
            return
        o = np.lexsort((carriers["ts"], carriers["pid"]))
        p, t, c = carriers["pid"][o], carriers["ts"][o], carriers["comm"][o]
        change = np.r_[True, (p[1:] != p[:-1]) | (c[1:] != c[:-1])]
        for pid, ts, name in zip(p[change].tolist(), t[change].tolist(), c[change].tolist()):
            h = self.history.setdefault(pid, [])
            if not h or h[-1][1] != name or ts < h[-1][0]:
                h.append((ts, name))
                if len(h) > self.HISTORY:
                    h.sort()
                    del h[: len(h) - self.HISTORY]

    def _lookup(self, pid: int) -> bytes:
        name = self.known.get(pid)
        if name is None:
            try:
                name = Path(f"/proc/{pid}/comm").read_bytes().strip()[:16]
            except OSError:
                name = b"?"
            self.known[pid] = name
        return name


BATCH = 32  # KP_BATCH in bpf/kp_events.h
NBATCHES = 2  # KP_NBATCHES: syscalls + faults, sched
BATCH_DTYPE = np.dtype([("n", "<u8"), ("ev", S.EVENT_DTYPE, (BATCH,))])


def unbatch(recs: np.ndarray) -> np.ndarray:
    """kp_batch records -> their valid events, in order."""
    if not len(recs):
        return S.empty()
    valid = np.arange(BATCH) < np.minimum(recs["n"], BATCH)[:, None]
    return recs["ev"][valid]


class EbpfSource(LiveSource):
    name = "ebpf"

    def __init__(self, groups, pids=None, cgroup: str | None = None, comm: str | None = None,
                 exclude_self: bool = True, ring_mb: int = 64):
        self.groups = list(groups)
        self.pids = list(pids or [])
        self.cgroup, self.comm = cgroup, comm
        self.exclude_self = exclude_self
        self.ring_bytes = 1 << max(12, (ring_mb << 20).bit_length() - 1)
        self.obj = None
        self.readers = []
        self.delivered = 0

    extra_programs: tuple = ()  # a subclass's object: loaded too, attached by whoever uses them

    def object_path(self):
        """The BPF object to load (a subclass may build kp_trace with more in it)."""
        from kernelpilot.bpf.build import builtin_object
        return builtin_object()

    def start(self):
        from kernelpilot.probes.libbpf import BpfObject
        from kernelpilot.probes.ringbuf import RingReader
        from kernelpilot.bpf.build import BTF_PATH
        if os.geteuid() != 0:
            raise CapabilityError("eBPF tracing needs root (CAP_BPF + CAP_PERFMON)")
        if not BTF_PATH.exists():
            raise CapabilityError(f"this kernel has no BTF ({BTF_PATH} missing), so CO-RE probes cannot load")
        progs = [p for g in self.groups + ["proc"] for p in PROGRAMS[g]]
        self.obj = BpfObject(self.object_path(), autoload=progs + list(self.extra_programs),
                             map_sizes={"kp_ring": self.ring_bytes, "kp_bring": self.ring_bytes,
                                        "kp_pidbits": pid_max() // 64 + 1})
        self.comms = CommResolver()
        flt, cg, comm = 0, 0, b""
        if self.pids:
            flt |= FILTER_PIDS
            for pid in self.pids:
                self.watch_pid(pid)
        if self.cgroup:
            flt |= FILTER_CGROUP
            cg = cgroup_id(self.cgroup)
        if self.comm:
            flt |= FILTER_COMM
            comm = self.comm.encode()[:15]
        if "sched" in self.groups:
            flt |= UNWATCH_AT_SWITCH
        self.obj.map("kp_cfg").update(0, struct.pack("<IIQ16s", flt, os.getpid() if self.exclude_self else 0,
                                                      cg, comm))
        self.readers = [RingReader(self.obj.map("kp_ring"), S.EVENT_DTYPE),
                        RingReader(self.obj.map("kp_bring"), BATCH_DTYPE)]
        for p in progs:
            self.obj.program(p).attach()
        self.programs = progs
        return self

    def watch_pid(self, pid: int) -> None:
        """Add a process (and its threads) to the in-kernel pid filter while running."""
        for t in threads_of(pid):
            set_pid_bit(self.obj.map("kp_pidbits"), t)

    def _deliver(self, parts: list[np.ndarray]) -> np.ndarray:
        ev = np.concatenate(parts)
        if len(ev) and parts[1:] and any(len(p) for p in parts[1:]):
            ev = ev[np.argsort(ev["ts"], kind="stable")]  # batched events join the others in time order
        clean_comm(ev)
        self.comms(ev)
        self.delivered += len(ev)
        return ev

    def poll(self) -> np.ndarray:
        """Events committed so far. Batched kinds (syscalls, faults, sched) arrive once their CPU's batch
        fills or its oldest event is 20 ms old, so they may be a little older than the rest."""
        return self._deliver([self.readers[0].poll(), unbatch(self.readers[1].poll())])

    def finish(self) -> np.ndarray:
        """Detach, then everything left: both rings and each CPU's unfinished batch."""
        from kernelpilot.probes.libbpf import detach_all
        detach_all([self.obj.program(p) for p in self.programs])
        parts = [self.readers[0].poll(), unbatch(self.readers[1].poll())]
        m = self.obj.map("kp_batches")
        for key in range(NBATCHES):  # each CPU's syscall/fault batch and its sched batch
            raw = m.lookup(key)
            if raw is not None:
                parts.append(unbatch(np.frombuffer(raw, dtype=BATCH_DTYPE)))
                m.update(key, bytes(len(raw)))
        return self._deliver(parts)

    def drain(self, idle_s: float = 0.05, timeout_s: float = 2.0) -> np.ndarray:
        """Read until the rings stay quiet for idle_s, then finish (for tests and one-shot use)."""
        parts, deadline, last = [], time.monotonic() + timeout_s, time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last < idle_s:
            b = self.poll()
            if len(b):
                parts.append(b)
                last = time.monotonic()
            time.sleep(0.005)
        parts.append(self.finish())
        ev = np.concatenate(parts)
        return ev[np.argsort(ev["ts"], kind="stable")]

    def stats(self) -> dict:
        st = self.obj.map("kp_stats")
        # runs the kernel skipped because another BPF program was active on that CPU
        missed = sum(self.obj.program(p).info().recursion_misses for p in self.programs)
        return {"source": self.name, "delivered": self.delivered,
                "dropped": st.sum_percpu_u64(0)[0], "missed": int(missed), "ring_bytes": self.ring_bytes}

    def program_stats(self) -> dict:
        return {p: self.obj.program(p).run_stats() for p in self.programs}

    def stop(self):
        if self.obj is not None:
            from kernelpilot.probes.libbpf import detach_all
            detach_all(self.obj.programs.values())
            for r in self.readers:
                r.close()
            self.readers = []
            self.obj.close()
            self.obj = None


# ---- tracefs (ftrace) fallback ----

TRACEFS_EVENTS = {
    "sched": ["sched/sched_switch", "sched/sched_wakeup", "sched/sched_wakeup_new"],
    "syscalls": ["raw_syscalls/sys_enter"],
    "faults": ["exceptions/page_fault_user"],
    "mm": ["syscalls/sys_enter_mmap", "syscalls/sys_enter_munmap", "syscalls/sys_enter_ioctl"],
    "files": ["filemap/mm_filemap_get_pages", "filemap/mm_filemap_add_to_page_cache", "filemap/mm_filemap_fault"],
    "proc": ["sched/sched_process_fork", "sched/sched_process_exit", "sched/sched_process_exec"],
}
_LINE = re.compile(r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+\(\s*(?P<tgid>[\d-]+)\)\s+\[(?P<cpu>\d+)\]\s+\S+\s+"
                   r"(?P<ts>\d+\.\d+):\s+(?P<ev>\w+):\s?(?P<rest>.*)$")
_KV = re.compile(r"(\w+)[=:]\s?(\S+)")


def _num(s: str) -> int:
    s = s.rstrip(",)")
    try:
        return int(s, 16) if s.startswith("0x") else int(s)
    except ValueError:
        return 0


def parse_ftrace_line(line: str):
    """One ftrace text line -> tuple of event fields, or None for lines we do not use."""
    m = _LINE.match(line)
    if not m:
        return None
    ev, rest = m["ev"], m["rest"]
    pid, tgid = int(m["pid"]), int(m["tgid"]) if m["tgid"].isdigit() else 0
    ts, cpu, comm = int(round(float(m["ts"]) * 1e9)), int(m["cpu"]), m["comm"].strip()
    kv = dict(_KV.findall(rest))
    a = [0, 0, 0, 0]
    aux = 0
    if ev == "sys_enter":
        nr = re.match(r"NR (\d+) \(([^)]*)\)", rest)
        if not nr:
            return None
        args = [int(x, 16) for x in nr[2].split(",")[:3]]
        kind, a = S.SYSCALL, [int(nr[1]), *args, 0, 0, 0][:4]
    elif ev == "sched_switch":
        kind = S.SCHED_SWITCH
        prev_state = kv.get("prev_state", "R")
        a = [_num(kv.get("next_pid", "0")), 0 if prev_state.startswith("R") else 1, 0, 0]
        pid, comm = _num(kv.get("prev_pid", "0")), kv.get("prev_comm", comm)
    elif ev in ("sched_wakeup", "sched_wakeup_new"):
        kind, aux = S.SCHED_WAKEUP, int(ev.endswith("new"))
        a = [pid, _num(kv.get("target_cpu", "0")), tgid, _num(kv.get("prio", "0"))]
        pid, tgid, comm = _num(kv.get("pid", "0")), 0, kv.get("comm", comm)
    elif ev == "page_fault_user":
        kind, a = S.PAGE_FAULT, [_num(kv.get("address", "0")), _num(kv.get("ip", "0")), _num(kv.get("error_code", "0")), 0]
    elif ev == "sys_enter_mmap":
        kind, aux = S.MMAP, _num(kv.get("fd", "0")) & 0xFFFFFFFF
        a = [_num(kv.get("len", "0")), _num(kv.get("prot", "0")) | (_num(kv.get("flags", "0")) << 32), 0, 0]
    elif ev == "sys_enter_munmap":
        kind, a = S.MUNMAP, [_num(kv.get("addr", "0")), _num(kv.get("len", "0")), 0, 0]
    elif ev == "sys_enter_ioctl":
        kind, aux = S.IOCTL, _num(kv.get("fd", "0")) & 0xFFFFFFFF
        a = [_num(kv.get("cmd", "0")), _num(kv.get("arg", "0")), 0, 0]
    elif ev.startswith("mm_filemap"):
        ino = int(re.search(r"ino[= ]([0-9a-f]+)", rest)[1], 16)
        ofs = re.search(r"ofs=(\d+)(?:-(\d+))?", rest)
        first = int(ofs[1]) >> 12 if ofs else 0
        last = (int(ofs[2]) >> 12) if ofs and ofs[2] else first
        kind = {"mm_filemap_get_pages": S.FILE_READ, "mm_filemap_add_to_page_cache": S.FILE_MISS,
                "mm_filemap_fault": S.FILE_FAULT}.get(ev)
        if kind is None:
            return None
        a = [ino, first, last if kind == S.FILE_READ else 0, 0]
    elif ev == "sched_process_fork":
        kind, a = S.PROC_FORK, [_num(kv.get("child_pid", "0")), 0, 0, 0]
    elif ev == "sched_process_exit":
        kind = S.PROC_EXIT
    elif ev == "sched_process_exec":
        kind, a = S.PROC_EXEC, [_num(kv.get("old_pid", "0")), 0, 0, 0]
    else:
        return None
    return (ts, pid, tgid, kind, cpu, aux, *a, comm.encode()[:16])


class TracefsSource(LiveSource):
    """ftrace events in a private tracefs instance, parsed from trace_pipe text."""
    name = "tracefs"

    def __init__(self, groups, pids=None, **_):
        self.groups, self.pids = list(groups), list(pids or [])
        self.inst = None
        self.delivered = 0
        self.unparsed = 0

    def _w(self, rel: str, text: str) -> None:
        (self.inst / rel).write_text(text)

    def start(self):
        root = ensure_tracefs()
        try:
            self.inst = root / "instances" / f"kpilot-{os.getpid()}"
            self.inst.mkdir(exist_ok=True)
            self._w("trace_clock", "mono")
            self._w("buffer_size_kb", "16384")
            self._w("options/record-tgid", "1")
            if self.pids:
                self._w("options/event-fork", "1")
                self._w("set_event_pid", " ".join(str(p) for p in self.pids))
            for g in self.groups + ["proc"]:
                for e in TRACEFS_EVENTS[g]:
                    if (self.inst / "events" / e / "enable").exists():
                        self._w(f"events/{e}/enable", "1")
            self._fd = os.open(self.inst / "trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
        except PermissionError:
            self.stop()
            raise CapabilityError("tracefs is not writable by this user (needs root)") from None
        self._tail = b""
        return self

    def watch_pid(self, pid: int) -> None:
        self.pids.append(pid)
        self._w("options/event-fork", "1")
        self._w("set_event_pid", " ".join(str(p) for p in self.pids))

    def poll(self) -> np.ndarray:
        chunks = []
        while True:
            try:
                b = os.read(self._fd, 1 << 20)
            except BlockingIOError:
                break
            if not b:
                break
            chunks.append(b)
            if len(chunks) > 64:
                break
        if not chunks:
            return np.empty(0, dtype=S.EVENT_DTYPE)
        data = self._tail + b"".join(chunks)
        lines = data.split(b"\n")
        self._tail = lines.pop()
        rows = []
        own = os.getpid()
        for ln in lines:
            r = parse_ftrace_line(ln.decode(errors="replace"))
            if r is None:
                self.unparsed += 1
            elif r[2] != own:
                rows.append(r)
        out = np.array(rows, dtype=S.EVENT_DTYPE) if rows else np.empty(0, dtype=S.EVENT_DTYPE)
        self.delivered += len(out)
        return out

    def stats(self) -> dict:
        dropped = 0
        try:
            for ln in (self.inst / "per_cpu").glob("cpu*/stats"):
                m = re.search(r"overrun: (\d+)", ln.read_text())
                dropped += int(m[1]) if m else 0
        except OSError:
            pass
        return {"source": self.name, "delivered": self.delivered, "dropped": dropped}

    def stop(self):
        if self.inst is not None and self.inst.exists():
            try:
                os.close(self._fd)
            except (AttributeError, OSError):
                pass
            for e in (self.inst / "events").glob("*/*/enable"):
                try:
                    if e.read_text().strip() == "1":
                        e.write_text("0")
                except OSError:
                    pass
            try:
                self.inst.rmdir()
            except OSError:
                pass
        self.inst = None


# ---- /proc sampler ----

class ProcSource(LiveSource):
    """Samples /proc/<pid>/stat and status every `interval` s into proc_sample events."""
    name = "proc"

    def __init__(self, groups=(), pids=None, interval: float = 0.1, **_):
        self.pids = list(pids or [])
        self.interval = interval
        self.delivered = 0
        self._next = 0.0
        self._tick = os.sysconf("SC_CLK_TCK")

    def start(self):
        self._next = time.monotonic()
        return self

    def watch_pid(self, pid: int) -> None:
        self.pids.append(pid)

    def _targets(self) -> list[int]:
        if not self.pids:
            return [int(p) for p in os.listdir("/proc") if p.isdigit()]
        out = set()
        for p in self.pids:
            out.add(p)
            out.update(_children(p))
        return sorted(out)

    def poll(self) -> np.ndarray:
        now = time.monotonic()
        if now < self._next:
            return np.empty(0, dtype=S.EVENT_DTYPE)
        self._next = now + self.interval
        rows, ts = [], time.monotonic_ns()
        for pid in self._targets():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1: stat.rindex(")")]
            f = stat[stat.rindex(")") + 2:].split()
            cpu_ns = (int(f[11]) + int(f[12])) * 1_000_000_000 // self._tick
            vol = int(re.search(r"voluntary_ctxt_switches:\s+(\d+)", status)[1])
            invol = int(re.search(r"nonvoluntary_ctxt_switches:\s+(\d+)", status)[1])
            tgid = int(re.search(r"Tgid:\s+(\d+)", status)[1])
            rows.append((ts, pid, tgid, S.PROC_SAMPLE, int(f[36]) if len(f) > 36 else 0, 0,
                         cpu_ns, int(f[7]), int(f[9]), vol | (invol << 32), comm.encode()[:16]))
        out = np.array(rows, dtype=S.EVENT_DTYPE) if rows else np.empty(0, dtype=S.EVENT_DTYPE)
        self.delivered += len(out)
        return out

    def stats(self) -> dict:
        return {"source": self.name, "delivered": self.delivered, "dropped": 0}

    def stop(self):
        pass


def _children(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = [int(c) for t in os.listdir(f"/proc/{p}/task")
                    for c in Path(f"/proc/{p}/task/{t}/children").read_text().split()]
        except OSError:
            continue
        out += kids
        todo += kids
    return out


SOURCES = {"ebpf": EbpfSource, "tracefs": TracefsSource, "proc": ProcSource}


def open_source(source: str = "auto", groups=("syscalls",), notes: list | None = None, **kw):
    """Start a source. With "auto": eBPF, else tracefs, else /proc; each fallback's reason goes
    into `notes` (a list) so the caller can tell the user which source it used and why."""
    if source != "auto":
        if source not in SOURCES:
            raise KpError(f"unknown source '{source}'; choose from auto, {', '.join(SOURCES)}")
        return SOURCES[source](groups, **kw).start()
    last = None
    for name in ("ebpf", "tracefs", "proc"):
        try:
            return SOURCES[name](groups, **kw).start()
        except KpError as e:  # capability missing: say so and fall back
            last = e
            if notes is not None:
                notes.append(f"{name} unavailable: {e}")
    raise last
