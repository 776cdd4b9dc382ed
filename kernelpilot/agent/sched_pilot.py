"""Scheduling pilot: per-task run, wait, slices and switches from the shared sensor's sched_switch
and sched_wakeup events (the counters the in-kernel classifier keeps), classified every window by
the scheduling model; a class seen `confirm` windows in a row becomes a decision; acting sets
nice and policy through the journal (sched.policies.Policy, as `kpilot sched run` does)."""
from __future__ import annotations

import logging
import os

import numpy as np

from kernelpilot.agent.pilot import Decision, Pilot, cap
from kernelpilot.traces import schema as S

log = logging.getLogger("kernelpilot.agent")
WAKE, OUT_VOL, OUT_INVOL, IN = 0, 1, 2, 3
CLASS_NAMES = {0: "batch", 1: "latency-critical"}

POLICY_NAMES = {os.SCHED_OTHER: "SCHED_OTHER", os.SCHED_BATCH: "SCHED_BATCH", os.SCHED_IDLE: "SCHED_IDLE"}


def change_text(knob: str, value) -> str:
    """One planned or applied change for people: a policy by name (the journal keeps the numbers)."""
    if knob == "policy":
        policy, flags = value[0] & ~os.SCHED_RESET_ON_FORK, value[0] & os.SCHED_RESET_ON_FORK
        return f"policy -> {POLICY_NAMES.get(policy, policy)}" + (" (reset on fork)" if flags else "")
    return f"{knob} -> {value}"


def load_classifier(path: str = ""):
    """The given model, else the default one, cached in the state dir by code version."""
    from kernelpilot.agent.state import code_key, state_dir
    from kernelpilot.sched import evaluate as E
    from kernelpilot.sched import features, models, synth
    if path:
        return E.load_classifier(path)
    cache = state_dir() / f"sched-classifier-{code_key(E, models, features, synth)}.json"
    if cache.is_file():
        try:
            return E.load_classifier(cache)
        except Exception:  # a torn cache file: rebuild it
            pass
    clf = E.default_classifier()
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp.json")  # agents starting together: no torn file
        clf.model.save(tmp)
        os.replace(tmp, cache)
    except OSError:
        pass
    return clf


def switch_counters(ev: np.ndarray, carry: dict):
    """Per thread: (tids, run_ns, wait_ns, slices, vol, invol) of these sched events, paired with
    each thread's last state from earlier batches (`carry`: tid -> (ts, state), updated)."""
    sw = ev[ev["kind"] == S.SCHED_SWITCH]
    wk = ev[ev["kind"] == S.SCHED_WAKEUP]
    out_state = np.where(sw["a1"] == 0, OUT_INVOL, OUT_VOL)
    ts = np.concatenate([sw["ts"], sw["ts"], wk["ts"]]).astype(np.int64)
    tid = np.concatenate([sw["pid"], sw["a0"].astype(np.uint32), wk["pid"]]).astype(np.int64)
    st = np.concatenate([out_state, np.full(len(sw), IN), np.full(len(wk), WAKE)])
    prior = [(t, *carry[t]) for t in np.unique(tid).tolist() if t in carry]
    n_carry = len(prior)
    if n_carry:
        cv = np.array(prior, np.int64)
        ts, tid, st = np.r_[cv[:, 1], ts], np.r_[cv[:, 0], tid], np.r_[cv[:, 2], st]
    real = np.r_[np.zeros(n_carry, bool), np.ones(len(ts) - n_carry, bool)]
    m = tid > 0
    if not m.any():
        z = np.zeros(0)
        return np.zeros(0, np.int64), z, z, z, z, z  # the idle task is not a task
    ts, tid, st, real = ts[m], tid[m], st[m], real[m]
    order = np.lexsort((ts, tid))
    ts, tid, st, real = ts[order], tid[order], st[order], real[order]
    tids, inv = np.unique(tid, return_inverse=True)
    same = np.r_[False, tid[1:] == tid[:-1]]
    dt = np.r_[0, np.diff(ts)].clip(0)
    prev = np.r_[-1, st[:-1]]
    run = same & (st != IN) & (st != WAKE) & (prev == IN)
    wait = same & (st == IN) & ((prev == WAKE) | (prev == OUT_INVOL))
    k = len(tids)
    run_ns = np.bincount(inv, weights=dt * run, minlength=k)
    wait_ns = np.bincount(inv, weights=dt * wait, minlength=k)
    outs = real & ((st == OUT_VOL) | (st == OUT_INVOL))
    slices = np.bincount(inv, weights=outs, minlength=k)
    vol = np.bincount(inv, weights=real & (st == OUT_VOL), minlength=k)
    last = np.r_[np.flatnonzero(~np.r_[tid[1:] == tid[:-1], False])]
    for t, a, b in zip(tid[last].tolist(), ts[last].tolist(), st[last].tolist()):
        carry[t] = (a, b)
    return tids, run_ns, wait_ns, slices, vol, slices - vol


