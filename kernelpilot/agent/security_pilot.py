"""Security pilot: the security watch's two stages. Stage 1 runs inside the agent's one sys_enter
program (the sensor's kp_trace build with sc_watch.h, agent/sensor.py): the same program batches
the trace event and updates the thread's window, scored in the kernel by the tree; the user-space
model confirms. Where the sensor has no such stage (a replay, an older sensor), the watch loads
sc_watch.bpf.c on its own. Without a model it learns this host's normal behaviour in a child
process first (the benign scenarios, about 20 s) and caches the model in the state dir. Alerts
and (with --enforce) freezes come back as decisions."""
from __future__ import annotations

import os
import subprocess
import sys
from collections import deque
from pathlib import Path

import numpy as np

from kernelpilot.agent.pilot import Decision, Pilot, cap
from kernelpilot.security.live import ALERTS_KEPT
from kernelpilot.traces import schema as S

TRAIN = ("import sys, os\nfrom kernelpilot.security.live import default_model\n"
         "m = default_model(reps=2, system_s=2.0)\ntmp = f'{sys.argv[1]}.{os.getpid()}.tmp'\nm.save(tmp)\nos.replace(tmp, sys.argv[1])\n")


def host_model_path() -> Path:
    from kernelpilot.agent.state import code_key, state_dir
    from kernelpilot.security import detectors, features, model, programs, scenarios
    return state_dir() / f"security-host-model-{code_key(model, detectors, features, programs, scenarios)}.json"


