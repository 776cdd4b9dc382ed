"""Two-stage live detection. Stage 1 (bpf/sc_watch.bpf.c) counts the tree's features per process
in sys_enter and walks the tree at each 32-call window; only windows over the threshold come up the
ring buffer. Stage 2 here re-scores the window with the user-space sequence model and confirms.
Responses: alert (default); with enforce, freeze (cgroup v2 freezer, else SIGSTOP) or kill,
never pid 1, kernelpilot itself or an allow-listed command. Every action is journalled."""
from __future__ import annotations

import json
import os
import signal
import struct
import time
from pathlib import Path

import numpy as np

from kernelpilot.errors import CapabilityError, KpError
from kernelpilot.security.features import CLASS_NAMES, CLASSES
from kernelpilot.security.model import SecurityModel
from kernelpilot.security.syscalls import UNKNOWN, number_to_name

SRC = Path(__file__).resolve().parent / "bpf" / "sc_watch.bpf.c"
WIN, NFEAT, MAXNR = 32, 9, 512
ALERT_DTYPE = np.dtype([("ts", "<u8"), ("pid", "<u4"), ("tgid", "<u4"), ("score", "<u4"), ("nfeat", "<u4"),
                        ("feats", "<u2", NFEAT + 1), ("calls", "<u2", WIN), ("comm", "S16"), ("pad", "V4")])  # sizeof(struct sc_alert) = 128
FREEZE_CG = Path("/sys/fs/cgroup/unified/kpilot-quarantine")
JOURNAL = Path(os.environ.get("KPILOT_STATE", "/var/lib/kernelpilot")) / "security-journal.jsonl"


class KernelStage:
    """The loaded, attached in-kernel stage for one model's tree."""

    def __init__(self, model: SecurityModel, threshold: float = 0.3):
        from kernelpilot.bpf.build import build_object
        from kernelpilot.probes.libbpf import BpfObject
        from kernelpilot.probes.ringbuf import RingReader
        if "tree" not in model.detectors:
            raise KpError("the model has no tree detector: train with --detectors including tree")
        if model.window != WIN:
            raise KpError(f"the in-kernel stage needs window {WIN}; the model uses {model.window}")
        if os.geteuid() != 0:
            raise CapabilityError("the in-kernel stage needs root (eBPF)")
        self.obj = BpfObject(build_object(SRC))
        self._fill(model.detectors["tree"], model.vocab, threshold)
        self.prog = self.obj.program("sc_sys_enter").attach()
        self.ring = RingReader(self.obj.map("sc_alerts"), ALERT_DTYPE)

    def _fill(self, tree, vocab, threshold: float) -> None:
        o = self.obj
        o.map("sc_cfg").update(0, struct.pack("<IIII", os.getpid(), int(threshold * 1000), 1, 0))
        names = number_to_name("x86_64")
        cls = {c: i for i, c in enumerate(CLASS_NAMES)}
        flags = o.map("sc_flags")
        for nr in range(MAXNR):
            name = names.get(nr, UNKNOWN)
            vid = vocab.index.get(name, 0)
            f = (1 << 7) if tree.rare[vid] else 0
            for c, members in CLASSES.items():
                if name in members:
                    f |= 1 << cls[c]
            flags.update(nr, struct.pack("<I", f))
        nr_of = {}
        for nr, name in names.items():
            nr_of.setdefault(name, nr)
        ids = {i: nr_of.get(n) for i, n in enumerate(vocab.names)}
        grams, one = o.map("sc_grams"), b"\x01"
        n = 0
        for a, b, c in tree.grams:
            k = [0 if x < 0 else (ids[x] + 1 if ids.get(x) is not None else None) for x in (a, b, c)]
            if None in k or k[2] == 0 or n >= grams.max_entries:
                continue
            grams.update(k[0] << 20 | k[1] << 10 | k[2], one)
            n += 1
        nd = tree.nodes
        if len(nd["left"]) > o.map("sc_tree").max_entries:
            raise KpError("tree too large for the in-kernel stage")
        for i in range(len(nd["left"])):
            o.map("sc_tree").update(i, struct.pack("<iiiIII", nd["feature"][i], nd["left"][i], nd["right"][i],
                                                   int(max(0.0, np.floor(nd["threshold"][i]))),
                                                   int(round(nd["value"][i] * 1000)), 0))
        self.n_grams = n

    def stats(self) -> dict:
        m = self.obj.map("sc_stats")
        return {name: (m.sum_percpu_u64(k) or [0])[0]
                for k, name in enumerate(("syscalls", "windows", "sent", "dropped"))}

    def close(self) -> None:
        self.ring.close()
        self.obj.close()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def protected(pid: int, comm: str, allow: list[str]) -> str | None:
    """Why a process must not be acted on, or None."""
    if pid <= 1:
        return "pid 1"
    if pid in (os.getpid(), os.getppid()):
        return "kernelpilot itself"
    if "kpilot" in _cmdline(pid) or "kernelpilot" in _cmdline(pid):
        return "kernelpilot itself"
    if comm in allow:
        return "allow-listed"
    return None


