"""`kpilot bench swap`: swap decisions on this host, side by side.

1. The per-page access signal (memory/pagesignal.py): precision/recall of each signal against a
   child that touches a known random set of its pages per interval (half read, half written),
   and the scan cost (ms per GB of mappings scanned).
2. Each live workload (memory/workloads.py LIVE_WORKLOADS: hot/cold C program, sqlite, compileall,
   key-value server) under its memory limit with zram swap: the kernel alone, a Senpai-style
   pressure controller, and kernelpilot (learned reclaimer + cold pusher). Repetitions are
   interleaved (the order rotates each round); kernelpilot has one unscored history run first.
   Reported per config: median run time, mean cgroup usage, major faults (the program's own and
   the cgroup's), refaults, PSI, spread; per target, each ratio's 90 % interval over the rounds
   (memory/swapstats.py) and whether the rounds decide it.
"""
from __future__ import annotations

import sys

KV_REPS = 8
PROTOCOL = ("per workload: one unscored kernelpilot history run, then {reps} rounds (kv {kv_reps}) of kernel / senpai / "
            "kernelpilot, order rotated each round; medians over rounds; saved = 1 - mean usage / kernel's "
            "mean usage; slowdown = run time / kernel's - 1; program_cpu_ratio = kernel's program user+sys time / "
            "this config's; PSI = the workload's own cgroup-v2 group; "
            "fixed seeds in the workloads (numpy default_rng 3, 4, 5); each run keeps its controller's decision log "
            "(decision_log: s, usage, limit, new limit MB, pressure, refaults, reason, io, page-cache refaults, cpu) "
            "and the host's load at its start and end (loadavg); targets.intervals: each judged ratio's 90 % interval "
            "over the rounds (paired by round) and a verdict per target, undecided where the threshold is inside it")


