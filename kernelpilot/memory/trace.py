"""Loading request traces for the simulators (files, events, synthetic generators: Zipf, scans,
loops, mixes); the Trace itself is kernelpilot.traces.requests."""
from __future__ import annotations

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.traces.requests import Trace, page_ids


# ---- synthetic traces -------------------------------------------------------------------------

def zipf(n: int, n_obj: int, alpha: float = 1.0, seed: int = 0) -> Trace:
    rng = np.random.default_rng(seed)
    w = 1.0 / np.arange(1, n_obj + 1) ** alpha
    ids = rng.choice(n_obj, size=n, p=w / w.sum())
    perm = rng.permutation(n_obj)
    return Trace(perm[ids], 1, name=f"zipf{alpha}", by_popularity=perm)


def scan(n: int, n_obj: int) -> Trace:
    return Trace(np.arange(n) % n_obj, 1, name="scan")


def loop(n: int, loop_len: int, seed: int = 0) -> Trace:
    """A loop over loop_len objects with a little noise (5% random one-hit objects)."""
    rng = np.random.default_rng(seed)
    ids = np.arange(n) % loop_len
    noise = rng.random(n) < 0.05
    ids[noise] = loop_len + np.arange(int(noise.sum()))
    return Trace(ids, 1, name="loop")


