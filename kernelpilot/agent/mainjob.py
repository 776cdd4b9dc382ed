"""`kpilot run` (what `make run` does): the agent for ~30 s in dry run on this host while a short
built-in demo runs beside it, then one summary per domain and where the event log is.

Demo (in a temp dir, all undone at the end): a CPU-bound batch loop and a latency-sensitive
sleeper pinned to one CPU (sched), a strided mmap reader of a 32 MB file whose page cache is
dropped between passes (memory), and the harmless "ransomware" scenario, which encrypts its own
temp files, once the security watch is up (security). Every process's layers (aipath).
Without root or eBPF it says why and replays the shipped trace through the same pilots."""
from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from kernelpilot.errors import KpError

BATCH_C = "int main(void){ volatile unsigned long x = 0; for (;;) x++; }\n"
LATENCY_C = r"""#include <time.h>
int main(void){ struct timespec d = {0, 2000000}; volatile unsigned long x = 0;
for (;;) { for (int i = 0; i < 20000; i++) x++; nanosleep(&d, 0); } }
"""
READER_C = r"""#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
/* index-like reads through mmap, pass after pass: record i is page (i * stride) mod pages; after
   each pass the mapping and the file's cache are dropped, so every pass faults again */
int main(int argc, char **argv) {
  int fd = open(argv[1], O_RDONLY);
  long stride = atol(argv[2]), count = atol(argv[3]);
  struct stat st;
  struct timespec nap = {0, 1000000};
  if (fd < 0 || fstat(fd, &st)) return 1;
  long pages = st.st_size / 4096;
  unsigned char *m = mmap(0, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) return 1;
  volatile unsigned long s = 0;
  for (;;) {
    for (long i = 0; i < count; i++) {
      s += m[((i * stride) % pages) * 4096];
      if (i % 64 == 63) nanosleep(&nap, 0);
    }
    madvise(m, st.st_size, MADV_DONTNEED);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  }
}
"""
READER_STRIDE, READER_COUNT = 37, 2048  # record i is page i*37; 2048 records a pass
ATTACK = "ransomware"


def strided_reader(workdir: Path, name: str) -> list[str]:
    """The strided reader's command line (the demo's, the soak's): builds READER_C as `name` in
    workdir and writes its 32 MB file of random bytes beside it."""
    from kernelpilot.memory.live import build_c
    exe = build_c(READER_C, workdir, name)
    data = workdir / f"{name}.dat"
    with open(data, "wb") as f:
        f.write(os.urandom(32 << 20))
    return [str(exe), str(data), str(READER_STRIDE), str(READER_COUNT)]


