"""`kpilot bench security --only PARTS`: runs just those parts; bad part names are one-line errors."""
import subprocess

import pytest

from sec_common import KPILOT
from kernelpilot.bench import security
from kernelpilot.bench.cli import run_bench
from kernelpilot.errors import KpError


def test_only_runs_just_the_named_parts(monkeypatch):
    ran = []
    monkeypatch.delenv("KPILOT_LIVE_MIX_S", raising=False)
    monkeypatch.setattr(security, "devset_part", lambda name, quick: ran.append(name) or {"skipped": "test"})
    monkeypatch.setattr(security, "scenario_part", lambda *a: ran.append("scenarios") or ({}, None))
    monkeypatch.setattr(security, "live_part", lambda quick, model, mix_s: ran.append("live") or {"mix_s": mix_s})
    res = run_bench("security", quick=True, only="unm")
    assert ran == ["unm"] and res["parts"] == ["unm"] and "live" not in res and "fhids" not in res
    ran.clear()
    res = run_bench("security", quick=True, only="live, fhids")
    assert ran == ["fhids", "live"] and res["live"]["mix_s"] == 30.0


@pytest.mark.parametrize("only,msg", [("livee", "has the parts fhids, unm, scenarios, live"), (",", "has the parts")])
def test_only_bad_part(only, msg):
    with pytest.raises(KpError, match=msg):
        run_bench("security", quick=True, only=only)


def test_only_on_a_bench_without_parts_is_one_line_error():
    r = subprocess.run([KPILOT, "bench", "swap", "--only", "x"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "has no parts" in r.stderr and "Traceback" not in r.stderr, r.stderr
