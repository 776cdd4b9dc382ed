"""The loaders under fuzz: each reads one file through its public load function, then uses what it
accepted the way its consumer does (a model predicts, compiles to C and encodes for the map
interpreter; a trace is counted), so "accepted" means "safe to use", not only "parsed".

A target's seeds come from `seeds(target)`: the committed corpus (tests/fuzz/corpus/<name>/,
small files made by `write_corpus`), plus real recordings where the machine has them
(/work/shared/datasets excerpts, the package's sample trace) for the bench."""
from __future__ import annotations

import gzip
import io
import json
import lzma
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fuzz" / "corpus"
DATASETS = ROOT.parent / "shared" / "datasets"


@dataclass(frozen=True)
class Target:
    name: str
    fmt: str          # mutate.FORMATS: how to mutate the file
    suffix: str       # the loaders pick formats by suffix
    load: Callable    # path -> object (raises KpError on bad input)
    use: Callable | None = None  # object -> None: what a consumer does with an accepted file
    lenient: bool = False  # reads what it can by design (a journal torn by a crash): never rejects


# --- models --------------------------------------------------------------------------------------

def _load_model(p):
    from kernelpilot.models.format import Model
    return Model.load(p)


def use_model(m) -> None:
    """What kernelize does with a model it accepted: limits per target, C for both targets, the
    map slot, and the integer predictor over edge vectors."""
    from kernelpilot.errors import KpError
    from kernelpilot.kernelize import emit, harness, kernel, limits
    if m.kind == "ngram":
        w = np.zeros((4, max(m.meta["n"], 1) + 2), dtype=np.int64)
        m.predict_int(w)
        return
    if not m.quantized:
        return
    for t in limits.TARGETS:
        try:
            limits.check_limits(m, t)
        except KpError:
            continue
        if t == "bpf-map":
            kernel.encode_slot(m)
        else:
            emit.emit_c(m, target="c" if t == "c" else "bpf")
    m.predict_int(harness.sample_vectors(m, 64))


def _load_sched(p):
    from kernelpilot.sched.evaluate import load_classifier
    return load_classifier(p)


def _use_sched(c) -> None:
    use_model(c.model)


def _load_memory_model(p):
    """`kpilot memory sim --model`: a shared-format tree model of a known policy."""
    from kernelpilot.memory.cli import load_model
    return load_model(p)


def _use_memory_model(m) -> None:
    from kernelpilot.memory.models import complete
    complete(m)
    use_model(m)


def _load_security(p):
    from kernelpilot.security.model import SecurityModel
    return SecurityModel.load(p)


def _use_security(m) -> None:
    seq = np.arange(40, dtype=np.int64) % max(len(m.vocab), 1)
    for d in m.detectors.values():
        d.window_scores(seq)


# --- traces, journals, configs, results ---------------------------------------------------------

def _read_trace(p):
    from kernelpilot.traces.store import read_trace
    return read_trace(p)


def _use_trace(r) -> None:
    from kernelpilot.traces.summary import summarize
    summarize(r[0])


def _memory_trace(fmt):
    def load(p):
        from kernelpilot.memory.trace import load as load_trace
        return load_trace(str(p), fmt, limit=None)
    return load


def _use_memory_trace(tr) -> None:
    tr.dense()
    tr.footprint(unit=False)


def _strace(p):
    from kernelpilot.traces.importers.strace import load_strace
    return load_strace(p)


def _adfa(p):
    from kernelpilot.traces.importers.adfa import read_trace_file
    return read_trace_file(p)


def _security_normal(p):
    from kernelpilot.security.data import load_normal
    return load_normal(p)


def _journal(p):
    from kernelpilot.agent.rollback import describe, read_journal
    header, entries, closed = read_journal(p)
    return [describe(e) for e in entries]


def _config(p):
    from kernelpilot.agent.config import load
    return load(p)


def _sched_rules(p):
    from kernelpilot.sched.rules import load
    return load(p)


def _results(p):
    from kernelpilot.report.html import load
    return load(p)


def _use_results(data) -> None:
    from kernelpilot.report.html import render
    render(data, title="fuzz", source="fuzz")


