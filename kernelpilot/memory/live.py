"""Live memory experiments. Dry-run by default (prints the plan); `--enforce` acts, and every
exit path (return, error, SIGINT/SIGTERM) restores what was changed: generated files, page
cache of the file, zram swap devices, memory cgroups.

prefetch  A command reads a file with a strided (index-like) pattern through mmap. Run 1: caches
          dropped, kernel readahead only; the pages it brought in (mincore) are the history.
          The learned delta model replays that history and predicts the pages to fetch. Run 2:
          caches dropped, an agent thread issues posix_fadvise(WILLNEED) for the predicted pages
          while the command runs. Reported: major faults and run time of both runs.
swap      A program with a hot and a cold working set runs in a memory cgroup (v1) with zram
          swap. Run 1: kernel reclaim. Run 2: an agent tracks per-page writes (soft-dirty bits
          in /proc/PID/pagemap, cleared via clear_refs), predicts pages not written in the last
          3 windows as cold and pushes them out with process_madvise(MADV_PAGEOUT).
          Reported: major faults, swap-ins, refaults, run time.
"""
from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from kernelpilot.errors import CapabilityError, KpError

PAGE = os.sysconf("SC_PAGE_SIZE")
libc = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def signals_restore():
    """Turn SIGTERM/SIGHUP into KeyboardInterrupt so `finally` blocks run."""
    def handler(sig, frame):
        raise KeyboardInterrupt
    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _root():
    if os.geteuid() != 0:
        raise CapabilityError("live memory experiments need root (drop_caches, cgroups, swap)")


def drop_caches(path: Path | None = None):
    os.sync()
    if path is not None:  # the file's own pages first, then the whole cache
        fd = os.open(path, os.O_RDONLY)
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def run_measured(argv, preexec=None, during=None) -> dict:
    """Run argv; return wall time, major/minor faults of the child (wait4 rusage)."""
    t0 = time.perf_counter()
    try:
        p = subprocess.Popen(argv, preexec_fn=preexec, stdout=subprocess.DEVNULL)
    except OSError as e:
        raise KpError(f"cannot run {argv[0]}: {e.strerror}") from None
    stop = threading.Event()
    th = None
    if during:
        th = threading.Thread(target=during, args=(p.pid, stop), daemon=True)
        th.start()
    try:
        _, status, ru = os.wait4(p.pid, 0)
    finally:
        stop.set()
        if th:
            th.join(5)
        if p.poll() is None:
            p.kill()
            p.wait()
    return {"seconds": round(time.perf_counter() - t0, 3), "major_faults": ru.ru_majflt,
            "minor_faults": ru.ru_minflt, "exit_code": os.waitstatus_to_exitcode(status)}


# ---- prefetch ---------------------------------------------------------------------------------

READER = r"""
import mmap, os, sys
path, stride = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_RDONLY)
size = os.fstat(fd).st_size
m = mmap.mmap(fd, size, prot=mmap.PROT_READ)
m.madvise(mmap.MADV_NORMAL)
s = 0
for off in range(0, size, stride * 4096):
    s += m[off]
print(s)
"""


def resident_pages(path: Path) -> np.ndarray:
    """Page indices of `path` now in the page cache (mincore on a fresh mapping)."""
    size = path.stat().st_size
    n = (size + PAGE - 1) // PAGE
    vec = (ctypes.c_ubyte * n)()
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                          ctypes.c_long]
    fd = os.open(path, os.O_RDONLY)
    try:
        a = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if a is None or a == ctypes.c_void_p(-1).value:
            raise KpError(f"cannot map {path}")
        try:
            if libc.mincore(ctypes.c_void_p(a), ctypes.c_size_t(size), vec) != 0:
                raise KpError(f"mincore failed on {path}: {os.strerror(ctypes.get_errno())}")
        finally:
            libc.munmap(ctypes.c_void_p(a), ctypes.c_size_t(size))
    finally:
        os.close(fd)
    return np.flatnonzero(np.frombuffer(vec, np.uint8) & 1)


def predict_pages(history: np.ndarray) -> list[int]:
    """Replay the observed page order through the learned delta model; collect its predictions
    (in order, first occurrence) plus the first history pages it had no context for."""
    from kernelpilot.memory.prefetch import DeltaModel
    m = DeltaModel(depth=16)
    seen, out = set(), []
    for p in history.tolist():
        for q in m(p):
            if q >= 0 and q not in seen:
                seen.add(q)
                out.append(q)
    head = [p for p in history[:64].tolist() if p not in seen]
    return head + out


def _advise(path: Path, pages: list[int], n_pages: int):
    def agent(pid, stop):
        fd = os.open(path, os.O_RDONLY)
        try:
            for i in range(0, len(pages), 64):
                if stop.is_set():
                    return
                for p in pages[i:i + 64]:
                    if 0 <= p < n_pages:
                        os.posix_fadvise(fd, p * PAGE, PAGE, os.POSIX_FADV_WILLNEED)
        finally:
            os.close(fd)
    return agent


