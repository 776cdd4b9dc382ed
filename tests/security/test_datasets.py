"""The FHIDS and UNM importers on the real tarballs (skipped without them), the split protocol,
and bad input through the CLI on small hand-made tarballs."""
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from sec_common import kpilot
from kernelpilot.errors import KpError
from kernelpilot.security import datasets as DS

REAL = DS.datasets_dir() / "security"


def need(name):
    p = REAL / DS.TARBALL[name]
    if not p.is_file():
        pytest.skip(f"{p} absent (set KPILOT_DATASETS to the datasets folder)")
    return p


def test_datasets_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("KPILOT_DATASETS", str(tmp_path))
    assert DS.default_path("unm") == tmp_path / "security" / "unm.tar.xz"
    monkeypatch.delenv("KPILOT_DATASETS")
    assert DS.datasets_dir() == Path(DS.__file__).resolve().parents[2].parent / "shared" / "datasets"


def test_fhids_real():
    traces = DS.load_fhids(need("fhids"))
    assert len(traces) == 14154  # every file of the README's count holds calls
    normal = [t for t in traces if t.label == "normal"]
    assert {t.meta["service"] for t in normal} == {"FTP", "Git", "Hadoop", "Nginx", "Redis", "SSH"}
    assert {t.family for t in traces if t.label == "attack"} == {"Cryptomining", "FTP", "Nginx", "Redis", "SSH"}
    first = next(t for t in normal if t.name == "normal/FTP/16354.txt")
    assert first.calls[:4] == ["execve", "brk", "access", "access"]


def test_unm_real():
    traces = DS.load_unm(need("unm"))
    progs = {t.meta["program"] for t in traces}
    assert {"synth_sendmail", "live_lpr", "mit_lpr", "login", "ps", "xlock", "inetd", "stide"} <= progs
    # stide's normal file is missing from this copy; the README's intrusion files are attacks
    assert not [t for t in traces if t.meta["program"] == "stide" and t.label == "normal"]
    lpr = [t for t in traces if t.meta["file"] == "UNM/4. Live lpr/Intrusion/exploit-unm.int"]
    assert len(lpr) == 1001 and all(t.label == "attack" and t.calls[0].startswith("nr") for t in lpr)
    assert not any("result-" in t.meta["file"] or t.meta["file"].endswith((".tar", ".tar.gz")) for t in traces)

    def normal(prog):
        return [t for t in traces if t.meta["program"] == prog and t.label == "normal"]
    # the originals from the nested archives: the sizes Warrender et al. 1999 give
    assert (len(normal("xlock")), sum(map(len, normal("xlock")))) == (71, 339177)
    assert (len(normal("mit_lpr")), sum(map(len, normal("mit_lpr")))) == (2703, 2926304)
    assert (len(normal("ps")), sum(map(len, normal("ps")))) == (24, 6144)
    assert not [t for t in traces if t.meta["program"] == "synth_lpr" and t.label == "attack"]  # live lpr's copy


def test_split_is_fixed_disjoint_and_per_group():
    traces = DS.load_unm(need("unm"))
    a, b = DS.split("unm", traces), DS.split("unm", traces)
    assert [t.name for t in a["train"]] == [t.name for t in b["train"]]
    names = {k: {t.name for t in v} for k, v in a.items()}
    assert not names["train"] & names["calibration"] and not names["train"] & names["test"]
    assert not names["calibration"] & names["test"]
    assert all(t.label == "normal" for t in a["train"] + a["calibration"])
    assert sum(t.label == "attack" for t in a["test"]) == sum(t.label == "attack" for t in traces)
    lpr = [t for t in a["train"] if t.meta["program"] == "live_lpr"]
    n = sum(t.meta["program"] == "live_lpr" and t.label == "normal" for t in traces)
    assert len(lpr) == round(0.6 * n)
    other = DS.split("unm", traces, seed=1)
    assert {t.name for t in other["train"]} != names["train"]


def _tar(path, files: dict[str, str]):
    with tarfile.open(path, "w:xz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _fhids_files(extra=None):
    files = {}
    for svc in ("FTP", "Redis"):
        for i in range(20):
            files[f"FHIDS/normal/{svc}/{i}.txt"] = " ".join(["read", "write", "close", "openat"] * (5 + i % 3))
    for i in range(6):
        files[f"FHIDS/attack/FTP/{100 + i}.txt"] = "execve socket connect dup2 dup2 frobnicate execve " * 3
    files.update(extra or {})
    return files


def _err(r, msg):
    assert r.returncode != 0
    assert msg in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_eval_dataset_small_tarball_keeps_unknown_names(tmp_path):
    p = _tar(tmp_path / "f.tar.xz", _fhids_files())
    traces = DS.load_fhids(p)
    assert "frobnicate" in next(t for t in traces if t.label == "attack").calls
    r = kpilot("security", "eval", "--dataset", "fhids", "--path", p, "--detectors", "mismatch,stide", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert "seed 0" in out["protocol"] and out["n_attack"] == 6
    m = out["detectors"]["mismatch"]
    assert m["trace_auc"] == 1.0 and m["offline"]["1pct"]["detection_rate"] == 1.0
    assert m["families"]["FTP"]["streaming_dr_1pct"] == 1.0


def test_eval_dataset_bad_input(tmp_path):
    good = tmp_path / "good.tar.xz"
    _tar(good, _fhids_files())
    trunc = tmp_path / "trunc.tar.xz"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _err(kpilot("security", "eval", "--dataset", "fhids", "--path", trunc), "corrupt or truncated")
    junk = tmp_path / "junk.tar.xz"
    junk.write_bytes(os.urandom(4096))
    _err(kpilot("security", "eval", "--dataset", "unm", "--path", junk), "not a readable tarball")
    _err(kpilot("security", "eval", "--dataset", "fhids", "--path", tmp_path / "nope.tar.xz"), "not found")
    _err(kpilot("security", "eval", "--dataset", "adfa"), "unknown data set 'adfa'")
    bad = _tar(tmp_path / "bad.tar.xz", _fhids_files({"FHIDS/normal/FTP/99.txt": "read 12 write"}))
    _err(kpilot("security", "eval", "--dataset", "fhids", "--path", bad), "FHIDS/normal/FTP/99.txt holds '12'")
    empty = _tar(tmp_path / "empty.tar.xz", {f"FHIDS/normal/FTP/{i}.txt": "" for i in range(3)}
                 | {"FHIDS/attack/FTP/1.txt": "read"})
    _err(kpilot("security", "eval", "--dataset", "fhids", "--path", empty), "not the FHIDS layout")
    unm = _tar(tmp_path / "unm.tar.xz", {"UNM/8.Inetd/normal/a.int": "1 2\n1 x\n"})
    _err(kpilot("security", "eval", "--dataset", "unm", "--path", unm), "line 2 is not `pid syscall_number`")
    _err(kpilot("security", "eval", "--dataset", "fhids", "--model", good), "either --dataset")


def test_empty_profile_is_an_error():
    from kernelpilot.security import devsets
    from kernelpilot.security.features import Trace
    split = {"train": [Trace("a", [])], "calibration": [], "test": []}
    with pytest.raises(KpError, match="profile is empty"):
        devsets.judge(["mismatch"], split)


def test_bench_parts_say_why_without_data(monkeypatch, tmp_path):
    from kernelpilot.bench import security as bench
    monkeypatch.setenv("KPILOT_DATASETS", str(tmp_path))
    part = bench.devset_part("fhids", quick=True)
    assert "absent" in part["skipped"]
    assert bench.headline({"fhids": part, "unm": part, "scenarios": {"skipped": "x"}}) == {}