TARGETS = {t.name: t for t in [
    Target("model-tree", "json", ".json", _load_model, use_model),
    Target("model-forest", "json", ".json", _load_model, use_model),
    Target("model-gbm", "npz", ".npz", _load_model, use_model),
    Target("model-mlp", "json", ".json", _load_model, use_model),
    Target("model-mlp-npz", "npz", ".npz", _load_model, use_model),
    Target("model-ngram", "json", ".json", _load_model, use_model),
    Target("sched-model", "json", ".json", _load_sched, _use_sched),
    Target("memory-model", "json", ".json", _load_memory_model, _use_memory_model),
    Target("security-model", "json", ".json", _load_security, _use_security),
    Target("trace-parquet", "parquet", ".parquet", _read_trace, _use_trace),
    Target("trace-oracle", "binary", ".bin", _memory_trace("oracle")),
    Target("trace-csv", "text", ".csv", _memory_trace("csv"), _use_memory_trace),
    Target("trace-txt", "text", ".txt", _memory_trace("txt"), _use_memory_trace),
    Target("trace-msr", "text", ".msr", _memory_trace("msr"), _use_memory_trace),
    Target("trace-blkparse", "text", ".blktrace", _memory_trace("blkparse"), _use_memory_trace),
    Target("trace-lirs", "gz", ".trace.gz", _memory_trace("lirs"), _use_memory_trace),
    Target("trace-arc", "zst", ".lis.zst", _memory_trace("arc"), _use_memory_trace),
    Target("trace-cache2k", "xz", ".trace.xz", _memory_trace("cache2k"), _use_memory_trace),
    Target("trace-ucsd", "gz", ".trace.gz", _memory_trace("ucsd"), _use_memory_trace),
    Target("trace-adaptsize", "xz", ".trace.xz", _memory_trace("adaptsize"), _use_memory_trace),
    Target("trace-strace", "text", ".strace", _strace),
    Target("trace-adfa", "text", ".txt", _adfa),
    Target("security-normal", "text", ".log", _security_normal),
    Target("journal", "jsonl", ".journal", _journal, lenient=True),
    Target("config-toml", "text", ".toml", _config),
    Target("sched-rules", "jsonl", ".rules", _sched_rules),
    Target("bench-results", "json", ".json", _results, _use_results),
]}


# --- seeds ---------------------------------------------------------------------------------------

def corpus_seeds(name: str) -> list[tuple[str, bytes]]:
    d = CORPUS / name
    return [(p.name, p.read_bytes()) for p in sorted(d.iterdir()) if p.is_file()] if d.is_dir() else []


def real_seeds(name: str, max_bytes: int = 64 << 10) -> list[tuple[str, bytes]]:
    """Excerpts of real recordings (read-only data of others, never committed) for the bench."""
    out: list[tuple[str, bytes]] = []

    def head_lines(path: Path, opener, n: int) -> bytes:
        with opener(path, "rb") as f:
            return b"".join(f.readline() for _ in range(n))

    ds = DATASETS
    if name == "trace-parquet":
        sample = ROOT / "kernelpilot" / "data" / "sample.parquet"
        if sample.is_file():
            out.append((sample.name, sample.read_bytes()))
    elif name == "trace-lirs":
        for f in sorted((ds / "cache" / "lirs").glob("*.trace.gz"))[:3]:
            out.append((f.name, gzip.compress(head_lines(f, gzip.open, 500), 1)))
    elif name == "trace-ucsd":
        for f in sorted((ds / "cache" / "address").glob("*.trace.gz"))[:2]:
            out.append((f.name, gzip.compress(head_lines(f, gzip.open, 500), 1)))
    elif name == "trace-adaptsize":
        f = ds / "cache" / "adapt_size" / "request.trace.xz"
        if f.is_file():
            out.append((f.name, lzma.compress(head_lines(f, lzma.open, 500), preset=0)))
    elif name == "trace-cache2k":
        f = ds / "cache" / "cache2k" / "web07.trace.xz"
        if f.is_file():
            with lzma.open(f) as z:
                out.append((f.name, lzma.compress(z.read(2000), preset=0)))
    elif name == "trace-arc":
        f = ds / "cache" / "arc" / "P3.lis.zst"
        if f.is_file():
            import pyarrow as pa
            with pa.CompressedInputStream(pa.OSFile(str(f)), "zstd") as z:
                raw = z.read(12_000)
            sink = pa.BufferOutputStream()
            with pa.CompressedOutputStream(sink, "zstd") as w:
                w.write(raw[: raw.rfind(b"\n") + 1])
            out.append((f.name, sink.getvalue().to_pybytes()))
    return [(n, b) for n, b in out if len(b) <= max_bytes * 4]


