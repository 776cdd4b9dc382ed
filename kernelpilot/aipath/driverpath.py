"""The device-driver step of the AI path, named: each ioctl the probe saw (with its duration and
argument bytes) decoded by the driver's table, then gathered per device file and per phase into the
devices layer (ioctls_by_name, ioctls_by_category, time in calls)."""
from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from kernelpilot.aipath import ioctls as I
from kernelpilot.aipath.devices import describe


S_IFMT, S_IFBLK = 0o170000, 0o060000


def device_info(rdev: int, kind: str = "char") -> dict:
    """describe() plus the bound kernel driver (sysfs) and the table family its requests use."""
    d = describe(rdev, kind)
    kdrv = I.sysfs_driver(d["major"], d["minor"]) if kind == "char" else None
    fam = I.family_of(d["major"], d["driver"], kdrv) if kind == "char" else "generic"
    return {**d, "kind": kind, "kernel_driver": kdrv, "family": fam}


def device_key(info: dict) -> str:
    return info["path"] or f"{info.get('kind', 'char')} {info['major']}:{info['minor']}"


def decode(recs: np.ndarray, info_of=device_info) -> tuple[list[dict], dict[tuple, dict]]:
    """One {device, name, category, detail, dur_ns, ts} per ioctl record, and each device's info
    by (rdev, is_block)."""
    kinds = np.where((recs["mode"] & S_IFMT) == S_IFBLK, 1, 0) if len(recs) else np.empty(0, dtype=int)
    pairs = {(int(r), int(k)) for r, k in zip(recs["rdev"].tolist(), kinds.tolist())}
    infos = {p: info_of(p[0], "block" if p[1] else "char") for p in pairs}
    out = []
    for r, k in zip(recs, kinds.tolist()):
        info = infos[(int(r["rdev"]), k)]
        n = I.name_request(int(r["cmd"]), info["family"], info.get("kernel_driver"), bytes(r["arg"]))
        out.append({"device": device_key(info), "ts": int(r["ts"]), "dur_ns": int(r["dur_ns"]), **n})
    return out, infos


def summarise(calls: list[dict]) -> dict[str, dict]:
    """Per device: ioctls_by_name (count, time), ioctls_by_category, time in calls, and the RM
    object classes / control commands named from the argument bytes."""
    per: dict[str, dict] = {}
    for c in calls:
        d = per.setdefault(c["device"], {"ioctls_by_name": {}, "ioctls_by_category": {},
                                         "ioctl_time_s": 0.0, "ioctl_details": Counter()})
        for table, key in ((d["ioctls_by_name"], c["name"]), (d["ioctls_by_category"], c["category"])):
            v = table.setdefault(key, {"count": 0, "time_s": 0.0})
            v["count"] += 1
            v["time_s"] += c["dur_ns"] / 1e9
        d["ioctl_time_s"] += c["dur_ns"] / 1e9
        if c["detail"]:
            d["ioctl_details"][f"{c['name']}({c['detail']})"] += 1
    for d in per.values():
        for table in (d["ioctls_by_name"], d["ioctls_by_category"]):
            for v in table.values():
                v["time_s"] = round(v["time_s"], 6)
        d["ioctls_by_name"] = dict(sorted(d["ioctls_by_name"].items(), key=lambda kv: -kv[1]["count"]))
        d["ioctl_time_s"] = round(d["ioctl_time_s"], 6)
        d["ioctl_details"] = dict(d["ioctl_details"].most_common(40))
    return per


def _merge_into(layer: dict, per: dict[str, dict], infos_by_key: dict[str, dict]) -> None:
    files = layer["detail"]["files"]
    for key, s in per.items():
        info = infos_by_key[key]
        if info.get("kind") == "block":  # the main tracer takes every rdev for a character device
            for k, v in list(files.items()):
                if k not in per and (v["major"], v["minor"]) == (info["major"], info["minor"]):
                    files.pop(k)
        f = files.setdefault(key, {**{k: v for k, v in infos_by_key[key].items()
                                                 if k not in ("kernel_driver", "family", "kind")},
                                   "ioctls": sum(v["count"] for v in s["ioctls_by_name"].values()),
                                   "mmaps": 0, "mmap_bytes": 0})
        f.update(kernel_driver=infos_by_key[key]["kernel_driver"], family=infos_by_key[key]["family"], **s)
    layer["detail"]["ioctl_time_s"] = round(sum(s["ioctl_time_s"] for s in per.values()), 6)
    by_cat = defaultdict(int)
    for s in per.values():
        for c, v in s["ioctls_by_category"].items():
            by_cat[c] += v["count"]
    layer["detail"]["ioctls_by_category"] = dict(by_cat)


def enrich(result: dict, recs: np.ndarray, info_of=device_info) -> None:
    """Add the named ioctls to the devices layer of the whole run and of each phase (by the
    phases' t0_ns/t1_ns windows)."""
    calls, infos = decode(recs, info_of)
    infos_by_key = {device_key(v): v for v in infos.values()}
    _merge_into(result["layers"][5], summarise(calls), infos_by_key)
    for p in result.get("phases", []):
        inside = [c for c in calls if p["t0_ns"] <= c["ts"] < p["t1_ns"]]
        _merge_into(p["layers"][5], summarise(inside), infos_by_key)
    result["ioctl_names"] = {"decoded": len(calls), "named": sum(not c["name"].startswith("_IOC(") for c in calls)}
