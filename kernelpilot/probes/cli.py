"""`kpilot doctor` and `kpilot build`."""
from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table


def register(app: typer.Typer) -> None:
    @app.command()
    def doctor(json_out: bool = typer.Option(False, "--json", help="print JSON")):
        """What this host allows: root, BTF, eBPF program types, tracefs, sched_ext, DAMON, zram, PSI, cgroups, GPU."""
        from kernelpilot.probes.doctor import best_source, checks
        c = checks()
        src, why = best_source(c)
        c["record_source"] = {"source": src, "why": why}
        if json_out:
            print(json.dumps(c, indent=2))
            return
        t = Table(title=f"kernelpilot doctor: kernel {c['kernel']}", show_header=True)
        t.add_column("capability")
        t.add_column("status")
        for k, v in c.items():
            if k in ("kernel", "record_source"):
                continue
            if isinstance(v, dict):
                v = ", ".join(f"{n}" + ("" if ok else " (no)") for n, ok in v.items()) or "(needs root to probe)"
            mark = {True: "[green]yes[/]", False: "[red]no[/]", None: "[dim]none[/]"}.get(v, str(v)) \
                if not isinstance(v, list) else ", ".join(v)
            t.add_row(k, mark)
        con = Console()
        con.print(t)
        con.print(f"record will use: [bold]{src}[/] ({why})")

    @app.command()
    def build():
        """Generate vmlinux.h from this kernel's BTF and compile kernelpilot's BPF programs."""
        from kernelpilot.bpf.build import build_all, vmlinux_h
        from kernelpilot.errors import CapabilityError
        try:
            vm = vmlinux_h()
            objs = build_all()
        except CapabilityError as e:
            Console(stderr=True).print(f"kpilot build: skipped ({e}); live eBPF will fall back")
            return
        Console(stderr=True).print(f"built {len(objs)} BPF object(s) against {vm}")
