"""kpilot query: DuckDB views over real traces, alert logs and sweep results; one-line errors."""
import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT, need_root, run_kpilot


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    need_root()
    out = tmp_path_factory.mktemp("q") / "ls.parquet"
    r = run_kpilot("record", "-e", "syscalls,faults", "-o", out, "--", "ls", "-R", "/usr/share/doc/bash")
    assert r.returncode == 0, r.stderr
    return out


def q(*args):
    r = run_kpilot("query", *map(str, args), "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_top_syscalls_per_program_match_numpy(trace):
    from kernelpilot.traces.store import read_trace
    ev, _ = read_trace(trace)
    sc = ev[ev["kind"] == 6]
    rows = q("SELECT comm, n.name AS syscall, count(*) AS calls FROM trace JOIN syscall_names n ON a0 = n.nr "
             "WHERE kind = 'syscall' GROUP BY ALL ORDER BY calls DESC, syscall", trace)
    assert rows and rows[0]["comm"] == "ls"
    known = np.isin(sc["a0"], np.array(list(_names()), dtype=np.uint64))
    assert sum(r["calls"] for r in rows) == int(known.sum()) > 0
    nr = {v: k for k, v in _names().items()}
    top = rows[0]
    mask = (sc["a0"] == nr[top["syscall"]]) & (sc["comm"] == b"ls")
    assert top["calls"] == int(mask.sum())


def _names():
    from kernelpilot.security.syscalls import tables
    return tables()["x86_64"]


def test_faults_per_second(trace):
    rows = q("SELECT (ts_ns // 1000000000) AS second, count(*) AS faults FROM trace "
             "WHERE kind = 'page_fault' GROUP BY 1 ORDER BY 1", trace)
    assert rows and all(r["faults"] > 0 for r in rows)


def test_alerts_and_sweep_views(tmp_path):
    log = tmp_path / "alerts.jsonl"
    log.write_text("\n".join(json.dumps({"time": f"2026-12-01T00:00:0{i}Z", "rule": r, "pid": i})
                             for i, r in enumerate(["shadow_read", "shadow_read", "model"])) + "\n")
    sw = tmp_path / "sweep.parquet"
    pq.write_table(pa.table({"trace": ["a", "a", "b", "b"], "policy": ["lru", "arc", "lru", "arc"],
                             "size": [10, 10, 10, 10], "miss_ratio": [0.5, 0.4, 0.3, 0.2]}), sw)
    rows = q("SELECT rule, count(*) AS n FROM alerts GROUP BY rule ORDER BY n DESC", log)
    assert rows == [{"rule": "shadow_read", "n": 2}, {"rule": "model", "n": 1}]
    rows = q("SELECT policy, avg(miss_ratio) AS mr FROM sweep GROUP BY policy ORDER BY policy", sw)
    assert [r["policy"] for r in rows] == ["arc", "lru"] and np.isclose(rows[0]["mr"], 0.3)
    # two files of one kind are one view
    sw2 = tmp_path / "sweep2.parquet"
    pq.write_table(pa.table({"trace": ["c"], "policy": ["lru"], "size": [1], "miss_ratio": [1.0]}), sw2)
    assert q("SELECT count(*) AS n FROM sweep", sw, sw2) == [{"n": 5}]


@pytest.mark.parametrize("sql,content,msg", [
    ("SELECT * FROM alerts", "trace", "views here: trace"),
    ("SELEKT 1", "trace", "query failed"),
    ("SELECT 1", "text", "neither Parquet nor JSON lines"),
    ("SELECT 1", "badparquet", "corrupt Parquet"),
    ("SELECT 1", "missing", "no such file"),
])
def test_bad_queries_and_files_one_line(tmp_path, trace, sql, content, msg):
    f = {"trace": trace, "missing": tmp_path / "nope.parquet"}.get(content, tmp_path / "f")
    if content == "text":
        f.write_text("hello\n")
    elif content == "badparquet":
        f.write_bytes(b"PAR1" + b"\0" * 64 + b"PAR1")
    r = run_kpilot("query", sql, f)
    assert r.returncode != 0 and msg in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_without_duckdb_says_how_to_get_it(tmp_path):
    code = ("import sys; sys.modules['duckdb'] = None; sys.argv = ['kpilot', 'query', 'SELECT 1', sys.argv[1]]\n"
            "from kernelpilot.cli import main; main()")
    f = tmp_path / "a.jsonl"
    f.write_text('{"a": 1}\n')
    r = subprocess.run([sys.executable, "-c", code, str(f)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode != 0 and "kernelpilot[scale]" in r.stderr, r.stderr
