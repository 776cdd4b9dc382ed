"""Live memory experiments. Dry-run by default (prints the plan); `--enforce` acts, and every
exit path (return, error, SIGINT/SIGTERM) restores what was changed: generated files, page
cache of the file, zram swap devices, memory cgroups.

prefetch  A command reads 4 KiB records of a file through mmap at index-like offsets (page
          i * stride mod pages, stride far beyond the read-around window). Run 1: caches dropped,
          kernel readahead alone. Run 2 (history): under the foundation tracer; the file's pages
          in fault order (file_fault events). The learned delta model replays that history and
          predicts the pages to fetch. Run 3: caches dropped, an agent thread issues
          posix_fadvise(WILLNEED) for the predicted pages while the command runs. Reported: major
          faults and run time of runs 1 and 3.
swap      A program with a hot and a cold working set runs in a memory cgroup (v1) with zram
          swap. Run 1: kernel reclaim. Run 2 (history): the same, while an observer records each
          page's accesses per 50 ms window: written (soft-dirty bits in /proc/PID/pagemap,
          cleared via clear_refs 4) or faulted back in (swapped before, present now: catches
          reads). Run 3: the agent predicts cold pages from that history plus the live signals
          and keeps the cgroup under its limit with process_madvise(MADV_PAGEOUT), coldest first.
          Reported: major faults, swap-ins, refaults, run time of runs 1 and 3.
          (This kernel has no idle page tracking; DAMON is paddr-only, region-granular; and no
          CONFIG_MEM_SOFT_DIRTY, so the write signal is empty here: memory/pagesignal.py measures
          each signal. The swap controllers and the tracer-fed pusher: memory/swaprun.py.)
"""
from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import signal
import subprocess
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


STOP_SIGNALS = {signal.SIGTERM, signal.SIGHUP, signal.SIGINT}


def run_measured(argv, preexec=None, during=None) -> dict:
    """Run argv; return wall time, major/minor faults of the child (wait4 rusage). A stop signal
    is held back from the start of the child until the cleanup below is armed, so an interrupted
    run never leaves the child behind (in a cgroup about to be removed, holding our stderr)."""
    def child_setup():
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        if preexec:
            preexec()
    t0 = time.perf_counter()
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        p = subprocess.Popen(argv, preexec_fn=child_setup, stdout=subprocess.DEVNULL)
    except BaseException as e:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        if isinstance(e, OSError):
            raise KpError(f"cannot run {argv[0]}: {e.strerror}") from None
        raise
    stop = threading.Event()
    th = None
    try:
        if during:  # started with the signals blocked: they always reach this thread
            th = threading.Thread(target=during, args=(p.pid, stop), daemon=True)
            th.start()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # a pending one is raised here
        while True:  # poll, so a signal's handler never waits for the child
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.02)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        stop.set()
        if th:
            th.join(5)
        if p.poll() is None:
            p.kill()
            p.wait()
    return {"seconds": round(time.perf_counter() - t0, 3), "major_faults": ru.ru_majflt,
            "minor_faults": ru.ru_minflt, "exit_code": os.waitstatus_to_exitcode(status),
            "user_s": round(ru.ru_utime, 3), "sys_s": round(ru.ru_stime, 3)}


# ---- prefetch ---------------------------------------------------------------------------------

READER_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
/* index-like reads through mmap: record i is page (i * stride) mod pages, 4 KiB each;
   the stride is far larger than the kernel's read-around window, so readahead misses it */
