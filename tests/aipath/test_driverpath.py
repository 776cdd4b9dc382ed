"""Named ioctls: the drivers' tables on a CUDA/HIP start's requests, a fake device path through the
devices layer, and real ioctls on this machine's devices under the real probe."""
import importlib.util
import json
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import need_root
from kernelpilot.aipath import ioctls as I
from kernelpilot.aipath.driverpath import device_key, enrich
from kernelpilot.aipath.probe import IOCTL_DTYPE

EXAMPLES = json.loads((Path(__file__).with_name("data") / "gpu_ioctl_examples.json").read_text())


def test_ioc_fields():
    assert I.ioc(0xC030462B) == {"dir": "read/write", "size": 0x30, "type": "F", "nr": 0x2B}
    assert I.ioc(0x80084B01) == {"dir": "read", "size": 8, "type": "K", "nr": 1}
    assert I.ioc(0x5413) == {"dir": "none", "size": 0, "type": "T", "nr": 0x13}
    assert I.ioc(0x30000001)["nr"] == 1  # UVM's plain integers are not _IOC-encoded


@pytest.mark.parametrize("example", ["nvidia_cuda_init", "amdgpu_hip_init"])
def test_every_request_of_a_gpu_start_is_named(example):
    devs = EXAMPLES["devices"]
    for row in EXAMPLES[example]:
        d = devs[row["device"]]
        fam = I.family_of(d["major"], d["proc_name"], d["driver"])
        got = I.name_request(int(row["request"], 16), fam, d["driver"], bytes.fromhex(row["arg"] or ""))
        assert got["name"] == row["name"], row
        assert got["detail"] == row["detail"], row
        assert got["category"] in I.CATEGORIES
        assert not got["name"].startswith("_IOC(")


def test_the_same_number_means_different_things_on_different_devices():
    assert I.name_request(0x27, "nvidia-uvm")["name"] == "UVM_PAGEABLE_MEM_ACCESS"
    assert I.name_request(0xC0384627, "nvidia")["name"] == "NV_ESC_RM_ALLOC_MEMORY"
    assert I.name_request(0xC0186444, "drm", "amdgpu")["name"] == "DRM_IOCTL_AMDGPU_CS"
    assert I.name_request(0xC0186444, "drm", "i915")["name"] == "DRM_IOCTL_I915_IRQ_EMIT"
    assert I.name_request(0x40406469, "drm", "i915")["name"] == "DRM_IOCTL_I915_GEM_EXECBUFFER2"
    assert I.name_request(0x40286449, "drm", "xe")["name"] == "DRM_IOCTL_XE_EXEC"
    assert I.name_request(0xC0106445, "drm", "xe")["name"] == "DRM_IOCTL_XE_VM_BIND"
    assert I.name_request(0xC0206442, "drm", "intel_vpu")["name"] == "DRM_IOCTL_IVPU_BO_CREATE"
    unknown = I.name_request(0xC0086477, "drm", "newdriver")
    assert unknown["name"] == "DRM_IOCTL_NEWDRIVER_0x37"
    assert I.name_request(0xC0084B99, "generic")["name"] == "_IOC(read/write, 'K', 0x99, 8)"


def test_family_from_major_and_names():
    assert I.family_of(195, "nvidia-frontend", None) == "nvidia"
    assert I.family_of(508, "nvidia-uvm", None) == "nvidia-uvm"
    assert I.family_of(226, "drm", "amdgpu") == "drm"
    assert I.family_of(261, "accel", "intel_vpu") == "drm"
    assert I.family_of(240, "kfd", None) == "kfd"
    assert I.family_of(1, "mem", None) == "generic"


def _recs(rows, devs):
    recs = np.zeros(len(rows), dtype=IOCTL_DTYPE)
    for i, row in enumerate(rows):
        d = devs[row["device"]]
        recs[i]["ts"] = 1000 + i
        recs[i]["dur_ns"] = 2000
        recs[i]["cmd"] = int(row["request"], 16)
        recs[i]["rdev"] = d["major"] << 20 | d["minor"]
        recs[i]["mode"] = 0o020666
        arg = bytes.fromhex(row["arg"] or "")
        recs[i]["arg"][:len(arg)] = np.frombuffer(arg, dtype=np.uint8)
    return recs


