"""The main job's demo names an alert on its attack-like scenario even when no tick saw the process
alerted on: the attack itself ended before the next tick (bash exec'd its python), or a short-lived
child ran and exited between two ticks (the flake of test_run_live_as_root: the alert was on the
attack's pid, the demo had never walked its tree)."""
import subprocess
from types import SimpleNamespace

from kernelpilot.agent.mainjob import Demo


def _demo(attack):
    d = Demo.__new__(Demo)  # no demo programs built: only the attack's bookkeeping is under test
    d.procs, d.attack_pids = {"attack": attack}, set()  # it ended before a tick walked its tree
    return d


def test_alert_on_a_child_gone_before_any_tick_is_the_attack():
    attack = subprocess.Popen(["bash", "-c", "python3 -c 'import os; print(os.getpid())'; true"],
                              stdout=subprocess.PIPE, text=True)
    child = int(attack.communicate()[0])
    d = _demo(attack)
    on_child = {"pid": child, "fired": "rename_storm", "parents": [{"pid": attack.pid}, {"pid": 1}]}
    elsewhere = {"pid": child + 1, "fired": "model", "model": "tree", "parents": [{"pid": 1}]}
    sec = SimpleNamespace(alerts=[on_child, elsewhere])
    seen = d.seen({"security": sec})
    assert seen["attack_alerted"] == ["rename_storm"] and seen["alerts_on_other_processes"] == 1
    assert d.is_attack({"pid": attack.pid, "parents": [{"pid": 1}]})  # the attack itself
    assert not d.is_attack({"pid": child, "parents": None})
