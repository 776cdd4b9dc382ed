"""Import scikit-learn trees and forests into one ensemble layout.

All trees' nodes are concatenated: `feature` (-1 at a leaf), `threshold` (go left when x <= t),
`left`/`right` (absolute node indices), `value` (leaf value), `roots` (first node of each tree).
`meta["output"]` says how the leaves combine:
  label  - one tree, the leaf value is the class index;
  score  - bias + sum of leaf values (regression);
  binary - bias + sum of leaf values > threshold gives class 1, else class 0."""
from __future__ import annotations

import numpy as np

from kernelpilot.errors import KpError
from kernelpilot.models.format import Model, train_summary


def _tree_arrays(tree, leaf_fn):
    t = tree.tree_
    leaf = t.children_left < 0
    feature = np.where(leaf, -1, t.feature).astype(np.int32)
    threshold = np.where(leaf, 0.0, t.threshold).astype(np.float64)
    value = np.array([leaf_fn(t.value[i]) if leaf[i] else 0.0 for i in range(t.node_count)])
    return feature, threshold, t.children_left.astype(np.int32), t.children_right.astype(np.int32), value


def _proba(v):
    v = np.asarray(v, dtype=np.float64)[0]
    s = v.sum()
    return v / s if s > 0 else v


def ensemble(trees, leaf_fn, feature_names, meta) -> Model:
    feats, thrs, lefts, rights, vals, roots, depths = [], [], [], [], [], [], []
    base = 0
    for tr in trees:
        f, t, l, r, v = _tree_arrays(tr, leaf_fn)
        leaf = f < 0
        roots.append(base)
        feats.append(f)
        thrs.append(t)
        lefts.append(np.where(leaf, -1, l + base))
        rights.append(np.where(leaf, -1, r + base))
        vals.append(v)
        depths.append(int(tr.tree_.max_depth))
        base += len(f)
    params = {"feature": np.concatenate(feats), "threshold": np.concatenate(thrs),
              "left": np.concatenate(lefts).astype(np.int32),
              "right": np.concatenate(rights).astype(np.int32),
              "value": np.concatenate(vals), "roots": np.array(roots, dtype=np.int32)}
    meta = dict(meta, depth=max(depths), n_trees=len(trees), n_nodes=int(base))
    return Model("tree" if len(trees) == 1 and meta["output"] == "label" else "forest",
                 feature_names, params, meta)


def from_sklearn_trees(est, feature_names, X=None) -> Model:
    from sklearn import ensemble as sk_ens
    from sklearn import tree as sk_tree
    name = type(est).__name__
    if not hasattr(est, "n_features_in_"):
        raise KpError(f"{name} is not fitted")
    if est.n_features_in_ != len(feature_names):
        raise KpError(f"{name} has {est.n_features_in_} features but {len(feature_names)} names were given")
    if getattr(est, "n_outputs_", 1) != 1:
        raise KpError(f"{name} with several outputs is not supported")
    src = {"source": f"sklearn.{name}"}
    if isinstance(est, sk_tree.DecisionTreeClassifier):
        meta = dict(src, task="classify", output="label", classes=est.classes_.tolist(), bias=0.0)
        return ensemble([est], lambda v: float(np.argmax(v[0])), feature_names, meta)
    if isinstance(est, sk_tree.DecisionTreeRegressor):
        meta = dict(src, task="regress", output="score", bias=0.0)
        m = ensemble([est], lambda v: float(v[0][0]), feature_names, meta)
        m.kind = "tree"
        return m
    if isinstance(est, (sk_ens.RandomForestClassifier, sk_ens.ExtraTreesClassifier)):
        _binary(est, name)
        n = len(est.estimators_)
        meta = dict(src, task="classify", output="binary", classes=est.classes_.tolist(),
                    bias=0.0, threshold=n / 2.0)
        return ensemble(est.estimators_, lambda v: float(_proba(v)[1]), feature_names, meta)
    if isinstance(est, (sk_ens.RandomForestRegressor, sk_ens.ExtraTreesRegressor)):
        n = len(est.estimators_)
        meta = dict(src, task="regress", output="score", bias=0.0)
        return ensemble(est.estimators_, lambda v: float(v[0][0]) / n, feature_names, meta)
    if isinstance(est, (sk_ens.GradientBoostingClassifier, sk_ens.GradientBoostingRegressor)):
        trees = [row[0] for row in est.estimators_]
        if est.estimators_.shape[1] != 1:
            raise KpError(f"{name} with {len(est.classes_)} classes is not supported; "
                          "kernelize supports binary boosting")
        lr = float(est.learning_rate)
        zero = np.zeros((1, est.n_features_in_))
        raw = est.decision_function(zero) if hasattr(est, "decision_function") else est.predict(zero)
        bias = float(np.ravel(raw)[0]) - lr * sum(float(t.predict(zero)[0]) for t in trees)
        if isinstance(est, sk_ens.GradientBoostingClassifier):
            meta = dict(src, task="classify", output="binary", classes=est.classes_.tolist(),
                        bias=bias, threshold=0.0)
        else:
            meta = dict(src, task="regress", output="score", bias=bias)
        return ensemble(trees, lambda v: lr * float(v[0][0]), feature_names, meta)
    raise KpError(f"unsupported model type {name}; supported: DecisionTree, RandomForest, "
                  "ExtraTrees, GradientBoosting (classifier or regressor), MLP weights")


def _binary(est, name):
    if len(est.classes_) != 2:
        raise KpError(f"{name} with {len(est.classes_)} classes is not supported; kernelize supports "
                      "binary forests (or a single multi-class DecisionTree)")


def from_sklearn(est, feature_names, X=None, y=None, bits: int = 8) -> Model:
    """Import a fitted scikit-learn tree, forest, boosting model or MLPClassifier/Regressor.
    With X (and y), the model records the training summary and is quantized with a report."""
    from kernelpilot.models.mlp import from_sklearn_mlp, is_sklearn_mlp
    feature_names = list(feature_names)
    m = from_sklearn_mlp(est, feature_names, X) if is_sklearn_mlp(est) else \
        from_sklearn_trees(est, feature_names, X)
    if X is not None:
        m.meta["train_summary"] = train_summary(X, feature_names)
    m.quantize(X, y, bits=bits)
    return m
