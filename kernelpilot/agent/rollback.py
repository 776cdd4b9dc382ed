"""Knobs the agent may change, how to read/write/restore each, journal replay, and the guardian.

Kept free of heavy imports: the guardian is a fresh `python -m kernelpilot.agent.rollback --guard`
process that waits on a pidfd of the agent and replays the journal if the agent dies without
rolling back (SIGKILL, OOM kill, crash).
"""
from __future__ import annotations

import errno
import json
import logging
import os
import select
import sys
import time
from pathlib import Path

log = logging.getLogger("kernelpilot.agent")
RUN_DIR_DEFAULT = "/run/kernelpilot"


def run_dir() -> Path:
    return Path(os.environ.get("KPILOT_RUN_DIR", RUN_DIR_DEFAULT))


def start_time(pid: int) -> int | None:
    """Start time (clock ticks since boot) from /proc/<pid>/stat, or None if the task is gone.
    A pid plus its start time names one task even if the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat") as f:  # thread ids work here too
            s = f.read()
        return int(s[s.rindex(")") + 2:].split()[19])
    except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
        return None


class Gone(Exception):
    """The target task exited or its pid now names another task."""


def _same_task(t: dict) -> int:
    tid = int(t["tid"])
    st = start_time(tid)
    if st is None:
        raise Gone(f"task {tid} exited")
    if st != t["start"]:
        raise Gone(f"pid {tid} was reused by another task")
    return tid


# --- knobs: read() returns the current value, write() sets one ---------------------------------

def _nice_read(t):
    return os.getpriority(os.PRIO_PROCESS, _same_task(t))


def _nice_write(t, v):
    os.setpriority(os.PRIO_PROCESS, _same_task(t), int(v))


def _policy_read(t):
    tid = _same_task(t)
    return [os.sched_getscheduler(tid), os.sched_getparam(tid).sched_priority]  # reset-on-fork flag kept


def _policy_write(t, v):
    os.sched_setscheduler(_same_task(t), int(v[0]), os.sched_param(int(v[1])))


def _cg_line(t) -> tuple[str, str]:
    """(mount, relative cgroup path) of the task in the hierarchy t['hier'] ('v2' or 'v1:cpu')."""
    tid = _same_task(t)
    want = t["hier"]
    with open(f"/proc/{tid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if (want == "v2" and ctrls == "") or (want.startswith("v1:") and want[3:] in ctrls.split(",")):
                return t["mount"], path
    raise Gone(f"task {tid} is not in hierarchy {want}")


def _cgroup_read(t):
    return _cg_line(t)[1]


def _cgroup_write(t, v):
    mount, _ = _cg_line(t)
    with open(os.path.join(mount, v.lstrip("/"), "cgroup.procs"), "w") as f:
        f.write(str(_same_task(t)))


def _file_read(t):
    with open(t["path"]) as f:
        return f.read().strip()


def _file_write(t, v):
    with open(t["path"], "w") as f:
        f.write(str(v))


def _mkdir_read(t):
    return os.path.isdir(t["path"])


def _mkdir_write(t, v):
    path = t["path"]
    if v:
        os.mkdir(path)
        return
    if not os.path.isdir(path):
        return
    parent = os.path.join(os.path.dirname(path), "cgroup.procs")
    procs = os.path.join(path, "cgroup.procs")
    for _ in range(3):  # tasks forked inside after we moved their parent: back to the parent group
        with open(procs) as f:
            pids = f.read().split()
        if not pids:
            break
        for p in pids:
            try:
                with open(parent, "w") as f:
                    f.write(p)
            except OSError:
                pass
    deadline = time.monotonic() + 10
    while True:  # a task killed inside is in procs until its exit is done (a big swapped one: a while)
        try:
            os.rmdir(path)
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def _zram_read(t):
    """A zram device made by hot_add: its disksize ("0" unconfigured); False when it is gone."""
    try:
        with open(f"/sys/block/zram{int(t['id'])}/disksize") as f:
            return f.read().strip()
    except FileNotFoundError:
        return False


def _zram_write(t, v):
    """A size configures the device as swap space (disksize, mkswap); "0" or False resets and
    removes it (hot_remove): the device was made for the journal's owner."""
    import subprocess
    zid = int(t["id"])
    if v and v != "0":
        with open(f"/sys/block/zram{zid}/disksize", "w") as f:
            f.write(str(v))
        subprocess.run(["mkswap", f"/dev/zram{zid}"], check=True, capture_output=True)
        return
    if os.path.exists(f"/sys/block/zram{zid}"):
        with open(f"/sys/block/zram{zid}/reset", "w") as f:
            f.write("1")
        with open("/sys/class/zram-control/hot_remove", "w") as f:
            f.write(str(zid))


def _swapon_read(t):
    with open("/proc/swaps") as f:
        return any(line.split()[0] == t["dev"] for line in f.read().splitlines()[1:])


def _swapon_write(t, v):
    import subprocess
    cmd = ["swapon", "-p", str(t.get("priority", 32000)), t["dev"]] if v else ["swapoff", t["dev"]]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise OSError(f"{cmd[0]} {t['dev']}: {r.stderr.strip()}")


