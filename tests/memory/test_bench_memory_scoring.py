"""The memory bench's arithmetic: best classic (listed or Perfect LFU), mix's regret against its
own experts, gap to Belady closed; the summary over all cells and over cells with room."""
import pytest

from kernelpilot.bench.memory import ROOM, _summary, score_cell

BASE = {"fifo": 0.9, "lru": 0.8, "clock": 0.8, "lfu": 0.85, "arc": 0.7, "2q": 0.75, "lirs": 0.6,
        "s3fifo": 0.65, "sieve": 0.7, "belady": 0.4}
BASE.update(plfu=0.62, lrb=0.9)


def cell(mix, **over):
    return dict(BASE, mix=mix, **over)


def test_gap_closed_and_regret():
    r = score_cell(cell(mix=0.5))
    assert r["best_classic"] == "lirs" and r["room_to_belady"] == pytest.approx(0.2)
    assert r["mix_below_best"] and r["gap_closed"] == pytest.approx(0.5)
    assert not r["learned_below_best"] and r["learned_gap_closed"] == pytest.approx(-1.5)
    # mix's experts: s3fifo, arc, lirs, lru, plfu and lrb; the best of them is lirs
    assert r["best_expert"] == "lirs" and r["mix_regret"] == pytest.approx(-0.1)
    r = score_cell(cell(mix=0.7, plfu=0.55))
    assert r["best_classic"] == "plfu" and r["mix_regret"] == pytest.approx(0.15)


def test_no_room_means_nothing_closed():
    r = score_cell(cell(mix=0.4, lirs=0.4))
    assert r["room_to_belady"] == 0 and r["gap_closed"] == 0.0 and not r["mix_below_best"]


def test_summary_counts_cells_with_room_separately():
    pol = {"traces": {"a": {"cells": {"10": score_cell(cell(mix=0.5)),
                                      "20": score_cell(cell(mix=0.45, lirs=0.4 + ROOM / 2))}},
                      "b": {"cells": {"10": score_cell(cell(mix=0.7, lrb=0.55))}},
                      "c": "not read: missing"}}
    s = _summary(pol)
    assert s["all"]["cells"] == 3 and s["with_room"]["cells"] == 2
    assert s["all"]["mix_or_learned_below_best_classic"] == "2/3"
    assert s["with_room"]["mix_or_learned_below_best_classic"] == "2/2"
    assert s["all"]["mix_worst_regret"] == pytest.approx(0.15) and s["all"]["mix_worst_regret_cell"] == "b@10"
    # b@10: mix 0.7 against the best classic, LIRS at 0.6
    assert s["all"]["mix_worst_above_best_classic"] == pytest.approx(0.1)
    assert s["targets_met"] == {"mix_worst_regret": False, "below_best_share_with_room": True,
                                "median_gap_closed": False}


def test_fetched_objects_counted_as_misses():
    """What mix's switches fetched (per scored request) is traffic no request asked for: counted
    as misses, a mixture below the best classic only by what it fetched is not below it."""
    r = score_cell(cell(mix=0.55, mix_fetched_per_request=0.1, lrb=0.58))
    assert r["mix_below_best"] and r["mix_fetched_as_misses"] == pytest.approx(0.65)
    assert not r["mix_below_best_fetched_as_misses"] and r["gap_closed_fetched_as_misses"] == pytest.approx(-0.25)
    q = score_cell(cell(mix=0.5, mix_fetched_per_request=0.02))
    assert q["mix_below_best_fetched_as_misses"] and q["gap_closed_fetched_as_misses"] == pytest.approx(0.4)
    s = _summary({"traces": {"a": {"cells": {"10": r, "20": q}}}})["with_room"]
    assert s["mix_below_best_classic"] == "2/2" and s["mix_below_best_classic_fetched_as_misses"] == "1/2"
    assert s["mix_or_learned_below_best_classic_fetched_as_misses"] == "2/2"  # r: lrb is below
    assert s["median_gap_closed_mix_fetched_as_misses"] == pytest.approx((-0.25 + 0.4) / 2)


def test_popularity_oracle_holds_the_most_requested():
    from kernelpilot.bench.memory import popularity_oracle
    from kernelpilot.memory.trace import Trace
    # window [2, 10): object 5 x4, 6 x2, 7 x1, 8 x1; a 2-object cache of 5 and 6 hits 6 of 8
    tr = Trace([1, 2, 5, 5, 6, 5, 7, 6, 5, 8], 1)
    assert popularity_oracle(tr, 2, 2) == pytest.approx(1 - 6 / 8)
    assert popularity_oracle(tr, 10, 2) == 0.0
    r = score_cell(cell(mix=0.5, popularity_oracle=0.5))
    assert r["popularity_oracle_gap_closed"] == pytest.approx(0.1 / 0.2)


