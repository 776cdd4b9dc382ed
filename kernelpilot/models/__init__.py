"""Model files and integer models: trees, forests, tiny MLPs, n-grams.

    from kernelpilot.models import from_sklearn, Model
    m = from_sklearn(clf, feature_names, X, y)   # imported, quantized, accuracy-loss report
    m.save("model.json"); m = Model.load("model.json")
    m.predict_int(m.to_int(X))                    # the integer ground truth

The names load on first use (PEP 562): `kpilot` reads `models.validate`'s bounds at every start
(through `kernelize.limits`), and the format pulls in numpy.
"""

__all__ = ["Model", "load", "train_summary", "from_sklearn", "from_mlp", "from_torch",
           "ngram_from_sequences"]


def __getattr__(name: str):
    if name in ("Model", "load", "train_summary"):
        from kernelpilot.models import format
        return getattr(format, name)
    if name in ("from_mlp", "from_torch"):
        from kernelpilot.models import mlp
        return getattr(mlp, name)
    if name == "ngram_from_sequences":
        from kernelpilot.models.ngram import from_sequences
        return from_sequences
    if name == "from_sklearn":
        from kernelpilot.models.trees import from_sklearn
        return from_sklearn
    raise AttributeError(f"module 'kernelpilot.models' has no attribute {name!r}")
