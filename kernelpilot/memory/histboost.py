"""lrb's refits: scikit-learn's HistGradientBoostingRegressor (squared error, 255 bins, no missing
values, depth-limited trees, no early stopping) redone in numba, the same arithmetic in the same
order, so the same trees, thresholds and leaf values (tests/memory/test_histboost.py compares
them with scikit-learn's). scikit-learn's fit spent most of its time outside the arithmetic (a
Python grower per tree, its node objects, its binning's checks): 20 k rows x 20 features took
about 0.1 s on one core.

What it follows (sklearn/ensemble/_hist_gradient_boosting): bin thresholds per feature are the
midpoints of the distinct values (at most 255 of them) or the `averaged_inverted_cdf` percentiles
(binning.py); the baseline is the mean; gradients are float32 (raw - y), hessians constant;
histograms sum float64 in sample order, the larger child's is its parent's less the smaller's; a
split is the first best (strict >) over features, then bins left to right, of gain G_L v_L ... with
v = -G / (H + 1e-15), min_samples_leaf 20; leaves shrink by the learning rate once grown.
"""
from __future__ import annotations

import numpy as np
from numba import njit

MIN_LEAF = 20  # scikit-learn's min_samples_leaf default
ALMOST_INF = 1e300  # its cap on a threshold
_PCT = np.linspace(0, 100, num=256)[1:-1]


def bins(X: np.ndarray):
    """Bin thresholds per feature and the binned rows (features x rows, uint8), as
    scikit-learn's _BinMapper(n_bins=256) without missing values."""
    XT = np.ascontiguousarray(X.T, np.float64)
    S = np.sort(XT, axis=1)
    new = np.ones(S.shape, bool)
    np.not_equal(S[:, 1:], S[:, :-1], out=new[:, 1:])
    nd = new.sum(1)
    many = np.nonzero(nd > 255)[0]
    P = np.percentile(S[many], _PCT, axis=1, method="averaged_inverted_cdf") if len(many) else None
    thr, BT = [], np.empty(XT.shape, np.uint8)
    for j in range(XT.shape[0]):
        if nd[j] == 1:
            t = np.zeros(0)
        elif nd[j] <= 255:
            d = S[j][new[j]]
            t = (d[:-1] + d[1:]) / 2
        else:
            t = np.unique(P[:, np.searchsorted(many, j)])
        np.clip(t, None, ALMOST_INF, out=t)
        thr.append(t)
        BT[j] = np.searchsorted(t, XT[j], side="left")
    return thr, BT


def fit(X: np.ndarray, y: np.ndarray, n_trees: int, depth: int, rate: float):
    """What HistGradientBoostingRegressor(max_iter=n_trees, max_depth=depth, learning_rate=rate,
    max_leaf_nodes=None, early_stopping=False) fits on (X, y) -> (params in models/trees.py's
    layout: feature, threshold, left, right, value, roots; meta: bias, depth, n_trees, n_nodes;
    the fit's predictions of X, as the trees score them)."""
    thr, BT = bins(X)
    y = np.ascontiguousarray(y, np.float64)
    base = float(np.average(y, axis=0))
    nbin = np.array([len(t) + 1 for t in thr], np.int64)
    T = np.full((len(thr), 256), np.inf)
    for j, t in enumerate(thr):
        T[j, :len(t)] = t
    feat, bidx, left, right, value, n_nodes, dep, raw = _boost(BT, y, base, nbin, n_trees, depth, rate)
    roots = np.zeros(n_trees, np.int64)
    roots[1:] = np.cumsum(n_nodes)[:-1]
    cols = []
    for r in range(n_trees):
        s = slice(0, n_nodes[r])
        f, b = feat[r, s], bidx[r, s]
        leaf = f < 0
        th = np.where(leaf, 0.0, T[np.maximum(f, 0), np.maximum(b, 0)])
        th = np.where(~leaf & (b == nbin[np.maximum(f, 0)] - 1), np.inf, th)
        cols.append((f, th, np.where(leaf, -1, left[r, s] + roots[r]), np.where(leaf, -1, right[r, s] + roots[r]),
                     np.where(leaf, value[r, s], 0.0)))
    out = [np.concatenate([c[k] for c in cols]) for k in range(5)]
    params = dict(zip(("feature", "threshold", "left", "right", "value"), out))
    for k in ("feature", "left", "right"):
        params[k] = params[k].astype(np.int32)
    params["roots"] = roots.astype(np.int32)
    meta = {"bias": base, "depth": int(dep.max()), "n_trees": n_trees, "n_nodes": int(n_nodes.sum())}
    return params, meta, raw


