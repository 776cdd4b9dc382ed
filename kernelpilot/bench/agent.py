"""`kpilot bench agent`: what the one agent costs beside the separate tools run together, measured
side by side in one run on this host, plus its soak and fault checks.

Setups (each started as a user would, from the CLI; order alternates between repetitions):
  none      nothing of kernelpilot's
  record    `kpilot record` system-wide (sched, syscalls, faults, mm, files) to a Parquet file
  separate  `kpilot record` + `kpilot security watch` + `kpilot sched run --kernel`, together
  agent     `kpilot agent run` (every domain, one shared sensor: one sys_enter program feeds the trace
            and the security windows)
For each: ns added per getppid() in a syscall flood (bench/c/syscall_load.c), ns per context
switch from `stress-ng --switch 1` pinned to one CPU (pipe method), each kernelpilot BPF program's
ns per run (BPF stats) under that switch flood, and the setup's CPU share (its processes'
utime+stime over wall time) idle, under the syscall flood and under the switch flood.
Soak: the agent under a mixed load (syscall bursts of a known count, switch flood, the demo's
strided reader) for KPILOT_SOAK_S seconds (default 120, quick 30; 1800 for the 30-min soak):
RSS growth after warm-up (and RSS at each quarter, every 30 s; anonymous RSS beside it, which leaves
out the libraries' and the rings' file-backed pages), and every known burst's syscalls seen or
counted as dropped. KPILOT_SOAK_BESIDE="MALLOC_ARENA_MAX=2" runs a second agent with those env
settings beside the first, under the same load, for a ratio; CHECKOUT=DIR among them runs that one
from another checkout (e.g. a `git archive` of an older commit: before and after in one run).
Faults: kill -9 of an enforcing agent (a harmless child's policy restored by the guardian), bad
input through the CLI (unknown key, wrong type, unwritable log, second agent: one line, exit != 0,
the running agent untouched), the security domain's BPF programs rejected by the verifier (the
other domains keep running, the log says why).
`--only cost,soak,faults` runs some parts (cost alone skips the soak).
The host is shared (2 CPUs, other users' work): "idle" is this host without a kernelpilot load."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kernelpilot.agent.mainjob import strided_reader
from kernelpilot.agent.memwatch import rss_kb
from kernelpilot.bench.common import build_c, median
from kernelpilot.errors import CapabilityError, KpError
from kernelpilot.sched.session import tree_pids

SETUPS = ("none", "record", "separate", "agent")
KP_PROGS = ("kp_sched_switch", "kp_sched_wakeup", "kp_sys_enter", "kp_page_fault", "sc_sys_enter",
            "kp_sc_switch", "kp_sc_wakeup", "sc_exec")
CLI = [sys.executable, "-m", "kernelpilot.cli"]
ROOT = Path(__file__).resolve().parents[2]


def _env(tmp: Path) -> dict:
    return {**os.environ, "KPILOT_RUN_DIR": str(tmp / "run"), "PYTHONPATH": str(ROOT), "KPILOT_NO_PROGRESS": "1"}


def _wait(cond, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    raise KpError(f"bench agent: {what} did not happen within {timeout:.0f} s")


def _prog_ids(pids) -> set[int]:
    """BPF programs the processes hold (prog_id in /proc/PID/fdinfo): other users' are not ours."""
    ids = set()
    for p in pids:
        try:
            fds = os.listdir(f"/proc/{p}/fdinfo")
        except OSError:
            continue
        for fd in fds:
            try:
                m = re.search(r"^prog_id:\s+(\d+)", Path(f"/proc/{p}/fdinfo/{fd}").read_text(), re.M)
            except OSError:
                continue
            if m:
                ids.add(int(m[1]))
    return ids


def _progs(pids) -> dict:
    """name -> (run_cnt, run_time_ns), summed over the processes' programs of that name."""
    from kernelpilot.report.sampler import bpf_programs
    ids, out = _prog_ids(pids), {}
    for pid, (name, _t, cnt, ns) in bpf_programs().items():
        if pid in ids and name in KP_PROGS:
            c, n = out.get(name, (0, 0))
            out[name] = (c + cnt, n + ns)
    return out


def sys_enter_programs(pids) -> list[str]:
    """Names of the programs the processes hold on the sys_enter tracepoint (bpftool perf list)."""
    from kernelpilot.report.sampler import bpf_programs
    try:
        perf = json.loads(subprocess.run(["bpftool", "perf", "list", "-j"], capture_output=True, text=True,
                                         check=True).stdout)
    except (OSError, subprocess.CalledProcessError, ValueError):
        return []
    names = {i: v[0] for i, v in bpf_programs().items()}
    return sorted(names.get(p["prog_id"], "?") for p in perf
                  if p["pid"] in set(pids) and p.get("tracepoint") == "sys_enter")


