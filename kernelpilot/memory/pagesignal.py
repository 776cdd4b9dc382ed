"""Per-page access signals this kernel offers (no page_idle here; DAMON belongs to the host).

Per interval, for the private anonymous memory of a process:
  soft-dirty   pagemap bit 55 after clear_refs 4: the page was written (exact, writes only)
  referenced   /proc/kpageflags PG_referenced (bit 2) after clear_refs 1, which clears it
  active       /proc/kpageflags PG_active (bit 6): the kernel's own LRU view
  idle         /proc/kpageflags PG_idle (bit 25), where the kernel reports it
  refault      swapped in the last scan, present now: read or written since it went out
  smaps        Referenced per mapping (/proc/PID/smaps) after clear_refs 1: young PTEs, counted
               per VMA (no page identity)
`measure_accuracy` runs a child that touches pages it is told to (reads and writes) and scores
each signal against what it touched: precision and recall of "accessed in the interval".
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kernelpilot.errors import CapabilityError, KpError

PAGE = os.sysconf("SC_PAGE_SIZE")
KPF_REFERENCED, KPF_ACTIVE, KPF_IDLE = 2, 6, 25
PM_SOFT_DIRTY, PM_EXCLUSIVE, PM_SWAPPED, PM_PRESENT = 55, 56, 62, 63
PFN_MASK = np.uint64((1 << 55) - 1)
CLEAR_REFERENCED, CLEAR_SOFT_DIRTY = "1", "4"


def _bit(a: np.ndarray, b: int) -> np.ndarray:
    return (a >> np.uint64(b)) & np.uint64(1) == 1


def anon_regions(pid: int) -> list[tuple[int, int]]:
    """Writable private anonymous mappings of pid: [(start, end)]; [] when it is gone."""
    out = []
    try:
        text = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[1].startswith("rw") and parts[1][3] == "p":
            a, b = (int(x, 16) for x in parts[0].split("-"))
            out.append((a, b))
    return out


def soft_dirty_supported() -> bool:
    """Whether pagemap reports soft-dirty bits (CONFIG_MEM_SOFT_DIRTY): a page just written is
    soft-dirty when it is. Not on this host's kernel."""
    import mmap
    m = mmap.mmap(-1, PAGE)
    try:
        m[0] = 1
        addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
        with open("/proc/self/pagemap", "rb", buffering=0) as pm:
            pm.seek(addr // PAGE * 8)
            ent = np.frombuffer(pm.read(8), np.uint64)
        return bool(_bit(ent, PM_SOFT_DIRTY)[0])
    finally:
        import gc
        gc.collect()
        with contextlib.suppress(BufferError):
            m.close()


def clear_refs(pid: int, what: str):
    Path(f"/proc/{pid}/clear_refs").write_text(what + "\n")


def kpageflags(pfns: np.ndarray, f=None) -> np.ndarray:
    """Flags of each PFN, read in runs (nearby PFNs share one pread)."""
    out = np.zeros(len(pfns), np.uint64)
    if len(pfns) == 0:
        return out
    order = np.argsort(pfns, kind="stable")
    s = pfns[order].astype(np.int64)
    breaks = np.flatnonzero(np.diff(s) > 64) + 1
    own = f is None
    fd = os.open("/proc/kpageflags", os.O_RDONLY) if own else f
    try:
        for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(s)]):
            first, last = int(s[lo]), int(s[hi - 1])
            buf = np.frombuffer(os.pread(fd, (last - first + 1) * 8, first * 8), np.uint64)
            out[order[lo:hi]] = buf[s[lo:hi] - first]
    finally:
        if own:
            os.close(fd)
    return out


@dataclass
class RegionScan:
    start: int
    present: np.ndarray
    swapped: np.ndarray
    soft_dirty: np.ndarray
    referenced: np.ndarray
    active: np.ndarray
    idle: np.ndarray


