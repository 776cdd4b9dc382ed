"""`kpilot bench ingest`: what observing syscalls costs, side by side in one run.

A C load makes getppid() calls pinned to one CPU; the consumer runs on the other. Configurations,
interleaved in each repetition: no probe; a bare counting probe (reference); kernelpilot's syscall
probe with the consumer discarding; the probe with the consumer writing Parquet. Then: the
consumer's drain rate, drops at 2 M/s offered, and 1 M events to Parquet."""
from __future__ import annotations

import os
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from kernelpilot.bench.common import build_c, median, ratio
from kernelpilot.bpf.build import builtin_object
from kernelpilot.errors import CapabilityError
from kernelpilot.probes.libbpf import BpfObject
from kernelpilot.probes.ringbuf import RingReader
from kernelpilot.traces.record import spawn_held
from kernelpilot.traces.sources import BATCH_DTYPE, pid_max, set_pid_bit, unbatch
from kernelpilot.traces.store import TraceWriter

LOAD_CPU, CONSUMER_CPU = 1, 0


def _spawn_load(binary: Path, n: int, rate: float = 0.0):
    """Start the load held before exec (so its pid can enter the filter first), pinned to LOAD_CPU."""
    cpus = os.sched_getaffinity(0) | {LOAD_CPU}
    cpu = LOAD_CPU if LOAD_CPU < os.cpu_count() else min(cpus)
    return spawn_held([str(binary), str(n), str(rate)], cpu=cpu, stdout=subprocess.PIPE, text=True)


def _finish(p) -> float:
    out, _ = p.communicate()
    return float(out.split()[2])


def _run_plain(binary, n) -> float:
    p, w = _spawn_load(binary, n)
    os.write(w, b"go\n")
    os.close(w)
    return _finish(p)


