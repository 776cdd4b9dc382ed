"""What the live agent does for each task class: nice, scheduling policy, cgroup CPU weight."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kernelpilot.sched.synth import BATCH, LATENCY

GROUP_NAMES = {0: "kernelpilot.batch", 1: "kernelpilot.latency"}


@dataclass
class Policy:
    latency_nice: int = -5
    batch_nice: int = 0                  # batch keeps its CPU share; SCHED_BATCH only stops it preempting
    batch_policy: int = os.SCHED_BATCH   # os.SCHED_IDLE with --idle
    batch_weight: int = 20               # cgroup v2 cpu.weight (1..10000, default 100)
    latency_weight: int = 400            # a cgroup also lifts the task above other sessions' autogroups
    batch_min_util: float = 0.5          # SCHED_BATCH only for CPU-bound batch tasks: this much CPU,
    batch_max_sleeps: float = 10.0       # or fewer voluntary sleeps per second (a hog on a busy host)
    use_cgroup: bool = False             # --cgroup: children inherit the group, and a group of batch
                                         # tasks competes as one entity, so it is opt-in

    def wanted(self, cls: int, x=None) -> dict:
        """Knob -> value for a task of class `cls` (empty: leave it alone)."""
        if cls == LATENCY:  # reset-on-fork: children (a compiler make starts) do not inherit the boost
            return {"policy": [os.SCHED_OTHER | os.SCHED_RESET_ON_FORK, 0], "nice": self.latency_nice}
        cpu_bound = x is None or x[0] >= self.batch_min_util * 1024 or x[1] < self.batch_max_sleeps
        if cls == BATCH and not cpu_bound:
            return {}  # a sleepy batch task (make waiting on its compilers) is left alone: without
                       # wakeup preemption its pipeline would stall behind the hogs
        if cls == BATCH:
            return {"policy": [self.batch_policy, 0], "nice": self.batch_nice}
        return {}


def cpu_cgroup() -> tuple[str, Path] | None:
    """('v2', mount) if the unified hierarchy has the cpu controller, else ('v1:cpu', mount), else None."""
    for mount in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        ctrl = mount / "cgroup.controllers"
        if ctrl.exists() and "cpu" in ctrl.read_text().split():
            return "v2", mount
    for line in Path("/proc/self/mounts").read_text().splitlines():
        dev, mnt, fstype, opts = line.split()[:4]
        if fstype == "cgroup" and "cpu" in opts.split(","):
            return "v1:cpu", Path(mnt)
    return None


def weight_file(hier: str) -> tuple[str, callable]:
    """The weight knob of a cgroup and how to express a v2 weight in it."""
    if hier == "v2":
        return "cpu.weight", lambda w: str(w)
    return "cpu.shares", lambda w: str(max(2, w * 1024 // 100))  # v2 weight 100 == v1 shares 1024
