"""Record the scenario suite with the foundation's tracer and load recordings as per-process traces."""
from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import tempfile
from pathlib import Path

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.security.features import Trace
from kernelpilot.security.scenarios import SCENARIOS, Scenario
from kernelpilot.security.syscalls import number_to_name
from kernelpilot.traces import schema as S

MANIFEST = "scenarios.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_workdir(workdir: str, body: str) -> str:
    """bash that runs `body` in workdir or not at all: a script whose own `cd DIR && ...` failed
    would run its remaining lines (Makefiles, rm -rf) where it was started."""
    return f"cd -- {shlex.quote(workdir)} || exit 97\n{body}"


STEP = "kp-step-time"  # where an attack's script notes the wall-clock time of its first real step


def script_for(sc: Scenario, workdir: str, n: int, step: bool = False) -> str:
    """The scenario's bash script, in its temp dir (in_workdir). Its output must not mix into
    kpilot's own stdout (JSON). step: an attack notes $EPOCHREALTIME (a builtin: no process, no
    exec) in workdir/STEP before its first real step (step_time reads it)."""
    mark = f"printf '%s' \"$EPOCHREALTIME\" > {shlex.quote(os.path.join(workdir, STEP))}\n" if step else ""
    body = sc.script.format(dir=workdir, py=sys.executable, port=free_port(), n=n, step=mark)
    return "exec >/dev/null 2>&1\n" + in_workdir(workdir, body)


def step_time(workdir: str) -> float | None:
    """The wall-clock time (s) script_for(step=True) noted before the attack's first real step."""
    try:
        return float(Path(workdir, STEP).read_text().replace(",", "."))
    except (OSError, ValueError):
        return None


def record_one(sc: Scenario, n: int = 2, timeout: float = 20.0) -> tuple[np.ndarray, dict]:
    from kernelpilot.traces.record import trace_command
    if sc.needs_root and os.geteuid() != 0:
        raise KpError(f"scenario {sc.name} needs root")
    with tempfile.TemporaryDirectory(prefix=f"kp-sc-{sc.name}-") as d:
        ev, summary = trace_command(["bash", "-c", script_for(sc, d, n)], groups=["syscalls"],
                                    duration=timeout)
    return ev, summary


def record_suite(out, names=None, reps: int = 2, progress=None) -> dict:
    """Record each scenario `reps` times (benign ones) or once per rep (attacks) into out/."""
    from kernelpilot.traces.store import write_trace
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = list(names or SCENARIOS)
    bad = [n for n in names if n not in SCENARIOS]
    if bad:
        raise KpError(f"unknown scenario {bad[0]}; choose from {', '.join(SCENARIOS)}")
    runs = []
    for name in names:
        sc = SCENARIOS[name]
        for rep in range(reps):
            ev, summary = record_one(sc, n=2 + rep)
            f = f"{name}-{rep}.parquet"
            write_trace(out / f, ev, {"scenario": name, "kind": sc.kind, "rep": rep})
            runs.append({"file": f, "scenario": name, "kind": sc.kind, "rep": rep,
                         "events": int(len(ev)), "dropped": summary["dropped"],
                         "seconds": summary["seconds"], "exit_code": summary["exit_code"]})
            if progress:
                progress(name, rep)
    (out / MANIFEST).write_text(json.dumps({"runs": runs}, indent=1))
    return {"runs": runs, "output": str(out)}


def events_to_traces(ev: np.ndarray, label: str = "normal", family: str = "normal",
                     run: str = "") -> list[Trace]:
    """Syscall events -> one Trace per thread, calls named, timestamps kept; every thread is named
    by its process's comm (process_comm). Per thread, as the live stage keeps its windows: a
    threaded server's calls interleaved per process (http.server, a thread per request) made
    6-grams that depend on scheduling, seen neither live nor in the next recording."""
    ev = S.of_kind(ev, "syscall")
    if not len(ev):
        return []
    ev = ev[np.argsort(ev["ts"], kind="stable")]
    table = number_to_name("x86_64")
    names = np.array([table.get(int(n), "unknown") for n in ev["a0"]], dtype=object)
    out = []
    for tgid in np.unique(ev["tgid"]):
        m = np.flatnonzero(ev["tgid"] == tgid)
        comm = process_comm(ev[m], int(tgid))
        for tid in np.unique(ev["pid"][m]):
            k = m[ev["pid"][m] == tid]
            name = f"{run}:{tgid}:{comm}" + (f":{tid}" if tid != tgid else "")
            out.append(Trace(name=name, calls=list(names[k]), label=label, family=family,
                             ts=ev["ts"][k].astype(np.int64), pid=int(tgid), comm=comm, meta={"run": run}))
    return out


def process_comm(ev: np.ndarray, tgid: int) -> str:
    """A process's comm: the latest one its main thread's events carry, else any thread's; never
    the tracer's "?" (the name of a thread that exited before it was looked up) while a real one
    is known. The last event's comm was "?" whenever a short-lived worker thread made it, so one
    recording named the http.server process "?" and the next "python": its windows were novel for
    the python profile and raised every program's confirm threshold to 1.0."""
    comms = ev["comm"]
    for sel in (ev["pid"] == tgid, np.ones(len(ev), dtype=bool)):
        real = comms[sel & (comms != b"?") & (comms != b"")]
        if len(real):
            return real[-1].decode(errors="replace")
    return "?"


def load_suite(path) -> list[dict]:
    """[{scenario, kind, traces}] from a recorded suite directory."""
    from kernelpilot.traces.store import read_trace
    path = Path(path)
    try:
        runs = json.loads((path / MANIFEST).read_text())["runs"]
    except (OSError, ValueError, KeyError):
        raise KpError(f"{path} is not a recorded scenario suite (no valid {MANIFEST})") from None
    out = []
    for r in runs:
        ev, _ = read_trace(path / r["file"])
        label = "attack" if r["kind"] == "attack" else "normal"
        fam = r["scenario"] if label == "attack" else "normal"
        out.append({**r, "traces": events_to_traces(ev, label, fam, f"{r['scenario']}-{r['rep']}")})
    return out


def host_training_set(workdir, reps: int = 3, system_s: float = 5.0, progress=None):
    """Normal traces recorded on this host: every benign scenario `reps` times (sizes vary) plus
    `system_s` seconds of whatever else runs here. The last repetition is held out for calibration.
    Returns (train, calibration)."""
    from kernelpilot.security.scenarios import BENIGN
    from kernelpilot.traces.record import run_recording
    record_suite(workdir, [s.name for s in BENIGN], reps, progress=progress)
    runs = load_suite(workdir)
    train = [t for r in runs if r["rep"] < reps - 1 for t in r["traces"]]
    cal = [t for r in runs if r["rep"] == reps - 1 for t in r["traces"]]
    if system_s > 0:
        batches = []
        run_recording(["syscalls"], batches.append, duration=system_s)
        if batches:
            train += events_to_traces(np.concatenate(batches), run="system")
    return train, cal