def test_irm_optimal_is_the_best_online_policy_on_a_zipf_trace():
    """A0 (hold the most probable objects) on a generated Zipf trace: computed from the
    generator's own ranking, never below Belady, and what Perfect LFU's counts converge to,
    while LRU stays well behind; recorded traces have no known probabilities."""
    import numpy as np

    from kernelpilot.bench.memory import irm_optimal
    from kernelpilot.memory import policies, trace as T
    tr = T.zipf(200_000, 5000, 0.9, 3)
    d, n_obj, nxt = tr.dense()
    sz = np.ones(len(d), np.int64)
    start, cap = 100_000, 250
    a0 = irm_optimal(tr, cap, start)
    assert a0 == pytest.approx(1 - np.isin(tr.ids[start:], tr.by_popularity[:cap]).mean())
    mr = {p: 1 - policies.CLASSIC[p](d, sz, cap, n_obj)[start:].mean() for p in ("plfu", "lru")}
    opt = 1 - policies.belady(d, sz, cap, n_obj, nxt)[start:].mean()
    assert opt < a0 <= mr["plfu"] < a0 + 0.01 < mr["lru"] - 0.05, (opt, a0, mr)
    assert irm_optimal(T.loop(1000, 50), 10, 0) is None


def test_followers_that_fetch_nothing_scored_beside_mix():
    """vote and lecar (no objects fetched) get their own regret, below-best flags and gap closed,
    and the summary's targets for them beside mix's."""
    r = score_cell(cell(mix=0.5, vote=0.55, lecar=0.62, mix_fetched_per_request=0.2))
    # vote's experts are the classics (no lrb): the best of them is lirs at 0.6
    assert r["vote_below_best"] and r["vote_regret"] == pytest.approx(-0.05)
    assert r["vote_gap_closed"] == pytest.approx(0.25) and not r["lecar_below_best"]
    q = score_cell(cell(mix=0.5, vote=0.66, lecar=0.5, lrb=0.58))
    assert not q["vote_below_best"] and q["vote_regret"] == pytest.approx(0.06) and q["lecar_below_best"]
    s = _summary({"traces": {"a": {"cells": {"10": r, "20": q}}}})
    w = s["with_room"]
    assert w["vote_below_best_classic"] == "1/2" and w["vote_or_learned_below_best_classic"] == "2/2"
    assert w["lecar_below_best_classic"] == "1/2" and w["median_gap_closed_vote"] == pytest.approx((0.25 - 0.3) / 2)
    assert s["all"]["vote_worst_regret"] == pytest.approx(0.06) and s["all"]["vote_worst_regret_cell"] == "a@20"
    assert s["targets_met_without_fetching"] == {"vote_worst_regret": False, "below_best_share_with_room": True,
                                                 "median_gap_closed": False}


def test_vote_with_lrb_scored_against_lrb_too_and_the_classic_vote_beside():
    """Where the cell has vote_classic (vote without lrb), vote's experts include lrb: its regret
    is against the best of the classics and lrb; vote_classic's against the classics alone."""
    r = score_cell(cell(mix=0.5, vote=0.55, vote_classic=0.61, lecar=0.62, lrb=0.52))
    assert r["vote_regret"] == pytest.approx(0.03) and r["vote_below_best"]  # lrb at 0.52 is its best
    assert r["vote_classic_regret"] == pytest.approx(0.01) and not r["vote_classic_below_best"]
    assert r["vote_classic_gap_closed"] == pytest.approx(-0.05)
    q = score_cell(cell(mix=0.5, vote=0.66, vote_classic=0.59, lecar=0.5))
    s = _summary({"traces": {"a": {"cells": {"10": r, "20": q}}}})
    w = s["with_room"]
    assert w["vote_classic_below_best_classic"] == "1/2" and w["vote_classic_or_learned_below_best_classic"] == "2/2"
    assert s["all"]["vote_classic_worst_regret"] == pytest.approx(0.01)
    assert s["all"]["vote_classic_worst_regret_cell"] == "a@10"
    assert s["all"]["vote_worst_regret"] == pytest.approx(0.06)
