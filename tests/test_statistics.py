"""Simulation checks of the verdict rule of lib.analysis (vectorised numpy, seeded, a few seconds).

Monte-Carlo error: a rate p estimated from R = 2,000 simulated comparisons has SE sqrt(p(1-p)/R), 0.0049
at p = 0.05 and 0.0086 at p = 0.82. Every bound below allows 4 SE (a false alarm about once in 30,000 runs).
"""
import math

import numpy as np
import pytest

from lib import analysis as A

R = 2000
CI, MARGIN = 0.95, 0.1


def rule(d, clusters):
    """The claims table's "A improves on B" decision on R paired samples d (R x n), vectorised."""
    mean, var, g = A.cluster_variance(d, clusters)
    se = np.sqrt(np.where(var > 0, var, A.variance_floor(d, paired=True)))  # as analysis.estimate
    return A.decide("greater", mean, se, g - 1, margin=MARGIN, ci_level=CI)


def mc_se(p):
    return math.sqrt(p * (1 - p) / R)


def test_no_true_difference_holds_at_most_alpha():
    rng = np.random.default_rng(0)
    n = 200
    a, b = rng.random((R, n)) < 0.5, rng.random((R, n)) < 0.5
    holds = (rule(a.astype(float) - b, np.arange(n))["verdict"] == A.HOLDS).mean()
    # one-sided at alpha/2 = 0.025; the claim of the issue is <= 5% (+ MC error)
    assert holds <= 0.05 + 4 * mc_se(0.05)
    assert holds <= 0.025 + 4 * mc_se(0.025)


def clustered_null(rng, n_clusters=20, per=10):
    """No true difference, but each cluster of `per` items shares an effect: A is better on some clusters and
    B on others (p_A = 0.5 + v, p_B = 0.5 - v, v ~ U(-0.3, 0.3) per cluster)."""
    v = np.repeat(rng.uniform(-0.3, 0.3, (R, n_clusters)), per, axis=1)
    u_a, u_b = rng.random(v.shape), rng.random(v.shape)
    return (u_a < 0.5 + v).astype(float) - (u_b < 0.5 - v), np.repeat(np.arange(n_clusters), per)


def test_clustered_rule_keeps_its_level_where_the_naive_one_does_not():
    d, clusters = clustered_null(np.random.default_rng(1))
    clustered = rule(d, clusters)["verdict"]
    naive = rule(d, np.arange(d.shape[1]))["verdict"]  # every item its own cluster
    # two-sided rejections of "no difference": holds (CI > 0) or CI < 0
    rej = lambda v, r: ((v == A.HOLDS) | (r["ci_hi"] < 0)).mean()
    r_cl = rej(clustered, rule(d, clusters))
    r_naive = rej(naive, rule(d, np.arange(d.shape[1])))
    assert r_cl <= 0.05 + 4 * mc_se(0.05)
    # The cluster effect has variance 4 * 0.03 = 0.12 per item, shared by 10 items: the design effect is
    # ~ 1 + 9 * 0.12 / (0.12 + 0.5 + 0.5 - 0.12 * ...) ~ 2, so the naive SE is ~ 1/sqrt(2) too small and its
    # level ~ 2 * (1 - Phi(1.96 / sqrt(2))) ~ 0.17. We only ask it to be clearly above 5%.
    assert r_naive >= 0.10
    assert r_naive > r_cl + 8 * mc_se(0.05)


def test_power_at_a_true_gap_of_0_2_matches_the_formula():
    """n = 200 items, every pair discordant: A right and B wrong with p 0.6, the reverse with 0.4, so
    d = +-1 with mean 0.2 and variance 0.96 (SE 0.069): the formula's power is ~0.82."""
    rng = np.random.default_rng(2)
    n, p = 200, 0.6
    d = np.where(rng.random((R, n)) < p, 1.0, -1.0)
    sim = (rule(d, np.arange(n))["verdict"] == A.HOLDS).mean()
    # the formula behind the MDD: P(t > t_{1-alpha/2}) ~ 1 - T(t_{1-alpha/2} - delta/se)
    formula = 1 - A.t_cdf(A.t_ppf(0.5 + CI / 2, n - 1) - 0.2 / math.sqrt((1 - 0.2 ** 2) / n), n - 1)
    # The exact power of the rule: d-bar = (2K - n)/n with K ~ Binomial(n, p); the rule is a function of K.
    k = np.arange(n + 1)
    dk = np.where(np.arange(n)[None, :] < k[:, None], 1.0, -1.0)
    holds_k = rule(dk, np.arange(n))["verdict"] == A.HOLDS
    log_pmf = np.array([math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in k]) \
        + k * math.log(p) + (n - k) * math.log(1 - p)
    exact = float(np.exp(log_pmf)[holds_k].sum())
    assert abs(sim - exact) <= 4 * mc_se(exact)
    # the normal-approximation formula (true SE, t quantile) against the exact value: a discrete sum of 200
    # +-1 variables; the plug-in SE differs from the true one by O(1/n). Bound: 0.03.
    assert abs(exact - formula) <= 0.03
    assert 0.75 < formula < 0.88


