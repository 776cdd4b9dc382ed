"""`kpilot kernelize` and `kpilot models` through the real CLI, including each bad input."""
import json

import pytest

from kernelpilot.models import ngram_from_sequences


@pytest.fixture(scope="module")
def tree_file(tmp_path_factory, models):
    p = tmp_path_factory.mktemp("m") / "tree.json"
    models["tree"].save(p)
    return p


def test_check_json(kpilot, tree_file, bpf_ok):
    r = kpilot("kernelize", tree_file, "--check", "--json", "--n", "20000")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["ok"] and set(rep["targets"]) == {"bpf-map", "bpf-code", "c"}
    code = rep["targets"]["bpf-code"]
    assert code["verifier"] == "accepted" and code["parity"]["agree"] == 20000
    assert code["xlated_insns"] > 0 and code["ns_per_inference"]["ns_harness"] > 0


@pytest.mark.parametrize("target, suffix", [("c", ".c"), ("bpf-code", ".o"), ("bpf-map", ".slot")])
def test_write_targets(kpilot, tree_file, tmp_path, target, suffix, bpf_ok):
    out = tmp_path / f"out{suffix}"
    r = kpilot("kernelize", tree_file, "--target", target, "-o", out)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 0
    if target == "bpf-code":
        assert out.read_bytes()[:4] == b"\x7fELF"


def test_models_info_and_demo(kpilot, tmp_path):
    out = tmp_path / "g.npz"
    r = kpilot("models", "demo", "gbm", "-o", out, "--n", "2000")
    assert r.returncode == 0, r.stderr
    info = json.loads(kpilot("models", "info", out, "--json").stdout)
    assert info["kind"] == "forest" and info["quant"]["value_shift"] > 0


def test_bad_inputs(kpilot, tree_file, tmp_path):
    ng = tmp_path / "ng.json"
    ngram_from_sequences([[0, 1, 2]], 2, ["a", "b", "c"]).save(ng)
    cases = [
        (("kernelize", tmp_path / "missing.json", "--check"), "no such model file"),
        (("kernelize", tree_file, "--target", "wasm", "-o", tmp_path / "x"), "unknown target"),
        (("kernelize", tree_file), "give -o OUT"),
        (("kernelize", tree_file, "-o", tmp_path / "x"), "-o needs --target"),
        (("kernelize", tree_file, "--check", "--n", "0"), "--n must be at least 1"),
        (("kernelize", ng, "--target", "c", "-o", tmp_path / "x.c"), "unsupported model type 'ngram'"),
        (("models", "demo", "svm", "-o", tmp_path / "s.json"), "unknown demo model"),
        (("models", "info", tmp_path / "missing.json"), "no such model file"),
    ]
    for args, msg in cases:
        r = kpilot(*args)
        assert r.returncode != 0, args
        assert msg in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
