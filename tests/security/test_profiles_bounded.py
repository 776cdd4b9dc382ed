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


def test_many_programs_learning_hold_about_their_distinct_hashes():
    """The agent learns every program of the host for 10 minutes (80 in the soak): each queued up
    to 64 k hashes before merging them, the agent's top traced growth while it learned."""
    lp = LiveProfiles(learn_s=1e6, new_s=0)
    few = np.arange(300, dtype=np.uint64)
    for i in range(80):
        prof = lp.get(f"/usr/bin/p{i}", 0)
        for _ in range(40):  # 12,000 hashes queued, 300 distinct
            lp.learn(prof, few + np.uint64(1000 * i))
    held = sum(len(p.table) + p.queued for p in lp.progs.values())
    assert held < 80 * 2000, held
    assert all(len(p.grams()) == 300 for p in lp.progs.values())
