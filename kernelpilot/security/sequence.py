"""Sequence models that judge a whole trace and a stream of calls, trained on normal traces only.

- mismatch: the stide mismatch rate (Forrest et al. 1996, Hofmeyr et al. 1998): the share of a
  trace's n-grams (start-padded, so a 3-call process has grams too) never seen in training; the
  stream is the locality frame count, mismatches among the last `frame` grams.
- lfc: the locality frame count itself as the score (a trace: its largest count).
- hamming: Hofmeyr et al. 1998, each gram's Hamming distance to the closest normal gram.
- lm: a next-syscall GRU language model (Kim et al. 2016 used an LSTM): trained with PyTorch, run
  in numpy; a trace and its stream are scored from the per-call negative log-likelihoods by the
  lm's `rule` (kernelpilot.security.lmrule: the mean, the worst window, or the share of unlikely
  calls; chosen on dev cells, the mean by default).
- novelty: stide at every gram length at once: at each call, the longest context (up to 32 calls)
  ending there that training holds; short novel contexts score most (Novelty's docstring).

Both are Detectors (window_scores per window for SecurityModel and the live path) with `scored(seq)`
for kernelpilot.security.metrics."""
from __future__ import annotations

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.security import detectors as D
from kernelpilot.security import lmrule as R
from kernelpilot.security.features import ngram_hashes, window_means
from kernelpilot.security.metrics import Scored


def moving_mean(pos: np.ndarray, k: int) -> np.ndarray:
    """Mean of the last k values at every position (fewer at the start)."""
    c = np.concatenate([[0.0], np.cumsum(pos, dtype=np.float64)])
    i = np.arange(1, len(pos) + 1)
    lo = np.maximum(i - k, 0)
    return (c[i] - c[lo]) / (i - lo)


def _check_fit(seqs, kind):
    if not seqs or not sum(len(s) for s in seqs):
        raise KpError(f"the {kind} detector needs normal traces with calls to train on (the profile is empty)")


class PerCall(D.Detector):
    """A detector that scores every call (position_scores): a window and a trace score their mean."""

    def window_scores(self, seq):
        return window_means(self.position_scores(seq), self.window, self.stride)

    def trace_score(self, seq):
        return float(self.position_scores(seq).mean()) if len(seq) else 0.0


class Mismatch(PerCall):
    kind = "mismatch"

    def __init__(self, vocab, n: int = 6, frame: int = 20, **kw):
        super().__init__(vocab, **kw)
        self.n, self.frame = n, frame
        self.table = np.zeros(0, dtype=np.uint64)

    def grams(self, seq):
        pad = np.concatenate([np.full(self.n - 1, len(self.vocab), np.int64), seq])
        return ngram_hashes(pad, self.n)[self.n - 1:]

    def fit(self, seqs, seed=0):
        _check_fit(seqs, self.kind)
        self.table = np.unique(np.concatenate([self.grams(s) for s in seqs if len(s)]))
        return self

    def position_scores(self, seq):
        return (~D._member(self.grams(seq), self.table)).astype(np.float64)

    def scored(self, seq) -> Scored:
        pos = self.position_scores(seq)
        lfc = moving_mean(pos, self.frame) * np.minimum(np.arange(1, len(pos) + 1), self.frame) / self.frame
        return Scored(float(pos.mean()), np.arange(1, len(pos) + 1), lfc)

    def params(self):
        return {"n": self.n, "frame": self.frame, "table": [int(x) for x in self.table]}

    def load(self, p):
        self.n, self.frame = int(p["n"]), int(p["frame"])
        self.table = np.array(p["table"], dtype=np.uint64)
        return self


class LFC(Mismatch):
    """The locality frame count (stide in Warrender et al. 1999, frame 20; pH): how many of the
    last `frame` calls end an n-gram never seen in training. A trace scores its largest count,
    the stream is the count at every call; stide alarms when it exceeds a threshold."""
    kind = "lfc"

    def counts(self, seq):
        c = np.concatenate([[0.0], np.cumsum(self.position_scores(seq))])
        i = np.arange(1, len(seq) + 1)
        return c[i] - c[np.maximum(i - self.frame, 0)]

    def trace_score(self, seq):
        return float(self.counts(seq).max()) if len(seq) else 0.0

    def scored(self, seq) -> Scored:
        lfc = self.counts(seq)
        return Scored(float(lfc.max()) if len(lfc) else 0.0, np.arange(1, len(seq) + 1), lfc)


