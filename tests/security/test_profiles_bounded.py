"""A program learning the same windows for a long time keeps bounded memory (the 30-min agent soak
grew by the profiles' queued copies of the same hashes)."""
import numpy as np

from kernelpilot.security.profiles import LiveProfiles


def test_repeated_learning_is_compacted():
    lp = LiveProfiles(learn_s=1e6, new_s=0)
    prof = lp.get("/usr/bin/busy", 0)
    same = np.arange(5000, dtype=np.uint64)
    for _ in range(200):  # 1 M hashes queued, 5,000 distinct
        lp.learn(prof, same)
        lp.relearn(prof, same, 1)
    held = len(prof.table) + sum(len(p) for p in prof.parts)
    assert held < 80_000, held
    assert len(prof.grams()) == 5000
    assert prof.learned == 200 and prof.relearned == 200
