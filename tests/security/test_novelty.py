"""The variable-order stide (novelty): longest seen context per call, and what it sees that a
fixed 6-gram table cannot (a loop run longer than any training trace ran it)."""
import json

import numpy as np
import pytest

from kernelpilot.errors import KpError
from kernelpilot.security.features import Trace, Vocabulary
from kernelpilot.security.model import SecurityModel
from kernelpilot.security.sequence import Mismatch, Novelty


def _vocab():
    return Vocabulary(["read", "write", "open", "close", "execve"])


def test_context_is_the_longest_seen_gram_ending_at_each_call():
    v = _vocab()
    det = Novelty(v).fit([v.encode(["open"] + ["read", "write"] * 10 + ["close"])])
    seq = v.encode(["open"] + ["read", "write"] * 10 + ["close", "execve"])
    m = det.context(seq)
    # every call of the training trace, from its start, has its whole (start-padded) context seen
    assert list(m[:22]) == [32] * 22
    assert m[22] == 0  # execve never seen
    pos = det.position_scores(seq)
    assert pos[:22].max() == 0.0 and pos[22] == 1.0
    assert det.trace_score(v.encode(["open"] + ["read", "write"] * 10 + ["close"])) == 0.0


def test_a_loop_run_longer_than_in_training_is_novel_where_6_grams_are_not():
    v = _vocab()
    train = [v.encode(["open"] + ["read", "write"] * 8 + ["close"])]
    longer = v.encode(["open"] + ["read", "write"] * 30 + ["close"])
    nov, mm = Novelty(v).fit(train), Mismatch(v, n=6).fit(train)
    assert mm.trace_score(longer) == 0.0  # every 6-gram of it is in training
    m = nov.context(longer)
    # close after 60 reads and writes: its longest seen context is the 16 calls + close training had
    assert m[-1] == 16 and nov.trace_score(longer) > 0.0
    assert 0.0 < nov.position_scores(longer)[-1] < 1.0  # a long context was seen: far below an unseen call


def test_novelty_round_trips_in_a_model_and_refuses_other_context_lengths(tmp_path):
    traces = [Trace(f"n{i}", ["open", "read", "write", "close"] * (5 + i), comm="cat") for i in range(6)]
    m = SecurityModel.train(traces, ("novelty",), calibrate=0.3)
    m.save(tmp_path / "m.json")
    again = SecurityModel.load(tmp_path / "m.json")
    seq = m.vocab.encode(["open", "read", "execve", "close"] * 10)
    assert np.allclose(again.detectors["novelty"].window_scores(seq), m.detectors["novelty"].window_scores(seq))
    p = json.loads(json.dumps(m.detectors["novelty"].params()))
    p["ks"] = [1, 2, 3]
    with pytest.raises(KpError, match="context lengths"):
        Novelty(m.vocab).load(p)
    with pytest.raises(KpError, match="not trained"):
        Novelty(m.vocab).context(seq)
    with pytest.raises(KpError, match="profile is empty"):
        Novelty(m.vocab).fit([])


def test_a_corrupt_novelty_model_is_a_one_line_error(tmp_path):
    from sec_common import kpilot
    traces = [Trace(f"n{i}", ["open", "read", "write", "close"] * (5 + i), comm="cat") for i in range(6)]
    p = tmp_path / "m.json"
    SecurityModel.train(traces, ("novelty",), calibrate=0.3).save(p)
    doc = json.loads(p.read_text())
    for change, msg in ((lambda d: d.update(ks=[1, 2]), "context lengths"),
                        (lambda d: d["tables"]["6"].append(-1), "corrupt")):
        bad = json.loads(json.dumps(doc))
        change(bad["detectors"]["novelty"])
        p.write_text(json.dumps(bad))
        r = kpilot("security", "eval", "--model", p, "--data", tmp_path)
        assert r.returncode != 0 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
