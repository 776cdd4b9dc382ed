"""Two-stage live detection. Stage 1 (bpf/sc_watch.bpf.c) keeps the tree's features per thread
over a sliding 32-call window in sys_enter and scores it every 8 calls with the kernelize map
interpreter; only windows over the calibrated threshold come up the ring buffer. Stage 2 here
re-scores the window (with its context) with the user-space model and confirms, against the
program's own profiles too (profiles.py); behaviour rules (rules.py) run on a second ring of
kernel events; what fires is grouped into incidents (incidents.py) and printed as JSON lines.
Responses: alert (default); with enforce, freeze (cgroup v2 freezer, else SIGSTOP) or kill,
never pid 1, kernelpilot itself or an allow-listed command. Freezes are journalled and undone."""
from __future__ import annotations

import json
import os
import signal
import socket
import struct
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from kernelpilot.errors import CapabilityError, KpError
from kernelpilot.security.features import FBITS, SCHEDULED
from kernelpilot.security.model import SecurityModel
from kernelpilot.security.procinfo import V2
from kernelpilot.security.profiles import RELEARN_MAX
from kernelpilot.security.syscalls import UNKNOWN, number_to_name

SRC = Path(__file__).resolve().parent / "bpf" / "sc_watch.bpf.c"
WIN, STRIDE, CTX, NFEAT, MAXNR = 32, 8, 64, 9, 512
ALERT_DTYPE = np.dtype([("ts", "<u8"), ("cgroup", "<u8"), ("pid", "<u4"), ("tgid", "<u4"), ("count", "<u4"), ("score", "<i4"),
                        ("feats", "<u2", 12), ("calls", "<u2", CTX), ("comm", "S16")])  # struct sc_alert
# the syscalls behaviour() in bpf/sc_watch.h looks at (its case labels; a test keeps them equal)
SC_RULE_NRS = (1, 18, 20, 296, 328, 2, 257, 437, 42, 43, 50, 288, 105, 106, 113, 114, 117, 119, 122, 123,
               126, 90, 91, 268, 452, 188, 189, 190, 82, 264, 316)
CFG = struct.Struct("<IiIII")  # struct sc_cfg: exclude_tgid, threshold, enabled, vmod, gen
QUARANTINE = "kpilot-quarantine"
ALERTS_KEPT = 1000  # alerts a watch and the agent's security pilot keep (a noisy host raises them without end; all are counted)
LONG_LIVED_S = 60.0  # a process this old (or older than watch) is a long-lived one: its isolated windows are tolerated
JOURNAL = Path(os.environ.get("KPILOT_STATE", "/var/lib/kernelpilot")) / "security-journal.jsonl"


def kernel_tables(tree, vocab) -> tuple[np.ndarray, np.ndarray]:
    """Per x86-64 syscall number: the packed feature increment (rare, classes) and vocabulary id,
    exactly the per-call features of Tree.features (novelty is added in the kernel)."""
    names = number_to_name("x86_64")
    spread = np.zeros(MAXNR, dtype=np.uint64)
    vid = np.zeros(MAXNR, dtype=np.uint32)
    for nr in range(MAXNR):
        v = vocab.index.get(names.get(nr, UNKNOWN), 0)
        bits = [0, tree.rare[v], *tree.classes[v]]
        vid[nr] = v
        spread[nr] = sum(int(b) << (FBITS * i) for i, b in enumerate(bits))
    return spread, vid


