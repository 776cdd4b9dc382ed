"""Model files and integer models: trees, forests, tiny MLPs, n-grams.

    from kernelpilot.models import from_sklearn, Model
    m = from_sklearn(clf, feature_names, X, y)   # imported, quantized, accuracy-loss report
    m.save("model.json"); m = Model.load("model.json")
    m.predict_int(m.to_int(X))                    # the integer ground truth
"""
from kernelpilot.models.format import Model, load, train_summary
from kernelpilot.models.mlp import from_mlp, from_torch
from kernelpilot.models.ngram import from_sequences as ngram_from_sequences
from kernelpilot.models.trees import from_sklearn

__all__ = ["Model", "load", "train_summary", "from_sklearn", "from_mlp", "from_torch",
           "ngram_from_sequences"]
