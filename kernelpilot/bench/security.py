"""`kpilot bench security`: every detector side by side on the same split.

1. Real development sets (kernelpilot.security.devsets): FHIDS and UNM/MIT read from
   ../shared/datasets/security/, one fixed split each (printed as `protocol`): train on normal only,
   thresholds on calibration normals, test on held-out normals plus every attack: trace AUC,
   offline and streaming detection at 1% / 5% calibration trace FPR, false alarms, latency, per
   family (FHIDS) and per program (UNM).
2. The scenario suite recorded live on this host: train on benign runs, calibrate thresholds on one
   held-out benign repetition, measure FPR on another, and check each attack family is flagged
   within 1 s, per detector and for the live two-stage rule.
3. Live overhead of the in-kernel stage on a compile workload and a syscall flood (interleaved
   runs), with the stage's drop counter.
Each part is one top-level key; a part that cannot run says why under "skipped". `--only` runs some
of them (PARTS); live without scenarios trains its model on a fresh recording of the benign suite."""
from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from kernelpilot.security.features import STRIDE, WINDOW, window_bounds
from kernelpilot.security.model import SecurityModel


def devset_part(name: str, quick: bool) -> dict:
    from kernelpilot.security import datasets, devsets
    path = datasets.default_path(name)
    if not path.is_file():
        return {"skipped": f"{path} absent (set KPILOT_DATASETS)"}
    kinds = devsets.QUICK_KINDS if quick else devsets.KINDS
    res = devsets.run(name, path, kinds, quick=quick)
    res["detectors_run"] = list(kinds)
    res["table"] = devsets.table(name, res)
    return res


def _first_alarm_s(traces, alarms) -> float | None:
    """Seconds from a run's first syscall to its first alarmed window (any process), or None.
    alarms: one boolean array per trace, aligned with window_bounds."""
    t0 = min(int(t.ts[0]) for t in traces if len(t))
    best = None
    for t, a in zip(traces, alarms):
        hit = np.flatnonzero(a)
        if len(t) and len(hit):
            end = int(window_bounds(len(t), WINDOW, STRIDE)[hit[0]])
            s = (int(t.ts[end - 1]) - t0) / 1e9
            best = s if best is None else min(best, s)
    return best


def _runs_report(alarm_fn, test_runs, attacks) -> dict:
    flagged = [r["scenario"] for r in test_runs if _first_alarm_s(r["traces"], alarm_fn(r["traces"])) is not None]
    fam = {}
    for r in attacks:
        s = _first_alarm_s(r["traces"], alarm_fn(r["traces"]))
        fam.setdefault(r["scenario"], []).append(None if s is None else round(s, 3))
    within = {f: all(x is not None and x <= 1.0 for x in v) for f, v in fam.items()}
    return {"held_out_benign_runs_flagged": f"{len(flagged)}/{len(test_runs)}", "flagged_runs": flagged,
            "families_detected_within_1s": f"{sum(within.values())}/{len(within)}",
            "latency_s": fam, "missed": [f for f, ok in within.items() if not ok]}


