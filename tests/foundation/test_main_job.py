"""`kpilot run` (what `make run` does: the agent beside a built-in demo) and `kpilot doctor`, as root
(serial). As an ordinary user (the shipped trace replayed, no probes): test_main_job_replay.py."""
import json
import os
from pathlib import Path

from tests.conftest import need_root

DOMAINS = ("sched", "security", "memory", "aipath")


def test_run_live_as_root(kpilot, tmp_path):
    """The agent beside its demo: every domain reports, and the demo's own pieces are seen."""
    need_root()
    log = tmp_path / "run.jsonl"
    r = kpilot("run", "-d", "8", "--json", "--log", log, timeout=400)
    assert r.returncode == 0, r.stderr
    assert "live agent (dry run)" in r.stderr and "Traceback" not in r.stderr
    s = json.loads(r.stdout)
    assert all(s[k] for k in DOMAINS)
    a = s["agent"]
    assert a["mode"] == "dry-run" and a["events"] > 0 and a["log"] == str(log)
    # scheduling: windows classified; the demo's spinning loop is batch, never latency-critical
    assert s["sched"]["windows"] >= 8 and s["sched"]["tasks_seen"] > 0
    assert s["demo"]["classes"]["batch"] in ("batch", "not classified")
    assert s["security"]["state"].startswith("watching") and s["security"]["syscalls_seen"] > 0
    assert s["demo"]["attack_alerted"], s["security"]  # the ransomware-like scenario is named
    # memory: the strided reader's file faults are found predictable and prefetched (planned)
    pre = s["demo"]["reader_prefetch"]
    assert pre and pre[0]["pages_issued"] > 0 and pre[0]["issued_then_faulted"] > 0
    assert s["aipath"]["processes"] > 0 and any(v.get("syscalls") for v in s["aipath"]["layers"].values())
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    assert {r["domain"] for r in recs} >= {"agent", "sched", "memory"}
    assert a["journal"]["applied"] == 0  # dry run: nothing changed


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
