"""`kpilot query`: SQL over traces, alert logs and sweep results (DuckDB, the `scale` extra)."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from kernelpilot.errors import KpError


def register(app: typer.Typer) -> None:
    @app.command("query", epilog="Examples:\n\n"
                 "kpilot query \"SELECT comm, count(*) n FROM trace WHERE kind = 'syscall' GROUP BY comm ORDER BY n DESC\" t.parquet\n\n"
                 "kpilot query \"SELECT rule, count(*) FROM alerts GROUP BY rule\" alerts.jsonl --json")
    def query(sql: str = typer.Argument(..., help="SQL over the views trace, alerts, sweep (and syscall_names)"),
              files: list[Path] = typer.Argument(..., help="Parquet traces, JSON-lines alert/event logs, sweep results"),
              json_out: bool = typer.Option(False, "--json", help="rows as a JSON list of objects"),
              limit: int = typer.Option(50, "--limit", help="rows shown in the table (all rows with --json)")):
        """SQL (DuckDB) over kernelpilot's files; each file becomes a view named after its kind."""
        from kernelpilot.fleet.query import run_query
        cols, rows = run_query(sql, files)
        if json_out:
            print(json.dumps([dict(zip(cols, r)) for r in rows], default=str))
            return
        from rich.console import Console
        from rich.table import Table
        t = Table(*cols, show_edge=False)
        for r in rows[:limit]:
            t.add_row(*("" if v is None else str(v) for v in r))
        Console().print(t)
        if len(rows) > limit:
            print(f"({len(rows) - limit} more rows; --limit N or --json for all)")

    from kernelpilot.memory.cli import memory_app

    @memory_app.command("sweep", epilog="Example:\n\nkpilot memory sweep --traces ../shared/datasets/cache/lirs "
                        "--policies lru,arc,lirs,s3fifo --sizes 0.01,0.1 --engine ray -o sweep.parquet")
    def sweep_cmd(traces: str = typer.Option(..., "--traces", help="folder, glob or comma list of trace files (or synth:NAME)"),
                  policies: str = typer.Option("lru,arc,lirs,s3fifo,belady", "--policies", help="comma list, or 'all'"),
                  sizes: str = typer.Option("0.01,0.05,0.1,0.2", "--sizes", help="fractions of each trace's footprint, or absolute"),
                  engine: str = typer.Option("local", "--engine", help="local (process pool) or ray"),
                  address: str = typer.Option(None, "--address", help="Ray cluster address (default: a local instance)"),
                  workers: int = typer.Option(None, "--workers", help="local processes (default: one per core)"),
                  fmt: str = typer.Option("auto", "--format", help="trace format for every file (see kpilot memory sim)"),
                  limit: int = typer.Option(None, "--limit", help="the first N requests of each trace"),
                  train_frac: float = typer.Option(0.5, "--train-frac", help="learned policies train on this prefix; all are scored after it"),
                  output: Path = typer.Option(..., "-o", "--output", help="results Parquet (cells already in it are skipped)"),
                  json_out: bool = typer.Option(False, "--json")):
        """Trace x policy x size cells as parallel tasks (process pool or Ray), results as Parquet, resumable."""
        from kernelpilot.fleet.sweep import expand_traces, sweep
        from kernelpilot.memory.sim import parse_policies
        from kernelpilot.report.progress import progress
        names = parse_policies(policies)
        specs = [s.strip() for s in sizes.split(",") if s.strip()]
        if not specs:
            raise KpError("no cache sizes given")
        for s in specs:
            try:
                if float(s) <= 0:
                    raise ValueError
            except ValueError:
                raise KpError(f"bad cache size '{s}': give numbers > 0, e.g. 0.01,0.1 or 1000") from None
        files = expand_traces(traces)
        with progress("sweep", total=len(files) * len(names) * len(specs), disable=json_out) as bar:
            res = sweep(files, names, specs, output, engine, address, workers, fmt, limit, train_frac, bar.advance)
        print(json.dumps(res) if json_out else
              f"{res['ran']} cells run, {res['skipped']} already in {res['output']} ({res['seconds']} s, {engine})")

    from kernelpilot.fleet.export_cli import register_export
    register_export(app)
