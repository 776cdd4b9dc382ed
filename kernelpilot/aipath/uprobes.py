"""Which user-space functions to probe: `LIB:SYM` specs, the library files they name, and each
symbol's file offset from the ELF symbol tables (pyelftools). A uprobe is set on a file, so a
library the program loads later (libcuda at CUDA's start) is covered once its path is known."""
from __future__ import annotations

import fnmatch
import glob
import os
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache

from kernelpilot.errors import KpError

# Where the byte count of a call is: (argument index from 1, optional second index multiplied in).
BYTES_ARG = {
    "malloc": (1, 0), "calloc": (1, 2), "realloc": (2, 0), "aligned_alloc": (2, 0), "posix_memalign": (3, 0),
    "memcpy": (3, 0), "memmove": (3, 0), "memset": (3, 0),
    "cuMemAlloc_v2": (2, 0), "cuMemAllocManaged": (2, 0), "cuMemAllocHost_v2": (2, 0), "cuMemAllocAsync": (2, 0),
    "cuMemcpy": (3, 0), "cuMemcpyAsync": (3, 0), "cuMemcpyHtoD_v2": (3, 0), "cuMemcpyDtoH_v2": (3, 0),
    "cuMemcpyDtoD_v2": (3, 0), "cuMemcpyHtoDAsync_v2": (3, 0), "cuMemcpyDtoHAsync_v2": (3, 0),
    "cuMemcpyDtoDAsync_v2": (3, 0), "cuMemcpyPeer": (5, 0), "cuMemcpyPeerAsync": (5, 0),
    "cudaMalloc": (2, 0), "cudaMallocHost": (2, 0), "cudaMemcpy": (3, 0), "cudaMemcpyAsync": (3, 0),
    "hipMalloc": (2, 0), "hipMemcpy": (3, 0), "hipMemcpyAsync": (3, 0),
}

# Probed when present (libraries not on this host are skipped without a word). libc's malloc/free
# are not in it: a PyTorch import makes ~1.4 M mallocs, and at this VM's ~50 us per probed call the
# 5-step demo went from 23 s to 172 s traced; ask for them with --uprobes libc.so.6:malloc,free.
DEFAULT_SPECS = (
    "libcuda.so:cuLaunchKernel,cuLaunchKernelEx,cuMemAlloc_v2,cuMemFree_v2,cuMemcpy*,"
    "cuStreamSynchronize,cuCtxSynchronize,cuEventSynchronize",
    "libcudart.so:cudaLaunchKernel,cudaMemcpy,cudaMemcpyAsync,cudaMalloc,cudaFree,cudaDeviceSynchronize,cudaStreamSynchronize",
    "libamdhip64.so:hipLaunchKernel,hipMemcpy,hipMemcpyAsync,hipMalloc,hipDeviceSynchronize",
    "libgomp.so:GOMP_parallel,GOMP_barrier",
)
MAX_PER_PATTERN = 32


@dataclass(frozen=True)
class Target:
    lib: str        # as asked (a name or a path)
    path: str       # the file probed
    symbol: str
    offset: int     # file offset of the function's first instruction
    bytes_arg: tuple = (0, 0)  # argument holding the byte count (from 1), times a second one (calloc)

    @property
    def label(self) -> str:
        return f"{os.path.basename(self.path)}:{self.symbol}"


def parse_specs(text: str) -> list[tuple[str, list[str]]]:
    """'libc.so.6:malloc,free;/x/libt.so:f/3' -> [(lib, [sym, ...]), ...]. A spec starts with LIB:;
    later comma-separated names without a colon belong to the last library. SYM/N says argument N
    is the call's byte count (SYM/NxM: N times M); known functions have theirs (BYTES_ARG)."""
    out: list[tuple[str, list[str]]] = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if ":" in part:
            lib, sym = part.rsplit(":", 1)
            if not lib or not sym:
                raise KpError(f"--uprobes: '{part}' is not LIB:SYMBOL")
            out.append((lib, [sym]))
        elif out:
            out[-1][1].append(part)
        else:
            raise KpError(f"--uprobes: '{part}' has no library (write LIB:SYMBOL)")
    for _, syms in out:
        for sym in syms:
            _bytes_spec(sym)
    return out


@lru_cache(maxsize=1)
def _ldconfig() -> list[str]:
    try:
        text = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    paths = []
    for line in text.splitlines():
        if "=>" in line and ("x86-64" in line or "64bit" in line):
            paths.append(line.split("=>", 1)[1].strip())
    return paths


