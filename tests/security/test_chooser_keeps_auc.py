"""The chooser's AUC guards (chooser.eligible): a rule that scores many different normal traces
alike, or ranks worse than the best single part by more than AUC_MARGIN, is not chosen, even where
its J is the best; the lm's rule is held to the same guards."""
import numpy as np

from kernelpilot.security import chooser as C
from kernelpilot.security import fused as F
from kernelpilot.security import lmrule as R


def test_a_part_that_ties_most_normals_is_not_chosen():
    """novelty scores 70% of normal traces exactly 0 (repeats of training traces) and catches the
    dev novel traces best; lm ranks every trace: novelty's J is the best, but it is not eligible."""
    rng = np.random.default_rng(0)
    n = 3000
    nov_n = np.where(rng.random(n) < 0.7, 0.0, rng.exponential(1.0, n))
    normal = {"lm": rng.normal(0, 1, n), "novelty": nov_n}
    novel = {"lm": rng.normal(1.5, 1, 400), "novelty": rng.exponential(1.0, 400) + 6}
    c = F.choose(normal, novel)
    dev = c["dev"]
    assert dev["novelty"]["j"] == max(d["j"] for d in dev.values())  # the old rule's choice
    assert dev["novelty"]["resolution"] < C.RES_MIN and not dev["novelty"]["eligible"]
    assert c["rule"] != "novelty" and "lm" in F.rule_parts(c["rule"]) and dev[c["rule"]]["eligible"]
    assert dev["max:lm+novelty"]["resolution"] < C.RES_MIN  # max keeps novelty's floor for half of them
    assert dev["mean:lm+novelty"]["resolution"] == 1.0


def test_a_rule_that_ranks_worse_than_the_best_part_is_not_chosen():
    """mismatch catches more at 1% but ranks the rest no better than chance; its J beats novelty's,
    its AUC is far under it: the rule chosen keeps AUC within AUC_MARGIN of the best part."""
    rng = np.random.default_rng(3)
    normal = {"mismatch": rng.normal(0, 1, 4000), "novelty": rng.normal(0, 1, 4000)}
    sharp = np.r_[rng.normal(12, 1, 240), rng.normal(0, 1, 160)]  # 60% far out, the rest like normals
    broad = rng.normal(2.0, 1, 400)                               # AUC ~0.92, ~37% past 1%
    c = F.choose(normal, {"mismatch": sharp, "novelty": broad})
    dev = c["dev"]
    assert dev["mismatch"]["j"] > dev["novelty"]["j"]
    best_auc = max(dev[p]["auc"] for p in ("mismatch", "novelty"))
    assert dev["mismatch"]["auc"] < best_auc - C.AUC_MARGIN
    assert c["rule"] != "mismatch" and dev[c["rule"]]["auc"] >= best_auc - C.AUC_MARGIN


def test_lm_share_rule_that_ties_normals_is_not_chosen():
    """share:0.99 scores 70% of the normal traces 0 (no call over the cut) and separates the novel
    ones best (the old rule chose it); it is not eligible, so an lm rule that ranks every trace is kept."""
    rng = np.random.default_rng(1)
    cuts = {"0.99": 1.4, "0.999": 2.1}

    def trace(over, hi=1.3):
        x = rng.uniform(0, hi, 2000)
        x[rng.choice(2000, over, replace=False)] = 1.5
        return R.Calls(x, cuts)
    normal = [trace(0 if rng.random() < 0.7 else int(rng.integers(1, 20))) for _ in range(400)]
    novel = [trace(100, 1.22) for _ in range(60)]  # calls over the cut, the rest a little lower: the mean barely moves
    c = R.choose([("a:whole", normal, novel)])
    assert c["dev"]["share:0.99"]["j"] > max(d["j"] for r, d in c["dev"].items() if r != "share:0.99") + 0.1
    assert c["dev"]["share:0.99"]["resolution"] < C.RES_MIN and "share:0.99" not in c["eligible"]
    assert not c["rule"].startswith("share:") and c["rule"] in c["eligible"]
