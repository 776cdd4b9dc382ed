"""Live per-program profiles (as pH and per-application profiles do): a program, by exe path, is
learned before it is judged. For `learn_s` seconds after watch starts every program learns (the
host learning period); a program first seen later that the model does not know learns for
`new_s` seconds from then. Learning adds the 6-grams of its windows to the program's own table
(judged windows must be novel for the host, for the model's table of the program and for this one)
and records behaviours the rules ask about (reads /etc/shadow, spawns shells, ...).

Continued learning (as pH's profiles keep training): once a program's profile has learned
MIN_LEARNED windows, the windows of it that stage 2 dismisses keep being added, at most
RELEARN_MAX every RELEARN_EVERY_S per program; and an isolated confirmed window of a long-lived
process (one that never grew into an incident within its frame) is tolerated into it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kernelpilot.errors import KpError

FORMAT = "kernelpilot.security.profiles"
MIN_LEARNED = 32          # windows learned before a profile keeps learning from what it does
RELEARN_EVERY_S, RELEARN_MAX = 1.0, 8
COMPACT_AT = 1 << 10      # queued hashes before they are merged into the table: this many, or the table's size


class Profile:
    __slots__ = ("exe", "first_ns", "parts", "queued", "table", "flags", "learned", "judged", "relearned",
                 "tolerated", "relearn_ns")

    def __init__(self, exe: str, first_ns: int):
        self.exe, self.first_ns = exe, first_ns
        self.parts: list[np.ndarray] = []
        self.queued = 0           # hashes in parts
        self.table = np.zeros(0, dtype=np.uint64)
        self.flags: set[str] = set()
        self.learned = self.judged = self.relearned = self.tolerated = 0
        self.relearn_ns = 0

    def add(self, hashes: np.ndarray) -> None:
        """Queue hashes; merged into the table once the queue holds COMPACT_AT or the table's size,
        whichever is more (bounded memory: a busy program's repeated windows added the same grams
        again every second, and 80 programs learning the host each queued up to 64 k hashes, the
        agent's top traced growth in its first minutes; merging at the table's size keeps each
        hash's share of the sorting constant)."""
        self.parts.append(np.asarray(hashes, dtype=np.uint64))
        self.queued += len(self.parts[-1])
        if self.queued >= max(COMPACT_AT, len(self.table)):
            self.grams()

    def grams(self) -> np.ndarray:
        """Sorted unique learned 6-gram hashes."""
        if self.parts:
            self.table = np.unique(np.concatenate([self.table, *self.parts]))
            self.parts, self.queued = [], 0
        return self.table


class LiveProfiles:
    def __init__(self, learn_s: float = 600.0, new_s: float = 600.0, start_ns: int = 0):
        if learn_s < 0 or new_s < 0:
            raise KpError("learning periods must be >= 0 seconds")
        self.learn_s, self.new_s, self.start_ns = learn_s, new_s, start_ns
        self.host_end_ns = start_ns + int(learn_s * 1e9)
        self.progs: dict[str, Profile] = {}

    def host_learning(self, ts_ns: int) -> bool:
        return ts_ns < self.host_end_ns

    def get(self, exe: str, ts_ns: int) -> Profile:
        p = self.progs.get(exe)
        if p is None:
            p = self.progs[exe] = Profile(exe, ts_ns)
        return p

    def learning(self, prof: Profile, model_known: bool, ts_ns: int) -> bool:
        """Is this program's model judgement still held back?"""
        if self.host_learning(ts_ns):
            return True
        if model_known or prof.first_ns < self.host_end_ns:
            return False
        return ts_ns < prof.first_ns + int(self.new_s * 1e9)

    def learn(self, prof: Profile, hashes: np.ndarray, windows: int = 1) -> None:
        prof.add(hashes)
        prof.learned += windows

    def keeps_learning(self, prof: Profile) -> bool:
        """Its profile is learned: what it does while it behaves is added to it."""
        return prof.learned + prof.relearned >= MIN_LEARNED

    def relearn_due(self, prof: Profile, ts_ns: int) -> bool:
        """Continued learning is due for this program (rate limit); marks it done."""
        if not self.keeps_learning(prof) or ts_ns - prof.relearn_ns < RELEARN_EVERY_S * 1e9:
            return False
        prof.relearn_ns = ts_ns
        return True

    def relearn(self, prof: Profile, hashes: np.ndarray, windows: int) -> None:
        prof.add(hashes)
        prof.relearned += windows

    def tolerate(self, prof: Profile, hashes: np.ndarray, windows: int) -> None:
        prof.add(hashes)
        prof.tolerated += windows

    def summary(self) -> dict:
        return {"programs": len(self.progs),
                "learned_windows": int(sum(p.learned for p in self.progs.values())),
                "relearned_windows": int(sum(p.relearned for p in self.progs.values())),
                "tolerated_windows": int(sum(p.tolerated for p in self.progs.values())),
                "judged_windows": int(sum(p.judged for p in self.progs.values()))}

    def save(self, path) -> None:
        doc = {"format": FORMAT, "programs": {k: {"flags": sorted(p.flags), "grams": [int(x) for x in p.grams()]}
                                              for k, p in self.progs.items()}}
        tmp = Path(f"{path}.tmp")
        tmp.write_text(json.dumps(doc, separators=(",", ":")))
        tmp.replace(path)

    def load(self, path) -> None:
        """Programs learned in an earlier watch: known from the start (judged, not learned)."""
        try:
            doc = json.loads(Path(path).read_text())
            if doc.get("format") != FORMAT:
                raise ValueError
            for exe, p in doc["programs"].items():
                prof = self.get(str(exe), self.start_ns - 1)
                prof.flags = set(map(str, p["flags"]))
                prof.table = np.unique(np.array(p["grams"], dtype=np.uint64))
        except OSError as e:
            raise KpError(f"cannot read profiles {path}: {e.strerror}") from None
        except (ValueError, KeyError, TypeError, AttributeError):
            raise KpError(f"{path} is not a kernelpilot profiles file (or it is corrupt)") from None
