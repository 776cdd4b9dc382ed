"""Live swap controllers on this host: a short run of each config, and everything (zram, swap,
cgroups, limits) restored on every exit path: normal, exception, SIGTERM, SIGKILL (guardian),
a cgroup that vanishes mid-run; bad input is one line with nothing left changed."""
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kernelpilot.agent.journal import Journal
from kernelpilot.errors import KpError
from kernelpilot.memory import reclaim as R, swaprun
from kernelpilot.memory.live import HELPER_C, build_c
from kernelpilot.memory.swaplab import V1_ROOT, SwapLab
from kernelpilot.memory.workloads import LiveWorkload

sys.path.insert(0, str(Path(__file__).resolve().parent))
from swap_state import host_swap_state as _state, start_experiment  # noqa: E402

KPILOT = str(Path(sys.executable).with_name("kpilot"))
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="live swap experiments need root")


def _need():
    if not Path("/sys/class/zram-control/hot_add").exists():
        pytest.skip("zram-control is not available on this kernel")
    if not (V1_ROOT / "memory.limit_in_bytes").exists():
        pytest.skip("cgroup-v1 memory controller is not mounted")


def _wait_state(want, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _state() != want:
        time.sleep(0.1)
    return _state()


@pytest.fixture
def tiny(tmp_path):
    exe = build_c(HELPER_C, tmp_path, "kp_hotcold")
    return LiveWorkload("tiny", [str(exe), "48", "20", "8000"], 32, "48 MB hot/cold, 8000 rounds")


def _journal(tmp_path):
    return Journal("test-swap", enforce=True, directory=tmp_path / "run")


def test_short_run_each_config_then_restored(tmp_path, tiny):
    _need()
    before = _state()
    pred = R.RefaultPredictor()
    with _journal(tmp_path) as j:
        lab = SwapLab(j, 32, 128).open()
        assert lab.psi_cg is not None or lab.notes
        runs = {c: swaprun.run_config(lab, tiny, c, pred if c == "kernelpilot" else None, log=c != "kernel")
                for c in swaprun.CONFIGS}
        assert _state() != before  # set up for real
    assert _state() == before
    for c, r in runs.items():
        assert r["exit_code"] == 0, (c, r)
        assert r["major_faults"] > 0 and r["refaults"] > 0  # the limit really forced swapping
        assert 0 < r["mean_usage_mb"] <= 32 + 1
    kp = runs["kernelpilot"]
    assert kp["labels"] > 0 or kp["fault_refaults"] > 0  # it saw what went out and came back
    # the bench keeps each controller's decisions (one row a step, its reason among them)
    assert "decision_log" not in runs["kernel"] and "decision_log" in runs["senpai"]
    assert kp["agent_major_faults"] >= 0
    assert pred.history_ and not np_all_unknown(pred.history_)


def np_all_unknown(hist):
    return all((h == R.UNKNOWN).all() for h in hist.values())


MLOCK_GROW = r"""
import ctypes, sys, time
assert ctypes.CDLL(None, use_errno=True).mlockall(3) == 0  # MCL_CURRENT | MCL_FUTURE: none of it reclaimable
keep = []
for _ in range(int(sys.argv[1])):
    keep.append(bytearray(1 << 20))
    time.sleep(0.01)
"""


class Squeeze:
    """A reclaimer that misjudges the working set: each step, the limit just above usage."""
    name = "squeeze"

    def step(self, o):
        return o.usage + (1 << 20)


def _grow(tmp_path, mb):
    script = tmp_path / "grow.py"
    script.write_text(MLOCK_GROW)
    return LiveWorkload("grow", [sys.executable, str(script), str(mb)], 128, f"{mb} MB mlocked, 1 MB per 10 ms")


def test_squeezing_below_the_working_set_never_oom_kills(tmp_path, monkeypatch):
    """The old driver let the kernel OOM-kill (exit -9) a workload whose limit a controller set
    below what reclaim could free; the guard clamps the step and raises the limit when a charge
    waits on it."""
    _need()
    before = _state()
    monkeypatch.setitem(R.CONTROLLERS, "kernelpilot", Squeeze)
    with _journal(tmp_path) as j:
        lab = SwapLab(j, 128, 64).open()
        r = swaprun.run_config(lab, _grow(tmp_path, 64), "kernelpilot", R.RefaultPredictor(), log=True)
        oc = lab.oom_control()
    assert _state() == before
    assert r["exit_code"] == 0, r
    assert oc["oom_kill"] == 0 and oc["oom_kill_disable"] == 0  # the kill is back on after the run
    assert r["limit_steps"] > 0 and r["limit_clamped"] > 0 and r["oom_raised"] > 0, r
    # one row a step: s, usage, limit, new limit, pressure, refaults, reason, io, page-cache refaults, cpu
    assert r["decision_log"] and all(len(row) == 10 for row in r["decision_log"])
    assert any(row[6].endswith("+clamped") for row in r["decision_log"])


HOLD = r"""
import mmap, sys
m = mmap.mmap(-1, int(sys.argv[1]) << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(0, len(m), 4096):
    m[i] = 1
sys.stdout.write("%d\n" % __import__("ctypes").addressof(__import__("ctypes").c_char.from_buffer(m)))
sys.stdout.flush()
sys.stdin.read(1)
"""


def _majflt(pid):
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[9])


