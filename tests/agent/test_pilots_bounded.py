"""The pilots' per-process tables stay bounded over a long run with many short-lived processes
(a 30-min soak starts one each second; a busy host many more)."""
import numpy as np

from kernelpilot.agent import config as C
from kernelpilot.agent.aipath_pilot import AipathPilot
from kernelpilot.traces import schema as S


def _switches(tgids):
    ev = np.zeros(len(tgids), S.EVENT_DTYPE)
    ev["kind"], ev["pid"], ev["tgid"], ev["comm"] = S.SCHED_SWITCH, tgids, tgids, b"short"
    return ev


def test_aipath_names_are_forgotten_with_their_rows():
    p = AipathPilot(C.defaults()["aipath"], live=False)
    for i in range(4):  # 40,000 processes, each seen once
        p.observe(_switches(np.arange(i * 10_000, (i + 1) * 10_000) + 1))
    assert len(p.rows) <= 20_000
    assert set(p.comm) <= set(p.rows), (len(p.comm), len(p.rows))
    assert p.summary()["processes"] == len(p.rows)


def _faults(tgids, kind):
    ev = np.zeros(len(tgids) * 100, S.EVENT_DTYPE)
    ev["kind"], ev["tgid"] = kind, np.repeat(tgids, 100)
    ev["pid"], ev["ts"] = ev["tgid"], np.arange(len(ev))
    ev["a0"] = (np.tile(np.arange(100), len(tgids)) << 12) if kind == S.PAGE_FAULT else 77  # address / inode
    ev["a1"], ev["a3"] = np.tile(np.arange(100), len(tgids)), 5  # page, device
    return ev


def test_memory_streams_of_exited_processes_are_forgotten(monkeypatch):
    import os
    import subprocess

    from kernelpilot.agent import memory_pilot as MP
    gone = subprocess.Popen(["true"])
    gone.wait()  # exited and reaped: no /proc entry
    me = os.getpid()
    p = MP.MemoryPilot(C.defaults()["memory"], live=True)
    for kind in (S.FILE_FAULT, S.PAGE_FAULT):
        p.observe(_faults([gone.pid, me], kind))
    assert len(p.files) == 2 and len(p.anon) == 2
    monkeypatch.setattr(MP, "PRUNE_S", 0.0, raising=False)
    p.observe(np.zeros(0, S.EVENT_DTYPE))
    assert [k[0] for k in p.files] == [me] and list(p.anon) == [me]
    s = p.summary()
    assert s["faults_seen"] == 400 and s["streams_of_exited_forgotten"] == 2  # counted still, not kept


def test_security_alerts_kept_are_bounded_and_all_counted():
    from types import SimpleNamespace

    from kernelpilot.agent.security_pilot import SecurityPilot
    p = SecurityPilot(C.defaults()["security"], live=False)
    n = iter(range(10**6))
    p.watcher = SimpleNamespace(step=lambda: [{"pid": next(n), "comm": "noisy", "score": 1.0, "threshold": 0.5,
                                               "model": "rule:x"} for _ in range(100)])
    for _ in range(50):
        assert len(p.observe(np.zeros(0, S.EVENT_DTYPE))) == 100
    assert len(p.alerts) <= 1000 and p.n_alerts == 5000
    p.watcher = None
    assert p.summary()["alerts"] == 5000


def test_memory_stream_keeps_only_the_faults_it_reads():
    import os

    from kernelpilot.agent import memory_pilot as MP
    cfg = C.defaults()["memory"]
    p = MP.MemoryPilot(cfg, live=True)
    ev = _faults([os.getpid()], S.PAGE_FAULT)
    for i in range(30):  # 3,000 faults of one process
        ev["a0"] = (np.arange(100) + 100 * i) << 12
        p.observe(ev)
    s = p.anon[os.getpid()]
    assert s.faults == 3000 and len(s.pages) == MP.EVAL_LAST and s.pages[-1] == 2999
    cfg["min_faults"] = 1000  # a reload asking for more history keeps more
    p.reconfigure()
    p.observe(ev)
    assert s.pages.maxlen == 1000 and list(s.pages)[-100:] == list(range(2900, 3000))


def test_publishing_the_state_takes_a_bounded_share_of_the_loop():
    from kernelpilot.agent.host import publish_interval
    assert publish_interval(0.001) == 1.0  # small state: every second
    assert publish_interval(0.4) == 8.0    # 0.4 s to publish: at most 5% of the loop


def test_security_incident_endings_are_taken_each_step():
    from types import SimpleNamespace

    from kernelpilot.agent.security_pilot import SecurityPilot
    p = SecurityPilot(C.defaults()["security"], live=False)
    ended = []

    def take():
        out = list(ended)
        ended.clear()
        return out
    p.watcher = SimpleNamespace(step=lambda: [], take_ended=take)
    for i in range(3):
        ended.append({"event": "incident_end", "incident": i, "pid": 7, "program": "/usr/bin/x", "hits": 2,
                      "seconds": 1.5, "time": "2026-12-02T16:00:00.000+00:00"})
        d = p.observe(np.zeros(0, S.EVENT_DTYPE))
        assert [x.detail["incident"] for x in d] == [i] and "ended: 2 hits in 1.5 s" in d[0].what
    assert ended == []


