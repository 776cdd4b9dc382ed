"""Real syscall data sets read straight from their tarballs, and the one split protocol used on them.

FHIDS (fhids.tar.xz): FHIDS/normal/<service>/N.txt and FHIDS/attack/<family>/N.txt, one process a
file, space-separated syscall names (x86-64, recorded with eBPF). Names map to the project's
canonical names; a name not in the table is kept as its own token.

UNM/MIT (unm.tar.xz): UNM/<n>.<program>/... and MIT/live lpr/..., `pid number` lines with the
processes interleaved; one trace per (file, pid). Numbers follow each program's own (mostly SunOS)
map, so they stay numbers: token `nr<N>`, a vocabulary per program. Which files are normal and which
intrusions follows UNM/README.md (the folder names); `result-*` name dumps are skipped. Where the
copy kept a program's original normal traces in a nested archive (ORIGINALS), those are read, one
trace per (archive member, pid), in place of the flat files cut from them; other nested archives
repeat files already read and are skipped. An intrusion file the copy filed twice (KNOWN_COPIES)
is read once, under the program it belongs to."""
from __future__ import annotations

import io
import lzma
import os
import re
import tarfile
import zlib
from pathlib import Path

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.security.features import Trace
from kernelpilot.security.syscalls import canonical

NAMES = ("fhids", "unm")
TARBALL = {"fhids": "fhids.tar.xz", "unm": "unm.tar.xz"}
MAX_MEMBER_BYTES = 256 << 20
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
SEED = 0
FRACTIONS = (0.6, 0.2)  # train, calibration; the rest of each group's normal traces is test


