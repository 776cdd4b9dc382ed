"""kpilot report on bench-shaped JSON, checked in a real headless Chromium."""
import json
import re
import shutil
import subprocess

import pytest

from tests.conftest import run_kpilot
from kernelpilot.report import html, plots

RESULTS = {
    "memory": {"policies": {"zipf": {"100": {"lru": 0.61, "fifo": 0.66, "belady": 0.41, "lrb": 0.55},
                                     "1000": {"lru": 0.35, "fifo": 0.39, "belady": 0.21, "lrb": 0.30},
                                     "10000": {"lru": 0.12, "fifo": 0.14, "belady": 0.06, "lrb": 0.10}}}},
    "security": {"roc": {"tree": {"fpr": [0, 0.01, 0.1, 1], "tpr": [0, 0.8, 0.95, 1], "auc": 0.95},
                         "stide": {"fpr": [0, 0.01, 0.1, 1], "tpr": [0, 0.5, 0.9, 1], "auc": 0.9}}},
    "sched": {"wakeup_latency_us": [float(x) for x in range(1, 200, 3)], "p99_ratio_x": 1.7,
              "agent_on": {"p50": 40.0, "p90": 80.0, "p99": 150.0}},
    "ingest": {"ns_per_syscall": {"no_probe": 90.0, "kernelpilot_probe": 140.0}, "targets": {"ok": True}},
}


def test_recognises_each_plot_kind():
    titles = [f["title"] for f in plots.find(RESULTS)]
    assert any(t.startswith("miss ratio vs cache size") for t in titles)
    assert any(t.startswith("ROC curves") for t in titles)
    assert any(t.startswith("latency CDF") for t in titles)
    assert any(t.startswith("latency percentiles") for t in titles)
    assert any(t.startswith("comparison: ingest / ns_per_syscall") for t in titles)
    assert plots.find({"a": "text", "b": [1, "x"]}) == []


def test_generic_table_holds_every_leaf():
    rows = dict(html.flatten(RESULTS))
    assert rows["ingest.targets.ok"] is True
    assert rows["memory.policies.zipf.100.belady"] == 0.41
    assert "67 numbers" in rows["sched.wakeup_latency_us"]


def test_aipath_flow_diagram(tmp_path):
    layer = lambda n: {"name": n, "count": 3, "count_unit": "x", "bytes": 4096, "time_s": 0.5, "detail": {"blocked_s": 1.0}}
    names = ["user space", "system calls", "memory", "scheduler", "files / page cache", "devices", "hardware"]
    res = {"bench": "aipath", "layers": [layer(n) for n in names],
           "phases": [{"name": "import", "layers": [layer(n) for n in names]},
                      {"name": "train step", "layers": [layer(n) for n in names]}]}
    page = html.render(res)
    assert page.count("marker-end") == len(names) - 1  # arrows between layers
    for n in names:
        assert f">{n}<" in page
    assert "train step" in page


def _chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], capture_output=True, timeout=600)
        exe = shutil.which("chromium")
    if not exe:
        pytest.skip("chromium is not installed and could not be installed (apt-get install chromium)")
    return exe


def test_report_renders_in_headless_chromium(tmp_path):
    _chromium()
    src = tmp_path / "results.json"
    src.write_text(json.dumps(RESULTS))
    out, png = tmp_path / "report.html", tmp_path / "report.png"
    p = run_kpilot("report", src, "-o", out, "--screenshot", png, timeout=180)
    assert p.returncode == 0, p.stderr
    page = out.read_text()
    assert not re.search(r'(src|href)="(https?:)?//', page)  # self-contained
    assert page.count("<svg") >= 5
    import numpy as np
    from matplotlib.image import imread
    img = imread(png)
    assert img.shape[0] >= 1000 and img.shape[1] >= 1200
    rgb = img[..., :3].reshape(-1, 3)
    assert rgb.std(axis=0).max() > 0.05  # not blank: header, plots and text
    assert len(np.unique((rgb * 255).astype(np.uint8), axis=0)) > 50  # plots drew many colours


@pytest.mark.parametrize("content,msg", [
    (None, "results file not found"),
    ("{not json", "is not valid JSON"),
    ("{}", "holds no results"),
    ("42", "holds no results"),
])
def test_bad_input(tmp_path, content, msg):
    f = tmp_path / "r.json"
    if content is not None:
        f.write_text(content)
    p = run_kpilot("report", f, "-o", tmp_path / "o.html")
    assert p.returncode == 2 and msg in p.stderr and "Traceback" not in p.stderr


def test_output_folder_is_refused(tmp_path):
    f = tmp_path / "r.json"
    f.write_text(json.dumps(RESULTS))
    p = run_kpilot("report", f, "-o", tmp_path)
    assert p.returncode == 2 and "is a folder" in p.stderr


def test_bench_memory_cells_give_miss_ratio_curves():
    """`kpilot bench memory --json` cells (size -> policies' miss ratios beside scores that are not
    miss ratios: a negative regret, switch counts): one curve per policy, none for the scores."""
    row = lambda k: {"lru": 0.5 - k, "mix": 0.45 - k, "lrb": 0.44 - k, "belady": 0.3 - k,  # noqa: E731
                     "mix_regret": -0.01, "mix_switches": 12, "room_to_belady": 0.1, "gap_closed": 0.2,
                     "best_classic": "lru"}
    res = {"policies": {"traces": {"P3": {"requests": 10, "cells": {"100": row(0.0), "500": row(0.1)}}}}}
    figs = [f for f in plots.find(res) if f["title"].startswith("miss ratio vs cache size")]
    assert len(figs) == 1 and "cells" in figs[0]["title"]
    assert plots._miss_ratio(res["policies"]["traces"]["P3"]["cells"]).keys() == {"lru", "mix", "lrb", "belady"}
