"""The cpu_burn rule for real: a fresh program that computes without pause or I/O fires once, with
its context; one that computes between writes or sleeps, or floods syscalls, does not; a program
that burned while the host learned does not fire for it afterwards."""
import os
import subprocess
import sys
import time

import pytest
from sec_common import need_root_ebpf, pump

PY = sys.executable
BURN = ("import hashlib, time\nt = time.time(); h = b'{tag}'\n"
        "while time.time() - t < {secs}:\n    h = hashlib.sha256(h).digest()\n")
WRITER = ("import os, time\nt = time.time(); f = open({path!r}, 'wb')\n"
          "while time.time() - t < 2.0:\n    f.write(os.urandom(65536)); f.flush(); os.fsync(f.fileno())\n")
SLEEPER = "import time\nfor _ in range(40):\n    sum(range(20000)); time.sleep(0.05)\n"


def burns(lines, pid):
    return [a for a in lines if a["fired"] == "cpu_burn" and a["pid"] == pid]


@pytest.fixture()
def watcher_factory(model_file):
    need_root_ebpf()
    from kernelpilot.security.cpuburn import available
    if not available():
        pytest.skip("kernel without /proc/PID/schedstat or /proc/PID/io (CONFIG_SCHED_INFO, CONFIG_TASK_IO_ACCOUNTING)")
    from kernelpilot.security.live import Watcher
    from kernelpilot.security.model import SecurityModel
    made = []

    def make(**kw):
        made.append(Watcher(SecurityModel.load(model_file), **kw))
        return made[-1]
    yield make
    for w in made:
        w.close()


def syscall_flood(tmp_path):
    """A fresh C program that calls getppid in a loop (CPU in the kernel, no I/O), or None without gcc."""
    import shutil
    from kernelpilot.security.live import FLOOD_C
    if shutil.which("gcc") is None:
        return None
    (tmp_path / "flood.c").write_text("#include <stdlib.h>\n" + FLOOD_C)
    subprocess.run(["gcc", "-O2", "-o", str(tmp_path / "kpflood"), str(tmp_path / "flood.c")], check=True)
    return subprocess.Popen([str(tmp_path / "kpflood"), "4000000"], stdout=subprocess.DEVNULL)


def test_fresh_burner_fires_once_with_context(watcher_factory, tmp_path):
    w = watcher_factory(learn_s=0)
    quiet = [subprocess.Popen([PY, "-c", WRITER.format(path=str(tmp_path / "out.bin"))]),
             subprocess.Popen([PY, "-c", SLEEPER])]
    flood = syscall_flood(tmp_path)
    quiet += [flood] if flood else []
    p = subprocess.Popen([PY, "-c", BURN.format(tag="fresh", secs=3.0)])
    lines = pump(w, lambda ls: burns(ls, p.pid))
    for q in quiet:
        q.wait(60)
    p.wait(30)
    lines += pump(w, lambda ls: False, timeout=0.5)
    hit = burns(lines, p.pid)
    assert len(hit) == 1, [a for a in lines if a["fired"] == "cpu_burn"][:3]
    a = hit[0]
    d = a["detail"]
    assert a["model"] == "rule:cpu_burn" and a["exe"] == os.path.realpath(PY) and "hashlib" in a["cmdline"]
    assert a["ppid"] == os.getpid() and a["parents"][0]["pid"] == os.getpid() and a["tid"] == p.pid
    assert a["parents"][0]["exe"] == os.path.realpath(PY) and a["parents"][-1]["pid"] == 1
    assert a["cgroup_id"] > 0 and a["uid"] == os.getuid() and a["time"]
    assert d["seconds"] >= 0.25 and d["cpu_s"] >= 0.1 * d["seconds"] and d["io_calls"] <= 4
    assert d["cpu_s"] + d["runqueue_wait_s"] >= 0.9 * d["seconds"] and d["new_program"] is True
    assert d["user_share"] >= 0.8
    # computing between writes, computing between sleeps and a syscall flood are not a burn
    assert not [x for x in lines if x["fired"] == "cpu_burn" and x["pid"] in {q.pid for q in quiet}]
    assert all(q.returncode == 0 for q in quiet) and p.returncode == 0


def test_burner_seen_while_the_host_learned_is_its_normal(watcher_factory):
    w = watcher_factory(learn_s=3.0)
    code = BURN.format(tag="learned", secs=1.0)
    p = subprocess.Popen([PY, "-c", code])
    lines = pump(w, lambda ls: not w.profiles.host_learning(time.monotonic_ns()), timeout=30)
    p.wait(30)
    assert lines == [] or not burns(lines, p.pid)
    key = [k for k, v in w.profiles.progs.items() if "cpu_burn" in v.flags]
    assert key and key[0].startswith(os.path.realpath(PY) + " -c #"), key
    again = subprocess.Popen([PY, "-c", code])  # the same program after learning: no alert
    other = subprocess.Popen([PY, "-c", BURN.format(tag="other", secs=2.0)])  # a new one: alert
    lines = pump(w, lambda ls: burns(ls, other.pid))
    again.wait(30)
    other.wait(30)
    lines += pump(w, lambda ls: False, timeout=0.5)
    assert burns(lines, other.pid) and not burns(lines, again.pid)