def mixed(n: int, n_obj: int, seed: int = 0) -> Trace:
    """Zipf hot set interrupted by long scans and a recurring loop: the workload shape where
    recency-only policies fail and frequency/recency mixes differ."""
    rng = np.random.default_rng(seed)
    out = []
    total = 0
    scan_base = n_obj * 4
    loop_ids = np.arange(n_obj * 2, n_obj * 2 + n_obj // 2)
    while total < n:
        kind = rng.random()
        if kind < 0.6:
            m = int(rng.integers(n_obj // 4, n_obj))
            w = 1.0 / np.arange(1, n_obj + 1) ** 0.9
            part = rng.choice(n_obj, size=m, p=w / w.sum())
        elif kind < 0.8:
            m = int(rng.integers(n_obj // 4, n_obj))
            part = scan_base + np.arange(m)
            scan_base += m
        else:
            part = np.tile(loop_ids, 2)
        out.append(part)
        total += len(part)
    return Trace(np.concatenate(out)[:n], 1, name="mixed")


def with_sizes(tr: Trace, seed: int = 0, lo: int = 64, hi: int = 65536) -> Trace:
    """The same requests with a fixed random size per object (log-uniform)."""
    d, n_obj, _ = tr.dense()
    rng = np.random.default_rng(seed)
    osz = np.exp(rng.uniform(np.log(lo), np.log(hi), n_obj)).astype(np.int64)
    return Trace(tr.ids, osz[d], name=tr.name + "-sized")


SYNTH = {"zipf": lambda n, seed: zipf(n, max(n // 20, 10), 1.0, seed),
         "zipf0.8": lambda n, seed: zipf(n, max(n // 20, 10), 0.8, seed),
         "scan": lambda n, seed: scan(n, max(n // 4, 10)),
         "loop": lambda n, seed: loop(n, max(n // 50, 10), seed),
         "mixed": lambda n, seed: mixed(n, max(n // 40, 40), seed)}


def synthetic(spec: str, n: int = 200_000, seed: int = 0) -> Trace:
    """'zipf', 'loop', 'mixed', ... -> a Trace."""
    if spec not in SYNTH:
        raise KpError(f"unknown synthetic trace '{spec}'; choose from {', '.join(SYNTH)}")
    if n <= 0:
        raise KpError("synthetic trace length must be > 0")
    return SYNTH[spec](n, seed)


# ---- loading ----------------------------------------------------------------------------------

FORMATS = ("auto", "oracle", "csv", "txt", "msr", "blkparse", "events", "lirs", "arc", "cache2k",
           "scarab", "ucsd", "ucsd-page", "adaptsize")


def from_events(events: np.ndarray, kind: str = "auto", name: str = "events") -> Trace:
    """Foundation events -> page request trace.
      faults  page_fault: a0 = address -> virtual page number
      files   file_read (a0 inode, a1..a2 page range -> one request per page) and file_fault
              (a0 inode, a1 page: a mapped file page touched), in time order; id = inode:page
    auto picks files when the events hold any file reads or file faults, else faults."""
    from kernelpilot.traces import schema as S
    events = np.sort(events, order="ts", kind="stable") if len(events) else events
    faults = S.of_kind(events, "page_fault")
    reads = S.of_kind(events, "file_read")
    ffaults = S.of_kind(events, "file_fault")
    if kind == "auto":
        kind = "files" if len(reads) + len(ffaults) else "faults"
    if kind == "faults":
        if len(faults) == 0:
            raise KpError(f"{name}: no page_fault events (record with --events faults)")
        return Trace((faults["a0"] >> np.uint64(12)).astype(np.int64), 4096, name=name + ":faults")
    if kind != "files":
        raise KpError(f"unknown event trace kind '{kind}'; choose faults or files")
    if len(reads) + len(ffaults) == 0:
        raise KpError(f"{name}: no file_read or file_fault events (record with --events files)")
    lo = reads["a1"].astype(np.int64)
    hi = reads["a2"].astype(np.int64)
    if (hi < lo).any():
        raise KpError(f"{name}: file_read event with last page < first page")
    cnt = np.minimum(hi - lo + 1, 1 << 16)
    step = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    ids = np.concatenate([page_ids(np.repeat(reads["a0"], cnt), np.repeat(lo, cnt) + step),
                          page_ids(ffaults["a0"], ffaults["a1"])])
    ts = np.concatenate([np.repeat(reads["ts"], cnt), ffaults["ts"]])
    return Trace(ids[np.argsort(ts, kind="stable")], 4096, name=name + ":files")


def load(spec: str, fmt: str = "auto", n: int = 200_000, limit: int | None = None) -> Trace:
    """A trace from 'synth:NAME', an oracleGeneral/CSV/txt/block file, a published cache trace
    (importers/cache_formats.py: LIRS, ARC, cache2k, scarab, UCSD, AdaptSize), or a kernelpilot
    event trace (.parquet) of page faults or file reads. `limit`: the first requests only
    (published formats)."""
    from pathlib import Path

    from kernelpilot.traces.importers import block, cache_formats, oracle_general, text
    if spec.startswith("synth:"):
        return synthetic(spec[6:], n)
    if fmt not in FORMATS:
        raise KpError(f"unknown trace format '{fmt}'; choose from {', '.join(FORMATS)}")
    p = Path(spec)
    if not p.exists():
        raise KpError(f"trace file not found: {p} (or use synth:{'|synth:'.join(SYNTH)})")
    if fmt == "auto" and p.is_file():
        fmt = cache_formats.sniff(p) or "auto"
        if fmt == "auto" and p.suffix.lower() in (".gz", ".xz", ".zst"):
            raise KpError(f"{p}: cannot tell the format of this compressed trace; pass --format "
                          f"{'|'.join(cache_formats.FORMATS)}")
    if fmt in cache_formats.FORMATS:
        return cache_formats.read(p, fmt, limit)
    if fmt == "auto":
        suf = p.suffix.lower()
        fmt = {".csv": "csv", ".txt": "txt", ".parquet": "events", ".blktrace": "blkparse",
               ".msr": "msr"}.get(suf, "oracle")
    if fmt == "oracle":
        return oracle_general.read_oracle_general(p)
    if fmt == "csv":
        return text.read_csv(p)
    if fmt == "txt":
        return text.read_txt(p)
    if fmt == "msr":
        return block.read_msr(p)
    if fmt == "blkparse":
        return block.read_blkparse(p)
    from kernelpilot.traces.store import read_trace
    try:
        events, _ = read_trace(p)
    except KpError:
        raise
    except Exception as e:
        raise KpError(f"cannot read event trace {p}: {type(e).__name__}") from None
    return from_events(events, name=p.name)
