"""One event schema for everything kernelpilot observes, live or replayed.

In memory a batch of events is a numpy structured array of EVENT_DTYPE (72 bytes a record, the
same layout as `struct kp_event` in bpf/kp_events.h). On disk it is Parquet with these columns:
ts_ns, cpu, kind (dictionary-encoded name), pid, tgid, comm, aux, a0..a3.

What a0..a3 and aux mean depends on the kind; FIELDS below names them.
"""
from __future__ import annotations

import numpy as np

EVENT_DTYPE = np.dtype([
    ("ts", "<u8"), ("pid", "<u4"), ("tgid", "<u4"), ("kind", "<u2"), ("cpu", "<u2"), ("aux", "<u4"),
    ("a0", "<u8"), ("a1", "<u8"), ("a2", "<u8"), ("a3", "<u8"), ("comm", "S16"),
])
assert EVENT_DTYPE.itemsize == 72

# kind code -> name; codes match enum kp_kind in bpf/kp_events.h
KINDS = {
    1: "sched_switch", 2: "sched_wakeup", 3: "proc_fork", 4: "proc_exit", 5: "proc_exec",
    6: "syscall", 7: "page_fault", 8: "mmap", 9: "munmap", 10: "ioctl",
    11: "file_read", 12: "file_miss", 13: "file_fault", 14: "proc_sample",
}
KIND = {name: code for code, name in KINDS.items()}
SCHED_SWITCH, SCHED_WAKEUP, PROC_FORK, PROC_EXIT, PROC_EXEC = 1, 2, 3, 4, 5
SYSCALL, PAGE_FAULT, MMAP, MUNMAP, IOCTL = 6, 7, 8, 9, 10
FILE_READ, FILE_MISS, FILE_FAULT, PROC_SAMPLE = 11, 12, 13, 14

# What the generic fields hold, per kind (pid/tgid/comm are always the task the event is about).
FIELDS = {
    "sched_switch": {"pid": "prev pid", "a0": "next pid", "a1": "prev state (0 = preempted while runnable)",
                     "a2": "next tgid", "a3": "preempt flag", "aux": "prev prio"},
    "sched_wakeup": {"pid": "woken pid", "a0": "waker pid", "a1": "target cpu", "a2": "waker tgid",
                     "a3": "prio", "aux": "1 if wakeup_new"},
    "proc_fork": {"a0": "child pid", "a1": "child tgid"},
    "proc_exit": {"a0": "exit code"},
    "proc_exec": {"a0": "old pid"},
    "syscall": {"a0": "syscall number (x86-64)", "a1": "arg0", "a2": "arg1", "a3": "arg2"},
    "page_fault": {"a0": "fault address", "a1": "instruction pointer", "a2": "x86 error code"},
    "mmap": {"aux": "fd", "a0": "length", "a1": "prot | flags << 32", "a2": "file rdev", "a3": "file inode"},
    "munmap": {"a0": "address", "a1": "length"},
    "ioctl": {"aux": "fd", "a0": "cmd", "a1": "arg", "a2": "file rdev", "a3": "file inode"},
    "file_read": {"a0": "inode", "a1": "first page index", "a2": "last page index", "a3": "s_dev"},
    "file_miss": {"a0": "inode", "a1": "page index", "a2": "folio order", "a3": "s_dev"},
    "file_fault": {"a0": "inode", "a1": "page index", "a3": "s_dev"},
    "proc_sample": {"a0": "cpu time (ns)", "a1": "minor faults", "a2": "major faults",
                    "a3": "voluntary | involuntary << 32 context switches"},
}

# Event groups users ask for with --events
GROUPS = {
    "sched": ("sched_switch", "sched_wakeup"),
    "syscalls": ("syscall",),
    "faults": ("page_fault",),
    "mm": ("mmap", "munmap", "ioctl"),
    "files": ("file_read", "file_miss", "file_fault"),
    "proc": ("proc_fork", "proc_exit", "proc_exec"),
}


def empty(n: int = 0) -> np.ndarray:
    return np.zeros(n, dtype=EVENT_DTYPE)


def of_kind(events: np.ndarray, *names: str) -> np.ndarray:
    """The events of the given kind names."""
    codes = [KIND[n] for n in names]
    return events[np.isin(events["kind"], codes)]


def kernel_dev(dev: int) -> tuple[int, int]:
    """Split a kernel-internal dev_t (major << 20 | minor) as seen in i_rdev / s_dev."""
    return dev >> 20, dev & 0xFFFFF


def parse_groups(spec: str) -> list[str]:
    """'sched,syscalls' -> ['sched', 'syscalls'], with a clear error for unknown names."""
    from kernelpilot.errors import KpError
    names = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if n not in GROUPS or n == "proc"]
    if bad or not names:
        raise KpError(f"unknown event group {', '.join(bad) or '(none)'}; choose from "
                      + ",".join(g for g in GROUPS if g != "proc"))
    return names