def ensure_host_model(timeout: float = 300.0) -> Path:
    """Learn and cache the host model now (blocking), unless it is cached already."""
    path = host_model_path()
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
        r = subprocess.run([sys.executable, "-c", TRAIN, str(path)], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, timeout=timeout)
        if r.returncode:
            from kernelpilot.errors import KpError
            raise KpError(f"learning the host's security model failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    return path


class SecurityPilot(Pilot):
    name = "security"

    def __init__(self, cfg: dict, live: bool = True, enforce: bool = False):
        super().__init__(live)
        self.cfg, self.enforce = cfg, enforce
        self.watcher = None
        self.sensor = None  # the agent's sensor object, once the host hands it over (use_sensor)
        self.waiting = False
        self.trainer = None
        self.state = "starting"
        self.error = None
        self.syscalls = 0
        self.seen = np.zeros(1 << 15, bool)  # tgid -> seen making a system call (grows to the pids used)
        self.n_procs = 0
        self.alerts: deque[dict] = deque(maxlen=ALERTS_KEPT)  # the latest; n_alerts counts them all
        self.n_alerts = 0
        self.pending: list[Decision] = []
        if not live:
            self.state = "off: the in-kernel stage needs live eBPF (root); syscalls of the replay are counted only"
            return
        path = Path(cfg["model"]) if cfg["model"] else host_model_path()
        if cfg["model"] and not path.is_file():
            from kernelpilot.errors import KpError
            raise KpError(f"security.model not found: {path}")
        self.model_path = path
        if path.is_file():
            self.waiting = True  # the watch starts on the sensor (use_sensor)
            self.state = "waiting for the sensor"
        else:
            self._start_training()

    def use_sensor(self, observer) -> None:
        """The host's sensor is up: the watch's stage 1 runs in its sys_enter program."""
        self.sensor = getattr(observer, "security_sensor", None)
        if self.waiting:
            self.waiting = False
            self._start_watch()

    def _start_training(self):
        self.model_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
        self.trainer = subprocess.Popen([sys.executable, "-c", TRAIN, str(self.model_path)], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                        start_new_session=True)
        self.state = f"learning this host's normal behaviour (first run; cached in {self.model_path})"
        self.pending.append(Decision("security", "note", self.state))

    def _start_watch(self):
        from kernelpilot.security.live import Watcher
        from kernelpilot.security.model import SecurityModel
        try:
            model = SecurityModel.load(self.model_path)
            import inspect
            kw = {"learn_s": float(self.cfg["learn_s"])} if "learn_s" in inspect.signature(Watcher).parameters else {}
            self.watcher = Watcher(model, enforce=self.enforce, action=self.cfg["action"], allow=self.cfg["allow"],
                                   sensor=self.sensor, **kw)
        except Exception as e:  # a domain that cannot load leaves the others running
            self.fail(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            return
        k = self.watcher.kernel
        where = "in the sensor's sys_enter program" if not k.owned else "its own sys_enter program"
        self.state = (f"watching (in-kernel tree, threshold {k.threshold}, {where}; "
                      f"confirm with {self.watcher.kname})")
        self.pending.append(Decision("security", "note", self.state, detail={"model": str(self.model_path)}))

    def fail(self, why: str):
        self.state, self.error = "failed", why
        self.pending.append(Decision("security", "note", f"security disabled: {why}; other domains keep running"))

    def observe(self, batch: np.ndarray) -> list[Decision]:
        sc = batch["kind"] == S.SYSCALL
        self.syscalls += int(sc.sum())
        self._count_processes(batch["tgid"][sc])
        if self.trainer is not None and self.trainer.poll() is not None:
            rc, err = self.trainer.returncode, (self.trainer.stderr.read() or "").strip().splitlines()
            self.trainer = None
            if rc == 0 and self.model_path.is_file():
                self._start_watch()
            else:
                self.fail(f"learning the host model failed: {(err or ['exit ' + str(rc)])[-1]}")
        out, self.pending = self.pending, []
        if self.watcher is None:
            return out
        for a in self.watcher.step():
            if a.get("event", "alert") != "alert":
                continue
            self.alerts.append(a)
            self.n_alerts += 1
            out.append(Decision("security", "alert", f"{a['comm']}[{a['pid']}] suspicious system calls: score "
                                f"{a['score']} > {a['threshold']} ({a['model']})", pid=a["pid"], comm=a["comm"],
                                detail={k: a[k] for k in ("score", "threshold", "kernel_score", "model", "fired",
                                                          "incident", "exe", "cmdline", "window", "action") if k in a}))
        take = getattr(self.watcher, "take_ended", None)  # closing lines: taken each step, a long watch keeps none
        for e in take() if take else []:
            out.append(Decision("security", "note", f"incident #{e['incident']} on {e['program']}[{e['pid']}] ended: "
                                f"{e['hits']} hits in {e['seconds']} s", pid=e["pid"], detail=e))
        return out

    def _count_processes(self, tgids: np.ndarray) -> None:
        """Distinct processes seen, in one flag per pid (a set of every tgid grew all run)."""
        if not len(tgids):
            return
        top = int(tgids.max())
        if top >= len(self.seen):
            self.seen = np.r_[self.seen, np.zeros(max(top + 1, 2 * len(self.seen)) - len(self.seen), bool)]
        new = np.unique(tgids[~self.seen[tgids]])
        self.seen[new] = True
        self.n_procs += len(new)

    def act(self, d: Decision, journal) -> Decision | None:
        act = d.detail.get("action")  # the watch's responder acted already (its own journal)
        if d.kind == "alert" and act:
            return Decision("security", "action", f"{act}: {d.comm}[{d.pid}]", pid=d.pid, comm=d.comm)
        return None

    @property
    def ready(self) -> bool:
        return self.watcher is not None

    def summary(self, top: int | None = None) -> dict:
        out = {"state": self.state, "syscalls_seen": self.syscalls, "processes_seen": self.n_procs,
               "alerts": self.n_alerts,
               "alerted": sorted({f"{a['comm']}[{a['pid']}]" for a in self.alerts})[:cap(20, top)]}
        if self.error:
            out["error"] = self.error
        if self.watcher is not None:
            st = self.watcher.stats() if hasattr(self.watcher, "stats") else self.watcher.kernel.stats()
            out["watch"] = {k: v for k, v in st.items() if isinstance(v, (int, float, str))}
            out["windows_up"] = self.watcher.windows_up
            out["events_up"] = self.watcher.events_up  # exec/fork/exit events of the host
            cpu = getattr(self.watcher, "cpu", None)
            if cpu is not None:
                out["cpu_burn_candidates"] = len(cpu.samples)  # processes the cpu_burn rule samples each tick
        return out

    def close(self) -> None:
        if self.trainer is not None:
            try:
                os.killpg(self.trainer.pid, 9)  # the scenarios it runs too
            except ProcessLookupError:
                pass
            self.trainer.wait()
            self.trainer = None
        if self.watcher is not None:
            self.watcher.close()
            self.watcher = None