def test_equivalence_decides_exact_ties():
    """Both arms 0% (or both 100%) on 100 items: every difference 0, so the floor keeps the CI non-degenerate
    and the CI lies within +-0.1: "does not hold: no improvement"."""
    r = rule(np.zeros((1, 100)), np.arange(100))
    assert r["verdict"][0] == A.FAILS and "no improvement" in r["why"][0]
    assert 0 < r["ci_hi"][0] < MARGIN
    small = rule(np.zeros((1, 10)), np.arange(10))   # 10 items: too few to exclude 0.1
    assert small["verdict"][0] == A.INCONCLUSIVE


def test_t_distribution_against_tables():
    # two-sided 95% quantiles from any t table
    for df, q in ((1, 12.706), (2, 4.303), (5, 2.571), (10, 2.228), (30, 2.042)):
        assert A.t_ppf(0.975, df) == pytest.approx(q, abs=1e-3)
    assert A.t_cdf(0.0, 7) == pytest.approx(0.5)
    assert A.t_cdf(1.96, 5000) == pytest.approx(0.975, abs=1e-4)


def test_holm():
    assert list(A.holm([0.01, 0.04, 0.03])) == pytest.approx([0.03, 0.06, 0.06])
    assert list(A.holm([0.5])) == [0.5]


def test_seed_spread_is_a_variance_component():
    """No true difference; the FT arm's 3 seeds each shift its accuracy by N(0, 0.08^2) (training noise), the
    ICL arm has one run. With the between-seed term (and Welch-Satterthwaite df: 3 seeds give it 2 df)
    the rule keeps its level; on the seed-averaged items
    alone it does not (the seed mean's SD 0.046 is comparable to the item SE ~0.05: level ~ 0.15)."""
    rng = np.random.default_rng(3)
    n, S = 200, 3
    shift = rng.normal(0, 0.08, (R, S, 1))
    ft = (rng.random((R, S, n)) < 0.5 + shift).astype(float)
    icl = (rng.random((R, 1, n)) < 0.5).astype(float)
    est = [A.estimate(ft[r], range(n), icl[r]) for r in range(R)]
    mean = np.array([e["est"] for e in est])
    q = {df: A.t_ppf(0.975, df) for df in {e["df"] for e in est}}
    with_seeds = (np.abs(mean) / [e["se"] for e in est] > [q[e["df"]] for e in est]).mean()   # two-sided
    _, var, _ = A.cluster_variance(ft.mean(axis=1) - icl[:, 0], np.arange(n))
    items_only = (np.abs(mean) / np.sqrt(var) > A.t_ppf(0.975, n - 1)).mean()
    assert with_seeds <= 0.05 + 4 * mc_se(0.05)
    assert items_only >= 0.09


# ---------------------------------------------------------------------------------------------- gating
def _arm_rows(rng, dataset, split, condition, p, n, chance=0.25):
    """Item rows (acc only) of one arm: item i correct with probability p, each item its own cluster."""
    ok = rng.random(n) < p
    return [dict(model="m", dataset=dataset, split=split, subset="", cluster=f"{split}{i}", item=f"{split}{i}",
                 condition=condition, seed=0, metric="acc", correct=float(ok[i]), margin=0.0, chosen=0,
                 chance=chance, n_options=4) for i in range(n)]


def _c4b(rng, icl_check, ft_check, icl_gen, ft_gen, n=120):
    import pandas as pd

    rows = (_arm_rows(rng, "syllogisms", "premise", "icl", icl_check, n)
            + _arm_rows(rng, "syllogisms", "premise", "ft", ft_check, n)
            + _arm_rows(rng, "syllogisms", "syllogism", "icl", icl_gen, n)
            + _arm_rows(rng, "syllogisms", "syllogism", "ft", ft_gen, n))
    t = A.claims_table(pd.DataFrame(rows, columns=A.ITEM_COLUMNS), learned_threshold=0.9)
    return t[t["part"] == "C4b"].iloc[0]


def test_a_learning_gap_alone_never_holds():
    # ICL learned the material (check 0.95), FT only half (0.60); both carry over the same share of what they
    # learned, so ICL's higher generalization accuracy is a learning gap, not better generalization
    rng = np.random.default_rng(1)
    verdicts = [_c4b(rng, 0.95, 0.60, 0.25 + 0.9 * 0.70, 0.25 + 0.9 * 0.35)["verdict"] for _ in range(20)]
    assert A.HOLDS not in verdicts
    assert all(v == A.INCONCLUSIVE or v.startswith("not tested") for v in verdicts)
    # ungated, the same data would read "holds": the gate is what stops it
    r = _c4b(np.random.default_rng(1), 0.95, 0.60, 0.88, 0.57)
    assert "gated" in r["why"] and r["ci_lo"] > 0