class KernelStage:
    """The loaded, attached in-kernel stage for one model's tree (kernelize map interpreter).

    sensor: an already loaded object that holds the stage in its own sys_enter program (the agent's
    kp_trace build, agent/sensor.py); the stage fills its maps and enables it there, and leaves it
    loaded at close. Without one, sc_watch.bpf.c is loaded and attached on its own."""

    def __init__(self, model: SecurityModel, threshold: int | None = None, sensor=None):
        from kernelpilot.bpf.build import build_object
        from kernelpilot.kernelize.kernel import BPF_SRC
        from kernelpilot.probes.libbpf import BpfObject
        from kernelpilot.probes.ringbuf import RingReader
        tree = model.detectors.get("tree")
        if tree is None:
            raise KpError("the model has no tree detector: train with --detectors including tree")
        if (model.window, model.stride) != (WIN, STRIDE):
            raise KpError(f"the in-kernel stage needs window {WIN} and stride {STRIDE}; "
                          f"the model uses {model.window}/{model.stride}")
        if threshold is None:
            threshold = model.thresholds.get("tree", {}).get("fpr_1pct")
            if threshold is None:
                raise KpError("the model has no calibrated tree threshold (train with kpilot security train)")
        if os.geteuid() != 0:
            raise CapabilityError("the in-kernel stage needs root (eBPF)")
        self.threshold = int(np.floor(threshold))
        self.owned = sensor is None
        # SRC.parent among the includes: sc_watch.h joins the build's cache key
        self.obj = BpfObject(build_object(SRC, includes=(SRC.parent, BPF_SRC))) if self.owned else sensor
        self.links, self.ring, self.events = [], None, None
        try:
            self._fill(tree, model.vocab)
            self.prog = self.obj.program("sc_sys_enter").attach() if self.owned else self.obj.program("kp_sys_enter")
            from kernelpilot.security.rules import EVENT_DTYPE
            self.links = [self.obj.program(p).attach() for p in ("sc_exec", "sc_fork", "sc_exit")]
            self.ring = RingReader(self.obj.map("sc_alerts"), ALERT_DTYPE)
            self.events = RingReader(self.obj.map("sc_events"), EVENT_DTYPE)
        except BaseException:
            self.close()
            raise

    def _fill(self, tree, vocab) -> None:
        from kernelpilot.kernelize.kernel import encode_slot
        o = self.obj
        spread, vid = kernel_tables(tree, vocab)
        info = np.zeros(MAXNR, dtype=[("spread", "<u8"), ("vid", "<u4"), ("rules", "<u4")])
        info["spread"], info["vid"] = spread, vid
        info["rules"][list(SC_RULE_NRS)] = 1
        keys = np.arange(MAXNR, dtype="<u4")
        o.map("sc_nrinfo").update_batch(keys.tobytes(), info.tobytes(), MAXNR)
        words = tree.words.astype("<u8")
        o.map("sc_grams").update_batch(np.arange(len(words), dtype="<u4").tobytes(), words.tobytes(), len(words))
        o.map("kp_model_slots").update(0, encode_slot(tree.model))
        o.map("kp_model_active").update(0, struct.pack("<I", 0))
        st = o.map("sc_state")
        if not self.owned and st.type == 2:  # ARRAY by thread id (agent sensor): no window left from a stage before
            st.update_batch(np.arange(st.max_entries, dtype="<u4").tobytes(), bytes(st.max_entries * st.value_size),
                            st.max_entries)
        gen = int.from_bytes(os.urandom(4), "little") | 1  # this model's memo key (sc_watch.h)
        o.map("sc_cfg").update(0, CFG.pack(os.getpid(), self.threshold, 1, tree.vmod, gen))
        self.n_grams = int(sum(bin(int(w)).count("1") for w in words))

    def stats(self) -> dict:
        m = self.obj.map("sc_stats")
        return {name: (m.sum_percpu_u64(k) or [0])[0]
                for k, name in enumerate(("syscalls", "windows", "sent", "dropped", "events", "events_dropped"))}

    def close(self) -> None:
        for r in (self.ring, self.events):
            if r is not None:
                r.close()
        if self.owned:
            self.obj.close()
            return
        self.obj.map("sc_cfg").update(0, bytes(CFG.size))  # disabled: the sensor's sys_enter skips the stage
        for p in self.links:
            p.detach()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def protected(pid: int, comm: str, allow: list[str]) -> str | None:
    """Why a process must not be acted on, or None."""
    if pid <= 1:
        return "pid 1"
    if pid in (os.getpid(), os.getppid()):
        return "kernelpilot itself"
    cmd = _cmdline(pid)
    if "kpilot" in cmd or "kernelpilot" in cmd:
        return "kernelpilot itself"
    if comm in allow or os.path.basename(cmd.split(" ")[0]) in allow:
        return "allow-listed"
    return None


