"""The rule-based daemon users run today, as the anchor: ananicy-cpp's rule format, applied the way
ananicy-cpp applies it.

Format (JSON objects, one a line, '#' starts a comment): `*.types` define types (`{"type": NAME,
"nice": N, "ioclass": ..., "ionice": N, "sched": ..., "latency_nice": N, "oom_score_adj": N}`),
`*.cgroups` define CPU-quota groups (`{"cgroup": NAME, "CPUQuota": PERCENT}`, percent of all
CPUs), `*.rules` name programs (`{"name": COMM, "type": NAME, ...}`; explicit fields override the
type's). Read from a directory or straight from a tarball (ananicy-rules.tar.xz).

Applying: a process whose name (comm) matches a rule gets that rule's nice, scheduling policy
(with rtprio for fifo/rr), latency_nice where the kernel has it (mainline never merged it: stated
and skipped), I/O class and level, OOM score and cgroup, on each of its threads; a process no rule
names is left alone (ananicy-cpp's documented behaviour). Every change goes through the journal.
"""
from __future__ import annotations

import json
import logging
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from kernelpilot.errors import KpError

log = logging.getLogger("kernelpilot.sched")
SCHED = {"normal": os.SCHED_OTHER, "other": os.SCHED_OTHER, "batch": os.SCHED_BATCH, "idle": os.SCHED_IDLE,
         "fifo": os.SCHED_FIFO, "rr": os.SCHED_RR, "iso": None}  # iso: not in mainline (normal)
IOCLASSES = ("none", "realtime", "best-effort", "idle")
FIELDS = {"name": str, "type": str, "cgroup": str, "nice": int, "latency_nice": int, "ionice": int,
          "ioclass": str, "sched": str, "rtprio": int, "oom_score_adj": int, "CPUQuota": (int, float)}
RANGES = {"nice": (-20, 19), "latency_nice": (-20, 19), "ionice": (0, 7), "rtprio": (1, 99),
          "oom_score_adj": (-1000, 1000), "CPUQuota": (1, 100)}
KEYS = {".types": "type", ".cgroups": "cgroup", ".rules": "name"}


@dataclass
class RuleSet:
    types: dict = field(default_factory=dict)
    cgroups: dict = field(default_factory=dict)
    rules: dict = field(default_factory=dict)     # comm -> merged settings
    where: dict = field(default_factory=dict)     # comm -> "file:line"
    unknown_types: dict = field(default_factory=dict)  # type name -> first "file:line" using it
    skipped: list = field(default_factory=list)  # lenient: "file:line: why" of each line skipped
    files: int = 0

    def match(self, comm: str) -> dict | None:
        return self.rules.get(comm)


def _check(obj: dict, where: str) -> None:
    for k, v in obj.items():
        want = FIELDS.get(k)
        if want is None:
            continue  # ananicy-cpp ignores fields it does not know
        if not isinstance(v, want) or isinstance(v, bool):
            raise KpError(f"{where}: field '{k}': expected {'a string' if want is str else 'a number'}, got {v!r}")
        if k in RANGES and not RANGES[k][0] <= v <= RANGES[k][1]:
            raise KpError(f"{where}: field '{k}': {v} is outside {RANGES[k][0]}..{RANGES[k][1]}")
    if "sched" in obj and obj["sched"] not in SCHED:
        raise KpError(f"{where}: field 'sched': '{obj['sched']}' is not one of {', '.join(SCHED)}")
    if "ioclass" in obj and obj["ioclass"] not in IOCLASSES:
        raise KpError(f"{where}: field 'ioclass': '{obj['ioclass']}' is not one of {', '.join(IOCLASSES)}")


def _objects(name: str, text: str, skipped: list | None = None):
    """(line number, object) of each JSON line of one file; KpError naming file and line (with
    `skipped`, the error is appended there and the line skipped)."""
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            obj, end = json.JSONDecoder().raw_decode(line)
            rest = line[end:].strip()
            if rest and not rest.startswith("#"):
                raise KpError(f"{name}:{n}: text after the JSON object: {rest[:30]!r}")
            if not isinstance(obj, dict):
                raise KpError(f"{name}:{n}: not a JSON object")
        except json.JSONDecodeError as e:
            err = KpError(f"{name}:{n}: not a JSON object (column {e.colno}: {e.msg})")
        except RecursionError:
            err = KpError(f"{name}:{n}: not a JSON object (nested too deeply)")
        except KpError as e:
            err = e
        else:
            yield n, obj
            continue
        if skipped is None:
            raise err
        skipped.append(str(err))


