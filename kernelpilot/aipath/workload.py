"""A small PyTorch training run with phase markers: what `kpilot aipath --demo` traces.

Phases: import (import torch), model load (weights from an .npz file), train step (SGD steps),
inference (forward passes without gradients). Runs on CPU; on a GPU host with --device cuda."""
import ctypes
import os
import sys
import tempfile

_libc = ctypes.CDLL(None)  # the libc already loaded (find_library would spawn ldconfig)


def mark(name):  # kpilot aipath phase marker (see kernelpilot/aipath/markers.py)
    raw = name.encode()[:16].ljust(16, b"\0")
    _libc.syscall(ctypes.c_long(39), ctypes.c_ulong(0x4B50494C4F54),
                  ctypes.c_ulong(int.from_bytes(raw[:8], "little")), ctypes.c_ulong(int.from_bytes(raw[8:], "little")))


def main(steps: int = 20, device: str = "cpu") -> None:
    mark("import")
    import numpy as np
    import torch
    torch.manual_seed(0)
    mark("model load")
    rng = np.random.default_rng(0)
    shapes = {"w1": (256, 784), "b1": (256,), "w2": (10, 256), "b2": (10,)}
    path = os.path.join(tempfile.mkdtemp(prefix="kp-aipath-"), "weights.npz")
    np.savez(path, **{k: (rng.standard_normal(s) * 0.05).astype(np.float32) for k, s in shapes.items()})
    fd = os.open(path, os.O_RDONLY)  # drop the file from the page cache: loading reads storage
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
    w = np.load(path)
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)).to(device)
    with torch.no_grad():
        for (name, p), key in zip(model.named_parameters(), ("w1", "b1", "w2", "b2")):
            p.copy_(torch.from_numpy(w[key]))
    os.unlink(path)
    os.rmdir(os.path.dirname(path))
    mark("train step")
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.randn(128, 784, device=device)
    y = torch.randint(0, 10, (128,), device=device)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    mark("inference")
    with torch.no_grad():
        for _ in range(steps):
            model(x).argmax(1)
    print(f"final loss {loss.item():.4f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20, sys.argv[2] if len(sys.argv) > 2 else "cpu")
