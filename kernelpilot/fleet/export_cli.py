"""`kpilot export otlp`: the agent's event log and the host's metrics to an OpenTelemetry collector."""
from __future__ import annotations

import json
import signal
from pathlib import Path

import typer

from kernelpilot.errors import KpError

export_app = typer.Typer(no_args_is_help=True, help="Send kernelpilot's events and metrics to fleet collectors.")


@export_app.command("otlp", epilog="Examples:\n\n"
                    "kpilot export otlp --endpoint http://127.0.0.1:4318 --from-log /run/kernelpilot/agent.jsonl\n\n"
                    "kpilot export otlp --endpoint http://127.0.0.1:4318 --follow /run/kernelpilot/agent.jsonl --interval 10")
def otlp(endpoint: str = typer.Option(..., "--endpoint", help="OTLP/HTTP base URL (/v1/logs, /v1/metrics are added)"),
         from_log: Path = typer.Option(None, "--from-log", help="send this event log's records once, then exit"),
         follow: Path = typer.Option(None, "--follow", help="send this event log's records and new ones as they come"),
         duration: float = typer.Option(None, "--duration", "-d", help="stop after this many seconds"),
         interval: float = typer.Option(10.0, "--interval", "-i", help="seconds between metric exports"),
         no_metrics: bool = typer.Option(False, "--no-metrics", help="logs only (no host/agent metrics)"),
         timeout: float = typer.Option(5.0, "--timeout", help="seconds per request to the endpoint"),
         json_out: bool = typer.Option(False, "--json", help="print the counts as JSON")):
    """Event-log records as OTLP logs and the sampler's (or running agent's) figures as OTLP metrics."""
    from kernelpilot.fleet.otlp import run
    if timeout <= 0:
        raise KpError("--timeout must be positive")
    stopped = []
    old = signal.signal(signal.SIGTERM, lambda *_: stopped.append(1))
    try:
        counts = run(endpoint, from_log, follow, duration, interval, not no_metrics, timeout,
                     stop=lambda: bool(stopped))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, old)
    print(json.dumps(counts) if json_out else
          f"sent {counts['logs_sent']} log records and {counts['metric_exports']} metric exports to {endpoint}")
    dropped = counts["logs_dropped"] + counts["metric_exports_dropped"]
    if dropped:
        raise KpError(f"{counts['logs_dropped']} log records and {counts['metric_exports_dropped']} metric "
                      f"exports dropped (the endpoint {endpoint} refused them or went away)")


def register_export(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")
