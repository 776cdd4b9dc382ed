"""Published cache traces (the formats of ../shared/datasets/cache/): unit-size keys unless noted.

  lirs       gzip text, one block number per line; `*` lines separate phases (skipped)
  arc        zstd text `start n ignored request_no`: blocks start .. start+n-1 (ARC paper traces)
  cache2k    xz binary, big-endian int32 keys
  scarab     xz binary, big-endian int64 keys
  ucsd       gzip text `l|s 0xADDR n` (memory addresses): key = the 64-byte cache line (ADDR >> 6)
  ucsd-page  the same, key = the 4 KiB page (ADDR >> 12)
  adaptsize  xz text `time id size`: keys with byte sizes (the only sized format here)

Compression is recognised by its magic bytes, so a renamed file still reads. Every reader stops
after `limit` requests when given one (a prefix of a big trace)."""
from __future__ import annotations

import gzip
import io
import lzma
import re
from pathlib import Path

import numpy as np

from kernelpilot.errors import KpError

FORMATS = ("lirs", "arc", "cache2k", "scarab", "ucsd", "ucsd-page", "adaptsize")
MAX_BLOCKS = 1 << 28  # ARC records expanded to blocks (2 GiB of int64 ids)
MAX_RECORD_BLOCKS = 1 << 12  # blocks one ARC request may span (the published traces: at most 128)
_MAGIC = {b"\x1f\x8b": "gzip", b"\xfd7zXZ": "xz", b"\x28\xb5\x2f\xfd": "zstd"}


def _codec(head: bytes) -> str | None:
    return next((c for m, c in _MAGIC.items() if head.startswith(m)), None)


def _decompress(p: Path, head_only: bool = False) -> bytes:
    """The file's bytes, decompressed by its magic (or as is); one clear error when the stream is
    truncated or corrupt. head_only: the first 64 KiB (for sniffing)."""
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise KpError(f"cannot read trace {p}: {e.strerror}") from None
    codec = _codec(raw[:8])
    want = 1 << 16 if head_only else -1
    try:
        if codec == "gzip":
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
                return f.read(want)
        if codec == "xz":
            with lzma.LZMAFile(io.BytesIO(raw)) as f:
                return f.read(want)
        if codec == "zstd":
            import pyarrow as pa
            with pa.CompressedInputStream(pa.BufferReader(raw), "zstd") as f:
                return f.read(1 << 16) if head_only else f.read()
    except (EOFError, OSError, lzma.LZMAError) as e:
        if head_only:
            return b""
        raise KpError(f"{p}: truncated or corrupt {codec} stream ({str(e).splitlines()[0][:80]})") from None
    except Exception as e:  # pyarrow raises its own types
        if head_only:
            return b""
        raise KpError(f"{p}: truncated or corrupt {codec} stream ({type(e).__name__})") from None
    return raw[:want] if head_only else raw


def _empty(p, n):
    if n == 0:
        raise KpError(f"{p}: empty trace (no records)")


def _bad_line(p, data: bytes, ok) -> KpError:
    """The first line `ok` rejects, as one error naming the file and the line."""
    for ln, line in enumerate(data.split(b"\n"), 1):
        s = line.strip()
        if s and not ok(s):
            return KpError(f"{p}: line {ln}: not a valid record: {s[:60].decode(errors='replace')!r}")
    return KpError(f"{p}: unreadable records")


def _int_columns(p, data: bytes, ncols: int, limit: int | None) -> np.ndarray:
    """Whitespace-separated non-negative integer text, `ncols` per line -> (n, ncols) int64."""
    pat = re.compile(rb"^\d+(\s+\d+){%d}$" % (ncols - 1))
    tok = data.split()
    if len(tok) % ncols or (tok and max(map(len, tok)) > 20):  # > 20 digits: not an int64 (and slow)
        raise _bad_line(p, data, pat.match)
    try:
        arr = np.array(tok, dtype=np.bytes_).astype(np.int64) if tok else np.zeros(0, np.int64)
    except (ValueError, OverflowError):
        raise _bad_line(p, data, pat.match) from None
    arr = arr.reshape(-1, ncols)
    if (arr < 0).any():
        raise _bad_line(p, data, pat.match)
    return arr[:limit]


def read_lirs(p: Path, limit=None):
    data = _decompress(p)
    data = re.sub(rb"(?m)^\s*\*\s*$", b"", data)  # phase separators
    ids = _int_columns(p, data, 1, limit)[:, 0]
    _empty(p, len(ids))
    return ids, None


