"""One workload run under a swap controller, measured: the cgroup's usage (sampled each tick),
major faults and refaults (its memory.stat), memory pressure (its own PSI group), run time.

configs: kernel       the limit alone (the kernel's reclaim)
         senpai       Senpai's fixed pressure rule moves the limit
         kernelpilot  the learned reclaimer moves the limit; the cold pusher pushes the pages
                      least likely to come back first (anonymous memory), and keeps the group
                      just under its limit so the kernel's reclaim has nothing to pick

A controller that moves the limit never hands the workload to the OOM killer (the OOM guard):
no step goes below usage minus what reclaim can free (page cache, anonymous memory that free
swap holds, less the unevictable); on v1 the group's OOM killer is off while it runs, so a
charge reclaim cannot meet waits (under_oom) and the driver raises the limit within a tick
(the learned reclaimer keeps that limit as its floor). At the workload's own limit the kill is
put back after OOM_WAIT s, which wakes the waiting charge to try once more. The kernel alone runs
under the same rule (its OOM killer off, back on after OOM_WAIT s at its limit), so that second
try is no config's advantage; each run reports oom_waits and oom_kills.
"""
from __future__ import annotations

import errno
import os
import resource
import threading
import time

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.memory import reclaim as R
from kernelpilot.memory.limitwriter import LimitWriter, interrupts
from kernelpilot.memory.live import run_measured
from kernelpilot.memory.swaplab import page_limit, reclaimable

CONFIGS = ("kernel", "senpai", "kernelpilot")
TICK, SCAN_EVERY, CONTROL_EVERY, MARGIN = 0.02, 5, 13, 4 << 20  # 20 ms ticks, scans each 100 ms,
# a control step each 0.26 s; the pusher keeps the group MARGIN under its limit and keeps the
# pages likeliest back (at most HOT_SHARE of the limit) referenced
HOT_SHARE = 0.35  # at 0.5 the kernel found too little to reclaim once and OOM-killed hot/cold
OOM_RAISE, OOM_HEADROOM, OOM_WAIT = 1.25, 16 << 20, 1.0
# a limit write still reclaiming after this (s) is interrupted, the old limit kept: before the next
# control step, which never submits while one is in flight (limitwriter.py: v1 writes below usage
# can run until the program ends)
WRITE_DEADLINE, SLACK = (CONTROL_EVERY - 2) * TICK, 1 << 20
# the page-fault tracer beside the scans (refaults seen as they happen): off, since on hot/cold it
# cost more time than it saved (interleaved: 11.3 s against 9.8 s without, the same major faults)
FAULT_EVENTS = False
# KPILOT_SWAP_LOG=1: each run's output keeps the controller's decision log (one row a step)
LOG = os.environ.get("KPILOT_SWAP_LOG") == "1"
MB = 1 << 20


