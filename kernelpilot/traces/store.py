"""Traces on disk: Parquet with one row per event (schema.py), written as a stream of row groups
so a recording that is interrupted still leaves a valid file, and replayed through the same
interface as a live source."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kernelpilot.errors import KpError
from kernelpilot.traces.schema import EVENT_DTYPE, KIND, KINDS

SCHEMA_VERSION = "kernelpilot.trace/1"
_KIND_NAMES = pa.array([KINDS.get(i, f"kind{i}") for i in range(max(KINDS) + 1)], pa.string())
ARROW_SCHEMA = pa.schema([
    ("ts_ns", pa.uint64()), ("cpu", pa.uint16()), ("kind", pa.dictionary(pa.int32(), pa.string())),
    ("pid", pa.uint32()), ("tgid", pa.uint32()), ("comm", pa.dictionary(pa.int32(), pa.string())),
    ("aux", pa.uint32()), ("a0", pa.uint64()), ("a1", pa.uint64()), ("a2", pa.uint64()), ("a3", pa.uint64()),
])
REQUIRED = [f.name for f in ARROW_SCHEMA]


def _comm_codes(ev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct comms and each event's index into them. Comms come in runs (a task's events are
    close together), so find the runs first and sort only their values."""
    n = len(ev)
    if n == 0:
        return np.empty(0, dtype="S16"), np.empty(0, dtype=np.int64)
    off = EVENT_DTYPE.fields["comm"][1]
    raw = np.ascontiguousarray(np.ascontiguousarray(ev).view(np.uint8).reshape(n, EVENT_DTYPE.itemsize)[:, off:off + 16])
    words = raw.view("<u8")
    change = np.empty(n, dtype=bool)
    change[0] = True
    np.not_equal(words[1:, 0], words[:-1, 0], out=change[1:])
    change[1:] |= words[1:, 1] != words[:-1, 1]
    run_of = np.cumsum(change) - 1
    uniq, inv_runs = np.unique(ev["comm"][change], return_inverse=True)
    return uniq, inv_runs[run_of]


def to_arrow(ev: np.ndarray) -> pa.RecordBatch:
    """numpy events -> Arrow record batch (comm and kind dictionary-encoded)."""
    comms, inv = _comm_codes(ev)
    comm = pa.DictionaryArray.from_arrays(pa.array(inv.astype(np.int32)),
                                          pa.array([c.decode(errors="replace") for c in comms], pa.string()))
    kind = pa.DictionaryArray.from_arrays(pa.array(ev["kind"].astype(np.int32)), _KIND_NAMES)
    cols = [pa.array(ev["ts"]), pa.array(ev["cpu"]), kind, pa.array(ev["pid"]), pa.array(ev["tgid"]), comm,
            pa.array(ev["aux"]), pa.array(ev["a0"]), pa.array(ev["a1"]), pa.array(ev["a2"]), pa.array(ev["a3"])]
    return pa.RecordBatch.from_arrays(cols, schema=ARROW_SCHEMA)


def _dict_codes(col: pa.ChunkedArray, to_code) -> np.ndarray:
    parts = []
    for ch in col.chunks:
        if pa.types.is_dictionary(ch.type):
            lut = np.array([to_code(v) for v in ch.dictionary.to_pylist()] or [0])
            idx = ch.indices.to_numpy(zero_copy_only=False)
            parts.append(lut[idx])
        else:
            parts.append(np.array([to_code(v) for v in ch.to_pylist()]))
    return np.concatenate(parts) if parts else np.empty(0)


def from_arrow(tab: pa.Table | pa.RecordBatch) -> np.ndarray:
    """Arrow table of trace rows -> numpy events."""
    if isinstance(tab, pa.RecordBatch):
        tab = pa.Table.from_batches([tab])
    ev = np.zeros(tab.num_rows, dtype=EVENT_DTYPE)
    for src, dst in (("ts_ns", "ts"), ("cpu", "cpu"), ("pid", "pid"), ("tgid", "tgid"), ("aux", "aux"),
                     ("a0", "a0"), ("a1", "a1"), ("a2", "a2"), ("a3", "a3")):
        ev[dst] = tab.column(src).to_numpy()
    ev["kind"] = _dict_codes(tab.column("kind"), lambda n: KIND.get(n, 0))
    ev["comm"] = _dict_codes(tab.column("comm"), lambda s: (s or "").encode()[:16]).astype("S16")
    return ev


class TraceWriter:
    """Streams event batches to a Parquet file. Writes go to `<path>.partial`, renamed on close;
    close() runs on normal exit, Ctrl-C and SIGTERM (the recorder turns those into exceptions)."""

    def __init__(self, path: str | os.PathLike, meta: dict | None = None, row_group: int = 1 << 18):
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            raise KpError(f"output folder does not exist: {self.path.parent}")
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.meta = dict(meta or {})
        self.row_group = row_group
        self.rows = 0
        self._pending: list[np.ndarray] = []
        self._pending_n = 0
        try:
            self._w = pq.ParquetWriter(self.partial, ARROW_SCHEMA.with_metadata(self._schema_meta()),
                                       compression="zstd")
        except OSError as e:
            raise KpError(f"cannot write {self.path}: {e.strerror or e}") from None

    def _schema_meta(self) -> dict:
        return {b"kernelpilot": json.dumps({"schema": SCHEMA_VERSION, **self.meta}).encode()}

    def write(self, ev: np.ndarray) -> None:
        if not len(ev):
            return
        self._pending.append(ev)
        self._pending_n += len(ev)
        if self._pending_n >= self.row_group:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            ev = np.concatenate(self._pending)
            self._pending, self._pending_n = [], 0
            self._w.write_batch(to_arrow(ev))
            self.rows += len(ev)

    def close(self, meta: dict | None = None) -> Path:
        """Finish the file. `meta` (drops, duration...) goes into the footer's key-value metadata."""
        if self._w is None:
            return self.path
        self.flush()
        if meta:
            self.meta.update(meta)
        self._w.add_key_value_metadata({"kernelpilot.final": json.dumps(self.meta)})
        self._w.close()
        self._w = None
        os.replace(self.partial, self.path)
        return self.path

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_trace(path, events: np.ndarray, meta: dict | None = None) -> Path:
    with TraceWriter(path, meta) as w:
        w.write(events)
    return Path(path)