class Responder:
    """Freeze (cgroup v2 freezer in kpilot-quarantine/pid-N, else SIGSTOP) or kill confirmed
    processes. Freezes go through the agent journal: they are thawed when watch exits (or its
    guardian, if watch is killed), or earlier with `kpilot security release PID`."""

    def __init__(self, action: str = "freeze"):
        from kernelpilot.agent.journal import Journal
        self.action = action
        self.journal = Journal("security", enforce=True).open()
        self.acted: set[int] = set()
        self.freezer = (V2 / "cgroup.procs").exists() and os.access(V2, os.W_OK)

    def act(self, pid: int, comm: str) -> str:
        from kernelpilot.agent.rollback import start_time
        if pid in self.acted:
            return "already handled"
        self.acted.add(pid)
        try:
            if self.action == "kill":
                os.kill(pid, signal.SIGKILL)
                return "killed"
            if not self.freezer:
                os.kill(pid, signal.SIGSTOP)
                _log({"action": "sigstop", "pid": pid, "comm": comm, "time": time.time()})
                return "stopped (SIGSTOP; kpilot security release PID sends SIGCONT)"
            top, mine = V2 / QUARANTINE, V2 / QUARANTINE / f"pid-{pid}"
            j = self.journal
            j.change("mkdir", {"path": str(top)}, True)
            j.change("mkdir", {"path": str(mine)}, True)
            st = start_time(pid)
            if st is None or not j.change("cgroup", {"tid": pid, "start": st, "hier": "v2", "mount": str(V2),
                                                      "comm": comm}, f"/{QUARANTINE}/pid-{pid}"):
                return "failed: process gone"
            j.change("file", {"path": str(mine / "cgroup.freeze")}, "1")
            return f"frozen in {mine}"
        except OSError as e:
            return f"failed: {e}"

    def close(self) -> dict:
        return self.journal.close()


def _log(entry: dict) -> None:
    try:
        JOURNAL.parent.mkdir(parents=True, exist_ok=True)
        with JOURNAL.open("a") as f:
            f.write(json.dumps(entry) + "\n")
    except OSError:
        pass


def release(pid: int) -> str:
    """Thaw a process frozen by `watch --enforce`: unfreeze, move it back, remove its cgroup."""
    from kernelpilot.agent.rollback import read_journal, replay, run_dir
    mine = V2 / QUARANTINE / f"pid-{pid}"
    if mine.is_dir():
        back = []
        for path in sorted(run_dir().glob("journal-*.jsonl")):
            _, entries, closed = read_journal(path)
            if not closed:
                back += [e for e in entries if e["target"].get("tid") == pid
                         or e["target"].get("path", "").startswith(str(mine))]
        (mine / "cgroup.freeze").write_text("0")
        replay(back)
        if mine.is_dir():  # not journalled (journal lost): thawed; move to the root, remove
            for p in (mine / "cgroup.procs").read_text().split():
                (V2 / "cgroup.procs").write_text(p)
            mine.rmdir()
        return f"released {pid} (thawed)"
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        raise KpError(f"no process {pid}") from None
    if state == "T":
        os.kill(pid, signal.SIGCONT)
        return f"released {pid} (SIGCONT)"
    raise KpError(f"process {pid} is not frozen or stopped by kpilot")


def confirm_detector(model: SecurityModel):
    for k in ("stide", "cnn", "freq"):  # stide: best confirm on the scenario suite (bench security)
        if k in model.detectors:
            return k, model.detectors[k]
    raise KpError("the model has no user-space detector (cnn, stide or freq) to confirm alerts")


