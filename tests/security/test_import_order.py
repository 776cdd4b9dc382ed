"""The detector modules import in any order, and the registry (security/registry.py) names every
kind whichever was imported first (sequence first used to fail: a circular import)."""
import subprocess
import sys

import pytest


@pytest.mark.parametrize("first", ["sequence", "fused", "detectors", "model", "registry"])
def test_any_module_first_registers_every_detector(first):
    code = (f"import kernelpilot.security.{first}\nfrom kernelpilot.security.registry import DETECTORS\n"
            "print(' '.join(sorted(DETECTORS)))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-500:]
    assert {"stide", "freq", "tree", "cnn", "ensemble", "mismatch", "lfc", "hamming", "lm", "rarity",
            "novelty", "fused"} == set(p.stdout.split())
