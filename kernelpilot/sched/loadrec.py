"""Record a real CPU load series across varied load phases: the host's (/proc/stat utilisation,
PSI cpu-some) and the phase workload's own (its cgroup's cpu.stat usage and cpu.pressure), since
on a shared host other work can keep the CPUs busy whatever the phase does.

    python -m kernelpilot.sched.loadrec OUT.csv [--seconds-per-phase 20]

made kernelpilot/sched/data/load_series.csv, the fixture the load forecaster is scored on."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from kernelpilot.sched.features import LoadSampler

PERIOD_S = 0.1
FIXTURE = Path(__file__).resolve().parent / "data" / "load_series.csv"


def _phases(sec: float):
    """(name, argv list) per phase; each command runs for about `sec` seconds."""
    t = f"{sec:g}"
    build = ("d=$(mktemp -d); cd $d; end=$(($(date +%s)+" + t + ")); while [ $(date +%s) -lt $end ]; do "
             "for i in $(seq 1 16); do printf 'int f%s(int x){int s=0;for(int i=0;i<x;i++)s+=i*%s;return s;}\\n'"
             " $i $i > f$i.c; done; for f in f*.c; do gcc -O2 -c $f & done; wait; done; rm -rf $d")
    return [("idle", [["sleep", t]]),
            ("one_hog", [["stress-ng", "--cpu", "1", "-t", t, "-q"]]),
            ("two_hogs", [["stress-ng", "--cpu", "2", "-t", t, "-q"]]),
            ("duty_50", [["stress-ng", "--cpu", "2", "--cpu-load", "50", "-t", t, "-q"]]),
            ("on_off_2s", [["sh", "-c", f"end=$(($(date +%s)+{t})); while [ $(date +%s) -lt $end ]; do "
                            "stress-ng --cpu 2 -t 2 -q; sleep 2; done"]]),
            ("build", [["sh", "-c", build]]),
            ("ramp", [["sh", "-c", " ; ".join(f"stress-ng --cpu 2 --cpu-load {p} -t {sec / 4:g} -q"
                                              for p in (20, 40, 60, 80))]]),
            ("hogs_and_cyclic", [["stress-ng", "--cpu", "3", "-t", t, "-q"],
                                 ["cyclictest", "-q", "-D", t, "-i", "1000"]])]


class GroupSampler:
    """CPU use (fraction of all CPUs) and cpu.pressure 'some' stall fraction of one cgroup v2."""

    def __init__(self, path: Path):
        self.path, self.ncpu = path, os.cpu_count() or 1
        self.last = self._read()

    def _read(self):
        use = int(next(ln.split()[1] for ln in (self.path / "cpu.stat").read_text().splitlines()
                       if ln.startswith("usage_usec")))
        some = float((self.path / "cpu.pressure").read_text().split("total=", 1)[1].split()[0])
        return use, some, time.monotonic()

    def sample(self) -> tuple[float, float]:
        cur = self._read()
        (u0, p0, t0), (u1, p1, t1) = self.last, cur
        self.last = cur
        dt = max(t1 - t0, 1e-6) * 1e6
        return min((u1 - u0) / dt / self.ncpu, 1.0), min(max((p1 - p0) / dt, 0.0), 1.0)


def _group() -> Path:
    for root in (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")):
        if (root / "cgroup.procs").exists() and (root / "cpu.pressure").exists():
            g = root / f"kernelpilot.loadrec.{os.getpid()}"
            g.mkdir(exist_ok=True)
            return g
    raise SystemExit("needs a cgroup v2 hierarchy with PSI")


def record(out: Path, sec: float = 20.0) -> np.ndarray:
    rows, stop, phase = [], threading.Event(), [0]
    g = _group()

    def join():
        (g / "cgroup.procs").write_text(str(os.getpid()))

    def sample():
        s, gs, t0 = LoadSampler(), GroupSampler(g), time.monotonic()
        k = 1
        while not stop.wait(max(0.0, t0 + k * PERIOD_S - time.monotonic())):
            u, p = s.sample()
            gu, gp = gs.sample()
            rows.append((k * PERIOD_S, u, p, gu, gp, phase[0]))
            k += 1
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    for i, (name, cmds) in enumerate(_phases(sec)):
        phase[0] = i
        procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=join)
                 for c in cmds]
        for p in procs:
            p.wait()
    stop.set()
    th.join()
    time.sleep(0.2)
    g.rmdir()
    a = np.array(rows)
    names = ",".join(n for n, _ in _phases(sec))
    np.savetxt(out, a, delimiter=",", fmt=["%.1f", "%.4f", "%.4f", "%.4f", "%.4f", "%d"],
               header=f"t_s,host_util,host_psi_some,group_util,group_psi_some,phase  phases: {names}; "
                      f"period {PERIOD_S} s")
    return a


def load_fixture(path: Path = FIXTURE) -> dict[str, np.ndarray]:
    """The committed load series: host_util, host_psi, group_util, group_psi, phase."""
    a = np.loadtxt(path, delimiter=",", ndmin=2)
    return {"host_util": a[:, 1], "host_psi": a[:, 2], "group_util": a[:, 3], "group_psi": a[:, 4],
            "phase": a[:, 5].astype(int)}


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else FIXTURE
    sec = float(sys.argv[sys.argv.index("--seconds-per-phase") + 1]) if "--seconds-per-phase" in sys.argv else 20.0
    a = record(out, sec)
    print(f"wrote {out}: {len(a)} samples")
