"""uprobes into user-space libraries under the real kernel: a test library built here with cc (a
function called exactly N times), libc's malloc/free, per phase; bad specs, missing symbols, a
stripped file, a process gone before attach."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import need_root, run_kpilot
from kernelpilot.aipath import uprobes as U

LIB_C = r"""
static volatile long sink;
__attribute__((noipa)) static long kp_hidden(long x) { sink += x; return x * 3; }
__attribute__((noipa)) long kp_work(long n) { sink += n; return kp_hidden(n); }
__attribute__((noipa)) long kp_copy(void *d, const void *s, unsigned long n) { sink += n; return 0; }
"""
MAIN_C = r"""
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>
long kp_work(long); long kp_copy(void *, const void *, unsigned long);
static void mark(const char *n) { /* kernelpilot.aipath.markers */
    unsigned long w[2] = {0, 0};
    for (int i = 0; i < 16 && n[i]; i++) ((char *)w)[i] = n[i];
    syscall(SYS_getpid, 0x4B50494C4F54UL, w[0], w[1]);
}
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    void *p[64];
    mark("work");
    for (long i = 0; i < n; i++) kp_work(i);
    mark("copy");
    for (long i = 0; i < n; i++) kp_copy(0, 0, 100);
    mark("malloc");
    for (int i = 0; i < 64; i++) p[i] = malloc(12345);
    mark("free");
    for (int i = 0; i < 64; i++) free(p[i]);
    return 0;
}
"""
N = 300


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cc = shutil.which("cc")
    if not cc:
        pytest.skip("no C compiler (cc)")
    d = tmp_path_factory.mktemp("uprobe-lib")
    (d / "t.c").write_text(LIB_C)
    (d / "main.c").write_text(MAIN_C)
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", d / "libkpt.so", d / "t.c"], check=True)
    subprocess.run([cc, "-O2", "-o", d / "main", d / "main.c", f"-L{d}", "-lkpt", f"-Wl,-rpath,{d}"], check=True)
    shutil.copy(d / "libkpt.so", d / "libkpt-stripped.so")
    subprocess.run(["strip", "--strip-all", d / "libkpt-stripped.so"], check=True)
    return d


def test_specs_parse_and_resolve(built):
    specs = U.parse_specs(f"{built}/libkpt.so:kp_work,kp_copy/3;libc.so.6:malloc")
    assert specs == [(f"{built}/libkpt.so", ["kp_work", "kp_copy/3"]), ("libc.so.6", ["malloc"])]
    targets, notes = U.resolve(specs)
    assert notes == []
    by = {t.symbol: t for t in targets}
    assert by["kp_copy"].bytes_arg == (3, 0) and by["malloc"].bytes_arg == (1, 0)
    from elftools.elf.elffile import ELFFile  # the offset lies inside the file's executable text
    with open(built / "libkpt.so", "rb") as fh:
        text = ELFFile(fh).get_section_by_name(".text")
        assert text["sh_offset"] <= by["kp_work"].offset < text["sh_offset"] + text["sh_size"]
    assert U.resolve(U.parse_specs("libc.so.6:memcpy"))[1][0].endswith("is an IFUNC (its resolver runs once at "
                                                                        "load; the chosen implementation is not named): skipped")


def test_stripped_file_and_missing_symbol_messages(built):
    _, notes = U.resolve(U.parse_specs(f"{built}/libkpt-stripped.so:kp_hidden,kp_work"))
    assert notes == ["uprobes: libkpt-stripped.so has no function kp_hidden (the file is stripped: only its "
                     "exported symbols can be probed)"]
    t, notes = U.resolve(U.parse_specs(f"{built}/libkpt.so:kp_hidden,nosuch"))
    assert [x.symbol for x in t] == ["kp_hidden"]  # a local function, found in .symtab
    assert notes == ["uprobes: libkpt.so has no function nosuch"]
    assert U.resolve(U.parse_specs("libnope-kp.so:f"))[1] == ["uprobes: library libnope-kp.so not found (give a "
                                                              "path, or install it)"]


@pytest.fixture(scope="module")
def probed_run(built):
    need_root()
    out = built / "run.json"
    p = run_kpilot("aipath", "--json", "-o", out, "--no-default-uprobes", "--uprobes",
                   f"{built}/libkpt.so:kp_work,kp_hidden,kp_copy/3,nosuch;libc.so.6:malloc,free;"
                   f"{built}/libkpt-stripped.so:kp_hidden", "--", built / "main", N, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(out.read_text()), p


def test_uprobe_counts_equal_the_calls_made(probed_run, built):
    r, _ = probed_run
    f = r["uprobes"]["functions"]
    work = f[f"{built}/libkpt.so:kp_work"]
    assert work["calls"] == N and work["returns"] == N and work["by_phase"] == {
        "work": {"calls": N, "bytes": 0, "time_s": work["by_phase"]["work"]["time_s"]}}
    assert f[f"{built}/libkpt.so:kp_hidden"]["calls"] == N  # called by kp_work, found in .symtab
    copy = f[f"{built}/libkpt.so:kp_copy"]
    assert copy["by_phase"]["copy"]["calls"] == N and copy["bytes"] == N * 100
    assert work["time_s"] > 0 and work["mean_ns"] > 0
    malloc, free = f["libc.so.6:malloc"], f["libc.so.6:free"]
    assert malloc["by_phase"]["malloc"] == {"calls": 64, "bytes": 64 * 12345,
                                            "time_s": malloc["by_phase"]["malloc"]["time_s"]}
    assert free["by_phase"]["free"]["calls"] == 64
    assert "work" not in malloc["by_phase"]  # the loop of kp_work calls allocates nothing


def test_bad_symbols_are_one_line_notes_and_the_rest_is_traced(probed_run, built):
    r, p = probed_run
    notes = [ln for ln in p.stderr.splitlines() if ln.startswith("note: uprobes:")]
    assert "note: uprobes: libkpt.so has no function nosuch" in notes
    assert any("libkpt-stripped.so has no function kp_hidden (the file is stripped" in n for n in notes)
    assert "Traceback" not in p.stderr
    assert [ph["name"] for ph in r["phases"]] == ["startup", "work", "copy", "malloc", "free"]
    assert r["layers"][1]["count"] > 0 and r["exit_code"] == 0


@pytest.mark.parametrize("spec,msg", [("kp_work", "has no library"), ("libc.so.6:", "is not LIB:SYMBOL"),
                                      ("libc.so.6:malloc/9", "must be 1-5")])
def test_malformed_spec_fails_before_running(spec, msg):
    p = run_kpilot("aipath", "--uprobes", spec, "--", "/bin/true")
    assert p.returncode == 2 and msg in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_uprobes_refused_on_a_recorded_trace(tmp_path):
    p = run_kpilot("aipath", "--uprobes", "libc.so.6:malloc", "--from", tmp_path / "x.parquet")
    assert p.returncode == 2 and "not to --from TRACE" in p.stderr


def test_a_process_gone_before_attach_is_a_note(built):
    need_root()
    from kernelpilot.aipath.probe import AipathProbe
    targets, _ = U.resolve(U.parse_specs(f"{built}/libkpt.so:kp_work"))
    gone = subprocess.Popen(["/bin/true"])
    gone.wait()
    probe = AipathProbe(targets)
    try:
        probe.watch(gone.pid)
        assert probe.notes == [f"uprobes: process {gone.pid} exited before the uprobes were attached"]
        assert probe.uprobe_stats() == {}
    finally:
        probe.close()


def test_bench_uprobe_cost_counts_every_call():
    need_root()
    if not shutil.which("gcc"):
        pytest.skip("no gcc")
    from kernelpilot.bench.aipath import uprobe_cost
    r = uprobe_cost(quick=True)
    assert r["calls_counted"] == {"entry probe": r["calls_per_run"], "entry + return probes": r["calls_per_run"]}
    assert r["counts_exact"] is True
    assert set(r["ns_per_call"]) == {"unprobed", "entry probe", "entry + return probes"}
    assert all(v > 0 for v in r["probe_cost_ns_per_call"].values())  # a trap costs more than the function
    assert all(v and v > 0 for v in r["bpf_program_ns_per_call"].values())


def test_uprobes_follow_a_child_process(built):
    """A wrapper forks the program: its uprobes are set once the kernel side saw the fork (the
    child sleeps first, so none of its calls comes before that)."""
    need_root()
    from kernelpilot.aipath.run import trace_ai
    r = trace_ai(["/bin/bash", "-c", f"(sleep 0.3; exec {built}/main {N}); true"],
                 uprobes=f"{built}/libkpt.so:kp_work", default_uprobes=False)
    f = r["uprobes"]["functions"][f"{built}/libkpt.so:kp_work"]
    assert f["calls"] == N and f["by_phase"]["work"]["calls"] == N
    assert len(r["tgids"]) >= 2
