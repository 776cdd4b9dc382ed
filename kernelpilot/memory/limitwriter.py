"""Memory-limit writes off the swap driver's thread, each with a deadline.

On cgroup v1 a write of memory.limit_in_bytes below usage reclaims in the writer's context and
loops for as long as reclaim frees anything (mem_cgroup_resize_max): under a program that grows,
or faults its pages back, as fast as the writer reclaims, it returns only when the program ends.
Made on the driver's thread, such a write stopped its sampling and control after the first step
(kv, 2 of 6 runs). Here one writer thread makes each write (a raw write(2), which a signal
interrupts: the kernel's loop stops with EINTR and the old limit stays); the driver submits,
keeps sampling, polls for the result, and interrupts a write still in flight after `deadline`.

Interrupts need a handler for WAKE, installed from the main thread (`interrupts()`); without one
a write runs to its end, and the driver only keeps sampling while it does.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import threading
import time

WAKE = signal.SIGUSR2
_libc = ctypes.CDLL(None, use_errno=True)
_libc.write.restype = ctypes.c_ssize_t
_libc.write.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t)
_armed = False  # a handler for WAKE is installed (by interrupts())


@contextlib.contextmanager
def interrupts():
    """While inside, WAKE interrupts a writer's system call instead of killing the process. A no-op
    off the main thread (signal handlers are set there only) or where WAKE already has a handler."""
    global _armed
    try:
        old = signal.signal(WAKE, lambda *_: None) if signal.getsignal(WAKE) == signal.SIG_DFL else None
    except ValueError:  # not the main thread
        old = None
    was, _armed = _armed, _armed or old is not None
    try:
        yield
    finally:
        _armed = was
        if old is not None:
            signal.signal(WAKE, old)


def write_raw(path, data: bytes) -> int:
    """One write(2) of data to path: 0, or the errno (EINTR where WAKE interrupted it)."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as e:
        return e.errno or errno.EIO
    try:
        n = _libc.write(fd, data, len(data))
        return 0 if n == len(data) else (ctypes.get_errno() or errno.EIO)
    finally:
        os.close(fd)


class LimitWriter:
    """`submit(nbytes)` hands one limit to the writer thread (False while one is in flight);
    `poll()` returns the finished writes as (nbytes, errno); `expire()` interrupts a write in
    flight longer than `deadline` s (its errno: EINTR); `cancel()` interrupts one and waits for it
    (ECANCELED; before a raise that an older, lower write must not undo). `write(nbytes) -> errno`
    makes the write."""

    def __init__(self, write, deadline: float):
        self._write, self.deadline = write, deadline
        self._cv = threading.Condition()
        self._want = None
        self._since = None  # when the write in flight began
        self._done: list[tuple[int, int]] = []
        self._stop = self._cancelling = False
        self._th = threading.Thread(target=self._loop, daemon=True)
        self._th.start()

    def _loop(self):
        while True:
            with self._cv:
                while self._want is None and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                want, self._since = self._want, time.monotonic()
            err = self._write(want)
            with self._cv:
                self._done.append((want, errno.ECANCELED if err == errno.EINTR and self._cancelling else err))
                self._want = self._since = None
                self._cv.notify_all()

    def busy(self) -> bool:
        with self._cv:
            return self._want is not None

    def submit(self, nbytes: int) -> bool:
        with self._cv:
            if self._want is not None or self._stop:
                return False
            self._want = int(nbytes)
            self._cv.notify_all()
            return True

    def poll(self) -> list[tuple[int, int]]:
        with self._cv:
            done, self._done = self._done, []
            return done

    def _kick(self) -> bool:
        """Signal the writer thread while its write is in flight (the lock held: it cannot end)."""
        if self._since is None or not _armed:
            return False
        signal.pthread_kill(self._th.ident, WAKE)
        return True

    def expire(self) -> bool:
        """Interrupt the write in flight if it is past its deadline."""
        with self._cv:
            if self._since is None or time.monotonic() - self._since < self.deadline:
                return False
            return self._kick()

    def cancel(self, wait: float = 0.5) -> bool:
        """Interrupt the write in flight and wait (at most `wait` s) until it returned: True when
        none is left in flight."""
        deadline = time.monotonic() + wait
        with self._cv:
            if self._want is not None and self._since is None:  # not begun: dropped
                self._done.append((self._want, errno.ECANCELED))
                self._want = None
            self._cancelling = True
            try:
                while self._want is not None:
                    self._kick()
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cv.wait(min(left, 0.02))
                return True
            finally:
                self._cancelling = False

    def close(self):
        self.cancel()
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._th.join(1.0)
