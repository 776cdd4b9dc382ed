"""What a trace holds, in a few numbers a person can read."""
from __future__ import annotations

import numpy as np

from kernelpilot.traces import schema as S


def syscall_name(nr: int) -> str:
    try:
        from kernelpilot.security.syscalls import name_of
        return name_of(int(nr))
    except Exception:
        return f"sys_{int(nr)}"


def summarize(ev: np.ndarray, top: int = 8) -> dict:
    n = len(ev)
    out = {"events": int(n)}
    if not n:
        return out
    ts = ev["ts"]
    span = (int(ts.max()) - int(ts.min())) / 1e9
    out["seconds"] = round(span, 3)
    out["events_per_s"] = round(n / span, 1) if span > 0 else None
    kinds, counts = np.unique(ev["kind"], return_counts=True)
    out["kinds"] = {S.KINDS.get(int(k), str(k)): int(c) for k, c in zip(kinds, counts)}
    # busiest processes (by tgid, with their comm)
    tg, tc = np.unique(ev["tgid"], return_counts=True)
    order = np.argsort(-tc)[:top]
    comm_of = {}
    for t in tg[order]:
        c = ev["comm"][ev["tgid"] == t][:1]
        comm_of[int(t)] = c[0].decode(errors="replace") if len(c) else "?"
    out["top_processes"] = [{"tgid": int(tg[i]), "comm": comm_of[int(tg[i])], "events": int(tc[i])} for i in order]
    sc = ev[ev["kind"] == S.SYSCALL]
    if len(sc):
        ids, c = np.unique(sc["a0"], return_counts=True)
        o = np.argsort(-c)[:top]
        out["top_syscalls"] = [{"syscall": syscall_name(ids[i]), "nr": int(ids[i]), "count": int(c[i])} for i in o]
    pf = ev[ev["kind"] == S.PAGE_FAULT]
    if len(pf):
        out["page_faults"] = {"count": int(len(pf)), "distinct_pages": int(len(np.unique(pf["a0"] >> 12))),
                              "write_faults": int(((pf["a2"] & 2) != 0).sum())}
    sw = ev[ev["kind"] == S.SCHED_SWITCH]
    if len(sw):
        out["context_switches"] = {"count": int(len(sw)), "involuntary": int((sw["a1"] == 0).sum())}
    return out
