"""The model validator on the hostile files of issue 16: hand-altered copies of a demo tree through
`kpilot kernelize FILE -t bpf-map|bpf-code|c [--check]`: each is one `KpError` line naming the
file, the field and the first bad element, with nothing written."""
import json
import math

import pytest
from typer.testing import CliRunner

from kernelpilot.cli import app
from kernelpilot.errors import KpError
from kernelpilot.fuzz.targets import corpus_seeds
from kernelpilot.models.format import Model


def _tree():
    return json.loads(corpus_seeds("model-tree")[0][1])


def _left(v):
    def f(d):
        d["params"]["left"]["data"][0] = v
    return f


def _cycle(d):
    d["params"]["left"]["data"][0] = d["params"]["right"]["data"][0] = 0


def _nan(d):
    d["params"]["threshold"]["data"][0] = math.nan


def _q_nan(d):
    d["params"]["q_threshold"]["dtype"] = "float64"
    d["params"]["q_threshold"]["data"][0] = math.nan


HOSTILE = {  # name -> (edit, expected message part)
    "child-1e6": (_left(1_000_000), "params.left[0]: child index 1000000 is outside tree 0"),
    "cycle": (_cycle, "params.roots[0]: node 0 is a root and also a child"),
    "child-7": (_left(-7), "params.left[0]: child index -7 is outside tree 0"),
    "nan-threshold": (_nan, "params.threshold[0]: nan is not finite"),
    "float-q-threshold": (_q_nan, "params.q_threshold: dtype float64 is not integer"),
    "feature-999": (lambda d: d["params"]["feature"]["data"].__setitem__(0, 999), "params.feature[0]: 999 is outside"),
    "shape-1e9": (lambda d: d["params"]["value"].__setitem__("shape", [10**9]), "params.value.shape"),
    "depth-lies": (lambda d: d["meta"].__setitem__("depth", 2), "meta.depth: says 2, the trees are"),
    "shared-child": (lambda d: d["params"]["right"]["data"].__setitem__(0, d["params"]["left"]["data"][0]),
                     "parents"),
    "pickle-dtype": (lambda d: d["params"]["value"].__setitem__("dtype", "object"), "params.value.dtype"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("argv", [["-t", "bpf-map", "-o", "OUT"], ["-t", "bpf-code", "-o", "OUT"],
                                  ["-t", "c", "-o", "OUT"], ["-t", "bpf-code", "--check"]],
                         ids=["bpf-map", "bpf-code", "c", "check"])
def test_hostile_tree_files_are_one_line_errors(tmp_path, name, argv):
    edit, want = HOSTILE[name]
    d = _tree()
    edit(d)
    f = tmp_path / "m.json"
    f.write_text(json.dumps(d))
    out = tmp_path / "out.bin"
    r = CliRunner().invoke(app, ["kernelize", str(f), *[str(out) if a == "OUT" else a for a in argv]])
    assert isinstance(r.exception, KpError), (name, r.exception)
    msg = str(r.exception)
    assert "\n" not in msg and msg.startswith(f"{f}: ") and want in msg, msg
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_valid_files_of_every_kind_load():
    from kernelpilot.fuzz.targets import CORPUS
    kinds = set()
    for kind in ("model-tree", "model-forest", "model-gbm", "model-mlp", "model-mlp-npz", "model-ngram"):
        for path in sorted((CORPUS / kind).iterdir()):
            kinds.add(Model.load(path).kind)
    assert kinds == {"tree", "forest", "mlp", "ngram"}


def test_mlp_accumulator_that_overflows_int32_is_refused():
    d = json.loads(corpus_seeds("model-mlp")[0][1])
    d["params"]["q_b0"]["data"][0] = 2**31 - 1
    with pytest.raises(KpError, match=r"^mlp: params.q_W0: unit 0 can reach \d+, beyond an int32 accumulator"):
        Model.from_dict(d, "mlp")


def test_quantization_fields_are_required():
    d = _tree()
    del d["meta"]["quant"]["feature_shift"]
    with pytest.raises(KpError, match=r"^t: meta.quant.feature_shift: expected a list"):
        Model.from_dict(d, "t")