KNOBS = {
    "zram": (_zram_read, _zram_write),
    "swapon": (_swapon_read, _swapon_write),
    "nice": (_nice_read, _nice_write),
    "policy": (_policy_read, _policy_write),
    "cgroup": (_cgroup_read, _cgroup_write),
    "file": (_file_read, _file_write),
    "mkdir": (_mkdir_read, _mkdir_write),
}
from kernelpilot.sched.knobs import KNOBS as _SCHED_KNOBS  # noqa: E402  autogroup nice, EEVDF slice, cpu.idle
KNOBS.update(_SCHED_KNOBS)


def describe(e: dict) -> str:
    t = e["target"]
    who = f"task {t['tid']}" if "tid" in t else str(t.get("path", "?"))
    if t.get("comm"):
        who += f" ({t['comm']})"
    return f"{e['knob']} of {who}: {e['old']!r:.80} -> {e['new']!r:.80}"


# --- journal files -----------------------------------------------------------------------------

def read_journal(path: Path) -> tuple[dict, list[dict], bool]:
    """(header, change entries, closed). A torn last line (crash mid-write) is ignored."""
    header, entries, closed = {}, [], False
    with open(path, errors="replace") as f:
        for line in f:
            try:
                e = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                continue
            if not isinstance(e, dict):
                continue  # a torn or foreign line
            if e.get("type") == "header":
                header = e
            elif e.get("type") == "change":
                if not (isinstance(e.get("knob"), str) and isinstance(e.get("target"), dict)
                        and "old" in e and "new" in e):
                    log.warning("rollback: %s: a change entry without knob, target, old and new, skipped", path)
                    continue
                entries.append(e)
            elif e.get("type") == "closed":
                closed = True
    return header, entries, closed


def replay(entries: list[dict]) -> dict:
    """Restore every entry's old value, newest first. Never raises for a single knob."""
    done = skipped = failed = 0
    for e in reversed(entries):
        if e["knob"] not in KNOBS:
            log.warning("rollback: unknown knob %s, skipped", e["knob"])
            failed += 1
            continue
        try:
            KNOBS[e["knob"]][1](e["target"], e["old"])
            done += 1
        except Gone as g:
            log.info("rollback: %s: %s, nothing to restore", describe(e), g)
            skipped += 1
        except (ProcessLookupError, FileNotFoundError) as g:
            log.info("rollback: %s: %s", describe(e), g)
            skipped += 1
        except OSError as g:
            log.warning("rollback: could not restore %s: %s", describe(e), g)
            failed += 1
        except (KeyError, TypeError, ValueError, OverflowError) as g:  # a damaged entry
            log.warning("rollback: entry %s is malformed (%s: %s), skipped", describe(e), type(g).__name__, g)
            failed += 1
    return {"restored": done, "gone": skipped, "failed": failed}


def replay_file(path: Path) -> dict:
    header, entries, closed = read_journal(path)
    result = replay(entries) if not closed else {"restored": 0, "gone": 0, "failed": 0}
    with open(path, "a") as f:
        f.write(json.dumps({"type": "closed", "ts": time.time(), "by": os.getpid()}) + "\n")
    path.unlink(missing_ok=True)
    return result


def owner_alive(header: dict) -> bool:
    pid, st = header.get("pid"), header.get("start")
    return pid is not None and start_time(int(pid)) == st


def stale_journals(directory: Path | None = None) -> list[Path]:
    d = directory or run_dir()
    if not d.is_dir():
        return []
    out = []
    for p in sorted(d.glob("journal-*.jsonl")):
        try:
            header, _, _ = read_journal(p)
        except OSError:
            continue
        if not owner_alive(header):
            out.append(p)
    return out


# --- guardian ----------------------------------------------------------------------------------

def guard(agent_pid: int, journal: Path) -> int:
    """Wait for the agent to die; if its journal is still open then, replay it."""
    import signal
    for s in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)
    try:
        pidfd = os.pidfd_open(agent_pid)
    except ProcessLookupError:
        pidfd = None
    if pidfd is not None and os.getppid() == agent_pid:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.register(sys.stdin.fileno(), select.POLLIN | select.POLLHUP)
        while True:
            ready = dict(poller.poll())
            if pidfd in ready:
                break
            if sys.stdin.fileno() in ready:
                line = sys.stdin.readline()
                if line.strip() == "done":
                    return 0
                if not line:  # agent's end of the pipe closed: it is dying
                    break
    if journal.exists():
        logging.basicConfig(filename=str(journal.with_suffix(".guardian.log")), level=logging.INFO,
                            format="%(asctime)s %(message)s")
        res = replay_file(journal)
        log.info("guardian: agent %d died; journal replayed: %s", agent_pid, res)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--guard":
        sys.exit(guard(int(sys.argv[2]), Path(sys.argv[3])))
    sys.exit("usage: python -m kernelpilot.agent.rollback --guard AGENT_PID JOURNAL")
