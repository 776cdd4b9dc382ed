"""Models loaded into the running kernel, two ways:
  deploy_map(model)  - the generic interpreter (kp_tree_map.bpf.c); the model is map data, and
                       .swap(model) replaces it with no recompile and no detach;
  deploy_code(model) - the model emitted as C, compiled by clang into its own BPF object.
Both carry the same programs (kp_harness.h): kp_infer_xdp for BPF_PROG_TEST_RUN (parity and
ns per inference) and kp_infer_tp, attachable to raw_syscalls/sys_enter."""
from __future__ import annotations

import ctypes as C
import hashlib
import os
import struct
from pathlib import Path

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.kernelize import limits
from kernelpilot.kernelize.emit import emit_c

BPF_SRC = Path(__file__).resolve().parent / "bpf"
NF = limits.MAX_FEATURES
PKT = 4 * (NF + 1)
OUTPUT_CODES = {"label": 0, "score": 1, "binary": 2}

SLOT_HEAD = np.dtype([("n_trees", "<u4"), ("output", "<u4"), ("bias", "<i4"), ("thr", "<i4"),
                      ("roots", "<u4", (limits.MAP_MAX_TREES,))])
NODE = np.dtype([("feat", "<i4"), ("val", "<i4"), ("left", "<u4"), ("right", "<u4")])
SLOT_BYTES = SLOT_HEAD.itemsize + NODE.itemsize * limits.MAP_MAX_NODES


def _bpf():
    from kernelpilot.bpf import build
    from kernelpilot.probes import libbpf
    return build, libbpf


def encode_slot(m) -> bytes:
    """A tree model as one kp_mslot value (see kp_tree_map.h)."""
    limits.check_limits(m, "bpf-map")
    p, q = m.params, m.meta["quant"]
    head = np.zeros(1, SLOT_HEAD)
    head["n_trees"] = p["roots"].size
    head["output"] = OUTPUT_CODES[m.meta["output"]]
    head["bias"] = q.get("bias_q", 0)
    head["thr"] = q.get("threshold_q", 0)
    head["roots"][0, : p["roots"].size] = p["roots"]
    nodes = np.zeros(limits.MAP_MAX_NODES, NODE)
    n = p["feature"].size
    leaf = p["feature"] < 0
    nodes["feat"][:n] = p["feature"]
    nodes["val"][:n] = np.where(leaf, p["q_value"], p["q_threshold"])
    nodes["left"][:n] = np.where(leaf, 0, p["left"])
    nodes["right"][:n] = np.where(leaf, 0, p["right"])
    return head.tobytes() + nodes.tobytes()


def pack_rows(Xint) -> np.ndarray:
    X = np.asarray(Xint)
    if X.ndim == 1:
        X = X[None, :]
    if X.shape[1] > NF:
        raise KpError(f"feature rows have {X.shape[1]} values; kernel programs take at most {NF}")
    rows = np.zeros((X.shape[0], NF + 1), dtype="<i4")
    rows[:, 1: 1 + X.shape[1]] = X
    return rows


def stack_bytes(prog) -> int:
    """Stack the program uses: the lowest r10-relative offset in its translated instructions."""
    _, libbpf = _bpf()
    first = prog.info()
    n = first.xlated_prog_len // 8
    buf = (C.c_uint64 * n)()
    info = libbpf.ProgInfo()
    info.xlated_prog_len = n * 8
    info.xlated_prog_insns = C.addressof(buf)
    size = C.c_uint32(C.sizeof(info))
    if libbpf.lib().bpf_obj_get_info_by_fd(prog.fd, C.byref(info), C.byref(size)) < 0:
        return -1
    ins = np.frombuffer(bytes(buf), dtype=[("code", "u1"), ("regs", "u1"), ("off", "<i2"), ("imm", "<i4")])
    dst, src, cls = ins["regs"] & 0xF, ins["regs"] >> 4, ins["code"] & 0x07
    lo = 0
    mem = ((cls == 1) & (src == 10)) | (((cls == 2) | (cls == 3)) & (dst == 10))
    if mem.any():
        lo = min(lo, int(ins["off"][mem].min()))
    frame = np.zeros(16, dtype=bool)  # registers that hold r10 (+imm follows)
    for c, d, s, imm in zip(ins["code"], dst, src, ins["imm"]):
        if c == 0xBF:  # mov64 reg
            frame[d] = s == 10
        elif c == 0x07 and frame[d]:  # add64 imm
            lo = min(lo, int(imm))
            frame[d] = False
        elif (c & 0x07) in (0x04, 0x07) and d < 16:
            frame[d] = False
    return (-lo + 7) // 8 * 8


