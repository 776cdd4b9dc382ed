"""What an alert says about a process: exe, command line, parent, uid, cgroup. Read from /proc
when the process is first seen and at each exec (so a process that has exited by the time an
alert is raised still carries its command line); the kernel's exec event fills in what /proc no
longer has. Several execs of one pid are kept, so a window is matched to the program that ran it."""
from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

# the cgroup v2 hierarchy: its own mount beside v1 controllers, or the whole /sys/fs/cgroup
V2 = Path("/sys/fs/cgroup/unified") if Path("/sys/fs/cgroup/unified/cgroup.procs").exists() else Path("/sys/fs/cgroup")
CHAIN_MAX = 32       # parent chain depth kept in an alert
KEEP_GONE_S = 300.0  # an exited process's entry is kept this long (late windows, children's chains)
MAX_PROCS = 20_000   # entries kept at most; past it some go, exited ones first (ProcTable._evict), counted
# an interpreter runs many programs: its program is the interpreter and what it runs
INTERPRETER = re.compile(r"(python|perl|ruby|php|node|bash|dash|sh|zsh)[0-9.]*$")


@dataclass
class Proc:
    pid: int
    ppid: int = 0
    uid: int = -1
    comm: str = ""
    exe: str = ""
    cmdline: str = ""
    cgroup: str = ""
    since_ns: int = 0      # monotonic ns of the exec (0: running before we saw it)
    gone_ns: int = 0
    meta: dict = field(default_factory=dict)

    @property
    def program(self) -> str:
        """What the profiles and incidents know a program by: its exe; for an interpreter, the exe
        and its script (`-m module`, `-c` for inline code, or the first argument)."""
        key = self.meta.get("program")
        if key is None:
            key = self.meta["program"] = program_key(self.exe or f"[{self.comm}]", self.cmdline)
        return key

    @property
    def rule_program(self) -> str:
        """As program, but inline code (`-c CODE`) is told apart by its text: what the rules learn
        of one inline script (say, that it renames many files) must not cover every other one."""
        key = self.meta.get("rule_program")
        if key is None:
            key = self.meta["rule_program"] = program_key(self.exe or f"[{self.comm}]", self.cmdline, code=True)
        return key


def program_key(exe: str, cmdline: str, code: bool = False) -> str:
    if not INTERPRETER.match(os.path.basename(exe)):
        return exe
    argv = cmdline.split()
    for i, a in enumerate(argv[1:], 1):
        if a == "-m" and i + 1 < len(argv):
            return f"{exe} -m {argv[i + 1]}"
        if a == "-c":
            if code:
                return f"{exe} -c #{zlib.crc32(' '.join(argv[i + 1:]).encode()):08x}"
            return f"{exe} -c"
        if not a.startswith("-"):
            return f"{exe} {a}"
    return exe


def _read(path: str) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


