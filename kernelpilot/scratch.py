"""Scratch folders on disk (/var/tmp, else the system temp dir) that a killed run cannot leave behind.

Each folder is named for its owner: kpilot-KIND-PID-START-RANDOM, START the owner's start time, so a
reused pid is not mistaken for it. Making one first removes the folders of that kind whose owner is
gone (kill -9 skips every finally; the next run of the same kind cleans up)."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from kernelpilot.agent.rollback import start_time

OWNER = re.compile(r"^(\d+)-(\d+)-[^-]+$")  # what follows kpilot-KIND-


def scratch_base() -> Path:
    return Path("/var/tmp") if os.path.isdir("/var/tmp") else Path(tempfile.gettempdir())


def owner_alive(pid: int, start: int) -> bool:
    return start_time(pid) == start


def sweep_stale(kind: str, base: Path | None = None) -> list[Path]:
    """Remove this kind's folders whose owner is gone; returns what was removed."""
    base = base or scratch_base()
    removed = []
    for p in base.glob(f"kpilot-{kind}-*"):
        m = OWNER.match(p.name[len(f"kpilot-{kind}-"):])
        if not m or not p.is_dir():
            continue
        if not owner_alive(int(m[1]), int(m[2])):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def scratch_dir(kind: str, base: Path | None = None) -> Path:
    """A new scratch folder for this process (sweeping stale ones of the same kind first);
    the caller removes it when done (shutil.rmtree)."""
    if not re.fullmatch(r"[a-z0-9_]+(?:-[a-z0-9_]+)*", kind):
        raise ValueError(f"scratch kind {kind!r}: lower-case words and '-' only")
    base = base or scratch_base()
    sweep_stale(kind, base)
    pid = os.getpid()
    return Path(tempfile.mkdtemp(prefix=f"kpilot-{kind}-{pid}-{start_time(pid)}-", dir=base))


@contextmanager
def scratch(kind: str, base: Path | None = None):
    """scratch_dir for a with-block, removed on the way out (a kill -9 leaves it to the next run)."""
    d = scratch_dir(kind, base)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