def _files(path: Path):
    """(name, text) of every .types/.cgroups/.rules file under a directory or in a tarball."""
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file() and p.suffix in KEYS:
                try:
                    yield str(p), p.read_text()
                except (OSError, UnicodeDecodeError) as e:
                    raise KpError(f"{p}: cannot read ({getattr(e, 'strerror', None) or e.__class__.__name__})") from None
        return
    try:
        with tarfile.open(path) as tf:
            for m in sorted(tf.getmembers(), key=lambda m: m.name):
                if m.isfile() and Path(m.name).suffix in KEYS:
                    try:
                        yield f"{path}!{m.name}", tf.extractfile(m).read().decode()
                    except UnicodeDecodeError:
                        raise KpError(f"{path}!{m.name}: not UTF-8 text") from None
    except (tarfile.TarError, EOFError, OSError) as e:
        raise KpError(f"{path}: not a rules directory or a readable tarball ({e})") from None


def load(path: str | Path, lenient: bool = False) -> RuleSet:
    """The rule set under `path`. A malformed line is a KpError naming file, line and field; with
    `lenient`, as ananicy-cpp does, it is logged and skipped (RuleSet.skipped)."""
    return _load(Path(path), RuleSet(), lenient)


def _load(path: Path, rs: RuleSet, lenient: bool) -> RuleSet:
    if not path.exists():
        raise KpError(f"{path}: no such rules file or directory")
    if path.is_file() and path.suffix in KEYS:
        files = [(str(path), path.read_text(errors="replace"))]
    else:
        files = list(_files(path))
    rules = []
    order = {".types": 0, ".cgroups": 1, ".rules": 2}  # types and cgroups first, as ananicy-cpp loads them
    for name, text in sorted(files, key=lambda f: (order[Path(f[0].split("!")[-1]).suffix], f[0])):
        rs.files += 1
        kind = Path(name.split("!")[-1]).suffix
        key = KEYS[kind]
        for n, obj in _objects(name, text, rs.skipped if lenient else None):
            where = f"{name}:{n}"
            try:
                if not any(k.strip() == key for k in obj):
                    raise KpError(f"{where}: field '{key}': missing")
                obj = {k.strip(): v for k, v in obj.items()}
                _check(obj, where)
                if kind == ".cgroups" and "CPUQuota" not in obj:
                    raise KpError(f"{where}: field 'CPUQuota': missing")
            except KpError as e:
                if not lenient:
                    raise
                rs.skipped.append(str(e))
                continue
            if kind == ".types":
                rs.types[obj["type"]] = {k: v for k, v in obj.items() if k != "type"}
            elif kind == ".cgroups":
                rs.cgroups[obj["cgroup"]] = float(obj["CPUQuota"])
            else:
                rules.append((where, obj))
    for where, obj in rules:
        merged = {}
        t = obj.get("type")
        if t is not None:
            if t in rs.types:
                merged.update(rs.types[t])
            else:
                rs.unknown_types.setdefault(t, where)  # ananicy-cpp warns and applies the rest
        merged.update({k: v for k, v in obj.items() if k not in ("name", "type")})
        if "cgroup" in merged and merged["cgroup"] not in rs.cgroups:
            msg = f"{where}: field 'cgroup': '{merged['cgroup']}' is not defined in any .cgroups file"
            if not lenient:
                raise KpError(msg)
            rs.skipped.append(msg)
            continue
        if t is not None:
            merged["type"] = t
        rs.rules[obj["name"]] = merged  # a later rule for the same name wins
        rs.where[obj["name"]] = where
    return rs


def summary(rs: RuleSet) -> dict:
    by_type: dict[str, int] = {}
    for r in rs.rules.values():
        by_type[r.get("type", "(explicit)")] = by_type.get(r.get("type", "(explicit)"), 0) + 1
    return {"files": rs.files, "types": len(rs.types), "cgroups": len(rs.cgroups), "rules": len(rs.rules),
            "rules_per_type": dict(sorted(by_type.items(), key=lambda kv: -kv[1])),
            "unknown_types": rs.unknown_types, "skipped_lines": rs.skipped}


# --- applying ----------------------------------------------------------------------------------

