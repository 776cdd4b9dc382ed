"""`kpilot`: the command line. Each domain adds its commands from `kernelpilot/<domain>/cli.py`
through a `register(app)` function, so this file stays small."""
from __future__ import annotations

import importlib
import os
import sys

import typer
from rich.console import Console
from rich.markup import escape

from kernelpilot.errors import KpError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="kernelpilot: observe -> learn -> kernelize -> act -> measure, on a real Linux host.")
err = Console(stderr=True)

# Packages whose cli.py contributes commands (in help order).
COMMAND_MODULES = ["traces", "probes", "models", "kernelize", "sched", "memory", "security",
                   "aipath", "agent", "bench", "report", "fleet"]


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"kernelpilot.{name}.cli")
        except ModuleNotFoundError as e:
            if e.name == f"kernelpilot.{name}.cli":
                continue
            raise
        mod.register(app)


_register_all()


def main() -> None:
    """Entry point: every failure is one line on stderr and a non-zero exit."""
    try:
        app()
    except KpError as e:
        err.print(f"[bold red]kpilot: error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        if e.detail and os.environ.get("KPILOT_DEBUG"):
            err.print(e.detail, highlight=False)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err.print("kpilot: interrupted")
        sys.exit(130)
    except Exception as e:  # last resort: still one line, the traceback only on request
        if os.environ.get("KPILOT_DEBUG"):
            raise
        err.print(f"[bold red]kpilot: internal error:[/] {type(e).__name__}: {escape(str(e))} "
                  "(set KPILOT_DEBUG=1 for the traceback)", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
