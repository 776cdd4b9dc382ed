"""An exec event of a program started through a link (cc -> gcc-12) that has already exited but is
not yet reaped: /proc still shows its comm but no exe. Its program must still be the link's target,
as for every other run of it (else it gets a second, empty profile and is judged unlearned)."""
import os
import subprocess
import time

from kernelpilot.security.procinfo import ProcTable


def _state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()[0]


def test_exec_of_an_exited_linked_program_resolves_the_link(tmp_path):
    target = os.path.realpath("/bin/true")
    link = tmp_path / "kplink"
    link.symlink_to(target)
    p = subprocess.Popen([str(link)])          # not reaped until wait(): a zombie once it exits
    try:
        deadline = time.monotonic() + 10
        while _state(p.pid) != "Z":
            assert time.monotonic() < deadline, "child never exited"
            time.sleep(0.01)
        got = ProcTable().exec(p.pid, 1, os.getpid(), 0, "kplink", str(link), "", str(link))
        assert got.exe == target, got.exe
        assert got.program == ProcTable().exec(p.pid, 2, os.getpid(), 0, "kplink", target, "", target).program
    finally:
        p.wait()
