"""`kpilot top`: a live terminal view (Textual), like top/bpftop, of what the agent sees and does.

Upper table: processes (class, anomaly score, predicted burst, fault rate, the agent's last action).
Lower table: BPF programs on the host (events/s, ns per run). Keys: q quits, p pauses."""
from __future__ import annotations

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

PROC_COLS = ("PID", "COMM", "CPU%", "FAULTS/s", "MAJ/s", "CTX/s", "BURST us", "PRED us", "CLASS", "ANOMALY",
             "EVENTS/s", "LAST ACTION")
PROBE_COLS = ("ID", "PROGRAM", "TYPE", "EVENTS/s", "NS/RUN", "RUNS")
PROG_TYPES = {5: "tracepoint", 17: "raw_tp", 7: "perf_event", 26: "tracing", 27: "struct_ops", 2: "kprobe",
              1: "socket", 3: "sched_cls", 6: "xdp", 8: "cgroup_skb", 29: "lsm"}


def _f(v, fmt="{:,.1f}") -> str:
    return "-" if v is None else fmt.format(v)


class TopApp(App):
    CSS = """
    #status { height: 1; background: $boost; }
    #procs { height: 2fr; }
    #probes { height: 1fr; }
    """
    BINDINGS = [Binding("q", "quit", "quit"), Binding("p", "pause", "pause/resume")]
    TITLE = "kpilot top"

    def __init__(self, sampler, interval: float = 1.0, duration: float | None = None):
        super().__init__()
        self.sampler, self.interval, self.duration = sampler, interval, duration
        self.paused = False
        self.snapshot = None
        self.refreshes = 0

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("starting...", id="status")
        yield DataTable(id="procs", zebra_stripes=True, cursor_type="row")
        yield DataTable(id="probes", zebra_stripes=True, cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#procs", DataTable).add_columns(*PROC_COLS)
        self.query_one("#probes", DataTable).add_columns(*PROBE_COLS)
        self.sampler.sample()  # rates need a previous sample
        self.set_interval(self.interval, self.tick)
        if self.duration:
            self.set_timer(self.duration, self.exit)

    def action_pause(self) -> None:
        self.paused = not self.paused
        self.query_one("#status", Static).update("paused (p resumes)" if self.paused else "resuming...")

    def tick(self) -> None:
        if self.paused:
            return
        s = self.snapshot = self.sampler.sample()
        procs = self.query_one("#procs", DataTable)
        procs.clear()
        for p in s.procs:
            procs.add_row(str(p.pid), p.comm, f"{p.cpu * 100:.1f}", _f(p.faults_s), _f(p.majflt_s), _f(p.ctx_s),
                          _f(p.burst_us, "{:,.0f}"), _f(p.pred_burst_us, "{:,.0f}"), p.klass,
                          f"{p.anomaly:.1f}", _f(p.events_s, "{:,.0f}"), p.action)
        probes = self.query_one("#probes", DataTable)
        probes.clear()
        for b in s.probes:
            probes.add_row(str(b.id), b.name, PROG_TYPES.get(b.type, str(b.type)), _f(b.events_s, "{:,.0f}"),
                           _f(b.ns_per_run), f"{b.run_cnt:,}")
        self.refreshes += 1
        note = ("  |  " + "; ".join(s.notes)) if s.notes else ""
        self.query_one("#status", Static).update(
            f"{len(s.procs)} processes, {len(s.probes)} BPF programs, {s.events:,} events observed{note}")

    def on_unmount(self) -> None:
        self.sampler.close()
