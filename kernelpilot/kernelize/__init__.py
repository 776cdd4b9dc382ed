"""Kernelize: tiny models into the kernel (eBPF map interpreter, unrolled eBPF) or portable C.

    from kernelpilot.kernelize import deploy_map, deploy_code, emit_c, check

The names load on first use (PEP 562): `kpilot` imports `kernelize.limits` for its options at
every start, and this package's modules pull in numpy and the model format.
"""

__all__ = ["emit_c", "deploy_map", "deploy_code", "check", "parity", "check_limits"]


def __getattr__(name: str):
    if name == "emit_c":
        from kernelpilot.kernelize.emit import emit_c
        return emit_c
    if name in ("check", "parity"):
        from kernelpilot.kernelize import harness
        return getattr(harness, name)
    if name in ("deploy_code", "deploy_map"):
        from kernelpilot.kernelize import kernel
        return getattr(kernel, name)
    if name == "check_limits":
        from kernelpilot.kernelize.limits import check_limits
        return check_limits
    raise AttributeError(f"module 'kernelpilot.kernelize' has no attribute {name!r}")
