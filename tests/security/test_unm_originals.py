"""UNM: the originals kept in nested archives, the copy's duplicated intrusion file, the locality
frame count and stide's max-calibration threshold, on small hand-made tarballs (and the real one)."""
import gzip
import io
import json
import tarfile

import numpy as np
import pytest

from sec_common import kpilot
from kernelpilot.security import datasets as DS
from kernelpilot.security.features import Trace, Vocabulary
from kernelpilot.security.registry import DETECTORS

LFC = DETECTORS["lfc"]

XLOCK = "UNM/5.xlock/normal/xlock-synth-unm.tar"


def _tar(path, files: dict, mode="w:xz"):
    with tarfile.open(path, mode) as tar:
        for name, data in files.items():
            data = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _nested(files: dict) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            data = gzip.compress(text.encode())
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _lines(pid, calls):
    return "".join(f"{pid} {c}\n" for c in calls)


def _copy(tmp_path, extra=None):
    lpr_attack = _lines(4, [9, 9, 8, 7])
    files = {"UNM/5.xlock/normal/normal-xlock.txt": _lines(1, [2, 3, 4]),
             XLOCK: _nested({"x/a.int.gz": _lines(7, [2, 3, 4, 5]), "x/b.int.gz": _lines(7, [5, 6])}),
             "UNM/5.xlock/intrusion/i.int": _lines(9, [1, 1]),
             "UNM/3.Synthetic-lpr/normal/syn.int": _lines(2, [1, 2]) + _lines(3, [1, 2]),
             "UNM/3.Synthetic-lpr/intrusion/exploit-unm.int": lpr_attack,
             "UNM/4. Live lpr/Intrusion/exploit-unm.int": lpr_attack}
    files.update(extra or {})
    return _tar(tmp_path / "unm.tar.xz", files)


def test_originals_replace_flat_cuts_and_the_copied_intrusion_is_read_once(tmp_path):
    p = _copy(tmp_path)
    tr = DS.load_unm(p)
    xl = [t for t in tr if t.meta["program"] == "xlock" and t.label == "normal"]
    # one trace per (archive member, pid): pid 7 in two files is two processes, the flat cut is not read
    assert sorted(t.calls for t in xl) == [["nr2", "nr3", "nr4", "nr5"], ["nr5", "nr6"]]
    assert all(t.meta["file"].startswith(XLOCK + "!x/") for t in xl)
    assert not [t for t in tr if t.meta["program"] == "synth_lpr" and t.label == "attack"]
    assert len([t for t in tr if t.meta["program"] == "live_lpr" and t.label == "attack"]) == 1
    flat = DS.load_unm(p, originals=False)
    assert [t.calls for t in flat if t.meta["program"] == "xlock" and t.label == "normal"] == [["nr2", "nr3", "nr4"]]


def test_a_copy_that_differs_is_kept(tmp_path):
    p = _copy(tmp_path, {"UNM/3.Synthetic-lpr/intrusion/exploit-unm.int": _lines(5, [1, 3])})
    assert [t.calls for t in DS.load_unm(p) if t.meta["program"] == "synth_lpr" and t.label == "attack"] == [["nr1", "nr3"]]


def test_unreadable_nested_archive_is_one_line(tmp_path):
    p = _copy(tmp_path, {XLOCK: b"not a tar at all" * 40})
    r = kpilot("security", "eval", "--dataset", "unm", "--path", p, "--detectors", "lfc")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and f"nested archive {XLOCK} is not readable" in r.stderr, r.stderr


def test_lines_fast_path_keeps_order_and_errors_name_the_line():
    text = "5 1\n3 2\n\n5 7\n 3  4 \n9 1\n"
    assert DS._unm_lines("p", "f", text) == {5: ["nr1", "nr7"], 3: ["nr2", "nr4"], 9: ["nr1"]}
    assert list(DS._unm_lines("p", "f", text)) == [5, 3, 9]
    with pytest.raises(DS.KpError, match="f line 2 is not"):
        DS._unm_lines("p", "f", "1 2\n1 2 3\n")


