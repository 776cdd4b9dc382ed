"""Detectors trained on normal traces only. Each gives every window of a trace a score (higher =
more anomalous); a trace scores its worst window.

- stide: Forrest et al. 1996, the share of a window's n-grams never seen in normal traces.
- freq: bag of syscalls, the mean surprisal of a window's calls under the normal frequencies.
- tree: a depth-limited regression tree over counts the kernel keeps per sliding window (novel
  3-grams, rare calls, syscall classes), distilled from stide on normal and perturbed windows, so
  it needs no attacks; kernelizable (runs in sys_enter through the kernelize map interpreter).
- cnn: a causal 1-D CNN predicting each next syscall (trained with PyTorch, run in numpy); the
  window's mean negative log-likelihood. The user-space second stage.
"""
from __future__ import annotations

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.security.features import (CLASS_NAMES, GRAM_BITS, STRIDE, WINDOW, Vocabulary,
                                           class_table, gram_novel, gram_table, ngram_hashes,
                                           window_means, window_sums)


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
    """skip: syscall names left out of the sequence before its n-grams and windows are taken
    (features.SCHEDULED for live models: where a thread's futex calls fall depends on the scheduler)."""
    kind = "stide"

    def __init__(self, vocab, n: int = 6, skip=(), **kw):
        super().__init__(vocab, **kw)
        self.n = n
        self.skip = tuple(skip)
        self.table = np.zeros(0, dtype=np.uint64)

    def fit(self, seqs, seed=0):
        self.table = np.unique(np.concatenate([ngram_hashes(self.kept(s), self.n) for s in seqs]))
        return self

    def kept(self, seq):
        return without(seq, self.vocab, self.skip)

    def position_scores(self, seq):
        return (~_member(ngram_hashes(self.kept(seq), self.n), self.table)).astype(np.float64)

    def window_scores(self, seq):
        return window_means(self.position_scores(seq), self.window, self.stride)

    def params(self):
        return {"n": self.n, "skip": list(self.skip), "table": [int(x) for x in self.table]}

    def load(self, p):
        self.n = int(p["n"])
        self.skip = tuple(str(x) for x in p.get("skip", ()))  # models from before skip: none
        self.table = np.array(p["table"], dtype=np.uint64)
        return self


def without(seq: np.ndarray, vocab: Vocabulary, skip) -> np.ndarray:
    """seq with the calls named in skip left out."""
    ids = [vocab.index[s] for s in skip if s in vocab.index]
    return seq[~np.isin(seq, ids)] if ids else seq


def _member(x: np.ndarray, table: np.ndarray) -> np.ndarray:
    """x in table, for a sorted unique table (binary search: no re-sort per call)."""
    if not len(table):
        return np.zeros(len(x), dtype=bool)
    i = np.minimum(np.searchsorted(table, x), len(table) - 1)
    return table[i] == x


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
    """A regression tree over counts the kernel keeps per sliding window (novel 3-grams, rare calls,
    syscall classes), distilled from a stide-6 teacher: the target is the share of a window's
    6-grams unseen in (cross-fitted) normal traces, on normal windows and on perturbed copies
    (random calls, splices of other programs, tight loops). No attacks are used. The tree is a
    kernelpilot.models Model (quantized); its integer score is what the kernel computes."""
    kind = "tree"
    kernelizable = True
    FEATURES = ("novel3", "rare") + CLASS_NAMES

    def __init__(self, vocab, depth: int = 8, **kw):
        super().__init__(vocab, **kw)
        self.depth = depth
        self.vmod = len(vocab) + 1

    def features(self, seq, words=None):
        words = self.words if words is None else words
        novel = gram_novel(seq, self.vmod, words)
        per_pos = np.column_stack([novel, self.rare[seq], self.classes[seq]]).astype(np.float64)
        return window_sums(per_pos, self.window, self.stride)

    def fit(self, seqs, seed=0):
        from sklearn.tree import DecisionTreeRegressor

        from kernelpilot.models import from_sklearn
        rng = np.random.default_rng(seed)
        allc = np.concatenate(seqs)
        freq = np.bincount(allc, minlength=len(self.vocab)) / len(allc)
        self.rare = (freq < 1e-4).astype(np.float64)
        self.classes = class_table(self.vocab)
        # Cross-fit: tables from one half, windows from the other, so novelty on normal windows
        # looks like it will on new data.
        order = rng.permutation(len(seqs))
        halves = [order[::2], order[1::2]]
        X, y = [], []
        for a, b in (halves, halves[::-1]):
            if len(a) == 0 or len(b) == 0:
                continue
            fit = [seqs[i] for i in a]
            words, six = gram_table(fit, self.vmod), np.unique(np.concatenate([ngram_hashes(s, 6) for s in fit]))
            for i in b:
                for s in (seqs[i], _perturb(seqs[i], seqs[rng.choice(a)], len(self.vocab), rng)):
                    X.append(self.features(s, words))
                    y.append(window_means(~_member(ngram_hashes(s, 6), six), self.window, self.stride))
        X, y = np.vstack(X), np.concatenate(y)
        if len(X) > 60000:
            keep = rng.choice(len(X), 60000, replace=False)
            X, y = X[keep], y[keep]
        reg = DecisionTreeRegressor(max_depth=self.depth, min_samples_leaf=20, random_state=seed).fit(X, y)
        self.model = from_sklearn(reg, self.FEATURES, X, y)
        self.words = gram_table(seqs, self.vmod)
        return self

    def window_scores(self, seq):
        """The kernel's integer score of each window (features are integer counts: shift 0)."""
        return self.model.predict_int(self.features(seq).astype(np.int64)).astype(np.float64)

    def params(self):
        bits = np.flatnonzero(np.unpackbits(self.words.view(np.uint8), bitorder="little"))
        return {"depth": self.depth, "features": list(self.FEATURES), "vmod": self.vmod,
                "rare": [int(i) for i in np.flatnonzero(self.rare)], "gram_bits": bits.tolist(),
                "model": self.model.to_dict()}

    def load(self, p):
        from kernelpilot.models import Model
        self.depth, self.vmod = int(p["depth"]), int(p["vmod"])
        if self.vmod != len(self.vocab) + 1:
            raise KpError("tree detector does not match the model's vocabulary size")
        self.rare = np.zeros(len(self.vocab))
        self.rare[np.array(p["rare"], dtype=np.int64)] = 1
        self.classes = class_table(self.vocab)
        flat = np.zeros(1 << GRAM_BITS, dtype=np.uint8)
        flat[np.array(p["gram_bits"], dtype=np.int64)] = 1
        self.words = np.packbits(flat, bitorder="little").view(np.uint64).copy()
        self.model = Model.from_dict(p["model"], "tree detector")
        return self


