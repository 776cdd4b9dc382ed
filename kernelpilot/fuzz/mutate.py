"""Structured mutations of a valid file, by family: bit flips, truncation, random bytes, a number
out of range, a value of the wrong type, NaN/inf, deep nesting, huge sizes, a dropped field.
Each family knows the file's layout (JSON, JSON lines, text, npz, Parquet, binary records,
gzip/xz/zstd text), so a mutation usually gets past the parser and reaches the checks behind it.
`mutate(data, fmt, family, rng) -> bytes` is deterministic for a given numpy Generator."""
from __future__ import annotations

import gzip
import io
import json
import lzma
import re

import numpy as np

FAMILIES = ("bitflip", "truncate", "random_bytes", "out_of_range", "wrong_type", "nan",
            "deep_nesting", "huge_size", "drop_field")
FORMATS = ("json", "jsonl", "text", "npz", "parquet", "binary", "gz", "xz", "zst")
MAX_OUT = 256 << 10  # bytes: a mutated file stays small enough to run thousands

EXTREME_INTS = [-1, -7, 0, 1, 255, 65536, 10**6, 2**31 - 1, 2**31, -(2**31) - 1, 2**32, 2**53 + 1,
                2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**30, 10**400]
EXTREME_FLOATS = [1e308, -1e308, 5e-324, -0.0, 1e-30, 3.5, 1e19]
WRONG = ["x", "", [], {}, None, True, False, 1.5, [1, [2]], {"a": {"b": []}}, "0x10", "1e999"]
NONFINITE = [float("nan"), float("inf"), float("-inf")]


def mutate(data: bytes, fmt: str, family: str, rng: np.random.Generator) -> bytes:
    if family not in FAMILIES:
        raise ValueError(f"unknown mutation family {family}")
    if family == "bitflip":
        out = _bitflip(data, rng)
    elif family == "truncate":
        out = data[: int(rng.integers(0, max(len(data), 1)))]
    elif family == "random_bytes":
        n = int(rng.choice([0, 1, 8, 64, 512, 4096]))
        out = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        if rng.random() < 0.5:  # keep the magic / first bytes so format sniffing still picks us
            out = data[: int(rng.integers(1, 16))] + out
    else:
        try:
            out = STRUCTURED[fmt](data, family, rng)
        except Exception:  # not parseable as its format (or a value the writer refuses): flip bits
            out = _bitflip(data, rng)
    return out[:MAX_OUT]


class _Unparsable(Exception):
    pass


def _bitflip(data: bytes, rng) -> bytes:
    if not data:
        return b"\xff"
    b = bytearray(data)
    for _ in range(int(rng.choice([1, 2, 8, 64]))):
        i = int(rng.integers(0, len(b)))
        b[i] ^= 1 << int(rng.integers(0, 8))
    return bytes(b)


def _pick(rng, seq):
    return seq[int(rng.integers(0, len(seq)))]


# --- JSON documents -----------------------------------------------------------------------------