int main(int argc, char **argv) {
  int fd = open(argv[1], O_RDONLY);
  long stride = atol(argv[2]), count = atol(argv[3]);
  struct stat st;
  if (fd < 0 || fstat(fd, &st)) return 1;
  long pages = st.st_size / 4096;
  unsigned char *m = mmap(0, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) return 1;
  unsigned long s = 0;
  for (long i = 0; i < count; i++) {
    long p = (i * stride) % pages;
    for (int k = 0; k < 4096; k += 512) s += m[p * 4096 + k];
  }
  printf("%lu\n", s);
  return 0;
}
"""


def build_c(src: str, workdir: Path, name: str) -> Path:
    """Compile a helper program with gcc -O2."""
    c = workdir / f"{name}.c"
    exe = workdir / name
    c.write_text(src)
    r = subprocess.run(["gcc", "-O2", "-o", str(exe), str(c)], capture_output=True, text=True)
    if r.returncode:
        raise KpError(f"gcc failed building {name}: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    return exe


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


def predict_pages(history: np.ndarray, depth: int = 8, n_pages: int | None = None) -> list[int]:
    """Replay the observed page order through the learned delta model; collect its predictions
    (in order, first occurrence) plus the first history pages it had no context for. Stream
    confirmation: a fault's predictions are kept only while the model is on a stream (the fault
    was the previous fault's first prediction), so noise faults (fault-around, other mappings)
    add no useless WILLNEEDs; pages past the file's end are dropped."""
    from kernelpilot.memory.prefetch import DeltaModel
    m = DeltaModel(depth=depth)
    seen, out = set(), []
    expect = None
    for p in history.tolist():
        pred = m(p)
        on_stream = expect is not None and p == expect
        expect = pred[0] if pred else None
        if not on_stream:
            continue
        for q in pred:
            if 0 <= q < (n_pages or 1 << 62) and q not in seen:
                seen.add(q)
                out.append(q)
    head = [p for p in history[:64].tolist() if p not in seen]
    return head + out


def fault_history(argv, path: Path) -> tuple[np.ndarray, str]:
    """Pages of `path` in the order the command touched them, from the foundation tracer:
    page_fault events give every first touch (minor ones too, fault-around aside); file_fault
    events (inode, page) pin the mapping's base address. Falls back to the resident set
    (mincore, page order) when the tracer cannot run or sees no fault of the file."""
    from kernelpilot.traces import schema as S
    from kernelpilot.traces.record import trace_command
    ino = path.stat().st_ino
    n_pages = (path.stat().st_size + PAGE - 1) // PAGE
    try:  # the command's output is not ours to print
        ev, _ = trace_command(argv, groups=["faults", "files"], stdout=subprocess.DEVNULL)
    except KpError:
        return resident_pages(path), "mincore"
    ff = np.flatnonzero((ev["kind"] == S.KIND["file_fault"]) & (ev["a0"] == ino))
    pf = np.flatnonzero(ev["kind"] == S.KIND["page_fault"])
    if len(ff) == 0 or len(pf) == 0:
        return resident_pages(path), "mincore"
    # each file fault follows the page fault that caused it: their difference is the base
    j = np.searchsorted(pf, ff) - 1
    ok = j >= 0
    vp = (ev["a0"][pf[j[ok]]] >> np.uint64(12)).astype(np.int64)
    diff = vp - ev["a1"][ff[ok]].astype(np.int64)
    if len(diff) == 0:
        return resident_pages(path), "mincore"
    vals, cnt = np.unique(diff, return_counts=True)
    base = int(vals[np.argmax(cnt)])
    pages = (ev["a0"][pf] >> np.uint64(12)).astype(np.int64) - base
    pages = pages[(pages >= 0) & (pages < n_pages)]
    return pages, "page_fault + file_fault events"


def _advise(path: Path, pages: list[int], n_pages: int):
    """Agent: posix_fadvise(WILLNEED) the predicted pages in order, while the command runs."""
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


def readahead_knob(path: Path) -> Path | None:
    """read_ahead_kb of the block device holding `path` (the disk, for a partition)."""
    dev = path.stat().st_dev
    d = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    for q in (d / "queue/read_ahead_kb", d.parent / "queue/read_ahead_kb"):
        if q.exists():
            return q
    return None


def _make_file(path: Path, size_mb: int):
    chunk = np.random.default_rng(0).integers(0, 255, 1 << 20, dtype=np.uint8).tobytes()
    with open(path, "wb") as f:
        for _ in range(size_mb):
            f.write(chunk)


