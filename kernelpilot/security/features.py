"""Syscall traces, the shared vocabulary and per-window features.

A Trace is one process's syscalls by canonical name (see syscalls.py), so i386 data sets and
x86-64 live traces share one vocabulary. Windows are W consecutive syscalls of one process taken
every `stride` calls; detectors give each window a score and a trace takes its worst window."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.security.syscalls import UNKNOWN, canonical

WINDOW = 32
STRIDE = 8
GRAM_BITS = 20      # the in-kernel table of normal 3-grams: 2^20 bits, one Fibonacci hash
# Calls a live model's n-gram stages (stide, programs, live profiles) leave out: where a thread's
# futex calls fall depends on the scheduler (an http.server worker waits for Python's GIL at
# different calls in every run), so 6-grams holding them were novel by chance
SCHEDULED = ("futex",)
FBITS = 6           # bits per packed feature sum in the kernel (a window holds <= 32 calls)

# Syscall classes the in-kernel stage and the tree can count cheaply (by canonical name).
CLASSES = {
    "exec": {"execve", "execveat"},
    "net": {"socket", "connect", "accept", "accept4", "bind", "listen", "socketcall", "sendto",
            "recvfrom", "sendmsg", "recvmsg", "socketpair", "getsockopt", "setsockopt"},
    "cred": {"setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid",
             "setfsgid", "setgroups", "capset", "ptrace", "unshare", "setns", "chroot"},
    "fsmod": {"rename", "renameat", "renameat2", "unlink", "unlinkat", "chmod", "fchmod",
              "fchmodat", "chown", "fchown", "lchown", "fchownat", "link", "linkat", "symlink",
              "symlinkat", "truncate", "ftruncate", "mkdir", "mkdirat", "rmdir"},
    "proc": {"clone", "clone3", "fork", "vfork", "kill", "tkill", "tgkill", "wait4", "waitid"},
    "mem": {"mprotect", "mmap", "munmap", "mremap", "brk", "pkey_mprotect"},
    "fd": {"dup", "dup2", "dup3", "pipe", "pipe2", "fcntl"},
}
CLASS_NAMES = tuple(CLASSES)


@dataclass
class Trace:
    """One process's syscalls (canonical names), with labels when known."""
    name: str
    calls: list[str]
    label: str = "normal"            # "normal" or "attack"
    family: str = "normal"           # attack family (ADFA folder prefix, scenario name)
    ts: np.ndarray | None = None     # ns timestamps, one per call, when recorded live
    attack_start: int = 0            # index of the first attack call (0 = whole trace)
    pid: int = 0
    comm: str = ""
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.calls)


class Vocabulary:
    """Canonical syscall name <-> small integer id; id 0 is 'unknown' (out of vocabulary)."""

    def __init__(self, names):
        names = [n for n in dict.fromkeys(names) if n != UNKNOWN]
        self.names = [UNKNOWN] + names
        self.index = {n: i for i, n in enumerate(self.names)}

    @classmethod
    def from_traces(cls, traces: list[Trace]) -> "Vocabulary":
        counts: dict[str, int] = {}
        for t in traces:
            for c in t.calls:
                counts[c] = counts.get(c, 0) + 1
        return cls(sorted(counts, key=lambda n: (-counts[n], n)))

    def __len__(self) -> int:
        return len(self.names)

    def encode(self, calls) -> np.ndarray:
        get = self.index.get
        return np.fromiter((get(c, 0) for c in calls), dtype=np.int32, count=len(calls))

    def check_compatible(self, traces: list[Trace], what: str = "data") -> None:
        """Refuse data that mostly falls outside this vocabulary (a model from another ABI/tool)."""
        total = oov = 0
        for t in traces:
            total += len(t.calls)
            oov += sum(1 for c in t.calls if c not in self.index)
        if total and oov / total > 0.5:
            raise KpError(f"{oov / total:.0%} of the syscalls in the {what} are not in the model's "
                          "vocabulary: the model was trained on another vocabulary")

    def to_json(self) -> list[str]:
        return self.names[1:]

    @classmethod
    def from_json(cls, names) -> "Vocabulary":
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise KpError("model vocabulary must be a list of syscall names")
        bad = [n for n in names if canonical(n) != n or n.isdigit()]
        if bad:
            raise KpError(f"model vocabulary holds names that are not canonical syscall names "
                          f"(e.g. {bad[0]!r}): the model was trained on another vocabulary")
        return cls(names)


