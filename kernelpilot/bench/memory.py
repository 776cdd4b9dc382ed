"""`kpilot bench memory`: replacement policies side by side (gap closed to Belady by `mix`, the
learned policy, against the best classic policy of each cell), prefetchers vs Leap, and
simulator speed with libcachesim's measured in the same run when installed."""
from __future__ import annotations

import os
import time

import numpy as np


def _real_traces(quick: bool) -> tuple[list, dict]:
    """Real programs recorded with the foundation tracer (needs root and eBPF/tracefs)."""
    from kernelpilot.errors import KpError
    from kernelpilot.memory import workloads as W
    scale = {"sqlite": 20, "gcc": 10, "python": 20, "sort": 10, "files": 10} if quick else \
        {"sqlite": 50, "gcc": 40, "python": 60, "sort": 20, "files": 20}
    out, info = [], {}
    for name, sc in scale.items():
        try:
            tr = W.record(name, sc)
        except KpError as e:
            info[name] = f"not recorded: {e}"
            continue
        out.append(tr)
        info[name] = {"requests": len(tr), "objects": tr.footprint()}
    return out, info


# the dev set: public traces in ../shared/datasets/cache (README there), develop and report on them
DEV_TRACES = ("lirs/2_pools.trace.gz", "lirs/cpp.trace.gz", "lirs/cs.trace.gz", "lirs/gli.trace.gz",
              "lirs/multi1.trace.gz", "lirs/multi2.trace.gz", "lirs/multi3.trace.gz", "lirs/ps.trace.gz",
              "lirs/sprite.trace.gz", "arc/OLTP.lis.zst", "arc/P2.lis.zst", "arc/P3.lis.zst",
              "cache2k/web07.trace.xz", "cache2k/web12.trace.xz", "cache2k/orm-busy.trace.xz",
              "scarab/scarab-recs.trace.xz", "address/gcc.trace.gz", "address/swim.trace.gz",
              "address/twolf.trace.gz", "adapt_size/request.trace.xz")
# --quick, a fast look: one trace of each kind (LIRS, ARC, cache2k, UCSD address), shorter prefixes
QUICK_TRACES = ("lirs/cs.trace.gz", "arc/P3.lis.zst", "cache2k/web12.trace.xz", "address/gcc.trace.gz")
FRACS = (0.01, 0.05, 0.1, 0.2)  # cache sizes: fractions of the footprint (unit-size objects)
PREFIX = {False: 500_000, True: 60_000}  # requests read of each trace (full, quick)
LCS_BUDGET = {False: 100_000, True: 35_000}  # libCacheSim learned caches (slow): traces up to this long
PROTOCOL = ("each dev trace read to its first {prefix} requests, unit-size objects (UCSD address traces: "
            "64-byte lines; AdaptSize: ids, sizes ignored), cache sizes 1/5/10/20% of the footprint of what was "
            "read; learned parts (lrb's model, mix's learned expert) train on the first half only, every "
            "policy is scored on the second half; mix and its experts run online over the whole prefix")


def dataset_dir():
    from kernelpilot.datasets import datasets_dir
    return datasets_dir() / "cache"


# the classic policies the memory issue lists; Perfect LFU (`plfu`) is reported beside them
LISTED = ("fifo", "lru", "clock", "lfu", "arc", "2q", "lirs", "s3fifo", "sieve")


def popularity_oracle(tr, size: int, start: int) -> float:
    """Miss ratio over requests [start, end) of a cache that holds, from the start, the `size`
    objects most requested in that window: an offline bound. Where requests are independent draws
    from fixed popularities (sqlite's random lookups, Zipf), no online policy can expect to beat
    keeping the most popular objects, so this bounds what learning can gain there; the rest of
    the way to Belady is lookahead. It is no bound elsewhere: on loops and one-pass scans it even
    beats Belady, since it starts with the window's objects loaded (per cell only, no summary)."""
    d = tr.dense()[0][start:]
    cnt = np.bincount(d)
    return 1.0 - float(np.sort(cnt)[::-1][:size].sum()) / max(len(d), 1)


