"""`kpilot sched ...`: evaluate models, simulate policies, run the live agent."""
from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

import typer

from kernelpilot.errors import KpError

sched_app = typer.Typer(no_args_is_help=True, help="CPU scheduling: burst/class/load models, simulator, live agent.")


def _read_events(path: Path):
    from kernelpilot.traces.store import read_trace
    return read_trace(path)[0]


def _print(obj, as_json: bool):
    if as_json:
        print(json.dumps(obj, indent=2, default=float))
    else:
        from rich.console import Console
        from rich.pretty import Pretty
        Console().print(Pretty(obj))


@sched_app.command("simulate")
def simulate_cmd(trace: Path = typer.Option(None, "--trace", help="recorded trace (default: a synthetic mix)"),
                 seed: int = typer.Option(10, help="seed of the synthetic mix"),
                 ncpu: int = typer.Option(2, help="simulated CPUs"),
                 json_out: bool = typer.Option(False, "--json")):
    """Replay tasks under FCFS, RR, CFS-like, SJF/SRPT (oracle and predicted bursts)."""
    from kernelpilot.sched import evaluate as E
    from kernelpilot.sched import features as F
    from kernelpilot.sched.sim import synthetic_trace
    if trace:  # read (and reject a bad file) before training
        f, lat = F.extract(_read_events(trace)), None
    else:
        ev, wl = synthetic_trace(seed, horizon_s=3)
        f, lat = F.extract(ev), set(wl.pids[wl.label == 1].tolist())
    bp, _ = E.synthetic_training()
    _print(E.compare_policies(f, bp, ncpu=ncpu, latency_pids=lat), json_out)


@sched_app.command("train")
def train_cmd(out: Path = typer.Option(..., "--out", "-o", help="classifier model file (.json or .npz)"),
              synthetic: bool = typer.Option(False, "--synthetic", help="synthetic mixes only, not the recorded traces")):
    """Train the task classifier and burst predictor (recorded traces + synthetic mixes); save them
    in the shared model format (kernelpilot.models)."""
    from kernelpilot.sched import evaluate as E
    if out.suffix not in (".json", ".npz"):
        raise KpError(f"{out}: model files end in .json or .npz")
    bp, clf = E.training(recorded=not synthetic)
    burst = out.with_name(out.stem + ".burst" + out.suffix)
    try:
        clf.model.save(out)
        bp.model.save(burst)
    except OSError as e:
        raise KpError(f"cannot write {out}: {e.strerror}") from None
    print(f"wrote {out} (task classifier, depth {clf.model.meta['depth']}) and {burst} (burst predictor, "
          f"depth {bp.model.meta['depth']}); kernelize the classifier with: kpilot kernelize {out} --check")


def _check_live_args(interval: float, pid, verbose: bool) -> None:
    """The checks `sched run` and `sched rules` share, and their log level."""
    if interval <= 0.05:
        raise KpError("--interval must be above 0.05 s")
    for p in pid or []:
        if not os.path.exists(f"/proc/{p}"):
            raise KpError(f"no such process: {p}")
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")


