"""Learning from chosen cgroups only (the live bench on a shared host): while the host learns,
behaviours and windows of other cgroups teach nothing, so the same program doing the same thing
later still fires. Hand-built events, no eBPF."""
import numpy as np
import pytest

from kernelpilot.security.procinfo import ProcTable
from kernelpilot.security.profiles import LiveProfiles
from kernelpilot.security.rules import EV_EXEC, EV_SHADOW, EVENT_DTYPE, Rules

S = 1_000_000_000
MINE, OTHER = 7, 99


def _ev(kind, pid, ts, cgroup, path=b""):
    e = np.zeros(1, dtype=EVENT_DTYPE)[0]
    e["kind"], e["tgid"], e["tid"], e["ts"], e["cgroup"], e["ppid"] = kind, pid, pid, ts, cgroup, 1
    e["comm"], e["path"] = b"kpreader", path
    return e


def _reader(rules, pid, ts, cgroup):
    argv = b"/opt/kp/kpreader\0/etc/shadow\0"
    ex = _ev(EV_EXEC, pid, ts, cgroup, b"/opt/kp/kpreader")
    ex["args"][:len(argv)] = np.frombuffer(argv, np.uint8)
    ex["arg"] = len(argv)
    rules.on_event(ex)
    return rules.on_event(_ev(EV_SHADOW, pid, ts + 1000, cgroup, b"/etc/shadow"))


def _rules(learn_from):
    r = Rules(ProcTable(), LiveProfiles(learn_s=10, new_s=10, start_ns=0))
    r.learn_from = learn_from
    return r


def test_other_cgroups_do_not_teach_while_learning():
    r = _rules({MINE}.__contains__)
    assert _reader(r, 100, 1 * S, OTHER) == []           # learning: nothing fires, nothing learned from it
    hit = _reader(r, 101, 20 * S, MINE)                   # after learning: the same program reading shadow
    assert [h["rule"] for h in hit] == ["shadow_read"]


def test_own_cgroup_and_default_teach():
    for learn_from in ({MINE}.__contains__, None):
        r = _rules(learn_from)
        assert _reader(r, 100, 1 * S, MINE) == []
        assert _reader(r, 101, 20 * S, OTHER) == []       # learned: its normal, wherever it runs now
    r = _rules(None)                                      # default: every cgroup teaches (watch's behaviour)
    _reader(r, 100, 1 * S, OTHER)
    assert _reader(r, 101, 20 * S, MINE) == []


@pytest.mark.serial
def test_watcher_learns_windows_only_from_chosen_cgroups(model_file):
    """For real: while it learns, a watcher that learns from no cgroup learns no window; one that
    learns from every cgroup learns this busy loop's windows."""
    import subprocess
    import sys

    from sec_common import need_root_ebpf, pump
    from kernelpilot.security.live import Watcher
    from kernelpilot.security.model import SecurityModel
    need_root_ebpf()
    code = "import os\nfor i in range(40000): os.stat('/')\n"
    got = {}
    for name, learn_from in (("none", lambda cg: False), ("all", None)):
        w = Watcher(SecurityModel.load(model_file), learn_s=60, learn_from=learn_from)
        try:
            subprocess.run([sys.executable, "-c", code], check=True)
            pump(w, lambda ls: False, timeout=1.5)
            got[name] = w.profiles.summary()["learned_windows"]
        finally:
            w.close()
    assert got["none"] == 0 < got["all"], got
