"""GPU figures through NVML (nvidia-ml-py), only where a driver and the library are present."""
from __future__ import annotations


class GpuSampler:
    """Samples utilisation and memory of every GPU while a run goes on; `result()` summarises."""

    def __init__(self):
        self.samples: list[list[dict]] = []
        self.reason = None
        self.nv = None
        try:
            import pynvml as nv
            nv.nvmlInit()
            self.nv = nv
            self.handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(nv.nvmlDeviceGetCount())]
            self.names = [str(nv.nvmlDeviceGetName(h)) for h in self.handles]
        except ImportError:
            self.reason = "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
        except Exception as e:  # NVMLError: no driver or no GPU
            self.reason = f"NVML unavailable: {e}"
            self.nv = None

    def sample(self) -> None:
        if not self.nv:
            return
        row = []
        for h in self.handles:
            u = self.nv.nvmlDeviceGetUtilizationRates(h)
            m = self.nv.nvmlDeviceGetMemoryInfo(h)
            row.append({"gpu_util": u.gpu, "mem_util": u.memory, "mem_used": m.used, "mem_total": m.total})
        self.samples.append(row)

    def result(self) -> dict:
        if not self.nv:
            return {"available": False, "reason": self.reason}
        out = []
        for i, name in enumerate(self.names):
            s = [r[i] for r in self.samples]
            out.append({"name": name, "samples": len(s),
                        "gpu_util_mean": sum(x["gpu_util"] for x in s) / len(s) if s else None,
                        "mem_used_max": max((x["mem_used"] for x in s), default=None),
                        "mem_total": s[0]["mem_total"] if s else None})
        try:
            self.nv.nvmlShutdown()
        except Exception:
            pass
        return {"available": True, "gpus": out}