def test_equal_learning_lets_a_comparison_decide_both_ways():
    rng = np.random.default_rng(2)
    better = _c4b(rng, 0.97, 0.97, 0.85, 0.30)   # same learning, ICL generalizes
    assert better["verdict"] == A.HOLDS and "icl premise" in better["checks"]
    tie = _c4b(rng, 0.97, 0.97, 0.30, 0.30, n=400)  # same learning, same generalization: "no improvement"
    assert tie["verdict"] == A.FAILS
    # an arm at chance on its check learned nothing: the comparison is not tested
    assert _c4b(rng, 0.97, 0.25, 0.85, 0.30)["verdict"].startswith("not tested: ft learned nothing")
    # ICL learned less than FT: "ICL beats FT" may still hold (the gap cannot come from learning more)...
    assert _c4b(rng, 0.70, 0.97, 0.85, 0.30)["verdict"] == A.HOLDS
    # ...but "no improvement" is not concluded when ICL learned less
    r = _c4b(rng, 0.70, 0.97, 0.30, 0.30, n=400)
    assert r["verdict"] == A.INCONCLUSIVE and r["p_fails"] == 1.0


def test_gate_sides_of_absolute_parts():
    def check(acc, learned):
        return dict(condition="ft", dataset="d", split="forward", acc=acc, threshold=0.9, learned=learned,
                    above_chance=True)
    assert A.gate("near_zero", [check(0.5, False)], 0.1)[:2] == (False, False)
    assert A.gate("near_ceiling", [check(0.5, False)], 0.1)[:2] == (True, False)
    assert A.gate("above_chance", [check(0.5, False)], 0.1)[:2] == (True, False)
    assert A.gate("at_most_chance_plus_margin", [check(0.5, False)], 0.1)[:2] == (False, True)
    assert A.gate("near_zero", [check(0.95, True)], 0.1)[:2] == (True, True)
    assert A.gate("greater", [None, check(0.5, True)], 0.1)[:2] == (True, True)  # no check: nothing gated


def test_pooled_c1_decides_where_splits_cannot():
    # 8 splits of 100 items at chance: each split's CI (+-0.09 at 0.25) cannot lie within +-0.1 reliably,
    # the pooled one (+-0.03) does; no split is off chance, so C1 holds
    import pandas as pd

    rng = np.random.default_rng(3)
    rows = [r for k in range(8) for r in _arm_rows(rng, f"d{k % 2}", f"s{k}", "pretrained", 0.25, 100)]
    t = A.claims_table(pd.DataFrame(rows, columns=A.ITEM_COLUMNS))
    c1 = t[t["claim"] == "C1"]
    pooled = c1[c1["part"] == "C1a"].iloc[0]
    assert pooled["n"] == 800 and pooled["verdict"] == A.HOLDS and pooled["ci_hi"] - pooled["ci_lo"] < 0.1
    assert (c1.loc[c1["part"] == "C1b", "verdict"] != A.FAILS).all()
    assert c1["claim_verdict"].iloc[0] == A.HOLDS
    # one split far off chance fails C1 through the per-split check, even when the pool stays near chance
    rows += _arm_rows(rng, "d0", "s_off", "pretrained", 0.75, 60)
    t = A.claims_table(pd.DataFrame(rows, columns=A.ITEM_COLUMNS))
    assert t.loc[t["claim"] == "C1", "claim_verdict"].iloc[0] == A.FAILS


def test_transfer_ratio():
    import pandas as pd

    rng = np.random.default_rng(4)
    rows = (_arm_rows(rng, "reversal_curse", "forward", "ft", 1.0, 200)
            + _arm_rows(rng, "reversal_curse", "reversal", "ft", 0.25, 200)
            + _arm_rows(rng, "reversal_curse", "forward", "icl", 0.9, 200)
            + _arm_rows(rng, "reversal_curse", "reversal", "icl", 0.9, 200))
    tr = A.transfer_table(pd.DataFrame(rows, columns=A.ITEM_COLUMNS)).set_index("condition")
    assert abs(tr.loc["ft", "transfer"]) < 0.15 and tr.loc["ft", "ci_lo"] < 0 < tr.loc["ft", "ci_hi"]
    assert abs(tr.loc["icl", "transfer"] - 1) < 0.2 and tr.loc["icl", "ci_lo"] < 1 < tr.loc["icl", "ci_hi"]
