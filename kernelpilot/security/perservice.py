"""Per-service calibration on FHIDS (`kpilot security eval --dataset fhids --per-service`).

The monitor knows which service's host a process ran on. Three ways to judge a trace beside the
host-wide rule (one host model, one threshold at 1% of every calibration normal together):
- `service_threshold`: the host model's score, each service's threshold at 1% of its own
  calibration normals (so the overall calibration budget stays 1%);
- `service_model`: a model per service fitted on that service's normal training traces only,
  thresholded per service the same way;
- `either`: alarm when the host model passes its host-wide threshold or the service's model passes
  its service's threshold, one quantile q for both, the largest with at most 1% of calibration
  normals alarming.
A trace whose service has no calibration traces (FHIDS's Cryptomining: its host is not given) is
judged as by the host-wide rule in every mode: the host model at the host-wide 1% threshold.

Which mode is kept is decided on a dev split of normal traces only (`dev`): services left out in
folds as in fused.leave_groups_out, every model refitted without them; the left-out services'
calibration traces not identical to a remaining training trace are judged as if they ran on each
remaining service's host in turn (that service's model and threshold), thresholds per fold from the
remaining services' calibration normals. Test figures of every mode are reported beside the rule."""
from __future__ import annotations

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.security import fused as F
from kernelpilot.security.chooser import SPLICE, splice  # noqa: F401 (SPLICE: the dev's splice length)
from kernelpilot.security.metrics import auc, threshold
from kernelpilot.security.sequence import scored

KINDS = ("mismatch", "novelty", "rarity")  # n-gram tables: cheap to fit per service
MODES = ("host", "service_threshold", "service_model", "either")


def thresholds(scores, groups, fpr: float) -> tuple[dict[str, float], float]:
    """({service: threshold at fpr of its own calibration scores}, host-wide threshold at fpr)."""
    s, g = np.asarray(scores, dtype=np.float64), np.asarray(groups)
    return {k: threshold(s[g == k], fpr) for k in sorted(set(g.tolist()))}, threshold(s, fpr)