def window_bounds(n: int, window: int = WINDOW, stride: int = STRIDE) -> np.ndarray:
    """End indices (exclusive) of the windows of a trace of n calls; a short trace is one window."""
    if n <= window:
        return np.array([n], dtype=np.int64)
    ends = np.arange(window, n + 1, stride, dtype=np.int64)
    if ends[-1] != n:
        ends = np.append(ends, n)
    return ends


def window_means(pos: np.ndarray, window: int = WINDOW, stride: int = STRIDE) -> np.ndarray:
    """Mean of per-position scores over each window."""
    n = len(pos)
    if n == 0:
        return np.zeros(1)
    ends = window_bounds(n, window, stride)
    c = np.concatenate([[0.0], np.cumsum(pos, dtype=np.float64)])
    starts = np.maximum(ends - window, 0)
    return (c[ends] - c[starts]) / (ends - starts)


def class_table(vocab: Vocabulary) -> np.ndarray:
    """(len(vocab), len(CLASSES)) 0/1 matrix: which class each vocabulary id belongs to."""
    m = np.zeros((len(vocab), len(CLASSES)), dtype=np.float32)
    for j, cname in enumerate(CLASS_NAMES):
        for name in CLASSES[cname]:
            if name in vocab.index:
                m[vocab.index[name], j] = 1
    return m


def window_sums(per_pos: np.ndarray, window: int = WINDOW, stride: int = STRIDE) -> np.ndarray:
    """Sum of per-position feature rows (n, k) over each window -> (n_windows, k)."""
    n = per_pos.shape[0]
    if n == 0:
        return np.zeros((1, per_pos.shape[1]))
    ends = window_bounds(n, window, stride)
    c = np.vstack([np.zeros((1, per_pos.shape[1])), np.cumsum(per_pos, axis=0, dtype=np.float64)])
    return c[ends] - c[np.maximum(ends - window, 0)]


def ngram_hashes(seq: np.ndarray, n: int) -> np.ndarray:
    """A 64-bit hash of the n-gram ending at each position (shorter grams at the start)."""
    seq = seq.astype(np.uint64)
    h = np.zeros(len(seq), dtype=np.uint64)
    mult = np.uint64(1000003)
    with np.errstate(over="ignore"):
        for k in range(n):
            shifted = np.zeros(len(seq), dtype=np.uint64)
            if k < len(seq):
                shifted[k:] = seq[:len(seq) - k] + np.uint64(1)
            h = h * mult + shifted
    return h


def gram_slots(seq: np.ndarray, vmod: int) -> np.ndarray:
    """Bit index in the kernel's 3-gram table of the 3-gram ending at each position, computed in
    uint32 exactly as bpf/sc_watch.bpf.c does: ids+1 (0 = before the first call), base vmod."""
    p = seq.astype(np.uint32) + np.uint32(1)
    p1 = np.r_[np.uint32(0), p[:-1]].astype(np.uint32) if len(p) else p
    p2 = np.r_[np.zeros(2, np.uint32), p[:-2]].astype(np.uint32)[:len(p)] if len(p) else p
    m = np.uint32(vmod)
    with np.errstate(over="ignore"):
        key = (p2 * m + p1) * m + p
        return (key * np.uint32(2654435761)) >> np.uint32(32 - GRAM_BITS)


def gram_table(seqs, vmod: int) -> np.ndarray:
    """The kernel's 3-gram bitmap (uint64 words) of every 3-gram in `seqs`."""
    words = np.zeros(1 << (GRAM_BITS - 6), dtype=np.uint64)
    if seqs:
        h = np.unique(np.concatenate([gram_slots(s, vmod) for s in seqs]))
        np.bitwise_or.at(words, h >> 6, np.left_shift(np.uint64(1), (h & 63).astype(np.uint64)))
    return words


def gram_novel(seq: np.ndarray, vmod: int, words: np.ndarray) -> np.ndarray:
    """1 where the 3-gram ending at a position is not in the table."""
    h = gram_slots(seq, vmod)
    return ((words[h >> 6] >> (h & 63).astype(np.uint64)) & np.uint64(1)) == 0


def arg_class(name: str, a0: int, a1: int, a2: int) -> str | None:
    """A coarse class for cheap-to-read arguments (live traces only), else None."""
    if name == "socket":
        return {1: "socket:unix", 2: "socket:inet", 10: "socket:inet6", 16: "socket:netlink",
                17: "socket:packet"}.get(a0 & 0xFFFF, "socket:other")
    if name in ("mprotect", "pkey_mprotect") and a2 & 0x4:
        return "mprotect:exec"
    if name == "mmap" and a2 & 0x4:
        return "mmap:exec"
    if name in ("setuid", "setresuid", "setreuid") and a0 == 0:
        return "setuid:root"
    if name == "ptrace":
        return "ptrace"
    return None
