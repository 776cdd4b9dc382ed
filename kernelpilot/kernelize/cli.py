"""`kpilot kernelize MODEL --target bpf-map|bpf-code|c -o OUT` and `kpilot kernelize MODEL --check`."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from kernelpilot.errors import KpError
from kernelpilot.kernelize.limits import TARGETS


def write_target(m, target: str, out: Path) -> str:
    """Write one target's artifact; returns a one-line description."""
    from kernelpilot.kernelize import kernel
    from kernelpilot.kernelize.emit import emit_c
    from kernelpilot.kernelize.limits import check_limits
    check_limits(m, target)
    if target == "c":
        out.write_text(emit_c(m, target="c"))
        return f"portable fixed-point C: {out} (kp_s32 kp_model_predict(const kp_s32 *x))"
    if target == "bpf-code":
        out.with_suffix(".bpf.c").write_text(kernel.code_source(m)) if out.suffix == ".o" else None
        kernel.build_code(m, out)
        return f"BPF object with the unrolled model: {out} (programs kp_infer_xdp, kp_infer_tp)"
    out.write_bytes(kernel.encode_slot(m))
    obj = kernel.BPF_SRC / "kp_tree_map.bpf.c"
    return (f"map-encoded model ({kernel.SLOT_BYTES} bytes, one kp_model_slots value): {out}; "
            f"interpreter source {obj}")


def register(app: typer.Typer) -> None:
    @app.command("kernelize")
    def kernelize(model: Path = typer.Argument(..., help="model file (.json or .npz)"),
                  target: str = typer.Option(None, "--target", "-t",
                                             help="bpf-map | bpf-code | c"),
                  output: Path = typer.Option(None, "-o", "--output", help="where to write it"),
                  check: bool = typer.Option(False, "--check",
                                             help="load into the kernel, verify parity, time it"),
                  n: int = typer.Option(100_000, "--n", help="parity vectors for --check"),
                  json_out: bool = typer.Option(False, "--json", help="print the --check report as JSON")):
        """Compile a tiny model into the kernel (eBPF) or portable fixed-point C."""
        from kernelpilot.models.format import Model
        if target is not None and target not in TARGETS:
            raise KpError(f"unknown target '{target}'; expected one of {', '.join(TARGETS)}")
        if n < 1:
            raise KpError("--n must be at least 1")
        m = Model.load(model)
        if not check and output is None:
            raise KpError("give -o OUT (with --target) to write the model, or --check to test it")
        if output is not None:
            if target is None:
                raise KpError("-o needs --target bpf-map, bpf-code or c")
            print(write_target(m, target, output))
        if check:
            from kernelpilot.kernelize.harness import check as run_check
            from kernelpilot.kernelize.harness import require_ok
            report = run_check(m, [target] if target else None, n=n)
            if json_out:
                print(json.dumps(report, indent=2, default=float))
            else:
                _print_report(report)
            require_ok(report)


def _print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table
    d = report["model"]
    Console().print(f"model: {d['kind']}, {d['features']} features, output {d['output']}"
                    + (f", depth {d['depth']}, {d['trees']} trees, {d['nodes']} nodes" if "depth" in d else "")
                    + (f", shape {d['shape']}" if "shape" in d else ""))
    t = Table("target", "verifier", "insns", "verified", "stack B", "map B", "parity", "ns/inference")
    for name, r in report["targets"].items():
        p = r.get("parity", {})
        ns = r.get("ns_per_inference", {}).get("ns_net")
        t.add_row(name, r.get("verifier", "n/a (gcc)"), str(r.get("xlated_insns", "")),
                  str(r.get("verified_insns", "")), str(r.get("stack_bytes", "")),
                  str(r.get("map_bytes", "")), f"{p.get('agree', 0)}/{p.get('n', 0)}",
                  f"{ns:.1f}" if ns is not None else "")
    Console().print(t)
