"""The sensor's links go at once at stop (each tracepoint link's destroy waits for an RCU grace
period: one after another 0.66 s for kp_trace's 14, the agent's 42 more), and an object still
attached when the interpreter exits is detached without a hang (no thread starts then)."""
import subprocess
import sys

from tests.conftest import ROOT, need_root


def test_detach_all_leaves_no_link():
    need_root()
    from kernelpilot.probes.libbpf import detach_all
    from kernelpilot.traces.sources import open_source
    src = open_source("ebpf", ["sched", "syscalls", "faults"])
    try:
        progs = [src.obj.program(p) for p in src.programs]
        assert sum(p.attached for p in progs) >= 2
        detach_all(progs)
        assert not any(p.attached for p in progs)
    finally:
        src.stop()


def test_an_object_left_attached_at_exit_is_detached_without_a_hang():
    need_root()
    code = ("from kernelpilot.traces.sources import open_source\n"
            "src = open_source('ebpf', ['sched', 'syscalls'])\nprint(len(src.programs), flush=True)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0 and int(r.stdout) >= 2, r.stderr[-500:]
