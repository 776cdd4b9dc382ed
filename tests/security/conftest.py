import pytest
from sec_common import KPILOT, kpilot, need_root_ebpf, pump  # noqa: F401 (older imports)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    from kernelpilot.security.synth import make_corpus
    root = tmp_path_factory.mktemp("adfa")
    info = make_corpus(root, n_train=120, n_valid=150, attacks_per_family=6, folders_per_family=3, seed=3)
    return root, info


@pytest.fixture(scope="session")
def model_file(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "m.json"
    r = kpilot("security", "train", "--normal", corpus[0], "-o", out, "--epochs", "2")
    assert r.returncode == 0, r.stderr
    return out
