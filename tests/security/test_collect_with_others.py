"""The security tests collect in one pytest run with another area's conftest.py loaded after theirs
(`from conftest import` took tests/kernelize's conftest then, and every module importing it failed)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_security_collects_beside_kernelize():
    r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                        "tests/security", "tests/kernelize"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "error" not in r.stdout.lower().split("\n")[-2], r.stdout[-3000:]
    assert "tests/security/test_bench_only.py::" in r.stdout and "tests/kernelize/" in r.stdout
