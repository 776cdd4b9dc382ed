"""Per-task scheduling features from sched_switch / sched_wakeup events, and system load from /proc.

A CPU burst is the CPU time a task uses from a wakeup until it next sleeps voluntarily
(involuntary preemptions do not end it). `bursts()` returns one row per burst; `task_stats()` sums
per task the quantities /proc also exposes, so one classifier works on traces and on live /proc.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numba
import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.traces.schema import EVENT_DTYPE, PROC_EXIT, PROC_FORK, SCHED_SWITCH, SCHED_WAKEUP

CLASS_FEATURES = ["util_q10", "vcsw_per_s", "ivcsw_per_s", "log2q4_burst_us", "log2q4_wait_us"]


@numba.njit(cache=True)
def _row(r, p, bstart, pstart, burst, end, sleep, wait, npre, unfinished):
    r[0], r[1], r[2], r[3] = p, bstart if bstart >= 0 else pstart, burst, end
    r[4], r[5], r[6], r[7] = sleep, wait, npre, 1 if (unfinished or bstart < 0) else 0


@numba.njit(cache=True)
def _scan(ts, kind, prev, nxt, state, waker, cpu, ntask):
    n = len(ts)
    occ = np.full(max(cpu.max() + 1, 1) if n else 1, -1, np.int64)  # task on each CPU
    gone = np.full(ntask, -1, np.int64)      # exit seen at
    on = np.full(ntask, -1, np.int64)        # switched in at
    acc = np.zeros(ntask, np.int64)          # CPU time in the current burst
    bstart = np.full(ntask, -1, np.int64)    # wakeup that started the burst (-1 unseen)
    sleep_at = np.full(ntask, -1, np.int64)  # voluntary switch-out time
    sleep_len = np.full(ntask, -1, np.int64)
    ready = np.full(ntask, -1, np.int64)     # runnable since (wakeup or preemption)
    wait1 = np.full(ntask, -1, np.int64)     # first wait of the burst (wakeup latency)
    npre = np.zeros(ntask, np.int64)
    pstart = np.full(ntask, -1, np.int64)   # first seen on CPU, for bursts whose wakeup is unseen
    # per-task totals: run, wait, slices, vol, invol, wakeups, wakes given
    tot = np.zeros((ntask, 7), np.int64)
    out = np.zeros((n + ntask, 8), np.int64)  # task, start, burst, end, sleep_before, wait, preempts, partial
    m = 0
    for i in range(n):
        t = ts[i]
        if kind[i] == 3:  # exit: the task's last switch-out is not traced (it left the filter)
            if prev[i] >= 0:
                gone[prev[i]] = t
            continue
        if kind[i] == 1:  # the CPU's last known occupant left it unseen (exited task): close it
            q = occ[cpu[i]]
            if q >= 0 and q != prev[i] and on[q] >= 0:
                end = max(on[q], gone[q]) if gone[q] >= 0 else t
                acc[q] += end - on[q]
                tot[q, 0] += end - on[q]
                on[q] = -1
                tot[q, 3] += 1
                if bstart[q] >= 0 or pstart[q] >= 0:
                    _row(out[m], q, bstart[q], pstart[q], acc[q], end, sleep_len[q], wait1[q], npre[q], 0)
                    m += 1
                bstart[q], pstart[q], acc[q], ready[q] = -1, -1, 0, -1
                sleep_at[q] = end
            occ[cpu[i]] = nxt[i]
        if kind[i] == 2:
            p = prev[i]
            if p < 0:
                continue
            tot[p, 5] += 1
            if waker[i] >= 0:
                tot[waker[i], 6] += 1
            if on[p] >= 0:
                continue  # already running (wakeup of a running task)
            if sleep_at[p] >= 0:
                sleep_len[p] = t - sleep_at[p]
            sleep_at[p] = -1
            bstart[p] = t
            ready[p] = t
            wait1[p] = -1
            acc[p] = 0
            npre[p] = 0
            continue
        p = prev[i]
        if p >= 0 and on[p] >= 0:
            run = t - on[p]
            acc[p] += run
            tot[p, 0] += run
            on[p] = -1
            if state[i] == 0:  # preempted while runnable
                tot[p, 4] += 1
                npre[p] += 1
                ready[p] = t
            else:
                tot[p, 3] += 1
                if bstart[p] >= 0 or pstart[p] >= 0:
                    _row(out[m], p, bstart[p], pstart[p], acc[p], t, sleep_len[p], wait1[p], npre[p], 0)
                    m += 1
                bstart[p] = -1
                pstart[p] = -1
                acc[p] = 0
                sleep_at[p] = t
                ready[p] = -1
        q = nxt[i]
        if q >= 0:
            on[q] = t
            if bstart[q] < 0 and pstart[q] < 0:
                pstart[q] = t
            tot[q, 2] += 1
            if ready[q] >= 0:
                w = t - ready[q]
                tot[q, 1] += w
                if wait1[q] < 0:
                    wait1[q] = w
                ready[q] = -1
    last = ts[n - 1] if n else 0
    for p in range(ntask):  # bursts still going when the trace ends
        if on[p] >= 0:
            acc[p] += last - on[p]
            tot[p, 0] += last - on[p]
        if acc[p] > 0 and (bstart[p] >= 0 or pstart[p] >= 0):
            _row(out[m], p, bstart[p], pstart[p], acc[p], last, sleep_len[p], wait1[p], npre[p], 1)
            m += 1
    return out[:m], tot


@dataclass
class SchedFeatures:
    pids: np.ndarray      # task index -> pid
    comm: list[str]
    bursts: np.ndarray    # (m, 8) int64: task, start, burst, end, sleep_before, wait, preempts, partial
    totals: np.ndarray    # (ntask, 7): run, wait, slices, vol, invol, wakeups, wakes_given
    span_ns: int
    traced: np.ndarray | None = None  # task followed by the tracer (not just seen beside one)

    def complete(self) -> np.ndarray:
        """Bursts whose wakeup and end were both seen, in time order per task."""
        b = self.bursts[self.bursts[:, 7] == 0]
        return b[np.lexsort((b[:, 3], b[:, 0]))]



def _check(events):
    if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE:
        raise KpError("sched features need events in the kernelpilot event schema (EVENT_DTYPE)")


def extract(events: np.ndarray) -> SchedFeatures:
    """Scan sched_switch/sched_wakeup events (any order) into bursts and per-task totals."""
    _check(events)
    fork = events[events["kind"] == PROC_FORK]
    ev = events[np.isin(events["kind"], [SCHED_SWITCH, SCHED_WAKEUP, PROC_EXIT])]
    if not (ev["kind"] != PROC_EXIT).any():
        raise KpError("trace has no sched_switch/sched_wakeup events (record with the 'sched' group)")
    ev = ev[np.argsort(ev["ts"], kind="stable")]
    sw = ev["kind"] == SCHED_SWITCH
    wk = ev["kind"] == SCHED_WAKEUP
    prev_pid = ev["pid"].astype(np.int64)
    next_pid = np.where(sw, ev["a0"].astype(np.int64), -1)
    waker_pid = np.where(wk, ev["a0"].astype(np.int64), -1)
    allp = np.concatenate([prev_pid[~(ev["kind"] == PROC_EXIT)], next_pid[sw], waker_pid[wk]])
    pids = np.unique(allp[allp > 0])
    def idx(p):
        i = np.searchsorted(pids, p).clip(0, max(len(pids) - 1, 0))
        return np.where((p > 0) & (pids[i] == p), i, -1) if len(pids) else np.full(len(p), -1)
    # involuntary: preempted (a3, eBPF source) or switched out while still runnable (state 0)
    state = np.where(sw & (ev["a3"] != 0), 0, ev["a1"].astype(np.int64))
    b, tot = _scan(ev["ts"].astype(np.int64), np.where(sw, 1, np.where(wk, 2, 3)).astype(np.int64),
                   idx(prev_pid), idx(next_pid), state, idx(waker_pid), ev["cpu"].astype(np.int64), len(pids))
    comm = {}
    for p, c in zip(ev["pid"], ev["comm"]):
        if c:
            comm[int(p)] = c.decode(errors="replace")
    # the tracer follows a command's tasks: they get wakeups, forks and exits; other tasks show
    # up only in switches beside them, with bursts that are not fully seen
    traced = np.isin(pids, np.concatenate([ev["pid"][~sw], fork["a0"]]).astype(np.int64))
    return SchedFeatures(pids, [comm.get(int(p), "") for p in pids], b, tot,
                         int(ev["ts"][-1] - ev["ts"][0]) or 1, traced)


def comm_class(name: str) -> str:
    """A task name without its numbers: 'kworker/1:0H' -> 'kworker/:H', 'cc1' -> 'cc'."""
    return re.sub(r"\d+", "", name)


def log2q4(v) -> np.ndarray:
    """16 * (floor(log2 v) + 1) + the next 4 bits of v below its top bit; 0 for v = 0. Integer
    log2 in 1/16 steps, computed the same way in the eBPF classifier (kp_sched_class.bpf.c)."""
    v = np.asarray(v, dtype=np.int64).clip(0)
    msb = np.zeros(v.shape, np.int64)
    t = v.copy()
    for b in (32, 16, 8, 4, 2, 1):
        hi = (t >> b) > 0
        t = np.where(hi, t >> b, t)
        msb += np.where(hi, b, 0)
    frac = np.where(msb >= 4, v >> (msb - 4).clip(0), v << (4 - msb).clip(0)) & 15
    return np.where(v > 0, 16 * (msb + 1) + frac, 0)


def log2q4_inverse(q) -> np.ndarray:
    """Approximate value of a log2q4 code (for heuristics and messages)."""
    q = np.asarray(q, float)
    return np.where(q > 0, 2.0 ** (q / 16.0 - 1.0), 0.0)


def class_features(run_ns, wait_ns, slices, vol, invol, span_ns) -> np.ndarray:
    """The classifier's integer inputs from counters that traces, /proc/<pid>/{schedstat,status}
    and the eBPF classifier all have: CPU share in 1/1024, voluntary and involuntary switches per
    second, and log2q4 of the mean burst and mean wait in microseconds. Integer arithmetic,
    bit-exact with the kernel program."""
    run, wait, sl, vol, inv = (np.asarray(a, dtype=np.int64).clip(0) for a in (run_ns, wait_ns, slices, vol, invol))
    span = np.maximum(np.asarray(span_ns, dtype=np.int64), 1)
    return np.column_stack([run * 1024 // span, vol * 1_000_000_000 // span, inv * 1_000_000_000 // span,
                            log2q4(run // np.maximum(vol, 1) // 1000),
                            log2q4(wait // np.maximum(sl, 1) // 1000)]).clip(0, 2**31 - 1)


def task_class_features(f: SchedFeatures) -> np.ndarray:
    t = f.totals
    return class_features(t[:, 0], t[:, 1], t[:, 2], t[:, 3], t[:, 4], f.span_ns)


def burst_sequences(f: SchedFeatures) -> list[np.ndarray]:
    """Per task (index order) its complete bursts in ns, in time order."""
    b = f.complete()
    return [b[b[:, 0] == i, 2] for i in range(len(f.pids))]


def workload(f: SchedFeatures, min_burst_ns: int = 1000):
    """The trace as a simulator workload: every task's bursts (partial ones included, as observed
    lower bounds) and the sleeps that followed them. Returns (Workload, rows) where rows[i] are
    the burst rows of task i in order (for attaching predictions)."""
    from kernelpilot.sched.synth import Workload
    b = f.bursts[np.lexsort((f.bursts[:, 1], f.bursts[:, 0]))]
    t0 = int(b[:, 1].min()) if len(b) else 0
    keep, bursts, sleeps, starts, rows = [], [], [], [], []
    for i in range(len(f.pids)):
        if f.traced is not None and not f.traced[i]:
            continue
        r = b[(b[:, 0] == i) & (b[:, 2] >= min_burst_ns)]
        if not len(r):
            continue
        nxt = np.append(r[1:, 4], -1)
        gap = np.append(r[1:, 1] - r[:-1, 3], 0)
        sl = np.where(nxt >= 0, nxt, gap).clip(1000)
        keep.append(i)
        bursts.append(r[:, 2].copy())
        sleeps.append(sl)
        starts.append(int(r[0, 1]) - t0)
        rows.append(r)
    if not keep:
        raise KpError("trace has no CPU bursts to replay")
    keep = np.array(keep)
    wl = Workload(pids=f.pids[keep].astype(np.int64), start=np.array(starts, np.int64), bursts=bursts,
                  sleeps=sleeps, weight=np.full(len(keep), 1024, np.int64),
                  label=np.full(len(keep), -1), comm=[f.comm[i] for i in keep])
    return wl, rows


def windowed_class_features(f: SchedFeatures, events: np.ndarray, window_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """(X, task index) with one row per task per window, for training the classifier on many samples."""
    ev = events[np.isin(events["kind"], [SCHED_SWITCH, SCHED_WAKEUP])]
    t0, t1 = int(ev["ts"].min()), int(ev["ts"].max())
    xs, ids = [], []
    for lo in range(t0, t1 - window_ns + 1, window_ns):
        w = ev[(ev["ts"] >= lo) & (ev["ts"] < lo + window_ns)]
        if len(w) < 2:
            continue
        g = extract(w)
        keep = g.totals[:, 2] > 0
        xs.append(task_class_features(g)[keep])
        ids.append(np.searchsorted(f.pids, g.pids[keep]))
    if not xs:
        raise KpError(f"trace shorter than one {window_ns / 1e9:g} s window")
    return np.vstack(xs), np.concatenate(ids)


# --- system load from /proc -----------------------------------------------------------------

def read_cpu_times() -> np.ndarray:
    """Aggregate /proc/stat cpu line: (busy, total) jiffies."""
    with open("/proc/stat") as f:
        v = np.array(f.readline().split()[1:], dtype=np.int64)
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    total = v[:8].sum() if len(v) >= 8 else v.sum()
    return np.array([total - idle, total])


def read_psi_cpu() -> float:
    """/proc/pressure/cpu 'some' total stall time in microseconds (-1 without PSI)."""
    try:
        with open("/proc/pressure/cpu") as f:
            return float(f.readline().rsplit("total=", 1)[1])
    except (OSError, IndexError, ValueError):
        return -1.0


class LoadSampler:
    """Samples CPU utilisation (0..1) and PSI cpu-some stall fraction between calls."""

    def __init__(self):
        self.last = (read_cpu_times(), read_psi_cpu(), _now())

    def sample(self) -> tuple[float, float]:
        c, p, t = read_cpu_times(), read_psi_cpu(), _now()
        c0, p0, t0 = self.last
        self.last = (c, p, t)
        d = c - c0
        util = float(d[0] / d[1]) if d[1] > 0 else 0.0
        psi = float((p - p0) / max((t - t0) / 1e3, 1e-9)) if p >= 0 and p0 >= 0 else 0.0
        return util, min(max(psi, 0.0), 1.0)


def _now() -> int:
    import time
    return time.monotonic_ns()