def datasets_dir() -> Path:
    """$KPILOT_DATASETS, else ../shared/datasets beside the repository (where CI keeps it)."""
    env = os.environ.get("KPILOT_DATASETS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def default_path(name: str) -> Path:
    return datasets_dir() / "security" / TARBALL[name]


def _members(path: Path):
    """(name, bytes) of every regular file in the tarball, or one clear error."""
    path = Path(path)
    if not path.is_file():
        raise KpError(f"data set tarball not found: {path}")
    out = []
    try:
        with tarfile.open(path) as tar:
            for m in tar:
                if not m.isfile():
                    continue
                if m.size > MAX_MEMBER_BYTES:
                    raise KpError(f"{path}: member {m.name} is {m.size >> 20} MiB, over the limit")
                out.append((m.name, tar.extractfile(m).read()))
    except (tarfile.TarError, EOFError, lzma.LZMAError, zlib.error, OSError) as e:
        why = (str(e).splitlines() or [type(e).__name__])[0].rstrip(":")
        raise KpError(f"{path} is not a readable tarball (corrupt or truncated: {why})") from None
    if not out:
        raise KpError(f"{path} holds no files")
    return out


def _text(path, name, raw) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise KpError(f"{path}: {name} is not text (expected syscall names or numbers)") from None


def load_fhids(path=None) -> list[Trace]:
    """Every FHIDS process as a Trace: label normal/attack, family = attack folder (or 'normal'),
    meta service = the folder (the attacked service for attacks; Cryptomining has none)."""
    path = Path(path or default_path("fhids"))
    traces = []
    for name, raw in _members(path):
        parts = name.split("/")
        if len(parts) != 4 or parts[1] not in ("normal", "attack") or not parts[3].endswith(".txt"):
            continue
        toks = _text(path, name, raw).split()
        if not toks:
            continue  # an empty process file: no calls to judge
        bad = next((t for t in toks if not _NAME.match(t)), None)
        if bad is not None:
            raise KpError(f"{path}: {name} holds {bad[:20]!r}, not a syscall name")
        kind, group = parts[1], parts[2]
        traces.append(Trace(name=f"{kind}/{group}/{parts[3]}", calls=[canonical(t) for t in toks],
                            label=kind, family=group if kind == "attack" else "normal",
                            meta={"service": group}))
    if not any(t.label == "normal" for t in traces) or not any(t.label == "attack" for t in traces):
        raise KpError(f"{path} is not the FHIDS layout: no FHIDS/normal/<service>/N.txt and "
                      "FHIDS/attack/<family>/N.txt files")
    return traces


# UNM/MIT: program -> (folder, {file stem prefix: program}) decided by the README; "intrusion"
# folders by name. 10.Stide's normal file is missing from this copy, so stide has no normal data.
_UNM_SKIP = re.compile(r"(^|/)(result-[^/]*|syscallMap\.txt|calls\.txt\.sun|README\.md|traces)$|\.(tar|gz|tgz)$")


# Nested archives holding a program's original normal traces -> the flat files the copy made from
# them. xlock: 71 traces, 339,177 calls in the archive, 20 of them in normal-xlock.txt; MIT lpr:
# 2,703 traces, 2,926,304 calls, the flat files only March's 329 (the sizes Warrender et al. 1999
# give); login and ps: the same calls, but concatenating two trace files merged processes that
# share a pid (ps: 24 processes read as 19). MIT's traces.tar.gz is an older cut of the same runs.
ORIGINALS = {
    "UNM/5.xlock/normal/xlock-synth-unm.tar": ("UNM/5.xlock/normal/normal-xlock.txt",),
    "UNM/7.Login_and_ps/normal/login-live-unm.tar": ("UNM/7.Login_and_ps/normal/login-normal.txt",),
    "UNM/7.Login_and_ps/normal/ps-live-unm.tar": ("UNM/7.Login_and_ps/normal/ps-normal.txt",),
    "MIT/live lpr/normal/lpr-live-mit-new.tar.gz": ("MIT/live lpr/normal/mit-lpr-mar.txt",
                                                    "MIT/live lpr/normal/abacus-22Feb1997-182436-1871.log.int",
                                                    "MIT/live lpr/normal/australia-20Feb1997-161940-4521.log.int"),
}
# The synthetic lpr folder's intrusion file is byte-identical to live lpr's (UNM/README.md: live lpr's
# intrusions concatenated into exploit-unm.int): read under live lpr only, when the bytes are equal.
KNOWN_COPIES = {"UNM/3.Synthetic-lpr/intrusion/exploit-unm.int": "UNM/4. Live lpr/Intrusion/exploit-unm.int"}


def _nested(path, name, raw) -> list[tuple[str, str]]:
    """(member name, text) of every trace file in a nested tar (members may be gzipped)."""
    import gzip
    out = []
    try:
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            for m in tar:
                if not m.isfile():
                    continue
                data = tar.extractfile(m).read()
                if m.name.endswith(".gz"):
                    data = gzip.decompress(data)
                out.append((f"{name}!{m.name}", _text(path, f"{name}!{m.name}", data)))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        why = (str(e).splitlines() or [type(e).__name__])[0].rstrip(":")
        raise KpError(f"{path}: nested archive {name} is not readable ({why})") from None
    return out


def _unm_program(parts: list[str]) -> str:
    top = parts[1]
    if parts[0] == "MIT":
        return "mit_lpr"
    name = re.sub(r"^\d+\.\s*", "", top).lower().replace(" ", "_").replace("-", "_")
    name = name.replace("synthetic_", "synth_").replace("live_", "live_")
    if name == "login_and_ps":  # two programs in one folder: the file names say which
        return "login" if parts[-1].startswith("login") else "ps"
    return name


def _unm_lines(path, name, text) -> dict[int, list[str]]:
    """{pid: calls} in order of first appearance; a line that is not `pid number` is an error."""
    toks = text.split()
    n_lines = sum(1 for line in text.splitlines() if line and not line.isspace())
    if len(toks) == 2 * n_lines and "".join(toks).isdigit():  # the usual case, vectorized
        if not toks:
            return {}
        a = np.array(toks, dtype=np.int64).reshape(-1, 2)
        order = np.argsort(a[:, 0], kind="stable")  # each pid's calls together, in their order
        pids, seen_at = np.unique(a[:, 0], return_index=True)
        ends = np.cumsum(np.unique(a[:, 0], return_counts=True)[1])
        names = {int(v): f"nr{int(v)}" for v in np.unique(a[:, 1])}
        calls = [names[v] for v in a[order, 1].tolist()]
        per = {int(p): calls[e - c:e] for p, e, c in zip(pids, ends, np.diff(ends, prepend=0))}
        return {int(pids[i]): per[int(pids[i])] for i in np.argsort(seen_at)}  # pids by first appearance
    per: dict[int, list[str]] = {}
    for i, line in enumerate(text.splitlines()):
        f = line.split()
        if not f:
            continue
        if len(f) != 2 or not f[0].isdigit() or not f[1].isdigit():
            raise KpError(f"{path}: {name} line {i + 1} is not `pid syscall_number`: {line[:40]!r}")
        per.setdefault(int(f[0]), []).append(f"nr{int(f[1])}")
    return per


def load_unm(path=None, originals: bool = True) -> list[Trace]:
    """One Trace per (file, pid) of the UNM and MIT sets: meta program, file; family = program for
    intrusions (label attack), 'normal' otherwise. originals: read ORIGINALS' archives in place of
    the flat files cut from them (False: the flat files, as the copy's README loads them)."""
    path = Path(path or default_path("unm"))
    members = _members(path)
    raw_of = dict(members)
    use = {a for a in ORIGINALS if a in raw_of} if originals else set()
    replaced = {f for a in use for f in ORIGINALS[a]}
    copies = {c for c, o in KNOWN_COPIES.items() if c in raw_of and raw_of.get(o) == raw_of[c]}
    traces = []
    for name, raw in members:
        parts = name.split("/")
        if parts[0] not in ("UNM", "MIT") or len(parts) < 4 or name in replaced or name in copies:
            continue
        if name not in use and _UNM_SKIP.search(name):
            continue
        folders = " ".join(parts[2:-1]).lower()
        label = "attack" if "intrusion" in folders else "normal" if "normal" in folders else None
        if label is None:
            continue
        prog = _unm_program(parts)
        files = _nested(path, name, raw) if name in use else [(name, _text(path, name, raw))]
        for fname, text in files:
            for pid, calls in _unm_lines(path, fname, text).items():
                traces.append(Trace(name=f"{fname}:{pid}", calls=calls, label=label, pid=pid, comm=prog,
                                    family=prog if label == "attack" else "normal",
                                    meta={"program": prog, "file": fname}))
    if not traces:
        raise KpError(f"{path} is not the UNM layout: no UNM/<n>.<program>/.../<file> `pid number` files")
    return traces


def load(name: str, path=None) -> list[Trace]:
    if name not in NAMES:
        raise KpError(f"unknown data set '{name}'; choose from {', '.join(NAMES)}")
    return load_fhids(path) if name == "fhids" else load_unm(path)


def group_of(name: str, t: Trace) -> str:
    """The unit a split is made in: FHIDS service, UNM program."""
    return t.meta["service"] if name == "fhids" else t.meta["program"]


def split(name: str, traces: list[Trace], seed: int = SEED, fractions=FRACTIONS) -> dict[str, list[Trace]]:
    """{'train', 'calibration', 'test'}: per group, the normal traces shuffled by a fixed seed
    (seed and group name), the first 60% train, the next 20% calibration, the rest test; every
    attack trace goes to test. Groups with 2 normal traces keep one for train and one for
    calibration; a group with one keeps it for train."""
    groups: dict[str, list[Trace]] = {}
    for t in traces:
        if t.label == "normal":
            groups.setdefault(group_of(name, t), []).append(t)
    out = {"train": [], "calibration": [], "test": []}
    for g in sorted(groups):
        ts = sorted(groups[g], key=lambda t: t.name)
        rng = np.random.default_rng([seed, zlib.crc32(g.encode())])
        ts = [ts[i] for i in rng.permutation(len(ts))]
        n = len(ts)
        n_tr = max(1, int(round(fractions[0] * n)))
        n_cal = min(n - n_tr, max(1, int(round(fractions[1] * n))))
        out["train"] += ts[:n_tr]
        out["calibration"] += ts[n_tr:n_tr + n_cal]
        out["test"] += ts[n_tr + n_cal:]
    out["test"] += [t for t in traces if t.label == "attack"]
    return out


def protocol(name: str, seed: int = SEED, fractions=FRACTIONS) -> str:
    unit = "service" if name == "fhids" else "program"
    return (f"{name}: split once per {unit} with seed {seed}: {fractions[0]:.0%} of its normal traces train, "
            f"{fractions[1]:.0%} calibrate (every threshold is set there), the rest of its normal traces "
            "plus every attack trace test; nothing is chosen on test")
