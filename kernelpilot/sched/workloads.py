"""Named real workloads for recorded scheduling traces, with ground-truth task classes from what
each program is (not from how it behaves): cyclictest and our interactive loop are latency-
critical; stress-ng stressors, compilers, make and our batch/sqlite jobs are batch; sha256sum is
left unlabelled (a request in one workload, batch hashing in another).

    python -m kernelpilot.sched.workloads [SECONDS] [OUTDIR]

records every workload with kernelpilot.traces.record.trace_command(groups=["sched"]) into
OUTDIR (default: the committed fixtures in kernelpilot/sched/data/traces/)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from kernelpilot.sched.features import comm_class

FIXTURES = Path(__file__).resolve().parent / "data" / "traces"
LATENCY_COMMS = {"cyclictest", "kp-interact"}
BATCH_PREFIX = ("stress-ng", "cc", "as", "ld", "collect", "gcc", "make", "kp-batch", "kp-sqlite", "cpp")

# a python loop that wakes every 2 ms, does ~50 us of work (an interactive handler)
INTERACT = ("import ctypes,time; ctypes.CDLL(None).prctl(15, b'kp-interact'); end=time.time()+{s}\n"
            "while time.time() < end:\n    time.sleep(0.002); sum(range(300))")
BATCH_PY = ("import ctypes,time; ctypes.CDLL(None).prctl(15, b'kp-batch'); end=time.time()+{s}\n"
            "while time.time() < end:\n    sorted(range(200000, 0, -1))")
SQLITE = ("import ctypes,sqlite3,time,os,tempfile; ctypes.CDLL(None).prctl(15, b'kp-sqlite')\n"
          "d=tempfile.mkdtemp(); db=sqlite3.connect(os.path.join(d,'t.db')); db.execute('create table t(a,b)')\n"
          "end=time.time()+{s}; i=0\n"
          "while time.time() < end:\n"
          "    db.executemany('insert into t values(?,?)', [(i*j, str(j)) for j in range(500)]); db.commit()\n"
          "    db.execute('select count(*), sum(a) from t where b like \"1%\"').fetchall(); i+=1\n"
          "db.close(); [os.remove(os.path.join(d,f)) for f in os.listdir(d)]; os.rmdir(d)")


def c_project(d: str, n: int = 24) -> str:
    """Write a small C project (n units + main) with a Makefile into `d`; returns the make target dir."""
    p = Path(d)
    for i in range(n):
        (p / f"u{i}.c").write_text(
            f"#include <string.h>\nstatic int t{i}[64];\n"
            + "".join(f"int f{i}_{k}(int x){{int s=0;for(int j=0;j<x;j++){{s+=j*{k}^x;t{i}[j&63]=s;}}"
                      f"return s+(int)strlen(\"u{i}\");}}\n" for k in range(12)))
    (p / "main.c").write_text("int f0_1(int);\nint main(void){return f0_1(3)&1;}\n")
    objs = " ".join([f"u{i}.o" for i in range(n)] + ["main.o"])
    (p / "Makefile").write_text(f"app: {objs}\n\tgcc -o app {objs}\n%.o: %.c\n\tgcc -O2 -c $< -o $@\n"
                                "clean:\n\trm -f *.o app\n")
    return d


def data_files(d: str, n: int = 40) -> str:
    """`n` files of 128 KiB .. 16 MiB (log-uniform, seeded) under d/blobs: short hashing jobs of
    very different lengths."""
    p = Path(d) / "blobs"
    p.mkdir(exist_ok=True)
    rng = np.random.default_rng(3)
    for i, kb in enumerate(np.exp(rng.uniform(np.log(128), np.log(16384), n)).astype(int)):
        (p / f"b{i:02d}.bin").write_bytes(rng.bytes(int(kb) * 1024))
    return str(p)


def scripts(seconds: float, build_dir: str) -> dict[str, str]:
    """Workload name -> shell script running about `seconds`."""
    s = f"{seconds:g}"
    make = f"(cd {build_dir} && while :; do make -s -j3 >/dev/null 2>&1; make -s clean; done)"
    cyc = f"cyclictest -q -D {s} -i 1000 >/dev/null"
    q = lambda c: "'" + c.replace("'", "'\\''") + "'"  # noqa: E731
    py = lambda c: f"{sys.executable} -c {q(c.format(s=s))}"  # noqa: E731
    bounded = lambda c: f"timeout {s} sh -c {q(c)}"  # noqa: E731
    return {
        "hogs_cyclic_build": f"stress-ng --cpu 2 -t {s} -q & {cyc} & {bounded(make)}; wait",
        "stress_variety": (f"stress-ng --cpu 1 --cpu-load 70 --matrix 1 --pipe 1 --pipe-ops 20000 --hdd 1 --hdd-bytes 4m -t {s} -q & "
                           f"{cyc} & {py(INTERACT)} & wait"),
        "make_j": f"{cyc} & {py(INTERACT)} & {bounded(make)}; wait",
        "python_sqlite": f"{py(BATCH_PY)} & {py(BATCH_PY)} & {py(SQLITE)} & {py(INTERACT)} & {cyc} & wait",
        "cyclic_overload": f"stress-ng --cpu 3 --pipe 1 --pipe-ops 20000 -t {s} -q & cyclictest -q -t 2 -D {s} -i 500 >/dev/null & wait",
        # find | xargs -P 6: many short hashing jobs of very different lengths beside a CPU hog
        "xargs_hash_hog": (f"stress-ng --cpu 1 -t {s} -q & " + bounded(
            f"while :; do find {build_dir}/blobs -name '*.bin' | shuf | xargs -P 6 -n 1 sha256sum >/dev/null; done")
            + "; wait"),
        # request-like short jobs (one process per request, every 20 ms) and parallel short
        # compiles beside two batch hogs
        "requests_compiles_batch": (f"stress-ng --cpu 2 -t {s} -q & " + bounded(
            f"while :; do sha256sum {build_dir}/blobs/b0$(shuf -i 0-9 -n 1).bin >/dev/null; sleep 0.02; done")
            + " & " + bounded(f"cd {build_dir} && while :; do ls u*.c | xargs -P 4 -n 1 gcc -O2 -c; done")
            + "; wait"),
    }


def labels(f) -> dict[int, int]:
    """pid -> 1 (latency-critical) / 0 (batch) by program name, for the traced tasks of `f`."""
    out = {}
    for i, (pid, comm) in enumerate(zip(f.pids, f.comm)):
        if f.traced is not None and not f.traced[i]:
            continue
        if comm in LATENCY_COMMS:
            out[int(pid)] = 1
        elif comm.startswith(BATCH_PREFIX) or comm_class(comm) in BATCH_PREFIX:
            out[int(pid)] = 0
    return out


def record(name: str, seconds: float):
    """(events, meta) of workload `name` recorded with the sched tracer."""
    from kernelpilot.traces.record import trace_command
    d = tempfile.mkdtemp(prefix="kp-sched-")
    try:
        c_project(d)
        data_files(d)
        return trace_command(["sh", "-c", scripts(seconds, d)[name]], groups=["sched"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def record_all(seconds: float, out: Path) -> list[Path]:
    from kernelpilot.traces.store import write_trace
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in scripts(seconds, "/tmp"):
        ev, meta = record(name, seconds)
        paths.append(write_trace(out / f"{name}.parquet", ev, {"workload": name, "seconds": seconds}))
        print(f"{name}: {len(ev)} events", flush=True)
    return paths


def fixtures() -> list[tuple[str, np.ndarray]]:
    """The committed recorded traces: (workload name, events)."""
    from kernelpilot.traces.store import read_trace
    return [(p.stem, read_trace(p)[0]) for p in sorted(FIXTURES.glob("*.parquet"))]


if __name__ == "__main__":
    sec = float(sys.argv[1]) if len(sys.argv) > 1 else 4.0
    record_all(sec, Path(sys.argv[2]) if len(sys.argv) > 2 else FIXTURES)
