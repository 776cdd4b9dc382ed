"""The agent's one sensor object: kp_trace.bpf.c built with KP_WITH_SECURITY, so that its one
sys_enter program both batches the trace event and updates the security watch's windows
(security/bpf/sc_watch.h). The watch's maps, rings and exec/fork/exit programs are in the same
object; the security pilot fills and enables them (security.live.KernelStage(sensor=...))."""
from __future__ import annotations

from pathlib import Path

from kernelpilot.traces.sources import EbpfSource

SECURITY_PROGRAMS = ("sc_exec", "sc_fork", "sc_exit")


# The watch's per-thread state (struct sc_proc, 456 bytes) goes in an array indexed by thread id
# where pid_max makes that small; past it, in task storage (two more helper calls per syscall).
STATE_BY_TID_MAX_BYTES = 64 << 20
SC_PROC_BYTES = 456


def agent_object() -> Path:
    from kernelpilot.bpf.build import BPF_DIR, build_object
    from kernelpilot.kernelize.kernel import BPF_SRC
    from kernelpilot.security.live import SRC
    from kernelpilot.traces.sources import pid_max
    defines = {"KP_WITH_SECURITY": 1}
    if pid_max() * SC_PROC_BYTES <= STATE_BY_TID_MAX_BYTES:
        defines["SC_STATE_BY_TID"] = pid_max()
    return build_object(BPF_DIR / "kp_trace.bpf.c", includes=(SRC.parent, BPF_SRC), defines=defines, name="kp_agent")


class AgentSource(EbpfSource):
    """EbpfSource on the merged object (the security stage stays off until a pilot enables it)."""
    extra_programs = SECURITY_PROGRAMS

    def object_path(self):
        return agent_object()