def test_lfc_counts_mismatches_in_the_frame():
    cyc = ["openat", "read", "write", "close"]
    vocab = Vocabulary.from_traces([Trace("n", cyc), Trace("x", ["execve"])])
    det = LFC(vocab, n=3, frame=5).fit([vocab.encode(cyc * 10)])
    seq = vocab.encode(cyc * 3 + ["execve", "execve"] + cyc * 3)
    pos = det.position_scores(seq)
    brute = [pos[max(0, i - 4):i + 1].sum() for i in range(len(seq))]
    s = det.scored(seq)
    assert np.array_equal(s.stream, brute) and s.score == max(brute) == det.trace_score(seq) == 4
    assert det.trace_score(vocab.encode(cyc * 4)) == 0.0


def _program_set(tmp_path):
    rng = np.random.default_rng(0)
    files = {}
    for i in range(10):  # synthetic ftp: normal runs of one loop, two intrusions with a foreign burst
        calls = [3, 4, 5, 6] * int(rng.integers(20, 40))
        files[f"UNM/2.Synthetic Ftp/normal/n{i}.int"] = _lines(100 + i, calls)
    files["UNM/2.Synthetic Ftp/intrusion/e1.int"] = _lines(7, [3, 4, 5, 6] * 5 + [11, 12, 13] * 4)
    files["UNM/2.Synthetic Ftp/intrusion/e2.int"] = _lines(8, [3, 4, 5, 6] * 9) + _lines(9, [3, 4, 11, 5, 6] * 6)
    files["UNM/3.Synthetic-lpr/normal/syn.int"] = "".join(_lines(20 + i, [1, 2, 3] * 9) for i in range(6))
    return _tar(tmp_path / "p.tar.xz", files)


def test_eval_unm_max_calibration_and_programs_without_intrusions(tmp_path):
    r = kpilot("security", "eval", "--dataset", "unm", "--path", _program_set(tmp_path),
               "--detectors", "lfc,mismatch", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["skipped_programs"]["synth_lpr"] == "no intrusion traces of its own in this copy"
    m = out["programs"]["synth_ftp"]["detectors"]["lfc"]["max_calibration"]
    assert m["threshold"] == 0.0 and m["intrusion_files_flagged"] == m["n"] == 2
    assert m["test_normal_alarms"] == 0 and m["n_test_normal"] == 2
    assert "synth_ftp" in out["summary"]["lfc"]["max_calibration_ok"]



def test_hamming_is_the_distance_to_the_closest_normal_gram(tmp_path):
    from kernelpilot.security.model import SecurityModel
    cyc = ["openat", "read", "write", "close"]
    vocab = Vocabulary.from_traces([Trace("n", cyc), Trace("x", ["execve", "socket"])])
    det = DETECTORS["hamming"](vocab, n=4).fit([vocab.encode(cyc * 10)])
    seq = vocab.encode(cyc * 3 + ["execve"] + cyc * 2 + ["socket", "socket", "socket", "socket"])
    grams = det._matrix(seq)
    brute = [min(float(np.mean(g != h)) for h in det.normal) for g in grams]
    s = det.scored(seq)
    assert np.allclose(det.position_scores(seq), brute) and s.score == 1.0  # four socket calls match nothing
    assert s.stream[12] == 0.25 and max(brute[:16]) == 0.5  # execve replaces one call, then shifts the next gram
    assert det.trace_score(vocab.encode(cyc * 5)) == 0.0
    m = SecurityModel.train([Trace(f"t{i}", cyc * (8 + i)) for i in range(8)], ("hamming",), calibrate=0.25)
    m.save(tmp_path / "m.json")
    back = SecurityModel.load(tmp_path / "m.json")
    q = m.vocab.encode(cyc * 3 + ["read", "read"] + cyc)
    assert np.allclose(back.detectors["hamming"].window_scores(q), m.detectors["hamming"].window_scores(q))
