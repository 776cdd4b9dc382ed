"""One fuzz input through one loader, under a deadline. The property: the loader (and the use of
what it accepted) ends in a one-line KpError or returns; never another exception, never past the
deadline, the input file unchanged and nothing else left in its folder."""
from __future__ import annotations

import os
import signal
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from kernelpilot.errors import KpError
from kernelpilot.fuzz.targets import Target

DEADLINE_S = 10.0
OK, REJECTED = "accepted", "rejected"


class Hang(BaseException):
    """Raised by the alarm: BaseException, so a loader's `except Exception` cannot swallow it."""


@contextmanager
def deadline(seconds: float):
    """SIGALRM after `seconds` of wall time (main thread only; numba code is stopped when it returns)."""
    def on_alarm(signum, frame):
        raise Hang()
    old = signal.signal(signal.SIGALRM, on_alarm)
    t0 = time.monotonic()
    outer, interval = signal.setitimer(signal.ITIMER_REAL, seconds)  # an outer timer (pytest-timeout)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if outer > 0:  # give the outer timer back what is left of it
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - t0), 1e-3), interval)


_WORKDIR: Path | None = None


def workdir() -> Path:
    """One scratch folder per process (tmpfs when there is one: a folder per input costs ms)."""
    global _WORKDIR
    if _WORKDIR is None or not _WORKDIR.is_dir():
        shm = Path("/dev/shm")
        base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
        _WORKDIR = Path(tempfile.mkdtemp(prefix="kp-fuzz-", dir=base))
        import atexit
        import shutil
        atexit.register(shutil.rmtree, _WORKDIR, True)
    return _WORKDIR


def run_one(target: Target, data: bytes, seconds: float = DEADLINE_S) -> tuple[str, str]:
    """-> (outcome, detail). outcome: accepted | rejected, or a failure kind: internal, multiline,
    hang, modified_input, left_files. detail: the exception or message."""
    d = workdir()
    for old in os.listdir(d):  # what an earlier input left (already counted)
        (d / old).unlink()
    path = d / f"input{target.suffix}"
    path.write_bytes(data)
    try:
        with deadline(seconds):
            obj = target.load(path)
            if target.use is not None:
                target.use(obj)
        outcome, detail = OK, ""
    except KpError as e:
        msg = str(e)
        outcome, detail = (REJECTED, msg) if msg.strip() and "\n" not in msg else ("multiline", msg[:300])
    except Hang:
        outcome, detail = "hang", f"over {seconds:.0f} s"
    except RecursionError:
        outcome, detail = "internal", "RecursionError"
    except Exception as e:  # noqa: BLE001 - this is what the fuzzer looks for
        outcome, detail = "internal", f"{type(e).__name__}: {str(e)[:200]}"
    if outcome in (OK, REJECTED):
        if not path.is_file() or path.read_bytes() != data:
            outcome, detail = "modified_input", "the loader changed or removed its input"
        elif os.listdir(d) != [path.name]:
            outcome, detail = "left_files", ", ".join(sorted(set(os.listdir(d)) - {path.name}))
    path.unlink(missing_ok=True)
    return outcome, detail


FAILURES = ("internal", "multiline", "hang", "modified_input", "left_files")


def tally(results) -> dict:
    """[(outcome, detail)] -> counts per outcome, failures by kind, the first example of each."""
    out = {"inputs": 0, OK: 0, REJECTED: 0, "failures": {k: 0 for k in FAILURES}, "examples": {}}
    for outcome, detail in results:
        out["inputs"] += 1
        if outcome in (OK, REJECTED):
            out[outcome] += 1
        else:
            out["failures"][outcome] += 1
            out["examples"].setdefault(outcome, detail)
    return out


def timed(fn, *a, **kw):
    t0 = time.perf_counter()
    r = fn(*a, **kw)
    return r, time.perf_counter() - t0
