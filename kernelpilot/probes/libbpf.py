"""A small ctypes binding over the system's libbpf.so.1: open/load/attach BPF objects, maps,
per-program run statistics and BPF_PROG_TEST_RUN. Verifier rejections raise BpfLoadError with
the verifier's log."""
from __future__ import annotations

import ctypes as C
import ctypes.util
import errno as errno_mod
import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from kernelpilot.errors import CapabilityError, KpError

_lib = None
_log_lines: list[str] = []
_log_lock = threading.Lock()


class BpfError(KpError):
    pass


class BpfLoadError(BpfError):
    """The kernel refused a program; .log holds what libbpf and the verifier said."""

    def __init__(self, message: str, log: str):
        super().__init__(message, detail=log)
        self.log = log


# ---- ctypes declarations ----
_PRINT_FN = C.CFUNCTYPE(C.c_int, C.c_int, C.c_char_p, C.c_void_p)


class TestRunOpts(C.Structure):
    _fields_ = [("sz", C.c_size_t), ("data_in", C.c_void_p), ("data_out", C.c_void_p),
                ("data_size_in", C.c_uint32), ("data_size_out", C.c_uint32),
                ("ctx_in", C.c_void_p), ("ctx_out", C.c_void_p),
                ("ctx_size_in", C.c_uint32), ("ctx_size_out", C.c_uint32),
                ("retval", C.c_uint32), ("repeat", C.c_int), ("duration", C.c_uint32),
                ("flags", C.c_uint32), ("cpu", C.c_uint32), ("batch_size", C.c_uint32)]


class UprobeOpts(C.Structure):  # struct bpf_uprobe_opts as of libbpf 1.1 (later fields left zero)
    _fields_ = [("sz", C.c_size_t), ("ref_ctr_offset", C.c_size_t), ("bpf_cookie", C.c_uint64),
                ("retprobe", C.c_bool), ("func_name", C.c_char_p)]


class ProgInfo(C.Structure):
    _fields_ = [("type", C.c_uint32), ("id", C.c_uint32), ("tag", C.c_uint8 * 8),
                ("jited_prog_len", C.c_uint32), ("xlated_prog_len", C.c_uint32),
                ("jited_prog_insns", C.c_uint64), ("xlated_prog_insns", C.c_uint64),
                ("load_time", C.c_uint64), ("created_by_uid", C.c_uint32), ("nr_map_ids", C.c_uint32),
                ("map_ids", C.c_uint64), ("name", C.c_char * 16), ("ifindex", C.c_uint32),
                ("gpl_compatible", C.c_uint32), ("netns_dev", C.c_uint64), ("netns_ino", C.c_uint64),
                ("nr_jited_ksyms", C.c_uint32), ("nr_jited_func_lens", C.c_uint32),
                ("jited_ksyms", C.c_uint64), ("jited_func_lens", C.c_uint64),
                ("btf_id", C.c_uint32), ("func_info_rec_size", C.c_uint32), ("func_info", C.c_uint64),
                ("nr_func_info", C.c_uint32), ("nr_line_info", C.c_uint32), ("line_info", C.c_uint64),
                ("jited_line_info", C.c_uint64), ("nr_jited_line_info", C.c_uint32),
                ("line_info_rec_size", C.c_uint32), ("jited_line_info_rec_size", C.c_uint32),
                ("nr_prog_tags", C.c_uint32), ("prog_tags", C.c_uint64), ("run_time_ns", C.c_uint64),
                ("run_cnt", C.c_uint64), ("recursion_misses", C.c_uint64), ("verified_insns", C.c_uint32),
                ("attach_btf_obj_id", C.c_uint32), ("attach_btf_id", C.c_uint32), ("_pad", C.c_uint32)]


