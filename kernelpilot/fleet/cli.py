"""`kpilot query`: SQL over traces, alert logs and sweep results (DuckDB, the `scale` extra)."""
from __future__ import annotations

import json
from pathlib import Path

import typer


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