def seeds(name: str, real: bool = True) -> list[tuple[str, bytes]]:
    s = corpus_seeds(name) + (real_seeds(name) if real else [])
    if not s:
        raise FileNotFoundError(f"no seeds for fuzz target {name}: run python -m kernelpilot.fuzz.targets")
    return s


# --- the committed corpus (small synthetic fixtures, rebuilt by `python -m kernelpilot.fuzz.targets`) --

def _small_models() -> dict[str, list[tuple[str, bytes]]]:
    import tempfile

    from sklearn import ensemble, tree

    from kernelpilot.models import demo, from_sklearn
    from kernelpilot.models.ngram import from_sequences
    X, y = demo.make_data(400, seed=3)
    out: dict[str, list[tuple[str, bytes]]] = {}
    with tempfile.TemporaryDirectory() as d:
        def save(m, fname):
            p = Path(d) / fname
            m.save(p)
            return (fname, p.read_bytes())
        m = from_sklearn(tree.DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, y), demo.NAMES, X, y)
        out["model-tree"] = [save(m, "tree.json")]
        m = from_sklearn(tree.DecisionTreeRegressor(max_depth=3, random_state=0).fit(X, X[:, 0]), demo.NAMES, X)
        out["model-tree"].append(save(m, "regressor.json"))
        m = from_sklearn(ensemble.RandomForestClassifier(4, max_depth=3, random_state=0).fit(X, y), demo.NAMES, X, y)
        out["model-forest"] = [save(m, "forest.json")]
        m = from_sklearn(ensemble.GradientBoostingClassifier(n_estimators=4, max_depth=2, random_state=0).fit(X, y),
                         demo.NAMES, X, y)
        out["model-gbm"] = [save(m, "gbm.npz")]
        m, _, _ = demo.train("mlp", n=400, seed=3)
        out["model-mlp"] = [save(m, "mlp.json")]
        out["model-mlp-npz"] = [save(m, "mlp.npz")]
        m = from_sequences([[0, 1, 2, 3, 1, 2, 0], [2, 3, 1]], 3, ["read", "write", "open", "close"])
        out["model-ngram"] = [save(m, "ngram.json")]
        from kernelpilot.sched.features import CLASS_FEATURES
        Xs = np.random.default_rng(0).integers(0, 50, (300, len(CLASS_FEATURES))).astype(float)
        ys = (Xs[:, 0] > 25).astype(int)
        m = from_sklearn(tree.DecisionTreeClassifier(max_depth=3, random_state=0).fit(Xs, ys), CLASS_FEATURES, Xs, ys)
        m.meta["sched_task"] = "task classifier"
        out["sched-model"] = [save(m, "classifier.json")]
        from kernelpilot.memory import models as MM
        from kernelpilot.memory import trace as MT
        m = MM.train("reuse", MT.zipf(3000, 300, seed=1), 30)
        out["memory-model"] = [save(m, "reuse.json")]
    return out


def _security_model() -> bytes:
    import tempfile

    from kernelpilot.security.features import Trace
    from kernelpilot.security.model import SecurityModel
    rng = np.random.default_rng(0)
    calls = ["read", "write", "openat", "close", "mmap", "futex"]
    traces = [Trace(name=f"t{i}", calls=[calls[j] for j in rng.integers(0, len(calls), 300)], comm=f"p{i % 2}")
              for i in range(12)]
    m = SecurityModel.train(traces, ("stide", "freq", "tree"))
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "security.json"
        m.save(p)
        return p.read_bytes()


