"""The agent: one process, one observer sensor, one pilot per domain, one journal, one event log.

    host = AgentHost(cfg, enforce=False).start()   # lock, log, journal, sensor, pilots, socket
    host.run(duration=30)                          # SIGHUP reloads, SIGINT/SIGTERM stop
    summary = host.stop()                          # pilots closed, journal rolled back
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path

from kernelpilot.agent import config as C
from kernelpilot.agent.eventlog import EventLog
from kernelpilot.agent.pilot import Decision
from kernelpilot.errors import KpError

log = logging.getLogger("kernelpilot.agent")


class StateServer:
    """Answers every connection on a unix socket with the agent's latest state (one JSON line)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.blob = b"{}\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.bind(str(self.path))
        except OSError as e:
            self.sock.close()
            raise KpError(f"cannot create the state socket {self.path}: {e.strerror}") from None
        os.chmod(self.path, 0o660)
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True, name="kp-state")
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            try:
                c.settimeout(1.0)
                c.sendall(self.blob)
            except OSError:
                pass
            finally:
                c.close()

    def close(self):
        self.stopping = True
        self.thread.join(2)
        self.sock.close()
        self.path.unlink(missing_ok=True)


# processes each domain's lists in the state socket carry (AI-path layers: the busiest; the final summary
# has the config's `top`): with `top = 20000` (the soak's) every process's layers made the blob 1.6 MB
STATE_TOP = 20


def publish_interval(cost_s: float, share: float = 0.05) -> float:
    """Seconds to the next state publication: each second, unless publishing (which grows with the
    processes the pilots know: 20,000 after a 30-min soak took 0.39 s of each loop second) would
    take more than `share` of the loop."""
    return max(1.0, cost_s / share)


