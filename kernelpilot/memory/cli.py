"""`kpilot memory ...`: replacement simulator, learned policies, prefetchers, live experiments."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from kernelpilot.errors import KpError

memory_app = typer.Typer(no_args_is_help=True,
                         help="Memory: cache replacement simulator, learned eviction, prefetch, swap.")
live_app = typer.Typer(no_args_is_help=True, help="Live experiments on this host (restore on exit).")
memory_app.add_typer(live_app, name="live")

TRACE_HELP = ("trace file (oracleGeneral, .csv, .txt, MSR/blkparse block trace, .parquet events, or a published "
              "cache trace: LIRS, ARC .lis, cache2k, scarab, UCSD addresses, AdaptSize) or synth:NAME")
FORMAT_HELP = ("auto, oracle, csv, txt, msr, blkparse, events, lirs, arc, cache2k, scarab, ucsd (key: 64-byte "
               "line), ucsd-page (key: 4 KiB page), adaptsize (sized); auto sniffs compressed traces")


def _print(obj, as_json: bool):
    if as_json:
        print(json.dumps(obj, indent=2, default=float))
        return
    from rich.console import Console
    from rich.table import Table
    rows = obj.get("results") if isinstance(obj, dict) else None
    if not rows:
        from rich.pretty import Pretty
        Console().print(Pretty(obj))
        return
    tab = Table(title=obj.get("title", ""))
    for k in rows[0]:
        tab.add_column(str(k))
    for r in rows:
        tab.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in r.values()])
    Console().print(tab)


def load_model(path):
    """A saved replacement model: a known policy, the memory features in order, a depth that
    models.complete can lay out (2^depth nodes per tree)."""
    from kernelpilot.kernelize.limits import MAP_MAX_DEPTH
    from kernelpilot.memory import models
    from kernelpilot.models import validate
    from kernelpilot.models.format import Model
    saved = Model.load(path)
    policy = saved.meta.get("policy")
    if not isinstance(policy, str) or policy not in models.MODES or saved.kind not in ("tree", "forest"):
        raise KpError(f"{path}: not a memory replacement model (no known 'policy' in its meta)")
    validate.check_features(saved, models.feature_names(saved.meta), str(path), "the memory simulator")
    validate.check_depth(saved, MAP_MAX_DEPTH, str(path), "the memory simulator")
    return saved


def run_sim(tr, names, sizes, unit=True, train_frac=0.5, model_path=None, progress=None) -> dict:
    """Miss ratios of each policy at each size, counted after the training prefix."""
    from kernelpilot.memory import mix, models, sim
    if not 0.0 <= train_frac < 1.0:
        raise KpError(f"--train-frac must be in [0, 1) (got {train_frac})")
    start = int(len(tr) * train_frac) if any(n in sim.LEARNED or n == "vote" for n in names) else 0
    saved = load_model(model_path) if model_path else None
    out, trained = [], {}
    for size in sizes:
        sim.check_size(tr, size, unit)
        for name in names:
            model = None
            # trained on OPT at this size, on the prefix only; mix and vote get lrb's (their
            # learned expert, as the bench runs them; vote_classic is vote without it)
            if name in sim.LEARNED or name == "vote":
                kind = mix.LEARNED if name in ("mix", "vote") else name
                model = saved if (saved and saved.meta["policy"] == kind) else trained.get((kind, size))
                if model is None:
                    model = trained[(kind, size)] = models.train(kind, tr, size, unit, start)
            r = sim.simulate(tr, name, size, unit, model=model, eval_from=start)
            out.append({"policy": name, "cache_size": size, "miss_ratio": r.miss_ratio,
                        "byte_miss_ratio": r.byte_miss_ratio, "mreq_per_s": len(tr) / r.seconds / 1e6})
            if progress:
                progress()
    return {"title": f"{tr.name}: miss ratio over requests {start}..{len(tr)}", "trace": tr.name,
            "requests": len(tr), "eval_from": start, "unit_size": unit, "results": out}


def register(app: typer.Typer) -> None:
    app.add_typer(memory_app, name="memory")


@memory_app.command("sim")
def sim_cmd(trace: str = typer.Option(..., "--trace", "-t", help=TRACE_HELP),
            policies: str = typer.Option("lru,arc,lirs,s3fifo,mix,belady",
                                         help="comma list, or 'all' (learned = mix)"),
            sizes: str = typer.Option("0.01,0.1", help="fractions of the footprint (<1) or absolute sizes"),
            bytes_: bool = typer.Option(False, "--bytes", help="byte-size cache (default: one unit per object)"),
            fmt: str = typer.Option("auto", "--format", help=FORMAT_HELP),
            n: int = typer.Option(200_000, help="length of a synth: trace"),
            limit: int = typer.Option(None, help="read only the first LIMIT requests (published cache traces)"),
            train_frac: float = typer.Option(0.5, help="learned policies train on this prefix; all are scored after it"),
            model: Path = typer.Option(None, help="saved model (.json/.npz) for its policy (and mix and vote, if it is their expert lrb) instead of training"),
            json_out: bool = typer.Option(False, "--json")):
    """Simulate replacement policies and print miss ratios side by side."""
    from kernelpilot.memory import sim, trace as T
    tr = T.load(trace, fmt, n, limit)
    names = sim.parse_policies(policies)
    sz = sim.sizes_from_spec(tr, sizes, not bytes_)
    _print(run_sim(tr, names, sz, not bytes_, train_frac, model), json_out)


@memory_app.command("train")
def train_cmd(trace: str = typer.Option(..., "--trace", "-t", help=TRACE_HELP),
              out: Path = typer.Option(..., "-o", "--output", help="model file (.json or .npz)"),
              policy: str = typer.Option("lrb", help="lrb, imitate, reuse or mix (its learned expert)"),
              size: int = typer.Option(None, help="cache size the model learns OPT at (default: 10% of the footprint)"),
              fmt: str = typer.Option("auto", "--format"),
              n: int = typer.Option(200_000, help="length of a synth: trace")):
    """Train a learned policy's model on a trace and save it (JSON/npz)."""
    from kernelpilot.memory import models, trace as T
    if out.suffix not in (".json", ".npz"):
        raise KpError(f"{out}: model files end in .json or .npz")
    tr = T.load(trace, fmt, n)
    m = models.train(policy, tr, size)
    m.save(out)
    print(f"saved {policy} model ({m.meta['n_trees']} trees) to {out}")


