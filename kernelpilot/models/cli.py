"""`kpilot models info MODEL` and `kpilot models demo KIND -o FILE`."""
from __future__ import annotations

import json
from pathlib import Path

import typer

models_app = typer.Typer(no_args_is_help=True, help="Model files: inspect, make a demo model.")


@models_app.command("info")
def info(model: Path = typer.Argument(..., help="model file (.json or .npz)"),
         json_out: bool = typer.Option(False, "--json", help="print JSON")):
    """Kind, features, size, quantization scales and the accuracy-loss report."""
    from kernelpilot.models.format import Model
    m = Model.load(model)
    d = m.describe()
    d["feature_names"] = m.feature_names
    if m.quantized:
        d["quant"] = {k: v for k, v in m.meta["quant"].items() if k != "report"}
    print(json.dumps(d, indent=2, default=float) if json_out else _text(d))


def _text(d: dict) -> str:
    return "\n".join(f"{k}: {v}" for k, v in d.items())


@models_app.command("demo")
def demo(kind: str = typer.Argument(..., help="tree | forest | gbm | mlp"),
         output: Path = typer.Option(..., "-o", "--output", help="model file to write (.json/.npz)"),
         n: int = typer.Option(20000, "--n", help="training rows (synthetic)")):
    """Train a small demo model on synthetic data (16 features) and save it, quantized."""
    from kernelpilot.errors import KpError
    from kernelpilot.models import demo as demo_mod
    if n < 100:
        raise KpError("--n must be at least 100")
    if output.suffix not in (".json", ".npz"):
        raise KpError(f"{output}: model files end in .json or .npz")
    m, _, _ = demo_mod.train(kind, n=n)
    m.save(output)
    print(f"{output}: {kind} model, quantized; {m.meta['quant']['report']}")


def register(app: typer.Typer) -> None:
    from kernelpilot.fleet.models_cli import register_store  # push, pull, watch
    register_store(models_app)
    app.add_typer(models_app, name="models")
