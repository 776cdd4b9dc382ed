"""Scheduling knobs that act across sessions, for the journal (kernelpilot.agent.rollback imports
KNOBS from here, so this stays light: os and ctypes only).

- "autogroup": the nice of a task's autogroup (/proc/PID/autogroup). With
  kernel.sched_autogroup_enabled=1 every session (setsid) is one scheduling entity, so plain nice
  orders tasks only inside a session; the autogroup nice orders the sessions.
- "slice": the task's EEVDF slice (sched_setattr sched_runtime for SCHED_OTHER/BATCH, Linux >=
  6.12); 0 stands for the kernel's default slice.
- "cpu_idle": a cgroup's cpu.idle (v1 cpu controller or v2): 1 makes the group SCHED_IDLE-like.

A target that exited, was reused or changed session raises ProcessLookupError, which the journal
counts as gone (nothing changed) and rollback skips.
"""
from __future__ import annotations

import ctypes
import errno
import os
import platform

SYS_SETATTR, SYS_GETATTR = {"x86_64": (314, 315), "aarch64": (274, 275)}.get(platform.machine(), (314, 315))
SCHED_FLAG_RESET_ON_FORK = 0x01
MIN_SLICE_NS, MAX_SLICE_NS = 100_000, 100_000_000  # the kernel clamps custom slices to this range
_libc = ctypes.CDLL(None, use_errno=True)


class SchedAttr(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("sched_policy", ctypes.c_uint32), ("sched_flags", ctypes.c_uint64),
                ("sched_nice", ctypes.c_int32), ("sched_priority", ctypes.c_uint32),
                ("sched_runtime", ctypes.c_uint64), ("sched_deadline", ctypes.c_uint64),
                ("sched_period", ctypes.c_uint64), ("sched_util_min", ctypes.c_uint32),
                ("sched_util_max", ctypes.c_uint32)]


def _err(what: str, tid: int):
    e = ctypes.get_errno()
    if e == errno.ESRCH:
        raise ProcessLookupError(f"task {tid} exited")
    raise OSError(e, f"{what} of task {tid}: {os.strerror(e)}")


def getattr_(tid: int) -> SchedAttr:
    a = SchedAttr()
    if _libc.syscall(SYS_GETATTR, int(tid), ctypes.byref(a), ctypes.sizeof(a), 0):
        _err("sched_getattr", tid)
    return a


def setattr_(tid: int, a: SchedAttr) -> None:
    a.size = ctypes.sizeof(a)
    if _libc.syscall(SYS_SETATTR, int(tid), ctypes.byref(a), 0):
        _err("sched_setattr", tid)


def base_slice_ns() -> int:
    """The kernel's default slice: debugfs when mounted, else its formula (0.7 ms x (1 + log2 CPUs, at most 8))."""
    try:
        with open("/sys/kernel/debug/sched/base_slice_ns") as f:
            return int(f.read())
    except (OSError, ValueError):
        n = min(os.cpu_count() or 1, 8)
        return 700_000 * (1 + n.bit_length() - 1)


def _task(t: dict) -> int:
    """The target's tid, checked against its recorded start time (and session, if recorded)."""
    tid = int(t["tid"])
    try:
        with open(f"/proc/{tid}/stat") as f:
            s = f.read()
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessLookupError(f"task {tid} exited") from None
    fields = s[s.rindex(")") + 2:].split()
    if int(fields[19]) != t["start"]:
        raise ProcessLookupError(f"pid {tid} was reused by another task")
    return tid


# --- EEVDF slice -------------------------------------------------------------------------------

def _slice_read(t) -> int:
    a = getattr_(_task(t))
    if a.sched_policy not in (os.SCHED_OTHER, os.SCHED_BATCH, os.SCHED_IDLE):
        raise ProcessLookupError(f"task {t['tid']} is not in the fair class any more")
    return 0 if a.sched_runtime == base_slice_ns() else int(a.sched_runtime)


def _slice_write(t, v) -> None:
    tid = _task(t)
    a = getattr_(tid)  # keep policy, nice and reset-on-fork; change only the slice
    if a.sched_policy not in (os.SCHED_OTHER, os.SCHED_BATCH, os.SCHED_IDLE):
        raise ProcessLookupError(f"task {tid} is not in the fair class any more")
    a.sched_flags &= SCHED_FLAG_RESET_ON_FORK
    a.sched_runtime = int(v)
    setattr_(tid, a)