class Hamming(Mismatch):
    """Hofmeyr et al. 1998: each n-gram's Hamming distance to its closest n-gram in training, over
    n (0 = seen, 1 = no call in place matches); a trace scores its largest (their S_A / n)."""
    kind = "hamming"

    def _matrix(self, seq):
        pad = np.concatenate([np.full(self.n - 1, len(self.vocab), np.int64), np.asarray(seq, np.int64)])
        return np.lib.stride_tricks.sliding_window_view(pad, self.n)

    def fit(self, seqs, seed=0):
        super().fit(seqs, seed)
        self.normal = np.unique(np.concatenate([self._matrix(s) for s in seqs if len(s)]), axis=0).astype(np.int32)
        self._cache: dict = {}
        return self

    def position_scores(self, seq):
        out = super().position_scores(seq)
        if not out.any():
            return out
        m = self._matrix(seq)
        new = np.flatnonzero(out)
        keys = [m[i].tobytes() for i in new]
        todo = sorted({k for k in keys if k not in self._cache})
        for lo in range(0, len(todo), 256):  # min distance of up to 256 unseen grams at a time
            q = np.frombuffer(b"".join(todo[lo:lo + 256]), dtype=m.dtype).reshape(-1, self.n).astype(np.int32)
            d = (q[:, None, :] != self.normal[None, :, :]).sum(-1).min(1) / self.n
            self._cache.update(zip(todo[lo:lo + 256], d.tolist()))
        out[new] = [self._cache[k] for k in keys]
        return out

    def trace_score(self, seq):
        return float(self.position_scores(seq).max()) if len(seq) else 0.0

    def scored(self, seq) -> Scored:
        pos = self.position_scores(seq)
        return Scored(float(pos.max()) if len(pos) else 0.0, np.arange(1, len(pos) + 1),
                      np.maximum.accumulate(pos) if len(pos) else pos)

    def params(self):
        return {**super().params(), "normal": self.normal.tolist()}

    def load(self, p):
        super().load(p)
        self.normal = np.array(p["normal"], dtype=np.int32).reshape(-1, self.n)
        self._cache = {}
        return self


def _plan(ks, mult) -> list[tuple[int, int, np.uint64]]:
    """Each length k of ks after the first as a + (k - a), both earlier in ks (a the largest), with mult^a."""
    out = []
    for k in ks[1:]:
        a = max(j for j in ks if j < k and k - j in ks)
        out.append((k, a, np.uint64(pow(mult, a, 1 << 64))))
    return out


class Novelty(PerCall):
    """Variable-order stide: at each call, the longest context m ending there (up to the largest of
    KS calls; the trace start-padded) that some training trace holds. The call scores
    log2((K + 1) / (m + 1)) / log2(K + 1): 0 when K calls of context were seen, 1 when the call
    itself never was. A trace scores its mean (the mismatch rate at every n of KS at once, the short
    grams weighing most), the stream the mean over the last `frame` calls."""
    kind = "novelty"
    KS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32)
    MULT = 0x9E3779B97F4A7C15
    PLAN = _plan(KS, MULT)

    def __init__(self, vocab, frame: int = 20, **kw):
        super().__init__(vocab, **kw)
        self.frame = frame
        self.tables: dict[int, np.ndarray] = {}

    def grams(self, seq) -> dict[int, np.ndarray]:
        """{k: a 64-bit hash of the k calls ending at each call} for k in KS."""
        K = self.KS[-1]
        x = np.concatenate([np.full(K - 1, len(self.vocab), np.int64), np.asarray(seq, np.int64)]).astype(np.uint64)
        h = {1: x + np.uint64(1)}  # h_k[i] = sum over j < k of (x[i - j] + 1) MULT^j
        with np.errstate(over="ignore"):
            for k, a, mult_a in self.PLAN:  # h_(a+b)[i] = h_a[i] + MULT^a h_b[i - a]
                hk = h[a].copy()
                hk[a:] += h[k - a][:-a] * mult_a
                h[k] = hk
        return {k: v[K - 1:] for k, v in h.items()}

    def fit(self, seqs, seed=0):
        _check_fit(seqs, self.kind)
        distinct = list({np.asarray(s, np.int64).tobytes(): s for s in seqs if len(s)}.values())
        per = [self.grams(s) for s in distinct]
        self.tables = {k: np.unique(np.concatenate([g[k] for g in per])) for k in self.KS}
        return self

    def context(self, seq) -> np.ndarray:
        """m at every call: the longest k of KS whose k calls ending there were seen (0: none)."""
        if not self.tables:
            raise KpError("the novelty detector is not trained")
        m = np.zeros(len(seq), np.int64)
        todo = np.arange(len(seq))
        grams = self.grams(seq)
        for k in reversed(self.KS):  # a seen gram's suffixes are seen: the longest first, then what is left
            hit = D._member(grams[k][todo], self.tables[k])
            m[todo[hit]] = k
            todo = todo[~hit]
            if not len(todo):
                break
        return m

    def position_scores(self, seq):
        top = np.log2(self.KS[-1] + 1)
        return (top - np.log2(self.context(seq) + 1)) / top

    def scored(self, seq) -> Scored:
        pos = self.position_scores(seq)
        return Scored(float(pos.mean()) if len(pos) else 0.0, np.arange(1, len(pos) + 1), moving_mean(pos, self.frame))

    def params(self):
        return {"ks": list(self.KS), "frame": self.frame,
                "tables": {str(k): [int(x) for x in v] for k, v in self.tables.items()}}

    def load(self, p):
        if [int(k) for k in p["ks"]] != list(self.KS) or sorted(int(k) for k in p["tables"]) != list(self.KS):
            raise KpError(f"novelty detector: context lengths {p['ks']} differ from {list(self.KS)}")
        self.frame = int(p["frame"])
        self.tables = {int(k): np.unique(np.array(v, dtype=np.uint64)) for k, v in p["tables"].items()}  # sorted for lookups
        return self


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


