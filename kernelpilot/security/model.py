"""A security model file: the vocabulary, one or more trained detectors and their alarm thresholds,
saved as one JSON document (never pickle)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.security import detectors as D
from kernelpilot.security.registry import make
from kernelpilot.security.features import STRIDE, WINDOW, Trace, Vocabulary, window_bounds

FORMAT = "kernelpilot.security.model"
VERSION = 2  # 2: tree over the kernel's sliding-window features, kernelize Model inside
DEFAULT_KINDS = ("stide", "freq", "tree", "cnn")


class SecurityModel:
    def __init__(self, vocab: Vocabulary, window: int = WINDOW, stride: int = STRIDE):
        self.vocab, self.window, self.stride = vocab, window, stride
        self.detectors: dict[str, D.Detector] = {}
        self.thresholds: dict[str, dict[str, float]] = {}
        self.info: dict = {}
        self.programs = None  # per-program normal n-grams (Programs), when traces name programs

    @classmethod
    def train(cls, traces: list[Trace], kinds=DEFAULT_KINDS, calibrate: float = 0.2, seed: int = 0,
              window: int = WINDOW, stride: int = STRIDE, cnn_epochs: int = 6,
              progress=None, calibration: list[Trace] | None = None, skip=()) -> "SecurityModel":
        """Fit on normal traces; thresholds at 1% / 0.1% window FPR come from `calibration`
        (held-out normal traces) or, without it, from a `calibrate` share of the traces.
        skip: syscall names stide and the per-program tables leave out (features.SCHEDULED for live models)."""
        traces = [t for t in traces if len(t)]
        if len(traces) < 2:
            raise KpError("training needs at least 2 non-empty normal traces")
        if skip and {"ensemble", "fused"} & set(kinds):
            raise KpError("ensemble and fused combine windows of their parts: train them without skipped calls")
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(traces))
        n_cal = int(len(traces) * calibrate) if len(traces) >= 10 and calibration is None else 0
        cal, fit = [traces[i] for i in order[:n_cal]], [traces[i] for i in order[n_cal:]]
        if calibration is not None:
            cal = [t for t in calibration if len(t)]
        m = cls(Vocabulary.from_traces(fit), window, stride)
        seqs = [m.vocab.encode(t.calls) for t in fit]
        for kind in kinds:
            if kind in ("ensemble", "fused"):
                continue
            t0 = time.perf_counter()
            kw = {"epochs": cnn_epochs} if kind == "cnn" else {"skip": tuple(skip)} if kind == "stide" else {}
            det = make(kind, m.vocab, window=window, stride=stride, **kw).fit(seqs, seed)
            m.detectors[kind] = det
            m.info[f"{kind}_fit_s"] = round(time.perf_counter() - t0, 2)
            if progress:
                progress(kind)
        if "ensemble" in kinds:
            t0 = time.perf_counter()
            parts = {k: m.detectors[k] for k in D.Ensemble.PARTS if k in m.detectors}
            if len(parts) < 2:
                raise KpError("the ensemble detector needs at least two of stide, tree, cnn")
            m.detectors["ensemble"] = D.Ensemble(m.vocab, window, stride).fit_from(seqs, parts, seed, cnn_epochs)
            m.info["ensemble_fit_s"] = round(time.perf_counter() - t0, 2)
        if "fused" in kinds:  # its rule from a dev split leaving programs out, z-scores from calibration
            from kernelpilot.security.fused import Fused
            t0 = time.perf_counter()
            m.detectors["fused"] = Fused(m.vocab, window=window, stride=stride).build(m.detectors, fit, cal, seed)
            m.info["fused_fit_s"] = round(time.perf_counter() - t0, 2)
        if cal:
            for kind, det in m.detectors.items():
                w = np.concatenate([det.window_scores(m.vocab.encode(t.calls)) for t in cal])
                m.thresholds[kind] = {"fpr_1pct": float(np.quantile(w, 0.99)),
                                      "fpr_0.1pct": float(np.quantile(w, 0.999))}
        if cal and len({t.comm for t in fit if t.comm}) >= 2:
            from kernelpilot.security.programs import Programs
            m.programs = Programs(window=window, stride=stride, skip=skip, vocab=m.vocab).fit(fit, seqs)
            m.programs.calibrate(cal, [m.vocab.encode(t.calls) for t in cal])
            m.info["n_programs"] = len(m.programs.tables)
        m.info.update(n_traces=len(fit), n_calibration=len(cal), n_calls=int(sum(len(s) for s in seqs)),
                      n_calibration_windows=int(sum(len(window_bounds(len(t), window, stride)) for t in cal)))
        return m

    def encode(self, traces: list[Trace], what: str = "data") -> list[np.ndarray]:
        self.vocab.check_compatible(traces, what)
        return [self.vocab.encode(t.calls) for t in traces]

    def save(self, path) -> None:
        doc = {"format": FORMAT, "version": VERSION, "window": self.window, "stride": self.stride,
               "vocabulary": self.vocab.to_json(), "thresholds": self.thresholds, "info": self.info,
               "detectors": {k: {"kind": d.kind, "kernelizable": d.kernelizable, **d.params()}
                             for k, d in self.detectors.items()}}
        if self.programs is not None:
            doc["programs"] = self.programs.params()
        Path(path).write_text(json.dumps(doc, separators=(",", ":")))

    @classmethod
    def load(cls, path) -> "SecurityModel":
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except OSError as e:
            raise KpError(f"cannot read model {path}: {e.strerror}") from None
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise KpError(f"model {path} is not JSON") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise KpError(f"{path} is not a kernelpilot security model")
        if doc.get("version") != VERSION:
            raise KpError(f"model {path} has version {doc.get('version')}; this kernelpilot reads {VERSION}")
        from kernelpilot.models.validate import check_document
        check_document(doc, str(path), {"window": (1, 4096), "stride": (1, 4096)})
        try:
            m = cls(Vocabulary.from_json(doc["vocabulary"]), int(doc["window"]), int(doc["stride"]))
            for name, p in doc["detectors"].items():
                m.detectors[name] = make(p["kind"], m.vocab, window=m.window, stride=m.stride).load(p)
            ens = m.detectors.get("ensemble")
            if ens is not None:
                ens.parts = {k: m.detectors[k] for k in ens.part_names}
            fz = m.detectors.get("fused")
            if fz is not None:
                fz.parts = {k: m.detectors[k] for k in fz.part_names}
        except (KeyError, TypeError, ValueError, OverflowError, IndexError, AttributeError) as e:
            raise KpError(f"model {path} is incomplete or corrupt ({type(e).__name__}: {str(e)[:80]})") from None
        m.thresholds, m.info = doc.get("thresholds", {}), doc.get("info", {})
        if isinstance(doc.get("programs"), dict):
            from kernelpilot.security.programs import Programs
            try:
                m.programs = Programs.load(doc["programs"], m.window, m.stride, m.vocab)
            except (KeyError, TypeError, ValueError, OverflowError, IndexError, AttributeError) as e:
                raise KpError(f"model {path}: programs are corrupt ({type(e).__name__}: {str(e)[:80]})") from None
        return m
