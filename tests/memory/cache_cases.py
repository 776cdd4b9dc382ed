"""Small traces and cache sizes the eviction-log replay tests share (test_mix, test_vote)."""
import numpy as np

from kernelpilot.memory import trace as T

CASES = [lambda: T.mixed(30_000, 1200, 2), lambda: T.zipf(30_000, 2500, 1.0, 1),
         lambda: T.with_sizes(T.mixed(30_000, 1200, 2), seed=4)]


def cells(make):
    """-> (dense ids, sizes, n_obj, cache sizes) for one of CASES (byte sizes for the sized one)."""
    tr = make()
    d, n_obj, _ = tr.dense()
    unit = not tr.name.endswith("sized")
    sz = np.ones(len(d), np.int64) if unit else tr.sizes
    caps = (10, 100, 600) if unit else (tr.footprint(False) // 40, tr.footprint(False) // 7)
    return d, sz, n_obj, caps