class _Probe:
    """kernelpilot's syscall probe, filtered to one pid, with a bulk reader."""

    def __init__(self, ring_bytes: int):
        self.obj = BpfObject(builtin_object(), autoload=["kp_sys_enter", "kp_proc_fork", "kp_proc_exit"],
                             map_sizes={"kp_ring": 1 << 16, "kp_bring": ring_bytes,
                                        "kp_pidbits": pid_max() // 64 + 1})
        self.obj.map("kp_cfg").update(0, struct.pack("<IIQ16s", 1, os.getpid(), 0, b""))
        self.reader = RingReader(self.obj.map("kp_bring"), BATCH_DTYPE)  # syscalls come in per-CPU batches
        self.progs = [self.obj.program(n) for n in ("kp_sys_enter", "kp_proc_fork", "kp_proc_exit")]

    def dropped(self) -> int:
        return self.obj.map("kp_stats").sum_percpu_u64(0)[0]

    def run(self, binary, n, rate=0.0, writer: TraceWriter | None = None, consume=True, interval=0.01):
        """Run the load under the probe; returns (ns per call, events read, drops, consumer cpu s, wall s)."""
        p, w = _spawn_load(binary, n, rate)
        set_pid_bit(self.obj.map("kp_pidbits"), p.pid)
        d0 = self.dropped()
        for prog in self.progs:
            prog.attach()
        got, cpu0, t0 = 0, time.process_time(), time.monotonic()
        os.write(w, b"go\n")
        os.close(w)
        while p.poll() is None:
            if consume:
                b = unbatch(self.reader.poll())
                got += len(b)
                if writer is not None:
                    writer.write(b)
            time.sleep(interval)  # poll in big batches: fewer cache-line handoffs with the producer
        ns = _finish(p)
        batch = unbatch(self.reader.poll()) if consume else None
        if batch is not None:
            got += len(batch)
            if writer is not None:
                writer.write(batch)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
        for prog in self.progs:
            prog.detach()
        set_pid_bit(self.obj.map("kp_pidbits"), p.pid, False)
        return ns, got, self.dropped() - d0, cpu, wall

    def close(self):
        self.reader.close()
        self.obj.close()


def run(quick: bool = False) -> dict:
    if os.geteuid() != 0:
        raise CapabilityError("bench ingest needs root (it attaches eBPF probes)")
    cpus = os.sched_getaffinity(0)
    if CONSUMER_CPU in cpus and len(cpus) > 1:
        os.sched_setaffinity(0, {CONSUMER_CPU})
    binary = build_c("syscall_load")
    n = 200_000 if quick else 1_000_000
    reps = 3 if quick else 5
    counter = BpfObject(builtin_object("kp_count"))
    probe = _Probe(1 << 26)
    tmp = Path(tempfile.mkdtemp(prefix="kpilot-bench-"))
    base, count, probe_ns, pq_ns, drops, cons_cpu, events = [], [], [], [], 0, [], 0
    try:
        _run_plain(binary, n // 4)  # warm up
        for i in range(reps):
            base.append(_run_plain(binary, n))
            counter.program("kp_count_sys_enter").attach()
            count.append(_run_plain(binary, n))
            counter.program("kp_count_sys_enter").detach()
            ns, got, dr, cpu, wall = probe.run(binary, n)
            probe_ns.append(ns)
            drops += dr
            events += got
            with TraceWriter(tmp / f"rep{i}.parquet", {"bench": "ingest"}) as w:
                ns, got, dr, cpu, wall = probe.run(binary, n, writer=w)
            pq_ns.append(ns)
            cons_cpu.append(cpu / wall)
            drops += dr
            events += got

        # 2 M/s offered, consumer polling: drops and consumed rate
        offered = 2_000_000.0
        m = int(offered * (0.5 if quick else 1.5))
        _, got_rate, drops_rate, cpu_rate, wall_rate = probe.run(binary, m, rate=offered)

        # drain rate: let 1 M events pile up unread, then read them in bulk
        big = _Probe(1 << 27)
        k = 1_000_000 if not quick else 400_000
        big.run(binary, k, consume=False)
        t0 = time.perf_counter()
        parts = []
        while big.reader.pending_bytes() > 0:
            parts.append(unbatch(big.reader.poll()))
        drain_s = time.perf_counter() - t0
        drained = np.concatenate(parts)
        big.close()

        t0 = time.perf_counter()
        with TraceWriter(tmp / "million.parquet", {"bench": "ingest"}) as w:
            w.write(drained)
        pq_s = time.perf_counter() - t0
    finally:
        probe.close()
        counter.close()
        for f in tmp.glob("*"):
            f.unlink()
        tmp.rmdir()

    b, c, p, q = median(base), median(count), median(probe_ns), median(pq_ns)
    return {
        "calls_per_run": n, "repetitions": reps,
        "ns_per_syscall": {"no_probe": round(b, 1), "bare_counter": round(c, 1),
                           "kernelpilot_probe": round(p, 1), "probe_plus_parquet": round(q, 1)},
        "ns_added_per_syscall": {"bare_counter": round(c - b, 1), "kernelpilot_probe": round(p - b, 1),
                                 "probe_plus_parquet": round(q - b, 1)},
        "slowdown_ratio": {"bare_counter": ratio(c, b), "kernelpilot_probe": ratio(p, b),
                           "probe_plus_parquet": ratio(q, b)},
        "probe_vs_bare_counter_added_ratio": ratio(p - b, c - b),
        "events_consumed": events, "events_dropped": drops,
        "consumer_cpu_fraction_while_writing_parquet": round(median(cons_cpu), 3),
        "at_2M_per_s_offered": {"offered_per_s": offered, "events": got_rate, "dropped": drops_rate,
                                "achieved_per_s": round(got_rate / wall_rate, 1),
                                "consumer_cpu_fraction": round(cpu_rate / wall_rate, 3)},
        "bulk_drain": {"events": len(drained), "seconds": round(drain_s, 4),
                       "events_per_s": round(len(drained) / drain_s, 1)},
        "parquet_write": {"events": len(drained), "seconds": round(pq_s, 3),
                          "events_per_s": round(len(drained) / pq_s, 1)},
        "targets": {"consume_ge_5M_per_s": len(drained) / drain_s >= 5e6,
                    "zero_drops_at_2M_per_s": drops_rate == 0,
                    "added_ns_le_60": (p - b) <= 60,
                    "parquet_1M_lt_1s": pq_s * (1_000_000 / max(len(drained), 1)) < 1.0},
    }