class Watcher:
    """Stage 1 in the kernel, stage 2 here; `step()` handles what came up since the last call and
    returns the alert lines it printed (one per incident and what fired in it).

    Windows: confirmed when unusual for the host (stide), for the model's profile of the program
    and for the program's live profile; programs are learned first (profiles.py). Behaviour
    events: the rules (rules.py). Both fold into incidents per (process, program) (incidents.py)."""

    def __init__(self, model: SecurityModel, enforce=False, action="freeze", allow=(), threshold=None,
                 confirm: str = "fpr_0.1pct", learn_s: float = 600.0, new_s: float | None = None,
                 cooldown_s: float = 60.0, confirm_threshold: float | None = None, profiles=None,
                 min_windows: int = 2, frame_s: float = 10.0, sensor=None, long_lived_s: float = LONG_LIVED_S,
                 learn_from=None):
        from kernelpilot.security.confirm import BatchScorer
        from kernelpilot.security.cpuburn import CpuBurn
        from kernelpilot.security.incidents import Incidents
        from kernelpilot.security.procinfo import ProcTable
        from kernelpilot.security.profiles import LiveProfiles
        from kernelpilot.security.rules import Rules
        self.model, self.enforce, self.allow = model, enforce, list(allow)
        self.kname, self.kdet = confirm_detector(model)
        self.cthr = model.thresholds.get(self.kname, {}).get(confirm) if confirm_threshold is None else confirm_threshold
        if self.cthr is None:
            raise KpError("the model has no calibrated thresholds (train with kpilot security train)")
        if cooldown_s < 0:
            raise KpError("--cooldown must be >= 0 seconds")
        if min_windows < 1:
            raise KpError("--min-windows must be at least 1")
        # a model incident opens at the min_windows-th confirmed window of a process and program
        # within frame_s (pH's locality frame): one odd window of a long-lived server is not one
        self.min_windows, self.frame_ns = min_windows, int(frame_s * 1e9)
        self.long_lived_ns = int(long_lived_s * 1e9)
        # (pid, program) -> (windows, first ts, their 6-grams if tolerated when no incident follows)
        self.pending: dict[tuple[int, str], tuple] = {}
        self.host = socket.gethostname()
        self.wall_offset_ns = time.time_ns() - time.monotonic_ns()  # bpf_ktime_get_ns is CLOCK_MONOTONIC
        self.profiles = LiveProfiles(learn_s, learn_s if new_s is None else new_s, time.monotonic_ns())
        if profiles:
            self.profiles.load(profiles)
        self.procs = ProcTable()
        self.rules = Rules(self.procs, self.profiles)
        # learn_from(cgroup id) -> bool: while the host learns, only those cgroups' windows and behaviours
        # teach (a bench on a shared host learns its own mix, not other sessions' attack tests); None: all
        self.learn_from = self.rules.learn_from = learn_from
        self.cpu = CpuBurn(self.procs, self.profiles, self.rules)
        self.incidents = Incidents(cooldown_s)
        self.scorer = BatchScorer(model, self.kdet if self.kname == "stide" else None)
        self.kernel = KernelStage(model, threshold, sensor=sensor)
        try:
            self.responder = Responder(action) if enforce else None
        except BaseException:
            self.kernel.close()
            raise
        self.names = number_to_name("x86_64")
        self.alerts: deque[dict] = deque(maxlen=ALERTS_KEPT)  # the latest; n_alerts counts them all
        self.n_alerts = 0
        self.ended: list[dict] = []  # incidents' closing lines, for the caller to take (take_ended)
        self.windows_up = self.windows_confirmed = self.events_up = 0
        self._pruned = 0
        self._known_cache: dict[str, bool] = {}

    def rfc3339(self, ts_ns: int) -> str:
        t = datetime.fromtimestamp((ts_ns + self.wall_offset_ns) / 1e9, tz=timezone.utc).astimezone()
        return t.isoformat(timespec="milliseconds")

    def step(self) -> list[dict]:
        # windows polled before events: the fork and exec of every process whose window came up
        # are then in hand (the other order raced: a window of a process exec'd between the two
        # polls was judged as an unknown program, with no exe or command line)
        recs = self.kernel.ring.poll()
        evs = self.kernel.events.poll()
        self.events_up += len(evs)
        hits = self.rules.on_events(evs) + self.cpu.sample(time.monotonic_ns())
        out = [self._fire(h["pid"], h["tid"], h["ts"], h["cgroup_id"], h["comm"], h["rule"],
                          {"detail": h["detail"], "uid": h["uid"]}) for h in hits]
        self.windows_up += len(recs)
        if len(recs):
            out += self._windows(recs)
        now = time.monotonic_ns()
        self.ended += [self._end(i) for i in self.incidents.expire(now)]
        for k in [k for k, v in self.pending.items() if now - v[1] > self.frame_ns]:  # frames that passed
            seen, _, held, _ = self.pending.pop(k)
            self._tolerate(k[1], held, seen)
        if now - self._pruned > 10e9:
            self.procs.prune(now)
            self.rules.prune(now)
            self.cpu.prune()
            self._pruned = now
        out = [a for a in out if a]
        self.alerts.extend(out)
        self.n_alerts += len(out)
        return out

    def take_ended(self) -> list[dict]:
        """The closing lines of incidents ended since the last call (a long watch keeps none)."""
        out, self.ended = self.ended, []
        return out

    def finish(self) -> list[dict]:
        """Close every open incident (watch ends); their closing lines."""
        out = [self._end(i) for i in self.incidents.expire(None)]
        self.ended += out
        return out

    def _windows(self, recs) -> list[dict]:
        """Learn or judge the windows that came up, grouped by program (vectorized per group);
        confirmed ones fire as the model."""
        progs, sc, out = self.model.programs, self.scorer, []
        if self.learn_from is not None:  # windows from elsewhere while the host learns: neither learned nor judged
            cgs, inv = np.unique(recs["cgroup"], return_inverse=True)
            ok = np.array([bool(self.learn_from(int(c))) for c in cgs])[inv]
            recs = recs[ok | (recs["ts"].astype(np.int64) >= self.profiles.host_end_ns)]
            if not len(recs):
                return out
        ids, n = sc.ids_of(recs["calls"], recs["count"])
        whole = sc.whole(n, recs["count"])  # positions whose 6-gram is whole
        hw, mask = sc.grams(ids, CTX - WIN), whole[:, CTX - WIN:]
        if self.kname == "stide":
            nov2 = sc.novel(hw, sc.table)
            s2 = sc.share(nov2, mask)
        else:  # cnn / freq confirm: one window at a time
            nov2 = np.ones(hw.shape, dtype=bool)
            s2 = np.array([float(self.kdet.window_scores(self.model.vocab.encode(self._calls(a)))[-1]) for a in recs])
        ts = recs["ts"].astype(np.int64)
        cw = np.ascontiguousarray(recs["comm"]).view(np.uint64).reshape(-1, 2)  # comm as a number
        ukey, ufirst, cinv = np.unique(cw[:, 0] * np.uint64(0x9E3779B97F4A7C15) ^ cw[:, 1], return_index=True,
                                       return_inverse=True)
        comms = [recs["comm"][i].decode(errors="replace") for i in ufirst]
        for prog, rows in self._by_program(recs, ts, cinv, comms).items():
            comm = comms[cinv[rows[0]]]
            prof = self.profiles.get(prog, int(ts[rows].min()))
            known = progs is not None and self._known(comm)
            if self.profiles.learning(prof, known, int(ts[rows].max())):
                self.profiles.learn(prof, sc.grams(ids[rows])[whole[rows]], len(rows))
                continue
            came = rows
            rows = rows[s2[rows] > self.cthr]
            if not len(rows):
                self._relearn(prof, came, rows, ids, whole, ts)
                continue
            prof.judged += len(rows)
            nov, thr = nov2[rows], np.full(len(rows), self.cthr)
            s3 = None
            if progs is not None:  # stage 3: novel for the model's profile of this program
                for c in np.unique(cinv[rows]):
                    sel = cinv[rows] == c
                    nov[sel] = sc.novel(hw[rows[sel]], progs.table(comms[c]))
                    thr[sel] = progs.threshold(comms[c])
                s3 = sc.share(nov, mask[rows])
                keep = s3 > thr
                rows, nov, thr, s3 = rows[keep], nov[keep], thr[keep], s3[keep]
            s4, grams = None, prof.grams()
            if len(rows) and len(grams):  # and for what the program did while learning
                nov = nov & sc.novel(hw[rows], grams)
                s4 = sc.share(nov, mask[rows])
                keep = s4 > thr
                rows, thr, s4 = rows[keep], thr[keep], s4[keep]
                s3 = s3[keep] if s3 is not None else None
            self._relearn(prof, came, rows, ids, whole, ts)
            self.windows_confirmed += len(rows)
            pids = recs["tgid"][rows]
            for pid in np.unique(pids):  # per process: its first window may open an incident
                mine = np.flatnonzero(pids == pid)
                mine = mine[np.argsort(ts[rows[mine]], kind="stable")]
                t_last = int(ts[rows[mine[-1]]])
                t0 = int(ts[rows[mine[0]]])
                if not self.incidents.is_open(int(pid), prog, t0):
                    seen, since, held, last = self.pending.get((int(pid), prog), (0, t0, None, {}))
                    if t_last - since > self.frame_ns:
                        self._tolerate(prog, held, seen)
                        seen, since, held, last = 0, t0, None, {}
                    need = self.min_windows - seen
                    fresh = np.cumsum(_apart(recs["pid"][rows[mine]], recs["count"][rows[mine]], last))
                    if fresh[-1] < need:
                        if self._long_lived(int(pid), t_last) and self.profiles.keeps_learning(prof):
                            g = sc.grams(ids[rows[mine]])[whole[rows[mine]]]
                            held = g if held is None else np.concatenate([held, g])
                        self.pending[(int(pid), prog)] = (seen + int(fresh[-1]), since, held, last)
                        continue
                    self.pending.pop((int(pid), prog), None)
                    mine = mine[int(np.argmax(fresh >= need)):]  # the window that completes the frame opens it
                j = mine[0]
                i = rows[j]
                inc, line = self.incidents.add(int(pid), prog, "model", int(ts[i]), len(mine), t_last)
                if not line:  # folded into an open incident: counted, no line to build
                    continue
                a = recs[i]
                calls = self._calls(a)
                res = {"score": round(float(s2[i]), 4), "threshold": round(float(self.cthr), 4)}
                model = f"tree+{self.kname}"
                if s3 is not None:
                    res.update(program_score=round(float(s3[j]), 4), program_threshold=round(float(thr[j]), 4),
                               program_known=known)
                    model += "+program"
                if s4 is not None:
                    res.update(live_score=round(float(s4[j]), 4), live_threshold=round(float(thr[j]), 4),
                               live_learned=prof.learned)
                    model += "+live"
                res.update(model=model, window=calls[-WIN:], calls_seen=int(a["count"]),
                           kernel_score=int(a["score"]), kernel_threshold=self.kernel.threshold)
                out.append(self._line(inc, int(pid), int(a["pid"]), int(ts[i]), int(a["cgroup"]), comms[cinv[i]],
                                      "model", res))
        return out

    def _relearn(self, prof, came, kept, ids, whole, ts) -> None:
        """Continued learning: a learned program's windows stage 2 dismissed join its profile (slowly)."""
        if len(came) > len(kept) and self.profiles.relearn_due(prof, int(ts[came].max())):
            ok = np.setdiff1d(came, kept)[:RELEARN_MAX]
            self.profiles.relearn(prof, self.scorer.grams(ids[ok])[whole[ok]], len(ok))

    def _long_lived(self, pid: int, ts: int) -> bool:
        p = self.procs.get(pid, ts)
        return p.since_ns == 0 or ts - p.since_ns >= self.long_lived_ns

    def _tolerate(self, prog: str, held, windows: int) -> None:
        """pH's tolerance: a long-lived process's confirmed windows that no second followed within
        the frame join its program's profile, so the same rare path does not fire next time."""
        if held is not None and len(held):
            self.profiles.tolerate(self.profiles.get(prog, 0), held, windows)

    def _known(self, comm: str) -> bool:
        k = self._known_cache.get(comm)
        if k is None:
            k = self._known_cache[comm] = self.model.programs.known(comm)
        return k

    def _by_program(self, recs, ts, cinv, comms) -> dict[str, np.ndarray]:
        """Row indices per program (procinfo.Proc.program); a pid that exec'd meanwhile is resolved per row."""
        pids = recs["tgid"]
        order = np.argsort(pids, kind="stable")
        cuts = np.flatnonzero(np.diff(pids[order])) + 1
        groups: dict[str, list] = {}
        for rows in np.split(order, cuts):
            pid = int(pids[rows[0]])
            runs = self.procs.procs.get(pid)
            if runs is not None and len(runs) > 1:
                for i in rows:
                    groups.setdefault(self.procs.get(pid, int(ts[i])).program, []).append(np.array([i]))
                continue
            groups.setdefault(self.procs.get(pid).program, []).append(rows)
        return {k: np.sort(np.concatenate(v)) for k, v in groups.items()}

    def _calls(self, a) -> list[str]:
        return [self.names.get(int(c), UNKNOWN) for c in a["calls"][:min(int(a["count"]), CTX)]]

    def _fire(self, pid, tid, ts, cgroup_id, comm, what, extra) -> dict | None:
        p = self.procs.get(pid, ts)
        inc, line = self.incidents.add(pid, p.program, what, ts)
        return self._line(inc, pid, tid, ts, cgroup_id, comm, what, extra) if line else None

    def _line(self, inc, pid, tid, ts, cgroup_id, comm, what, extra) -> dict:
        p = self.procs.get(pid, ts)
        exe = p.exe or f"[{comm}]"
        uid = p.uid if p.uid >= 0 else extra.pop("uid", -1)
        extra.pop("uid", None)
        alert = {"event": "alert", "time": self.rfc3339(ts), "host": self.host, "incident": inc.id,
                 "fired": what, "incident_fired": list(inc.fired), "windows": inc.windows,
                 "pid": pid, "ppid": p.ppid, "tid": tid, "uid": uid, "comm": comm, "exe": exe, "program": p.program,
                 "cmdline": p.cmdline, "parents": self.procs.chain(pid, ts), "cgroup": p.cgroup,
                 "cgroup_id": cgroup_id, "ts": ts}
        if what != "model":  # the agent and older readers expect these on every alert
            extra = {"model": f"rule:{what}", "score": 1.0, "threshold": 0.0, **extra}
        alert.update(extra)
        if self.enforce and len(inc.fired) == 1:
            why = protected(pid, comm, self.allow)
            alert["action"] = f"skipped ({why})" if why else self.responder.act(pid, comm)
            _log({**alert, "wall": time.time()})
        return alert

    def _end(self, inc) -> dict:
        return {"event": "incident_end", "time": self.rfc3339(inc.last_ns), "host": self.host, "incident": inc.id,
                "pid": inc.pid, "program": inc.program, "fired": inc.fired, "windows": inc.windows, "hits": inc.hits,
                "seconds": round((inc.last_ns - inc.first_ns) / 1e9, 3)}

    def stats(self) -> dict:
        return {**self.kernel.stats(), "windows_up": self.windows_up, "windows_confirmed": self.windows_confirmed,
                "events_up": self.events_up, "incidents": self.incidents.n, "alert_lines": self.incidents.lines,
                "procs": len(self.procs.procs), "procs_evicted": self.procs.evicted,
                "rules": dict(self.rules.counts), **self.profiles.summary()}

    def close(self):
        if self.responder:
            self.responder.close()
        self.kernel.close()


