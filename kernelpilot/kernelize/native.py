"""The portable C built for user space: gcc -ffreestanding -nostdlib into a shared object, called
through ctypes (one call per inference, crossing included) and the parity check against numpy."""
from __future__ import annotations

import contextlib
import ctypes as C
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from kernelpilot.errors import CapabilityError, KpError
from kernelpilot.kernelize.emit import emit_c

GCC_FLAGS = ["-O2", "-std=c99", "-ffreestanding", "-nostdlib", "-fPIC", "-shared",
             "-Wall", "-Wextra", "-Werror"]


def compile_c(model, workdir: Path) -> Path:
    """Compile the model's fixed-point C with gcc (no libc, warnings are errors) in workdir; returns the .so."""
    gcc = shutil.which("gcc")
    if not gcc:
        raise CapabilityError("gcc is not installed; apt-get install gcc")
    src = emit_c(model, target="c")
    d = Path(workdir)
    name = hashlib.sha256(src.encode()).hexdigest()[:12]
    c, so = d / f"kp_model_{name}.c", d / f"kp_model_{name}.so"
    c.write_text(src)
    res = subprocess.run([gcc, *GCC_FLAGS, "-o", str(so), str(c)], capture_output=True, text=True)
    if res.returncode != 0:
        raise KpError(f"gcc could not build the model's C: {res.stderr.strip().splitlines()[0]}",
                      detail=res.stderr)
    return so


class NativeModel:
    """The compiled C, loaded with ctypes. Without a workdir it is built in a temp dir that is
    removed once the library is loaded (`so` then names a path that is gone)."""

    def __init__(self, model, workdir: Path | None = None):
        where = tempfile.TemporaryDirectory(prefix="kp-c-") if workdir is None else contextlib.nullcontext(workdir)
        with where as d:
            self.so = compile_c(model, Path(d))
            self.lib = C.CDLL(str(self.so))
        self.fn = self.lib.kp_model_predict
        self.fn.restype, self.fn.argtypes = C.c_int32, [C.c_void_p]
        self.n = model.n_features

    def predict(self, Xint) -> np.ndarray:
        X = np.ascontiguousarray(np.atleast_2d(Xint), dtype=np.int32)
        base, stride, fn = X.ctypes.data, X.strides[0], self.fn
        return np.fromiter((fn(base + i * stride) for i in range(len(X))), dtype=np.int64, count=len(X))
