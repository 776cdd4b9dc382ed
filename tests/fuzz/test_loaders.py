"""Every loader under Hypothesis: mutations of the committed seeds (each family) and random bytes.
The property: a one-line KpError or an accepted object that its consumer can use; never another
exception, never past the deadline, the input unchanged and nothing else written."""
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernelpilot.fuzz.mutate import FAMILIES, mutate
from kernelpilot.fuzz.run import OK, REJECTED, run_one
from kernelpilot.fuzz.targets import TARGETS, corpus_seeds

EXAMPLES = 100
FUZZ = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=30), derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeds_are_accepted(name):
    """The seeds are valid files: mutations start from something the loader takes."""
    seeds = corpus_seeds(name)
    assert seeds, f"no corpus for {name}: python -m kernelpilot.fuzz.targets"
    for fname, data in seeds:
        assert run_one(TARGETS[name], data) == (OK, ""), fname


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_mutations_end_in_one_line_or_a_usable_object(name):
    target, seeds = TARGETS[name], corpus_seeds(name)
    outcomes = []

    @FUZZ
    @given(seed=st.integers(0, len(seeds) - 1), family=st.sampled_from(FAMILIES), salt=st.integers(0, 2**32 - 1))
    def prop(seed, family, salt):
        data = mutate(seeds[seed][1], target.fmt, family, np.random.default_rng(salt))
        outcome, detail = run_one(target, data)
        outcomes.append(outcome)
        assert outcome in (OK, REJECTED), f"{name}, {family} (salt {salt}): {outcome}: {detail}"

    prop()
    if not target.lenient:
        assert outcomes.count(REJECTED) > 0  # the mutations reach the checks


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_random_bytes(name):
    target = TARGETS[name]

    @settings(FUZZ, max_examples=EXAMPLES // 3)
    @given(st.binary(max_size=2048))
    def prop(data):
        outcome, detail = run_one(target, data)
        assert outcome in (OK, REJECTED), f"{name}: {outcome}: {detail}"

    prop()
