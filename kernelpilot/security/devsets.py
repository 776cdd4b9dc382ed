"""The fixed protocol on the real development sets (FHIDS, UNM/MIT), every detector side by side.

FHIDS: one model over every service's training normals (a host-wide profile: a trace is judged
without knowing its service). UNM: one model per program (the monitor knows the executable).
Thresholds come from calibration normals only (kernelpilot.security.metrics). The fused detector's
rule (kernelpilot.security.fused) is chosen on dev cells of normal traces only, by the protocol in
kernelpilot.security.chooser: FHIDS, leave services out (parts refitted without them with the
test's settings, their calibration traces not identical to a remaining training trace are the whole
novel ones, and SPLICE of their calls put into the remaining calibration traces the spliced ones);
UNM, the other programs' calibration traces (whole, and spliced into this program's) are novel to
this program's models. `--per-service` (FHIDS): thresholds and n-gram models per service beside the
host-wide rule, the mode chosen on its own dev split (kernelpilot.security.perservice)."""
from __future__ import annotations

import time

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.security import chooser as C
from kernelpilot.security import crossfit as X
from kernelpilot.security import datasets as DS
from kernelpilot.security import detectors as D
from kernelpilot.security import fused as F
from kernelpilot.security import lmrule as R
from kernelpilot.security import perservice as P
from kernelpilot.security.features import Vocabulary
from kernelpilot.security.metrics import auc, conformal_threshold, evaluate_scores, threshold
from kernelpilot.security.registry import DETECTORS, make
from kernelpilot.security.sequence import scored

KINDS = ("mismatch", "lfc", "hamming", "lm", "rarity", "novelty", "fused", "stide", "freq", "tree", "cnn", "ensemble")
QUICK_KINDS = ("mismatch", "lfc", "rarity", "novelty", "fused", "stide", "freq", "tree")  # bench --quick: no lm, cnn, ensemble or hamming (time)
MAX_CALLS = 100_000  # every trace is judged on its first 100,000 calls (train and test alike)
FIT_TRACES = 1500    # cnn and ensemble fit on a fixed random subset of this many training traces
DEV_CALLS = F.DEV_CALLS  # dev split traces are judged on their first 2,000 calls
DEV_NOVEL = 300      # UNM dev: at most this many other programs' traces (fixed seed)


def _options(kind: str, quick: bool) -> dict:
    if kind == "cnn":
        return {"epochs": 1 if quick else 2}
    if kind == "lm":
        return {"steps": 400 if quick else 1500}
    return {}


def _subset(seqs, k, seed):
    """The cnn (and the ensemble, which refits its parts twice) train on at most FIT_TRACES traces."""
    if k not in ("cnn", "ensemble") or len(seqs) <= FIT_TRACES:
        return seqs
    keep = np.sort(np.random.default_rng(seed).choice(len(seqs), FIT_TRACES, replace=False))
    return [seqs[i] for i in keep]


def fit(kinds, train_seqs, vocab, quick=False, seed=DS.SEED) -> tuple[dict, dict, dict]:
    """({kind: detector}, {kind: fit seconds}, {kind: why it could not be fitted})."""
    dets, fit_s, skipped = {}, {}, {}
    for k in kinds:
        if k == "fused":
            continue  # built from its parts' scores in judge
        t0 = time.perf_counter()
        seqs = _subset(train_seqs, k, seed)
        try:
            if k == "ensemble":
                parts = {p: dets[p] for p in D.Ensemble.PARTS if p in dets}
                if len(parts) < 2 or len(seqs) < 2:
                    raise KpError("needs two of stide, tree, cnn and two training traces")
                dets[k] = D.Ensemble(vocab).fit_from(seqs, parts, seed, _options("cnn", quick)["epochs"])
            else:
                dets[k] = make(k, vocab, **_options(k, quick)).fit(seqs, seed)
        except (KpError, ValueError) as e:
            skipped[k] = str(e)
            continue
        fit_s[k] = round(time.perf_counter() - t0, 2)
    return dets, fit_s, skipped