def prefetch_experiment(cmd, file, size_mb: int, stride: int, enforce: bool, count: int = 8192,
                        ra_kb: int | None = 128) -> dict:
    """ra_kb: the device's readahead window for all runs (Linux's default is 128 KB; some VMs
    set 8 MB, which reads most of a small file around a few faults); None keeps it."""
    if size_mb <= 0 or stride <= 0 or count <= 0:
        raise KpError("--size-mb, --stride and --count must be > 0")
    if ra_kb is not None and ra_kb < 0:
        raise KpError("--ra-kb must be >= 0")
    from kernelpilot.scratch import scratch_base
    gen = file is None
    base = scratch_base()
    path = Path(file) if file else base / f"kpilot-prefetch-{os.getpid()}-..." / "data.dat"  # made when enforced
    plan = {"mode": "enforce" if enforce else "dry-run", "file": str(path), "generated": gen,
            "command": list(cmd) if cmd else f"built-in mmap reader: {count} records, page i*{stride} mod pages",
            "steps": ["drop caches; run (kernel readahead alone)",
                      "drop caches; run under the tracer: history = file pages in fault order",
                      "learned delta model predicts the pages from the history",
                      "drop caches; run with the fadvise WILLNEED agent",
                      "restore: drop the file's cached pages, remove generated files, readahead window"],
            "read_ahead_kb": "unchanged" if ra_kb is None else ra_kb}
    if not enforce:
        return plan
    _root()
    if not gen and not path.is_file():
        raise KpError(f"--file {path} does not exist")
    if gen:
        free = os.statvfs(base).f_bavail * os.statvfs(base).f_frsize >> 20
        if free < 2 * size_mb:
            raise KpError(f"not enough space in {base} for a {size_mb} MB file ({free} MB free)")
    from kernelpilot.scratch import scratch
    knob = old_ra = None
    with signals_restore(), scratch("prefetch", base) as d:  # a killed run's files go with the next run
        if gen:
            path = d / "data.dat"
            plan["file"] = str(path)
        try:
            if gen:
                _make_file(path, size_mb)
            knob = readahead_knob(path) if ra_kb is not None else None
            if knob is not None:
                old_ra = knob.read_text().strip()
                knob.write_text(f"{ra_kb}\n")
            argv = list(cmd) or [str(build_c(READER_C, d, "kp_reader")), str(path), str(stride), str(count)]
            n_pages = (path.stat().st_size + PAGE - 1) // PAGE
            drop_caches(path)
            kernel = run_measured(argv)
            drop_caches(path)
            hist, how = fault_history(argv, path)
            pages = predict_pages(hist, n_pages=n_pages)
            drop_caches(path)
            agent = run_measured(argv, during=_advise(path, pages, n_pages))
        finally:
            if old_ra is not None:
                knob.write_text(old_ra + "\n")
            with contextlib.suppress(OSError):
                fd = os.open(path, os.O_RDONLY)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)
    used = len(set(pages) & set(hist.tolist()))
    cut = 1 - agent["major_faults"] / kernel["major_faults"] if kernel["major_faults"] else 0.0
    return dict(plan, device_read_ahead_kb=int(old_ra) if old_ra else None,
                kernel_readahead=kernel, learned_prefetch=agent, history=how,
                history_pages=int(len(hist)), predicted_pages=len(pages),
                prediction_accuracy=round(used / max(len(pages), 1), 4),
                major_fault_cut=round(cut, 4),
                speedup=round(kernel["seconds"] / max(agent["seconds"], 1e-9), 3))


# ---- swap -------------------------------------------------------------------------------------

HELPER_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
/* hot/cold working set: touch all, then each round write the first half of the hot part and
   read the second half (reads leave no soft-dirty bit), and read 4 random cold pages (argv[4]:
   an optional seed for them, a dev run's) */
