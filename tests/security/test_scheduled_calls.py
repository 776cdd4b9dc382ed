"""Calls whose place depends on the scheduler (features.SCHEDULED: futex) are left out of a live
model's n-gram stages. An http.server worker thread waits for Python's GIL at different calls in
every run; with futex in its 6-grams, a watch judging from the start confirmed such windows (and
opened an incident) in runs of the benign http_server scenario."""
import numpy as np
import pytest
from sec_common import need_root_ebpf

from kernelpilot.security.confirm import BatchScorer
from kernelpilot.security.detectors import Stide
from kernelpilot.security.features import SCHEDULED, Trace
from kernelpilot.security.live import ALERT_DTYPE, CTX
from kernelpilot.security.model import SecurityModel
from kernelpilot.security.syscalls import number_to_name

# a ThreadingHTTPServer worker's calls (as the watch sent them up), before the GIL's futex calls
WORKER = ("rseq set_robust_list rt_sigprocmask gettid mmap gettid recvfrom newfstatat openat newfstatat ioctl "
          "lseek newfstatat write sendto read read sendto read close shutdown close munmap rt_sigprocmask "
          "madvise exit").split()
SHELL = ("execve brk mmap openat newfstatat mmap close openat read mmap close rt_sigaction rt_sigprocmask "
         "getpid clone4 wait4 rt_sigreturn write exit_group").replace("clone4", "clone").split()
NR = {name: nr for nr, name in number_to_name("x86_64").items()}


def gil(calls, rng, slots):
    """calls with 1-3 futex calls at random places among `slots` (indices to insert before)."""
    out = list(calls)
    for at in sorted(rng.choice(slots, size=rng.integers(1, 4), replace=False), reverse=True):
        out.insert(int(at), "futex")
    return out


def traces(seed, n, slots):
    rng = np.random.default_rng(seed)
    work = [Trace(f"w{seed}-{i}", gil(WORKER, rng, slots) * 3, comm="python") for i in range(n)]
    return work + [Trace(f"s{seed}-{i}", SHELL * 20, comm="bash") for i in range(4)]


# training and calibration see the futex calls among the first requests' calls; live, the
# scheduler puts them elsewhere
TRAIN_SLOTS, LIVE_SLOTS = [7, 8, 9], [10, 12, 14, 17, 19]


def test_stide_skipping_futex_scores_where_futex_fell_alike():
    tr, live = traces(0, 30, TRAIN_SLOTS), traces(1, 30, LIVE_SLOTS)
    m = SecurityModel.train(tr, ("stide",), calibration=traces(2, 10, TRAIN_SLOTS), skip=SCHEDULED)
    plain = SecurityModel.train(tr, ("stide",), calibration=traces(2, 10, TRAIN_SLOTS))
    for model, novel in ((m, False), (plain, True)):
        st = model.detectors["stide"]
        worst = max(float(st.window_scores(model.vocab.encode(t.calls)).max()) for t in live if t.comm == "python")
        prog = max(float(model.programs.window_scores(model.vocab.encode(t.calls), "python").max())
                   for t in live if t.comm == "python")
        assert (worst > 0 and prog > 0) == novel, (worst, prog)
    st = m.detectors["stide"]
    assert st.skip == SCHEDULED and m.programs.skip == SCHEDULED


def test_skip_kept_in_the_model_file(tmp_path):
    m = SecurityModel.train(traces(0, 10, TRAIN_SLOTS), ("stide", "tree"), calibration=traces(2, 4, TRAIN_SLOTS),
                            skip=SCHEDULED)
    m.save(tmp_path / "m.json")
    back = SecurityModel.load(tmp_path / "m.json")
    seq = back.vocab.encode(traces(1, 1, LIVE_SLOTS)[0].calls)
    assert back.detectors["stide"].skip == SCHEDULED and back.programs.skip == SCHEDULED
    assert (back.detectors["stide"].window_scores(seq) == m.detectors["stide"].window_scores(seq)).all()


