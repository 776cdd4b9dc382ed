"""Discrete-event CPU scheduling simulator (heapq) replaying task burst/sleep behaviour.

Each task alternates CPU bursts and sleeps (closed loop: a sleep starts when the simulated burst
ends). Policies: fcfs, rr, cfs (CFS/EEVDF-like weighted fair with wakeup preemption), sjf and srpt
with oracle bursts, sjf-pred and srpt-pred with predicted bursts. One global run queue, `ncpu` CPUs.
"""
from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.sched.synth import LATENCY, MS, S, US, Workload, generate

INF = 1 << 62
POLICIES = ("fcfs", "rr", "cfs", "sjf", "srpt", "sjf-pred", "srpt-pred")


class _Task:
    __slots__ = ("k", "rem", "att", "wake", "first", "vr", "key")

    def __init__(self):
        self.k, self.rem, self.att, self.wake, self.first, self.vr, self.key = 0, 0, 0, 0, -1, 0.0, 0.0


class _Fifo:
    """FCFS (no slice) and RR (fixed quantum); never preempt on wakeup."""

    def __init__(self, sim, quantum=INF):
        self.q, self.quantum = deque(), quantum

    def push(self, t, now, woken):
        self.q.append(t)

    def pop(self):
        return self.q.popleft() if self.q else -1

    def __len__(self):
        return len(self.q)

    def slice(self, t):
        return self.quantum

    def charge(self, t, ran):
        pass

    def preempts(self, w, cur):
        return False

    def badness(self, t):
        return 0