@njit(cache=True)
def _block(a, lo, n):
    """numpy's pairwise sum of a[lo:lo + n] for n <= 128 (8 running sums, then the rest)."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r = np.empty(8)
    for j in range(8):
        r[j] = a[lo + j]
    i = 8
    while i < n - (n % 8):
        for j in range(8):
            r[j] += a[lo + i + j]
        i += 8
    res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@njit(cache=True)
def _sum256(a):
    """What ndarray.sum gives a float64 histogram of 256 bins: numpy halves a sum of over 128
    (a recursion numba's cache does not load safely, written out here)."""
    return _block(a, 0, 128) + _block(a, 128, 128)


@njit(cache=True)
def _hist(BT, g, part, a, b, hg, hc):
    """Histograms (gradient sums, counts) of samples part[a:b], feature by feature, in order."""
    hg[:] = 0.0
    hc[:] = 0
    for f in range(BT.shape[0]):
        row = BT[f]
        for i in range(a, b):
            s = part[i]
            k = row[s]
            hg[f, k] += np.float64(g[s])
            hc[f, k] += 1


@njit(cache=True)
def _value(G, H):
    return -G / (H + 0.0 + 1e-15)


@njit(cache=True)
def _split(hg, hc, nbin, n, G, H, v):
    """The best split of a node -> (gain, feature, bin, G left, H left); gain -1: none."""
    best_gain, best_f, best_b, best_gl, best_hl = -1.0, 0, 0, 0.0, 0.0
    loss = G * v
    for f in range(hg.shape[0]):
        gl, hl, nl = 0.0, 0.0, 0
        fg, fb, fgl, fhl = -1.0, -1, 0.0, 0.0
        for b in range(nbin[f] - 1):
            c = hc[f, b]
            nl += c
            nr = n - nl
            hl += c
            hr = H - hl
            gl += hg[f, b]
            gr = G - gl
            if nl < MIN_LEAF:
                continue
            if nr < MIN_LEAF:
                break
            if hl < 1e-3:
                continue
            if hr < 1e-3:
                break
            gain = loss
            gain -= gl * _value(gl, hl)
            gain -= gr * _value(gr, hr)
            if gain > fg and gain > 0.0:
                fg, fb, fgl, fhl = gain, b, gl, hl
        if fb >= 0 and fg > best_gain:
            best_gain, best_f, best_b, best_gl, best_hl = fg, f, fb, fgl, fhl
    return best_gain, best_f, best_b, best_gl, best_hl


@njit(cache=True)
def _boost(BT, y, base, nbin, n_trees, depth, rate):
    nf, n = BT.shape
    m = 2 ** (depth + 1) - 1  # nodes a tree can have
    raw = np.zeros(n) + base
    g = np.empty(n, np.float32)
    part = np.empty(n, np.uint32)
    buf = np.empty(n, np.uint32)
    hg = np.zeros((m, nf, 256))
    hc = np.zeros((m, nf, 256), np.uint32)
    feat = np.full((n_trees, m), -1, np.int64)
    bidx = np.full((n_trees, m), -1, np.int64)
    left = np.full((n_trees, m), -1, np.int64)
    right = np.full((n_trees, m), -1, np.int64)
    value = np.zeros((n_trees, m))
    dep = np.zeros((n_trees, m), np.int64)
    n_nodes = np.zeros(n_trees, np.int64)
    # per node (in creation order): samples part[a:b], depth, sums, value, leaf, split, children
    na, nb, nd = np.zeros(m, np.int64), np.zeros(m, np.int64), np.zeros(m, np.int64)
    nG, nH, nv = np.zeros(m), np.zeros(m), np.zeros(m)
    leaf = np.zeros(m, np.bool_)
    sf, sb, ch = np.zeros(m, np.int64), np.zeros(m, np.int64), np.full((m, 2), -1, np.int64)
    stack = np.empty(m, np.int64)
    order = np.empty(m, np.int64)
    for r in range(n_trees):
        for i in range(n):
            g[i] = np.float32(raw[i] - y[i])
            part[i] = i
        _hist(BT, g, part, 0, n, hg[0], hc[0])
        na[0], nb[0], nd[0] = 0, n, 0
        nG[0], nH[0], nv[0] = _sum256(hg[0, 0]), np.float64(np.float32(n)), 0.0
        leaf[:] = False
        ch[:] = -1
        cnt = 1
        leaf[0] = n < 2 * MIN_LEAF or nH[0] < 1e-3
        top = 0
        if not leaf[0]:
            stack[0] = 0
            top = 1
        while top > 0:  # each node's split depends on its own samples only: any order will do
            top -= 1
            u = stack[top]
            gain, f, b, gl, hl = _split(hg[u], hc[u], nbin, nb[u] - na[u], nG[u], nH[u], nv[u])
            if gain <= 0.0:
                leaf[u] = True
                continue
            sf[u], sb[u] = f, b
            a, e = na[u], nb[u]
            nl, nr = 0, 0
            row = BT[f]
            for i in range(a, e):  # stable partition, as the splitter's
                s = part[i]
                if row[s] <= b:
                    part[a + nl] = s
                    nl += 1
                else:
                    buf[nr] = s
                    nr += 1
            for i in range(nr):
                part[a + nl + i] = buf[i]
            L, R = cnt, cnt + 1
            cnt += 2
            ch[u, 0], ch[u, 1] = L, R
            na[L], nb[L], na[R], nb[R] = a, a + nl, a + nl, e
            nd[L] = nd[R] = nd[u] + 1
            nG[L], nH[L] = gl, hl
            nG[R], nH[R] = nG[u] - gl, nH[u] - hl
            nv[L], nv[R] = _value(nG[L], nH[L]), _value(nG[R], nH[R])
            if nd[L] == depth:
                leaf[L] = leaf[R] = True
            else:
                leaf[L] = nl < 2 * MIN_LEAF
                leaf[R] = nr < 2 * MIN_LEAF
            if not (leaf[L] and leaf[R]):
                small, large = (L, R) if nl < nr else (R, L)
                _hist(BT, g, part, na[small], nb[small], hg[small], hc[small])
                hg[large] = hg[u] - hg[small]
                hc[large] = hc[u] - hc[small]
                for c in (R, L):  # L popped first
                    if not leaf[c]:
                        stack[top] = c
                        top += 1
        # shrink the leaves, update the predictions, write the tree in preorder
        top, k = 1, 0
        stack[0] = 0
        while top > 0:
            top -= 1
            u = stack[top]
            order[k] = u
            k += 1
            if not leaf[u]:
                stack[top] = ch[u, 1]
                stack[top + 1] = ch[u, 0]
                top += 2
        at = np.empty(m, np.int64)
        for j in range(k):
            at[order[j]] = j
        for j in range(k):
            u = order[j]
            dep[r, j] = nd[u]
            if leaf[u]:
                v = nv[u] * rate
                value[r, j] = v
                for i in range(na[u], nb[u]):
                    raw[part[i]] += v
            else:
                feat[r, j], bidx[r, j] = sf[u], sb[u]
                left[r, j], right[r, j] = at[ch[u, 0]], at[ch[u, 1]]
        n_nodes[r] = k
    return feat, bidx, left, right, value, n_nodes, dep, raw
