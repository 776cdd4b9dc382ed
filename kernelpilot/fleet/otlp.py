"""OpenTelemetry export (OTLP over HTTP; the `scale` extra), beside `kpilot serve`'s Prometheus endpoint:
the agent's event log (decisions, actions, alerts, notes) as OTLP log records, and the sampler's figures
(or a running agent's, read from its state socket) as OTLP metrics, with the host and the agent's version
as resource attributes. A batch the endpoint refuses is counted and reported in one line, never raised."""
from __future__ import annotations

import json
import logging
import os
import platform
import socket
import sys
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from kernelpilot.agent.eventlog import FIELDS
from kernelpilot.errors import KpError

INSTALL = "OpenTelemetry export needs opentelemetry-sdk: pip install 'kernelpilot[scale]'"
FLUSH_EVERY = 1024  # log records between synchronous flushes
SEVERITY = {"alert": ("WARN", 13), "action": ("INFO", 9), "plan": ("INFO", 9), "decision": ("INFO", 9),
            "note": ("DEBUG", 5)}


def _otel():
    try:
        import opentelemetry.exporter.otlp.proto.http  # noqa: F401
        import opentelemetry.sdk  # noqa: F401
    except ImportError:
        raise KpError(INSTALL) from None


def parse_endpoint(url: str, what: str = "--endpoint") -> tuple[str, str, int]:
    """'http://HOST:PORT' (the collector's OTLP/HTTP base; /v1/logs and /v1/metrics are added)."""
    u = urlsplit(url)
    try:
        port = u.port
    except ValueError:
        port = -1
    if u.scheme not in ("http", "https") or not u.hostname or port == -1:
        raise KpError(f"bad {what} '{url}': give the OTLP/HTTP base URL, e.g. http://127.0.0.1:4318")
    return url.rstrip("/"), u.hostname, port or (443 if u.scheme == "https" else 80)


def check_reachable(url: str, timeout: float = 3.0) -> None:
    _, host, port = parse_endpoint(url)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise KpError(f"cannot reach the OTLP endpoint {url}: {e.strerror or e}") from None


def resource_attributes() -> dict:
    from kernelpilot import __version__
    try:
        from importlib.metadata import version
        ver = version("kernelpilot")
    except Exception:
        ver = __version__
    return {"service.name": "kernelpilot-agent", "service.version": ver, "host.name": socket.gethostname(),
            "host.arch": platform.machine(), "os.type": "linux", "os.version": platform.release(),
            "process.pid": os.getpid()}


# --- event-log records ----------------------------------------------------------------------------
def parse_record(line: str, where: str) -> dict:
    """One event-log line -> its record; a one-line error naming the file and line otherwise."""
    try:
        rec = json.loads(line)
    except ValueError:
        raise KpError(f"{where}: not a JSON line (an event log of `kpilot agent run` is JSON lines)") from None
    if not isinstance(rec, dict) or not all(k in rec for k in ("ts", "domain", "kind", "what")):
        raise KpError(f"{where}: not an event-log record (needs the fields {', '.join(FIELDS)})")
    try:
        rec["_ns"] = int(datetime.fromisoformat(str(rec["ts"]).replace("Z", "+00:00")).timestamp() * 1e9)
    except ValueError:
        raise KpError(f"{where}: field ts: not an RFC 3339 time ({str(rec['ts'])[:40]!r})") from None
    return rec


def read_log(path: Path) -> list[dict]:
    """Every record of an event log, all checked before anything is sent."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise KpError(f"event log not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise KpError(f"cannot read the event log {path}: {getattr(e, 'strerror', None) or e}") from None
    return [parse_record(s, f"{path}:{i}") for i, s in enumerate(lines, 1) if s.strip()]


def _flat(prefix: str, v, out: dict) -> None:
    if isinstance(v, dict):
        for k, x in v.items():
            _flat(f"{prefix}.{k}", x, out)
    elif isinstance(v, (bool, int, float, str)):
        out[prefix] = v
    elif isinstance(v, (list, tuple)) and v and all(isinstance(x, (int, float, str)) and not isinstance(x, bool)
                                                   for x in v) and len({type(x) for x in v}) == 1:
        out[prefix] = list(v)
    elif v is not None:
        out[prefix] = json.dumps(v, default=str)


def log_fields(rec: dict) -> dict:
    """An event-log record as the arguments of an OTLP log record."""
    text, num = SEVERITY.get(rec["kind"], ("INFO", 9))
    attrs = {"kpilot.domain": str(rec["domain"]), "kpilot.kind": str(rec["kind"])}
    if rec.get("pid") is not None:
        attrs["process.pid"] = int(rec["pid"])
    if rec.get("comm"):
        attrs["process.executable.name"] = str(rec["comm"])
    _flat("kpilot.detail", rec.get("detail") or {}, attrs)
    return {"timestamp": rec["_ns"], "severity_text": text, "severity_number": num, "body": str(rec["what"]),
            "attributes": attrs, "event_name": f"kpilot.{rec['domain']}.{rec['kind']}"}


class LogFollower:
    """New complete lines of a file, across the agent's size rotation (rename + new file)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.lineno = 0
        self.buf = b""
        try:
            self.f = open(self.path, "rb")
        except OSError as e:
            raise KpError(f"cannot follow the event log {self.path}: {e.strerror}") from None
        self.ino = os.fstat(self.f.fileno()).st_ino

    def lines(self) -> list[tuple[str, str]]:
        out = self._drain()
        try:
            st = os.stat(self.path)
        except OSError:
            return out  # between the rename and the new file
        if st.st_ino != self.ino or st.st_size < self.f.tell():
            self.f.close()
            self.f, self.ino, self.buf, self.lineno = open(self.path, "rb"), st.st_ino, b"", 0
            out += self._drain()
        return out

    def _drain(self) -> list[tuple[str, str]]:
        self.buf += self.f.read()
        *done, self.buf = self.buf.split(b"\n")
        out = []
        for raw in done:
            self.lineno += 1
            if raw.strip():
                out.append((raw.decode(errors="replace"), f"{self.path}:{self.lineno}"))
        return out

    def close(self) -> None:
        self.f.close()


