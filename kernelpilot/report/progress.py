"""Progress bars for long commands, on stderr so stdout stays clean for --json.

    from kernelpilot.report.progress import progress, track
    with progress("training", total=epochs, disable=json_out) as bar:
        for _ in range(epochs):
            ...; bar.advance()
    for x in track(items, "simulating", disable=json_out): ...

With total=None the bar is a spinner with a status text (`bar.update("12,000 events")`).
Bars are hidden when disabled, when stderr is not a terminal, or with KPILOT_NO_PROGRESS=1."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)


class _Bar:
    def __init__(self, prog: Progress | None, task):
        self.prog, self.task = prog, task
        self.done = 0

    def advance(self, n: float = 1) -> None:
        self.done += n
        if self.prog:
            self.prog.advance(self.task, n)

    def update(self, text: str | None = None, completed: float | None = None) -> None:
        if completed is not None:
            self.done = completed
        if self.prog:
            kw = {"completed": completed} if completed is not None else {}
            if text is not None:
                kw["status"] = text
            self.prog.update(self.task, **kw)


def enabled(disable: bool = False) -> bool:
    return not disable and not os.environ.get("KPILOT_NO_PROGRESS") and sys.stderr.isatty()


@contextmanager
def progress(description: str, total: float | None = None, disable: bool = False, console: Console | None = None):
    """A progress bar (or spinner when total is None) on stderr for the block."""
    if not enabled(disable):
        yield _Bar(None, None)
        return
    cols = [SpinnerColumn(), TextColumn("[bold]{task.description}")]
    if total is not None:
        cols += [BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    cols += [TimeElapsedColumn(), TextColumn("{task.fields[status]}")]
    with Progress(*cols, console=console or Console(stderr=True), transient=True) as prog:
        task = prog.add_task(description, total=total, status="")
        yield _Bar(prog, task)


def track(items, description: str, total: int | None = None, disable: bool = False):
    """Iterate with a progress bar."""
    if total is None:
        try:
            total = len(items)
        except TypeError:
            total = None
    with progress(description, total=total, disable=disable) as bar:
        for x in items:
            yield x
            bar.advance()
