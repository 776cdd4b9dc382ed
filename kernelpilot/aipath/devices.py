"""Device numbers to drivers and device files: /proc/devices names the driver of a major number,
a scan of /dev names the file whose rdev matches. Events carry the kernel's dev_t
(major << 20 | minor, see schema.kernel_dev)."""
from __future__ import annotations

import os
import stat
from functools import lru_cache
from pathlib import Path

from kernelpilot.traces.schema import kernel_dev

# Device files an AI workload talks to its accelerator through.
ACCEL_PREFIXES = ("/dev/nvidia", "/dev/dri/", "/dev/accel/", "/dev/kfd", "/dev/neuron", "/dev/vfio/")


def parse_proc_devices(text: str) -> dict[str, dict[int, str]]:
    """{'char': {major: name}, 'block': {major: name}} from /proc/devices text."""
    out: dict[str, dict[int, str]] = {"char": {}, "block": {}}
    section = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Character"):
            section = "char"
        elif line.startswith("Block"):
            section = "block"
        elif line and section:
            parts = line.split(None, 1)
            if len(parts) == 2 and parts[0].isdigit():
                out[section].setdefault(int(parts[0]), parts[1])
    return out


@lru_cache(maxsize=1)
def proc_devices() -> dict[str, dict[int, str]]:
    try:
        return parse_proc_devices(Path("/proc/devices").read_text())
    except OSError:
        return {"char": {}, "block": {}}


@lru_cache(maxsize=1)
def dev_files(root: str = "/dev") -> dict[tuple[str, int, int], str]:
    """(kind 'char'|'block', major, minor) -> the first device file with that number under /dev."""
    found: dict[tuple[str, int, int], str] = {}
    skip = {"/dev/fd", "/dev/shm", "/dev/mqueue", "/dev/hugepages"}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if os.path.join(dirpath, d) not in skip)
        for name in sorted(filenames):
            p = os.path.join(dirpath, name)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode):
                kind = "char"
            elif stat.S_ISBLK(st.st_mode):
                kind = "block"
            else:
                continue
            found.setdefault((kind, os.major(st.st_rdev), os.minor(st.st_rdev)), p)
    return found


def describe(kdev: int, kind: str = "char") -> dict:
    """Driver and device file of a kernel dev_t."""
    major, minor = kernel_dev(int(kdev))
    driver = proc_devices()[kind].get(major, "unknown")
    path = dev_files().get((kind, major, minor))
    return {"major": major, "minor": minor, "driver": driver, "path": path,
            "accelerator": bool(path and path.startswith(ACCEL_PREFIXES))}
