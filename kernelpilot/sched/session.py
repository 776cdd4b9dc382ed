"""Actuation that works across sessions. With kernel.sched_autogroup_enabled=1 (most desktops)
each session is one scheduling entity, so nice and SCHED_BATCH order tasks only inside their own
session. The session agent adds, on top of the per-task knobs:

- per-session autogroup nice: a session whose latency-critical tasks are most of its CPU gets -10,
  so it is served before every other session; with batch_session_nice, a session that wants CPU
  with no latency-critical task in it (a build started from another terminal) gets +N (off by
  default: it would also lose to unrelated sessions); the agent's own session is never touched;
- EEVDF slices (sched_setattr): short (0.1 ms) for latency-critical tasks, so a wakeup preempts
  the running task at once (PREEMPT_SHORT), long (20 ms) for CPU-bound batch tasks;
- where autogroup does not apply (disabled, or the tasks sit in non-root cpu cgroups: systemd
  slices on cgroup v2), cgroup CPU weights instead, and with `idle` cpu.idle for the batch group.

    mode, why = choose_actuation()        # what `kpilot doctor` reports as sched_actuation
    SessionAgent(clf, journal, SessionPolicy(actuation=mode), ...).run(seconds)
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from kernelpilot.sched import knobs
from kernelpilot.sched.live import Agent, TaskSample
from kernelpilot.sched.policies import Policy, cpu_cgroup
from kernelpilot.sched.synth import BATCH, LATENCY

log = logging.getLogger("kernelpilot.sched")
ACTUATIONS = ("auto", "autogroup", "cgroup", "task")
TICK = os.sysconf("SC_CLK_TCK")


def _cpu_cgroup_path(pid: int) -> str | None:
    """The task's path in the cpu controller's hierarchy (v1 'cpu' line, else the v2 line)."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = [ln.rstrip("\n").split(":", 2) for ln in f]
    except OSError:
        return None
    v1 = [p for _, c, p in lines if "cpu" in c.split(",")]
    return v1[0] if v1 else next((p for _, c, p in lines if c == ""), None)


def choose_actuation() -> tuple[str, str]:
    """(autogroup | cgroup | task, why), from what this host allows."""
    root = os.geteuid() == 0
    ag = knobs.autogroup_enabled()
    cg = cpu_cgroup()
    own = _cpu_cgroup_path(os.getpid())
    if ag and own == "/":
        return "autogroup", ("kernel.sched_autogroup_enabled=1 and tasks sit in the root cpu cgroup: "
                             "sessions compete as autogroups, so their autogroup nice orders them")
    if cg and root:
        why = "autogroup is off" if not ag else f"tasks sit in cpu cgroup {own} (autogroup does not apply there)"
        return "cgroup", f"{why}; cpu controller on {cg[0]} at {cg[1]}: cgroup weights"
    if not ag:
        return "task", "autogroup off and no usable cpu cgroup controller: per-task nice orders every task"
    return "task", "autogroup on but no usable cpu cgroup controller: nice orders tasks only inside a session"


def tree_pids(roots: set[int]) -> set[int]:
    """The roots and all their descendants, walked through /proc/PID/task/TID/children (far
    cheaper than reading every process's stat); falls back to live.descendants without it."""
    from kernelpilot.sched.live import descendants
    out, todo = set(), list(roots)
    while todo:
        p = todo.pop()
        if p in out:
            continue
        out.add(p)
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tids:
            try:
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            except FileNotFoundError:
                if not os.path.exists(f"/proc/{p}/task/{t}"):
                    continue
                return descendants(roots)  # no CONFIG_PROC_CHILDREN
            except OSError:
                continue
    return out


@dataclass
class SessionPolicy(Policy):
    actuation: str = "autogroup"          # autogroup | cgroup | task (choose_actuation() for auto)
    latency_nice: int = -10
    latency_slice_ns: int = 100_000       # the shortest slice the kernel takes
    batch_slice_ns: int = 20_000_000
    batch_session_nice: int = 0           # 0: batch sessions keep their weight against every other
                                          # session (a build must not lose to unrelated work); 10: weight 110
    latency_session_nice: int = -10
    batch_session_util: float = 0.5       # CPUs a session wants (run + runqueue wait), with no latency task, to count as batch
    latency_session_other_util: float = 0.3  # most CPU the rest of a latency task's session may want
    batch_min_age_s: float = 2.0          # batch knobs only for tasks running this long
    slices: bool = True
    cgroup_idle: bool = False             # cgroup actuation: cpu.idle=1 on the batch group (true background)