def wanted(rule: dict) -> dict:
    """Knob -> value for one thread under `rule` (the journal's knobs)."""
    out = {}
    if "nice" in rule:
        out["nice"] = rule["nice"]
    pol = SCHED.get(rule.get("sched"))
    if pol is not None:
        out["policy"] = [pol, rule.get("rtprio", 1) if pol in (os.SCHED_FIFO, os.SCHED_RR) else 0]
    if "ioclass" in rule or "ionice" in rule:
        cls = {"none": 0, "realtime": 1, "best-effort": 2, "idle": 3}[rule.get("ioclass", "best-effort")]
        out["ioprio"] = [cls, 0 if cls in (0, 3) else rule.get("ionice", 4)]
    if "oom_score_adj" in rule:
        out["oom_score_adj"] = rule["oom_score_adj"]
    return out


class RulesDaemon:
    """Poll the processes in scope every `interval` s; apply each matched process's rule once
    (per process start), to all its threads."""

    def __init__(self, rs: RuleSet, journal, pids: list[int] | None = None, tree: bool = False,
                 interval: float = 0.5):
        from kernelpilot.sched.live import _ancestors
        self.rs, self.j, self.interval = rs, journal, interval
        self.roots, self.tree = (set(pids) if pids else None), tree
        self.done: set[tuple[int, int]] = set()
        self.exclude = _ancestors(os.getpid()) | {os.getpid()}
        self.decisions: list[str] = []
        self.notes: list[str] = []
        self.groups: dict[str, tuple] = {}
        if any("latency_nice" in r for r in rs.rules.values()):
            self.notes.append("latency_nice in the rules is skipped: this kernel has no latency nice "
                              "(never merged into mainline; EEVDF slices replace it)")
        if any(r.get("sched") == "iso" for r in rs.rules.values()):
            self.notes.append("sched 'iso' (SCHED_ISO) is not in mainline: those tasks stay normal")

    def _scope(self):
        from kernelpilot.sched.session import tree_pids
        if self.roots is None:
            return {int(d) for d in os.listdir("/proc") if d.isdigit()}
        return tree_pids(self.roots) if self.tree else set(self.roots)

    def _cgroup(self, name: str):
        """Our CPU-quota group for a rules cgroup, made (journaled) on first use."""
        if name in self.groups:
            return self.groups[name]
        from kernelpilot.sched.policies import cpu_cgroup
        found = cpu_cgroup()
        self.groups[name] = None
        if not found or not self.j.enforce:
            return None
        hier, mount = found
        path = str(mount / f"kernelpilot.rules.{name}")
        ncpu = os.cpu_count() or 1
        quota = int(self.rs.cgroups[name] / 100 * ncpu * 100_000)
        self.j.change("mkdir", {"path": path}, True)
        if hier == "v2":
            self.j.change("file", {"path": f"{path}/cpu.max"}, f"{quota} 100000")
        else:
            self.j.change("file", {"path": f"{path}/cpu.cfs_period_us"}, "100000")
            self.j.change("file", {"path": f"{path}/cpu.cfs_quota_us"}, str(quota))
        self.groups[name] = (hier, str(mount), "/" + os.path.basename(path))
        return self.groups[name]

    def step(self) -> None:
        from kernelpilot.agent.rollback import start_time
        for pid in self._scope():
            if pid in self.exclude or pid <= 1:
                continue
            try:
                with open(f"/proc/{pid}/comm") as f:
                    comm = f.read().rstrip("\n")
            except OSError:
                continue
            st = start_time(pid)
            if st is None or (pid, st) in self.done:
                continue
            self.done.add((pid, st))
            rule = self.rs.match(comm)
            if rule is None:
                continue  # unmatched programs: nothing
            self.decisions.append(f"{comm}[{pid}] matches {self.rs.where[comm]} ({rule.get('type', 'explicit')})")
            try:
                tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
            except OSError:
                continue
            for tid in tids:
                t = {"tid": tid, "start": start_time(tid), "comm": comm}
                if t["start"] is None:
                    continue
                for knob, v in wanted(rule).items():
                    self.j.change(knob, t, v)
            if "cgroup" in rule:
                g = self._cgroup(rule["cgroup"])
                if g:
                    self.j.change("cgroup", {"tid": pid, "start": st, "comm": comm, "hier": g[0], "mount": g[1]}, g[2])

    def run(self, duration: float | None) -> None:
        from kernelpilot.sched.live import run_every
        run_every(self.step, self.interval, duration)
