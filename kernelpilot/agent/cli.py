"""`kpilot agent ...`: the journal every live actuator writes, and rollback of stale ones."""
from __future__ import annotations

from pathlib import Path

import typer

from kernelpilot.errors import KpError

agent_app = typer.Typer(no_args_is_help=True, help="Safety layer: change journals and rollback.")


@agent_app.command("rollback")
def rollback_cmd(journal: Path = typer.Argument(None, help="one journal file (default: all stale ones)"),
                 force: bool = typer.Option(False, "--force", help="replay even if its owner still runs")):
    """Restore what an agent that died without cleaning up had changed."""
    from kernelpilot.agent.rollback import owner_alive, read_journal, replay_file, run_dir, stale_journals
    if journal:
        if not journal.is_file():
            raise KpError(f"journal not found: {journal}")
        header, _, _ = read_journal(journal)
        if not header:
            raise KpError(f"{journal} is not a kernelpilot journal")
        if owner_alive(header) and not force:
            raise KpError(f"the agent that owns {journal} (pid {header['pid']}) is still running; use --force")
        paths = [journal]
    else:
        paths = stale_journals()
    if not paths:
        print(f"no stale journals in {run_dir()}")
    for p in paths:
        print(f"{p}: {replay_file(p)}")


@agent_app.command("status")
def status_cmd():
    """List journals and whether their agents still run."""
    from kernelpilot.agent.rollback import owner_alive, read_journal, run_dir
    d = run_dir()
    found = sorted(d.glob("journal-*.jsonl")) if d.is_dir() else []
    if not found:
        print(f"no journals in {d}")
    for p in found:
        header, entries, _ = read_journal(p)
        state = "running" if owner_alive(header) else "STALE (kpilot agent rollback)"
        print(f"{p}: {header.get('owner', '?')} pid {header.get('pid')}, {len(entries)} changes, {state}")


def register(app: typer.Typer) -> None:
    app.add_typer(agent_app, name="agent")
