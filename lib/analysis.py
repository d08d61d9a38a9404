"""Aggregating the tidy results and testing the paper's claims C1-C7 against them.

The results are the rows `lib.scoring.read_results(params)` returns: one row per dataset x split x
inference-type subset x condition x seed, with the item count `n` and the accuracies `acc`, `acc_norm`,
`acc_mutual_info` (and `acc_any_valid` for syllogisms).

Two kinds of uncertainty, for two purposes:

- **Figures** follow the paper: a bar is the mean over the inference-type subsets of a split, its error bar
  the standard error over those subsets (`mean_subsets`, `se_subsets`). A split with one subset has no such
  SE; its bar falls back to the item-level SE below, and the caption says so.
- **Verdicts** (the claims table) use the accuracy pooled over all items of a split (`acc`) and an item-level
  binomial SE (`se`). Items are the sampling unit of every claim ("accuracy on the reversals"), and a split has
  few subsets (1-4): an SE over 2 subsets has one degree of freedom and a normal interval on it would be
  meaningless. The binomial variance uses p~ = (x + 1) / (n + 2) so that 0% or 100% on a small split keeps a
  non-zero SE. With several seeds, a condition's accuracy is the mean over seeds and
  SE^2 = mean over seeds of the item variance + (variance between seeds) / (number of seeds): the seeds share
  the test items, so averaging seeds does not shrink the item term.

Verdict rules (z = normal quantile of `analysis.ci_level`; m = `analysis.margin`; chance is exact):
- "A beats B": CI of acc(A) - acc(B), SE = sqrt(se_A^2 + se_B^2), holds if it lies above 0, does not hold if
  it lies below 0, inconclusive otherwise. A and B are scored on the same items, so this unpaired SE is
  conservative: a "holds" is safe, some true gaps read inconclusive.
- "above chance": CI of acc above chance holds, below chance does not hold, covering chance inconclusive.
- "at chance" (an equivalence test): holds if the CI lies within chance +- m; does not hold if the CI
  excludes chance and leaves that band; inconclusive otherwise (too few items to tell).
- "near zero" / "near ceiling": holds if the CI lies within [0, m] / [1 - m, 1]; does not hold if it lies
  wholly outside that band; inconclusive otherwise.
- "at most chance + m" (still hard): holds if the CI's upper end is below chance + m, does not hold if its
  lower end is above, inconclusive otherwise.
A claim is the conjunction of its parts and a part the conjunction of its tests ("often" parts: a majority),
so a claim holds when every tested part holds, does not hold when any part does not, and is inconclusive
otherwise; tests whose conditions are absent read "not tested (missing: ...)" and do not count.
"""
from __future__ import annotations

import re
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd

from . import runs
from .datasets import SPLITS  # the splits of every dataset

COLUMNS = ["dataset", "split", "subset", "condition", "model", "seed", "n", "acc", "acc_norm",
           "acc_mutual_info", "chance", "acc_any_valid"]
METRICS = ("acc", "acc_norm", "acc_mutual_info", "acc_any_valid")
CONDITIONS = ["pretrained", "icl", "icl_bm25", "icl_oracle", "ft", "ft_split_independent", "ft_split_cumulative",
              "ft_nosplit", "ft_repeat", "aug_local", "aug_global", "aug_both"]
SPLITTING = ("ft_nosplit", "ft_split_independent", "ft_split_cumulative")  # the sentence-splitting ablation
HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"

CLAIMS = {
    "C1": "Pretrained model with no data is at chance on every test (no contamination).",
    "C2": "Reversal curse: FT gets near-zero reversed accuracy; ICL over the data is near ceiling.",
    "C3": "Simple reversals: ICL beats FT (a weaker gap than the reversal curse's).",
    "C4": "Simple syllogisms: FT is somewhat above chance; ICL is much better.",
    "C5": "Semantic structure: ICL beats FT on reversals and syllogisms; FT reverses above chance; "
          "category holdout stays hard for everyone.",
    "C6": "Augmented FT improves FT on every split and often beats ICL.",
    "C7": "Sentence splitting improves FT at matched data and steps (on the semantic structure it hurt plain FT).",
}


# ------------------------------------------------------------------------------------------------ reading
def load_results(params) -> pd.DataFrame:
    """All results rows of the run `params` (via `lib.scoring.read_results`); empty when none exist yet."""
    folder = runs.run_dir(params) / "results"
    if not any(folder.glob("*.csv")):
        return pd.DataFrame(columns=COLUMNS)
    from . import scoring

    return scoring.read_results(params)