class _Fair:
    """CFS/EEVDF-like: smallest vruntime first, weighted, sleeper placement, wakeup preemption."""

    def __init__(self, sim, latency=6 * MS, min_gran=750 * US, wakeup_gran=1 * MS):
        self.sim, self.h, self.seq = sim, [], 0
        self.latency, self.min_gran, self.wakeup_gran = latency, min_gran, wakeup_gran
        self.min_vr = 0.0

    def push(self, t, now, woken):
        ts = self.sim.tasks[t]
        if woken:
            ts.vr = max(ts.vr, self.min_vr - self.latency / 2)
        self.seq += 1
        heapq.heappush(self.h, (ts.vr, self.seq, t))

    def pop(self):
        if not self.h:
            return -1
        vr, _, t = heapq.heappop(self.h)
        self.min_vr = max(self.min_vr, vr)
        return t

    def __len__(self):
        return len(self.h)

    def slice(self, t):
        nr = len(self.h) + self.sim.nrunning()
        return max(self.min_gran, self.latency // max(nr, 1))

    def charge(self, t, ran):
        self.sim.tasks[t].vr += ran * 1024.0 / self.sim.weight[t]

    def preempts(self, w, cur):
        return self.sim.tasks[cur].vr - self.sim.tasks[w].vr > self.wakeup_gran

    def badness(self, t):
        return self.sim.tasks[t].vr


class _Shortest:
    """SJF (non-preemptive) and SRPT (preemptive) on oracle or predicted burst lengths."""

    def __init__(self, sim, preemptive, predicted):
        self.sim, self.h, self.seq = sim, [], 0
        self.preemptive, self.predicted = preemptive, predicted

    def key(self, t):
        ts = self.sim.tasks[t]
        if not self.predicted:
            return ts.rem if self.preemptive else ts.rem + ts.att
        est = float(self.sim.pred[t][ts.k])
        if not self.preemptive:
            return est
        left = est - ts.att
        return left if left > 0 else float(ts.att)  # ran past its prediction: guess as long again

    def push(self, t, now, woken):
        self.seq += 1
        heapq.heappush(self.h, (self.key(t), self.seq, t))

    def pop(self):
        return heapq.heappop(self.h)[2] if self.h else -1

    def __len__(self):
        return len(self.h)

    def slice(self, t):
        return INF

    def charge(self, t, ran):
        pass

    def preempts(self, w, cur):
        return self.preemptive and self.key(w) < self.key(cur)

    def badness(self, t):
        return self.key(t)


@dataclass
class SimResult:
    policy: str
    task: np.ndarray      # per completed burst
    wake: np.ndarray
    first: np.ndarray
    finish: np.ndarray
    burst: np.ndarray
    switches: int
    makespan: int
    events: np.ndarray | None = None

    def metrics(self, label: np.ndarray | None = None) -> dict:
        if len(self.task) == 0:
            return {"bursts": 0}
        tat = (self.finish - self.wake) / 1e3
        resp = (self.first - self.wake) / 1e3
        ntask = int(self.task.max()) + 1
        cpu = np.bincount(self.task, self.burst, ntask)
        spent = np.bincount(self.task, self.finish - self.wake, ntask)
        x = cpu[spent > 0] / spent[spent > 0]
        out = {"bursts": int(len(tat)), "turnaround_mean_us": float(tat.mean()),
               "turnaround_p99_us": float(np.percentile(tat, 99)),
               "response_mean_us": float(resp.mean()), "response_p99_us": float(np.percentile(resp, 99)),
               "fairness_jain": float(x.sum() ** 2 / (len(x) * (x ** 2).sum())),
               "context_switches": int(self.switches), "makespan_ms": self.makespan / 1e6}
        if label is not None:
            lat = np.isin(self.task, np.flatnonzero(label == LATENCY))
            if lat.any():
                out["wakeup_latency_mean_us"] = float(resp[lat].mean())
                out["wakeup_latency_p99_us"] = float(np.percentile(resp[lat], 99))
        return out


class _Sim:
    def __init__(self, wl: Workload, policy: str, ncpu: int, pred, quantum: int, trace: bool):
        self.wl, self.ncpu, self.pred = wl, ncpu, pred
        self.weight = wl.weight.astype(float)
        self.tasks = [_Task() for _ in range(wl.n)]
        self.cur = [-1] * ncpu
        self.since = [0] * ncpu
        self.token = [0] * ncpu
        self.trace = [] if trace else None
        if policy == "fcfs":
            self.rq = _Fifo(self)
        elif policy == "rr":
            self.rq = _Fifo(self, quantum)
        elif policy == "cfs":
            self.rq = _Fair(self)
        else:
            self.rq = _Shortest(self, policy.startswith("srpt"), policy.endswith("-pred"))
        self.done = []
        self.switches = 0

    def nrunning(self):
        return sum(1 for c in self.cur if c >= 0)

    def _emit(self, now, cpu, kind, pid, a0, a1):
        if self.trace is not None:
            self.trace.append((now, cpu, kind, pid, a0, a1))

    def _sync(self, cpu, now):
        t = self.cur[cpu]
        ran = now - self.since[cpu]
        if t >= 0 and ran > 0:
            ts = self.tasks[t]
            ts.rem -= ran
            ts.att += ran
            self.rq.charge(t, ran)
        self.since[cpu] = now

    def _dispatch(self, cpu, now, heap, prev, prev_state):
        t = self.rq.pop()
        pid = lambda i: int(self.wl.pids[i]) if i >= 0 else 0  # noqa: E731
        if t != prev:
            self.switches += t >= 0
            self._emit(now, cpu, 1, pid(prev), pid(t), prev_state)
        self.cur[cpu] = t
        self.since[cpu] = now
        self.token[cpu] += 1
        if t >= 0:
            ts = self.tasks[t]
            if ts.first < 0:
                ts.first = now
            heapq.heappush(heap, (now + min(ts.rem, self.rq.slice(t)), 1, cpu, self.token[cpu]))

    def _wake(self, t, now, heap):
        ts = self.tasks[t]
        ts.rem, ts.att, ts.wake, ts.first = int(self.wl.bursts[t][ts.k]), 0, now, -1
        waker = self.cur[0]
        self._emit(now, 0, 2, int(self.wl.pids[t]), int(self.wl.pids[waker]) if waker >= 0 else 0, 0)
        self.rq.push(t, now, True)
        idle = [c for c in range(self.ncpu) if self.cur[c] < 0]
        if idle:
            self._dispatch(idle[0], now, heap, -1, 0)
            return
        best, bad = -1, None
        for c in range(self.ncpu):
            self._sync(c, now)
            if self.rq.preempts(t, self.cur[c]):
                b = self.rq.badness(self.cur[c])
                if bad is None or b > bad:
                    best, bad = c, b
        if best >= 0:
            prev = self.cur[best]
            self.rq.push(prev, now, False)
            self._dispatch(best, now, heap, prev, 0)

    def _timer(self, cpu, now, heap):
        self._sync(cpu, now)
        t = self.cur[cpu]
        ts = self.tasks[t]
        if ts.rem > 0:  # slice expired
            if len(self.rq) == 0:
                heapq.heappush(heap, (now + min(ts.rem, self.rq.slice(t)), 1, cpu, self.token[cpu]))
                return
            self.rq.push(t, now, False)
            self._dispatch(cpu, now, heap, t, 0)
            return
        self.done.append((t, ts.wake, ts.first, now, int(self.wl.bursts[t][ts.k])))
        sleep = int(self.wl.sleeps[t][ts.k])
        ts.k += 1
        last = ts.k >= len(self.wl.bursts[t])
        if not last:
            heapq.heappush(heap, (now + sleep, 0, t, 0))
        self._dispatch(cpu, now, heap, t, 0x80 if last else 1)

    def run(self, until):
        heap = [(int(self.wl.start[t]), 0, t, 0) for t in range(self.wl.n) if len(self.wl.bursts[t])]
        heapq.heapify(heap)
        now = 0
        while heap:
            now, kind, a, b = heapq.heappop(heap)
            if until is not None and now > until:
                now = until
                break
            if kind == 0:
                self._wake(a, now, heap)
            elif b == self.token[a]:
                self._timer(a, now, heap)
        return now


def _events(rows) -> np.ndarray:
    from kernelpilot.traces.schema import EVENT_DTYPE
    ev = np.zeros(len(rows), dtype=EVENT_DTYPE)
    if rows:
        r = np.array(rows, dtype=np.int64)
        ev["ts"], ev["cpu"], ev["kind"], ev["pid"] = r[:, 0], r[:, 1], r[:, 2], r[:, 3]
        ev["tgid"], ev["a0"], ev["a1"] = r[:, 3], r[:, 4], r[:, 5]
        sw = r[:, 2] == 1
        ev["a2"][sw] = r[sw, 4]
    return ev


def simulate(wl: Workload, policy: str, ncpu: int = 2, pred: list[np.ndarray] | None = None,
             quantum: int = 4 * MS, until: int | None = None, trace: bool = False) -> SimResult:
    """Replay `wl` under `policy`. `pred` (per task, per burst) is required for *-pred policies."""
    if policy not in POLICIES:
        raise KpError(f"unknown scheduling policy '{policy}'; choose from {', '.join(POLICIES)}")
    if policy.endswith("-pred") and pred is None:
        raise KpError(f"policy {policy} needs predicted bursts")
    if ncpu < 1:
        raise KpError("ncpu must be at least 1")
    sim = _Sim(wl, policy, ncpu, pred, quantum, trace)
    end = sim.run(until)
    d = np.array(sim.done, dtype=np.int64).reshape(-1, 5)
    return SimResult(policy, d[:, 0], d[:, 1], d[:, 2], d[:, 3], d[:, 4], sim.switches, end,
                     _events(sim.trace) if trace else None)


def synthetic_trace(seed: int = 0, ncpu: int = 2, horizon_s: float = 2.0, **mix):
    """(events, workload): the workload replayed under the CFS-like policy, as schema events."""
    wl = generate(seed, horizon_s=horizon_s, **mix)
    res = simulate(wl, "cfs", ncpu=ncpu, until=int(horizon_s * S), trace=True)
    return res.events, wl
