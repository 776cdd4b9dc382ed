"""The model file: one `Model` object, saved as JSON (inspectable) or npz (compact), never pickle.

A model holds its kind ("tree", "forest", "mlp", "ngram"), the feature names, float parameters,
integer (quantized) parameters prefixed `q_`, and `meta`: task, output rule, scaling, the training
data's summary, the quantization scales and the accuracy-loss report."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kernelpilot.errors import KpError

KINDS = ("tree", "forest", "mlp", "ngram")
FORMAT_VERSION = 1


@dataclass
class Model:
    kind: str
    feature_names: list[str]
    params: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise KpError(f"unknown model kind '{self.kind}'; expected one of {', '.join(KINDS)}")
        self.feature_names = [str(n) for n in self.feature_names]

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def quantized(self) -> bool:
        return "quant" in self.meta

    def require_quantized(self) -> None:
        if not self.quantized:
            raise KpError(f"{self.kind} model is not quantized; call Model.quantize(X) first")

    # --- integer ground truth -----------------------------------------------------------
    def to_int(self, X) -> np.ndarray:
        """Float feature rows -> the int32 vectors the kernel sees: floor(x * 2**feature_shift)."""
        from kernelpilot.models.quant import features_to_int
        return features_to_int(self, X)

    def predict_int(self, Xint) -> np.ndarray:
        """The integer reference predictor (THE ground truth for kernel parity)."""
        from kernelpilot.models.predict import predict_int
        return predict_int(self, Xint)

    def predict_float(self, X) -> np.ndarray:
        from kernelpilot.models.predict import predict_float
        return predict_float(self, X)

    def quantize(self, X=None, y=None, bits: int = 8) -> dict:
        """Fix thresholds/weights to integers; returns (and stores) the accuracy-loss report."""
        from kernelpilot.models.quant import quantize
        return quantize(self, X, y, bits=bits)

    def describe(self) -> dict:
        """Kind, features, size and the quantization report, for `kpilot models info`."""
        d = {"kind": self.kind, "features": self.n_features, "output": self.meta.get("output"),
             "source": self.meta.get("source"), "quantized": self.quantized}
        if self.kind in ("tree", "forest"):
            d.update(depth=self.meta["depth"], trees=self.meta["n_trees"],
                     nodes=int(self.params["feature"].size))
        elif self.kind == "mlp":
            d.update(shape=self.meta["shape"], weight_bits=self.meta.get("quant", {}).get("weight_bits"))
        if self.quantized:
            d["quant_report"] = self.meta["quant"].get("report")
        return d

    # --- files ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        params = {k: {"dtype": str(v.dtype), "shape": list(v.shape), "data": v.ravel().tolist()}
                  for k, v in self.params.items()}
        return {"format": "kernelpilot-model", "version": FORMAT_VERSION, "kind": self.kind,
                "feature_names": self.feature_names, "meta": self.meta, "params": params}

    @classmethod
    def from_dict(cls, d: dict, where: str = "model") -> "Model":
        """A model from its JSON document, validated completely (models/validate.py) before use."""
        return cls._from_dict(d, where, None)

    @classmethod
    def _from_dict(cls, d, where: str, arrays: dict | None) -> "Model":
        from kernelpilot.models import validate as V
        if not isinstance(d, dict) or d.get("format") != "kernelpilot-model":
            raise KpError(f"{where}: not a kernelpilot model file")
        if d.get("version") != FORMAT_VERSION:
            raise KpError(f"{where}: unsupported model format version {V._short(d.get('version'))}")
        kind, names, meta = d.get("kind"), d.get("feature_names"), d.get("meta", {})
        if kind not in KINDS:
            V.fail(where, "kind", f"{V._short(kind)} is not one of {', '.join(KINDS)}")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            V.fail(where, "feature_names", "expected a list of strings")
        if not isinstance(meta, dict):
            V.fail(where, "meta", f"expected an object, got {type(meta).__name__}")
        if arrays is None:
            raw = d.get("params")
            if not isinstance(raw, dict):
                V.fail(where, "params", "missing or not an object")
            arrays = {str(k): V.parse_param(where, str(k), v) for k, v in raw.items()}
        else:
            arrays = {k: V.check_array(where, k, v) for k, v in arrays.items()}
        return V.validate(cls(kind, list(names), arrays, dict(meta)), where)

    def save(self, path) -> Path:
        path = Path(path)
        if path.suffix == ".npz":
            head = {k: v for k, v in self.to_dict().items() if k != "params"}
            np.savez_compressed(path, __meta__=np.array(json.dumps(head)), **self.params)
        elif path.suffix == ".json":
            path.write_text(json.dumps(self.to_dict(), indent=1, default=_jsonable) + "\n")
        else:
            raise KpError(f"{path}: model files end in .json or .npz")
        return path

    @classmethod
    def load(cls, path) -> "Model":
        import tokenize
        import zipfile
        import zlib
        path = Path(path)
        if not path.is_file():
            raise KpError(f"{path}: no such model file")
        try:
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as z:
                    if "__meta__" not in z.files:
                        raise KpError(f"{path}: not a kernelpilot model file")
                    head = json.loads(str(z["__meta__"]))
                    params = {k: z[k] for k in z.files if k != "__meta__"}
                return cls._from_dict(head, str(path), params)
            return cls.from_dict(json.loads(path.read_text()), str(path))
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, UnicodeDecodeError,
                NotImplementedError, SyntaxError, tokenize.TokenError) as e:  # zip method, npy header
            raise KpError(f"{path}: cannot read model file ({type(e).__name__})") from None
        except RecursionError:
            raise KpError(f"{path}: cannot read model file (nested too deeply)") from None
        except MemoryError:
            raise KpError(f"{path}: cannot read model file (an array is too large)") from None


def _jsonable(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def load(path) -> Model:
    return Model.load(path)


def train_summary(X, feature_names) -> dict:
    """Per-feature count/min/max/mean/std and whether the column is integer-valued."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(feature_names):
        raise KpError(f"training data has shape {X.shape}, expected (n, {len(feature_names)})")
    return {"n": int(X.shape[0]), "features": {
        n: {"min": float(X[:, i].min()), "max": float(X[:, i].max()), "mean": float(X[:, i].mean()),
            "std": float(X[:, i].std()), "integer": bool(np.all(X[:, i] == np.floor(X[:, i])))}
        for i, n in enumerate(feature_names)}}
