"""Per-window figures of a traced AI program: what its threads asked of the kernel (system calls),
what the kernel did for them (faults, scheduling, page cache) and which device files they used.

Off-CPU time comes from sched_switch pairs: a thread switched out runnable waited on the run
queue; one switched out asleep blocked, and that time is charged to the last system call (or page
fault) the thread entered before it slept (futex -> waiting on another thread, read -> I/O, ...)."""
from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from kernelpilot.aipath.devices import describe, proc_devices
from kernelpilot.traces import schema as S
from kernelpilot.traces.schema import kernel_dev

PAGE = 4096

CATEGORIES = {
    "memory": {"mmap", "munmap", "mprotect", "brk", "madvise", "mremap", "mlock", "munlock", "mbind",
               "set_mempolicy", "get_mempolicy", "membarrier", "move_pages", "process_madvise"},
    "sync": {"futex", "futex_waitv", "sched_yield", "nanosleep", "clock_nanosleep", "poll", "ppoll",
             "epoll_wait", "epoll_pwait", "select", "pselect6"},
    "files": {"read", "write", "pread64", "pwrite64", "readv", "writev", "openat", "open", "close",
              "newfstatat", "fstat", "stat", "lstat", "statx", "lseek", "getdents64", "readlink",
              "readlinkat", "access", "faccessat", "faccessat2", "fcntl", "getcwd", "fstatfs", "statfs",
              "dup", "dup2", "dup3", "pipe2", "unlink", "mkdir", "rename", "fsync", "fdatasync"},
    "device": {"ioctl"},
    "process": {"clone", "clone3", "fork", "vfork", "execve", "exit", "exit_group", "wait4", "kill", "tgkill",
                "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "sched_setaffinity",
                "sched_getaffinity", "prlimit64", "set_robust_list", "rseq", "set_tid_address", "getpid",
                "gettid", "getuid", "geteuid", "getgid", "getegid", "getppid", "uname", "arch_prctl",
                "getrandom", "sysinfo", "getrusage", "prctl", "sched_getparam", "sched_getscheduler"},
}
CATEGORY_OF = {name: cat for cat, names in CATEGORIES.items() for name in names}
LAYER_ORDER = ("user space", "system calls", "memory", "scheduler", "files / page cache", "devices", "hardware")


def syscall_names(numbers: np.ndarray) -> np.ndarray:
    """x86-64 names for syscall numbers (vectorised through the distinct values)."""
    try:
        from kernelpilot.security.syscalls import name_of
    except ImportError:  # the table lives with the security package
        def name_of(n):
            return f"sys_{n}"
    uniq, inv = np.unique(numbers, return_inverse=True)
    names = np.array([name_of(int(n)) if name_of(int(n)) != "unknown" else f"sys_{int(n)}" for n in uniq] or [""],
                     dtype=object)
    return names[inv] if len(numbers) else np.array([], dtype=object)


def _overlap(starts, ends, t0, t1) -> np.ndarray:
    return np.clip(np.minimum(ends, t1) - np.maximum(starts, t0), 0, None)