def prefilter_recall(dets, cal_seqs, test_seqs) -> dict:
    """Of the test windows a stage-2 detector confirms (above its 1% calibration-window threshold;
    at 0.1% stide and mismatch confirm nothing on FHIDS: over 0.1% of calibration windows are
    wholly novel), the share the in-kernel tree passes up (above its own 1% threshold)."""
    if "tree" not in dets:
        return {}
    tree = dets["tree"]
    t1 = threshold(np.concatenate([tree.window_scores(s) for s in cal_seqs]), 0.01)
    s1 = np.concatenate([tree.window_scores(s) for s in test_seqs]) > t1
    out = {"stage1_window_pass_share": round(float(s1.mean()), 4)}
    for k in ("stide", "mismatch", "rarity", "cnn", "lm"):
        if k not in dets:
            continue
        d = dets[k]
        t2 = threshold(np.concatenate([d.window_scores(s) for s in cal_seqs]), 0.01)
        s2 = np.concatenate([d.window_scores(s) for s in test_seqs]) > t2
        out[f"recall_vs_{k}"] = round(float((s1 & s2).sum() / s2.sum()), 4) if s2.any() else None
    return out


def _encode(vocab, traces):
    return [vocab.encode(t.calls[:MAX_CALLS]) for t in traces]


def _fuse(res, dev, progress=None) -> None:
    """The fused row: rule chosen on the dev split, z-scores and thresholds from calibration."""
    parts = [p for p in F.PARTS if p in res["detectors"]]
    if not parts:
        res["skipped"]["fused"] = f"needs one of {', '.join(F.PARTS)}"
        return
    t0 = time.perf_counter()
    cells, how = dev(parts)
    choice = F.choose_cells(cells) if cells else F._no_dev(parts)
    choice["dev_split"] = how
    sc, sn, sa = F.fuse(choice["rule"], *({p: res["detectors"][p]["_scored"][i] for p in parts} for i in range(3)))
    r = evaluate_scores(sc, sn, sa, res["_families"], res["_starts"])
    r.update(rule=choice, score_s=round(time.perf_counter() - t0, 2), _scored=(sc, sn, sa))
    # every candidate rule on test, for the report only: the rule above was fixed before these were computed
    diag = {}
    for cand in choice["dev"]:
        c_cal, c_n, c_a = F.fuse(cand, *({p: res["detectors"][p]["_scored"][i] for p in parts} for i in range(3)))
        t1 = threshold([s.score for s in c_cal], 0.01)
        diag[cand] = {"trace_auc": auc([s.score for s in c_n], [s.score for s in c_a]),
                      "offline_dr_1pct": round(float(np.mean([s.score > t1 for s in c_a])), 4) if c_a else None}
    r["candidates_on_test_not_used_to_choose"] = diag
    res["detectors"]["fused"] = r
    if progress:
        progress("fused")


def _dev_scores(dets, parts, seqs) -> dict:
    from kernelpilot.security.sequence import scored as scored_fn
    return {p: np.array([s.score for s in scored_fn(dets[p], seqs)]) for p in parts}


def _dev_raw(det, seqs):
    """Dev scores of a refitted part: trace scores; the lm's per-call NLLs (lmrule.Calls), so that
    every lm rule is judged on the same fold models."""
    if det.kind != "lm":
        return _dev_scores({"x": det}, ["x"], seqs)["x"]
    out = np.empty(len(seqs), dtype=object)
    for i, p in enumerate(det.nll_many(seqs)):
        out[i] = R.Calls(p, det.cuts)
    return out


def _lm_as(scores: dict, rule: str) -> dict:
    return {p: np.array([R.trace_score(c.nll, rule, c.cuts) for c in v]) if p == "lm" else v for p, v in scores.items()}