def slices_supported() -> tuple[bool, str]:
    """Whether this kernel honours custom EEVDF slices, probed on a throwaway child."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child waits on the pipe and exits
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    os.close(r)
    try:
        a = getattr_(pid)
        a.sched_flags, a.sched_runtime = 0, 300_000
        setattr_(pid, a)
        got = getattr_(pid).sched_runtime
        return (got == 300_000, "custom EEVDF slices work" if got == 300_000 else
                f"the kernel ignores custom slices (read back {got} ns): Linux < 6.12")
    except OSError as e:
        return False, f"no custom EEVDF slices ({os.strerror(e.errno) if e.errno else e}): Linux < 6.12"
    finally:
        os.close(w)
        os.waitpid(pid, 0)


# --- autogroup nice ----------------------------------------------------------------------------

ROOT_AUTOGROUP = "root"  # init's session: its tasks sit in the root task group, whose nice cannot be set


def autogroup_of(tid: int) -> tuple[str, int]:
    """('autogroup-N', nice) of a task, or (ROOT_AUTOGROUP, 0) for a task of init's session (the
    kernel prints nothing for those); ProcessLookupError if it is gone."""
    try:
        with open(f"/proc/{tid}/autogroup") as f:
            fields = f.read().split()
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessLookupError(f"task {tid} exited") from None
    if not fields:
        return ROOT_AUTOGROUP, 0
    return fields[0].lstrip("/"), int(fields[2])


def _member(t) -> int:
    """A live task of the target's autogroup: the target itself, else (rollback after it exited)
    any task still in that autogroup."""
    try:
        tid = _task(t)
        if autogroup_of(tid)[0] == t["autogroup"]:
            return tid
        reason = f"task {tid} changed session"
    except ProcessLookupError as e:
        reason = str(e)
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if autogroup_of(int(d))[0] == t["autogroup"]:
                    return int(d)
            except (ProcessLookupError, OSError, ValueError):
                continue
    raise ProcessLookupError(f"{reason}; no task left in {t['autogroup']}")


def _autogroup_read(t) -> int:
    tid = _task(t)
    name, nice = autogroup_of(tid)
    if name != t["autogroup"]:
        raise ProcessLookupError(f"task {tid} changed session ({t['autogroup']} -> {name})")
    return nice


def _autogroup_write(t, v) -> None:
    if not -20 <= int(v) <= 19:
        raise OSError(errno.EINVAL, f"autogroup nice {v} out of -20..19")
    if t["autogroup"] == ROOT_AUTOGROUP:
        raise OSError(errno.EINVAL, "the task is in init's session (the root task group): no autogroup nice to set")
    tid = _member(t)
    with open(f"/proc/{tid}/autogroup", "w") as f:
        f.write(str(int(v)))


def autogroup_enabled() -> bool:
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled") as f:
            return f.read().strip() == "1"
    except OSError:
        return False


# --- cgroup cpu.idle ---------------------------------------------------------------------------

def _cpu_idle_read(t) -> int:
    with open(os.path.join(t["path"], "cpu.idle")) as f:
        return int(f.read())


def _cpu_idle_write(t, v) -> None:
    with open(os.path.join(t["path"], "cpu.idle"), "w") as f:
        f.write(str(int(v)))


KNOBS = {
    "autogroup": (_autogroup_read, _autogroup_write),
    "slice": (_slice_read, _slice_write),
    "cpu_idle": (_cpu_idle_read, _cpu_idle_write),
}


# --- I/O priority and OOM score (the rules daemon's other knobs) ---------------------------------

SYS_IOPRIO_SET, SYS_IOPRIO_GET = {"x86_64": (251, 252), "aarch64": (30, 31)}.get(platform.machine(), (251, 252))
IOPRIO_CLASSES = {"none": 0, "realtime": 1, "best-effort": 2, "idle": 3}


def _ioprio_read(t) -> list[int]:
    tid = _task(t)
    v = _libc.syscall(SYS_IOPRIO_GET, 1, tid)  # IOPRIO_WHO_PROCESS (one thread)
    if v < 0:
        _err("ioprio_get", tid)
    return [v >> 13, v & 0x1FFF]


def _ioprio_write(t, v) -> None:
    tid = _task(t)
    if _libc.syscall(SYS_IOPRIO_SET, 1, tid, (int(v[0]) << 13) | int(v[1])) < 0:
        _err("ioprio_set", tid)


def _oom_read(t) -> int:
    tid = _task(t)
    try:
        with open(f"/proc/{tid}/oom_score_adj") as f:
            return int(f.read())
    except FileNotFoundError:
        raise ProcessLookupError(f"task {tid} exited") from None


def _oom_write(t, v) -> None:
    tid = _task(t)
    try:
        with open(f"/proc/{tid}/oom_score_adj", "w") as f:
            f.write(str(int(v)))
    except FileNotFoundError:
        raise ProcessLookupError(f"task {tid} exited") from None


KNOBS.update({"ioprio": (_ioprio_read, _ioprio_write), "oom_score_adj": (_oom_read, _oom_write)})