def open_parquet(path) -> pq.ParquetFile:
    """Open a kernelpilot trace, with one clear error for what is missing, truncated or foreign."""
    path = Path(path)
    if not path.exists():
        raise KpError(f"trace not found: {path}")
    if path.is_dir():
        raise KpError(f"{path} is a folder, not a trace file")
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 4))
        tail = f.read(4)
    if head != b"PAR1":
        raise KpError(f"{path} is not a Parquet trace (wrong magic bytes)")
    if tail != b"PAR1":
        raise KpError(f"{path} is truncated: the Parquet footer is missing (was the recording killed?)")
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for corrupt footers
        raise KpError(f"{path} is a corrupt Parquet file: {str(e).splitlines()[0]}") from None
    missing = [c for c in REQUIRED if c not in pf.schema_arrow.names]
    if missing:
        raise KpError(f"{path} is not a kernelpilot trace: missing columns {', '.join(missing)}")
    types = {f.name: f.type for f in pf.schema_arrow}
    for f in ARROW_SCHEMA:
        got = types[f.name]
        text = pa.types.is_string(got) or (pa.types.is_dictionary(got) and pa.types.is_string(got.value_type))
        if not (text if pa.types.is_dictionary(f.type) else pa.types.is_integer(got)):
            raise KpError(f"{path} is not a kernelpilot trace: column {f.name} holds {got}, expected {f.type}")
    return pf


def trace_meta(pf: pq.ParquetFile) -> dict:
    kv = pf.metadata.metadata or {}
    meta = {}
    for key in (b"kernelpilot", b"kernelpilot.final"):
        if key in kv:
            try:
                v = json.loads(kv[key])
            except (ValueError, RecursionError):
                continue
            if isinstance(v, dict):
                meta.update(v)
    return meta


def read_trace(path) -> tuple[np.ndarray, dict]:
    """The whole trace as numpy events, and its metadata."""
    pf = open_parquet(path)
    try:
        tab = pf.read()
    except Exception as e:
        raise KpError(f"{path} is a corrupt Parquet file: {str(e).splitlines()[0]}") from None
    try:
        ev = from_arrow(tab)
    except (IndexError, ValueError) as e:  # dictionary indices out of range, values that do not fit
        raise KpError(f"{path} is a corrupt Parquet file: {type(e).__name__} in its columns") from None
    if len(ev) > 1 and (np.diff(ev["ts"].astype(np.int64)) < 0).any():
        ev = ev[np.argsort(ev["ts"], kind="stable")]  # batched kinds can arrive a little late
    return ev, trace_meta(pf)


class LiveSource:
    """What every event source offers: start(), poll() -> numpy events, finish() -> what is
    left after the last poll, stats(), stop(), and use as a context manager."""

    def finish(self) -> np.ndarray:
        return self.poll()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class ReplaySource(LiveSource):
    """Replays a recorded trace through the live-source interface (start/poll/stats/stop).
    speed=None replays as fast as possible; speed=1.0 at recorded pace; 2.0 twice as fast."""

    name = "replay"

    def __init__(self, path, speed: float | None = None, batch: int = 1 << 16):
        self.pf = open_parquet(path)
        self.meta = trace_meta(self.pf)
        self.speed, self.batch = speed, batch
        self._it = None
        self.delivered = 0
        self.done = False

    def start(self):
        self._it = self.pf.iter_batches(batch_size=self.batch)
        self._buf = np.empty(0, dtype=EVENT_DTYPE)
        self._t0_wall = time.monotonic()
        self._t0_ts = None
        return self

    def poll(self) -> np.ndarray:
        if self._it is None:
            self.start()
        if not len(self._buf):
            try:
                self._buf = from_arrow(next(self._it))
            except StopIteration:
                self.done = True
                return np.empty(0, dtype=EVENT_DTYPE)
        if self._t0_ts is None and len(self._buf):
            self._t0_ts = int(self._buf["ts"][0])
        if self.speed:
            now_ts = self._t0_ts + (time.monotonic() - self._t0_wall) * self.speed * 1e9
            n = int(np.searchsorted(self._buf["ts"], now_ts, side="right"))
            out, self._buf = self._buf[:n], self._buf[n:]
        else:
            out, self._buf = self._buf, np.empty(0, dtype=EVENT_DTYPE)
        self.delivered += len(out)
        return out

    def stats(self) -> dict:
        return {"source": self.name, "delivered": self.delivered, "dropped": 0}

    def stop(self):
        self._it = None