_SIGS = {
    "libbpf_set_print": (C.c_void_p, [_PRINT_FN]),
    "bpf_object__open_file": (C.c_void_p, [C.c_char_p, C.c_void_p]),
    "bpf_object__load": (C.c_int, [C.c_void_p]),
    "bpf_object__close": (None, [C.c_void_p]),
    "bpf_object__find_program_by_name": (C.c_void_p, [C.c_void_p, C.c_char_p]),
    "bpf_object__next_program": (C.c_void_p, [C.c_void_p, C.c_void_p]),
    "bpf_object__find_map_by_name": (C.c_void_p, [C.c_void_p, C.c_char_p]),
    "bpf_object__next_map": (C.c_void_p, [C.c_void_p, C.c_void_p]),
    "bpf_program__name": (C.c_char_p, [C.c_void_p]),
    "bpf_program__section_name": (C.c_char_p, [C.c_void_p]),
    "bpf_program__fd": (C.c_int, [C.c_void_p]),
    "bpf_program__set_autoload": (C.c_int, [C.c_void_p, C.c_bool]),
    "bpf_program__insn_cnt": (C.c_size_t, [C.c_void_p]),
    "bpf_program__attach": (C.c_void_p, [C.c_void_p]),
    "bpf_program__attach_uprobe_opts": (C.c_void_p, [C.c_void_p, C.c_int, C.c_char_p, C.c_size_t,
                                                     C.POINTER(UprobeOpts)]),
    "bpf_link__destroy": (C.c_int, [C.c_void_p]),
    "bpf_map__name": (C.c_char_p, [C.c_void_p]),
    "bpf_map__fd": (C.c_int, [C.c_void_p]),
    "bpf_map__type": (C.c_int, [C.c_void_p]),
    "bpf_map__key_size": (C.c_uint32, [C.c_void_p]),
    "bpf_map__value_size": (C.c_uint32, [C.c_void_p]),
    "bpf_map__max_entries": (C.c_uint32, [C.c_void_p]),
    "bpf_map__set_max_entries": (C.c_int, [C.c_void_p, C.c_uint32]),
    "bpf_map__set_value_size": (C.c_int, [C.c_void_p, C.c_uint32]),
    "bpf_map__initial_value": (C.c_void_p, [C.c_void_p, C.POINTER(C.c_size_t)]),
    "bpf_map__set_initial_value": (C.c_int, [C.c_void_p, C.c_void_p, C.c_size_t]),
    "bpf_map_update_elem": (C.c_int, [C.c_int, C.c_void_p, C.c_void_p, C.c_uint64]),
    "bpf_map_lookup_elem": (C.c_int, [C.c_int, C.c_void_p, C.c_void_p]),
    "bpf_map_delete_elem": (C.c_int, [C.c_int, C.c_void_p]),
    "bpf_map_get_next_key": (C.c_int, [C.c_int, C.c_void_p, C.c_void_p]),
    "bpf_map_lookup_batch": (C.c_int, [C.c_int, C.c_void_p, C.c_void_p, C.c_void_p, C.c_void_p,
                                       C.POINTER(C.c_uint32), C.c_void_p]),
    "bpf_map_update_batch": (C.c_int, [C.c_int, C.c_void_p, C.c_void_p, C.POINTER(C.c_uint32), C.c_void_p]),
    "bpf_enable_stats": (C.c_int, [C.c_int]),
    "bpf_obj_get_info_by_fd": (C.c_int, [C.c_int, C.c_void_p, C.POINTER(C.c_uint32)]),
    "bpf_prog_test_run_opts": (C.c_int, [C.c_int, C.POINTER(TestRunOpts)]),
    "libbpf_probe_bpf_prog_type": (C.c_int, [C.c_int, C.c_void_p]),
    "libbpf_probe_bpf_map_type": (C.c_int, [C.c_int, C.c_void_p]),
    "libbpf_num_possible_cpus": (C.c_int, []),
}


@_PRINT_FN
def _print_cb(level, fmt, ap):
    """libbpf's messages, formatted by the C library. A verifier log arrives as one message of
    any length: measure it on a copy of the va_list (on x86-64 va_copy is a 24-byte struct copy)."""
    probe = (C.c_char * 24)()
    C.memmove(probe, ap, 24)
    n = _libc.vsnprintf(None, 0, fmt, C.cast(probe, C.c_void_p))
    buf = C.create_string_buffer(max(n, 0) + 1)
    _libc.vsnprintf(buf, len(buf), fmt, ap)
    with _log_lock:
        _log_lines.append(buf.value.decode(errors="replace"))
        del _log_lines[:-4000]
    return 0


_libc = C.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.vsnprintf.argtypes = [C.c_char_p, C.c_size_t, C.c_char_p, C.c_void_p]


def lib():
    """libbpf.so.1, loaded once; a clear error where it is missing."""
    global _lib
    if _lib is None:
        try:
            l = C.CDLL("libbpf.so.1", use_errno=True)
        except OSError:
            raise CapabilityError("libbpf.so.1 not found: apt-get install libbpf1 (make run does this as root)")
        for name, (res, args) in _SIGS.items():
            fn = getattr(l, name, None)
            if fn is None:
                continue
            fn.restype, fn.argtypes = res, args
        l.libbpf_set_print(_print_cb)
        _lib = l
    return _lib


