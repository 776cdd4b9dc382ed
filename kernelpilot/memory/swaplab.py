"""The live setting for swap decisions, journaled (agent/journal.py): a zram swap device, a memory
cgroup with a limit, and a cgroup-v2 group beside it for the workload's own memory pressure.

Every change goes through the journal first, so a normal exit, an exception, SIGINT/SIGTERM (the
journal's handlers) and SIGKILL (its guardian) all restore: swapoff, zram reset + hot_remove,
limits back, cgroups removed (their tasks moved to the parent first).

Fallbacks, stated in `notes`: no zram module -> the swap already on, if any (else an error);
no per-cgroup pressure (no cgroup-v2 mount) -> the host's /proc/pressure/memory.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

from kernelpilot.errors import CapabilityError, KpError

V1_ROOT = Path("/sys/fs/cgroup/memory")
V2_ROOTS = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))


def zram_control() -> Path:
    return Path(os.environ.get("KPILOT_ZRAM_CONTROL", "/sys/class/zram-control"))


def memcg_backend() -> tuple[str, Path]:
    """('v1', /sys/fs/cgroup/memory) or ('v2', root with the memory controller), else an error."""
    root = Path(os.environ.get("KPILOT_MEMCG_ROOT", V1_ROOT))
    if (root / "memory.limit_in_bytes").exists():
        return "v1", root
    for r in V2_ROOTS:
        try:
            if "memory" in (r / "cgroup.controllers").read_text().split():
                return "v2", r
        except OSError:
            continue
    raise CapabilityError(f"no memory controller: {root}/memory.limit_in_bytes missing and no cgroup-v2 "
                          "root lists 'memory' in cgroup.controllers")


def pressure_root() -> Path | None:
    """A cgroup-v2 mount (with or without controllers: PSI files are in every v2 group)."""
    for r in V2_ROOTS:
        if (r / "cgroup.procs").exists() and (r / "memory.pressure").exists():
            return r
    return None


@contextlib.contextmanager
def _captured():
    """The journal's log lines during a step, kept (not printed): the caller reports them."""
    log = logging.getLogger("kernelpilot.agent")
    msgs: list[str] = []

    class _Keep(logging.Handler):
        def emit(self, record):
            msgs.append(record.getMessage())
    h, old = _Keep(), log.propagate
    log.addHandler(h)
    log.propagate = False
    try:
        yield msgs
    finally:
        log.removeHandler(h)
        log.propagate = old


def read_pressure(path: Path) -> int:
    """'some' stall total (microseconds) from a memory.pressure or io.pressure file."""
    for line in path.read_text().splitlines():
        if line.startswith("some"):
            return int(line.rsplit("total=", 1)[1])
    raise KpError(f"{path}: no 'some' line")


def zram_swap(journal, mb: int, must) -> tuple[str | None, str | None]:
    """A zram swap device, journaled (hot_add, disksize + mkswap, swapon): (device, None); with no
    zram module, the swap already on: (None, note); with neither, an error."""
    ctl = zram_control()
    if (ctl / "hot_add").exists():
        zid = int((ctl / "hot_add").read_text().strip())
        dev = f"/dev/zram{zid}"
        must("zram", {"id": zid, "path": dev}, f"{mb}M", "zram swap")
        must("swapon", {"dev": dev, "path": dev}, True, "swapon")
        return dev, None
    if len(Path("/proc/swaps").read_text().splitlines()) > 1:
        return None, f"no zram ({ctl}/hot_add missing): using the swap already on"
    raise CapabilityError(f"no zram ({ctl}/hot_add missing; modprobe zram) and no swap on")


def must_change(journal):
    """A setup step for `journal`: made, or a one-line error with the journal's reason."""
    def must(knob: str, target: dict, new, what: str):
        with _captured() as why:
            ok = journal.change(knob, target, new)
        if not ok:
            raise KpError(f"cannot set up {what}: {why[-1] if why else target.get('path', '?')}; "
                          "nothing left changed")
    return must


