"""`kpilot bench sched`: scheduling models and policies against their baselines, side by side.

1. Recorded real workloads (kernelpilot/sched/data/traces, made by `python -m
   kernelpilot.sched.workloads`; the full run records them afresh too), each held out in turn:
   burst prediction vs the exponential and PELT-like averages; simulated turnaround of SRPT with
   predicted bursts vs SRPT-oracle and the CFS-like baseline; the classifier vs lavd/bpfland-like
   heuristics on labels from what each program is. Also a synthetic mix.
2. Load forecasting on the committed real load series (kernelpilot/sched/data/load_series.csv:
   utilisation, run-queue length and PSI), 100 ms to 1 s ahead, against the tuned EWMA and the
   last value; and on the host load sampled during the live part.
3. Live: a 1 kHz wakeup-latency probe beside stress-ng CPU hogs and a make -j build, agent off
   and on, interleaved repetitions in one run: p99 wakeup latency ratio, stress-ng bogo-ops/s ratio
   and build time ratio.
4. Cross-session (kernelpilot.sched.xbench): cyclictest and the frame workload in one session, a
   make -j build and stress-ng hogs in others, hackbench / perf bench sched pipe for throughput;
   default EEVDF, the ananicy-cpp rules daemon, kernelpilot and kernelpilot with the rules as a
   prior, interleaved; the host load sampled meanwhile is forecast live 100 ms .. 1 s ahead.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.sched import evaluate as E
from kernelpilot.sched import features as F
from kernelpilot.sched import models as M
from kernelpilot.sched.sim import synthetic_trace


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def recorded(quick: bool) -> dict:
    """Every recorded workload held out in turn (trained on the synthetic mixes and the others)."""
    from kernelpilot.sched import workloads as W
    traces, fresh = W.fixtures(), "quick run: committed fixtures only"
    if not quick:
        try:
            traces += [(f"{n}@fresh", W.record(n, 4)[0]) for n in W.scripts(4, "/tmp")]
            fresh = "recorded afresh and held out too"
        except KpError as e:  # no tracer here: the fixtures are still scored
            fresh = f"not recorded: {e}"
    items = E.recorded_items(traces)
    per = E.held_out(items, E.synthetic_items((0,)))
    sim = [v["simulation"]["ratios"] for v in per.values()]
    oracle = [v["simulation"]["srpt"]["turnaround_mean_us"] / v["simulation"]["cfs"]["turnaround_mean_us"]
              for v in per.values()]
    clf = {k: [v["classifier"][k]["accuracy"] for v in per.values() if "classifier" in v]
           for k in ("model", "lavd_like", "bpfland_like")}
    return {"traces": per, "fresh_recordings": fresh, "summary": {
        "traces": len(per),
        "srpt_pred_vs_srpt_oracle_mean": _mean(r["srpt_pred_vs_srpt_oracle"] for r in sim),
        "srpt_pred_vs_srpt_oracle_max": max(r["srpt_pred_vs_srpt_oracle"] for r in sim),
        "srpt_pred_vs_cfs_mean": _mean(r["srpt_pred_vs_cfs"] for r in sim),
        "srpt_oracle_vs_cfs_mean": _mean(oracle),
        "per_trace": {n: {"srpt_oracle_vs_cfs": o, "srpt_pred_vs_cfs": r["srpt_pred_vs_cfs"],
                          "srpt_pred_vs_srpt_oracle": r["srpt_pred_vs_srpt_oracle"]}
                      for n, o, r in zip(per, oracle, sim)},
        "traces_within_10pct_of_oracle": sum(r["srpt_pred_vs_srpt_oracle"] <= 1.10 for r in sim),
        "traces_25pct_better_than_cfs": sum(r["srpt_pred_vs_cfs"] <= 0.75 for r in sim),
        "burst_mae_ratio_vs_exp_avg_mean": _mean(v["bursts"]["mae_ratio_vs_exp_avg"] for v in per.values()),
        "burst_log_error_ratio_vs_exp_avg_mean": _mean(
            v["bursts"]["model"]["mean_abs_log_ratio"] / v["bursts"]["exp_avg_alpha_0.5"]["mean_abs_log_ratio"]
            for v in per.values()),
        "classifier_accuracy_per_trace": {k: dict(zip([n for n, v in per.items() if "classifier" in v], a))
                                          for k, a in clf.items()},
        "classifier_accuracy_mean": {k: _mean(a) for k, a in clf.items()}}}


def synthetic(quick: bool) -> dict:
    bp_syn, clf = E.synthetic_training(seeds=(0,) if quick else (0, 1, 2))
    ev, wl = synthetic_trace(99, horizon_s=3)
    f = F.extract(ev)
    lat = set(wl.pids[wl.label == 1].tolist())
    return {"bursts": E.compare_bursts(bp_syn, f),
            "classifier": E.compare_classifiers(clf, *E.labelled_windows(
                f, ev, dict(zip(wl.pids.tolist(), wl.label.tolist())))),
            "simulation": E.compare_policies(f, bp_syn, latency_pids=lat)}


LOAD_SIGNALS = {"group": ("group_runq", "group_psi", "group_some_avg10", "group_full_avg10"),
                "host": ("host_runq", "host_psi", "host_some_avg10")}


def load_forecast() -> dict:
    """The committed real load series: the phase workload's cgroup and the whole host, 100 ms,
    500 ms and 1 s ahead; fit and model choice on the first 60 % (validation: the last 30 % of
    that), scored on the rest against the tuned EWMA and the last value."""
    from kernelpilot.sched.loadrec import load_fixture
    d = load_fixture()
    out = {}
    for who, sig in LOAD_SIGNALS.items():
        for h in (1, 5, 10):
            out[f"{who}_{h * 100}ms"] = M.forecast_errors(d[f"{who}_util"], lags=8, horizon=h,
                                                          exog={k: d[k] for k in sig})
    return out


# --- live ----------------------------------------------------------------------------------

PROBE = """
import os, sys, time
import numpy as np
seconds, warm = float(sys.argv[1]), float(sys.argv[2])
end = time.monotonic() + warm
while time.monotonic() < end:
    time.sleep(0.001)          # warm-up: sleep-heavy like the measured loop (the agent can classify it)