def scenario_part(quick: bool, tmp: str) -> dict:
    """Train on benign runs recorded here, calibrate thresholds on one held-out repetition, measure
    FPR on another held-out repetition and detection of every attack family, per detector."""
    from kernelpilot.security.scenarios import ATTACKS, BENIGN
    from kernelpilot.security.scenarios.run import load_suite, record_suite
    reps = 4 if quick else 6
    kinds = ("stide", "freq", "tree") if quick else ("stide", "freq", "tree", "cnn")  # quick: no cnn (time)
    cal_rep, test_rep = 1, 3
    t0 = time.perf_counter()
    record_suite(tmp, [s.name for s in BENIGN], reps)
    record_suite(os.path.join(tmp, "attacks"), [s.name for s in ATTACKS], 1 if quick else 3)
    rec_s = time.perf_counter() - t0
    benign = load_suite(tmp)
    attacks = load_suite(os.path.join(tmp, "attacks"))
    train = [t for r in benign if r["rep"] not in (cal_rep, test_rep) for t in r["traces"]]
    cal = [t for r in benign if r["rep"] == cal_rep for t in r["traces"] if len(t)]
    test_runs = [r for r in benign if r["rep"] == test_rep]
    t0 = time.perf_counter()
    m = SecurityModel.train(train, kinds, calibration=cal, cnn_epochs=4)
    fit_s = time.perf_counter() - t0
    out = {"record_s": round(rec_s, 1), "fit_s": round(fit_s, 1), "detectors_run": list(kinds),
           "benign_scenarios": len(BENIGN),
           "benign_runs": len(benign), "attack_runs": len(attacks), "split": f"train reps != {cal_rep},{test_rep}; "
           f"calibrate thresholds on rep {cal_rep}; test FPR on rep {test_rep}",
           "calibration_windows": m.info["n_calibration_windows"],
           "dropped_events": int(sum(r["dropped"] for r in benign + attacks)), "detectors": {}}
    scores = {}
    for k, det in m.detectors.items():
        scores[k] = lambda traces, det=det: [det.window_scores(m.vocab.encode(t.calls)) for t in traces]
        test_w = np.concatenate([w for r in test_runs for w in scores[k](r["traces"]) if len(w)])
        rep = {}
        for fpr, key in ((0.01, "fpr_1pct"), (0.001, "fpr_0.1pct")):
            thr = m.thresholds[k][key]
            rep[key] = {"threshold": round(thr, 4), "test_window_fpr": round(float(np.mean(test_w > thr)), 5),
                        **_runs_report(lambda tr, k=k, thr=thr: [w > thr for w in scores[k](tr)], test_runs, attacks)}
        out["detectors"][k] = rep
    # the live path: in-kernel tree at 1% window FPR, then the user-space confirm at 0.1%
    from kernelpilot.security.live import confirm_detector
    c = confirm_detector(m)[0]
    t1, t2 = m.thresholds["tree"]["fpr_1pct"], m.thresholds[c]["fpr_0.1pct"]

    def two(tr):
        return [(a > t1) & (b > t2) for a, b in zip(scores["tree"](tr), scores[c](tr))]
    test_w = np.concatenate([w for r in test_runs for w in two(r["traces"])])
    out["detectors"][f"two_stage_tree+{c}"] = {"test_window_fpr": round(float(np.mean(test_w)), 5),
                                               **_runs_report(two, test_runs, attacks)}
    if m.programs is not None:  # the live rule: also departs from the program's own normal n-grams
        P = m.programs

        def prog(tr):
            return [P.window_scores(m.vocab.encode(t.calls), t.comm) > P.threshold(t.comm) for t in tr]

        def live(tr):
            return [a & b for a, b in zip(two(tr), prog(tr))]

        def tree_prog(tr):
            return [(a > t1) & b for a, b in zip(scores["tree"](tr), prog(tr))]
        for name, fn in ((f"live_tree+{c}+program", live), ("tree+program", tree_prog)):
            test_w = np.concatenate([w for r in test_runs for w in fn(r["traces"])])
            out["detectors"][name] = {"test_window_fpr": round(float(np.mean(test_w)), 5),
                                      **_runs_report(fn, test_runs, attacks)}
        out["programs"] = {"n_with_own_table": len(P.tables), "global_threshold": round(P.base, 4)}
    return out, m


PARTS = ("fhids", "unm", "scenarios", "live")


