"""Syscall names shared by x86-64 live traces and i386 data sets (ADFA-LD).

Numbers differ between the two ABIs, so everything in kernelpilot.security works on canonical
names: i386 variants (mmap2, stat64, getuid32, _llseek, ...) map to their x86-64 name, so the
same behaviour gets the same token whichever ABI recorded it."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from kernelpilot.errors import KpError

DATA = Path(__file__).resolve().parent / "data" / "syscalls.json"
ABIS = ("x86_64", "i386")
UNKNOWN = "unknown"

# i386 names that differ from the x86-64 name for the same operation.
ALIASES = {
    "mmap2": "mmap", "_llseek": "lseek", "_newselect": "select", "ugetrlimit": "getrlimit",
    "oldstat": "stat", "oldfstat": "fstat", "oldlstat": "lstat", "olduname": "uname",
    "oldolduname": "uname", "sigaction": "rt_sigaction", "sigprocmask": "rt_sigprocmask",
    "sigreturn": "rt_sigreturn", "sigsuspend": "rt_sigsuspend", "sigpending": "rt_sigpending",
    "waitpid": "wait4", "fadvise64_64": "fadvise64", "sendfile64": "sendfile",
    "signal": "rt_sigaction", "readdir": "getdents", "oldumount": "umount2", "umount": "umount2",
    "old_getrlimit": "getrlimit", "fstatat64": "newfstatat", "old_select": "select", "old_mmap": "mmap",
}
# Suffix variants: stat64 -> stat, getuid32 -> getuid, fcntl64 -> fcntl, ...
SUFFIXES = ("64", "32")


@lru_cache(maxsize=1)
def tables() -> dict[str, dict[int, str]]:
    try:
        raw = json.loads(DATA.read_text())
    except (OSError, ValueError) as e:
        raise KpError(f"syscall table {DATA} is missing or corrupt ({e}); "
                      "run python -m kernelpilot.security.gen_syscalls") from None
    return {abi: {int(k): v for k, v in raw[abi].items()} for abi in ABIS}


@lru_cache(maxsize=None)
def canonical(name: str) -> str:
    """The shared name for a syscall name of either ABI."""
    x86 = set(tables()["x86_64"].values())
    if name in x86:
        return name
    if name in ALIASES:
        return ALIASES[name]
    for suf in SUFFIXES:
        if name.endswith(suf) and name[:-len(suf)] in x86:
            return name[:-len(suf)]
    if name.endswith("_time64") and name[:-7] in x86:
        return name[:-7]
    return name


def check_abi(abi: str) -> str:
    if abi not in ABIS:
        raise KpError(f"unknown syscall ABI '{abi}'; choose from {', '.join(ABIS)}")
    return abi


@lru_cache(maxsize=2)
def number_to_name(abi: str) -> dict[int, str]:
    """Number -> canonical name for one ABI."""
    return {n: canonical(v) for n, v in tables()[check_abi(abi)].items()}


def name_of(number: int, abi: str = "x86_64") -> str:
    return number_to_name(abi).get(int(number), UNKNOWN)


def names_of(numbers, abi: str = "x86_64", strict: bool = False) -> list[str]:
    """Names for a sequence of numbers. Unknown numbers become 'unknown', or raise if strict."""
    table = number_to_name(abi)
    out = []
    for n in numbers:
        name = table.get(int(n))
        if name is None:
            if strict:
                raise KpError(f"unknown {abi} syscall number {int(n)}")
            name = UNKNOWN
        out.append(name)
    return out


@lru_cache(maxsize=1)
def x86_64_number() -> dict[str, int]:
    """Canonical name -> x86-64 number (for building in-kernel tables)."""
    return {v: k for k, v in tables()["x86_64"].items()}
