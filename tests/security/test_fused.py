"""Rarity, the fused detector's dev-split rule, and the fused row through the CLI (small tarballs)."""
import json

import numpy as np
import pytest

from sec_common import kpilot
from kernelpilot.security import datasets as DS
from kernelpilot.security import devsets
from kernelpilot.security import fused as F
from kernelpilot.security.features import Vocabulary
from kernelpilot.security.metrics import Scored
from test_datasets import _fhids_files, _tar


def _vocab():
    return Vocabulary(["read", "write", "open", "close", "execve"])


def test_rarity_orders_common_rare_unseen_and_round_trips():
    v = _vocab()
    common = v.encode(["read", "write"] * 50)
    rare = v.encode(["open", "close", "read", "write"])
    det = F.Rarity(v, n=2, frame=2).fit([common, common, rare])
    pos = det.position_scores(v.encode(["read", "write", "open", "close", "execve", "execve"]))
    # read-write seen 100 times, open-close once, close-execve never
    seen_common, unseen, seen_once = pos[1], pos[2], pos[3]
    assert seen_common < seen_once < unseen
    again = F.Rarity(v).load(json.loads(json.dumps(det.params())))
    assert np.allclose(again.position_scores(common), det.position_scores(common))
    # the trace score is the worst run of `frame` calls, not the mean: a local burst counts fully
    burst = v.encode(["read", "write"] * 40 + ["execve"] * 4 + ["read", "write"] * 40)
    s = det.scored(burst)
    assert s.score == pytest.approx(s.stream.max()) and s.score > det.position_scores(burst).mean() * 5


def test_choose_keeps_a_part_that_beats_every_combination():
    rng = np.random.default_rng(0)
    normal = {"mismatch": rng.normal(0, 1, 500), "rarity": rng.normal(0, 1, 500)}
    novel = {"mismatch": rng.normal(6, 1, 100), "rarity": rng.normal(0, 1, 100)}  # rarity is blind
    c = F.choose(normal, novel)
    assert c["rule"] == "mismatch" and not c["ensemble_kept"]
    assert set(c["dev"]) == {"mismatch", "rarity", "mean:mismatch+rarity", "max:mismatch+rarity",
                             *(f"{h}:mismatch+rarity@{w:g}" for h in ("wmean", "wmax") for w in F.WEIGHTS)}


def test_weighted_rules():
    """wmean weighs the pair's z-scores, wmax is an OR with a threshold per part; a dev split where
    one part sees the novel traces better than the other chooses a weighted mean leaning on it."""
    z = {"mismatch": np.array([1.0, 4.0]), "lm": np.array([3.0, 0.0])}
    assert F.rule_parts("wmean:lm+mismatch@0.3") == ["lm", "mismatch"]
    assert np.allclose(F.combine("wmean:lm+mismatch@0.3", z), [0.3 * 3 + 0.7 * 1, 0.7 * 4])
    assert np.allclose(F.combine("wmax:lm+mismatch@0.8", z), [2.4, 0.8])
    rng = np.random.default_rng(2)
    normal = {"lm": rng.normal(0, 1, 20000), "mismatch": rng.normal(0, 1, 20000)}
    novel = {"lm": rng.normal(2.5, 1, 5000), "mismatch": rng.normal(1.0, 1, 5000)}
    c = F.choose(normal, novel)
    assert c["ensemble_kept"] and c["rule"].startswith("wmean:lm+mismatch@"), c["rule"]
    assert float(c["rule"].rsplit("@", 1)[1]) >= 0.6
    assert c["dev"][c["rule"]]["dr_1pct"] > max(c["dev"][r]["dr_1pct"] for r in ("lm", "mismatch", "mean:lm+mismatch"))


def test_choose_keeps_an_ensemble_only_when_it_beats_its_parts():
    rng = np.random.default_rng(1)
    normal = {"mismatch": rng.normal(0, 1, 2000), "rarity": rng.normal(0, 1, 2000)}
    # half the novel traces are seen by one part, half by the other: only a combination catches both
    a, b = rng.normal(8, 1, 100), rng.normal(0, 1, 100)
    novel = {"mismatch": np.r_[a, b], "rarity": np.r_[b, a]}
    c = F.choose(normal, novel)
    assert c["ensemble_kept"] and c["rule"] in ("max:mismatch+rarity", "mean:mismatch+rarity")
    assert c["dev"][c["rule"]]["dr_1pct"] > max(c["dev"]["mismatch"]["dr_1pct"],
                                                          c["dev"]["rarity"]["dr_1pct"])


