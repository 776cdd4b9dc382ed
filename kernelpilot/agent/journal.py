"""The safety layer every live actuator uses.

    with Journal("sched", enforce=True) as j:
        j.change("nice", {"tid": pid, "start": start_time(pid)}, 10)

Each change is written (with the old value, fsync'd) to /run/kernelpilot/journal-<pid>-<start>.jsonl
before it is made. On normal exit, an exception, SIGINT or SIGTERM the journal is replayed backwards;
if the agent is killed outright, a guardian process replays it; `kpilot agent rollback` replays
journals whose owner is gone. Without `enforce` nothing is changed: changes are only listed.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kernelpilot.agent.rollback import KNOBS, Gone, describe, replay, run_dir, start_time
from kernelpilot.errors import CapabilityError, KpError

log = logging.getLogger("kernelpilot.agent")


class Journal:
    def __init__(self, owner: str, enforce: bool = False, max_actions_per_s: float = 20.0,
                 directory: Path | None = None, guardian: bool = True):
        self.owner, self.enforce, self.guardian_wanted = owner, enforce, guardian
        self.rate, self.tokens, self.last = max_actions_per_s, max(1.0, max_actions_per_s), time.monotonic()
        self.dir = directory or run_dir()
        self.entries: list[dict] = []
        self.planned: list[str] = []
        self.counts = {"applied": 0, "planned": 0, "gone": 0, "denied": 0, "rate_limited": 0, "failed": 0}
        self.path: Path | None = None
        self._f = None
        self._guard: subprocess.Popen | None = None
        self._old_handlers = {}

    # --- lifecycle ---
    def open(self) -> "Journal":
        if not self.enforce:
            return self
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CapabilityError(f"cannot create journal directory {self.dir}: {e.strerror}") from None
        me = os.getpid()
        self.path = self.dir / f"journal-{me}-{start_time(me)}.jsonl"
        self._f = open(self.path, "a")
        self._write({"type": "header", "owner": self.owner, "pid": me, "start": start_time(me),
                     "argv": sys.argv, "ts": time.time()})
        if self.guardian_wanted:
            self._start_guardian()
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self._old_handlers[s] = signal.signal(s, self._on_signal)
        return self

    def _start_guardian(self):
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
        self._guard = subprocess.Popen([sys.executable, "-m", "kernelpilot.agent.rollback", "--guard",
                                        str(os.getpid()), str(self.path)], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, start_new_session=True, text=True, env=env)
        if self._guard.stdout.readline().strip() != "ready":
            self._guard.kill()
            raise KpError("journal guardian did not start; refusing to change anything")

    def _on_signal(self, signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    def close(self) -> dict:
        """Restore everything changed, newest first, and retire the journal."""
        result = replay(self.entries) if self.entries else {"restored": 0, "gone": 0, "failed": 0}
        if self._f:
            self._write({"type": "closed", "ts": time.time(), "result": result})
            self._f.close()
            self._f = None
            self.path.unlink(missing_ok=True)
        if self._guard:
            try:
                self._guard.stdin.write("done\n")
                self._guard.stdin.flush()
                self._guard.wait(timeout=5)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self._guard.kill()
            self._guard = None
        for s, h in self._old_handlers.items():
            signal.signal(s, h)
        self._old_handlers = {}
        self.entries = []
        return result

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()
        return False

    def _write(self, rec: dict):
        self._f.write(json.dumps(rec) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    # --- changes ---
    def _take_token(self) -> bool:
        now = time.monotonic()
        self.tokens = min(max(1.0, self.rate), self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def change(self, knob: str, target: dict, new) -> bool:
        """Set `knob` of `target` to `new`, journaled first. False (logged) when the task is gone,
        permission is denied, the rate limit is hit, or nothing needed changing."""
        if knob not in KNOBS:
            raise KpError(f"unknown knob '{knob}'")
        read, write = KNOBS[knob]
        entry = {"type": "change", "knob": knob, "target": target, "new": new, "ts": time.time()}
        try:
            entry["old"] = read(target)
            if entry["old"] == new:
                return False
            if not self.enforce:
                self.counts["planned"] += 1
                self.planned.append(describe(entry))
                return True
            if not self._take_token():
                self.counts["rate_limited"] += 1
                return False
            self._write(entry)  # before the change: a crash after this still restores
            self.entries.append(entry)
            write(target, new)
        except (Gone, ProcessLookupError) as e:
            self.counts["gone"] += 1
            log.info("skip %s: %s", knob, e)
            return False
        except PermissionError as e:
            self.counts["denied"] += 1
            log.warning("permission denied changing %s of %s: %s", knob, target, e.strerror)
            return False
        except OSError as e:
            self.counts["failed"] += 1
            log.warning("could not change %s of %s: %s", knob, target, e)
            return False
        self.counts["applied"] += 1
        log.info("applied %s", describe(entry))
        return True
