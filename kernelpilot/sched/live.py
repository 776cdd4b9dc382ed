"""The live scheduling agent: sample tasks from /proc, classify, apply knobs through the journal."""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import numpy as np

from kernelpilot.agent.journal import Journal
from kernelpilot.errors import KpError
from kernelpilot.sched.features import class_features, log2q4_inverse
from kernelpilot.sched.models import TaskClassifier
from kernelpilot.sched.policies import GROUP_NAMES, Policy, cpu_cgroup, weight_file
from kernelpilot.sched.synth import LATENCY

log = logging.getLogger("kernelpilot.sched")
PF_KTHREAD = 0x00200000
RT_POLICIES = {os.SCHED_FIFO, os.SCHED_RR, 6}  # 6 = SCHED_DEADLINE


@dataclass
class TaskSample:
    tid: int
    tgid: int
    comm: str
    start: int
    ppid: int
    flags: int
    policy: int
    counters: tuple  # run_ns, wait_ns, slices, vol, invol
    session: int = 0  # session id (setsid): with autogroup on, the kernel's scheduling entity


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def sample_task(tgid: int, tid: int) -> TaskSample | None:
    base = f"/proc/{tgid}/task/{tid}"
    try:
        stat = _read(f"{base}/stat")
        sched = _read(f"{base}/schedstat").split()
        status = _read(f"{base}/status")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    comm = stat[stat.index("(") + 1: stat.rindex(")")]
    f = stat[stat.rindex(")") + 2:].split()
    vol = invol = 0
    for line in status.splitlines():
        if line.startswith("voluntary_ctxt_switches"):
            vol = int(line.split()[1])
        elif line.startswith("nonvoluntary_ctxt_switches"):
            invol = int(line.split()[1])
    return TaskSample(tid, tgid, comm, int(f[19]), int(f[1]), int(f[6]), int(f[38]),
                      (int(sched[0]), int(sched[1]), int(sched[2]), vol, invol), int(f[3]))


