"""The security process table is capped by count: past max_procs the longest exited entries go
first, then pids only looked up, then exec'd or forked ones, the first seen first; every drop is
counted (the watch's stats show it)."""
from kernelpilot.security.procinfo import ProcTable

BASE = 10 ** 9  # pids no process has here: /proc has nothing, the table keeps what the events said


def test_the_table_stays_under_its_cap_and_exited_processes_go_first():
    t = ProcTable(max_procs=100)
    for i in range(60):
        t.exec(BASE + i, i, 1, 0, "short", "/bin/true", "", "true")
        t.exit(BASE + i, 1000 + i)  # exited in order: the first gone first
    for i in range(60, 100):
        t.exec(BASE + i, i, 1, 0, "long", "/bin/sleep", "", "sleep 1000")
    assert len(t.procs) == 100 and t.evicted == 0
    t.fork(BASE + 99, BASE + 100, 200)  # the 101st: 11 go, all of them exited, the longest gone first
    assert len(t.procs) == 90 and t.evicted == 11
    assert all(BASE + i not in t.procs for i in range(11)) and BASE + 11 in t.procs
    assert all(BASE + i in t.procs for i in range(60, 101))
    for i in range(101, 400):  # then pids only looked up go, the first seen first; exec'd or forked ones stay
        t.get(BASE + i)
    assert len(t.procs) <= 100 and t.evicted == 400 - len(t.procs)
    assert BASE + 399 in t.procs and BASE + 101 not in t.procs
    assert all(BASE + i in t.procs for i in range(60, 101)) and set(t.started) == {BASE + i for i in range(60, 101)}
    for i in range(400, 600):  # a table of exec'd processes alone: the first seen of them go too
        t.exec(BASE + i, i, 1, 0, "long", "/bin/sleep", "", "sleep 1000")
    assert len(t.procs) <= 100 and BASE + 60 not in t.procs and BASE + 599 in t.procs
    assert set(t.started) <= set(t.procs) and t.evicted == 600 - len(t.procs)
    # an evicted pid seen again is a fresh entry, not an error
    assert t.get(BASE + 60).pid == BASE + 60
