"""Portable fixed-point C compiled by gcc (freestanding, no libc) is bit-exact with numpy."""
import re
import subprocess

import numpy as np
import pytest

from kernelpilot.errors import KpError
from kernelpilot.kernelize.emit import emit_c
from kernelpilot.kernelize.harness import parity, sample_vectors
from kernelpilot.kernelize.native import NativeModel


@pytest.mark.parametrize("kind", ["tree", "forest", "gbm", "mlp"])
def test_c_parity(models, kind, tmp_path):
    m = models[kind]
    r = parity(m, NativeModel(m, tmp_path).predict, n=50_000)
    assert r["rate"] == 1.0, r


@pytest.mark.parametrize("kind", ["tree", "mlp"])
def test_c_has_no_floats_or_libc(models, kind, tmp_path):
    src = emit_c(models[kind])
    assert not re.search(r"\b(float|double|#include)\b", src.split("#else")[1])
    so = NativeModel(models[kind], tmp_path).so
    undefined = subprocess.run(["nm", "-u", str(so)], capture_output=True, text=True).stdout
    assert undefined.strip() == ""


def test_mlp_saturates_like_numpy(models, tmp_path):
    m = models["mlp"]
    X = np.array([[2**31 - 1] * 16, [-2**31] * 16, [0] * 16], dtype=np.int32)
    assert NativeModel(m, tmp_path).predict(X).tolist() == m.predict_int(X).tolist()


def test_vectors_hit_both_sides_of_thresholds(models):
    m = models["tree"]
    X = sample_vectors(m, 20000)
    leaves = set(np.unique(m.predict_int(X)).tolist())
    assert leaves == {0, 1}


def test_emit_rejects_bad_prefix_and_target(models):
    with pytest.raises(KpError, match="not a C identifier"):
        emit_c(models["tree"], prefix="1x")
    with pytest.raises(KpError, match="unknown C target"):
        emit_c(models["tree"], target="wasm")


def test_native_model_leaves_no_temp_dir(models, tmp_path, monkeypatch):
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    m = models["tree"]
    X = sample_vectors(m, 100)
    assert NativeModel(m).predict(X).tolist() == m.predict_int(X).tolist()
    assert list(tmp_path.iterdir()) == []
