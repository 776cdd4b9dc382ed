"""One odd stretch of calls is one anomaly (eBPF, every window sent up, any novelty confirmed):
windows overlap (32 calls every 8, and one more at exit_group), so a short-lived process whose
rare ending (apt-cache dying of SIGPIPE under `| head`) is confirmed in its last stride window and
its exit window must not pass for two separate confirmed windows and open an incident; two rare
stretches apart in one process still do.

Which windows go up depends on time (after a window the kernel keeps a process quiet for 2 ms),
so what a learning period sees of python's start-up (about 1,000 calls, too fast to go up
whole) is a sample: on a loaded host a measured run sent start-up windows that no learning run
had, a second confirmed window beside its rare ending (a fresh-clone make test at load 2: an
incident in all three runs). So each measured process learns its own start-up (the host learns
until it says it is ready), and what it does after that is paced, a sleep past the quiet at
least every 40 calls, so that the learning runs sent all of it."""
import subprocess
import sys
import time

from sec_common import need_root_ebpf

# a short-lived program: start-up, ready, a wait for go, stat calls, then (modes once/twice) calls it
# never made while learning, at its end
SCRIPT = """import os, sys, time
mode, ready, go = sys.argv[1:4]
def pace():
    time.sleep(0.003)  # past the kernel's 2 ms quiet: the window after it goes up
def stats(n):
    for i in range(n):
        os.stat('/')
        if i % 32 == 31:
            pace()
def rare():
    time.sleep(0.005)  # the stretch's stride window goes up
    for _ in range(2):
        os.getcwd(); os.uname(); os.sched_yield(); os.umask(0o22); os.times(); os.getppid()
open(ready, 'w').close()
n = 0
while True:  # at least 8 rounds, each alike
    pace()
    n, found = n + 1, os.path.exists(go)
    if found and n >= 8:
        break
stats(300)
if mode == 'twice':
    rare()
    stats(100)
if mode == 'learn':
    time.sleep(0.005)
else:
    rare()
os._exit(0)
"""


def step_for(w, secs, pred=lambda: False):
    lines, deadline = [], time.monotonic() + secs
    while time.monotonic() < deadline and not pred():
        lines += w.step()
        time.sleep(0.02)
    return lines


def run(w, tmp_path, mode):
    """One run; learning (the host's) ends when it is ready, unless mode is learn. Its model alerts."""
    ready, go = tmp_path / f"ready-{mode}", tmp_path / f"go-{mode}"
    ready.unlink(missing_ok=True)
    go.unlink(missing_ok=True)
    w.profiles.host_end_ns = 1 << 62  # the host learns until then
    p = subprocess.Popen([sys.executable, str(tmp_path / "kpshort.py"), mode, str(ready), str(go)])
    lines = step_for(w, 60, ready.exists)
    assert ready.exists(), "the script did not start in 60 s"
    lines += w.step()  # its start-up, up before it was ready: learned
    if mode != "learn":
        w.profiles.host_end_ns = time.monotonic_ns()
    go.touch()
    lines += step_for(w, 60, lambda: p.poll() is not None)
    lines += w.step()  # its last windows (up before it exited)
    return [a for a in lines if a["pid"] == p.pid and a["fired"] == "model"]


def test_a_rare_ending_is_one_window_two_stretches_are_two(model_file, tmp_path):
    need_root_ebpf()
    from kernelpilot.security.live import Watcher
    from kernelpilot.security.model import SecurityModel
    m = SecurityModel.load(model_file)
    if m.programs is not None:  # stages 3 and 4: any novel 6-gram confirms
        m.programs.base, m.programs.thresholds = 0.0, {}
    (tmp_path / "kpshort.py").write_text(SCRIPT)
    w = Watcher(m, threshold=-1, confirm_threshold=0.0, learn_s=600.0, min_windows=2, frame_s=10.0)
    try:
        for _ in range(2):
            run(w, tmp_path, "learn")
        once = [run(w, tmp_path, "once") for _ in range(3)]  # the old code opened one every time
        twice = run(w, tmp_path, "twice")
    finally:
        w.close()
    assert not any(once), [(a["calls_seen"], a["window"][-8:]) for a in sum(once, [])[:2]]
    assert twice, "two rare stretches apart must open an incident"