def test_fake_gpu_device_path_fills_the_devices_layer():
    """The CUDA start's requests as probe records on devices this machine lacks: the devices
    layer gets ioctls_by_name and by category for each file, and each phase its share."""
    devs = EXAMPLES["devices"]
    rows = EXAMPLES["nvidia_cuda_init"] + EXAMPLES["amdgpu_hip_init"]
    recs = _recs(rows, devs)
    by_rdev = {d["major"] << 20 | d["minor"]: (p, d) for p, d in devs.items()}

    def info_of(rdev, kind):
        path, d = by_rdev[rdev]
        return {"major": d["major"], "minor": d["minor"], "driver": d["proc_name"], "path": path,
                "accelerator": True, "kind": kind, "kernel_driver": d["driver"],
                "family": I.family_of(d["major"], d["proc_name"], d["driver"])}

    layer = {"detail": {"files": {}}}
    half = 1000 + len(EXAMPLES["nvidia_cuda_init"])
    result = {"layers": [None] * 5 + [layer],
              "phases": [{"t0_ns": 0, "t1_ns": half, "layers": [None] * 5 + [{"detail": {"files": {}}}]},
                         {"t0_ns": half, "t1_ns": 10 ** 9, "layers": [None] * 5 + [{"detail": {"files": {}}}]}]}
    enrich(result, recs, info_of)
    files = layer["detail"]["files"]
    assert set(files) == set(devs)
    ctl = files["/dev/nvidiactl"]
    assert ctl["ioctls_by_name"]["NV_ESC_RM_ALLOC"]["count"] == sum(
        r["name"] == "NV_ESC_RM_ALLOC" and r["device"] == "/dev/nvidiactl" for r in rows)
    assert ctl["ioctl_details"]["NV_ESC_RM_ALLOC(HOPPER_CHANNEL_GPFIFO_A)"] == 1
    assert files["/dev/nvidia-uvm"]["ioctls_by_name"]["UVM_INITIALIZE"]["count"] == 1
    assert files["/dev/dri/renderD128"]["ioctls_by_category"]["submit"]["count"] == 2  # BO_LIST, CS
    assert result["ioctl_names"] == {"decoded": len(rows), "named": len(rows)}
    assert ctl["ioctl_time_s"] == pytest.approx(2e-6 * ctl["ioctls"])
    p0, p1 = (p["layers"][5]["detail"]["files"] for p in result["phases"])
    assert "/dev/kfd" not in p0 and "/dev/nvidiactl" not in p1
    assert sum(v["ioctls"] for v in p0.values()) + sum(v["ioctls"] for v in p1.values()) == len(rows)


PROG = textwrap.dedent("""
    import fcntl, os, termios
    from kernelpilot.aipath.markers import mark
    mark("ioctls")
    n = os.open("/dev/null", os.O_RDWR)
    for _ in range(5):
        try:
            fcntl.ioctl(n, termios.TIOCGWINSZ, b"ABCDEFGH")
        except OSError:
            pass
    try:
        t = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
        fcntl.ioctl(t, termios.TIOCGWINSZ, b"\\0" * 8)
    except OSError:
        pass
    l = os.open("/dev/loop0", os.O_RDONLY)
    for _ in range(3):
        try:
            fcntl.ioctl(l, 0x4C05, bytearray(232))  # LOOP_GET_STATUS64: ENXIO on an unbound loop device
        except OSError:
            pass
    for node in ("/dev/dri/renderD128", "/dev/dri/card0"):
        try:
            d = os.open(node, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.ioctl(d, 0xC0406400, bytearray(64))  # DRM_IOCTL_VERSION
        except OSError:
            pass
    mark("done")
""")


@pytest.fixture(scope="module")
def live_run():
    need_root()
    if not os.path.exists("/dev/loop0"):
        pytest.skip("no /dev/loop0 on this host")
    from kernelpilot.aipath.run import trace_ai
    return trace_ai([sys.executable, "-c", PROG], default_uprobes=False)


def test_real_ioctls_named_per_device_and_phase(live_run):
    r = live_run
    assert r["exit_code"] == 0 and r["source"] == "ebpf"
    files = r["layers"][5]["detail"]["files"]
    null = files["/dev/null"]
    assert null["ioctls_by_name"]["TIOCGWINSZ"]["count"] == 5  # (Python's start asks TCGETS of a /dev/null stdio)
    assert null["ioctls_by_category"]["query"]["count"] >= 5 and null["ioctl_time_s"] > 0
    loop = files["/dev/loop0"]
    assert loop["driver"] == "loop" and loop["ioctls_by_name"]["LOOP_GET_STATUS64"]["count"] == 3
    assert "/dev/vcs" not in files  # block 7:0 is not the character device 7:0
    phase = {p["name"]: p for p in r["phases"]}["ioctls"]["layers"][5]["detail"]["files"]
    assert phase["/dev/null"]["ioctls_by_name"]["TIOCGWINSZ"]["count"] == 5
    assert r["ioctl_names"]["named"] == r["ioctl_names"]["decoded"]
    for node in ("/dev/dri/renderD128", "/dev/dri/card0"):  # only where this host has a DRM device
        if node in files:
            assert files[node]["family"] == "drm" and "DRM_IOCTL_VERSION" in files[node]["ioctls_by_name"]


