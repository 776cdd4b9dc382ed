"""The live bench's measured-mix length (KPILOT_LIVE_MIX_S): defaults, a set value, bad values as one-line errors."""
import os
import subprocess

import pytest

from sec_common import KPILOT
from kernelpilot.errors import KpError
from kernelpilot.security.livebench import MIX_ENV, mix_seconds


def test_mix_seconds_default_and_set(monkeypatch):
    monkeypatch.delenv(MIX_ENV, raising=False)
    assert mix_seconds(True) == 30.0 and mix_seconds(False) == 600.0
    monkeypatch.setenv(MIX_ENV, "1800")
    assert mix_seconds(False) == 1800.0 and mix_seconds(True) == 1800.0


@pytest.mark.parametrize("raw", ["abc", "5", "1e9"])
def test_mix_seconds_bad(monkeypatch, raw):
    monkeypatch.setenv(MIX_ENV, raw)
    with pytest.raises(KpError, match=MIX_ENV):
        mix_seconds(False)


@pytest.mark.parametrize("raw,msg", [("ten", "not a number"), ("20", "30 to 14400")])
def test_bench_rejects_bad_mix_length_first(raw, msg):
    # checked before the bench's long parts start: a quick failure, one line, no traceback
    r = subprocess.run([KPILOT, "bench", "security", "--json"], capture_output=True, text=True, timeout=60,
                       env={**os.environ, MIX_ENV: raw})
    assert r.returncode == 2, r.stderr
    assert f"{MIX_ENV}='{raw}'" in r.stderr and msg in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_stale_livebench_cgroup_of_a_killed_bench_is_swept():
    """A killed bench leaves its empty cgroup: the next bench's first group removes it; live owners' stay."""
    import os
    import subprocess
    from kernelpilot.security import livebench as L
    if os.geteuid() != 0 or not L.V2.is_dir():
        import pytest
        pytest.skip("needs root and a cgroup v2 hierarchy")
    p = subprocess.Popen(["true"])
    p.wait()
    dead = L.V2 / f"kp-livebench-test-{p.pid}"
    alive = L.V2 / f"kp-livebench-test-{os.getpid()}"
    dead.mkdir()
    alive.mkdir()
    try:
        assert dead in L.sweep_stale_cgroups()
        assert not dead.exists() and alive.is_dir()
    finally:
        for d in (dead, alive):
            if d.exists():
                d.rmdir()


def test_budget_examples_keep_the_window_and_scores():
    """A mix incident's example keeps what is needed to trace it: its window, calls seen and the stage scores."""
    from kernelpilot.security.livebench import _budget
    a = {"event": "alert", "cgroup_id": 7, "incident": 1, "fired": "model", "exe": "/usr/bin/apt-cache", "ts": 5,
         "program": "/usr/bin/apt-cache", "window": ["munmap", "close", "write"], "calls_seen": 812, "pid": 42,
         "score": 0.5, "program_score": 0.4, "live_score": 0.34, "live_learned": 12, "parents": [{"pid": 1}]}
    b = _budget([a, {**a, "cgroup_id": 8, "incident": 2}], 7, 3600.0, 0)
    assert b["incidents"] == 1 and b["incidents_per_hour"] == 1.0 and b["host_wide_incidents"] == 2
    ex = b["examples"][0]
    assert ex["window"] == ["munmap", "close", "write"] and ex["calls_seen"] == 812 and ex["program_score"] == 0.4


def test_late_alerts_tell_a_lagging_watch_from_a_miss():
    """An attack with no alert line 1 s after it ended but one by the end of the attack phase is late
    (the watch fell behind), not missed; one never alerted stays out."""
    from kernelpilot.security.livebench import detection, late_alerts
    start = 10_000_000_000
    at_end = [{"event": "alert", "cgroup_id": 7, "ts": start + 300_000_000, "fired": "model", "incident": 1}]
    attacks = {"a": detection([], 7, start), "b": detection([], 8, start)}  # neither had a line in time
    later = at_end + [{"event": "incident_end", "cgroup_id": 8, "ts": start}]
    assert attacks["a"]["detected"] is False
    assert late_alerts(later, attacks, {"a": (7, start, start + 100_000_000), "b": (8, start, None)}) == {
        "a": {"latency_s": 0.3, "latency_from_step_s": 0.2, "first_fired": "model"}}
    assert detection(at_end, 7, start)["latency_s_by_fired"] == {"model": 0.3}


def test_latency_from_the_attacks_first_real_step(tmp_path):
    """Each attack notes the time before its first real step (a bash builtin, only when asked);
    detection counts from there as well as from the scenario's start."""
    import time

    from kernelpilot.security.livebench import detection
    from kernelpilot.security.scenarios import ATTACKS, BENIGN, Scenario
    from kernelpilot.security.scenarios.run import STEP, script_for, step_time
    assert all(a.script.count("{step}") == 1 for a in ATTACKS) and not any("{step}" in b.script for b in BENIGN)
    assert all("EPOCHREALTIME" not in script_for(a, str(tmp_path), 2) for a in ATTACKS)
    sc = Scenario("t", "attack", "sleep 0.3\n{step}sleep 0.2\n")
    t0 = time.time()
    subprocess.run(["bash", "-c", script_for(sc, str(tmp_path), 2, step=True)], check=True)
    t = step_time(str(tmp_path))
    assert (tmp_path / STEP).exists() and t0 + 0.25 < t < time.time() - 0.15
    assert step_time(str(tmp_path / "none")) is None
    start, step = 10_000_000_000, 10_400_000_000
    d = detection([{"event": "alert", "cgroup_id": 7, "ts": start + 500_000_000, "fired": "model", "incident": 1}],
                  7, start, step)
    assert (d["latency_s"], d["latency_from_step_s"], d["setup_s"]) == (0.5, 0.1, 0.4)