def dev_leave_groups_out(train, cal, vocab, quick=False, group=lambda t: t.meta["service"], dets=None):
    """FHIDS dev split (kernelpilot.security.fused.leave_groups_out): services left out, trace scores
    (the lm's by the rule of dets['lm']); `lm_cells(parts)`: the same folds' lm NLLs for lmrule.choose.
    The folds are fitted once per set of parts."""
    memo = {}

    def raw(parts):
        if tuple(parts) not in memo:
            memo[tuple(parts)] = F.leave_groups_out(train, cal, vocab, parts, group, _dev_raw, max_calls=MAX_CALLS,
                                                    part_kw={"lm": _options("lm", quick)})
        return memo[tuple(parts)]

    def dev(parts):
        cells, how = raw(parts)
        rule = dets["lm"].rule if dets and "lm" in dets else R.DEFAULT
        return [(n, _lm_as(nor, rule), _lm_as(nov, rule)) for n, nor, nov in cells], how

    dev.lm_cells = lambda parts: [(n, list(nor["lm"]), list(nov["lm"])) for n, nor, nov in raw(parts)[0]]
    return dev


def dev_other_programs(others, seed=DS.SEED):
    """UNM dev cells: this program's calibration traces are normal; novel, up to DEV_NOVEL calibration
    traces of the other programs (fixed seed, first DEV_CALLS calls) whole, and the normal ones with
    chooser.SPLICE calls of those spliced in; all scored by this program's models."""
    pick = sorted(np.random.default_rng(seed).permutation(len(others))[:DEV_NOVEL]) if others else []

    def make(dets, vocab, cal_seqs, cal_scored):
        seqs = [vocab.encode(others[i].calls[:DEV_CALLS]) for i in pick]
        mixed = C.spliced(cal_seqs, seqs)

        def dev(parts):
            normal = {p: np.array([s.score for s in cal_scored(p)]) for p in parts}
            cells = [("other programs:whole", normal, _dev_scores(dets, parts, seqs))]
            if mixed:
                cells.append(("other programs:spliced", normal, _dev_scores(dets, parts, mixed)))
            return cells, (f"this program's calibration traces vs {len(seqs)} other programs' calibration traces "
                           f"(first {DEV_CALLS} calls), whole and spliced ({C.SPLICE} calls) into this program's")

        def lm_cells(parts):
            lm = dets["lm"]
            calls = [[R.Calls(p, lm.cuts) for p in lm.nll_many(x)] for x in (cal_seqs, seqs, mixed)]
            return [("other programs:whole", calls[0], calls[1]), ("other programs:spliced", calls[0], calls[2])]
        dev.lm_cells = lm_cells
        return dev
    return make


def judge(kinds, split, quick=False, progress=None, dev=None) -> dict:
    """Fit every detector on split['train'], threshold on 'calibration', report on 'test'.
    dev(train, cal, vocab, dets) -> the fused detector's dev-split function (see _fuse)."""
    train = [t for t in split["train"] if len(t)]
    if not train:
        raise KpError("no normal training traces with calls: the profile is empty")
    vocab = Vocabulary.from_traces(train)
    tr, cal = _encode(vocab, train), _encode(vocab, split["calibration"])
    tn = [t for t in split["test"] if t.label == "normal"]
    ta = [t for t in split["test"] if t.label == "attack"]
    tn_s, ta_s = _encode(vocab, tn), _encode(vocab, ta)
    dets, fit_s, skipped = fit(kinds, tr, vocab, quick)
    res = {"n_train": len(tr), "n_calibration": len(cal), "vocabulary": len(vocab) - 1,
           "fit_s": fit_s, "detectors": {}, "skipped": skipped}
    devf = dev(train, split["calibration"], vocab, dets, res) if dev is not None else None
    if "lm" in dets:  # the lm's rule (kernelpilot.security.lmrule) on the dev cells, before any test score
        t0 = time.perf_counter()
        parts = [p for p in F.PARTS if p in dets] if "fused" in kinds else ["lm"]
        ch = R.choose(devf.lm_cells(parts)) if hasattr(devf, "lm_cells") else {
            "rule": dets["lm"].rule, "why": "no dev split: the lm's own rule", "dev": {}}
        dets["lm"].rule = ch["rule"]
        res["lm_rule"] = {**ch, "choose_s": round(time.perf_counter() - t0, 2)}
    for k, d in dets.items():
        t0 = time.perf_counter()
        if k == "lm":  # NLLs once: the chosen rule's figures, and the mean's beside them (report only)
            nll = [d.nll_many(x) for x in (cal, tn_s, ta_s)]
            sc, sn, sa = ([d.scored_nll(p) for p in g] for g in nll)
            if d.rule != R.DEFAULT:
                old = evaluate_scores(*([d.scored_nll(p, R.DEFAULT) for p in g] for g in nll),
                                      [t.family for t in ta], [t.attack_start for t in ta])
                res["lm_rule"]["mean_on_test_not_used_to_choose"] = old
        else:
            sc, sn, sa = scored(d, cal), scored(d, tn_s), scored(d, ta_s)
        r = evaluate_scores(sc, sn, sa, [t.family for t in ta], [t.attack_start for t in ta])
        r["score_s"] = round(time.perf_counter() - t0, 2)
        r["_scored"] = (sc, sn, sa)
        res["detectors"][k] = r
        if progress:
            progress(k)
    if "fused" in kinds and dev is not None:
        res["_families"], res["_starts"] = [t.family for t in ta], [t.attack_start for t in ta]
        _fuse(res, devf, progress)
        del res["_families"], res["_starts"]
    elif "fused" in kinds:
        res["skipped"]["fused"] = "no dev split for this data"
    if cal:
        res["prefilter"] = prefilter_recall(dets, cal, tn_s + ta_s)
    return res