class LM(D.Detector):
    """GRU next-call model. Inference cuts traces into segments of SEG calls, each after WARM
    calls of context run from a zero state, and steps every segment of a batch at once."""
    kind = "lm"
    SEG, WARM, TRAIN_LEN = 256, 32, 128

    def __init__(self, vocab, dim: int = 32, hidden: int = 64, steps: int = 1000, swin: int = 32,
                 max_train_calls: int = 1_000_000, batch: int = 32, rule: str = R.DEFAULT, **kw):
        super().__init__(vocab, **kw)
        self.dim, self.hidden, self.steps, self.swin, self.batch = dim, hidden, steps, swin, batch
        self.max_train_calls = max_train_calls
        self.rule = R.check(rule)
        self.w: dict[str, np.ndarray] = {}
        self.cuts: dict[str, float] = {}  # per-call NLL quantiles on training calls (share rules)

    def fit(self, seqs, seed=0):
        try:
            import torch
        except ImportError:
            raise KpError("training the lm detector needs PyTorch: pip install torch") from None
        _check_fit(seqs, self.kind)
        torch.manual_seed(seed)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small batches: more threads only contend (2-core hosts)
        try:
            return self._fit(torch, seqs, seed)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, torch, seqs, seed):
        rng = np.random.default_rng(seed)
        V, bos, L = len(self.vocab), len(self.vocab), self.TRAIN_LEN
        segs = [(i, s) for i, x in enumerate(seqs) for s in range(0, len(x), L)]
        keep = rng.permutation(len(segs))[:max(1, self.max_train_calls // L)]
        X = np.full((len(keep), L), bos, np.int64)
        Y = np.full((len(keep), L), -100, np.int64)
        for r, j in enumerate(keep):
            i, s = segs[j]
            x = seqs[i]
            tgt = x[s:s + L]
            X[r, :len(tgt)] = np.concatenate([[bos] if s == 0 else [x[s - 1]], x[s:s + len(tgt) - 1]])
            Y[r, :len(tgt)] = tgt
        net = _TorchGRU(V + 1, V, self.dim, self.hidden)
        opt = torch.optim.Adam(net.parameters(), lr=5e-3)
        lossf = torch.nn.CrossEntropyLoss(ignore_index=-100)
        X, Y = torch.tensor(X), torch.tensor(Y)
        g = torch.Generator().manual_seed(seed)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, self.steps)
        for _ in range(self.steps):
            idx = torch.randint(len(X), (self.batch,), generator=g)
            opt.zero_grad()
            loss = lossf(net(X[idx]).reshape(-1, V), Y[idx].reshape(-1))
            loss.backward()
            opt.step()
            sched.step()
        self.w = {k: v.detach().numpy().astype(np.float32) for k, v in net.state_dict().items()}
        self.cuts = self._cuts(seqs, rng)
        return self

    def _cuts(self, seqs, rng) -> dict[str, float]:
        """The CUT_QS quantiles of per-call NLL over up to CUT_CALLS training calls (whole traces in a
        fixed random order, the last one cut)."""
        pick, n = [], 0
        for i in rng.permutation(len(seqs)):
            if n >= R.CUT_CALLS:
                break
            if len(seqs[i]):
                pick.append(seqs[i][:R.CUT_CALLS - n])
                n += len(pick[-1])
        nll = np.concatenate(self.nll_many(pick))
        return {f"{q:g}": float(np.quantile(nll, q)) for q in R.CUT_QS}

    def _check(self):
        if not self.w:
            raise KpError("the lm detector is not trained")
        if self.w["out.bias"].shape[0] != len(self.vocab):
            raise KpError("lm detector does not match the model's vocabulary size")

    def nll_many(self, seqs, batch: int = 2048) -> list[np.ndarray]:
        """Per-call negative log-likelihood of every sequence (numpy)."""
        self._check()
        w, H, bos = self.w, self.hidden, len(self.vocab)
        gi_table = w["emb.weight"] @ w["gru.weight_ih_l0"].T + w["gru.bias_ih_l0"]   # (V+1, 3H)
        Whh, bhh = w["gru.weight_hh_l0"].T, w["gru.bias_hh_l0"]
        Wo, bo = w["out.weight"].T, w["out.bias"]
        segs = []  # (trace, first kept position, inputs incl. warm-up, targets, n warm)
        for t, s in enumerate(seqs):
            x = np.concatenate([[bos], s[:-1]]).astype(np.int64)
            for a in range(0, len(s), self.SEG):
                lo = max(0, a - self.WARM)
                segs.append((t, a, x[lo:a + self.SEG], s[a:a + self.SEG], a - lo))
        out = [np.zeros(len(s)) for s in seqs]
        order = sorted(range(len(segs)), key=lambda j: -len(segs[j][2]))
        for b0 in range(0, len(order), batch):
            part = [segs[j] for j in order[b0:b0 + batch]]
            T = len(part[0][2])
            lens = np.array([len(p[2]) for p in part])
            X = np.full((len(part), T), bos, np.int64)
            for r, p in enumerate(part):
                X[r, :len(p[2])] = p[2]
            h = np.zeros((len(part), H), np.float32)
            hs = np.zeros((len(part), T, H), np.float32)
            for k in range(T):
                alive = int(np.searchsorted(-lens, -k, side="left"))  # rows with length > k
                gi, gh = gi_table[X[:alive, k]], h[:alive] @ Whh + bhh
                r = _sigmoid(gi[:, :H] + gh[:, :H])
                z = _sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
                n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
                h[:alive] = (1 - z) * n + z * h[:alive]
                hs[:alive, k] = h[:alive]
            for r, (t, a, _, tgt, warm) in enumerate(part):
                logits = hs[r, warm:warm + len(tgt)] @ Wo + bo
                m = logits.max(axis=1)
                lse = m + np.log(np.exp(logits - m[:, None]).sum(axis=1))
                out[t][a:a + len(tgt)] = lse - logits[np.arange(len(tgt)), tgt]
        return out

    def position_scores(self, seq):
        return self.nll_many([seq])[0]

    def window_scores(self, seq):
        if len(seq) == 0:
            return np.zeros(1)
        return window_means(self.position_scores(seq), self.window, self.stride)

    def trace_score(self, seq):
        return R.trace_score(self.position_scores(seq), self.rule, self.cuts) if len(seq) else 0.0

    def scored_many(self, seqs) -> list[Scored]:
        return [self.scored_nll(p) for p in self.nll_many(seqs)]

    def scored_nll(self, p, rule: str | None = None) -> Scored:
        """A trace's Scored from its per-call NLLs, by `rule` (the lm's own by default)."""
        rule = rule or self.rule
        return Scored(R.trace_score(p, rule, self.cuts), *R.stream(p, rule, self.cuts, self.swin))

    def scored(self, seq) -> Scored:
        return self.scored_many([seq])[0]

    def params(self):
        return {"dim": self.dim, "hidden": self.hidden, "steps": self.steps, "swin": self.swin,
                "rule": self.rule, "cuts": self.cuts,
                "weights": {k: {"shape": list(v.shape), "data": [round(float(x), 6) for x in v.ravel()]}
                            for k, v in self.w.items()}}

    def load(self, p):
        self.dim, self.hidden, self.steps = int(p["dim"]), int(p["hidden"]), int(p["steps"])
        self.swin = int(p["swin"])
        self.rule = R.check(str(p.get("rule", R.DEFAULT)))  # models saved before rules: the mean
        self.cuts = {str(k): float(v) for k, v in p.get("cuts", {}).items()}
        self.w = {k: np.array(v["data"], dtype=np.float32).reshape(v["shape"]) for k, v in p["weights"].items()}
        self._check()
        return self


def _TorchGRU(n_in, n_out, dim, hidden):
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(n_in, dim)
            self.gru = nn.GRU(dim, hidden, batch_first=True)
            self.out = nn.Linear(hidden, n_out)

        def forward(self, x):
            return self.out(self.gru(self.emb(x))[0])
    return Net()


def scored(det: D.Detector, seqs) -> list[Scored]:
    """Scored traces for any detector: its own streams where it has them, else its window scores
    at window ends, offline its trace score."""
    if hasattr(det, "scored_many"):
        return det.scored_many(seqs)
    if hasattr(det, "scored"):
        return [det.scored(s) for s in seqs]
    from kernelpilot.security.features import window_bounds
    out = []
    for s in seqs:
        w = det.window_scores(s)
        out.append(Scored(float(w.max()), window_bounds(len(s), det.window, det.stride), w))
    return out

