"""A request trace (object ids, sizes, optional times) as the cache simulators and importers
share it, and the page-id layout of page traces: id = inode << GROUP_SHIFT | page."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from kernelpilot.errors import KpError

GROUP_SHIFT = 28  # page traces: id = inode << 28 | page


def page_ids(ino, pages):
    """Request ids of file pages: inode << GROUP_SHIFT | page."""
    return (ino.astype(np.int64) << GROUP_SHIFT) | (pages.astype(np.int64) & ((1 << GROUP_SHIFT) - 1))


def groups(raw_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(dense group per request, low id bits per request, number of groups)."""
    raw = np.asarray(raw_ids, np.int64)
    uniq, g = np.unique(raw >> GROUP_SHIFT, return_inverse=True)
    return g.astype(np.int64), raw & ((1 << GROUP_SHIFT) - 1), len(uniq)


@dataclass
class Trace:
    """Requests in order: object ids (int64), sizes in bytes (int64), optional timestamps."""
    ids: np.ndarray
    sizes: np.ndarray
    name: str = "trace"
    times: np.ndarray | None = None
    by_popularity: np.ndarray | None = None  # IRM generators: object ids, most probable first
    _dense: tuple | None = field(default=None, repr=False)
    _groups: tuple | None = field(default=None, repr=False)

    def __post_init__(self):
        self.ids = np.ascontiguousarray(self.ids, dtype=np.int64)
        self.sizes = np.ascontiguousarray(np.broadcast_to(self.sizes, self.ids.shape), dtype=np.int64)
        if self.ids.ndim != 1:
            raise KpError(f"trace {self.name}: object ids must be one-dimensional")
        if len(self.ids) == 0:
            raise KpError(f"trace {self.name}: no requests")
        if (self.sizes <= 0).any():
            bad = int(np.argmax(self.sizes <= 0))
            raise KpError(f"trace {self.name}: request {bad} has size {int(self.sizes[bad])}; sizes must be > 0")

    def __len__(self) -> int:
        return len(self.ids)

    def dense(self):
        """(dense ids 0..n_obj-1, n_obj, next position of the same object or -1), cached."""
        if self._dense is None:
            uniq, inv = np.unique(self.ids, return_inverse=True)
            inv = inv.astype(np.int64)
            self._dense = (inv, len(uniq), next_positions(inv, len(uniq)))
        return self._dense

    def groups(self):
        """(dense group per request, page within the group, n_groups), cached; for page traces
        the group is the file (id = inode << 28 | page)."""
        if self._groups is None:
            self._groups = groups(self.ids)
        return self._groups

    def footprint(self, unit: bool = True) -> int:
        """Distinct objects (unit) or distinct bytes (each object's first size)."""
        d, n_obj, _ = self.dense()
        if unit:
            return n_obj
        first = np.full(n_obj, -1, np.int64)
        first[d[::-1]] = np.arange(len(d))[::-1]
        return int(self.sizes[first].sum())


@njit(cache=True)
def next_positions(ids, n_obj):
    n = ids.shape[0]
    out = np.full(n, -1, np.int64)
    last = np.full(n_obj, -1, np.int64)
    for t in range(n - 1, -1, -1):
        out[t] = last[ids[t]]
        last[ids[t]] = t
    return out
