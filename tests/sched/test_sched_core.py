"""Features, models and simulator on synthetic traces (exact round trips and baselines)."""
import numpy as np
import pytest

from kernelpilot.errors import KpError
from kernelpilot.models import Model
from kernelpilot.sched import evaluate as E
from kernelpilot.sched import features as F
from kernelpilot.sched import models as M
from kernelpilot.sched.sim import POLICIES, simulate, synthetic_trace
from kernelpilot.sched.synth import LATENCY, MS, Workload, generate
from kernelpilot.traces.schema import EVENT_DTYPE, SCHED_SWITCH, SCHED_WAKEUP


@pytest.fixture(scope="module")
def traces():
    return [synthetic_trace(s, horizon_s=3) for s in (0, 1, 2, 10)]


def test_bursts_round_trip(traces):
    ev, wl = traces[0]
    f = F.extract(ev)
    seqs = F.burst_sequences(f)
    assert sum(len(s) for s in seqs) > 1000
    for i, p in enumerate(f.pids):
        j = int(np.flatnonzero(wl.pids == p)[0])
        assert np.array_equal(seqs[i], wl.bursts[j][:len(seqs[i])])


def test_hand_made_trace_counts():
    ev = np.zeros(5, dtype=EVENT_DTYPE)
    # wake 7 at 100; 0->7 at 150; 7 preempted by 8 at 250; 8->7 at 300; 7 sleeps at 400
    rows = [(100, SCHED_WAKEUP, 7, 0, 0), (150, SCHED_SWITCH, 0, 7, 0), (250, SCHED_SWITCH, 7, 8, 0),
            (300, SCHED_SWITCH, 8, 7, 1), (400, SCHED_SWITCH, 7, 0, 1)]
    for e, (ts, k, pid, a0, a1) in zip(ev, rows):
        e["ts"], e["kind"], e["pid"], e["a0"], e["a1"] = ts, k, pid, a0, a1
    f = F.extract(ev)
    i7 = int(np.flatnonzero(f.pids == 7)[0])
    c = f.complete()
    assert c[c[:, 0] == i7, 2].tolist() == [200]          # 100 + 100 ns of CPU, one burst
    assert f.totals[i7].tolist()[:5] == [200, 50 + 50, 2, 1, 1]  # run, wait, slices, vol, invol


def test_classifier_and_burst_model_beat_or_match_baselines(traces, tmp_path):
    feats = [F.extract(ev) for ev, _ in traces[:3]]
    bp = E.train_bursts(feats)
    ev, wl = traces[3]
    f = F.extract(ev)
    r = E.compare_bursts(bp, f)
    assert r["model"]["mae_us"] < r["exp_avg_alpha_0.5"]["mae_us"]
    Xs, ys = [], []
    for (e, w), g in zip(traces[:3], feats):
        X, y = E.labelled_windows(g, e, dict(zip(w.pids.tolist(), w.label.tolist())))
        Xs.append(X), ys.append(y)
    clf = M.TaskClassifier.fit(np.vstack(Xs), np.concatenate(ys))
    X, y = E.labelled_windows(f, ev, dict(zip(wl.pids.tolist(), wl.label.tolist())))
    c = E.compare_classifiers(clf, X, y)
    assert c["model"]["accuracy"] >= 0.9
    # saved (shared model format) and reloaded models predict the same
    path = tmp_path / "clf.json"
    clf.model.save(path)
    c2 = E.load_classifier(path)
    assert np.array_equal(c2.predict(X), clf.predict(X)) and c2.model.meta["depth"] <= 4
    assert c2.model.meta["quant"]["feature_shift"] == [0] * len(F.CLASS_FEATURES)  # integer features
    b2 = M.BurstPredictor(Model.load(_save(bp.model, tmp_path / "bp.npz")))
    Xb = M.burst_features(f.bursts, bp.task_prior(f.comm))[0]
    assert np.allclose(b2.predict_ns(Xb), bp.predict_ns(Xb))


def _save(m, path):
    m.save(path)
    return path


def test_integer_class_features_by_hand():
    assert F.log2q4(np.array([0, 1, 3, 15, 16, 1000])).tolist() == [0, 16, 40, 78, 80, 175]
    # 0.5 s of CPU in 1 s, 100 sleeps, 10 preemptions, 200 slices with 20 ms of waiting
    x = F.class_features([500_000_000], [20_000_000], [200], [100], [10], 1_000_000_000)[0]
    assert x.tolist() == [512, 100, 10, int(F.log2q4(5000)), int(F.log2q4(100))]


def test_simulator_policies(traces):
    wl = generate(3, horizon_s=1)
    oracle = [b.astype(float) for b in wl.bursts]
    res = {p: simulate(wl, p, pred=oracle) for p in POLICIES}
    total = sum(len(b) for b in wl.bursts)
    for p, r in res.items():
        assert len(r.task) == total, p                        # every burst completes
        assert np.all(r.finish - r.wake >= r.burst)           # no burst faster than its CPU need
        assert np.all(r.first >= r.wake)
    m = {p: r.metrics(wl.label) for p, r in res.items()}
    assert m["srpt"]["turnaround_mean_us"] < m["fcfs"]["turnaround_mean_us"]
    assert m["srpt-pred"]["turnaround_mean_us"] == m["srpt"]["turnaround_mean_us"]  # oracle as prediction
    assert m["fcfs"]["context_switches"] <= m["rr"]["context_switches"]
    assert 0 < m["cfs"]["fairness_jain"] <= 1