def irm_optimal(tr, size: int, start: int) -> float | None:
    """Miss ratio over requests [start, end) of A0: hold the `size` most probable objects. Where
    requests are independent draws from known probabilities (a generated Zipf trace) A0 is the
    best any online policy can expect (Aho, Denning and Ullman 1971), so the share of the gap
    to Belady it closes bounds what learning can close there. None where the probabilities
    are unknown (recorded traces)."""
    if tr.by_popularity is None:
        return None
    return 1.0 - float(np.isin(tr.ids[start:], tr.by_popularity[:size]).mean())


def _closed(base: float, x: float, opt: float) -> float:
    """Share of the gap from `base` down to Belady's `opt` that miss ratio `x` closes."""
    return round((base - x) / (base - opt), 4) if base > opt else 0.0


def score_cell(row: dict) -> dict:
    """One trace x size cell (policy -> miss ratio): the best classic (the listed ones or Perfect
    LFU), mix's regret against the best of its own experts, and the share of the gap from the best
    classic to Belady that mix and the learned policy (lrb) close."""
    from kernelpilot.memory import mix
    classic = {k: row[k] for k in LISTED + ("plfu",)}
    best = min(classic, key=classic.get)
    experts = {k: row[k] for k in mix.EXPERTS + (mix.LEARNED,)}
    bexp = min(experts, key=experts.get)
    opt = row["belady"]
    row.update(best_classic=best, room_to_belady=round(row[best] - opt, 5), best_expert=bexp,
               mix_regret=round(row["mix"] - row[bexp], 5),
               mix_below_best=row["mix"] < row[best], learned_below_best=row["lrb"] < row[best],
               gap_closed=_closed(row[best], row["mix"], opt),
               learned_gap_closed=_closed(row[best], row["lrb"], opt))
    if "vote" in row:  # the followers that fetch nothing (memory/vote.py, memory/lecar.py)
        from kernelpilot.memory import vote
        # vote's experts: the classics and, where the cell has it, lrb (vote_classic: without it)
        vexp = min(vote.EXPERTS + (("lrb",) if "vote_classic" in row else ()), key=row.get)
        row.update(vote_regret=round(row["vote"] - row[vexp], 5), vote_below_best=row["vote"] < row[best],
                   vote_gap_closed=_closed(row[best], row["vote"], opt),
                   lecar_below_best=row["lecar"] < row[best], lecar_gap_closed=_closed(row[best], row["lecar"], opt))
        if "vote_classic" in row:
            cexp = min(vote.EXPERTS, key=row.get)
            row.update(vote_classic_regret=round(row["vote_classic"] - row[cexp], 5),
                       vote_classic_below_best=row["vote_classic"] < row[best],
                       vote_classic_gap_closed=_closed(row[best], row["vote_classic"], opt))
    if "mix_fetched_per_request" in row:
        # mix with what its switches fetched counted as misses (no request asked for those
        # objects: traffic an actual cache pays like a miss's); the figures above leave it out
        fm = round(row["mix"] + row["mix_fetched_per_request"], 5)
        row.update(mix_fetched_as_misses=fm, mix_below_best_fetched_as_misses=fm < row[best],
                   gap_closed_fetched_as_misses=_closed(row[best], fm, opt))
    if "popularity_oracle" in row:
        row["popularity_oracle_gap_closed"] = _closed(row[best], row["popularity_oracle"], opt)
    return row


