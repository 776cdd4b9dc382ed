"""Debug aid: KPILOT_TRACEMALLOC=FILE makes the agent trace its Python allocations and append, every
KPILOT_TRACEMALLOC_S seconds (60), RSS, the traced heap and the top growth by traceback since the first
snapshot to FILE. RSS growing while the traced heap does not points at native memory."""
from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path


def rss_kb(pid: int | str = "self", field: str = "VmRSS") -> int:
    """A process's resident kB from /proc/PID/status: all of it (VmRSS), or RssAnon (its own heap and
    arrays: not the libraries' pages nor the BPF rings' maps, which are file-backed)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


class MemWatch:
    def __init__(self, path: str, every_s: float = 60.0, frames: int = 6, top: int = 25):
        self.path, self.every, self.top = Path(path), every_s, top
        tracemalloc.start(frames)
        self.base = None
        self.next = time.monotonic() + every_s

    @classmethod
    def from_env(cls) -> "MemWatch | None":
        p = os.environ.get("KPILOT_TRACEMALLOC")
        return cls(p, float(os.environ.get("KPILOT_TRACEMALLOC_S", "60"))) if p else None

    def tick(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if now < self.next:
            return False
        self.next = now + self.every
        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        cur, _ = tracemalloc.get_traced_memory()
        # tracemalloc's own tables are native memory in RSS too: subtract them to judge the agent
        lines = [f"== t={time.time():.0f} rss_kb={rss_kb()} traced_kb={cur // 1024} "
                 f"tracemalloc_kb={tracemalloc.get_tracemalloc_memory() // 1024}"]
        if self.base is None:
            self.base = snap
        else:
            for st in snap.compare_to(self.base, "traceback")[: self.top]:
                lines.append(f"+{st.size_diff // 1024} kB ({st.count_diff:+d} blocks) now {st.size // 1024} kB")
                lines += ["    " + ln for ln in st.traceback.format()]
        with self.path.open("a") as f:
            f.write("\n".join(lines) + "\n")
        return True
