"""Page prefetchers over a fault (or file page) sequence, and how to score them.

Each prefetcher sees the faulting page numbers in order and, after each fault, names pages to
fetch. `evaluate` replays the sequence with a bounded prefetch buffer and reports
  accuracy    used prefetches / issued prefetches
  coverage    faults served by a prefetch / all faults
  timeliness  mean number of faults between issuing a prefetch and its use, and the share of
              used prefetches issued at least `lead` faults ahead (a fetch takes time).
"""
from __future__ import annotations

from collections import Counter, OrderedDict, deque

import numpy as np

from kernelpilot.errors import KpError


class NextN:
    name = "next-n"

    def __init__(self, n: int = 8):
        self.n = n

    def __call__(self, p: int) -> list[int]:
        return [p + k for k in range(1, self.n + 1)]


class Readahead:
    """Linux swap readahead style: the aligned cluster of 8 pages around the fault."""
    name = "readahead"

    def __init__(self, cluster: int = 8):
        self.c = cluster

    def __call__(self, p: int) -> list[int]:
        base = p - (p % self.c)
        return [q for q in range(base, base + self.c) if q != p]


class Leap:
    """Leap (ATC'20): majority delta (Boyer-Moore) over the last 8, then 16, then 32 deltas;
    prefetch along the trend, depth growing with recent hits; no trend -> last trend."""
    name = "leap"

    def __init__(self, depth: int = 8, windows=(8, 16, 32)):
        self.hist: deque[int] = deque(maxlen=max(windows))
        self.windows = windows
        self.last = None
        self.trend = 0
        self.depth = depth

    def _majority(self, deltas) -> int | None:
        cand, cnt = 0, 0
        for d in deltas:
            if cnt == 0:
                cand, cnt = d, 1
            else:
                cnt += 1 if d == cand else -1
        return cand if sum(1 for d in deltas if d == cand) > len(deltas) // 2 else None

    def __call__(self, p: int) -> list[int]:
        if self.last is not None:
            self.hist.append(p - self.last)
        self.last = p
        h = list(self.hist)
        for w in self.windows:
            if len(h) < 2:
                break
            m = self._majority(h[-w:])
            if m is not None:
                self.trend = m
                break
        if self.trend == 0:
            return []
        return [p + self.trend * k for k in range(1, self.depth + 1)]


class Stride:
    """Multi-stream stride detector (a reference prediction table): a fault continues the
    stream whose last page + stride equals it, or the nearest stream within `window` pages;
    a stride seen twice in a row is confirmed and prefetched `depth` steps ahead."""
    name = "stride"

    def __init__(self, depth: int = 8, streams: int = 16, window: int = 256):
        self.depth, self.window = depth, window
        self.tab: OrderedDict[int, list] = OrderedDict()  # id -> [last, stride, confirmed]
        self.next_id = 0
        self.max = streams

    def __call__(self, p: int) -> list[int]:
        best, bd = None, None
        for sid, (last, stride, _) in self.tab.items():
            if stride and last + stride == p:
                best, bd = sid, 0
                break
            d = abs(p - last)
            if d <= self.window and (bd is None or d < bd):
                best, bd = sid, d
        if best is None:
            self.tab[self.next_id] = [p, 0, False]
            self.next_id += 1
            if len(self.tab) > self.max:
                self.tab.popitem(last=False)
            return []
        e = self.tab[best]
        self.tab.move_to_end(best)
        d = p - e[0]
        e[2] = d != 0 and d == e[1]
        e[0], e[1] = p, d
        if not e[2]:
            return []
        return [p + d * k for k in range(1, self.depth + 1)]


