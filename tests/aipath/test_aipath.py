"""kpilot aipath on real runs under the real tracer: phase markers, device files, a PyTorch run."""
import json
import os
import sys
import textwrap

import numpy as np
import pytest

from tests.conftest import need_root, run_kpilot
from kernelpilot.aipath import devices, markers
from kernelpilot.traces import schema as S


def test_marker_names_round_trip():
    for name in ("import", "train step", "x" * 16, ""):
        assert markers.unpack_name(*markers.pack_name(name)) == name
    assert markers.unpack_name(*markers.pack_name("y" * 20)) == "y" * 16


def test_proc_devices_and_dev_scan():
    table = devices.parse_proc_devices(open("/proc/devices").read())
    assert table["char"][1] == "mem"
    d = devices.describe((1 << 20) | 3)  # kernel dev_t of /dev/null
    assert d == {"major": 1, "minor": 3, "driver": "mem", "path": "/dev/null", "accelerator": False}
    assert devices.describe((1 << 20) | 5)["path"] == "/dev/zero"


PROG = textwrap.dedent("""
    import mmap, os, fcntl, termios
    from kernelpilot.aipath.markers import mark
    mark("open devices")
    fd = os.open("/dev/zero", os.O_RDWR)
    m = mmap.mmap(fd, 1 << 20)
    m[0] = 1
    n = os.open("/dev/null", os.O_RDWR)
    for _ in range(5):
        try:
            fcntl.ioctl(n, termios.TIOCGWINSZ, b"\\0" * 8)
        except OSError:
            pass
    mark("touch")
    buf = bytearray(8 << 20)
    for i in range(0, len(buf), 4096):
        buf[i] = 1
""")


@pytest.fixture(scope="module")
def small_run():
    need_root()
    from kernelpilot.aipath.run import trace_ai
    return trace_ai([sys.executable, "-c", PROG])


def test_phases_and_device_files_from_a_real_run(small_run):
    r = small_run
    assert r["exit_code"] == 0 and r["source"] == "ebpf"
    assert [p["name"] for p in r["phases"]] == ["startup", "open devices", "touch"]
    dev = {p: v for p, v in r["phases"][1]["layers"][5]["detail"]["files"].items()}
    assert dev["/dev/zero"]["driver"] == "mem" and dev["/dev/zero"]["mmaps"] == 1
    assert dev["/dev/zero"]["mmap_bytes"] == 1 << 20
    assert dev["/dev/null"]["ioctls"] == 5
    touch = r["phases"][2]["layers"][2]
    assert touch["count"] >= (8 << 20) // 4096 // 2 # faults while touching 8 MiB (THP may fold some)
    assert r["phases"][2]["layers"][5]["count"] == 0
    names = [l["name"] for l in r["layers"]]
    assert names == ["user space", "system calls", "memory", "scheduler", "files / page cache", "devices", "hardware"]


def test_window_figures_add_up(small_run):
    r = small_run
    for i in (1, 2, 4, 5):  # counts over phases sum to the whole run's
        assert sum(p["layers"][i]["count"] for p in r["phases"]) == r["layers"][i]["count"]
    cpu = r["layers"][6]["time_s"]
    ru = r["host"]["rusage"]
    assert 0.2 * (ru["user_s"] + ru["system_s"]) <= cpu <= ru["user_s"] + ru["system_s"] + 0.3


def test_pytorch_training_run_path(tmp_path):
    need_root()
    pytest.importorskip("torch", reason="PyTorch not installed (.venv/bin/pip install torch==2.13.0)")
    out = tmp_path / "ai.json"
    keep = tmp_path / "ai.parquet"
    p = run_kpilot("aipath", "--demo", "--steps", "5", "--json", "-o", out, "--keep", keep, timeout=300)
    assert p.returncode == 0, p.stderr
    r = json.loads(out.read_text())
    assert r["exit_code"] == 0
    phases = {ph["name"]: ph for ph in r["phases"]}
    assert list(phases) == ["startup", "import", "model load", "train step", "inference"]
    imp = phases["import"]["layers"]
    assert imp[1]["detail"]["by_category"]["files"]["count"] > 500  # importing torch opens/reads many files
    assert imp[1]["detail"]["mmap_bytes"] > 50 << 20  # libtorch is mapped
    assert imp[2]["count"] > 1000  # and faulted in
    assert phases["model load"]["layers"][4]["count"] > 0  # the weights file went through the page cache
    assert phases["train step"]["layers"][6]["time_s"] > 0
    # the kept trace gives the same path when analysed again
    p2 = run_kpilot("aipath", "--from", keep, "--json")
    assert p2.returncode == 0, p2.stderr
    r2 = json.loads(p2.stdout)
    assert json.loads(p.stdout)["layers"] == r["layers"]  # --json stdout is JSON only (the run's output went to stderr)
    assert "final loss" in p.stderr
    assert [ph["name"] for ph in r2["phases"]] == list(phases)
    assert r2["layers"][1]["count"] == r["layers"][1]["count"]


def test_human_output_draws_the_layers():
    need_root()
    p = run_kpilot("aipath", "--", sys.executable, "-c", "import os; os.getpid()")
    assert p.returncode == 0, p.stderr
    for word in ("user space", "system calls", "scheduler", "devices", "hardware", "per phase", "run"):
        assert word in p.stdout


@pytest.mark.parametrize("args,msg", [
    ((), "exactly one of"),
    (("--demo", "--", "ls"), "exactly one of"),
    (("--from", "/nonexistent.parquet"), "trace not found"),
    (("--demo", "--steps", "0"), "--steps must be at least 1"),
    (("--", "/nonexistent/prog"), "command not found"),
])
def test_bad_input(args, msg):
    p = run_kpilot("aipath", *args)
    assert p.returncode != 0
    assert msg in p.stderr and "Traceback" not in p.stderr


def test_trace_without_syscalls_is_refused(tmp_path):
    from kernelpilot.traces.store import write_trace
    ev = S.empty(3)
    ev["kind"] = S.PAGE_FAULT
    ev["ts"] = [1, 2, 3]
    write_trace(tmp_path / "t.parquet", ev, {})
    p = run_kpilot("aipath", "--from", tmp_path / "t.parquet")
    assert p.returncode == 2 and "no system calls" in p.stderr