def _text_seeds() -> dict[str, list[tuple[str, bytes]]]:
    import tempfile

    from kernelpilot.memory import trace as MT
    from kernelpilot.traces.importers.oracle_general import write_oracle_general
    tr = MT.zipf(200, 50, seed=2)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "t.bin"
        write_oracle_general(p, MT.with_sizes(tr))
        oracle = p.read_bytes()
    ids = tr.ids.tolist()
    lines = "\n".join(f"{i}" for i in ids).encode() + b"\n"
    csv = ("time,obj_id,size\n" + "\n".join(f"{t},{i},{64 + i}" for t, i in enumerate(ids)) + "\n").encode()
    msr = "\n".join(f"128166372{t:05d},hm,1,{'Read' if t % 3 else 'Write'},{i * 4096},{4096 * (1 + t % 3)},41"
                    for t, i in enumerate(ids[:80])).encode() + b"\n"
    blk = "\n".join(f"  8,0    1   {t + 1}   0.{t:09d}  4242  Q   R {i * 8} + {8 * (1 + t % 2)} [cat]"
                    for t, i in enumerate(ids[:80])).encode() + b"\n"
    strace = b"".join(f"{4000 + t % 3} 10:00:{t % 60:02d}.{t:06d} {c}(3, \"x\", 1) = 1\n".encode()
                      for t, c in enumerate(["read", "write", "openat", "close", "mmap", "futex"] * 12))
    adfa = " ".join(str(x) for x in [3, 4, 5, 6, 192, 240, 3, 4, 5, 6, 54, 91] * 6).encode() + b"\n"
    journal = b"\n".join(json.dumps(r).encode() for r in [
        {"type": "header", "owner": "fuzz", "pid": 1, "start": 0, "enforce": False, "ts": 0.0},
        {"type": "change", "knob": "nice", "target": {"pid": 1, "start": 0}, "old": 0, "new": 5, "ts": 1.0},
        {"type": "change", "knob": "file", "target": {"path": "/nonexistent/kp-fuzz"}, "old": "1", "new": "2",
         "ts": 2.0},
        {"type": "closed", "ts": 3.0}]) + b"\n"
    toml = (b"[agent]\npoll_s = 0.2\nring_mb = 8\n\n[sched]\nenabled = true\nwindow_s = 1.0\nbatch_nice = 5\n\n"
            b"[security]\nenabled = false\naction = \"freeze\"\nallow = [\"sshd\", \"cron\"]\n\n"
            b"[memory]\nmin_faults = 128\ndepth = 6\n\n[aipath]\ntop = 5\n")
    rules = (b'{"name": "Xorg", "nice": -5, "sched": "normal", "ioclass": "best-effort", "ionice": 2}\n# comment\n'
             b'{"name": "make", "nice": 10, "sched": "batch"}\n{"name": "cc1", "nice": 19, "oom_score_adj": 100}\n')
    results = json.dumps({"name": "demo", "rows": [{"policy": "lru", "size": 10, "miss": 0.5},
                                                   {"policy": "mix", "size": 10, "miss": 0.4}],
                          "summary": {"ratio": 0.8}}).encode()
    lirs = gzip.compress(lines, 1)
    arc = "\n".join(f"{i * 8} {1 + t % 4} 0 {t}" for t, i in enumerate(ids)).encode() + b"\n"
    cache2k = lzma.compress(np.asarray(ids, ">i4").tobytes(), preset=0)
    ucsd = gzip.compress("\n".join(f"{'l' if t % 2 else 's'} 0x{i * 64:x} {t % 7}" for t, i in enumerate(ids)).encode()
                         + b"\n", 1)
    adaptsize = lzma.compress("\n".join(f"{t} {i} {100 + i}" for t, i in enumerate(ids)).encode() + b"\n", preset=0)
    return {"trace-oracle": [("zipf.bin", oracle)], "trace-txt": [("zipf.txt", lines)],
            "trace-csv": [("zipf.csv", csv)], "trace-msr": [("hm.msr", msr)], "trace-blkparse": [("cat.blktrace", blk)],
            "trace-strace": [("ls.strace", strace)], "trace-adfa": [("UAD-0001.txt", adfa)],
            "security-normal": [("ls.log", strace)], "journal": [("agent.journal", journal)],
            "config-toml": [("agent.toml", toml)], "sched-rules": [("desktop.rules", rules)], "bench-results": [("bench.json", results)],
            "trace-lirs": [("zipf.trace.gz", lirs)], "trace-arc": [("zipf.lis.zst", _zst(arc))],
            "trace-cache2k": [("zipf.trace.xz", cache2k)], "trace-ucsd": [("addr.trace.gz", ucsd)],
            "trace-adaptsize": [("req.trace.xz", adaptsize)]}


def _zst(data: bytes) -> bytes:
    import pyarrow as pa
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as f:
        f.write(data)
    return sink.getvalue().to_pybytes()


def _parquet_seed() -> bytes:
    import tempfile

    from kernelpilot.traces.store import read_trace, write_trace
    events, meta = read_trace(ROOT / "kernelpilot" / "data" / "sample.parquet")
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "small.parquet"
        write_trace(p, events[:300], meta)
        return p.read_bytes()


def write_corpus(root: Path = CORPUS) -> None:
    files = {**_small_models(), **_text_seeds(), "security-model": [("security.json", _security_model())],
             "trace-parquet": [("small.parquet", _parquet_seed())]}
    for name, items in files.items():
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for fname, data in items:
            (d / fname).write_bytes(data)


if __name__ == "__main__":
    write_corpus()
    print(f"fuzz corpus written under {CORPUS}")