class DeltaModel:
    """Learned delta correlation: counts of (previous two deltas) -> next delta, learned online
    from the fault stream itself. Predictions chain the most likely next delta `depth` steps;
    with no confident context it falls back to the stride detector."""
    name = "learned"

    def __init__(self, depth: int = 8, min_count: int = 2):
        self.table: dict[tuple[int, int], Counter] = {}
        self.d1 = self.d2 = None
        self.last = None
        self.depth, self.min_count = depth, min_count
        self.stride = Stride(depth)

    def _best(self, ctx):
        c = self.table.get(ctx)
        if not c:
            return None
        d, n = c.most_common(1)[0]
        return d if n >= self.min_count and n * 2 > sum(c.values()) else None

    def __call__(self, p: int) -> list[int]:
        fallback = self.stride(p)
        if self.last is not None:
            d = p - self.last
            if self.d1 is not None and self.d2 is not None:
                self.table.setdefault((self.d2, self.d1), Counter())[d] += 1
            self.d2, self.d1 = self.d1, d
        self.last = p
        if self.d1 is None or self.d2 is None:
            return fallback
        out, q, a, b = [], p, self.d2, self.d1
        for _ in range(self.depth):
            nd = self._best((a, b))
            if nd is None:
                break
            q += nd
            out.append(q)
            a, b = b, nd
        return out if out else fallback


PREFETCHERS = {"next-n": NextN, "readahead": Readahead, "leap": Leap, "stride": Stride,
               "learned": DeltaModel}


def evaluate(pages, make, buffer: int = 256, lead: int = 2) -> dict:
    """Replay `pages` with prefetcher `make()`; the buffer holds at most `buffer` unused pages."""
    pages = np.asarray(pages, dtype=np.int64)
    if pages.ndim != 1 or len(pages) == 0:
        raise KpError("prefetch evaluation needs a non-empty sequence of page numbers")
    pf = make()
    buf: OrderedDict[int, int] = OrderedDict()  # page -> index of the fault that issued it
    issued = used = timely = 0
    leads = 0
    for t, p in enumerate(pages.tolist()):
        if p in buf:
            at = buf.pop(p)
            used += 1
            leads += t - at
            timely += (t - at) >= lead
        for q in pf(p):
            if q < 0 or q == p or q in buf:
                continue
            buf[q] = t
            issued += 1
            if len(buf) > buffer:
                buf.popitem(last=False)
    n = len(pages)
    return {"prefetcher": pf.name, "faults": n, "issued": issued, "used": used,
            "accuracy": used / issued if issued else 0.0, "coverage": used / n,
            "mean_lead": leads / used if used else 0.0, "timely": timely / used if used else 0.0}


def compare(pages, names=None, **kw) -> list[dict]:
    names = names or list(PREFETCHERS)
    bad = [n for n in names if n not in PREFETCHERS]
    if bad:
        raise KpError(f"unknown prefetcher {', '.join(bad)}; choose from {', '.join(PREFETCHERS)}")
    return [evaluate(pages, PREFETCHERS[n], **kw) for n in names]


# ---- fault patterns ---------------------------------------------------------------------------

def strided(n: int, stride: int = 3, base: int = 1 << 20) -> np.ndarray:
    return base + stride * np.arange(n, dtype=np.int64)


def pointer_chase(n: int, pattern=(5, -2, 9, 3), base: int = 1 << 20) -> np.ndarray:
    """A linked structure laid out with a repeating delta pattern (a regular pointer chase)."""
    deltas = np.resize(np.array(pattern, np.int64), n)
    return base + np.cumsum(deltas) - deltas[0]


def mixed_pages(n: int, seed: int = 0) -> np.ndarray:
    """Phases: interleaved strided streams, a regular pointer chase, and random faults."""
    rng = np.random.default_rng(seed)
    out, base = [], 1 << 20
    while sum(map(len, out)) < n:
        k = rng.random()
        m = int(rng.integers(200, 800))
        if k < 0.4:  # two interleaved streams
            a = base + 3 * np.arange(m // 2)
            b = base + (1 << 16) + 7 * np.arange(m // 2)
            out.append(np.ravel(np.column_stack([a, b])))
        elif k < 0.75:
            out.append(pointer_chase(m, tuple(rng.integers(-8, 16, size=3)), base))
        elif k < 0.9:
            out.append(strided(m, int(rng.integers(1, 5)), base))
        else:
            out.append(base + rng.integers(0, 1 << 14, size=m // 4))
        base += 1 << 18
    return np.concatenate(out)[:n].astype(np.int64)


PATTERNS = {"strided": lambda n, s: strided(n), "pointer-chase": lambda n, s: pointer_chase(n),
            "mixed": mixed_pages}


def pages_from_trace(tr) -> np.ndarray:
    """A request trace's object ids, read as page numbers."""
    return tr.ids
