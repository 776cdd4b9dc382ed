"""The per-page access signal, scored against a child that touches a known set of pages."""
import os
from pathlib import Path

import pytest

from kernelpilot.memory import pagesignal as ps

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="kpageflags and clear_refs need root")


def _state():
    swaps = Path("/proc/swaps").read_text()
    return swaps, sorted(p.name for p in Path("/sys/block").glob("zram*"))


def test_signal_accuracy_on_known_touches():
    if not Path("/sys/class/zram-control/hot_add").exists():
        pytest.skip("zram-control is not available: the refault signal needs swap")
    before = _state()
    r = ps.measure_accuracy(n_pages=2048, intervals=4, frac=0.2, seed=1)
    sig = r["signals"]
    # a page pushed out and touched comes back present: exact on the pages that were out
    assert sig["refault"]["precision"] >= 0.95 and sig["refault"]["recall_of_pages_out"] >= 0.95, sig
    assert 0.2 < sig["refault"]["pages_out_frac"] < 0.9
    # smaps counts young PTEs per mapping exactly (no page identity)
    assert r["smaps_referenced_count_error"] <= 0.05
    if ps.soft_dirty_supported():
        assert sig["soft_dirty"]["recall_of_writes"] >= 0.95
    else:
        assert "unsupported" in sig["soft_dirty"]
    assert all(v > 0 for v in r["scan_ms_per_gb"].values())
    assert _state() == before  # the zram device made for the run is gone


def test_kpageflags_reads_runs_in_place():
    """Flags come back in the caller's order whatever the PFN order (runs are re-scattered)."""
    import numpy as np
    pfns = np.array([5000, 10, 11, 5001, 3, 12], np.uint64)
    one = np.array([ps.kpageflags(np.array([x], np.uint64))[0] for x in pfns])
    assert (ps.kpageflags(pfns) == one).all()
