"""Block I/O traces -> block-granular request traces.

Formats: MSR Cambridge CSV (Timestamp,Hostname,DiskNumber,Type,Offset,Size,ResponseTime, no
header) and blkparse-style text (`dev cpu seq time pid action rwbs sector + nsectors ...`; only
'Q' (queued) actions are used). Each request becomes one access per `block_size` block it spans."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kernelpilot.errors import KpError


def _expand(offsets, lengths, block_size):
    first = offsets // block_size
    last = (offsets + np.maximum(lengths, 1) - 1) // block_size
    counts = last - first + 1
    starts = np.repeat(first, counts)
    step = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return starts + step


def read_msr(path, block_size: int = 4096):
    from kernelpilot.memory.trace import Trace
    p = Path(path)
    if not p.is_file():
        raise KpError(f"trace file not found: {p}")
    offs, lens = [], []
    with p.open() as f:
        for ln, line in enumerate(f, 1):
            parts = line.strip().split(",")
            if len(parts) == 1 and not parts[0]:
                continue
            if len(parts) != 7:
                raise KpError(f"{p}:{ln}: an MSR block trace line has 7 fields, got {len(parts)}")
            try:
                off, size = int(parts[4]), int(parts[5])
            except ValueError:
                raise KpError(f"{p}:{ln}: offset/size are not integers") from None
            if off < 0 or size < 0:
                raise KpError(f"{p}:{ln}: negative offset or size")
            offs.append(off)
            lens.append(size)
    if not offs:
        raise KpError(f"{p}: empty trace")
    ids = _expand(np.array(offs, np.int64), np.array(lens, np.int64), block_size)
    return Trace(ids, block_size, name=p.name)


def read_blkparse(path, block_size: int = 4096):
    from kernelpilot.memory.trace import Trace
    p = Path(path)
    if not p.is_file():
        raise KpError(f"trace file not found: {p}")
    offs, lens = [], []
    with p.open() as f:
        for ln, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) < 10 or parts[5] != "Q" or parts[8] != "+":
                continue
            try:
                sector, n = int(parts[7]), int(parts[9])
            except ValueError:
                raise KpError(f"{p}:{ln}: sector/count are not integers") from None
            if sector < 0 or n < 0:
                raise KpError(f"{p}:{ln}: negative sector or count")
            offs.append(sector * 512)
            lens.append(n * 512)
    if not offs:
        raise KpError(f"{p}: no queued (Q) requests found; is this blkparse output?")
    ids = _expand(np.array(offs, np.int64), np.array(lens, np.int64), block_size)
    return Trace(ids, block_size, name=p.name)
