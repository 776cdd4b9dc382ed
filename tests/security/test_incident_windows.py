"""One odd stretch of calls is one anomaly (eBPF, every window sent up, any novelty confirmed):
windows overlap (32 calls every 8, and one more at exit_group), so a short-lived process whose
rare ending (apt-cache dying of SIGPIPE under `| head`) is confirmed in its last stride window and
its exit window must not pass for two separate confirmed windows and open an incident; two rare
stretches apart in one process still do."""
import subprocess
import sys
import time

from sec_common import need_root_ebpf

# a short-lived program: stat calls, then (modes once/twice) calls it never made while learning, at its end
SCRIPT = """import os, sys, time
mode = sys.argv[1]
def rare():
    time.sleep(0.005)  # past the kernel's 2 ms quiet after a window: the stretch's stride window goes up
    for _ in range(2):
        os.getcwd(); os.uname(); os.sched_yield(); os.umask(0o22); os.times(); os.getppid()
for _ in range(300):
    os.stat('/')
if mode == 'twice':
    rare()
    for _ in range(100):
        os.stat('/')
if mode == 'learn':
    time.sleep(0.005)
else:
    rare()
os._exit(0)
"""


def run(w, script, mode):
    p = subprocess.Popen([sys.executable, str(script), mode])
    lines = []
    while p.poll() is None:
        lines += w.step()
        time.sleep(0.02)
    t = time.monotonic()
    while time.monotonic() - t < 1.0:  # its last windows, still in the ring
        lines += w.step()
        time.sleep(0.05)
    return p.pid, [a for a in lines if a["pid"] == p.pid and a["fired"] == "model"]


def test_a_rare_ending_is_one_window_two_stretches_are_two(model_file, tmp_path):
    need_root_ebpf()
    from kernelpilot.security.live import Watcher
    from kernelpilot.security.model import SecurityModel
    m = SecurityModel.load(model_file)
    if m.programs is not None:  # stages 3 and 4: any novel 6-gram confirms
        m.programs.base, m.programs.thresholds = 0.0, {}
    script = tmp_path / "kpshort.py"
    script.write_text(SCRIPT)
    w = Watcher(m, threshold=-1, confirm_threshold=0.0, learn_s=8.0, min_windows=2, frame_s=10.0)
    try:
        while w.profiles.host_learning(time.monotonic_ns()):
            run(w, script, "learn")
        time.sleep(0.3)
        w.step()
        # a Python start on a loaded host can make novel windows of its own (then a second window counts):
        # the rare ending alone must leave some run without an incident; the old code opened one every time
        once = [run(w, script, "once")[1] for _ in range(3)]
        _, twice = run(w, script, "twice")
    finally:
        w.close()
    assert not all(once), [(a["calls_seen"], a["window"][-8:]) for a in once[0][:1]]
    assert twice, "two rare stretches apart must open an incident"
