"""Detectors trained on normal traces only. Each gives every window of a trace a score (higher =
more anomalous); a trace scores its worst window.

- stide: Forrest et al. 1996, the share of a window's n-grams never seen in normal traces.
- freq: bag of syscalls, the mean surprisal of a window's calls under the normal frequencies.
- tree: a depth-limited decision tree over counts the kernel can keep (novel 3-grams, rare calls,
  syscall classes), trained normal-versus-uniform-reference so it needs no attacks; kernelizable.
- cnn: a causal 1-D CNN predicting each next syscall (trained with PyTorch, run in numpy); the
  window's mean negative log-likelihood. The user-space second stage.
"""
from __future__ import annotations

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.security.features import (CLASS_NAMES, STRIDE, WINDOW, Vocabulary, class_table,
                                           ngram_hashes, window_bounds, window_means, window_sums)


class Detector:
    kind = ""
    kernelizable = False

    def __init__(self, vocab: Vocabulary, window: int = WINDOW, stride: int = STRIDE):
        self.vocab, self.window, self.stride = vocab, window, stride

    def fit(self, seqs: list[np.ndarray], seed: int = 0) -> "Detector":
        raise NotImplementedError

    def window_scores(self, seq: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def trace_score(self, seq: np.ndarray) -> float:
        return float(self.window_scores(seq).max())

    def params(self) -> dict:
        raise NotImplementedError

    def load(self, p: dict) -> "Detector":
        raise NotImplementedError


class Stide(Detector):
    kind = "stide"

    def __init__(self, vocab, n: int = 6, **kw):
        super().__init__(vocab, **kw)
        self.n = n
        self.table = np.zeros(0, dtype=np.uint64)

    def fit(self, seqs, seed=0):
        self.table = np.unique(np.concatenate([ngram_hashes(s, self.n) for s in seqs]))
        return self

    def position_scores(self, seq):
        return (~np.isin(ngram_hashes(seq, self.n), self.table, assume_unique=False)).astype(np.float64)

    def window_scores(self, seq):
        return window_means(self.position_scores(seq), self.window, self.stride)

    def params(self):
        return {"n": self.n, "table": [int(x) for x in self.table]}

    def load(self, p):
        self.n = int(p["n"])
        self.table = np.array(p["table"], dtype=np.uint64)
        return self


class Freq(Detector):
    kind = "freq"

    def fit(self, seqs, seed=0):
        counts = np.bincount(np.concatenate(seqs), minlength=len(self.vocab)).astype(np.float64)
        self.surprisal = -np.log((counts + 0.5) / (counts.sum() + 0.5 * len(counts)))
        return self

    def window_scores(self, seq):
        return window_means(self.surprisal[seq], self.window, self.stride)

    def params(self):
        return {"surprisal": [round(float(x), 5) for x in self.surprisal]}

    def load(self, p):
        self.surprisal = np.array(p["surprisal"], dtype=np.float64)
        if len(self.surprisal) != len(self.vocab):
            raise KpError("freq detector does not match the model's vocabulary size")
        return self


class Tree(Detector):
    """Counts per window: novel 3-grams, rare calls, and one count per syscall class."""
    kind = "tree"
    kernelizable = True
    FEATURES = ("novel3", "rare") + CLASS_NAMES

    def __init__(self, vocab, depth: int = 8, **kw):
        super().__init__(vocab, **kw)
        self.depth = depth

    def features(self, seq, table=None):
        table = self.table if table is None else table
        novel = ~np.isin(ngram_hashes(seq, 3), table)
        per_pos = np.column_stack([novel, self.rare[seq], self.classes[seq]]).astype(np.float64)
        return window_sums(per_pos, self.window, self.stride)

    def fit(self, seqs, seed=0):
        from sklearn.tree import DecisionTreeClassifier
        rng = np.random.default_rng(seed)
        allc = np.concatenate(seqs)
        freq = np.bincount(allc, minlength=len(self.vocab)) / len(allc)
        self.rare = (freq < 1e-4).astype(np.float64)
        self.classes = class_table(self.vocab)
        # Cross-fit the 3-gram table so novelty on normal windows looks like it will on new data.
        order = rng.permutation(len(seqs))
        halves = [order[::2], order[1::2]]
        X = []
        for a, b in (halves, halves[::-1]):
            if len(a) == 0 or len(b) == 0:
                continue
            tab = np.unique(np.concatenate([ngram_hashes(seqs[i], 3) for i in a]))
            X += [self.features(seqs[i], tab) for i in b]
        X = np.vstack(X)
        if len(X) > 40000:
            X = X[rng.choice(len(X), 40000, replace=False)]
        ref = rng.uniform(0, self.window + 1, size=X.shape)  # the uniform reference ("anomalies")
        self.model = DecisionTreeClassifier(max_depth=self.depth, min_samples_leaf=10,
                                            random_state=seed)
        self.model.fit(np.vstack([X, ref]), np.r_[np.zeros(len(X)), np.ones(len(ref))])
        self.table = np.unique(np.concatenate([ngram_hashes(s, 3) for s in seqs]))
        # the same 3-grams as id triples (-1 = before the first call), for the in-kernel table
        self.grams = np.unique(np.vstack([np.lib.stride_tricks.sliding_window_view(
            np.r_[-1, -1, s], 3) for s in seqs]), axis=0)
        self._export()
        return self

    def _export(self):
        t = self.model.tree_
        v = t.value[:, 0, :]
        self.nodes = {"feature": t.feature.tolist(), "threshold": [float(x) for x in t.threshold],
                      "left": t.children_left.tolist(), "right": t.children_right.tolist(),
                      "value": [round(float(x), 6) for x in v[:, 1] / v.sum(axis=1)]}

    def predict(self, X):
        f, thr = self.nodes["feature"], self.nodes["threshold"]
        left, right, val = self.nodes["left"], self.nodes["right"], self.nodes["value"]
        out = np.empty(len(X))
        for i, x in enumerate(X):
            k = 0
            while left[k] != -1:
                k = left[k] if x[f[k]] <= thr[k] else right[k]
            out[i] = val[k]
        return out

    def window_scores(self, seq):
        X = self.features(seq)
        # tie-break the tree's few leaf values by novelty, so ROC curves are not step-flat
        return self.predict(X) + 1e-3 * X[:, 0] / self.window

    def params(self):
        return {"depth": self.depth, "features": list(self.FEATURES), "nodes": self.nodes,
                "rare": [int(i) for i in np.flatnonzero(self.rare)],
                "table": [int(x) for x in self.table], "grams": self.grams.ravel().tolist()}

    def load(self, p):
        self.depth, self.nodes = int(p["depth"]), p["nodes"]
        self.grams = np.array(p["grams"], dtype=np.int64).reshape(-1, 3)
        self.rare = np.zeros(len(self.vocab))
        self.rare[np.array(p["rare"], dtype=np.int64)] = 1
        self.classes = class_table(self.vocab)
        self.table = np.array(p["table"], dtype=np.uint64)
        return self


class CNN(Detector):
    """Next-syscall prediction with dilated causal convolutions (receptive field 15 calls)."""
    kind = "cnn"
    DILATIONS = (1, 2, 4)

    def __init__(self, vocab, dim: int = 32, channels: int = 64, epochs: int = 6, **kw):
        super().__init__(vocab, **kw)
        self.dim, self.channels, self.epochs = dim, channels, epochs

    def fit(self, seqs, seed=0):
        try:
            import torch
        except ImportError:
            raise KpError("training the cnn detector needs PyTorch: pip install torch") from None
        torch.manual_seed(seed)
        torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
        V, bos = len(self.vocab), len(self.vocab)
        L = 128
        chunks = []
        for s in seqs:
            x = np.concatenate([[bos], s]).astype(np.int64)
            for i in range(0, len(s), L):
                tgt = s[i:i + L]
                inp = x[i:i + len(tgt)]
                pad = L - len(tgt)
                chunks.append((np.pad(inp, (0, pad), constant_values=bos),
                               np.pad(tgt, (0, pad), constant_values=-100)))
        X = torch.tensor(np.stack([c[0] for c in chunks]))
        Y = torch.tensor(np.stack([c[1] for c in chunks]).astype(np.int64))
        net = _TorchCNN(V + 1, V, self.dim, self.channels, self.DILATIONS)
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        lossf = torch.nn.CrossEntropyLoss(ignore_index=-100)
        g = torch.Generator().manual_seed(seed)
        for _ in range(self.epochs):
            for idx in torch.randperm(len(X), generator=g).split(32):
                opt.zero_grad()
                loss = lossf(net(X[idx]).reshape(-1, V), Y[idx].reshape(-1))
                loss.backward()
                opt.step()
        self.w = {k: v.detach().numpy().astype(np.float32) for k, v in net.state_dict().items()}
        return self

    def position_scores(self, seq):
        w = self.w
        x = np.concatenate([[len(self.vocab)], seq[:-1]]).astype(np.int64)
        h = w["emb.weight"][x]                                   # (n, dim)
        for i, d in enumerate(self.DILATIONS):
            W, b = w[f"convs.{i}.weight"], w[f"convs.{i}.bias"]  # (out, in, 3)
            K = W.shape[2]
            hp = np.vstack([np.zeros(((K - 1) * d, h.shape[1]), np.float32), h])
            n = len(x)
            h = b + sum(hp[k * d:k * d + n] @ W[:, :, k].T for k in range(K))
            h = np.maximum(h, 0)
        logits = h @ w["out.weight"].T + w["out.bias"]
        m = logits.max(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
        return (lse - logits[np.arange(len(seq)), seq]).astype(np.float64)

    def window_scores(self, seq):
        if len(seq) == 0:
            return np.zeros(1)
        return window_means(self.position_scores(seq), self.window, self.stride)

    def params(self):
        return {"dim": self.dim, "channels": self.channels, "epochs": self.epochs,
                "weights": {k: {"shape": list(v.shape), "data": [round(float(x), 6) for x in v.ravel()]}
                            for k, v in self.w.items()}}

    def load(self, p):
        self.dim, self.channels, self.epochs = int(p["dim"]), int(p["channels"]), int(p["epochs"])
        self.w = {k: np.array(v["data"], dtype=np.float32).reshape(v["shape"]) for k, v in p["weights"].items()}
        if self.w["out.bias"].shape[0] != len(self.vocab):
            raise KpError("cnn detector does not match the model's vocabulary size")
        return self


def _TorchCNN(n_in, n_out, dim, ch, dilations):
    import torch.nn as nn
    import torch.nn.functional as F

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(n_in, dim)
            self.convs = nn.ModuleList(nn.Conv1d(dim if i == 0 else ch, ch, 3, dilation=d)
                                       for i, d in enumerate(dilations))
            self.out = nn.Linear(ch, n_out)

        def forward(self, x):
            h = self.emb(x).transpose(1, 2)
            for conv, d in zip(self.convs, dilations):
                h = F.relu(conv(F.pad(h, (2 * d, 0))))
            return self.out(h.transpose(1, 2))
    return Net()


DETECTORS = {c.kind: c for c in (Stide, Freq, Tree, CNN)}


def make(kind: str, vocab: Vocabulary, **kw) -> Detector:
    if kind not in DETECTORS:
        raise KpError(f"unknown detector '{kind}'; choose from {', '.join(DETECTORS)}")
    return DETECTORS[kind](vocab, **kw)