def prefetch_experiment(cmd, file, size_mb: int, stride: int, enforce: bool) -> dict:
    if size_mb <= 0 or stride <= 0:
        raise KpError("--size-mb and --stride must be > 0")
    gen = file is None
    path = Path(file) if file else Path(f"/var/tmp/kpilot-prefetch-{os.getpid()}.dat")
    argv = list(cmd) or [sys.executable, "-c", READER, str(path), str(stride)]
    plan = {"mode": "enforce" if enforce else "dry-run", "file": str(path), "generated": gen,
            "command": argv if cmd else f"built-in mmap reader, stride {stride} pages",
            "steps": ["drop caches; run (kernel readahead)", "history = resident pages (mincore)",
                      "learned delta model predicts pages", "drop caches; run with fadvise WILLNEED agent",
                      "restore: drop the file's cached pages, remove the generated file"]}
    if not enforce:
        return plan
    _root()
    if not gen and not path.is_file():
        raise KpError(f"--file {path} does not exist")
    with signals_restore():
        try:
            if gen:
                with open(path, "wb") as f:
                    chunk = np.random.default_rng(0).integers(0, 255, 1 << 20, dtype=np.uint8).tobytes()
                    for _ in range(size_mb):
                        f.write(chunk)
            n_pages = (path.stat().st_size + PAGE - 1) // PAGE
            drop_caches(path)
            base = run_measured(argv)
            hist = resident_pages(path)
            pages = predict_pages(hist)
            drop_caches(path)
            agent = run_measured(argv, during=_advise(path, pages, n_pages))
        finally:
            with contextlib.suppress(OSError):
                fd = os.open(path, os.O_RDONLY)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)
            if gen:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
    cut = 1 - agent["major_faults"] / base["major_faults"] if base["major_faults"] else 0.0
    return dict(plan, kernel_readahead=base, learned_prefetch=agent, history_pages=int(len(hist)),
                predicted_pages=len(pages), major_fault_cut=round(cut, 4),
                speedup=round(base["seconds"] / max(agent["seconds"], 1e-9), 3))


# ---- swap -------------------------------------------------------------------------------------

