"""strace logs (`strace -f [-tt|-ttt] -o FILE cmd`): one Trace per pid, syscalls by name."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.traces.importers import check_size
from kernelpilot.security.features import Trace
from kernelpilot.security.syscalls import canonical, number_to_name

MAX_FILE_BYTES = 256 << 20
# [pid] [time] name(  or  [pid] [time] <... name resumed>
_LINE = re.compile(r"^(?:\[pid\s+)?(?P<pid>\d+)?\]?\s*(?P<ts>\d+:\d+:\d+(?:\.\d+)?|\d+\.\d+)?\s*"
                   r"(?:<\.\.\.\s+(?P<resumed>\w+)\s+resumed>|(?P<name>\w+)\()")


def _seconds(ts: str) -> float:
    if ":" in ts:
        h, m, s = ts.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    return float(ts)


def load_strace(path, default_pid: int = 0) -> list[Trace]:
    path = Path(path)
    check_size(path, MAX_FILE_BYTES, "strace log")
    raw = path.read_bytes()
    if b"\0" in raw[:65536]:
        raise KpError(f"strace log {path} is binary, not strace text output")
    known = set(number_to_name("x86_64").values())
    per_pid: dict[int, tuple[list[str], list[float]]] = {}
    unknown = set()
    for line in raw.decode("utf-8", "replace").splitlines():
        m = _LINE.match(line)
        if not m or m.group("resumed"):
            continue  # the call was counted at its '<unfinished ...>' line
        name = m.group("name")
        if name.startswith("syscall_"):
            unknown.add(name)
            continue
        cname = canonical(name)
        if cname not in known:
            unknown.add(name)
            continue
        pid = int(m.group("pid") or default_pid)
        calls, ts = per_pid.setdefault(pid, ([], []))
        calls.append(cname)
        try:
            ts.append(_seconds(m.group("ts")) if m.group("ts") else float("nan"))
        except (OverflowError, ValueError):
            raise KpError(f"strace log {path}: timestamp {m.group('ts')[:40]!r} is out of range") from None
    if not per_pid:
        raise KpError(f"strace log {path} holds no syscall lines"
                      + (f" (unknown names: {', '.join(sorted(unknown)[:5])})" if unknown else ""))
    traces = []
    for pid, (calls, ts) in per_pid.items():
        t = np.array(ts)
        traces.append(Trace(name=f"{path.name}:{pid}", calls=calls, pid=pid,
                            ts=None if np.isnan(t).any() else (t * 1e9).astype(np.int64),
                            meta={"unknown_names": sorted(unknown)}))
    return traces
