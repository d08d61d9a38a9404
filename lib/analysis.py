"""The item-level results layer, the statistics that decide the claims C1-C7, and the files they write.

`read_items` reads the current params' score files into one tidy frame (one row per item x condition x seed x
metric); every table, figure and verdict is computed from it. The rule (SEs, verdicts, multiplicity, gating,
C1) is stated once, in RULES_MD (notebook 05 prints it, claims.md opens with it). SEs are cluster-robust
(CR1; items resting on one fact are not independent) and analytic, not a cluster bootstrap: deterministic
(the same numbers byte for byte), vectorised for the simulation checks, and with G/(G-1) and t(G-1)
quantiles they hold their level down to ~10 clusters (tests/test_statistics.py).
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from . import baselines, datasets, runs
from .datasets import LEARNING_CHECK_SPLITS, SPLITS

METRICS = ("acc", "acc_norm", "acc_mutual_info")
ITEM_COLUMNS = ["model", "dataset", "split", "subset", "cluster", "item", "condition", "seed", "metric",
                "correct", "margin", "chosen", "chance", "n_options", "check"]
CONDITIONS = ["pretrained", "icl", "icl_fit", "icl_bm25", "icl_oracle", "ft", "ft_split_independent",
              "ft_split_cumulative", "ft_nosplit", "ft_repeat", "aug_local", "aug_global", "aug_both"]
SPLITTING = ("ft_nosplit", "ft_split_independent", "ft_split_cumulative")  # the sentence-splitting ablation
HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
POWER = 0.8  # the power of the minimum detectable difference and of n_to_decide

CLAIMS = {
    "C1": "Pretrained model with no data is at chance on every test (no contamination).",
    "C2": "Reversal curse: FT gets near-zero reversed accuracy; ICL over the data is near ceiling.",
    "C3": "Simple reversals: ICL beats FT (a weaker gap than the reversal curse's).",
    "C4": "Simple syllogisms: FT is somewhat above chance; ICL is much better.",
    "C5": "Semantic structure: ICL beats FT on reversals and syllogisms; FT reverses above chance; "
          "category holdout stays hard for everyone.",
    "C6": "Augmented FT improves FT on every split and often beats ICL.",
    "C7": "Sentence splitting improves FT at matched data and steps "
          "(on the semantic structure it hurt plain FT).",
}


# ------------------------------------------------------------------------------------ the item-level frame
def expected_conditions(params) -> list[tuple[str, str, str, int]]:
    """(dataset, score-file condition, condition, seed) of every scored run the current params produce: the
    ICL conditions with seed `params.seed`, each FT condition once per FT seed."""
    out = []
    for ds in params.dataset_names:
        icl = ["pretrained", "icl"] + [f"icl_n{s}" for s in params.icl.curve_sizes] + ["icl_fit"]
        for c in icl + [f"icl_{m}" for m in params.icl.retrieval_modes]:
            out.append((ds, c, c, params.seed))
        ft = ["ft"] + (list(SPLITTING) if ds in params.finetune.splitting_ablation else [])
        ft += [f"aug_{k}" for k in params.augment.kinds]
        ft += ["ft_repeat"] if params.augment.repeat_control else []
        # the score file's name: lib.training.condition_name, repeated to import without torch (a test checks)
        seeded = len(params.finetune.seeds) > 1
        out += [(ds, f"{c}__s{s}" if seeded else c, c, s) for c in ft for s in params.finetune.seeds]
    return out


def _margin(scores: np.ndarray, golds: list[int]) -> float:
    wrong = [j for j in range(len(scores)) if j not in golds]
    return float(max(scores[g] for g in golds) - max(scores[j] for j in wrong)) if wrong else math.nan


def item_rows(scores: list[dict], *, dataset: str, condition: str, seed: int, model: str = "",
              check_split: str | None = None) -> list[dict]:
    """The item-level rows (one per item x metric) of one score file's lines (lib.scoring.evaluate's):
    `correct` (the prediction is a gold), `margin` (best gold's score minus the best wrong option's), `chance`
    (|golds| / |options|), `check` (the item is in the learning-check split `check_split`). Metrics: acc
    (log-likelihood), acc_norm (per character), acc_mutual_info (minus the unconditional log-likelihood)."""
    out = []
    for s in scores:
        ll = np.asarray(s["loglikelihoods"], dtype=float)
        golds = baselines.golds(s)
        uncond = np.asarray(s["loglikelihoods_uncond"], dtype=float)
        per_metric = {"acc": (ll, s["pred"]),
                      "acc_norm": (ll / np.asarray(s["n_chars"], dtype=float), s["pred_norm"]),
                      "acc_mutual_info": (ll - uncond, s["pred_mi"])}
        base = dict(model=model, dataset=dataset, split=s["split"], subset=s.get("subset") or "",
                    cluster=str(s.get("cluster", s["id"])), item=str(s["id"]), condition=condition,
                    seed=int(seed), chance=len(golds) / len(ll), n_options=len(ll),
                    check=s["split"] == check_split)
        for metric, (sc, chosen) in per_metric.items():
            out.append({**base, "metric": metric, "correct": float(chosen in golds),
                        "margin": _margin(sc, golds), "chosen": int(chosen)})
    return out


def read_items(params) -> pd.DataFrame:
    """The item-level frame (ITEM_COLUMNS) of every expected (`expected_conditions`) score file that exists
    with its stamp (a stage removes its stamp before writing: no stamp, unfinished write); `attrs["missing"]`
    lists the expected files that are absent."""
    folder = runs.run_dir(params)
    rows, missing = [], []
    for ds, file_cond, cond, seed in expected_conditions(params):
        path = folder / "scores" / f"{ds}__{file_cond}.jsonl"
        if not (path.is_file() and runs.stamp_path(path).is_file()):
            missing.append(f"{ds}__{file_cond}")
            continue
        rows += item_rows(runs.read_jsonl(path), dataset=ds, condition=cond, seed=seed,
                          model=params.model.name, check_split=datasets.learning_check_split(ds, params))
    df = pd.DataFrame(rows, columns=ITEM_COLUMNS)
    df.attrs["missing"] = missing
    return df


def _check(items: pd.DataFrame) -> None:
    missing = [c for c in ITEM_COLUMNS if c not in items.columns]
    if missing:
        raise ValueError(f"item frame lacks the column(s) {missing} "
                         f"(expected {ITEM_COLUMNS}; see read_items)")


def dataset_order(names) -> list[str]:
    """The datasets among `names` in the paper's order (lib.datasets.SPLITS), others (your own) after."""
    names = set(names)
    return [d for d in SPLITS if d in names] + sorted(names - set(SPLITS))


