"""Run replacement policies over a trace: miss ratios per policy and cache size."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.memory import policies
from kernelpilot.memory.trace import Trace

CLASSIC = list(policies.CLASSIC) + ["belady"]
# expert followers (memory/vote.py, memory/lecar.py): vote with a model has lrb among its experts
# (as the bench's vote; `kpilot memory sim` trains it), vote_classic never (the classics alone)
ONLINE = ["vote", "vote_classic", "lecar"]
LEARNED = ["lrb", "imitate", "reuse", "mix"]
ALL = CLASSIC + ONLINE + LEARNED
ALIASES = {"opt": "belady", "twoq": "2q", "s3-fifo": "s3fifo", "learned": "mix"}


@dataclass
class Result:
    policy: str
    cache_size: int
    miss_ratio: float
    byte_miss_ratio: float
    requests: int
    seconds: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def parse_policies(spec: str) -> list[str]:
    names = [ALIASES.get(s.strip().lower(), s.strip().lower()) for s in spec.split(",") if s.strip()]
    if names == ["all"]:
        return list(ALL)
    bad = [n for n in names if n not in ALL]
    if bad or not names:
        raise KpError(f"unknown policy {', '.join(bad) or '(none)'}; choose from {', '.join(ALL)}")
    return names


def check_size(tr: Trace, cache_size: int, unit: bool) -> int:
    cache_size = int(cache_size)
    if cache_size <= 0:
        raise KpError(f"cache size must be > 0 (got {cache_size})")
    if not unit:
        big = int(tr.sizes.max())
        if big > cache_size:
            raise KpError(f"trace {tr.name}: an object of {big} bytes is larger than the cache "
                          f"({cache_size} bytes)")
    return cache_size


def hits(tr: Trace, policy: str, cache_size: int, unit: bool = True, model=None) -> np.ndarray:
    """Per-request hit flags (uint8) for one policy at one size."""
    cache_size = check_size(tr, cache_size, unit)
    d, n_obj, nxt = tr.dense()
    sz = np.ones(len(d), np.int64) if unit else tr.sizes
    if policy == "belady":
        return policies.belady(d, sz, cache_size, n_obj, nxt)
    if policy in policies.CLASSIC:
        return policies.CLASSIC[policy](d, sz, cache_size, n_obj)
    if policy in ("vote", "vote_classic"):  # with lrb's model, lrb joins from its training prefix's end
        from kernelpilot.memory import vote
        if model is None or policy == "vote_classic":
            return vote.vote(d, sz, cache_size, n_obj)
        from kernelpilot.memory import mix
        return vote.run(d, sz, cache_size, n_obj, learned=mix.learned_expert("lrb", tr, sz, cache_size, model),
                        learned_from=min(int(model.meta.get("train_requests", 0)), len(d)))[0]
    if policy == "lecar":
        from kernelpilot.memory import lecar
        return lecar.lecar(d, sz, cache_size, n_obj)
    if policy in LEARNED:
        from kernelpilot.memory import models as learned
        if model is None:
            raise KpError(f"policy {policy} needs a trained model (kpilot memory train, or --train-frac)")
        if policy == "mix":  # experts online, the learned model among them
            from kernelpilot.memory import mix
            return mix.run(d, sz, cache_size, n_obj, mix.learned_expert(mix.LEARNED, tr, sz, cache_size, model),
                           learned_from=min(int(model.meta.get("train_requests", 0)), len(d)))[0]
        return learned.run(policy, tr, sz, cache_size, model)
    raise KpError(f"unknown policy '{policy}'; choose from {', '.join(ALL)}")


def simulate(tr: Trace, policy: str, cache_size: int, unit: bool = True, model=None,
             eval_from: int = 0) -> Result:
    """Miss ratio of `policy` on `tr`, counted over requests [eval_from, end)."""
    t0 = time.perf_counter()
    h = hits(tr, policy, cache_size, unit, model)
    secs = time.perf_counter() - t0
    h = h[eval_from:]
    sz = tr.sizes[eval_from:]
    n = len(h)
    mr = 1.0 - float(h.sum()) / n if n else 0.0
    bmr = 1.0 - float((sz * h).sum()) / float(sz.sum()) if n else 0.0
    return Result(policy, int(cache_size), mr, bmr, n, secs)


def sizes_from_spec(tr: Trace, spec: str, unit: bool) -> list[int]:
    """'0.01,0.1' (fractions of the footprint) or '100,1000' (absolute) -> sizes."""
    out = []
    foot = tr.footprint(unit)
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            v = float(part)
        except ValueError:
            raise KpError(f"bad cache size '{part}': give numbers, e.g. 0.01,0.1 or 1000") from None
        if v <= 0:
            raise KpError(f"cache size must be > 0 (got {part})")
        out.append(max(1, int(v * foot)) if v < 1 else int(v))
    if not out:
        raise KpError("no cache sizes given")
    return out
