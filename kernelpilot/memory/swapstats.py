"""How sure the swap bench is of each ratio it judges: 90 % intervals over its interleaved rounds.

A round runs every config once, back to back (swaprun.experiment), so the shared host's load falls
on all of them alike: each ratio is taken over rounds, paired by round. A ratio of two per-round
quantities (a over b: a config's mean usage over the kernel's, ...) is the ratio of their means,
and its interval is Fieller's: the R for which the mean of a - R*b is within a t-interval of 0.
It is unbounded where b's mean is not surely away from 0 (a Senpai that saved nothing for sure).
A target's verdict is `met` or `missed` only where its threshold is outside the interval, else
`undecided`; `rounds_needed` is how many rounds would put the threshold outside it, at the
estimate and the spread seen (delta method)."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

LEVEL = 0.90
MAX_ROUNDS = 10000


def paired_rounds(runs: list[dict], configs) -> list[dict]:
    """The scored rounds in which every config of `configs` ran and exited 0: {config: run}."""
    by: dict = {}
    for r in runs:
        if r.get("rep") != "history" and r["config"] in configs:
            by.setdefault(r["rep"], {})[r["config"]] = r
    return [v for _, v in sorted(by.items(), key=lambda kv: str(kv[0]))
            if len(v) == len(configs) and all(x["exit_code"] == 0 for x in v.values())]


def _t(n: int, level: float) -> float:
    return float(stats.t.ppf(0.5 + level / 2, n - 1))


def rounds_for(sd: float, gap: float, level: float = LEVEL) -> int | None:
    """The fewest rounds whose `level` interval (t, sd per round) is narrower than `gap` each side."""
    if gap <= 0 or not math.isfinite(sd):
        return None
    if sd == 0:
        return 2
    n = max(2, math.ceil((stats.norm.ppf(0.5 + level / 2) * sd / gap) ** 2))
    while n < MAX_ROUNDS and _t(n, level) * sd / math.sqrt(n) >= gap:
        n += 1
    return n if n < MAX_ROUNDS else None


def ratio(a, b, level: float = LEVEL) -> dict:
    """mean(a) / mean(b) over paired rounds, its Fieller interval (None: unbounded, or under 2
    rounds) and the ratio's spread per round (sd of a - R*b over |mean b|: its interval over n
    rounds is about t * sd / sqrt(n) each side)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    n, ma, mb = len(a), float(a.mean()) if len(a) else 0.0, float(b.mean()) if len(b) else 0.0
    if n == 0 or mb == 0:
        return {"estimate": None, "ci": None, "rounds": n, "sd": None}
    est = ma / mb
    if n < 2:
        return {"estimate": est, "ci": None, "rounds": n, "sd": None}
    sd = float(np.std(a - est * b, ddof=1)) / abs(mb)
    q = _t(n, level) ** 2 / n
    saa, sbb, sab = float(np.var(a, ddof=1)), float(np.var(b, ddof=1)), float(np.cov(a, b)[0, 1])
    qa, qb, qc = mb * mb - q * sbb, ma * mb - q * sab, ma * ma - q * saa
    if qa <= 0:  # b's mean is within its own interval of 0: every R fits
        return {"estimate": est, "ci": None, "rounds": n, "sd": sd}
    d = math.sqrt(max(qb * qb - qa * qc, 0.0))
    return {"estimate": est, "ci": [(qb - d) / qa, (qb + d) / qa], "rounds": n, "sd": sd}


def shift(r: dict, scale: float = 1.0, offset: float = 0.0) -> dict:
    """r's estimate, interval and spread as offset + scale * R (saved = 1 - usage ratio: -1, +1)."""
    out = dict(r)
    if r["estimate"] is not None:
        out["estimate"] = offset + scale * r["estimate"]
    if r["ci"] is not None:
        out["ci"] = sorted(offset + scale * x for x in r["ci"])
    if r["sd"] is not None:
        out["sd"] = abs(scale) * r["sd"]
    return out


def judge(r: dict, threshold: float, at_least: bool, level: float = LEVEL) -> dict:
    """r (a ratio) against a target `>= threshold` (at_least) or `<= threshold`: met or missed
    only where the threshold is outside the interval; rounds_needed where it is not."""
    out = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
    if r["ci"] is not None:
        out["ci"] = [round(x, 4) for x in r["ci"]]
    lo, hi = r["ci"] if r["ci"] is not None else (-math.inf, math.inf)
    if (lo >= threshold) if at_least else (hi <= threshold):
        out["verdict"] = "met"
    elif (hi < threshold) if at_least else (lo > threshold):
        out["verdict"] = "missed"
    else:
        out["verdict"] = "undecided"
        est = r["estimate"]
        out["rounds_needed"] = None if est is None or r["sd"] is None else rounds_for(r["sd"], abs(est - threshold), level)
    return out


def both(*verdicts: str) -> str:
    """Verdict of a target that needs all its parts: missed if one is, met if all are."""
    if "missed" in verdicts:
        return "missed"
    return "met" if all(v == "met" for v in verdicts) else "undecided"


def _col(rounds, config, key):
    return [r[config][key] if key != "seconds_less_cpu_wait" else
            r[config]["seconds"] - r[config]["psi_cpu_some_ms"] / 1e3 for r in rounds]


def faults(run: dict) -> float:
    """The program's major faults and those its agent took for it (keep_hot's touches)."""
    return run["program_major_faults"] + run.get("agent_major_faults", 0)


def saved(rounds, c: str) -> dict:
    """1 - c's mean usage over the kernel's."""
    return shift(ratio(_col(rounds, c, "mean_usage_mb"), _col(rounds, "kernel", "mean_usage_mb")), -1.0, 1.0)


def slowdown(rounds, c: str, key: str = "seconds") -> dict:
    """c's run time over the kernel's, less 1 (key seconds_less_cpu_wait: less the CPU wait)."""
    return shift(ratio(_col(rounds, c, key), _col(rounds, "kernel", key)), 1.0, -1.0)


def savings_ratio(rounds, c: str = "kernelpilot", ref: str = "senpai") -> dict:
    """c's memory saved against the kernel's over ref's (MB saved in each round, paired)."""
    k = np.asarray(_col(rounds, "kernel", "mean_usage_mb"))
    return ratio(k - np.asarray(_col(rounds, c, "mean_usage_mb")), k - np.asarray(_col(rounds, ref, "mean_usage_mb")))


def slowdown_gap(rounds, c: str = "kernelpilot", ref: str = "senpai", key: str = "seconds") -> dict:
    """c's slowdown less ref's: (c's run time - ref's) over the kernel's."""
    return ratio(np.asarray(_col(rounds, c, key)) - np.asarray(_col(rounds, ref, key)), _col(rounds, "kernel", key))


def fault_ratio(rounds, c: str = "kernelpilot", agent: bool = True) -> dict:
    f = faults if agent else (lambda r: r["program_major_faults"])
    return ratio([f(r[c]) for r in rounds], [f(r["kernel"]) for r in rounds])


def speed_ratio(rounds, c: str = "kernelpilot") -> dict:
    """The kernel's run time over c's."""
    return ratio(_col(rounds, "kernel", "seconds"), _col(rounds, c, "seconds"))