def _lcs_learned(tr, sizes: list, start: int) -> dict:
    """libCacheSim's learned caches (PyPI wheel) per size: miss ratio over requests [start, end),
    from a run over the whole trace less one over its first `start` requests; an error per cache."""
    import tempfile

    from kernelpilot.memory.trace import Trace
    from kernelpilot.traces.importers.oracle_general import write_oracle_general
    try:
        import libcachesim as lcs
    except ImportError:
        return {s: {n: "not installed (pip install .[test])" for n in LCS_LEARNED} for s in sizes}
    out = {s: {} for s in sizes}
    with tempfile.TemporaryDirectory() as d:
        path = f"{d}/t.oracleGeneral"
        write_oracle_general(path, Trace(tr.ids, 1, name=tr.name))  # unit size, as ours
        for size in sizes:
            for name, cls in LCS_LEARNED.items():
                try:
                    def mr(max_req):
                        reader = lcs.TraceReader(path, lcs.TraceType.ORACLE_GENERAL_TRACE)
                        return getattr(lcs, cls)(size).process_trace(reader, max_req=max_req)[0]
                    n = len(tr)
                    out[size][name] = round((mr(-1) * n - mr(start) * start) / (n - start), 5)
                except Exception as e:  # report it per cell, as the issue asks
                    out[size][name] = f"failed: {type(e).__name__}: {str(e)[:80]}"
    return out


LCS_LEARNED = {"lcs_lrb": "LRB", "lcs_glcache": "GLCache", "lcs_3lcache": "ThreeLCache"}


def _replayed(hits: np.ndarray, log: np.ndarray):
    """A learned expert for mix.serve that replays one full run (hits, eviction log) instead of
    running again: a prefix is the run's first `end` requests, as a run on the cut trace gives
    (tests/memory/test_mix.py checks that equality), so the cell scores lrb and mix from one run."""
    def fn(evl, end=None):
        end = len(hits) if end is None else end
        rows = int(np.searchsorted(log[1:int(log[0, 0]) + 1, 0], end))
        evl[1:rows + 1] = log[1:rows + 1]
        evl[0, 0] = rows
        return hits[:end].copy()
    fn.prefix_ok = True
    return fn


def _classics(d, sz, size: int, n_obj: int, nxt, start: int, names) -> dict:
    """Miss ratios over requests [start, end) of the classic policies `names` and Belady."""
    from kernelpilot.memory import policies
    row = {p: 1.0 - float(policies.CLASSIC[p](d, sz, size, n_obj)[start:].mean()) for p in dict.fromkeys(names)}
    row["belady"] = 1.0 - float(policies.belady(d, sz, size, n_obj, nxt)[start:].mean())
    return row


def _cell(tr, size: int, start: int) -> dict:
    """Miss ratios over requests [start, end) of the classics, Belady, lrb and mix (with
    successive elimination: its pruned experts stop, so each classic is also run in full here)."""
    from kernelpilot.memory import mix, models, policies
    d, n_obj, nxt = tr.dense()
    sz = np.ones(len(d), np.int64)
    model = models.train("lrb", tr, size, True, start)
    log = mix._logs(1, len(d))[0]
    lrb = models.run("lrb", tr, sz, size, model, log)
    f = mix.serve(d, sz, size, n_obj, _replayed(lrb, log), learned_from=start)
    row = _classics(d, sz, size, n_obj, nxt, start, mix.EXPERTS + LISTED)
    row["lrb"] = 1.0 - float(lrb[start:].mean())
    row["mix"] = 1.0 - float(f.hit[start:].mean())
    row.update(_honest(d, sz, size, n_obj, start, (lrb, log)))
    # objects a switch fetched (no request asked for them), per scored request
    row["mix_fetched_per_request"] = float(f.fetched[start:].sum()) / max(1, len(d) - start)
    row = {k: round(v, 5) for k, v in row.items()}
    row["popularity_oracle"] = round(popularity_oracle(tr, size, start), 5)
    row["mix_switches"] = f.switches
    row["mix_copies"] = f.copies
    row["mix_led"] = {k: v for k, v in f.led.items() if v}
    row["mix_pruned_at"] = f.pruned  # expert -> request from which it no longer ran
    return row