def _cpu_s(pids) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in pids:
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except (OSError, IndexError):
            pass
    return total / tick


class Setup:
    """The kernelpilot processes of one setup, started from the CLI and ready (probes attached)."""

    def __init__(self, name: str, tmp: Path, model: Path):
        self.name, self.procs = name, []
        env = _env(tmp)
        (tmp / "run").mkdir(exist_ok=True)
        need = set()
        if name in ("record", "separate"):
            self._start(["record", "-e", "sched,syscalls,faults,mm,files", "-d", "3600", "-o", str(tmp / f"{name}.parquet")], env)
            need |= {"kp_sys_enter", "kp_sched_switch"}
        if name == "separate":
            self._start(["security", "watch", "--model", str(model), "--duration", "3600"], env)
            self._start(["sched", "run", "--kernel", "--duration", "3600"], env)
            need |= {"sc_sys_enter", "kp_sc_switch"}
        if name == "agent":
            cfg = tmp / "agent.toml"
            cfg.write_text(f"[security]\nmodel = \"{model}\"\n")
            self._start(["agent", "run", "--config", str(cfg), "--log", str(tmp / "agent.jsonl"), "-d", "3600"], env)
            need |= {"kp_sys_enter", "kp_sched_switch", "sc_exec"}  # sc_exec: the watch's stage is on
        try:
            _wait(lambda: need <= set(_progs(self.pids())) or any(p.poll() is not None for p in self.procs), 120,
                  f"{name}: probes attached")
            if any(p.poll() is not None for p in self.procs):
                raise KpError(f"bench agent: a process of setup '{name}' exited: "
                              + next(p.stderr.read() for p in self.procs if p.poll() is not None)[-300:])
            time.sleep(1.0)  # past start-up work (model loads, first /proc scans)
        except BaseException:
            self.stop()
            raise

    def _start(self, args, env):
        self.procs.append(subprocess.Popen(CLI + args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                           text=True, cwd=str(ROOT)))

    def pids(self) -> list[int]:
        return [q for p in self.procs if p.poll() is None for q in tree_pids({p.pid})]

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _syscall_flood(binary: Path, n: int) -> float:
    out = subprocess.run([str(binary), str(n)], capture_output=True, text=True, check=True).stdout.split()
    return float(out[2])


def _switch_flood(seconds: float, cpu: int) -> tuple[float, float]:
    """(ns per context switch, bogo ops/s) of stress-ng --switch 1 pinned to `cpu`."""
    r = subprocess.run(["stress-ng", "--switch", "1", "--taskset", str(cpu), "-t", f"{seconds:g}s",
                        "--metrics-brief"], capture_output=True, text=True)
    text = r.stdout + r.stderr
    ns = re.search(r"([\d.]+) nanosecs per context switch", text)
    ops = re.search(r"switch\s+\d+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+([\d.]+)", text)
    if not ns:
        raise KpError(f"bench agent: stress-ng --switch gave no per-switch figure: {text.strip()[-200:]}")
    return float(ns[1]), float(ops[1]) if ops else 0.0


def _state(tmp: Path) -> dict:
    from kernelpilot.agent.state import read_state
    return read_state(tmp / "run" / "agent.sock") or {}


def _events(tmp: Path) -> int | None:
    return _state(tmp).get("events")


def _measure(setup: Setup, binary: Path, sizes: dict, cpu: int, tmp: Path) -> dict:
    """Each phase with BPF stats on: the setup's CPU share, its programs' runs and ns, and (for
    the agent) the events it took in."""
    from kernelpilot.probes.libbpf import enable_stats
    pids = setup.pids()
    out = {"bpf": {}, "sys_enter_programs": sys_enter_programs(pids)}
    phases = (("idle", lambda: time.sleep(sizes["idle_s"])),
              ("syscall_flood", lambda: out.__setitem__("ns_per_syscall", _syscall_flood(binary, sizes["syscalls"]))),
              ("switch_flood", lambda: out.update(zip(("ns_per_switch", "switch_ops_per_s"),
                                                      _switch_flood(sizes["switch_s"], cpu)))))
    with enable_stats():
        for phase, work in phases:
            p0, c0, s0, t0 = _progs(pids), _cpu_s(pids), _state(tmp), time.monotonic()
            work()
            p1, c1, s1, dt = _progs(pids), _cpu_s(pids), _state(tmp), time.monotonic() - t0
            out[f"cpu_share_{phase}"] = (c1 - c0) / dt
            if s0.get("events") is not None and s1.get("events") is not None:
                out[f"events_per_s_{phase}"] = (s1["events"] - s0["events"]) / dt
                # the agent's loop, part by part (sensor, each pilot, publishing): where its share went
                b0 = s0.get("busy_s", {})
                out[f"busy_share_{phase}"] = {k: (v - b0.get(k, 0.0)) / dt for k, v in s1.get("busy_s", {}).items()}
            out["bpf"][phase] = {n: (p1[n][0] - p0.get(n, (0, 0))[0], p1[n][1] - p0.get(n, (0, 0))[1]) for n in p1}
    return out


