"""The agent's one event log: decisions, actions and alerts of every domain as JSON lines with one
schema {ts (RFC 3339, wall clock), domain, kind, pid, comm, what, detail}, to a file rotated by
size (logging.handlers.RotatingFileHandler) and, with --json, to stdout. Stdout is written by a
thread from a bounded queue: a reader that stops reading costs lines on stdout (counted; the file
keeps them), never the agent's loop."""
from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from kernelpilot.agent.pilot import Decision
from kernelpilot.errors import KpError

FIELDS = ("ts", "domain", "kind", "pid", "comm", "what", "detail")
CLOSE_S = 10.0  # at stop, the queued stdout lines get this long to be written


def rfc3339_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_writable(path: Path) -> None:
    """One-line error now rather than a failure at the first event (tries to open it)."""
    path = Path(path)
    if path.is_dir():
        raise KpError(f"cannot write the event log {path}: it is a directory")
    if not path.parent.is_dir():
        raise KpError(f"cannot write the event log {path}: no such directory ({path.parent})")
    existed = path.exists()
    try:
        with open(path, "a"):
            pass
    except OSError as e:
        raise KpError(f"cannot write the event log {path}: {e.strerror}") from None
    if not existed:
        path.unlink(missing_ok=True)


class StdoutLines:
    """Lines to sys.stdout from a writer thread; put() never blocks: past `depth` queued lines it
    drops the line and counts it."""

    def __init__(self, depth: int = 10000):
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.dropped = 0
        self.out = sys.stdout
        self.th = threading.Thread(target=self._run, name="kp-stdout", daemon=True)
        self.th.start()

    def put(self, line: str) -> None:
        try:
            self.q.put_nowait(line)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while (line := self.q.get()) is not None:
            try:
                self.out.write(line + "\n")
                if self.q.empty():
                    self.out.flush()
            except (OSError, ValueError):  # reader gone (EPIPE) or stdout closed: stop writing
                return

    def close(self, timeout: float = CLOSE_S) -> None:
        """Wait (up to timeout) until the queued lines are written, so later output follows them;
        at once if the writer stopped (its reader went away: nobody empties a full queue)."""
        end = time.monotonic() + timeout
        while self.th.is_alive():
            try:
                self.q.put(None, timeout=0.1)
                break
            except queue.Full:
                if time.monotonic() >= end:
                    return
        self.th.join(max(0.0, end - time.monotonic()))


class EventLog:
    def __init__(self, path: Path | None, max_bytes: int = 10 << 20, backups: int = 3, stdout: bool = False):
        self.path = path
        self.counts: dict[str, int] = {}
        self._log = None
        self._stdout = StdoutLines() if stdout else None
        if path is not None:
            path = Path(path)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError:
                pass  # check_writable says why
            check_writable(path)
            self._log = logging.getLogger(f"kernelpilot.eventlog.{id(self)}")
            self._log.propagate = False
            self._log.setLevel(logging.INFO)
            h = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups)
            h.setFormatter(logging.Formatter("%(message)s"))
            self._log.addHandler(h)

    def write(self, d: Decision) -> dict:
        rec = {"ts": rfc3339_now(), "domain": d.domain, "kind": d.kind, "pid": d.pid, "comm": d.comm,
               "what": d.what, "detail": d.detail}
        line = json.dumps(rec, default=str)
        if self._log:
            self._log.info(line)
        if self._stdout:
            self._stdout.put(line)
        key = f"{d.domain}.{d.kind}"
        self.counts[key] = self.counts.get(key, 0) + 1
        return rec

    @property
    def stdout_dropped(self) -> int:
        return self._stdout.dropped if self._stdout else 0

    def close(self) -> None:
        if self._stdout:
            self._stdout.close()
        if self._log:
            for h in list(self._log.handlers):
                h.close()
                self._log.removeHandler(h)
            self._log = None