def test_the_agents_touches_are_its_own_major_faults_and_the_groups(tmp_path):
    """keep_hot swaps a page in with process_vm_readv: the fault is the agent thread's (its
    rusage) and the group's (pgmajfault), never the program's, whose own count then misses it.
    The hot/cold floor is judged on the program's faults plus the agent's."""
    _need()
    from kernelpilot.memory.live import pageout
    before = _state()
    (tmp_path / "hold.py").write_text(HOLD)
    with _journal(tmp_path) as j:
        lab = SwapLab(j, 64, 128).open()
        p = subprocess.Popen([sys.executable, str(tmp_path / "hold.py"), "8"], preexec_fn=lab.enter,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            base = int(p.stdout.readline())
            addrs = [base + k * 4096 for k in range(8 << 8)]
            fd = R.pidfd_open(p.pid)
            try:
                pageout(fd, [(base, 8 << 20)])
            finally:
                R.close_fd(fd)
            time.sleep(0.2)
            prog0, cg0 = _majflt(p.pid), lab.majfaults()
            got = {}

            def agent():
                f0 = swaprun.thread_major_faults()
                R.touch(p.pid, addrs)
                got["agent"] = swaprun.thread_major_faults() - f0
            th = threading.Thread(target=agent)
            th.start()
            th.join(30)
            prog, cg = _majflt(p.pid) - prog0, lab.majfaults() - cg0
        finally:
            p.communicate("x", timeout=30)
    assert _state() == before
    assert got["agent"] >= len(addrs) // 2, got  # most of the 8 MB was out and came back by the agent
    assert prog == 0
    assert cg >= got["agent"]


def test_exception_restores(tmp_path):
    _need()
    before = _state()
    bad = LiveWorkload("bad", ["/nonexistent-kpilot-cmd"], 32, "")
    with pytest.raises(KpError, match="cannot run"):
        with _journal(tmp_path) as j:
            lab = SwapLab(j, 32, 64).open()
            swaprun.run_config(lab, bad, "kernelpilot", R.RefaultPredictor())
    assert _state() == before


def test_cgroup_vanishing_mid_run_is_one_error_and_restored(tmp_path):
    _need()
    before = _state()
    wl = LiveWorkload("sleep", [sys.executable, "-c", "import time; time.sleep(1.5)"], 32, "")
    with _journal(tmp_path) as j:
        lab = SwapLab(j, 32, 64).open()

        def vanish():  # someone else empties and removes the group while the program runs
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not lab.pids():
                time.sleep(0.02)
            for p in lab.pids():
                (V1_ROOT / "tasks").write_text(f"{p}\n")
            lab.cg.rmdir()
        t = threading.Thread(target=vanish)
        t.start()
        with pytest.raises(KpError, match="vanished mid-run"):
            swaprun.run_config(lab, wl, "senpai")
        t.join()
    assert _state() == before


def _start_cli(tmp_path, before):
    env = dict(os.environ, KPILOT_RUN_DIR=str(tmp_path / "run"))
    return start_experiment([KPILOT, "memory", "live", "reclaim", "--workload", "hotcold", "--config", "kernel",
                             "--enforce", "--json"], before, env=env)


def test_sigterm_restores(tmp_path):
    _need()
    before = _state()
    p = _start_cli(tmp_path, before)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode != 0
    assert "Traceback" not in err
    assert _state() == before


def test_sigkill_guardian_restores(tmp_path):
    _need()
    before = _state()
    scratch = set(Path("/var/tmp").glob("kpilot-swapbench-*"))
    p = _start_cli(tmp_path, before)
    # its own group: another experiment's beside it (a shared host) is not ours to kill
    cg = next(V1_ROOT / c for c in sorted(set(_state()[2]) - set(before[2])) if c.startswith("kpilot-swap"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (cg / "cgroup.procs").read_text().split():
        time.sleep(0.02)  # the workload has started
    kids = (cg / "cgroup.procs").read_text().split()
    p.kill()
    p.wait(10)
    for k in kids:  # the orphaned workload: ours to end
        try:
            os.kill(int(k), signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert _wait_state(before) == before  # the guardian replayed the journal
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and list((tmp_path / "run").glob("journal-*.jsonl")):
        time.sleep(0.05)  # and retires it once replayed
    assert not list((tmp_path / "run").glob("journal-*.jsonl"))
    for d in set(Path("/var/tmp").glob("kpilot-swapbench-*")) - scratch:  # the killed run's workload
        shutil.rmtree(d, ignore_errors=True)                                # files: not journaled


def _cli(*args, env=None):
    return subprocess.run([KPILOT, "memory", "live", "reclaim", *args], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, **(env or {})))


def _one_line(r, text):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert text in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_bad_input_through_cli(tmp_path):
    _need()
    before = _state()
    _one_line(_cli("--workload", "nope", "--enforce"), "unknown workload 'nope'")
    _one_line(_cli("--config", "nope"), "unknown config 'nope'")
    _one_line(_cli("--reps", "0", "--enforce"), "--reps must be > 0")
    # no memory controller: checked before anything is made
    _one_line(_cli("--enforce", env={"KPILOT_MEMCG_ROOT": str(tmp_path / "none"),
                                     "KPILOT_RUN_DIR": str(tmp_path / "run")}), "no memory controller")
    assert _state() == before
    # no zram module: the swap already on, if any (a stated fallback), else one line
    if len(Path("/proc/swaps").read_text().splitlines()) == 1:
        _one_line(_cli("--enforce", env={"KPILOT_ZRAM_CONTROL": str(tmp_path / "none"),
                                         "KPILOT_RUN_DIR": str(tmp_path / "run")}), "no zram")
    assert _state() == before
    # an unwritable limit knob (a memory root whose limit file cannot be written): zram undone
    fake = tmp_path / "memcg"
    (fake / "memory.limit_in_bytes").mkdir(parents=True)
    r = _cli("--enforce", env={"KPILOT_MEMCG_ROOT": str(fake), "KPILOT_RUN_DIR": str(tmp_path / "run")})
    _one_line(r, "cannot set")
    assert _state() == before
