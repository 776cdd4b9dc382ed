"""Every command that takes a file, found from the Typer app, fed each mutation family: it exits
non-zero with one `KpError` line, or succeeds; never the last-resort "internal error", never an
output file left half-written on failure."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.main import get_command
from typer.testing import CliRunner

from kernelpilot.cli import app
from kernelpilot.errors import KpError
from kernelpilot.fuzz.mutate import FAMILIES, mutate
from kernelpilot.fuzz.run import OK, run_one
from kernelpilot.fuzz.targets import TARGETS, corpus_seeds

OUTPUTS = {"output", "out", "keep", "screenshot", "log", "log_file"}
# Commands that run live on the host (agents, probes, a TUI): their file goes through the same
# public loader that tests/fuzz/test_loaders.py fuzzes, named here.
LIVE = {
    ("top", "sched_model"): "sched-model (load_classifier), a TUI",
    ("sched run", "model"): "sched-model (load_classifier), a live agent",
    ("sched run", "rules_prior"): "ananicy rules, a live agent",
    ("security watch", "model"): "security-model (SecurityModel.load), a live watcher",
    ("security watch", "profiles"): "program profiles, a live watcher",
    ("memory live prefetch", "file"): "a file to prefetch (not parsed), live",
    ("agent run", "config"): "config-toml (agent.config.load), a live agent",
    ("agent state", "sock"): "the running agent's socket (not a file that is read)",
    ("security eval", "path"): "a held data set's tarball (fhids/unm), a full protocol run",
    ("export otlp", "from_log"): "agent event-log lines sent to a collector (tests/fleet/test_otlp.py: bad, torn, missing)",
    ("export otlp", "follow"): "an event log followed live (tests/fleet/test_otlp.py: rotation, torn and bad lines)",
    ("models watch", "path"): "model files through Model.load (model-* loaders), a live kernel swap loop",
}


def file_params():
    """(command words, parameter name, option flag or None for an argument) of every input file."""
    out = []

    def walk(cmd, words):
        if hasattr(cmd, "commands"):
            for n, c in cmd.commands.items():
                walk(c, words + [n])
            return
        for p in cmd.params:
            ann = p.type_descriptor.annotation
            if p.name in OUTPUTS or not (ann in (Path, list[Path]) or (ann is str and p.name == "trace")):
                continue
            out.append((" ".join(words), p.name, None if p.param_type_name == "argument" else p.opts[0]))
    walk(get_command(app), [])
    return out


def _adfa_root(d: Path, attack: bytes | None = None) -> Path:
    seq = TARGETS["trace-adfa"]
    base = corpus_seeds(seq.name)[0][1]
    for sub, n in (("Training_Data_Master", 4), ("Validation_Data_Master", 2), ("Attack_Data_Master/Adduser_1", 2)):
        (d / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (d / sub / f"UAD-{i}.txt").write_bytes(base)
    if attack is not None:
        (d / "Attack_Data_Master" / "Adduser_1" / "UAD-0.txt").write_bytes(attack)
    return d


def _security_model(d: Path) -> Path:
    p = d / "security.json"
    p.write_bytes(corpus_seeds("security-model")[0][1])
    return p


def _trace(d: Path) -> Path:
    p = d / "good.txt"
    p.write_bytes(corpus_seeds("trace-txt")[0][1])
    return p


# (command, param) -> (seed target, argv builder(file, out, tmp) -> list)
CASES = {
    ("trace-info", "path"): ("trace-parquet", lambda f, o, d: ["trace-info", f]),
    ("replay", "path"): ("trace-parquet", lambda f, o, d: ["replay", f, "--json"]),
    ("kernelize", "model"): ("model-tree", lambda f, o, d: ["kernelize", f, "-t", "c", "-o", o]),
    ("models info", "model"): ("model-gbm", lambda f, o, d: ["models", "info", f, "--json"]),
    ("report", "results"): ("bench-results", lambda f, o, d: ["report", f, "-o", o]),
    ("aipath", "trace"): ("trace-parquet", lambda f, o, d: ["aipath", "--from", f, "--json"]),
    ("sched simulate", "trace"): ("trace-parquet", lambda f, o, d: ["sched", "simulate", "--trace", f, "--json"]),
    ("memory sim", "trace"): ("trace-txt", lambda f, o, d: ["memory", "sim", "--trace", f, "--policies", "lru,arc",
                                                            "--sizes", "0.1", "--json"]),
    ("memory sim", "model"): ("memory-model", lambda f, o, d: ["memory", "sim", "--trace", _trace(d), "--policies",
                                                               "reuse", "--sizes", "10", "--model", f, "--json"]),
    ("memory train", "trace"): ("trace-msr", lambda f, o, d: ["memory", "train", "--trace", f, "--policy", "reuse",
                                                              "-o", o]),
    ("memory prefetch", "trace"): ("trace-blkparse", lambda f, o, d: ["memory", "prefetch", "--trace", f,
                                                                      "--prefetchers", "next-n,stride", "--json"]),
    ("security train", "normal"): ("trace-strace", lambda f, o, d: ["security", "train", "--normal", f, "-o", o,
                                                                    "--detectors", "stide,freq"]),
    ("security eval", "model"): ("security-model", lambda f, o, d: ["security", "eval", "--model", f, "--data",
                                                                    _adfa_root(d / "adfa"), "--json"]),
    ("security eval", "data"): ("trace-adfa", lambda f, o, d: ["security", "eval", "--model", _security_model(d),
                                                               "--data", _adfa_root(d / "adfa", Path(f).read_bytes()),
                                                               "--json"]),
    ("sched rules", "rules"): ("sched-rules", lambda f, o, d: ["sched", "rules", "--rules", f, "--json"]),
    ("agent rollback", "journal"): ("journal", lambda f, o, d: ["agent", "rollback", f, "--force"]),
    ("models push", "files"): ("model-tree", lambda f, o, d: ["models", "push", f, "--to", d / "store"]),
    ("query", "files"): ("trace-parquet", lambda f, o, d: ["query", "SELECT kind, count(*) FROM trace GROUP BY kind",
                                                          f, "--json"]),
}
SUFFIX = {("kernelize", "model"): ".c"}
# Commands whose work after a good load takes seconds (training, simulating): a mutated file that
# the loader accepts (tests/fuzz/test_loaders.py covers what it returns) is not run through them.
SLOW = {("sched simulate", "trace"), ("memory train", "trace"), ("memory sim", "model")}
# sched simulate trains its burst model before it reads --trace (seconds a call): the seed and three
# families; its loader (read_trace) takes every family through trace-info, replay and aipath.
FAMILIES_OF = {("sched simulate", "trace"): ("truncate", "random_bytes", "wrong_type")}


def test_every_file_command_is_walked():
    found = {(c, p) for c, p, _ in file_params()}
    missing = found - set(CASES) - set(LIVE)
    assert not missing, f"commands taking a file with no fuzz case: {sorted(missing)}"
    assert {("kernelize", "model"), ("trace-info", "path"), ("memory sim", "trace")} <= found


def _invoke(argv):
    r = CliRunner().invoke(app, [str(a) for a in argv], catch_exceptions=True)
    e = r.exception
    if e is None or isinstance(e, SystemExit):
        return r.exit_code, None
    return (e.exit_code if isinstance(e, KpError) else 1), e


@pytest.mark.parametrize("case", sorted(CASES), ids=lambda c: f"{c[0]}:{c[1]}")
def test_command_with_mutated_files(case, tmp_path):
    target_name, argv = CASES[case]
    target = TARGETS[target_name]
    seed = corpus_seeds(target_name)[0][1]
    inputs = [("seed", seed)] + [(f, mutate(seed, target.fmt, f, np.random.default_rng(i)))
                                 for i, f in enumerate(FAMILIES)]
    failed = 0
    for family, data in inputs:
        if case in FAMILIES_OF and family not in ("seed",) + FAMILIES_OF[case]:
            continue
        if case in SLOW and family != "seed" and run_one(target, data)[0] == OK:
            continue
        d = tmp_path / family
        d.mkdir()
        f = d / f"input{target.suffix}"
        f.write_bytes(data)
        out = d / f"out{SUFFIX.get(case, '.json' if case[0] != 'report' else '.html')}"
        code, exc = _invoke(argv(f, out, d))
        where = f"{case} {family}"
        if exc is not None and not isinstance(exc, KpError):
            pytest.fail(f"{where}: internal error {type(exc).__name__}: {exc}")
        if isinstance(exc, KpError):
            assert str(exc).strip() and "\n" not in str(exc), f"{where}: not one line: {exc!r}"
        if family == "seed":
            assert code == 0, f"{where}: the valid file fails: {exc}"
        if code != 0:
            failed += 1
            assert not out.exists(), f"{where}: failed but left {out.name}"
            assert not list(d.glob("*.partial")), f"{where}: left a partial file"
    assert failed > 0 or target.lenient  # the mutations are rejected somewhere


def test_real_cli_prints_one_error_line(kpilot, tmp_path):
    """Through the real entry point: the `kpilot: error:` line, never `internal error`."""
    bad = tmp_path / "m.json"
    doc = json.loads(corpus_seeds("model-tree")[0][1])
    doc["params"]["left"]["data"][0] = 1_000_000
    bad.write_text(json.dumps(doc))
    for argv in (["kernelize", bad, "-t", "bpf-code", "-o", tmp_path / "m.o"], ["models", "info", bad],
                 ["trace-info", bad], ["memory", "sim", "--trace", bad]):
        r = kpilot(*argv)
        lines = r.stderr.strip().splitlines()
        assert r.returncode != 0 and len(lines) == 1 and lines[0].startswith("kpilot: error:"), (argv, r.stderr)
        assert "internal error" not in r.stderr
    assert not (tmp_path / "m.o").exists() and os.listdir(tmp_path) == ["m.json"]