def respond(pid: int, action: str) -> str:
    """Freeze (cgroup v2 freezer, else SIGSTOP) or kill a process; returns what was done."""
    try:
        if action == "kill":
            os.kill(pid, signal.SIGKILL)
            return "killed"
        if FREEZE_CG.parent.is_dir():
            FREEZE_CG.mkdir(exist_ok=True)
            (FREEZE_CG / "cgroup.procs").write_text(str(pid))
            (FREEZE_CG / "cgroup.freeze").write_text("1")
            return f"frozen in {FREEZE_CG}"
        os.kill(pid, signal.SIGSTOP)
        return "stopped (SIGSTOP)"
    except (OSError, ProcessLookupError) as e:
        return f"failed: {e}"


def journal(entry: dict) -> None:
    try:
        JOURNAL.parent.mkdir(parents=True, exist_ok=True)
        with JOURNAL.open("a") as f:
            f.write(json.dumps(entry) + "\n")
    except OSError:
        pass


def confirm_detector(model: SecurityModel):
    for k in ("cnn", "stide", "freq"):
        if k in model.detectors:
            return k, model.detectors[k]
    raise KpError("the model has no user-space detector (cnn, stide or freq) to confirm alerts")


class Watcher:
    """Stage 1 in the kernel, stage 2 here; `step()` handles what came up since the last call."""

    def __init__(self, model: SecurityModel, enforce=False, action="freeze", allow=(), threshold=0.3):
        self.model, self.enforce, self.action, self.allow = model, enforce, action, list(allow)
        self.kname, self.kdet = confirm_detector(model)
        self.cthr = model.thresholds.get(self.kname, {}).get("fpr_0.1pct")
        if self.cthr is None:
            raise KpError("the model has no calibrated thresholds (train with kpilot security train)")
        self.kernel = KernelStage(model, threshold)
        self.names = number_to_name("x86_64")
        self.alerts: list[dict] = []

    def step(self) -> list[dict]:
        out = []
        for a in self.kernel.ring.poll():
            calls = [self.names.get(int(c), UNKNOWN) for c in a["calls"]]
            seq = self.model.vocab.encode(calls)
            s2 = float(self.kdet.window_scores(seq).max())
            if s2 <= self.cthr:
                continue
            pid, comm = int(a["tgid"]), a["comm"].decode(errors="replace")
            alert = {"ts": int(a["ts"]), "pid": pid, "tid": int(a["pid"]), "comm": comm,
                     "cmdline": _cmdline(pid), "window": calls, "kernel_score": int(a["score"]) / 1000,
                     "score": round(s2, 4), "threshold": round(self.cthr, 4), "model": f"tree+{self.kname}"}
            if self.enforce:
                why = protected(pid, comm, self.allow)
                alert["action"] = f"skipped ({why})" if why else respond(pid, self.action)
                journal({**alert, "time": time.time()})
            out.append(alert)
        self.alerts += out
        return out

    def close(self):
        self.kernel.close()


