"""`kpilot agent run` live (serial: each runs a real agent on the host): one agent at a time, the
state socket, SIGHUP reload, SIGTERM with rollback, kill -9 undone by the guardian, a failing domain.
Bad input and the event log, which load no probes: test_agent_inputs.py (parallel part)."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cli_checks import one_line_error  # noqa: E402

from tests.conftest import need_root, run_kpilot
from kernelpilot.agent.eventlog import FIELDS
from kernelpilot.bench.agent import sched_only, spinner
from agent_helpers import ROOT, killed_if_left, model_file, rdir, stop_cleanly, wait_for  # noqa: F401 (fixtures)

QUIET = "[security]\nenabled = false\n"  # the watch learns a host model on first use: not here


def agent(args, rdir, **kw):
    env = {**os.environ, "KPILOT_RUN_DIR": str(rdir), "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "kernelpilot.cli", "agent", "run", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT, **kw)


def state(rdir):
    from kernelpilot.agent.state import read_state
    return read_state(rdir / "agent.sock")


def test_one_agent_state_socket_reload_and_stop(tmp_path, rdir):
    need_root()
    cfg = tmp_path / "a.toml"
    cfg.write_text(QUIET + "[aipath]\ntop = 5\n")
    log = tmp_path / "events.jsonl"
    a = agent(["--config", cfg, "--log", log, "-d", "120"], rdir)
    with killed_if_left(a):
        assert wait_for(lambda: (state(rdir) or {}).get("events", 0) > 0, 60), a.stderr.read() if a.poll() else ""
        st = state(rdir)
        assert st["pid"] == a.pid and st["mode"] == "dry-run"
        assert set(st["domains"]) == {"sched", "security", "memory", "aipath"}
        assert st["domains"]["security"] == {"state": "disabled in the config"}
        assert "security stage" not in st["sensor"]["source"]  # security off: kp_trace alone
        # kpilot top / serve read the agent's socket instead of loading probes of their own
        from kernelpilot.report.sampler import Sampler
        smp = Sampler(events=["sched"], bpf=False)
        try:
            assert smp.src is None and any("from the running agent" in n for n in smp.notes)
            assert wait_for(lambda: smp.sample().events > 0, 20)
        finally:
            smp.close()
        # a second agent: one line, non-zero, the first untouched
        r = run_kpilot("agent", "run", "-d", "5", env={"KPILOT_RUN_DIR": str(rdir)})
        one_line_error(r, "another kernelpilot agent is running", f"pid {a.pid}")
        assert a.poll() is None and state(rdir)["pid"] == a.pid
        # SIGHUP: a bad config is reported and the old one kept; a good one applies
        cfg.write_text(QUIET + "[aipath]\ntop = 5\nbogus = 1\n")
        a.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "reload failed" in log.read_text(), 20)
        assert a.poll() is None and "memory" in state(rdir)["domains"]
        cfg.write_text(QUIET + "[memory]\nenabled = false\n")
        a.send_signal(signal.SIGHUP)
        assert wait_for(lambda: (state(rdir) or {}).get("reloads") == 1, 20)
        assert wait_for(lambda: state(rdir)["domains"]["memory"] == {"state": "disabled in the config"}, 10)
        out, err = stop_cleanly(a)
    assert "stopped: SIGTERM" in out
    assert not (rdir / "agent.sock").exists() and not (rdir / "agent.pid").exists()
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    assert all(tuple(r) == FIELDS for r in recs)
    assert {r["domain"] for r in recs} >= {"agent", "sched"}
    assert any("config reloaded" in r["what"] for r in recs)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_enforced_change_undone_on_kill9_and_sigterm(tmp_path, rdir, sig):
    """SIGTERM: the agent rolls back itself; kill -9: its guardian does."""
    need_root()
    cfg = tmp_path / "a.toml"
    cfg.write_text(sched_only("kpt-spin"))
    with killed_if_left(spinner("kpt-spin")) as child:
        assert wait_for(lambda: Path(f"/proc/{child.pid}/comm").read_text().strip() == "kpt-spin", 10)
        assert os.sched_getscheduler(child.pid) == os.SCHED_OTHER
        with killed_if_left(agent(["--config", cfg, "--enforce", "--log", tmp_path / "e.jsonl", "-d", "120"],
                                  rdir)) as a:
            assert wait_for(lambda: os.sched_getscheduler(child.pid) == os.SCHED_BATCH, 60), \
                (tmp_path / "e.jsonl").read_text()[-2000:] if (tmp_path / "e.jsonl").exists() else ""
            assert list(rdir.glob("journal-*.jsonl"))
            os.kill(a.pid, sig)
            a.wait(60)
        assert a.returncode == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
        assert wait_for(lambda: os.sched_getscheduler(child.pid) == os.SCHED_OTHER, 20)
        assert wait_for(lambda: not list(rdir.glob("journal-*.jsonl")), 10)


def test_failing_domain_leaves_others_running(tmp_path, rdir):
    need_root()
    bad = tmp_path / "not-a-model.json"
    bad.write_text("{\"format\": \"something else\"}")
    cfg = tmp_path / "a.toml"
    cfg.write_text(f"[security]\nmodel = \"{bad}\"\n")
    r = run_kpilot("agent", "run", "--config", cfg, "--json", "-d", "3", "--log", tmp_path / "e.jsonl",
                   env={"KPILOT_RUN_DIR": str(rdir)})
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    s = lines[-1]["summary"]
    assert s["security"]["state"] == "failed" and s["security"]["error"]
    assert s["aipath"]["processes"] > 0 and s["sched"]["windows"] > 0
    notes = [x for x in lines[:-1] if x["domain"] == "security"]
    assert any("other domains keep running" in x["what"] for x in notes)


def test_security_bpf_rejected_leaves_the_others_running(tmp_path, rdir, model_file):
    """The security domain's BPF programs rejected by the verifier (the sensor's merged build, then
    the watch's own sc_watch; bench agent's faults part): the sensor falls back to kp_trace and says
    so, security stops with why, sched, memory and aipath keep running."""
    need_root()
    from kernelpilot.bench.agent import broken_security
    env = {**os.environ, "KPILOT_RUN_DIR": str(rdir), "PYTHONPATH": str(ROOT)}
    r = broken_security(tmp_path, model_file, env, seconds=4)
    assert r["others_running"] and r["exit"] == 0, r
    assert "did not load" in r["sensor_note"] and "no program named" in r["sensor_note"], r
    assert r["security_note"] and "other domains keep running" in r["security_note"], r
    assert r["security_error"], r