HELPER_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
/* hot/cold working set: touch all, then write the hot part each round, a cold page rarely */
int main(int argc, char **argv) {
  long mb = atol(argv[1]), hot_pct = atol(argv[2]), rounds = atol(argv[3]);
  long n = mb << 8, hot = n * hot_pct / 100, pg = 4096;
  char *m = mmap(0, n * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return 1;
  madvise(m, n * pg, MADV_NOHUGEPAGE);
  for (long i = 0; i < n; i++) m[i * pg] = (char)i;
  unsigned long x = 88172645463325252UL, s = 0;
  for (long r = 0; r < rounds; r++) {
    for (long i = 0; i < hot; i++) m[i * pg + (r & 4095)] += 1;
    for (int k = 0; k < 4; k++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; s += m[(hot + x % (n - hot)) * pg]; }
  }
  printf("%lu\n", s);
  return 0;
}
"""


def build_helper(workdir: Path) -> Path:
    src = workdir / "kp_hotcold.c"
    exe = workdir / "kp_hotcold"
    src.write_text(HELPER_C)
    r = subprocess.run(["gcc", "-O2", "-o", str(exe), str(src)], capture_output=True, text=True)
    if r.returncode:
        raise KpError(f"gcc failed building the swap helper: {r.stderr.strip().splitlines()[-1:]}")
    return exe


class Zram:
    """A zram swap device made for the experiment; `close()` undoes everything."""

    def __init__(self, mb: int):
        ctl = Path("/sys/class/zram-control/hot_add")
        if not ctl.exists():
            raise CapabilityError("zram is not available (/sys/class/zram-control missing; modprobe zram)")
        self.id = int(ctl.read_text().strip())
        self.dev = f"/dev/zram{self.id}"
        self.on = False
        try:
            Path(f"/sys/block/zram{self.id}/disksize").write_text(f"{mb}M\n")
            subprocess.run(["mkswap", self.dev], check=True, capture_output=True)
            subprocess.run(["swapon", "-p", "32000", self.dev], check=True, capture_output=True)
            self.on = True
        except (OSError, subprocess.CalledProcessError) as e:
            self.close()
            raise KpError(f"cannot set up zram swap: {e}") from None

    def close(self):
        if self.on:
            subprocess.run(["swapoff", self.dev], capture_output=True)
            self.on = False
        with contextlib.suppress(OSError):
            Path(f"/sys/block/zram{self.id}/reset").write_text("1\n")
        with contextlib.suppress(OSError):
            Path("/sys/class/zram-control/hot_remove").write_text(f"{self.id}\n")


class MemCgroup:
    """A cgroup-v1 memory group with a limit; `close()` moves tasks out and removes it."""
    ROOT = Path("/sys/fs/cgroup/memory")

    def __init__(self, name: str, limit_mb: int):
        if not (self.ROOT / "memory.limit_in_bytes").exists():
            raise CapabilityError("the cgroup-v1 memory controller is not mounted at /sys/fs/cgroup/memory")
        self.path = self.ROOT / name
        self.path.mkdir(exist_ok=True)
        (self.path / "memory.limit_in_bytes").write_text(f"{limit_mb << 20}\n")
        with contextlib.suppress(OSError):
            (self.path / "memory.swappiness").write_text("100\n")

    def enter(self):
        (self.path / "tasks").write_text(f"{os.getpid()}\n")

    def stat(self) -> dict:
        out = {}
        for line in (self.path / "memory.stat").read_text().splitlines():
            k, v = line.split()
            out[k] = int(v)
        return out

    def close(self):
        with contextlib.suppress(OSError):
            for t in (self.path / "tasks").read_text().split():
                with contextlib.suppress(OSError):
                    (self.ROOT / "tasks").write_text(t + "\n")
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)


def vmstat(*keys) -> dict:
    d = dict(line.split() for line in Path("/proc/vmstat").read_text().splitlines())
    return {k: int(d.get(k, 0)) for k in keys}


SYS_pidfd_open, SYS_process_madvise, MADV_PAGEOUT = 434, 440, 21


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def pageout(pidfd: int, ranges) -> int:
    """process_madvise(MADV_PAGEOUT) over [(addr, length)]; returns bytes advised."""
    done = 0
    for i in range(0, len(ranges), 512):
        part = ranges[i:i + 512]
        iov = (_Iovec * len(part))(*[_Iovec(a, n) for a, n in part])
        r = libc.syscall(SYS_process_madvise, pidfd, iov, len(part), MADV_PAGEOUT, 0)
        if r > 0:
            done += r
    return done


def anon_regions(pid: int):
    """Writable private anonymous mappings of pid: [(start, end)]."""
    out = []
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
            parts = line.split()
            if len(parts) == 5 and parts[1].startswith("rw") and parts[1][3] == "p":
                a, b = (int(x, 16) for x in parts[0].split("-"))
                out.append((a, b))
    return out


def cold_agent(interval: float = 0.2, windows: int = 3):
    """Predict cold pages from soft-dirty history and page them out."""
    def agent(pid, stop):
        try:
            pidfd = libc.syscall(SYS_pidfd_open, pid, 0)
        except OSError:
            return
        if pidfd < 0:
            return
        idle: dict[int, int] = {}
        try:
            while not stop.wait(interval):
                try:
                    regions = anon_regions(pid)
                    with open(f"/proc/{pid}/pagemap", "rb") as pm:
                        cold = []
                        for a, b in regions:
                            n = (b - a) // PAGE
                            pm.seek(a // PAGE * 8)
                            ent = np.frombuffer(pm.read(n * 8), np.uint64)
                            present = (ent >> np.uint64(63)) & np.uint64(1)
                            dirty = (ent >> np.uint64(55)) & np.uint64(1)
                            for j in np.flatnonzero(present == 1):
                                addr = a + int(j) * PAGE
                                idle[addr] = 0 if dirty[j] else idle.get(addr, 0) + 1
                                if idle[addr] >= windows:
                                    cold.append((addr, PAGE))
                    Path(f"/proc/{pid}/clear_refs").write_text("4\n")
                    if cold:
                        pageout(pidfd, cold)
                except (OSError, ValueError):
                    return
        finally:
            os.close(pidfd)
    return agent


def swap_experiment(cmd, limit_mb: int, zram_mb: int, enforce: bool, rounds: int = 400) -> dict:
    if limit_mb <= 0 or zram_mb <= 0:
        raise KpError("--limit-mb and --zram-mb must be > 0")
    wss = limit_mb * 3 // 2
    plan = {"mode": "enforce" if enforce else "dry-run", "limit_mb": limit_mb, "zram_mb": zram_mb,
            "command": list(cmd) or f"built-in hot/cold program ({wss} MB, 20% hot)",
            "steps": ["zram swap device (hot_add, mkswap, swapon)", f"cgroup-v1 memory limit {limit_mb} MB",
                      "run with kernel reclaim", "run with soft-dirty cold predictor + MADV_PAGEOUT",
                      "restore: swapoff, zram reset/hot_remove, remove cgroup, helper files"]}
    if not enforce:
        return plan
    _root()
    import tempfile
    zram = cg = None
    res = {}
    with signals_restore(), tempfile.TemporaryDirectory(prefix="kpilot-swap-") as d:
        try:
            argv = list(cmd) or [str(build_helper(Path(d))), str(wss), "20", str(rounds)]
            zram = Zram(zram_mb)
            cg = MemCgroup(f"kpilot-swap-{os.getpid()}", limit_mb)
            keys = ("pswpin", "pswpout", "workingset_refault_anon")
            for name, during in (("kernel_reclaim", None), ("learned_pageout", cold_agent())):
                v0 = vmstat(*keys)
                r = run_measured(argv, preexec=cg.enter, during=during)
                v1 = vmstat(*keys)
                r.update({k: v1[k] - v0[k] for k in keys})
                res[name] = r
        finally:
            if cg:
                cg.close()
            if zram:
                zram.close()
    b, a = res["kernel_reclaim"], res["learned_pageout"]
    return dict(plan, **res, major_fault_ratio=round(a["major_faults"] / max(b["major_faults"], 1), 4),
                speedup=round(b["seconds"] / max(a["seconds"], 1e-9), 3))
