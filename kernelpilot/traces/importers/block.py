"""Block I/O traces -> block-granular request traces.

Formats: MSR Cambridge CSV (Timestamp,Hostname,DiskNumber,Type,Offset,Size,ResponseTime, no
header) and blkparse-style text (`dev cpu seq time pid action rwbs sector + nsectors ...`; only
'Q' (queued) actions are used). Each request becomes one access per `block_size` block it spans."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kernelpilot.errors import KpError

MAX_BLOCKS = 1 << 28  # accesses after expanding requests to blocks (2 GiB of int64 ids)


def _expand(offsets, lengths, block_size):
    first = offsets // block_size
    last = (offsets + np.maximum(lengths, 1) - 1) // block_size
    counts = last - first + 1
    starts = np.repeat(first, counts)
    step = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return starts + step


def _read_extents(path, block_size: int, parse, empty_msg: str):
    """Read a text block trace: `parse(parts, where)` gives (byte offset, byte length) for a
    line's fields, or None to skip it; each request becomes one access per block it spans."""
    from kernelpilot.traces.requests import Trace
    p = Path(path)
    if not p.is_file():
        raise KpError(f"trace file not found: {p}")
    offs, lens = [], []
    with p.open(errors="replace") as f:
        for ln, line in enumerate(f, 1):
            got = parse(line, f"{p}:{ln}")
            if got is not None:
                if got[0] + got[1] >= 2**62:
                    raise KpError(f"{p}:{ln}: offset/size beyond 2^62 bytes")
                offs.append(got[0])
                lens.append(got[1])
    if not offs:
        raise KpError(f"{p}: {empty_msg}")
    offs, lens = np.array(offs, np.int64), np.array(lens, np.int64)
    blocks = int(((offs + np.maximum(lens, 1) - 1) // block_size - offs // block_size + 1).sum())
    if blocks > MAX_BLOCKS:
        raise KpError(f"{p}: the requests span {blocks} blocks; at most {MAX_BLOCKS} are read")
    ids = _expand(offs, lens, block_size)
    return Trace(ids, block_size, name=p.name)


def _pair(a: str, b: str, where: str, first: str, second: str) -> tuple[int, int]:
    """Two fields that must be non-negative integers (a position and a length)."""
    try:
        x, y = int(a), int(b)
    except ValueError:
        raise KpError(f"{where}: {first}/{second} are not integers") from None
    if x < 0 or y < 0:
        raise KpError(f"{where}: negative {first} or {second}")
    return x, y


def _msr_line(line: str, where: str):
    parts = line.strip().split(",")
    if len(parts) == 1 and not parts[0]:
        return None
    if len(parts) != 7:
        raise KpError(f"{where}: an MSR block trace line has 7 fields, got {len(parts)}")
    return _pair(parts[4], parts[5], where, "offset", "size")


def _blkparse_line(line: str, where: str):
    parts = line.split()
    if len(parts) < 10 or parts[5] != "Q" or parts[8] != "+":
        return None
    sector, n = _pair(parts[7], parts[9], where, "sector", "count")
    return sector * 512, n * 512


def read_msr(path, block_size: int = 4096):
    return _read_extents(path, block_size, _msr_line, "empty trace")


def read_blkparse(path, block_size: int = 4096):
    return _read_extents(path, block_size, _blkparse_line, "no queued (Q) requests found; is this blkparse output?")
