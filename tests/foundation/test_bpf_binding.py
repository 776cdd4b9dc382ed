"""The BPF build and the libbpf binding, against the real kernel."""
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import need_root
from kernelpilot.bpf.build import build_object, builtin_object, vmlinux_h
from kernelpilot.errors import KpError
from kernelpilot.probes.libbpf import BpfLoadError, BpfObject, enable_stats
from kernelpilot.probes.ringbuf import RingReader
from kernelpilot.traces import schema as S
from kernelpilot.traces.sources import EbpfSource

HERE = Path(__file__).parent


def test_vmlinux_h_is_generated_from_btf():
    h = vmlinux_h()
    assert h.name == "vmlinux.h" and h.stat().st_size > 1_000_000
    assert "struct task_struct {" in h.read_text()


def test_clang_error_is_one_clear_line(tmp_path):
    bad = tmp_path / "broken.bpf.c"
    bad.write_text("int x = ;\n")
    with pytest.raises(KpError, match="clang could not build broken.bpf.c"):
        build_object(bad)


def test_verifier_rejection_carries_the_log():
    need_root()
    obj = build_object(HERE / "bad_verifier.bpf.c")
    with pytest.raises(BpfLoadError) as e:
        BpfObject(obj)
    assert "verifier rejected program 'reads_out_of_bounds'" in str(e.value)
    assert "invalid access to map value" in e.value.log


def test_map_update_lookup_delete():
    need_root()
    with BpfObject(builtin_object(), autoload=["kp_sys_enter"]) as o:
        cfg = o.map("kp_cfg")
        value = struct.pack("<IIQ16s", 4, 7, 9, b"abc")
        cfg.update(0, value)
        assert cfg.lookup(0) == value
        bits = o.map("kp_pidbits")
        bits.update(3, (5).to_bytes(8, "little"))
        assert int.from_bytes(bits.lookup(3), "little") == 5
        with pytest.raises(KpError, match="key must be 4 bytes"):
            cfg.lookup(b"\x00")


def _own_events(groups, action):
    with EbpfSource(groups, pids=[os.getpid()], exclude_self=False) as src:
        action()
        return src.drain()


def test_sees_own_syscalls():
    need_root()
    ev = _own_events(["syscalls"], lambda: [os.getppid() for _ in range(500)])
    sc = ev[ev["kind"] == S.SYSCALL]
    # the filter is per process: every event is this process's (other threads of it, e.g. a pytest-xdist
    # worker's, may add some), and the calls this thread made carry this thread's id
    assert (sc["tgid"] == os.getpid()).all()
    assert ((sc["a0"] == 110) & (sc["pid"] == os.getpid())).sum() >= 500  # getppid on x86-64
    assert np.all(np.diff(sc["ts"].astype(np.int64)) >= 0)


def test_sees_own_page_faults():
    need_root()
    import mmap
    m = mmap.mmap(-1, 64 * 4096)
    base = np.frombuffer(m, dtype=np.uint8).ctypes.data

    def touch():
        for i in range(64):
            m[i * 4096] = 1
    ev = _own_events(["faults"], touch)
    pf = ev[ev["kind"] == S.PAGE_FAULT]
    pages = set(((pf["a0"] - base) // 4096).tolist())
    assert set(range(64)) <= pages
    assert (pf["a2"][(pf["a0"] >= base) & (pf["a0"] < base + 64 * 4096)] & 2).all()  # write faults


def test_ring_overflow_is_counted_not_fatal():
    need_root()
    src = EbpfSource(["syscalls"], pids=[os.getpid()], exclude_self=False, ring_mb=0)
    src.ring_bytes = 1 << 14  # 16 KiB: ~200 records
    with src:
        for _ in range(5000):
            os.getppid()
        got = src.poll()
        st = src.stats()
    assert 0 < len(got) < 5000
    assert st["dropped"] >= 5000 - len(got) - 50


def test_run_stats_count_real_runs():
    need_root()
    with enable_stats(), EbpfSource(["syscalls"], pids=[os.getpid()], exclude_self=False) as src:
        for _ in range(300):
            os.getppid()
        st = src.obj.program("kp_sys_enter").run_stats()
    assert st["run_cnt"] >= 300 and st["run_time_ns"] > 0 and st["ns_per_run"] > 0