def test_fuse_z_scores_come_from_calibration():
    def sc(x):
        return Scored(float(x), np.array([1, 2]), np.array([x / 2, x], dtype=float))
    cal = {"mismatch": [sc(x) for x in range(101)], "rarity": [sc(10 * x) for x in range(101)]}
    test = {"mismatch": [sc(50), sc(99)], "rarity": [sc(500), sc(0)]}
    (fc, ft) = F.fuse("mean:mismatch+rarity", cal, test)
    assert ft[0].score == pytest.approx(0.0)            # both at their calibration median
    assert ft[1].score == pytest.approx((1.0 + (0 - 500) / 490) / 2)  # (x - median) / (p99 - median)
    (_, single) = F.fuse("mismatch", cal, test)
    assert single[1].score == pytest.approx(1.0) and len(single[1].stream) == 2


def _small_split(attack_calls):
    files = _fhids_files()
    files.update({f"FHIDS/attack/FTP/{100 + i}.txt": attack_calls for i in range(6)})
    return files


def test_rule_is_chosen_without_the_test_split(tmp_path):
    """Two data sets that differ only in their attacks get the same rule and dev figures."""
    out = []
    for i, calls in enumerate(("execve socket connect dup2 " * 4, "read read read write " * 7)):
        p = _tar(tmp_path / f"f{i}.tar.xz", _small_split(calls))
        res = devsets.run("fhids", p, ("mismatch", "rarity", "fused"))
        out.append(res["detectors"]["fused"]["rule"])
    assert out[0] == out[1]
    assert out[0]["rule"] in F.candidates(["mismatch", "rarity"])


def test_fused_row_through_cli_applies_its_rule(tmp_path):
    files = _fhids_files()
    for i in range(20):  # a third service with calls of its own: the dev folds have novel traces
        files[f"FHIDS/normal/Git/{i}.txt"] = " ".join(["open", "mmap", "read", "close"] * (4 + i % 3))
    files["FHIDS/attack/FTP/200.txt"] = files["FHIDS/normal/FTP/0.txt"]  # identical to normal traces
    p = _tar(tmp_path / "f.tar.xz", files)
    r = kpilot("security", "eval", "--dataset", "fhids", "--path", p, "--detectors", "mismatch,rarity,fused", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    fz = out["detectors"]["fused"]
    rule = fz["rule"]
    assert "leaving groups out" in rule["dev_split"] and rule["n_dev_normal"] > 0 and rule["n_dev_novel"] > 0
    assert set(rule["dev"]) == set(F.candidates(["mismatch", "rarity"]))
    if not rule["ensemble_kept"]:  # fused is then exactly its best part on the test split too
        part = out["detectors"][rule["rule"]]
        assert fz["trace_auc"] == part["trace_auc"]
        assert fz["offline"]["1pct"]["detection_rate"] == part["offline"]["1pct"]["detection_rate"]
    assert out["detection_ceiling"]["FTP"] == pytest.approx(6 / 7, abs=1e-3)


def test_fused_alone_without_parts_says_why(tmp_path):
    p = _tar(tmp_path / "f.tar.xz", _fhids_files())
    res = devsets.run("fhids", p, ("stide", "fused"))
    assert "fused" not in res["detectors"] and "needs one of" in res["skipped"]["fused"]


def test_unm_dev_split_is_other_programs(tmp_path):
    files = {}
    for prog, calls in (("8.Inetd", [3, 4, 5, 6]), ("9.Login", [7, 8, 9, 10])):
        for i in range(10):
            files[f"UNM/{prog}/normal/n{i}.int"] = "".join(f"{i + 1} {c}\n" for c in calls * (3 + i % 2))
        files[f"UNM/{prog}/intrusion/a.int"] = "".join(f"1 {c}\n" for c in [1, 2, 1, 2] * 3)
    p = _tar(tmp_path / "u.tar.xz", files)
    res = devsets.run("unm", p, ("mismatch", "rarity", "fused"))
    for prog, r in res["programs"].items():
        rule = r["detectors"]["fused"]["rule"]
        assert "other programs" in rule["dev_split"] and rule["cells"]["other programs:whole"][1] == 2  # the other program's calibration
        assert rule["cells"]["other programs:spliced"][1] == rule["cells"]["other programs:whole"][0]  # one per normal
        m = r["detectors"]["mismatch"]
        # 2 calibration traces: the conformal 1% threshold is their largest score, stide's own
        assert m["conformal_1pct"]["offline"]["threshold"] == m["max_calibration"]["threshold"]
        assert m["conformal_1pct"]["offline"]["n"] == 1
        # the other program's calls are all novel here: mismatch rates them 1, normals 0
        assert rule["dev"]["mismatch"]["cells"]["other programs:whole"][0] == 1.0
    assert "conformal_offline_ok" in res["summary"]["mismatch"]
    assert DS.NAMES == ("fhids", "unm")


def test_model_fused_rule_from_programs_left_out_and_round_trip(tmp_path):
    from kernelpilot.security.features import Trace
    from kernelpilot.security.model import SecurityModel
    rng = np.random.default_rng(0)
    progs = {"web": ["accept", "read", "write", "close"], "db": ["pread64", "pwrite64", "fsync"],
             "cron": ["openat", "read", "close", "execve"]}

    def traces(n, off):
        return [Trace(f"{p}{i}", [c for _ in range(20 + int(rng.integers(0, 20))) for c in calls], comm=p)
                for p, calls in progs.items() for i in range(off, off + n)]
    m = SecurityModel.train(traces(8, 0), ("mismatch", "rarity", "fused"), calibration=traces(4, 100))
    fz = m.detectors["fused"]
    assert "leaving groups out" in fz.choice["dev_split"] and fz.choice["n_dev_novel"] > 0
    assert fz.rule in F.candidates(["mismatch", "rarity"]) and "fused" in m.thresholds
    p = tmp_path / "m.json"
    m.save(p)
    back = SecurityModel.load(p)
    seq = m.vocab.encode(["accept", "pread64", "execve", "fsync"] * 10)
    assert np.allclose(back.detectors["fused"].window_scores(seq), fz.window_scores(seq))
    doc = json.loads(p.read_text())
    for field, value, msg in (("fused", ["lm"], "disagree"), ("rarity", [1], "differ in length")):
        bad = json.loads(json.dumps(doc))
        bad["detectors"][field]["parts" if field == "fused" else "counts"] = value
        p.write_text(json.dumps(bad))
        r = kpilot("security", "eval", "--model", p, "--data", tmp_path)
        assert r.returncode != 0 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_train_cli_fused_alone_is_one_line_error(corpus, tmp_path):
    r = kpilot("security", "train", "--normal", corpus[0], "-o", tmp_path / "m.json", "--detectors", "stide,fused")
    assert r.returncode != 0 and "needs one of lm, mismatch, rarity" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "m.json").exists()