def default_model() -> SecurityModel:
    """Train on this host's benign scenarios (a few seconds) when no model is given."""
    import tempfile

    from kernelpilot.security.scenarios import BENIGN
    from kernelpilot.security.scenarios.run import load_suite, record_suite
    with tempfile.TemporaryDirectory(prefix="kp-watch-") as d:
        record_suite(d, [s.name for s in BENIGN], 2)
        traces = [t for r in load_suite(d) for t in r["traces"]]
    return SecurityModel.train(traces, ("tree", "cnn"), cnn_epochs=4)


def watch(model_path, enforce=False, action="freeze", allow=(), duration=None, json_out=False) -> None:
    model = SecurityModel.load(model_path) if model_path else default_model()
    w = Watcher(model, enforce, action, allow)
    from rich.console import Console
    err = Console(stderr=True)
    if not json_out:
        err.print(f"watching (in-kernel tree, {w.kernel.n_grams} normal 3-grams; confirm with {w.kname}); "
                  f"{'ENFORCING ' + action if enforce else 'alert only'}; Ctrl-C to stop")
    t0 = time.monotonic()
    try:
        while duration is None or time.monotonic() - t0 < duration:
            for a in w.step():
                if json_out:
                    print(json.dumps(a), flush=True)
                else:
                    err.print(f"[bold red]ALERT[/] pid {a['pid']} {a['comm']} score {a['score']} "
                              f"({a['model']}) {a['cmdline'][:60]} {a.get('action', '')}", highlight=False)
            time.sleep(0.05)
    except KeyboardInterrupt:
        pass
    finally:
        st = w.kernel.stats()
        w.close()
    if not json_out:
        err.print(f"stats: {st}, confirmed alerts: {len(w.alerts)}")


WORKLOAD = r"""cd {dir}
for i in $(seq 24); do printf '#include <stdio.h>\nint f%d(int x){{return x*%d;}}\n' $i $i > f$i.c; done
ls f*.c | xargs -P 2 -n 4 gcc -O1 -c && gcc -shared -o lib.so *.o
"""
FLOOD_C = r"""#include <unistd.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <time.h>
int main(int c, char **v){ long n = atol(v[1]); struct timespec a, b; clock_gettime(CLOCK_MONOTONIC, &a);
for (long i = 0; i < n; i++) syscall(SYS_getppid);
clock_gettime(CLOCK_MONOTONIC, &b); printf("%f\n", n / ((b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9)); return 0; }
"""


def _time_workload(d: str) -> float:
    import subprocess
    t = time.perf_counter()
    subprocess.run(["bash", "-c", WORKLOAD.format(dir=d)], check=True, capture_output=True)
    return time.perf_counter() - t


def overhead(quick: bool = True) -> dict:
    """Wall time of a compile workload with and without the in-kernel stage (alternating runs),
    and the stage's syscall rate and drops under a getppid flood."""
    import subprocess
    import tempfile
    model = default_model()
    reps = 3 if quick else 7
    with tempfile.TemporaryDirectory(prefix="kp-ovh-") as d:
        Path(d, "flood.c").write_text("#include <stdlib.h>\n" + FLOOD_C)
        subprocess.run(["gcc", "-O2", "-o", f"{d}/flood", f"{d}/flood.c"], check=True)
        flood_n = "2000000" if quick else "10000000"
        _time_workload(d)  # warm caches
        off, on = [], []
        for _ in range(reps):
            off.append(_time_workload(d))
            k = KernelStage(model)
            on.append(_time_workload(d))
            k.close()
        base = float(subprocess.run([f"{d}/flood", flood_n], capture_output=True, text=True).stdout)
        k = KernelStage(model)
        rate = float(subprocess.run([f"{d}/flood", flood_n], capture_output=True, text=True).stdout)
        alerts = len(k.ring.poll())
        st = k.stats()
        k.close()
    mo, mn = float(np.median(off)), float(np.median(on))
    return {"workload": "24 small C files, gcc -O1 with xargs -P2 + link (kernel-build-like)",
            "runs_each": reps, "median_s_off": round(mo, 3), "median_s_on": round(mn, 3),
            "overhead_ratio": round(mn / mo, 4), "flood_syscalls_per_s_off": round(base),
            "flood_syscalls_per_s_on": round(rate), "flood_cost_ratio": round(base / rate, 3),
            "flood_stage_stats": st, "flood_alerts_sent": alerts}