def split_order(dataset: str, splits) -> list[str]:
    """The dataset's splits in lib.datasets.SPLITS order, splits it does not list (e.g. new ones) after."""
    known = SPLITS.get(dataset, [])
    splits = list(dict.fromkeys(splits))
    return [s for s in known if s in splits] + sorted(s for s in splits if s not in known)


# ----------------------------------------------------------------------------------------- distributions
def _t(df):
    """scipy's Student t for integer df >= 1; the normal beyond df 1000 (as the numbers were always made)."""
    df = int(df)
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return stats.norm if df > 1000 else stats.t(df)


def t_cdf(t, df):
    """Student-t CDF (`_t`)."""
    return _t(df).cdf(t)


def t_ppf(p: float, df: int) -> float:
    """Student-t quantile, the inverse of t_cdf."""
    if not 0 < p < 1:
        raise ValueError(f"probability must lie in (0, 1), got {p}")
    return float(_t(df).ppf(p))


# ------------------------------------------------------------------------------------------ estimation
def cluster_variance(y: np.ndarray, clusters) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean over the last axis of `y` (shape (..., n)) and its CR1 cluster-robust variance,
    G/(G-1) * sum_g (sum_{i in g} (y_i - mean))^2 / n^2, with G the number of distinct `clusters` (length n).
    Each item its own cluster gives n/(n-1) * var(y)/n (the naive variance). Returns (mean, var, G)."""
    y = np.asarray(y, dtype=float)
    codes, clusters = pd.factorize(pd.Series(list(clusters)).astype(str))
    n, g = y.shape[-1], len(clusters)
    if len(codes) != n:
        raise ValueError(f"{len(codes)} cluster labels for {n} items")
    mean = y.mean(axis=-1)
    onehot = np.zeros((n, g))
    onehot[np.arange(n), codes] = 1.0
    totals = (y - mean[..., None]) @ onehot
    var = (totals ** 2).sum(axis=-1) / n ** 2 * (g / (g - 1) if g > 1 else np.nan)
    return mean, var, g


def variance_floor(y: np.ndarray, paired: bool = False) -> np.ndarray:
    """A floor for the variance of the mean of `y` (shape (..., n)) from one pseudo-observation, so that an
    all-equal sample (0% or 100% correct, every paired difference 0) never gives a zero-width interval.
    One arm (y in [0, 1]): p~(1 - p~)/n with p~ = (sum y + 1)/(n + 2). Paired (y in [-1, 1]):
    (q~ - m~^2)/n with q~ = (sum |y| + 1)/(n + 2) the smoothed discordance and m~ = sum y/(n + 2)."""
    y = np.asarray(y, dtype=float)
    n = y.shape[-1]
    if not paired:
        p = (y.sum(axis=-1) + 1) / (n + 2)
        return p * (1 - p) / n
    q, m = (np.abs(y).sum(axis=-1) + 1) / (n + 2), y.sum(axis=-1) / (n + 2)
    return np.maximum(q - m ** 2, 0.0) / n


def _seed_term(Y: np.ndarray) -> float:
    """Between-seed variance of the seed means / seeds (Y: seeds x items); 0 with one seed."""
    return float(Y.mean(axis=1).var(ddof=1) / len(Y)) if len(Y) > 1 else 0.0


def estimate(Y_a: np.ndarray, clusters, Y_b: np.ndarray | None = None, offset=None) -> dict:
    """Mean (A) or paired mean difference (A - B: shared item difficulty cancels) of per-item correctness and
    its SE: cluster-robust by `clusters` (`variance_floor` when that is 0 or there is one cluster) plus each
    arm's between-seed term. Y_*: seeds x items, the same items in the same order; `offset` (one arm): a
    per-item value subtracted first (chance). Returns {est, se, df, n, clusters, seeds}; df:
    Welch-Satterthwaite over the cluster term (G - 1 df) and the seed terms (seeds - 1 df each)."""
    arms = [np.atleast_2d(np.asarray(Y, dtype=float)) for Y in (Y_a, Y_b) if Y is not None]
    paired = len(arms) == 2
    y = arms[0].mean(axis=0) - arms[1].mean(axis=0) if paired else arms[0].mean(axis=0)
    parts = [(_seed_term(Y), len(Y) - 1) for Y in arms]  # (variance component, its degrees of freedom)
    off = np.zeros(len(y)) if offset is None or paired else np.asarray(offset, dtype=float)
    mean, var, g = cluster_variance(y - off, clusters)
    var = float(var) if g > 1 and var > 0 else float(variance_floor(y, paired=paired))
    parts.append((var, max(g - 1, 1)))
    total = sum(v for v, _ in parts)
    # Welch-Satterthwaite degrees of freedom of the sum (3 seeds give their term 2 df), rounded down
    df = max(int(total ** 2 / sum(v ** 2 / d for v, d in parts if v > 0)), 1)
    return dict(est=float(mean), se=math.sqrt(total), df=df, n=len(y), clusters=g,
                seeds=max(len(Y) for Y in arms))


# ---------------------------------------------------------------------------------------- the decisions
# kind -> (what is estimated, holds, fails): holds / fails are (side, threshold(margin)) conditions on the CI,
# (">", h): lo > h, ("<", f): hi < f; or "excludes 0".
KINDS = {
    "greater": ("A - B", [(">", lambda m: 0.0)], [("<", lambda m: m)]),
    "gap_greater": ("(A - B) - (C - D)", [(">", lambda m: 0.0)], [("<", lambda m: m)]),
    "above_chance": ("acc - chance", [(">", lambda m: 0.0)], [("<", lambda m: m)]),
    "at_chance": ("acc - chance", [(">", lambda m: -m), ("<", lambda m: m)], "excludes 0"),
    "near_zero": ("acc", [("<", lambda m: m)], [(">", lambda m: m)]),
    "near_ceiling": ("acc", [(">", lambda m: 1 - m)], [("<", lambda m: 1 - m)]),
    "at_most_chance_plus_margin": ("acc - chance", [("<", lambda m: m)], [(">", lambda m: m)]),
}


def _p(side: str, est, se, thr, df):
    """One-sided p-value of "CI beyond thr on `side`" (compared with alpha/2)."""
    z = (np.asarray(est) - thr) / np.asarray(se)
    return 1 - t_cdf(z, df) if side == ">" else t_cdf(z, df)


def decide(kind: str, est, se, df: int, *, margin: float, ci_level: float) -> dict:
    """The verdict of one test (the rule: RULES_MD), vectorised over est / se arrays: {ci_lo, ci_hi, verdict,
    why, p_holds, p_fails, mdd, se_to_decide}."""
    if kind not in KINDS:
        raise ValueError(f"unknown test kind {kind!r} (known: {', '.join(KINDS)})")
    est, se = np.asarray(est, dtype=float), np.asarray(se, dtype=float)
    q = t_ppf(0.5 + ci_level / 2, df)
    lo, hi = est - q * se, est + q * se
    _, holds_c, fails_c = KINDS[kind]
    beyond = lambda s, f: (f(margin) - est) if s == "<" else (est - f(margin))  # how far est is past f
    p_h = np.max([_p(s, est, se, f(margin), df) for s, f in holds_c], axis=0)
    dist_h = np.min([beyond(s, f) for s, f in holds_c], axis=0)
    if fails_c == "excludes 0":
        p_f, dist_f = np.minimum(_p(">", est, se, 0.0, df), _p("<", est, se, 0.0, df)), np.abs(est)
    else:
        (s, f), = fails_c
        p_f, dist_f = _p(s, est, se, f(margin), df), beyond(s, f)
    alpha2 = (1 - ci_level) / 2
    v = np.where(p_h < alpha2, HOLDS, np.where(p_f < alpha2, FAILS, INCONCLUSIVE))
    q80 = q + t_ppf(POWER, df)
    why = np.full(est.shape, "", dtype=object)
    if kind in ("greater", "gap_greater", "above_chance"):
        why = np.where(v == FAILS, np.where(hi < 0, "worse (CI < 0)",
                                            np.where(lo > -margin, f"no improvement (CI within ±{margin:g})",
                                                     f"improvement < {margin:g} (CI < {margin:g})")), why)
    return dict(ci_lo=lo, ci_hi=hi, verdict=v, why=why, p_holds=p_h, p_fails=p_f, mdd=q80 * se,
                se_to_decide=np.maximum(np.maximum(dist_h, dist_f), 0) / q80)


def rule_text(kind: str, margin: float) -> str:
    what, holds_c, fails_c = KINDS[kind]
    side = lambda c: " and ".join(f"CI {s} {f(margin):g}" for s, f in c)
    fails = "CI excludes 0" if fails_c == "excludes 0" else side(fails_c)
    return f"{what}: holds if {side(holds_c)}; fails if {fails}"


def holm(p) -> np.ndarray:
    """Holm step-down adjusted p-values."""
    # our own: scipy has no Holm (false_discovery_control is BH/BY), and statsmodels is no pin for 10 lines
    p = np.asarray(p, dtype=float)
    k = len(p)
    order = np.argsort(p, kind="stable")
    out = np.empty(k)
    out[order] = np.minimum(1, np.maximum.accumulate(p[order] * (k - np.arange(k))))
    return out


# ------------------------------------------------------------------------------------------ aggregation
def arm(items: pd.DataFrame, dataset: str, split: str, condition: str, metric: str):
    """(seeds x items correctness matrix, item ids, clusters, chance per item) of one arm on one split;
    None when the arm has no items there. Items missing for some seed are dropped (every seed, same items).
    dataset = split = "*" pools every item of the arm (ids and clusters prefixed by dataset and split)."""
    sel = items[(items["condition"] == condition) & (items["metric"] == metric)]
    if dataset == "*":
        sel = sel.assign(item=sel["dataset"] + "/" + sel["split"] + "/" + sel["item"].astype(str),
                         cluster=sel["dataset"] + "/" + sel["cluster"].astype(str))
    else:
        sel = sel[(sel["dataset"] == dataset) & (sel["split"] == split)]
    if sel.empty:
        return None
    wide, info = _by_item(sel)
    return wide.to_numpy().T, list(wide.index), list(info["cluster"]), info["chance"].to_numpy(float)


def _by_item(rows: pd.DataFrame):
    """(items x seeds correctness, each item's first row) of an arm's rows; items a seed lacks are dropped."""
    wide = rows.pivot_table(index="item", columns="seed", values="correct", aggfunc="first").dropna()
    return wide, rows.drop_duplicates("item").set_index("item").loc[wide.index]


def summarize(items: pd.DataFrame, metric: str = "acc",
              by=("model", "dataset", "split", "condition")) -> pd.DataFrame:
    """One row per `by` group of the item frame for `metric`: `acc` (mean over items of the seed-averaged
    correctness) and its `se` (clustered, seeds' term added: see `estimate`), `mean_subsets` / `se_subsets`
    (mean and SE over the split's subsets), `n` items, `n_clusters`, `k_subsets`, `n_seeds`, `chance`."""
    _check(items)
    by = list(by)
    cols = by + ["metric", "acc", "se", "mean_subsets", "se_subsets", "n", "n_clusters", "k_subsets",
                 "n_seeds", "chance"]
    df = items[items["metric"] == metric]
    rows = []
    for key, g in df.groupby(by, sort=False):
        wide, info = _by_item(g)
        e = estimate(wide.to_numpy().T, info["cluster"])
        sub = wide.mean(axis=1).groupby(info["subset"]).mean()
        rows.append(key + (metric, e["est"], e["se"], float(sub.mean()),
                           float(sub.std(ddof=1) / math.sqrt(len(sub))) if len(sub) > 1 else math.nan,
                           e["n"], e["clusters"], len(sub), e["seeds"], float(info["chance"].mean())))
    return pd.DataFrame(rows, columns=cols)


def accuracy_table(items: pd.DataFrame, metric: str = "acc", conditions=None) -> pd.DataFrame:
    """One row per model x dataset x split (the paper's dataset and split order), one column per condition
    (CONDITIONS order, or `conditions`): the seed-averaged accuracy, beside `n` (most items of a condition)
    and `chance`."""
    return _wide(summarize(items, metric), conditions)


def _wide(agg: pd.DataFrame, conditions=None) -> pd.DataFrame:
    """accuracy_table from `summarize`'s rows (write_results has them already)."""
    if agg.empty:
        return pd.DataFrame(columns=["model", "dataset", "split", "n", "chance"])
    keys = ["model", "dataset", "split"]
    wide = agg.pivot_table(index=keys, columns="condition", values="acc", aggfunc="first")
    order = conditions or CONDITIONS + sorted((c for c in wide.columns if c not in CONDITIONS), key=_natural)
    wide = wide[[c for c in order if c in wide.columns]]
    info = agg.groupby(keys).agg(n=("n", "max"), chance=("chance", "max"))
    out = info.join(wide).reset_index()
    out["_order"] = [split_order(d, agg.loc[agg["dataset"] == d, "split"]).index(s)
                     for d, s in zip(out["dataset"], out["split"])]
    out["_ds"] = out["dataset"].map({d: i for i, d in enumerate(dataset_order(out["dataset"]))})
    return out.sort_values(["model", "_ds", "_order"]).drop(columns=["_order", "_ds"]).reset_index(drop=True)


def _natural(name: str):
    """icl_n4 before icl_n16: digit runs compare as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def check_splits(items: pd.DataFrame) -> dict[str, str]:
    """dataset -> its learning-check split (a trained fact, asked as trained): the split whose items are
    flagged `check` (read_items flags them from the dataset's manifest), else the built-in one among
    LEARNING_CHECK_SPLITS; datasets with neither are left out."""
    out = {}
    for ds, g in items.groupby("dataset", sort=False):
        flagged = g.loc[g["check"] == True, "split"]  # noqa: E712 (NaN where frames lack the flag)
        split = flagged.iloc[0] if len(flagged) else next(
            (s for s in LEARNING_CHECK_SPLITS if s in set(g["split"])), None)
        if split is not None:
            out[ds] = split
    return out


def learning_checks(items: pd.DataFrame, threshold: float, metric: str = "acc",
                    ci_level: float = 0.95, margin: float = 0.1) -> pd.DataFrame:
    """One row per dataset x arm (every condition but `pretrained`): its accuracy on the dataset's
    learning-check split (`check_splits`), se, n, chance, `learned` (accuracy >= `threshold`: what absolute
    claim parts need) and `above_chance` (the check's CI lies above chance: what a comparison needs)."""
    cols = ["dataset", "condition", "split", "acc", "se", "n", "chance", "threshold", "learned",
            "above_chance"]
    agg = summarize(items, metric, by=("dataset", "split", "condition")) if len(items) else pd.DataFrame()
    if agg.empty:
        return pd.DataFrame(columns=cols)
    which = check_splits(items)
    keep = [which.get(d) == s for d, s in zip(agg["dataset"], agg["split"])]
    agg = agg[np.array(keep, dtype=bool) & (agg["condition"] != "pretrained").to_numpy()]
    out = agg[["dataset", "condition", "split", "acc", "se", "n", "chance"]].assign(threshold=threshold)
    out["learned"] = out["acc"] >= threshold
    lo = [decide("above_chance", a - c, se, max(int(n) - 1, 1), margin=margin, ci_level=ci_level)["ci_lo"]
          for a, c, se, n in zip(out["acc"], out["chance"], out["se"], out["n"])]
    out["above_chance"] = np.asarray(lo, dtype=float) > 0
    return out.reset_index(drop=True)[cols]


def gate(kind: str, checks: list, margin: float) -> tuple[bool, bool, str]:
    """Which sides of one test its arms' learning checks allow (the rule: GATING_MD): (holds allowed, fails
    allowed, why not). `checks`: per arm (gap_greater: A1, B1, A2, B2), a learning_checks row, or None when
    the arm has no learning-check split scored (it gates nothing)."""
    known = [c for c in checks if c is not None]
    if kind == "at_chance" or not known:
        return True, True, ""
    low = [f"{c['condition']} learned nothing of {c['dataset']} ({c['split']} {c['acc']:.2f}, CI reaches "
           "chance)" for c in known if not c["above_chance"]]
    unl = [f"{c['condition']} did not learn {c['dataset']} ({c['split']} {c['acc']:.2f} < {c['threshold']:g})"
           for c in known if not c["learned"]]
    if kind in ("greater", "gap_greater"):
        if low:
            return False, False, "; ".join(low)
        acc = [c["acc"] if c is not None else math.nan for c in checks]
        ge = lambda a, b: not (a < b - margin)  # NaN (no check) never blocks
        pairs = [(0, 1)] if kind == "greater" else [(0, 1), (3, 2)]  # (A, B): B must have learned >= A
        names = [c["condition"] if c is not None else "?" for c in checks]
        # what blocks each side: holds when no A learned more than its B, fails when no B learned more
        blocks = [[f"{names[a]} learned more ({acc[a]:.2f} vs {names[b]} {acc[b]:.2f})"
                   for a, b in side if not ge(acc[b], acc[a])]
                  for side in (pairs, [(b, a) for a, b in pairs])]
        return not blocks[0], not blocks[1], "; ".join(blocks[0] + blocks[1])
    learned = not unl
    holds, fails = {"above_chance": (True, learned), "near_ceiling": (True, learned),
                    "near_zero": (learned, learned), "at_most_chance_plus_margin": (learned, True)}[kind]
    return holds, fails, "; ".join(unl)


GATING_MD = (
    "**Gating** (`lib.analysis.gate`): a comparison 'A beats B' is tested when both arms are above chance on "
    "their learning check (its CI excludes chance); it may *hold* only when B learned at least as well as A "
    "(B's check >= A's - margin), so A's advantage cannot come from learning more, and it may *fail* ('no "
    "improvement') only when A learned at least as well as B. The ICL-FT gap comparison applies this to both "
    "pairs. Absolute parts need the arm's check >= `learned_threshold` on the side an arm that did not learn "
    "would produce: 'near ceiling' and 'above chance' to fail, 'near zero' both ways, 'stays hard' to hold. "
    "A side that is gated reads 'inconclusive (gated: ...)' and counts as undecided; with both sides gated "
    "the test is 'not tested'. `checks` gives each arm's learning-check accuracy beside the test.")


def transfer_table(items: pd.DataFrame, metric: str = "acc", ci_level: float = 0.95) -> pd.DataFrame:
    """How much of what each arm learned carried over: per dataset x arm x generalization split, the
    learning-check and generalization accuracies and R = (gen - chance_gen) / (check - chance_check) (1: all
    that was learned generalized, 0: none; NaN when the check is not above chance) with its delta-method CI
    (`_ratio`; items averaged over seeds)."""
    cols = ["dataset", "condition", "split", "check_split", "check_acc", "acc", "chance", "transfer",
            "ci_lo", "ci_hi", "n", "clusters"]
    rows = []
    df = items[(items["metric"] == metric) & (items["condition"] != "pretrained")] if len(items) else items
    which = check_splits(items) if len(items) else {}
    for (ds, cond), g in (df.groupby(["dataset", "condition"], sort=False) if len(df) else []):
        if (cs := which.get(ds)) is None:
            continue
        y = g.groupby(["split", "item"]).agg(correct=("correct", "mean"), chance=("chance", "first"),
                                             cluster=("cluster", "first")).reset_index()
        y["d"] = y["correct"] - y["chance"]
        chk = y[y["split"] == cs]
        for sp in [s for s in split_order(ds, y["split"]) if s != cs]:
            gen = y[y["split"] == sp]
            r, lo, hi, g_n = _ratio(gen, chk, ci_level)
            rows.append(dict(dataset=ds, condition=cond, split=sp, check_split=cs,
                             check_acc=chk["correct"].mean(), acc=gen["correct"].mean(),
                             chance=gen["chance"].mean(), transfer=r, ci_lo=lo, ci_hi=hi, n=len(gen),
                             clusters=g_n))
    return pd.DataFrame(rows, columns=cols)


def _ratio(gen: pd.DataFrame, chk: pd.DataFrame, ci_level: float):
    """(R, CI lo, CI hi, clusters) of R = mean `d` of `gen` / that of `chk`, delta method over the union of
    clusters: Var(R) ~ (V_g - 2 R C_gc + R^2 V_c) / c^2, each (co)variance CR1 from per-cluster sums."""
    g, c = gen["d"].mean(), chk["d"].mean()
    labels = pd.Index(sorted(set(gen["cluster"]) | set(chk["cluster"])))
    k = len(labels)
    tg = (gen["d"] - g).groupby(gen["cluster"]).sum().reindex(labels, fill_value=0).to_numpy() / len(gen)
    tc = (chk["d"] - c).groupby(chk["cluster"]).sum().reindex(labels, fill_value=0).to_numpy() / len(chk)
    if k < 2 or not c > 0:
        return math.nan, math.nan, math.nan, k
    r = g / c
    var = k / (k - 1) * ((tg ** 2).sum() - 2 * r * (tg * tc).sum() + r ** 2 * (tc ** 2).sum()) / c ** 2
    q = t_ppf(0.5 + ci_level / 2, k - 1)
    se = math.sqrt(max(var, 0.0))
    return float(r), float(r - q * se), float(r + q * se), k


# ------------------------------------------------------------------------------------------ the claims
def claim_statement(claim: str) -> str:
    """The statement of a paper claim (CLAIMS) or of a dataset of your own's claim (`own:<dataset>`)."""
    if claim in CLAIMS:
        return CLAIMS[claim]
    return (f"Your dataset {claim.removeprefix('own:')}: ICL beats FT, and augmented FT beats FT and ICL, "
            "on each generalization split.")


def _plan(augmented: str, splits: dict[str, list[str]], checks: dict[str, str] | None = None):
    """The tests of every claim: (claim, part, mode, kind, datasets, split, conditions, description);
    `splits` are the splits the data have per dataset, `checks` each dataset's learning-check split."""
    checks = checks or {}
    rc_rev = [s for s in splits.get("reversal_curse", []) if s.startswith("reversal")] or ["reversal"]
    # C1: one pooled equivalence test over every item of every split (clustered by dataset and cluster), and
    # per split only a check that none is off chance after Holm (a per-split TOST needs ~4x the items)
    plan = [("C1", "C1a", "all", "at_chance", ["*"], "*", ["pretrained"],
             "pretrained at chance, all items pooled")]
    plan += [("C1", "C1b", "nofail", "at_chance", [ds], sp, ["pretrained"], "no split off chance")
             for ds, sps in splits.items() for sp in sps]
    rc, sr, sem = ["reversal_curse"], ["simple_reversals"], ["semantic_structure"]
    for sp in rc_rev:
        plan += [("C2", "C2a", "all", "near_zero", rc, sp, ["ft"], "FT reversed accuracy near zero"),
                 ("C2", "C2b", "all", "near_ceiling", rc, sp, ["icl"], "ICL reversed accuracy near ceiling"),
                 ("C2", "C2c", "all", "greater", rc, sp, ["icl", "ft"], "ICL beats FT on reversals")]
    plan += [
        ("C3", "C3a", "all", "greater", sr, "reversal", ["icl", "ft"], "ICL beats FT on reversals"),
        ("C3", "C3b", "all", "gap_greater", ["reversal_curse"] * 2 + ["simple_reversals"] * 2, "reversal",
         ["icl", "ft", "icl", "ft"], "ICL-FT gap smaller than on the reversal curse"),
        ("C4", "C4a", "all", "above_chance", ["syllogisms"], "syllogism", ["ft"], "FT above chance"),
        ("C4", "C4b", "all", "greater", ["syllogisms"], "syllogism", ["icl", "ft"], "ICL beats FT"),
        ("C5", "C5a", "all", "greater", sem, "reversal", ["icl", "ft"], "ICL beats FT on reversals"),
        ("C5", "C5b", "all", "greater", sem, "syllogism", ["icl", "ft"], "ICL beats FT on syllogisms"),
        ("C5", "C5c", "all", "above_chance", sem, "reversal", ["ft"], "FT reverses above chance"),
    ]
    plan += [("C5", "C5d", "all", "at_most_chance_plus_margin", ["semantic_structure"], "holdout", [c],
              f"category holdout stays hard ({c})") for c in ["icl", "ft", augmented]]
    plan += [("C6", part, mode, "greater", [ds], sp, [augmented, b], f"augmented FT beats {b.upper()}")
             for part, mode, b in (("C6a", "all", "ft"), ("C6b", "often", "icl"))
             for ds, sps in splits.items() if ds in SPLITS for sp in sps]
    plan += [(f"own:{ds}", f"{ds}:{k}", "all", "greater", [ds], sp, conds, desc)
             for ds, sps in splits.items() if ds not in SPLITS for sp in sps if sp != checks.get(ds)
             for k, conds, desc in (("a", ["icl", "ft"], "ICL beats FT"),
                                    ("b", [augmented, "ft"], "augmented FT beats FT"),
                                    ("c", [augmented, "icl"], "augmented FT beats ICL"))]
    c7 = {False: [("C7a", ["ft_split_independent", "ft_nosplit"], "independent splitting beats unsplit FT"),
                  ("C7b", ["ft_split_cumulative", "ft_nosplit"], "cumulative splitting beats unsplit FT")],
          True: [("C7c", ["ft_nosplit", "ft_split_independent"],
                  "semantic structure: unsplit FT beats split FT")]}
    plan += [("C7", part, "all", "greater", [ds], sp, conds, desc) for ds, sps in splits.items() for sp in sps
             for part, conds, desc in c7[ds == "semantic_structure"]]
    # every ICL test again with icl_fit (the largest curve context whose learning check passes) for icl
    plan += [(claim, f"{part}_fit", mode, kind, dss, sp, ["icl_fit" if c == "icl" else c for c in conds],
              f"{desc} (icl_fit)")
             for claim, part, mode, kind, dss, sp, conds, desc in plan if "icl" in conds]
    return plan


def _gated(r: dict, holds_ok: bool, fails_ok: bool, why: str) -> dict:
    """A test's result with the sides `gate` forbids taken away: p = 1 there, and a verdict on such a side
    reads inconclusive."""
    if "est" not in r:
        return r
    r = dict(r)
    for ok, side, p in ((holds_ok, HOLDS, "p_holds"), (fails_ok, FAILS, "p_fails")):
        if not ok:
            r[p] = 1.0
            if r["verdict"] == side:
                r["verdict"], r["why"] = INCONCLUSIVE, f"gated ({side}): {why}"
    return r


def _test(items, kind, dss, sp, conds, metric, margin, ci_level):
    """Run one planned test on `metric`: a dict of numbers and the decision, or a "not tested" reason."""
    arms = [arm(items, d, sp, c, metric) for d, c in zip(dss, conds)]
    if any(a is None for a in arms):
        return {"verdict": f"not tested (missing: split {sp} of " + ", ".join(
            f"{d}/{c}" for d, c, a in zip(dss, conds, arms) if a is None) + ")"}

    def paired(a, b):  # A - B over the items both arms scored
        common = [i for i in a[1] if i in set(b[1])]
        ia, ib = [a[1].index(i) for i in common], [b[1].index(i) for i in common]
        return estimate(a[0][:, ia], [a[2][i] for i in ia], b[0][:, ib])

    if kind == "gap_greater":
        e1, e2 = paired(*arms[:2]), paired(*arms[2:])
        e = dict(est=e1["est"] - e2["est"], se=math.hypot(e1["se"], e2["se"]), df=min(e1["df"], e2["df"]),
                 n=e1["n"] + e2["n"], clusters=e1["clusters"] + e2["clusters"],
                 seeds=max(e1["seeds"], e2["seeds"]))
    elif len(arms) == 2:
        e = paired(*arms)
    else:
        A, _, cl, chance = arms[0]
        chance_kind = kind in ("above_chance", "at_chance", "at_most_chance_plus_margin")
        e = estimate(A, cl, offset=chance if chance_kind else None)  # per item: a syllogism's is |golds| / 6
    d = {k: (v.item() if isinstance(v, np.ndarray) else v)
         for k, v in decide(kind, e["est"], e["se"], e["df"], margin=margin, ci_level=ci_level).items()}
    n_dec = math.ceil(e["n"] * (e["se"] / d["se_to_decide"]) ** 2) if d["se_to_decide"] > 0 else math.inf
    return {**e, **d, "n_to_decide": n_dec,
            "accs": [float(a[0].mean()) for a in arms], "chance": float(arms[0][3].mean())}


def claims_table(items: pd.DataFrame, *, metric: str = "acc", ci_level: float = 0.95, margin: float = 0.1,
                 augmented: str = "aug_both", learned_threshold: float = 0.0) -> pd.DataFrame:
    """One row per test of a claim C1-C7, from the item-level frame (the rule: RULES_MD).

    Columns: `cols` below (`estimate_<beside>`, `verdict_<beside>`: the same test on the other metric).
    Missing conditions and arms that failed their learning check give "not tested (...)" rows, not errors."""
    if not augmented.startswith("aug_") or augmented not in CONDITIONS:
        raise ValueError(f"augmented condition {augmented!r} is not one of aug_local, aug_global, aug_both")
    _check(items)
    beside = "acc_mutual_info" if metric != "acc_mutual_info" else "acc"
    cols = ["model", "claim", "part", "test", "dataset", "split", "conditions", "numbers", "checks", "n",
            "clusters", "seeds", "estimate", "se", "ci_lo", "ci_hi", "rule", "verdict", "why", "p_holds",
            "p_fails", "p_fails_holm", "mdd", "n_to_decide", f"estimate_{beside}", f"verdict_{beside}",
            "part_verdict", "claim_verdict"]
    models = sorted(items["model"].dropna().unique()) or [""]
    out = []
    for model in models:
        its = items[items["model"] == model] if model else items
        splits = {d: split_order(d, its.loc[its["dataset"] == d, "split"])
                  for d in dataset_order(its["dataset"])}
        present = set(zip(its["dataset"], its["condition"]))
        checks = learning_checks(its, learned_threshold, metric, ci_level, margin)
        check_of = {(r["dataset"], r["condition"]): r for r in checks.to_dict("records")}
        plan = _plan(augmented, splits or {d: [] for d in SPLITS}, check_splits(its) if len(its) else {})
        ablation = {d for d, c in present if c in SPLITTING}
        rows, reported = [], set()
        for claim, part, mode, kind, dss, sp, conds, desc in plan:
            dss = dss * len(conds) if len(dss) == 1 else dss
            ds = " vs ".join(dict.fromkeys(dss))
            if claim == "C7" and ds not in ablation:
                continue
            base = dict(model=model, claim=claim, part=part, test=desc, dataset=ds, split=sp,
                        conditions=" vs ".join(conds), rule=rule_text(kind, margin))
            missing = list(dict.fromkeys(f"{d}/{c}" for d, c in zip(dss, conds) if (d, c) not in present
                                         and not (d == "*" and c in {pc for _, pc in present})))
            if missing:
                if (part, tuple(missing)) not in reported:
                    reported.add((part, tuple(missing)))
                    rows.append({**base, "split": "*",
                                 "verdict": f"not tested (missing: {', '.join(missing)})"})
                continue
            arm_checks = [check_of.get((d, c)) for d, c in zip(dss, conds)]
            base["checks"] = "; ".join(dict.fromkeys(f"{c} {k['split']} {k['acc']:.2f}"
                                                     for c, k in zip(conds, arm_checks) if k is not None))
            holds_ok, fails_ok, gated = gate(kind, arm_checks, margin)
            if not (holds_ok or fails_ok):
                rows.append({**base, "verdict": "not tested: " + gated})
                continue
            r = _gated(_test(its, kind, dss, sp, conds, metric, margin, ci_level), holds_ok, fails_ok, gated)
            if "est" not in r:
                rows.append({**base, **r})
                continue
            numbers = "; ".join(f"{c} {a:.2f}" for c, a in zip(conds, r["accs"]))
            numbers += f"; chance {r['chance']:.2f}" if len(conds) == 1 else ""
            row = {**base, "numbers": numbers, "estimate": r["est"],
                   **{k: r[k] for k in ("n", "clusters", "seeds", "se", "ci_lo", "ci_hi", "verdict", "why",
                                        "p_holds", "p_fails", "mdd", "n_to_decide")}}
            rb = (_gated(_test(its, kind, dss, sp, conds, beside, margin, ci_level), holds_ok, fails_ok,
                         gated) if beside in set(its["metric"]) else {})
            if "est" in rb:
                row[f"estimate_{beside}"], row[f"verdict_{beside}"] = rb["est"], rb["verdict"]
            rows.append(row)
        if not any(r["claim"] == "C7" for r in rows):
            rows.append(dict(model=model, claim="C7", part="C7a", test="sentence-splitting ablation",
                             dataset="*", split="*", conditions=" vs ".join(SPLITTING),
                             verdict=f"not tested (missing: {', '.join(SPLITTING)} on every dataset)"))
        for claim in CLAIMS:  # a claim none of whose datasets has results
            if not any(r["claim"] == claim for r in rows):
                rows.append(dict(model=model, claim=claim, part=claim, test=claim_statement(claim),
                                 dataset="*", split="*",
                                 verdict="not tested (missing: every dataset it needs)"))
        df = pd.DataFrame(rows, columns=cols)
        alpha2 = (1 - ci_level) / 2
        tested = ~df["verdict"].astype(str).str.startswith("not tested")
        df["p_holds_holm"] = np.nan
        for claim, g in df[tested].groupby("claim"):
            df.loc[g.index, "p_fails_holm"] = holm(g["p_fails"].to_numpy(float))
            df.loc[g.index, "p_holds_holm"] = holm(g["p_holds"].to_numpy(float))
        modes = {p[1]: p[2] for p in plan}
        df["part_verdict"] = df["part"].map({part: combine(g, modes.get(part, "all"), alpha2)
                                             for part, g in df.groupby("part")})
        df["claim_verdict"] = df["claim"].map({c: combine_parts(g.drop_duplicates("part")["part_verdict"])
                                               for c, g in df.groupby("claim")})
        out.append(df.drop(columns="p_holds_holm"))
    return pd.concat(out, ignore_index=True)


def combine(tests: pd.DataFrame, mode: str = "all", alpha2: float = 0.025) -> str:
    """A claim part's verdict from its tests (rows with verdict, p_fails_holm, p_holds_holm). Holds when
    "all": every tested test holds, "often": at least half hold after Holm, "nofail" (C1's per-split check):
    none fails after Holm; does not hold when one fails after Holm ("often": more than half); else
    inconclusive; "not tested" when no test ran."""
    t = tests[~tests["verdict"].astype(str).str.startswith("not tested")]
    if t.empty:
        return "not tested"
    fails = (t["p_fails_holm"] < alpha2).sum()
    if mode == "nofail":
        return FAILS if fails else HOLDS
    if mode == "often":
        holds = (t["p_holds_holm"] < alpha2).sum()
        return HOLDS if holds and 2 * holds >= len(t) else FAILS if 2 * fails > len(t) else INCONCLUSIVE
    if (t["verdict"] == HOLDS).all():
        return HOLDS
    return FAILS if fails else INCONCLUSIVE


def combine_parts(parts) -> str:
    """A claim from its parts: holds when every tested part holds, does not hold when any does not."""
    tested = [v for v in parts if not str(v).startswith("not tested")]
    if not tested:
        return "not tested"
    if FAILS in tested:
        return FAILS
    return HOLDS if all(v == HOLDS for v in tested) else INCONCLUSIVE


def claims_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per model and claim: the statement, its verdict, part verdicts and counts of test outcomes."""
    rows = []
    for (model, claim), g in table.groupby(["model", "claim"], sort=True):
        v = g["verdict"].astype(str)
        parts = g.drop_duplicates("part")[["part", "part_verdict"]].itertuples(index=False)
        rows.append(dict(model=model, claim=claim, statement=claim_statement(claim),
                         verdict=g["claim_verdict"].iloc[0], parts="; ".join(f"{p}: {pv}" for p, pv in parts),
                         holds=int((v == HOLDS).sum()), fails=int((v == FAILS).sum()),
                         inconclusive=int((v == INCONCLUSIVE).sum()),
                         not_tested=int(v.str.startswith("not tested").sum())))
    return pd.DataFrame(rows)


def _md_table(df: pd.DataFrame) -> str:
    # our own: DataFrame.to_markdown (tabulate) pads every column to its widest cell: claims.md would change
    def cell(x):
        if isinstance(x, float):
            return "" if np.isnan(x) else "inf" if np.isinf(x) else f"{x:.3f}"
        return str(x).replace("|", "\\|")
    head = "| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns) + "\n"
    return head + "".join("| " + " | ".join(cell(x) for x in r) + " |\n" for r in df.itertuples(index=False))


RULES_MD = (
    "Rules (`lib/analysis.py`): per test, CI = estimate ± t(df) x SE (df = clusters - 1, "
    "Welch-Satterthwaite when seed terms enter), SE cluster-robust (CR1) by the item's "
    "cluster, paired over the same items for comparisons, plus the between-seed variance / seeds. "
    "'A improves on B' holds if CI > 0 and does not hold if CI < margin (an improvement of the margin or "
    "more is excluded: 'no improvement' when the CI lies within ±margin); 'at chance' holds if the CI of "
    "acc - chance lies within ±margin (TOST) and does not hold if it excludes 0; 'near zero' / "
    "'near ceiling' / 'stays hard' hold if the CI lies beyond the threshold. "
    "`mdd`: the difference detectable with 80% power at this n; "
    "`n_to_decide`: the items that would decide the observed estimate with 80% power. "
    "**Multiplicity**: a claim holds when every tested test holds (intersection-union test: family-wise "
    "level alpha/2 with no adjustment); it does not hold when some test's p_fails, Holm-adjusted over the "
    "claim's tested tests (`p_fails_holm`), is below alpha/2; 'often' parts count Holm-adjusted holds. "
    "**C1** is one equivalence test over every item of every split pooled (clustered by dataset and "
    "cluster), plus a per-split check that no split is off chance after Holm. " + GATING_MD)


def write_claims(table: pd.DataFrame, outdir: Path, *, params_name: str, metric: str, ci_level: float,
                 margin: float, checks: pd.DataFrame | None = None,
                 transfer: pd.DataFrame | None = None) -> list[Path]:
    """Write `claims.csv` and `claims.md` (rules, summary, learning checks, transfer ratios, every test)."""
    csv, md = Path(outdir) / "claims.csv", Path(outdir) / "claims.md"
    runs.write_text(csv, table.to_csv(index=False))
    models = ", ".join(m for m in table["model"].unique() if m) or "(no results)"
    beside = next(c.removeprefix("verdict_") for c in table.columns if c.startswith("verdict_"))
    text = (f"# Claims C1-C7 tested on the results of params `{params_name}`\n\n"
            f"Model: {models}. Metric: `{metric}` "
            f"(the `_{beside}` columns repeat each test on the other metric). "
            f"CI level {ci_level:g} (alpha/2 = {(1 - ci_level) / 2:g} per side); margin {margin:g}. "
            + RULES_MD + " Written by `notebooks/05_analysis.ipynb`.\n\n## Summary\n\n"
            + _md_table(claims_summary(table)))
    if checks is not None and len(checks):
        text += "\n## Learning checks (per arm)\n\n" + _md_table(checks)
    if transfer is not None and len(transfer):
        text += ("\n## Transfer: how much of what each arm learned carried over\n\n"
                 "transfer = (acc - chance) / (check_acc - chance of the check), delta-method CI clustered "
                 "over the clusters both splits share (`lib.analysis.transfer_table`).\n\n"
                 + _md_table(transfer))
    text += "\n## Every test\n\n" + _md_table(table.drop(columns=["claim_verdict"]))
    runs.write_text(md, text)
    return [csv, md]


def write_results(items: pd.DataFrame, outdir: Path, *, params_name: str,
                  metrics=("acc", "acc_mutual_info")) -> list[Path]:
    """Write `results.csv` (`summarize` of every metric) and `results.md` (an `accuracy_table` per metric)."""
    csv, md = Path(outdir) / "results.csv", Path(outdir) / "results.md"
    aggs = {m: summarize(items, m) for m in metrics}
    runs.write_text(csv, pd.concat(aggs.values()).to_csv(index=False))
    text = (f"# Accuracy per split and condition, params `{params_name}`\n\n"
            "Mean over the split's items of each item's correctness (averaged over seeds where there are "
            "several); `n` items per split. From the item-level frame (`lib.analysis.read_items`), written "
            "by `notebooks/05_analysis.ipynb`; clustered SEs in `results.csv`.\n")
    for m in metrics:
        text += f"\n## `{m}`\n\n" + _md_table(_wide(aggs[m]))
    runs.write_text(md, text)
    return [csv, md]


# ---------------------------------------------------------------------------- other stages' saved files
def loss_curves(params) -> pd.DataFrame:
    """The loss curves (`loss_curve.json`, lib.training) of the FT runs behind the current results, tidy: run,
    dataset, step, loss. Runs cached under runs/<p>/ft/ that no score file was made with (each FT score
    file's stamp names its run: `extra.ft`) are left out, their folders listed in `df.attrs["not_scored"]`."""
    from . import training

    extras = [runs.read_json(p).get("key", {}).get("extra")
              for p in (runs.run_dir(params) / "scores").glob("*.stamp.json")]
    scored = {e["ft"] for e in extras if isinstance(e, dict) and "ft" in e}
    rows, not_scored = [], []
    for info in training.ft_runs(params):
        folder = Path(info["folder"])
        if runs.read_json(runs.stamp_path(folder))["key_hash"] not in scored:
            not_scored.append(str(folder))
            continue
        curve = training.read_loss_curve(folder)
        run = f"{info['tag']} ({info['splitting']}, s{info['seed']})"
        rows += [dict(run=run, dataset=folder.parent.name, step=s, loss=l)
                 for s, l in zip(curve["step"], curve["loss"])]
    df = pd.DataFrame(rows, columns=["run", "dataset", "step", "loss"])
    df.attrs["not_scored"] = not_scored
    return df


def augmentation_stats(params) -> pd.DataFrame:
    """One row per augmentation set found under runs/<p>/augment/<dataset>/<kind>.stats.json (written by
    `lib.augmentation`): its scalar fields, with nested counts flattened (`dropped.<reason>`)."""
    rows = []
    for path in sorted((runs.run_dir(params) / "augment").glob("*/*.stats.json")):
        try:
            obj = runs.read_json(path)
        except (OSError, ValueError):
            continue
        row = {"dataset": path.parent.name, "kind": path.name.split(".")[0]}
        for k, v in obj.items():
            if isinstance(v, dict):
                row.update({f"{k}.{kk}": vv for kk, vv in v.items() if not isinstance(vv, (dict, list))})
            elif not isinstance(v, list):
                row[k] = v
        rows.append(row)
    return pd.DataFrame(rows)
