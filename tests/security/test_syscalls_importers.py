import subprocess

import pytest

from kernelpilot.errors import KpError
from kernelpilot.security import syscalls as S
from kernelpilot.traces.importers.adfa import load_adfa, read_trace_file, write_trace_file
from kernelpilot.traces.importers.strace import load_strace


def test_both_abis_share_names():
    assert S.name_of(9, "x86_64") == "mmap" == S.name_of(192, "i386")   # mmap2 -> mmap
    assert S.name_of(4, "x86_64") == "stat" == S.name_of(195, "i386")   # stat64 -> stat
    assert S.name_of(102, "x86_64") == "getuid" == S.name_of(199, "i386")  # getuid32 -> getuid
    assert S.name_of(59, "x86_64") == "execve" == S.name_of(11, "i386")
    assert S.name_of(102, "i386") == "socketcall"
    assert S.name_of(99999) == S.UNKNOWN
    with pytest.raises(KpError, match="unknown i386 syscall number 99999"):
        S.names_of([3, 99999], "i386", strict=True)
    with pytest.raises(KpError, match="unknown syscall ABI"):
        S.name_of(1, "arm")


def test_adfa_layout(tmp_path):
    (tmp_path / "Training_Data_Master").mkdir()
    (tmp_path / "Validation_Data_Master").mkdir()
    (tmp_path / "Attack_Data_Master" / "Web_Shell_3").mkdir(parents=True)
    write_trace_file(tmp_path / "Training_Data_Master" / "UTD-0001.txt", [11, 45, 5, 3, 6, 252])
    write_trace_file(tmp_path / "Validation_Data_Master" / "UVD-0001.txt", [11, 3, 4, 252])
    write_trace_file(tmp_path / "Attack_Data_Master" / "Web_Shell_3" / "UAD-1.txt", [120, 63, 63, 11])
    d = load_adfa(tmp_path)
    assert [len(d[k]) for k in ("train", "valid", "attack")] == [1, 1, 1]
    assert d["train"][0].calls == ["execve", "brk", "open", "read", "close", "exit_group"]
    a = d["attack"][0]
    assert (a.label, a.family, a.calls) == ("attack", "Web_Shell", ["clone", "dup2", "dup2", "execve"])


@pytest.mark.parametrize("content,msg", [
    (b"", "is empty"),
    (b"   \n", "is empty"),
    (b"\x7fELF\x02\x01\x01\x00\xff\xfe", "is binary"),
    (b"3 4 abc 5", "is not a syscall number"),
    (b"3 4 9999 5", "unknown i386 syscall number 9999"),
])
def test_bad_trace_files(tmp_path, content, msg):
    p = tmp_path / "t.txt"
    p.write_bytes(content)
    with pytest.raises(KpError, match=msg):
        read_trace_file(p)


def test_huge_trace_file(tmp_path):
    p = tmp_path / "huge.txt"
    with open(p, "wb") as f:
        f.truncate(65 << 20)  # sparse: no disk used
    with pytest.raises(KpError, match="over the 64 MiB limit"):
        read_trace_file(p)


def test_strace_log(tmp_path):
    log = tmp_path / "s.log"
    r = subprocess.run(["strace", "-f", "-ttt", "-o", str(log), "sh", "-c", "cat /etc/hostname >/dev/null"])
    if r.returncode != 0:
        pytest.skip("strace cannot trace here")
    traces = load_strace(log)
    assert len(traces) >= 2  # sh and cat
    calls = [c for t in traces for c in t.calls]
    assert calls[0] == "execve" and "exit_group" in calls and "openat" in calls
    assert all(t.ts is not None and len(t.ts) == len(t) for t in traces)
    bad = tmp_path / "bad.log"
    bad.write_text("hello world\n")
    with pytest.raises(KpError, match="no syscall lines"):
        load_strace(bad)
