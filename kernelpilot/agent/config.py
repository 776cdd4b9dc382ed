"""The agent's configuration: TOML (stdlib tomllib), every key checked, one-line errors.

    [agent]    log, log_max_mb, log_backups, socket, poll_s, ring_mb, comm
    [sched]    enabled, window_s, confirm, min_util, min_wakeups, batch_nice, idle, max_actions, only
    [security] enabled, model, action, allow, learn_s
    [memory]   enabled, min_faults, min_accuracy, depth, swap
    [aipath]   enabled, top
    [export]   otlp_endpoint (records and event counts to an OpenTelemetry collector; the scale extra)
"""
from __future__ import annotations

import copy
import tomllib
from pathlib import Path

from kernelpilot.errors import KpError

NUM = (int, float)
# section -> key -> (types, default)
SCHEMA: dict[str, dict[str, tuple]] = {
    "agent": {"log": (str, ""), "log_max_mb": (NUM, 10), "log_backups": (int, 3), "socket": (str, ""),
              "poll_s": (NUM, 0.1), "ring_mb": (int, 16), "comm": (str, "")},
    "sched": {"enabled": (bool, True), "window_s": (NUM, 0.5), "confirm": (int, 2), "min_util": (NUM, 0.02),
              "min_wakeups": (NUM, 20.0), "batch_nice": (int, 0), "idle": (bool, False),
              "max_actions": (NUM, 20.0), "only": (list, [])},
    "security": {"enabled": (bool, True), "model": (str, ""), "action": (str, "freeze"), "allow": (list, []),
                 "learn_s": (NUM, 600.0)},
    "memory": {"enabled": (bool, True), "min_faults": (int, 64), "min_accuracy": (NUM, 0.5), "depth": (int, 8),
               "swap": (bool, False)},
    "aipath": {"enabled": (bool, True), "top": (int, 10)},
    "export": {"otlp_endpoint": (str, "")},
}
TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list", NUM: "a number"}
RANGES = {("agent", "log_max_mb"): (0.01, 1e6), ("agent", "log_backups"): (0, 100), ("agent", "poll_s"): (0.01, 10),
          ("agent", "ring_mb"): (1, 1024), ("sched", "window_s"): (0.05, 60), ("sched", "confirm"): (1, 100),
          ("sched", "batch_nice"): (0, 19), ("sched", "max_actions"): (0.1, 1e4),
          ("memory", "min_faults"): (8, 1 << 30), ("security", "learn_s"): (0, 86400), ("memory", "min_accuracy"): (0, 1), ("memory", "depth"): (1, 64),
          ("aipath", "top"): (1, 20000)}  # the pilot keeps at most 20,000 processes
DOMAINS = ("sched", "security", "memory", "aipath")


def defaults() -> dict:
    return {s: {k: copy.deepcopy(v[1]) for k, v in keys.items()} for s, keys in SCHEMA.items()}


def _type_ok(v, types) -> bool:
    if isinstance(v, bool) and types is not bool:
        return False  # TOML true is not a number
    return isinstance(v, types)


def validate(data: dict, where: str = "config") -> dict:
    cfg = defaults()
    for section, keys in data.items():
        if section not in SCHEMA:
            raise KpError(f"{where}: unknown section '{section}' (known: {', '.join(SCHEMA)})")
        if not isinstance(keys, dict):
            raise KpError(f"{where}: '{section}' must be a table (a section)")
        for k, v in keys.items():
            if k not in SCHEMA[section]:
                raise KpError(f"{where}: unknown key '{k}' in section '{section}' (known: {', '.join(SCHEMA[section])})")
            types = SCHEMA[section][k][0]
            if not _type_ok(v, types):
                raise KpError(f"{where}: {section}.{k} must be {TYPE_NAMES[types]}, not {type(v).__name__} {v!r}")
            lo_hi = RANGES.get((section, k))
            if lo_hi and not lo_hi[0] <= v <= lo_hi[1]:
                raise KpError(f"{where}: {section}.{k} = {v} is out of range ({lo_hi[0]:g}..{lo_hi[1]:g})")
            cfg[section][k] = v
    if cfg["security"]["action"] not in ("freeze", "kill"):
        raise KpError(f"{where}: security.action must be \"freeze\" or \"kill\"")
    if not all(isinstance(a, str) for a in cfg["sched"]["only"]):
        raise KpError(f"{where}: sched.only must be a list of command names (strings)")
    if not all(isinstance(a, str) for a in cfg["security"]["allow"]):
        raise KpError(f"{where}: security.allow must be a list of command names (strings)")
    if cfg["export"]["otlp_endpoint"]:
        from kernelpilot.fleet.otlp import parse_endpoint
        parse_endpoint(cfg["export"]["otlp_endpoint"], f"{where}: export.otlp_endpoint")
    if cfg["memory"]["swap"]:
        raise KpError(f"{where}: memory.swap = true is not run by the agent; use `kpilot memory swap --enforce`")
    return cfg


def load(path: Path | None) -> dict:
    if path is None:
        return defaults()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise KpError(f"config not found: {path}") from None
    except OSError as e:
        raise KpError(f"cannot read config {path}: {e.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise KpError(f"{path}: not valid TOML: {e}") from None
    except RecursionError:
        raise KpError(f"{path}: not valid TOML: nested too deeply") from None
    return validate(data, str(path))