int main(int argc, char **argv) {
  long mb = atol(argv[1]), hot_pct = atol(argv[2]), rounds = atol(argv[3]);
  long n = mb << 8, hot = n * hot_pct / 100, pg = 4096;
  char *m = mmap(0, n * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return 1;
  madvise(m, n * pg, MADV_NOHUGEPAGE);
  for (long i = 0; i < n; i++) m[i * pg] = (char)i;
  unsigned long x = argc > 4 ? 88172645463325252UL ^ strtoul(argv[4], 0, 10) * 2654435761UL : 88172645463325252UL, s = 0;
  for (long r = 0; r < rounds; r++) {
    for (long i = 0; i < hot / 2; i++) m[i * pg + (r & 4095)] += 1;
    for (long i = hot / 2; i < hot; i++) s += m[i * pg + (r & 4095)];
    for (int k = 0; k < 4; k++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; s += m[(hot + x % (n - hot)) * pg]; }
  }
  printf("%lu\n", s);
  return 0;
}
"""


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
        except BaseException:  # interrupted (SIGTERM -> KeyboardInterrupt) half-way: undo, go on
            self.close()
            raise

    def close(self):
        if self.on or self.dev + " " in Path("/proc/swaps").read_text():  # on, even if swapon was interrupted
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
        try:
            (self.path / "memory.limit_in_bytes").write_text(f"{limit_mb << 20}\n")
            with contextlib.suppress(OSError):
                (self.path / "memory.swappiness").write_text("100\n")
        except BaseException:  # a failed or interrupted setup leaves no group behind
            self.close()
            raise

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


def advise(pidfd: int, ranges, advice: int) -> int:
    """process_madvise(advice) over [(addr, length)]; returns bytes advised."""
    done = 0
    for i in range(0, len(ranges), 512):
        part = ranges[i:i + 512]
        iov = (_Iovec * len(part))(*[_Iovec(a, n) for a, n in part])
        r = libc.syscall(SYS_process_madvise, pidfd, iov, len(part), advice, 0)
        if r > 0:
            done += r
    return done


def pageout(pidfd: int, ranges) -> int:
    """process_madvise(MADV_PAGEOUT) over [(addr, length)]; returns bytes advised."""
    return advise(pidfd, ranges, MADV_PAGEOUT)


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


def _page_states(pid: int):
    """Per anonymous region of pid: (start, key, present, swapped, soft-dirty) from pagemap; the
    key (region size, its order among same-size regions) names the region across runs."""
    out, seen = [], {}
    with open(f"/proc/{pid}/pagemap", "rb") as pm:
        for a, b in anon_regions(pid):
            pm.seek(a // PAGE * 8)
            ent = np.frombuffer(pm.read((b - a) // PAGE * 8), np.uint64)
            key = (b - a, seen.setdefault(b - a, 0))
            seen[b - a] += 1
            out.append((a, key, (ent >> np.uint64(63)) & np.uint64(1) == 1,
                        (ent >> np.uint64(62)) & np.uint64(1) == 1, (ent >> np.uint64(55)) & np.uint64(1) == 1))
    return out


# per 10 ms window: writes fade within ~0.1 s (they are seen again at once); a refault's weight
# falls with the square of the windows since the page went out and fades over ~10 s
DECAY, REFAULT_DECAY, REFAULT_WEIGHT = 0.9, 0.999, 8.0


class ColdAgent:
    """Predicts cold pages of a process and keeps its memory cgroup below the limit by paging
    the coldest out (process_madvise MADV_PAGEOUT), so the kernel's reclaim never has to pick.

    Access signal per page and window (`interval`): written (soft-dirty, cleared each window via
    clear_refs 4) or faulted back in (swapped out before, present now: a read or a write since;
    soft-dirty alone misses reads), weighted by how soon after going out it came back (the
    refault distance). Score = decayed accesses. With `prior` (per-page access
    rates from an earlier run, keyed by region), a page's coldness starts from its history, so
    pages that were hot before are kept from the first window on. Without `enforce` it only
    observes: `rates()` gives each page's access rate for the next run's prior."""

    def __init__(self, cg: "MemCgroup | None", interval: float = 0.01, margin_mb: int = 12,
                 prior: dict | None = None, enforce: bool = True):
        self.cg, self.interval, self.prior, self.enforce = cg, interval, prior or {}, enforce
        self.limit = (int((cg.path / "memory.limit_in_bytes").read_text()) - (margin_mb << 20)) if cg else 0
        self.score: dict = {}
        self.refault: dict = {}
        self.was_out: dict = {}
        self.windows = 0
        self.paged = 0

    def _observe(self, pid):
        cand_addr, cand_cold = [], []
        for a, key, present, swapped, dirty in _page_states(pid):
            n = len(present)
            sc = self.score.setdefault(key, np.zeros(n))
            rf = self.refault.setdefault(key, np.zeros(n))
            out = self.was_out.setdefault(key, np.full(n, -1, np.int64))  # window it was seen out
            if len(sc) != n:
                continue
            back = present & (out >= 0)  # faulted back in: read or written since it went out
            dist = np.maximum(self.windows - out, 1)
            sc *= DECAY
            sc += dirty
            rf *= REFAULT_DECAY
            rf[back] += REFAULT_WEIGHT / dist[back] ** 2  # soon after going out: hot; late: cold
            out[back] = -1
            out[swapped & (out < 0)] = self.windows
            sc_all = sc + rf
            if self.enforce:
                pr = self.prior.get(key)
                cold = sc_all + (pr if pr is not None and len(pr) == n else 0.0)
                idx = np.flatnonzero(present)
                cand_addr.append(a + idx * PAGE)
                cand_cold.append(cold[idx])
        self.windows += 1
        return cand_addr, cand_cold

    def __call__(self, pid, stop):
        pidfd = libc.syscall(SYS_pidfd_open, pid, 0)
        if pidfd < 0:
            return
        try:
            while not stop.wait(self.interval):
                try:
                    addrs, colds = self._observe(pid)
                    Path(f"/proc/{pid}/clear_refs").write_text("4\n")
                    if not self.enforce or not addrs:
                        continue
                    over = int((self.cg.path / "memory.usage_in_bytes").read_text()) - self.limit
                    if over > 0:
                        addr, cold = np.concatenate(addrs), np.concatenate(colds)
                        pick = addr[np.argsort(cold, kind="stable")[: over // PAGE + 1]]
                        self.paged += len(pick)
                        pageout(pidfd, [(int(x), PAGE) for x in pick])
                except (OSError, ValueError):
                    return
        finally:
            os.close(pidfd)

    def rates(self) -> dict:
        """Per region: each page's decayed access score at the end of the run."""
        return {k: v + self.refault[k] for k, v in self.score.items()}


def swap_experiment(cmd, limit_mb: int, zram_mb: int, enforce: bool, rounds: int = 20000) -> dict:
    if limit_mb <= 0 or zram_mb <= 0:
        raise KpError("--limit-mb and --zram-mb must be > 0")
    wss = limit_mb * 3 // 2
    plan = {"mode": "enforce" if enforce else "dry-run", "limit_mb": limit_mb, "zram_mb": zram_mb,
            "command": list(cmd) or f"built-in hot/cold program ({wss} MB, 20% hot)",
            "steps": ["zram swap device (hot_add, mkswap, swapon)", f"cgroup-v1 memory limit {limit_mb} MB",
                      "run with kernel reclaim", "run again, watching page accesses (history)",
                      "run with the cold predictor (history + live writes/refaults) + MADV_PAGEOUT",
                      "restore: swapoff, zram reset/hot_remove, remove cgroup, helper files"]}
    if not enforce:
        return plan
    _root()
    import tempfile
    zram = cg = None
    res = {}
    with signals_restore(), tempfile.TemporaryDirectory(prefix="kpilot-swap-") as d:
        try:
            argv = list(cmd) or [str(build_c(HELPER_C, Path(d), "kp_hotcold")), str(wss), "20", str(rounds)]
            zram = Zram(zram_mb)
            cg = MemCgroup(f"kpilot-swap-{os.getpid()}", limit_mb)
            keys = ("pswpin", "pswpout", "workingset_refault_anon")
            watch = ColdAgent(cg, enforce=False)
            runs = [("kernel_reclaim", None), ("history", watch), ("learned_pageout", None)]
            for name, during in runs:
                if name == "learned_pageout":  # history: mean access rate per page in run 2
                    during = ColdAgent(cg, prior=watch.rates())
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
