"""mix's successive elimination: the resumable kernels equal the whole-trace ones, the experts it
stops are exactly those the rule (Hoeffding width, confidence split over the checks) drops when
recomputed from full runs, the best expert of an independent-reference trace is kept, the
follow-the-leader bound holds against the experts kept, and the learned expert's run on a cut
trace is the prefix of its full run."""
import numpy as np
import pytest

from kernelpilot.memory import mix, models, policies, trace as T


def _full(d, sz, cap, n_obj, experts):
    return np.stack([policies.CLASSIC[e](d, sz, cap, n_obj) for e in experts])


@pytest.mark.parametrize("sized", [False, True])
def test_resumable_kernels_equal_whole_trace(sized):
    tr = T.with_sizes(T.mixed(20_000, 900, 5), seed=2) if sized else T.mixed(20_000, 900, 5)
    d, n_obj, _ = tr.dense()
    sz = tr.sizes if sized else np.ones(len(d), np.int64)
    cap = tr.footprint(not sized) // 8
    for name, (init, run) in policies.RESUMABLE.items():
        whole = np.zeros((len(d) + 2, 2), np.int64)
        h = policies.CLASSIC[name](d, sz, cap, n_obj, whole)
        parts, st, hp = np.zeros_like(whole), init(d, cap, n_obj), np.zeros(len(d), np.uint8)
        for t0 in range(0, len(d), 3001):
            run(d, sz, cap, t0, min(len(d), t0 + 3001), hp, parts, st)
        assert (h == hp).all() and (whole == parts).all(), name


def test_width_and_eliminate():
    assert mix.width(4 * 10_000, 5) == pytest.approx(2 * mix.width(10_000, 5))
    assert mix.width(10_000, 5, 1e-6) > mix.width(10_000, 5, 1e-3)
    w = mix.width(10_000, 3)
    drop = mix.eliminate(np.array([100, 100 + int(w), 101 + int(w) + 1]), 10_000)
    assert drop.tolist() == [False, False, True]
    assert not mix.eliminate(np.array([7, 7, 7]), 10).any()


def _expected_pruned(full, n, warm, chunk, delta):
    """The rule replayed from full runs: after each chunk ending at t >= warm (before the end), the
    j-th check drops the experts whose misses over [0, t) exceed the fewest by width(t, alive, delta_j)."""
    alive, out, j = list(range(len(full))), {}, 0
    for t in range(chunk, n, chunk):
        if t < warm or len(alive) < 2:
            continue
        j += 1
        m = t - full[alive, :t].sum(1, dtype=np.int64)
        w = mix.width(t, len(alive), delta / (j * (j + 1)))
        out.update({e: t for e, x in zip(alive, m - m.min() > w) if x})
        alive = [e for e, x in zip(alive, m - m.min() > w) if not x]
    return out


@pytest.mark.parametrize("make,frac", [(lambda: T.zipf(120_000, 4000, 1.0, 3), 0.05),
                                       (lambda: T.mixed(120_000, 1500, 6), 0.1),
                                       (lambda: T.loop(120_000, 900, 2), 0.1)])
def test_pruned_experts_are_the_rule_s_and_the_bound_holds_over_the_kept(make, frac):
    tr = make()
    d, n_obj, _ = tr.dense()
    sz = np.ones(len(d), np.int64)
    cap = max(2, int(frac * n_obj))
    warm, chunk = 10_000, 4096
    f = mix.serve(d, sz, cap, n_obj, None, warm=warm, chunk=chunk)
    full = _full(d, sz, cap, n_obj, mix.EXPERTS)
    expect = _expected_pruned(full, len(d), warm, chunk, mix.DELTA)
    assert f.pruned == {mix.EXPERTS[e]: t for e, t in expect.items()}
    assert f.pruned, "these fixtures have experts far behind"
    kept = [e for e, name in enumerate(mix.EXPERTS) if name not in f.pruned]
    assert (f.hits[kept] == full[kept]).all()  # a kept expert ran in full, as alone
    for e, name in enumerate(mix.EXPERTS):  # a pruned one ran until its prune, no further
        if name in f.pruned:
            t = f.pruned[name]
            assert (f.hits[e, :t] == full[e, :t]).all() and not f.hits[e, t:].any()
    margin = max(1.0, mix.MARGIN * cap)
    misses, best = int((1 - f.hit).sum()), int((1 - full[kept]).sum(1).min())
    assert misses <= best + (f.switches + 1) * (margin + 1), (misses, best, f.switches)


