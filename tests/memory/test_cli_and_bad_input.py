"""CLI runs and one-line errors for bad input."""
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kernelpilot.memory import prefetch as P, sim, trace as T

KPILOT = str(Path(sys.executable).with_name("kpilot"))


def kp(*args):
    return subprocess.run([KPILOT, *args], capture_output=True, text=True, timeout=300)


def one_line_error(r, text):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert text in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_sim_json_has_all_policies():
    r = kp("memory", "sim", "--trace", "synth:mixed", "--n", "20000", "--policies", "all",
           "--sizes", "0.05", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert {x["policy"] for x in out["results"]} == set(sim.ALL)
    opt = next(x["miss_ratio"] for x in out["results"] if x["policy"] == "belady")
    assert all(x["miss_ratio"] >= opt - 1e-12 for x in out["results"])


def test_prefetch_json():
    r = kp("memory", "prefetch", "--trace", "pattern:pointer-chase", "--n", "3000", "--json")
    assert r.returncode == 0, r.stderr
    rows = {x["prefetcher"]: x for x in json.loads(r.stdout)["results"]}
    assert rows["learned"]["coverage"] >= 0.8 and rows["learned"]["accuracy"] >= 0.8


def test_wrong_record_size(tmp_path):
    p = tmp_path / "bad.oracleGeneral"
    p.write_bytes(b"\0" * 25)
    one_line_error(kp("memory", "sim", "--trace", str(p)), "24-byte")


def test_zero_size_record(tmp_path):
    p = tmp_path / "zero.oracleGeneral"
    p.write_bytes(struct.pack("<IQIq", 1, 5, 0, -1))
    one_line_error(kp("memory", "sim", "--trace", str(p)), "size 0")


def test_negative_next_access(tmp_path):
    p = tmp_path / "neg.oracleGeneral"
    p.write_bytes(struct.pack("<IQIq", 1, 5, 1, -7))
    one_line_error(kp("memory", "sim", "--trace", str(p)), "must be >= -1")


def test_missing_and_negative_csv_fields(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("time,obj_id,size\n1,5,10\n2,,10\n")
    one_line_error(kp("memory", "sim", "--trace", str(p)), "missing")
    p.write_text("time,obj_id,size\n1,5,10\n2,6,-3\n")
    one_line_error(kp("memory", "sim", "--trace", str(p)), "sizes must be > 0")
    p.write_text("time,size\n1,10\n")
    one_line_error(kp("memory", "sim", "--trace", str(p)), "no object id column")


def test_zero_cache_size():
    one_line_error(kp("memory", "sim", "--trace", "synth:zipf", "--n", "1000", "--sizes", "0"),
                   "cache size must be > 0")


def test_object_larger_than_cache(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("1 100\n2 5000\n1 100\n")
    one_line_error(kp("memory", "sim", "--trace", str(p), "--bytes", "--sizes", "1000",
                      "--policies", "lru"), "larger than the cache")


def test_unknown_policy_and_file():
    one_line_error(kp("memory", "sim", "--trace", "synth:zipf", "--policies", "nope"), "unknown policy")
    one_line_error(kp("memory", "sim", "--trace", "/nonexistent.bin"), "not found")


def test_txt_and_block_readers(tmp_path):
    from kernelpilot.traces.importers import block, text
    p = tmp_path / "a.txt"
    p.write_text("# c\n1\n2\n1\n")
    assert text.read_txt(p).ids.tolist() == [1, 2, 1]
    m = tmp_path / "m.msr"
    m.write_text("1,h,0,Read,4096,8192,10\n2,h,0,Write,0,100,5\n")
    assert block.read_msr(m).ids.tolist() == [1, 2, 0]
    m.write_text("1,h,0,Read,-1,8192,10\n")
    with pytest.raises(Exception, match="negative"):
        block.read_msr(m)
    b = tmp_path / "b.blk"
    b.write_text("8,0 1 1 0.000 42 Q R 16 + 16 [dd]\n8,0 1 2 0.001 42 C R 16 + 16 [0]\n"
                 "8,0 1 3 0.002 42 Q W 0 + 8 [dd]\n")
    assert block.read_blkparse(b).ids.tolist() == [2, 3, 0]  # queued requests only; sector 16 = byte 8192 = block 2
    b.write_text("8,0 1 1 0.000 42 C R 16 + 16 [dd]\n")
    with pytest.raises(Exception, match="no queued"):
        block.read_blkparse(b)


def test_learned_prefetch_beats_leap_on_mixed():
    pages = P.mixed_pages(20_000)
    rows = {r["prefetcher"]: r for r in P.compare(pages, ["leap", "learned"])}
    assert rows["learned"]["coverage"] > rows["leap"]["coverage"]
    assert rows["learned"]["accuracy"] > rows["leap"]["accuracy"]


def test_learned_policy_runs_and_model_roundtrip(tmp_path):
    from kernelpilot.memory import models
    from kernelpilot.models.format import Model
    tr = T.loop(40_000, 800, 3)
    m = models.train("lrb", tr, 600, end=20_000)
    m.save(tmp_path / "m.json")
    m2 = Model.load(tmp_path / "m.json")
    from kernelpilot.memory import features as F
    X = np.random.default_rng(0).uniform(0, 20, (50, m.n_features))  # lrb: and the age
    assert np.allclose(models.score_rows(m, X), m2.predict_float(X))
    r = sim.simulate(tr, "lrb", 600, model=m2, eval_from=20_000)
    assert r.miss_ratio < sim.simulate(tr, "lru", 600, eval_from=20_000).miss_ratio


def test_sim_vote_has_lrb_among_its_experts_as_the_bench():
    # `memory sim`'s vote trains lrb on the prefix and votes with it, as the bench's vote (its
    # _honest on lrb's full run); vote_classic is the classics alone, as the bench's vote_classic
    from kernelpilot.bench.memory import _honest
    from kernelpilot.memory import mix, models
    r = kp("memory", "sim", "--trace", "synth:mixed", "--n", "20000", "--policies", "vote,vote_classic,lrb",
           "--sizes", "0.05", "--json")
    assert r.returncode == 0, r.stderr
    out = {x["policy"]: x["miss_ratio"] for x in json.loads(r.stdout)["results"]}
    tr = T.load("synth:mixed", n=20000)
    d, n_obj, _ = tr.dense()
    sz = np.ones(len(d), np.int64)
    size, start = sim.sizes_from_spec(tr, "0.05", True)[0], len(d) // 2
    log = mix._logs(1, len(d))[0]
    lrb = models.run("lrb", tr, sz, size, models.train("lrb", tr, size, True, start), log)
    want = _honest(d, sz, size, n_obj, start, (lrb, log))
    assert out["vote"] == pytest.approx(want["vote"], abs=1e-9)
    assert out["vote_classic"] == pytest.approx(want["vote_classic"], abs=1e-9)
    assert out["lrb"] == pytest.approx(1.0 - lrb[start:].mean(), abs=1e-9)
    assert abs(out["vote"] - out["vote_classic"]) > 1e-4  # lrb changes the vote here
