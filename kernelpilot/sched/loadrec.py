"""Record a real CPU load series across varied load phases: the host's (/proc/stat utilisation,
PSI cpu-some) and the phase workload's own (its cgroup's cpu.stat usage and cpu.pressure), since
on a shared host other work can keep the CPUs busy whatever the phase does. Beside utilisation,
the signals a forecaster can use that an EWMA of utilisation lacks: run-queue length (the host's
from /proc/loadavg, the group's runnable threads), both averaged over 10 ms reads within each
period, and the kernel's PSI avg10 (host some, group some and full).

    python -m kernelpilot.sched.loadrec OUT.csv [--seconds-per-phase 12] [--rounds 2]

Round 1 runs the phases in order, later rounds in a shuffled order (seeded), so the held-out
end of the series has the same kinds of load in new orders and lengths.

made kernelpilot/sched/data/load_series.csv, the fixture the load forecaster is scored on."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from kernelpilot.errors import KpError
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
            ("ramp", [["sh", "-c", " ; ".join(f"stress-ng --cpu 2 --cpu-load {p} -t {max(1, round(sec / 4))} -q"
                                              for p in (20, 40, 60, 80))]]),
            ("hogs_and_cyclic", [["stress-ng", "--cpu", "3", "-t", t, "-q"],
                                 ["cyclictest", "-q", "-D", t, "-i", "1000"]])]


COLUMNS = ("t_s", "host_util", "host_psi_some", "group_util", "group_psi_some", "phase", "host_runq",
           "group_runq", "host_some_avg10", "group_some_avg10", "group_full_avg10")


def _avg10(path: Path) -> tuple[float, float]:
    """(some, full) avg10 of a cpu.pressure file, as fractions."""
    vals = [float(ln.split("avg10=", 1)[1].split()[0]) / 100 for ln in path.read_text().splitlines()]
    return vals[0], (vals[1] if len(vals) > 1 else 0.0)


def _host_runq() -> int:
    return int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])


def _group_runq(g: Path) -> int:
    n = 0
    for tid in (g / "cgroup.threads").read_text().split():
        try:
            n += Path(f"/proc/{tid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "R"
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass  # exited between the two reads
    return n


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


def _schedule(sec: float, rounds: int):
    """(phase index, name, commands) in recording order."""
    ph = _phases(sec)
    order = list(range(len(ph)))
    rng = np.random.default_rng(7)
    out = []
    for r in range(rounds):
        for i in (order if r == 0 else rng.permutation(order)):
            out.append((int(i), *ph[i]))
    return out


def record(out: Path, sec: float = 12.0, rounds: int = 2) -> np.ndarray:
    rows, stop, phase = [], threading.Event(), [0]
    g = _group()

    def join():
        (g / "cgroup.procs").write_text(str(os.getpid()))

    def sample():
        s, gs, t0 = LoadSampler(), GroupSampler(g), time.monotonic()
        k, hq, gq = 1, [], []
        while True:
            due = t0 + k * PERIOD_S
            while time.monotonic() < due - 0.01:  # run-queue reads every 10 ms within the period
                hq.append(_host_runq() - 1)  # less this reader
                gq.append(_group_runq(g))
                time.sleep(0.01)
            if stop.wait(max(0.0, due - time.monotonic())):
                break
            u, p = s.sample()
            gu, gp = gs.sample()
            hs, _ = _avg10(Path("/proc/pressure/cpu"))
            gs10, gf10 = _avg10(g / "cpu.pressure")
            rows.append((k * PERIOD_S, u, p, gu, gp, phase[0], np.mean(hq) if hq else 0.0,
                         np.mean(gq) if gq else 0.0, hs, gs10, gf10))
            hq, gq = [], []
            k += 1
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    for i, name, cmds in _schedule(sec, rounds):
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
    np.savetxt(out, a, delimiter=",", fmt=["%.1f", "%.4f", "%.4f", "%.4f", "%.4f", "%d"] + ["%.4f"] * 5,
               header=f"{','.join(COLUMNS)}  phases: {names}; period {PERIOD_S} s; "
                      f"{sec:g} s per phase, {rounds} rounds")
    return a


def load_fixture(path: Path = FIXTURE) -> dict[str, np.ndarray]:
    """The committed load series, one array per column (host_psi / group_psi: the per-period
    PSI some fractions)."""
    try:
        a = np.loadtxt(path, delimiter=",", ndmin=2)
    except (OSError, ValueError) as e:
        raise KpError(f"cannot read load series {path}: {e}") from None
    if a.shape[1] != len(COLUMNS):
        raise KpError(f"{path}: expected {len(COLUMNS)} columns ({','.join(COLUMNS)}), found {a.shape[1]}")
    d = {c: a[:, i] for i, c in enumerate(COLUMNS)}
    d["host_psi"], d["group_psi"], d["phase"] = d.pop("host_psi_some"), d.pop("group_psi_some"), a[:, 5].astype(int)
    return d


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 and not sys.argv[1].startswith("--") else FIXTURE
    opt = lambda k, d: float(sys.argv[sys.argv.index(k) + 1]) if k in sys.argv else d  # noqa: E731
    a = record(out, opt("--seconds-per-phase", 12.0), int(opt("--rounds", 2)))
    print(f"wrote {out}: {len(a)} samples")
