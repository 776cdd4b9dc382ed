"""The latency-critical classifier inside the kernel: kp_sched_class.bpf.c keeps per-task counters
from sched_switch/sched_wakeup, classifies each task at the end of its window with the tree in
kernelize's map interpreter, and writes the verdict to kp_sc_verdicts for the live agent.

    with KernelClassifier(clf.model, window_ms=250) as k:
        k.verdicts()   # tid -> Verdict(cls, tgid, seq, ts, counters, x)
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.kernelize.kernel import BPF_SRC, KernelModel, MapDeployment, encode_slot

SRC = Path(__file__).resolve().parent / "bpf" / "kp_sched_class.bpf.c"
VERDICT = struct.Struct("<iIQQ6Q5iI")  # cls, tgid, seq, ts, run..span, x[5], pad
PROGRAMS = ("kp_sc_switch", "kp_sc_wakeup", "kp_sc_wakeup_new")


@dataclass
class Verdict:
    cls: int
    tgid: int
    seq: int
    ts: int
    counters: tuple  # run_ns, wait_ns, slices, vol, invol, span_ns
    x: tuple         # the int32 features the tree saw


def build() -> Path:
    from kernelpilot.bpf.build import build_object
    return build_object(SRC, includes=(BPF_SRC,))


class KernelClassifier(MapDeployment):
    """The classifier program loaded with `model` (a kernelpilot.models tree over CLASS_FEATURES).
    A kernelize map deployment too: .predict(Xint) runs the same in-kernel tree by
    BPF_PROG_TEST_RUN (parity), .swap(model) replaces the tree live."""

    def __init__(self, model, window_ms: float = 250.0, attach: bool = True):
        from kernelpilot.probes.libbpf import BpfError
        from kernelpilot.sched.features import CLASS_FEATURES
        if list(model.feature_names) != CLASS_FEATURES:
            raise KpError("the in-kernel classifier needs a model over " + ", ".join(CLASS_FEATURES))
        if any(s != 0 for s in model.meta["quant"]["feature_shift"]):
            raise KpError("the in-kernel classifier needs integer features (feature shift 0)")
        slot = encode_slot(model)
        try:
            KernelModel.__init__(self, build(), model, "bpf-map")
        except BpfError as e:
            raise KpError(f"cannot load the in-kernel classifier: {str(e).splitlines()[0]}") from None
        self.active = 1
        self.swap(model, _slot=slot)
        self.window_ms = window_ms
        self.obj.map("kp_sc_cfg").update(0, struct.pack("<QII", int(window_ms * 1e6), 1, 0))
        if attach:
            try:
                for name in PROGRAMS:
                    self.obj.program(name).attach()
            except BpfError as e:
                self.close()
                raise KpError(f"cannot attach the in-kernel classifier: {str(e).splitlines()[0]}") from None

    def verdicts(self) -> dict[int, Verdict]:
        out = {}
        for k, v in self.obj.map("kp_sc_verdicts").items():
            f = VERDICT.unpack(v[:VERDICT.size])
            out[int.from_bytes(k, "little")] = Verdict(f[0], f[1], f[2], f[3], f[4:10], f[10:15])
        return out
