"""`kpilot bench aipath`: the PyTorch demo run untraced and traced side by side (what watching the
AI path costs), and the traced run's layers (kpilot report draws them as a flow)."""
from __future__ import annotations

import subprocess
import time


def run(quick: bool = False) -> dict:
    from kernelpilot.aipath.run import demo_command, trace_ai
    from kernelpilot.bench.common import median, ratio
    steps, reps = (5, 1) if quick else (20, 3)
    argv = demo_command(steps)
    plain, traced, last = [], [], None
    for _ in range(reps):  # alternate, so both see the same warm page cache
        t = time.monotonic()
        subprocess.run(argv, check=True, capture_output=True)
        plain.append(time.monotonic() - t)
        last = trace_ai(argv, quiet=True)
        traced.append(last["host"]["wall_s"])  # the run itself, not the analysis after it
    return {"bench": "aipath", "steps": steps, "repetitions": reps,
            "wall_s": {"untraced": round(median(plain), 3), "traced": round(median(traced), 3)},
            "slowdown_ratio": ratio(median(traced), median(plain)),
            "events": last["events"], "dropped": last["dropped"], "source": last["source"],
            "seconds": last["seconds"], "layers": last["layers"], "phases": last["phases"],
            "host": last["host"], "gpu": last["gpu"], "command": last["command"]}
