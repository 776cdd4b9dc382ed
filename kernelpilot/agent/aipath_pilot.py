"""AI-path pilot: per-process layer counters from the shared sensor (system calls by category,
page faults, context switches, page-cache activity, device ioctls), the figures `kpilot aipath`
draws for one program, kept for every process. A process's first ioctl on a device is a note."""
from __future__ import annotations

import heapq
from collections import OrderedDict

import numpy as np

from kernelpilot.agent.pilot import Decision, Pilot, cap
from kernelpilot.traces import schema as S

COLS = ("syscalls", "memory", "sync", "files", "device", "process", "other", "page_faults", "switches_vol",
        "switches_invol", "file_reads", "file_misses", "file_faults", "ioctls", "mmaps")
C = {c: i for i, c in enumerate(COLS)}
MAX_ROWS = 20000  # processes kept; past it the longest-quiet ones go (counted in the summary)


def category_table(n: int = 512) -> np.ndarray:
    """Column index per x86-64 syscall number."""
    from kernelpilot.aipath.features import CATEGORY_OF, syscall_names
    names = syscall_names(np.arange(n))
    return np.array([C[CATEGORY_OF.get(nm, "other")] for nm in names], np.int64)


class AipathPilot(Pilot):
    name = "aipath"

    def __init__(self, cfg: dict, live: bool = True):
        super().__init__(live)
        self.cfg = cfg
        self.cat = category_table()
        self.rows: OrderedDict[int, np.ndarray] = OrderedDict()  # least recently seen first
        self.total: dict[int, int] = {}  # tgid -> its row's sum, kept as rows grow (no .sum() per publication)
        self.comm: dict[int, str] = {}
        self.evicted = 0                                  # processes whose rows went (MAX_ROWS)
        self.evicted_counts = np.zeros(len(COLS), np.int64)  # and what those rows had counted
        self.devices: set[tuple[int, int]] = set()
        self.accel: set[int] = set()

    def observe(self, batch: np.ndarray) -> list[Decision]:
        if not len(batch):
            return []
        kind = batch["kind"]
        col = np.full(len(batch), -1, np.int64)
        sc = kind == S.SYSCALL
        nr = batch["a0"][sc].astype(np.int64)
        col[sc] = np.where(nr < len(self.cat), self.cat[nr.clip(0, len(self.cat) - 1)], C["other"])
        sw = kind == S.SCHED_SWITCH
        col[sw] = np.where(batch["a1"][sw] == 0, C["switches_invol"], C["switches_vol"])
        for k, c in ((S.PAGE_FAULT, "page_faults"), (S.FILE_READ, "file_reads"), (S.FILE_MISS, "file_misses"),
                     (S.FILE_FAULT, "file_faults"), (S.IOCTL, "ioctls"), (S.MMAP, "mmaps")):
            col[kind == k] = C[c]
        m = col >= 0
        tg, cm, cl = batch["tgid"][m].astype(np.int64), batch["comm"][m], col[m]
        if not len(tg):
            return []
        keys, inv = np.unique(tg, return_inverse=True)
        k = len(keys)
        counts = np.bincount(inv * len(COLS) + cl, minlength=k * len(COLS)).reshape(k, len(COLS))
        counts[:, C["syscalls"]] = counts[:, 1:7].sum(axis=1)
        sums = counts.sum(axis=1).tolist()
        named = np.flatnonzero(cm != b"")  # batched kinds carry no comm; switches, execs do
        last = np.full(k, -1, np.int64)
        last[inv[named]] = named
        rows, total = self.rows, self.total
        for t, row, j, n in zip(keys.tolist(), counts, last.tolist(), sums):
            r = rows.get(t)
            if r is None:
                rows[t] = row.copy()  # a view would keep this batch's whole table alive
                total[t] = n
            else:
                r += row
                rows.move_to_end(t)
                total[t] += n
            if j >= 0:
                self.comm[t] = cm[j].decode(errors="replace")
        while len(rows) > MAX_ROWS:  # bounded: the longest-quiet process goes, its counts summed
            t, r = rows.popitem(last=False)
            self.comm.pop(t, None)  # names go with their rows
            del total[t]
            self.evicted += 1
            self.evicted_counts += r
        return self._devices(batch[kind == S.IOCTL])

    def _devices(self, io) -> list[Decision]:
        out = []
        for tgid, rdev, comm in zip(io["tgid"].tolist(), io["a2"].tolist(), io["comm"].tolist()):
            if not rdev or (tgid, rdev) in self.devices or len(self.devices) > 10000:
                continue
            self.devices.add((tgid, rdev))
            desc = {"major": rdev >> 20, "minor": rdev & 0xFFFFF}
            if self.live:
                try:
                    from kernelpilot.aipath.devices import describe
                    desc = describe(rdev)
                except Exception:
                    pass
            if not desc.get("accelerator"):  # ttys, /dev/null: counted, not noted
                continue
            self.accel.add(tgid)
            name = comm.decode(errors="replace")
            out.append(Decision("aipath", "note", f"{name}[{tgid}] uses device {desc.get('path') or desc}",
                                pid=tgid, comm=name, detail=desc))
        return out

    def summary(self, top: int | None = None) -> dict:
        """The `top` busiest processes' layers (default the config's)."""
        busiest = heapq.nlargest(cap(self.cfg["top"], top), self.total.items(), key=lambda kv: kv[1])
        rows = [(t, self.rows[t]) for t, _ in busiest]
        return {"processes": len(self.rows), "processes_evicted": self.evicted,
                "evicted_counts": {c: int(v) for c, v in zip(COLS, self.evicted_counts) if v},
                "device_files_used": len(self.devices), "processes_on_accelerators": len(self.accel),
                "layers": {f"{self.comm.get(t, '?')}[{t}]": {c: int(v) for c, v in zip(COLS, row) if v}
                           for t, row in rows}}
