"""Two-stage live detection. Stage 1 (bpf/sc_watch.bpf.c) keeps the tree's features per process
over a sliding 32-call window in sys_enter and scores it every 8 calls with the kernelize map
interpreter; only windows over the calibrated threshold come up the ring buffer. Stage 2 here
re-scores the window (with its context) with the user-space model and confirms.
Responses: alert (default); with enforce, freeze (cgroup v2 freezer, else SIGSTOP) or kill,
never pid 1, kernelpilot itself or an allow-listed command. Freezes are journalled and undone."""
from __future__ import annotations

import json
import os
import signal
import struct
import time
from pathlib import Path

import numpy as np

from kernelpilot.errors import CapabilityError, KpError
from kernelpilot.security.features import FBITS
from kernelpilot.security.model import SecurityModel
from kernelpilot.security.syscalls import UNKNOWN, number_to_name

SRC = Path(__file__).resolve().parent / "bpf" / "sc_watch.bpf.c"
WIN, STRIDE, CTX, NFEAT, MAXNR = 32, 8, 64, 9, 512
ALERT_DTYPE = np.dtype([("ts", "<u8"), ("cgroup", "<u8"), ("pid", "<u4"), ("tgid", "<u4"), ("count", "<u4"), ("score", "<i4"),
                        ("feats", "<u2", 12), ("calls", "<u2", CTX), ("comm", "S16")])  # struct sc_alert
V2 = Path("/sys/fs/cgroup/unified") if Path("/sys/fs/cgroup/unified/cgroup.procs").exists() else Path("/sys/fs/cgroup")
QUARANTINE = "kpilot-quarantine"
JOURNAL = Path(os.environ.get("KPILOT_STATE", "/var/lib/kernelpilot")) / "security-journal.jsonl"


def kernel_tables(tree, vocab) -> tuple[np.ndarray, np.ndarray]:
    """Per x86-64 syscall number: the packed feature increment (rare, classes) and vocabulary id,
    exactly the per-call features of Tree.features (novelty is added in the kernel)."""
    names = number_to_name("x86_64")
    spread = np.zeros(MAXNR, dtype=np.uint64)
    vid = np.zeros(MAXNR, dtype=np.uint32)
    for nr in range(MAXNR):
        v = vocab.index.get(names.get(nr, UNKNOWN), 0)
        bits = [0, tree.rare[v], *tree.classes[v]]
        vid[nr] = v
        spread[nr] = sum(int(b) << (FBITS * i) for i, b in enumerate(bits))
    return spread, vid


class KernelStage:
    """The loaded, attached in-kernel stage for one model's tree (kernelize map interpreter)."""

    def __init__(self, model: SecurityModel, threshold: int | None = None):
        from kernelpilot.bpf.build import build_object
        from kernelpilot.kernelize.kernel import BPF_SRC
        from kernelpilot.probes.libbpf import BpfObject
        from kernelpilot.probes.ringbuf import RingReader
        tree = model.detectors.get("tree")
        if tree is None:
            raise KpError("the model has no tree detector: train with --detectors including tree")
        if (model.window, model.stride) != (WIN, STRIDE):
            raise KpError(f"the in-kernel stage needs window {WIN} and stride {STRIDE}; "
                          f"the model uses {model.window}/{model.stride}")
        if threshold is None:
            threshold = model.thresholds.get("tree", {}).get("fpr_1pct")
            if threshold is None:
                raise KpError("the model has no calibrated tree threshold (train with kpilot security train)")
        if os.geteuid() != 0:
            raise CapabilityError("the in-kernel stage needs root (eBPF)")
        self.threshold = int(np.floor(threshold))
        self.obj = BpfObject(build_object(SRC, includes=(BPF_SRC,)))
        try:
            self._fill(tree, model.vocab)
            self.prog = self.obj.program("sc_sys_enter").attach()
            self.ring = RingReader(self.obj.map("sc_alerts"), ALERT_DTYPE)
        except BaseException:
            self.obj.close()
            raise

    def _fill(self, tree, vocab) -> None:
        from kernelpilot.kernelize.kernel import encode_slot
        o = self.obj
        spread, vid = kernel_tables(tree, vocab)
        info = np.zeros(MAXNR, dtype=[("spread", "<u8"), ("vid", "<u4"), ("pad", "<u4")])
        info["spread"], info["vid"] = spread, vid
        keys = np.arange(MAXNR, dtype="<u4")
        o.map("sc_nrinfo").update_batch(keys.tobytes(), info.tobytes(), MAXNR)
        words = tree.words.astype("<u8")
        o.map("sc_grams").update_batch(np.arange(len(words), dtype="<u4").tobytes(), words.tobytes(), len(words))
        o.map("kp_model_slots").update(0, encode_slot(tree.model))
        o.map("kp_model_active").update(0, struct.pack("<I", 0))
        o.map("sc_cfg").update(0, struct.pack("<IiII", os.getpid(), self.threshold, 1, tree.vmod))
        self.n_grams = int(sum(bin(int(w)).count("1") for w in words))

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
    cmd = _cmdline(pid)
    if "kpilot" in cmd or "kernelpilot" in cmd:
        return "kernelpilot itself"
    if comm in allow or os.path.basename(cmd.split(" ")[0]) in allow:
        return "allow-listed"
    return None