def _held_by(module_file, fn) -> int:
    """Bytes allocated in module_file during fn() that are still alive after it."""
    import gc
    import tracemalloc
    tracemalloc.start()
    try:
        keep = fn()
        gc.collect()
        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, module_file)])
        return keep, sum(s.size for s in snap.statistics("filename"))
    finally:
        tracemalloc.stop()


def test_aipath_rows_hold_their_own_counts_not_the_batch_table():
    """A process seen once (a short-lived one) kept a view of its batch's whole counts table, which
    kept the table (every process of that batch) alive: ~200x the row on a busy host."""
    from kernelpilot.agent import aipath_pilot as AP
    steady = np.arange(1, 200)

    def run():
        p = AipathPilot(C.defaults()["aipath"], live=False)
        for i in range(100):  # each batch: the same 199 processes and one new one, never seen again
            p.observe(_switches(np.r_[steady, 1000 + i]))
        return p
    p, held = _held_by(AP.__file__, run)
    assert len(p.rows) == 299
    assert held < len(p.rows) * 1000, (held, len(p.rows))  # old code: 100 tables of 200 x 15 int64 (2.4 MB)


def test_aipath_evicts_the_longest_quiet_processes_and_counts_them(monkeypatch):
    from kernelpilot.agent import aipath_pilot as AP
    monkeypatch.setattr(AP, "MAX_ROWS", 100)
    p = AipathPilot(C.defaults()["aipath"], live=False)
    p.observe(_switches(np.arange(1, 101)))       # 100 processes, one switch each
    p.observe(_switches(np.array([1, 1, 1])))     # process 1 again: the most recently seen now
    p.observe(_switches(np.arange(101, 151)))     # 50 new ones: the 50 quiet the longest go
    assert len(p.rows) == 100 and 1 in p.rows and 2 not in p.rows and 51 not in p.rows and 52 in p.rows
    s = p.summary()
    assert s["processes_evicted"] == 50 and s["evicted_counts"]["switches_invol"] == 50
    assert sum(int(r[AP.C["switches_invol"]]) for r in p.rows.values()) + 50 == 153  # nothing lost uncounted
    assert set(p.comm) <= set(p.rows)


def test_state_socket_carries_the_busiest_layers_only(tmp_path):
    """The soak's `top = 20000` put every process's layers into each state publication (1.6 MB
    after 30 min); the final summary keeps them all."""
    from kernelpilot.agent.host import STATE_TOP, AgentHost
    cfg = C.defaults()
    cfg["aipath"]["top"] = 20000
    h = AgentHost(cfg, live=False, lock=False, log_path=tmp_path / "a.jsonl", socket_path=tmp_path / "a.sock")
    p = AipathPilot(cfg["aipath"], live=False)
    p.observe(_switches(np.repeat(np.arange(1, 5001), 2)))
    p.observe(_switches(np.arange(1, 6)))  # processes 1-5 the busiest
    h.pilots = {"aipath": p}
    st = h.state()
    layers = st["domains"]["aipath"]["layers"]
    assert len(layers) == STATE_TOP and {"short[1]", "short[5]"} <= set(layers)
    assert len(st["events_by_tgid"]) == 5000  # top and serve still see every process's events
    assert len(h.summary()["aipath"]["layers"]) == 5000


def test_security_counts_processes_in_fixed_memory():
    """processes_seen came from a set of every tgid (up to 100,000 kept, then no more counted)."""
    from kernelpilot.agent import security_pilot as SP

    def run():
        p = SP.SecurityPilot(C.defaults()["security"], live=False)
        for i in range(30):  # 30,000 processes, each batch 1,000 new and 1,000 seen before
            ev = np.zeros(2000, S.EVENT_DTYPE)
            ev["kind"], ev["tgid"] = S.SYSCALL, np.r_[np.arange(1000) + 1000 * i, np.arange(1000)] + 1
            p.observe(ev)
        return p
    p, held = _held_by(SP.__file__, run)
    assert p.summary()["processes_seen"] == 30_000
    assert held < 100_000, held  # one flag per pid: 32 kB; the set held over 1 MB


def test_aipath_keeps_each_rows_total_as_it_grows(monkeypatch):
    """Each publication summed every row (20,000 after a 30-min soak) to rank them and fill
    events_by_tgid; the pilot keeps each row's total as the row grows, evictions included."""
    from kernelpilot.agent import aipath_pilot as AP
    monkeypatch.setattr(AP, "MAX_ROWS", 300)
    rng = np.random.default_rng(7)
    p = AipathPilot(C.defaults()["aipath"], live=False)
    for _ in range(40):
        ev = _switches(rng.integers(1, 500, 2000))
        ev["kind"][::3] = S.SYSCALL
        ev["a0"][::3] = rng.integers(0, 330, len(ev[::3]))
        p.observe(ev)
        assert p.total == {t: int(r.sum()) for t, r in p.rows.items()}
    ranked = sorted(p.rows, key=lambda t: -int(p.rows[t].sum()))[:10]
    assert [int(k.rsplit("[", 1)[1][:-1]) for k in p.summary()["layers"]] == ranked
