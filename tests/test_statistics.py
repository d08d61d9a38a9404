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
    formula = A.power(0.2, math.sqrt((1 - 0.2 ** 2) / n), n - 1, CI)
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
