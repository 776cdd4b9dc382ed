"""`kpilot export otlp` against a real OTLP/HTTP receiver on loopback (this process), decoded with
opentelemetry-proto's classes: records, resource attributes, metrics, rotation, bad input."""
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cli_checks import free_port, one_line_error  # noqa: E402

pytest.importorskip("opentelemetry.sdk", reason="pip install 'kernelpilot[scale]'")
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (ExportLogsServiceRequest,  # noqa: E402
                                                                    ExportLogsServiceResponse)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (  # noqa: E402
    ExportMetricsServiceRequest, ExportMetricsServiceResponse)

import kernelpilot  # noqa: E402
from kernelpilot.agent.eventlog import EventLog  # noqa: E402
from kernelpilot.agent.pilot import Decision  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def anyvalue(v):
    k = v.WhichOneof("value")
    if k == "array_value":
        return [anyvalue(x) for x in v.array_value.values]
    return getattr(v, k) if k else None


def attrs(kvs) -> dict:
    return {kv.key: anyvalue(kv.value) for kv in kvs}


class Receiver:
    """OTLP/HTTP on 127.0.0.1: keeps every decoded request; `status` answers other than 200 on demand."""

    def __init__(self):
        self.logs, self.metrics, self.lock, self.status = [], [], threading.Lock(), 200
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if outer.status != 200:
                    self.send_response(outer.status)
                    self.end_headers()
                    return
                if self.path == "/v1/logs":
                    req, resp = ExportLogsServiceRequest(), ExportLogsServiceResponse()
                    req.ParseFromString(body)
                    with outer.lock:
                        outer.logs.append(req)
                elif self.path == "/v1/metrics":
                    req, resp = ExportMetricsServiceRequest(), ExportMetricsServiceResponse()
                    req.ParseFromString(body)
                    with outer.lock:
                        outer.metrics.append(req)
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                out = resp.SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def log_records(self):
        """(resource attributes, record) for every log record received."""
        with self.lock:
            return [(attrs(rl.resource.attributes), r) for req in self.logs for rl in req.resource_logs
                    for sl in rl.scope_logs for r in sl.log_records]

    def metric_points(self, name):
        with self.lock:
            out = []
            for req in self.metrics:
                for rm in req.resource_metrics:
                    for sm in rm.scope_metrics:
                        for m in sm.metrics:
                            if m.name == name:
                                data = getattr(m, m.WhichOneof("data"))
                                out += [(attrs(rm.resource.attributes), attrs(p.attributes), p)
                                        for p in data.data_points]
            return out

    def close(self):
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def write_log(path, decisions):
    log = EventLog(path)
    recs = [log.write(d) for d in decisions]
    log.close()
    return recs


DECISIONS = [
    Decision("security", "alert", "nc[4242] suspicious system calls: score 0.93", pid=4242, comm="nc",
             detail={"score": 0.93, "windows": 3, "rules": ["reverse-shell"]}),
    Decision("sched", "action", "nice 0 -> 5: make[77]", pid=77, comm="make", detail={"knobs": {"nice": 5}}),
    Decision("memory", "decision", "cc1[9] faults on /usr/lib/x.so are predictable", pid=9, comm="cc1"),
    Decision("agent", "note", "started"),
]


