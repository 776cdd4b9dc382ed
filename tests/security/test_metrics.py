"""Streaming and trace metrics on hand-made scores with known answers."""
import numpy as np

from kernelpilot.security.metrics import Scored, auc, conformal_threshold, evaluate_scores, first_alarm, runs, threshold


def S(score, stream):
    stream = np.asarray(stream, dtype=float)
    return Scored(score, np.arange(1, len(stream) + 1), stream)


def test_threshold_lets_at_most_the_share_above():
    x = np.arange(100.0)          # 0..99
    assert threshold(x, 0.01) == 98.0   # only 99 is above
    assert threshold(x, 0.05) == 94.0   # 95..99 above
    assert threshold(np.ones(10), 0.01) == 1.0  # ties never alarm
    assert threshold([], 0.01) == float("inf")


def test_conformal_threshold_counts_the_calibration_traces():
    """k = ceil((n + 1) * 0.99): 114 calibration traces (UNM live_lpr's kind) -> their largest, where
    the plain 1% quantile leaves the largest one above; 540 -> the 536th smallest; 1,000 -> the 991st."""
    x = np.arange(114.0)
    assert threshold(x, 0.01) == 112.0 and conformal_threshold(x, 0.01) == 113.0
    assert conformal_threshold(np.arange(540.0), 0.01) == 535.0
    assert conformal_threshold(np.arange(1000.0), 0.01) == 990.0 and threshold(np.arange(1000.0), 0.01) == 989.0
    assert conformal_threshold(np.arange(14.0), 0.05) == 13.0 and conformal_threshold([], 0.01) == float("inf")
    # the guarantee it gives: over many draws, a fresh normal passes it at most 1% of the time
    rng = np.random.default_rng(0)
    hits = [rng.normal() > conformal_threshold(rng.normal(size=299), 0.01) for _ in range(20000)]
    assert np.mean(hits) <= 0.01 + 0.002


def test_auc_runs_first_alarm():
    assert auc([0, 1], [2, 3]) == 1.0 and auc([2, 3], [0, 1]) == 0.0 and auc([1], []) is None
    assert auc([0, 1], [1, 1]) == 0.75
    assert runs([0, 1, 1, 0, 1, 0, 0, 1, 1, 1]) == 3 and runs([]) == 0 and runs([1]) == 1
    s = S(0, [0, 0, 5, 0, 7])
    assert first_alarm(s, 4) == 3 and first_alarm(s, 6) == 5 and first_alarm(s, 9) is None
    assert first_alarm(s, 4, start=3) == 2  # counted from the attack's start


def test_evaluate_scores_known_answers():
    cal = [S(i / 100, [0, i / 100]) for i in range(100)]              # max stream 0.00 .. 0.99
    normal = [S(0.5, [0.2, 0.995, 0.995, 0.1, 0.995]), S(0.1, [0.1])]   # one ever above 0.98
    attacks = [S(2.0, [0, 0, 3, 3]), S(0.985, [0.5, 0.5]), S(0.1, [0.1, 0.99, 0.1])]
    r = evaluate_scores(cal, normal, attacks, ["A", "B", "A"])
    off, st = r["offline"]["1pct"], r["streaming"]["1pct"]
    assert off["threshold"] == 0.98 and off["detection_rate"] == round(2 / 3, 4) and off["test_normal_fpr"] == 0
    assert st["threshold"] == 0.98 and st["detection_rate"] == round(2 / 3, 4)
    assert st["false_alarm_rate"] == 0.5 and st["false_alarms"] == 3 and st["consecutive_false_alarms"] == 2
    assert st["median_latency_calls"] == 2.5  # attack 0 at call 3, attack 2 at call 2
    fa, fb = r["families"]["A"], r["families"]["B"]
    assert fa["n"] == 2 and fa["streaming_dr_1pct"] == 1.0 and fa["offline_dr_1pct"] == 0.5
    assert fb["offline_dr_1pct"] == 1.0 and fb["streaming_dr_1pct"] == 0.0
    assert r["streaming"]["5pct"]["threshold"] == 0.94
    assert r["trace_auc"] == auc([0.5, 0.1], [2.0, 0.985, 0.1])
