"""Group what fires into incidents: one per (process, program), open while it keeps firing and
closed after `cooldown_s` of quiet. The first window or rule hit of an incident prints an alert
line; later windows are folded in (counted); a rule not yet in the incident prints another line
of the same incident; a closing line gives the totals when anything was folded in."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Incident:
    id: int
    pid: int
    program: str
    first_ns: int
    last_ns: int
    windows: int = 0
    fired: list[str] = field(default_factory=list)   # what fired, in order ("model" or rule names)
    hits: dict[str, int] = field(default_factory=dict)
    lines: int = 0
    reported: int = 0    # hits counted in the lines printed so far

    @property
    def total(self) -> int:
        return sum(self.hits.values())


class Incidents:
    def __init__(self, cooldown_s: float = 60.0):
        self.cooldown_ns = int(cooldown_s * 1e9)
        self.open: dict[tuple[int, str], Incident] = {}
        self.n = 0
        self.lines = 0

    def add(self, pid: int, program: str, what: str, ts_ns: int, count: int = 1,
            last_ns: int | None = None) -> tuple[Incident, bool]:
        """Fold count hits (the first at ts_ns, the last at last_ns) in; returns the incident and
        whether the first hit gets an alert line."""
        key = (pid, program)
        inc = self.open.get(key)
        if inc is not None and ts_ns - inc.last_ns > self.cooldown_ns:
            inc = None  # cooled down: expire() has not run yet, but this is a new incident
        if inc is None:
            self.n += 1
            inc = self.open[key] = Incident(self.n, pid, program, ts_ns, ts_ns)
        inc.last_ns = max(inc.last_ns, ts_ns)
        inc.hits[what] = inc.hits.get(what, 0) + 1
        if what == "model":
            inc.windows += 1
        new_line = what not in inc.fired
        if new_line:
            inc.fired.append(what)
            inc.lines += 1
            inc.reported = inc.total
            self.lines += 1
        if count > 1:  # the rest are folded in
            inc.hits[what] += count - 1
            inc.windows += count - 1 if what == "model" else 0
            inc.last_ns = max(inc.last_ns, last_ns or ts_ns)
        return inc, new_line

    def is_open(self, pid: int, program: str, ts_ns: int) -> bool:
        inc = self.open.get((pid, program))
        return inc is not None and ts_ns - inc.last_ns <= self.cooldown_ns

    def expire(self, now_ns: int | None = None) -> list[Incident]:
        """Close incidents quiet for the cooldown (all, if now_ns is None); those with hits folded
        in since their last line are returned for a closing line."""
        done = [k for k, i in self.open.items() if now_ns is None or now_ns - i.last_ns > self.cooldown_ns]
        out = []
        for k in done:
            inc = self.open.pop(k)
            if inc.total > inc.reported:
                self.lines += 1
                out.append(inc)
        return out
