"""`kpilot agent ...`: the journal every live actuator writes, and rollback of stale ones."""
from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from kernelpilot.errors import KpError

agent_app = typer.Typer(no_args_is_help=True, help="The agent (every domain in one process) and its safety layer.")


@agent_app.command("run")
def run_cmd(config: Path = typer.Option(None, "--config", "-c", help="TOML config (see docs/guide/agent.md)"),
            enforce: bool = typer.Option(False, "--enforce", help="act (default: dry run, decisions only)"),
            duration: float = typer.Option(None, "--duration", "-d", help="seconds to run (default: until stopped)"),
            json_out: bool = typer.Option(False, "--json", help="event log lines on stdout too; summary as JSON"),
            log_file: Path = typer.Option(None, "--log", help="event log file (default: [agent] log, else "
                                          "/run/kernelpilot/agent.jsonl)")):
    """Run every domain (sched, security, memory, aipath) in one process on one shared sensor."""
    from kernelpilot.agent import config as C
    from kernelpilot.agent.host import AgentHost
    from kernelpilot.agent.show import print_summary
    from kernelpilot.errors import CapabilityError
    if duration is not None and duration <= 0:
        raise KpError("--duration must be positive")
    cfg = C.load(config)
    if os.geteuid() != 0:
        raise CapabilityError("the agent needs root (eBPF); `kpilot run` replays the shipped trace without it")
    host = AgentHost(cfg, enforce=enforce, config_path=config, log_path=log_file, json_out=json_out).start()
    try:
        host.run(duration)
    finally:
        summary = host.stop()
    if json_out:
        print(json.dumps({"summary": summary}, default=str))
    else:
        print_summary(summary)


@agent_app.command("state")
def state_cmd(sock: Path = typer.Option(None, "--socket", help="state socket (default /run/kernelpilot/agent.sock)")):
    """The running agent's live state (JSON), read from its unix socket."""
    from kernelpilot.agent.state import read_state
    from kernelpilot.agent.state import default_socket
    path = sock or default_socket()
    st = read_state(path)
    if st is None:
        raise KpError(f"no agent answers on {path} (is `kpilot agent run` running?)")
    print(json.dumps(st, indent=1, default=str))


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
