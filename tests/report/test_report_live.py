"""kpilot top under Textual's pilot and kpilot serve --metrics, on the live host."""
import asyncio
import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import ROOT, need_root, run_kpilot
from kernelpilot.report.live import parse_listen


def test_top_shows_processes_and_probes():
    need_root()
    from kernelpilot.agent.top import PROBE_COLS, PROC_COLS, TopApp
    from kernelpilot.report.sampler import Sampler
    # busy until killed: on a cold or loaded machine the sampler's probes can take longer to load
    # than a fixed-length hog lives
    hog = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<300: [0]*100000"])

    def cpu_s():
        f = open(f"/proc/{hog.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

    async def drive():
        t0, c0 = time.monotonic(), cpu_s()
        app = TopApp(Sampler(events=["sched", "faults"]), interval=0.5)
        async with app.run_test(size=(200, 60)) as pilot:
            for _ in range(40):
                await pilot.pause(0.25)
                if app.refreshes >= 3:
                    break
            procs = app.query_one("#procs")
            probes = app.query_one("#probes")
            rows = [procs.get_row_at(i) for i in range(procs.row_count)]
            prows = [probes.get_row_at(i) for i in range(probes.row_count)]
            share = 100 * (cpu_s() - c0) / (time.monotonic() - t0)
            await pilot.press("p")
            paused = app.paused
            await pilot.press("q")
            return rows, prows, paused, app.snapshot, share

    try:
        rows, prows, paused, snap, share = asyncio.run(drive())
    finally:
        hog.kill()
    assert paused
    mine = [r for r in rows if r[0] == str(hog.pid)]
    assert mine, "the busy process is listed"
    row = dict(zip(PROC_COLS, mine[0]))
    # top's CPU% (its last interval) agrees with the share /proc shows over the run, whatever
    # the host's load
    assert share / 4 <= float(row["CPU%"]) <= share * 4 + 5, (row["CPU%"], share)
    assert row["CLASS"] in ("batch", "latency")
    assert row["PRED us"] != "-" and float(row["ANOMALY"]) >= 0
    names = {dict(zip(PROBE_COLS, r))["PROGRAM"]: dict(zip(PROBE_COLS, r)) for r in prows}
    assert "kp_sched_switch" in names and "kp_page_fault" in names
    sw = names["kp_sched_switch"]
    assert float(sw["EVENTS/s"].replace(",", "")) > 0 and sw["NS/RUN"] != "-"
    assert snap.events > 0


def test_listen_address_defaults_to_loopback():
    assert parse_listen(":9464") == ("127.0.0.1", 9464)
    assert parse_listen("9464") == ("127.0.0.1", 9464)
    assert parse_listen("0.0.0.0:80") == ("0.0.0.0", 80)


def test_serve_metrics_for_prometheus():
    need_root()
    port = 19464 + os.getpid() % 1000
    p = subprocess.Popen([sys.executable, "-m", "kernelpilot.cli", "serve", "--metrics", f":{port}",
                          "--interval", "0.5", "--duration", "20", "--events", "sched"],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "127.0.0.1" in p.stdout.readline()
        body = ""
        for _ in range(40):
            time.sleep(0.5)
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            except OSError:
                continue
            if "kpilot_probe_ns_per_run{" in body and "kpilot_process_cpu_ratio{" in body:
                break
        assert re.search(r'kpilot_process_faults_per_second\{class="[a-z]+",comm="[^"]*",pid="\d+"\} ', body)
        assert re.search(r'kpilot_probe_events_per_second\{id="\d+",program="kp_sched_switch"\} [0-9.e+]+', body)
        assert "kpilot_events_observed" in body
    finally:
        p.terminate()
        p.wait(10)


@pytest.mark.parametrize("args,msg", [
    (("serve", "--metrics", "localhost:notaport"), "bad --metrics address"),
    (("serve", "--metrics", ":70000"), "bad --metrics address"),
    (("serve", "--interval", "0"), "--interval must be positive"),
    (("top", "--interval", "-1"), "--interval must be positive"),
    (("top", "--events", "bogus"), "unknown event group"),
    (("top", "--sched-model", "/nonexistent.json"), "scheduling model not found"),
])
def test_bad_input(args, msg):
    p = run_kpilot(*args, timeout=60)
    assert p.returncode == 2 and msg in p.stderr and "Traceback" not in p.stderr