def _targets(w: dict) -> dict:
    hc = w.get("hotcold", {}).get("summary", {}).get("kernelpilot")
    out = {"failed_runs": {f"{n}/{c}": s["failed_runs"] for n, v in w.items()
                           for c, s in v["summary"].items() if s.get("failed_runs")}}
    if hc and "program_major_fault_ratio" in hc:
        # the program's own major faults (wait4 rusage, as `kpilot memory live swap` reports), and
        # the cgroup's (memory.stat pgmajfault: with the swap-ins the agent makes ahead of it)
        pr = hc["program_major_fault_ratio"]
        out["hotcold_major_faults_le_0.8x"] = {"value": pr, "met": pr <= 0.8,
                                               "cgroup_value": hc["major_fault_ratio"],
                                               "cgroup_met": hc["major_fault_ratio"] <= 0.8}
        if "program_and_agent_major_fault_ratio" in hc:
            # with the faults the agent's own touches took (its thread's rusage): the program's count
            # leaves out every page the agent swapped in ahead of it, so this is the policy's
            out["hotcold_major_faults_le_0.8x"]["program_and_agent_value"] = hc["program_and_agent_major_fault_ratio"]
            out["hotcold_major_faults_le_0.8x"]["program_and_agent_met"] = hc["program_and_agent_major_fault_ratio"] <= 0.8
        out["hotcold_speed_ge_1.0x"] = {"value": hc["speed_ratio"], "met": hc["speed_ratio"] >= 1.0,
                                        "program_cpu_ratio": hc["program_cpu_ratio"]}
        floor = w["hotcold"].get("major_fault_floor")
        k = w["hotcold"]["summary"].get("kernel", {}).get("program_major_faults")
        if floor is not None and k:
            # what no policy that cannot foresee the program's random cold reads gets under: where
            # it is above 0.8x the kernel's, the target cannot be met at this limit. Each scored
            # run's program + agent faults against it: one under it would refute the floor
            runs = [r for r in w["hotcold"].get("runs", []) if r.get("rep") != "history" and r["exit_code"] == 0
                    and "agent_major_faults" in r]
            out["hotcold_major_faults_le_0.8x"]["floor"] = {
                "faults": floor, "ratio": round(floor / k, 4),
                "runs_under_it": {c: sum(r["program_major_faults"] + r["agent_major_faults"] < floor
                                         for r in runs if r["config"] == c) for c in sorted({r["config"] for r in runs})},
                "runs_under_it_program_only": sum(r["program_major_faults"] < floor for r in runs)}
    rows = {n: v["summary"] for n, v in w.items()
            if all("saved_vs_kernel" in v["summary"].get(c, {}) for c in ("senpai", "kernelpilot"))}
    if rows:
        within = {n: s for n, s in rows.items() if s["kernelpilot"]["slowdown"] <= 0.05}
        out["workloads_within_5pct_slowdown"] = sorted(within)
        saved = {n: s["kernelpilot"]["saved_vs_kernel"] for n, s in within.items()}
        out["saved_ge_20pct_at_le_5pct_slowdown"] = {"value": saved, "met": bool(saved) and
                                                     all(v >= 0.2 for v in saved.values()) and len(within) == len(rows)}
        if all("slowdown_less_cpu_wait" in s["kernelpilot"] for s in rows.values()):
            # the same judged on run time less the wait for a CPU (the shared host's, not the config's)
            w2 = {n: s["kernelpilot"]["saved_vs_kernel"] for n, s in rows.items()
                  if s["kernelpilot"]["slowdown_less_cpu_wait"] <= 0.05}
            out["saved_ge_20pct_at_le_5pct_slowdown"]["less_cpu_wait"] = {
                "within": sorted(w2), "met": len(w2) == len(rows) and all(v >= 0.2 for v in w2.values())}
        vs = {}
        for n, s in rows.items():
            sp = s["senpai"]["saved_vs_kernel"]
            vs[n] = {"kernelpilot": s["kernelpilot"]["saved_vs_kernel"], "senpai": sp,
                     "ratio": round(s["kernelpilot"]["saved_vs_kernel"] / sp, 3) if sp > 0 else None,
                     "slowdown_kernelpilot": s["kernelpilot"]["slowdown"], "slowdown_senpai": s["senpai"]["slowdown"]}
            if all("slowdown_less_cpu_wait" in s[c] for c in ("senpai", "kernelpilot")):
                # beside the target's wall-time slowdown: run time less the wait for a CPU (the host's)
                vs[n]["slowdown_less_cpu_wait_kernelpilot"] = s["kernelpilot"]["slowdown_less_cpu_wait"]
                vs[n]["slowdown_less_cpu_wait_senpai"] = s["senpai"]["slowdown_less_cpu_wait"]
        out["vs_senpai_savings_ge_1.2x"] = {"value": vs, "met": all(
            v["ratio"] is not None and v["ratio"] >= 1.2 and v["slowdown_kernelpilot"] <= v["slowdown_senpai"] + 0.05
            for v in vs.values())}
        if all("slowdown_less_cpu_wait_kernelpilot" in v for v in vs.values()):
            out["vs_senpai_savings_ge_1.2x"]["met_less_cpu_wait"] = all(
                v["ratio"] is not None and v["ratio"] >= 1.2 and
                v["slowdown_less_cpu_wait_kernelpilot"] <= v["slowdown_less_cpu_wait_senpai"] + 0.05 for v in vs.values())
    out["intervals"] = _intervals(w)
    return out


