"""CSV and plain-text request traces.

txt: one object id per line (optionally `id size`). CSV: a header naming the columns; the object
id column is one of obj_id/id/key/page/block/addr, size is size/obj_size/bytes (default 1), time is
time/timestamp/ts (optional)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from kernelpilot.errors import KpError

ID_COLS = ("obj_id", "id", "key", "page", "block", "addr", "object")
SIZE_COLS = ("size", "obj_size", "bytes")
TIME_COLS = ("time", "timestamp", "ts", "clock_time")


def _num(col, name, p) -> np.ndarray:
    if col.null_count:
        raise KpError(f"{p}: column '{name}' has {col.null_count} missing value(s)")
    try:
        arr = col.to_numpy(zero_copy_only=False)
        if arr.dtype.kind in "OUS":
            arr = np.array([int(str(v), 0) for v in arr], dtype=np.int64)
        return arr.astype(np.int64)
    except (ValueError, pa.ArrowInvalid, OverflowError):
        raise KpError(f"{p}: column '{name}' has non-integer values") from None


def read_csv(path):
    from kernelpilot.traces.requests import Trace
    p = Path(path)
    if not p.is_file():
        raise KpError(f"trace file not found: {p}")
    try:
        tab = pacsv.read_csv(p)
        names = tab.column_names
    except pa.ArrowInvalid as e:
        raise KpError(f"{p}: not a readable CSV trace ({str(e).splitlines()[0]})") from None
    except UnicodeDecodeError:
        raise KpError(f"{p}: not a readable CSV trace (not UTF-8 text)") from None
    cols = {c.strip().lower(): c for c in names}
    idc = next((cols[c] for c in ID_COLS if c in cols), None)
    if idc is None:
        raise KpError(f"{p}: no object id column; name one of {', '.join(ID_COLS)} in the header")
    ids = _num(tab[idc], idc, p)
    szc = next((cols[c] for c in SIZE_COLS if c in cols), None)
    sizes = _num(tab[szc], szc, p) if szc else np.ones(len(ids), np.int64)
    if (sizes <= 0).any():
        i = int(np.argmax(sizes <= 0))
        raise KpError(f"{p}: row {i + 1} has size {int(sizes[i])}; sizes must be > 0")
    tc = next((cols[c] for c in TIME_COLS if c in cols), None)
    times = _num(tab[tc], tc, p) if tc else None
    if times is not None and (times < 0).any():
        raise KpError(f"{p}: negative timestamps")
    return Trace(ids, sizes, name=p.name, times=times)


def read_txt(path):
    from kernelpilot.traces.requests import Trace
    p = Path(path)
    if not p.is_file():
        raise KpError(f"trace file not found: {p}")
    ids, sizes = [], []
    with p.open(errors="replace") as f:
        for ln, line in enumerate(f, 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            if len(parts) > 2:
                raise KpError(f"{p}:{ln}: expected 'id' or 'id size', got {len(parts)} fields")
            try:
                ids.append(int(parts[0], 0))
                sizes.append(int(parts[1]) if len(parts) == 2 else 1)
            except ValueError:
                raise KpError(f"{p}:{ln}: not an integer: {line.strip()!r}") from None
            if sizes[-1] <= 0:
                raise KpError(f"{p}:{ln}: size {sizes[-1]}; sizes must be > 0")
    if not ids:
        raise KpError(f"{p}: empty trace")
    try:
        return Trace(np.array(ids, dtype=np.int64), np.array(sizes, dtype=np.int64), name=p.name)
    except OverflowError:
        raise KpError(f"{p}: an id or size does not fit 64 bits") from None