def _strip(res):
    for r in res["detectors"].values():
        r.pop("_scored", None)
    return res


def per_service(res, sp) -> dict:
    """The per-service calibration block (kernelpilot.security.perservice) for the n-gram detectors
    fitted and the fused rule where its parts are all n-gram tables."""
    rules = {k: k for k in P.KINDS if k in res["detectors"]}
    why = {}
    if "fused" in res["detectors"]:
        r = res["detectors"]["fused"]["rule"]["rule"]
        if all(p in rules for p in F.rule_parts(r)):
            rules["fused"] = r
        else:
            why["fused"] = f"its rule {r} has a part that is not refitted per service (only {', '.join(P.KINDS)})"
    if not rules:
        return {"skipped": f"needs one of {', '.join(P.KINDS)}"}
    train = [t for t in sp["train"] if len(t)]
    tn = [t for t in sp["test"] if t.label == "normal"]
    ta = [t for t in sp["test"] if t.label == "attack"]
    out = P.report(train, sp["calibration"], tn, ta, Vocabulary.from_traces(train),
                   {k: d["_scored"] for k, d in res["detectors"].items()}, rules, max_calls=MAX_CALLS)
    out["skipped"] = why
    return out


def fhids(path=None, kinds=KINDS, quick=False, progress=None, per_service_calibration=False) -> dict:
    traces = DS.load("fhids", path)
    sp = DS.split("fhids", traces)
    res = judge(kinds, sp, quick, progress,
                dev=lambda train, cal, vocab, dets, res: dev_leave_groups_out(train, cal, vocab, quick, dets=dets))
    if per_service_calibration:
        res["per_service"] = per_service(res, sp)
        if progress:
            progress("per-service calibration")
    # attack processes whose calls equal a normal training process exactly get a normal score
    # from every n-gram detector; figures over the other attacks show what remains
    seen = {tuple(t.calls[:MAX_CALLS]) for t in sp["train"]}
    ta = [t for t in sp["test"] if t.label == "attack"]
    dup = [tuple(t.calls[:MAX_CALLS]) in seen for t in ta]
    fams = sorted({t.family for t in ta})
    res["attacks_identical_to_a_normal_training_trace"] = {
        f: f"{sum(d for d, t in zip(dup, ta) if t.family == f)}/{sum(t.family == f for t in ta)}" for f in fams}
    n_dup = sum(dup)
    res["detection_ceiling"] = {
        "why": "an attack trace identical to a normal training trace scores as that normal trace does under any "
               "detector that judges a trace by its calls; if every such trace is missed, at most this share is detected",
        "overall": round(1 - n_dup / len(ta), 4) if ta else None,
        **{f: round(1 - sum(d for d, t in zip(dup, ta) if t.family == f) / sum(t.family == f for t in ta), 4)
           for f in fams}}
    keep = [i for i, d in enumerate(dup) if not d]
    for r in res["detectors"].values():
        sc, sn, sa = r["_scored"]
        sub = evaluate_scores(sc, sn, [sa[i] for i in keep], [ta[i].family for i in keep])
        r["distinct_attacks"] = {"n_attack": sub["n_attack"], "trace_auc": sub["trace_auc"],
                                 "offline_dr_1pct": sub["offline"]["1pct"]["detection_rate"],
                                 "streaming_dr_1pct": sub["streaming"]["1pct"]["detection_rate"],
                                 "families_offline_dr_1pct": {f: v["offline_dr_1pct"]
                                                              for f, v in sub["families"].items()}}
    return {"data": f"FHIDS ({path or DS.default_path('fhids')})", "protocol": DS.protocol("fhids") +
            f"; one host-wide model; each trace judged on its first {MAX_CALLS} calls; cnn and ensemble "
            f"fit on {FIT_TRACES} of the training traces (seed {DS.SEED})",
            "n_normal": sum(t.label == "normal" for t in traces), "n_attack": len(ta),
            "n_test_normal": sum(t.label == "normal" for t in sp["test"]), **_strip(res)}