def base_condition(condition: str) -> str:
    """`ft__s1` -> `ft`: the seed suffix of a condition name (the `seed` column says which seed)."""
    return re.sub(r"__s\d+$", "", str(condition))


def tidy(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """A copy of `results` with seed suffixes dropped from condition names; one clear error for a table that
    lacks a column the analysis needs."""
    missing = [c for c in ("dataset", "split", "subset", "condition", "model", "seed", "n", "chance", metric)
               if c not in results.columns]
    if missing:
        raise ValueError(f"results table lacks the column(s) {missing} (expected the columns {COLUMNS})")
    df = results.copy()
    df["condition"] = df["condition"].map(base_condition)
    return df


# ------------------------------------------------------------------------------------------ aggregation
def aggregate(results: pd.DataFrame, metric: str = "acc",
              by=("model", "dataset", "split", "condition")) -> pd.DataFrame:
    """One row per `by` group: the split's accuracy pooled over items (`acc`, item-level `se`) and the mean over
    inference-type subsets (`mean_subsets`, `se_subsets`), each averaged over seeds, plus `n` (items per seed),
    `k_subsets`, `n_seeds`, `chance` (item-weighted) and `metric` (the column these numbers come from).

    `acc` here always names the aggregated value of `metric`, whichever metric that is.
    """
    by = list(by)
    out_cols = by + ["metric", "acc", "se", "mean_subsets", "se_subsets", "n", "k_subsets", "n_seeds", "chance"]
    df = tidy(results, metric)
    df = df[df[metric].notna() & (df["n"] > 0)]
    if df.empty:
        return pd.DataFrame(columns=out_cols)
    rows = []
    for key, g in df.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        per_seed = []  # (pooled acc, item variance, subset mean, n) per seed
        for _, s in g.groupby("seed"):
            n = s["n"].sum()
            x = (s[metric] * s["n"]).sum()
            p_tilde = (x + 1) / (n + 2)
            per_seed.append((x / n, p_tilde * (1 - p_tilde) / n, s[metric].mean(), n))
        ps = np.array([p[0] for p in per_seed])
        n_seeds = len(per_seed)
        between = ps.var(ddof=1) / n_seeds if n_seeds > 1 else 0.0
        se = float(np.sqrt(np.mean([p[1] for p in per_seed]) + between))
        # SE over subsets: subsets' accuracies averaged over seeds, SD over subsets / sqrt(k), plus seeds' term.
        by_subset = g.groupby("subset")[metric].mean()
        k = len(by_subset)
        sub_means = np.array([p[2] for p in per_seed])
        se_sub = (np.sqrt(by_subset.var(ddof=1) / k + (sub_means.var(ddof=1) / n_seeds if n_seeds > 1 else 0.0))
                  if k > 1 else np.nan)
        chance = float((g["chance"] * g["n"]).sum() / g["n"].sum())
        rows.append(key + (metric, float(ps.mean()), se, float(sub_means.mean()), float(se_sub),
                           int(round(np.mean([p[3] for p in per_seed]))), k, n_seeds, chance))
    return pd.DataFrame(rows, columns=out_cols)


def z_value(ci_level: float) -> float:
    """Two-sided normal quantile: 1.96 for 0.95."""
    if not 0 < ci_level < 1:
        raise ValueError(f"ci_level must lie in (0, 1), got {ci_level}")
    return NormalDist().inv_cdf(0.5 + ci_level / 2)


# ------------------------------------------------------------------------------------------ verdict rules
def _interval(lo, hi, *, above=None, below=None, within=None):
    """Verdict of an interval [lo, hi]: `within` (a band) tested first, then `above` / `below` a value."""
    if within is not None:
        a, b = within
        if a <= lo and hi <= b:
            return HOLDS
        if hi < a or lo > b:
            return FAILS
        return INCONCLUSIVE
    if above is not None:
        return HOLDS if lo > above else FAILS if hi < above else INCONCLUSIVE
    return HOLDS if hi < below else FAILS if lo > below else INCONCLUSIVE


def verdict(kind: str, a: dict, b: dict | None = None, *, z: float, margin: float,
            c: dict | None = None, d: dict | None = None) -> dict:
    """Test one statement about aggregated accuracies (rows of `aggregate`, as dicts with `acc`, `se`, `chance`).

    kinds: "greater" (a > b), "above_chance" (a), "at_chance" (a), "near_zero" (a), "near_ceiling" (a),
    "at_most_chance_plus_margin" (a), "gap_greater" ((a - b) > (c - d)).
    Returns {"estimate", "ci_lo", "ci_hi", "verdict", "rule"}.
    """
    if kind in ("greater", "gap_greater"):
        est, var = a["acc"] - b["acc"], a["se"] ** 2 + b["se"] ** 2
        if kind == "gap_greater":
            est, var = est - (c["acc"] - d["acc"]), var + c["se"] ** 2 + d["se"] ** 2
        lo, hi = est - z * np.sqrt(var), est + z * np.sqrt(var)
        rule = "CI of the difference above 0" if kind == "greater" else "CI of the difference of gaps above 0"
        return dict(estimate=est, ci_lo=lo, ci_hi=hi, verdict=_interval(lo, hi, above=0.0), rule=rule)
    est, ch = a["acc"], a["chance"]
    lo, hi = est - z * a["se"], est + z * a["se"]
    if kind == "above_chance":
        v, rule = _interval(lo, hi, above=ch), f"CI above chance ({ch:.2f})"
    elif kind == "at_chance":
        v = _interval(lo, hi, within=(ch - margin, ch + margin))
        if v == INCONCLUSIVE and (lo > ch or hi < ch):  # clearly off chance, by more than the band allows
            v = FAILS
        rule = f"CI within chance {ch:.2f} +- {margin:g}"
    elif kind == "near_zero":
        v, rule = _interval(lo, hi, within=(-np.inf, margin)), f"CI within [0, {margin:g}]"
    elif kind == "near_ceiling":
        v, rule = _interval(lo, hi, within=(1 - margin, np.inf)), f"CI within [{1 - margin:g}, 1]"
    elif kind == "at_most_chance_plus_margin":
        v, rule = _interval(lo, hi, below=ch + margin), f"CI below chance + {margin:g} ({ch + margin:.2f})"
    else:
        raise ValueError(f"unknown verdict kind {kind!r}")
    return dict(estimate=est, ci_lo=lo, ci_hi=hi, verdict=v, rule=rule)


def combine(verdicts, mode: str = "all") -> str:
    """A part or claim from its tests: "all" (every tested one holds; any failure fails) or "often" (majority)."""
    tested = [v for v in verdicts if not str(v).startswith("not tested")]
    if not tested:
        return "not tested"
    if mode == "often":
        if sum(v == HOLDS for v in tested) * 2 >= len(tested) and any(v == HOLDS for v in tested):
            return HOLDS
        return FAILS if sum(v == FAILS for v in tested) * 2 > len(tested) else INCONCLUSIVE
    if any(v == FAILS for v in tested):
        return FAILS
    return HOLDS if all(v == HOLDS for v in tested) else INCONCLUSIVE


# ------------------------------------------------------------------------------------------ the claims
def _plan(augmented: str):
    """The tests of every claim: (claim, part, mode, kind, dataset, split, conditions, description)."""
    plan = []
    for ds, splits in SPLITS.items():                                                          # C1
        for sp in splits:
            plan.append(("C1", "C1", "all", "at_chance", ds, sp, ["pretrained"], "pretrained at chance"))
    plan += [
        ("C2", "C2a", "all", "near_zero", "reversal_curse", "reversal", ["ft"], "FT reversed accuracy near zero"),
        ("C2", "C2b", "all", "near_ceiling", "reversal_curse", "reversal", ["icl"], "ICL reversed accuracy near ceiling"),
        ("C2", "C2c", "all", "greater", "reversal_curse", "reversal", ["icl", "ft"], "ICL beats FT on reversals"),
        ("C3", "C3a", "all", "greater", "simple_reversals", "reversal", ["icl", "ft"], "ICL beats FT on reversals"),
        ("C3", "C3b", "all", "gap_greater", ["reversal_curse"] * 2 + ["simple_reversals"] * 2, "reversal",
         ["icl", "ft", "icl", "ft"],
         "ICL-FT gap smaller than on the reversal curse"),
        ("C4", "C4a", "all", "above_chance", "syllogisms", "syllogism", ["ft"], "FT above chance"),
        ("C4", "C4b", "all", "greater", "syllogisms", "syllogism", ["icl", "ft"], "ICL beats FT"),
        ("C5", "C5a", "all", "greater", "semantic_structure", "reversal", ["icl", "ft"], "ICL beats FT on reversals"),
        ("C5", "C5b", "all", "greater", "semantic_structure", "syllogism", ["icl", "ft"], "ICL beats FT on syllogisms"),
        ("C5", "C5c", "all", "above_chance", "semantic_structure", "reversal", ["ft"], "FT reverses above chance"),
    ]
    for cond in ["icl", "ft", augmented]:
        plan.append(("C5", "C5d", "all", "at_most_chance_plus_margin", "semantic_structure", "holdout", [cond],
                     f"category holdout stays hard ({cond})"))
    for ds, splits in SPLITS.items():                                                          # C6
        for sp in splits:
            plan.append(("C6", "C6a", "all", "greater", ds, sp, [augmented, "ft"], "augmented FT beats FT"))
    for ds, splits in SPLITS.items():
        for sp in splits:
            plan.append(("C6", "C6b", "often", "greater", ds, sp, [augmented, "icl"], "augmented FT beats ICL"))
    for ds, splits in SPLITS.items():                                                          # C7
        for sp in splits:
            if ds == "semantic_structure":
                plan.append(("C7", "C7c", "all", "greater", ds, sp, ["ft_nosplit", "ft_split_independent"],
                             "semantic structure: unsplit FT beats split FT"))
            else:
                plan.append(("C7", "C7a", "all", "greater", ds, sp, ["ft_split_independent", "ft_nosplit"],
                             "independent splitting beats unsplit FT"))
                plan.append(("C7", "C7b", "all", "greater", ds, sp, ["ft_split_cumulative", "ft_nosplit"],
                             "cumulative splitting beats unsplit FT"))
    return plan


def _fmt(row: dict) -> str:
    return f"{row['acc']:.2f}±{row['se']:.2f} (n={row['n']}{', ' + str(row['n_seeds']) + ' seeds' if row['n_seeds'] > 1 else ''})"


def claims_table(results: pd.DataFrame, *, metric: str = "acc", ci_level: float = 0.95, margin: float = 0.1,
                 augmented: str = "aug_both", beside: str | None = None) -> pd.DataFrame:
    """One row per test of a claim C1-C7 (see the module docstring for the rules), computed from `results`.

    Columns: model, claim, part, test, dataset, split, conditions, numbers (acc±SE per condition), estimate,
    ci_lo, ci_hi, rule, verdict, and the same test's estimate and verdict on the metric `beside`
    (acc_mutual_info, or acc when `metric` is acc_mutual_info), then part_verdict and claim_verdict.
    A dataset or condition absent from `results` gives one "not tested (missing: ...)" row for that
    dataset and part instead of an error. Several models give one block of rows per model.
    """
    if augmented not in CONDITIONS or not augmented.startswith("aug_"):
        raise ValueError(f"augmented condition {augmented!r} is not one of aug_local, aug_global, aug_both")
    beside = beside or ("acc_mutual_info" if metric != "acc_mutual_info" else "acc")
    z = z_value(ci_level)
    cols = ["model", "claim", "part", "test", "dataset", "split", "conditions", "numbers", "estimate", "ci_lo",
            "ci_hi", "rule", "verdict", f"estimate_{beside}", f"verdict_{beside}", "part_verdict", "claim_verdict"]
    results = tidy(results, metric) if len(results) else pd.DataFrame(columns=COLUMNS)
    models = sorted(results["model"].dropna().unique()) or [""]
    out = []
    for model in models:
        res = results[results["model"] == model] if model else results
        aggs = {m: {(r["dataset"], r["split"], r["condition"]): r
                    for r in aggregate(res, m).to_dict("records")}
                for m in (metric, beside, "acc_any_valid") if m in res}
        present = {(d, c) for (d, _s, c) in aggs.get(metric, {})}
        datasets_present = {d for d, _ in present}
        rows, reported_missing = [], set()
        plan = _plan(augmented)
        ablation = {d for d, c in present if c in SPLITTING}
        for claim, part, mode, kind, ds, sp, conds, desc in plan:
            dss = ds if isinstance(ds, list) else [ds] * len(conds)
            ds = " vs ".join(dict.fromkeys(dss))
            need = list(dict.fromkeys(zip(dss, conds)))
            missing = list(dict.fromkeys(d if d not in datasets_present else f"{d}/{c}"
                                         for d, c in need if (d, c) not in present))
            if claim == "C7" and ds not in ablation:  # the ablation runs on the datasets params choose
                continue
            base = dict(model=model, claim=claim, part=part, test=desc, dataset=ds, split=sp,
                        conditions=" vs ".join(conds), rule="", numbers="")
            if missing:  # one "not tested" row per part and missing thing, not one per split
                if (part, tuple(missing)) not in reported_missing:
                    reported_missing.add((part, tuple(missing)))
                    rows.append({**base, "split": "*", "verdict": f"not tested (missing: {', '.join(missing)})"})
                continue
            args = [aggs[metric].get((d, sp, c)) for d, c in zip(dss, conds)]
            if any(a is None for a in args):
                rows.append({**base, "verdict": f"not tested (missing: split {sp} of {ds})"})
                continue
            row = {**base, **verdict(kind, *args[:2], z=z, margin=margin, **dict(zip("cd", args[2:]))),
                   "numbers": "; ".join(f"{c} {_fmt(a)}" for c, a in zip(conds, args))}
            if kind not in ("greater", "gap_greater"):
                row["numbers"] += f"; chance {args[0]['chance']:.2f}"
            any_valid = [aggs.get("acc_any_valid", {}).get((d, sp, c)) for d, c in zip(dss, conds)]
            if all(a is not None for a in any_valid):  # syllogisms: accuracy against any valid conclusion
                row["numbers"] += "; any valid: " + ", ".join(f"{c} {a['acc']:.2f}" for c, a in zip(conds, any_valid))
            b_args = [aggs.get(beside, {}).get((d, sp, c)) for d, c in zip(dss, conds)]
            if all(a is not None for a in b_args):
                rb = verdict(kind, *b_args[:2], z=z, margin=margin, **dict(zip("cd", b_args[2:])))
                row[f"estimate_{beside}"], row[f"verdict_{beside}"] = rb["estimate"], rb["verdict"]
            rows.append(row)
        if not any(r["claim"] == "C7" for r in rows):
            rows.append(dict(model=model, claim="C7", part="C7a", test="sentence-splitting ablation", dataset="*",
                             split="*", conditions=" vs ".join(SPLITTING), rule="", numbers="",
                             verdict=f"not tested (missing: {', '.join(SPLITTING)} on every dataset)"))
        df = pd.DataFrame(rows, columns=cols)
        modes = {p[1]: p[2] for p in plan}
        df["part_verdict"] = df["part"].map(
            {part: combine(g["verdict"], modes[part]) for part, g in df.groupby("part")})
        claim_v = {c: combine(g.drop_duplicates("part")["part_verdict"]) for c, g in df.groupby("claim")}
        df["claim_verdict"] = df["claim"].map(claim_v)
        out.append(df)
    return pd.concat(out, ignore_index=True)


def claims_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per model and claim: the statement, its verdict and how many tests held / failed / were open."""
    rows = []
    for (model, claim), g in table.groupby(["model", "claim"], sort=True):
        v = g["verdict"].astype(str)
        rows.append(dict(model=model, claim=claim, statement=CLAIMS[claim], verdict=g["claim_verdict"].iloc[0],
                         parts="; ".join(f"{p}: {pv}" for p, pv in g.drop_duplicates("part")[["part", "part_verdict"]]
                                         .itertuples(index=False)),
                         holds=int((v == HOLDS).sum()), fails=int((v == FAILS).sum()),
                         inconclusive=int((v == INCONCLUSIVE).sum()),
                         not_tested=int(v.str.startswith("not tested").sum())))
    return pd.DataFrame(rows)


def _md_table(df: pd.DataFrame) -> str:
    def cell(x):
        if isinstance(x, float):
            return "" if np.isnan(x) else f"{x:.3f}"
        return str(x).replace("|", "\\|")
    head = "| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns) + "\n"
    return head + "".join("| " + " | ".join(cell(x) for x in r) + " |\n" for r in df.itertuples(index=False))


def write_claims(table: pd.DataFrame, outdir: Path, *, params_name: str, metric: str, ci_level: float,
                 margin: float) -> list[Path]:
    """Write `claims.csv` (every test) and `claims.md` (summary, then every test) into `outdir`, atomically."""
    outdir = Path(outdir)
    csv, md = outdir / "claims.csv", outdir / "claims.md"
    runs.write_text(csv, table.to_csv(index=False))
    models = ", ".join(m for m in table["model"].unique() if m) or "(no results)"
    beside = next(c.removeprefix("verdict_") for c in table.columns if c.startswith("verdict_"))
    text = (f"# Claims C1-C7 tested on the results of params `{params_name}`\n\n"
            f"Model: {models}. Metric: `{metric}` (its verdicts; the `_{beside}` "
            f"columns repeat each test on the other metric). Intervals: {ci_level:.0%} normal CIs from item-level "
            f"binomial SEs (pooled over the inference-type subsets of a split; over seeds where there are several). "
            f"Band for 'at chance' / 'near zero' / 'near ceiling': {margin:g}. "
            "The rules are in `lib/analysis.py`; this file is written by `notebooks/05_analysis.ipynb`.\n\n"
            "## Summary\n\n" + _md_table(claims_summary(table)) + "\n## Every test\n\n"
            + _md_table(table.drop(columns=["claim_verdict"])))
    runs.write_text(md, text)
    return [csv, md]


def accuracy_table(results: pd.DataFrame, metric: str = "acc") -> pd.DataFrame:
    """One row per model x dataset x split, one column per condition (in `CONDITIONS` order): the split's
    pooled accuracy (`aggregate`'s `acc`, mean over seeds), beside `n` (items; "lo-hi" when conditions scored
    different numbers of items) and `chance`."""
    return _wide(aggregate(results, metric))


def _wide(agg: pd.DataFrame) -> pd.DataFrame:
    """accuracy_table of rows `aggregate` returned."""
    if agg.empty:
        return pd.DataFrame(columns=["model", "dataset", "split", "n", "chance"])
    keys = ["model", "dataset", "split"]
    wide = agg.pivot_table(index=keys, columns="condition", values="acc", aggfunc="first")
    extra = sorted(c for c in wide.columns if c not in CONDITIONS)
    wide = wide[[c for c in CONDITIONS if c in wide.columns] + extra]
    info = agg.groupby(keys).agg(n_lo=("n", "min"), n_hi=("n", "max"), chance=("chance", "max"))
    info.insert(0, "n", [f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in zip(info.pop("n_lo"), info.pop("n_hi"))])
    out = info.join(wide).reset_index()
    out["_order"] = [SPLITS.get(d, []).index(s) if s in SPLITS.get(d, []) else 99
                     for d, s in zip(out["dataset"], out["split"])]
    return out.sort_values(["model", "dataset", "_order", "split"]).drop(columns="_order").reset_index(drop=True)


def write_results(results: pd.DataFrame, outdir: Path, *, params_name: str,
                  metrics=("acc", "acc_mutual_info")) -> list[Path]:
    """Write `results.csv` (`aggregate` rows of every metric) and `results.md` (an `accuracy_table` per metric)
    into `outdir`, atomically: the accuracies the figures draw and the claims test, as numbers."""
    outdir = Path(outdir)
    csv, md = outdir / "results.csv", outdir / "results.md"
    aggs = {m: aggregate(results, m) for m in metrics}
    runs.write_text(csv, pd.concat(aggs.values()).to_csv(index=False))
    text = (f"# Accuracy per split and condition, params `{params_name}`\n\n"
            "Pooled over the split's items (mean over seeds where there are several); `n` items per split. "
            "Written by `notebooks/05_analysis.ipynb` (`lib.analysis.write_results`); SEs in `results.csv`.\n")
    for m in metrics:
        text += f"\n## `{m}`\n\n" + _md_table(_wide(aggs[m]))
    runs.write_text(md, text)
    return [csv, md]


# ---------------------------------------------------------------------------- other stages' saved files
def scored_ft_runs(params) -> set[str]:
    """Stamp hashes of the FT runs (lib.training.finetune folders) that the current results were scored with:
    each FT results file's stamp names its run (`extra.ft`)."""
    out = set()
    for stamp in (runs.run_dir(params) / "results").glob("*.stamp.json"):
        extra = runs.read_json(stamp).get("key", {}).get("extra")
        if isinstance(extra, dict) and "ft" in extra:
            out.add(extra["ft"])
    return out


def loss_curves(params) -> pd.DataFrame:
    """The loss curves (`loss_curve.json`, lib.training) of the FT runs behind the current results, tidy: run,
    dataset, step, loss. Runs cached under runs/<p>/ft/ by earlier params or code that no results file was
    scored with are left out; their folders are listed in `df.attrs["not_scored"]`."""
    from . import training

    scored, rows, not_scored = scored_ft_runs(params), [], []
    for info in training.ft_runs(params):
        folder = Path(info["folder"])
        if runs.read_json(runs.stamp_path(folder))["key_hash"] not in scored:
            not_scored.append(str(folder))
            continue
        curve = training.read_loss_curve(folder)
        run = f"{info['tag']} ({info['splitting']}, s{info['seed']})"
        rows += [dict(run=run, dataset=folder.parent.name, step=s, loss=l) for s, l in zip(curve["step"], curve["loss"])]
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
