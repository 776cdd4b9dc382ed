"""Helpers shared by benchmarks: compiling small C loads, medians, ratios."""
from __future__ import annotations

import hashlib
import statistics
import subprocess
from pathlib import Path

from kernelpilot.bpf.build import build_dir
from kernelpilot.errors import KpError

C_DIR = Path(__file__).resolve().parent / "c"


def build_c(name: str, extra: tuple = ()) -> Path:
    """gcc -O2 kernelpilot/bench/c/<name>.c, cached by content."""
    src = C_DIR / f"{name}.c"
    h = hashlib.sha256(src.read_bytes() + " ".join(extra).encode()).hexdigest()[:12]
    out = build_dir() / f"{name}-{h}"
    if not out.exists():
        res = subprocess.run(["gcc", "-O2", "-o", str(out), str(src), *extra], capture_output=True, text=True)
        if res.returncode:
            raise KpError(f"gcc could not build {src.name}: {res.stderr.strip()[:200]}")
    return out


def median(xs) -> float:
    return float(statistics.median(xs))


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None
