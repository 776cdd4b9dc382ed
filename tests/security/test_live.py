import os
import subprocess

from conftest import need_root_ebpf

from kernelpilot.security.live import KernelStage, protected


def test_protected_processes():
    assert protected(1, "systemd", []) == "pid 1"
    assert protected(os.getpid(), "python", []) == "kernelpilot itself"
    p = subprocess.Popen(["sleep", "5"])
    try:
        assert protected(p.pid, "sleep", ["sleep"]) == "allow-listed"
        assert protected(p.pid, "sleep", []) is None
    finally:
        p.kill()
        p.wait()


def test_kernel_stage_counts_windows(model_file):
    need_root_ebpf()
    from kernelpilot.security.model import SecurityModel
    m = SecurityModel.load(model_file)
    k = KernelStage(m, threshold=0.0)  # send every window up
    try:
        subprocess.run(["sh", "-c", "for i in 1 2 3 4 5; do ls / >/dev/null; done"], check=True)
        st = k.stats()
        recs = k.ring.poll()
    finally:
        k.close()
    assert st["syscalls"] > 500 and st["windows"] > 10
    assert st["sent"] >= len(recs)
    assert len(recs) > 0 and (recs["tgid"] != os.getpid()).all()
