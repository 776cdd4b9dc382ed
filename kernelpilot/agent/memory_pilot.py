"""Memory pilot: page-fault streams from the shared sensor, per process and file (file_fault
events: inode, page) and per process (anonymous page_fault addresses). Each stream's last faults
are replayed through the learned delta prefetcher (memory/prefetch.py); a file stream it predicts
well (accuracy >= min_accuracy) is prefetched from then on: each new fault's predicted pages get
posix_fadvise(WILLNEED) with --enforce, are counted as planned without. Advice changes no
setting, so there is nothing to roll back. Anonymous streams are reported only (swap is off)."""
from __future__ import annotations

import os
import time
from collections import deque

import numpy as np

from kernelpilot.agent.pilot import Decision, Pilot, cap
from kernelpilot.traces import schema as S

PAGE = 4096
HISTORY = 2048
EVAL_LAST = 384       # faults replayed per evaluation
EVAL_SHARE = 0.02     # evaluations (pure Python) may take this share of one CPU, at most
PRUNE_S = 10.0        # this often, live streams of processes that have exited are forgotten


def history(cfg: dict) -> int:
    """Faults a stream keeps: what its evaluation replays, or min_faults if more (up to HISTORY); a
    longer history is never read (the old fixed 2,048 held 5x the ints by default)."""
    return max(EVAL_LAST, min(cfg["min_faults"], HISTORY))


class Stream:
    def __init__(self, comm: str, keep: int = HISTORY):
        self.comm = comm
        self.pages: deque[int] = deque(maxlen=keep)
        self.new = 0
        self.faults = 0
        self.score: dict | None = None
        self.model = None          # live DeltaModel once prefetching
        self.path: str | None = None
        self.issued: set[int] = set()
        self.n_issued = self.n_used = 0