def test_single_cpu_fcfs_by_hand():
    wl = Workload(pids=np.array([1, 2]), start=np.array([0, 1 * MS]),
                  bursts=[np.array([10 * MS]), np.array([2 * MS])], sleeps=[np.array([0]), np.array([0])],
                  weight=np.array([1024, 1024]), label=np.array([0, LATENCY]))
    r = simulate(wl, "fcfs", ncpu=1)
    assert (r.finish - r.wake).tolist() == [10 * MS, 11 * MS]
    r = simulate(wl, "srpt", ncpu=1)
    assert sorted((r.finish - r.wake).tolist()) == [2 * MS, 12 * MS]


def test_load_forecaster_beats_ewma():
    rng = np.random.default_rng(1)
    t = np.arange(3000)
    s = (0.5 + 0.3 * np.sin(t / 20) + 0.05 * rng.normal(size=len(t))).clip(0, 1)
    r = M.forecast_errors(s, horizon=3)
    assert r["model_mae"] < r["ewma_mae"] and r["model_mae"] < r["last_value_mae"]


def test_load_forecaster_uses_a_leading_run_queue_signal():
    """Phases change at random times; the run queue fills one sample before utilisation follows,
    which no EWMA of utilisation can see."""
    rng = np.random.default_rng(2)
    level, runq = [], []
    v = 0.2
    for _ in range(120):
        n = int(rng.integers(5, 30))
        nxt = float(rng.choice([0.0, 0.5, 1.0]))
        runq += [v * 2] * (n - 1) + [nxt * 2]
        level += [v] * n
        v = nxt
    s = (np.array(level) + 0.03 * rng.normal(size=len(level))).clip(0, 1)
    r = M.forecast_errors(s, horizon=1, exog={"runq": np.array(runq)})
    assert r["chosen"] != "ewma" and r["model_mae"] < 0.8 * r["ewma_mae"]
    assert r["model_mae"] < r["last_value_mae"]
    plain = M.forecast_errors(s, horizon=1)  # without the signal the model has nothing to go on
    assert r["model_mae"] < plain["model_mae"]
    fc = M.LoadForecaster.fit(s, 8, 1, exog={"runq": np.array(runq)})
    with pytest.raises(KpError, match="needs signals"):
        fc.predict(s)
    with pytest.raises(KpError, match="samples"):
        M.LoadForecaster.fit(s, 8, 1, exog={"runq": np.array(runq)[:-5]})


def test_load_mixture_follows_the_phase():
    """Noisy steady phases want a slow EWMA, drifting phases the last value; one fixed EWMA
    cannot be both, the online mixture moves its weight."""
    rng = np.random.default_rng(4)
    parts, v = [], 0.5
    for k in range(40):
        if k % 2:
            parts.append((v + 0.1 * rng.normal(size=100)).clip(0, 1))
        else:
            walk = (v + np.cumsum(0.03 * rng.normal(size=100))).clip(0.05, 0.95)
            parts.append(walk)
            v = float(walk[-1])
    s = np.concatenate(parts)
    fc = M.LoadForecaster._fit_kind("mix", s[:2400], {}, 8, 1, M.best_alpha(s[:2400], 1), 1e-2)
    test, truth = s[2400 - 7:], s[2401:]
    mix = np.abs(fc.predict(test) - truth).mean()
    ew = np.abs(M.ewma_forecast(test, 1, fc.alpha)[7:] - truth).mean()
    assert mix < 0.97 * ew, (mix, ew)


def test_load_series_fixture_and_bad_file(tmp_path):
    from kernelpilot.sched.loadrec import COLUMNS, load_fixture
    d = load_fixture()
    assert len(d["host_util"]) > 1000 and set(COLUMNS[1:]) - {"host_psi_some", "group_psi_some"} <= set(d)
    assert d["group_runq"].max() > 1 and 0 <= d["group_util"].min() and d["group_util"].max() <= 1
    bad = tmp_path / "s.csv"
    bad.write_text("0.1,0.5,0.1\n")
    with pytest.raises(KpError, match="expected 11 columns"):
        load_fixture(bad)
    with pytest.raises(KpError, match="cannot read"):
        load_fixture(tmp_path / "missing.csv")


def test_bad_inputs(tmp_path):
    with pytest.raises(KpError, match="schema"):
        F.extract(np.zeros(3))
    with pytest.raises(KpError, match="no sched_switch"):
        F.extract(np.zeros(3, dtype=EVENT_DTYPE))
    with pytest.raises(KpError, match="unknown scheduling policy"):
        simulate(generate(0, horizon_s=0.1), "lottery")
    with pytest.raises(KpError, match="needs predicted"):
        simulate(generate(0, horizon_s=0.1), "srpt-pred")
    with pytest.raises(KpError, match="not a kernelpilot model"):
        E.load_classifier(_json(tmp_path, {"format": "pickle"}))


def _json(tmp_path, d):
    import json
    p = tmp_path / "m.json"
    p.write_text(json.dumps(d))
    return p
