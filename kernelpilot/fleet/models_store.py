"""Model files in a shared store (a directory, file:// or s3:// through pyarrow.fs), and a watch
that hot-swaps a deployed in-kernel model when its file changes.

    push: each file is validated (Model.load, or the security model's loader) before it goes; a
          directory gets a temporary name then a rename, an object store one PUT (whole or nothing)
    pull: the bytes are written to a temporary file beside -o, validated, then renamed over -o
    watch: deploy (a scheduling classifier live in sched.kernel, else deploy_map), then poll the
           file's (mtime, size, inode); a change that validates is swapped in (atomic slot flip) and
           checked for parity in the kernel; one that does not keeps the old model, in one line
S3 credentials come from the usual AWS_* variables; ?endpoint_override=HOST:PORT&scheme=http for a
local S3-compatible server."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from kernelpilot.errors import KpError

SUFFIXES = (".json", ".npz")


def open_store(uri: str):
    """(filesystem, base path) for a directory path, file:// or s3:// URI."""
    import pyarrow.fs as pafs
    if "://" not in uri:
        return pafs.LocalFileSystem(), str(Path(uri).resolve())
    try:
        fs, base = pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError, TypeError) as e:  # ArrowInvalid is a ValueError
        raise KpError(f"bad model store '{uri}': {str(e).splitlines()[0]}") from None
    return fs, base.rstrip("/")


def _why(e: Exception) -> str:
    s = getattr(e, "strerror", None) or str(e).splitlines()[0]
    head, _, detail = s.partition(". Detail: ")  # Arrow's "... Detail: [errno 13] Permission denied"
    return f"{head} ({detail.split('] ', 1)[-1]})" if detail else head


def _check_name(name: str) -> None:
    if not name or "/" in name or name.startswith(".") or Path(name).suffix not in SUFFIXES:
        raise KpError(f"bad model name '{name}': a file name ending in .json or .npz (no folders)")


def load_any(path: Path) -> str:
    """Validate a model file with its own loader (kernelpilot.models, or the security model's);
    returns its kind."""
    from kernelpilot.models.format import Model
    path = Path(path)
    if path.suffix == ".json" and path.is_file():
        try:
            fmt = json.loads(path.read_bytes()).get("format")
        except (ValueError, AttributeError, RecursionError, UnicodeDecodeError):
            fmt = None  # Model.load says what is wrong
        from kernelpilot.security.model import FORMAT, SecurityModel
        if fmt == FORMAT:
            SecurityModel.load(path)
            return "security"
    return Model.load(path).kind


def push(files: list[Path], dest: str) -> list[dict]:
    for f in files:  # every file checked before anything is written
        _check_name(Path(f).name)
        try:
            load_any(f)
        except OSError as e:  # e.g. a folder on the way this user may not enter
            raise KpError(f"cannot read {f}: {e.strerror}") from None
    fs, base = open_store(dest)
    local = fs.type_name in ("local", "subtree")
    out = []
    try:
        if local:
            fs.create_dir(base, recursive=True)
        for f in files:
            f = Path(f)
            data = f.read_bytes()
            target = f"{base}/{f.name}"
            tmp = f"{base}/.{f.name}.{os.getpid()}.tmp" if local else target
            try:
                with fs.open_output_stream(tmp) as o:
                    o.write(data)
                if local:
                    fs.move(tmp, target)
            except BaseException:
                if local:
                    try:
                        fs.delete_file(tmp)
                    except OSError:
                        pass
                raise
            out.append({"name": f.name, "bytes": len(data), "to": f"{dest.rstrip('/')}/{f.name}"})
    except OSError as e:
        raise KpError(f"cannot write to the model store {dest}: {_why(e)}") from None
    return out


def names(fs, base: str) -> list[str]:
    import pyarrow.fs as pafs
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    except OSError:
        return []
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(SUFFIXES))


