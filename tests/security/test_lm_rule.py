"""The lm's trace and stream rules (lmrule) and their choice on dev cells only."""
import json

import numpy as np
import pytest

from kernelpilot.errors import KpError
from kernelpilot.security import lmrule as R
from kernelpilot.security.sequence import LM
from test_lm import CYCLE, fixture


def test_window_rule_scores_the_worst_window_and_streams_it():
    nll = np.r_[np.zeros(100), np.full(8, 4.0), np.zeros(100)]
    assert R.trace_score(nll, "mean", {}) == pytest.approx(32 / 208)
    assert R.trace_score(nll, "win:8", {}) == pytest.approx(4.0)
    assert R.trace_score(nll, "win:16", {}) == pytest.approx(2.0)
    ends, s = R.stream(nll, "win:8", {}, 32)
    assert ends[0] == 8 and ends[-1] == 208 and s.max() == pytest.approx(4.0) and ends[s.argmax()] == 108
    ends, s = R.stream(nll[:5], "win:8", {}, 32)  # shorter than the window: its mean, once, at its end
    assert list(ends) == [5] and s[0] == pytest.approx(nll[:5].mean())
    assert R.trace_score(nll, "share:0.99", {"0.99": 1.0}) == pytest.approx(8 / 208)
    with pytest.raises(KpError, match="no training cut"):
        R.trace_score(nll, "share:0.999", {})
    with pytest.raises(KpError, match="not one of"):
        R.check("max")


def _cells(novel_nll):
    rng = np.random.default_rng(0)
    normal = [R.Calls(rng.exponential(0.3, 4000), {"0.99": 1.4, "0.999": 2.1}) for _ in range(300)]
    return [("a:whole", normal, [R.Calls(x, normal[0].cuts) for x in novel_nll])]


def test_choose_takes_a_window_for_bursts_and_keeps_the_mean_without_a_gain():
    rng = np.random.default_rng(1)
    burst = [np.r_[rng.exponential(0.3, 2000), np.full(12, 3.0), rng.exponential(0.3, 2000)] for _ in range(60)]
    c = R.choose(_cells(burst))
    assert c["rule"].startswith("win:") and c["dev"][c["rule"]]["j"] >= c["dev"]["mean"]["j"] + 0.01
    assert set(c["dev"]) == set(R.GRID)
    shifted = [rng.exponential(0.3, 4000) + 1.0 for _ in range(60)]  # every rule separates these: no gain
    assert R.choose(_cells(shifted))["rule"] == "mean"
    assert R.choose([])["rule"] == "mean"


def test_lm_fit_sets_cuts_and_the_rule_round_trips():
    traces, vocab = fixture()
    det = LM(vocab, dim=8, hidden=16, steps=40, rule="win:16").fit([vocab.encode(t.calls) for t in traces])
    assert set(det.cuts) == {"0.99", "0.999"} and det.cuts["0.99"] <= det.cuts["0.999"]
    odd = vocab.encode(CYCLE * 30 + ["execve", "socket", "dup2", "connect"] * 3 + CYCLE * 30)
    nll = det.nll_many([odd])[0]
    s = det.scored(odd)
    assert s.score == pytest.approx(R.trace_score(nll, "win:16", det.cuts)) == pytest.approx(s.stream.max())
    assert det.trace_score(odd) == pytest.approx(s.score)
    back = LM(vocab).load(json.loads(json.dumps(det.params())))
    assert back.rule == "win:16" and back.cuts == pytest.approx(det.cuts)
    old = det.params()
    del old["rule"], old["cuts"]  # a model saved before rules scores by the mean, as it did
    assert LM(vocab).load(old).scored(odd).score == pytest.approx(float(nll.mean()), abs=1e-5)


def test_eval_chooses_the_lm_rule_on_the_dev_cells(tmp_path, monkeypatch):
    from kernelpilot.security import devsets
    from test_datasets import _fhids_files, _tar
    files = _fhids_files()
    for i in range(20):  # a third service: the dev folds have novel traces
        files[f"FHIDS/normal/Git/{i}.txt"] = " ".join(["open", "mmap", "read", "close"] * (4 + i % 3))
    p = _tar(tmp_path / "f.tar.xz", files)
    opts = devsets._options
    monkeypatch.setattr(devsets, "_options", lambda k, q: {"steps": 30, "dim": 8, "hidden": 16} if k == "lm" else opts(k, q))
    out = devsets.run("fhids", p, kinds=("mismatch", "lm", "fused"))
    ch = out["lm_rule"]
    assert ch["rule"] in R.GRID and set(ch["dev"]) == set(R.GRID) and ch["cells"]
    assert all(k.endswith((":whole", ":spliced")) for k in ch["cells"])