def read_arc(p: Path, limit=None):
    rows = _int_columns(p, _decompress(p), 4, None)
    _empty(p, len(rows))
    start, cnt = rows[:, 0], rows[:, 1]
    if (cnt <= 0).any():
        i = int(np.argmax(cnt <= 0))
        raise KpError(f"{p}: line {i + 1}: block count {int(cnt[i])}; must be > 0")
    if (cnt > MAX_RECORD_BLOCKS).any():
        i = int(np.argmax(cnt > MAX_RECORD_BLOCKS))
        raise KpError(f"{p}: line {i + 1}: block count {int(cnt[i])}; one request spans at most "
                      f"{MAX_RECORD_BLOCKS} blocks (the published ARC traces: 128)")
    if limit is not None:
        keep = int(np.searchsorted(np.cumsum(cnt), limit)) + 1
        start, cnt = start[:keep], cnt[:keep]
    if float(cnt.astype(np.float64).sum()) > MAX_BLOCKS:
        raise KpError(f"{p}: the records span {float(cnt.astype(np.float64).sum()):.0f} blocks; "
                      f"at most {MAX_BLOCKS} are read")
    step = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    ids = np.repeat(start, cnt) + step
    return (ids if limit is None else ids[:limit]), None


def _binary(p: Path, width: int, name: str, limit=None):
    data = _decompress(p)
    if len(data) % width:
        raise KpError(f"{p}: {len(data)} bytes is not a whole number of {width}-byte {name} records "
                      f"(record {len(data) // width} is cut short); wrong format or truncated file")
    ids = np.frombuffer(data, dtype=f">i{width}", count=-1 if limit is None else min(limit, len(data) // width))
    _empty(p, len(ids))
    return ids.astype(np.int64), None


def read_cache2k(p: Path, limit=None):
    return _binary(p, 4, "cache2k (big-endian int32)", limit)


def read_scarab(p: Path, limit=None):
    return _binary(p, 8, "scarab (big-endian int64)", limit)


_UCSD = re.compile(rb"^[ls]\s+0x[0-9a-fA-F]+\s+\d+$")


def read_ucsd(p: Path, limit=None, shift: int = 6):
    data = _decompress(p)
    tok = data.split()
    if limit is not None:
        tok = tok[:3 * limit]
    if len(tok) % 3:
        raise _bad_line(p, data, _UCSD.match)
    op, addr = tok[0::3], tok[1::3]
    try:
        if any(o not in (b"l", b"s") for o in op):
            raise ValueError
        ids = np.array([int(a, 16) for a in addr], dtype=np.int64) >> shift
    except (ValueError, OverflowError):
        raise _bad_line(p, data, _UCSD.match) from None
    _empty(p, len(ids))
    return ids, None


def read_adaptsize(p: Path, limit=None):
    rows = _int_columns(p, _decompress(p), 3, limit)
    _empty(p, len(rows))
    if (rows[:, 2] <= 0).any():
        i = int(np.argmax(rows[:, 2] <= 0))
        raise KpError(f"{p}: line {i + 1}: size {int(rows[i, 2])}; sizes must be > 0")
    return rows[:, 1], rows[:, 2]


READERS = {"lirs": read_lirs, "arc": read_arc, "cache2k": read_cache2k, "scarab": read_scarab,
           "ucsd": read_ucsd, "ucsd-page": lambda p, limit=None: read_ucsd(p, limit, 12),
           "adaptsize": read_adaptsize}


def sniff(p: Path) -> str | None:
    """The format of a compressed published trace, or None if it is none of these. Text formats
    are told apart by their first lines; binary keys by the record width the file name or length
    allows (cache2k in the name or a length that is not a multiple of 8: int32; scarab: int64)."""
    head = p.open("rb").read(8)
    codec = _codec(head)
    name = p.name.lower()
    if codec is None:
        return None
    if codec == "zstd" or ".lis" in name:
        return "arc"
    text = _decompress(p, head_only=True)
    lines = [ln.strip() for ln in text.split(b"\n")[:-1][:50] if ln.strip()]
    if lines and all(_UCSD.match(ln) for ln in lines):
        return "ucsd"
    if lines and all(re.match(rb"^(\d+|\*)$", ln) for ln in lines):
        return "lirs"
    if lines and all(re.match(rb"^\d+\s+\d+\s+\d+$", ln) for ln in lines):
        return "adaptsize"
    if "cache2k" in str(p).lower():
        return "cache2k"
    if "scarab" in str(p).lower():
        return "scarab"
    if codec == "xz":
        full = _decompress(p)
        if len(full) % 8:
            return "cache2k" if len(full) % 4 == 0 else None
    return None


def read(path, fmt: str, limit: int | None = None):
    """-> Trace in format `fmt` (one of FORMATS)."""
    from kernelpilot.traces.requests import Trace
    p = Path(path)
    if fmt not in READERS:
        raise KpError(f"unknown trace format '{fmt}'; choose from {', '.join(FORMATS)}")
    if not p.is_file():
        raise KpError(f"trace file not found: {p}")
    if limit is not None and limit <= 0:
        raise KpError(f"--limit must be > 0 (got {limit})")
    ids, sizes = READERS[fmt](p, limit)
    return Trace(ids, 1 if sizes is None else sizes, name=p.name.split(".")[0])
