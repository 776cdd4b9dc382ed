import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from sec_common import kpilot, need_root_ebpf

from kernelpilot.security.live import CTX, V2, KernelStage, protected


def test_protected_processes():
    assert protected(1, "systemd", []) == "pid 1"
    assert protected(os.getpid(), "python", []) == "kernelpilot itself"
    p = subprocess.Popen(["sleep", "5"])
    try:
        assert protected(p.pid, "sleep", ["sleep"]) == "allow-listed"
        assert protected(p.pid, "sleep", []) is None
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize("where", ["own", "agent_sensor"])
def test_kernel_features_and_score_bit_exact(model_file, where):
    """Every window the kernel scored whose whole history came up (<= 64 calls) has exactly the
    features and integer tree score the Python code computes from those calls: in the watch's own
    sys_enter program and inside the agent sensor's one (kp_trace built with the stage, where a
    thread's state is reset at fork and exec)."""
    need_root_ebpf()
    from kernelpilot.security.model import SecurityModel
    from kernelpilot.security.syscalls import number_to_name
    m = SecurityModel.load(model_file)
    tree = m.detectors["tree"]
    src = None
    if where == "agent_sensor":
        from kernelpilot.agent.sensor import AgentSource
        src = AgentSource(["syscalls"]).start()
    try:
        k = KernelStage(m, threshold=-1, sensor=src.obj if src else None)  # send every window up
        try:
            subprocess.run(["sh", "-c", "for i in 1 2 3 4 5; do ls -la / >/dev/null; cat /etc/hostname >/dev/null; done"],
                           check=True)
            time.sleep(0.1)
            recs = k.ring.drain()
            st = k.stats()
        finally:
            k.close()
        if src:  # the same program batched the trace events meanwhile
            assert (src.drain()["kind"] == 6).sum() >= st["syscalls"] * 0.9
    finally:
        if src:
            src.stop()
    assert st["syscalls"] > 500 and st["windows"] > 10 and st["dropped"] == 0
    assert 0 < len(recs) <= st["sent"] and (recs["tgid"] != os.getpid()).all()
    names = number_to_name("x86_64")
    compared = 0
    for a in recs:
        n = int(a["count"])
        if n > CTX:
            continue
        seq = m.vocab.encode([names.get(int(c), "unknown") for c in a["calls"][:n]])
        assert list(tree.features(seq)[-1].astype(int)) == list(a["feats"][:9])
        assert int(tree.window_scores(seq)[-1]) == int(a["score"])
        compared += 1
    assert compared >= 10


def test_flooding_process_is_rate_limited_in_time_and_its_exit_always_sent(model_file):
    """With every window over the threshold, one process sends at most one window per 2 ms (so a
    flood cannot fill the ring) yet keeps sending for as long as it runs, and its last window (at
    exit_group) always goes up."""
    need_root_ebpf()
    from kernelpilot.security.model import SecurityModel
    k = KernelStage(SecurityModel.load(model_file), threshold=-1)
    try:
        t = time.monotonic()
        p = subprocess.run(["dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count=300000"], capture_output=True)
        elapsed = time.monotonic() - t
        time.sleep(0.1)
        recs = k.ring.drain()
    finally:
        k.close()
    assert p.returncode == 0
    mine = recs[recs["comm"] == b"dd"]
    assert len(mine), "dd sent no window"
    gaps = np.diff(mine["ts"][:-1].astype(np.int64))  # the exit window may come sooner
    assert len(mine) <= elapsed / 0.002 + 2, (len(mine), elapsed)
    assert len(gaps) >= 10 and gaps.min() >= 2_000_000, (len(mine), gaps[:5])
    last = mine[-1]
    assert int(last["count"]) > 600_000 and int(last["calls"][-1]) == 231  # exit_group


def _cg_of(pid):
    return Path(f"/proc/{pid}/cgroup").read_text().splitlines()[-1].split(":", 2)[2]


def _frozen(pid) -> bool:
    cg = V2 / _cg_of(pid).lstrip("/")
    return "frozen 1" in (cg / "cgroup.events").read_text()


