"""The cold pusher keeps its horizon and page history in time, not in scans: the same pages going
out and coming back at the same times get the same labels and quick-return counts whether it
scans every 0.1 s or, slowed by load or by its own cost, every 0.3 s."""
import numpy as np

from kernelpilot.memory import reclaim as R

PRESENT, SWAPPED = np.uint64(1 << 63), np.uint64(1 << 62)
OUT = {0: (0.55, 0.85), 1: (0.55, 1.75)}  # page: out from, back at (s); pages 2 and 3 stay in


class Scripted(R.ColdPusher):
    """One region of 4 pages whose pagemap entries the test sets."""
    ent = None

    def pagemap(self, pid):
        yield 0x10000, 0x10000 + 4 * R.PAGE, self.ent.copy()


def _run(dt):
    c = Scripted()
    for k in range(int(3.0 / dt) + 1):
        t = k * dt
        c.ent = np.array([SWAPPED if p in OUT and OUT[p][0] <= t < OUT[p][1] else PRESENT for p in range(4)],
                         np.uint64)
        c.scan(1, now=100.0 + t)
    (r,) = c.regions.values()
    return c, r


def test_labels_and_quick_returns_do_not_depend_on_the_scan_interval():
    """Page 0 is out 0.3 s (within the 0.65 s horizon), page 1 out 1.2 s. Counted in scans, the
    0.3 s cadence saw page 1 back within 6 scans (4) and labelled it a quick refault; and the old
    first scan counted every page as out once (its 'pushed at the last scan' matched the -1 of
    never pushed), halving every page's quick-return share from the start."""
    (fast, r_fast), (slow, r_slow) = _run(0.1), _run(0.3)
    for c, r in ((fast, r_fast), (slow, r_slow)):
        assert c.labels == 2 and c.refaulted == 1   # page 0 came back in time, page 1 did not
        assert r.fast.tolist() == [1, 0, 0, 0]      # only page 0's return was quick
        assert r.outs.tolist() == [1, 1, 0, 0]
    assert np.allclose(r_fast.last_ref[:2], [0.9, 1.8]) and np.allclose(r_slow.last_ref[:2], [0.9, 1.8])


def test_keep_hot_touches_the_pages_the_kernel_kept_present_most(monkeypatch):
    """Pages 2 and 3 go out and come back quickly each second, pages 0 and 1 are always present:
    P ranks the quick returners hotter (their quick-return share is evidence, the others have
    none), but the pages kept present are what a program reads most, and the ones to keep."""
    touched = []
    monkeypatch.setattr(R, "touch", lambda pid, addrs: touched.append(sorted(addrs)) or len(addrs))
    c = Scripted()
    for k in range(30):
        t = k * 0.1
        c.ent = np.array([PRESENT, PRESENT] + [SWAPPED if k % 10 == 5 else PRESENT] * 2, np.uint64)
        c.scan(1, now=t)
    (r,) = c.regions.values()
    assert r.fast[2] > 0 and r.fast[0] == 0  # P has the evidence for pages 2 and 3
    c.keep = 0.0  # every present page a candidate
    c.keep_hot(1, 2)
    assert touched == [[0x10000, 0x10000 + R.PAGE]]


def test_the_horizon_is_the_programs_own_time_not_the_wall_clock():
    """A page out across 0.8 s of wall time in which the program did no work (here: this process,
    asleep; on a loaded host: waiting for a CPU) came back after no work of its own: within the
    horizon. In wall time it was past the 0.65 s horizon, and labelled cold."""
    import os
    import time
    c = Scripted()
    for k, state in enumerate([PRESENT, SWAPPED, PRESENT]):
        c.ent = np.array([state, PRESENT, PRESENT, PRESENT], np.uint64)
        c.scan(os.getpid())
        if k == 1:
            time.sleep(0.8)
    (r,) = c.regions.values()
    assert c.labels == 1 and c.refaulted == 1 and r.fast[0] == 1


def test_keep_hot_touches_at_most_its_page_budget_per_second(monkeypatch):
    """keep_hot touches at most `hot_rate` pages per second of its clock (the program's own time
    by default), a second's worth held over at most: uncapped, it touched 73-103k pages a hot/cold run on two shared cores (a
    scan asks for up to 35 % of the limit each time) and the program ran slower than the kernel's."""
    touched = []
    monkeypatch.setattr(R, "touch", lambda pid, addrs: touched.append(len(addrs)) or len(addrs))
    now = [0.0]
    c = R.ColdPusher(hot_rate=1000, hot_clock=lambda pid: now[0])
    c._hot[1] = 0x10000 + np.arange(5000) * R.PAGE
    for t, want in ((0.0, 1000), (0.25, 250), (0.375, 125), (10.0, 1000), (10.0, 0)):
        now[0] = t
        assert c.keep_hot(1, 5000) == want
    assert touched == [1000, 250, 125, 1000]
    # asked for fewer than the budget: the rest stays for the next call
    now[0] = 11.0
    assert c.keep_hot(1, 300) == 300 and c.keep_hot(1, 5000) == 700
    uncapped = R.ColdPusher(hot_rate=0)
    uncapped._hot[1] = c._hot[1]
    assert uncapped.keep_hot(1, 5000) == 5000