class KernelModel:
    """A loaded BPF object holding one model; closes on exit of a with-block."""

    def __init__(self, obj_path: Path, model, form: str):
        _, libbpf = _bpf()
        self.form, self.model, self.path = form, model, obj_path
        self.obj = libbpf.BpfObject(obj_path)
        self.prog = self.obj.program("kp_infer_xdp")

    # --- running ---------------------------------------------------------------------
    def predict(self, Xint) -> np.ndarray:
        """Run each int32 feature row through the in-kernel model (BPF_PROG_TEST_RUN)."""
        rows = pack_rows(Xint)
        out = np.empty(len(rows), dtype=np.int64)
        run = self.prog.test_run
        for i, row in enumerate(rows):
            r = run(row.tobytes(), data_out_size=PKT)
            out[i] = struct.unpack_from("<i", r["data_out"])[0]
        return out

    def ns_per_inference(self, Xint, repeat: int = 20000) -> dict:
        """Test-run duration per repetition for the model harness and the empty harness."""
        rows = pack_rows(Xint)
        empty = self.obj.program("kp_empty_xdp")
        tot = base = 0.0
        for row in rows:
            data = row.tobytes()
            tot += self.prog.test_run(data, repeat=repeat)["duration_ns"]
            base += empty.test_run(data, repeat=repeat)["duration_ns"]
        tot, base = tot / len(rows), base / len(rows)
        return {"ns_harness": tot, "ns_empty_harness": base, "ns_net": max(tot - base, 0.0)}

    # --- live ---------------------------------------------------------------------------
    def attach_tracepoint(self, tgid: int):
        """Run the model on every syscall entry of process `tgid` (features: id, args)."""
        self.obj.map("kp_cfg").update(0, struct.pack("<I", tgid))
        tp = self.obj.program("kp_infer_tp")
        if not tp.attached:
            tp.attach()
        return tp

    def counts(self) -> dict:
        runs, pos, last = struct.unpack("<QQq", self.obj.map("kp_out").lookup(0))
        return {"runs": runs, "positive": pos, "last": last}

    def reset_counts(self) -> None:
        self.obj.map("kp_out").update(0, bytes(24))

    def stats(self) -> dict:
        s = self.prog.run_stats()
        return {"xlated_insns": s["xlated_insns"], "verified_insns": s["verified_insns"],
                "jited_bytes": s["jited_bytes"], "stack_bytes": stack_bytes(self.prog),
                "map_bytes": self.map_bytes()}

    def map_bytes(self) -> int:
        return sum(mp.value_size * mp.max_entries for name, mp in self.obj.maps.items()
                   if name.startswith("kp_model"))

    def close(self) -> None:
        self.obj.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class MapDeployment(KernelModel):
    """The interpreter with a model in its maps; swap() installs another model atomically."""

    def __init__(self, model):
        build, _ = _bpf()
        slot = encode_slot(model)
        super().__init__(build.build_object(BPF_SRC / "kp_tree_map.bpf.c", includes=(BPF_SRC,)), model, "bpf-map")
        self.active = 1
        self.swap(model, _slot=slot)

    def swap(self, model, _slot: bytes | None = None) -> int:
        """Write the idle slot, then flip the active index; returns the new active slot."""
        slot = _slot or encode_slot(model)
        idle = 1 - self.active
        self.obj.map("kp_model_slots").update(idle, slot)
        self.obj.map("kp_model_active").update(0, struct.pack("<I", idle))
        self.active, self.model = idle, model
        return idle


def code_source(model) -> str:
    return ("// SPDX-License-Identifier: GPL-2.0\n#include \"vmlinux.h\"\n"
            "#include <bpf/bpf_helpers.h>\n\nchar LICENSE[] SEC(\"license\") = \"GPL\";\n\n"
            + emit_c(model, target="bpf")
            + "\n#define KP_PREDICT kp_model_predict\n#include \"kp_harness.h\"\n")


def build_code(model, out: Path | None = None) -> Path:
    """Compile the unrolled model into a BPF object (cached by content)."""
    build, _ = _bpf()
    src = code_source(model)
    d = build.build_dir() / "kernelize"
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"kp_model_{hashlib.sha256(src.encode()).hexdigest()[:12]}.bpf.c"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(src)
        tmp.rename(path)
    obj = build.build_object(path, includes=(BPF_SRC,))
    if out is not None:
        Path(out).write_bytes(obj.read_bytes())
        return Path(out)
    return obj


def deploy_map(model) -> MapDeployment:
    return MapDeployment(model)


def deploy_code(model) -> KernelModel:
    limits.check_limits(model, "bpf-code")
    return KernelModel(build_code(model), model, "bpf-code")
