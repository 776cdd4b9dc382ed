"""Recorded scenario events -> training traces: one per thread (the live stage keeps its windows
per thread), each named by its process's comm, not by the tracer's "?" for a thread gone before
its name was looked up."""
import numpy as np

from kernelpilot.security.scenarios.run import events_to_traces
from kernelpilot.traces import schema as S


def _events(rows):
    ev = np.zeros(len(rows), dtype=S.EVENT_DTYPE)
    for i, (ts, tid, tgid, nr, comm) in enumerate(rows):
        ev[i] = (ts, tid, tgid, S.SYSCALL, 0, 0, nr, 0, 0, 0, comm)
    return ev


def test_threads_apart_and_named_by_their_process():
    # a server (tgid 10) accepts, a worker thread (11) answers and exits before its name was read
    ev = _events([(1, 10, 10, 43, b"python"), (2, 11, 10, 45, b"?"), (3, 10, 10, 7, b"python"),
                  (4, 11, 10, 44, b"?"), (5, 11, 10, 60, b"?"), (6, 20, 20, 0, b"?"), (7, 20, 20, 1, b"cat"),
                  (8, 30, 30, 0, b"?")])  # 30: never named
    traces = {t.name: t for t in events_to_traces(ev, run="r")}
    assert set(traces) == {"r:10:python", "r:10:python:11", "r:20:cat", "r:30:?"}
    assert traces["r:10:python"].calls == ["accept", "poll"]
    assert traces["r:10:python:11"].calls == ["recvfrom", "sendto", "exit"]
    assert traces["r:10:python:11"].comm == "python" and traces["r:10:python:11"].pid == 10