def cli(*args, timeout=60, env=None):
    return subprocess.run([sys.executable, "-m", "kernelpilot.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env={**os.environ, "COLUMNS": "200", **(env or {})})


def test_from_log_records_and_resource(tmp_path, receiver):
    log = tmp_path / "agent.jsonl"
    recs = write_log(log, DECISIONS)
    p = cli("export", "otlp", "--endpoint", receiver.url, "--from-log", log, "--json")
    assert p.returncode == 0, p.stderr
    counts = json.loads(p.stdout)
    assert counts["logs_sent"] == 4 and counts["logs_dropped"] == 0 and counts["metric_exports"] >= 1
    got = receiver.log_records()
    assert len(got) == 4
    res = got[0][0]
    assert res["host.name"] == socket.gethostname()
    assert res["service.name"] == "kernelpilot-agent"
    assert res["service.version"] == kernelpilot.__version__
    by_body = {r.body.string_value: r for _, r in got}
    assert set(by_body) == {d.what for d in DECISIONS}
    alert = by_body[DECISIONS[0].what]
    a = attrs(alert.attributes)
    assert a["kpilot.domain"] == "security" and a["kpilot.kind"] == "alert"
    assert a["process.pid"] == 4242 and a["process.executable.name"] == "nc"
    assert a["kpilot.detail.score"] == pytest.approx(0.93) and a["kpilot.detail.rules"] == ["reverse-shell"]
    assert alert.severity_text == "WARN" and alert.severity_number == 13
    assert alert.event_name == "kpilot.security.alert"
    assert attrs(by_body[DECISIONS[1].what].attributes)["kpilot.detail.knobs.nice"] == 5
    # the record's own time (the event log's ts), not the export's
    from datetime import datetime
    ts = datetime.fromisoformat(recs[0]["ts"].replace("Z", "+00:00")).timestamp()
    assert abs(alert.time_unix_nano / 1e9 - ts) < 0.002
    pts = receiver.metric_points("kpilot.agent.events")
    by_kind = {(a["kpilot.domain"], a["kpilot.kind"]): p.as_int for _, a, p in pts}
    assert by_kind[("security", "alert")] == 1 and by_kind[("sched", "action")] == 1 and len(by_kind) == 4
    assert pts[0][0]["host.name"] == socket.gethostname()


def test_from_log_sends_every_record_of_a_long_log(tmp_path, receiver):
    """More records than the SDK's batch queue holds: none may be dropped silently."""
    log = tmp_path / "agent.jsonl"
    write_log(log, DECISIONS * 1000)
    p = cli("export", "otlp", "--endpoint", receiver.url, "--from-log", log, "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["logs_sent"] == 4000 and len(receiver.log_records()) == 4000
    pts = receiver.metric_points("kpilot.agent.events")
    assert sum(p.as_int for _, _, p in pts) == 4000


def test_follow_rotation_metrics_and_sigterm(tmp_path, receiver):
    log = tmp_path / "agent.jsonl"
    write_log(log, DECISIONS[:1])
    p = subprocess.Popen([sys.executable, "-m", "kernelpilot.cli", "export", "otlp", "--endpoint", receiver.url,
                          "--follow", str(log), "--interval", "0.5", "--duration", "300", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        def wait_for(cond, what, limit=30):
            end = time.monotonic() + limit
            while time.monotonic() < end:
                if cond():
                    return
                assert p.poll() is None, p.communicate()
                time.sleep(0.1)
            raise AssertionError(f"timed out waiting for {what}")

        # the first deadline includes start-up (imports of the OpenTelemetry SDK), which took over
        # 30 s on a cold host at load 17; SIGTERM ends the run, --duration only bounds it
        wait_for(lambda: len(receiver.log_records()) == 1, "the record already in the log", limit=180)
        with open(log, "a") as f:  # a line written in two parts arrives once, whole
            line = json.dumps({"ts": "2026-01-02T03:04:05.678Z", "domain": "sched", "kind": "decision",
                               "pid": 1, "comm": "x", "what": "torn", "detail": {}})
            f.write(line[:20])
            f.flush()
            time.sleep(0.3)
            f.write(line[20:] + "\nnot json\n")
        wait_for(lambda: len(receiver.log_records()) == 2, "the appended record")
        log.rename(tmp_path / "agent.jsonl.1")  # what RotatingFileHandler does
        write_log(log, DECISIONS[1:3])
        wait_for(lambda: len(receiver.log_records()) == 4, "the records after rotation")
        wait_for(lambda: receiver.metric_points("kpilot.process.cpu_ratio"), "process metrics")
        wait_for(lambda: receiver.metric_points("kpilot.events_observed"), "events_observed")
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    assert f"skipped {log}:3: not a JSON line" in err  # the line after the torn one
    counts = json.loads(out)
    assert counts["logs_sent"] == 4 and counts["lines_skipped"] == 1
    bodies = [r.body.string_value for _, r in receiver.log_records()]
    assert bodies == [DECISIONS[0].what, "torn", DECISIONS[1].what, DECISIONS[2].what]
    res, a, pt = receiver.metric_points("kpilot.process.cpu_ratio")[0]
    assert res["host.name"] == socket.gethostname() and "service.version" in res
    assert isinstance(a["process.pid"], int) and a["process.executable.name"]


def test_refused_batches_are_counted_one_line(tmp_path, receiver):
    log = tmp_path / "agent.jsonl"
    write_log(log, DECISIONS)
    receiver.status = 400
    p = cli("export", "otlp", "--endpoint", receiver.url, "--from-log", log, "--timeout", "2")
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    assert "dropped 4 log records" in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("kpilot: error: 4 log records")


def cli_many(*argvs):
    """Several CLI runs at once (each is mostly interpreter start-up)."""
    ps = [subprocess.Popen([sys.executable, "-m", "kernelpilot.cli", *map(str, a)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "COLUMNS": "200"})
          for a in argvs]
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=60), *p.communicate()) for p in ps]


def test_bad_input_one_line(tmp_path):
    log = tmp_path / "agent.jsonl"
    write_log(log, DECISIONS[:1])
    bad, bad1 = tmp_path / "bad.jsonl", tmp_path / "bad1.jsonl"
    bad.write_text(log.read_text() + "{\"ts\": 1}\n")
    bad1.write_text("hello\n")
    ep = "http://127.0.0.1:4318"
    runs = cli_many(
        ("export", "otlp", "--endpoint", f"http://127.0.0.1:{free_port()}", "--from-log", log),
        ("export", "otlp", "--endpoint", "127.0.0.1:4318", "--from-log", log),
        ("export", "otlp", "--endpoint", "http://127.0.0.1:99999", "--from-log", log),
        ("export", "otlp", "--endpoint", ep, "--from-log", tmp_path / "none"),
        ("export", "otlp", "--endpoint", ep, "--from-log", bad),
        ("export", "otlp", "--endpoint", ep, "--from-log", bad1),
        ("export", "otlp", "--endpoint", ep, "--from-log", log, "--follow", log),
        ("export", "otlp", "--endpoint", ep, "--no-metrics"),
        ("export", "otlp", "--endpoint", ep, "--follow", tmp_path / "none"))
    want = [("cannot reach the OTLP endpoint", "refused"), ("bad --endpoint",), ("bad --endpoint",),
            ("event log not found",), (f"{bad}:2", "not an event-log record"), (f"{bad1}:1", "not a JSON line"),
            ("not both",), ("nothing to export",), ("cannot follow the event log", "No such file")]
    for p, words in zip(runs, want):
        one_line_error(p, *words)


def test_missing_opentelemetry_says_how(tmp_path):
    block = tmp_path / "block" / "opentelemetry"
    block.mkdir(parents=True)
    (block / "__init__.py").write_text("raise ImportError('blocked for the test')\n")
    log = tmp_path / "agent.jsonl"
    write_log(log, DECISIONS[:1])
    p = cli("export", "otlp", "--endpoint", "http://127.0.0.1:4318", "--from-log", log,
            env={"PYTHONPATH": f"{block.parent}:{ROOT}"})
    one_line_error(p, "pip install 'kernelpilot[scale]'")


def test_agent_exports_its_records(tmp_path, receiver, monkeypatch):
    """[export] otlp_endpoint: the agent's own records reach the collector as it writes them."""
    from kernelpilot.agent import config as C
    from kernelpilot.agent.host import AgentHost
    monkeypatch.setenv("KPILOT_RUN_DIR", str(tmp_path / "run"))
    cfg = C.validate({"export": {"otlp_endpoint": receiver.url}, "sched": {"enabled": False},
                      "security": {"enabled": False}, "memory": {"enabled": False}, "aipath": {"enabled": False}})
    log = tmp_path / "e.jsonl"
    h = AgentHost(cfg, live=False, lock=False, log_path=log)
    h.start()
    try:
        h.run(None)
    finally:
        h.stop()
    written = [json.loads(s)["what"] for s in log.read_text().splitlines()]
    got = receiver.log_records()
    assert [r.body.string_value for _, r in got] == written and len(written) >= 2
    assert got[0][0]["host.name"] == socket.gethostname()
    assert {a["kpilot.kind"]: p.as_int for _, a, p in receiver.metric_points("kpilot.agent.events")} == {"note": len(written)}


def test_agent_config_checks_the_endpoint(tmp_path):
    bad = tmp_path / "agent.toml"
    bad.write_text('[export]\notlp_endpoint = "localhost:4318"\n')
    one_line_error(cli("agent", "run", "--config", bad, "--duration", "1"), f"{bad}: export.otlp_endpoint",
                   "http://127.0.0.1:4318")
    bad.write_text('[export]\notlp = "http://127.0.0.1:4318"\n')
    one_line_error(cli("agent", "run", "--config", bad, "--duration", "1"), "unknown key 'otlp'")


def test_collector_going_away_is_counted_not_raised(tmp_path, receiver):
    log = tmp_path / "agent.jsonl"
    write_log(log, DECISIONS[:1])
    p = subprocess.Popen([sys.executable, "-m", "kernelpilot.cli", "export", "otlp", "--endpoint", receiver.url,
                          "--follow", str(log), "--no-metrics", "--timeout", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    err = []
    t = threading.Thread(target=lambda: err.extend(p.stderr), daemon=True)
    t.start()
    try:
        end = time.monotonic() + 30
        while len(receiver.log_records()) < 1 and time.monotonic() < end:
            assert p.poll() is None, err
            time.sleep(0.1)
        assert len(receiver.log_records()) == 1
        receiver.close()  # the collector goes away
        write_log(log, DECISIONS[1:2])
        end = time.monotonic() + 30
        while not any("dropped 1 log records" in s for s in err) and time.monotonic() < end:
            assert p.poll() is None, err
            time.sleep(0.1)
        assert p.poll() is None  # still running
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
        t.join(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    text = "".join(err)
    assert p.returncode != 0 and "Traceback" not in text
    assert any(s.startswith("kpilot export: dropped 1 log records") for s in err), text
    assert err[-1].startswith("kpilot: error: 1 log records and 0 metric exports dropped"), text