class AgentHost:
    def __init__(self, cfg: dict, enforce: bool = False, config_path: Path | None = None,
                 log_path: Path | None = None, json_out: bool = False, live: bool = True,
                 socket_path: Path | None = None, lock: bool = True, replay_path: Path | None = None):
        from kernelpilot.agent.state import default_log, default_socket
        self.cfg, self.enforce, self.config_path, self.live = cfg, enforce, config_path, live
        a = cfg["agent"]
        self.log_path = Path(log_path or a["log"] or default_log())
        self.socket_path = Path(socket_path or a["socket"] or default_socket())
        self.json_out, self.want_lock, self.replay_path = json_out, lock, replay_path
        self.pilots: dict = {}
        self.failed: dict[str, str] = {}
        self.lock = self.journal = self.observer = self.server = self.elog = None
        self.otlp = None  # [export] otlp_endpoint (kernelpilot.fleet.otlp)
        self.stop_reason = None
        self.reload_wanted = False
        self.t0 = time.monotonic()
        self.started = time.time()
        self.events = 0
        self.busy: dict[str, float] = {}
        self.reloads = 0
        self._handlers = {}

    # --- lifecycle ---
    def start(self) -> "AgentHost":
        from kernelpilot.agent.journal import Journal
        from kernelpilot.agent.state import PidLock
        try:
            if self.want_lock:
                self.lock = PidLock().acquire()
            a = self.cfg["agent"]
            self.elog = EventLog(self.log_path, int(a["log_max_mb"] * (1 << 20)), a["log_backups"], self.json_out)
            if self.cfg["export"]["otlp_endpoint"]:
                from kernelpilot.fleet.otlp import for_agent
                self.otlp = for_agent(self.cfg["export"]["otlp_endpoint"])
            self.journal = Journal("agent", enforce=self.enforce and self.live,
                                   max_actions_per_s=self.cfg["sched"]["max_actions"]).open()
            self._install_signals()
            for name in C.DOMAINS:  # pilots first (models load), then the sensor: no backlog
                if self.cfg[name]["enabled"]:
                    self._start_pilot(name)
            self.observer = self._observer()
            why = getattr(self.observer, "fallback", None)
            if why:  # the security pilot then loads its own stage (or says why it cannot)
                self.note("agent", f"sensor: the merged build (kp_trace + security stage) did not load: {why}; "
                          "kp_trace alone, the security watch on a program of its own")
            for name in list(self.pilots):
                self._hand_sensor(name)
            if self.live:
                self.server = StateServer(self.socket_path)
            self._reassert_signals()  # a pilot's journal (the watch's responder) took them
        except BaseException:
            self._teardown()
            raise
        self.t0 = time.monotonic()
        self.note("agent", f"started ({'enforcing' if self.journal.enforce else 'dry run'}; "
                  f"sensor {self.observer.name}; domains {', '.join(self.pilots) or 'none'}; log {self.log_path})")
        self._publish()
        return self

    def _observer(self):
        from kernelpilot.agent.observer import LiveObserver, ReplayObserver
        if not self.live:
            return ReplayObserver(self.replay_path) if self.replay_path else ReplayObserver()
        return LiveObserver(ring_mb=self.cfg["agent"]["ring_mb"], comm=self.cfg["agent"]["comm"],
                            with_security=self.cfg["security"]["enabled"])

    def _start_pilot(self, name: str):
        from kernelpilot.agent.aipath_pilot import AipathPilot
        from kernelpilot.agent.memory_pilot import MemoryPilot
        from kernelpilot.agent.sched_pilot import SchedPilot
        from kernelpilot.agent.security_pilot import SecurityPilot
        c, live, enf = self.cfg[name], self.live, self.enforce and self.live
        make = {"sched": lambda: SchedPilot(c, live), "security": lambda: SecurityPilot(c, live, enf),
                "memory": lambda: MemoryPilot(c, live, enf), "aipath": lambda: AipathPilot(c, live)}[name]
        try:
            self.pilots[name] = make()
            self.failed.pop(name, None)
            if self.observer is not None:  # started by a reload: the sensor runs already
                self._hand_sensor(name)
        except KpError as e:
            if name == "security" and "security.model not found" in str(e):
                raise
            self.failed[name] = str(e)
        except Exception as e:  # one domain failing to load leaves the others running
            self.failed[name] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        if name in self.failed:
            self.note(name, f"{name} disabled: {self.failed[name]}; other domains keep running")

    def _hand_sensor(self, name: str):
        """A pilot whose kernel stage lives in the shared sensor (security) gets it now."""
        p = self.pilots.get(name)
        if p is not None and hasattr(p, "use_sensor"):
            p.use_sensor(self.observer)

    def _install_signals(self):
        def stop(signum, frame):
            self.stop_reason = signal.Signals(signum).name
        def reload(signum, frame):
            self.reload_wanted = True
        self._handlers = {signal.SIGINT: stop, signal.SIGTERM: stop, signal.SIGHUP: reload}
        self._reassert_signals()

    def _reassert_signals(self):
        """A journal opened later (the security watch's responder) takes the signals; take them back."""
        for s, h in self._handlers.items():
            if signal.getsignal(s) is not h:
                signal.signal(s, h)

    def note(self, domain: str, what: str, **detail):
        self.emit(Decision(domain, "note", what, detail=detail))

    def emit(self, d: Decision):
        if self.elog:
            rec = self.elog.write(d)
            if self.otlp:
                self.otlp.emit(rec)

    # --- the loop ---
    def _busy(self, what: str, t0: float) -> float:
        """Seconds the loop spent on `what` (the sensor, each pilot, publishing): a slower part shows.
        Returns this time's."""
        dt = time.perf_counter() - t0
        self.busy[what] = self.busy.get(what, 0.0) + dt
        return dt

    def step(self, final: bool = False) -> int:
        t0 = time.perf_counter()
        batch = self.observer.finish() if final else self.observer.poll()
        self._busy("sensor", t0)
        self.events += len(batch)
        for name, p in list(self.pilots.items()):
            t0 = time.perf_counter()
            try:
                decisions = p.observe(batch)
                if final and hasattr(p, "finish"):
                    decisions += p.finish()
                for d in decisions:
                    self.emit(d)
                    a = p.act(d, self.journal)
                    if a is not None:
                        self.emit(a)
            except KpError as e:
                self._drop(name, str(e))
            except Exception as e:
                log.debug("pilot %s failed", name, exc_info=True)
                self._drop(name, f"{type(e).__name__}: {e}")
            self._busy(name, t0)
        self._reassert_signals()
        return len(batch)

    def _drop(self, name, why):
        p = self.pilots.pop(name, None)
        self.failed[name] = why
        self.note(name, f"{name} stopped: {why}; other domains keep running")
        if p:
            try:
                p.close()
            except Exception:
                pass

    def run(self, duration: float | None = None, on_tick=None) -> str:
        poll = self.cfg["agent"]["poll_s"]
        end = None if duration is None else time.monotonic() + duration
        last_pub, pub_every = 0.0, 1.0
        from kernelpilot.agent.memwatch import MemWatch
        mem = MemWatch.from_env()
        while self.stop_reason is None:
            now = time.monotonic()
            if end is not None and now >= end:
                self.stop_reason = "duration"
                break
            self.step()
            if not self.live and self.observer.done:
                self.stop_reason = "replay finished"
                break
            if self.reload_wanted:
                self.reload_wanted = False
                self.reload()
            if on_tick:
                on_tick(self)
            if mem:
                mem.tick()
            if now - last_pub >= pub_every:
                pub_every = publish_interval(self._publish())
                last_pub = now
            if self.observer.backlog:
                continue  # a ring holds more than one poll takes: no pause (bounded batches, no drops)
            time.sleep(poll if end is None else max(0.0, min(poll, end - time.monotonic())))
        return self.stop_reason

    def reload(self):
        """SIGHUP: read the config file again; a bad one is reported and the old one kept."""
        if self.config_path is None:
            self.note("agent", "SIGHUP: no --config file to reload")
            return
        try:
            new = C.load(self.config_path)
        except KpError as e:
            self.note("agent", f"reload failed, keeping the running config: {e}")
            return
        for name in C.DOMAINS:
            on, p = new[name]["enabled"], self.pilots.get(name)
            if p is not None and not on:
                self.pilots.pop(name).close()
            elif p is None and on:
                self.cfg[name] = new[name]
                self._start_pilot(name)
            elif p is not None:
                p.cfg.update(new[name])
                if hasattr(p, "reconfigure"):
                    p.reconfigure()
        self.cfg = new
        self.reloads += 1
        self.note("agent", f"config reloaded from {self.config_path}; domains {', '.join(self.pilots) or 'none'}")

    # --- state ---
    def summary(self, top: int | None = None) -> dict:
        out = {}
        for name in C.DOMAINS:
            if name in self.pilots:
                try:
                    p = self.pilots[name]
                    out[name] = p.summary(top=top)
                except Exception as e:
                    out[name] = {"state": "failed", "error": f"{type(e).__name__}: {e}"}
            elif name in self.failed:
                out[name] = {"state": "failed", "error": self.failed[name]}
            else:
                out[name] = {"state": "disabled in the config"}
        return out

    def state(self) -> dict:
        st = {"pid": os.getpid(), "started": self.started, "uptime_s": round(time.monotonic() - self.t0, 2),
              "mode": "enforce" if self.journal and self.journal.enforce else "dry-run",
              "sensor": self.observer.stats() if self.observer else {}, "events": self.events,
              "busy_s": {k: round(v, 3) for k, v in self.busy.items()}, "log": str(self.log_path), "reloads": self.reloads,
              "domains": self.summary(top=STATE_TOP),
              "journal": dict(self.journal.counts) if self.journal else {}}
        p = self.pilots.get("sched")
        if p is not None:
            st["classes"] = {str(t): c for t, c in list(p.classes.items())[-2000:]}
        a = self.pilots.get("aipath")
        if a is not None:
            st["events_by_tgid"] = {str(t): n for t, n in a.total.items()}
        return st

    def _publish(self) -> float:
        """The live state for the socket's readers; returns the seconds it took."""
        if not self.server:
            return 0.0
        t0 = time.perf_counter()
        self.server.blob = (json.dumps(self.state(), default=str) + "\n").encode()
        return self._busy("publish", t0)

    def stop(self) -> dict:
        """Final drain, pilots closed, every change rolled back; returns the summary per domain."""
        if self.observer is not None:
            try:
                self.step(final=True)
            except Exception as e:
                log.debug("final drain failed: %s", e)
        summary = self.summary()
        summary["agent"] = {"sensor": self.observer.stats() if self.observer else {}, "events": self.events,
                            "seconds": round(time.monotonic() - self.t0, 2), "stopped": self.stop_reason,
                            "busy_s": {k: round(v, 3) for k, v in self.busy.items()},
                            "mode": "enforce" if self.journal and self.journal.enforce else "dry-run",
                            "log": str(self.log_path), "log_records": dict(self.elog.counts) if self.elog else {},
                            "stdout_lines_dropped": self.elog.stdout_dropped if self.elog else 0}
        restored = self._teardown()
        summary["agent"]["journal"] = restored
        return summary

    def _teardown(self) -> dict:
        restored = {}
        for p in list(self.pilots.values()):
            try:
                p.close()
            except Exception as e:
                log.warning("closing a pilot: %s", e)
        self.pilots = {}
        if self.server:
            self.server.close()
            self.server = None
        if self.observer:
            self.observer.close()
            self.observer = None
        if self.journal:
            counts = dict(self.journal.counts)
            restored = {**counts, **self.journal.close()}
            self.note("agent", f"stopped ({self.stop_reason}); journal: {restored}")
            self.journal = None
        if self.otlp:
            self.otlp.close()
            self.otlp = None
        if self.elog:
            self.elog.close()
        if self.lock:
            self.lock.release()
            self.lock = None
        return restored