def _comm_of(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/comm").read().strip()
    except OSError:
        return "?"


def file_of(pid: int, dev: int, ino: int) -> str | None:
    """The mapped file with this (s_dev, inode) in /proc/PID/maps."""
    major, minor = S.kernel_dev(dev)
    want = f"{major:02x}:{minor:02x}"
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                p = line.split(None, 5)
                if len(p) == 6 and p[4] == str(ino) and p[3] == want:
                    return p[5].strip()
    except OSError:
        pass
    return None


class MemoryPilot(Pilot):
    name = "memory"

    def __init__(self, cfg: dict, live: bool = True, enforce: bool = False):
        super().__init__(live)
        self.cfg, self.enforce = cfg, enforce
        self.files: dict[tuple, Stream] = {}   # (tgid, dev, ino) -> stream
        self.anon: dict[int, Stream] = {}      # tgid -> stream
        self.decided = 0
        self.fadvised = 0
        self.planned = 0
        self.evaluations = 0
        self.budget_s, self.t_last = 0.05, time.monotonic()  # CPU seconds evaluations may spend now
        self.t_prune = time.monotonic()
        self.pruned = self.faults_forgotten = 0

    def reconfigure(self) -> None:
        """SIGHUP: a new min_faults changes how many faults the streams keep."""
        keep = history(self.cfg)
        for s in [*self.files.values(), *self.anon.values()]:
            if s.pages.maxlen != keep:
                s.pages = deque(s.pages, maxlen=keep)

    def _prune(self, now: float | None = None) -> None:
        """Streams of exited processes go (each short-lived process left its own, up to the tables'
        bound of 4,096 each: a soak's burst a second kept adding them)."""
        now = time.monotonic() if now is None else now
        if not self.live or now - self.t_prune < PRUNE_S:
            return
        self.t_prune = now
        for table in (self.files, self.anon):
            gone = [k for k in table if not os.path.exists(f"/proc/{k[0] if isinstance(k, tuple) else k}")]
            for k in gone:
                self.faults_forgotten += table.pop(k).faults
            self.pruned += len(gone)

    def _budget(self) -> bool:
        now = time.monotonic()
        self.budget_s = min(0.05, self.budget_s + (now - self.t_last) * EVAL_SHARE)
        self.t_last = now
        return self.budget_s > 0

    def _feed(self, table, keys, pages, comms):
        """Append each stream's new faults (prefetching ones act at once); yields the others."""
        if keys.ndim == 2:
            order = np.lexsort((np.arange(len(keys)),) + tuple(keys.T[::-1]))
        else:
            order = np.argsort(keys, kind="stable")
        keys, pages, comms = keys[order], pages[order], comms[order]
        same = np.all(keys[1:] == keys[:-1], axis=1) if keys.ndim == 2 else keys[1:] == keys[:-1]
        starts = np.r_[0, np.flatnonzero(~same) + 1]
        for a, b in zip(starts, np.r_[starts[1:], len(keys)]):
            k = tuple(keys[a].tolist()) if keys.ndim == 2 else int(keys[a])
            s = table.get(k)
            if s is None:
                if len(table) > 4096:  # bounded: forget the oldest stream
                    table.pop(next(iter(table)))
                s = table[k] = Stream(comms[a].decode(errors="replace") or _comm_of(int(keys[a][0] if keys.ndim == 2 else keys[a])),
                                      history(self.cfg))
            new = pages[a:b].tolist()
            s.pages.extend(new)
            s.new += len(new)
            s.faults += len(new)
            if s.model is not None:
                self._prefetch(k, s, new)
            else:
                yield k, s

    def observe(self, batch: np.ndarray) -> list[Decision]:
        self._prune()
        todo = []
        ff = batch[batch["kind"] == S.FILE_FAULT]
        ff = ff[np.argsort(ff["ts"], kind="stable")]  # a stream's faults in time order
        if len(ff):
            keys = np.column_stack([ff["tgid"].astype(np.int64), ff["a3"].astype(np.int64), ff["a0"].astype(np.int64)])
            todo += [(k, s, True) for k, s in self._feed(self.files, keys, ff["a1"].astype(np.int64), ff["comm"])]
        pf = batch[batch["kind"] == S.PAGE_FAULT]
        pf = pf[np.argsort(pf["ts"], kind="stable")]
        if len(pf):
            pages = (pf["a0"] >> np.uint64(12)).astype(np.int64)
            todo += [(k, s, False) for k, s in self._feed(self.anon, pf["tgid"].astype(np.int64), pages, pf["comm"])]
        # evaluations are rationed: file streams first (they can be prefetched), busiest first
        todo.sort(key=lambda t: (not t[2], -t[1].new))
        out = []
        for k, s, file_backed in todo:
            out += self._evaluate(k, s, file_backed)
        return out

    def _evaluate(self, key, s: Stream, file_backed: bool) -> list[Decision]:
        need = self.cfg["min_faults"] if s.score is None else max(self.cfg["min_faults"], EVAL_LAST)
        if s.new < need or len(s.pages) < self.cfg["min_faults"] or not self._budget():
            return []
        from kernelpilot.memory.prefetch import DeltaModel, evaluate
        s.new = 0
        depth = self.cfg["depth"]
        t0 = time.process_time()
        s.score = evaluate(np.fromiter(s.pages, np.int64)[-EVAL_LAST:], lambda: DeltaModel(depth=depth))
        self.budget_s -= time.process_time() - t0
        self.evaluations += 1
        if not file_backed or s.score["accuracy"] < self.cfg["min_accuracy"]:
            return []
        tgid, dev, ino = key
        s.path = file_of(tgid, dev, ino) if self.live else None
        s.model = DeltaModel(depth=depth)
        for p in list(s.pages)[-64:]:  # warm the live model on the stream's recent faults
            s.model(p)
        self.decided += 1
        sc = s.score
        return [Decision("memory", "decision", f"{s.comm}[{tgid}] faults on {s.path or f'inode {ino}'} are predictable "
                         f"(accuracy {sc['accuracy']:.2f}, coverage {sc['coverage']:.2f} over {sc['faults']} faults): "
                         "prefetching", pid=tgid, comm=s.comm,
                         detail={"inode": ino, "dev": dev, "file": s.path, **{k: round(v, 4) if isinstance(v, float) else v
                                                                             for k, v in sc.items()}})]

    def _prefetch(self, key, s: Stream, pages: list[int]):
        want = []
        for p in pages:
            if p in s.issued:
                s.n_used += 1
                s.issued.discard(p)
            for q in s.model(p):
                if q >= 0 and q not in s.issued:
                    s.issued.add(q)
                    want.append(q)
        if len(s.issued) > 4096:
            s.issued = set(list(s.issued)[-2048:])
        s.n_issued += len(want)
        if not want:
            return
        if not (self.live and self.enforce and s.path):
            self.planned += len(want)
            return
        try:
            fd = os.open(s.path, os.O_RDONLY)
        except OSError:
            s.path = None
            return
        try:
            size = os.fstat(fd).st_size
            for q in want:
                if q * PAGE < size:
                    os.posix_fadvise(fd, q * PAGE, PAGE, os.POSIX_FADV_WILLNEED)
                    self.fadvised += 1
        finally:
            os.close(fd)

    def act(self, d: Decision, journal) -> Decision | None:
        if d.kind != "decision":
            return None
        how = "fadvise(WILLNEED) of predicted pages" if (self.live and self.enforce and d.detail.get("file")) else \
            "would fadvise(WILLNEED) predicted pages (dry run)" if self.live else "replay: nothing to prefetch"
        return Decision("memory", "action" if self.enforce and self.live else "plan", f"{how}: {d.comm}[{d.pid}]",
                        pid=d.pid, comm=d.comm, detail={"file": d.detail.get("file")})

    def summary(self, top: int | None = None) -> dict:
        def row(k, s):
            r = {"process": f"{s.comm}[{k[0] if isinstance(k, tuple) else k}]", "faults": s.faults}
            if isinstance(k, tuple):
                r["file"] = s.path or f"inode {k[2]}"
            if s.score:
                r.update(accuracy=round(s.score["accuracy"], 3), coverage=round(s.score["coverage"], 3))
            if s.model is not None:
                r.update(prefetching=True, pages_issued=s.n_issued, issued_then_faulted=s.n_used)
            return r
        scored = [(k, s) for k, s in self.files.items() if s.score] + [(k, s) for k, s in self.anon.items() if s.score]
        scored.sort(key=lambda ks: (-(ks[1].model is not None), -ks[1].faults))
        return {"file_streams": len(self.files), "anon_streams": len(self.anon), "streams_of_exited_forgotten": self.pruned,
                "faults_seen": self.faults_forgotten + sum(s.faults for s in self.files.values())
                + sum(s.faults for s in self.anon.values()),
                "predictable_prefetching": self.decided, "pages_fadvised": self.fadvised,
                "pages_planned": self.planned, "evaluations": self.evaluations, "swap": "off", "streams": [row(k, s) for k, s in scored[:cap(10, top)]]}
