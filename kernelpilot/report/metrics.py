"""Prometheus exposition of the sampler's figures (prometheus-client), loopback by default."""
from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily

PROC_GAUGES = (("cpu_ratio", "cpu", "CPU share of one core"), ("faults_per_second", "faults_s", "page faults per second"),
               ("major_faults_per_second", "majflt_s", "major page faults per second"),
               ("context_switches_per_second", "ctx_s", "context switches per second"),
               ("predicted_burst_microseconds", "pred_burst_us", "predicted CPU burst (EWMA)"),
               ("anomaly_score", "anomaly", "largest rate deviation from the process's history (std devs)"))


class _Collector:
    def __init__(self, server):
        self.server = server

    def collect(self):
        snap = self.server.snapshot
        if snap is None:
            return
        for name, attr, doc in PROC_GAUGES:
            g = GaugeMetricFamily(f"kpilot_process_{name}", doc, labels=["pid", "comm", "class"])
            for p in snap.procs:
                v = getattr(p, attr)
                if v is not None:
                    g.add_metric([str(p.pid), p.comm, p.klass], float(v))
            yield g
        ev = GaugeMetricFamily("kpilot_probe_events_per_second", "BPF program runs per second", labels=["id", "program"])
        ns = GaugeMetricFamily("kpilot_probe_ns_per_run", "BPF program nanoseconds per run", labels=["id", "program"])
        for b in snap.probes:
            ev.add_metric([str(b.id), b.name], b.events_s)
            if b.ns_per_run is not None:
                ns.add_metric([str(b.id), b.name], b.ns_per_run)
        yield ev
        yield ns
        acts = GaugeMetricFamily("kpilot_agent_actions", "tasks with a journaled agent action", labels=[])
        acts.add_metric([], sum(1 for p in snap.procs if p.action != "-"))
        yield acts
        yield GaugeMetricFamily("kpilot_events_observed", "events seen by kernelpilot's probes", value=snap.events)


class MetricsServer:
    def __init__(self, sampler, host: str, port: int):
        from kernelpilot.errors import KpError
        self.sampler, self.lock = sampler, threading.Lock()
        self.snapshot = None
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self))
        try:
            self.httpd, self.thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as e:
            raise KpError(f"cannot listen on {host}:{port}: {e.strerror}") from None
        # the first sample is served at once (rates start from the next one), so a scrape that
        # arrives as soon as the port listens already finds every kpilot_ metric
        self.snapshot = self.sampler.sample()

    def update(self) -> None:
        self.snapshot = self.sampler.sample()

    def close(self) -> None:
        self.httpd.shutdown()
        self.sampler.close()


def start(sampler, host: str, port: int) -> MetricsServer:
    return MetricsServer(sampler, host, port)
