"""Readers for cache/block traces from other tools: libCacheSim oracleGeneral, CSV/txt, block traces."""

from pathlib import Path

from kernelpilot.errors import KpError


def check_size(path, limit: int, what: str) -> int:
    """The file's size, or one clear error if it is missing, empty or over `limit` bytes."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise KpError(f"cannot read {what} {path}: {e.strerror}") from None
    if size == 0:
        raise KpError(f"{what} {path} is empty")
    if size > limit:
        raise KpError(f"{what} {path} is {size >> 20} MiB, over the {limit >> 20} MiB limit")
    return size