def read_proc(pid: int) -> Proc | None:
    """The process as /proc shows it now, or None if it is gone."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    head, _, tail = stat.decode(errors="replace").rpartition(")")
    comm = head.partition("(")[2]
    fields = tail.split()
    p = Proc(pid, ppid=int(fields[1]) if len(fields) > 1 else 0, comm=comm)
    try:
        p.exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        pass
    raw = _read(f"/proc/{pid}/cmdline") or b""
    p.cmdline = raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
    status = _read(f"/proc/{pid}/status") or b""
    for line in status.decode(errors="replace").splitlines():
        if line.startswith("Uid:"):
            p.uid = int(line.split()[1])
            break
    cg = (_read(f"/proc/{pid}/cgroup") or b"").decode(errors="replace").strip().splitlines()
    p.cgroup = cg[-1].split(":", 2)[2] if cg and cg[-1].count(":") >= 2 else ""
    return p


class ProcTable:
    """pid -> the programs it ran (oldest first); filled lazily from /proc and from exec events."""

    def __init__(self, max_procs: int = MAX_PROCS):
        self.procs: dict[int, list[Proc]] = {}
        self.started: dict[int, None] = {}  # pids exec'd or forked while watching, not exited yet
        self.max_procs = max_procs
        self.evicted = 0  # entries dropped to keep the table at max_procs

    def _insert(self, pid: int, runs: list[Proc]) -> list[Proc]:
        self.procs[pid] = runs
        if len(self.procs) > self.max_procs:
            self._evict()
        return runs

    def _evict(self) -> None:
        """Down to 90% of max_procs in one go: exited processes first (longest gone first), then
        those only looked up (not exec'd or forked while watching), then the rest, each in the order
        first seen (a pid still running is read again from /proc when it is next looked up)."""
        n = len(self.procs) - int(self.max_procs * 0.9)
        gone = sorted((v[-1].gone_ns, k) for k, v in self.procs.items() if v[-1].gone_ns)
        victims = [k for _, k in gone[:n]]
        if len(victims) < n:
            chosen = set(victims)
            rest = [k for k in self.procs if k not in chosen]
            victims += ([k for k in rest if k not in self.started] + [k for k in rest if k in self.started])[:n - len(victims)]
        for k in victims:
            del self.procs[k]
            self.started.pop(k, None)
        self.evicted += len(victims)

    def get(self, pid: int, ts_ns: int | None = None) -> Proc:
        """The program pid ran at ts_ns (default: the latest one)."""
        runs = self.procs.get(pid)
        if not runs:
            p = read_proc(pid) or Proc(pid)
            runs = self._insert(pid, [p])
        if ts_ns is None:
            return runs[-1]
        for p in reversed(runs):
            if p.since_ns <= ts_ns:
                return p
        return runs[0]

    def exec(self, pid: int, ts_ns: int, ppid: int, uid: int, comm: str, filename: str, interp: str,
             argv: str) -> Proc:
        """An exec event: /proc if it is still the same program, else what the kernel sent."""
        now = read_proc(pid)
        p = Proc(pid, ppid=ppid, uid=uid, comm=comm, since_ns=ts_ns)
        p.exe = interp or filename
        p.cmdline = argv
        same = now is not None and now.comm == comm  # /proc still shows this program
        if same:
            p.exe, p.cgroup = now.exe or p.exe, now.cgroup
            p.cmdline = now.cmdline or argv
        if p.exe.startswith("/") and not (same and now.exe):
            # as /proc/PID/exe would show it (links resolved); also for one that exited unreaped
            # (a zombie shows its comm but no exe): cc -> gcc-12 must be one program, not two
            p.exe = os.path.realpath(p.exe)
        self.started[pid] = None  # before the insert: a pid exec'd now is not one only looked up
        if pid in self.procs:
            self.procs[pid].append(p)
        else:
            self._insert(pid, [p])
        return p

    def fork(self, parent: int, child: int, ts_ns: int) -> None:
        par = self.get(parent, ts_ns)
        self.started[child] = None
        self._insert(child, [Proc(child, ppid=parent, uid=par.uid, comm=par.comm, exe=par.exe, cmdline=par.cmdline,
                                  cgroup=par.cgroup, since_ns=ts_ns, meta={"forked": True})])

    def exit(self, pid: int, ts_ns: int) -> None:
        runs = self.procs.get(pid)
        self.started.pop(pid, None)
        if runs:
            runs[-1].gone_ns = ts_ns

    def chain(self, pid: int, ts_ns: int | None = None) -> list[dict]:
        """[{pid, comm, exe}] from the parent up to init."""
        out, seen = [], {pid}
        p = self.get(pid, ts_ns).ppid
        while p > 0 and p not in seen and len(out) < CHAIN_MAX:
            seen.add(p)
            parent = self.get(p, ts_ns)
            out.append({"pid": p, "comm": parent.comm, "exe": parent.exe})
            p = parent.ppid
        return out

    def prune(self, now_ns: int) -> None:
        for pid in [k for k, v in self.procs.items() if v[-1].gone_ns and now_ns - v[-1].gone_ns > KEEP_GONE_S * 1e9]:
            del self.procs[pid]
