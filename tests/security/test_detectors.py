import json

import numpy as np
import pytest

from kernelpilot.errors import KpError
from kernelpilot.security.evaluate import evaluate
from kernelpilot.security.features import Trace, Vocabulary, window_bounds, window_means
from kernelpilot.security.model import SecurityModel
from kernelpilot.traces.importers.adfa import load_adfa


def test_windows():
    assert list(window_bounds(10, 32, 8)) == [10]
    assert list(window_bounds(50, 32, 8)) == [32, 40, 48, 50]
    w = window_means(np.r_[np.zeros(40), np.ones(10)], 32, 8)
    assert w[0] == 0 and w[-1] == pytest.approx(10 / 32)


def test_vocabulary_mismatch():
    v = Vocabulary(["read", "write", "open"])
    with pytest.raises(KpError, match="another vocabulary"):
        v.check_compatible([Trace("x", ["socketcall", "mmap", "brk", "read"])])
    with pytest.raises(KpError, match="another vocabulary"):
        Vocabulary.from_json(["3", "4", "5"])  # numbers, not names


@pytest.fixture(scope="module")
def trained(corpus):
    root, info = corpus
    d = load_adfa(root)
    for t in d["attack"]:
        t.attack_start = info["attack_start"][t.name]
    return SecurityModel.train(d["train"], calibrate=0.2, cnn_epochs=2), d


def test_detectors_separate_attacks(trained):
    m, d = trained
    res = evaluate(m, d["valid"], d["attack"])
    assert set(res) == {"stide", "freq", "tree", "cnn"}
    for k in ("stide", "tree"):
        assert res[k]["trace"]["auc"] > 0.8, (k, res[k]["trace"])
    # the payload raises stide's mismatch rate well above normal windows
    assert res["stide"]["latency"]["detected_share"] > 0.5
    assert set(res["tree"]["families"]) == {"Adduser", "Hydra_FTP", "Hydra_SSH", "Java_Meterpreter",
                                            "Meterpreter", "Web_Shell"}
    assert all(k in m.thresholds for k in m.detectors)


def test_injected_sequence_scores_higher(trained):
    m, d = trained
    normal = m.vocab.encode(d["valid"][0].calls)
    weird = m.vocab.encode(d["valid"][0].calls[:20] + ["setuid", "dup2", "dup2", "execve"] * 8)
    for k, det in m.detectors.items():
        assert det.trace_score(weird) > det.trace_score(normal), k


def test_save_load_roundtrip(trained, tmp_path):
    m, d = trained
    p = tmp_path / "m.json"
    m.save(p)
    m2 = SecurityModel.load(p)
    seq = m.vocab.encode(d["attack"][0].calls)
    for k in m.detectors:
        assert np.allclose(m.detectors[k].window_scores(seq), m2.detectors[k].window_scores(seq), atol=1e-4), k
    doc = json.loads(p.read_text())
    tree = doc["detectors"]["tree"]
    assert tree["kernelizable"] is True
    assert tree["model"]["format"] == "kernelpilot-model" and tree["model"]["meta"]["depth"] <= 8


def test_bad_model_files(tmp_path):
    p = tmp_path / "m.json"
    p.write_text("not json")
    with pytest.raises(KpError, match="not JSON"):
        SecurityModel.load(p)
    p.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(KpError, match="not a kernelpilot security model"):
        SecurityModel.load(p)
    p.write_text(json.dumps({"format": "kernelpilot.security.model", "version": 2, "window": 32,
                             "stride": 8, "vocabulary": ["read"], "detectors": {"x": {"kind": "freq"}}}))
    with pytest.raises(KpError, match="incomplete or corrupt"):
        SecurityModel.load(p)
