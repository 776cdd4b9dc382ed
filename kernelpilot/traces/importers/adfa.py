"""ADFA-LD layout: one trace a file of space-separated i386 syscall numbers.

    ROOT/Training_Data_Master/*.txt             normal (training)
    ROOT/Validation_Data_Master/*.txt           normal (validation)
    ROOT/Attack_Data_Master/<Family>_<n>/*.txt  attacks, family = folder name less _<n>
"""
from __future__ import annotations

import re
from pathlib import Path

from kernelpilot.errors import KpError
from kernelpilot.traces.importers import check_size
from kernelpilot.security.features import Trace
from kernelpilot.security.syscalls import UNKNOWN, number_to_name

TRAIN, VALID, ATTACK = "Training_Data_Master", "Validation_Data_Master", "Attack_Data_Master"
MAX_FILE_BYTES = 64 << 20
_FAMILY = re.compile(r"^(.*?)_\d+$")


def read_trace_file(path: Path, abi: str = "i386", unknown: str = "error") -> list[str]:
    """Syscall names from one file of whitespace-separated numbers."""
    path = Path(path)
    check_size(path, MAX_FILE_BYTES, "trace file")
    raw = path.read_bytes()
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise KpError(f"trace file {path} is binary, not space-separated syscall numbers") from None
    tokens = text.split()
    if not tokens:
        raise KpError(f"trace file {path} is empty")
    table = number_to_name(abi)
    names = []
    for i, tok in enumerate(tokens):
        if not tok.isdigit():
            raise KpError(f"trace file {path}: token {i + 1} {tok[:20]!r} is not a syscall number")
        name = table.get(int(tok))
        if name is None:
            if unknown == "error":
                raise KpError(f"trace file {path}: unknown {abi} syscall number {tok} (token {i + 1})")
            name = UNKNOWN
        names.append(name)
    return names


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def load_folder(folder: Path, label: str, family: str, split: str, abi: str = "i386",
                unknown: str = "error") -> list[Trace]:
    return [Trace(name=f"{split}/{p.name}" if label == "normal" else f"{family}/{p.parent.name}/{p.name}",
                  calls=read_trace_file(p, abi, unknown), label=label, family=family,
                  meta={"split": split})
            for p in _files(folder)]


def load_adfa(root, abi: str = "i386", unknown: str = "error") -> dict[str, list[Trace]]:
    """{'train': [...], 'valid': [...], 'attack': [...]} from an ADFA-LD layout root."""
    root = Path(root)
    if not root.is_dir():
        raise KpError(f"ADFA-LD folder not found: {root}")
    if not (root / TRAIN).is_dir():
        raise KpError(f"{root} is not an ADFA-LD layout: no {TRAIN}/ folder")
    out = {"train": load_folder(root / TRAIN, "normal", "normal", "train", abi, unknown),
           "valid": [], "attack": []}
    if (root / VALID).is_dir():
        out["valid"] = load_folder(root / VALID, "normal", "normal", "valid", abi, unknown)
    if (root / ATTACK).is_dir():
        for d in sorted(p for p in (root / ATTACK).iterdir() if p.is_dir()):
            m = _FAMILY.match(d.name)
            family = m.group(1) if m else d.name
            out["attack"] += load_folder(d, "attack", family, "attack", abi, unknown)
    if not out["train"]:
        raise KpError(f"{root / TRAIN} holds no trace files")
    return out


def load_normal(path, abi: str = "i386") -> list[Trace]:
    """Normal traces from an ADFA root (its training folder), a folder of trace files, or one file."""
    path = Path(path)
    if path.is_dir() and (path / TRAIN).is_dir():
        return load_adfa(path, abi)["train"]
    if path.is_dir():
        files = _files(path)
        if not files:
            raise KpError(f"{path} holds no trace files")
        return load_folder(path, "normal", "normal", path.name, abi)
    return [Trace(name=path.name, calls=read_trace_file(path, abi))]


def write_trace_file(path: Path, numbers) -> None:
    Path(path).write_text(" ".join(str(int(n)) for n in numbers) + " \n")