def _apart(tids, counts, last: dict) -> np.ndarray:
    """Which windows (in time order) count towards opening an incident: those that share no call
    with an earlier counted window of the same thread (last: tid -> its calls_seen, updated).
    Windows overlap (WIN calls every STRIDE, and one more at exit_group), so one odd stretch of
    calls, such as a short-lived process's rare ending, is confirmed in up to WIN/STRIDE + 1
    windows: counted once, it no longer passes for min_windows separate ones."""
    out = np.zeros(len(tids), dtype=bool)
    for k, (t, c) in enumerate(zip(tids.tolist(), counts.tolist())):
        if t not in last or c - last[t] >= WIN:
            out[k], last[t] = True, c
    return out


def default_model(reps: int = 3, system_s: float = 5.0) -> SecurityModel:
    """Learn this host's normal behaviour when no model is given: the benign scenarios (the last
    repetition held out to calibrate thresholds) plus a few seconds of normal system activity."""
    import tempfile

    from kernelpilot.security.scenarios.run import host_training_set
    with tempfile.TemporaryDirectory(prefix="kp-watch-") as d:
        train, cal = host_training_set(d, reps, system_s)
    return SecurityModel.train(train, ("tree", "stide"), calibration=cal, skip=SCHEDULED)


def watch(model_path, enforce=False, action="freeze", allow=(), duration=None, json_out=False,
          confirm="fpr_0.1pct", output=None, learn_s=600.0, new_s=None, cooldown_s=60.0, profiles=None,
          min_windows=2) -> None:
    out = None
    if output is not None:
        try:
            out = open(output, "a", buffering=1)
        except OSError as e:
            raise KpError(f"cannot write alerts to {output}: {e.strerror}") from None
    try:
        _watch(model_path, enforce, action, allow, duration, json_out, confirm, out, learn_s, new_s, cooldown_s,
               profiles, min_windows)
    finally:
        if out:
            out.close()