class Responder:
    """Freeze (cgroup v2 freezer in kpilot-quarantine/pid-N, else SIGSTOP) or kill confirmed
    processes. Freezes go through the agent journal: they are thawed when watch exits (or its
    guardian, if watch is killed), or earlier with `kpilot security release PID`."""

    def __init__(self, action: str = "freeze"):
        from kernelpilot.agent.journal import Journal
        self.action = action
        self.journal = Journal("security", enforce=True).open()
        self.acted: set[int] = set()
        self.freezer = (V2 / "cgroup.procs").exists() and os.access(V2, os.W_OK)

    def act(self, pid: int, comm: str) -> str:
        from kernelpilot.agent.rollback import start_time
        if pid in self.acted:
            return "already handled"
        self.acted.add(pid)
        try:
            if self.action == "kill":
                os.kill(pid, signal.SIGKILL)
                return "killed"
            if not self.freezer:
                os.kill(pid, signal.SIGSTOP)
                _log({"action": "sigstop", "pid": pid, "comm": comm, "time": time.time()})
                return "stopped (SIGSTOP; kpilot security release PID sends SIGCONT)"
            top, mine = V2 / QUARANTINE, V2 / QUARANTINE / f"pid-{pid}"
            j = self.journal
            j.change("mkdir", {"path": str(top)}, True)
            j.change("mkdir", {"path": str(mine)}, True)
            st = start_time(pid)
            if st is None or not j.change("cgroup", {"tid": pid, "start": st, "hier": "v2", "mount": str(V2),
                                                      "comm": comm}, f"/{QUARANTINE}/pid-{pid}"):
                return "failed: process gone"
            j.change("file", {"path": str(mine / "cgroup.freeze")}, "1")
            return f"frozen in {mine}"
        except OSError as e:
            return f"failed: {e}"

    def close(self) -> dict:
        return self.journal.close()


def _log(entry: dict) -> None:
    try:
        JOURNAL.parent.mkdir(parents=True, exist_ok=True)
        with JOURNAL.open("a") as f:
            f.write(json.dumps(entry) + "\n")
    except OSError:
        pass


def release(pid: int) -> str:
    """Thaw a process frozen by `watch --enforce`: unfreeze, move it back, remove its cgroup."""
    from kernelpilot.agent.rollback import read_journal, replay, run_dir
    mine = V2 / QUARANTINE / f"pid-{pid}"
    if mine.is_dir():
        back = []
        for path in sorted(run_dir().glob("journal-*.jsonl")):
            _, entries, closed = read_journal(path)
            if not closed:
                back += [e for e in entries if e["target"].get("tid") == pid
                         or e["target"].get("path", "").startswith(str(mine))]
        (mine / "cgroup.freeze").write_text("0")
        replay(back)
        if mine.is_dir():  # not journalled (journal lost): thawed; move to the root, remove
            for p in (mine / "cgroup.procs").read_text().split():
                (V2 / "cgroup.procs").write_text(p)
            mine.rmdir()
        return f"released {pid} (thawed)"
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        raise KpError(f"no process {pid}") from None
    if state == "T":
        os.kill(pid, signal.SIGCONT)
        return f"released {pid} (SIGCONT)"
    raise KpError(f"process {pid} is not frozen or stopped by kpilot")


