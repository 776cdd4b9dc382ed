"""Real programs recorded with the foundation tracer and turned into page request streams:
sqlite doing skewed random lookups on a generated database, gcc compiling generated files,
Python importing standard modules, `sort` of a generated file larger than its buffer, and a shell
loop re-reading some files and scanning others once (`files`).

Each workload returns a Trace built from the program's file_read events (one request per page
read, id = inode:page) or, where those are few, its page faults.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.memory.trace import Trace, from_events


def _record(argv: list[str], name: str, kind: str = "files") -> Trace:
    from kernelpilot.traces.record import trace_command
    ev, summary = trace_command(argv, groups=["faults", "files"])
    if summary.get("exit_code") not in (0, None):
        raise KpError(f"workload {name} failed: {argv[0]} exited with {summary.get('exit_code')}")
    return from_events(ev, kind, name=name)


def sqlite(work: Path, scale: int) -> Trace:
    """Skewed (Zipf 0.9) point lookups by key and by a secondary index, small sqlite page cache."""
    db = work / "kp.db"
    rng = np.random.default_rng(0)
    rows = 2000 * scale
    import sqlite3 as sq
    con = sq.connect(db)
    con.execute("PRAGMA page_size=4096")
    con.execute("CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT, g INTEGER)")
    con.executemany("INSERT INTO t VALUES(?,?,?)",
                    ((i, os.urandom(60).hex(), int(x)) for i, x in enumerate(rng.permutation(rows))))
    con.execute("CREATE INDEX tg ON t(g)")
    con.commit()
    con.close()
    w = 1.0 / np.arange(1, rows + 1) ** 0.9
    keys = rng.permutation(rows)[rng.choice(rows, 6000 * scale // 10, p=w / w.sum())]
    sql = work / "q.sql"
    with open(sql, "w") as f:
        f.write("PRAGMA cache_size=16;\n")
        for j, k in enumerate(keys.tolist()):
            col = "k" if j % 2 else "g"
            f.write(f"SELECT length(v) FROM t WHERE {col}={k};\n")
    return _record(["/bin/sh", "-c", f"sqlite3 {db} < {sql} > /dev/null"], "sqlite")


def gcc(work: Path, scale: int) -> Trace:
    """gcc -O1 compiling several generated files that include many system headers."""
    heads = ["stdio.h", "stdlib.h", "string.h", "math.h", "time.h", "unistd.h", "fcntl.h", "signal.h",
             "pthread.h", "sys/socket.h", "netinet/in.h", "sys/stat.h", "ctype.h", "errno.h", "limits.h"]
    srcs = []
    for i in range(max(2, scale // 2)):
        p = work / f"f{i}.c"
        body = "".join(f"int f{i}_{j}(int x) {{ return (x * {j + 3}) ^ (x >> {j % 7}); }}\n" for j in range(200))
        p.write_text("".join(f"#include <{h}>\n" for h in heads[: 6 + i % 10]) + body)
        srcs.append(str(p))
    return _record(["gcc", "-O1", "-c", *srcs, "-o", "/dev/null"] if len(srcs) == 1 else
                   ["/bin/sh", "-c", " && ".join(f"gcc -O1 -c {s} -o {s}.o" for s in srcs)], "gcc")


def python_import(work: Path, scale: int) -> Trace:
    """Fresh interpreters importing standard modules, with a few rereads of a data file."""
    mods = "json,email.mime.text,http.client,xml.dom.minidom,asyncio,decimal,argparse,logging,csv,sqlite3"
    code = f"import {mods}"
    runs = max(2, scale // 2)
    return _record(["/bin/sh", "-c", "; ".join([f"{sys.executable} -B -c '{code}'"] * runs)], "python")


def sort(work: Path, scale: int) -> Trace:
    """`sort` of a generated text file several times its buffer (external merge over temp files)."""
    src = work / "in.txt"
    rng = np.random.default_rng(1)
    with open(src, "w") as f:
        for _ in range(scale):
            f.write("\n".join(rng.integers(0, 1 << 62, 20000).astype(str).tolist()) + "\n")
    runs = " && ".join(f"sort {k} -S 1M -T {work} -o {work}/out{j}.txt {src}"
                       for j, k in enumerate(["", "-r", "-n", "-u"]))
    return _record(["/bin/sh", "-c", runs], "sort")


def files(work: Path, scale: int) -> Trace:
    """A shell loop over many files: a few small config-like files re-read every round, a medium
    set of files re-read every other round, and large log-like files grepped once each (scans)."""
    rng = np.random.default_rng(2)
    hot = [work / f"hot{i}.txt" for i in range(8)]
    warm = [work / f"warm{i}.txt" for i in range(12)]
    cold = [work / f"cold{i}.log" for i in range(2 * scale)]
    for group, kb in ((hot, 16), (warm, 48), (cold, 256)):
        for p in group:
            p.write_bytes(rng.integers(97, 123, kb * 1024, dtype=np.uint8).tobytes())
    rounds = []
    for r in range(2 * scale):
        part = [f"cat {' '.join(map(str, hot))} > /dev/null",
                f"grep -c zzzz {cold[r]} > /dev/null"]
        if r % 2 == 0:
            part.append(f"cat {' '.join(map(str, warm))} > /dev/null")
        rounds.append("; ".join(part))
    # the files were just written: drop nothing, but read through the page cache as programs do
    return _record(["/bin/sh", "-c", "; ".join(rounds) + "; true"], "files")


WORKLOADS = {"sqlite": sqlite, "gcc": gcc, "python": python_import, "sort": sort, "files": files}


def record(name: str, scale: int = 10) -> Trace:
    """Run workload `name` under the tracer (needs root) and return its page request stream."""
    if name not in WORKLOADS:
        raise KpError(f"unknown workload '{name}'; choose from {', '.join(WORKLOADS)}")
    if scale <= 0:
        raise KpError("workload scale must be > 0")
    from kernelpilot.scratch import scratch
    with scratch(f"wl-{name.replace('_', '-').lower()}") as work:
        return WORKLOADS[name](work, scale)


# ---- live swap workloads: programs run under a memory limit (kpilot bench swap) ---------------

KV_PY = r'''
import os, socket, struct, sys, time
import numpy as np
n, reqs, batch, seed = int(sys.argv[1]), int(sys.argv[2]), 32, int(sys.argv[3])
a, b = socket.socketpair()
pid = os.fork()
if pid == 0:  # the server: a dict of n values of 1000 bytes, answers batches of keys
    a.close()
    d = {k: os.urandom(400) + (b"%012d" % k) * 50 for k in range(n)}
    b.sendall(b"r")
    buf = b""
    while True:
        m = b.recv(batch * 8)
        if not m:
            os._exit(0)
        buf += m
        while len(buf) >= batch * 8:
            ks, buf = struct.unpack(f"{batch}q", buf[: batch * 8]), buf[batch * 8:]
            b.sendall(struct.pack("q", sum(len(d[k]) for k in ks)))
b.close()
assert a.recv(1) == b"r"
rng = np.random.default_rng(seed)
w = 1.0 / np.arange(1, n + 1) ** 0.99
keys = rng.permutation(n)[rng.choice(n, reqs, p=w / w.sum())]
t0 = time.perf_counter()
total = 0
for i in range(0, reqs - batch + 1, batch):
    a.sendall(struct.pack(f"{batch}q", *keys[i:i + batch].tolist()))
    r = a.recv(8)
    if len(r) != 8:
        sys.exit("kv server gone")
    total += struct.unpack("q", r)[0]
a.close()
_, st = os.waitpid(pid, 0)
if st:
    sys.exit(f"kv server failed: status {st}")
print(round(time.perf_counter() - t0, 3), total)
'''

SQLITE_PY = r'''
import sqlite3, sys
import numpy as np
db, rows, queries, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
con = sqlite3.connect(db)
con.execute("PRAGMA cache_size=-8192")
rng = np.random.default_rng(seed)
w = 1.0 / np.arange(1, rows + 1) ** 0.9
keys = rng.permutation(rows)[rng.choice(rows, queries, p=w / w.sum())]
s = 0
for k in keys.tolist():
    s += len(con.execute("SELECT v FROM t WHERE k=?", (k,)).fetchone()[0])
print(s)
'''


class LiveWorkload:
    """A program for the swap bench: argv, the memory limit it runs under, the files whose page
    cache must be dropped before each run (so the run's cgroup is charged for reading them), and
    a reset between runs."""

    def __init__(self, name: str, argv: list[str], limit_mb: int, note: str, files=(), reset=None, floor=None):
        self.name, self.argv, self.limit_mb, self.note = name, argv, limit_mb, note
        self.files, self._reset = list(files), reset
        self.floor = floor  # limit_mb -> the fewest major faults any policy can have (None: not known)

    def prepare_run(self):
        if self._reset:
            self._reset()
        for p in self.files:
            try:
                fd = os.open(p, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


# the bench's seeds (numpy default_rng): kv's keys 3, sqlite's keys 4, sqlite's rows 5. A dev seed
# (`kpilot memory live reclaim --seed N`, for tuning) replaces all three, and hot/cold's cold reads
BENCH_SEEDS = {"kv": 3, "sqlite": 4, "sqlite_rows": 5}


def live_hotcold(work: Path, quick: bool, seed: int | None = None) -> LiveWorkload:
    from kernelpilot.memory.live import HELPER_C, build_c
    mb = 96 if quick else 144
    exe = build_c(HELPER_C, work, "kp_hotcold")
    rounds = 6000 if quick else 20000
    argv = [str(exe), str(mb), "20", str(rounds)] + ([] if seed is None else [str(seed)])
    return LiveWorkload("hotcold", argv, mb * 2 // 3,
                        f"C program, {mb} MB anonymous, 20% hot, 4 random cold reads a round",
                        floor=lambda limit_mb: hotcold_floor(mb, 20, rounds, limit_mb))


def hotcold_floor(mb: int, hot_pct: int, rounds: int, limit_mb: int) -> int:
    """The fewest major faults of the hot/cold program under limit_mb, for any policy that cannot
    foresee its random number generator: the hot pages are all read every round, so they stay in;
    the 4 cold reads a round fall uniformly on the cold pages, so whatever cold pages the rest of
    the limit holds, each read misses with P = 1 - cold held / cold pages. (The program's own
    pages only: its binary, stack and page tables would lower what the limit holds.)"""
    n = mb << 8
    hot = n * hot_pct // 100
    held = max(min((limit_mb << 8) - hot, n - hot), 0)
    return int(round(rounds * 4 * (1 - held / (n - hot))))


def live_sqlite(work: Path, quick: bool, seed: int | None = None) -> LiveWorkload:
    import sqlite3 as sq
    rows = 60000 if quick else 120000  # ~1.1 KB a row: 70 / 140 MB
    db = work / "kv.db"
    con = sq.connect(db)
    con.execute("PRAGMA page_size=4096")
    con.execute("CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB)")
    rng = np.random.default_rng(BENCH_SEEDS["sqlite_rows"] if seed is None else seed)
    con.executemany("INSERT INTO t VALUES(?,?)", ((i, rng.bytes(300) + b"x" * 700) for i in range(rows)))
    con.commit()
    con.close()
    size_mb = db.stat().st_size >> 20
    script = work / "sqlite_zipf.py"
    script.write_text(SQLITE_PY)
    keys = str(BENCH_SEEDS["sqlite"] if seed is None else seed)
    return LiveWorkload("sqlite", [sys.executable, str(script), str(db), str(rows), "20000" if quick else "100000", keys],
                        max(size_mb * 3 // 5, 32), f"Python sqlite3, Zipf 0.9 point lookups on a {size_mb} MB database",
                        files=[db])


def live_compileall(work: Path, quick: bool, seed: int | None = None) -> LiveWorkload:
    # no randomness: a dev seed changes nothing
    import sysconfig
    src = Path(sysconfig.get_paths()["stdlib"])
    pkgs = ["email", "json", "http", "xml", "logging", "concurrent", "urllib", "html", "wsgiref"]
    if not quick:
        pkgs += ["asyncio", "unittest", "multiprocessing", "importlib", "ctypes", "sqlite3", "tomllib",
                 "re", "collections", "dbm", "zoneinfo", "xmlrpc", "curses"]
    dst = work / "stdlib"
    dst.mkdir()
    for p in pkgs:
        if (src / p).is_dir():
            shutil.copytree(src / p, dst / p, ignore=shutil.ignore_patterns("__pycache__", "test", "tests"))
    for f in sorted(src.glob("*.py")):
        shutil.copy(f, dst / f.name)

    def reset():
        for d in dst.rglob("__pycache__"):
            shutil.rmtree(d, ignore_errors=True)
    files = [str(f) for f in dst.rglob("*.py")]
    mb = sum(os.path.getsize(f) for f in files) >> 20
    return LiveWorkload("compileall", [sys.executable, "-m", "compileall", "-q", "-f", str(dst)], 256,
                        f"python -m compileall over a {mb} MB copy of the standard library", files, reset)


def live_kv(work: Path, quick: bool, seed: int | None = None) -> LiveWorkload:
    n = 100000 if quick else 150000
    script = work / "kv_server.py"
    script.write_text(KV_PY)
    keys = str(BENCH_SEEDS["kv"] if seed is None else seed)
    return LiveWorkload("kv", [sys.executable, str(script), str(n), str(600000 if quick else 1500000), keys],
                        n * 1200 // (1 << 20) + 64,
                        f"Python key-value server on a socket pair, {n} values of 1000 bytes, Zipf 0.99 gets")


LIVE_WORKLOADS = {"hotcold": live_hotcold, "sqlite": live_sqlite, "compileall": live_compileall, "kv": live_kv}
