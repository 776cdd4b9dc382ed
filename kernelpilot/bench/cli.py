"""`kpilot bench NAME`: side-by-side benchmarks that print JSON. A benchmark is a module
kernelpilot/bench/<name>.py with `run(quick: bool) -> dict`; one with named parts (PARTS) also takes
`run(quick, only=[...])`, chosen with `--only`."""
from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

import typer

from kernelpilot.errors import KpError

SKIP = {"cli", "common"}


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name not in SKIP)


def run_bench(name: str, quick: bool = False, only: str | None = None) -> dict:
    names = available()
    if name == "all":
        if only:
            raise KpError("--only names parts of one benchmark, not of 'all'")
        return {n: run_bench(n, quick) for n in names}
    if name not in names:
        raise KpError(f"unknown benchmark '{name}'; choose from: all, {', '.join(names)}")
    mod = importlib.import_module(f"kernelpilot.bench.{name}")
    if not only:
        return mod.run(quick=quick)
    parts = getattr(mod, "PARTS", None)
    if not parts:
        raise KpError(f"benchmark '{name}' has no parts to choose with --only")
    want = [p.strip() for p in only.split(",") if p.strip()]
    bad = [p for p in want if p not in parts]
    if bad or not want:
        raise KpError(f"--only {only!r}: benchmark '{name}' has the parts {', '.join(parts)}")
    return mod.run(quick=quick, only=want)


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench(name: str = typer.Argument(..., help="benchmark name, or 'all'"),
              json_out: bool = typer.Option(False, "--json", help="print JSON only"),
              quick: bool = typer.Option(False, "--quick", help="smaller sizes, for a fast look"),
              only: str = typer.Option(None, "--only", help="comma-separated parts to run (sched: recorded,synthetic,"
                                       "load_forecast,live,cross_session; security: "
                                       "fhids,unm,scenarios,live; memory: policies,recorded,devsplit,prefetch,speed,live; agent: cost,soak,faults); "
                                       "default every part"),
              output: Path = typer.Option(None, "-o", "--output", help="also write the JSON here")):
        """Run a benchmark and print its figures (ratios measured side by side in one run)."""
        result = run_bench(name, quick, only)
        text = json.dumps(result, indent=2, default=float)
        if output:
            output.write_text(text + "\n")
        if json_out:
            print(text)
        else:
            from rich.console import Console
            from rich.pretty import Pretty
            Console().print(Pretty(result))
