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
import tempfile
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
    base = "/var/tmp" if Path("/var/tmp").is_dir() else None
    work = Path(tempfile.mkdtemp(prefix=f"kpilot-wl-{name}-", dir=base))
    try:
        return WORKLOADS[name](work, scale)
    finally:
        shutil.rmtree(work, ignore_errors=True)
