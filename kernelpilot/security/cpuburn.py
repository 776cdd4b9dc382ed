"""The cpu_burn rule: a new program that computes without pause and without I/O (a cryptominer's
shape; a pure CPU loop makes almost no syscalls, so the sequence stages never see it).

Every process exec'd (or forked) while watch runs is sampled from /proc every `period_s`: per
thread the on-CPU and run-queue wait times (/proc/PID/task/TID/schedstat), per process the bytes
and read/write calls (/proc/PID/io). Over the last `window_s` it fires when some thread never
blocked (on CPU or waiting for one, >= BUSY of the time; run-queue wait counts, so a loaded host
does not hide it), ran for >= CPU_SHARE of it, the process's CPU was mostly user time (a syscall
flood spends it in the kernel) and it did almost no I/O. Only programs
first seen after the host learning period are judged; what burned while the host learned is
flagged as that program's normal (rules.Rules._fires)."""
from __future__ import annotations

import os
from collections import deque
from pathlib import Path

WINDOW_S = 0.25      # sustained: the whole window
PERIOD_S = 0.05
BUSY = 0.9           # (cpu + run-queue wait) / wall of the burning thread
CPU_SHARE = 0.1      # cpu / wall of that thread (it ran, not only waited for a CPU)
IO_BYTES, IO_CALLS = 64 * 1024, 4  # at most this much I/O by the whole process in the window
USER = 0.8           # user-mode share of the process's CPU ticks: computing, not a syscall flood


def _ints(path: str) -> list[int] | None:
    try:
        with open(path, "rb") as f:
            return [int(x) for x in f.read().split()[:3]]
    except (OSError, ValueError):
        return None


def read_io(pid: int) -> tuple[int, int] | None:
    """(rchar + wchar, syscr + syscw) of the process, or None if gone."""
    try:
        with open(f"/proc/{pid}/io", "rb") as f:
            v = dict(line.split(b":") for line in f.read().splitlines() if b":" in line)
        return int(v[b"rchar"]) + int(v[b"wchar"]), int(v[b"syscr"]) + int(v[b"syscw"])
    except (OSError, ValueError, KeyError):
        return None


def read_ticks(pid: int) -> tuple[int, int] | None:
    """(utime, stime) clock ticks of the whole process, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            v = f.read().rsplit(b")", 1)[1].split()
        return int(v[11]), int(v[12])
    except (OSError, ValueError, IndexError):
        return None


def read_threads(pid: int) -> dict[int, tuple[int, int]]:
    """tid -> (on-CPU ns, run-queue wait ns)."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tids:
        v = _ints(f"/proc/{pid}/task/{t}/schedstat")
        if v and len(v) >= 2:
            out[int(t)] = (v[0], v[1])
    return out


def cgroup_id(pid: int) -> int:
    """The cgroup v2 id of the process (the inode of its cgroup directory), 0 if unknown."""
    from kernelpilot.security.procinfo import V2
    try:
        line = Path(f"/proc/{pid}/cgroup").read_text().strip().splitlines()[-1]
        return os.stat(V2 / line.split(":", 2)[2].lstrip("/")).st_ino
    except (OSError, IndexError):
        return 0


def available() -> bool:
    return Path("/proc/self/schedstat").exists() and Path("/proc/self/io").exists()


