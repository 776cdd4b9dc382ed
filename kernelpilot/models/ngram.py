"""N-gram container (for syscall or event sequences): a table of known n-grams with integer
scores. A window's score is the sum of its n-grams' scores, `unseen_score` for n-grams not in the
table (score 0 for known, 1 for unseen gives the classic "stide" mismatch count). Integer only;
the scoring is predict.predict_int, as for every kind."""
from __future__ import annotations

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.models.format import Model


def from_sequences(seqs, n: int, vocab: list[str], unseen_score: int = 1,
                   threshold: int = 0) -> Model:
    """Learn the n-grams seen in normal sequences of token ids (0 <= id < len(vocab))."""
    if n < 1 or n > 8:
        raise KpError(f"n-gram length must be 1..8, not {n}")
    grams = set()
    for s in seqs:
        s = np.asarray(s, dtype=np.int64)
        if s.size and (s.min() < 0 or s.max() >= len(vocab)):
            raise KpError(f"token ids must be in 0..{len(vocab) - 1}")
        for i in range(len(s) - n + 1):
            grams.add(tuple(int(t) for t in s[i:i + n]))
    keys = np.array(sorted(grams), dtype=np.int64).reshape(-1, n)
    params = {"keys": keys, "scores": np.zeros(len(keys), dtype=np.int32)}
    meta = {"source": "sequences", "task": "classify", "output": "binary", "n": n,
            "vocab": list(vocab), "unseen_score": int(unseen_score), "threshold": int(threshold),
            "classes": [0, 1], "quant": {"note": "integer model"}}
    return Model("ngram", [f"t{i}" for i in range(n)], params, meta)