class PageSignal:
    """Scan a process's anonymous pages each interval: `scan()` reads pagemap (+ kpageflags for
    present pages), then clears the bits for the next interval. `bytes_scanned`/`seconds` add up."""

    def __init__(self, pid: int, flags: bool = True):
        if not os.access("/proc/kpageflags", os.R_OK) and flags:
            raise CapabilityError("/proc/kpageflags is not readable (needs root)")
        self.pid, self.flags = pid, flags
        self.bytes_scanned, self.seconds = 0, 0.0
        self._kpf = os.open("/proc/kpageflags", os.O_RDONLY) if flags else None

    def close(self):
        if self._kpf is not None:
            os.close(self._kpf)
            self._kpf = None

    def reset(self):
        clear_refs(self.pid, CLEAR_REFERENCED)
        clear_refs(self.pid, CLEAR_SOFT_DIRTY)

    def scan(self, reset: bool = True) -> list[RegionScan]:
        t0 = time.perf_counter()
        out = []
        with open(f"/proc/{self.pid}/pagemap", "rb", buffering=0) as pm:
            for a, b in anon_regions(self.pid):
                pm.seek(a // PAGE * 8)
                ent = np.frombuffer(pm.read((b - a) // PAGE * 8), np.uint64)
                present = _bit(ent, PM_PRESENT)
                flags = np.zeros(len(ent), np.uint64)
                if self.flags and present.any():
                    flags[present] = kpageflags(ent[present] & PFN_MASK, self._kpf)
                out.append(RegionScan(a, present, _bit(ent, PM_SWAPPED), _bit(ent, PM_SOFT_DIRTY) & present,
                                      _bit(flags, KPF_REFERENCED), _bit(flags, KPF_ACTIVE), _bit(flags, KPF_IDLE)))
                self.bytes_scanned += b - a
        if reset:
            self.reset()
        self.seconds += time.perf_counter() - t0
        return out

    def ms_per_gb(self) -> float:
        return round(self.seconds * 1e3 / max(self.bytes_scanned / 2**30, 1e-12), 2)


def smaps_referenced(pid: int) -> dict[int, int]:
    """Referenced bytes per mapping start (young PTEs since the last clear_refs 1)."""
    out, cur = {}, None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(None, 1)[0]
        if "-" in head and not head.endswith(":"):
            cur = int(head.split("-")[0], 16)
        elif head == "Referenced:" and cur is not None:
            out[cur] = int(line.split()[1]) * 1024
    return out


# ---- accuracy against a program's real accesses ----------------------------------------------

TOUCHER_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/mman.h>
/* maps N pages, writes them all, says 'r'; then per command (op, count, count page indices as
   int32 on stdin) reads (op 0) or writes (op 1) those pages and answers 'k'; op 2 exits */
static int rd(void *p, size_t n) { size_t g = 0; while (g < n) { ssize_t r = read(0, (char *)p + g, n - g); if (r <= 0) return -1; g += r; } return 0; }
int main(int argc, char **argv) {
  long n = atol(argv[1]);
  volatile char *m = mmap(0, n * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return 1;
  madvise((void *)m, n * 4096, MADV_NOHUGEPAGE);
  for (long i = 0; i < n; i++) m[i * 4096] = 1;
  int *idx = malloc(n * sizeof(int));
  unsigned long s = 0;
  write(1, "r", 1);
  for (;;) {
    int hd[2];
    if (rd(hd, 8) || hd[0] == 2 || hd[1] > n || rd(idx, hd[1] * 4)) break;
    for (int i = 0; i < hd[1]; i++) {
      if (hd[0]) m[(long)idx[i] * 4096 + 64] += 1; else s += m[(long)idx[i] * 4096 + 64];
    }
    write(1, "k", 1);
  }
  return (int)(s & 1) * 0;
}
"""


def _score(pred: np.ndarray, truth: np.ndarray) -> dict:
    tp = int((pred & truth).sum())
    return {"precision": round(tp / max(int(pred.sum()), 1), 4), "recall": round(tp / max(int(truth.sum()), 1), 4)}


def measure_accuracy(n_pages: int = 4096, intervals: int = 8, frac: float = 0.1, write_frac: float = 0.5,
                     seed: int = 0, pageout_frac: float = 0.3) -> dict:
    """A child touches a known random set of its pages per interval (half read, half written);
    each signal's precision/recall of 'accessed in this interval' against that set. Before each
    interval a random `pageout_frac` of the pages is pushed out (MADV_PAGEOUT) so the refault
    signal can be scored: a zram swap device is made for the run (journaled) when no swap is on."""
    from kernelpilot.agent.journal import Journal
    from kernelpilot.memory.live import SYS_pidfd_open, build_c, libc, pageout
    from kernelpilot.memory.swaplab import must_change, zram_swap
    if os.geteuid() != 0:
        raise CapabilityError("the page signal needs root (/proc/kpageflags, clear_refs)")
    rng = np.random.default_rng(seed)
    swap_on = len(Path("/proc/swaps").read_text().splitlines()) > 1
    with tempfile.TemporaryDirectory(prefix="kpilot-signal-") as d, \
            Journal("memory-signal", enforce=not swap_on) as j:
        if not swap_on:
            zram_swap(j, max(n_pages * PAGE * 2 >> 20, 1), must_change(j))
        exe = build_c(TOUCHER_C, Path(d), "kp_toucher")
        p = subprocess.Popen([str(exe), str(n_pages)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        sig = None
        try:
            if p.stdout.read(1) != b"r":
                raise KpError("page toucher did not start")
            region = None
            for a, b in anon_regions(p.pid):
                if b - a == n_pages * PAGE:
                    region = a
            if region is None:
                raise KpError("page toucher's mapping not found")
            pidfd = libc.syscall(SYS_pidfd_open, p.pid, 0)
            sig = PageSignal(p.pid)
            names = ("soft_dirty", "referenced", "active", "idle", "refault")
            pred = {k: [] for k in names}
            truth_all, truth_w, smaps_err, was_out = [], [], [], []

            def mine(scan):
                return next(r for r in scan if r.start == region)
            sig.scan()
            for _ in range(intervals):
                if pageout_frac > 0:
                    out = rng.random(n_pages) < pageout_frac
                    pageout(pidfd, [(region + int(i) * PAGE, PAGE) for i in np.flatnonzero(out)])
                before = mine(sig.scan())  # swapped state now; clears the bits
                touched = rng.random(n_pages) < frac
                writes = touched & (rng.random(n_pages) < write_frac)
                for op, sel in ((0, touched & ~writes), (1, writes)):
                    ix = np.flatnonzero(sel).astype(np.int32)
                    p.stdin.write(struct.pack("ii", op, len(ix)) + ix.tobytes())
                    p.stdin.flush()
                    if p.stdout.read(1) != b"k":
                        raise KpError("page toucher stopped")
                ref = smaps_referenced(p.pid).get(region, 0) // PAGE
                smaps_err.append(abs(ref - int(touched.sum())) / max(int(touched.sum()), 1))
                now = mine(sig.scan())
                pred["soft_dirty"].append(now.soft_dirty)
                pred["referenced"].append(now.referenced)
                pred["active"].append(now.active)
                pred["idle"].append(~now.idle & now.present)
                pred["refault"].append(before.swapped & now.present)
                truth_all.append(touched)
                truth_w.append(writes)
                was_out.append(before.swapped)
            t, w, o = np.concatenate(truth_all), np.concatenate(truth_w), np.concatenate(was_out)
            res = {k: _score(np.concatenate(v), t) for k, v in pred.items()}
            res["soft_dirty"]["recall_of_writes"] = _score(np.concatenate(pred["soft_dirty"]), w)["recall"]
            # the refault signal sees only pages that were out: scored there too
            res["refault"]["recall_of_pages_out"] = _score(np.concatenate(pred["refault"]), t & o)["recall"]
            res["refault"]["pages_out_frac"] = round(float(o.mean()), 4)
            if not soft_dirty_supported():
                res["soft_dirty"] = "unsupported: this kernel has no CONFIG_MEM_SOFT_DIRTY"
            cost = {"pagemap_kpageflags": sig.ms_per_gb()}
            bare = PageSignal(p.pid, flags=False)
            for _ in range(intervals):
                bare.scan(reset=False)
            cost["pagemap_only"] = bare.ms_per_gb()
            t0 = time.perf_counter()
            for _ in range(intervals):
                clear_refs(p.pid, CLEAR_REFERENCED)
                smaps_referenced(p.pid)
            cost["clear_refs_smaps"] = round((time.perf_counter() - t0) * 1e3 / (intervals * n_pages * PAGE / 2**30), 2)
            os.close(pidfd)
            p.stdin.write(struct.pack("ii", 2, 0))
            p.stdin.flush()
            p.wait(10)
            return {"pages": n_pages, "intervals": intervals, "touched_frac": frac, "write_frac": write_frac,
                    "signals": res, "smaps_referenced_count_error": round(float(np.mean(smaps_err)), 4),
                    "scan_ms_per_gb": cost}
        finally:
            if sig:
                sig.close()
            if p.poll() is None:
                p.kill()
                p.wait()