def _honest(d, sz, size: int, n_obj: int, start: int, learned=None) -> dict:
    """Miss ratios over requests [start, end) of the followers that fetch nothing: vote (its
    experts pruned as vote.PRUNE says, one core; with `learned`, lrb's (hits, eviction log) over
    the whole trace, lrb is its expert from `start`, the end of lrb's training prefix, and
    vote_classic is vote without it) and lecar."""
    from kernelpilot.memory import lecar, vote
    out = {}
    if learned is not None:
        h, fallbacks, _ = vote.run(d, sz, size, n_obj, learned=learned, learned_from=start)
        out.update(vote=1.0 - float(h[start:].mean()), vote_fallbacks=int(fallbacks))
    h, fallbacks, _ = vote.run(d, sz, size, n_obj)
    out.update({"vote_classic" if learned is not None else "vote": 1.0 - float(h[start:].mean()),
                "vote_classic_fallbacks" if learned is not None else "vote_fallbacks": int(fallbacks),
                "lecar": 1.0 - float(lecar.lecar(d, sz, size, n_obj)[start:].mean())})
    return out


def _load(names, quick: bool, errors: dict) -> list:
    """The dev traces `names`, each to its prefix; one that cannot be read says why in `errors`."""
    from kernelpilot.errors import KpError
    from kernelpilot.memory import trace as T
    out = []
    for rel in names:
        try:
            out.append(T.load(str(dataset_dir() / rel), limit=PREFIX[quick]))
        except KpError as e:
            errors[rel] = f"not read: {e}"
    return out


def _sizes(tr) -> list[int]:
    return sorted({max(2, int(f * tr.footprint())) for f in FRACS})


DEV_SPLIT = ("the training half of each dev trace only (its first {half} requests of {prefix}; the policies "
             "part's scored half is never read): lrb trains on that half's first half and is scored on its "
             "second beside the classics and Belady, cache sizes 1/5/10/20% of that half's footprint; "
             "lrb's settings are chosen here and reported on the policies part")


