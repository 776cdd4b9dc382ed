"""The agent's sensor reads its rings in bounded batches (a full ring read in one go made the agent's
RSS swing by tens of MB and rise with the host's load), and the loop takes a backlog without pausing,
so nothing is lost by the bound."""
import subprocess
import sys
import time

import pytest

from kernelpilot.agent import config as C
from kernelpilot.traces import schema as S
from tests.conftest import need_root

N = 150_000  # getppid() calls: more than a poll takes, fewer than the 16 MB ring holds
BURST = ("import ctypes, os\nctypes.CDLL(None).prctl(15, b'{}')\n"
         "for _ in range({}):\n    os.getppid()\n")


def _getppid(ev, pid):
    return int(((ev["kind"] == S.SYSCALL) & (ev["a0"] == 110) & (ev["tgid"] == pid)).sum())


@pytest.fixture
def root():
    need_root()


def _child(comm: str, n: int = N) -> subprocess.Popen:
    """A child named `comm` that makes n getppid() calls and exits."""
    p = subprocess.Popen([sys.executable, "-c", BURST.format(comm, n)])
    p.wait()
    assert p.returncode == 0
    return p


def test_observer_polls_bounded_batches_and_loses_nothing(root):
    from kernelpilot.agent.observer import MAX_EVENTS, LiveObserver
    obs = LiveObserver(comm="kpt-batch", with_security=False)
    try:
        child = _child("kpt-batch")
        time.sleep(0.2)
        sizes, backlog, seen = [], [], 0
        while True:
            ev = obs.poll()
            sizes.append(len(ev))
            backlog.append(obs.backlog)
            seen += _getppid(ev, child.pid)
            if not obs.backlog:
                break
        seen += _getppid(obs.finish(), child.pid)  # each CPU's unfinished batch
        assert max(sizes) <= 2 * MAX_EVENTS, sizes  # one bounded part of each ring per poll
        assert backlog[0] and len(sizes) >= N // (2 * MAX_EVENTS), (sizes, backlog)
        assert obs.stats()["dropped"] == 0
        assert seen == N  # the bound loses nothing: every call is taken by a later poll
    finally:
        obs.close()


def test_agent_loop_takes_a_backlog_without_pausing(root, tmp_path, monkeypatch):
    """poll_s is 5 s and the run 3 s: one step and a pause would take one bounded batch only."""
    from kernelpilot.agent.host import AgentHost
    from kernelpilot.agent.observer import MAX_EVENTS
    monkeypatch.setenv("KPILOT_RUN_DIR", str(tmp_path / "run"))
    cfg = C.defaults()
    cfg["agent"].update(comm="kpt-loop", poll_s=5)
    for d in ("sched", "security", "memory"):
        cfg[d]["enabled"] = False
    h = AgentHost(cfg, log_path=tmp_path / "a.jsonl", socket_path=tmp_path / "a.sock", lock=False).start()
    try:
        child = _child("kpt-loop")
        time.sleep(0.2)
        h.run(duration=3)
        taken = h.pilots["aipath"].rows[child.pid][0]  # its system calls, counted by the aipath pilot
        assert taken > 2 * MAX_EVENTS and taken >= N - 64, taken  # at most a batch per CPU still open
    finally:
        h.stop()


def test_beside_checkout_must_be_a_checkout(tmp_path):
    from kernelpilot.bench.agent import ROOT, beside_root
    from kernelpilot.errors import KpError
    assert beside_root({}) == ROOT and beside_root({"CHECKOUT": str(ROOT)}) == ROOT
    with pytest.raises(KpError, match="holds no kernelpilot checkout"):
        beside_root({"CHECKOUT": str(tmp_path)})


def test_quiet_figures_say_what_the_idle_share_went_to():
    """The idle figure alone (2.5 % of a CPU) hid that the security watch, reacting to the host's
    other processes, took nearly all of it; the loop's other parts are shown beside it."""
    from kernelpilot.bench.agent import quiet_figures
    sec = lambda w, e, c: {"security": {"windows_up": w, "events_up": e, "cpu_burn_candidates": c}}  # noqa: E731
    s0 = {"events": 10, "busy_s": {"sensor": 1.0, "security": 2.0, "publish": 0.5}, "domains": sec(100, 40, 3)}
    s1 = {"events": 10, "busy_s": {"sensor": 1.1, "security": 2.4, "publish": 0.6, "memory": 0.05},
          "domains": sec(1100, 240, 5)}
    f = quiet_figures(s0, s1, 0.5, 20.0)
    assert f["cpu_share"] == 0.025 and f["events_per_s"] == 0.0 and f["seconds"] == 20.0
    assert f["busy_share"] == {"sensor": 0.005, "security": 0.02, "publish": 0.005, "memory": 0.0025}
    assert f["busy_share_without_security"] == 0.0125
    assert f["security_windows_up_per_s"] == 50.0 and f["security_exec_fork_exit_per_s"] == 10.0
    assert f["cpu_burn_candidates"] == 5
    assert quiet_figures({}, {}, 0.0, 1.0)["security_windows_up_per_s"] is None  # no agent answered


def test_security_summary_counts_what_the_watch_took_in():
    from types import SimpleNamespace

    from kernelpilot.agent.security_pilot import SecurityPilot
    p = SecurityPilot(C.defaults()["security"], live=False)
    k = SimpleNamespace(stats=lambda: {"syscalls": 7})
    p.watcher = SimpleNamespace(step=lambda: [], stats=k.stats, kernel=k, windows_up=3, events_up=5,
                                cpu=SimpleNamespace(samples={(1, 0): None, (2, 0): None}))
    s = p.summary()
    assert (s["windows_up"], s["events_up"], s["cpu_burn_candidates"]) == (3, 5, 2)


def test_every_observer_says_whether_a_backlog_waits():
    """The loop reads `observer.backlog` plainly: the replay observer has one too (always False)."""
    from kernelpilot.agent.observer import LiveObserver, ReplayObserver
    assert LiveObserver.backlog is False
    obs = ReplayObserver()
    try:
        assert obs.backlog is False
        obs.poll()
        assert obs.backlog is False
    finally:
        obs.close()