class SchedPilot(Pilot):
    name = "sched"

    def __init__(self, cfg: dict, live: bool = True, classifier=None):
        super().__init__(live)
        from kernelpilot.sched.features import class_features
        from kernelpilot.sched.policies import Policy
        self.cfg = cfg
        self.clf = classifier or load_classifier()
        self._features = class_features
        self.policy = Policy(batch_policy=os.SCHED_IDLE if cfg["idle"] else os.SCHED_BATCH,
                             batch_nice=cfg["batch_nice"])
        self.window_ns = int(cfg["window_s"] * 1e9)
        self.win_start = None
        self.acc: dict[int, np.ndarray] = {}      # tid -> run, wait, slices, vol, invol this window
        self.carry: dict[int, tuple] = {}
        self.who: dict[int, tuple[int, str]] = {}  # tid -> tgid, comm
        self.streak: dict[int, tuple[int, int]] = {}
        self.classes: dict[int, str] = {}
        self.windows = 0
        self.seen: dict[int, int] = {}
        self.decided = 0
        self.acted: dict[str, int] = {}
        self.plans: list[str] = []
        me = os.getpid()
        self.exclude = {me, os.getppid()}

    def _learn_names(self, ev):
        """tid -> (tgid, comm), from each thread's latest event here (switched-out or woken task)."""
        pid = ev["pid"][::-1]
        tids, first = np.unique(pid, return_index=True)  # first in reverse = latest
        g, c = ev["tgid"][::-1][first], ev["comm"][::-1][first]
        for t, gg, cc in zip(tids.tolist(), g.tolist(), c.tolist()):
            self.who[t] = (gg, cc.decode(errors="replace"))

    def _add(self, ev):
        tids, *cols = switch_counters(ev, self.carry)
        vals = np.column_stack(cols) if len(tids) else np.zeros((0, 5))
        for t, v in zip(tids.tolist(), vals):
            a = self.acc.get(t)
            self.acc[t] = v if a is None else a + v

    def observe(self, batch: np.ndarray) -> list[Decision]:
        ev = batch[(batch["kind"] == S.SCHED_SWITCH) | (batch["kind"] == S.SCHED_WAKEUP)]
        if not len(ev):
            return []
        ev = ev[np.argsort(ev["ts"], kind="stable")]  # CPUs' batches interleave
        self._learn_names(ev)
        out = []
        ts = ev["ts"].astype(np.int64)
        if self.win_start is None:
            self.win_start = int(ts[0])
        while len(ev):
            end = self.win_start + self.window_ns
            cut = int(np.searchsorted(ts, end))
            if cut >= len(ev):
                self._add(ev)
                break
            self._add(ev[:cut])
            out += self._close_window(self.window_ns)
            self.win_start = end
            ev, ts = ev[cut:], ts[cut:]
        return out

    def finish(self) -> list[Decision]:
        """A replayed trace shorter than a window is classified as one window."""
        if self.acc and self.windows == 0:
            return self._close_window(None)
        return []

    def _close_window(self, span_ns) -> list[Decision]:
        self.windows += 1
        acc, self.acc = self.acc, {}
        for t in acc:
            self.seen[t] = self.windows
        if self.windows % 100 == 0:  # forget threads quiet for 100 windows (bounded memory)
            old = [t for t, w in self.seen.items() if w < self.windows - 100]
            for t in old:
                for d in (self.seen, self.carry, self.who, self.classes):
                    d.pop(t, None)
        if not acc:
            return []
        tids = np.fromiter(acc.keys(), np.int64, len(acc))
        v = np.array(list(acc.values()), np.int64)
        span = span_ns or max(int(v[:, 0].max() + v[:, 1].max()), 1)
        X = self._features(v[:, 0], v[:, 1], v[:, 2], v[:, 3], v[:, 4], span)
        cls = np.asarray(self.clf.predict(X)).astype(int)
        active = (X[:, 0] >= self.cfg["min_util"] * 1024) | (X[:, 1] >= self.cfg["min_wakeups"])
        confirm = 1 if span_ns is None else self.cfg["confirm"]
        out = []
        for t, c, x, a in zip(tids.tolist(), cls.tolist(), X, active.tolist()):
            c = c if a else -1
            last, n = self.streak.get(t, (-2, 0))
            n = n + 1 if c == last else 1
            self.streak[t] = (c, n)
            if c < 0 or n != confirm:
                continue
            tgid, comm = self.who.get(t, (t, "?"))
            name = CLASS_NAMES.get(c, str(c))
            self.classes[t] = name
            self.decided += 1
            out.append(Decision("sched", "decision", f"{comm}[{t}] {name}: util {x[0] / 1024:.2f}, "
                                f"{x[1]} sleeps/s, {x[2]} preemptions/s", pid=t, comm=comm,
                                detail={"class": name, "tgid": tgid, "features": [int(f) for f in x]}))
        self.streak = {t: s for t, s in self.streak.items() if t in acc}  # tasks gone quiet start over
        return out

    def act(self, d: Decision, journal) -> Decision | None:
        from kernelpilot.agent.rollback import start_time
        from kernelpilot.sched.live import PF_KTHREAD, RT_POLICIES, sample_task
        if not self.live or d.kind != "decision":
            return None
        tid, tgid = d.pid, d.detail["tgid"]
        s = sample_task(tgid, tid)
        why = None
        if s is None:
            why = "gone"
        elif s.flags & PF_KTHREAD:
            why = "kernel thread"
        elif s.policy in RT_POLICIES:
            why = "real-time task"
        elif tgid in self.exclude or (journal._guard and tgid == journal._guard.pid):
            why = "kernelpilot itself"
        elif self.cfg["only"] and s.comm not in self.cfg["only"]:
            why = "not in sched.only"
        if why:
            self.acted["left alone"] = self.acted.get("left alone", 0) + 1
            return None
        cls = 1 if d.detail["class"] == "latency-critical" else 0
        wanted = self.policy.wanted(cls, np.array(d.detail["features"]))
        if not wanted:
            return None
        target = {"tid": tid, "start": start_time(tid), "comm": s.comm}
        done = [change_text(k, v) for k, v in wanted.items() if journal.change(k, target, v)]
        if not done:
            return None
        kind = "action" if journal.enforce else "plan"
        self.acted[kind] = self.acted.get(kind, 0) + 1
        what = f"{'set' if journal.enforce else 'would set'} {', '.join(done)} for {s.comm}[{tid}] ({d.detail['class']})"
        if len(self.plans) < 50:
            self.plans.append(what)
        return Decision("sched", kind, what, pid=tid, comm=s.comm, detail={"knobs": wanted})

    def summary(self, top: int | None = None) -> dict:
        by = {}
        for t, c in self.classes.items():
            by.setdefault(c, []).append(f"{self.who.get(t, (0, '?'))[1]}[{t}]")
        return {"windows": self.windows, "tasks_seen": len(self.who), "decisions": self.decided,
                "classes": {c: {"tasks": len(v), "examples": v[:cap(8, top)]} for c, v in by.items()},
                "changes": dict(self.acted), "planned_or_applied": self.plans[:cap(20, top)]}