class Driver:
    """The agent thread of one run: samples the group each tick; a controller step every
    CONTROL_EVERY ticks; the pusher (kernelpilot) each tick. Limit steps are written by a
    LimitWriter thread, so a write that reclaims for long never stops the sampling."""

    def __init__(self, lab, config: str, predictor: R.RefaultPredictor | None = None, tick: float = TICK,
                 log: bool = False):
        self.lab, self.config, self.tick, self.keep_log = lab, config, tick, log or LOG
        self.ctrl = R.CONTROLLERS[config]()
        self.pusher = R.ColdPusher(predictor) if config == "kernelpilot" else None
        self.usage: list[int] = []
        self.limits: list[int] = []
        self.errors: list[str] = []
        self.steps = self.limit_refused = self.limit_interrupted = self.write_busy = 0
        self.writer: LimitWriter | None = None
        self.oom_raised = self.clamped = self.oom_waits = 0
        self.oom_kill_back = False
        self._oom_since = None
        self.obs: list[R.Obs] = []
        self.cpu_s = 0.0
        self.majflt = 0  # the agent thread's own major faults (keep_hot's touches swap pages in)
        self.decisions: dict[str, int] = {}  # the controller's reason for each step, counted
        self.log: list[list] = []  # per step: s, usage, limit, new (MB), pressure, refaults, reason, io
        # pressure, page-cache refaults, cpu pressure

    def __call__(self, pid, stop):
        t_cpu, f0 = time.thread_time(), thread_major_faults()
        try:
            self._run(pid, stop)
        finally:
            self.cpu_s = time.thread_time() - t_cpu
            self.majflt = thread_major_faults() - f0

    def _run(self, pid, stop):
        lab = self.lab
        try:
            ceiling = limit = lab.limit()
            psi0, io0, cw0, st0 = lab.pressure_us(), lab.io_pressure_us(), lab.cpu_pressure_us(), lab.stat()
            ref0, fref0 = lab.refaults(st0), st0.get("workingset_refault_file", 0)
            pg0 = st0.get("pgpgin", 0)
        except OSError as e:
            self.errors.append(f"cgroup unreadable at start: {e}")
            return
        peak, k, t0, next_scan = 0, 0, time.monotonic(), 1
        t_start = t0
        fds: dict[int, int] = {}
        src_box: list = []  # the tracer loads (~0.5 s) beside the loop: the first scans must not wait
        loader = None
        if self.pusher is not None and FAULT_EVENTS:
            loader = threading.Thread(target=lambda: src_box.append(self._fault_source(pid)), daemon=True)
            loader.start()
        src = None
        self.writer = LimitWriter(lab.write_limit, WRITE_DEADLINE)
        try:
            while not stop.wait(self.tick):
                k += 1
                try:
                    usage = lab.usage()
                    limit = self._written(limit)
                except FileNotFoundError:
                    self.errors.append("the cgroup vanished mid-run: control stopped")
                    return
                self.writer.expire()
                limit = self._oom_guard(usage, limit, ceiling)  # every config: the same wait at the ceiling
                self.usage.append(usage)
                self.limits.append(limit)
                peak = max(peak, usage)
                if src is None and src_box:
                    src = src_box[0]
                if src is not None:
                    self._feed_faults(src)
                if self.pusher is not None:
                    scan = k >= next_scan
                    t_scan = time.monotonic()
                    self._push(fds, usage, limit, scan=scan)
                    if scan:  # scans cost: at most a fifth of the time between them
                        next_scan = k + max(SCAN_EVERY, int(5 * (time.monotonic() - t_scan) / self.tick))
                if k % CONTROL_EVERY or self.config == "kernel":
                    continue
                if self.writer.busy():  # the last step still reclaiming: its interval goes on
                    self.write_busy += 1
                    continue
                try:
                    psi, io, cw, st = lab.pressure_us(), lab.io_pressure_us(), lab.cpu_pressure_us(), lab.stat()
                    ref, anon = lab.refaults(st), st.get("rss", st.get("anon", 0)) + st.get("swap", 0)
                    fref, pg = st.get("workingset_refault_file", 0), st.get("pgpgin", 0)
                except FileNotFoundError:
                    self.errors.append("the cgroup vanished mid-run: control stopped")
                    return
                now = time.monotonic()
                dt = max(now - t0, 1e-3)
                o = R.Obs(usage, limit, peak, (psi - psi0) / 1e6 / dt, (ref - ref0), ceiling,
                          anon, fref - fref0, (io - io0) / 1e6 / dt, (cw - cw0) / 1e6 / dt, pg - pg0)
                self.obs.append(o)
                psi0, io0, cw0, ref0, fref0, pg0, t0 = psi, io, cw, ref, fref, pg, now
                new = self.ctrl.step(o)
                why = getattr(self.ctrl, "why_", "") or "?"
                if new < limit:  # never below what reclaim can bring the group down to
                    least = usage - reclaimable(st) + 2 * MARGIN
                    if new < least:
                        self.clamped += 1
                        new = min(max(new, least), limit)
                        why += "+clamped"
                if why == "step" and new >= limit:
                    why = "step_above_limit"  # a step from usage that does not go below the limit
                self.decisions[why] = self.decisions.get(why, 0) + 1
                if self.keep_log:
                    self.log.append([round(now - t_start, 2), round(usage / MB, 1), round(limit / MB, 1),
                                     round(new / MB, 1), round(o.pressure, 5), o.refaults, why,
                                     round(o.io_pressure, 5), o.file_refaults, round(o.cpu_pressure, 5)])
                if new != limit:
                    self.steps += 1
                    if self.pusher is not None and new < usage:
                        self._push(fds, usage, new, scan=False, forced=False)  # coldest anonymous first
                    self.writer.submit(new)  # the limit is `new` once written (_written)
        finally:
            self.writer.close()
            for fd in fds.values():
                R.close_fd(fd)
            if loader is not None:
                loader.join(10)
                if src is None and src_box:
                    src = src_box[0]
            if src is not None:
                src.stop()

    def _written(self, limit: int) -> int:
        """The limit after the writes the writer finished: a written one, else the file's (an
        interrupted or refused write keeps the old limit). A write past its deadline keeps what
        it reclaimed: the limit follows to usage (+ SLACK), a write that lands at once, and the
        program's own charges reclaim from there as under any limit. FileNotFoundError: group gone."""
        for nbytes, err in self.writer.poll():
            if err == 0:
                limit = page_limit(nbytes)
                continue
            if err == errno.EINTR:
                self.limit_interrupted += 1
            elif err != errno.ECANCELED:
                self.limit_refused += 1
            limit = self.lab.limit()
            if err == errno.EINTR:
                follow = max(nbytes, self.lab.usage() + SLACK)
                if follow < limit - SLACK:
                    self.writer.submit(follow)
        return limit

    def _oom_guard(self, usage: int, limit: int, ceiling: int) -> int:
        """A charge waits on the limit (under_oom, v1, its OOM killer off): stop a limit write in
        flight, raise the limit at once and tell the controller; at the workload's own limit, put
        the kill back after OOM_WAIT s. Returns the limit now."""
        try:
            oc = self.lab.oom_control()
        except OSError:
            return limit
        if not oc or not oc.get("under_oom"):
            self._oom_since = None
            return limit
        if self.writer is not None and self.writer.busy():  # a lower write must not undo the raise
            self.writer.cancel()
            try:
                limit = self._written(limit)
            except FileNotFoundError:
                return limit
        if limit >= ceiling:
            now = time.monotonic()
            if self._oom_since is None:
                self.oom_waits += 1
            self._oom_since = self._oom_since or now
            if now - self._oom_since > OOM_WAIT and not self.oom_kill_back:
                self.oom_kill_back = self.lab.set_oom_kill(True)
                self.errors.append("under OOM at the workload's own limit: the OOM killer is back on")
            return limit
        new = min(ceiling, max(int(limit * OOM_RAISE), usage + OOM_HEADROOM))
        if not self.lab.raise_limit(new):
            return limit
        self.oom_raised += 1
        if hasattr(self.ctrl, "oom"):
            self.ctrl.oom(limit)
        return new // 4096 * 4096

    def _fault_source(self, pid):
        """The foundation tracer's page-fault events of the workload (its cgroup-v2 group, else
        its pid); None, with a note, where eBPF cannot run."""
        from kernelpilot.traces.sources import EbpfSource
        try:
            if self.lab.psi_cg is not None and self.lab.psi_cg != self.lab.cg:
                return EbpfSource(["faults"], cgroup=str(self.lab.psi_cg), ring_mb=8).start()
            return EbpfSource(["faults"], pids=[pid], ring_mb=8).start()
        except (KpError, OSError) as e:
            self.errors.append(f"no page-fault events ({str(e).splitlines()[0]}): scans only")
            return None

    def _feed_faults(self, src):
        from kernelpilot.traces import schema as S
        ev = src.poll()
        ev = ev[ev["kind"] == S.KIND["page_fault"]]
        for tgid in np.unique(ev["tgid"]).tolist():
            self.pusher.faults(int(tgid), (ev["a0"][ev["tgid"] == tgid] & ~np.uint64(4095)).astype(np.int64))

    def _push(self, fds, usage, limit, scan: bool, forced: bool = True):
        """Scan (every SCAN_EVERY ticks), push the coldest pages while over limit - MARGIN, and
        after a scan bring back what is out but predicted back, as far as there is room."""
        over = usage - (limit - MARGIN)
        k_hot = int(limit * HOT_SHARE) // R.PAGE if forced else 0
        if scan or not hasattr(self, "_pids"):
            try:
                self._pids = R.anon_pids(self.lab.pids())
            except OSError:
                return
        for p in self._pids:
            try:
                if p not in fds:
                    fds[p] = R.pidfd_open(p)
                if scan:
                    self.pusher.scan(p)
                if over > 0 and not forced:  # at the limit the kernel picks: it sees young bits
                    over -= self.pusher.push(p, fds[p], over // R.PAGE + 1, forced=False) * R.PAGE
                if k_hot and scan:
                    self.pusher.keep_hot(p, k_hot)
            except (OSError, ValueError):
                fds.pop(p, None)


def thread_major_faults() -> int:
    """This thread's major faults so far (getrusage RUSAGE_THREAD). A fault the agent takes in the
    program's memory (process_vm_readv on a page that is out) is counted here, as the agent's,
    and in the group's pgmajfault, but not in the program's own rusage."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_majflt


def run_config(lab, wl, config: str, predictor=None, log: bool = False) -> dict:
    """Run workload `wl` once under `config` in `lab` (a set-up SwapLab); the limit is put back
    to the workload's own afterwards. `log` (or KPILOT_SWAP_LOG=1): the output keeps the
    controller's decision log."""
    wl.prepare_run()
    lab.set_limit(wl.limit_mb << 20)
    d = Driver(lab, config, predictor, log=log)
    st0, psi0, io0, cpu0 = lab.stat(), lab.pressure_us(), lab.io_pressure_us(), lab.cpu_pressure_us()
    kills0 = _oom_kills(lab)
    load0 = os.getloadavg()[0]
    # every config, the kernel alone too: a charge that reclaim cannot meet at the workload's own
    # limit waits OOM_WAIT s, then the kill is back on (which wakes it to try again). With the
    # kill on from the start for the kernel alone, its charges had no such second try: one
    # kernel-alone hot/cold run of three was OOM-killed where the others were not
    lab.set_oom_kill(False)
    try:
        with interrupts():  # a limit write past its deadline can be stopped
            r = run_measured(wl.argv, preexec=lab.enter, during=d)
    finally:
        lab.set_oom_kill(True)
    if d.pusher is not None:  # each page's quick refaults: the next run's history
        predictor.history_ = d.pusher.history()
    try:
        st1, psi1, io1, cpu1 = lab.stat(), lab.pressure_us(), lab.io_pressure_us(), lab.cpu_pressure_us()
    except FileNotFoundError:
        raise KpError(f"the memory cgroup {lab.cg} vanished mid-run; what is left was restored") from None
    from kernelpilot.memory.swaplab import wait_empty
    wait_empty(lab.cg)
    u = np.asarray(d.usage or [0], float)
    out = {"config": config, "seconds": r["seconds"], "exit_code": r["exit_code"],
           "program_user_s": r["user_s"], "program_sys_s": r["sys_s"],
           "mean_usage_mb": round(float(u.mean()) / 2**20, 2), "peak_usage_mb": round(float(u.max()) / 2**20, 2),
           "major_faults": lab.majfaults(st1) - lab.majfaults(st0), "program_major_faults": r["major_faults"],
           "refaults": lab.refaults(st1) - lab.refaults(st0),
           "psi_some_ms": round((psi1 - psi0) / 1e3, 1), "psi_io_some_ms": round((io1 - io0) / 1e3, 1),
           "psi_cpu_some_ms": round((cpu1 - cpu0) / 1e3, 1),
           "limit_steps": d.steps,
           "limit_refused": d.limit_refused, "limit_interrupted": d.limit_interrupted,
           "control_skipped_write_busy": d.write_busy, "agent_cpu_s": round(d.cpu_s, 3), "errors": d.errors,
           "oom_raised": d.oom_raised, "limit_clamped": d.clamped, "decisions": d.decisions,
           "oom_waits": d.oom_waits, "oom_kills": _oom_kills(lab) - kills0,
           "agent_major_faults": d.majflt,
           "loadavg": [round(load0, 2), round(os.getloadavg()[0], 2)]}  # the host's 1-min load, start and end
    if d.keep_log:
        out["decision_log"] = d.log
    if d.pusher is not None:
        out.update(pushed=d.pusher.pushed, pushed_back=d.pusher.refaulted, labels=d.pusher.labels,
                   brought_back=d.pusher.brought_back, fault_refaults=d.pusher.fault_refaults,
                   keep_hot_s=round(d.pusher.hot_s, 3))
    lab.set_limit(wl.limit_mb << 20)
    return out


def _oom_kills(lab) -> int:
    """The group's OOM kills so far (v1 memory.oom_control oom_kill; 0 where not shown)."""
    try:
        return (lab.oom_control() or {}).get("oom_kill", 0)
    except OSError:
        return 0


def _rotate(seq, k):
    k %= len(seq)
    return list(seq[k:]) + list(seq[:k])


def _median(rows, key):
    return float(np.median([r[key] for r in rows]))


def summarize(runs: list[dict]) -> dict:
    """Per config: medians and spread (min..max) over the repetitions that exited 0 (the others
    are counted as failed_runs); ratios against the kernel."""
    scored = {c: [r for r in runs if r["config"] == c and r.get("rep") != "history"] for c in CONFIGS}
    by = {c: [r for r in rows if r["exit_code"] == 0] for c, rows in scored.items()}
    out = {}
    for c, rows in by.items():
        if not rows:
            if scored[c]:
                out[c] = {"failed_runs": len(scored[c])}
            continue
        out[c] = {k: _median(rows, k) for k in ("seconds", "mean_usage_mb", "major_faults", "program_major_faults",
                                                 "refaults", "psi_some_ms", "agent_cpu_s")}
        out[c]["psi_io_some_ms"] = _median(rows, "psi_io_some_ms") if all("psi_io_some_ms" in r for r in rows) else None
        if all("psi_cpu_some_ms" in r for r in rows):
            # the run less its time runnable waiting for a CPU: on this shared host that wait is
            # most of the spread of run times (4-14 s for the same sqlite run), not the config's
            out[c]["seconds_less_cpu_wait"] = float(np.median([r["seconds"] - r["psi_cpu_some_ms"] / 1e3 for r in rows]))
        out[c]["program_cpu_s"] = float(np.median([r.get("program_user_s", 0) + r.get("program_sys_s", 0) for r in rows]))
        if all("agent_major_faults" in r for r in rows):
            # the program's faults and the ones the agent took for it (its touches): a page the agent
            # swapped in is one the program did not fault on, so only the sum is the policy's count
            out[c]["agent_major_faults"] = _median(rows, "agent_major_faults")
            out[c]["program_and_agent_major_faults"] = float(np.median(
                [r["program_major_faults"] + r["agent_major_faults"] for r in rows]))
        out[c]["failed_runs"] = len(scored[c]) - len(rows)  # killed (a memcg OOM kill: -9) or failed
        out[c]["spread_seconds"] = [min(r["seconds"] for r in rows), max(r["seconds"] for r in rows)]
        out[c]["spread_mean_usage_mb"] = [min(r["mean_usage_mb"] for r in rows), max(r["mean_usage_mb"] for r in rows)]
    k = out.get("kernel")
    if k and "seconds" in k:
        for c in CONFIGS[1:]:
            if c in out and "seconds" in out[c]:
                o = out[c]
                o["saved_vs_kernel"] = round(1 - o["mean_usage_mb"] / max(k["mean_usage_mb"], 1e-9), 4)
                o["slowdown"] = round(o["seconds"] / max(k["seconds"], 1e-9) - 1, 4)
                o["major_fault_ratio"] = round(o["major_faults"] / max(k["major_faults"], 1), 4)
                o["program_major_fault_ratio"] = round(o["program_major_faults"] / max(k["program_major_faults"], 1), 4)
                if "program_and_agent_major_faults" in o and "program_and_agent_major_faults" in k:
                    o["program_and_agent_major_fault_ratio"] = round(
                        o["program_and_agent_major_faults"] / max(k["program_and_agent_major_faults"], 1), 4)
                o["speed_ratio"] = round(k["seconds"] / max(o["seconds"], 1e-9), 4)
                if "seconds_less_cpu_wait" in o and "seconds_less_cpu_wait" in k:
                    o["slowdown_less_cpu_wait"] = round(o["seconds_less_cpu_wait"] / max(k["seconds_less_cpu_wait"], 1e-9) - 1, 4)
                # the program's own CPU time (user + sys, with the reclaim it does itself): its
                # work, where wall time on a loaded host is mostly waiting for a CPU
                o["program_cpu_ratio"] = round(k["program_cpu_s"] / max(o["program_cpu_s"], 1e-9), 4)
    return out


def experiment(names: list[str], reps: int, quick: bool, zram_mb: int = 1024, progress=None,
               configs=CONFIGS, limit_mb: int | None = None, seed: int | None = None,
               reps_by: dict | None = None, log: bool = False) -> dict:
    """Each workload: `reps` rounds (`reps_by[name]` where given) of kernel / senpai / kernelpilot,
    the order rotated each round (interleaved, so the shared host's noise falls on all three);
    `seed`: a dev seed for the workloads (None: the bench's own); `log`: each run keeps its
    controller's decision log. kernelpilot first has one
    unscored history run; each of its scored runs starts from the predictor (weights and page
    history) that run left, and learns online from there."""
    import shutil
    from pathlib import Path

    from kernelpilot.agent.journal import Journal
    from kernelpilot.errors import KpError
    from kernelpilot.memory.live import signals_restore
    from kernelpilot.memory.swaplab import SwapLab
    from kernelpilot.memory.workloads import LIVE_WORKLOADS
    bad = [n for n in names if n not in LIVE_WORKLOADS]
    if bad:
        raise KpError(f"unknown workload '{bad[0]}'; choose from {', '.join(LIVE_WORKLOADS)}")
    if reps <= 0 or any(n <= 0 for n in (reps_by or {}).values()):
        raise KpError("--reps must be > 0")
    if limit_mb is not None and limit_mb <= 0:
        raise KpError("--limit-mb must be > 0")
    bad = [c for c in configs if c not in CONFIGS]
    if bad or not configs:
        raise KpError(f"unknown config '{bad[0] if bad else ''}'; choose from {', '.join(CONFIGS)}")
    from kernelpilot.scratch import scratch
    res: dict = {"workloads": {}, "notes": []}
    with scratch("swapbench") as work:  # a killed run's workload files go with the next run
        with signals_restore(), Journal("memory-swap", enforce=True) as j:
            lab = SwapLab(j, 64, zram_mb).open()
            res["notes"] += lab.notes
            res["cgroup"] = f"{lab.kind} memory cgroup, pressure from " + \
                ("its own cgroup-v2 group" if lab.psi_cg is not None else "the host")
            for name in names:
                d = work / name
                d.mkdir()
                wl = LIVE_WORKLOADS[name](d, quick, seed)
                if limit_mb:
                    wl.limit_mb = limit_mb
                pred = R.RefaultPredictor()
                runs = []
                if "kernelpilot" in configs:
                    h = run_config(lab, wl, "kernelpilot", pred, log)  # history run: not scored
                    h["rep"] = "history"
                    runs.append(h)
                    lab.empty()
                learned = pred.snapshot()
                for rep in range((reps_by or {}).get(name, reps)):
                    for c in _rotate(list(configs), rep):
                        if c == "kernelpilot":  # each round starts from what the history run taught
                            pred.restore(learned)
                        r = run_config(lab, wl, c, pred if c == "kernelpilot" else None, log)
                        r["rep"] = rep
                        runs.append(r)
                        if progress:
                            progress(name, c, rep, r)
                        lab.empty()
                res["workloads"][name] = {"note": wl.note, "limit_mb": wl.limit_mb, "runs": runs,
                                          "summary": summarize(runs),
                                          "refault_model": dict(zip(R.FEATURES, np.round(pred.coef_, 3).tolist()))}
                if wl.floor is not None:
                    res["workloads"][name]["major_fault_floor"] = wl.floor(wl.limit_mb)
                shutil.rmtree(d, ignore_errors=True)
            res["journal"] = {k: v for k, v in j.counts.items() if v}
    return res