@memory_app.command("prefetch")
def prefetch_cmd(trace: str = typer.Option(..., "--trace", "-t",
                                           help=TRACE_HELP + ", or pattern:strided|pointer-chase|mixed"),
                 prefetchers: str = typer.Option("next-n,readahead,leap,stride,learned"),
                 buffer: int = typer.Option(256, help="prefetch buffer (pages)"),
                 n: int = typer.Option(20_000, help="length of a pattern:/synth: trace"),
                 fmt: str = typer.Option("auto", "--format"),
                 json_out: bool = typer.Option(False, "--json")):
    """Score prefetchers on a page sequence: accuracy, coverage, timeliness."""
    from kernelpilot.memory import prefetch as P, trace as T
    if buffer <= 0:
        raise KpError("--buffer must be > 0")
    if trace.startswith("pattern:"):
        name = trace[8:]
        if name not in P.PATTERNS:
            raise KpError(f"unknown pattern '{name}'; choose from {', '.join(P.PATTERNS)}")
        pages = P.PATTERNS[name](n, 0)
    else:
        pages = P.pages_from_trace(T.load(trace, fmt, n))
    names = [s.strip() for s in prefetchers.split(",") if s.strip()]
    _print({"title": f"prefetch on {trace}", "results": P.compare(pages, names, buffer=buffer)}, json_out)


@live_app.command("prefetch", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def live_prefetch(ctx: typer.Context,
                  file: Path = typer.Option(None, help="data file the command reads (default: generate one)"),
                  size_mb: int = typer.Option(512, help="size of the generated file"),
                  stride: int = typer.Option(7919, help="page stride of the built-in reader (mod file pages)"),
                  count: int = typer.Option(8192, help="records the built-in reader reads"),
                  ra_kb: int = typer.Option(128, help="device readahead window (KB) for all runs; -1 keeps it"),
                  enforce: bool = typer.Option(False, "--enforce", help="really drop caches and advise"),
                  json_out: bool = typer.Option(False, "--json")):
    """Prefetch predicted file pages (posix_fadvise WILLNEED) for CMD; compare with kernel readahead.
    Without CMD, runs the built-in strided reader on a generated file."""
    from kernelpilot.memory import live
    _print(live.prefetch_experiment(list(ctx.args), file, size_mb, stride, enforce, count,
                                         None if ra_kb == -1 else ra_kb), json_out)


@live_app.command("swap", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def live_swap(ctx: typer.Context,
              limit_mb: int = typer.Option(96, help="memory cgroup limit"),
              zram_mb: int = typer.Option(512, help="zram swap size"),
              enforce: bool = typer.Option(False, "--enforce", help="really set up zram/cgroup and run"),
              json_out: bool = typer.Option(False, "--json")):
    """Run CMD under a memory limit with zram swap: kernel reclaim vs predicted-cold MADV_PAGEOUT.
    Without CMD, runs the built-in hot/cold working-set program."""
    from kernelpilot.memory import live
    _print(live.swap_experiment(list(ctx.args), limit_mb, zram_mb, enforce), json_out)


from kernelpilot.memory import swapcli  # noqa: E402  (swap controllers: `kpilot memory live reclaim`)
swapcli.register(live_app)
