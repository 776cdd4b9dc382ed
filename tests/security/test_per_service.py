"""Per-service calibration (kernelpilot.security.perservice): thresholds and n-gram models per
service, the rule for a service never calibrated, the dev split, and the CLI option."""
import json

import numpy as np

from sec_common import kpilot
from kernelpilot.security import perservice as P
from kernelpilot.security.features import Trace, Vocabulary
from test_datasets import _err, _fhids_files, _tar


def test_each_service_is_thresholded_on_its_own_normals():
    """A quiet service's attack sits under the host-wide threshold (set by a noisy service) and
    over its own; a service never calibrated is judged host-wide."""
    rng = np.random.default_rng(0)
    cal = np.r_[rng.uniform(0.0, 0.1, 500), rng.uniform(0.5, 0.6, 500)]
    groups = ["A"] * 500 + ["B"] * 500
    c = {"host": cal, "service": cal}
    t = {"host": np.array([0.3, 0.3, 0.7]), "service": np.array([0.3, 0.3, 0.7])}
    on = ["A", "Crypto", "Crypto"]
    assert list(P.judge("host", c, groups, t, on, 0.01)) == [False, False, True]
    assert list(P.judge("service_threshold", c, groups, t, on, 0.01)) == [True, False, True]
    assert list(P.judge("service_model", c, groups, t, on, 0.01)) == [True, False, True]
    assert list(P.judge("either", c, groups, t, on, 0.01)) == [True, False, True]
    for m in P.MODES:  # the budget: at most 1% of each service's calibration normals alarm
        a = P.judge(m, c, groups, c, groups, 0.01)
        assert a.mean() <= 0.01 and a[:500].mean() <= 0.01 + (m in ("host", "either"))


def test_either_keeps_the_overall_budget():
    rng = np.random.default_rng(1)
    host, svc = rng.normal(0, 1, 2000), rng.normal(0, 1, 2000)
    groups = list(np.repeat(["A", "B", "C", "D"], 500))
    q = P.either_quantile(host, svc, groups, 0.01)
    assert 0 < q < 0.01
    share = P.either_share(host, svc, groups, q)
    assert 0.008 <= share <= 0.01


def test_service_models_see_calls_unlike_their_own():
    v = Vocabulary(["read", "write", "open", "close"])
    a, b = v.encode(["read", "write"] * 20), v.encode(["open", "close"] * 20)
    models = P.fit_services("novelty", v, [a, a, b], ["A", "A", "B"])
    assert sorted(models) == ["A", "B"]
    assert models["A"].scored(b).score > 0.5 and models["B"].scored(b).score == 0.0
    fallback = ["host's", "host's"]
    out = P.service_scores(models, [b, b], ["A", "Crypto"], fallback)
    assert out[0].score > 0.5 and out[1] == "host's"  # no model for a service never trained: the host's score


def test_ceiling_counts_copies_of_the_own_services_training_traces():
    def tr(svc, calls, label="normal"):
        return Trace(name=svc, calls=calls, label=label, family=svc if label == "attack" else "normal",
                     meta={"service": svc})
    train = [tr("Nginx", ["read", "write"]), tr("SSH", ["open"])]
    attacks = [tr("SSH", ["read", "write"], "attack"), tr("Nginx", ["read", "write"], "attack"),
               tr("Cryptomining", ["open"], "attack"), tr("Cryptomining", ["close"], "attack")]
    # SSH's copy of an Nginx trace is novel to SSH's model; Cryptomining has no service: any service's copy counts
    assert P.ceiling(train, attacks) == {"overall": 0.5, "Cryptomining": 0.5, "Nginx": 0.0, "SSH": 1.0}


def _traces():
    calls = {"S1": ["read", "write"], "S2": ["open", "close"], "S3": ["read", "close"], "S4": ["write", "open"]}
    out = []
    for g, cs in calls.items():
        for i in range(30):
            out.append(Trace(name=f"{g}/{i}", calls=cs * (10 + i) + ["read"] * (i % 4), label="normal",
                             family="normal", meta={"service": g}))
    return out


def test_dev_judges_left_out_services_on_every_remaining_host():
    ts = _traces()
    train = [t for t in ts if int(t.name.split("/")[1]) < 20]
    cal = [t for t in ts if int(t.name.split("/")[1]) >= 20]
    v = Vocabulary.from_traces(train)
    out = P.dev(train, cal, v, ["mismatch", "wmax:mismatch+novelty@0.6"])
    for r in out.values():
        assert set(r["modes"]) == set(P.MODES) and r["mode"] in P.MODES
        # folds S1+S4, S2, S3: 10 novel traces per left-out service, each on 2, 3, 3 remaining hosts
        assert r["n_pairs"] == 20 * 2 + 10 * 3 + 10 * 3
        assert all(m["fpr"] <= 0.05 for m in r["modes"].values())


def test_eval_per_service_cli(tmp_path):
    extra = {f"FHIDS/attack/Cryptomining/{200 + i}.txt": "execve mmap mmap frobnicate " * 4 for i in range(3)}
    p = _tar(tmp_path / "f.tar.xz", _fhids_files(extra))
    r = kpilot("security", "eval", "--dataset", "fhids", "--path", p, "--detectors", "mismatch,novelty,fused",
               "--per-service", "--json")
    assert r.returncode == 0, r.stderr
    ps = json.loads(r.stdout)["per_service"]
    assert set(ps["detectors"]) == {"mismatch", "novelty", "fused"}
    assert "Cryptomining" in ps["rule_for_unknown_services"]
    assert ps["detection_ceiling_service_models"] == {"overall": 1.0, "Cryptomining": 1.0, "FTP": 1.0}
    for d in ps["detectors"].values():
        assert d["mode"] in P.MODES and d["chosen_on_test"] == d["every_mode_on_test_not_used_to_choose"][d["mode"]]
        assert set(d["chosen_on_test"]["families"]) == {"Cryptomining", "FTP"}
    _err(kpilot("security", "eval", "--dataset", "unm", "--path", p, "--per-service"), "--per-service is for fhids")