def descendants(roots: set[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(_read(f"/proc/{d}/stat").rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = set(), list(roots)
    while todo:
        p = todo.pop()
        if p not in out:
            out.add(p)
            todo.extend(children.get(p, []))
    return out


def _ancestors(pid: int) -> set[int]:
    out = set()
    while pid > 1 and pid not in out:
        out.add(pid)
        try:
            pid = int(_read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return out


def scan(pids: set[int] | None, exclude: set[int]) -> dict[int, TaskSample]:
    """Samples of every thread of the processes in `pids` (all user processes if None)."""
    tgids = pids if pids is not None else {int(d) for d in os.listdir("/proc") if d.isdigit()}
    out = {}
    for tgid in tgids:
        if tgid in exclude or tgid <= 1:
            continue
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{tgid}/task")]
        except (FileNotFoundError, ProcessLookupError):
            continue
        for tid in tids:
            s = sample_task(tgid, tid)
            if s and not s.flags & PF_KTHREAD and s.policy not in RT_POLICIES:
                out[tid] = s
    return out


def run_every(step, interval: float, duration: float | None) -> None:
    """step() now and every `interval` seconds, for `duration` seconds (None: until interrupted)."""
    end = None if duration is None else time.monotonic() + duration
    step()
    while end is None or time.monotonic() < end:
        time.sleep(interval if end is None else max(0.0, min(interval, end - time.monotonic())))
        step()


class Agent:
    """Classify tasks every `interval` seconds; act on a class seen `confirm` times in a row."""

    def __init__(self, classifier: TaskClassifier, journal: Journal, policy: Policy | None = None,
                 pids: list[int] | None = None, tree: bool = False, interval: float = 0.5,
                 confirm: int = 2, min_util: float = 0.02, min_wakeups: float = 20.0, kernel=None):
        """kernel: a sched.kernel.KernelClassifier whose verdicts replace /proc sampling."""
        self.clf, self.j, self.policy = classifier, journal, policy or Policy()
        self.roots, self.tree = set(pids) if pids else None, tree
        self.interval, self.confirm, self.min_util, self.min_wakeups = interval, confirm, min_util, min_wakeups
        me = os.getpid()
        self.exclude = _ancestors(me) | {me}
        self.prev: dict[int, TaskSample] = {}
        self.prev_t = 0.0
        self.streak: dict[tuple[int, int], tuple[int, int]] = {}  # (tid, start) -> (class, count)
        self.verdicts: dict[int, tuple[str, int]] = {}
        self.groups: dict[int, tuple | None] = {}
        self.decisions: list[str] = []
        self.kernel = kernel
        self.seen: dict[int, int] = {}  # tid -> last kernel verdict seq used

    def _scope(self) -> set[int] | None:
        if self.roots is None:
            return None
        return descendants(self.roots) if self.tree else set(self.roots)

    def _group(self, cls: int) -> tuple[str, str, str] | None:
        """(hier, mount, path) of our cgroup for class `cls`, created with its weight on first use."""
        if cls in self.groups or not self.policy.use_cgroup:
            return self.groups.get(cls)
        found = cpu_cgroup()
        self.groups[cls] = None
        if not found:
            return None
        hier, mount = found
        path = str(mount / GROUP_NAMES[cls])
        fname, conv = weight_file(hier)
        if os.path.isdir(path) and self.j.enforce:
            raise KpError(f"{path} already exists (another agent, or a stale run: kpilot agent rollback)")
        self.j.change("mkdir", {"path": path}, True)
        weight = self.policy.latency_weight if cls == LATENCY else self.policy.batch_weight
        if self.j.enforce:
            self.j.change("file", {"path": f"{path}/{fname}"}, conv(weight))
        self.groups[cls] = (hier, str(mount), "/" + GROUP_NAMES[cls])
        return self.groups[cls]

    def _from_proc(self, cur: dict[int, TaskSample], dt: float):
        rows, keys = [], []
        for tid, s in cur.items():
            p = self.prev.get(tid)
            if p is None or p.start != s.start or dt <= 0:
                continue
            rows.append([a - b for a, b in zip(s.counters, p.counters)])
            keys.append(s)
        if not rows:
            return [], np.zeros((0, 5), np.int64), np.zeros(0, int)
        d = np.array(rows, dtype=np.int64)
        X = class_features(d[:, 0], d[:, 1], d[:, 2], d[:, 3], d[:, 4], int(dt * 1e9))
        return keys, X, self.clf.predict(X)

    def _from_kernel(self, cur: dict[int, TaskSample]):
        """The in-kernel classifier's new verdicts (one per finished window) for tasks in scope."""
        keys, xs, cls = [], [], []
        for tid, v in self.kernel.verdicts().items():
            s = cur.get(tid)
            if s is None or v.tgid != s.tgid or self.seen.get(tid) == v.seq:
                continue
            self.seen[tid] = v.seq
            keys.append(s)
            xs.append(v.x)
            cls.append(v.cls)
        return keys, np.array(xs, np.int64).reshape(-1, 5), np.array(cls, int)

    def step(self) -> None:
        now = time.monotonic()
        cur = scan(self._scope(), self.exclude | {self.j._guard.pid} if self.j._guard else self.exclude)
        dt = now - self.prev_t
        keys, X, cls = self._from_kernel(cur) if self.kernel else self._from_proc(cur, dt)
        self.prev, self.prev_t = cur, now
        if not keys:
            return
        active = (X[:, 0] >= self.min_util * 1024) | (X[:, 1] >= self.min_wakeups)
        cls = np.where(active, cls, -1)
        for s, c, x in zip(keys, cls, X):
            key = (s.tid, s.start)
            last, n = self.streak.get(key, (-1, 0))
            n = n + 1 if c == last else 1
            self.streak[key] = (int(c), n)
            if c < 0 or n != self.confirm:
                continue
            self._act(s, int(c), x)

    def _act(self, s: TaskSample, c: int, x) -> None:
        name = "latency-critical" if c == LATENCY else "batch"
        self.verdicts[s.tid] = (name, s.start)
        msg = (f"{s.comm}[{s.tid}] {name}: util {x[0] / 1024:.2f}, {x[1]:.0f} sleeps/s, "
               f"burst ~{log2q4_inverse(x[3]):.0f} us" + (" (in-kernel verdict)" if self.kernel else ""))
        self.decisions.append(msg)
        log.info(msg)
        target = {"tid": s.tid, "start": s.start, "comm": s.comm}
        for knob, value in self.policy.wanted(c, x).items():
            self.j.change(knob, target, value)
        if s.tid == s.tgid:
            g = self._group(c)
            if g:
                hier, mount, path = g
                self.j.change("cgroup", {"tid": s.tgid, "start": s.start, "comm": s.comm, "hier": hier,
                                         "mount": mount}, path)

    def run(self, duration: float | None) -> None:
        run_every(self.step, self.interval, duration)
