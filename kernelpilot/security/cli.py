"""`kpilot security ...`: train, evaluate and run the syscall anomaly detectors."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from kernelpilot.errors import KpError


def _kinds(spec: str) -> list[str]:
    from kernelpilot.security.registry import DETECTORS
    kinds = [k.strip() for k in spec.split(",") if k.strip()]
    bad = [k for k in kinds if k not in DETECTORS]
    if bad or not kinds:
        raise KpError(f"unknown detector {', '.join(bad) or '(none)'}; choose from {', '.join(DETECTORS)}")
    return kinds


def register(app: typer.Typer) -> None:
    sec = typer.Typer(no_args_is_help=True, help="Host intrusion detection from syscall behaviour.")
    app.add_typer(sec, name="security")

    @sec.command("train")
    def train(normal: Path = typer.Option(None, "--normal", help="normal traces: ADFA-LD root, scenario suite, "
                                          ".parquet trace, strace log, or folder of trace files"),
              host: bool = typer.Option(False, "--host", help="instead of --normal: record this host's benign "
                                        "scenarios and normal activity now, hold the last repetition out to calibrate"),
              output: Path = typer.Option(..., "-o", "--output", help="model JSON to write"),
              detectors: str = typer.Option("stide,freq,tree,cnn", help="comma-separated detectors"),
              abi: str = typer.Option("i386", help="ABI of number-only trace files (i386 or x86_64)"),
              epochs: int = typer.Option(6, help="cnn training epochs"),
              json_out: bool = typer.Option(False, "--json", help="print JSON")):
        """Learn normal behaviour from normal traces only."""
        from kernelpilot.security.data import load_normal
        from kernelpilot.security.model import SecurityModel
        from kernelpilot.security.syscalls import check_abi
        kinds = _kinds(detectors)
        if epochs < 1:
            raise KpError("--epochs must be at least 1")
        if (normal is None) == (not host):
            raise KpError("give either --normal TRACES or --host")
        if host:
            import tempfile

            from kernelpilot.security.scenarios.run import host_training_set
            with tempfile.TemporaryDirectory(prefix="kp-host-") as d:
                traces, cal = host_training_set(d, reps=4)
            from kernelpilot.security.features import SCHEDULED
            skip = () if {"ensemble", "fused"} & set(kinds) else SCHEDULED  # the watch's model
            m = SecurityModel.train(traces, kinds, cnn_epochs=epochs, calibration=cal, skip=skip)
        else:
            m = SecurityModel.train(load_normal(normal, check_abi(abi)), kinds, cnn_epochs=epochs)
        m.save(output)
        out = {"model": str(output), "detectors": kinds, "vocabulary": len(m.vocab) - 1,
               "thresholds": m.thresholds, **m.info}
        print(json.dumps(out, indent=1) if json_out else
              f"trained {', '.join(kinds)} on {m.info['n_traces']} traces ({m.info['n_calls']} syscalls) -> {output}")

    @sec.command("eval")
    def evaluate(model: Path = typer.Option(None, "--model", help="model JSON from `security train`"),
                 data: Path = typer.Option(None, "--data", help="ADFA-LD root or recorded scenario suite"),
                 dataset: str = typer.Option(None, "--dataset", help="instead of --model/--data: run the fixed "
                                             "train/calibrate/test protocol on a real set (fhids or unm)"),
                 path: Path = typer.Option(None, "--path", help="with --dataset: its tarball (default: "
                                           "../shared/datasets/security/, or $KPILOT_DATASETS)"),
                 detectors: str = typer.Option(",".join(("mismatch", "lm", "rarity", "novelty", "fused", "stide", "freq", "tree", "cnn",
                                                         "ensemble")),
                                               help="with --dataset: comma-separated detectors"),
                 quick: bool = typer.Option(False, "--quick", help="with --dataset: fewer training epochs"),
                 per_service: bool = typer.Option(False, "--per-service", help="with --dataset fhids: also "
                                                  "thresholds and n-gram models per service, chosen on the dev split"),
                 abi: str = typer.Option("i386", help="ABI of number-only trace files"),
                 json_out: bool = typer.Option(False, "--json", help="print JSON")):
        """AUC, detection rate at 1% and 0.1% FPR, latency, per family, every detector side by side."""
        if dataset is not None:
            from kernelpilot.security.devsets import cli_eval
            if model is not None or data is not None:
                raise KpError("give either --dataset NAME or --model MODEL --data ROOT")
            return cli_eval(dataset, path, _kinds(detectors), quick, json_out, per_service)
        if model is None or data is None:
            raise KpError("give --model MODEL and --data ROOT (or --dataset fhids|unm)")
        from kernelpilot.security.data import load_eval
        from kernelpilot.security.evaluate import evaluate as run_eval
        from kernelpilot.security.evaluate import summary
        from kernelpilot.security.model import SecurityModel
        from kernelpilot.security.syscalls import check_abi
        m = SecurityModel.load(model)
        normal, attack = load_eval(data, check_abi(abi))
        res = run_eval(m, normal, attack)
        if json_out:
            print(json.dumps({"n_normal": len(normal), "n_attack": len(attack), "summary": summary(res),
                              "detectors": res}, indent=1))
            return
        from rich.console import Console
        from rich.table import Table
        t = Table(title=f"{len(normal)} normal vs {len(attack)} attack traces")
        for col in ("detector", "trace AUC", "DR@1%", "DR@0.1%", "window AUC", "window DR@1%", "latency (calls)"):
            t.add_column(col)
        for k, s in summary(res).items():
            t.add_row(k, *(str(v) for v in s.values()))
        Console().print(t)

    @sec.command("synth")
    def synth(output: Path = typer.Option(..., "-o", "--output", help="folder to write (ADFA-LD layout)"),
              train: int = typer.Option(833, help="normal training traces"),
              valid: int = typer.Option(2000, help="normal validation traces"),
              attacks: int = typer.Option(60, help="attack traces per family"),
              seed: int = typer.Option(0)):
        """Write a synthetic corpus in the ADFA-LD layout (the real data set is not shipped)."""
        from kernelpilot.security.synth import make_corpus
        if min(train, valid, attacks) < 1:
            raise KpError("--train, --valid and --attacks must be at least 1")
        make_corpus(output, train, valid, attacks, folders_per_family=min(10, attacks), seed=seed)
        print(f"wrote {train} training, {valid} validation, {attacks * 6} attack traces under {output}")

    sc = typer.Typer(no_args_is_help=True, help="The benign/attack scenario suite (loopback, temp dirs).")
    sec.add_typer(sc, name="scenarios")

    @sc.command("list")
    def sc_list():
        """The scenarios and what kind each is."""
        from kernelpilot.security.scenarios import SCENARIOS
        for s in SCENARIOS.values():
            print(f"{s.name:14s} {s.kind}")

    @sc.command("record")
    def sc_record(output: Path = typer.Option(..., "-o", "--output", help="folder for the recordings"),
                  only: str = typer.Option("", help="comma-separated scenario names (default: all)"),
                  reps: int = typer.Option(2, help="repetitions of each scenario"),
                  json_out: bool = typer.Option(False, "--json", help="print JSON")):
        """Run each scenario under the syscall tracer and save one Parquet trace per run."""
        from kernelpilot.security.scenarios.run import record_suite
        if reps < 1:
            raise KpError("--reps must be at least 1")
        names = [n.strip() for n in only.split(",") if n.strip()] or None
        res = record_suite(output, names, reps,
                           progress=None if json_out else lambda n, r: typer.echo(f"recorded {n} #{r}", err=True))
        print(json.dumps(res, indent=1) if json_out else f"{len(res['runs'])} runs -> {output}")

    @sec.command("watch")
    def watch(model: Path = typer.Option(None, "--model", help="model JSON (default: train on this host's "
                                         "benign scenarios first)"),
              enforce: bool = typer.Option(False, "--enforce", help="act on confirmed alerts (default: alert only)"),
              action: str = typer.Option("freeze", help="with --enforce: freeze or kill"),
              allow: str = typer.Option("", help="comma-separated comm names never acted on"),
              duration: float = typer.Option(0, help="seconds to run (0 = until Ctrl-C)"),
              json_out: bool = typer.Option(False, "--json", help="alerts as JSON lines"),
              output: Path = typer.Option(None, "--output", help="append alerts to this file as JSON lines"),
              learn: float = typer.Option(600, help="seconds of host learning at start: every program's "
                                          "profile learns, nothing is judged by the model"),
              learn_new: float = typer.Option(None, "--learn-new", help="seconds a program the model does not "
                                              "know is learned when first seen later (default: --learn)"),
              cooldown: float = typer.Option(60, help="seconds of quiet that close an incident"),
              min_windows: int = typer.Option(2, "--min-windows", help="confirmed windows of one process and "
                                              "program within 10 s that open a model incident"),
              profiles: Path = typer.Option(None, "--profiles", help="learned program profiles: read at start "
                                            "if the file exists, written at exit")):
        """Two-stage live detection: an in-kernel tree scores each thread's window in sys_enter and
        sends only suspicious ones up; the user-space model confirms, against the program's own
        profile too; behaviour rules run beside it; alerts are grouped into incidents."""
        from kernelpilot.security.live import watch as run_watch
        if action not in ("freeze", "kill"):
            raise KpError("--action must be freeze or kill")
        if duration < 0:
            raise KpError("--duration must be >= 0")
        if learn < 0 or (learn_new is not None and learn_new < 0) or cooldown < 0:
            raise KpError("--learn, --learn-new and --cooldown must be >= 0")
        if min_windows < 1:
            raise KpError("--min-windows must be at least 1")
        run_watch(model, enforce=enforce, action=action, allow=[a for a in allow.split(",") if a],
                  duration=duration or None, json_out=json_out, output=output, learn_s=learn, new_s=learn_new,
                  cooldown_s=cooldown, profiles=profiles, min_windows=min_windows)

    @sec.command("release")
    def release(pid: int = typer.Argument(..., help="process frozen by watch --enforce")):
        """Thaw a process that `watch --enforce` froze (it is also thawed when watch exits)."""
        from kernelpilot.security.live import release as do_release
        if pid <= 0:
            raise KpError("PID must be a positive number")
        print(do_release(pid))