def _devsplit(quick: bool) -> dict:
    """lrb against the best classic on the dev traces' training halves (DEV_SPLIT), where its
    settings are chosen; the summary counts the cells with room as the policies part does."""
    from concurrent.futures import ThreadPoolExecutor

    from kernelpilot.memory import mix, models
    from kernelpilot.memory.trace import Trace
    out = {"protocol": DEV_SPLIT.format(half=PREFIX[quick] // 2, prefix=PREFIX[quick]), "traces": {}}
    traces = _load(QUICK_TRACES if quick else DEV_TRACES, quick, out["traces"])

    def one(tr):
        half = Trace(tr.ids[:len(tr) // 2], tr.sizes[:len(tr) // 2], name=tr.name)
        d, n_obj, nxt = half.dense()
        sz, start = np.ones(len(d), np.int64), len(d) // 2
        cells = {}
        for size in _sizes(half):
            row = _classics(d, sz, size, n_obj, nxt, start, LISTED + ("plfu",))
            m = models.train("lrb", half, size, True, start)
            log = mix._logs(1, len(d))[0]
            lrb = models.run("lrb", half, sz, size, m, log)
            row["lrb"] = 1.0 - float(lrb[start:].mean())
            row.update(_honest(d, sz, size, n_obj, start, (lrb, log)))
            row = {k: round(v, 5) for k, v in row.items()}
            best = min(LISTED + ("plfu",), key=row.get)
            row.update(best_classic=best, room_to_belady=round(row[best] - row["belady"], 5),
                       learned_below_best=row["lrb"] < row[best],
                       learned_gap_closed=_closed(row[best], row["lrb"], row["belady"]))
            for p in ("vote", "vote_classic", "lecar"):
                row.update({f"{p}_below_best": row[p] < row[best],
                            f"{p}_gap_closed": _closed(row[best], row[p], row["belady"])})
            cells[str(size)] = row
        return tr.name, {"requests": len(half), "scored_from": start, "cells": cells}
    with ThreadPoolExecutor(max_workers=2) as pool:
        out["traces"].update(pool.map(one, traces))
    sel = [r for t in out["traces"].values() if isinstance(t, dict) for r in t["cells"].values()
           if r["room_to_belady"] >= ROOM]
    if sel:
        out["with_room"] = {"cells": len(sel),
                            "learned_below_best_classic": f"{sum(r['learned_below_best'] for r in sel)}/{len(sel)}",
                            "median_gap_closed_learned": float(np.median([r["learned_gap_closed"] for r in sel]))}
        for p in ("vote", "vote_classic", "lecar"):
            out["with_room"].update({f"{p}_below_best_classic": f"{sum(r[p + '_below_best'] for r in sel)}/{len(sel)}",
                                     f"median_gap_closed_{p}": float(np.median([r[p + "_gap_closed"] for r in sel]))})
        either = sum(r["vote_below_best"] or r["learned_below_best"] for r in sel)
        out["with_room"]["vote_or_learned_below_best_classic"] = f"{either}/{len(sel)}"
    return out


def _policies(quick: bool, dev: bool = True, recorded: bool = True) -> dict:
    """Cells of the dev traces (`dev`) and of the recorded programs (`recorded`, not in a quick run)."""
    from concurrent.futures import ThreadPoolExecutor
    root = dataset_dir()
    names = (QUICK_TRACES if quick else DEV_TRACES) if dev else ()
    out = {"protocol": PROTOCOL.format(prefix=PREFIX[quick]), "dataset_dir": str(root), "traces": {},
           "traces_read": list(names)}
    traces = _load(names, quick, out["traces"])
    if quick or not recorded:
        real, info = [], {"skipped": "quick run" if quick else "not among --only's parts"}
    else:
        real, info = _real_traces(quick)
    out["recorded_programs"] = info
    traces += real

    def one(tr):
        start = len(tr) // 2
        sizes = _sizes(tr)
        lcs = _lcs_learned(tr, sizes, start) if len(tr) <= LCS_BUDGET[quick] else \
            {s: {n: f"not run: {len(tr)} requests, over this run's budget ({LCS_BUDGET[quick]})"
                 for n in LCS_LEARNED} for s in sizes}
        cells = {}
        for size in sizes:
            row = _cell(tr, size, start)
            row.update(lcs[size])
            cells[str(size)] = score_cell(row)
        return tr, cells
    # two traces at a time: the kernels release the GIL
    with ThreadPoolExecutor(max_workers=2) as pool:
        for tr, cells in pool.map(one, traces):
            out["traces"][tr.name] = {"requests": len(tr), "objects": tr.footprint(), "cells": cells}
    return out


def _prefetch(quick: bool) -> dict:
    from kernelpilot.memory import prefetch as P
    n = 10_000 if quick else 40_000
    out = {}
    for name, make in P.PATTERNS.items():
        rows = {r["prefetcher"]: {k: round(v, 4) for k, v in r.items() if isinstance(v, float)}
                for r in P.compare(make(n, 0))}
        leap = rows["leap"]["coverage"]
        rows["learned_vs_leap_coverage"] = round(rows["learned"]["coverage"] / leap, 3) if leap else None
        out[name] = rows
    return out


def _speed(quick: bool) -> dict:
    """Requests per second on a real dev trace (a prefix of orm-busy, cache 10% of its footprint),
    all in this run: LRU and S3-FIFO, the learned policy, mix (its learned expert trained on the
    first half and leading from there, as the bench's cells score it) with its experts in threads
    (one per core) and on one core, mix without its learned expert on one core, and each against
    LRU. Successive elimination stops the experts that fall behind; `mix_pruned_at` says when."""
    from kernelpilot.errors import KpError
    from kernelpilot.memory import mix, models, sim, trace as T
    n = 200_000 if quick else 2_000_000
    try:
        tr = T.load(str(dataset_dir() / "cache2k/orm-busy.trace.xz"), limit=n)
    except KpError as e:
        return {"skipped": str(e)}
    d, n_obj, _ = tr.dense()
    size = tr.footprint() // 10
    half = len(tr) // 2
    m = models.train("lrb", tr, size, True, half)
    small = T.Trace(tr.ids[:2000], 1)
    for p in ("lru", "s3fifo", "lrb", "mix", "vote", "lecar"):  # compile outside the timing
        sim.simulate(small, p, 50, model=m)
    sz = np.ones(len(d), np.int64)
    served = {}

    def one_core(learned):
        def go():
            served["f"] = mix.serve(d, sz, size, n_obj, learned, learned_from=half, threads=1)
        return go
    # vote runs its experts on one core, then votes (with the model: lrb among them, its run included)
    runs = {p: (lambda p=p: sim.simulate(tr, p, size, model=m)) for p in ("lru", "s3fifo", "lrb", "mix", "vote", "lecar")}
    runs["vote_classic"] = lambda: sim.simulate(tr, "vote", size)  # without lrb among its experts
    runs["mix_classic_one_core"] = one_core(None)
    runs["mix_one_core"] = one_core(mix.learned_expert(mix.LEARNED, tr, sz, size, m))
    best = {}
    for p, go in runs.items():
        secs = []
        for _ in range(2):
            t0 = time.perf_counter()
            go()
            secs.append(time.perf_counter() - t0)
        best[p] = min(secs)
    out = {f"{p}_mreq_per_s": round(len(tr) / s / 1e6, 2) for p, s in best.items()}
    out.update({f"{p}_vs_lru": round(best["lru"] / best[p], 3)
                for p in ("lrb", "mix", "mix_one_core", "mix_classic_one_core", "vote", "vote_classic", "lecar")})
    out.update(trace=f"orm-busy (first {len(tr)} requests)", cache_size=size, cores=os.cpu_count(),
               mix_threads=min(len(mix.EXPERTS) + 1, os.cpu_count() or 1), mix_learned_from=half,
               mix_pruned_at=served["f"].pruned, mix_warm=max(mix.WARM, mix.WARM_CACHES * size),
               mix_block=mix.BLOCK, mix_delta=mix.DELTA)
    try:
        import tempfile

        import libcachesim as lcs

        from kernelpilot.traces.importers.oracle_general import write_oracle_general
        with tempfile.TemporaryDirectory() as dd:
            path = f"{dd}/t.oracleGeneral"
            write_oracle_general(path, tr)
            reader = lcs.TraceReader(path, lcs.TraceType.ORACLE_GENERAL_TRACE)
            secs = []
            for _ in range(2):
                t0 = time.perf_counter()
                mr = lcs.LRU(size).process_trace(reader)[0]
                secs.append(time.perf_counter() - t0)
        out["libcachesim_lru_mreq_per_s"] = round(len(tr) / min(secs) / 1e6, 2)
        out["lru_miss_ratio_equal"] = abs(mr - sim.simulate(tr, "lru", size).miss_ratio) < 1e-12
    except ImportError:
        out["libcachesim"] = "not installed (pip install .[test])"
    return out


def _live(quick: bool) -> dict:
    """Live prefetch (dropped caches, kernel readahead vs our WILLNEED agent, side by side) and
    swap (kernel reclaim vs cold-page MADV_PAGEOUT) on this host; root only."""
    import os

    from kernelpilot.errors import KpError
    from kernelpilot.memory import live
    if os.geteuid() != 0:
        return {"skipped": "needs root"}
    out = {}
    runs = [("prefetch_ra128", dict(ra_kb=128))] + ([] if quick else [("prefetch_device_ra", dict(ra_kb=None))])
    for name, kw in runs:
        try:
            r = live.prefetch_experiment([], None, 256 if quick else 512, 7919, True,
                                         count=4096 if quick else 8192, **kw)
            out[name] = {k: r[k] for k in ("read_ahead_kb", "device_read_ahead_kb", "kernel_readahead",
                                          "learned_prefetch", "major_fault_cut", "speedup",
                                          "prediction_accuracy", "history")}
        except KpError as e:
            out[name] = f"not run: {e}"
    try:
        r = live.swap_experiment([], 96, 512, True, rounds=2000 if quick else 20000)
        out["swap"] = {k: r[k] for k in ("kernel_reclaim", "learned_pageout", "major_fault_ratio", "speedup")}
    except KpError as e:
        out["swap"] = f"not run: {e}"
    return out


ROOM = 0.01  # one point of miss ratio between the best classic policy and Belady


TARGETS = {"mix_worst_regret": 0.005, "below_best_share_with_room": 0.6, "median_gap_closed": 0.15,
           "mreq_per_s": 2.0}


def _summary(pol: dict, speed: dict | None = None) -> dict:
    from kernelpilot.memory import mix
    cells = [dict(row, trace=name, size=size) for name, tr in pol["traces"].items() if isinstance(tr, dict)
             for size, row in tr["cells"].items()]
    out = {"mix_experts": list(mix.EXPERTS) + [mix.LEARNED], "room_threshold": ROOM, "targets": TARGETS}
    # a cell where the best classic policy is within ROOM of Belady leaves nothing to learn: every
    # policy ties there, so the targets are also reported over the cells with room
    for label, keep in (("all", lambda r: True), ("with_room", lambda r: r["room_to_belady"] >= ROOM)):
        sel = [r for r in cells if keep(r)]
        if not sel:
            continue
        worst = max(sel, key=lambda r: r["mix_regret"])
        either = sum(r["mix_below_best"] or r["learned_below_best"] for r in sel)
        out[label] = {"cells": len(sel),
                      "mix_worst_regret": worst["mix_regret"], "mix_worst_regret_cell": f"{worst['trace']}@{worst['size']}",
                      "mix_mean_regret": round(float(np.mean([r["mix_regret"] for r in sel])), 5),
                      "mix_cells_regret_over_0.5pt": sum(r["mix_regret"] > 0.005 for r in sel),
                      # the "never loses to the best classic": mix's worst excess over it
                      "mix_worst_above_best_classic": round(max(r["mix"] - r[r["best_classic"]] for r in sel), 5),
                      # traffic no request asked for: what mix's switches fetched, per scored request
                      "mix_fetched_per_request_max": max(r.get("mix_fetched_per_request", 0.0) for r in sel),
                      "mix_fetched_per_request_median": float(np.median([r.get("mix_fetched_per_request", 0.0)
                                                                         for r in sel])),
                      "mix_below_best_classic": f"{sum(r['mix_below_best'] for r in sel)}/{len(sel)}",
                      "learned_below_best_classic": f"{sum(r['learned_below_best'] for r in sel)}/{len(sel)}",
                      "mix_or_learned_below_best_classic": f"{either}/{len(sel)}",
                      "mix_or_learned_below_best_share": round(either / len(sel), 3),
                      "median_gap_closed_mix": float(np.median([r["gap_closed"] for r in sel])),
                      "median_gap_closed_learned": float(np.median([r["learned_gap_closed"] for r in sel]))}
        vs = [r for r in sel if "vote" in r]
        cs = [r for r in sel if "vote_classic" in r]
        if cs:  # vote without lrb among its experts, beside
            worst_c = max(cs, key=lambda r: r["vote_classic_regret"])
            out[label].update(
                vote_classic_worst_regret=worst_c["vote_classic_regret"],
                vote_classic_worst_regret_cell=f"{worst_c['trace']}@{worst_c['size']}",
                vote_classic_below_best_classic=f"{sum(r['vote_classic_below_best'] for r in cs)}/{len(cs)}",
                vote_classic_or_learned_below_best_classic=(
                    f"{sum(r['vote_classic_below_best'] or r['learned_below_best'] for r in cs)}/{len(cs)}"),
                median_gap_closed_vote_classic=float(np.median([r["vote_classic_gap_closed"] for r in cs])))
        if vs:  # the followers that fetch nothing
            worst_v = max(vs, key=lambda r: r["vote_regret"])
            either_v = sum(r["vote_below_best"] or r["learned_below_best"] for r in vs)
            out[label].update(
                vote_worst_regret=worst_v["vote_regret"], vote_worst_regret_cell=f"{worst_v['trace']}@{worst_v['size']}",
                vote_worst_above_best_classic=round(max(r["vote"] - r[r["best_classic"]] for r in vs), 5),
                vote_below_best_classic=f"{sum(r['vote_below_best'] for r in vs)}/{len(vs)}",
                vote_or_learned_below_best_classic=f"{either_v}/{len(vs)}",
                vote_or_learned_below_best_share=round(either_v / len(vs), 3),
                median_gap_closed_vote=float(np.median([r["vote_gap_closed"] for r in vs])),
                lecar_below_best_classic=f"{sum(r['lecar_below_best'] for r in vs)}/{len(vs)}",
                median_gap_closed_lecar=float(np.median([r["lecar_gap_closed"] for r in vs])))
        fm = [r for r in sel if "mix_fetched_as_misses" in r]
        if fm:  # the same with mix's fetched objects counted as misses (score_cell)
            either_fm = sum(r["mix_below_best_fetched_as_misses"] or r["learned_below_best"] for r in fm)
            out[label].update(
                mix_below_best_classic_fetched_as_misses=f"{sum(r['mix_below_best_fetched_as_misses'] for r in fm)}/{len(fm)}",
                mix_or_learned_below_best_classic_fetched_as_misses=f"{either_fm}/{len(fm)}",
                median_gap_closed_mix_fetched_as_misses=float(np.median([r["gap_closed_fetched_as_misses"] for r in fm])))
    room = out.get("with_room", {})
    if room:
        met = {"mix_worst_regret": out["all"]["mix_worst_regret"] <= TARGETS["mix_worst_regret"],
               "below_best_share_with_room": room["mix_or_learned_below_best_share"] >= TARGETS["below_best_share_with_room"],
               "median_gap_closed": max(room["median_gap_closed_mix"], room["median_gap_closed_learned"]) >= TARGETS["median_gap_closed"]}
        if speed and "mix_mreq_per_s" in speed:
            met["mreq_per_s"] = min(speed["mix_one_core_mreq_per_s"], speed["lrb_mreq_per_s"]) >= TARGETS["mreq_per_s"]
            met["mix_mreq_per_s"] = speed["mix_one_core_mreq_per_s"] >= TARGETS["mreq_per_s"]
        out["targets_met"] = met
        if "vote_below_best_classic" in room:  # the same targets for the follower that fetches nothing
            honest = {"vote_worst_regret": out["all"]["vote_worst_regret"] <= TARGETS["mix_worst_regret"],
                      "below_best_share_with_room": room["vote_or_learned_below_best_share"] >= TARGETS["below_best_share_with_room"],
                      "median_gap_closed": max(room["median_gap_closed_vote"], room["median_gap_closed_learned"]) >= TARGETS["median_gap_closed"]}
            if speed and "vote_mreq_per_s" in speed:
                honest["vote_mreq_per_s"] = speed["vote_mreq_per_s"] >= TARGETS["mreq_per_s"]
            out["targets_met_without_fetching"] = honest
    return out


# `--only` chooses among these: the dev traces' cells, the recorded programs' cells (root and eBPF;
# both go into "policies" and the summary), lrb on the training halves only (where its settings
# are chosen), prefetchers vs Leap, simulator speed, live runs (root)
PARTS = ("policies", "recorded", "devsplit", "prefetch", "speed", "live")


def run(quick: bool = False, only: list[str] | None = None) -> dict:
    """Every part (PARTS) unless `only` names some; `parts` says which ran."""
    parts = [p for p in PARTS if only is None or p in only]
    t0 = time.perf_counter()
    res = {"parts": parts}
    if "policies" in parts or "recorded" in parts:
        res["policies"] = _policies(quick, "policies" in parts, "recorded" in parts)
    if "devsplit" in parts:
        res["devsplit"] = _devsplit(quick)
    if "speed" in parts:
        res["speed"] = _speed(quick)
    if "policies" in res:
        res["learned_summary"] = _summary(res["policies"], res.get("speed"))
    if "prefetch" in parts:
        res["prefetch"] = _prefetch(quick)
    if "live" in parts:
        res["live"] = _live(quick)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res
