"""`kpilot top` (Textual live view) and `kpilot serve --metrics HOST:PORT` (Prometheus)."""
from __future__ import annotations

import time
from pathlib import Path

import typer

from kernelpilot.errors import KpError


def parse_listen(spec: str) -> tuple[str, int]:
    """':9464' or '9464' -> loopback; 'HOST:PORT' as given."""
    host, _, port = spec.rpartition(":") if ":" in spec else ("", "", spec)
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise KpError(f"bad --metrics address '{spec}': use PORT, :PORT or HOST:PORT (port 1-65535)")
    return host, int(port)


def _sampler(events: str | None, sched_model, bpf: bool = True):
    from kernelpilot.report.sampler import Sampler
    from kernelpilot.traces.schema import parse_groups
    groups = parse_groups(events) if events else None
    if sched_model is not None and not sched_model.is_file():
        raise KpError(f"scheduling model not found: {sched_model}")
    return Sampler(events=groups, sched_model=str(sched_model) if sched_model else None, bpf=bpf)


def register_live(app: typer.Typer) -> None:
    @app.command("top")
    def top(interval: float = typer.Option(1.0, "--interval", "-i", help="seconds between refreshes"),
            events: str = typer.Option("sched,faults", "--events", "-e",
                                       help="kernelpilot probes to run system-wide ('' for none)"),
            sched_model: Path = typer.Option(None, "--sched-model", help="task classifier JSON (kpilot sched train)"),
            duration: float = typer.Option(None, "--duration", "-d", help="quit after this many seconds")):
        """Live view: processes (class, anomaly, predicted burst, faults, agent actions) and BPF probes."""
        if interval <= 0:
            raise KpError("--interval must be positive")
        from kernelpilot.agent.top import TopApp
        TopApp(_sampler(events or None, sched_model), interval, duration).run()

    @app.command("serve")
    def serve(metrics: str = typer.Option("127.0.0.1:9464", "--metrics", help="HOST:PORT or :PORT (loopback)"),
              interval: float = typer.Option(2.0, "--interval", "-i", help="seconds between samples"),
              events: str = typer.Option("", "--events", "-e", help="kernelpilot probes to run system-wide"),
              duration: float = typer.Option(None, "--duration", "-d", help="stop after this many seconds")):
        """Expose the agent's figures for Prometheus at http://HOST:PORT/metrics."""
        from kernelpilot.report.metrics import start
        host, port = parse_listen(metrics)
        if interval <= 0:
            raise KpError("--interval must be positive")
        s = _sampler(events or None, None)
        server = start(s, host, port)
        print(f"serving metrics on http://{host}:{port}/metrics", flush=True)
        end = None if duration is None else time.monotonic() + duration
        try:
            while end is None or time.monotonic() < end:
                time.sleep(interval if end is None else max(0.0, min(interval, end - time.monotonic())))
                server.update()
        finally:
            server.close()
