"""The agent's one observer sensor: kp_trace's programs system-wide (sched, syscalls, faults, file
cache, mm), built with the security watch's window stage in its sys_enter program (sensor.py),
read in bulk and shared by every pilot; or the shipped trace replayed, where eBPF is not allowed."""
from __future__ import annotations

from pathlib import Path

import numpy as np

GROUPS = ["sched", "syscalls", "faults", "files", "mm"]
# events taken from each ring per poll: the rest waits for the next step, which comes at once
# (LiveObserver.backlog). A full 16 MB ring read in one go held ~230,000 events (17 MB) and the
# pilots' copies of them: the agent's RSS then swung by tens of MB and rose with the host's load.
MAX_EVENTS = 32768
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample.parquet"


class LiveObserver:
    live = True
    backlog = False  # the last poll took a ring's MAX_EVENTS: more wait, poll again at once

    def __init__(self, ring_mb: int = 16, comm: str = "", with_security: bool = True):
        from kernelpilot.agent.sensor import AgentSource
        from kernelpilot.errors import CapabilityError, KpError
        from kernelpilot.traces.sources import EbpfSource
        kw = dict(exclude_self=True, ring_mb=ring_mb, comm=comm or None)
        self.merged, self.fallback = with_security, None
        try:  # without security (off in the config) the stage's maps and per-syscall check stay out
            self.src = (AgentSource if with_security else EbpfSource)(GROUPS, **kw).start()
        except CapabilityError:
            raise
        except KpError as e:  # the merged build did not load here: kp_trace alone, the watch on its own
            self.merged, self.fallback = False, str(e).splitlines()[0]
            self.src = EbpfSource(GROUPS, **kw).start()
        self.name = (f"ebpf (kp_trace{' + security stage' if self.merged else ''}, "
                     + (f"tasks named {comm}*)" if comm else "system-wide)"))
        self.events = 0

    @property
    def security_sensor(self):
        """The loaded object whose sys_enter program holds the security stage (KernelStage(sensor=)),
        or None where only kp_trace loaded."""
        return self.src.obj if self.merged else None

    def poll(self) -> np.ndarray:
        """Both rings as they come: each CPU's events in order, CPUs interleaved (pilots that
        need time order sort what they use). No comm resolution (EbpfSource.poll's costs about
        1 us an event): batched kinds keep an empty comm; pilots name tasks from the switch,
        wakeup, exec and file events, which carry one."""
        from kernelpilot.traces.sources import BATCH, unbatch
        direct, recs = self.src.readers[0].poll(MAX_EVENTS), self.src.readers[1].poll(MAX_EVENTS // BATCH)
        self.backlog = len(direct) == MAX_EVENTS or len(recs) == MAX_EVENTS // BATCH
        batched = unbatch(recs)
        ev = np.concatenate([direct, batched]) if len(batched) and len(direct) else (batched if len(batched) else direct)
        self.events += len(ev)
        self.src.delivered += len(ev)
        return ev

    def finish(self) -> np.ndarray:
        ev = self.src.finish()
        self.events += len(ev)
        return ev

    def stats(self) -> dict:
        s = self.src.stats()
        out = {"source": self.name, "events": self.events, "dropped": int(s["dropped"]), "missed": int(s["missed"])}
        if self.fallback:
            out["merged_build_failed"] = self.fallback
        return out

    def program_stats(self) -> dict:
        return self.src.program_stats()

    def close(self) -> None:
        self.src.stop()


class ReplayObserver:
    """The shipped trace, in time order, at recorded pace (speed) or as fast as possible."""
    live = False
    backlog = False  # a replay paces itself: the loop's pause always applies

    def __init__(self, path: Path = SAMPLE, speed: float | None = None):
        from kernelpilot.traces.store import ReplaySource
        self.path = Path(path)
        self.src = ReplaySource(self.path, speed=speed).start()
        self.name = f"replay of {self.path.name}"
        self.events = 0

    @property
    def done(self) -> bool:
        return self.src.done

    def poll(self) -> np.ndarray:
        ev = self.src.poll()
        self.events += len(ev)
        return ev

    def finish(self) -> np.ndarray:
        return np.empty(0, dtype=self.src.poll().dtype)

    def stats(self) -> dict:
        return {"source": self.name, "events": self.events, "dropped": 0, "missed": 0}

    def program_stats(self) -> dict:
        return {}

    def close(self) -> None:
        self.src.stop()