def test_bench_devset_part_reports_fused_rule_and_ceiling(monkeypatch, tmp_path):
    from kernelpilot.bench import security as bench
    (tmp_path / "security").mkdir()
    files = _fhids_files()
    for i in range(20):
        files[f"FHIDS/normal/Git/{i}.txt"] = " ".join(["open", "mmap", "read", "close"] * (4 + i % 3))
    files["FHIDS/attack/Redis/1.txt"] = files["FHIDS/normal/Redis/3.txt"]
    _tar(tmp_path / "security" / "fhids.tar.xz", files)
    monkeypatch.setenv("KPILOT_DATASETS", str(tmp_path))
    part = bench.devset_part("fhids", quick=True)
    assert "fused" in part["detectors_run"] and "lm" not in part["detectors_run"]
    assert {r["detector"] for r in part["table"]} >= {"fused", "mismatch", "rarity", "novelty"}
    assert "wmax:mismatch+novelty@0.6" in part["detectors"]["fused"]["rule"]["dev"]  # refitted on the dev folds too
    head = bench.headline({"fhids": part})["fhids"]
    assert head["fused"]["rule"] == part["detectors"]["fused"]["rule"]["rule"]
    assert head["detection_ceiling"]["Redis"] == 0.0 and head["detection_ceiling"]["FTP"] == 1.0
    assert "recall_vs_rarity" in head["prefilter"]
    diag = part["detectors"]["fused"]["candidates_on_test_not_used_to_choose"]
    assert set(diag) == set(part["detectors"]["fused"]["rule"]["dev"])


