"""Model files, sklearn/MLP import, quantization and the integer reference predictor."""
import json

import numpy as np
import pytest
from sklearn import ensemble, neural_network, tree

from kernelpilot.errors import KpError
from kernelpilot.models import Model, demo, from_mlp, from_sklearn, from_torch, ngram_from_sequences

X, Y = demo.make_data(4000, seed=5)
NAMES = demo.NAMES


@pytest.mark.parametrize("est", [
    tree.DecisionTreeClassifier(max_depth=6, random_state=0),
    tree.DecisionTreeRegressor(max_depth=5, random_state=0),
    ensemble.RandomForestClassifier(n_estimators=8, max_depth=5, random_state=0),
    ensemble.RandomForestRegressor(n_estimators=6, max_depth=4, random_state=0),
    ensemble.GradientBoostingClassifier(n_estimators=10, max_depth=3, random_state=0),
    ensemble.GradientBoostingRegressor(n_estimators=10, max_depth=3, random_state=0),
])
def test_float_import_matches_sklearn(est):
    y = Y if hasattr(est, "classes_") or "Classifier" in type(est).__name__ else X[:, 0] * 0.3 + X[:, 9]
    est.fit(X, y)
    m = from_sklearn(est, NAMES, X, y)
    f = m.predict_float(X)
    if m.meta["output"] == "score":
        assert np.allclose(f, est.predict(X), atol=1e-9)
        scale = m.meta["quant"]["score_scale"]
        err = np.abs(m.predict_int(m.to_int(X)) / scale - f)
        assert np.mean(err > 1e-3) < 0.01  # only rows sitting on a quantized threshold move
    else:
        assert np.array_equal(np.asarray(m.meta["classes"])[f], est.predict(X))
        rep = m.meta["quant"]["report"]
        assert rep["agreement"] > 0.99 and abs(rep["accuracy_loss"]) < 0.01


def test_integer_features_lose_nothing():
    est = tree.DecisionTreeClassifier(max_depth=8, random_state=0).fit(X[:, :8], Y)
    m = from_sklearn(est, NAMES[:8], X[:, :8], Y)
    assert m.meta["quant"]["feature_shift"] == [0] * 8
    assert m.meta["quant"]["report"]["agreement"] == 1.0


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_save_load_roundtrip(tmp_path, suffix):
    m, Xd, _ = demo.train("forest", n=2000, trees=4)
    p = m.save(tmp_path / f"m{suffix}")
    m2 = Model.load(p)
    xi = m.to_int(Xd)
    assert np.array_equal(m2.predict_int(xi), m.predict_int(xi))
    assert m2.meta["train_summary"]["n"] == 2000 and m2.feature_names == NAMES
    if suffix == ".json":
        d = json.loads(p.read_text())
        assert d["format"] == "kernelpilot-model" and "q_threshold" in d["params"]


def test_mlp_quantized_close_to_float():
    m, Xd, yd = demo.train("mlp", n=4000)
    rep = m.meta["quant"]["report"]
    assert rep["agreement"] > 0.97 and rep["accuracy_loss"] < 0.02
    assert m.params["q_W0"].dtype == np.int8 and m.params["q_b0"].dtype == np.int32
    assert m.meta["shape"] == [16, 8, 1]


def test_mlp_16bit_and_torch_state_dict():
    rng = np.random.default_rng(0)
    W1, b1, W2, b2 = rng.normal(size=(8, 4)), rng.normal(size=4), rng.normal(size=(4, 1)), rng.normal(size=1)
    state = {"0.weight": W1.T, "0.bias": b1, "2.weight": W2.T, "2.bias": b2}
    m = from_torch(state, [f"f{i}" for i in range(8)], task="regress")
    Xs = rng.normal(size=(3000, 8))
    rep = m.quantize(Xs, bits=16)
    assert m.params["q_W0"].dtype == np.int16
    ref = np.maximum(Xs @ W1 + b1, 0) @ W2 + b2
    assert np.allclose(m.predict_float(Xs), ref[:, 0])
    assert rep["mean_abs_error"] < 0.05 * np.abs(ref).mean()


def test_sklearn_mlp_import():
    est = neural_network.MLPClassifier(hidden_layer_sizes=(6,), max_iter=200, random_state=0)
    Z = (X - X.mean(0)) / X.std(0)
    est.fit(Z, Y)
    m = from_sklearn(est, NAMES, Z, Y)
    assert np.array_equal(np.asarray(m.meta["classes"])[m.predict_float(Z)], est.predict(Z))


@pytest.mark.parametrize("bad, msg", [
    (lambda: from_sklearn(tree.DecisionTreeClassifier(), NAMES), "not fitted"),
    (lambda: from_sklearn(tree.DecisionTreeClassifier().fit(X, Y), NAMES[:3]), "names were given"),
    (lambda: from_sklearn(ensemble.RandomForestClassifier(n_estimators=2).fit(X, Y % 3 + (X[:, 0] > 5)),
                          NAMES), "classes is not supported"),
    (lambda: from_sklearn(ensemble.HistGradientBoostingClassifier(max_iter=2).fit(X, Y), NAMES),
     "unsupported model type"),
    (lambda: from_mlp([(np.ones((3, 2)), np.ones(2))], NAMES), "do not follow"),
    (lambda: from_mlp([(np.ones((16, 2)), np.ones(2))], NAMES), "one output unit"),
    (lambda: Model("svm", NAMES), "unknown model kind"),
])
def test_bad_inputs_are_one_clear_error(bad, msg):
    with pytest.raises(KpError, match=msg):
        bad()


def test_bad_files(tmp_path):
    (tmp_path / "x.json").write_text("{not json")
    (tmp_path / "y.json").write_text('{"format": "other"}')
    (tmp_path / "z.pkl").write_text("")
    with pytest.raises(KpError, match="cannot read"):
        Model.load(tmp_path / "x.json")
    with pytest.raises(KpError, match="not a kernelpilot model"):
        Model.load(tmp_path / "y.json")
    with pytest.raises(KpError, match="end in .json or .npz"):
        demo.train("tree", n=500)[0].save(tmp_path / "z.pkl")


def test_ngram_container(tmp_path):
    normal = [[0, 1, 2, 3, 0, 1, 2, 3], [1, 2, 3, 0, 1]]
    m = ngram_from_sequences(normal, 3, ["open", "read", "write", "close"], threshold=0)
    W = np.array([[0, 1, 2, 3, 0], [3, 2, 1, 0, 3]])
    assert m.predict_int(W).tolist() == [0, 1]
    m2 = Model.load(m.save(tmp_path / "ng.json"))
    assert m2.predict_int(W).tolist() == [0, 1]