class Trace:
    """One traced run, indexed for window queries."""

    def __init__(self, ev: np.ndarray, tgids=None):
        ev = ev[np.argsort(ev["ts"], kind="stable")]
        own_kinds = ev["kind"] != S.SCHED_SWITCH
        if tgids is None:
            tgids = np.unique(ev["tgid"][ev["kind"] == S.SYSCALL])
        self.tgids = np.asarray(sorted(int(t) for t in tgids), dtype=np.uint64)
        mine = np.isin(ev["tgid"], self.tgids)
        self.ev = ev[mine & own_kinds | (ev["kind"] == S.SCHED_SWITCH) &
                     (mine | np.isin(ev["a2"], self.tgids))]
        e = self.ev
        self.t_first = int(e["ts"][0]) if len(e) else 0
        self.t_last = int(e["ts"][-1]) if len(e) else 0
        self.sc = e[(e["kind"] == S.SYSCALL) & np.isin(e["tgid"], self.tgids)]
        self.sc_names = syscall_names(self.sc["a0"])
        self.pf = e[e["kind"] == S.PAGE_FAULT]
        sw = e[e["kind"] == S.SCHED_SWITCH]
        self.sw_out = sw[np.isin(sw["tgid"], self.tgids)]
        self.sw_in = sw[np.isin(sw["a2"], self.tgids)]
        self._intervals()

    def _intervals(self) -> None:
        """Off-CPU intervals (out -> next in) and on-CPU intervals (in -> next out) per thread."""
        off_s, off_e, off_run, off_cause, on_s, on_e, migr_ts = [], [], [], [], [], [], []
        ins_by = defaultdict(list)
        for t, pid, cpu in zip(self.sw_in["ts"].tolist(), self.sw_in["a0"].tolist(), self.sw_in["cpu"].tolist()):
            ins_by[pid].append((t, cpu))
        outs_by = defaultdict(list)
        for t, pid, state in zip(self.sw_out["ts"].tolist(), self.sw_out["pid"].tolist(), self.sw_out["a1"].tolist()):
            outs_by[pid].append((t, state))
        sc_pid, sc_ts = self.sc["pid"], self.sc["ts"]
        pf_pid, pf_ts = self.pf["pid"], self.pf["ts"]
        ex = self.ev[self.ev["kind"] == S.PROC_EXIT]
        exit_at = dict(zip(ex["pid"].tolist(), ex["ts"].tolist()))  # the filter forgets a thread at exit
        for pid in set(ins_by) | set(outs_by):
            ins = np.array([t for t, _ in ins_by.get(pid, [])], dtype=np.int64)
            cpus = [c for _, c in ins_by.get(pid, [])]
            migr_ts += [ins[i] for i in range(1, len(cpus)) if cpus[i] != cpus[i - 1]]
            outs = outs_by.get(pid, [])
            my_sc = np.flatnonzero(sc_pid == pid)
            my_pf = pf_ts[pf_pid == pid].astype(np.int64)
            for t, state in outs:
                j = np.searchsorted(ins, t, side="right")
                end = int(ins[j]) if j < len(ins) else self.t_last
                off_s.append(t)
                off_e.append(end)
                off_run.append(state == 0)
                cause = "other"
                if state != 0:
                    k = np.searchsorted(sc_ts[my_sc], t, side="right") - 1
                    last_sc = int(sc_ts[my_sc[k]]) if k >= 0 else -1
                    q = np.searchsorted(my_pf, t, side="right") - 1
                    if q >= 0 and my_pf[q] > last_sc:
                        cause = "page fault"
                    elif k >= 0:
                        cause = str(self.sc_names[my_sc[k]])
                off_cause.append(cause)
            outs_t = np.array([t for t, _ in outs], dtype=np.int64)
            for t in ins.tolist():
                j = np.searchsorted(outs_t, t, side="right")
                on_s.append(t)
                on_e.append(int(outs_t[j]) if j < len(outs_t) else max(t, exit_at.get(pid, self.t_last)))
        self.off_s, self.off_e = np.array(off_s, dtype=np.int64), np.array(off_e, dtype=np.int64)
        self.off_run, self.off_cause = np.array(off_run, dtype=bool), np.array(off_cause, dtype=object)
        self.on_s, self.on_e = np.array(on_s, dtype=np.int64), np.array(on_e, dtype=np.int64)
        self.migr_ts = np.array(sorted(migr_ts), dtype=np.int64)

    def window(self, t0: int, t1: int) -> dict:
        """Figures for events with t0 <= ts < t1, arranged as layers."""
        e = self.ev
        sel = (e["ts"] >= t0) & (e["ts"] < t1)
        w = e[sel]
        mine = np.isin(w["tgid"], self.tgids)
        scm = (self.sc["ts"] >= t0) & (self.sc["ts"] < t1)
        names = self.sc_names[scm]
        sc = self.sc[scm]
        kind = w["kind"]

        # system calls
        by_name = Counter(names.tolist())
        cats = Counter(CATEGORY_OF.get(n, "other") for n in names.tolist())
        mm = w[(kind == S.MMAP) & mine]
        prot_none = (mm["a1"] & 0xFFFFFFFF) == 0  # address space reserved, not mapped
        brk = sc[names == "brk"]
        brk_bytes = int(brk["a1"].max() - brk["a1"][brk["a1"] > 0].min()) if (brk["a1"] > 0).sum() > 1 else 0
        reads = sc[np.isin(names, ["read", "pread64"])]
        off = _overlap(self.off_s, self.off_e, t0, t1)
        blocked = off * ~self.off_run
        block_by = defaultdict(float)
        for c, v in zip(self.off_cause.tolist(), blocked.tolist()):
            if v:
                block_by[c] += v / 1e9
        sys_block = {c: v for c, v in block_by.items() if c not in ("page fault", "other")}
        cat_time = defaultdict(float)
        for c, v in sys_block.items():
            cat_time[CATEGORY_OF.get(c, "other")] += v

        # memory
        pf = w[(kind == S.PAGE_FAULT) & mine]
        munmap = w[(kind == S.MUNMAP) & mine]
        # scheduler
        out = w[(kind == S.SCHED_SWITCH) & mine]
        ins = w[(kind == S.SCHED_SWITCH) & np.isin(w["a2"], self.tgids)]
        wake = w[(kind == S.SCHED_WAKEUP) & mine]
        on = _overlap(self.on_s, self.on_e, t0, t1)
        migr = int(((self.migr_ts >= t0) & (self.migr_ts < t1)).sum())
        # files
        fr = w[(kind == S.FILE_READ) & mine]
        fm = w[(kind == S.FILE_MISS) & mine]
        ff = w[(kind == S.FILE_FAULT) & mine]
        miss_bytes = int((PAGE << fm["a2"].astype(np.int64)).sum()) if len(fm) else 0
        # devices: mmap/ioctl on files that have an rdev (character devices)
        dev = w[np.isin(kind, [S.MMAP, S.IOCTL]) & mine & (w["a2"] != 0)]
        devices = {}
        for rdev in np.unique(dev["a2"]).tolist():
            d = dev[dev["a2"] == rdev]
            info = describe(rdev, "char")
            m = d[d["kind"] == S.MMAP]
            devices[info["path"] or f"char {info['major']}:{info['minor']}"] = {
                **info, "ioctls": int((d["kind"] == S.IOCTL).sum()), "mmaps": int(len(m)),
                "mmap_bytes": int(m["a0"].sum())}
        ioctl_all = int(((kind == S.IOCTL) & mine).sum())
        # hardware: CPUs the threads ran on, block devices behind page-cache misses
        cpus = sorted(set(ins["cpu"].tolist()) | set(w[mine]["cpu"].tolist()))
        blockdevs = {}
        for sdev in np.unique(fm["a3"]).tolist():
            major, minor = kernel_dev(sdev)
            name = proc_devices()["block"].get(major, "anonymous (no block device)" if major == 0 else "unknown")
            b = fm[fm["a3"] == sdev]
            blockdevs[f"{major}:{minor}"] = {"driver": name, "bytes": int((PAGE << b["a2"].astype(np.int64)).sum())}
        seconds = (t1 - t0) / 1e9
        layers = [
            {"name": "user space", "count": int(len(np.unique(w[mine]["pid"]))), "count_unit": "threads",
             "bytes": None, "time_s": round(float(on.sum()) / 1e9, 4), "time_unit": "on CPU",
             "detail": {"processes": int(len(np.unique(w[mine]["tgid"])))}},
            {"name": "system calls", "count": int(len(sc)), "count_unit": "calls",
             "bytes": int(mm["a0"][~prot_none].sum()) + brk_bytes, "bytes_unit": "mapped (mmap + brk)",
             "time_s": round(sum(sys_block.values()), 4), "time_unit": "blocked in calls",
             "detail": {"by_category": {c: {"count": int(n), "blocked_s": round(cat_time.get(c, 0.0), 4)}
                                        for c, n in cats.most_common()},
                        "top": [{"syscall": n, "count": int(c)} for n, c in by_name.most_common(10)],
                        "blocked_by_syscall": {k: round(v, 4) for k, v in
                                               sorted(sys_block.items(), key=lambda kv: -kv[1])[:8]},
                        "mmap_bytes": int(mm["a0"][~prot_none].sum()), "reserved_bytes": int(mm["a0"][prot_none].sum()),
                        "brk_bytes": brk_bytes,
                        "read_bytes_requested": int(reads["a3"].sum()), "ioctls": ioctl_all}},
            {"name": "memory", "count": int(len(pf)), "count_unit": "page faults",
             "bytes": int(len(np.unique(pf["a0"] >> 12))) * PAGE, "bytes_unit": "pages first touched",
             "time_s": round(block_by.get("page fault", 0.0), 4), "time_unit": "blocked in faults",
             "detail": {"write_faults": int(((pf["a2"] & 2) != 0).sum()),
                        "munmap_bytes": int(munmap["a1"].sum()), "munmaps": int(len(munmap)),
                        "mmaps": int(len(mm)), "file_backed_mmaps": int((mm["aux"] != 0xFFFFFFFF).sum())}},
            {"name": "scheduler", "count": int(len(out)), "count_unit": "switches out",
             "bytes": None, "time_s": round(float((off * self.off_run).sum()) / 1e9, 4),
             "time_unit": "waiting for a CPU",
             "detail": {"involuntary": int((out["a1"] == 0).sum()), "voluntary": int((out["a1"] != 0).sum()),
                        "migrations": migr, "wakeups": int(len(wake)),
                        "blocked_s": round(float(blocked.sum()) / 1e9, 4)}},
            {"name": "files / page cache", "count": int(len(fr)), "count_unit": "cache lookups",
             "bytes": int((fr["a2"].astype(np.int64) - fr["a1"].astype(np.int64) + 1).clip(0).sum()) * PAGE,
             "bytes_unit": "pages looked up", "time_s": None,
             "detail": {"misses": int(len(fm)), "miss_bytes": miss_bytes, "file_faults": int(len(ff))}},
            {"name": "devices", "count": int(sum(d["ioctls"] + d["mmaps"] for d in devices.values())),
             "count_unit": "ioctl/mmap on device files",
             "bytes": int(sum(d["mmap_bytes"] for d in devices.values())), "bytes_unit": "device memory mapped",
             "time_s": round(sum(v for k, v in sys_block.items() if k == "ioctl"), 4),
             "time_unit": "blocked in ioctl", "detail": {"files": devices}},
            {"name": "hardware", "count": len(cpus), "count_unit": "CPUs used",
             "bytes": miss_bytes, "bytes_unit": "read from storage",
             "time_s": round(float(on.sum()) / 1e9, 4), "time_unit": "CPU time",
             "detail": {"cpus": cpus, "block_devices": blockdevs,
                        "cpu_utilisation": round(float(on.sum()) / 1e9 / seconds, 3) if seconds > 0 else None}},
        ]
        return {"seconds": round(seconds, 4), "events": int(len(w)), "layers": layers}