def test_probe_copies_argument_bytes_for_chosen_majors():
    need_root()
    from kernelpilot.aipath.probe import AipathProbe
    from kernelpilot.traces.record import spawn_held
    prog = ("import fcntl, os, termios; n = os.open('/dev/null', os.O_RDWR)\n"
            "try:\n    fcntl.ioctl(n, termios.TIOCGWINSZ, b'ABCDEFGH')\nexcept OSError:\n    pass\n")
    probe = AipathProbe([], copy_majors={1})
    try:
        proc, w = spawn_held([sys.executable, "-c", prog])
        probe.watch(proc.pid)
        os.write(w, b"go\n")
        os.close(w)
        proc.wait(60)
        recs = probe.ioctls()
    finally:
        probe.close()
    mine = recs[(recs["rdev"] == (1 << 20 | 3)) & (recs["cmd"] == 0x5413)]
    assert len(mine) == 1
    assert bytes(mine[0]["arg"][:8]) == b"ABCDEFGH"
    assert mine[0]["ret"] == -25  # ENOTTY, seen at the return


def test_flow_diagram_names_the_calls():
    from kernelpilot.report import html
    names = ["user space", "system calls", "memory", "scheduler", "files / page cache", "devices", "hardware"]
    layers = [{"name": n, "count": 3, "count_unit": "x", "bytes": None, "time_s": 0.1, "detail": {}} for n in names]
    layers[5]["detail"] = {"files": {"/dev/nvidiactl": {"ioctls_by_name": {"NV_ESC_RM_CONTROL": {"count": 40},
                                                                         "NV_ESC_RM_ALLOC": {"count": 12}}},
                                     "/dev/nvidia-uvm": {"ioctls_by_name": {"UVM_INITIALIZE": {"count": 1}}}}}
    res = {"bench": "aipath", "layers": layers, "phases": [],
           "uprobes": {"functions": {"libcuda.so:cuLaunchKernel": {"symbol": "cuLaunchKernel", "calls": 900},
                                     "libcuda.so:cuMemAlloc_v2": {"symbol": "cuMemAlloc_v2", "calls": 0}}}}
    page = html.render(res)
    assert "NV_ESC_RM_CONTROL 40, NV_ESC_RM_ALLOC 12, UVM_INITIALIZE 1" in page
    from kernelpilot.report.flow import flow_svg
    svg = flow_svg(res)
    assert "cuLaunchKernel 900" in svg and "cuMemAlloc_v2" not in svg  # functions never called are left out


@pytest.mark.parametrize("args,msg", [(("--demo", "--device", "cuda"), "this PyTorch sees no CUDA GPU"),
                                      (("--device", "cuda", "--", "/bin/true"), "--device applies to --demo only")])
def test_device_option_bad_input(args, msg):
    from tests.conftest import run_kpilot
    try:
        import torch
        if torch.cuda.is_available() and "--demo" in args:
            pytest.skip("this host has a CUDA GPU")
    except ImportError:
        pytest.skip("PyTorch not installed")
    p = run_kpilot("aipath", *args)
    assert p.returncode == 2 and msg in p.stderr and "Traceback" not in p.stderr


def test_demo_checks_do_not_import_torch():
    """`aipath --demo` imported torch in the CLI process only to check it (3 s of each start on this
    VM; the traced demo imports it itself): the checks now read the install and the GPU device files."""
    import subprocess

    from kernelpilot.aipath.cli import GPU_NODES
    from tests.conftest import ROOT
    if importlib.util.find_spec("torch") is None:
        pytest.skip("PyTorch not installed")
    code = "import sys\nfrom kernelpilot.aipath.cli import demo_ready\ndemo_ready('cpu')\nprint('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.stdout.split() == ["False"], r.stderr[-500:]
    if any(os.path.exists(p) for p in GPU_NODES):
        pytest.skip("this host has a GPU device file: the CUDA check imports torch")
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "kernelpilot.cli", "aipath", "--demo", "--device", "cuda"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "this PyTorch sees no CUDA GPU" in r.stderr
    assert not [ln for ln in r.stderr.splitlines() if ln.rstrip().endswith("| torch")], "torch was imported"
