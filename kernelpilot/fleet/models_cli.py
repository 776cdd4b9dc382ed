"""`kpilot models push|pull|watch`: model files in a shared store, hot swap in the kernel."""
from __future__ import annotations

import json
import signal
from pathlib import Path

import typer

STORE_HELP = "a directory, file:///DIR or s3://BUCKET/PREFIX (AWS_* credentials; ?endpoint_override=HOST:PORT&scheme=http)"


def register_store(models_app: typer.Typer) -> None:
    @models_app.command("push", epilog="Examples:\n\nkpilot models push sched.json --to /srv/models\n\n"
                        "kpilot models push sched.json sec.npz --to s3://fleet-models/v3")
    def push_cmd(files: list[Path] = typer.Argument(..., help="model files (.json/.npz), each validated first"),
                 to: str = typer.Option(..., "--to", help=STORE_HELP),
                 json_out: bool = typer.Option(False, "--json")):
        """Copy validated model files to a store (whole files only: temporary name + rename, or one PUT)."""
        from kernelpilot.fleet.models_store import push
        done = push(files, to)
        print(json.dumps(done) if json_out else "\n".join(f"pushed {d['name']} ({d['bytes']:,} bytes) to {d['to']}"
                                                          for d in done))

    @models_app.command("pull", epilog="Example:\n\nkpilot models pull sched.json --from s3://fleet-models/v3 -o sched.json")
    def pull_cmd(name: str = typer.Argument(..., help="model file name in the store"),
                 src: str = typer.Option(..., "--from", help=STORE_HELP),
                 output: Path = typer.Option(..., "-o", "--output", help="where to write it (validated, then renamed into place)"),
                 json_out: bool = typer.Option(False, "--json")):
        """Fetch a model from a store; it is validated before it replaces -o (never half-written)."""
        from kernelpilot.fleet.models_store import pull
        d = pull(name, src, output)
        print(json.dumps(d) if json_out else f"pulled {d['name']} ({d['kind']}, {d['bytes']:,} bytes) to {d['output']}")

    @models_app.command("watch", epilog="Example (one shell deploys and watches; another replaces the file):\n\n"
                        "kpilot models watch /var/lib/kernelpilot/model.json --kernel")
    def watch_cmd(path: Path = typer.Argument(..., help="tree/forest model file to deploy and watch"),
                  kernel: bool = typer.Option(False, "--kernel", help="deploy in the kernel's map interpreter (eBPF) and hot-swap it"),
                  interval: float = typer.Option(1.0, "--interval", "-i", help="seconds between mtime polls"),
                  duration: float = typer.Option(None, "--duration", "-d", help="stop after this many seconds"),
                  json_out: bool = typer.Option(False, "--json", help="one JSON line per event")):
        """Deploy a model in the kernel and swap it atomically whenever its file changes and validates."""
        from kernelpilot.errors import KpError
        from kernelpilot.fleet.models_store import watch
        if not kernel:
            raise KpError("models watch swaps a model in the kernel: give --kernel")
        stopped = []
        old = signal.signal(signal.SIGTERM, lambda *_: stopped.append(1))
        try:
            r = watch(path, interval, duration, json_out, stop=lambda: bool(stopped))
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        finally:
            signal.signal(signal.SIGTERM, old)
        print(json.dumps({"event": "stopped", **r}) if json_out else f"stopped: {r['swaps']} swaps, {r['kept']} kept")