def alarms(scores, groups, per: dict[str, float], host: float) -> np.ndarray:
    """score > its service's threshold; a service without one (none calibrated) -> `host`."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.array([per.get(g, host) for g in groups], dtype=np.float64)
    return s > t


def either_quantile(cal_host, cal_svc, cal_groups, fpr: float, steps: int = 40) -> float:
    """The largest q (<= fpr) with at most fpr of calibration normals alarming under `either` at q."""
    lo, hi = 0.0, fpr
    if either_share(cal_host, cal_svc, cal_groups, hi) <= fpr:
        return hi
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if either_share(cal_host, cal_svc, cal_groups, mid) <= fpr else (lo, mid)
    return lo


def either_share(cal_host, cal_svc, cal_groups, q) -> float:
    return float(either_alarms(cal_host, cal_svc, cal_groups, cal_host, cal_svc, cal_groups, q).mean())


def either_alarms(cal_host, cal_svc, cal_groups, host, svc, groups, q, fpr=None) -> np.ndarray:
    """host > host-wide threshold at q, or svc > its service's threshold at q; a service without
    calibration traces: host > the host-wide threshold at fpr (the host-wide rule)."""
    t_host = threshold(cal_host, q)
    per, _ = thresholds(cal_svc, cal_groups, q)
    known = np.array([g in per for g in groups], dtype=bool)
    out = (np.asarray(host) > t_host) | alarms(svc, groups, per, np.inf)
    if fpr is not None and (~known).any():
        out[~known] = np.asarray(host)[~known] > threshold(cal_host, fpr)
    return out


def judge(mode: str, cal, cal_groups, traces, groups, fpr: float) -> np.ndarray:
    """Alarms of `traces` under a mode. cal / traces: {'host': scores, 'service': scores} (service:
    each trace by its service's model, the host model where its service has none)."""
    if mode == "host":
        return np.asarray(traces["host"]) > threshold(cal["host"], fpr)
    if mode in ("service_threshold", "service_model"):
        key = "host" if mode == "service_threshold" else "service"
        per, _ = thresholds(cal[key], cal_groups, fpr)
        out = alarms(traces[key], groups, per, np.inf)
        unknown = np.array([g not in per for g in groups], dtype=bool)
        out[unknown] = np.asarray(traces["host"])[unknown] > threshold(cal["host"], fpr)  # the host-wide rule
        return out
    if mode == "either":
        q = either_quantile(cal["host"], cal["service"], cal_groups, fpr)
        return either_alarms(cal["host"], cal["service"], cal_groups, traces["host"], traces["service"], groups, q, fpr)
    raise KpError(f"unknown per-service mode '{mode}'; choose from {', '.join(MODES)}")


def fit_services(kind: str, vocab, seqs, groups, seed=0) -> dict:
    """{service: a `kind` detector fitted on that service's training sequences only}."""
    make = F.part_kinds()[kind]
    out = {}
    for g in sorted(set(groups)):
        own = [s for s, x in zip(seqs, groups) if x == g and len(s)]
        if own:
            out[g] = make(vocab).fit(own, seed)
    return out


def service_scores(models: dict, seqs, groups, fallback: list) -> list:
    """Scored traces, each by its service's model; fallback[i] (the host model's) where its service has none."""
    out = list(fallback)
    for g in set(groups):
        if g not in models:
            continue
        idx = [i for i, x in enumerate(groups) if x == g]
        for i, s in zip(idx, scored(models[g], [seqs[i] for i in idx])):
            out[i] = s
    return out


def _rate(a) -> float | None:
    return round(float(np.mean(a)), 4) if len(a) else None


def _fold_scores(parts, vocab, train, svc, cal, cal_seqs, cal_svc, hold, max_calls, seed):
    """One dev fold: per part, host-model scores of every calibration trace, own-service scores of
    the remaining services' ones, the novel ones' scores under each remaining service's model, and
    the remaining ones with SPLICE calls of a novel one spliced in (host and own-service scores)."""
    keep = [i for i, g in enumerate(svc) if g not in hold]
    seen = {tuple(train[i].calls[:F.DEV_CALLS]) for i in keep}
    seqs = [vocab.encode(train[i].calls[:max_calls]) for i in keep]
    groups = [svc[i] for i in keep]
    nor = [i for i, g in enumerate(cal_svc) if g not in hold]
    nov = [i for i, g in enumerate(cal_svc) if g in hold and tuple(cal[i].calls[:F.DEV_CALLS]) not in seen]
    spliced = [splice(cal_seqs[i], cal_seqs[nov[k % len(nov)]]) for k, i in enumerate(nor)] if nov else []
    n_groups = [cal_svc[i] for i in nor]
    host_s, own_s, as_s, sp_s = {}, {}, {}, {}
    for p in parts:
        host = F.part_kinds()[p](vocab).fit(seqs, seed)
        models = fit_services(p, vocab, seqs, groups, seed)
        host_s[p] = np.array([s.score for s in scored(host, cal_seqs)])
        own_s[p] = np.array([s.score for s in scored_by(models, [cal_seqs[i] for i in nor], n_groups)])
        as_s[p] = {g: np.array([s.score for s in scored(models[g], [cal_seqs[i] for i in nov])]) for g in sorted(models)}
        sp_s[p] = (np.array([s.score for s in scored(host, spliced)]),
                   np.array([s.score for s in scored_by(models, spliced, n_groups)]) if spliced else np.zeros(0))
    return nor, nov, host_s, own_s, as_s, sp_s


def scored_by(models, seqs, groups) -> list:
    """Each sequence by its own group's model (every group has one)."""
    return service_scores(models, seqs, groups, [None] * len(seqs))


def dev(train, cal, vocab, rules, fpr: float = 0.01, max_calls=None, seed=0) -> dict:
    """Every mode's detection at fpr on the leave-services-out dev split (module docstring), for each
    rule (a part kind, or a fused rule over KINDS parts). Returns {rule: {modes: {mode: {dr, fpr,
    auc}}, mode: the choice, why}}."""
    parts = sorted({p for r in rules for p in F.rule_parts(r)})
    bad = [p for p in parts if p not in KINDS]
    if bad:
        raise KpError(f"per-service calibration fits only {', '.join(KINDS)} per service, not {', '.join(bad)}")
    svc = [t.meta["service"] for t in train]
    services = sorted(set(svc))
    folds = [services[i::F.DEV_FOLDS] for i in range(min(F.DEV_FOLDS, len(services)))]
    if len(folds) < 2:
        return {r: {"modes": {}, "mode": "host", "why": "fewer than two services: no dev split"} for r in rules}
    cal_seqs = [vocab.encode(t.calls[:F.DEV_CALLS]) for t in cal]
    cal_svc = [t.meta["service"] for t in cal]
    acc = {r: {m: {"hit": [], "false": [], "n": [], "a": [], "spliced": []} for m in MODES} for r in rules}
    for hold in folds:
        nor, nov, host_s, own_s, as_s, sp_s = _fold_scores(parts, vocab, train, svc, cal, cal_seqs, cal_svc, hold,
                                                     max_calls, seed)
        n_groups = [cal_svc[i] for i in nor]
        for r in rules:
            ps = F.rule_parts(r)
            zh = {p: F.normaliser(host_s[p][nor]) for p in ps}  # z from this fold's dev normals, as fuse does
            zs = {p: F.normaliser(own_s[p]) for p in ps}

            def comb(d, z, ps=ps, r=r):
                return F.combine(r, {p: (d[p] - z[p][0]) / z[p][1] for p in ps})
            c = {"host": comb({p: host_s[p][nor] for p in ps}, zh), "service": comb(own_s, zs)}
            a_host = comb({p: host_s[p][nov] for p in ps}, zh)
            for g in sorted(as_s[ps[0]]):  # each novel trace as if it ran on g's host
                a = {"host": a_host, "service": comb({p: as_s[p][g] for p in ps}, zs)}
                for m in MODES:
                    e = acc[r][m]
                    e["hit"].append(judge(m, c, n_groups, a, [g] * len(nov), fpr))
                    key = "host" if m in ("host", "service_threshold") else "service"
                    e["n"].append(c[key])
                    e["a"].append(a[key])
            spl = {"host": comb({p: sp_s[p][0] for p in ps}, zh), "service": comb({p: sp_s[p][1] for p in ps}, zs)}
            for m in MODES:
                acc[r][m]["false"].append(judge(m, c, n_groups, c, n_groups, fpr))
                if len(spl["host"]):
                    acc[r][m]["spliced"].append(judge(m, c, n_groups, spl, n_groups, fpr))
    out = {}
    for r in rules:
        modes = {}
        for m in MODES:
            e = acc[r][m]
            dr = _rate(np.concatenate(e["hit"]))
            dr_sp = _rate(np.concatenate(e["spliced"])) if e["spliced"] else None
            modes[m] = {"dr": dr, "dr_spliced": dr_sp, "score": round(((dr or 0.0) + (dr_sp or 0.0)) / 2, 4),
                        "fpr": _rate(np.concatenate(e["false"])),
                        "auc": None if m == "either" else auc(np.concatenate(e["n"]), np.concatenate(e["a"]))}
        best = max(MODES, key=lambda m: (modes[m]["score"], m == "host"))  # a tie keeps the host-wide rule
        out[r] = {"modes": modes, "mode": best, "n_pairs": int(sum(len(x) for x in acc[r]["host"]["hit"])),
                  "why": f"{len(folds)} folds leaving services out ({'; '.join('+'.join(f) for f in folds)}); "
                         f"each left-out service's novel calibration trace judged on every remaining service's "
                         f"host (dr), and {SPLICE} of its calls spliced into the middle of each remaining service's calibration trace, "
                         f"judged on that trace's host (dr_spliced); first {F.DEV_CALLS} calls; detection at "
                         f"{fpr:.0%} of dev normals; kept: the best mean of dr and dr_spliced, a tie keeps host"}
    return out


def test_figures(mode, cal, cal_groups, normal, normal_groups, attack, attack_groups, families, fpr=0.01) -> dict:
    """Offline figures of one mode on test: detection, test normal FPR, per family."""
    a = judge(mode, cal, cal_groups, attack, attack_groups, fpr)
    n = judge(mode, cal, cal_groups, normal, normal_groups, fpr)
    c = judge(mode, cal, cal_groups, cal, cal_groups, fpr)
    fams = np.asarray(families)
    return {"dr": _rate(a), "test_normal_fpr": _rate(n), "calibration_fpr": _rate(c),
            "families": {f: _rate(a[fams == f]) for f in sorted(set(families))},
            "test_normal_fpr_by_service": {g: _rate(n[np.asarray(normal_groups) == g]) for g in sorted(set(normal_groups))}}


def ceiling(train, attacks, max_calls=None) -> dict:
    """The share of attacks not identical to a normal training trace of their own service (of any
    service where theirs has none): what per-service models can reach at best, overall and per family."""
    seen: dict[str, set] = {}
    for t in train:
        seen.setdefault(t.meta["service"], set()).add(tuple(t.calls[:max_calls]))
    anywhere = set().union(*seen.values()) if seen else set()
    dup = np.array([tuple(t.calls[:max_calls]) in seen.get(t.meta["service"], anywhere) for t in attacks], dtype=bool)
    fams = np.array([t.family for t in attacks])
    return {"overall": _rate(~dup), **{f: _rate(~dup[fams == f]) for f in sorted(set(fams.tolist()))}}


def report(train, cal, test_normal, attacks, vocab, host_scored: dict, rules: dict, max_calls=None, seed=0) -> dict:
    """The per-service block of `eval --dataset fhids --per-service`. host_scored: {detector: (cal,
    test normal, attack) Scored lists of the host model}, for each detector in rules ({detector:
    its rule, a part kind or a fused rule}) and each part. The mode is chosen on `dev` first; then
    per-service models are fitted on the full training split and every mode's test figures taken."""
    choice = dev(train, cal, vocab, sorted(set(rules.values())), max_calls=max_calls, seed=seed)
    parts = sorted({p for r in rules.values() for p in F.rule_parts(r)})
    svc = [t.meta["service"] for t in train]
    seqs = [vocab.encode(t.calls[:max_calls]) for t in train]
    sets = [(cal, 0), (test_normal, 1), (attacks, 2)]
    groups = [[t.meta["service"] for t in ts] for ts, _ in sets]
    own = {}
    for p in parts:
        models = fit_services(p, vocab, seqs, svc, seed)
        own[p] = [service_scores(models, [vocab.encode(t.calls[:max_calls]) for t in ts], groups[i],
                                 host_scored[p][i]) for ts, i in sets]
    out = {"rule_for_unknown_services": "a trace whose service has no calibration traces (Cryptomining) is "
                                        "judged by the host model at the host-wide threshold, in every mode",
           "detection_ceiling_service_models": ceiling(train, attacks, max_calls), "detectors": {}}
    for det, r in rules.items():
        ps = F.rule_parts(r)
        svc_scored = own[r] if ":" not in r else F.fuse(r, *({p: own[p][i] for p in ps} for i in range(3)))
        sc = [{"host": np.array([s.score for s in host_scored[det][i]]),
               "service": np.array([s.score for s in svc_scored[i]])} for i in range(3)]
        fams = [t.family for t in attacks]
        test = {m: test_figures(m, sc[0], groups[0], sc[1], groups[1], sc[2], groups[2], fams) for m in MODES}
        test["service_model"]["trace_auc"] = auc(sc[1]["service"], sc[2]["service"])
        test["host"]["trace_auc"] = auc(sc[1]["host"], sc[2]["host"])
        c = choice[r]
        out["detectors"][det] = {"rule": r, "dev": c, "mode": c["mode"], "chosen_on_test": test[c["mode"]],
                                 "every_mode_on_test_not_used_to_choose": test}
    return out
