import json

from sec_common import kpilot


def test_train_eval_json(corpus, model_file):
    r = kpilot("security", "eval", "--model", model_file, "--data", corpus[0], "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out["summary"]) == {"stide", "freq", "tree", "cnn"}
    assert out["n_attack"] == 36 and out["n_normal"] == 150
    assert out["summary"]["stide"]["trace_auc"] > 0.8


def _err(r, msg):
    assert r.returncode != 0
    assert msg in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_bad_inputs(tmp_path, model_file, corpus):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    _err(kpilot("security", "train", "--normal", empty, "-o", tmp_path / "m.json"), "is empty")
    binf = tmp_path / "bin.txt"
    binf.write_bytes(bytes(range(256)) * 4)
    _err(kpilot("security", "train", "--normal", binf, "-o", tmp_path / "m.json"), "binary")
    unk = tmp_path / "unk.txt"
    unk.write_text("3 4 5 7777")
    _err(kpilot("security", "train", "--normal", unk, "-o", tmp_path / "m.json"), "unknown i386 syscall number 7777")
    _err(kpilot("security", "train", "--normal", tmp_path / "nope", "-o", tmp_path / "m.json"), "no such file")
    _err(kpilot("security", "train", "--normal", corpus[0], "-o", tmp_path / "m.json", "--detectors", "magic"),
         "unknown detector magic")
    _err(kpilot("security", "eval", "--model", empty, "--data", corpus[0]), "not JSON")
    _err(kpilot("security", "eval", "--model", model_file, "--data", tmp_path), "neither an ADFA-LD layout")


def test_model_from_another_vocabulary(tmp_path, corpus, model_file):
    # the same corpus read as x86-64 numbers is mostly other syscalls
    r = kpilot("security", "eval", "--model", model_file, "--data", corpus[0], "--abi", "x86_64")
    assert r.returncode != 0
    assert ("another vocabulary" in r.stderr or "unknown x86_64 syscall" in r.stderr), r.stderr
    doc = json.loads(model_file.read_text())
    doc["vocabulary"] = [str(i) for i in range(len(doc["vocabulary"]))]
    other = tmp_path / "other.json"
    other.write_text(json.dumps(doc))
    _err(kpilot("security", "eval", "--model", other, "--data", corpus[0]), "another vocabulary")