def _watch(model_path, enforce, action, allow, duration, json_out, confirm, out, learn_s, new_s, cooldown_s,
           profiles, min_windows) -> None:
    model = SecurityModel.load(model_path) if model_path else default_model()
    w = Watcher(model, enforce, action, allow, confirm=confirm, learn_s=learn_s, new_s=new_s, cooldown_s=cooldown_s,
                min_windows=min_windows,
                profiles=profiles if profiles and Path(profiles).exists() else None)
    from rich.console import Console
    from rich.markup import escape

    from kernelpilot.security.rules import RULES
    err = Console(stderr=True)
    err.print(f"watching (in-kernel tree, threshold {w.kernel.threshold}, {w.kernel.n_grams} normal 3-grams; "
              f"confirm with {w.kname} > {w.cthr:.4g}); learning this host for {learn_s:g} s, programs first seen "
              f"later for {w.profiles.new_s:g} s, learned programs keep learning while they behave; rules: "
              f"{', '.join(RULES)}{'' if w.cpu.on else ' (cpu_burn off: no /proc schedstat or io)'}; "
              f"incidents cool down after {cooldown_s:g} s; "
              f"{'ENFORCING ' + action if enforce else 'alert only'}; Ctrl-C to stop", highlight=False)

    def report(lines):
        for a in lines:
            line = json.dumps(a)
            if out:
                out.write(line + "\n")
            if json_out:
                print(line, flush=True)
            elif a["event"] == "alert":
                err.print("[bold red]ALERT[/] " + escape(
                          f"{a['time']} #{a['incident']} {a['fired']} pid {a['pid']} {a['comm']} {a['exe']} "
                          f"[{a['cmdline'][:60]}] score {a['score']} > {a['threshold']} {a.get('action', '')}"),
                          highlight=False)
            else:
                err.print(escape(f"incident #{a['incident']} pid {a['pid']} {a['program']} ended: {a['hits']} in "
                                 f"{a['seconds']} s"), highlight=False)

    def flush():
        report(w.step())
        report(w.take_ended())
    t0 = time.monotonic()
    try:
        try:
            while duration is None or time.monotonic() - t0 < duration:
                flush()
                time.sleep(0.05)
        except KeyboardInterrupt:
            pass
        flush()  # windows that came up since the last poll
        report(w.finish())
    finally:
        st = w.stats()
        w.close()
        if profiles:
            w.profiles.save(profiles)
    err.print(escape(f"stats: {st}, windows up: {w.windows_up}, confirmed alerts: {w.n_alerts}"), highlight=False)


