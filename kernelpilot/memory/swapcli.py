"""`kpilot memory live reclaim`: one live workload under the kernel, Senpai-style and kernelpilot
swap controllers (memory/swaprun.py), registered on `kpilot memory live`."""
from __future__ import annotations

import json

import typer


def register(live_app: typer.Typer) -> None:
    @live_app.command("reclaim")
    def live_reclaim(workload: str = typer.Option("hotcold", help="hotcold, sqlite, compileall, kv"),
                     config: str = typer.Option("all", help="kernel, senpai, kernelpilot, or all (interleaved)"),
                     reps: int = typer.Option(1, help="rounds (the order rotates each round)"),
                     quick: bool = typer.Option(True, help="the bench's quick sizes"),
                     limit_mb: int = typer.Option(None, help="memory limit (default: the workload's)"),
                     zram_mb: int = typer.Option(1024, help="zram swap size"),
                     seed: int = typer.Option(None, help="a dev seed for the workload's keys (tuning; "
                                              "default: the bench's seeds)"),
                     enforce: bool = typer.Option(False, "--enforce", help="really set up zram/cgroups and run"),
                     json_out: bool = typer.Option(False, "--json")):
        """Run a workload under a memory limit with zram swap; compare swap controllers.
        Dry-run by default (prints the plan); every change is journaled and restored on exit."""
        from kernelpilot.memory import swaprun
        from kernelpilot.memory.live import _root
        configs = list(swaprun.CONFIGS) if config == "all" else [c.strip() for c in config.split(",")]
        plan = {"mode": "enforce" if enforce else "dry-run", "workload": workload, "configs": configs,
                "reps": reps, "zram_mb": zram_mb, "limit_mb": limit_mb or "the workload's",
                "seed": "the bench's" if seed is None else seed,
                "steps": ["journal (+ guardian): zram device, swapon, memory cgroup + limit, v2 pressure group",
                          "kernelpilot: one history run", "rounds of the configs, order rotated",
                          "restore: limits, cgroups removed, swapoff, zram reset + hot_remove"]}
        if not enforce:
            if config != "all":
                bad = [c for c in configs if c not in swaprun.CONFIGS]
                if bad:
                    from kernelpilot.errors import KpError
                    raise KpError(f"unknown config '{bad[0]}'; choose from {', '.join(swaprun.CONFIGS)}")
            out = plan
        else:
            _root()
            out = dict(plan, **swaprun.experiment([workload], reps, quick, zram_mb, configs=configs,
                                                  limit_mb=limit_mb, seed=seed))
        print(json.dumps(out, indent=2, default=float) if json_out else json.dumps(out, default=float)[:4000])
