"""What `kpilot top` and `kpilot serve --metrics` show, sampled from the live host.

Per process (from /proc): CPU share, fault rates, context switches, observed and predicted CPU
burst (EWMA of run time per slice, the kernel's classic estimate), class from the scheduling
model where kernelpilot.sched is installed, an anomaly score (how far the fault and switch rates
are from the process's own history, in standard deviations), and the agent's last journaled
action. Per BPF program on the host (like bpftop): events/s and ns per run, with BPF_ENABLE_STATS
held while sampling. Optionally kernelpilot's own probes run system-wide (`events`), or, when
`kpilot agent run` is running, its state socket is read instead (no second set of probes)."""
from __future__ import annotations

import ctypes as C
import json
import os
import time
from dataclasses import dataclass, field

import numpy as np

CLK = os.sysconf("SC_CLK_TCK")


@dataclass
class Proc:
    pid: int
    comm: str
    cpu: float = 0.0          # share of one CPU
    faults_s: float = 0.0
    majflt_s: float = 0.0
    ctx_s: float = 0.0
    burst_us: float | None = None
    pred_burst_us: float | None = None
    klass: str = "-"
    anomaly: float = 0.0
    action: str = "-"
    events_s: float = 0.0


@dataclass
class Probe:
    id: int
    name: str
    type: int
    events_s: float = 0.0
    ns_per_run: float | None = None
    run_cnt: int = 0


@dataclass
class Snapshot:
    ts: float
    procs: list = field(default_factory=list)
    probes: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    events: int = 0


def _proc_counters(pid: int):
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        with open(f"/proc/{pid}/schedstat") as f:
            sched = f.read().split()
    except OSError:
        return None
    comm = stat[stat.index("(") + 1: stat.rindex(")")]
    f = stat[stat.rindex(")") + 2:].split()
    if int(f[6]) & 0x00200000:  # kernel thread
        return None
    ctx = 0
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.endswith("ctxt_switches\n") or "ctxt_switches" in line:
                    ctx += int(line.split()[1])
    except OSError:
        pass
    return comm, int(f[19]), (int(f[11]) + int(f[12])) / CLK, int(f[7]), int(f[9]), ctx, \
        int(sched[0]), int(sched[1]), int(sched[2])


# ---- BPF programs on the host (bpftop-style) ----

def bpf_programs() -> dict[int, tuple[str, int, int, int]]:
    """{prog id: (name, type, run_cnt, run_time_ns)} of every BPF program loaded on the host."""
    from kernelpilot.probes.libbpf import ProgInfo, lib
    L = lib()
    L.bpf_prog_get_next_id.argtypes = [C.c_uint32, C.POINTER(C.c_uint32)]
    L.bpf_prog_get_fd_by_id.argtypes = [C.c_uint32]
    out = {}
    cur, nxt = 0, C.c_uint32(0)
    while L.bpf_prog_get_next_id(cur, C.byref(nxt)) == 0:
        cur = nxt.value
        fd = L.bpf_prog_get_fd_by_id(cur)
        if fd < 0:
            continue
        try:
            info = ProgInfo()
            n = C.c_uint32(C.sizeof(info))
            if L.bpf_obj_get_info_by_fd(fd, C.byref(info), C.byref(n)) == 0:
                out[cur] = (info.name.decode(errors="replace") or f"prog{cur}", info.type, info.run_cnt, info.run_time_ns)
        finally:
            os.close(fd)
    return out