def test_enforce_freeze_release_and_thaw_on_exit(tmp_path, monkeypatch):
    if os.geteuid() != 0 or not (V2 / "cgroup.procs").exists():
        pytest.skip("needs root and a cgroup v2 hierarchy (freezer)")
    monkeypatch.setenv("KPILOT_RUN_DIR", str(tmp_path))
    from kernelpilot.security.live import QUARANTINE, Responder, release
    script = "while :; do cat /etc/shadow >/dev/null 2>&1; sleep 0.05; done"
    a, b = (subprocess.Popen(["bash", "-c", script]) for _ in range(2))
    try:
        before = _cg_of(a.pid)
        r = Responder("freeze")
        assert "frozen" in r.act(a.pid, "bash") and "frozen" in r.act(b.pid, "bash")
        time.sleep(0.2)
        assert _cg_of(a.pid) == f"/{QUARANTINE}/pid-{a.pid}" and _frozen(a.pid) and _frozen(b.pid)
        # released by hand while watch runs: thawed, back where it was, its cgroup removed
        assert "released" in release(a.pid)
        assert _cg_of(a.pid) == before and not (V2 / QUARANTINE / f"pid-{a.pid}").exists()
        # the rest is thawed when the responder (watch) exits
        r.close()
        assert _cg_of(b.pid) == before and not (V2 / QUARANTINE).exists()
        a.poll(), b.poll()
        assert a.returncode is None and b.returncode is None  # alive and running again
    finally:
        for p in (a, b):
            p.kill()
            p.wait()


def test_release_bad_pid():
    r = kpilot("security", "release", "999999999")
    assert r.returncode != 0 and "no process 999999999" in r.stderr and "Traceback" not in r.stderr
    r = kpilot("security", "release", str(os.getpid()))
    assert r.returncode != 0 and "not frozen" in r.stderr


def test_batch_confirm_scores_equal_the_detector(model_file):
    """Stage 2 scores a ring batch at once (right-aligned hashes, one search): every record's
    score equals the detector's last-window score on that record's calls."""
    need_root_ebpf()
    from kernelpilot.security.confirm import BatchScorer
    from kernelpilot.security.features import ngram_hashes
    from kernelpilot.security.model import SecurityModel
    from kernelpilot.security.syscalls import number_to_name
    m = SecurityModel.load(model_file)
    k = KernelStage(m, threshold=-1)
    try:
        subprocess.run(["sh", "-c", "for i in 1 2 3; do ls -la /usr >/dev/null; true; done"], check=True)
        recs = k.ring.drain()
    finally:
        k.close()
    stide, names = m.detectors["stide"], number_to_name("x86_64")
    sc = BatchScorer(m, stide)
    h, n = sc.hashes(recs["calls"], recs["count"])
    s2 = sc.share(sc.novel(h[:, -32:], sc.table), sc.window_mask(n))
    assert (recs["count"] < CTX).any() and (recs["count"] >= CTX).any()  # both layouts checked
    for i, a in enumerate(recs):
        seq = m.vocab.encode([names.get(int(c), "unknown") for c in a["calls"][:int(n[i])]])
        assert (h[i, CTX - len(seq):] == ngram_hashes(seq, stide.n)).all()
        assert s2[i] == pytest.approx(float(stide.window_scores(seq)[-1]), abs=1e-12)


def test_rule_syscalls_match_the_behaviour_switch():
    """SC_RULE_NRS (which calls the kernel hands to behaviour()) equals that switch's case labels."""
    import re

    from kernelpilot.security.live import SC_RULE_NRS, SRC
    text = (SRC.parent / "sc_watch.h").read_text()
    body = text[text.index("void behaviour("):text.index("/* The current thread's state")]
    cases = {int(n) for n in re.findall(r"case (\d+):", body)}
    assert len(cases) > 20 and cases == set(SC_RULE_NRS) and len(SC_RULE_NRS) == len(cases)


def test_constants_match_the_kernel_header():
    """Each sc_watch.h #define with a Python twin (window, rule events, the connect burst) equals it."""
    import re

    from kernelpilot.security import features, live, rules
    text = (live.SRC.parent / "sc_watch.h").read_text()
    defs = {k: int(v) for k, v in re.findall(r"#define SC_(\w+) (\d+)", text)}
    twins = {"WIN": live.WIN, "STRIDE": live.STRIDE, "CTX": live.CTX, "NFEAT": live.NFEAT,
             "MAXNR": live.MAXNR, "FBITS": features.FBITS, "GRAM_BITS": features.GRAM_BITS,
             "CONN_BURST": rules.CONN_BURST}
    twins.update({f"EV_{n[3:]}": getattr(rules, n) for n in dir(rules) if re.fullmatch(r"EV_[A-Z_]+", n)})
    assert len(twins) == 17 and {k: defs.get(k) for k in twins} == twins
