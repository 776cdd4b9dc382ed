"""Kernelize: tiny models into the kernel (eBPF map interpreter, unrolled eBPF) or portable C.

    from kernelpilot.kernelize import deploy_map, deploy_code, emit_c, check
"""
from kernelpilot.kernelize.emit import emit_c
from kernelpilot.kernelize.harness import check, parity
from kernelpilot.kernelize.kernel import deploy_code, deploy_map
from kernelpilot.kernelize.limits import check_limits

__all__ = ["emit_c", "deploy_map", "deploy_code", "check", "parity", "check_limits"]