class Demo:
    """Starts the demo's pieces as the agent runs (called from the agent loop, main thread)."""

    def __init__(self, workdir: Path, duration: float):
        from kernelpilot.memory.live import build_c
        self.dir, self.duration = workdir, duration
        self.procs: dict[str, subprocess.Popen] = {}
        self.log: list[str] = []
        self.attack_started = None
        self.attack_pids: set[int] = set()
        self.exe = {n: build_c(src, workdir, n) for n, src in
                    (("kp_demo_batch", BATCH_C), ("kp_demo_latency", LATENCY_C))}
        self.reader = strided_reader(workdir, "kp_demo_reader")
        self.t0 = None

    def _spawn(self, name, argv, cpu=None):
        pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
        self.procs[name] = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                            preexec_fn=pin, start_new_session=True)

    def tick(self, host) -> None:
        now = time.monotonic()
        if self.t0 is None:
            self.t0 = now
            cpu = max(os.sched_getaffinity(0))
            self._spawn("batch", [str(self.exe["kp_demo_batch"])], cpu)
            self._spawn("latency", [str(self.exe["kp_demo_latency"])], cpu)
            self.log.append(f"batch loop and latency-sensitive sleeper on CPU {cpu}")
            self._spawn("reader", self.reader)
            self.log.append(f"strided mmap reader of {Path(self.reader[1]).name} (32 MB, page i*{READER_STRIDE}), "
                            "cache dropped each pass")
        a = self.procs.get("attack")
        if a is not None and a.poll() is None:
            from kernelpilot.sched.session import tree_pids
            self.attack_pids |= tree_pids({a.pid})
        sec = host.pilots.get("security")
        late = now - self.t0 >= max(self.duration - 6.0, self.duration * 0.5)
        if self.attack_started is None and (late or (sec is not None and sec.ready)):
            from kernelpilot.security.scenarios import SCENARIOS
            from kernelpilot.security.scenarios.run import script_for
            d = self.dir / "attack"
            d.mkdir(exist_ok=True)
            self._spawn("attack", ["bash", "-c", script_for(SCENARIOS[ATTACK], str(d), 4)])
            self.attack_started = round(now - self.t0, 1)
            self.log.append(f"attack-like scenario '{ATTACK}' (its own temp files) at {self.attack_started} s"
                            + ("" if sec is not None and sec.ready else " (security watch not ready yet)"))

    def is_attack(self, alert: dict) -> bool:
        """The alert is on the attack or a descendant: the attack itself, a pid seen in its tree, or
        one whose parent chain (the watch's, from exec and fork events) leads to it. The tree is walked
        at ticks only: an attack (bash exec'ing its python) that ends before the next tick, or a child
        that runs between two ticks, is never seen there."""
        a = self.procs.get("attack")
        pid = alert.get("pid")
        return pid in self.attack_pids or (a is not None and (
            pid == a.pid or any(p.get("pid") == a.pid for p in alert.get("parents") or ())))

    def seen(self, pilots: dict) -> dict:
        """What the pilots made of the demo's own processes (`pilots`: the host's, after its final drain)."""
        sp, mp = pilots.get("sched"), pilots.get("memory")
        out = {"classes": {n: sp.classes.get(p.pid, "not classified") for n, p in self.procs.items()
                           if n in ("batch", "latency")} if sp else {}}
        sec = pilots.get("security")
        if sec is not None:
            hit = [a for a in sec.alerts if self.is_attack(a)]
            out["attack_alerted"] = sorted({str(a.get("fired") or a.get("model")) for a in hit})
            out["alerts_on_other_processes"] = len(sec.alerts) - len(hit)
        if mp:
            r = self.procs.get("reader")
            out["reader_prefetch"] = [{"faults": s.faults, "pages_issued": s.n_issued, "issued_then_faulted": s.n_used}
                                      for k, s in mp.files.items() if r and k[0] == r.pid and s.model is not None]
        return out

    def close(self) -> dict:
        for p in self.procs.values():
            if p.poll() is None:
                try:
                    os.killpg(p.pid, 9)
                except ProcessLookupError:
                    pass
            p.wait()
        return {"pieces": self.log,
                "pids": {n: p.pid for n, p in self.procs.items()}}


def main_job(duration: float = 30.0, log: Path | None = None, json_out: bool = False) -> dict:
    from rich.console import Console

    from kernelpilot.agent import config as C
    from kernelpilot.agent.host import AgentHost
    from kernelpilot.agent.rollback import run_dir
    from kernelpilot.probes.doctor import best_source, checks
    err = Console(stderr=True)
    cfg = C.defaults()
    cfg["security"]["learn_s"] = 0.0  # the host model was learned on these programs: judge from the start
    c = checks()
    src, why = best_source(c)
    if src == "ebpf":
        log = log or run_dir() / "run.jsonl"
        err.print(f"live agent (dry run) for {duration:g} s on kernel {c['kernel']} ({why}), with a built-in demo",
                  highlight=False)
        from kernelpilot.agent.security_pilot import ensure_host_model, host_model_path
        if not host_model_path().is_file():
            err.print("first run: learning this host's normal system-call behaviour for the security watch "
                      f"(benign scenarios, ~20-40 s, once; cached in {host_model_path().parent})", highlight=False)
            ensure_host_model()
        from kernelpilot.scratch import scratch
        with scratch("run") as d:  # the demo's files; a killed run's go with the next run
            demo = Demo(d, duration)
            host = AgentHost(cfg, log_path=log, lock=False, socket_path=run_dir() / "run.sock").start()
            try:
                host.run(duration, on_tick=demo.tick)
            finally:
                pilots = dict(host.pilots)  # stop() drains the ring last: alerts raised then count too
                summary = host.stop()
                summary["demo"] = {**demo.close(), **demo.seen(pilots)}
    else:
        from kernelpilot.agent.observer import SAMPLE
        log = log or Path(tempfile.gettempdir()) / f"kpilot-run-{os.getuid()}.jsonl"
        err.print(f"[yellow]eBPF is not permitted here: {why}.[/] Replaying the trace kernelpilot ships "
                  f"({SAMPLE.name}) through the same pilots.", highlight=False)
        host = AgentHost(cfg, log_path=log, lock=False, live=False).start()
        try:
            host.run(None)
        finally:
            summary = host.stop()
    return summary


def check_duration(duration: float) -> None:
    if not 1 <= duration <= 3600:
        raise KpError("--duration must be between 1 and 3600 seconds")