@contextmanager
def captured_log():
    """Collect libbpf/verifier messages printed inside the block."""
    with _log_lock:
        start = len(_log_lines)
    out: list[str] = []
    try:
        yield out
    finally:
        with _log_lock:
            out.extend(_log_lines[start:])


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = -ret
        raise BpfError(f"{what} failed: {os.strerror(err)} (errno {err})")
    return ret


def _explain_load_failure(err: int, log: str) -> str:
    if err in (errno_mod.EPERM, errno_mod.EACCES) and os.geteuid() != 0 and "R" not in log[-200:]:
        return "loading eBPF needs root (CAP_BPF + CAP_PERFMON); run as root"
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    prog = next((ln.split("'")[1] for ln in lines if "prog '" in ln and "load failed" in ln), None)
    if "-- BEGIN PROG LOAD LOG --" in log:
        body = log.split("-- BEGIN PROG LOAD LOG --")[-1].split("-- END PROG LOAD LOG --")[0]
        reason = [ln for ln in body.splitlines() if ln.strip() and not ln.startswith(("processed", "verification time"))]
        last = reason[-1].strip() if reason else "rejected"
        return f"the verifier rejected program '{prog}': {last}"
    tail = lines[-1] if lines else os.strerror(err)
    return f"loading the BPF object failed ({os.strerror(err)}): {tail}"


class Program:
    def __init__(self, obj: "BpfObject", ptr: int):
        self.obj, self.ptr = obj, ptr
        self.name = lib().bpf_program__name(ptr).decode()
        self.section = lib().bpf_program__section_name(ptr).decode()
        self._links: list[int] = []

    @property
    def fd(self) -> int:
        return lib().bpf_program__fd(self.ptr)

    @property
    def insn_count(self) -> int:
        return lib().bpf_program__insn_cnt(self.ptr)

    def attach(self) -> "Program":
        with captured_log() as log:
            link = lib().bpf_program__attach(self.ptr)
        if not link:
            err = C.get_errno()
            raise BpfError(f"attaching {self.name} ({self.section}) failed: {os.strerror(err)}"
                           + (f": {log[-1].strip()}" if log else ""))
        self._links.append(link)
        return self

    def attach_uprobe(self, binary: str, offset: int, pid: int = -1, retprobe: bool = False,
                      cookie: int = 0) -> "Program":
        """A uprobe (or uretprobe) at file offset `offset` of `binary`, for process `pid` (-1: all);
        the program reads `cookie` with bpf_get_attach_cookie."""
        o = UprobeOpts(sz=C.sizeof(UprobeOpts), bpf_cookie=cookie, retprobe=retprobe)
        with captured_log() as log:
            link = lib().bpf_program__attach_uprobe_opts(self.ptr, pid, str(binary).encode(), offset, C.byref(o))
        if not link:
            err = C.get_errno()
            e = BpfError(f"attaching {self.name} to {binary}+{offset:#x} failed: {os.strerror(err)}"
                         + (f": {log[-1].strip()}" if log else ""))
            e.errno = err
            raise e
        self._links.append(link)
        return self

    def detach(self) -> None:
        while self._links:
            lib().bpf_link__destroy(self._links.pop())

    @property
    def attached(self) -> bool:
        return bool(self._links)

    def info(self) -> ProgInfo:
        info = ProgInfo()
        n = C.c_uint32(C.sizeof(info))
        _check(lib().bpf_obj_get_info_by_fd(self.fd, C.byref(info), C.byref(n)), "bpf_obj_get_info_by_fd")
        return info

    def run_stats(self) -> dict:
        """run_cnt, run_time_ns and ns per run (counted only while `enable_stats()` is held)."""
        i = self.info()
        return {"run_cnt": i.run_cnt, "run_time_ns": i.run_time_ns,
                "ns_per_run": (i.run_time_ns / i.run_cnt) if i.run_cnt else None,
                "xlated_insns": i.xlated_prog_len // 8, "jited_bytes": i.jited_prog_len,
                "verified_insns": i.verified_insns}

    def test_run(self, data: bytes | None = None, ctx: bytes | None = None, repeat: int = 1,
                 data_out_size: int = 0, ctx_out_size: int = 0, flags: int = 0, cpu: int = 0) -> dict:
        """BPF_PROG_TEST_RUN: returns retval, duration (ns per repetition), data_out and ctx_out."""
        o = TestRunOpts(sz=C.sizeof(TestRunOpts), repeat=repeat, flags=flags, cpu=cpu)
        bufs = {}

        def buf(name, content=None, size=0):
            b = C.create_string_buffer(bytes(content), len(content)) if content is not None \
                else C.create_string_buffer(size)
            bufs[name] = b
            return C.cast(b, C.c_void_p), len(b)

        if data is not None:
            o.data_in, o.data_size_in = buf("data_in", data)
        if data_out_size:
            o.data_out, o.data_size_out = buf("data_out", size=data_out_size)
        if ctx is not None:
            o.ctx_in, o.ctx_size_in = buf("ctx_in", ctx)
        if ctx_out_size:
            o.ctx_out, o.ctx_size_out = buf("ctx_out", size=ctx_out_size)
        _check(lib().bpf_prog_test_run_opts(self.fd, C.byref(o)), f"test run of {self.name}")
        return {"retval": o.retval, "duration_ns": o.duration,
                "data_out": bufs["data_out"].raw[:o.data_size_out] if data_out_size else None,
                "ctx_out": bufs["ctx_out"].raw[:o.ctx_size_out] if ctx_out_size else None}