def test_independent_requests_keep_the_best_expert():
    # independent Zipf draws (the model the width is derived for): the expert best in hindsight
    # survives every check, while the ones far behind (FIFO, CLOCK, ...) are stopped early
    tr = T.zipf(200_000, 5000, 0.9, 11)
    d, n_obj, _ = tr.dense()
    sz = np.ones(len(d), np.int64)
    for cap in (50, 250, 1000):
        f = mix.serve(d, sz, cap, n_obj, None, warm=10_000, chunk=4096)
        full = _full(d, sz, cap, n_obj, mix.EXPERTS)
        best = mix.EXPERTS[int((1 - full).sum(1).argmin())]
        assert best not in f.pruned, (cap, best, f.pruned)
        assert "fifo" in f.pruned and f.pruned["fifo"] < len(d) // 2, (cap, f.pruned)


def test_without_pruning_it_is_the_follower_over_full_runs():
    tr = T.mixed(40_000, 1200, 7)
    d, n_obj, _ = tr.dense()
    sz = np.ones(len(d), np.int64)
    names, hits, logs = mix.expert_logs(d, sz, 120, n_obj, None)
    ref = mix.follow(names, hits, logs, d, sz, 120, n_obj)
    f = mix.serve(d, sz, 120, n_obj, None, prune=False)
    assert not f.pruned and (f.hit == ref.hit).all() and f.switches == ref.switches


def test_learned_expert_on_a_cut_trace_is_its_full_run_s_prefix():
    tr = T.mixed(30_000, 1000, 8)
    d, n_obj, _ = tr.dense()
    sz = np.ones(len(d), np.int64)
    cap, start = 100, 15_000
    model = models.train("lrb", tr, cap, True, start)
    fn = mix.learned_expert("lrb", tr, sz, cap, model)
    full_log, cut_log = mix._logs(1, len(d))[0], mix._logs(1, len(d))[0]
    full, cut = fn(full_log), fn(cut_log, 20_000)
    assert len(cut) == 20_000 and (cut == full[:20_000]).all()
    rows = int((full_log[1:full_log[0, 0] + 1, 0] < 20_000).sum())
    assert cut_log[0, 0] == rows and (cut_log[1:rows + 1] == full_log[1:rows + 1]).all()
    # in the mixture: lrb (first half in-sample) leads only from `start`; the bound holds over
    # the second half against every expert kept
    f = mix.serve(d, sz, cap, n_obj, fn, learned_from=start, warm=5000, chunk=2048)
    kept = [e for e, name in enumerate(f.names) if name not in f.pruned]
    best = int((1 - f.hits[kept, start:]).sum(1).min())
    assert int((1 - f.hit[start:]).sum()) <= best + (f.switches + 1) * (max(1.0, mix.MARGIN * cap) + 1)


def test_default_warm_up_is_in_requests_and_cache_sizes():
    # no expert stops before WARM requests nor before WARM_CACHES cache sizes (a large cache
    # is still cold after WARM requests: P2 and P3 lost 3.5-4 points to experts pruned there)
    tr = T.zipf(200_000, 30_000, 0.9, 4)
    d, n_obj, _ = tr.dense()
    sz = np.ones(len(d), np.int64)
    cap = 6000
    f = mix.serve(d, sz, cap, n_obj, None, experts=("plfu", "fifo", "lfu"))
    assert f.pruned and min(f.pruned.values()) >= max(mix.WARM, mix.WARM_CACHES * cap), f.pruned


def test_a_kept_learned_expert_resumes_its_run():
    """mix serves lrb's prefix to its check, then the rest of the same run (not a second run from
    the start): the same hits and log as one full run, refits included, and the same mixture."""
    tr = T.mixed(30_000, 1000, 3)
    d, n_obj, _ = tr.dense()
    sz = np.ones(len(d), np.int64)
    cap, start = 100, 15_000
    model = models.train("lrb", tr, cap, True, start)
    model.meta.update(retrain_every=3000, retrain_samples=4000)  # checks at 18, 21, 24, 27 k
    fn = mix.learned_expert("lrb", tr, sz, cap, model)
    full_log, part_log = mix._logs(1, len(d))[0], mix._logs(1, len(d))[0]
    refits = []
    full = models.run("lrb", tr, sz, cap, model, full_log, refits)
    assert [e["refit"] for e in refits] == [True] * 4
    assert (fn(part_log, 22_000) == full[:22_000]).all()
    assert (fn.resume() == full).all()
    rows = int(full_log[0, 0])
    assert part_log[0, 0] == rows and (part_log[1:rows + 1] == full_log[1:rows + 1]).all()
    served = []
    counted = mix.learned_expert("lrb", tr, sz, cap, model)

    def learned(evl, end=None):
        served.append(len(d) if end is None else end)
        return counted(evl, end)
    learned.prefix_ok, learned.resume = True, counted.resume
    f = mix.serve(d, sz, cap, n_obj, learned, learned_from=start, warm=5000, chunk=2048)
    assert served == [20_000] and "lrb" not in f.pruned and (f.hits[-1] == full).all()
