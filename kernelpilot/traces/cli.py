"""`kpilot record`, `kpilot trace-info`, `kpilot replay` and `kpilot run` (the main job)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

err = Console(stderr=True)


def _live_status(label: str):
    """A Rich status line on stderr showing events and drops while recording."""
    from rich.status import Status
    status = Status(label, console=err)
    t0 = time.monotonic()
    last = [0.0]

    def on_poll(total, src):
        now = time.monotonic()
        if now - last[0] > 0.25:
            last[0] = now
            st = src.stats()
            status.update(f"{label}: {total:,} events ({total / max(now - t0, 1e-6):,.0f}/s), "
                          f"dropped {st.get('dropped', 0):,} [{st.get('source')}]")
    return status, on_poll


def print_summary(s: dict, title: str) -> None:
    con = Console()
    con.print(f"[bold]{title}[/]")
    t = Table()
    t.add_column("kind")
    t.add_column("events", justify="right")
    for k, v in s.get("kinds", {}).items():
        t.add_row(k, f"{v:,}")
    con.print(t)
    if s.get("top_processes"):
        t = Table(title="busiest processes")
        for c in ("tgid", "comm", "events"):
            t.add_column(c)
        for p in s["top_processes"]:
            t.add_row(str(p["tgid"]), p["comm"], f"{p['events']:,}")
        con.print(t)
    if s.get("top_syscalls"):
        con.print("top syscalls: " + ", ".join(f"{x['syscall']} {x['count']:,}" for x in s["top_syscalls"]))
    for key in ("page_faults", "context_switches"):
        if key in s:
            con.print(f"{key.replace('_', ' ')}: " + ", ".join(f"{k} {v:,}" for k, v in s[key].items()))


def print_insights(rows: list[dict]) -> None:
    if not rows:
        return
    t = Table(title="what the scheduling model says (dry run: nothing was changed)")
    for c in ("pid", "comm", "cpu share", "switches/s", "class", "agent would"):
        t.add_column(c)
    for r in rows:
        t.add_row(str(r["pid"]), r["comm"], f"{r['cpu_share']:.1%}", str(r["switches_per_s"]), r["class"],
                  r["agent_would"])
    Console().print(t)


def register(app: typer.Typer) -> None:
    @app.command(context_settings={"allow_interspersed_args": False})
    def record(cmd: list[str] = typer.Argument(None, help="after --: a command to trace (with its children)"),
               events: str = typer.Option("sched,syscalls", "--events", "-e",
                                          help="groups: sched,syscalls,faults,mm,files"),
               duration: float = typer.Option(None, "--duration", "-d", help="seconds (default: 5, or until CMD exits)"),
               output: Path = typer.Option(..., "-o", "--output", help="Parquet file to write"),
               source: str = typer.Option("auto", "--source", help="auto, ebpf, tracefs or proc"),
               pid: list[int] = typer.Option(None, "--pid", help="only these processes (and their children)"),
               cgroup: str = typer.Option(None, "--cgroup", help="only this cgroup v2 path"),
               comm: str = typer.Option(None, "--comm", help="only tasks whose name starts with this"),
               json_out: bool = typer.Option(False, "--json", help="print the summary as JSON")):
        """Record kernel events to a Parquet trace."""
        from kernelpilot.traces.record import record_to_file
        from kernelpilot.traces.schema import parse_groups
        groups = parse_groups(events)
        if duration is not None and duration <= 0:
            from kernelpilot.errors import KpError
            raise KpError("--duration must be positive")
        if duration is None and not cmd:
            duration = 5.0
        notes: list[str] = []
        status, on_poll = _live_status("recording")
        if json_out:
            on_poll = None
        else:
            status.start()
        try:
            s = record_to_file(output, groups, duration=duration, cmd=cmd or None, source=source,
                               pids=pid or None, cgroup=cgroup, comm=comm, notes=notes, on_poll=on_poll)
        finally:
            status.stop()
        for n in notes:
            err.print(f"[yellow]note:[/] {n}")
        if json_out:
            print(json.dumps(s, indent=2))
        else:
            err.print(f"source: {s['source']}; {s['events']:,} events in {s['seconds']} s "
                      f"({s['events_per_s']:,.0f}/s), dropped {s['dropped']:,}; stopped: {s['stopped']}; "
                      f"wrote {output}")

    @app.command("trace-info")
    def trace_info(path: Path = typer.Argument(..., help="a kernelpilot Parquet trace"),
                   json_out: bool = typer.Option(False, "--json")):
        """Summarise a recorded trace."""
        from kernelpilot.traces.store import read_trace
        from kernelpilot.traces.summary import summarize
        ev, meta = read_trace(path)
        s = summarize(ev)
        s["meta"] = meta
        if json_out:
            print(json.dumps(s, indent=2))
        else:
            print_summary(s, f"{path} ({meta.get('source', '?')} source, kernel {meta.get('kernel', '?')})")
            if meta.get("dropped"):
                err.print(f"[yellow]the recording dropped {meta['dropped']:,} events[/]")

    @app.command()
    def replay(path: Path = typer.Argument(...),
               speed: float = typer.Option(None, "--speed", help="1.0 = recorded pace; default: as fast as possible"),
               json_out: bool = typer.Option(False, "--json")):
        """Replay a trace through the live-source interface and report its rate."""
        from kernelpilot.traces.store import ReplaySource
        t0 = time.monotonic()
        n = 0
        with ReplaySource(path, speed=speed) as src:
            while not src.done:
                n += len(src.poll())
                if speed:
                    time.sleep(0.01)
        dt = time.monotonic() - t0
        out = {"events": n, "seconds": round(dt, 3), "events_per_s": round(n / dt, 1) if dt else None}
        print(json.dumps(out) if json_out else f"replayed {n:,} events in {dt:.2f} s")

    @app.command()
    def run(duration: float = typer.Option(30.0, "--duration", "-d", help="seconds the agent runs"),
            log: Path = typer.Option(None, "--log", help="event log file (default /run/kernelpilot/run.jsonl)"),
            json_out: bool = typer.Option(False, "--json", help="the summary as JSON (keys sched, security, memory, aipath)")):
        """The main job: the agent in dry run on this host beside a short built-in demo; one summary per domain."""
        from kernelpilot.agent.eventlog import check_writable
        from kernelpilot.agent.mainjob import check_duration, main_job
        from kernelpilot.agent.show import print_summary as print_agent_summary
        check_duration(duration)
        if log is not None:
            check_writable(log)
        s = main_job(duration, log, json_out)
        if json_out:
            print(json.dumps(s, indent=2, default=str))
        else:
            print_agent_summary(s)
            err.print("next: `kpilot agent run --enforce` (docs/guide/agent.md), `kpilot top`, `kpilot bench agent --json`")
