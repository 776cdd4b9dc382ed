"""The pilots on events built by hand (unit fixtures) and on the shipped trace."""
import os

import numpy as np
import pytest

from kernelpilot.agent import config as C
from kernelpilot.agent.sched_pilot import switch_counters
from kernelpilot.errors import KpError
from kernelpilot.traces import schema as S


def ev(rows):
    """rows: (ts, kind, pid, a0, a1) -> events (switch: pid=prev, a0=next, a1=prev_state)."""
    out = np.zeros(len(rows), S.EVENT_DTYPE)
    for i, (ts, kind, pid, a0, a1) in enumerate(rows):
        out[i]["ts"], out[i]["kind"], out[i]["pid"], out[i]["tgid"] = ts, kind, pid, pid
        out[i]["a0"], out[i]["a1"], out[i]["comm"] = a0, a1, b"t"
    return out


W, SW = S.SCHED_WAKEUP, S.SCHED_SWITCH
# task 5: woken at 0, runs 10-30 (sleeps), woken 40, runs 45-60 (preempted), runs 70-100 (sleeps)
SEQ = [(0, W, 5, 0, 0), (10, SW, 9, 5, 1), (30, SW, 5, 9, 1), (40, W, 5, 0, 0), (45, SW, 9, 5, 1),
       (60, SW, 5, 9, 0), (70, SW, 9, 5, 1), (100, SW, 5, 9, 1)]


def totals(tids, *cols):
    i = int(np.flatnonzero(tids == 5)[0])
    return [int(c[i]) for c in cols]


def test_switch_counters_run_wait_slices():
    tids, run, wait, slices, vol, invol = switch_counters(ev(SEQ), {})
    assert totals(tids, run, wait, slices, vol, invol) == [20 + 15 + 30, 10 + 5 + 10, 3, 2, 1]


def test_switch_counters_carry_across_batches():
    carry = {}
    parts = [switch_counters(ev(SEQ[:3]), carry), switch_counters(ev(SEQ[3:6]), carry), switch_counters(ev(SEQ[6:]), carry)]
    got = np.sum([totals(p[0], *p[1:]) for p in parts if 5 in p[0]], axis=0).tolist()
    assert got == [65, 25, 3, 2, 1]


def test_config_defaults_and_checks():
    cfg = C.validate({"sched": {"window_s": 1, "only": ["a"]}, "memory": {"enabled": False}})
    assert cfg["sched"]["window_s"] == 1 and cfg["memory"]["enabled"] is False and cfg["aipath"]["top"] == 10
    for bad, msg in (({"sched": {"only": [1]}}, "sched.only"), ({"security": {"action": "nuke"}}, "security.action"),
                     ({"memory": {"swap": True}}, "memory.swap"), ({"sched": {"confirm": True}}, "sched.confirm"),
                     ({"sched": 3}, "must be a table")):
        with pytest.raises(KpError, match=msg):
            C.validate(bad)


def test_pilots_on_the_shipped_trace(tmp_path):
    from kernelpilot.agent.host import AgentHost
    h = AgentHost(C.defaults(), live=False, lock=False, log_path=tmp_path / "e.jsonl")
    h.start()
    try:
        h.run(None)
    finally:
        s = h.stop()
    assert s["agent"]["stopped"] == "replay finished" and s["agent"]["events"] > 0
    assert s["sched"]["windows"] == 1 and s["sched"]["classes"]
    assert s["memory"]["faults_seen"] > 0 and s["aipath"]["processes"] > 0
    assert s["security"]["state"].startswith("off")


def test_planned_changes_name_the_policy():
    """The summary and log said 'policy -> [1073741824, 0]' (SCHED_OTHER with reset-on-fork's bit)."""
    from kernelpilot.agent.sched_pilot import change_text
    assert change_text("policy", [os.SCHED_OTHER | os.SCHED_RESET_ON_FORK, 0]) == "policy -> SCHED_OTHER (reset on fork)"
    assert change_text("policy", [os.SCHED_BATCH, 0]) == "policy -> SCHED_BATCH"
    assert change_text("nice", -5) == "nice -> -5"


def _lists(s: dict) -> dict:
    """Each per-process list in a domain's summary (the AI-path layers' table too), by its path -> length."""
    out = {}
    for k, v in s.items():
        if k == "layers" or isinstance(v, list):
            out[k] = len(v)
        elif isinstance(v, dict):
            out.update({f"{k}.{c}": n for c, n in _lists(v).items()})
    return out


def test_every_pilot_takes_the_same_top(tmp_path):
    """One summary interface: the host passes `top` to every pilot, each list of processes bounded by it
    (the AI-path pilot alone took it before)."""
    from kernelpilot.agent.host import AgentHost
    h = AgentHost(C.defaults(), live=False, lock=False, log_path=tmp_path / "e.jsonl")
    h.start()
    try:
        h.run(None)
        full, one = h.summary(), h.summary(top=1)
    finally:
        h.stop()
    long = {d: n for d in C.DOMAINS for n, k in _lists(full[d]).items() if k > 1}
    assert {"memory", "aipath"} <= set(long), long  # lists with more than one entry to bound
    for d in C.DOMAINS:
        assert all(k <= 1 for k in _lists(one[d]).values()), (d, _lists(one[d]))
        assert _lists(one[d]).keys() == _lists(full[d]).keys()