print(os.getpriority(os.PRIO_PROCESS, 0), flush=True)
out, t = [], time.monotonic_ns()
stop = t + int(seconds * 1e9)
while t < stop:
    t += 1_000_000
    time.sleep(max(0.0, (t - time.monotonic_ns()) / 1e9))
    out.append((time.monotonic_ns() - t) / 1e3)
np.save(sys.stdout.buffer, np.array(out))
"""


def _builds(build_dir: str, stop: threading.Event, times: list):
    """make -j2 of the generated C project over and over; each full build's wall time."""
    while not stop.is_set():
        subprocess.run(["make", "-s", "-C", build_dir, "clean"], capture_output=True)
        t0 = time.monotonic()
        p = subprocess.Popen(["make", "-s", "-j2", "-C", build_dir], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        while p.poll() is None:
            if stop.wait(0.05):
                p.terminate()
                p.wait()
                return
        if p.returncode == 0:
            times.append(time.monotonic() - t0)


def _bogo(text: str) -> float | None:
    m = re.search(r"metrc: \[\d+\] cpu\s+(\d+)\s+([\d.]+)", text)
    return float(m.group(1)) / float(m.group(2)) if m else None


def _phase(seconds: float, warm: float, build_dir: str, agent_cmd: list[str] | None) -> dict:
    ag = None
    if agent_cmd:
        ag = subprocess.Popen(agent_cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ag.stdout.readline()  # "enforcing; journal ..." once its model is loaded
    stop, times = threading.Event(), []
    hogs = subprocess.Popen(["stress-ng", "--cpu", "2", "-t", f"{seconds + warm:g}", "--metrics-brief"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    bt = threading.Thread(target=_builds, args=(build_dir, stop, times), daemon=True)
    bt.start()
    try:
        p = subprocess.Popen([os.sys.executable, "-c", PROBE, str(seconds), str(warm)], stdout=subprocess.PIPE)
        nice = int(p.stdout.readline())
        lat = np.load(io.BytesIO(p.stdout.read()))
        p.wait()
    finally:
        stop.set()
        bt.join()
        out = hogs.communicate()[0]
        if ag:
            ag.terminate()
            try:
                ag.wait(timeout=15)
            except subprocess.TimeoutExpired:
                ag.kill()
    return {"lat": lat, "probe_nice": nice, "bogo_ops_per_s": _bogo(out), "build_s": times}


def live(quick: bool) -> dict:
    if os.geteuid() != 0:
        return {"skipped": "needs root"}
    if not shutil.which("stress-ng") or not shutil.which("make") or not shutil.which("gcc"):
        return {"skipped": "needs stress-ng, make and gcc"}
    from kernelpilot.sched import workloads as W
    seconds, reps, warm = (3, 2, 1.5) if quick else (10, 4, 1.5)
    d = tempfile.mkdtemp(prefix="kp-sched-live-")
    model = Path(d) / "classifier.json"
    E.default_classifier().model.save(model)
    W.c_project(d, n=12)
    kp = str(Path(os.sys.executable).with_name("kpilot"))
    agent = [kp, "sched", "run", "--enforce", "--pid", str(os.getpid()), "--tree", "--interval", "0.2",
             "--model", str(model)]
    modes = {"off": None, "on": agent}
    if not quick:
        modes["on_kernel"] = agent + ["--kernel"]
    runs: dict[str, list] = {m: [] for m in modes}
    try:
        with host_load_samples() as samples:
            for r in range(reps):
                order = list(modes) if r % 2 == 0 else list(modes)[::-1]  # interleaved, order alternates
                for m in order:
                    runs[m].append(_phase(seconds, warm, d, modes[m]))
    finally:
        shutil.rmtree(d, ignore_errors=True)
    res = {"probe": "1 kHz sleep-wakeup probe; agent scope: this benchmark's process tree",
           "batch": "stress-ng --cpu 2 (bogo-ops/s from --metrics-brief) and make -j2 of a 13-file C project",
           "host_note": "shared host: other processes compete with the batch work",
           "seconds_per_phase": seconds, "repetitions": reps}
    for m, rs in runs.items():
        lat = np.concatenate([x["lat"] for x in rs])
        builds = [t for x in rs for t in x["build_s"]]
        res[m] = {"p99_us": float(np.percentile(lat, 99)), "mean_us": float(lat.mean()),
                  "p99_per_rep_us": [float(np.percentile(x["lat"], 99)) for x in rs],
                  "samples": int(len(lat)), "probe_nice": [x["probe_nice"] for x in rs],
                  "bogo_ops_per_s": _mean(x["bogo_ops_per_s"] for x in rs),
                  "builds": len(builds), "build_s_mean": _mean(builds)}
    off = res["off"]
    for m in [k for k in modes if k != "off"]:
        on = res[m]
        sfx = "" if m == "on" else "_" + m.split("_", 1)[1]
        res["p99_latency_improvement_x" + sfx] = off["p99_us"] / max(on["p99_us"], 1e-9)
        res["bogo_ops_ratio" + sfx] = (on["bogo_ops_per_s"] or 0) / max(off["bogo_ops_per_s"] or 1e-9, 1e-9)
        res["build_throughput_ratio" + sfx] = (off["build_s_mean"] or 0) / max(on["build_s_mean"] or 1e-9, 1e-9)
    util = np.array([u for u, _ in samples])
    psi = np.array([p for _, p in samples])
    if len(util) > 60:
        res.update(live_forecast(util, psi))
        pm = M.PowerModel()
        res["power_estimate_w_mean"] = float(pm.watts(util, os.cpu_count()).mean())
        res["power_model"] = "linear idle 2 W .. max 9 W per CPU (no RAPL on this host)"
    return res


@contextlib.contextmanager
def host_load_samples(period_s: float = 0.1):
    """(CPU utilisation, PSI) of the host every period_s, in a list filled while the block runs."""
    samples, stop = [], threading.Event()

    def sampler():
        s = F.LoadSampler()
        while not stop.wait(period_s):
            samples.append(s.sample())
    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    try:
        yield samples
    finally:
        stop.set()
        th.join()


def live_forecast(util, psi) -> dict:
    """The host load sampled live (100 ms) forecast 100 ms, 500 ms and 1 s ahead by forecasters
    fitted and chosen on the committed series only (nothing is chosen on the live series), against
    the EWMA with the smoothing tuned there; the online mix is scored too, chosen or not."""
    from kernelpilot.sched.loadrec import load_fixture
    fx = load_fixture()
    out = {}
    for h in (1, 5, 10):
        ex_fx, ex = {"psi": fx["host_psi"]}, {"psi": psi}
        fc = M.LoadForecaster.fit(fx["host_util"], 8, h, exog=ex_fx)
        r = M.forecast_errors(util, lags=8, horizon=h, exog=ex, model=fc)
        mix = M.LoadForecaster._fit_kind("mix", np.asarray(fx["host_util"], float), ex_fx, 8, h, fc.alpha, 1e-2)
        r["mix_mae"] = float(np.abs(mix.predict(util, ex) - util[8 - 1 + h:]).mean())
        r["mix_mae_ratio_vs_ewma"] = r["mix_mae"] / max(r["ewma_mae"], 1e-12)
        r["trained_on"] = "committed load series (host); tested on this run's live samples"
        r["series_std"] = float(np.std(util))
        if r["ewma_mae"] < 1e-4:  # a saturated host: the series is flat, a ratio would be noise
            r["mae_ratio_vs_ewma"] = r["mix_mae_ratio_vs_ewma"] = None
            r["note"] = "host load flat (saturated) during the run: nothing to forecast"
        out[f"load_forecast_{h * 100}ms_ahead"] = r
    return out


PARTS = ("recorded", "synthetic", "load_forecast", "live", "cross_session")
OFFLINE = ("recorded", "synthetic", "load_forecast")  # committed traces and series: nothing host-wide


def run(quick: bool = False, only: list[str] | None = None) -> dict:
    """Every part (PARTS) unless `only` names some; the summary has the figures of the parts run."""
    from kernelpilot.sched import xbench
    parts = list(PARTS) if only is None else list(only)
    t0 = time.monotonic()
    out = {}
    if "recorded" in parts:
        out["recorded"] = recorded(quick)
    if "cross_session" in parts:
        with host_load_samples() as samples:
            out["cross_session"] = xbench.run(quick)
        if len(samples) > 60:
            out["cross_session"]["live_load_forecast"] = live_forecast(np.array([u for u, _ in samples]),
                                                                       np.array([p for _, p in samples]))
    if "synthetic" in parts:
        out["synthetic"] = synthetic(quick)
    if "load_forecast" in parts:
        out["load_forecast"] = load_forecast()
    if "live" in parts:
        out["live"] = live(quick)
    out = {k: out[k] for k in PARTS if k in out}
    if only is not None:
        out["parts"] = parts
    out["summary"] = summary(out, time.monotonic() - t0)
    return out


def summary(out: dict, seconds: float) -> dict:
    s = {}
    if "recorded" in out:
        rs = out["recorded"]["summary"]
        s.update({
            "traces": rs["traces"],
            "sim_srpt_pred_vs_srpt_oracle_mean": rs["srpt_pred_vs_srpt_oracle_mean"],
            "sim_srpt_pred_vs_srpt_oracle_worst": rs["srpt_pred_vs_srpt_oracle_max"],
            "sim_srpt_pred_vs_cfs_mean": rs["srpt_pred_vs_cfs_mean"],
            "sim_srpt_oracle_vs_cfs_mean": rs["srpt_oracle_vs_cfs_mean"],
            "sim_per_trace": rs["per_trace"],
            "burst_mae_ratio_vs_exp_avg_mean": rs["burst_mae_ratio_vs_exp_avg_mean"],
            "burst_log_error_ratio_vs_exp_avg_mean": rs["burst_log_error_ratio_vs_exp_avg_mean"],
            "classifier_accuracy_mean": rs["classifier_accuracy_mean"]})
    if "load_forecast" in out:
        lf = out["load_forecast"]
        s.update({
            "load_forecast_mae_ratio_vs_ewma": {k: v["mae_ratio_vs_ewma"] for k, v in lf.items()},
            "load_forecast_mae_ratio_vs_last_value": {k: v["mae_ratio_vs_last_value"] for k, v in lf.items()},
            "load_forecast_chosen": {k: v["chosen"] for k, v in lf.items()}})
    lv, xs = out.get("live"), out.get("cross_session")
    if lv is not None or xs is not None:
        lv, xs = lv or {}, xs or {}
        s["live_load_forecast_mae_ratio_vs_ewma"] = {
            f"{who}_{k.split('_')[2]}": {"chosen": v["chosen"], "model": v["mae_ratio_vs_ewma"],
                                         "mix": v["mix_mae_ratio_vs_ewma"]}
            for who, part in (("same_session_run", lv), ("cross_session_run", xs.get("live_load_forecast", {})))
            for k, v in part.items() if k.startswith("load_forecast_") and k.endswith("_ahead")} | {
            f"benchmark_group_{k}": {"chosen": v["chosen"], "model": v["mae_ratio_vs_ewma"],
                                     "mix": v["mix_mae_ratio_vs_ewma"]}
            for k, v in xs.get("benchmark_load_forecast", {}).items() if isinstance(v, dict)}
        s.update({k: v for k, v in xs.get("summary", {}).items()})
    if lv is not None:
        s.update({"live_p99_latency_improvement_x": lv.get("p99_latency_improvement_x"),
                  "live_bogo_ops_ratio": lv.get("bogo_ops_ratio"),
                  "live_build_throughput_ratio": lv.get("build_throughput_ratio")})
    s["seconds"] = round(seconds, 1)
    return s
