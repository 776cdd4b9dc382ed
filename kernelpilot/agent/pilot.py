"""One interface for every domain of the agent: a Pilot observes a batch of events from the shared
sensor, returns decisions, acts on them through the journal, and sums up what it did.

    for d in pilot.observe(batch):   # batch: EVENT_DTYPE events (kernelpilot.traces.schema)
        pilot.act(d, journal)        # dry-run journals only plan; --enforce changes the host
    pilot.summary(top=20)            # a dict, shown by `kpilot run` and the state socket
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class Decision:
    domain: str            # sched, security, memory, aipath, agent
    kind: str              # decision, action, alert, note
    what: str              # one line for people
    pid: int | None = None
    comm: str = ""
    detail: dict = field(default_factory=dict)

    def record(self) -> dict:
        return asdict(self)


def cap(own: int, top: int | None) -> int:
    """A summary list's length: the pilot's own bound, or `top` where that is smaller."""
    return own if top is None else min(own, top)


class Pilot:
    """Base class. `live` is False when the events are a replayed trace (nothing to act on)."""
    name = "pilot"

    def __init__(self, live: bool = True):
        self.live = live

    def observe(self, batch: np.ndarray) -> list[Decision]:
        return []

    def act(self, decision: Decision, journal) -> Decision | None:
        """Carry out one decision (journal.change for every knob); returns the action, if any."""
        return None

    def summary(self, top: int | None = None) -> dict:
        """What the pilot did; each list of processes holds at most `top` (None: the pilot's own bound)."""
        return {}

    def close(self) -> None:
        pass
