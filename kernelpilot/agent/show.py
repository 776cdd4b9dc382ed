"""Print the agent's summary: one block per domain."""
from __future__ import annotations

from rich.console import Console

LABELS = {"sched": "Scheduling", "security": "Security", "memory": "Memory", "aipath": "AI path / layers"}


def _lines(d, indent="  ", depth=0) -> list[str]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict) and v and depth < 2:
            out.append(f"{indent}{k}:")
            out += _lines(v, indent + "  ", depth + 1)
        elif isinstance(v, list):
            shown = ", ".join(map(str, v[:6])) if not (v and isinstance(v[0], dict)) else ""
            if v and isinstance(v[0], str) and len(shown) > 100:
                out.append(f"{indent}{k}:")
                out += [f"{indent}  - {x}" for x in v[:8]]
            elif v and isinstance(v[0], dict):
                out.append(f"{indent}{k}:")
                out += [f"{indent}  - " + ", ".join(f"{a}={b}" for a, b in r.items()) for r in v[:6]]
            else:
                out.append(f"{indent}{k}: {shown}" + (f" (+{len(v) - 6})" if len(v) > 6 else ""))
        else:
            out.append(f"{indent}{k}: {v}")
    return out


def print_summary(summary: dict, console: Console | None = None) -> None:
    con = console or Console()
    for name, label in LABELS.items():
        if name in summary:
            con.print(f"[bold]{label}[/]", highlight=False)
            d = dict(summary[name])
            if isinstance(d.get("layers"), dict):  # one line per process
                d["layers"] = [f"{p}: " + ", ".join(f"{k} {v:,}" for k, v in row.items())
                               for p, row in d["layers"].items()]
            for line in _lines(d):
                con.print(line, highlight=False, soft_wrap=True)
    demo = summary.get("demo")
    if demo:
        con.print("[bold]Demo[/] (what the pilots made of it)", highlight=False)
        for piece in demo.get("pieces", []):
            con.print(f"  - {piece}", highlight=False, soft_wrap=True)
        for k in ("classes", "reader_prefetch", "attack_alerted", "alerts_on_other_processes"):
            if k in demo:
                con.print(f"  {k}: {demo[k]}", highlight=False, soft_wrap=True)
    a = summary.get("agent", {})
    if a:
        s = a.get("sensor", {})
        con.print(f"[bold]Agent[/]: {a.get('mode')}, {a.get('events', 0):,} events from {s.get('source')} "
                  f"({s.get('dropped', 0):,} dropped) in {a.get('seconds')} s; stopped: {a.get('stopped')}; "
                  f"journal: {a.get('journal')}", highlight=False, soft_wrap=True)
        con.print(f"event log: {a.get('log')}", highlight=False, soft_wrap=True)
