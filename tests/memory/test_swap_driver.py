"""The swap driver's limit writes: a write that does not return (a v1 limit write below usage, under
a program that grows or refaults as fast as the writer reclaims) never stops the sampling, and is
interrupted past its deadline with the old limit kept. The limit file here is a full FIFO, where
a write blocks the same way until a signal interrupts it."""
import errno
import os
import threading
import time

from kernelpilot.memory import swaprun
from kernelpilot.memory.limitwriter import LimitWriter, interrupts
from kernelpilot.memory.swaplab import SwapLab

MB = 1 << 20


class BlockingLab:
    """A memory group of 80 MB under a 100 MB limit whose limit file never takes a write."""
    kind, cg, psi_cg = "v1", None, None

    def __init__(self, tmp):
        self.path = tmp / "limit_in_bytes"
        os.mkfifo(self.path)
        self.r = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)  # a reader: opens for writing return
        w = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        try:
            while True:
                os.write(w, b"x" * 4096)
        except BlockingIOError:
            pass
        os.close(w)
        self.samples = self.writes = 0

    def drain(self):
        try:
            while os.read(self.r, 1 << 16):
                pass
        except BlockingIOError:
            pass

    def limit_file(self):
        return self.path

    def limit(self):
        return 100 * MB

    def usage(self):
        self.samples += 1
        return 80 * MB

    def stat(self):
        return {"rss": 60 * MB, "cache": 20 * MB}

    def refaults(self, st=None):
        return 0

    def pressure_us(self):
        return 0

    def io_pressure_us(self):
        return 0

    def cpu_pressure_us(self):
        return 0

    def oom_control(self):
        return {"oom_kill_disable": 1, "under_oom": 0, "oom_kill": 0}

    def set_limit(self, nbytes, setup=False):  # the journaled write the old driver made itself
        self.writes += 1
        with open(self.path, "w") as f:
            f.write(str(nbytes))
        return True

    def write_limit(self, nbytes):
        self.writes += 1
        return SwapLab.write_limit(self, nbytes)


def _until(cond, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not cond():
        time.sleep(0.005)
    return cond()


def test_a_limit_write_that_never_returns_does_not_stop_the_driver(tmp_path):
    """The old driver wrote on its own thread: after Senpai's first step it took no sample until
    the write returned (kv: one decision, then nothing for the rest of the run)."""
    lab = BlockingLab(tmp_path)
    d = swaprun.Driver(lab, "senpai", tick=0.005)
    stop = threading.Event()
    with interrupts():
        th = threading.Thread(target=d, args=(0, stop), daemon=True)
        th.start()
        try:
            assert _until(lambda: lab.writes > 0)  # Senpai stepped below the limit
            n0 = lab.samples
            _until(lambda: lab.samples > n0 + 40 and getattr(d, "limit_interrupted", 0) > 0)
        finally:
            stop.set()
            lab.drain()  # frees a write still blocked (the old driver's)
            th.join(5)
    assert lab.samples > n0 + 40      # sampling went on while the write was blocked
    assert d.limit_interrupted > 0    # stopped past its deadline
    assert set(d.limits) == {100 * MB}  # and the old limit kept: nothing was written
    assert not d.errors


def test_cancel_stops_a_write_in_flight_and_frees_the_writer(tmp_path):
    """Before the OOM guard raises the limit, a lower write in flight is stopped (ECANCELED, not
    counted as a deadline's interrupt), so it cannot land after the raise."""
    lab = BlockingLab(tmp_path)
    with interrupts():
        w = LimitWriter(lab.write_limit, deadline=60.0)
        try:
            assert w.submit(50 * MB)
            assert _until(lambda: lab.writes == 1)
            assert not w.submit(40 * MB) and w.busy()  # one write at a time
            assert not w.expire()                       # within its deadline
            assert w.cancel(wait=5.0)
            assert w.poll() == [(50 * MB, errno.ECANCELED)] and not w.busy()
            lab.drain()
            assert w.submit(60 * MB)                   # the writer takes the next one
            assert _until(lambda: not w.busy())
            assert w.poll() == [(60 * MB, 0)]
        finally:
            lab.drain()
            w.close()


class RefaultingLab(BlockingLab):
    """The same group, whose page cache refaults 50 pages and its anonymous memory 10 between two
    reads of memory.stat; the limit file takes writes."""

    def __init__(self, tmp):
        super().__init__(tmp)
        self.reads = 0

    def stat(self):
        self.reads += 1
        return {"rss": 60 * MB, "cache": 20 * MB, "workingset_refault_file": 50 * self.reads,
                "workingset_refault_anon": 10 * self.reads}

    def refaults(self, st=None):
        st = st or self.stat()
        return st["workingset_refault_file"] + st["workingset_refault_anon"]

    def write_limit(self, nbytes):
        self.writes += 1
        return True

    def pids(self):
        return []


def test_the_controller_sees_the_page_caches_share_of_the_refaults(tmp_path):
    """Each interval's Obs carries the page cache's refaults beside all of them (the learned
    reclaimer accepts cheap stalls on those); the old driver passed the total only."""
    lab = RefaultingLab(tmp_path)
    d = swaprun.Driver(lab, "kernelpilot", tick=0.005)
    stop = threading.Event()
    th = threading.Thread(target=d, args=(0, stop), daemon=True)
    th.start()
    try:
        assert _until(lambda: len(d.obs) >= 3)
    finally:
        stop.set()
        th.join(5)
    for o in d.obs[1:]:
        assert o.refaults == 60 and o.file_refaults == 50