def confirm_detector(model: SecurityModel):
    for k in ("stide", "cnn", "freq"):  # stide: best confirm on the scenario suite (bench security)
        if k in model.detectors:
            return k, model.detectors[k]
    raise KpError("the model has no user-space detector (cnn, stide or freq) to confirm alerts")


class Watcher:
    """Stage 1 in the kernel, stage 2 here; `step()` handles what came up since the last call."""

    def __init__(self, model: SecurityModel, enforce=False, action="freeze", allow=(), threshold=None,
                 confirm: str = "fpr_0.1pct"):
        self.model, self.enforce, self.allow = model, enforce, list(allow)
        self.kname, self.kdet = confirm_detector(model)
        self.cthr = model.thresholds.get(self.kname, {}).get(confirm)
        if self.cthr is None:
            raise KpError("the model has no calibrated thresholds (train with kpilot security train)")
        self.kernel = KernelStage(model, threshold)
        try:
            self.responder = Responder(action) if enforce else None
        except BaseException:
            self.kernel.close()
            raise
        self.names = number_to_name("x86_64")
        self.alerts: list[dict] = []
        self.windows_up = 0

    def step(self) -> list[dict]:
        out = []
        recs = self.kernel.ring.poll()
        self.windows_up += len(recs)
        for a in recs:
            n = min(int(a["count"]), CTX)
            calls = [self.names.get(int(c), UNKNOWN) for c in a["calls"][:n]]
            # the window is the last 32 calls; the calls before it give stage 2 its context
            s2 = float(self.kdet.window_scores(self.model.vocab.encode(calls))[-1])
            if s2 <= self.cthr:
                continue
            pid, comm = int(a["tgid"]), a["comm"].decode(errors="replace")
            # stage 3: the window must also depart from this program's own normal behaviour
            progs, s3 = self.model.programs, None
            if progs is not None:
                s3 = float(progs.window_scores(self.model.vocab.encode(calls), comm)[-1])
                if s3 <= progs.threshold(comm):
                    continue
            alert = {"ts": int(a["ts"]), "pid": pid, "tid": int(a["pid"]), "comm": comm, "cgroup_id": int(a["cgroup"]),
                     "cmdline": _cmdline(pid), "window": calls[-WIN:], "calls_seen": int(a["count"]),
                     "kernel_score": int(a["score"]), "kernel_threshold": self.kernel.threshold,
                     "score": round(s2, 4), "threshold": round(self.cthr, 4),
                     "model": f"tree+{self.kname}" + ("+program" if s3 is not None else "")}
            if s3 is not None:
                alert.update(program_score=round(s3, 4), program_threshold=round(progs.threshold(comm), 4),
                             program_known=progs.known(comm))
            if self.enforce:
                why = protected(pid, comm, self.allow)
                alert["action"] = f"skipped ({why})" if why else self.responder.act(pid, comm)
                _log({**alert, "time": time.time()})
            out.append(alert)
        self.alerts += out
        return out

    def close(self):
        if self.responder:
            self.responder.close()
        self.kernel.close()


def default_model(reps: int = 3, system_s: float = 5.0) -> SecurityModel:
    """Learn this host's normal behaviour when no model is given: the benign scenarios (the last
    repetition held out to calibrate thresholds) plus a few seconds of normal system activity."""
    import tempfile

    from kernelpilot.security.scenarios.run import host_training_set
    with tempfile.TemporaryDirectory(prefix="kp-watch-") as d:
        train, cal = host_training_set(d, reps, system_s)
    return SecurityModel.train(train, ("tree", "stide"), calibration=cal)


