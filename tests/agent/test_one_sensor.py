"""The agent's one sensor: exactly one BPF program on sys_enter (read from bpftool), and that one
program feeds both the trace batches and the security watch's in-kernel windows."""
import json
import os
import subprocess
import sys

import pytest

from agent_helpers import ROOT, killed_if_left, model_file, stop_cleanly, wait_for  # noqa: F401 (model_file: fixture)
from tests.conftest import need_root


def attached(pid: int, tracepoint: str) -> list[dict]:
    """bpftool's view of the programs process `pid` holds on `tracepoint`, with their names."""
    perf = json.loads(subprocess.run(["bpftool", "perf", "list", "-j"], capture_output=True, text=True,
                                     check=True).stdout)
    out = []
    for p in perf:
        if p["pid"] == pid and p.get("tracepoint") == tracepoint:
            info = json.loads(subprocess.run(["bpftool", "prog", "show", "id", str(p["prog_id"]), "-j"],
                                             capture_output=True, text=True, check=True).stdout)
            out.append({**p, "name": info["name"], "run_cnt": info.get("run_cnt", 0)})
    return out


def test_agent_one_sys_enter_program_feeds_trace_and_security(tmp_path, model_file):
    need_root()
    import shutil
    if not shutil.which("bpftool"):
        pytest.skip("bpftool missing")
    from kernelpilot.agent.state import read_state
    from kernelpilot.probes.libbpf import enable_stats
    rdir = tmp_path / "run"
    rdir.mkdir()
    cfg = tmp_path / "a.toml"
    cfg.write_text(f"[security]\nmodel = \"{model_file}\"\n[memory]\nenabled = false\n")
    env = {**os.environ, "KPILOT_RUN_DIR": str(rdir), "COLUMNS": "200"}
    a = subprocess.Popen([sys.executable, "-m", "kernelpilot.cli", "agent", "run", "--config", str(cfg),
                          "--log", str(tmp_path / "e.jsonl"), "-d", "120"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    with killed_if_left(a):
        def watching():
            st = read_state(rdir / "agent.sock") or {}
            return st.get("events", 0) > 0 and "watching" in st.get("domains", {}).get("security", {}).get("state", "")
        assert wait_for(watching, 90), a.stderr.read() if a.poll() is not None else read_state(rdir / "agent.sock")
        st = read_state(rdir / "agent.sock")
        assert "in the sensor's sys_enter program" in st["domains"]["security"]["state"]
        progs = attached(a.pid, "sys_enter")
        assert [p["name"] for p in progs] == ["kp_sys_enter"], progs
        # the security watch has no sys_enter program of its own anywhere in the agent
        names = [p["name"] for p in attached(a.pid, "sys_enter") + attached(a.pid, "sched_process_exec")]
        assert "sc_sys_enter" not in names and "sc_exec" in names
        # that one program's runs feed both: trace events (aipath's per-process syscall counts)
        # and the watch's windows (its in-kernel counters), for the same burst
        before = read_state(rdir / "agent.sock")["domains"]["security"]["watch"]
        with enable_stats():
            r0 = attached(a.pid, "sys_enter")[0]["run_cnt"]
            subprocess.run(["sh", "-c", "for i in $(seq 20); do cat /etc/hostname >/dev/null; done"], check=True)
            assert wait_for(lambda: read_state(rdir / "agent.sock")["domains"]["security"]["watch"]["syscalls"]
                            > before["syscalls"] + 1000, 20)
            r1 = attached(a.pid, "sys_enter")[0]["run_cnt"]
        after = read_state(rdir / "agent.sock")
        assert r1 - r0 > 1000
        w = after["domains"]["security"]["watch"]
        assert w["windows"] > before["windows"] and w["dropped"] == 0
        assert after["events"] > st["events"]
        stop_cleanly(a)


def test_sensor_falls_back_to_kp_trace_when_the_merged_build_fails(monkeypatch):
    """Where the merged object does not load, the agent's sensor is kp_trace alone (the watch then
    loads its own stage): it still delivers events and says why."""
    need_root()
    from kernelpilot.agent import observer, sensor
    from kernelpilot.bpf.build import build_object
    bad = build_object(ROOT / "tests" / "foundation" / "bad_verifier.bpf.c")  # has none of the programs
    monkeypatch.setattr(sensor.AgentSource, "object_path", lambda self: bad)
    o = observer.LiveObserver(ring_mb=4)
    try:
        assert not o.merged and o.security_sensor is None
        assert o.name.startswith("ebpf (kp_trace, ") and "no program named" in o.stats()["merged_build_failed"]
        got = []
        assert wait_for(lambda: got.append(o.poll()) or sum(map(len, got)) > 0, 20)
    finally:
        o.close()


def test_struct_sizes_match_the_object_btf():
    """The sizes Python packs or budgets by equal the merged object's BTF: struct sc_cfg (CFG) and
    struct sc_proc (SC_PROC_BYTES, the thread-id array's budget)."""
    import re
    import shutil
    if not shutil.which("bpftool"):
        pytest.skip("bpftool missing")
    from kernelpilot.agent.sensor import SC_PROC_BYTES, agent_object
    from kernelpilot.security.live import CFG
    btf = subprocess.run(["bpftool", "btf", "dump", "file", str(agent_object())], capture_output=True, text=True,
                         check=True).stdout
    size = {m[0]: int(m[1]) for m in re.findall(r"STRUCT '(sc_\w+)' size=(\d+)", btf)}
    assert size["sc_cfg"] == CFG.size and size["sc_proc"] == SC_PROC_BYTES, size
