"""Recording: run a source for a duration (or while a command runs) and stream its events to a
Parquet trace or into memory. Ctrl-C and SIGTERM end the recording cleanly: the file is valid."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.traces import schema as S
from kernelpilot.traces.sources import open_source
from kernelpilot.traces.store import TraceWriter


class _Terminated(Exception):
    pass


class _StopSignals:
    """Ctrl-C and SIGTERM: each raises where it lands and is remembered, so one that lands in a ctypes callback
    (libbpf's log hook while the probes load: an exception there is printed and dropped) still ends the loop."""

    def __init__(self):
        self.got = None

    def __call__(self, signum, frame):
        self.got = signum
        raise KeyboardInterrupt() if signum == signal.SIGINT else _Terminated()

    def reason(self) -> str:
        return "interrupted (Ctrl-C)" if self.got == signal.SIGINT else "terminated (SIGTERM)"


def spawn_held(argv: list[str], cpu: int | None = None, **popen_kw) -> tuple[subprocess.Popen, int]:
    """Start `argv` held before exec, so tracing can be set up on its pid first (the pid stays
    the same through exec). Returns the process and the pipe end that releases it: write a line."""
    r, w = os.pipe()
    pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    try:
        proc = subprocess.Popen(["/bin/bash", "-c", 'read -r _ <&$KPILOT_HOLD_FD; exec {KPILOT_HOLD_FD}<&-; exec "$@"',
                                 "kpilot-run", *argv],
                                pass_fds=(r,), env={**os.environ, "KPILOT_HOLD_FD": str(r)},
                                preexec_fn=pin, **popen_kw)
    except OSError as e:
        os.close(w)
        raise KpError(f"cannot start {argv[0]}: {e.strerror}") from None
    finally:
        os.close(r)
    return proc, w


def run_recording(groups, sink, duration: float | None = None, cmd: list[str] | None = None,
                  source: str = "auto", pids=None, cgroup=None, comm=None, notes: list | None = None,
                  on_poll=None, poll_interval: float = 0.02, exclude_self: bool = True,
                  stdout=None, stderr=None, on_start=None) -> dict:
    """Core loop. `sink(batch)` gets each numpy batch. Returns a summary dict.
    stdout/stderr: where the traced command's output goes (as for subprocess; None = inherit).
    on_start(pid): called once the tracer runs, before the held command is released."""
    notes = [] if notes is None else notes
    proc = wfd = None
    if cmd:
        if not cmd[0] or not (os.access(cmd[0], os.X_OK) if os.sep in cmd[0] else _which(cmd[0])):
            raise KpError(f"command not found: {cmd[0]}")
        proc, wfd = spawn_held(cmd, stdout=stdout, stderr=stderr)
        pids = [proc.pid, *(pids or [])]
    kw = {"pids": pids}
    if source in ("auto", "ebpf"):
        kw.update(cgroup=cgroup, comm=comm, exclude_self=exclude_self)
    stop = _StopSignals()
    old_term, old_int = signal.signal(signal.SIGTERM, stop), signal.getsignal(signal.SIGINT)
    if old_int is not signal.SIG_IGN:  # a process started to ignore Ctrl-C (a shell's background job) still does
        signal.signal(signal.SIGINT, stop)
    src = None
    t0 = time.monotonic()
    reason = "duration"
    counts = np.zeros(max(S.KINDS) + 1, dtype=np.int64)
    total = 0

    def deliver(batch):
        nonlocal total
        if len(batch):
            sink(batch)
            total += len(batch)
            counts[:] += np.bincount(batch["kind"], minlength=len(counts))[: len(counts)]

    try:
        try:
            src = open_source(source, groups, notes=notes, **kw)
        except BaseException:
            if proc:
                proc.kill()
                proc.wait()
            raise
        if on_start is not None and proc is not None:
            on_start(proc.pid)
        if wfd is not None:
            os.write(wfd, b"go\n")
            os.close(wfd)
            wfd = None
        try:
            while True:
                deliver(src.poll())
                if on_poll:
                    on_poll(total, src)
                if stop.got is not None:  # a signal whose exception a callback dropped
                    reason = stop.reason()
                    break
                if proc is not None and proc.poll() is not None:
                    reason = "command exited"
                    break
                if duration is not None and time.monotonic() - t0 >= duration:
                    break
                time.sleep(poll_interval)  # read in big batches: the producer pays for every cache line we touch
            time.sleep(0.02)
        except (KeyboardInterrupt, _Terminated) as e:
            stop.got = signal.SIGTERM if isinstance(e, _Terminated) else signal.SIGINT
            reason = stop.reason()
        deliver(src.finish())  # what was left when we stopped, however we stopped
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)
        stats = src.stats() if src else {}
        if src:
            src.stop()
        if wfd is not None:
            os.close(wfd)
        if proc is not None and proc.poll() is None and reason != "command exited":
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
    elapsed = time.monotonic() - t0
    return {"source": stats.get("source", source), "events": int(total), "dropped": int(stats.get("dropped", 0)),
            "missed": int(stats.get("missed", 0)),
            "seconds": round(elapsed, 3), "events_per_s": round(total / elapsed, 1) if elapsed else 0.0,
            "stopped": reason, "notes": notes,
            "exit_code": proc.returncode if proc is not None else None,
            "kinds": {S.KINDS[i]: int(c) for i, c in enumerate(counts) if c and i in S.KINDS}}


def _which(name: str) -> bool:
    from shutil import which
    return which(name) is not None


def host_meta(groups, cmd=None) -> dict:
    u = os.uname()
    return {"host": u.nodename, "kernel": u.release, "machine": u.machine, "groups": list(groups),
            "command": cmd or None, "wall_minus_mono_ns": time.time_ns() - time.monotonic_ns(),
            "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def record_to_file(out: str | os.PathLike, groups, **kw) -> dict:
    """Record to a Parquet trace; the file is complete and valid however the recording ends."""
    out = Path(out)
    writer = TraceWriter(out, host_meta(groups, kw.get("cmd")))
    summary = None
    try:
        summary = run_recording(groups, writer.write, **kw)
    finally:
        final = {k: summary[k] for k in ("source", "dropped", "missed", "stopped", "seconds")} if summary else {"stopped": "error"}
        writer.close(final)
    summary["output"] = str(out)
    summary["rows"] = writer.rows
    return summary


def trace_command(argv: list[str], groups=("syscalls",), source: str = "auto", **kw) -> tuple[np.ndarray, dict]:
    """Run a command under the tracer (children followed) and return its events, in time order,
    and a summary."""
    parts: list[np.ndarray] = []
    summary = run_recording(list(groups), parts.append, cmd=list(argv), source=source, **kw)
    ev = np.concatenate(parts) if parts else S.empty()
    return ev[np.argsort(ev["ts"], kind="stable")], summary