@sched_app.command("run")
def run_cmd(enforce: bool = typer.Option(False, "--enforce", help="really change tasks (default: dry run)"),
            duration: float = typer.Option(None, "--duration", help="seconds to run (default: until Ctrl-C)"),
            pid: list[int] = typer.Option(None, "--pid", help="only these processes (repeatable)"),
            tree: bool = typer.Option(False, "--tree", help="with --pid: their descendants too"),
            idle: bool = typer.Option(False, "--idle", help="batch tasks get SCHED_IDLE, not SCHED_BATCH"),
            cgroup: bool = typer.Option(False, "--cgroup", help="also move tasks into low/high CPU-weight cgroups"),
            actuation: str = typer.Option("auto", "--actuation", help="auto (from what the host allows), autogroup "
                                          "(per-session nice), cgroup (weights; with --idle also cpu.idle) or task"),
            slices: bool = typer.Option(True, "--slices/--no-slices", help="EEVDF slices: short for latency-critical, long for batch"),
            batch_session_nice: int = typer.Option(0, "--batch-session-nice", help="autogroup nice for sessions that want CPU with no latency-critical task (0: leave them; 1..19)"),
            rules_prior: Path = typer.Option(None, "--rules-prior", help="ananicy-cpp rules as a prior: named interactive programs are latency-critical at once"),
            batch_nice: int = typer.Option(0, "--batch-nice", help="nice value for batch tasks (0..19)"),
            model: Path = typer.Option(None, "--model", help="classifier from `kpilot sched train`"),
            kernel: bool = typer.Option(False, "--kernel", help="classify in the kernel (eBPF at sched_switch) and act on its verdicts"),
            window: float = typer.Option(250.0, "--window-ms", help="with --kernel: classification window per task"),
            interval: float = typer.Option(0.5, help="seconds between samples"),
            max_actions: float = typer.Option(20.0, help="most changes per second"),
            verbose: bool = typer.Option(False, "-v", "--verbose")):
    """Classify tasks (latency-critical vs batch) and steer nice, policy, EEVDF slice and, across
    sessions, autogroup nice or cgroup weight."""
    from kernelpilot.agent.journal import Journal
    from kernelpilot.sched import evaluate as E
    from kernelpilot.sched.session import ACTUATIONS, SessionAgent, SessionPolicy, choose_actuation
    if duration is not None and duration <= 0:
        raise KpError("--duration must be positive")
    _check_live_args(interval, pid, verbose)
    clf = E.load_classifier(model) if model else E.default_classifier()
    if not 0 <= batch_nice <= 19:
        raise KpError("--batch-nice must be between 0 and 19")
    if not 0 <= batch_session_nice <= 19:
        raise KpError("--batch-session-nice must be between 0 and 19")
    if actuation not in ACTUATIONS:
        raise KpError(f"--actuation must be one of {', '.join(ACTUATIONS)}")
    if cgroup:
        actuation = "cgroup"
    elif actuation == "auto":
        actuation, why = choose_actuation()
        logging.getLogger("kernelpilot.sched").info("actuation %s: %s", actuation, why)
    pol = SessionPolicy(batch_policy=os.SCHED_IDLE if idle else os.SCHED_BATCH, use_cgroup=actuation == "cgroup",
                        batch_nice=batch_nice, actuation=actuation, slices=slices, cgroup_idle=idle,
                        batch_session_nice=batch_session_nice)
    if window < 10:
        raise KpError("--window-ms must be at least 10")
    prior = None
    if rules_prior:
        from kernelpilot.sched.rules import load
        prior = load(rules_prior, lenient=True)
    kc = None
    if kernel:
        from kernelpilot.sched.kernel import KernelClassifier
        kc = KernelClassifier(clf.model, window_ms=window)
    j = Journal("sched", enforce=enforce, max_actions_per_s=max_actions)
    with j, (kc or contextlib.nullcontext()):
        if enforce:
            print(f"enforcing; journal {j.path}", flush=True)
        agent = SessionAgent(clf, j, pol, pids=pid or None, tree=tree, interval=interval, kernel=kc, prior=prior)
        try:
            agent.run(duration)
        except KeyboardInterrupt:
            pass
        counts = dict(j.counts)
        plan = list(j.planned)
    for n in agent.notes if not verbose else ():
        print(n)
    _print_outcome(agent.decisions if not verbose else [], plan, counts, enforce)


def _print_outcome(decisions, plan, counts, enforce: bool) -> None:
    """What an agent decided, what a dry run would change, and the journal's counts."""
    for d in decisions:
        print(d)
    if not enforce:
        print("dry run: would change" if plan else "dry run: nothing to change")
        for line in plan:
            print("  " + line)
    print("summary: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + ("; all changes restored" if enforce else ""))


@sched_app.command("rules")
def rules_cmd(rules: Path = typer.Option(..., "--rules", help="ananicy-cpp rules: a directory or a tarball (ananicy-rules.tar.xz)"),
              enforce: bool = typer.Option(False, "--enforce", help="really change tasks (default: dry run)"),
              duration: float = typer.Option(None, "--duration", help="seconds to run (default: one pass; 0: until Ctrl-C)"),
              pid: list[int] = typer.Option(None, "--pid", help="only these processes (repeatable)"),
              tree: bool = typer.Option(False, "--tree", help="with --pid: their descendants too"),
              interval: float = typer.Option(0.5, help="seconds between scans"),
              lenient: bool = typer.Option(False, "--lenient", help="skip (and list) malformed lines, as ananicy-cpp does, instead of failing"),
              json_out: bool = typer.Option(False, "--json", help="print the parsed rule set's summary as JSON"),
              verbose: bool = typer.Option(False, "-v", "--verbose")):
    """Apply ananicy-cpp rules the way ananicy-cpp does (nice, sched policy, ionice, OOM score,
    cgroup quota; unmatched programs: nothing), through the journal."""
    from kernelpilot.agent.journal import Journal
    from kernelpilot.sched.rules import RulesDaemon, load, summary
    if duration is not None and duration < 0:
        raise KpError("--duration must be positive (0: until Ctrl-C)")
    _check_live_args(interval, pid, verbose)
    rs = load(rules, lenient=lenient)
    info = summary(rs)
    if json_out:
        print(json.dumps(info, indent=2))
    else:
        print(f"{info['files']} files: {info['types']} types, {info['cgroups']} cgroups, {info['rules']} rules"
              + (f"; unknown types (their rules apply their own fields only): {', '.join(info['unknown_types'])}"
                 if info["unknown_types"] else "")
              + (f"; {len(rs.skipped)} malformed lines skipped, first: {rs.skipped[0]}" if rs.skipped else ""), flush=True)
    j = Journal("sched-rules", enforce=enforce)
    with j:
        if enforce:
            print(f"enforcing; journal {j.path}", flush=True)
        d = RulesDaemon(rs, j, pids=pid or None, tree=tree, interval=interval)
        for n in d.notes:
            print(n)
        try:
            if duration is None:
                d.step()
            else:
                d.run(duration or None)
        except KeyboardInterrupt:
            pass
        counts, plan = dict(j.counts), list(j.planned)
    if not json_out:
        _print_outcome(d.decisions, plan, counts, enforce)


def register(app: typer.Typer) -> None:
    app.add_typer(sched_app, name="sched")
