import numpy as np

from sec_common import kpilot
from kernelpilot.security.evaluate import evaluate
from kernelpilot.security.features import Trace
from kernelpilot.security.model import SecurityModel
from kernelpilot.security.programs import Programs
from kernelpilot.traces.importers.adfa import load_adfa


def _prog(comm, calls, reps, name):
    return Trace(f"{name}:{comm}", calls * reps, comm=comm)


SHELL = ["read", "fcntl", "dup2", "close", "clone", "wait4", "rt_sigprocmask", "rt_sigaction"]
SERVER = ["accept4", "recvfrom", "openat", "read", "sendto", "close", "epoll_wait"]


def test_one_odd_held_out_window_does_not_set_a_programs_bar():
    """A program's threshold is a high quantile of its own held-out windows, not their maximum:
    one odd stretch in the calibration runs (an interpreter running another script) must not lift
    the bar over everything that program could do."""
    ids = {c: i for i, c in enumerate(dict.fromkeys(SHELL + SERVER))}

    def enc(t):
        return np.array([ids[c] for c in t.calls])
    train = [_prog("python", SHELL, 80, i) for i in range(3)]
    P = Programs().fit(train, [enc(t) for t in train])
    held_out = Trace("c:odd", SHELL * 10_000 + SERVER * 6 + SHELL * 20, comm="python")
    P.calibrate([held_out], [enc(held_out)])
    scores = P.window_scores(enc(held_out), "python")
    assert scores.max() > 0.5 and 0 < (scores > 0).mean() < 0.001
    assert P.threshold("python") < 0.5 * scores.max()


def test_each_program_judged_by_its_own_normal(tmp_path):
    train = [_prog("bash", SHELL, 80, i) for i in range(3)] + [_prog("httpd", SERVER, 80, i) for i in range(3)]
    cal = [_prog("bash", SHELL, 20, "c"), _prog("httpd", SERVER, 20, "c")]
    m = SecurityModel.train(train, ("stide", "tree"), calibration=cal)
    P = m.programs
    assert P is not None and set(P.tables) == {"bash", "httpd"}
    # the shell doing the server's socket calls is normal for the host, not for the shell
    odd = m.vocab.encode(SHELL * 3 + SERVER * 6)
    assert m.detectors["stide"].window_scores(odd).max() < 0.3
    assert P.window_scores(odd, "bash").max() > P.threshold("bash")
    assert P.window_scores(odd, "httpd").max() < P.window_scores(odd, "bash").max()
    # an unseen program falls back to the whole host's normal n-grams
    assert not P.known("newprog")
    assert np.array_equal(P.window_scores(odd, "newprog"), m.detectors["stide"].window_scores(odd))
    assert P.threshold("newprog") == P.base and P.threshold("bash") >= P.base
    # names are cut like the kernel's 15-byte comm
    assert P.key("a-very-long-program-name") == "a-very-long-pro"
    p = tmp_path / "m.json"
    m.save(p)
    P2 = SecurityModel.load(p).programs
    assert P2.thresholds == P.thresholds and P2.window_scores(odd, "bash").tolist() == P.window_scores(odd, "bash").tolist()


def test_no_program_tables_without_program_names(corpus):
    d = load_adfa(corpus[0])  # ADFA traces carry no comm
    m = SecurityModel.train(d["train"], ("stide",), calibrate=0.2)
    assert m.programs is None


def test_ensemble_rank_average(corpus, tmp_path):
    root, info = corpus
    d = load_adfa(root)
    m = SecurityModel.train(d["train"], ("stide", "tree", "cnn", "ensemble"), calibrate=0, cnn_epochs=1)
    e = m.detectors["ensemble"]
    w = e.window_scores(m.vocab.encode(d["valid"][0].calls))
    assert ((w >= 0) & (w <= 1)).all()
    res = evaluate(m, d["valid"], d["attack"])
    assert res["ensemble"]["trace"]["auc"] > 0.8
    p = tmp_path / "m.json"
    m.save(p)
    m2 = SecurityModel.load(p)
    x = m.vocab.encode(d["attack"][0].calls)
    assert np.allclose(m2.detectors["ensemble"].window_scores(x), e.window_scores(x))


def test_ensemble_needs_its_parts(corpus, tmp_path):
    r = kpilot("security", "train", "--normal", corpus[0], "-o", tmp_path / "m.json", "--detectors", "freq,ensemble")
    assert r.returncode != 0 and "needs at least two of stide, tree, cnn" in r.stderr
    assert "Traceback" not in r.stderr


def test_one_programs_novel_held_out_windows_do_not_lift_the_floor():
    """The floor under every program's threshold (and the bar of programs with no table) is robust
    to one program: a server whose held-out windows are all novel for it (its threads cut apart
    differently in training) once lifted it to 1.0, where no window of any program could pass."""
    ids = {c: i for i, c in enumerate(dict.fromkeys(SHELL + SERVER))}

    def enc(t):
        return np.array([ids[c] for c in t.calls])
    train = [_prog("bash", SHELL, 80, i) for i in range(3)] + [_prog("httpd", SERVER, 80, i) for i in range(3)]
    P = Programs().fit(train, [enc(t) for t in train])
    shell_cal = [_prog("bash", SHELL, 200, f"c{i}") for i in range(5)]
    odd = Trace("c:odd", (SHELL[::-1] + SERVER[::-1]) * 40, comm="httpd")  # every window novel for httpd
    cal = shell_cal + [odd]
    P.calibrate(cal, [enc(t) for t in cal])
    assert P.window_scores(enc(odd), "httpd").min() > 0.9 and P.threshold("httpd") > 0.9
    # the shells' held-out windows are all normal: the floor is theirs, not the odd server's
    assert P.base < 0.1 and P.threshold("bash") < 0.1 and P.threshold("newprog") < 0.1
    # with the server's windows normal too, the floor is unchanged
    Q = Programs().fit(train, [enc(t) for t in train])
    cal2 = shell_cal + [_prog("httpd", SERVER, 40, "c")]
    Q.calibrate(cal2, [enc(t) for t in cal2])
    assert Q.base == P.base
