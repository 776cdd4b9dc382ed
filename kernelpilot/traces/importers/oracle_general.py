"""libCacheSim's oracleGeneral binary format: one `<IQIq` record (24 bytes) per request:
uint32 timestamp, uint64 object id, uint32 size, int64 position of the next request (-1: none)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kernelpilot.errors import KpError

RECORD = np.dtype([("time", "<u4"), ("obj_id", "<u8"), ("size", "<u4"), ("next", "<i8")])
assert RECORD.itemsize == 24


def read_oracle_general(path, limit: int | None = None):
    """-> Trace. Checks the record size, sizes > 0 and next-access fields >= -1."""
    from kernelpilot.traces.requests import Trace
    p = Path(path)
    if not p.is_file():
        raise KpError(f"trace file not found: {p}")
    n_bytes = p.stat().st_size
    if n_bytes == 0:
        raise KpError(f"{p}: empty trace")
    if n_bytes % RECORD.itemsize:
        raise KpError(f"{p}: {n_bytes} bytes is not a whole number of 24-byte oracleGeneral "
                      f"records (<IQIq); wrong format or truncated file")
    rec = np.fromfile(p, dtype=RECORD, count=-1 if limit is None else limit)
    if (rec["size"] == 0).any():
        i = int(np.argmax(rec["size"] == 0))
        raise KpError(f"{p}: record {i} has size 0; sizes must be > 0")
    if (rec["next"] < -1).any():
        i = int(np.argmax(rec["next"] < -1))
        raise KpError(f"{p}: record {i} has next-access position {int(rec['next'][i])}; must be >= -1")
    ids = rec["obj_id"].view(np.int64)
    return Trace(ids, rec["size"].astype(np.int64), name=p.name, times=rec["time"].astype(np.int64))


def write_oracle_general(path, tr) -> None:
    """Write a Trace with the next-access column filled in (1-based virtual time, as libCacheSim)."""
    d, _, nxt = tr.dense()
    rec = np.zeros(len(d), dtype=RECORD)
    rec["time"] = tr.times if tr.times is not None else np.arange(1, len(d) + 1)
    rec["obj_id"] = tr.ids.view(np.uint64)
    if (tr.sizes > 0xFFFFFFFF).any():
        raise KpError("object sizes above 4 GiB do not fit the oracleGeneral format")
    rec["size"] = tr.sizes
    rec["next"] = np.where(nxt < 0, -1, nxt + 1)
    rec.tofile(str(path))
