"""Debian's Prometheus server scrapes `kpilot serve` on loopback; its query API shows kpilot's series."""
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from cli_checks import free_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def query(port, expr):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read())["data"]["result"]
    except OSError:
        return None


def test_prometheus_scrapes_kpilot_serve(tmp_path):
    prom = shutil.which("prometheus")
    if prom is None:
        pytest.skip("Debian's prometheus is not installed (scripts/install-sysdeps.sh test installs it)")
    kp_port, prom_port = free_port(), free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        f"scrape_configs:\n  - job_name: kpilot\n    static_configs:\n      - targets: ['127.0.0.1:{kp_port}']\n")
    serve = subprocess.Popen([sys.executable, "-m", "kernelpilot.cli", "serve", "--metrics", f"127.0.0.1:{kp_port}",
                              "--interval", "0.5", "--duration", "90"], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    server = subprocess.Popen([prom, f"--config.file={tmp_path / 'prometheus.yml'}",
                               f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        end, up, series = time.monotonic() + 60, None, None
        while time.monotonic() < end:
            assert serve.poll() is None, serve.stderr.read()
            assert server.poll() is None, server.stderr.read()[-2000:]
            up = query(prom_port, 'up{job="kpilot"}')
            series = query(prom_port, 'kpilot_process_cpu_ratio{job="kpilot"}')
            if up and up[0]["value"][1] == "1" and series:
                break
            time.sleep(0.5)
        assert up and up[0]["value"][1] == "1", up
        assert series and all("pid" in s["metric"] and "comm" in s["metric"] for s in series)
        assert query(prom_port, 'kpilot_events_observed{job="kpilot"}')
    finally:
        for p in (server, serve):
            if p.poll() is None:
                p.terminate()
        for p in (server, serve):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
