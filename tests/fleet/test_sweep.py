"""kpilot memory sweep: cells as tasks (process pool, Ray), the same results as `memory sim`, resumable."""
import json
import os

import pyarrow.parquet as pq
import pytest

from kernelpilot.datasets import datasets_dir
from tests.conftest import run_kpilot

LIRS = datasets_dir() / "cache" / "lirs"
need_lirs = pytest.mark.skipif(not (LIRS / "cs.trace.gz").exists(),
                               reason=f"dev cache traces absent at {LIRS} (set KPILOT_DATASETS)")


def rows(path):
    return {(r["trace"], r["policy"], r["size_spec"]): r for r in pq.read_table(path).to_pylist()}


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@need_lirs
def test_local_sweep_matches_sim_and_resumes(tmp_path):
    out = tmp_path / "sweep.parquet"
    traces = f"{LIRS}/cs.trace.gz,{LIRS}/ps.trace.gz"
    r = run_kpilot("memory", "sweep", "--traces", traces, "--policies", "lru,arc,belady", "--sizes", "0.05,0.2",
                   "-o", out, "--json", "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ran"] == 12
    got = rows(out)
    assert len(got) == 12
    # the same cell through `memory sim` (classic policies scored over the same second half)
    from kernelpilot.fleet.sweep import run_cell
    from kernelpilot.memory import sim
    from kernelpilot.memory.trace import load
    tr = load(f"{LIRS}/cs.trace.gz")
    size = sim.sizes_from_spec(tr, "0.05", True)[0]
    ref = sim.simulate(tr, "arc", size, True, eval_from=len(tr) // 2)
    assert got[(f"{LIRS}/cs.trace.gz", "arc", "0.05")]["miss_ratio"] == pytest.approx(ref.miss_ratio, abs=0)
    assert run_cell(f"{LIRS}/cs.trace.gz", "arc", "0.05")["miss_ratio"] == ref.miss_ratio
    for (_, p, s), row in got.items():
        if p != "belady":
            assert row["miss_ratio"] >= got[(row["trace"], "belady", s)]["miss_ratio"] - 1e-12
    # resumable: a second run with one more policy runs only the new cells
    r = run_kpilot("memory", "sweep", "--traces", traces, "--policies", "lru,arc,belady,s3fifo", "--sizes",
                   "0.05,0.2", "-o", out, "--json")
    res = json.loads(r.stdout)
    assert r.returncode == 0 and res["ran"] == 4 and res["skipped"] == 12 and len(rows(out)) == 16


@need_lirs
def test_ray_sweep_identical_to_one_process(tmp_path, ray_local):
    from kernelpilot.fleet.sweep import sweep
    traces = [f"{LIRS}/cs.trace.gz", f"{LIRS}/cpp.trace.gz"]
    one, on_ray = tmp_path / "one.parquet", tmp_path / "ray.parquet"
    sweep(traces, ["lru", "lirs", "s3fifo", "lrb"], ["0.1"], one, "local", workers=1)
    res = sweep(traces, ["lru", "lirs", "s3fifo", "lrb"], ["0.1"], on_ray, "ray")
    assert res["ran"] == 8
    a, b = rows(one), rows(on_ray)
    assert {k: v["miss_ratio"] for k, v in a.items()} == {k: v["miss_ratio"] for k, v in b.items()}


@pytest.mark.parametrize("args,msg", [
    (["--engine", "ray", "--address", "127.0.0.1:1"], "cannot reach Ray at 127.0.0.1:1"),
    (["--engine", "ray", "--address", "nonsense"], "bad Ray address"),
    (["--engine", "spark"], "unknown engine"),
    (["--policies", "lru,nope"], "unknown policy"),
    (["--sizes", "0,abc"], "bad cache size"),
    (["-o", "/proc/kp-sweep.parquet"], "cannot write"),
])
@need_lirs
def test_bad_sweeps_one_line(tmp_path, args, msg):
    base = {"--traces": f"{LIRS}/cs.trace.gz", "--policies": "lru", "--sizes": "0.1", "-o": str(tmp_path / "o.parquet")}
    for k in list(base):
        if k in args:
            del base[k]
    r = run_kpilot("memory", "sweep", *[x for kv in base.items() for x in kv], *args)
    assert r.returncode != 0 and msg in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "internal error" not in r.stderr
    assert not (tmp_path / "o.parquet").exists()


def test_missing_trace_and_foreign_output(tmp_path):
    r = run_kpilot("memory", "sweep", "--traces", str(tmp_path / "none.gz"), "-o", tmp_path / "o.parquet")
    assert r.returncode != 0 and "trace not found" in r.stderr
    bad = tmp_path / "bad.parquet"
    import pyarrow as pa
    pq.write_table(pa.table({"x": [1]}), bad)
    r = run_kpilot("memory", "sweep", "--traces", "synth:zipf", "--policies", "lru", "--sizes", "0.1", "-o", bad)
    assert r.returncode != 0 and "not sweep results" in r.stderr, r.stderr
    assert pq.read_table(bad).column_names == ["x"]  # left as it was