def page_limit(nbytes) -> int:
    """A memory limit as the kernel keeps it: whole pages, at least one."""
    return max(int(nbytes) // 4096 * 4096, 4096)


class SwapLab:
    """`with SwapLab(journal, limit_mb, zram_mb) as lab:` then run children with
    `preexec=lab.enter`; `lab.set_limit(bytes)`, `lab.usage()`, `lab.stat()`, `lab.pressure_us()`."""

    def __init__(self, journal, limit_mb: int, zram_mb: int, name: str | None = None):
        if limit_mb <= 0 or zram_mb <= 0:
            raise KpError("--limit-mb and --zram-mb must be > 0")
        self.j, self.limit_mb, self.zram_mb = journal, limit_mb, zram_mb
        self.name = name or f"kpilot-swap-{os.getpid()}"
        self.notes: list[str] = []
        self.kind = self.cg = self.psi_cg = self.dev = None

    # --- setup: each step journaled before it is made ---
    def _must(self, knob: str, target: dict, new, what: str):
        must_change(self.j)(knob, target, new, what)

    def open(self) -> "SwapLab":
        self.kind, root = memcg_backend()
        self.dev, note = zram_swap(self.j, self.zram_mb, self._must)
        if note:
            self.notes.append(note)
        self.cg = root / self.name
        self._must("mkdir", {"path": str(self.cg)}, True, "memory cgroup")
        self.set_limit(self.limit_mb << 20, setup=True)
        if self.kind == "v1":
            self.j.change("file", {"path": str(self.cg / "memory.swappiness")}, "100")
        pr = pressure_root()
        if self.kind == "v2":
            self.psi_cg = self.cg
        elif pr is not None:
            self.psi_cg = pr / self.name
            self._must("mkdir", {"path": str(self.psi_cg)}, True, "pressure cgroup")
        else:
            self.notes.append("no cgroup-v2 mount: pressure is the host's /proc/pressure/memory")
        return self

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        return False  # the journal's close restores

    # --- the workload ---
    def enter(self):
        """preexec for the workload: join the memory group (and the pressure group)."""
        procs = "tasks" if self.kind == "v1" else "cgroup.procs"
        (self.cg / procs).write_text(f"{os.getpid()}\n")
        if self.psi_cg is not None and self.psi_cg != self.cg:
            (self.psi_cg / "cgroup.procs").write_text(f"{os.getpid()}\n")

    def empty(self):
        """Between runs: uncharge what the last run left (v1 force_empty; v2 memory.reclaim)."""
        try:
            if self.kind == "v1":
                (self.cg / "memory.force_empty").write_text("0\n")
            else:
                self.reclaim(self.usage())
        except OSError:
            pass

    def pids(self) -> list[int]:
        return [int(x) for x in (self.cg / "cgroup.procs").read_text().split()]

    # --- knobs and readings (FileNotFoundError when the group vanished) ---
    def limit_file(self) -> Path:
        return self.cg / ("memory.limit_in_bytes" if self.kind == "v1" else "memory.high")

    def set_limit(self, nbytes: int, setup: bool = False) -> bool:
        """v1: memory.limit_in_bytes (the kernel reclaims down to it, or refuses: False);
        v2: memory.high. Journaled: the old value comes back on exit."""
        nbytes = page_limit(nbytes)
        if setup:
            self._must("file", {"path": str(self.limit_file())}, str(nbytes), "the memory limit")
            return True
        with _captured():  # refused steps are counted by the caller, not logged line by line
            return self.j.change("file", {"path": str(self.limit_file())}, str(nbytes))

    def write_limit(self, nbytes: int) -> int:
        """A controller's step, one raw write(2) (a signal interrupts it: limitwriter) outside the
        journal, whose setup entry for this file holds the value restored on exit: 0 or the errno."""
        from kernelpilot.memory.limitwriter import write_raw
        return write_raw(self.limit_file(), f"{page_limit(nbytes)}\n".encode())

    def reclaim(self, nbytes: int) -> bool:
        """v2 memory.reclaim (a one-shot request, nothing to restore); False where absent."""
        f = self.cg / "memory.reclaim"
        if self.kind != "v2" or not f.exists():
            return False
        try:
            f.write_text(f"{int(nbytes)}\n")
            return True
        except OSError:
            return False

    def limit(self) -> int:
        v = self.limit_file().read_text().strip()
        return 1 << 62 if v == "max" else int(v)

    def usage(self) -> int:
        return int((self.cg / ("memory.usage_in_bytes" if self.kind == "v1" else "memory.current")).read_text())

    def stat(self) -> dict:
        out = {}
        for line in (self.cg / "memory.stat").read_text().splitlines():
            k, v = line.split()
            out[k] = int(v)
        return out

    def refaults(self, st: dict | None = None) -> int:
        st = st or self.stat()
        return st.get("workingset_refault_anon", 0) + st.get("workingset_refault_file", 0)

    def majfaults(self, st: dict | None = None) -> int:
        st = st or self.stat()
        return st.get("pgmajfault", 0)

    # --- the OOM guard (v1): a moved limit must never hand the workload to the OOM killer ---
    def oom_control(self) -> dict | None:
        """v1 memory.oom_control ({'oom_kill_disable', 'under_oom', 'oom_kill'}); None on v2, where
        memory.high throttles and never OOM-kills."""
        if self.kind != "v1":
            return None
        return {k: int(v) for k, v in (line.split() for line in (self.cg / "memory.oom_control").read_text().splitlines())}

    def set_oom_kill(self, enabled: bool) -> bool:
        """v1: with the OOM killer off, a charge that reclaim cannot meet waits (under_oom) until the
        limit is raised, instead of a kill. The setting lives in the lab's own group, which every
        exit path removes; each run puts it back on."""
        if self.kind != "v1":
            return False
        try:
            (self.cg / "memory.oom_control").write_text("0\n" if enabled else "1\n")
            return True
        except OSError:
            return False

    def raise_limit(self, nbytes: int) -> bool:
        """An emergency raise, written at once (no rate limit): the journal's setup entry for this
        file still holds the value restored on exit."""
        try:
            self.limit_file().write_text(f"{page_limit(nbytes)}\n")
            return True
        except OSError:
            return False

    def pressure_us(self) -> int:
        return read_pressure(self._psi_path("memory"))

    def io_pressure_us(self) -> int:
        """'some' io stall total (microseconds) of the same group (else the host's), 0 where the
        kernel has no io PSI. A page-cache read waits here; it is a memory stall too only where
        the page was active when it was evicted (the kernel's workingset bit), so a program whose
        page cache is squeezed below its hot set can lose half its time to reads that memory
        pressure barely shows."""
        return self._psi("io")

    def cpu_pressure_us(self) -> int:
        """'some' cpu stall total (microseconds): time the workload was runnable and waited for a
        CPU, which on a shared host is most of a run's spread (0 where absent)."""
        return self._psi("cpu")

    def _psi_path(self, resource: str) -> Path:
        """The group's RESOURCE.pressure, else the host's /proc/pressure/RESOURCE."""
        return self.psi_cg / f"{resource}.pressure" if self.psi_cg is not None else Path(f"/proc/pressure/{resource}")

    def _psi(self, resource: str) -> int:
        """'some' total of an optional resource (io, cpu): 0 where the kernel lacks it."""
        try:
            return read_pressure(self._psi_path(resource))
        except FileNotFoundError:
            if self.psi_cg is not None and not self.psi_cg.exists():
                raise
            return 0


def swap_free() -> int:
    """Free swap on the host (bytes, /proc/meminfo SwapFree): what reclaim can still swap out."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("SwapFree:"):
            return int(line.split()[1]) << 10
    return 0


def reclaimable(st: dict) -> int:
    """What reclaim can free in a group (memory.stat, bytes): its page cache and as much of its
    anonymous memory as free swap holds, less what is unevictable (mlocked)."""
    anon, cache = st.get("rss", st.get("anon", 0)), st.get("cache", st.get("file", 0))
    return max(0, cache + min(anon, swap_free()) - st.get("unevictable", 0))


def wait_empty(cg: Path, timeout: float = 10.0):
    """Poll (with a deadline) until no task is left in cg."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not (cg / "cgroup.procs").read_text().split():
                return
        except OSError:
            return
        time.sleep(0.05)