def _per_intrusion(sa, ta, thr_of) -> dict:
    """Intrusion files (one attack run, several processes): flagged if any process alarms."""
    files: dict[str, bool] = {}
    for s, t in zip(sa, ta):
        files[t.meta["file"]] = files.get(t.meta["file"], False) or bool(thr_of(s))
    return files


def unm(path=None, kinds=KINDS, quick=False, progress=None) -> dict:
    traces = DS.load("unm", path)
    sp = DS.split("unm", traces)
    progs = sorted({t.meta["program"] for t in traces})
    out = {"data": f"UNM/MIT ({path or DS.default_path('unm')})",
           "protocol": DS.protocol("unm") + f"; one model per program; each trace (one process) judged on "
           f"its first {MAX_CALLS} calls; an intrusion file is flagged when any of its processes alarms; "
           "max_calibration: stide's threshold, the largest score of any calibration normal trace; "
           "conformal_1pct: the ceil((n + 1) * 0.99)-th smallest of the n calibration scores (the largest below 99); "
           f"pooled_1pct: the same over the calibration scores and, for {', '.join(X.MONOTONE)} (and fused of them), "
           f"the training traces cross-fitted in {X.FOLDS} folds (n_pool); "
           "a program without normal training and calibration traces or without intrusions of its own is skipped",
           "programs": {}, "skipped_programs": {}}
    for p in progs:
        part = {k: [t for t in v if t.meta["program"] == p] for k, v in sp.items()}
        if not part["train"] or not part["calibration"]:
            out["skipped_programs"][p] = (f"{len(part['train'])} normal training and "
                                          f"{len(part['calibration'])} calibration traces in this copy")
            continue
        if not any(t.label == "attack" for t in part["test"]):
            out["skipped_programs"][p] = "no intrusion traces of its own in this copy"
            continue
        others = [t for t in sp["calibration"] if t.meta["program"] != p]
        res = judge(kinds, part, quick, dev=lambda train, cal, vocab, dets, res, others=others: dev_other_programs(
            others)(dets, vocab, _encode(vocab, cal), lambda k: res["detectors"][k]["_scored"][0]))
        ta = [t for t in part["test"] if t.label == "attack"]
        cf = _crossfit(res, part["train"], quick)
        for k, r in res["detectors"].items():
            sc, sn, sa = r.pop("_scored")
            t_off = threshold([s.score for s in sc], 0.01)
            t_str = threshold([s.stream.max() for s in sc], 0.01)
            off = _per_intrusion(sa, ta, lambda s: s.score > t_off)
            st = _per_intrusion(sa, ta, lambda s: s.stream.max() > t_str)
            r["intrusion_files"] = {"n": len(off), "offline_flagged_1pct": sum(off.values()),
                                    "streaming_flagged_1pct": sum(st.values())}
            r["max_calibration"] = _max_calibration(sc, sn, sa, ta)
            r["conformal_1pct"] = _conformal(sc, sn, sa, ta)
            r["pooled_1pct"] = _conformal(sc, sn, sa, ta, extra=cf.get(k))
        out["programs"][p] = res
    out["summary"] = unm_summary(out)
    return out


