import pytest

from kernelpilot.models import demo


@pytest.fixture(scope="session")
def models():
    """Demo models trained once: a depth-8 tree, a 32-tree forest, boosting, a 16-8-1 MLP."""
    return {k: demo.train(k, n=6000)[0] for k in demo.KINDS}