def library_files(lib: str) -> list[str]:
    """Files a library name stands for: a path as given, else the linker cache (ldconfig -p),
    LD_LIBRARY_PATH, and the Python environment's wheels (torch/lib, nvidia/*/lib)."""
    if os.sep in lib:
        return [lib] if os.path.isfile(lib) else []
    base = os.path.basename(lib)
    found = [p for p in _ldconfig() if os.path.basename(p).startswith(base)]
    dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    for sp in {p for p in sys.path if p.endswith("site-packages")}:
        dirs += [os.path.join(sp, "torch", "lib"), *glob.glob(os.path.join(sp, "nvidia", "*", "lib"))]
    for d in dirs:
        found += glob.glob(os.path.join(d, base + "*"))
    out, seen = [], set()
    for p in found:
        real = os.path.realpath(p)
        if os.path.isfile(real) and real not in seen and ".so" in os.path.basename(real):
            seen.add(real)
            out.append(real)
    return out


@lru_cache(maxsize=64)
def elf_functions(path: str) -> tuple[dict[str, tuple[int, bool]], bool]:
    """{name: (file offset, is_ifunc)} of the functions a file defines, and whether it has a .symtab
    (False: stripped, only exported symbols are known)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    try:
        with open(path, "rb") as fh:
            elf = ELFFile(fh)
            loads = [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
            funcs: dict[str, tuple[int, bool]] = {}
            has_symtab = elf.get_section_by_name(".symtab") is not None
            versions = elf.get_section_by_name(".gnu.version")
            for name in (".dynsym", ".symtab"):
                sec = elf.get_section_by_name(name)
                if sec is None:
                    continue
                for i, sym in enumerate(sec.iter_symbols()):
                    kind = sym["st_info"]["type"]
                    if name == ".dynsym" and versions is not None:
                        ndx = versions.get_symbol(i).entry["ndx"]
                        if isinstance(ndx, int) and ndx & 0x8000:
                            continue  # an old version (name@VER), not the one programs bind to
                    if kind not in ("STT_FUNC", "STT_LOOS") or sym["st_shndx"] == "SHN_UNDEF" or not sym["st_value"]:
                        continue
                    nm = sym.name.split("@")[0]
                    if not nm or nm in funcs:
                        continue
                    v = sym["st_value"]
                    seg = next((s for s in loads if s["p_vaddr"] <= v < s["p_vaddr"] + s["p_memsz"]), None)
                    if seg is not None:
                        funcs[nm] = (v - seg["p_vaddr"] + seg["p_offset"], kind == "STT_LOOS")  # STT_LOOS = GNU_IFUNC
            return funcs, has_symtab
    except (OSError, ELFError) as e:
        raise KpError(f"{path} is not a readable ELF file: {e}") from None


def resolve(specs: list[tuple[str, list[str]]], quiet_missing: bool = False) -> tuple[list[Target], list[str]]:
    """Targets for specs, and one line per problem (a library not found, a symbol it lacks, a stripped
    file, an IFUNC). quiet_missing: say nothing of libraries that are not here (the default set)."""
    targets: list[Target] = []
    notes: list[str] = []
    for lib, syms in specs:
        files = library_files(lib)
        if not files:
            if not quiet_missing:
                notes.append(f"uprobes: library {lib} not found (give a path, or install it)")
            continue
        for path in files:
            try:
                funcs, has_symtab = elf_functions(path)
            except KpError as e:
                notes.append(f"uprobes: {e}")
                continue
            for want in syms:
                want, nbytes = _bytes_spec(want)
                names = sorted(n for n in funcs if fnmatch.fnmatchcase(n, want))[:MAX_PER_PATTERN] \
                    if any(c in want for c in "*?[") else ([want] if want in funcs else [])
                if not names:
                    if quiet_missing:
                        continue
                    why = "" if has_symtab else " (the file is stripped: only its exported symbols can be probed)"
                    notes.append(f"uprobes: {os.path.basename(path)} has no function {want}{why}")
                    continue
                for n in names:
                    off, ifunc = funcs[n]
                    if ifunc:
                        if not quiet_missing:
                            notes.append(f"uprobes: {os.path.basename(path)}:{n} is an IFUNC (its resolver runs "
                                         f"once at load; the chosen implementation is not named): skipped")
                        continue
                    targets.append(Target(lib, path, n, off, nbytes or BYTES_ARG.get(n, (0, 0))))
    seen, out = set(), []
    for t in targets:
        if (t.path, t.offset) not in seen:  # aliases (same code, two names) are probed once
            seen.add((t.path, t.offset))
            out.append(t)
    return out, notes


def _bytes_spec(sym: str) -> tuple[str, tuple | None]:
    if "/" not in sym:
        return sym, None
    name, _, arg = sym.partition("/")
    a, _, b = arg.partition("x")
    if not (a.isdigit() and 1 <= int(a) <= 5 and (not b or b.isdigit() and 1 <= int(b) <= 5)):
        raise KpError(f"--uprobes: '{sym}': the byte-count argument must be 1-5 (SYM/N or SYM/NxM)")
    return name, (int(a), int(b or 0))


def default_targets() -> tuple[list[Target], list[str]]:
    return resolve(parse_specs(",".join(DEFAULT_SPECS)), quiet_missing=True)


def cookie_of(index: int, target: Target) -> int:
    a, b = target.bytes_arg
    return index | (a << 16) | (b << 24)
