"""`kpilot bench sched --only PARTS`: the offline parts (committed traces and series) apart from the
live ones, so the guide runs them in the parallel part of the tests and the live ones alone."""
import pytest

from kernelpilot.bench import sched as B
from kernelpilot.bench.cli import run_bench
from kernelpilot.errors import KpError
from kernelpilot.sched import xbench


def _fakes(monkeypatch, ran):
    rec = {k: 1.0 for k in ("srpt_pred_vs_srpt_oracle_mean", "srpt_pred_vs_srpt_oracle_max", "srpt_pred_vs_cfs_mean",
                            "srpt_oracle_vs_cfs_mean", "burst_mae_ratio_vs_exp_avg_mean",
                            "burst_log_error_ratio_vs_exp_avg_mean")}
    rec.update(traces=7, per_trace={}, classifier_accuracy_mean={})
    monkeypatch.setattr(B, "recorded", lambda quick: ran.append("recorded") or {"summary": rec})
    monkeypatch.setattr(B, "synthetic", lambda quick: ran.append("synthetic") or {})
    monkeypatch.setattr(B, "load_forecast", lambda: ran.append("load_forecast") or {
        "host_100ms": {"mae_ratio_vs_ewma": 0.9, "mae_ratio_vs_last_value": 0.8, "chosen": "tree"}})
    monkeypatch.setattr(B, "live", lambda quick: ran.append("live") or {"p99_latency_improvement_x": 2.0})
    monkeypatch.setattr(xbench, "run", lambda quick: ran.append("cross_session") or {"summary": {"xs_figure": 3}})


def test_every_part_by_default_and_only_the_named_ones(monkeypatch):
    ran = []
    _fakes(monkeypatch, ran)
    full = B.run(quick=True)
    assert ran == ["recorded", "cross_session", "synthetic", "load_forecast", "live"]
    assert list(full) == [*B.PARTS, "summary"]
    assert full["summary"]["traces"] == 7 and full["summary"]["xs_figure"] == 3
    assert full["summary"]["live_p99_latency_improvement_x"] == 2.0
    ran.clear()
    off = run_bench("sched", quick=True, only=",".join(B.OFFLINE))
    assert ran == list(B.OFFLINE) and off["parts"] == list(B.OFFLINE)
    assert "live" not in off and "cross_session" not in off
    assert off["summary"]["traces"] == 7 and off["summary"]["load_forecast_chosen"] == {"host_100ms": "tree"}
    assert not any(k.startswith("live") for k in off["summary"])
    ran.clear()
    on = run_bench("sched", quick=True, only="live,cross_session")
    assert ran == ["cross_session", "live"] and "traces" not in on["summary"]
    assert on["summary"]["xs_figure"] == 3 and on["summary"]["live_p99_latency_improvement_x"] == 2.0


def test_offline_part_runs_for_real():
    res = B.run(quick=True, only=["synthetic"])
    assert res["parts"] == ["synthetic"] and res["synthetic"]["classifier"]["windows"] > 0


def test_bad_part_is_one_line_error():
    with pytest.raises(KpError, match="has the parts recorded, synthetic, load_forecast, live, cross_session"):
        run_bench("sched", quick=True, only="recordd")