class CpuBurn:
    def __init__(self, procs, profiles, rules, window_s: float = WINDOW_S, period_s: float = PERIOD_S):
        self.procs, self.profiles, self.rules = procs, profiles, rules
        self.window_ns, self.period_ns = int(window_s * 1e9), int(period_s * 1e9)
        self.samples: dict[tuple[int, int], deque] = {}  # (pid, exec ts) -> (ts, threads, io)
        self.done: set[tuple[int, int]] = set()  # (pid, exec ts) fired or dismissed for good
        self.last_ns = 0
        self.me = os.getpid()
        self.on = available()

    def _candidates(self) -> list[tuple[int, object]]:
        out = []
        for pid in list(self.procs.started):
            runs = self.procs.procs.get(pid)
            if not runs:  # pruned
                self.procs.started.pop(pid, None)
                continue
            p = runs[-1]
            if not p.gone_ns and pid != self.me and (pid, p.since_ns) not in self.done:
                out.append((pid, p))
        return out

    def sample(self, now_ns: int) -> list[dict]:
        """Sample the candidates (at most every period_s); hits as rules.Rules hits."""
        if not self.on or now_ns - self.last_ns < self.period_ns:
            return []
        self.last_ns = now_ns
        hits, live = [], set()
        for pid, p in self._candidates():
            key, run = p.rule_program, (pid, p.since_ns)
            if p.meta.get("forked"):  # runs its parent's program: one watch saw exec'd, else older than watch
                prof = self.profiles.progs.get(key)
                if prof is None:
                    self.done.add(run)
                    continue
            else:
                prof = self.profiles.get(key, p.since_ns)  # first seen at its exec
            learning = self.profiles.host_learning(now_ns)
            if not learning and (prof.first_ns < self.profiles.host_end_ns or "cpu_burn" in prof.flags):
                self.done.add(run)  # judged only when new since the host learned; a known burner is its normal
                continue
            io, th, ticks = read_io(pid), read_threads(pid), read_ticks(pid)
            if io is None:  # gone (its exit event may have been lost)
                self.procs.started.pop(pid, None)
                continue
            if not th or ticks is None:
                continue
            live.add(run)
            q = self.samples.setdefault(run, deque())
            q.append((now_ns, th, io, ticks))
            while len(q) > 2 and now_ns - q[1][0] >= self.window_ns:
                q.popleft()
            hit = self._judge(q)
            if hit is None:
                continue
            self.done.add(run)  # one hit per process (learning: its program is flagged)
            cg = cgroup_id(pid)
            if self.rules._fires("cpu_burn", "cpu_burn", key, now_ns, cgroup=cg):
                hits.append({"rule": "cpu_burn", "pid": pid, "tid": hit.pop("tid"), "ts": now_ns, "uid": p.uid,
                             "cgroup_id": cg, "comm": p.comm, "detail": hit})
        for pid in [k for k in self.samples if k not in live]:
            del self.samples[pid]
        return hits

    def prune(self) -> None:
        self.done = {r for r in self.done if r[0] in self.procs.procs}

    def _judge(self, q) -> dict | None:
        t1, th1, io1, k1 = q[-1]
        t0, th0, io0, k0 = q[0]
        wall = t1 - t0
        if wall < self.window_ns:
            return None
        dbytes, dcalls = io1[0] - io0[0], io1[1] - io0[1]
        if dbytes > IO_BYTES or dcalls > IO_CALLS:
            return None
        user, system = k1[0] - k0[0], k1[1] - k0[1]
        if user + system < 2 or user < USER * (user + system):
            return None  # too little CPU to tell, or much of it in the kernel (a syscall flood)
        best = None
        for tid, (c1, w1) in th1.items():
            if tid not in th0:
                continue
            cpu, wait = c1 - th0[tid][0], w1 - th0[tid][1]
            if cpu + wait >= BUSY * wall and cpu >= CPU_SHARE * wall and (best is None or cpu > best[1]):
                best = (tid, cpu, wait)
        if best is None:
            return None
        tid, cpu, wait = best
        burning = sum(1 for t, (c1, w1) in th1.items() if t in th0 and c1 - th0[t][0] + w1 - th0[t][1] >= BUSY * wall)
        return {"tid": tid, "seconds": round(wall / 1e9, 3), "cpu_s": round(cpu / 1e9, 3),
                "runqueue_wait_s": round(wait / 1e9, 3), "cpu_share": round(cpu / wall, 3),
                "threads_burning": burning, "io_bytes": dbytes, "io_calls": dcalls,
                "user_share": round(user / (user + system), 3),
                "cpu_s_total": round(sum(c for c, _ in th1.values()) / 1e9, 3), "new_program": True}