WORKLOAD = r"""for i in $(seq 24); do printf '#include <stdio.h>\nint f%d(int x){return x*%d;}\n' $i $i > f$i.c; done
ls f*.c | xargs -P 2 -n 4 gcc -O1 -c && gcc -shared -o lib.so *.o
"""
FLOOD_C = r"""#include <unistd.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <time.h>
int main(int c, char **v){ long n = atol(v[1]); struct timespec a, b; clock_gettime(CLOCK_MONOTONIC, &a);
for (long i = 0; i < n; i++) syscall(SYS_getppid);
clock_gettime(CLOCK_MONOTONIC, &b); printf("%f\n", n / ((b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9)); return 0; }
"""


def _time_workload(d: str) -> float:
    import subprocess
    t = time.perf_counter()
    from kernelpilot.security.scenarios.run import in_workdir
    subprocess.run(["bash", "-c", in_workdir(d, WORKLOAD)], check=True, capture_output=True)
    return time.perf_counter() - t


def _flood(d: str, n: int) -> float:
    import subprocess
    return float(subprocess.run([f"{d}/flood", str(n)], capture_output=True, text=True, check=True).stdout)


def _flood_read(d: str, n: int, k) -> float:
    """The flood, with a consumer reading the ring as watch does (every 50 ms)."""
    if k is None:
        return _flood(d, n)
    import threading
    stop = threading.Event()

    def consume():
        while not stop.is_set():
            k.ring.poll()
            time.sleep(0.05)
    th = threading.Thread(target=consume)
    th.start()
    try:
        return _flood(d, n)
    finally:
        stop.set()
        th.join()
        k.ring.poll()


