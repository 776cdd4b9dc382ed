"""`kpilot bench aipath`: the PyTorch demo run untraced and traced side by side (what watching the
AI path costs), the traced run's layers (kpilot report draws them as a flow), and what a uprobe
costs per call: a small library's function called N times, unprobed, with an entry probe, and with
an entry + return probe pair (time inside), runs alternated."""
from __future__ import annotations

import os
import subprocess
import time


def _uprobe_binaries():
    from kernelpilot.bench.common import build_c
    lib = build_c("kp_uprobe_lib", ("-shared", "-fPIC"))
    so = lib.with_name(f"lib{lib.name}.so")  # the linker wants lib*.so
    if not so.exists():
        os.link(lib, so)
    main = build_c("kp_uprobe_main", (f"-L{so.parent}", f"-l{lib.name}", f"-Wl,-rpath,{so.parent}"))
    return so, main


def _probed_run(main, n: int, targets, returns: bool | None):
    """ns per call measured inside the program, and the calls the probe counted (None: unprobed)."""
    from kernelpilot.aipath.probe import AipathProbe
    from kernelpilot.probes.libbpf import enable_stats
    from kernelpilot.traces.record import spawn_held
    if returns is None:
        out = subprocess.run([str(main), str(n)], capture_output=True, text=True, check=True).stdout
        return float(out), None, None
    probe = AipathProbe(targets, ioctls=False, returns=returns)
    try:
        with enable_stats():
            proc, w = spawn_held([str(main), str(n)], stdout=subprocess.PIPE, text=True)
            probe.watch(proc.pid)
            os.write(w, b"go\n")
            os.close(w)
            out, _ = proc.communicate(timeout=600)
            bpf_ns = probe.obj.program("ap_uentry").run_stats()["ns_per_run"]
        calls = sum(v[0] for v in probe.uprobe_stats().values())
    finally:
        probe.close()
    return float(out), calls, bpf_ns


def uprobe_cost(quick: bool = False) -> dict:
    from kernelpilot.aipath import uprobes as U
    from kernelpilot.bench.common import median, ratio
    n, reps = (5000, 1) if quick else (20000, 3)
    so, main = _uprobe_binaries()
    targets, notes = U.resolve(U.parse_specs(f"{so}:kp_uprobe_target/2"))
    if notes or not targets:
        return {"skipped": "; ".join(notes) or "no target"}
    modes = {"unprobed": None, "entry probe": False, "entry + return probes": True}
    ns = {m: [] for m in modes}
    counted, bpf = {}, {}
    for _ in range(reps):  # alternate the modes, so each sees the same machine
        for m, ret in modes.items():
            per_call, calls, bpf_ns = _probed_run(main, n, targets, ret)
            ns[m].append(per_call)
            if calls is not None:
                counted[m] = calls
                bpf[m] = bpf_ns
    base = median(ns["unprobed"])
    out = {"calls_per_run": n, "repetitions": reps, "function": targets[0].label,
           "ns_per_call": {m: round(median(v), 1) for m, v in ns.items()},
           "probe_cost_ns_per_call": {m: round(median(v) - base, 1) for m, v in ns.items() if m != "unprobed"},
           "slowdown_ratio": {m: ratio(median(v), base) for m, v in ns.items() if m != "unprobed"},
           "calls_counted": counted, "counts_exact": all(c == n for c in counted.values()),
           "bpf_program_ns_per_call": {m: round(v, 1) if v else None for m, v in bpf.items()},
           "protocol": f"{n} calls of {targets[0].symbol} in one process per run, timed inside the program "
                       f"(CLOCK_MONOTONIC around the loop); the three modes alternate, {reps} run(s) each, medians"}
    return out


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
            "uprobes": last.get("uprobes"), "host": last["host"], "gpu": last["gpu"], "command": last["command"],
            "uprobe_cost": uprobe_cost(quick)}