def _ns(bpf: dict, name: str):
    runs, ns = bpf.get(name, (0, 0))
    return ns / runs if runs else None


def busy_medians(rows: list[dict], phase: str) -> dict:
    """Each loop part's share of the phase's wall time, the median over the repetitions."""
    got = [r[f"busy_share_{phase}"] for r in rows if f"busy_share_{phase}" in r]
    return {k: round(median([g.get(k, 0.0) for g in got]), 4) for k in sorted({k for g in got for k in g})}


def _fit_idle(rows: list[dict]) -> dict | None:
    """The agent's CPU share against the events/s it took in, over every phase: share = fixed +
    per_event * rate (least squares). `fixed` is what it would cost on an idle host."""
    import numpy as np
    pts = [(r[f"events_per_s_{p}"], r[f"cpu_share_{p}"]) for r in rows for p in ("idle", "syscall_flood", "switch_flood")
           if f"events_per_s_{p}" in r]
    if len(pts) < 2:
        return None
    x, y = np.array(pts).T
    slope, fixed = np.polyfit(x, y, 1)
    return {"fixed_cpu_share": round(float(fixed), 4), "cpu_ns_per_event": round(float(slope) * 1e9, 1),
            "points": [[round(a), round(b, 4)] for a, b in pts]}


def _quiet_share(tmp: Path, model: Path, seconds: float) -> dict:
    """The agent's own fixed cost: every domain on, the sensor's comm filter matching no task (the
    host's events stay in the kernel), as on an idle host. The security watch still sees every
    system call in the kernel; only its rare suspicious windows come up."""
    cfg = tmp / "quiet.toml"
    cfg.write_text(f"[agent]\ncomm = \"kpb-no-such\"\n[security]\nmodel = \"{model}\"\n")
    env = _env(tmp)
    p = subprocess.Popen(CLI + ["agent", "run", "--config", str(cfg), "--log", str(tmp / "quiet.jsonl"), "-d", "3600"],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
    try:
        _wait(lambda: _events(tmp) is not None or p.poll() is not None, 120, "quiet agent up")
        time.sleep(2.0)
        from kernelpilot.agent.state import read_state
        pids, sock = tree_pids({p.pid}), tmp / "run" / "agent.sock"
        s0, c0, t0 = read_state(sock) or {}, _cpu_s(pids), time.monotonic()
        time.sleep(seconds)
        s1, c1, dt = read_state(sock) or {}, _cpu_s(pids), time.monotonic() - t0
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(60)
    return quiet_figures(s0, s1, c1 - c0, dt)


def quiet_figures(s0: dict, s1: dict, cpu_s: float, dt: float) -> dict:
    """The quiet agent's CPU share and what it went to, from its state at the start and end: each
    loop part's share of the wall time (busy_s) and what the security watch took in meanwhile (the
    host's windows its in-kernel tree sent up, its exec/fork/exit events, the cpu_burn rule's
    processes sampled), which on a shared host are other sessions' work, not the agent's own."""
    def rate(get):
        a, b = get(s0), get(s1)
        return round((b - a) / dt, 1) if a is not None and b is not None else None

    def sec(st, k):
        return (st.get("domains", {}).get("security") or {}).get(k)
    b0, b1 = s0.get("busy_s", {}), s1.get("busy_s", {})
    busy = {k: round((v - b0.get(k, 0.0)) / dt, 4) for k, v in b1.items()}
    return {"cpu_share": round(cpu_s / dt, 4), "events_per_s": rate(lambda st: st.get("events")), "seconds": round(dt, 1),
            "busy_share": busy, "busy_share_without_security": round(sum(v for k, v in busy.items() if k != "security"), 4),
            "security_windows_up_per_s": rate(lambda st: sec(st, "windows_up")),
            "security_exec_fork_exit_per_s": rate(lambda st: sec(st, "events_up")),
            "cpu_burn_candidates": sec(s1, "cpu_burn_candidates")}


def cost(quick: bool, tmp: Path, model: Path) -> dict:
    binary = build_c("syscall_load")
    sizes = {"idle_s": 3.0 if quick else 10.0, "syscalls": 2_000_000 if quick else 10_000_000,
             "switch_s": 3.0 if quick else 8.0}
    reps = 1 if quick else 3
    cpu = max(os.sched_getaffinity(0))
    _syscall_flood(binary, 200_000)  # warm
    rows = {s: [] for s in SETUPS}
    for rep in range(reps):
        for name in (SETUPS if rep % 2 == 0 else SETUPS[::-1]):
            s = Setup(name, tmp, model)
            try:
                rows[name].append(_measure(s, binary, sizes, cpu, tmp))
            finally:
                s.stop()
    scalar = ("ns_per_syscall", "ns_per_switch", "switch_ops_per_s", "cpu_share_idle", "cpu_share_syscall_flood",
              "cpu_share_switch_flood")
    med = {n: {k: median([r[k] for r in rs]) for k in scalar} for n, rs in rows.items()}
    base = med["none"]
    out = {}
    for name, rs in rows.items():
        if name == "none":
            continue
        m = med[name]
        sys_progs = [p for p in ("kp_sys_enter", "sc_sys_enter") if any(p in r["bpf"]["syscall_flood"] for r in rs)]
        sw_progs = [p for p in ("kp_sched_switch", "kp_sc_switch") if any(p in r["bpf"]["switch_flood"] for r in rs)]
        per_run = {p: round(median([v for r in rs if (v := _ns(r["bpf"]["switch_flood" if "sched" in p or "_sc_" in p
                                                                       else "syscall_flood"], p)) is not None]), 1)
                   for p in {q for r in rs for ph in r["bpf"].values() for q in ph}
                   if any(_ns(r["bpf"]["switch_flood" if "sched" in p or "_sc_" in p else "syscall_flood"], p) for r in rs)}
        out[name] = {
            "sys_enter_programs": rs[0]["sys_enter_programs"],
            "kernel_ns_per_syscall": round(sum(per_run.get(p, 0) for p in sys_progs), 1),
            "kernel_ns_per_switch": round(sum(per_run.get(p, 0) for p in sw_progs), 1),
            "bpf_ns_per_run": per_run,
            "wall_ns_added_per_syscall": round(m["ns_per_syscall"] - base["ns_per_syscall"], 1),
            "wall_ns_added_per_switch": round(m["ns_per_switch"] - base["ns_per_switch"], 1),
            "switch_ops_ratio": round(m["switch_ops_per_s"] / base["switch_ops_per_s"], 3) if base["switch_ops_per_s"] else None,
            **{k: round(m[k], 4) for k in scalar if k.startswith("cpu_share")}}
    fit = _fit_idle(rows["agent"])
    quiet = _quiet_share(tmp, model, sizes["idle_s"] * reps)
    a, r, sep = out["agent"], out["record"], out["separate"]

    def rel(x, y):
        return round(x / y, 3) if y else None
    sched = [a["bpf_ns_per_run"].get(p) for p in ("kp_sched_switch", "kp_sched_wakeup")]
    targets = {
        "syscall_vs_record": {"agent_kernel_ns": a["kernel_ns_per_syscall"], "record_kernel_ns": r["kernel_ns_per_syscall"],
                              "ratio": rel(a["kernel_ns_per_syscall"], r["kernel_ns_per_syscall"]), "target": "<= 1.2",
                              "met": bool(r["kernel_ns_per_syscall"]) and a["kernel_ns_per_syscall"] <= 1.2 * r["kernel_ns_per_syscall"],
                              "wall_ratio": rel(a["wall_ns_added_per_syscall"], r["wall_ns_added_per_syscall"])},
        "one_sys_enter_program": {"agent": a["sys_enter_programs"], "separate": sep["sys_enter_programs"],
                                  "met": len(a["sys_enter_programs"]) == 1},
        "sched_probe_ns_per_run": {"kp_sched_switch": sched[0], "kp_sched_wakeup": sched[1], "target": "<= 200",
                                   "met": all(x is not None and x <= 200 for x in sched)},
        "idle_cpu_share": {"measured": a["cpu_share_idle"], "host_events_per_s": round(median(
            [x["events_per_s_idle"] for x in rows["agent"] if "events_per_s_idle" in x] or [0])),
            "busy_share": busy_medians(rows["agent"], "idle"),
            "fit_at_zero_events": fit, "sensor_filtered_to_no_task": quiet, "target": "<= 0.02",
            "met": a["cpu_share_idle"] <= 0.02, "met_without_host_events": quiet["cpu_share"] <= 0.02},
    }
    return {"baseline_none": {k: round(v, 1) for k, v in base.items()}, "setups": out,
            "agent_vs_separate": {k: rel(a[k], sep[k]) for k in ("kernel_ns_per_syscall", "kernel_ns_per_switch",
                                                                  "cpu_share_idle", "cpu_share_syscall_flood",
                                                                  "cpu_share_switch_flood")},
            "targets": targets, "repetitions": reps, "sizes": sizes, "switch_cpu": cpu,
            "load_average": os.getloadavg()}


def soak(seconds: float, tmp: Path, model: Path, beside: dict | None = None) -> dict:
    """The agent under a mixed load; RSS growth after warm-up; known syscall bursts accounted for.
    `beside` (env settings, e.g. {"MALLOC_ARENA_MAX": "2"}): a second agent with them runs beside the
    first under the same load (each watches the whole host), reported under "beside" for a ratio."""
    if beside:
        beside_root(beside)  # a bad CHECKOUT is refused before anything starts
    binary = build_c("syscall_load")
    cfg = tmp / "soak.toml"
    # every process's counts in the summary: a 30-min soak runs over 1,000 bursts
    cfg.write_text(f"[security]\nmodel = \"{model}\"\n[aipath]\ntop = 20000\n")
    names = ["agent"] + (["beside"] if beside else [])
    agents = {}
    for name in names:
        env, root = _env(tmp), ROOT
        env["KPILOT_RUN_DIR"] = str(tmp / f"run-{name}")
        (tmp / f"run-{name}").mkdir(exist_ok=True)
        if name == "beside":
            env.update({k: v for k, v in beside.items() if k != "CHECKOUT"})
            root = beside_root(beside)  # python -m runs the package in its cwd
            env["PYTHONPATH"] = str(root)
        if env.get("KPILOT_TRACEMALLOC"):
            env["KPILOT_TRACEMALLOC"] += f".{name}"
        # stdout and stderr to files: a pipe nobody reads until the end fills in seconds (--json prints
        # every record) and blocks the agent's loop, which then soaks nothing
        out_f, err_f = open(tmp / f"soak-{name}.out", "w"), open(tmp / f"soak-{name}.err", "w")
        agents[name] = (subprocess.Popen(CLI + ["agent", "run", "--config", str(cfg), "--log",
                                                str(tmp / f"soak-{name}.jsonl"), "--json", "-d", f"{seconds + 3600:g}"],
                                         env=env, stdout=out_f, stderr=err_f, text=True, cwd=str(root)), out_f, err_f)
    from kernelpilot.agent.state import read_state

    def state(name):
        return read_state(tmp / f"run-{name}" / "agent.sock") or {}

    def alive():
        return all(a.poll() is None for a, _, _ in agents.values())

    bursts, n_burst = [], 100_000
    rss, anon = {n: [] for n in names}, {n: [] for n in names}
    taken, busy = {n: [] for n in names}, {n: [] for n in names}
    sw = reader = None
    try:
        _wait(lambda: all(state(n).get("events", 0) > 0 for n in names) or not alive(), 120, "soak: agent up")
        t0 = time.monotonic()
        sw = subprocess.Popen(["stress-ng", "--switch", "1", "-t", f"{seconds:g}s", "--quiet"])
        # the main job's demo reader: file-fault streams the memory pilot finds predictable (planned)
        reader = subprocess.Popen(strided_reader(tmp, "kp_soak_reader"), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        while time.monotonic() - t0 < seconds and alive():
            p = subprocess.Popen([str(binary), str(n_burst), "400000"], stdout=subprocess.DEVNULL)
            bursts.append(p.pid)
            p.wait()
            t = round(time.monotonic() - t0, 1)
            for n in names:
                rss[n].append((t, rss_kb(agents[n][0].pid)))
                anon[n].append((t, rss_kb(agents[n][0].pid, "RssAnon")))
                st = state(n)
                taken[n].append((t, st.get("events")))
                busy[n].append((t, st.get("busy_s")))
            time.sleep(1.0)
    finally:
        if reader:
            reader.kill()
            reader.wait()
        if sw and sw.poll() is None:
            sw.kill()
        if sw:
            sw.wait()
        for a, _, _ in agents.values():
            if a.poll() is None:
                a.send_signal(signal.SIGTERM)
        for a, out_f, err_f in agents.values():
            a.wait(timeout=120)
            out_f.close()
            err_f.close()
    res = {}
    for n in names:
        a = agents[n][0]
        out, err = (tmp / f"soak-{n}.out").read_text(), (tmp / f"soak-{n}.err").read_text()
        if a.returncode != 0:
            raise KpError(f"bench agent: the soak's agent failed: {err.strip()[-300:]}")
        res[n] = _soak_figures(json.loads(out.strip().splitlines()[-1])["summary"], seconds, bursts, n_burst,
                               rss[n], taken[n], busy[n], anon[n])
    if beside:
        res["agent"]["beside"] = {"env": beside, **res["beside"],
                                  "rss_growth_ratio": _ratio(res["beside"]["rss_growth_after_warmup"],
                                                             res["agent"]["rss_growth_after_warmup"]),
                                  "rss_anon_growth_ratio": _ratio(res["beside"]["rss_anon_growth_after_warmup"],
                                                                  res["agent"]["rss_anon_growth_after_warmup"])}
    return res["agent"]


def beside_root(beside: dict) -> Path:
    """The checkout the beside agent runs from: CHECKOUT=DIR in KPILOT_SOAK_BESIDE, else this one."""
    root = Path(beside.get("CHECKOUT", ROOT)).resolve()
    if not (root / "kernelpilot" / "cli.py").is_file():
        raise KpError(f"bench agent: KPILOT_SOAK_BESIDE's CHECKOUT={root} holds no kernelpilot checkout")
    return root


def _ratio(x, y):
    return round(x / y, 3) if x is not None and y else None


def _soak_figures(s: dict, seconds: float, bursts: list, n_burst: int, rss: list, taken: list,
                  busy: list = (), anon: list = ()) -> dict:
    layers = s["aipath"]["layers"]
    seen = {int(k.rsplit("[", 1)[1].rstrip("]")): v.get("syscalls", 0) for k, v in layers.items()}
    short = [p for p in bursts if seen.get(p, 0) < n_burst]
    missing = sum(n_burst - seen.get(p, 0) for p in short)
    dropped = s["agent"]["sensor"]["dropped"]
    warm = _warm(rss, seconds)
    growth = _ends(warm)
    meds = _medians(warm)
    warm_anon = _warm(anon, seconds)
    med_growth = _growth(meds)
    # met only if neither measure passes 10%: two single samples can land on a low and a high swing
    met = growth is not None and growth <= 0.10 and (med_growth is None or med_growth <= 0.10)
    return {"seconds": seconds, "bursts": len(bursts), "syscalls_per_burst": n_burst,
            "bursts_fully_seen": len(bursts) - len(short), "bursts_short": len(short),
            "events": s["agent"]["events"], "dropped_counted": dropped,
            "syscalls_missing": missing, "no_loss_uncounted": missing <= dropped,
            "rss_kb_first_last": [warm[0], warm[-1]] if warm else None,
            "rss_growth_after_warmup": growth,
            "rss_target": "<= 0.10 (endpoints and quarter medians)", "rss_met": met,
            "rss_kb_at_quarters": _at_quarters(rss), "rss_kb_median_per_quarter": meds,
            "rss_growth_median_first_to_last_quarter": med_growth,
            "rss_kb_every_30s": _every(rss, 30.0),
            # anonymous RSS alone: the libraries' and the rings' pages (file-backed) come and go with
            # what the host's page cache keeps, not with what the agent holds
            "rss_anon_kb_first_last": [warm_anon[0], warm_anon[-1]] if warm_anon else None,
            "rss_anon_growth_after_warmup": _ends(warm_anon),
            "rss_anon_kb_median_per_quarter": _medians(warm_anon),
            "rss_anon_growth_median_first_to_last_quarter": _growth(_medians(warm_anon)),
            "events_taken_per_quarter": _quarters(taken),
            "busy_s_per_quarter": {k: [round(x, 2) for x in _quarters([(t, (b or {}).get(k)) for t, b in busy])]
                                   for k in sorted({k for _, b in busy for k in (b or {})})}}


def _warm(samples: list, seconds: float) -> list:
    """The values sampled after warm-up (30 s, or a third of a shorter soak)."""
    return [r for t, r in samples if t >= min(30.0, seconds / 3)] or [r for _, r in samples]


def _ends(warm: list):
    return round((warm[-1] - warm[0]) / warm[0], 4) if warm and warm[0] else None


def _medians(values: list) -> list:
    """Median of each quarter of the samples: RSS swings by a batch's buffers from one sample to the
    next (tens of MB), so two single samples say little about growth."""
    n = len(values)
    if n < 4:
        return []
    return [int(median(values[i * n // 4:(i + 1) * n // 4])) for i in range(4)]


def _growth(meds: list):
    return round((meds[-1] - meds[0]) / meds[0], 4) if meds and meds[0] else None


def _every(samples: list, step: float) -> list:
    """[t, value] of the first sample at or past each multiple of `step` seconds."""
    out, nxt = [], 0.0
    for t, v in samples:
        if t >= nxt:
            out.append([t, v])
            nxt = (t // step + 1) * step
    return out


def _at_quarters(samples: list) -> list:
    """[t, value] at the start, each quarter and the end of the samples."""
    if not samples:
        return []
    return [list(samples[round(i * (len(samples) - 1) / 4)]) for i in range(5)]


def _quarters(taken: list) -> list:
    """Events the agent took in each quarter of the soak: a stalled loop shows as a zero."""
    pts = [(t, e) for t, e in taken if e is not None]
    if len(pts) < 5:
        return []
    idx = [round(i * (len(pts) - 1) / 4) for i in range(5)]
    return [pts[j][1] - pts[i][1] for i, j in zip(idx, idx[1:])]


SPIN = "import ctypes\nctypes.CDLL(None).prctl(15, b'{}')\nwhile True:\n    pass\n"


def spinner(comm: str) -> subprocess.Popen:
    """A busy loop named `comm` (a batch task to the sched pilot)."""
    return subprocess.Popen([sys.executable, "-c", SPIN.format(comm)])


def sched_only(comm: str) -> str:
    """An agent config: the sched pilot alone, on `comm`'s processes only, deciding every 0.25 s."""
    return (f"[sched]\nonly = [\"{comm}\"]\nwindow_s = 0.25\n"
            + "".join(f"[{d}]\nenabled = false\n" for d in ("security", "memory", "aipath")))


# `kpilot agent run` with the security domain's BPF objects (the sensor's merged build and the watch's
# own sc_watch) built from bench/c/rejected.bpf.c, which the verifier rejects; argv: that source, then
# the agent's arguments
BROKEN_SECURITY = """import sys
from pathlib import Path
import kernelpilot.bpf.build as B
real, bad = B.build_object, sys.argv[1]
def build(src, includes=(), defines=None, name=None):
    if name == "kp_agent" or Path(src).name == "sc_watch.bpf.c":
        return real(bad)
    return real(src, includes, defines, name)
B.build_object = build
sys.argv = ["kpilot", *sys.argv[2:]]
from kernelpilot.cli import main
main()
"""


def broken_security(tmp: Path, model: Path, env: dict, seconds: float = 8.0) -> dict:
    """The agent with its security domain's BPF programs failing to load: the others keep running,
    and the log says why."""
    cfg, log = tmp / "broken.toml", tmp / "broken.jsonl"
    cfg.write_text(f"[security]\nmodel = \"{model}\"\n")
    r = subprocess.run([sys.executable, "-c", BROKEN_SECURITY, str(ROOT / "kernelpilot" / "bench" / "c" / "rejected.bpf.c"),
                        "agent", "run", "--config", str(cfg), "--log", str(log), "--json", "-d", f"{seconds:g}"],
                       env=env, capture_output=True, text=True, cwd=str(ROOT), timeout=300)
    try:
        s = json.loads(r.stdout.strip().splitlines()[-1])["summary"]
    except (IndexError, ValueError, KeyError):
        return {"exit": r.returncode, "error": (r.stderr.strip().splitlines() or ["no summary"])[-1][:200]}
    notes = [json.loads(x)["what"] for x in log.read_text().splitlines()] if log.exists() else []
    sec = s.get("security", {})
    # a running pilot's summary has no "state" (a failed or disabled one says which); sched and aipath
    # see every window and process, memory only what faults in those seconds
    running = [d for d in ("sched", "memory", "aipath") if "state" not in s[d]]
    return {"exit": r.returncode, "security_state": sec.get("state"), "security_error": (sec.get("error") or "")[:200],
            "sensor_note": next((n[:200] for n in notes if n.startswith("sensor: the merged build")), None),
            "security_note": next((n[:200] for n in notes if n.startswith("security disabled")), None),
            "events": s["agent"]["events"], "domains_running": running, "sched_windows": s["sched"].get("windows", 0),
            "memory_faults_seen": s["memory"].get("faults_seen", 0), "aipath_processes": s["aipath"].get("processes", 0),
            "others_running": r.returncode == 0 and sec.get("state") == "failed" and len(running) == 3
            and s["sched"].get("windows", 0) > 0 and s["aipath"].get("processes", 0) > 0}


def faults(tmp: Path, model: Path) -> dict:
    env = _env(tmp)
    (tmp / "run").mkdir(exist_ok=True)
    out = {}
    # kill -9 of an enforcing agent: the guardian restores the child's policy
    cfg = tmp / "kill.toml"
    cfg.write_text(sched_only("kpb-spin"))
    child = spinner("kpb-spin")
    a = None
    try:
        _wait(lambda: Path(f"/proc/{child.pid}/comm").read_text().strip() == "kpb-spin", 10, "spinner named")
        a = subprocess.Popen(CLI + ["agent", "run", "--config", str(cfg), "--enforce", "--log", str(tmp / "k.jsonl")],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(ROOT))
        _wait(lambda: os.sched_getscheduler(child.pid) == os.SCHED_BATCH, 90, "the agent's change")
        os.kill(a.pid, signal.SIGKILL)
        a.wait()
        t = time.monotonic()
        _wait(lambda: os.sched_getscheduler(child.pid) == os.SCHED_OTHER, 30, "the guardian's rollback")
        out["kill9_restored"] = {"restored": True, "seconds": round(time.monotonic() - t, 2),
                                 "journals_left": len(list((tmp / "run").glob("journal-*.jsonl")))}
    finally:
        if a and a.poll() is None:
            a.kill()
            a.wait()
        child.kill()
        child.wait()
    # bad input through the CLI, with an agent running
    run = subprocess.Popen(CLI + ["agent", "run", "--config", str(cfg), "--log", str(tmp / "r.jsonl")], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(ROOT))
    try:
        _wait(lambda: (tmp / "run" / "agent.sock").exists(), 60, "agent up")
        (tmp / "a-file").write_text("")
        cases = {"unknown_key": "[sched]\nwindwo_s = 1\n", "wrong_type": "[sched]\nwindow_s = \"x\"\n"}
        for name, text in cases.items():
            (tmp / f"{name}.toml").write_text(text)
        argv = {"unknown_key": ["--config", str(tmp / "unknown_key.toml")],
                "wrong_type": ["--config", str(tmp / "wrong_type.toml")],
                "unwritable_log": ["--log", str(tmp / "a-file" / "x.jsonl")], "second_agent": []}
        other = {**env, "KPILOT_RUN_DIR": str(tmp / "run2")}  # past the lock: the bad input itself is refused
        for name, args in argv.items():
            r = subprocess.run(CLI + ["agent", "run", "-d", "2", *args], env=env if name == "second_agent" else other,
                               capture_output=True, text=True, cwd=str(ROOT), timeout=120)
            lines = [x for x in r.stderr.splitlines() if x.strip()]
            out[name] = {"exit": r.returncode, "one_line": len(lines) == 1 and "Traceback" not in r.stderr,
                         "message": lines[-1][:160] if lines else "", "running_agent_untouched": run.poll() is None}
    finally:
        run.send_signal(signal.SIGTERM)
        run.wait(60)
    out["security_bpf_fails_to_load"] = broken_security(tmp, model, {**env, "KPILOT_RUN_DIR": str(tmp / "run3")})
    return out


PARTS = ("cost", "soak", "faults")


def run(quick: bool = False, only: list[str] | None = None) -> dict:
    """Every part (PARTS) unless `only` names some (`--only cost,faults` runs without the soak)."""
    if os.geteuid() != 0:
        raise CapabilityError("bench agent needs root (it runs the agent and the tools live)")
    parts = [p for p in PARTS if only is None or p in only]
    soak_s = float(os.environ.get("KPILOT_SOAK_S", 30 if quick else 120))
    beside = dict(kv.split("=", 1) for kv in os.environ.get("KPILOT_SOAK_BESIDE", "").split() if "=" in kv)
    from kernelpilot.agent.security_pilot import ensure_host_model
    model = ensure_host_model()
    with tempfile.TemporaryDirectory(prefix="kpilot-bench-agent-") as d:
        tmp = Path(d)
        res = {"protocol": __doc__.split("\n\n")[0].replace("\n", " "), "host": os.uname().release,
               "cpus": os.cpu_count(), "quick": quick, "parts": parts, "part_s": {}}
        fns = {"cost": lambda: cost(quick, tmp, model), "soak": lambda: soak(soak_s, tmp, model, beside or None),
               "faults": lambda: faults(tmp, model)}
        for part in parts:
            t0 = time.monotonic()
            try:
                res[part] = fns[part]()
            except KpError as e:  # one part failing still reports the others, with why
                res[part] = {"error": str(e)}
            res["part_s"][part] = round(time.monotonic() - t0, 1)
    return res
