"""The next-call language model and the mismatch rate on a tiny fixture."""
import numpy as np
import pytest

from kernelpilot.errors import KpError
from kernelpilot.security.features import Trace, Vocabulary
from kernelpilot.security.model import SecurityModel
from kernelpilot.security.sequence import LM, Mismatch, moving_mean

CYCLE = ["openat", "read", "write", "close", "mmap", "munmap"]


def fixture():
    rng = np.random.default_rng(0)
    traces = [Trace(f"n{i}", CYCLE * int(rng.integers(20, 60))) for i in range(12)]
    vocab = Vocabulary.from_traces(traces + [Trace("x", ["execve", "socket", "connect", "dup2"])])
    return traces, vocab


@pytest.fixture(scope="module")
def lm():
    traces, vocab = fixture()
    return LM(vocab, dim=8, hidden=16, steps=150).fit([vocab.encode(t.calls) for t in traces]), vocab


def test_lm_learns_the_cycle_and_numpy_matches_torch(lm):
    import torch

    from kernelpilot.security.sequence import _TorchGRU
    det, vocab = lm
    normal = vocab.encode(CYCLE * 50)
    odd = vocab.encode(CYCLE * 20 + ["execve", "socket", "dup2", "dup2", "connect"] * 4 + CYCLE * 20)
    assert det.trace_score(normal) < 0.5 < det.trace_score(odd)
    s = det.scored(odd)
    assert s.stream.argmax() >= 120 and len(s.ends) == len(odd)
    # the numpy GRU, run in segments with warm-up, equals torch's over the whole trace away from cuts
    net = _TorchGRU(len(vocab) + 1, len(vocab), det.dim, det.hidden)
    net.load_state_dict({k: torch.tensor(v) for k, v in det.w.items()})
    seq = vocab.encode(CYCLE * 40)
    x = torch.tensor(np.r_[len(vocab), seq[:-1]][None])
    ref = -torch.log_softmax(net(x)[0], -1)[torch.arange(len(seq)), torch.tensor(seq)].detach().numpy()
    got = det.nll_many([seq, seq[:10]])
    assert np.allclose(got[0][:det.SEG], ref[:det.SEG], atol=1e-4)
    assert np.allclose(got[1], ref[:10], atol=1e-4)
    assert np.abs(got[0] - ref).max() < 0.05  # past a cut, 32 calls of warm-up recover the state


def test_mismatch_whole_trace_and_frame():
    traces, vocab = fixture()
    m = Mismatch(vocab, n=3, frame=4).fit([vocab.encode(t.calls) for t in traces])
    assert m.trace_score(vocab.encode(CYCLE * 5)) == 0.0
    odd = vocab.encode(CYCLE * 2 + ["execve"] + CYCLE * 2)
    s = m.scored(odd)
    assert s.score == pytest.approx(3 / len(odd))       # the three grams that hold execve
    assert s.stream.max() == 0.75 and s.stream[-1] == 0.0  # at most 3 of the frame of 4
    short = vocab.encode(["read"])  # start-padded: a 1-call trace has a gram, unseen at a start
    assert m.trace_score(short) == 1.0
    assert np.allclose(moving_mean(np.array([1.0, 0, 1, 1]), 2), [1, 0.5, 0.5, 1])


def test_lm_and_mismatch_save_load_and_other_vocabulary(tmp_path):
    traces, _ = fixture()
    m = SecurityModel.train(traces, ("mismatch",), calibrate=0.25)
    m.detectors["lm"] = LM(m.vocab, dim=8, hidden=16, steps=20).fit([m.vocab.encode(t.calls) for t in traces])
    seq = m.vocab.encode(CYCLE * 10 + ["read"] * 9)
    m.save(tmp_path / "m.json")
    back = SecurityModel.load(tmp_path / "m.json")
    for k in ("mismatch", "lm"):
        assert np.allclose(back.detectors[k].window_scores(seq), m.detectors[k].window_scores(seq), atol=1e-4)
    other = LM(Vocabulary(["read", "write"]))
    with pytest.raises(KpError, match="does not match the model's vocabulary"):
        other.load(m.detectors["lm"].params())
    with pytest.raises(KpError, match="profile is empty"):
        Mismatch(m.vocab).fit([np.zeros(0, np.int32)])


def test_adfa_layout_commands_take_the_new_detectors(corpus, tmp_path):
    import json

    from sec_common import kpilot
    out = tmp_path / "m.json"
    r = kpilot("security", "train", "--normal", corpus[0], "-o", out, "--detectors", "mismatch,stide")
    assert r.returncode == 0, r.stderr
    r = kpilot("security", "eval", "--model", out, "--data", corpus[0], "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)["summary"]
    assert set(s) == {"mismatch", "stide"} and s["mismatch"]["trace_auc"] > 0.5
