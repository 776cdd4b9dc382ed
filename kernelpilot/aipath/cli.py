"""`kpilot aipath -- CMD`: how an AI program travels through the kernel to the hardware."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from kernelpilot.errors import KpError


GPU_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")  # NVIDIA, ROCm (HIP is torch.cuda), WSL


def demo_ready(device: str) -> None:
    """--demo's checks before tracing, without importing torch here (3 s of each start on this VM;
    the demo imports it anyway): PyTorch installed, and for a CUDA device, one this PyTorch sees."""
    import importlib.util
    if importlib.util.find_spec("torch") is None:
        raise KpError("--demo needs PyTorch: .venv/bin/pip install torch")
    if not device.startswith("cuda"):
        return
    if not any(Path(p).exists() for p in GPU_NODES):  # no GPU driver's device file: no GPU for any PyTorch
        from importlib.metadata import PackageNotFoundError, version
        try:
            v = version("torch")
        except PackageNotFoundError:
            v = "?"
        raise KpError(f"--device {device}: this PyTorch sees no CUDA GPU (torch {v}; no {', '.join(GPU_NODES)})")
    import torch
    if not torch.cuda.is_available():
        raise KpError(f"--device {device}: this PyTorch sees no CUDA GPU (torch {torch.__version__})")


def register(app: typer.Typer) -> None:
    @app.command("aipath", context_settings={"allow_interspersed_args": False})
    def aipath(cmd: list[str] = typer.Argument(None, help="after --: the AI program to trace (children followed)"),
               demo: bool = typer.Option(False, "--demo", help="trace kernelpilot's small PyTorch training run"),
               steps: int = typer.Option(20, "--steps", help="training steps of --demo"),
               device: str = typer.Option("cpu", "--device", help="PyTorch device of --demo: cpu, cuda, cuda:1 ..."),
               trace: Path = typer.Option(None, "--from", help="analyse a recorded trace instead of running"),
               keep: Path = typer.Option(None, "--keep", help="also write the raw trace (Parquet) here"),
               output: Path = typer.Option(None, "-o", "--output", help="write the JSON result here (for kpilot report)"),
               source: str = typer.Option("auto", "--source", help="auto, ebpf, tracefs or proc"),
               uprobes: str = typer.Option(None, "--uprobes", help="LIB:SYM,... user-space functions to probe "
                                           "(calls, bytes, time inside), besides the default set"),
               no_default_uprobes: bool = typer.Option(False, "--no-default-uprobes",
                                                       help="leave out the default set (CUDA, HIP, libgomp, libc)"),
               json_out: bool = typer.Option(False, "--json", help="print JSON only")):
        """Trace an AI program and show its path: user space -> system calls -> kernel subsystems ->
        device files and drivers -> hardware, per phase. Mark phases with kernelpilot.aipath.markers.mark()."""
        from rich.console import Console

        from kernelpilot.aipath.layers import render
        from kernelpilot.aipath.run import analyse_events, demo_command, trace_ai
        if sum(map(bool, (cmd, demo, trace))) != 1:
            raise KpError("give exactly one of: -- CMD, --demo, --from TRACE")
        if steps < 1:
            raise KpError("--steps must be at least 1")
        if device != "cpu" and not demo:
            raise KpError("--device applies to --demo only")
        if uprobes is not None:
            from kernelpilot.aipath.uprobes import parse_specs
            parse_specs(uprobes)  # a malformed spec fails before anything runs
            if trace:
                raise KpError("--uprobes applies to a run (-- CMD or --demo), not to --from TRACE")
        if trace:
            from kernelpilot.traces.store import read_trace
            ev, meta = read_trace(trace)
            result = analyse_events(ev, meta.get("command"))
            result.update(source=meta.get("source"), dropped=meta.get("dropped", 0))
        else:
            argv = demo_command(steps, device) if demo else list(cmd)
            if demo:
                demo_ready(device)
            from kernelpilot.report.progress import progress
            with progress("tracing " + Path(argv[0]).name, disable=json_out) as bar:
                result = trace_ai(argv, source=source, keep=str(keep) if keep else None, quiet=json_out,
                                  on_poll=lambda total, src: bar.update(f"{total:,} events"),
                                  uprobes=uprobes, default_uprobes=not no_default_uprobes)
        text = json.dumps(result, indent=2, default=str)
        if output:
            output.write_text(text + "\n")
        err = Console(stderr=True)
        if json_out:
            print(text)
            for n in result.get("notes") or []:
                err.print(f"note: {n}", highlight=False, markup=False)
            return
        render(result, Console())
        for n in result.get("notes") or []:
            err.print(f"[yellow]note:[/] {n}")
        if result.get("dropped"):
            err.print(f"[yellow]the tracer dropped {result['dropped']:,} events[/]")