def run(quick: bool = False, only: list[str] | None = None) -> dict:
    from kernelpilot.security.livebench import mix_seconds
    parts = list(PARTS) if only is None else list(only)
    mix_s = mix_seconds(quick) if "live" in parts else None  # KPILOT_LIVE_MIX_S, checked before the long parts
    res = {"quick": quick, "parts": parts, "part_s": {}}
    for name in ("fhids", "unm"):
        if name in parts:
            t0 = time.perf_counter()
            res[name] = devset_part(name, quick)
            res["part_s"][name] = round(time.perf_counter() - t0, 1)
    model = None
    if "scenarios" in parts:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="kp-bench-sec-") as tmp:
            try:
                res["scenarios"], model = scenario_part(quick, os.path.join(tmp, "suite"))
            except Exception as e:  # the tracer needs root + eBPF; report why the part is missing
                res["scenarios"] = {"skipped": f"{type(e).__name__}: {e}"}
        res["part_s"]["scenarios"] = round(time.perf_counter() - t0, 1)
    if "live" in parts:
        t0 = time.perf_counter()
        res["live"] = live_part(quick, model, mix_s)
        res["part_s"]["live"] = round(time.perf_counter() - t0, 1)
    res["headline"] = headline(res)
    return res


def live_part(quick: bool, model, mix_s: float) -> dict:
    try:  # live false-alarm budget, attack families, stage speed and overhead (security/livebench.py)
        from kernelpilot.security.livebench import run_live
        return run_live(quick, model, mix_s)
    except Exception as e:
        return {"skipped": f"{type(e).__name__}: {e}"}


def fused_headline(r: dict) -> dict:
    return {"rule": r["rule"]["rule"], "ensemble_kept": r["rule"]["ensemble_kept"], "trace_auc": r["trace_auc"],
            "dr_1pct": r["offline"]["1pct"]["detection_rate"], "dr_5pct": r["offline"]["5pct"]["detection_rate"],
            "families_dr_1pct": {f: v["offline_dr_1pct"] for f, v in r["families"].items()},
            "families_dr_5pct": {f: v["offline_dr_5pct"] for f, v in r["families"].items()}}


def headline(res: dict) -> dict:
    out = {}
    fh = res.get("fhids", {})
    if "detectors" in fh:
        d = fh["detectors"]
        best = max(d, key=lambda k: d[k]["trace_auc"] or 0)
        out["fhids"] = {"best_detector": best, "trace_auc": d[best]["trace_auc"],
                        "dr_1pct": d[best]["offline"]["1pct"]["detection_rate"],
                        "families_dr_1pct": {f: v["offline_dr_1pct"] for f, v in d[best]["families"].items()},
                        "auc_ratio_best_vs_stide": round(d[best]["trace_auc"] / d["stide"]["trace_auc"], 4)
                        if d.get("stide", {}).get("trace_auc") else None,
                        "prefilter": fh.get("prefilter")}
        if "fused" in d:  # the detector whose rule was chosen on the dev split (never on test)
            out["fhids"]["fused"] = fused_headline(d["fused"])
        out["fhids"]["detection_ceiling"] = fh.get("detection_ceiling")
    if res.get("unm", {}).get("programs"):
        rules = {p: r["detectors"]["fused"]["rule"]["rule"] for p, r in res["unm"]["programs"].items()
                 if "fused" in r["detectors"]}
        if rules:
            out["unm_fused_rules"] = rules
    if "summary" in res.get("unm", {}):
        out["unm_programs_all_intrusions_flagged_fpr_le_1pct"] = {
            k: f"{len(v['offline_ok'])}/{v['programs']}" for k, v in res["unm"]["summary"].items()}
        out["unm_programs_pooled_threshold"] = {  # kernelpilot.security.crossfit's rule
            k: f"{len(v['pooled_offline_ok'])}/{v['programs']}" for k, v in res["unm"]["summary"].items()}
    det = res.get("scenarios", {}).get("detectors", {})
    for k, v in det.items():
        if k.startswith(("two_stage", "live_")):
            out[k] = {"benign_runs_flagged": v["held_out_benign_runs_flagged"],
                      "families_within_1s": v["families_detected_within_1s"],
                      "test_window_fpr": v["test_window_fpr"]}
    return out