class Sampler:
    def __init__(self, events: list[str] | None = None, sched_model: str | None = None, top: int = 40,
                 bpf: bool = True):
        self.top = top
        self.prev: dict[int, tuple] = {}
        self.prev_t = time.monotonic()
        self.hist: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}   # pid -> EWMA mean, var, n
        self.pred: dict[int, float] = {}
        self.prev_probes: dict[int, tuple] = {}
        self.notes: list[str] = []
        self.src = None
        self.counts: dict[int, int] = {}
        self.total_events = 0
        self._stats = None
        self.clf = self._classifier(sched_model)
        if bpf:
            try:
                from kernelpilot.probes.libbpf import enable_stats
                self._stats = enable_stats()
                self._stats.__enter__()
            except Exception as e:
                self.notes.append(f"BPF statistics unavailable: {e}")
                self._stats = None
        self.agent = self._agent_socket()
        if events and self.agent is None:
            try:
                from kernelpilot.traces.sources import open_source
                self.src = open_source("ebpf", events)
            except Exception as e:
                self.notes.append(f"kernelpilot probes not started: {e}")

    def _agent_socket(self):
        """A running `kpilot agent run` answers on its state socket: read its events and classes
        instead of loading probes of our own."""
        try:
            from kernelpilot.agent.state import default_socket, read_state
        except ImportError:
            return None
        path = default_socket()
        st = read_state(path) if path.exists() else None
        if st is None:
            return None
        self.notes.append(f"from the running agent (pid {st.get('pid')}, {path})")
        self._agent_prev: dict[str, int] = dict(st.get("events_by_tgid", {}))
        self._agent_classes: dict[str, str] = {}
        return path

    def _from_agent(self) -> None:
        from kernelpilot.agent.state import read_state
        st = read_state(self.agent)
        if st is None:
            return
        cur = st.get("events_by_tgid", {})
        for k, v in cur.items():
            d = v - self._agent_prev.get(k, 0)
            if d > 0:
                self.counts[int(k)] = self.counts.get(int(k), 0) + d
                self.total_events += d
        self._agent_prev = dict(cur)
        self._agent_classes = st.get("classes", {})

    def _classifier(self, path):
        try:
            from kernelpilot.sched import evaluate as E
            from kernelpilot.sched.features import class_features
        except ImportError:
            self.notes.append("scheduling models not installed: no class column")
            return None
        self._class_features = class_features
        try:
            return E.load_classifier(path) if path else E.default_classifier()
        except Exception as e:
            from kernelpilot.errors import KpError
            if isinstance(e, KpError) or path:
                raise
            self.notes.append(f"scheduling classifier unavailable: {e}")
            return None

    def last_actions(self) -> dict[int, str]:
        """The newest journaled change per task of every agent still holding a journal."""
        try:
            from kernelpilot.agent.rollback import run_dir
        except ImportError:
            return {}
        out: dict[int, tuple[float, str]] = {}
        d = run_dir()
        for p in sorted(d.glob("journal-*.jsonl")) if d.is_dir() else []:
            try:
                lines = p.read_text().splitlines()
            except OSError:
                continue
            for line in lines:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if r.get("type") == "change" and isinstance(r.get("target"), dict):
                    tid = r["target"].get("tid")
                    if tid is not None and r.get("ts", 0) >= out.get(tid, (0, ""))[0]:
                        out[tid] = (r.get("ts", 0), f"{r['knob']} {r.get('old')} -> {r.get('new')}")
        return {k: v for k, (_, v) in out.items()}

    def _events(self) -> None:
        if self.agent is not None:
            self._from_agent()
            return
        if not self.src:
            return
        ev = self.src.poll()
        self.total_events += len(ev)
        if len(ev):
            t, c = np.unique(ev["tgid"], return_counts=True)
            for k, v in zip(t.tolist(), c.tolist()):
                self.counts[k] = self.counts.get(k, 0) + v

    def sample(self) -> Snapshot:
        self._events()
        now = time.monotonic()
        dt = max(now - self.prev_t, 1e-3)
        cur = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                c = _proc_counters(int(name))
                if c:
                    cur[int(name)] = c
        actions = self.last_actions()
        procs, feats = [], []
        for pid, c in cur.items():
            p = self.prev.get(pid)
            if p is None or p[1] != c[1]:
                continue
            d = [a - b for a, b in zip(c[2:], p[2:])]
            cpu, minf, majf, ctx, run_ns, wait_ns, slices = d[0] / dt, d[1] / dt, d[2] / dt, d[3] / dt, d[4], d[5], d[6]
            burst = run_ns / slices / 1e3 if slices > 0 else None
            if burst is not None:
                self.pred[pid] = burst if pid not in self.pred else 0.5 * self.pred[pid] + 0.5 * burst
            pr = Proc(pid, c[0], round(cpu, 4), round(minf, 1), round(majf, 1), round(ctx, 1), burst,
                      self.pred.get(pid), events_s=self.counts.pop(pid, 0) / dt)
            pr.anomaly = self._anomaly(pid, np.log1p([minf, majf, ctx, cpu * 100]))
            pr.action = actions.get(pid, "-")
            procs.append(pr)
            feats.append((run_ns, wait_ns, slices, d[3], 0))
        if self.clf is not None and procs:
            f = np.array(feats, dtype=float)
            X = self._class_features(f[:, 0], f[:, 1], f[:, 2], f[:, 3], f[:, 4], int(dt * 1e9))
            for pr, k, active in zip(procs, self.clf.predict(X), X[:, 0] >= 0.01):
                pr.klass = ("latency" if int(k) == 1 else "batch") if active else "idle"
        if self.agent is not None:  # the agent's own classes (from the events) where it has them
            for pr in procs:
                pr.klass = self._agent_classes.get(str(pr.pid), pr.klass)
        self.counts.clear()
        self.prev, self.prev_t = cur, now
        procs.sort(key=lambda p: (-p.cpu, -p.faults_s, p.pid))
        return Snapshot(time.time(), procs[: self.top], self._probes(dt), list(self.notes), self.total_events)

    def _anomaly(self, pid: int, x: np.ndarray) -> float:
        """Largest |z| of this sample against the process's EWMA mean and variance (0 until 3 samples)."""
        mean, var, n = self.hist.get(pid, (x.copy(), np.zeros_like(x), 0))
        z = float(np.max(np.abs(x - mean) / np.sqrt(var + 0.05))) if n >= 3 else 0.0
        a = 0.2
        diff = x - mean
        mean = mean + a * diff
        var = (1 - a) * (var + a * diff * diff)
        self.hist[pid] = (mean, var, n + 1)
        return round(z, 2)

    def _probes(self, dt: float) -> list[Probe]:
        if self._stats is None:
            return []
        try:
            progs = bpf_programs()
        except Exception as e:
            self.notes.append(f"cannot list BPF programs: {e}")
            self._stats = None
            return []
        out = []
        for pid, (name, typ, cnt, ns) in progs.items():
            p = self.prev_probes.get(pid)
            dc, dn = (cnt - p[2], ns - p[3]) if p else (0, 0)
            out.append(Probe(pid, name, typ, round(dc / dt, 1), round(dn / dc, 1) if dc > 0 else None, cnt))
        self.prev_probes = progs
        out.sort(key=lambda p: (-p.events_s, p.id))
        return out

    def close(self) -> None:
        if self.src:
            self.src.stop()
            self.src = None
        if self._stats is not None:
            self._stats.__exit__(None, None, None)
            self._stats = None
