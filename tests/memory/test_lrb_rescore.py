"""lrb's eviction kernel scores a sampled object again only when its age changes a tree's path
(models._pick_lrb); it must decide exactly as the plain rule: score again whenever the age
bucket changes, evict the largest t + 2^score."""
import numpy as np

from kernelpilot.memory import features as F, models, trace as T
from kernelpilot.models.format import Model


def _plain_lrb(tr, cap, model):
    """The plain rule in Python (no refits): -> (hit flags, evictions as (t, object))."""
    d, n_obj, _ = tr.dense()
    g, pg, n_grp = tr.groups()
    cf, ct, cv, bias = models.complete(model)
    hl = F.half_lives(cap)
    st = np.full(1, np.uint64(0x9E3779B97F4A7C15) + np.uint64(1), np.uint64)
    fs = F.state_nb(n_obj, n_grp)
    xs = np.empty((n_obj, F.N_FEAT))
    key, bucket = np.zeros(n_obj), np.zeros(n_obj)
    fresh = np.zeros(n_obj, bool)
    cached, slot = [], {}
    hit, ev = np.zeros(len(d), np.uint8), []
    for t, i in enumerate(d):
        F.update(i, g[t], pg[t], t, 1, *fs, hl, xs, i)
        fresh[i] = False
        if i in slot:
            hit[t] = 1
            continue
        if len(cached) >= cap:
            best, bscore = -1, -1e300
            for _ in range(min(models.K, len(cached))):
                c = cached[models._rand(st, len(cached))]
                b = float(models.age_bucket(t - fs[0][c]))
                if not fresh[c] or bucket[c] != b:
                    key[c] = models._walk(np.append(xs[c], b)[None, :], 0, cf, ct, cv, bias)
                    bucket[c], fresh[c] = b, True
                v = t + 2.0 ** key[c]
                if v > bscore:
                    best, bscore = c, v
            j = slot.pop(best)
            moved = cached.pop()  # the last cached object takes the evicted one's place
            if moved != best:
                cached[j] = moved
                slot[moved] = j
            ev.append((t, best))
        slot[i] = len(cached)
        cached.append(i)
    return hit, np.array(ev, np.int64).reshape(-1, 2)


def _kernel_lrb(tr, cap, model):
    log = np.zeros((len(tr) + 2, 2), np.int64)
    hit = models.run("lrb", tr, np.ones(len(tr), np.int64), cap, model, log)
    return hit, log[1:int(log[0, 0]) + 1]


def test_lrb_kernel_decides_as_the_plain_rule():
    # a loop, then skewed draws over other objects: young and old objects, ages passing thresholds
    tr = T.Trace(np.concatenate([T.loop(4000, 400, 1).ids, T.zipf(6000, 2000, 0.8, 2).ids + 10**6]), 1)
    m = models.train("lrb", tr, 120, True, 5000)
    m = Model(m.kind, m.feature_names, m.params, dict(m.meta, retrain_every=0))  # no refits
    hit, ev = _kernel_lrb(tr, 120, m)
    ref_hit, ref_ev = _plain_lrb(tr, 120, m)
    assert len(ev) > 3000
    assert np.array_equal(hit, ref_hit) and np.array_equal(ev, ref_ev)


def test_age_steps_are_where_the_bucket_passes_each_threshold():
    ages = np.arange(0, 1 << 16)
    buckets = models.age_bucket(ages)
    for thr in np.arange(-0.25, 15.0, 0.25):
        first = int(ages[np.argmax(buckets > thr)])
        assert models._next_bucket(-1, thr) == first
        for age in (0, first // 2, first - 1):
            if 0 <= age < first:
                assert models._next_bucket(age, thr) == first
