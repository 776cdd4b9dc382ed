"""Record a real CPU load series (/proc/stat utilisation + PSI cpu-some) across varied load phases.

    python -m kernelpilot.sched.loadrec OUT.csv [--seconds-per-phase 20]

made kernelpilot/sched/data/load_series.csv, the fixture the load forecaster is scored on."""
from __future__ import annotations

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


def record(out: Path, sec: float = 20.0) -> np.ndarray:
    rows, stop, phase = [], threading.Event(), [0]

    def sample():
        s, t0 = LoadSampler(), time.monotonic()
        k = 1
        while not stop.wait(max(0.0, t0 + k * PERIOD_S - time.monotonic())):
            u, p = s.sample()
            rows.append((k * PERIOD_S, u, p, phase[0]))
            k += 1
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    for i, (name, cmds) in enumerate(_phases(sec)):
        phase[0] = i
        procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for c in cmds]
        for p in procs:
            p.wait()
    stop.set()
    th.join()
    a = np.array(rows)
    names = ",".join(n for n, _ in _phases(sec))
    np.savetxt(out, a, delimiter=",", fmt=["%.1f", "%.4f", "%.4f", "%d"],
               header=f"t_s,util,psi_some,phase  phases: {names}; period {PERIOD_S} s")
    return a


def load_fixture(path: Path = FIXTURE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(util, psi, phase) of the committed load series."""
    a = np.loadtxt(path, delimiter=",", ndmin=2)
    return a[:, 1], a[:, 2], a[:, 3].astype(int)


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else FIXTURE
    sec = float(sys.argv[sys.argv.index("--seconds-per-phase") + 1]) if "--seconds-per-phase" in sys.argv else 20.0
    a = record(out, sec)
    print(f"wrote {out}: {len(a)} samples")