def watch(model_path, enforce=False, action="freeze", allow=(), duration=None, json_out=False,
          confirm="fpr_0.1pct") -> None:
    model = SecurityModel.load(model_path) if model_path else default_model()
    w = Watcher(model, enforce, action, allow, confirm=confirm)
    from rich.console import Console
    err = Console(stderr=True)
    err.print(f"watching (in-kernel tree, threshold {w.kernel.threshold}, {w.kernel.n_grams} normal 3-grams; "
              f"confirm with {w.kname} > {w.cthr:.4g}); "
              f"{'ENFORCING ' + action if enforce else 'alert only'}; Ctrl-C to stop", highlight=False)

    def report(alerts):
        for a in alerts:
            if json_out:
                print(json.dumps(a), flush=True)
            else:
                err.print(f"[bold red]ALERT[/] pid {a['pid']} {a['comm']} score {a['score']} "
                          f"({a['model']}) {a['cmdline'][:60]} {a.get('action', '')}", highlight=False)
    t0 = time.monotonic()
    try:
        try:
            while duration is None or time.monotonic() - t0 < duration:
                report(w.step())
                time.sleep(0.05)
        except KeyboardInterrupt:
            pass
        report(w.step())  # windows that came up since the last poll
    finally:
        st = w.kernel.stats()
        w.close()
    err.print(f"stats: {st}, windows up: {w.windows_up}, confirmed alerts: {len(w.alerts)}", highlight=False)


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


def _flood(d: str, n: int) -> float:
    import subprocess
    return float(subprocess.run([f"{d}/flood", str(n)], capture_output=True, text=True, check=True).stdout)


def _flood_read(d: str, n: int, k) -> float:
    """The flood, with a consumer reading the ring as watch does (every 50 ms)."""
    if k is None:
        return _flood(d, n)
    import threading
    stop = threading.Event()

    def consume():
        while not stop.is_set():
            k.ring.poll()
            time.sleep(0.05)
    th = threading.Thread(target=consume)
    th.start()
    try:
        return _flood(d, n)
    finally:
        stop.set()
        th.join()
        k.ring.poll()


def overhead(model: SecurityModel, quick: bool = True) -> dict:
    """Compile workload and a getppid flood with and without the in-kernel stage, runs interleaved
    (off/on, then on/off) so drift on a noisy machine hits both sides; medians compared."""
    import subprocess
    import tempfile
    reps = 4 if quick else 14
    flood_n = 2_000_000 if quick else 10_000_000
    off, on, f_off, f_on, drops, seen, sent = [], [], [], [], 0, 0, 0
    with tempfile.TemporaryDirectory(prefix="kp-ovh-") as d:
        Path(d, "flood.c").write_text("#include <stdlib.h>\n" + FLOOD_C)
        subprocess.run(["gcc", "-O2", "-o", f"{d}/flood", f"{d}/flood.c"], check=True)
        _time_workload(d)  # warm caches
        k = KernelStage(model)
        k.close()  # warm the object build cache
        for i in range(reps):
            for stage_on in ((False, True) if i % 2 == 0 else (True, False)):
                k = KernelStage(model) if stage_on else None
                try:
                    (on if stage_on else off).append(_time_workload(d))
                    (f_on if stage_on else f_off).append(_flood_read(d, flood_n, k))
                    if k:
                        st = k.stats()
                        drops, seen, sent = drops + st["dropped"], seen + st["syscalls"], sent + st["sent"]
                finally:
                    if k:
                        k.close()
    mo, mn = float(np.median(off)), float(np.median(on))
    fo, fn = float(np.median(f_off)), float(np.median(f_on))
    return {"workload": "24 small C files, gcc -O1 with xargs -P2 + link (kernel-build-like)",
            "runs_each": reps, "median_s_off": round(mo, 3), "median_s_on": round(mn, 3),
            "overhead_ratio": round(mn / mo, 4), "flood_syscalls_per_s_off": round(fo),
            "flood_syscalls_per_s_on": round(fn), "flood_cost_ratio": round(fo / fn, 3),
            "ns_per_syscall_added": round(1e9 / fn - 1e9 / fo, 1),
            "stage_syscalls_seen": int(seen), "stage_windows_sent": int(sent), "stage_dropped": int(drops)}