def _intervals(w: dict) -> dict:
    """Each judged ratio's 90 % interval over the bench's rounds (memory/swapstats.py), and each
    target's verdict on it: met, missed, or undecided (too few rounds for this host's spread)."""
    from kernelpilot.memory import swapstats as S
    out: dict = {"level": S.LEVEL, "method": "ratio of means over rounds, paired by round, Fieller's interval; "
                 "verdict met/missed only where the threshold is outside it; rounds_needed: rounds for it to "
                 "be, at the estimate and the spread seen"}
    rounds = {n: S.paired_rounds(v.get("runs", []), ("kernel", "senpai", "kernelpilot")) for n, v in w.items()}
    hc = rounds.get("hotcold")
    if hc:
        f = S.judge(S.fault_ratio(hc), 0.8, at_least=False)
        sp = S.judge(S.speed_ratio(hc), 1.0, at_least=True)
        out["hotcold"] = {"program_and_agent_major_fault_ratio": f, "speed_ratio": sp,
                          "verdict": S.both(f["verdict"], sp["verdict"])}
    rows = {n: r for n, r in rounds.items() if n != "hotcold" and r}
    per, vs = {}, {}
    for n, r in rows.items():
        sv, sl = S.judge(S.saved(r, "kernelpilot"), 0.2, True), S.judge(S.slowdown(r, "kernelpilot"), 0.05, False)
        per[n] = {"saved": sv, "slowdown": sl, "verdict": S.both(sv["verdict"], sl["verdict"])}
        if all("psi_cpu_some_ms" in x[c] for x in r for c in ("kernel", "kernelpilot")):
            sc = S.judge(S.slowdown(r, "kernelpilot", "seconds_less_cpu_wait"), 0.05, False)
            per[n]["slowdown_less_cpu_wait"] = sc
            per[n]["verdict_less_cpu_wait"] = S.both(sv["verdict"], sc["verdict"])
        ra = S.judge(S.savings_ratio(r), 1.2, True)
        gap = S.judge(S.slowdown_gap(r), 0.05, False)
        vs[n] = {"ratio": ra, "slowdown_gap": gap, "verdict": S.both(ra["verdict"], gap["verdict"]),
                 "senpai_saved": S.judge(S.saved(r, "senpai"), 0.0, True)}
    if per:
        out["saved_ge_20pct_at_le_5pct_slowdown"] = dict(per, verdict=S.both(*(v["verdict"] for v in per.values())))
        out["vs_senpai_savings_ge_1.2x"] = dict(vs, verdict=S.both(*(v["verdict"] for v in vs.values())))
    undecided = [k for k in ("hotcold", "saved_ge_20pct_at_le_5pct_slowdown", "vs_senpai_savings_ge_1.2x")
                 if out.get(k, {}).get("verdict") == "undecided"]
    out["undecided"] = undecided
    if undecided:
        out["note"] = ("too few rounds to decide " + ", ".join(undecided) +
                       " on this host: each threshold is inside its interval (rounds_needed per ratio)")
    return out


def run(quick: bool = False) -> dict:
    from kernelpilot.memory import pagesignal, swaprun
    from kernelpilot.memory.workloads import LIVE_WORKLOADS
    sig = pagesignal.measure_accuracy(n_pages=8192 if quick else 65536, intervals=6 if quick else 12)
    reps = 2 if quick else 3
    # kv's rounds of one config spread widely (kernel alone 120-173 MB): more of them
    reps_by = {} if quick else {"kv": KV_REPS}

    def progress(name, config, rep, r):
        print(f"swap bench: {name} {config} rep {rep}: {r['seconds']} s, {r['mean_usage_mb']} MB, "
              f"{r['major_faults']} major faults", file=sys.stderr, flush=True)
    res = swaprun.experiment(list(LIVE_WORKLOADS), reps, quick, progress=progress, reps_by=reps_by, log=True)
    for w in res["workloads"].values():
        w["runs"] = [{k: v for k, v in r.items() if k != "errors" or v} for r in w["runs"]]
    return {"protocol": PROTOCOL.format(reps=reps, kv_reps=reps_by.get("kv", reps)), "quick": quick, "host_note":
            "shared host (other engineers' jobs run beside): spreads are min..max over rounds",
            "page_signal": sig, **res, "targets": _targets(res["workloads"])}