def pull(name: str, src: str, output: Path) -> dict:
    _check_name(name)
    output = Path(output)
    if output.suffix != Path(name).suffix:
        raise KpError(f"-o {output}: must end in {Path(name).suffix} like {name}")
    if output.is_dir():
        raise KpError(f"-o {output} is a folder; give a file name")
    if not output.parent.is_dir():
        raise KpError(f"-o {output}: no such directory ({output.parent})")
    fs, base = open_store(src)
    where = f"{src.rstrip('/')}/{name}"
    try:
        with fs.open_input_stream(f"{base}/{name}") as i:
            data = i.read()
    except FileNotFoundError:
        known = names(fs, base)
        raise KpError(f"no model '{name}' in {src} (there: {', '.join(known) or 'none'})") from None
    except OSError as e:
        raise KpError(f"cannot read {where}: {_why(e)}") from None
    tmp = output.with_name(f".{output.stem}.{os.getpid()}.tmp{output.suffix}")
    try:
        tmp.write_bytes(data)
        try:
            kind = load_any(tmp)
        except KpError as e:
            raise KpError(str(e).replace(str(tmp), where)) from None
        os.replace(tmp, output)
    except OSError as e:
        raise KpError(f"cannot write {output}: {e.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return {"name": name, "kind": kind, "bytes": len(data), "output": str(output)}


# --- watch: hot swap in the kernel -----------------------------------------------------------------
def _stamp(path: Path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class ModelWatch:
    """A model deployed in the kernel, swapped when its file changes: a scheduling classifier (over
    the sched features) runs live in kernelpilot.sched.kernel's classifier on sched_switch/wakeup;
    any other tree or forest in kernelize's map interpreter."""

    def __init__(self, path: Path, check_rows: int = 256, window_ms: float = 250.0):
        from kernelpilot.kernelize.kernel import deploy_map
        from kernelpilot.models.format import Model
        from kernelpilot.sched.features import CLASS_FEATURES
        self.path, self.check_rows = Path(path), check_rows
        m = Model.load(self.path)
        self.stamp = _stamp(self.path)
        self.sched = list(m.feature_names) == CLASS_FEATURES
        if self.sched:
            from kernelpilot.sched.kernel import KernelClassifier
            self.dep = KernelClassifier(m, window_ms=window_ms)
            self.where = "the in-kernel scheduling classifier (live on sched_switch)"
        else:
            self.dep = deploy_map(m)
            self.where = "the kernel's map interpreter"
        self.swaps = self.kept = 0

    def _fits(self, m) -> None:
        from kernelpilot.sched.features import CLASS_FEATURES
        if self.sched and (list(m.feature_names) != CLASS_FEATURES
                           or any(s != 0 for s in m.meta["quant"]["feature_shift"])):
            raise KpError(f"{self.path}: the live scheduling classifier takes a tree over "
                          f"{', '.join(CLASS_FEATURES)} with integer features")

    def poll(self) -> dict | None:
        """None when the file is unchanged; else what happened (swapped or kept)."""
        from kernelpilot.kernelize.harness import parity
        from kernelpilot.kernelize.kernel import encode_slot
        from kernelpilot.models.format import Model
        st = _stamp(self.path)
        if st == self.stamp:
            return None
        self.stamp = st
        try:
            if st is None:
                raise KpError(f"{self.path}: no such model file")
            m = Model.load(self.path)
            self._fits(m)
            slot = encode_slot(m)  # the map interpreter's limits (trees and forests)
        except KpError as e:
            self.kept += 1
            return {"event": "kept", "path": str(self.path), "why": str(e)}
        old = self.dep.model
        self.dep.swap(m, _slot=slot)
        r = parity(m, self.dep.predict, n=self.check_rows)
        if r["rate"] != 1.0:  # the kernel does not answer like the file: back to the old model
            self.dep.swap(old)
            self.kept += 1
            return {"event": "kept", "path": str(self.path), "why": f"in-kernel parity {r['rate']:.3f} after the swap"}
        self.swaps += 1
        return {"event": "swapped", "path": str(self.path), "slot": self.dep.active, "kind": m.kind,
                "parity": r["rate"], "checked_rows": r["n"]}

    def close(self) -> None:
        self.dep.close()


def watch(path: Path, interval: float, duration: float | None, json_out: bool, stop=None) -> dict:
    if interval <= 0:
        raise KpError("--interval must be positive")
    w = ModelWatch(path)
    say = (lambda d: print(json.dumps(d), flush=True)) if json_out else _say
    say({"event": "deployed", "path": str(path), "kind": w.dep.model.kind, "slot": w.dep.active, "in": w.where})
    end = None if duration is None else time.monotonic() + duration
    try:
        while (end is None or time.monotonic() < end) and not (stop and stop()):
            ev = w.poll()
            if ev:
                say(ev)
            time.sleep(interval if end is None else max(0.0, min(interval, end - time.monotonic())))
        return {"swaps": w.swaps, "kept": w.kept}
    finally:
        w.close()


def _say(d: dict) -> None:
    if d["event"] == "kept":
        print(f"kept the old model: {d['why']}", file=sys.stderr, flush=True)
    elif d["event"] == "swapped":
        print(f"swapped in {d['path']} (slot {d['slot']}, in-kernel parity {d['parity']:.3f} on "
              f"{d['checked_rows']} rows)", flush=True)
    else:
        print(f"deployed {d['path']} ({d['kind']}) in {d['in']}; watching for changes", flush=True)