def _nodes(doc, path=()):
    """(path, value) of every node, parents before children."""
    yield path, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _nodes(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:64] if len(doc) > 64 else doc):
            yield from _nodes(v, path + (i,))
        if len(doc) > 64:  # long arrays: a few more from anywhere
            for i in sorted({len(doc) - 1, len(doc) // 2}):
                yield from _nodes(doc[i], path + (i,))


def _set(doc, path, value):
    if not path:
        return value
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    parent[path[-1]] = value
    return doc


_DEEP = "\x00kp-deep\x00"  # placeholder: the nesting is written into the text after dumping


def _deep(depth: int) -> str:
    return f"{_DEEP}{depth}"


def mutate_doc(doc, family: str, rng):
    """One structured mutation of a parsed JSON value (returned; may be a new root)."""
    nodes = list(_nodes(doc))
    nums = [(p, v) for p, v in nodes if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if family == "out_of_range":
        p, _ = _pick(rng, nums or nodes)
        return _set(doc, p, _pick(rng, EXTREME_INTS + EXTREME_FLOATS))
    if family == "nan":
        p, _ = _pick(rng, nums or nodes)
        return _set(doc, p, _pick(rng, NONFINITE))
    if family == "wrong_type":
        p, _ = _pick(rng, nodes)
        return _set(doc, p, _pick(rng, WRONG))
    if family == "deep_nesting":
        p, _ = _pick(rng, nodes)
        return _set(doc, p, _deep(int(rng.choice([64, 1000, 100_000]))))
    if family == "huge_size":
        lists = [(p, v) for p, v in nodes if isinstance(v, list) and v]
        if lists and rng.random() < 0.6:
            p, v = _pick(rng, lists)
            reps = max(2, min(200_000 // max(len(v), 1), 5000))
            return _set(doc, p, (v * reps)[:200_000])
        p, _ = _pick(rng, nums or nodes)
        return _set(doc, p, _pick(rng, [10**9, 2**40, 10**18, "x" * (MAX_OUT // 2)]))
    if family == "drop_field":
        inner = [(p, v) for p, v in nodes if isinstance(v, (dict, list)) and v]
        if not inner:
            return None
        p, v = _pick(rng, inner)
        if isinstance(v, dict):
            del v[_pick(rng, list(v))]
        else:
            del v[int(rng.integers(0, len(v)))]
        return doc
    raise ValueError(family)


def _dumps(doc) -> bytes:
    text = json.dumps(doc, separators=(",", ":"))
    return re.sub(r'"\\u0000kp-deep\\u0000(\d+)"', lambda m: "[" * int(m[1]) + "0" + "]" * int(m[1]),
                  text).encode()


def _json(data: bytes, family, rng) -> bytes:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise _Unparsable() from None
    return _dumps(mutate_doc(doc, family, rng))


def _jsonl(data: bytes, family, rng) -> bytes:
    lines = data.split(b"\n")
    idx = [i for i, ln in enumerate(lines) if ln.strip()]
    if not idx:
        raise _Unparsable()
    i = _pick(rng, idx)
    if family == "wrong_type" and rng.random() < 0.3:
        lines[i] = _dumps(_pick(rng, WRONG))  # a line that is JSON but not an object
    elif family == "huge_size" and rng.random() < 0.3:
        lines = lines[:i] + [lines[i]] * min(20_000, MAX_OUT // max(len(lines[i]), 1)) + lines[i:]
    else:
        try:
            lines[i] = _json(lines[i], family, rng)
        except _Unparsable:
            lines[i] = _bitflip(lines[i], rng)
    return b"\n".join(lines)


# --- text ---------------------------------------------------------------------------------------

_TOKEN = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|[A-Za-z_][A-Za-z_0-9]*")
_NUM = re.compile(rb"-?\d")


def _text(data: bytes, family, rng) -> bytes:
    toks = list(_TOKEN.finditer(data[: 1 << 16]))
    nums = [t for t in toks if _NUM.match(t.group())]
    words = [t for t in toks if not _NUM.match(t.group())]

    def replace(t, new: bytes) -> bytes:
        return data[: t.start()] + new + data[t.end():]

    if family == "out_of_range" and nums:
        return replace(_pick(rng, nums), str(_pick(rng, EXTREME_INTS + EXTREME_FLOATS)).encode())
    if family == "nan" and nums:
        return replace(_pick(rng, nums), _pick(rng, [b"nan", b"NaN", b"inf", b"-inf", b"Infinity"]))
    if family == "wrong_type" and toks:
        t = _pick(rng, toks)
        new = _pick(rng, [b"x", b"", b"[]", b"\"s\"", b"true", b"0x1f", b"1.5", b"\xff\xfe", b"{}"])
        if t in words and rng.random() < 0.5:
            new = str(_pick(rng, EXTREME_INTS)).encode()
        return replace(t, new)
    if family == "deep_nesting":
        at = int(rng.integers(0, len(data) + 1))
        depth = int(rng.choice([64, 1000, 100_000]))
        o, c = _pick(rng, [(b"[", b"]"), (b"{", b"}"), (b"(", b")"), (b"[[", b"]]")])
        return data[:at] + o * depth + c * depth + data[at:]
    if family == "huge_size":
        lines = data.split(b"\n")
        if rng.random() < 0.5 and lines:
            i = int(rng.integers(0, len(lines)))
            return b"\n".join(lines[:i] + [lines[i]] * min(50_000, MAX_OUT // max(len(lines[i]) + 1, 1))
                              + lines[i:])
        if nums:
            return replace(_pick(rng, nums), _pick(rng, [b"9" * 400, b"1" + b"0" * 19, b"4294967296"]))
        return data + b"x" * MAX_OUT
    if family == "drop_field":
        if toks and rng.random() < 0.6:
            return replace(_pick(rng, toks), b"")
        lines = data.split(b"\n")
        if len(lines) > 1:
            del lines[int(rng.integers(0, len(lines)))]
        return b"\n".join(lines)
    return _bitflip(data, rng)


# --- compressed text ------------------------------------------------------------------------------

def _zstd():
    import pyarrow as pa
    return pa


def _decompress(data: bytes, codec: str) -> bytes:
    try:
        if codec == "gz":
            return gzip.decompress(data)
        if codec == "xz":
            return lzma.decompress(data)
        pa = _zstd()
        with pa.CompressedInputStream(pa.py_buffer(data), "zstd") as f:
            return f.read()
    except Exception:
        raise _Unparsable() from None


def _compress(data: bytes, codec: str) -> bytes:
    if codec == "gz":
        return gzip.compress(data, 1)
    if codec == "xz":
        return lzma.compress(data, preset=0)
    pa = _zstd()
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as f:
        f.write(data)
    return sink.getvalue().to_pybytes()


def _compressed(codec):
    def m(data: bytes, family, rng) -> bytes:
        return _compress(_text(_decompress(data, codec), family, rng), codec)
    return m


# --- binary records -------------------------------------------------------------------------------

def _binary(data: bytes, family, rng) -> bytes:
    if not data:
        raise _Unparsable()
    b = bytearray(data)
    i = int(rng.integers(0, max(len(b) - 8, 1)))
    if family == "out_of_range":
        b[i:i + 8] = _pick(rng, [b"\xff" * 8, b"\x00" * 8, b"\x7f" + b"\xff" * 7, b"\x80" + b"\x00" * 7])[: len(b) - i]
    elif family in ("wrong_type", "drop_field"):  # a record size that is not whole
        del b[i:i + int(rng.integers(1, 8))]
    elif family == "nan":
        b[i:i + 8] = np.array([np.nan]).tobytes()[: len(b) - i]
    elif family == "huge_size":
        b += bytes(b[: min(len(b), 4096)]) * int(rng.integers(1, 256))
    else:  # deep nesting has no meaning in fixed records: repeat one record's bytes
        b[i:i] = bytes(b[i:i + 24]) * 64
    return bytes(b)


# --- npz (model arrays) ---------------------------------------------------------------------------

def _npz(data: bytes, family, rng) -> bytes:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception:
        raise _Unparsable() from None
    meta = arrays.get("__meta__")
    if meta is not None and (rng.random() < 0.3 or len(arrays) == 1):
        doc = mutate_doc(json.loads(str(meta)), family, rng)
        arrays["__meta__"] = np.array(_dumps(doc).decode())
    else:
        names = [k for k in arrays if k != "__meta__"]
        k = _pick(rng, names)
        a = arrays[k]
        if family == "out_of_range" and a.size:
            info = np.iinfo(a.dtype) if a.dtype.kind in "iu" else np.finfo(a.dtype)
            a = a.copy()
            a.flat[int(rng.integers(0, a.size))] = _pick(rng, [info.max, info.min, -1, 10**6 % int(min(info.max, 2**31)) if a.dtype.kind in "iu" else 1e300])
        elif family == "nan" and a.size:
            a = a.astype(np.float64)
            a.flat[int(rng.integers(0, a.size))] = _pick(rng, NONFINITE)
        elif family == "wrong_type":
            a = _pick(rng, [lambda x: x.astype(np.float32), lambda x: x.astype(np.int8),
                            lambda x: x.astype(bool), lambda x: x.astype("U3"),
                            lambda x: x.astype(np.complex64), lambda x: np.array(3)])(a)
        elif family == "deep_nesting":
            a = a.reshape((1,) * 30 + (-1,))
        elif family == "huge_size":
            a = _pick(rng, [np.tile(a, 64)[: 1 << 20], a[:0], a.reshape(-1)[:1]])
        elif family == "drop_field":
            del arrays[k]
            a = None
        if a is not None:
            arrays[k] = a
    out = io.BytesIO()
    np.savez_compressed(out, **arrays)
    return out.getvalue()


# --- Parquet ------------------------------------------------------------------------------------

def _parquet(data: bytes, family, rng) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq
    try:
        t = pq.read_table(pa.py_buffer(data))
    except Exception:
        raise _Unparsable() from None
    md = dict(t.schema.metadata or {})
    keys = [k for k, v in md.items() if v[:1] in (b"{", b"[")]
    if keys and rng.random() < 0.4:
        k = _pick(rng, keys)
        md[k] = _json(md[k], family, rng)
        t = t.replace_schema_metadata(md)
    elif t.num_columns:
        i = int(rng.integers(0, t.num_columns))
        col, name = t.column(i), t.schema.field(i).name
        n = t.num_rows
        if family == "drop_field":
            t = t.remove_column(i)
        elif family == "wrong_type":
            t = t.set_column(i, name, pa.array([str(x) for x in col.to_pylist()], pa.string()))
        elif family == "nan" and n:
            t = t.set_column(i, name, pa.array(np.full(n, np.nan)))
        elif family == "out_of_range" and n and pa.types.is_integer(col.type):
            v = col.to_numpy().copy()
            info = np.iinfo(v.dtype)
            v[int(rng.integers(0, n))] = _pick(rng, [info.max, info.min, 0])
            t = t.set_column(i, name, pa.array(v))
        elif family == "huge_size" and n:
            t = pa.concat_tables([t] * int(rng.integers(2, 64)))
        elif family == "deep_nesting":
            t = t.set_column(i, name, pa.array([[[x]] for x in col.to_pylist()]))
        else:
            raise _Unparsable()
    sink = pa.BufferOutputStream()
    pq.write_table(t, sink)
    return sink.getvalue().to_pybytes()


STRUCTURED = {"json": _json, "jsonl": _jsonl, "text": _text, "npz": _npz, "parquet": _parquet,
              "binary": _binary, "gz": _compressed("gz"), "xz": _compressed("xz"),
              "zst": _compressed("zst")}