def _max_calibration(sc, sn, sa, ta) -> dict:
    """stide's rule: alarm above the largest score of any calibration normal trace (none alarms)."""
    t = max(s.score for s in sc)
    files = _per_intrusion(sa, ta, lambda s: s.score > t)
    return {"threshold": round(t, 4), "intrusion_files_flagged": sum(files.values()), "n": len(files),
            "test_normal_alarms": sum(s.score > t for s in sn), "n_test_normal": len(sn),
            "test_normal_fpr": round(float(np.mean([s.score > t for s in sn])), 4) if sn else None}


def _conformal(sc, sn, sa, ta, fpr=0.01, extra=None) -> dict:
    """metrics.conformal_threshold at 1% of the calibration traces (offline, and on the streams'
    maxima): the calibration-count rule fixed for UNM's small programs before its test run; with
    extra, over the calibration traces and those (kernelpilot.security.crossfit)."""
    thr = X.pooled_thresholds(sc, extra, fpr)
    out = {}
    for mode, get in (("offline", lambda s: s.score), ("streaming", lambda s: float(s.stream.max()))):
        t = thr[mode]
        files = _per_intrusion(sa, ta, lambda s: get(s) > t)
        out[mode] = {"threshold": round(t, 6), "intrusion_files_flagged": sum(files.values()), "n": len(files),
                     "test_normal_alarms": int(sum(get(s) > t for s in sn)), "n_test_normal": len(sn),
                     "test_normal_fpr": round(float(np.mean([get(s) > t for s in sn])), 4) if sn else None,
                     "n_pool": thr["n_pool"]}
    return out


def _crossfit(res, train, quick) -> dict:
    """{kind: cross-fitted Scored training traces} for crossfit.MONOTONE detectors, and for fused
    where every part of its rule is one (z-scales from the calibration traces, as on test)."""
    train = [t for t in train if len(t)]
    vocab = Vocabulary.from_traces(train)
    seqs = _encode(vocab, train)
    dets = res["detectors"]
    cf = {k: X.crossfit(lambda k=k: make(k, vocab, **_options(k, quick)), seqs) for k in dets if k in X.MONOTONE}
    if "fused" in dets:
        parts = F.rule_parts(dets["fused"]["rule"]["rule"])
        if all(cf.get(p) for p in parts):
            cal = {p: dets[p]["_scored"][0] for p in parts}
            cf["fused"] = F.fuse(dets["fused"]["rule"]["rule"], cal, {p: cf[p] for p in parts})[1]
    return {k: v for k, v in cf.items() if v}


def unm_summary(out) -> dict:
    """Per detector: programs where every intrusion file is flagged and <= 1% of test normal
    traces are (offline and streaming, 1% calibration threshold)."""
    s = {}
    for p, res in out["programs"].items():
        for k, r in res["detectors"].items():
            e = s.setdefault(k, {"programs": 0, "offline_ok": [], "streaming_ok": [], "max_calibration_ok": [],
                                 "conformal_offline_ok": [], "conformal_streaming_ok": [],
                                 "pooled_offline_ok": [], "pooled_streaming_ok": []})
            e["programs"] += 1
            for rule in ("conformal", "pooled"):
                for mode, c in r.get(f"{rule}_1pct", {}).items():
                    if c["intrusion_files_flagged"] == c["n"] and (c["test_normal_fpr"] or 0) <= 0.01:
                        e[f"{rule}_{mode}_ok"].append(p)
            m = r.get("max_calibration")
            if m and m["intrusion_files_flagged"] == m["n"] and (m["test_normal_fpr"] or 0) <= 0.01:
                e["max_calibration_ok"].append(p)
            f = r["intrusion_files"]
            for mode, key in (("offline", "offline_flagged_1pct"), ("streaming", "streaming_flagged_1pct")):
                fpr = r[mode]["1pct"]["test_normal_fpr" if mode == "offline" else "false_alarm_rate"]
                if f[key] == f["n"] and (fpr is None or fpr <= 0.01):
                    e[f"{mode}_ok"].append(p)
    return s


