"""Find and load traces for train/eval from whatever path a user gives."""
from __future__ import annotations

from pathlib import Path

from kernelpilot.errors import KpError
from kernelpilot.security.features import Trace
from kernelpilot.traces.importers import adfa


def _kind(path: Path) -> str:
    if path.is_dir():
        if (path / adfa.TRAIN).is_dir():
            return "adfa"
        if (path / "scenarios.json").exists():
            return "suite"
        return "folder"
    if path.suffix == ".parquet":
        return "kptrace"
    head = path.open("rb").read(4096) if path.stat().st_size else b""
    if b"(" in head and b"\0" not in head:
        return "strace"
    return "numbers"


def load_normal(path, abi: str = "i386") -> list[Trace]:
    """Normal traces for training: ADFA root (training folder), scenario suite (benign runs),
    Parquet trace, strace log, a folder of number files or one number file."""
    path = Path(path)
    if not path.exists():
        raise KpError(f"no such file or folder: {path}")
    kind = _kind(path)
    if kind == "suite":
        from kernelpilot.security.scenarios.run import load_suite
        return [t for r in load_suite(path) if r["kind"] == "benign" for t in r["traces"]]
    if kind == "kptrace":
        from kernelpilot.security.scenarios.run import events_to_traces
        from kernelpilot.traces.store import read_trace
        traces = events_to_traces(read_trace(path)[0], run=path.stem)
        if not traces:
            raise KpError(f"{path} holds no syscall events (record with --events syscalls)")
        return traces
    if kind == "strace":
        from kernelpilot.traces.importers.strace import load_strace
        return load_strace(path)
    return adfa.load_normal(path, abi)


def load_eval(path, abi: str = "i386") -> tuple[list[Trace], list[Trace]]:
    """(normal, attack) traces for evaluation from an ADFA root or a recorded scenario suite."""
    path = Path(path)
    if not path.exists():
        raise KpError(f"no such file or folder: {path}")
    kind = _kind(path)
    if kind == "adfa":
        d = adfa.load_adfa(path, abi)
        normal = d["valid"] or d["train"]
        if not d["attack"]:
            raise KpError(f"{path} has no {adfa.ATTACK}/ traces to evaluate against")
        return normal, d["attack"]
    if kind == "suite":
        from kernelpilot.security.scenarios.run import load_suite
        runs = load_suite(path)
        normal = [t for r in runs if r["kind"] == "benign" for t in r["traces"]]
        attack = [t for r in runs if r["kind"] == "attack" for t in r["traces"]]
        if not normal or not attack:
            raise KpError(f"{path} needs both benign and attack runs to evaluate")
        return normal, attack
    raise KpError(f"{path} is neither an ADFA-LD layout nor a recorded scenario suite")
