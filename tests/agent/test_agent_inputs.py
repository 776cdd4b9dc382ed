"""`kpilot agent run` bad input through the CLI and the event log: nothing here loads probes or
shares the host (each has its own run dir), so they run in the parallel part of the tests."""
import json
import os
import sys
from datetime import datetime

import pytest

from cli_checks import one_line_error  # noqa: E402

from agent_helpers import rdir  # noqa: F401 (fixture)
from tests.conftest import need_root, run_kpilot
from kernelpilot.agent.eventlog import FIELDS, EventLog
from kernelpilot.agent.pilot import Decision


@pytest.mark.parametrize("text,words", [
    ("[sched]\nwindow = 1\n", ["unknown key 'window' in section 'sched'"]),
    ("[schedule]\nenabled = true\n", ["unknown section 'schedule'"]),
    ("[sched]\nwindow_s = \"fast\"\n", ["sched.window_s must be a number"]),
    ("[memory]\nenabled = 1\n", ["memory.enabled must be true or false"]),
    ("[sched]\nconfirm = 0\n", ["out of range"]),
    ("[agent\nlog = 1\n", ["not valid TOML"]),
])
def test_bad_config_is_one_line(tmp_path, rdir, text, words):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    r = run_kpilot("agent", "run", "--config", cfg, "-d", "1", env={"KPILOT_RUN_DIR": str(rdir)})
    one_line_error(r, str(cfg), *words)
    assert not (rdir / "agent.pid").exists() and not (rdir / "agent.sock").exists()


def test_unwritable_log_is_one_line(tmp_path, rdir):
    need_root()
    (tmp_path / "a-file").write_text("")
    r = run_kpilot("agent", "run", "--log", tmp_path / "a-file" / "x.jsonl", "-d", "1",
                   env={"KPILOT_RUN_DIR": str(rdir)})
    one_line_error(r, "cannot write the event log", "no such directory")
    assert not (rdir / "agent.pid").exists()
    r = run_kpilot("run", "--log", "/proc/kpilot.jsonl", "-d", "2")
    one_line_error(r, "cannot write the event log /proc/kpilot.jsonl")


def test_event_log_schema_and_rotation(tmp_path):
    log = EventLog(tmp_path / "a.jsonl", max_bytes=4000, backups=2)
    for i in range(200):
        log.write(Decision("sched", "decision", f"task {i}", pid=i, comm="x", detail={"i": i}))
    log.close()
    files = sorted(tmp_path.glob("a.jsonl*"))
    assert [f.name for f in files] == ["a.jsonl", "a.jsonl.1", "a.jsonl.2"]  # rotated, bounded
    assert all(f.stat().st_size <= 4000 + 200 for f in files)
    recs = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert recs and all(tuple(r) == FIELDS for r in recs)
    assert recs[-1]["pid"] == 199  # the newest in the live file
    datetime.fromisoformat(recs[-1]["ts"].replace("Z", "+00:00"))


def test_agent_without_root_says_why(rdir):
    import shutil
    if not shutil.which("setpriv"):
        pytest.skip("setpriv missing")
    r = run_kpilot("agent", "run", "-d", "1", user="nobody", env={"KPILOT_RUN_DIR": str(rdir)})
    one_line_error(r, "needs root")


def test_stdout_reader_that_stops_reading_never_blocks_the_log(tmp_path, monkeypatch):
    """--json with a consumer that stops reading: lines past the queue are dropped and counted, the
    file keeps every record, and write() returns at once (it blocked the agent's loop before)."""
    import threading
    r, w = os.pipe()
    out = os.fdopen(w, "w")
    monkeypatch.setattr(sys, "stdout", out)
    elog = EventLog(tmp_path / "e.jsonl", stdout=True)
    d = Decision("sched", "decision", "a decision long enough to fill a pipe quickly " * 4, 1, "x")
    done = threading.Event()
    n = 12000  # past the queue's 10,000 lines and a pipe's 64 kB
    th = threading.Thread(target=lambda: ([elog.write(d) for _ in range(n)], done.set()), daemon=True)
    th.start()
    assert done.wait(30), "EventLog.write blocked on a full stdout pipe"
    assert elog.stdout_dropped > 0
    os.close(r)  # the reader goes away: the writer thread stops on EPIPE, close() returns
    import time

    from kernelpilot.agent.eventlog import CLOSE_S
    t0 = time.monotonic()
    elog.close()
    assert time.monotonic() - t0 < CLOSE_S / 2  # not waiting out its timeout on a queue nobody empties
    assert len((tmp_path / "e.jsonl").read_text().splitlines()) == n
