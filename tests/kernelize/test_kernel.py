"""The models in the real kernel: verifier, bit-exact parity, limits, hot swap under a live probe."""
import os
import threading

import numpy as np
import pytest
from sklearn.tree import DecisionTreeClassifier

from kernelpilot.errors import KpError
from kernelpilot.kernelize.harness import parity
from kernelpilot.kernelize.kernel import deploy_code, deploy_map, encode_slot
from kernelpilot.models import demo, from_sklearn, ngram_from_sequences


@pytest.fixture(autouse=True)
def _bpf(bpf_ok):
    pass


@pytest.mark.parametrize("form", [deploy_map, deploy_code])
def test_depth8_tree_parity_100k(models, form):
    m = models["tree"]
    assert m.meta["depth"] == 8
    with form(m) as km:
        r = parity(m, km.predict, n=100_000)
        assert r["rate"] == 1.0, r
        st = km.stats()
        assert st["xlated_insns"] > 0 and 0 <= st["stack_bytes"] <= 512


@pytest.mark.parametrize("kind, forms", [("forest", [deploy_map, deploy_code]),
                                         ("gbm", [deploy_map, deploy_code]), ("mlp", [deploy_code])])
def test_other_models_parity(models, kind, forms):
    m = models[kind]
    for form in forms:
        with form(m) as km:
            r = parity(m, km.predict, n=20_000)
            assert r["rate"] == 1.0, (form.__name__, r)


def test_unrolled_is_faster_than_map(models):
    m = models["forest"]
    X = m.to_int(demo.make_data(8, seed=9)[0])
    with deploy_map(m) as a, deploy_code(m) as b:
        ns_map = a.ns_per_inference(X, repeat=5000)["ns_net"]
        ns_code = b.ns_per_inference(X, repeat=5000)["ns_net"]
    assert ns_code < ns_map


def _tree(labels):
    """One feature (the syscall id): 109 -> labels[0], 110 (getppid) -> labels[1], 111 -> labels[2]."""
    est = DecisionTreeClassifier(random_state=0).fit([[109], [110], [111]], labels)
    return from_sklearn(est, ["syscall_id"])


def _getppid_positives(km, n=2000):
    km.reset_counts()
    for _ in range(n):
        os.getppid()
    return km.counts()


def test_swap_under_live_probe_changes_decisions():
    a, b = _tree([0, 1, 0]), _tree([1, 0, 1])
    with deploy_map(a) as km:
        tp = km.attach_tracepoint(os.getpid())
        link = list(tp._links)
        c1 = _getppid_positives(km)
        assert c1["positive"] >= 2000 and c1["runs"] >= 2000
        km.swap(b)
        c2 = _getppid_positives(km)
        assert c2["runs"] >= 2000 and c2["positive"] <= c2["runs"] - 2000
        km.swap(a)
        assert _getppid_positives(km)["positive"] >= 2000
        assert tp.attached and tp._links == link  # never detached


def test_swap_while_readers_run():
    a, b = _tree([0, 1, 0]), _tree([1, 0, 1])
    with deploy_map(a) as km:
        km.attach_tracepoint(os.getpid())
        stop = threading.Event()

        def spin():
            while not stop.is_set():
                os.getppid()
        t = threading.Thread(target=spin)
        t.start()
        try:
            for i in range(40):
                km.swap(b if i % 2 == 0 else a)
        finally:
            stop.set()
            t.join()
        assert km.counts()["runs"] > 0
        assert km.predict(np.array([[110]])).tolist() == [1]  # ended on a


def test_real_trigger_run_stats(models):
    from kernelpilot.probes.libbpf import enable_stats
    m = models["tree"]
    with deploy_code(m) as km, enable_stats():
        tp = km.attach_tracepoint(os.getpid())
        for _ in range(5000):
            os.getppid()
        s = tp.run_stats()
    assert s["run_cnt"] >= 5000 and s["run_time_ns"] > 0


def test_limits_are_clear_errors(models):
    rng = np.random.default_rng(0)
    Xd = rng.integers(0, 1000, size=(20000, 4))
    deep = from_sklearn(DecisionTreeClassifier(max_depth=20, random_state=0).fit(Xd, rng.integers(0, 2, 20000)),
                        list("abcd"), Xd)
    assert deep.meta["depth"] > 16
    with pytest.raises(KpError, match="exceeds the map interpreter's limit"):
        deploy_map(deep)
    with pytest.raises(KpError, match="target bpf-map"):
        deploy_map(models["mlp"])
    ng = ngram_from_sequences([[0, 1, 2]], 2, ["a", "b", "c"])
    with pytest.raises(KpError, match="unsupported model type 'ngram'"):
        deploy_code(ng)
    wide = from_sklearn(DecisionTreeClassifier(max_depth=2).fit(rng.random((50, 40)), rng.integers(0, 2, 50)),
                        [f"f{i}" for i in range(40)])
    with pytest.raises(KpError, match="at most 32"):
        encode_slot(wide)
