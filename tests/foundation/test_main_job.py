"""`kpilot run` (what `make run` does) and `kpilot doctor`, as root and as an ordinary user."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import need_root
from kernelpilot.traces.store import read_trace

SAMPLE = Path(__file__).resolve().parents[2] / "kernelpilot" / "data" / "sample.parquet"


def test_run_records_live_as_root(kpilot, tmp_path):
    need_root()
    # A quiet CI machine may make no syscalls at all in one second besides kpilot's own (which it
    # excludes), so give the session a small, steady syscall load to see.
    load = subprocess.Popen([sys.executable, "-c",
                             "import os, time\nwhile True:\n    os.getppid(); time.sleep(0.002)"])
    try:
        r = kpilot("run", "-d", "1", "-o", tmp_path / "live.parquet", "--json")
    finally:
        load.kill()
        load.wait()
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert "live eBPF session" in r.stderr
    assert s["events"] > 0 and s["kinds"].get("syscall", 0) > 0 and s["kinds"].get("sched_switch", 0) > 0
    assert len(read_trace(tmp_path / "live.parquet")[0]) == s["events"]
    ins = s["sched_insights"]  # the learn step: busy tasks classified by the scheduling model
    assert ins and all(r["class"] in ("latency-critical", "batch") for r in ins)
    assert all(r["agent_would"] for r in ins)
    kthreads = [r for r in ins if "kernel thread" in r["agent_would"]]
    assert all(r["agent_would"].startswith("leave alone") for r in kthreads)


def _nobody_dir():
    d = Path(tempfile.mkdtemp(prefix="kpilot-nobody-"))
    os.chmod(d, 0o777)
    return d


def test_run_without_root_replays_shipped_trace(kpilot):
    if not shutil.which("setpriv"):
        pytest.skip("setpriv missing")
    d = _nobody_dir()
    try:
        r = kpilot("run", "--json", "-o", d / "x.parquet", user="nobody", env={"HOME": str(d)})
        assert r.returncode == 0, r.stderr
        assert "eBPF is not permitted here" in r.stderr and "sample.parquet" in r.stderr
        assert json.loads(r.stdout)["events"] == len(read_trace(SAMPLE)[0])
        doc = kpilot("doctor", "--json", user="nobody", env={"HOME": str(d)})
        c = json.loads(doc.stdout)
        assert c["root"] is False and c["record_source"]["source"] == "proc"
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_doctor_as_root_reports_this_kernel(kpilot):
    need_root()
    c = json.loads(kpilot("doctor", "--json").stdout)
    assert c["kernel"] == os.uname().release
    assert c["btf"] is True and c["bpf_prog_types"]["tracepoint"] is True
    assert c["record_source"]["source"] == "ebpf"
    assert c["sched_ext"] == os.path.exists("/sys/kernel/sched_ext")
    # running kdamonds are reported (this VM's host runs one: paddr + pageout), never touched
    on = [d for d in Path("/sys/kernel/mm/damon/admin/kdamonds").glob("[0-9]*")
          if (d / "state").read_text().strip() == "on"]
    assert len(c["damon_in_use"]) == len(on)
    assert all(x.startswith(f"kdamond {d.name}: ") for x, d in zip(c["damon_in_use"], sorted(on)))
