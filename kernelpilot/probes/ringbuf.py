"""Read a BPF ring buffer in bulk: map the ring, view every committed record at once as a numpy
structured array, advance the consumer position. No Python call per event.

Layout (kernel/bpf/ringbuf.c): page 0 holds consumer_pos (we write it), page 1 producer_pos (read
only), then the data area mapped twice back to back, so a span that wraps is still contiguous.
Each record: u32 len (bit 31 busy, bit 30 discarded), u32 page offset, payload, padded to 8 bytes."""
from __future__ import annotations

import mmap
import os
import time

import numpy as np

from kernelpilot.probes.libbpf import BpfError, Map

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HDR = 8


class RingReader:
    """Bulk reader for a ring buffer whose records all have numpy dtype `dtype`."""

    def __init__(self, ring: Map, dtype: np.dtype):
        if ring.type != 27:  # BPF_MAP_TYPE_RINGBUF
            raise BpfError(f"map {ring.name} is not a ring buffer")
        self.dtype = np.dtype(dtype)
        self.size = ring.max_entries
        self.mask = self.size - 1
        self.rec = (HDR + self.dtype.itemsize + 7) // 8 * 8
        self.rec_dtype = np.dtype({"names": ["len", "pgoff", "ev"], "formats": ["<u4", "<u4", self.dtype],
                                   "offsets": [0, 4, 8], "itemsize": self.rec})
        page = mmap.PAGESIZE
        self._cons_map = mmap.mmap(ring.fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._prod_map = mmap.mmap(ring.fd, page + 2 * self.size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._cons = np.frombuffer(self._cons_map, dtype="<u8", count=1)
        self._prod = np.frombuffer(self._prod_map, dtype="<u8", count=1)
        self._data = np.frombuffer(self._prod_map, dtype=np.uint8, offset=page)
        self.consumed = 0
        self.foreign = 0  # records of another size, skipped

    def pending_bytes(self) -> int:
        return int(self._prod[0]) - int(self._cons[0])

    def poll(self, max_records: int | None = None) -> np.ndarray:
        """All records committed so far (in order), copied out; the ring space is released."""
        cons = int(self._cons[0])
        prod = int(self._prod[0])
        avail = prod - cons
        if avail <= 0:
            return np.empty(0, dtype=self.dtype)
        n = avail // self.rec
        if max_records is not None:
            n = min(n, max_records)
        off = cons & self.mask
        recs = self._data[off: off + n * self.rec].view(self.rec_dtype)
        lens = recs["len"]
        busy = np.flatnonzero(lens & BUSY_BIT)
        if busy.size:  # stop at the first record still being written
            n = int(busy[0])
            recs, lens = recs[:n], lens[:n]
        plain = lens & ~np.uint32(BUSY_BIT | DISCARD_BIT)
        if n and (plain != self.dtype.itemsize).any():
            return self._poll_mixed(cons, prod)
        keep = (lens & DISCARD_BIT) == 0
        out = recs["ev"][keep] if not keep.all() else recs["ev"].copy()
        self._advance(cons + n * self.rec)
        self.consumed += len(out)
        return out

    def _poll_mixed(self, cons: int, prod: int) -> np.ndarray:
        """Slow path for rings that carry records of other sizes: walk headers one by one."""
        out = []
        pos = cons
        while pos < prod:
            hdr = int(self._data[pos & self.mask: (pos & self.mask) + 4].view("<u4")[0])
            if hdr & BUSY_BIT:
                break
            ln = hdr & ~(BUSY_BIT | DISCARD_BIT)
            step = (HDR + ln + 7) // 8 * 8
            if not hdr & DISCARD_BIT:
                if ln == self.dtype.itemsize:
                    start = (pos & self.mask) + HDR
                    out.append(self._data[start: start + ln].view(self.dtype)[0])
                else:
                    self.foreign += 1
            pos += step
        self._advance(pos)
        arr = np.array(out, dtype=self.dtype)
        self.consumed += len(arr)
        return arr

    def _advance(self, pos: int) -> None:
        self._cons[0] = pos  # x86-64 stores are ordered: a plain store is the release the kernel expects

    def drain(self, idle_s: float = 0.05, timeout_s: float = 2.0) -> np.ndarray:
        """Read until the ring stays empty for idle_s (or timeout_s passes)."""
        parts, deadline, last = [], time.monotonic() + timeout_s, time.monotonic()
        while time.monotonic() < deadline:
            b = self.poll()
            if len(b):
                parts.append(b)
                last = time.monotonic()
            elif time.monotonic() - last > idle_s:
                break
            else:
                time.sleep(0.005)
        return np.concatenate(parts) if parts else np.empty(0, dtype=self.dtype)

    def close(self) -> None:
        for name in ("_cons", "_prod", "_data"):
            setattr(self, name, None)
        for m in (self._cons_map, self._prod_map):
            try:
                m.close()
            except BufferError:
                pass