class Map:
    def __init__(self, obj: "BpfObject", ptr: int):
        L = lib()
        self.obj, self.ptr = obj, ptr
        self.name = L.bpf_map__name(ptr).decode()
        self.type = L.bpf_map__type(ptr)
        self.key_size = L.bpf_map__key_size(ptr)
        self.value_size = L.bpf_map__value_size(ptr)
        self.max_entries = L.bpf_map__max_entries(ptr)

    @property
    def fd(self) -> int:
        return lib().bpf_map__fd(self.ptr)

    @property
    def percpu(self) -> bool:
        return self.type in (5, 6, 10, 21)  # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH, PERCPU_CGROUP_STORAGE

    @property
    def stored_value_size(self) -> int:
        """Bytes a lookup returns: per-CPU maps hold one 8-byte-aligned slot per possible CPU."""
        if self.percpu:
            return ((self.value_size + 7) // 8 * 8) * possible_cpus()
        return self.value_size

    def _key(self, key) -> C.Array:
        if isinstance(key, int):
            key = key.to_bytes(self.key_size, "little")
        key = bytes(key)
        if len(key) != self.key_size:
            raise BpfError(f"map {self.name}: key must be {self.key_size} bytes, got {len(key)}")
        return C.create_string_buffer(key, self.key_size)

    def lookup(self, key) -> bytes | None:
        v = C.create_string_buffer(self.stored_value_size)
        ret = lib().bpf_map_lookup_elem(self.fd, self._key(key), v)
        if ret < 0:
            if -ret == errno_mod.ENOENT:
                return None
            _check(ret, f"lookup in {self.name}")
        return v.raw

    def update(self, key, value: bytes, flags: int = 0) -> None:
        value = bytes(value)
        if len(value) != self.stored_value_size:
            raise BpfError(f"map {self.name}: value must be {self.stored_value_size} bytes, got {len(value)}")
        _check(lib().bpf_map_update_elem(self.fd, self._key(key), C.create_string_buffer(value, len(value)), flags),
               f"update of {self.name}")

    def delete(self, key) -> bool:
        ret = lib().bpf_map_delete_elem(self.fd, self._key(key))
        if ret < 0 and -ret == errno_mod.ENOENT:
            return False
        _check(ret, f"delete in {self.name}")
        return True

    def keys(self):
        cur = None
        nxt = C.create_string_buffer(self.key_size)
        while True:
            ret = lib().bpf_map_get_next_key(self.fd, cur, nxt)
            if ret < 0:
                return
            k = nxt.raw
            yield k
            cur = C.create_string_buffer(k, self.key_size)

    def items(self):
        for k in list(self.keys()):
            v = self.lookup(k)
            if v is not None:
                yield k, v

    def update_batch(self, keys: bytes, values: bytes, count: int) -> None:
        """Update `count` entries at once from packed keys and values (one syscall)."""
        n = C.c_uint32(count)
        kb = C.create_string_buffer(bytes(keys), len(keys))
        vb = C.create_string_buffer(bytes(values), len(values))
        _check(lib().bpf_map_update_batch(self.fd, kb, vb, C.byref(n), None), f"batch update of {self.name}")

    def sum_percpu_u64(self, key) -> list[int]:
        """For a per-CPU map of u64 counters: the value summed over CPUs, per u64 field."""
        import numpy as np
        raw = self.lookup(key)
        if raw is None:
            return []
        slot = (self.value_size + 7) // 8 * 8
        arr = np.frombuffer(raw, dtype="<u8").reshape(possible_cpus(), slot // 8)
        return [int(x) for x in arr.sum(axis=0)[: self.value_size // 8]]


def detach_all(programs) -> None:
    """Detach every link of these programs at once: each tracepoint link's destroy waits for the
    kernel's RCU grace period (10-20 ms here), one after another 0.35 s for kp_trace's 14 links and
    0.74 s for the agent's 42; destroyed on threads the waits overlap (0.14x, measured side by side)."""
    links = [(p, link) for p in programs for link in p._links]
    if len(links) < 2 or sys.is_finalizing():  # at exit (an object's __del__) no thread starts
        for p in programs:
            p.detach()
        return
    for p, _ in links:
        p._links = []
    ts = [threading.Thread(target=lib().bpf_link__destroy, args=(link,)) for _, link in links[:64]]
    for t in ts:
        t.start()
    for _, link in links[64:]:
        lib().bpf_link__destroy(link)
    for t in ts:
        t.join()


class BpfObject:
    """One BPF object file: open, adjust, load; then its programs and maps.

    autoload: if given, only these program names are loaded (the rest are skipped by the verifier).
    map_sizes: {map name: max_entries} applied before load (a ring buffer's size, say)."""

    def __init__(self, path: str | os.PathLike, autoload=None, map_sizes: dict | None = None):
        L = lib()
        path = Path(path)
        if not path.exists():
            raise BpfError(f"BPF object not found: {path}")
        with captured_log() as log:
            ptr = L.bpf_object__open_file(str(path).encode(), None)
        if not ptr:
            raise BpfError(f"cannot open BPF object {path.name}: {os.strerror(C.get_errno())}"
                           + (f": {log[-1].strip()}" if log else ""))
        self.ptr, self.path = ptr, path
        self.programs: dict[str, Program] = {}
        p = L.bpf_object__next_program(ptr, None)
        while p:
            prog = Program(self, p)
            self.programs[prog.name] = prog
            if autoload is not None:
                L.bpf_program__set_autoload(p, prog.name in autoload)
            p = L.bpf_object__next_program(ptr, p)
        if autoload is not None:
            missing = set(autoload) - set(self.programs)
            if missing:
                self.close()
                raise BpfError(f"{path.name} has no program named {', '.join(sorted(missing))}")
        for name, n in (map_sizes or {}).items():
            m = L.bpf_object__find_map_by_name(ptr, name.encode())
            if not m:
                self.close()
                raise BpfError(f"{path.name} has no map named {name}")
            _check(L.bpf_map__set_max_entries(m, n), f"resizing map {name}")
        with captured_log() as log:
            ret = L.bpf_object__load(ptr)
        if ret < 0:
            text = "\n".join(log)
            self.close()
            raise BpfLoadError(_explain_load_failure(-ret, text), text)
        self.maps: dict[str, Map] = {}
        m = L.bpf_object__next_map(ptr, None)
        while m:
            mp = Map(self, m)
            self.maps[mp.name] = mp
            m = L.bpf_object__next_map(ptr, m)
        self.loaded_programs = [n for n in self.programs if autoload is None or n in autoload]

    def program(self, name: str) -> Program:
        try:
            return self.programs[name]
        except KeyError:
            raise BpfError(f"{self.path.name} has no program named {name}") from None

    def map(self, name: str) -> Map:
        try:
            return self.maps[name]
        except KeyError:
            raise BpfError(f"{self.path.name} has no map named {name}") from None

    def close(self) -> None:
        if self.ptr:
            detach_all(self.programs.values())
            lib().bpf_object__close(self.ptr)
            self.ptr = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


_cpus = None


def possible_cpus() -> int:
    global _cpus
    if _cpus is None:
        _cpus = lib().libbpf_num_possible_cpus()
    return _cpus


@contextmanager
def enable_stats():
    """Turn on the kernel's per-program run_time_ns/run_cnt accounting while the block runs."""
    fd = lib().bpf_enable_stats(0)  # BPF_STATS_RUN_TIME
    if fd < 0:
        raise BpfError(f"BPF_ENABLE_STATS failed: {os.strerror(-fd)}")
    try:
        yield
    finally:
        os.close(fd)


PROG_TYPES = {"socket_filter": 1, "kprobe": 2, "sched_cls": 3, "tracepoint": 5, "xdp": 6,
              "perf_event": 7, "raw_tracepoint": 17, "tracing": 26, "struct_ops": 27, "lsm": 29}


def probe_prog_type(name: str) -> bool:
    """Does this kernel support the program type? (libbpf loads a trivial program of it)"""
    try:
        return lib().libbpf_probe_bpf_prog_type(PROG_TYPES[name], None) == 1
    except CapabilityError:
        return False
