"""Swap decisions: how much to reclaim from a cgroup and when (controllers), and which pages to push
(the cold pusher and its refault predictor).

Controllers see one `Obs` per interval and return the cgroup's next limit (bytes):
  SenpaiController   Senpai's rule (facebookincubator/senpai): below the pressure target, shrink
                     by a probe proportional to the headroom; above it, grow by a backoff
                     proportional to the excess. Pressure only.
  LearnedReclaimer   learns online, per depth of reclaim (the fraction of the peak usage
                     reclaimed), the refaults each reclaimed page brings back within the horizon;
                     steps deeper while the predicted refault rate of the next step is below its
                     budget (large steps where it is well below); where it is not, probes like
                     Senpai while pressure is under target, else holds; backs off like Senpai on
                     pressure beyond the program's own. Refaults warn before stalls do.
The pusher (`ColdPusher`) scans the workload's anonymous pages (pagemap: present, swapped),
sees refaults (swapped, then present again), learns P(a pushed page comes back within the
horizon) from what it pushed (`RefaultPredictor`, online logistic regression on recency,
frequency, the page's block and the region's phase) and pushes (process_madvise MADV_PAGEOUT)
the pages least likely to come back, never one predicted back.
"""
from __future__ import annotations

import ctypes
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kernelpilot.errors import KpError

PAGE = 4096
# keep_hot's cap: pages touched per second of the program's own time (0: none). Uncapped it
# touched 42-78k pages a hot/cold run (~3 s of the program's CPU); at 6000 12-23k, for 35.0-37.6k
# major faults against 32.1-41.0k uncapped (kernel 41.0k), faster than the kernel in 4 rounds of
# 5 (side by side, load 12.9-14.8); on kv 7.7-7.8k major faults against 11.6-12.6k uncapped
HOT_RATE = 6000.0


@dataclass
class Obs:
    """One interval of a cgroup: usage, current limit, peak usage so far (bytes); memory
    pressure ('some' stall, fraction of the interval); refaulted pages in the interval."""
    usage: int
    limit: int
    peak: int
    pressure: float
    refaults: int
    ceiling: int = 1 << 62  # the workload's own limit: no controller goes above it
    anon: int = 0           # anonymous memory (resident + swapped) of the group
    file_refaults: int = 0  # of `refaults`, the page cache's (memory.stat workingset_refault_file)
    io_pressure: float = 0.0  # io 'some' stall, fraction of the interval (the same PSI group's io.pressure)
    cpu_pressure: float = 0.0  # cpu 'some' stall: the share of the interval it waited, runnable, for a CPU
    charged: int = 0        # pages charged to the group in the interval (v1 memory.stat pgpgin; 0: not known)


class KernelOnly:
    """The kernel alone: the limit never moves."""
    name = "kernel"
    why_ = "kernel"

    def step(self, o: Obs) -> int:
        return o.limit


class SenpaiController:
    """Senpai's rule, per interval. `target`: pressure fraction aimed at (Senpai: 10 ms per 6 s
    = 0.17 %); probe/backoff as Senpai's coeff_probe/max_probe, coeff_backoff/max_backoff;
    max_probe is per interval (Senpai's 1 % per 6 s, scaled here to the short runs)."""
    name = "senpai"
    why_ = ""  # the reason of the last step (the driver's decision log)

    def __init__(self, target: float = 0.0017, coeff_probe: float = 10.0, max_probe: float = 0.02,
                 coeff_backoff: float = 20.0, max_backoff: float = 1.0, floor: int = 16 << 20):
        self.target, self.coeff_probe, self.max_probe = target, coeff_probe, max_probe
        self.coeff_backoff, self.max_backoff, self.floor = coeff_backoff, max_backoff, floor

    def step(self, o: Obs) -> int:
        base = min(o.limit, max(o.usage, self.floor))
        if o.pressure > self.target:
            f = min((o.pressure / self.target - 1) / self.coeff_backoff, self.max_backoff)
            self.why_ = "pressure"
            return min(int(base * (1 + f)), o.ceiling)
        f = min((1 - o.pressure / self.target) / self.coeff_probe, self.max_probe)
        self.why_ = "step"
        return max(int(base * (1 - f)), self.floor)


