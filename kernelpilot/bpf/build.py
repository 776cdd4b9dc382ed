"""Build BPF C into CO-RE objects with clang, against a vmlinux.h generated from this kernel's BTF.

Objects are cached by a hash of their sources and flags under kernelpilot/bpf/_build/ (or
$KPILOT_BUILD_DIR), so a changed model or program is rebuilt and an unchanged one is not."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from kernelpilot.errors import CapabilityError, KpError

BPF_DIR = Path(__file__).resolve().parent
BTF_PATH = Path(os.environ.get("KPILOT_BTF", "/sys/kernel/btf/vmlinux"))  # override: tests of a host without BTF


def build_dir() -> Path:
    d = Path(os.environ.get("KPILOT_BUILD_DIR", BPF_DIR / "_build"))
    try:
        d.mkdir(parents=True, exist_ok=True)
        if not os.access(d, os.W_OK):
            raise PermissionError
    except PermissionError:
        d = Path.home() / ".cache" / "kernelpilot" / "bpf"
        d.mkdir(parents=True, exist_ok=True)
    return d


def _tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if not path:
        raise CapabilityError(f"{name} is not installed; run `make run` as root or apt-get install {name}")
    return path


def vmlinux_h() -> Path:
    """vmlinux.h for this kernel, generated once per kernel build (keyed by the BTF's size and mtime)."""
    if not BTF_PATH.exists():
        raise CapabilityError("this kernel has no BTF (/sys/kernel/btf/vmlinux missing): CO-RE eBPF cannot be built")
    st = BTF_PATH.stat()
    out = build_dir() / f"btf-{os.uname().release}-{st.st_size}" / "vmlinux.h"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        res = subprocess.run([_tool("bpftool"), "btf", "dump", "file", str(BTF_PATH), "format", "c"],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise KpError(f"bpftool could not dump BTF: {res.stderr.strip().splitlines()[-1:]}")
        tmp = out.with_suffix(".tmp")
        tmp.write_text(res.stdout)
        tmp.rename(out)
    return out


def build_object(src: str | os.PathLike, includes: tuple = (), defines: dict | None = None,
                 name: str | None = None) -> Path:
    """Compile one .bpf.c file to a BPF object and return its path (cached)."""
    src = Path(src)
    if not src.exists():
        raise KpError(f"BPF source not found: {src}")
    vm = vmlinux_h()
    inc = [vm.parent, BPF_DIR, src.parent, *map(Path, includes)]
    flags = ["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86", "-Wno-unused-function",
             *[f"-D{k}={v}" for k, v in sorted((defines or {}).items())], *[f"-I{p}" for p in inc]]
    h = hashlib.sha256(" ".join(flags).encode() + src.read_bytes())
    for d in includes:
        for hdr in sorted(Path(d).glob("*.h")):
            h.update(hdr.read_bytes())
    for hdr in sorted(BPF_DIR.glob("*.h")):
        h.update(hdr.read_bytes())
    out = build_dir() / f"{name or src.name.removesuffix('.c')}-{h.hexdigest()[:12]}.o"
    if out.exists():
        return out
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    res = subprocess.run([_tool("clang"), *flags, "-c", str(src), "-o", str(tmp)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        tmp.unlink(missing_ok=True)
        first = next((ln for ln in res.stderr.splitlines() if "error" in ln), res.stderr.strip()[:300])
        raise KpError(f"clang could not build {src.name}: {first}", detail=res.stderr)
    tmp.rename(out)
    return out


def builtin_object(name: str = "kp_trace") -> Path:
    """The object of one of kernelpilot's own programs (kernelpilot/bpf/<name>.bpf.c)."""
    return build_object(BPF_DIR / f"{name}.bpf.c")


def build_all() -> list[Path]:
    return [build_object(p) for p in sorted(BPF_DIR.glob("*.bpf.c"))]