def test_skip_refused_for_combined_detectors():
    from kernelpilot.errors import KpError
    with pytest.raises(KpError, match="skipped calls"):
        SecurityModel.train(traces(0, 10, TRAIN_SLOTS), ("stide", "tree", "ensemble"), skip=SCHEDULED)


def records(calls, tid=4242, comm=b"python"):
    """The ring records the kernel sends for a thread making `calls`: every 8 calls from the 32nd
    (its last 64 calls, oldest first; a thread's first 64 left-aligned) and at the end."""
    nrs = np.array([NR[c] for c in calls], dtype=np.uint16)
    ends = sorted(set(range(32, len(nrs) + 1, 8)) | {len(nrs)})
    out = np.zeros(len(ends), dtype=ALERT_DTYPE)
    for r, c in zip(out, ends):
        ctx = nrs[max(c - CTX, 0):c]
        r["calls"][:len(ctx)] = ctx
        r["count"], r["pid"], r["tgid"], r["comm"] = c, tid, tid, comm
    return out


def test_batch_scorer_leaves_skipped_calls_out_as_the_detector_does():
    """Stage 2's batch of ring records, futex left out, scores each record as the detector does on
    the thread's calls up to it: the share of novel 6-grams among the last 32 kept calls whose
    6-gram the record holds whole."""
    m = SecurityModel.train(traces(0, 30, TRAIN_SLOTS), ("stide",), calibration=traces(2, 10, TRAIN_SLOTS),
                            skip=SCHEDULED)
    st = m.detectors["stide"]
    sc = BatchScorer(m, st)
    rng = np.random.default_rng(5)
    calls = [c for _ in range(4) for c in gil(WORKER, rng, LIVE_SLOTS)] + ["futex"] * 40 + WORKER
    recs = records(calls)
    ids, n = sc.ids_of(recs["calls"], recs["count"])
    mask = sc.window_mask(n, recs["count"])
    s2 = sc.share(sc.novel(sc.grams(ids, CTX - 32), sc.table), mask)
    assert (recs["count"] <= CTX).any() and (recs["count"] > CTX).any() and (mask.sum(1) < 32).any()
    for i, c in enumerate(recs["count"]):
        seq = m.vocab.encode(calls[:c])
        pos = st.position_scores(seq)   # per kept call of the whole thread so far
        w = int(mask[i].sum())
        want = float(pos[len(pos) - w:].mean()) if w else 0.0
        assert s2[i] == pytest.approx(want, abs=1e-12), (i, c)
        if c <= CTX:  # a record from the thread's start is the detector's last window
            assert s2[i] == pytest.approx(float(st.window_scores(seq)[-1]), abs=1e-12)
    # where the futex calls fell does not change what is judged
    last = []
    for seed in (6, 8):
        r = records([c for _ in range(4) for c in gil(WORKER, np.random.default_rng(seed), LIVE_SLOTS)])[-1:]
        last.append(sc.ids_of(r["calls"], r["count"])[0][0, -32:].tolist())
    assert last[0] == last[1] and 0 not in last[0]


def test_watch_from_the_start_confirms_no_worker_window():
    """The live path (Watcher._windows, learning 0): worker windows whose futex calls fell where
    training never saw them are confirmed by a model that keeps futex, and not by one skipping it."""
    need_root_ebpf()
    from kernelpilot.security.live import Watcher
    rng = np.random.default_rng(7)
    recs = np.concatenate([records(gil(WORKER, rng, LIVE_SLOTS) * 3, tid=4_000_000 + k) for k in range(20)])
    recs["ts"] = np.arange(len(recs)) * 1000 + 10**9
    confirmed = {}
    for skip in (SCHEDULED, ()):
        m = SecurityModel.train(traces(0, 30, TRAIN_SLOTS), ("stide", "tree"), calibration=traces(2, 10, TRAIN_SLOTS),
                                skip=skip)
        w = Watcher(m, learn_s=0, new_s=0)
        try:
            w.kernel.ring.poll()
            recs["ts"] += np.uint64(w.profiles.start_ns)
            w._windows(recs)
            confirmed[skip] = w.windows_confirmed
        finally:
            w.close()
    assert confirmed[SCHEDULED] == 0 and confirmed[()] > 0, confirmed
