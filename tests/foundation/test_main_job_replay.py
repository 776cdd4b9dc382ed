"""`kpilot run` and `kpilot doctor` as an ordinary user: the shipped trace replayed through the same
pilots. No probes, nothing host-wide: it runs in the parallel part of the tests."""
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from kernelpilot.traces.store import read_trace

SAMPLE = Path(__file__).resolve().parents[2] / "kernelpilot" / "data" / "sample.parquet"
DOMAINS = ("sched", "security", "memory", "aipath")


def _nobody_dir():
    d = Path(tempfile.mkdtemp(prefix="kpilot-nobody-"))
    os.chmod(d, 0o777)
    return d


def test_run_without_root_replays_shipped_trace(kpilot):
    if not shutil.which("setpriv"):
        pytest.skip("setpriv missing")
    d = _nobody_dir()
    try:
        r = kpilot("run", "--json", "--log", d / "run.jsonl", user="nobody", env={"HOME": str(d)}, timeout=300)
        assert r.returncode == 0, r.stderr
        assert "eBPF is not permitted here" in r.stderr and "sample.parquet" in r.stderr
        s = json.loads(r.stdout)
        assert all(s[k] for k in DOMAINS)
        ev = read_trace(SAMPLE)[0]
        assert s["agent"]["events"] == len(ev) and s["agent"]["stopped"] == "replay finished"
        assert s["sched"]["windows"] >= 1 and s["sched"]["classes"]
        faults = int(((ev["kind"] == 7) | (ev["kind"] == 13)).sum())
        assert s["memory"]["faults_seen"] == faults
        assert s["security"]["syscalls_seen"] == int((ev["kind"] == 6).sum())
        assert s["aipath"]["processes"] > 0 and s["aipath"]["layers"]
        doc = kpilot("doctor", "--json", user="nobody", env={"HOME": str(d)})
        c = json.loads(doc.stdout)
        assert c["root"] is False and c["record_source"]["source"] == "proc"
    finally:
        shutil.rmtree(d, ignore_errors=True)