def _perturb(seq, other, vsize, rng):
    """A copy of `seq` with one anomalous stretch: random calls, a splice of another program's
    calls, or a short loop of random calls repeated."""
    n = len(seq)
    k = int(rng.integers(8, 65))
    at = int(rng.integers(0, max(1, n)))
    how = rng.integers(3)
    if how == 0:
        ins = rng.integers(1, vsize, size=k)
    elif how == 1:
        j = int(rng.integers(0, max(1, len(other) - k)))
        ins = other[j:j + k]
    else:
        ins = np.tile(rng.integers(1, vsize, size=int(rng.integers(2, 6))), 16)[:k]
    return np.concatenate([seq[:at], ins, seq[at:]]).astype(seq.dtype)


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
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # batches of 32: a second thread only contends (2.5x slower on 2-core hosts)
        try:
            return self._fit(torch, seqs, seed)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, torch, seqs, seed):
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


class Ensemble(Detector):
    """Rank average of stide, tree and cnn: each window score becomes its rank among normal window
    scores of that detector (cross-fitted: fitted on one half of the normal traces, scored on the
    other), and the ranks are averaged. Built by SecurityModel.train after its parts."""
    kind = "ensemble"
    PARTS = ("stide", "tree", "cnn")
    NREF = 2001  # reference quantiles kept per part

    def fit(self, seqs, seed=0):
        raise KpError("the ensemble is built from its parts: train it with SecurityModel.train")

    def fit_from(self, seqs, parts: dict, seed=0, cnn_epochs: int = 6):
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(seqs))
        halves = [[seqs[i] for i in order[::2]], [seqs[i] for i in order[1::2]]]
        self.parts, self.ref = dict(parts), {}
        for k in parts:
            kw = {"epochs": cnn_epochs} if k == "cnn" else {}
            w = []
            for a, b in (halves, halves[::-1]):
                det = type(parts[k])(self.vocab, window=self.window, stride=self.stride, **kw).fit(a, seed)
                w += [det.window_scores(s) for s in b]
            self.ref[k] = np.quantile(np.concatenate(w), np.linspace(0, 1, self.NREF))
        return self

    def window_scores(self, seq):
        r = [np.searchsorted(self.ref[k], d.window_scores(seq), side="right") / self.NREF
             for k, d in self.parts.items()]
        return np.mean(r, axis=0)

    def params(self):
        return {"parts": list(self.parts), "ref": {k: [round(float(x), 6) for x in v] for k, v in self.ref.items()}}

    def load(self, p):
        self.ref = {k: np.array(v, dtype=np.float64) for k, v in p["ref"].items()}
        self.part_names = list(p["parts"])
        return self

