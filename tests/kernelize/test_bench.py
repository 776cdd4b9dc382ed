"""`kpilot bench kernelize --quick --json` prints every figure side by side with parity."""
import json


def test_bench_quick(kpilot, bpf_ok):
    r = kpilot("bench", "kernelize", "--quick", "--json", timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    for name in ("tree_depth8", "forest_32", "mlp_16_8_1"):
        row = res[name]
        assert row["kernel_unrolled"]["parity"] == 1.0 and row["c_parity"] == 1.0
        assert row["kernel_unrolled"]["ns_with_harness"] > 0 and row["c_ctypes_single_ns"] > 0
        assert "c_single_over_kernel_unrolled" in row["ratios"]
    assert res["tree_depth8"]["kernel_map"]["parity"] == 1.0
    assert res["targets"]["parity_100pct"] is True