# --- the exporter ---------------------------------------------------------------------------------
class _Errors(logging.Handler):
    """Keeps the OpenTelemetry SDK's last complaint (shown in our one-line drop message) quiet."""

    def __init__(self):
        super().__init__()
        self.last = ""

    def emit(self, record):
        self.last = record.getMessage().splitlines()[0][:200]


class OtlpExport:
    """Log records and metrics to one OTLP/HTTP endpoint; counts what was sent and dropped."""

    def __init__(self, endpoint: str, timeout: float = 5.0, sampler=None, attributes: dict | None = None,
                 metrics_interval: float | None = None, metrics: bool = True):
        _otel()
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.metrics import Observation
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExportResult
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import MetricExportResult, PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource

        base, _, _ = parse_endpoint(endpoint)
        self.endpoint, self.sampler, self.snapshot = base, sampler, None
        self.counts = {"logs_sent": 0, "logs_dropped": 0, "metric_exports": 0, "metric_exports_dropped": 0}
        self.errors = _Errors()
        otel_log = logging.getLogger("opentelemetry")
        otel_log.addHandler(self.errors)
        otel_log.propagate = False
        self._Observation = Observation
        outer = self

        class Logs(OTLPLogExporter):
            def export(self, batch):
                r = super().export(batch)
                ok = r == LogRecordExportResult.SUCCESS
                outer._tally("logs", len(batch), ok)
                return r

        class Metrics(OTLPMetricExporter):
            def export(self, data, timeout_millis: float = 10_000, **kw):
                r = super().export(data, timeout_millis=timeout_millis, **kw)
                outer._tally("metric_exports", 1, r == MetricExportResult.SUCCESS)
                return r

        self.resource = Resource.create({**resource_attributes(), **(attributes or {})})
        self.logs = LoggerProvider(resource=self.resource)
        self.logs.add_log_record_processor(BatchLogRecordProcessor(
            Logs(endpoint=f"{base}/v1/logs", timeout=timeout), export_timeout_millis=int(timeout * 1000),
            max_queue_size=4 * FLUSH_EVERY, max_export_batch_size=FLUSH_EVERY // 2))
        self._pending = 0
        self.logger = self.logs.get_logger("kernelpilot.agent")
        self.reader = PeriodicExportingMetricReader(Metrics(endpoint=f"{base}/v1/metrics", timeout=timeout),
                                                    export_interval_millis=metrics_interval * 1000
                                                    if metrics_interval else float("inf"))
        self.meters = MeterProvider(resource=self.resource, metric_readers=[self.reader] if metrics else [])
        meter = self.meters.get_meter("kernelpilot")
        self.events = meter.create_counter("kpilot.agent.events", unit="{event}",
                                           description="event-log records by domain and kind")
        if sampler is not None:
            self._sampler_gauges(meter)

    def _tally(self, what: str, n: int, ok: bool) -> None:
        if what == "logs":
            self.counts["logs_sent" if ok else "logs_dropped"] += n
        else:
            self.counts["metric_exports" if ok else "metric_exports_dropped"] += n
        if not ok:
            why = self.errors.last or "refused"
            print(f"kpilot export: dropped {n} {'log records' if what == 'logs' else 'metric export'} "
                  f"to {self.endpoint}: {why}", file=sys.stderr, flush=True)

    def _sampler_gauges(self, meter) -> None:
        from kernelpilot.report.metrics import PROC_GAUGES
        O = self._Observation

        def proc(attr):
            def cb(_options):
                snap = self.snapshot
                return [O(float(getattr(p, attr)), {"process.pid": p.pid, "process.executable.name": p.comm,
                                                    "kpilot.class": p.klass})
                        for p in (snap.procs if snap else []) if getattr(p, attr) is not None]
            return cb

        for name, attr, doc in PROC_GAUGES:
            meter.create_observable_gauge(f"kpilot.process.{name}", [proc(attr)], description=doc)

        def probes(attr):
            def cb(_options):
                snap = self.snapshot
                return [O(float(getattr(b, attr)), {"bpf.prog.id": b.id, "bpf.prog.name": b.name})
                        for b in (snap.probes if snap else []) if getattr(b, attr) is not None]
            return cb

        meter.create_observable_gauge("kpilot.probe.events_per_second", [probes("events_s")],
                                      description="BPF program runs per second")
        meter.create_observable_gauge("kpilot.probe.ns_per_run", [probes("ns_per_run")],
                                      description="BPF program nanoseconds per run")
        meter.create_observable_gauge(
            "kpilot.agent.actions", [lambda _o: [O(sum(p.action != "-" for p in self.snapshot.procs))]
                                     if self.snapshot else []],
            description="tasks with a journaled agent action")
        meter.create_observable_gauge(
            "kpilot.events_observed", [lambda _o: [O(self.snapshot.events)] if self.snapshot else []],
            description="events seen by kernelpilot's probes (or the running agent's)")

    def emit(self, rec: dict) -> None:
        """One event-log record (as EventLog.write returns it, or parse_record read it)."""
        from opentelemetry._logs import SeverityNumber
        if "_ns" not in rec:
            rec = parse_record(json.dumps(rec, default=str), "event")
        f = log_fields(rec)
        f["severity_number"] = SeverityNumber(f["severity_number"])
        self.logger.emit(**f)
        self._pending += 1
        if self._pending >= FLUSH_EVERY:  # the SDK's queue drops what does not fit: never let it fill
            self.logs.force_flush()
            self._pending = 0
        self.events.add(1, {"kpilot.domain": str(rec["domain"]), "kpilot.kind": str(rec["kind"])})

    def sample(self) -> None:
        if self.sampler is not None:
            self.snapshot = self.sampler.sample()

    def flush(self) -> None:
        """Send what is buffered: the log records, then one metric export."""
        self.logs.force_flush()
        self.meters.force_flush()

    def close(self) -> dict:
        try:
            self.flush()
        finally:
            self.logs.shutdown()
            self.meters.shutdown()
            logging.getLogger("opentelemetry").removeHandler(self.errors)
            if self.sampler is not None:
                self.sampler.close()
        return dict(self.counts)


def for_agent(endpoint: str) -> OtlpExport:
    """The agent's own exporter ([export] otlp_endpoint): its records as they are written, its event
    counts every 10 s; a collector that is down costs counted drops, not the agent."""
    return OtlpExport(endpoint, timeout=2.0, metrics_interval=10.0)


def _emit_lines(exp: OtlpExport, lines) -> None:
    """A line that is not a record (a torn write, another program's output) is skipped, counted, said."""
    for line, where in lines:
        try:
            rec = parse_record(line, where)
        except KpError as e:
            exp.counts["lines_skipped"] = exp.counts.get("lines_skipped", 0) + 1
            print(f"kpilot export: skipped {e}", file=sys.stderr, flush=True)
            continue
        exp.emit(rec)


def run(endpoint: str, from_log: Path | None = None, follow: Path | None = None, duration: float | None = None,
        interval: float = 10.0, metrics: bool = True, timeout: float = 5.0, stop=None) -> dict:
    """`kpilot export otlp`: one past log (from_log), or a live log and/or the host's metrics until
    `duration` runs out (or `stop()` says so); returns the counts."""
    if from_log is not None and follow is not None:
        raise KpError("give --from-log FILE or --follow FILE, not both")
    if interval <= 0:
        raise KpError("--interval must be positive")
    if duration is not None and duration < 0:
        raise KpError("--duration must be >= 0")
    parse_endpoint(endpoint)
    if from_log is None and follow is None and not metrics:
        raise KpError("nothing to export: give --from-log FILE or --follow FILE, or leave the metrics on")
    _otel()
    records = read_log(from_log) if from_log is not None else None
    if follow is not None:
        LogFollower(follow).close()  # readable: a one-line error before anything starts
    check_reachable(endpoint, timeout)
    tail = LogFollower(follow) if follow is not None else None
    sampler = None
    if metrics and from_log is None:
        from kernelpilot.report.sampler import Sampler
        sampler = Sampler(bpf=True)
    exp = OtlpExport(endpoint, timeout, sampler, metrics=metrics)
    try:
        if records is not None:
            for r in records:
                exp.emit(r)
            return exp.close()
        end = None if duration is None else time.monotonic() + duration
        next_sample = time.monotonic()
        while True:
            if tail is not None:
                _emit_lines(exp, tail.lines())
                exp.logs.force_flush()
            now = time.monotonic()
            if now >= next_sample:
                exp.sample()
                exp.meters.force_flush()
                next_sample = now + interval
            if (end is not None and now >= end) or (stop and stop()):
                break
            time.sleep(min(0.2, interval, max(0.0, (end or now + 1) - now)))
        if tail is not None:  # what came in the last moment
            _emit_lines(exp, tail.lines())
        exp.sample()
        return exp.close()
    except BaseException:
        exp.close()
        raise
    finally:
        if tail is not None:
            tail.close()
