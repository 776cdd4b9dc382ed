"""Any model the validator accepts passes the verifier and stays bit-exact in the kernel: random
trees, forests and MLPs at the edges of the format, saved and loaded (the validator runs), then
through the map interpreter, the unrolled eBPF and the portable C (real BPF_PROG_TEST_RUN)."""
import os
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernelpilot.errors import KpError
from kernelpilot.fuzz.models import random_mlp, random_trees
from kernelpilot.kernelize.harness import parity
from kernelpilot.kernelize.kernel import deploy_code, deploy_map
from kernelpilot.kernelize.native import NativeModel
from kernelpilot.models.format import Model

KERNEL = settings(deadline=timedelta(seconds=60), derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
OUTPUTS = st.sampled_from(["label", "score", "binary"])


def _reload(m, tmp_path, name="m.json"):
    p = tmp_path / name
    m.save(p)
    return Model.load(p)  # validates


@pytest.fixture(scope="module")
def interpreter():
    """One loaded map interpreter; each example swaps its model in (as a live swap does)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to load eBPF")
    km = deploy_map(random_trees(np.random.default_rng(0), "score", 2, 1, 1))
    yield km
    km.close()


@settings(KERNEL, max_examples=40)
@given(salt=st.integers(0, 2**32 - 1), output=OUTPUTS, depth=st.integers(1, 16), trees=st.integers(1, 8),
       features=st.integers(1, 32))
def test_map_interpreter_matches_every_accepted_tree(bpf_ok, interpreter, tmp_path_factory, salt, output, depth,
                                                     trees, features):
    rng = np.random.default_rng(salt)
    m = _reload(random_trees(rng, output, features, trees, min(depth, 16 if trees < 3 else 6)),
                tmp_path_factory.mktemp("m"))
    interpreter.swap(m)
    r = parity(m, interpreter.predict, n=2000)
    assert r["rate"] == 1.0, r


@settings(KERNEL, max_examples=5)
@given(salt=st.integers(0, 2**32 - 1), output=OUTPUTS, trees=st.integers(1, 4))
def test_unrolled_code_and_c_match_every_accepted_tree(bpf_ok, tmp_path_factory, salt, output, trees):
    rng = np.random.default_rng(salt)
    m = _reload(random_trees(rng, output, 8, trees, 6), tmp_path_factory.mktemp("m"))
    with deploy_code(m) as km:
        r = parity(m, km.predict, n=2000)
    assert r["rate"] == 1.0, ("bpf-code", r)
    r = parity(m, NativeModel(m).predict, n=5000)
    assert r["rate"] == 1.0, ("c", r)


@settings(KERNEL, max_examples=5)
@given(salt=st.integers(0, 2**32 - 1), output=st.sampled_from(["score", "binary"]),
       widths=st.lists(st.integers(1, 12), min_size=0, max_size=2))
def test_code_and_c_match_every_accepted_mlp(bpf_ok, tmp_path_factory, salt, output, widths):
    rng = np.random.default_rng(salt)
    m = _reload(random_mlp(rng, 6, tuple(widths), output), tmp_path_factory.mktemp("m"), "m.npz")
    with deploy_code(m) as km:
        r = parity(m, km.predict, n=2000)
    assert r["rate"] == 1.0, ("bpf-code", r)
    r = parity(m, NativeModel(m).predict, n=5000)
    assert r["rate"] == 1.0, ("c", r)


@given(salt=st.integers(0, 2**32 - 1))
@settings(max_examples=40, deadline=timedelta(seconds=10), derandomize=True, database=None)
def test_one_step_past_the_edge_is_rejected(salt):
    """The generator's models sit on the validator's edges: one step past any of them is refused."""
    rng = np.random.default_rng(salt)
    m = random_trees(rng, "score", 4, 2, 4)
    d = m.to_dict()
    inner = [i for i, f in enumerate(d["params"]["feature"]["data"]) if f >= 0]
    i = inner[int(rng.integers(0, len(inner)))]
    case = int(rng.integers(0, 4))
    if case == 0:
        d["params"]["feature"]["data"][i] = 4
    elif case == 1:
        d["params"]["left"]["data"][i] = d["params"]["roots"]["data"][0] if i else i
    elif case == 2:  # one leaf at the int32 edge plus a bias of 1: the sum no longer fits
        leaf = next(j for j, f in enumerate(d["params"]["feature"]["data"]) if f < 0)
        d["params"]["q_value"]["data"][leaf] = 2**31 - 1
        d["meta"]["quant"]["bias_q"] = 1
    else:
        d["meta"]["depth"] += 1
    with pytest.raises(KpError, match=r"^model: (params|meta)\."):
        Model.from_dict(d)
