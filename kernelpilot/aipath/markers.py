"""Phase markers: a traced program says "phase X starts now" with one harmless system call.

The marker is getpid() called through syscall(2) with extra arguments the kernel ignores:
    syscall(SYS_getpid, MAGIC, name[0:8], name[8:16])
The tracer records the raw arguments of every system call, so the marker costs one syscall, needs
no file or socket, and works from any language. `mark()` below does it from Python with ctypes
(copy it into a workload to avoid importing kernelpilot there)."""
from __future__ import annotations

import ctypes

import numpy as np

from kernelpilot.traces import schema as S

SYS_GETPID = 39  # x86-64
MAGIC = 0x4B50494C4F54  # "KPILOT"
MAX_NAME = 16

_libc = None


def pack_name(name: str) -> tuple[int, int]:
    raw = name.encode()[:MAX_NAME].ljust(MAX_NAME, b"\0")
    return int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")


def unpack_name(lo: int, hi: int) -> str:
    raw = int(lo).to_bytes(8, "little") + int(hi).to_bytes(8, "little")
    return raw.rstrip(b"\0").decode(errors="replace")


def mark(name: str) -> None:
    """Mark the start of phase `name` (at most 16 bytes) in the running trace."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)  # libc, already loaded
    lo, hi = pack_name(name)
    _libc.syscall(ctypes.c_long(SYS_GETPID), ctypes.c_ulong(MAGIC), ctypes.c_ulong(lo), ctypes.c_ulong(hi))


def find_markers(ev: np.ndarray) -> list[tuple[int, str]]:
    """(ts, name) of every marker in a trace, in time order."""
    m = ev[(ev["kind"] == S.SYSCALL) & (ev["a0"] == SYS_GETPID) & (ev["a1"] == MAGIC)]
    m = m[np.argsort(m["ts"], kind="stable")]
    return [(int(e["ts"]), unpack_name(e["a2"], e["a3"])) for e in m]


SNIPPET = f'''import ctypes
_libc = ctypes.CDLL(None)
def mark(name):  # kpilot aipath phase marker
    raw = name.encode()[:16].ljust(16, b"\\0")
    _libc.syscall(ctypes.c_long({SYS_GETPID}), ctypes.c_ulong({MAGIC:#x}),
                  ctypes.c_ulong(int.from_bytes(raw[:8], "little")), ctypes.c_ulong(int.from_bytes(raw[8:], "little")))
'''