class SessionAgent(Agent):
    """Agent plus per-session autogroup nice and EEVDF slices (see the module docstring)."""

    def __init__(self, classifier, journal, policy: SessionPolicy | None = None, prior=None, **kw):
        """prior: a rules.RuleSet; a task it names with a negative nice is latency-critical from its
        first look, one it gives sched idle is true background (SCHED_IDLE); others are classified."""
        policy = policy or SessionPolicy()
        self.prior, self.prior_done = prior, set()
        if policy.actuation == "cgroup":
            policy.use_cgroup = True
        super().__init__(classifier, journal, policy, **kw)
        self.own_session = os.getsid(0)
        self.notes: list[str] = []
        if policy.slices and os.geteuid() == 0:
            ok, why = knobs.slices_supported()
            if not ok:
                policy.slices = False
                self._note(f"{why}; fallback: no slices, nice and {policy.actuation} only")
        self.session_streak: dict[int, int] = {}
        self.session_done: dict[int, int] = {}  # sid -> autogroup nice we set
        self.base_ns = knobs.base_slice_ns()

    def _scope(self):
        if self.roots is None or not self.tree:
            return super()._scope()
        return tree_pids(self.roots)

    def run(self, duration: float | None) -> None:
        """As Agent.run, but the interval doubles after every `quiet_steps` looks with no new
        decision, up to 4x (the agent's own CPU), and drops back at the next decision."""
        import time
        end = None if duration is None else time.monotonic() + duration
        base, quiet = self.interval, 0
        self.step()
        while end is None or time.monotonic() < end:
            wait = base * min(4, 2 ** (quiet // self.quiet_steps))
            time.sleep(wait if end is None else max(0.0, min(wait, end - time.monotonic())))
            n = len(self.decisions)
            self.step()
            quiet = 0 if len(self.decisions) > n else quiet + 1

    quiet_steps = 4

    def _note(self, msg: str):
        self.notes.append(msg)
        log.warning(msg)

    def _group(self, cls: int):
        g = super()._group(cls)
        if g and cls == BATCH and self.policy.cgroup_idle and self.j.enforce and cls not in getattr(self, "_idled", ()):
            self._idled = getattr(self, "_idled", set()) | {cls}
            self.j.change("cpu_idle", {"path": os.path.join(g[1], g[2].lstrip("/"))}, 1)
        return g

    def _act(self, s: TaskSample, c: int, x) -> None:
        if c == BATCH and self.session_done.get(s.session, 0) > 0:
            return  # its session's autogroup nice already covers it (and every compiler it forks)
        if c == BATCH and self._age_s(s) < self.policy.batch_min_age_s:
            self.streak[(s.tid, s.start)] = (c, self.confirm - 1)  # look again next time
            return  # a short job (one compiler of a build) ends before a change would matter
        super()._act(s, c, x)
        if not self.policy.slices:
            return
        target = {"tid": s.tid, "start": s.start, "comm": s.comm}
        if c == LATENCY:
            self.j.change("slice", target, self.policy.latency_slice_ns)
        elif c == BATCH and self.policy.wanted(c, x):  # CPU-bound batch only
            self.j.change("slice", target, self.policy.batch_slice_ns)

    @staticmethod
    def _age_s(s: TaskSample) -> float:
        import time
        return time.clock_gettime(time.CLOCK_BOOTTIME) - s.start / TICK

    def step(self) -> None:
        prev, prev_t = self.prev, self.prev_t
        super().step()
        if self.prior is not None:
            self._from_prior(self.prev)
        if self.policy.actuation == "autogroup" and prev_t:
            self._sessions(prev, self.prev, self.prev_t - prev_t)

    def _from_prior(self, cur: dict):
        import numpy as np
        for tid, s in cur.items():
            if (tid, s.start) in self.prior_done:
                continue
            self.prior_done.add((tid, s.start))
            rule = self.prior.match(s.comm)
            if rule is None:
                continue
            if rule.get("nice", 0) < 0 or rule.get("latency_nice", 0) < 0:
                self.streak[(tid, s.start)] = (LATENCY, self.confirm)
                self._act(s, LATENCY, np.zeros(5))
            elif rule.get("sched") == "idle":
                self.j.change("policy", {"tid": tid, "start": s.start, "comm": s.comm}, [os.SCHED_IDLE, 0])

    def _sessions(self, prev: dict, cur: dict, dt: float):
        """Session CPU demand over the last interval (tasks born in it count whole) and autogroup nice."""
        if dt <= 0:
            return
        use: dict[int, float] = {}     # CPU run
        demand: dict[int, float] = {}  # run plus time waiting to run (a hog on a busy host still counts)
        lat_use: dict[int, float] = {}
        member: dict[int, TaskSample] = {}
        for tid, s in cur.items():
            p = prev.get(tid)
            old = p.counters if p is not None and p.start == s.start else (0, 0)
            ran, waited = (s.counters[0] - old[0]) / (dt * 1e9), (s.counters[1] - old[1]) / (dt * 1e9)
            use[s.session] = use.get(s.session, 0.0) + ran
            demand[s.session] = demand.get(s.session, 0.0) + ran + waited
            member.setdefault(s.session, s)
            v = self.verdicts.get(tid)
            if v and v[1] == s.start and v[0] == "latency-critical":
                lat_use[s.session] = lat_use.get(s.session, 0.0) + ran
        for sid, u in use.items():
            if sid in (0, self.own_session) or sid in self.session_done:
                continue
            if sid in lat_use:
                want = (self.policy.latency_session_nice
                        if u - lat_use[sid] <= self.policy.latency_session_other_util else None)
            elif self.policy.batch_session_nice:
                u = demand[sid]
                want = self.policy.batch_session_nice if u >= self.policy.batch_session_util else None
            else:
                want = None
            n = self.session_streak.get(sid, 0) + 1 if want is not None else 0
            self.session_streak[sid] = n
            if want is None or n < self.confirm:
                continue
            s = member[sid]
            if _cpu_cgroup_path(s.tid) != "/":
                self.session_done[sid] = 0
                self._note(f"session {sid} sits in a cpu cgroup: autogroup nice would not apply; left alone")
                continue
            try:
                ag = knobs.autogroup_of(s.tid)[0]
            except ProcessLookupError:
                continue
            if ag == knobs.ROOT_AUTOGROUP:
                self.session_done[sid] = 0
                self._note(f"session {sid} is init's (root task group): no autogroup nice to set; left alone")
                continue
            kind = "latency" if sid in lat_use else "batch"
            msg = f"session {sid} ({ag}, {s.comm}[{s.tid}]) {kind}: {u:.2f} CPUs -> autogroup nice {want}"
            self.decisions.append(msg)
            log.info(msg)
            self.session_done[sid] = want
            self.j.change("autogroup", {"tid": s.tid, "start": s.start, "comm": s.comm, "autogroup": ag}, want)
