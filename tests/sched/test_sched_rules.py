"""The ananicy-cpp rules reader on the community rule set and on malformed files (through the CLI),
and the rules daemon on real processes: matched ones changed and restored, unmatched left alone."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))
from agent_helpers import ROOT, nice_of, run_dir, wait_for  # noqa: E402,F401

from kernelpilot.sched import knobs  # noqa: E402
from kernelpilot.sched.rules import load  # noqa: E402
from kernelpilot.datasets import datasets_dir  # noqa: E402

KPILOT = str(ROOT / ".venv/bin/kpilot")
TARBALL = datasets_dir() / "sched" / "ananicy-rules.tar.xz"
need_tarball = pytest.mark.skipif(not TARBALL.exists(), reason=f"community rules not found at {TARBALL} (KPILOT_DATASETS)")


def kp(*args, **kw):
    return subprocess.run([KPILOT, "sched", "rules", *map(str, args)], capture_output=True, text=True, timeout=120, **kw)


@need_tarball
def test_community_rules_parse_from_the_tarball():
    rs = load(TARBALL, lenient=True)
    assert len(rs.rules) > 15000 and len(rs.types) >= 10 and set(rs.cgroups) >= {"cpu90", "cpu80"}
    assert rs.rules["portal2_linux"]["type"] == "Game" and rs.rules["portal2_linux"]["nice"] == -5
    assert rs.rules["Xorg"]["nice"] == -12  # LowLatency_RT
    assert "make" not in rs.rules and "cc1" not in rs.rules and "cyclictest" not in rs.rules
    assert rs.rules["plasmashell"] == {"nice": -6}  # explicit fields, no type
    # one community line carries a stray '+': skipped (as ananicy-cpp does) and named
    assert any("linux-native_d.rules:315" in s for s in rs.skipped)


@need_tarball
def test_community_rules_strict_names_the_bad_line():
    r = kp("--rules", TARBALL)
    assert r.returncode == 2 and "linux-native_d.rules:315: text after the JSON object" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_directory_and_tarball_read_the_same(tmp_path):
    d = tmp_path / "r"
    (d / "00-default").mkdir(parents=True)
    (d / "00-types.types").write_text('# types\n{ "type": "Game", "nice": -5, "sched": "normal" }\n')
    (d / "00-cgroups.cgroups").write_text('{ "cgroup": "cpu80", "CPUQuota": 80 }\n')
    (d / "00-default" / "a.rules").write_text('{ "name": "g", "type": "Game" }  # trailing comment\n'
                                              '{ "name": "h", "nice": 3, "cgroup": "cpu80" }\n')
    subprocess.run(["tar", "cJf", str(tmp_path / "r.tar.xz"), "-C", str(tmp_path), "r"], check=True)
    a, b = load(d), load(tmp_path / "r.tar.xz")
    assert a.rules == b.rules == {"g": {"nice": -5, "sched": "normal", "type": "Game"}, "h": {"nice": 3, "cgroup": "cpu80"}}


@pytest.mark.parametrize("line,msg", [
    ('{ "name": "x", "type": "T" ', "x.rules:2: not a JSON object"),
    ('{ "name": "x", "nice": "high" }', "x.rules:2: field 'nice': expected a number"),
    ('{ "name": "x", "nice": 40 }', "x.rules:2: field 'nice': 40 is outside -20..19"),
    ('{ "type": "T" }', "x.rules:2: field 'name': missing"),
    ('{ "name": "x", "sched": "fast" }', "x.rules:2: field 'sched': 'fast' is not one of"),
    ('{ "name": "x", "ioclass": "rt" }', "x.rules:2: field 'ioclass'"),
    ('{ "name": "x", "cgroup": "nope" }', "x.rules:2: field 'cgroup': 'nope' is not defined"),
    ('[1, 2]', "x.rules:2: not a JSON object"),
])
def test_malformed_rules_file_one_line_error(tmp_path, line, msg):
    (tmp_path / "t.types").write_text('{ "type": "T", "nice": 5 }\n')
    (tmp_path / "x.rules").write_text('# a comment\n' + line + "\n")
    r = kp("--rules", tmp_path)
    assert r.returncode == 2 and msg in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    rs = load(tmp_path, lenient=True)  # ananicy-cpp's way: skip the line, say which
    assert "x" not in rs.rules and len(rs.skipped) == 1 and msg in rs.skipped[0]


def test_lenient_through_the_cli(tmp_path):
    (tmp_path / "x.rules").write_text('{ "name": "ok", "nice": 1 }\n{ "name": "x", "nice": 40 }\n')
    r = kp("--rules", tmp_path, "--lenient", "--json")
    assert r.returncode == 0 and '"rules": 1' in r.stdout and "x.rules:2: field 'nice'" in r.stdout


@pytest.mark.parametrize("make,msg", [
    (lambda p: p / "none", "no such rules file or directory"),
    (lambda p: (p / "bad.tar.xz").write_bytes(b"not a tarball") and p / "bad.tar.xz", "not a rules directory or a readable tarball"),
])
def test_unreadable_rules_path(tmp_path, make, msg):
    r = kp("--rules", make(tmp_path))
    assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr


def test_rules_bad_options(tmp_path):
    (tmp_path / "x.rules").write_text('{ "name": "x", "nice": 1 }\n')
    for args, msg in ((["--pid", "999999999"], "no such process"), (["--interval", "0"], "--interval must be above")):
        r = kp("--rules", tmp_path, *args)
        assert r.returncode == 2 and msg in r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change other tasks' scheduling")
def test_daemon_applies_matched_leaves_unmatched_and_restores(tmp_path, run_dir):
    prog = tmp_path / "kprulestest"
    shutil.copy("/bin/sleep", prog)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "t.types").write_text('{ "type": "BG", "nice": 12, "ioclass": "idle", "sched": "idle" }\n')
    (tmp_path / "r" / "a.rules").write_text('{ "name": "kprulestest", "type": "BG" }\n')
    root = subprocess.Popen(["sh", "-c", f"{prog} 60 & sleep 60 & wait"], start_new_session=True)
    try:
        def kids():
            ps = [int(p) for p in Path(f"/proc/{root.pid}/task/{root.pid}/children").read_text().split()]
            return {Path(f"/proc/{p}/comm").read_text().strip(): p for p in ps}
        assert wait_for(lambda: set(kids()) == {"kprulestest", "sleep"}, 10)  # both exec'd
        matched, other = kids()["kprulestest"], kids()["sleep"]
        t = {"tid": matched, "start": None}
        a = subprocess.Popen([KPILOT, "sched", "rules", "--rules", str(tmp_path / "r"), "--enforce", "--pid",
                              str(root.pid), "--tree", "--duration", "30"], stdout=subprocess.PIPE, text=True)
        assert wait_for(lambda: nice_of(matched) == 12 and os.sched_getscheduler(matched) == os.SCHED_IDLE, 30)
        from kernelpilot.agent.rollback import start_time
        t["start"] = start_time(matched)
        assert knobs.KNOBS["ioprio"][0](t)[0] == 3  # idle I/O class
        assert nice_of(other) == 0 and os.sched_getscheduler(other) == os.SCHED_OTHER  # unmatched: nothing
        a.terminate()
        out = a.communicate(timeout=30)[0]
        assert a.returncode == 0 and "kprulestest" in out and "all changes restored" in out
        assert nice_of(matched) == 0 and os.sched_getscheduler(matched) == os.SCHED_OTHER
        assert knobs.KNOBS["ioprio"][0](t)[0] == 0
    finally:
        os.killpg(root.pid, 9)
        root.wait()