def run(name: str, path=None, kinds=KINDS, quick=False, progress=None, per_service_calibration=False) -> dict:
    if name not in DS.NAMES:
        raise KpError(f"unknown data set '{name}'; choose from {', '.join(DS.NAMES)}")
    bad = [k for k in kinds if k not in DETECTORS]
    if bad:
        raise KpError(f"unknown detector {', '.join(bad)}; choose from {', '.join(DETECTORS)}")
    if per_service_calibration and name != "fhids":
        raise KpError("--per-service is for fhids: UNM is judged per program already")
    if name == "fhids":
        return fhids(path, kinds, quick, progress, per_service_calibration)
    return unm(path, kinds, quick, progress)


def table(name: str, res: dict) -> list[dict]:
    """One flat row per detector (and per program for UNM): the figures of the issue's targets."""
    rows = []
    groups = res["programs"].items() if name == "unm" else [("all", res)]
    for g, r0 in groups:
        for k, r in r0["detectors"].items():
            row = {"program": g} if name == "unm" else {}
            row.update(detector=k, trace_auc=r["trace_auc"],
                       dr_1pct=r["offline"]["1pct"]["detection_rate"], fpr_1pct=r["offline"]["1pct"]["test_normal_fpr"],
                       dr_5pct=r["offline"]["5pct"]["detection_rate"],
                       stream_dr_1pct=r["streaming"]["1pct"]["detection_rate"],
                       stream_far_1pct=r["streaming"]["1pct"]["false_alarm_rate"],
                       stream_dr_5pct=r["streaming"]["5pct"]["detection_rate"],
                       cfa_1pct=r["streaming"]["1pct"]["consecutive_false_alarms"],
                       latency_calls=r["streaming"]["1pct"]["median_latency_calls"])
            if name == "unm":
                row["n_test_normal"] = r["n_test_normal"]
                row["intrusions_flagged"] = f"{r['intrusion_files']['offline_flagged_1pct']}/{r['intrusion_files']['n']}"
            rows.append(row)
    return rows


def cli_eval(name: str, path, kinds, quick: bool, json_out: bool, per_service_calibration=False) -> None:
    """`kpilot security eval --dataset NAME`: the protocol, then one row per detector (per program)."""
    import json
    import sys
    res = run(name, path, kinds, quick,
              progress=None if json_out else lambda k: print(f"scored {k}", file=sys.stderr),
              per_service_calibration=per_service_calibration)
    if json_out:
        print(json.dumps(res, indent=1))
        return
    from rich.console import Console
    from rich.table import Table
    rows = table(name, res)
    print(res["protocol"])
    t = Table(title=f"{res['data']}: thresholds from calibration normals; DR = detection rate on test attacks")
    for col in rows[0]:
        t.add_column(col)
    for r in rows:
        t.add_row(*("-" if v is None else str(v) for v in r.values()))
    Console(width=200).print(t)
    for g, r0 in (res["programs"].items() if name == "unm" else [("all", res)]):
        if "fused" in r0["detectors"]:
            ch = r0["detectors"]["fused"]["rule"]
            print(f"fused ({g}): rule {ch['rule']} chosen on the dev split; ensemble kept: {ch['ensemble_kept']}")
    if name == "fhids":
        print("attack traces identical to a normal training trace:", res["attacks_identical_to_a_normal_training_trace"])
        print("detection ceiling if those are missed:", {k: v for k, v in res["detection_ceiling"].items() if k != "why"})
        print("in-kernel tree pre-filter:", res.get("prefilter"))
        for k, r in res.get("per_service", {}).get("detectors", {}).items():
            print(f"per-service ({k}): mode {r['mode']} chosen on the dev split; on test:", r["chosen_on_test"])
    else:
        print("skipped:", res["skipped_programs"])