def test_chooser_weighs_auc_beside_detection():
    """A part that catches a few more dev traces at 1% but ranks the rest no better than chance
    loses to one that ranks them well (J = (DR + AUC) / 2)."""
    rng = np.random.default_rng(3)
    normal = {"mismatch": rng.normal(0, 1, 4000), "novelty": rng.normal(0, 1, 4000)}
    sharp = np.r_[rng.normal(9, 1, 160), rng.normal(0, 1, 240)]   # 40% far out, the rest like normals
    broad = rng.normal(1.8, 1, 400)                               # all shifted: ~30% past 1%, AUC ~0.9
    c = F.choose(normal, {"mismatch": sharp, "novelty": broad})
    assert c["dev"]["mismatch"]["dr_1pct"] > c["dev"]["novelty"]["dr_1pct"]
    assert c["dev"]["novelty"]["auc"] > c["dev"]["mismatch"]["auc"] + 0.2
    assert c["base"] == "novelty"


def test_chooser_keeps_a_combination_only_when_it_beats_its_parts_in_every_cell():
    """Two cells: in one the pair's mean beats both parts, in the other it loses to one of them;
    pooled it would win, so the old one-split rule kept it; now the best part is kept."""
    rng = np.random.default_rng(4)
    n = {"mismatch": rng.normal(0, 1, 3000), "rarity": rng.normal(0, 1, 3000)}
    both = {"mismatch": rng.normal(2.3, 1, 600), "rarity": rng.normal(2.3, 1, 600)}  # the mean sees these best
    one = {"mismatch": rng.normal(5, 1, 200), "rarity": rng.normal(0, 1, 200)}       # only mismatch sees these
    pooled = F.choose({p: np.r_[n[p], n[p]] for p in n}, {p: np.r_[both[p], one[p]] for p in n})
    cells = F.choose_cells([("a", n, both), ("b", n, one)])
    assert cells["dev"]["mean:mismatch+rarity"]["cells"]["a"][0] > cells["dev"]["mismatch"]["cells"]["a"][0]
    assert cells["dev"]["mean:mismatch+rarity"]["cells"]["b"][0] < cells["dev"]["mismatch"]["cells"]["b"][0]
    assert pooled["ensemble_kept"]
    assert not cells["ensemble_kept"] and cells["rule"] == cells["base"] == "mismatch"


def test_chooser_wants_a_margin_and_the_simplest_rule():
    """A combination a hair above its best part is not kept; of two that pass, the plain one wins."""
    rng = np.random.default_rng(5)
    normal = {"mismatch": rng.normal(0, 1, 20000), "novelty": rng.normal(0, 1, 20000)}
    c0 = F.choose(normal, {"mismatch": rng.normal(3, 1, 2000), "novelty": rng.normal(0.2, 1, 2000)})
    assert c0["rule"] == "mismatch" and not c0["admissible"]  # every pair at best equals mismatch (< MARGIN)
    c1 = F.choose(normal, {"mismatch": rng.normal(2, 1, 2000), "novelty": rng.normal(2, 1, 2000)})
    assert c1["ensemble_kept"] and c1["rule"] in ("mean:mismatch+novelty", "max:mismatch+novelty")
    assert any(r.startswith("wmean") for r in c1["admissible"])  # a weighted mean passes too, but is not simpler


def test_dev_cells_refit_with_the_fits_settings_and_splice(tmp_path):
    """Leave-groups-out cells: per fold a whole and a spliced cell; the lm refits with the steps
    given (the fit judged on test), not a fixed shorter run."""
    from kernelpilot.security.features import Trace
    progs = {"web": ["accept", "read", "write", "close"], "db": ["pread64", "pwrite64", "fsync", "read"],
             "cron": ["openat", "read", "close", "execve"]}
    train = [Trace(f"{p}{i}", calls * (5 + i % 3), meta={"service": p}) for p, calls in progs.items() for i in range(6)]
    cal = [Trace(f"{p}c{i}", calls * (4 + i % 2) + calls[:2], meta={"service": p}) for p, calls in progs.items() for i in range(4)]
    vocab = Vocabulary.from_traces(train)
    cells, how = F.leave_groups_out(train, cal, vocab, ["lm", "mismatch"], lambda t: t.meta["service"],
                                    lambda d, seqs: [d.scored(x).score if hasattr(d, "scored") else 0.0 for x in seqs],
                                    part_kw={"lm": {"steps": 7}})
    names = [c[0] for c in cells]
    assert names == ["cron:whole", "cron:spliced", "db:whole", "db:spliced", "web:whole", "web:spliced"]
    assert "'steps': 7" in how and "spliced" in how
    for name, normal, novel in cells:
        assert len(normal["lm"]) == 8 and len(novel["mismatch"]) == (8 if name.endswith("spliced") else 4)
    c = F.choose_cells(cells)
    assert set(c["cells"]) == set(names) and c["rule"] in F.candidates(["lm", "mismatch"])
