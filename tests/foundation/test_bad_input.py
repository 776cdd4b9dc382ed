"""Bad input and missing capabilities: one clear line, a non-zero exit, never a traceback."""
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import need_root
from kernelpilot.traces import schema as S
from kernelpilot.traces.store import write_trace


def _one_line_error(r, *needles):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture
def good_trace(tmp_path):
    ev = np.zeros(5000, dtype=S.EVENT_DTYPE)
    ev["kind"] = S.SYSCALL
    ev["ts"] = np.arange(5000)
    return write_trace(tmp_path / "good.parquet", ev)


def test_truncated_trace(kpilot, good_trace, tmp_path):
    bad = tmp_path / "cut.parquet"
    data = good_trace.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    _one_line_error(kpilot("trace-info", bad), "truncated")


def test_corrupt_footer(kpilot, good_trace, tmp_path):
    bad = tmp_path / "corrupt.parquet"
    data = bytearray(good_trace.read_bytes())
    data[-12:-4] = b"\xff" * 8  # footer length garbage
    bad.write_bytes(bytes(data))
    _one_line_error(kpilot("trace-info", bad), "corrupt")


def test_foreign_parquet(kpilot, tmp_path):
    f = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"x": [1, 2, 3]}), f)
    _one_line_error(kpilot("trace-info", f), "not a kernelpilot trace", "missing columns")


def test_not_parquet_and_missing(kpilot, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("hello")
    _one_line_error(kpilot("trace-info", f), "not a Parquet trace")
    _one_line_error(kpilot("trace-info", tmp_path / "nope.parquet"), "trace not found")


def test_bad_options(kpilot, tmp_path):
    _one_line_error(kpilot("record", "-e", "bogus", "-o", tmp_path / "x.parquet"), "unknown event group bogus")
    _one_line_error(kpilot("record", "-o", tmp_path / "x.parquet", "--", "/no/such/cmd"), "command not found")
    _one_line_error(kpilot("record", "-o", tmp_path / "nodir" / "x.parquet", "-d", "1"), "output folder does not exist")
    _one_line_error(kpilot("record", "--source", "magic", "-o", tmp_path / "x.parquet", "-d", "1"), "unknown source")


def test_no_btf_falls_back_to_tracefs(kpilot, tmp_path):
    need_root()
    out = tmp_path / "t.parquet"
    r = kpilot("record", "-e", "syscalls", "-o", out, "--", "/bin/ls", "/", env={"KPILOT_BTF": "/nonexistent/btf"})
    assert r.returncode == 0, r.stderr
    assert "ebpf unavailable" in r.stderr and "no BTF" in r.stderr
    assert "source: tracefs" in r.stderr
    info = kpilot("trace-info", out, "--json")
    assert '"syscall"' in info.stdout
    d = kpilot("doctor", "--json", env={"KPILOT_BTF": "/nonexistent/btf"})
    assert '"btf": false' in d.stdout and '"source": "tracefs"' in d.stdout


def test_tracefs_source_sees_command_syscalls(tmp_path):
    need_root()
    from kernelpilot.traces.record import trace_command
    ev, s = trace_command(["/bin/sh", "-c", "cat /etc/hostname > /dev/null"], groups=["syscalls", "sched"],
                          source="tracefs")
    assert s["source"] == "tracefs"
    assert b"cat" in set(ev["comm"].tolist())
    assert (ev["kind"] == S.SYSCALL).sum() > 20


def test_not_root_falls_back_to_proc(kpilot):
    if not shutil.which("setpriv"):
        pytest.skip("setpriv missing")
    import tempfile
    from pathlib import Path
    tmp_path = Path(tempfile.mkdtemp(prefix="kpilot-nobody-"))
    os.chmod(tmp_path, 0o777)
    out = tmp_path / "np.parquet"
    r = kpilot("record", "-e", "syscalls", "-o", out, "--", "/bin/sleep", "0.5", user="nobody",
               env={"HOME": str(tmp_path), "KPILOT_BUILD_DIR": str(tmp_path / "b")})
    assert r.returncode == 0, r.stderr
    assert "needs root" in r.stderr and "source: proc" in r.stderr
    _one_line_error(kpilot("bench", "ingest", "--json", user="nobody", env={"HOME": str(tmp_path)}), "needs root")
    _one_line_error(kpilot("record", "-o", "/root/forbidden.parquet", "-d", "1", user="nobody",
                           env={"HOME": str(tmp_path)}), "cannot write")
    shutil.rmtree(tmp_path, ignore_errors=True)
