"""A scenario or benign-mix script whose temp dir is gone runs nothing where it was started (a
make_project run once wrote its Makefile and lib.a over the repository's own; the mix rm -rf's repo, t, x)."""
import os
import subprocess

from kernelpilot.security.scenarios import SCENARIOS
from kernelpilot.security.scenarios.run import script_for


def test_missing_workdir_runs_nothing_in_the_callers_dir(tmp_path):
    start = tmp_path / "caller"
    start.mkdir()
    (start / "Makefile").write_text("keep me\n")
    gone = str(tmp_path / "removed-before-start")
    r = subprocess.run(["bash", "-c", script_for(SCENARIOS["make_project"], gone, 2)], cwd=start, timeout=60)
    assert r.returncode != 0
    assert (start / "Makefile").read_text() == "keep me\n"
    assert sorted(os.listdir(start)) == ["Makefile"]


def test_script_runs_in_its_workdir(tmp_path):
    start, work = tmp_path / "caller", tmp_path / "work"
    start.mkdir()
    work.mkdir()
    r = subprocess.run(["bash", "-c", script_for(SCENARIOS["make_project"], str(work), 2)], cwd=start, timeout=60)
    assert r.returncode == 0
    assert (work / "lib.a").exists() and os.listdir(start) == []


def test_benign_mix_with_missing_workdir_removes_nothing(tmp_path):
    from kernelpilot.security.livebench import mix_script
    start = tmp_path / "caller"
    (start / "repo").mkdir(parents=True)
    (start / "t").mkdir()
    gone = str(tmp_path / "removed-before-start")
    r = subprocess.run(["bash", "-c", mix_script(gone, 2, 1)], cwd=start, timeout=60)
    assert r.returncode != 0
    assert sorted(os.listdir(start)) == ["repo", "t"]
