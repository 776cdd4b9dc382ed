"""The detector modules import in any order (sequence first used to fail: a circular import)."""
import subprocess
import sys

import pytest


@pytest.mark.parametrize("first", ["sequence", "fused", "detectors", "model"])
def test_any_module_first_registers_every_detector(first):
    code = (f"import kernelpilot.security.{first}\nfrom kernelpilot.security import detectors as D\n"
            "print(' '.join(sorted(D.DETECTORS)))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-500:]
    assert {"stide", "tree", "cnn", "mismatch", "lm", "rarity", "fused"} <= set(p.stdout.split())