def overhead(model: SecurityModel, quick: bool = True, reps: int | None = None) -> dict:
    """Compile workload and a getppid flood with and without the in-kernel stage, runs interleaved
    (off/on, then on/off) so drift on a noisy machine hits both sides; medians compared.
    reps: pairs of runs (default 4 quick, 14 full)."""
    import subprocess
    import tempfile
    reps = reps or (4 if quick else 14)
    flood_n = 2_000_000 if quick else 10_000_000
    off, on, f_off, f_on, drops, seen, sent = [], [], [], [], 0, 0, 0
    with tempfile.TemporaryDirectory(prefix="kp-ovh-") as d:
        Path(d, "flood.c").write_text("#include <stdlib.h>\n" + FLOOD_C)
        subprocess.run(["gcc", "-O2", "-o", f"{d}/flood", f"{d}/flood.c"], check=True)
        _time_workload(d)  # warm caches
        k = KernelStage(model)
        k.close()  # warm the object build cache
        for i in range(reps):
            for stage_on in ((False, True) if i % 2 == 0 else (True, False)):
                k = KernelStage(model) if stage_on else None
                try:
                    (on if stage_on else off).append(_time_workload(d))
                    (f_on if stage_on else f_off).append(_flood_read(d, flood_n, k))
                    if k:
                        st = k.stats()
                        drops, seen, sent = drops + st["dropped"], seen + st["syscalls"], sent + st["sent"]
                finally:
                    if k:
                        k.close()
    mo, mn = float(np.median(off)), float(np.median(on))
    fo, fn = float(np.median(f_off)), float(np.median(f_on))
    return {"workload": "24 small C files, gcc -O1 with xargs -P2 + link (kernel-build-like)",
            "runs_each": reps, "median_s_off": round(mo, 3), "median_s_on": round(mn, 3),
            "overhead_ratio": round(mn / mo, 4), "flood_syscalls_per_s_off": round(fo),
            "flood_syscalls_per_s_on": round(fn), "flood_cost_ratio": round(fo / fn, 3),
            "ns_per_syscall_added": round(1e9 / fn - 1e9 / fo, 1),
            "stage_syscalls_seen": int(seen), "stage_windows_sent": int(sent), "stage_dropped": int(drops)}
