"""The swap bench's intervals (memory/swapstats.py): Fieller's interval of a ratio of paired means,
verdicts that refuse to decide inside it, and the rounds it would take to decide."""
import math

import numpy as np
from scipy import stats

from kernelpilot.memory import swapstats as S


def _tstat(a, b, r):
    d = np.asarray(a) - r * np.asarray(b)
    return d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))


def test_fieller_interval_is_the_ratios_a_paired_t_test_does_not_reject():
    rng = np.random.default_rng(0)
    b = 100 + rng.normal(0, 15, 7)
    a = 0.8 * b + rng.normal(0, 6, 7)
    r = S.ratio(a, b)
    crit = stats.t.ppf(0.95, 6)
    lo, hi = r["ci"]
    assert lo < r["estimate"] < hi and abs(r["estimate"] - a.mean() / b.mean()) < 1e-12
    assert abs(abs(_tstat(a, b, lo)) - crit) < 1e-6 and abs(abs(_tstat(a, b, hi)) - crit) < 1e-6
    for x in np.linspace(lo, hi, 9)[1:-1]:
        assert abs(_tstat(a, b, x)) < crit
    assert abs(_tstat(a, b, lo - 0.01)) > crit and abs(_tstat(a, b, hi + 0.01)) > crit


def test_ratio_over_a_mean_not_surely_away_from_zero_is_unbounded():
    # a Senpai that saved 1, -2, 2 MB: no ratio of savings to it is excluded
    r = S.ratio([5.0, 4.0, 6.0], [1.0, -2.0, 2.0])
    assert r["ci"] is None and abs(r["estimate"] - 15.0) < 1e-9
    assert S.judge(r, 1.2, at_least=True)["verdict"] == "undecided"


def test_judge_decides_only_outside_the_interval_and_says_how_many_rounds_would():
    a, b = [52.0, 60.0, 47.0], [62.0, 61.0, 63.0]   # usage: kernelpilot's, the kernel's, 3 rounds
    s = S.shift(S.ratio(a, b), -1.0, 1.0)             # saved
    j = S.judge(s, 0.2, at_least=True)
    lo, hi = j["ci"]
    assert lo < 0.2 < hi and j["verdict"] == "undecided" and j["rounds_needed"] > 3
    # the same rounds over again, as many as it asked for: now it is decided, one round fewer is not
    n = j["rounds_needed"]
    reps = math.ceil(n / 3) + 1
    more = S.judge(S.shift(S.ratio(a * reps, b * reps), -1.0, 1.0), 0.2, at_least=True)
    assert more["verdict"] == "missed"  # saved ~14 %, surely under 20 %
    assert S.judge(S.shift(S.ratio(a * 50, b * 50), -1.0, 1.0), 0.1, at_least=True)["verdict"] == "met"


def test_rounds_for_is_the_fewest_rounds_whose_interval_is_narrower():
    n = S.rounds_for(1.0, 0.5)
    assert stats.t.ppf(0.95, n - 1) / math.sqrt(n) < 0.5 <= stats.t.ppf(0.95, n - 2) / math.sqrt(n - 1)
    assert S.rounds_for(1.0, 0.0) is None


def _rounds(kp_usage, sp_usage, k_usage, kp_s=None, sp_s=None, k_s=None):
    runs = []
    for i, (kp, sp, k) in enumerate(zip(kp_usage, sp_usage, k_usage)):
        for c, u, s in (("kernel", k, (k_s or [10.0] * 99)[i]), ("senpai", sp, (sp_s or [10.0] * 99)[i]),
                        ("kernelpilot", kp, (kp_s or [10.0] * 99)[i])):
            runs.append({"config": c, "rep": i, "exit_code": 0, "seconds": s, "mean_usage_mb": u,
                         "psi_cpu_some_ms": 0.0, "program_major_faults": 0})
    return runs


def _bench(runs):
    from kernelpilot.bench.swap import _intervals
    return _intervals({"kv": {"runs": runs}})


def test_bench_says_three_noisy_rounds_cannot_decide_its_targets():
    # kv-like: the kernel's rounds spread 120-173 MB; kernelpilot's median saving 1.3x Senpai's
    runs = _rounds([100.0, 150.0, 118.0], [110.0, 140.0, 130.0], [173.0, 150.0, 120.0])
    iv = _bench(runs)
    vs = iv["vs_senpai_savings_ge_1.2x"]["kv"]
    assert vs["ratio"]["verdict"] == "undecided"
    assert "vs_senpai_savings_ge_1.2x" in iv["undecided"] and "too few rounds" in iv["note"]
    assert iv["saved_ge_20pct_at_le_5pct_slowdown"]["kv"]["saved"]["verdict"] == "undecided"


def test_bench_decides_where_the_rounds_agree():
    k = [150.0 + d for d in (0, 2, -1, 1, -2, 0, 1, -1)]
    kp = [x * 0.7 + e for x, e in zip(k, (0.5, -0.5, 0.3, 0, -0.3, 0.2, -0.2, 0))]
    sp = [x * 0.85 + e for x, e in zip(k, (0.2, -0.4, 0.1, 0.3, -0.1, 0, 0.2, -0.3))]
    iv = _bench(_rounds(kp, sp, k, kp_s=[10.1, 10.2, 10.0, 10.1, 10.2, 10.1, 10.0, 10.1]))
    assert iv["saved_ge_20pct_at_le_5pct_slowdown"]["verdict"] == "met"   # 30 % at +1 %
    assert iv["vs_senpai_savings_ge_1.2x"]["verdict"] == "met"            # 2x Senpai's
    assert iv["undecided"] == [] and "note" not in iv
    # a kernelpilot 20 % slower in every round: surely missed, whatever it saved
    iv = _bench(_rounds(kp, sp, k, kp_s=[12.0, 12.1, 11.9, 12.0, 12.2, 11.8, 12.0, 12.1]))
    assert iv["saved_ge_20pct_at_le_5pct_slowdown"]["verdict"] == "missed"


def test_a_failed_run_drops_its_round():
    runs = _rounds([100.0, 101.0, 99.0], [110.0, 111.0, 109.0], [150.0, 151.0, 149.0])
    runs[-1]["exit_code"] = -9
    assert len(S.paired_rounds(runs, ("kernel", "senpai", "kernelpilot"))) == 2
