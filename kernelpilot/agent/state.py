"""Where the agent keeps its files: the pid lock, the state socket (and its reader), cached models."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
from pathlib import Path

from kernelpilot.agent.rollback import run_dir
from kernelpilot.errors import KpError


def state_dir() -> Path:
    return Path(os.environ.get("KPILOT_STATE", "/var/lib/kernelpilot"))


def default_socket() -> Path:
    return run_dir() / "agent.sock"


def default_log() -> Path:
    return run_dir() / "agent.jsonl"


def read_state(path: Path, timeout: float = 1.0) -> dict | None:
    """The running agent's state from its socket, or None if no agent answers there."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
        chunks = []
        while True:
            b = s.recv(1 << 16)
            if not b:
                break
            chunks.append(b)
        return json.loads(b"".join(chunks))
    except (OSError, ValueError):
        return None
    finally:
        s.close()


def code_key(*modules) -> str:
    """A short hash of modules' source files: a cached model is rebuilt when the code changes."""
    h = hashlib.sha1()
    for m in modules:
        h.update(Path(m.__file__).read_bytes())
    return h.hexdigest()[:10]


class PidLock:
    """run_dir()/agent.pid, held with flock for the agent's life: a second agent fails at once."""

    def __init__(self, path: Path | None = None):
        self.path = path or run_dir() / "agent.pid"
        self.fd = None

    def acquire(self) -> "PidLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise KpError(f"cannot create the agent lock {self.path}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise KpError(f"another kernelpilot agent is running (pid {other}, lock {self.path}); "
                          "stop it first (kill -TERM) or use another KPILOT_RUN_DIR") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
                self.path.unlink(missing_ok=True)
            finally:
                os.close(self.fd)
                self.fd = None
