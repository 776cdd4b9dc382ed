"""Importers of the published cache traces: tiny hand-made files, slices of the real ones, and
bad input through the CLI (one line naming the file and the record)."""
import gzip
import lzma
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from kernelpilot.datasets import datasets_dir

from kernelpilot.memory import trace as T
from kernelpilot.traces.importers import cache_formats as C

KPILOT = str(Path(sys.executable).with_name("kpilot"))
DATA = datasets_dir() / "cache"


def zst(data: bytes) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as f:
        f.write(data)
    return sink.getvalue().to_pybytes()


def tiny(tmp_path):
    """(file, format, expected ids, expected sizes) per format."""
    files = {
        "lirs": ("t.trace.gz", gzip.compress(b"5\n7\n*\n5\n9\n"), [5, 7, 5, 9], None),
        "arc": ("t.lis.zst", zst(b"100 3 0 0\n7 1 0 1\n101 2 0 2\n"), [100, 101, 102, 7, 101, 102], None),
        "cache2k": ("t.cache2k.xz", lzma.compress(struct.pack(">3i", 0, 1, 0)), [0, 1, 0], None),
        "scarab": ("t.scarab.xz", lzma.compress(struct.pack(">3q", -5, 1 << 40, -5)), [-5, 1 << 40, -5], None),
        "ucsd": ("t.trace.gz", gzip.compress(b"l 0x1000 1\ns 0x103f 2\nl 0x1040 0\n"), [64, 64, 65], None),
        "adaptsize": ("t.trace.xz", lzma.compress(b"1 4 100\n2 9 7\n3 4 100\n"), [4, 9, 4], [100, 7, 100]),
    }
    out = {}
    for fmt, (name, data, ids, sizes) in files.items():
        p = tmp_path / fmt / name
        p.parent.mkdir()
        p.write_bytes(data)
        out[fmt] = (p, ids, sizes)
    return out


def test_tiny_files_read_and_sniff(tmp_path):
    for fmt, (p, ids, sizes) in tiny(tmp_path).items():
        tr = T.load(str(p), fmt)
        assert tr.ids.tolist() == ids, fmt
        assert tr.sizes.tolist() == (sizes or [1] * len(ids)), fmt
        if fmt not in ("cache2k", "scarab"):  # binary keys: width known from the name or length only
            assert C.sniff(p) == fmt, fmt
        assert T.load(str(p)).ids.tolist() == ids, fmt
    page = T.load(str(tmp_path / "ucsd" / "t.trace.gz"), "ucsd-page")
    assert page.ids.tolist() == [1, 1, 1]
    assert T.load(str(tmp_path / "arc" / "t.lis.zst"), "arc", limit=4).ids.tolist() == [100, 101, 102, 7]


REAL = [("lirs/cs.trace.gz", "lirs"), ("arc/OLTP.lis.zst", "arc"), ("cache2k/web07.trace.xz", "cache2k"),
        ("scarab/scarab-recs.trace.xz", "scarab"), ("address/twolf.trace.gz", "ucsd"),
        ("adapt_size/request.trace.xz", "adaptsize")]


@pytest.mark.skipif(not DATA.is_dir(), reason=f"no shared cache traces at {DATA}")
@pytest.mark.parametrize("rel,fmt", REAL)
def test_real_slices(rel, fmt):
    p = DATA / rel
    assert C.sniff(p) == fmt
    tr = T.load(str(p), "auto", limit=5000)
    assert len(tr) == 5000 and tr.footprint() > 1
    if fmt == "cache2k":
        assert tr.ids[:6].tolist() == [0, 1, 2, 0, 1, 3]  # as the data set's README says
    if fmt == "adaptsize":
        assert tr.sizes.max() > 1
    else:
        assert (tr.sizes == 1).all()


def kp(args):
    return subprocess.run([KPILOT, "memory", "sim", "--policies", "lru", *args], capture_output=True,
                          text=True, timeout=120)


def test_bad_input_through_the_cli(tmp_path):
    def put(name, data):
        p = tmp_path / name
        p.write_bytes(data)
        return str(p)
    cases = [  # (args, text the one-line error must hold)
        (["-t", put("w.cache2k.xz", lzma.compress(b"\0" * 6)), "--format", "cache2k"], "4-byte"),
        (["-t", put("w.scarab.xz", lzma.compress(b"\0" * 12)), "--format", "scarab"], "8-byte"),
        (["-t", put("w3.lis.zst", zst(b"1 2 0\n")), "--format", "arc"], "line 1"),
        (["-t", put("w2.trace.xz", lzma.compress(b"1 2 3\n4 5\n")), "--format", "adaptsize"], "line 2"),
        (["-t", put("tr.trace.gz", gzip.compress(b"1\n2\n" * 50)[:-9]), "--format", "lirs"], "truncated"),
        (["-t", put("tr.trace.xz", lzma.compress(b"\0" * 400)[:-20]), "--format", "cache2k"], "truncated"),
        (["-t", put("tr.lis.zst", zst(b"1 2 0 0\n" * 100)[:-6]), "--format", "arc"], "truncated"),
        (["-t", put("n.trace.gz", gzip.compress(b"1\n2\nab\n")), "--format", "lirs"], "line 3"),
        (["-t", put("n.lis.zst", zst(b"1 2 0 0\n3 x 0 1\n")), "--format", "arc"], "line 2"),
        (["-t", put("big.lis.zst", zst(b"1 2 0 0\n3 100000000 0 1\n")), "--format", "arc"], "line 2: block count"),
        (["-t", put("n2.trace.gz", gzip.compress(b"l 0x10 1\nl 0xZZ 1\n")), "--format", "ucsd"], "line 2"),
        (["-t", put("n.trace.xz", lzma.compress(b"1 2 3\n1 q 3\n")), "--format", "adaptsize"], "line 2"),
        (["-t", put("z.trace.xz", lzma.compress(b"1 2 0\n")), "--format", "adaptsize"], "size 0"),
        (["-t", put("e.trace.gz", gzip.compress(b"*\n")), "--format", "lirs"], "empty trace"),
        (["-t", put("e.lis.zst", zst(b"")), "--format", "arc"], "empty trace"),
        (["-t", put("e.cache2k.xz", lzma.compress(b"")), "--format", "cache2k"], "empty trace"),
        (["-t", put("e.scarab.xz", lzma.compress(b"")), "--format", "scarab"], "empty trace"),
        (["-t", put("e2.trace.gz", gzip.compress(b"")), "--format", "ucsd"], "empty trace"),
        (["-t", put("e.trace.xz", lzma.compress(b"\n")), "--format", "adaptsize"], "empty trace"),
        (["-t", put("u.bin.xz", lzma.compress(b"\x01" * 16))], "cannot tell the format"),
    ]
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(kp, [a for a, _ in cases]))
    for (args, text), r in zip(cases, runs):
        name = Path(args[1]).name
        assert r.returncode != 0, name
        assert "Traceback" not in r.stderr, (name, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, (name, r.stderr)
        assert text in r.stderr and name in r.stderr, (name, r.stderr)