class LearnedReclaimer:
    """Depth-bucketed online refault model. Each step's reclaimed pages are remembered with the
    depth they were taken at; refaults in the `horizon` intervals after a step are charged to
    the steps still open (newest first) and fold, when a step closes, into the EWMA of its
    bucket: refaults per reclaimed page. The next step is taken where the predicted rate (the
    bucket's, or the deepest seen below it, since deeper memory is no colder) is under `budget`;
    its size shrinks as the prediction nears the budget; where the model says no (or the fresh
    steps refault over budget, or the program's own pages do), Senpai's probe while pressure is
    under target. Refaults give a step back only with stalls beyond the program's own. While the
    program allocates (anonymous memory up by more than `grow` of the peak in an interval, or the
    interval before: its phase) it holds where what it took comes back; with `room_growths` it
    also makes room under a limit below it (off by default: a squeezed growing program that
    stalls gets Senpai's back-off; a stall with nothing back, page cache read once, gets it
    always, and is not learned as refaults). Page cache growing (files
    read once) does not hold it. A stall whose refaults are the page cache's costs only its
    time: accepted up to `file_target` of the interval (held, no back-off), while its reads (io
    pressure, of the time it did not wait for a CPU) stay under `io_target`; past that it backs
    off by the io excess, memory stall or not (reads of page cache that was inactive when it
    went are io waits only). Refaults and pressure
    are counted beyond the program's own (their EWMA while the limit is its own): a
    program already at its limit is not a reason to stop, unless its own pages already refault
    at the budget rate per interval (then none is cold)."""
    name = "kernelpilot"

    def __init__(self, budget: float = 0.02, horizon: int = 4, max_step: float = 0.08,
                 min_step: float = 0.01, buckets: int = 20, target: float = 0.0017,
                 coeff_backoff: float = 20.0, floor: int = 16 << 20, alpha: float = 0.5,
                 grow: float = 0.02, own_gate: float = 1.0, coeff_probe: float = 10.0, max_probe: float = 0.02,
                 calm: int = 2, backoff_hold: int = 0, file_target: float = 0.02, file_share: float = 0.9,
                 io_target: float = 0.5, io_coeff: float = 2.0, room_growths: float = 0.0,
                 backoff_from_usage: bool = True, reads_refaulted: bool = False):
        # the io guard counts the reads of the page cache's refaults only (their share of the pages
        # charged in the interval), not the program's first reads of its files
        self.reads_refaulted = reads_refaulted
        # a back-off (reads, pressure) scales usage under the limit, as Senpai's does (False: the
        # limit, which left kv's limit at 235 MB over a build at 96-140 MB). Side by side on dev seeds
        # (bench sizes, 4-6 rounds, load 1-5): compileall 29.8 % against 26.0 %, sqlite 18.3 % against
        # 15.2 % (seeds 101-103; 106-107 level), kv +5 points on 101-103 and -1 on 104-106 (see the guide)
        self.backoff_from_usage = backoff_from_usage
        # a growing program squeezed by the limit that stalls, its pages coming back: room for this
        # many intervals of its latest growth (0: none, Senpai's back-off). Side by side, cpu-wait
        # taken out of run times, room for 2 saved kv 7-9 % where none saved 20-21 % (Senpai 10-12 %)
        # at Senpai's slowdown, compileall 26 % against 30 %, sqlite 17 % against 24 % (see the guide)
        self.room_growths = room_growths
        # the page cache's refaults cost reads, and a read waits in io pressure (in memory pressure
        # too only where the page was active when it went): past io_target of the time the program
        # did not wait for a CPU (io over 1 - cpu pressure: on a loaded host the wall interval is
        # mostly that wait) spent waiting on reads, a page-cache stall is not cheap, with or without
        # memory pressure; the limit backs off by the excess over io_target / io_coeff (sqlite held
        # at 16-25 MB through memory stalls of 0.1-0.6 % waited 0.3-0.9 of each interval on reads
        # and ran 1.3-2.1x slower; at its own limit it waits about 0.4 of its own time on reads)
        self.io_target, self.io_coeff = io_target, io_coeff
        # a stall whose refaults are the page cache's (at least file_share of them) costs the
        # program its stall time and nothing else: below file_target of the interval it holds
        # (no back-off), above it backs off in proportion to the excess over file_target. Senpai's
        # 0.17 % target raised sqlite's limit 1-4 MB a stall and its page cache kept each step
        self.file_target, self.file_share = file_target, file_share
        self.calm = calm  # intervals a room given to a growing program is held (after a step given back: horizon)
        # intervals held after a pressure back-off: none, Senpai's probe from usage the next calm
        # interval (held 2, sqlite's page cache filled the room a back-off gave; see the guide)
        self.backoff_hold = backoff_hold
        self.coeff_probe, self.max_probe = coeff_probe, max_probe  # Senpai's probe, where the model holds
        self.own_gate = own_gate  # hold where the program's own refaults per page reach own_gate x budget
        self.budget, self.horizon, self.max_step, self.min_step = budget, horizon, max_step, min_step
        self.buckets, self.target, self.coeff_backoff, self.floor, self.alpha, self.grow = \
            buckets, target, coeff_backoff, floor, alpha, grow
        self.rate_ = np.full(buckets, np.nan)  # refaults per reclaimed page, per depth bucket
        self.open_: list[list] = []            # [bucket, pages reclaimed, refaults charged, age]
        self.hold_, self.hold_why_ = 0, ""
        self.last_anon_ = 0
        self.growing_ = 0  # intervals left of the program's allocation phase
        self.room_ = 0     # intervals left of a room given to it, while its pages come back
        self.base_ref_ = self.base_psi_ = None
        self.peak_ = 0
        self.why_ = ""  # the reason of the last step: step, floor, pressure, growing, hold:<its cause>, own_gate,
        # budget, open_refaults, late_refaults (the driver's decision log)

    def _bucket(self, depth: float) -> int:
        return int(np.clip(depth * self.buckets, 0, self.buckets - 1))

    def predict(self, depth: float) -> float:
        """Predicted refaults per page reclaimed at this depth (0 where nothing is known yet and
        nothing shallower refaulted; the deepest known rate at or above it otherwise)."""
        b = self._bucket(depth)
        known = self.rate_[: b + 1]
        known = known[~np.isnan(known)]
        return float(known.max()) if len(known) else 0.0

    def _learn(self, refaults: int):
        left = refaults
        for s in reversed(self.open_):  # the newest step's pages are the likeliest to come back
            take = min(left, s[1] - s[2])
            s[2] += take
            left -= take
        still = []
        for s in self.open_:
            s[3] += 1
            if s[3] >= self.horizon:
                r = s[2] / max(s[1], 1)
                old = self.rate_[s[0]]
                self.rate_[s[0]] = r if np.isnan(old) else (1 - self.alpha) * old + self.alpha * r
            else:
                still.append(s)
        self.open_ = still

    def _over_budget(self, depth: float):
        """A stall at this depth whose pages came back: learned as refaults over budget there."""
        b = self._bucket(depth)
        self.rate_[b] = max(np.nan_to_num(self.rate_[b]), 2 * self.budget)

    def oom(self, limit: int):
        """A charge waited on `limit` (the OOM guard raised it): never step below it again, that
        depth and deeper refault over budget, and hold."""
        self.floor = max(self.floor, int(limit * 1.1))
        b = self._bucket(1 - limit / max(self.peak_, 1))
        self.rate_[b:] = np.maximum(np.nan_to_num(self.rate_[b:]), 2 * self.budget)
        self.open_ = []
        self.hold_, self.hold_why_ = self.horizon, "oom"

    def _room(self, o: Obs, growth: int) -> int | None:
        """A limit under a program in its allocation phase: room for `room_growths` intervals of
        `growth` (None where room_growths is 0, it did not grow by `grow` of the peak, or that fits
        under the limit)."""
        if self.room_growths > 0 and o.limit < o.ceiling and growth > self.grow * o.peak and \
                o.usage + self.room_growths * growth > o.limit:
            self.why_ = "growing_room"
            self.room_ = self.calm  # until it expires (step)
            return min(int(o.usage + self.room_growths * growth), o.ceiling)
        return None

    def _backoff_base(self, o: Obs, base: int) -> int:
        return base if self.backoff_from_usage else o.limit

    def _probe(self, o: Obs, base: int, why: str) -> int:
        """No learned step (`why`: the gate): below the pressure target itself, Senpai's probe
        (at most max_probe of usage); else hold. The refault model stops its own steps, not the
        probe that pressure allows: a gate that held at zero pressure kept sqlite and kv within
        3 steps a run, where Senpai saved 10-28%."""
        if o.pressure >= self.target or self.max_probe <= 0:
            self.why_ = why
            return o.limit
        f = min((1 - o.pressure / self.target) / self.coeff_probe, self.max_probe)
        new = max(int(base * (1 - f)), self.floor)
        self.why_ = f"{why}>probe" if new < o.limit else why
        return min(new, o.limit)

    def step(self, o: Obs) -> int:
        self.peak_ = max(self.peak_, o.peak)
        if self.base_ref_ is None or (not self.open_ and o.limit >= o.ceiling):
            # nothing of ours out (the limit its own): what the program refaults and stalls on by
            # itself. Not below it: steps that closed still hold their pages out, and a baseline
            # learned there took our thrashing for the program's (kv went to 15 MB, 2x slower)
            a = 1.0 if self.base_ref_ is None else 0.3
            self.base_ref_ = (1 - a) * (self.base_ref_ or 0) + a * o.refaults
            self.base_psi_ = (1 - a) * (self.base_psi_ or 0) + a * o.pressure
        excess = max(0, o.refaults - int(self.base_ref_))  # charged to us: above that
        self._learn(excess)
        base = min(o.limit, max(o.usage, self.floor))
        depth = 1 - base / max(o.peak, 1)
        # stalls beyond the program's own: only then do refaults cost it time (PSI counts the
        # waits on refaults and on reclaim). Refaults without them are learned (they stop deeper
        # steps) but give nothing back: giving back on those kept sqlite, whose own refaults
        # start only once it fills its limit, at its limit (a baseline of 0 learned before)
        stalls = o.pressure > self.target + 1.5 * self.base_psi_
        # its closed steps' pages coming back (beyond the program's own with its noise, 1.5x as
        # PSI): learned at this depth, where they stop deeper learned steps
        late = o.refaults - 1.5 * self.base_ref_
        # a stall without any of that is reclaim of what is not used again (compileall's page cache,
        # read once): cheap, and nothing to learn about refaults. (Asking for refaults over budget per
        # page under the peak also let sqlite's stalls with a few refaults go unlearned: 3.7k major
        # faults against 2.3k, bench seeds, side by side)
        back = late > 0
        if not self.open_ and late > 0 and o.limit < o.ceiling:
            r = late / max((o.peak - base) // PAGE, 1)
            b = self._bucket(depth)
            old = self.rate_[b]
            self.rate_[b] = r if np.isnan(old) else (1 - self.alpha) * old + self.alpha * r
        grew = o.anon - self.last_anon_
        self.last_anon_ = o.anon
        if grew > self.grow * o.peak:
            self.growing_ = 2  # this interval and the next: a pause of one interval is still its phase
        else:
            self.growing_ = max(self.growing_ - 1, 0)
        if self.growing_ and stalls and back and (room := self._room(o, max(grew, 0))) is not None:
            # a limit under a program that allocates stalls it and its pages come back: room for the
            # growth it has now (anonymous memory counts what went to swap: a squeezed program still
            # grows), not the step's pages (kv, squeezed at 67 MB/interval, got 1.3 MB back, then
            # Senpai's back-off: 42k major faults, +49 %). Not the phase's largest growth: sqlite's
            # start-up (22 MB of anonymous memory from 0 in its first interval, then page cache)
            # got 44 MB of room its page cache filled, where Senpai backed off to 32 MB and probed.
            # Stalls with nothing back get Senpai's back-off (compileall: room of 2 growths, 32 MB,
            # where Senpai went back to 16-17 MB and saved 38 % to its 20 %, dev seed 101)
            self.hold_, self.hold_why_ = self.calm, "growing_room"
            self.open_ = []
            return room
        thr = self.target + 1.5 * self.base_psi_
        cached = o.refaults > 0 and o.file_refaults >= self.file_share * o.refaults
        reads = o.io_pressure / max(1.0 - o.cpu_pressure, 0.1)  # of the time it did not wait for a CPU
        if self.reads_refaulted and o.charged > 0:
            # of those reads, the refaults' share: a page read for the first time is the program's own
            # wait, whatever the limit (sqlite filling its page cache reads 0.45-0.5 of its time)
            reads *= min(o.file_refaults / o.charged, 1.0)
        if cached and reads > self.io_target:  # its refaults' reads cost more than io_target
            f = max((reads / self.io_target - 1) / self.io_coeff, (o.pressure / thr - 1) / self.coeff_backoff)
            if back:
                self._over_budget(depth)
            self.hold_, self.hold_why_ = self.backoff_hold, "reads"
            self.why_ = "reads"
            return min(int(self._backoff_base(o, base) * (1 + min(f, 1.0))), o.ceiling)
        if cached:  # page cache refaults: the stall is what it costs, accepted up to file_target
            thr = max(thr, self.file_target)
            if stalls and o.pressure <= thr:
                if back:
                    self._over_budget(depth)
                self.why_ = "cheap_stall"
                return o.limit
        open_rate = sum(s[2] for s in self.open_) / max(sum(s[1] for s in self.open_), 1)
        if open_rate > self.budget and stalls:  # refaults of fresh reclaim: give the last step back
            s = self.open_.pop()
            self.rate_[s[0]] = max(np.nan_to_num(self.rate_[s[0]]), s[2] / max(s[1], 1))
            self.hold_, self.hold_why_ = self.horizon, "open_refaults"
            self.why_ = "open_refaults"
            return min(int(base + s[1] * PAGE), o.ceiling)
        if stalls:  # back off like Senpai (in proportion to the excess), held `backoff_hold` intervals
            f = min((o.pressure / thr - 1) / self.coeff_backoff, 1.0)
            if back:  # learned as refaults over budget at this depth only where pages came back
                self._over_budget(depth)
            self.hold_, self.hold_why_ = self.backoff_hold, "pressure"
            self.why_ = "pressure"
            return min(int(self._backoff_base(o, base) * (1 + f)), o.ceiling)
        if self.room_ > 0 and not back and o.usage + self.room_growths * max(grew, 0) <= o.limit:
            # a room expires once the program's pages stop coming back (beyond its own refaults)
            # and its growth now fits under the limit: Senpai's probe again, from usage, whatever the
            # model learned deeper. Kept `calm` intervals (or while it grew, the model saying deeper
            # refaults), kv kept 2-6 rooms a run up to its own limit where Senpai probed on
            self.room_ = 0
            if self.hold_why_ == "growing_room":
                self.hold_ = 0
            return self._probe(o, base, "room_expired")
        self.room_ = max(self.room_ - 1, 0)
        if self.growing_:  # the program is allocating (its phase)
            if o.pressure < self.target and open_rate <= self.budget and \
                    self.predict(1 - base * (1 - self.max_probe) / max(o.peak, 1)) < self.budget:
                # nothing taken comes back: follow usage down like Senpai (its savings on sqlite
                # were the squeeze of the growth, the learned reclaimer held at 70 MB), with the
                # probe's pages open, so their refaults stop it before stalls do
                new = self._probe(o, base, "growing")
                pages = max((min(o.limit, o.usage) - new) // PAGE, 0)
                if pages:
                    self.open_.append([self._bucket(1 - new / max(o.peak, 1)), pages, 0, 0])
                return new
            # what it took comes back: hold; reclaiming now only swaps new memory, and a limit under
            # it (an earlier step) makes room for the growth before it reaches the limit (kv grew
            # into one and refaulted its way back up, 2x slower)
            self.why_ = "growing"
            room = self._room(o, max(grew, 0))
            return o.limit if room is None else room
        # holding keeps the limit: lowering it to usage saves nothing, and each write below
        # usage makes the kernel reclaim at once, whatever is hot (hot/cold: 41k major faults
        # against 34k holding the limit)
        if self.hold_ > 0:
            self.hold_ -= 1
            self.why_ = f"hold:{self.hold_why_}"
            return o.limit
        if self.base_ref_ / max(o.usage / PAGE, 1) > self.own_gate * self.budget:  # its own pages refault at the
            return self._probe(o, base, "own_gate")                  # budget rate: none is cold
        if open_rate > self.budget:  # fresh reclaim refaulting (without stalls): no step deeper
            return self._probe(o, base, "open_budget")
        step = self.max_step
        nxt = depth + step
        p = self.predict(nxt)
        if p >= self.budget:
            step = self.min_step
            if self.predict(depth + step) >= self.budget:
                return self._probe(o, base, "budget")
        else:
            step = max(self.min_step, self.max_step * (1 - p / self.budget))
        new = max(int(base - step * o.peak), self.floor)
        pages = max((base - new) // PAGE, 0)
        if pages:
            self.open_.append([self._bucket(depth + step), pages, 0, 0])
        self.why_ = "step" if pages else "floor"
        return new


CONTROLLERS = {"kernel": KernelOnly, "senpai": SenpaiController, "kernelpilot": LearnedReclaimer}


# ---- per-page refault predictor and the cold pusher -------------------------------------------

FEATURES = ("bias", "recency", "quick_return", "block_quick_return", "history", "history_block", "region_phase")
NEVER = 1000  # scan intervals (SCAN_S each): 'never refaulted' ages
SCAN_S = 0.1  # the nominal time between scans: the unit of the recency feature
# quick return: of the times a page went out (pushed or reclaimed), the share it came back
# within the horizon (shrunk to UNKNOWN for pages never out). Before any label: an unknown page
# may go (P 0.3); one that comes back quickly when out (now or in an earlier run), or whose block
# does, is kept. Learning moves every weight from there.
UNKNOWN = 0.2
PRIOR = (-2.5, 1.0, 2.0, 2.0, 2.0, 2.0, 0.0)


class RefaultPredictor:
    """Online logistic regression: P(a page pushed now comes back within the horizon)."""

    def __init__(self, lr: float = 0.5, l2: float = 1e-4, epochs: int = 3):
        self.lr, self.l2, self.epochs = lr, l2, epochs
        self.coef_ = np.array(PRIOR, float)
        self.n_seen_ = 0
        self.history_: dict = {}  # region key -> per-page fast refaults of earlier runs

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return X @ self.coef_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-np.clip(X @ self.coef_, -30, 30)))

    def partial_fit(self, X: np.ndarray, y: np.ndarray) -> "RefaultPredictor":
        if len(y) == 0:
            return self
        for _ in range(self.epochs):  # unweighted: P stays calibrated, `keep` is a probability
            g = X.T @ (self.predict_proba(X) - y) / len(y) + self.l2 * self.coef_
            self.coef_ -= self.lr * g
        self.n_seen_ += len(y)
        return self

    def snapshot(self) -> tuple:
        return self.coef_.copy(), self.n_seen_, {k: v.copy() for k, v in self.history_.items()}

    def restore(self, snap: tuple) -> "RefaultPredictor":
        self.coef_, self.n_seen_, self.history_ = snap[0].copy(), snap[1], {k: v.copy() for k, v in snap[2].items()}
        return self

    def save(self, path: Path):
        path.write_text(json.dumps({"features": FEATURES, "coef": self.coef_.tolist(), "n_seen": self.n_seen_}))

    @classmethod
    def load(cls, path: Path) -> "RefaultPredictor":
        try:
            d = json.loads(Path(path).read_text())
            m = cls()
            if tuple(d["features"]) != FEATURES:
                raise KpError(f"{path}: features {d['features']} are not {list(FEATURES)}")
            m.coef_, m.n_seen_ = np.asarray(d["coef"], float), int(d["n_seen"])
            return m
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise KpError(f"cannot read refault model {path}: {e}") from None


def block_mean(v: np.ndarray, block: int) -> np.ndarray:
    n = len(v)
    nb = (n + block - 1) // block
    pad = np.zeros(nb * block)
    pad[:n] = v
    return np.repeat(pad.reshape(nb, block).mean(1), block)[:n]


def quick_return(fast: np.ndarray, outs: np.ndarray) -> np.ndarray:
    return (fast + UNKNOWN) / (outs + 1)


def features(t, last_ref, quick, hist, phase, block: int = 64) -> np.ndarray:
    age = np.minimum(t - last_ref, NEVER)
    return np.column_stack([np.ones(len(age)), 1 - np.log1p(age) / np.log1p(NEVER), quick,
                            block_mean(quick, block), hist, block_mean(hist, block), np.full(len(age), phase)])


class _Region:
    """Times are seconds since the pusher's first scan (-1: none)."""
    def __init__(self, n: int, hist: np.ndarray | None):
        self.prev_swapped = np.zeros(n, bool)
        self.out_at = np.full(n, -1.0)             # when it was first seen out
        self.last_ref = np.full(n, -NEVER * SCAN_S)
        self.last_scan = -1.0                      # when this region was last scanned
        self.fast = np.zeros(n)                    # decayed: came back within the horizon
        self.outs = np.zeros(n)                    # decayed: went out
        self.hist = hist if hist is not None and len(hist) == n else np.full(n, UNKNOWN)
        self.pushed_at = np.full(n, -1.0)
        self.x_push = np.zeros((n, len(FEATURES)), np.float32)
        self.x_last = None                         # features at the last scan
        self.seen = np.zeros(n, bool)              # present at some scan: a fault on it is a refault
        self.kept = np.zeros(n)                    # scans seen present, since first seen
        self.scans = np.zeros(n)                   # scans since first seen


class ColdPusher:
    """`scan(pid)` reads the pid's anonymous regions (pagemap), labels what was pushed (back
    within the horizon: 1; still out after it: 0), trains the predictor, and ranks the pages.
    The horizon and a page's history are kept in time (`horizon_s`), not in scans: scans are
    spaced by their cost and the host's load, and a count of them was a horizon that stretched
    with both (and shrank with each extra process scanned in a tick). The time is each program's
    own (`clock`; default its CPU time, user + system, zram's swap-ins included): a hot page read
    once a round comes back after the same work at any load, where in wall time a loaded host
    stretched its return past the horizon and it was labelled cold (hot/cold at load 14: 2-9k
    pages kept a run, against 50-66k at load 5-8).
    `push(pid, pidfd, n)` pushes the n present pages least likely to come back (none with
    P >= keep); `bring_back(pid, pidfd, n)` swaps in (MADV_WILLNEED) up to n pages that are out
    but predicted back, before the program stalls on them. A region is named by its size and
    order, so `history()` (each page's quick refaults) carries over to the program's next run."""
    BLOCK = 64

    def __init__(self, predictor: RefaultPredictor | None = None, horizon_s: float = 6.5 * SCAN_S,
                 keep: float = 0.5, back: float = 1.01, cold: float = 0.8, decay: float = 1.0, seed: int = 0,
                 clock=None, hot_rate: float | None = None, hot_clock=None):
        # horizon: 6 scans at the nominal SCAN_S (what it was in scans), half a scan of slack
        self.clock = clock or program_seconds
        # keep_hot's budget: pages per second of `hot_clock(pid)` (default: the program's clock, so
        # a program waiting for a CPU earns no touches), a second's worth at most held over
        # (None: HOT_RATE; 0 or less: no cap)
        self.hot_rate = HOT_RATE if hot_rate is None else hot_rate
        self.hot_clock = hot_clock or self.clock
        self._hot_bucket: dict[int, list] = {}  # pid -> [pages it may touch, its clock then]
        self.hot_s = 0.0  # wall time in keep_hot's touches
        self.model = predictor or RefaultPredictor()
        self.horizon, self.keep, self.back, self.cold, self.decay = horizon_s, keep, back, cold, decay
        self.rng = np.random.default_rng(seed)
        self.regions: dict[tuple, _Region] = {}
        self.t = 0.0     # the last scan's time (s since the pid's first)
        self._t0: dict[int, float] = {}  # pid -> its clock at its first scan
        self.pushed = self.refaulted = self.labels = self.brought_back = 0
        self._cold: dict[int, list] = {}  # pid -> [addresses of present pages, coldest first, cursor]
        self._hot: dict[int, list] = {}   # pid -> addresses out but predicted back
        self._layout: dict[int, list] = {}  # pid -> [(start, end, region)] at the last scan
        self.fault_refaults = 0

    def _now(self, pid: int, now: float | None) -> float:
        now = self.clock(pid) if now is None else now
        return max(now - self._t0.setdefault(pid, now), 0.0)

    def faults(self, pid: int, addrs: np.ndarray, now: float | None = None):
        """Page faults of pid (the page-fault tracepoint, between scans): a fault on a page seen
        present before is a refault, seen the moment it happens, where a scan every 100 ms
        misses a hot page that goes out and comes back between two scans."""
        t = self._now(pid, now)
        X_all, y_all = [], []
        for a, b, r in self._layout.get(pid, []):
            sel = addrs[(addrs >= a) & (addrs < b)]
            if len(sel) == 0:
                continue
            idx = np.unique((sel - a) // PAGE).astype(np.int64)
            idx = idx[r.seen[idx]]
            if len(idx) == 0:
                continue
            self.fault_refaults += len(idx)
            unseen = r.out_at[idx] < 0  # out and back between two scans: quick, by definition
            r.outs[idx[unseen]] += 1
            quick = unseen | (t - r.out_at[idx] <= self.horizon)
            r.fast[idx[quick]] += 1
            pushed = idx[r.pushed_at[idx] >= 0]
            if len(pushed):
                X_all.append(r.x_push[pushed])
                y_all.append((t - r.pushed_at[pushed] <= self.horizon).astype(float))
                r.pushed_at[pushed] = -1
            r.last_ref[idx] = t
            r.out_at[idx] = -1
            r.prev_swapped[idx] = False  # counted here, not again by the next scan
        if y_all:
            X, y = np.concatenate(X_all), np.concatenate(y_all)
            self.model.partial_fit(X, y)
            self.labels += len(y)
            self.refaulted += int(y.sum())

    @staticmethod
    def pagemap(pid: int):
        """(start, end, pagemap entries) of each anonymous region of pid."""
        from kernelpilot.memory.pagesignal import anon_regions
        with open(f"/proc/{pid}/pagemap", "rb", buffering=0) as pm:
            for a, b in anon_regions(pid):
                pm.seek(a // PAGE * 8)
                yield a, b, np.frombuffer(pm.read((b - a) // PAGE * 8), np.uint64)

    def scan(self, pid: int, now: float | None = None) -> int:
        """Returns the pages that came back since the last scan. OSError when pid is gone.
        `now`: the pid's clock at the scan (default: read now)."""
        from kernelpilot.memory.pagesignal import PM_PRESENT, PM_SWAPPED, _bit
        t = self._now(pid, now)
        back_total = 0
        seen: dict[int, int] = {}
        X_all, y_all, cold, hot, layout = [], [], [], [], []
        for a, b, ent in self.pagemap(pid):
            n = (b - a) // PAGE
            key = (n, seen.setdefault(n, 0))  # size and order name a region across runs
            seen[n] += 1
            r = self.regions.get((pid,) + key)
            if r is None:
                r = self.regions[(pid,) + key] = _Region(n, self.model.history_.get(key))
            if len(ent) != n:
                continue
            present, swapped = _bit(ent, PM_PRESENT), _bit(ent, PM_SWAPPED)
            layout.append((a, b, r))
            r.seen |= present
            r.scans[r.seen] += 1
            r.kept[present] += 1
            back = r.prev_swapped & present
            newly_out = swapped & (r.out_at < 0)
            r.out_at[newly_out] = t
            last, r.last_scan = r.last_scan, t
            if r.x_last is not None:  # the kernel reclaimed it: a label too, from the last features
                k_out = newly_out & (r.pushed_at < 0)
                r.pushed_at[k_out] = last
                r.x_push[k_out] = r.x_last[k_out]
            r.outs *= self.decay
            r.outs[newly_out | ((r.pushed_at == last) & (last >= 0))] += 1  # out since the last scan
            quick = back & (r.out_at >= 0) & (t - r.out_at <= self.horizon)
            r.out_at[present] = -1
            r.prev_swapped = swapped
            back_total += int(back.sum())
            pushed = r.pushed_at >= 0
            yes = pushed & back & (t - r.pushed_at <= self.horizon)
            no = pushed & swapped & (t - r.pushed_at >= self.horizon)
            done = yes | no | (pushed & back)
            if done.any():
                X_all.append(r.x_push[done])
                y_all.append(yes[done].astype(float))
                r.pushed_at[done] = -1
            r.last_ref[back] = t
            r.fast *= self.decay
            r.fast[quick | yes] += 1
            X = features(t / SCAN_S, r.last_ref / SCAN_S, quick_return(r.fast, r.outs), r.hist,
                         float(back.mean()), self.BLOCK)
            z = self.model.decision_function(X)  # ranks by the logit: P saturates near 0 and 1
            p = 1 / (1 + np.exp(-z))
            r.x_last = X.astype(np.float32)
            idx = np.flatnonzero(present & (r.pushed_at < 0))
            idx = idx[np.argsort(z[idx] + self.rng.random(len(idx)) * 1e-6, kind="stable")]
            cold.append((z[idx], a + idx * PAGE, r, idx, X[idx], p[idx]))
            hp = np.flatnonzero((present & (p >= self.keep)) | (swapped & (p >= self.back)))
            # kept first: the pages present at most scans since first seen, then by P (by P alone
            # the quick returners, evidence the others lack, ranked first; hot/cold side by side:
            # program major faults lower in 4 of 5 rounds, median 39.5k against 40.8k)
            hot.append((r.kept[hp] / np.maximum(r.scans[hp], 1) * 100 + np.tanh(z[hp]), a + hp * PAGE))
        if y_all:
            X, y = np.concatenate(X_all), np.concatenate(y_all)
            self.model.partial_fit(X, y)
            self.labels += len(y)
            self.refaulted += int(y.sum())
        self._cold[pid] = cold
        self._layout[pid] = layout
        hp = np.concatenate([h[0] for h in hot]) if hot else np.zeros(0)
        ha = np.concatenate([h[1] for h in hot]) if hot else np.zeros(0, np.int64)
        self._hot[pid] = ha[np.argsort(-hp, kind="stable")]
        self.t = t
        return back_total

    def push(self, pid: int, pidfd: int, pages: int, forced: bool = True) -> int:
        """Push up to `pages` of pid's present pages, least likely to come back first. `forced`
        (the group is at its limit: the kernel would pick otherwise) takes the coldest whatever
        their P; a proactive push takes only pages with P < cold_p() (`cold` x the P of a page
        never seen out): only pages seen out before and slow to come back. Without that evidence the
        limit does it, and the kernel's LRU, which sees young bits, picks better than a guess."""
        from kernelpilot.memory.live import pageout
        cold = self._cold.get(pid) or []
        if pages <= 0 or not cold:
            return 0
        allz = np.concatenate([c[0] for c in cold])
        allp = np.concatenate([c[5] for c in cold])
        order = np.argsort(allz, kind="stable")
        if not forced:
            order = order[allp[order] < self.cold_p()]
        order = order[:pages]
        if len(order) == 0:
            return 0
        offs = np.cumsum([0] + [len(c[0]) for c in cold])
        ranges, left = [], []
        for k, (z, addr, r, idx, X, p) in enumerate(cold):
            sel = np.sort(order[(order >= offs[k]) & (order < offs[k + 1])] - offs[k])
            keep = np.ones(len(idx), bool)
            keep[sel] = False
            left.append((z[keep], addr[keep], r, idx[keep], X[keep], p[keep]))
            if len(sel) == 0:
                continue
            pg = idx[sel]
            r.pushed_at[pg] = r.last_scan  # pushed since that scan: counted out by the next
            r.x_push[pg] = X[sel]
            r.prev_swapped[pg] = True  # back by the next scan: a refault, even if never seen out
            o = np.argsort(pg)
            pg = pg[o]
            brk = np.flatnonzero(np.diff(pg) != 1) + 1  # contiguous runs: one iovec each
            for s, e in zip(np.r_[0, brk], np.r_[brk, len(pg)]):
                ranges.append((addr[sel][o][s], int(pg[e - 1] - pg[s] + 1) * PAGE))
        self._cold[pid] = left
        pageout(pidfd, [(int(a), n) for a, n in ranges])
        self.pushed += len(order)
        return len(order)

    def keep_hot(self, pid: int, pages: int) -> int:
        """Touch (process_vm_readv, one byte a page) the `pages` pages likeliest back, those kept
        present at most scans first: present ones with P >= keep (the kernel's reclaim sees them
        referenced and takes others) and out ones with P >= back (they come back in the agent's
        time, not the program's; off by default: on the hot/cold program such swap-ins cost as
        many faults as they saved). At most the budget `hot_rate` leaves (_hot_budget)."""
        pages = min(pages, self._hot_budget(pid))
        hot = self._hot.get(pid)
        hot = np.sort(hot[:max(pages, 0)]) if hot is not None else []
        if len(hot):
            t0 = time.monotonic()
            self.brought_back += touch(pid, hot)
            self.hot_s += time.monotonic() - t0
            if pid in self._hot_bucket:
                self._hot_bucket[pid][0] -= len(hot)
        return len(hot)

    def _hot_budget(self, pid: int) -> int:
        """Pages keep_hot may touch in pid now: `hot_rate` per second of its hot_clock since the
        last call, at most a second's worth (the first call: a second's worth)."""
        if self.hot_rate <= 0:
            return 1 << 62
        now = self.hot_clock(pid)
        b = self._hot_bucket.get(pid)
        if b is None:
            b = self._hot_bucket[pid] = [self.hot_rate, now]
        else:
            b[0] = min(self.hot_rate, b[0] + max(now - b[1], 0.0) * self.hot_rate)
            b[1] = now
        return int(b[0])

    def history(self) -> dict:
        """Per region (size, order): each page's quick-return share, this run's where it went
        out, else the earlier runs'."""
        out = {}
        for (pid, n, k), r in self.regions.items():
            q = quick_return(r.fast, r.outs)
            out[(n, k)] = np.where(r.outs > 0.5, q, r.hist)
        return out

    def cold_pages(self, pid: int) -> int:
        c = self.cold_p()
        return int(sum((x[5] < c).sum() for x in self._cold.get(pid) or []))

    def unseen_p(self) -> float:
        """P(back within the horizon) the model gives a page with no evidence: never seen out,
        never referenced by a refault, no history (the prior's features)."""
        x = features(0, np.array([-NEVER]), np.array([UNKNOWN]), np.array([UNKNOWN]), 0.0, 1)
        return float(self.model.predict_proba(x)[0])

    def cold_p(self) -> float:
        """The proactive push threshold: `cold` times the no-evidence P (a fixed 0.15 missed a
        page seen out once and not back, at 0.154 against the prior's 0.27: it never pushed),
        never above `keep` (predicted back)."""
        return min(self.keep, self.cold * self.unseen_p())


class _Iov(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.process_vm_readv.restype = ctypes.c_ssize_t


def touch(pid: int, addrs) -> int:
    """Read one byte of each page of pid at addrs (process_vm_readv, 1024 pages a call)."""
    done = 0
    buf = ctypes.create_string_buffer(1024)
    iov = np.ones((len(addrs), 2), np.uint64)  # struct iovec {base, len = 1}
    iov[:, 0] = np.asarray(addrs, np.uint64)
    for i in range(0, len(addrs), 1024):
        part = iov[i:i + 1024]
        loc = _Iov(ctypes.cast(buf, ctypes.c_void_p), len(part))
        r = _libc.process_vm_readv(pid, ctypes.byref(loc), 1, part.ctypes.data_as(ctypes.c_void_p), len(part), 0)
        if r < 0:
            raise ProcessLookupError(pid)
        done += r
    return done


def program_seconds(pid: int) -> float:
    """pid's CPU time so far (utime + stime, /proc/PID/stat). OSError when it is gone."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def pidfd_open(pid: int) -> int:
    from kernelpilot.memory.live import SYS_pidfd_open, libc
    fd = libc.syscall(SYS_pidfd_open, pid, 0)
    if fd < 0:
        raise ProcessLookupError(pid)
    return fd


def anon_pids(pids: list[int], min_mb: int = 8) -> list[int]:
    """pids with at least min_mb of anonymous memory (RssAnon + VmSwap): the ones worth scanning."""
    out = []
    for p in pids:
        try:
            st = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        kb = sum(int(line.split()[1]) for line in st.splitlines() if line.startswith(("RssAnon:", "VmSwap:")))
        if kb >= min_mb << 10:
            out.append(p)
    return out


def close_fd(fd: int):
    try:
        os.close(fd)
    except OSError:
        pass
