"""Every ```sh run block in docs/guide/*.md runs here, so the guide cannot rot."""
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

GUIDE = Path(ROOT) / "docs" / "guide"
BLOCK = re.compile(r"^```sh run[ \t]*\n(.*?)^```", re.M | re.S)
# commands that watch the whole host, change it, hold a fixed port or measure it: their blocks run alone
# (serial). Tracing a command of one's own (record -- CMD, aipath -- CMD) is not host-wide.
SCHED_OFFLINE = r"sched (--quick )?--only (recorded|synthetic|load_forecast)(,(recorded|synthetic|load_forecast))*(?![\w,])"
SECURITY_OFFLINE = r"security (--quick )?--only (fhids|unm)(,(fhids|unm))*(?![\w,])"
HOST_WIDE = re.compile(r"\bkpilot (bench (?!memory\b|kernelize\b|" + SCHED_OFFLINE + "|" + SECURITY_OFFLINE + r")|serve|top|agent (run|rollback)"
                       r"|sched (run|rules)|memory live|security (watch|scenarios record|train --host))\b")
# `bench memory` simulates committed traces, `bench kernelize` test-runs its own programs and `bench sched`'s
# offline parts (kernelpilot/bench/sched.py OFFLINE) replay committed traces and `bench security`'s dev sets
# (fhids, unm) score shared datasets: not host-wide
TMP_PATH = re.compile(r"/tmp/")  # a later block naming /tmp/... may read what a host-wide block wrote there


def blocks():
    """Each page's blocks in order. Blocks that only compute (simulate, train, evaluate, kernelize on
    given input) run with the parallel part, one page's on one worker in order. Host-wide blocks run
    in the serial part, in order, and so does a later block of the page that names a /tmp/ path
    (it may read what a host-wide block wrote there; each block's own files live in its scratch folder)."""
    out = []
    for page in sorted(GUIDE.glob("*.md")):
        seen_host_wide = False
        for i, m in enumerate(BLOCK.finditer(page.read_text())):
            script = m.group(1)
            host_wide = bool(HOST_WIDE.search(script)) or (seen_host_wide and bool(TMP_PATH.search(script)))
            seen_host_wide = seen_host_wide or host_wide
            mark = pytest.mark.serial if host_wide else pytest.mark.xdist_group(f"guide-{page.stem}")
            out.append(pytest.param(page.name, script, id=f"{page.stem}-{i}", marks=mark))
    return out


def test_guide_has_runnable_blocks_and_pages():
    assert len(blocks()) >= 6
    index = (GUIDE / "index.md").read_text()
    for link in re.findall(r"\]\(([^)#]+\.md)\)", index):
        assert (GUIDE / link).is_file(), f"index.md links to missing {link}"
    for img in re.findall(r"\]\((\.\./img/[^)]+)\)", index):
        assert (GUIDE / img).resolve().is_file(), f"index.md shows missing {img}"


@pytest.mark.parametrize("page,script", blocks())
def test_guide_block_runs(page, script, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the guide's commands trace live (root)")
    env = {**os.environ, "PATH": f"{ROOT}/.venv/bin:{os.environ['PATH']}", "COLUMNS": "160",
           "KPILOT_NO_PROGRESS": "1"}
    # each block runs in a scratch folder, as a reader would in their own; files it names stay there
    p = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"{page}:\n{script}\nstdout: {p.stdout[-2000:]}\nstderr: {p.stderr[-2000:]}"
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("cmd,host_wide", [
    ("kpilot bench security --quick --only fhids,unm --json", False),
    ("kpilot bench security --only unm", False),
    ("kpilot bench security --quick --only scenarios,live --json", True),
    ("kpilot bench security --quick --only fhids,live --json", True),
    ("kpilot bench security --quick --json", True),
    ("kpilot bench sched --only recorded", False),
    ("kpilot bench agent --only cost", True),
])
def test_offline_bench_parts_run_in_the_parallel_part(cmd, host_wide):
    """The dev-set parts of bench security (fhids, unm) read shared datasets only: parallel part."""
    assert bool(HOST_WIDE.search(cmd)) == host_wide
