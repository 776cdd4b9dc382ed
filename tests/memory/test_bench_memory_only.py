"""`kpilot bench memory --only PARTS`: runs just the named parts and says which ran; a bad part name
is a one-line error."""
import pytest

from kernelpilot.bench import memory as B
from kernelpilot.bench.cli import run_bench
from kernelpilot.errors import KpError


def _fakes(monkeypatch, ran):
    def policies(quick, dev=True, recorded=True):
        ran.append(("policies", dev, recorded))
        return {"traces": {}}
    monkeypatch.setattr(B, "_policies", policies)
    for name in ("devsplit", "speed", "prefetch", "live"):
        monkeypatch.setattr(B, f"_{name}", lambda quick, name=name: ran.append(name) or {"fake": name})


def test_only_runs_just_the_named_parts(monkeypatch):
    ran = []
    _fakes(monkeypatch, ran)
    res = run_bench("memory", quick=True, only="policies, speed")
    assert ran == [("policies", True, False), "speed"]
    assert res["parts"] == ["policies", "speed"] and res["speed"] == {"fake": "speed"}
    assert "learned_summary" in res and "prefetch" not in res and "live" not in res
    ran.clear()
    res = run_bench("memory", quick=True, only="speed")
    assert ran == ["speed"] and res["parts"] == ["speed"] and "policies" not in res and "learned_summary" not in res
    ran.clear()
    res = B.run(quick=True)
    assert ran == [("policies", True, True), "devsplit", "speed", "prefetch", "live"] and res["parts"] == list(B.PARTS)


def test_recorded_alone_reads_no_dev_trace(monkeypatch):
    calls = []
    monkeypatch.setattr(B, "_real_traces", lambda quick: calls.append(quick) or ([], {"sqlite": "not recorded: test"}))
    out = B._policies(False, dev=False, recorded=True)
    assert calls == [False] and out["traces_read"] == [] and out["traces"] == {}
    assert out["recorded_programs"] == {"sqlite": "not recorded: test"}
    out = B._policies(False, dev=False, recorded=False)
    assert calls == [False] and out["recorded_programs"] == {"skipped": "not among --only's parts"}


@pytest.mark.parametrize("only", ["policy", "speed,lrb", ","])
def test_only_bad_part(only):
    with pytest.raises(KpError, match="has the parts policies, recorded, devsplit, prefetch, speed, live"):
        run_bench("memory", quick=True, only=only)


def test_only_bad_part_cli_one_line(kpilot):
    r = kpilot("bench", "memory", "--only", "polices")
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "has the parts policies" in r.stderr, r.stderr


def test_devsplit_never_reads_the_scored_half(monkeypatch):
    """The dev-split part (where lrb's settings are chosen) gives the same figures whatever the
    second half of each trace holds: the policies part scores that half, so nothing is chosen on it."""
    from kernelpilot.memory import trace as T
    tr = T.mixed(8000, 300, seed=1)
    other = T.Trace(tr.ids.copy(), 1, name=tr.name)
    other.ids[4000:] = T.zipf(4000, 50, seed=2).ids + 10_000
    runs = []
    for t in (tr, other):
        monkeypatch.setattr(B, "_load", lambda names, quick, errors, t=t: [t])
        runs.append(B._devsplit(True))
    assert runs[0] == runs[1]
    cells = runs[0]["traces"]["mixed"]["cells"]
    assert runs[0]["traces"]["mixed"]["requests"] == 4000 and len(cells) == 4
    assert all(0 <= r["belady"] <= r["lrb"] <= 1 and r["belady"] <= r[r["best_classic"]] for r in cells.values())
