"""`make test` runs its parallel part with `--dist loadgroup`: a guide page's blocks (xdist_group) must run
on one worker, in order, since a later block reads what an earlier one wrote. pytest 9.2 broke that
silently (pytest-xdist issue 1386); this runs a tiny suite the same way and checks the grouping."""
import subprocess
import sys

import pytest

CASE = '''
import os, pytest
@pytest.mark.parametrize("i", [pytest.param(i, marks=pytest.mark.xdist_group("page"), id=f"block-{i}")
                               for i in range(6)])
def test_block(i):
    with open("ran.txt", "a") as f:
        f.write(f"{i} {os.environ.get('PYTEST_XDIST_WORKER')}\\n")
'''


def test_grouped_blocks_run_on_one_worker_in_order(tmp_path):
    pytest.importorskip("xdist")
    (tmp_path / "test_case.py").write_text(CASE)
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup",
                        "-p", "no:cacheprovider", "test_case.py"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    ran = [ln.split() for ln in (tmp_path / "ran.txt").read_text().splitlines()]
    assert len(ran) == 6
    assert len({w for _, w in ran}) == 1, f"one group ran on several workers: {ran}"
    assert [int(i) for i, _ in ran] == list(range(6))
