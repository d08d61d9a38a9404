"""The item-level layer, the claims table's tests and the figures, on small frames and score files the tests make."""
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lib import analysis as A
from lib import params as P
from lib import plotting, runs


def frame(dataset, split, condition, correct, *, clusters=None, seed=0, chance=0.25, subsets=None, model="m",
          ids=None, mi=None):
    """Item rows (every metric) of one arm: item i correct iff correct[i] (mi: other correctness for acc_mutual_info)."""
    n = len(correct)
    clusters = clusters if clusters is not None else [f"c{i}" for i in range(n)]
    subsets = subsets or ["s"] * n
    ids = ids or [f"{split}{i}" for i in range(n)]
    out = []
    for metric in A.METRICS:
        cs = mi if (metric == "acc_mutual_info" and mi is not None) else correct
        out += [dict(model=model, dataset=dataset, split=split, subset=subsets[i], cluster=str(clusters[i]),
                     item=ids[i], condition=condition, seed=seed, metric=metric, correct=float(cs[i]),
                     margin=1.0 if cs[i] else -1.0, chosen=0 if cs[i] else 1, chance=chance, n_options=4)
                for i in range(n)]
    return out


def items(*groups):
    return pd.DataFrame([r for g in groups for r in g], columns=A.ITEM_COLUMNS)


def one_row(t, part, split=None):
    sel = t[(t["part"] == part) & ((t["split"] == split) if split else True)]
    assert len(sel) == 1, sel
    return sel.iloc[0]


def bern(n, k):
    """n items, the first k correct."""
    return [1] * k + [0] * (n - k)


# ------------------------------------------------------------------------------------------ reading
def score_line(i, split, correct, *, golds=(0,), n_opt=4, cluster=None):
    ll = [-5.0] * n_opt
    best = golds[0] if correct else next(j for j in range(n_opt) if j not in golds)
    ll[best] = -1.0
    return {"id": f"{split}{i}", "loglikelihoods": ll, "n_tokens": [1] * n_opt, "n_chars": [4] * n_opt,
            "loglikelihoods_uncond": [0.0] * n_opt, "pred": best, "pred_norm": best, "pred_mi": best,
            "gold": golds[0], "split": split, "subset": "", "cluster": cluster or f"p{i // 2}", "golds": list(golds)}


def write_scores(p, dataset, condition, lines, stamp=True):
    folder = runs.run_dir(p)
    sp = folder / "scores" / f"{dataset}__{condition}.jsonl"
    runs.write_jsonl(sp, lines)
    if stamp:
        runs.mark_fresh(sp, {"unit": condition})


def test_read_items_takes_only_the_pairs_the_params_produce(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "RUNS", tmp_path)
    p = P.load("smoke")
    write_scores(p, "syllogisms", "pretrained", [score_line(i, "syllogism", i < 3) for i in range(6)])
    write_scores(p, "syllogisms", "ft", [score_line(i, "syllogism", True) for i in range(6)])
    write_scores(p, "syllogisms", "icl_weird", [score_line(0, "syllogism", True)])       # no such condition
    write_scores(p, "nodataset", "ft", [score_line(0, "x", True)])                      # no such dataset
    write_scores(p, "syllogisms", "icl", [score_line(0, "syllogism", True)], stamp=False)  # unfinished write
    df = A.read_items(p)
    assert set(df["condition"]) == {"pretrained", "ft"} and set(df["dataset"]) == {"syllogisms"}
    assert len(df) == 2 * 6 * len(A.METRICS)
    acc = df[df["metric"] == "acc"]
    assert acc[acc["condition"] == "pretrained"]["correct"].sum() == 3
    assert set(acc["cluster"]) == {"p0", "p1", "p2"} and (acc["margin"].abs() == 4.0).all()
    assert "syllogisms__icl" in df.attrs["missing"]


def test_seed_suffixes_follow_training_and_seeds_are_read(tmp_path, monkeypatch):
    from lib import training

    monkeypatch.setattr(runs, "RUNS", tmp_path)
    p = P.load("smoke", {"finetune.seeds": [0, 1]})
    names = {c for _, c, base, _ in A.expected_conditions(p) if base == "ft"}
    assert names == {training.condition_name("ft", s, p) for s in (0, 1)} == {"ft__s0", "ft__s1"}
    one = P.load("smoke")
    assert {c for _, c, b, _ in A.expected_conditions(one) if b == "ft"} == {training.condition_name("ft", 0, one)}
    for s in (0, 1):
        write_scores(p, "syllogisms", f"ft__s{s}", [score_line(i, "syllogism", i <= s) for i in range(4)])
    df = A.read_items(p)
    assert sorted(df["seed"].unique()) == [0, 1] and set(df["condition"]) == {"ft"}
    agg = A.summarize(df).iloc[0]
    assert agg["acc"] == pytest.approx((1 / 4 + 2 / 4) / 2) and agg["n_seeds"] == 2 and agg["n"] == 4


def test_item_rows_margin_with_several_golds():
    s = {"id": "a", "loglikelihoods": [-1.0, -0.5, -3.0], "n_chars": [1, 1, 1], "loglikelihoods_uncond": [0, 0, 0],
         "pred": 1, "pred_norm": 1, "pred_mi": 1, "gold": 0, "golds": [0, 1], "split": "s"}
    r = A.item_rows([s], dataset="d", condition="c", seed=0)[0]
    assert r["correct"] == 1.0 and r["margin"] == pytest.approx(-0.5 - -3.0) and r["chance"] == pytest.approx(2 / 3)
    s1 = {**s, "golds": [0], "pred": 1}
    r1 = A.item_rows([s1], dataset="d", condition="c", seed=0)[0]
    assert r1["correct"] == 0.0 and r1["margin"] == pytest.approx(-1.0 - -0.5)


# ------------------------------------------------------------------------------------------ estimates
def test_cluster_variance_by_hand():
    y = np.array([1, 1, 0, 0, 1, 0.0])
    mean, var, g = A.cluster_variance(y, ["a", "a", "b", "b", "c", "c"])
    totals = np.array([1.0, -1.0, 0.0])  # cluster sums of y - mean: (1,1), (0,0), (1,0) around 0.5
    assert g == 3 and mean == pytest.approx(0.5)
    assert var == pytest.approx(3 / 2 * (totals ** 2).sum() / 36)
    _, naive, n = A.cluster_variance(y, range(6))
    assert n == 6 and naive == pytest.approx(np.var(y, ddof=1) / 6)


def test_paired_se_is_smaller_than_unpaired_when_arms_share_difficulty():
    # 100 items; A right on 70, B on 50, B's right items a subset of A's (correlated difficulty)
    a, b = np.array(bern(100, 70), float), np.array(bern(100, 50), float)
    paired = A.estimate(a, range(100), b)
    ea, eb = A.estimate(a, range(100)), A.estimate(b, range(100))
    assert paired["est"] == pytest.approx(0.2)
    d = a - b
    floor = ((20 + 1) / 102 - (20 / 102) ** 2) / 100          # variance_floor: one pseudo-pair
    assert A.variance_floor(d, paired=True) == pytest.approx(floor)
    assert paired["se"] == pytest.approx(math.sqrt(0.2 * 0.8 / 99))     # CR1 = n/(n-1) var(d)/n
    tie = A.estimate(np.zeros(30), range(30), np.zeros(30))
    assert tie["se"] == pytest.approx(math.sqrt(1 / 32 / 30))              # the floor, only when var is 0
    assert paired["se"] < 0.7 * math.hypot(ea["se"], eb["se"])


def test_seed_spread_enters_the_se():
    Y = np.array([bern(50, 20), bern(50, 30)], float)
    e = A.estimate(Y, range(50))
    y = Y.mean(axis=0)
    _, var, _ = A.cluster_variance(y, range(50))
    assert e["est"] == pytest.approx(0.5) and e["seeds"] == 2
    assert e["se"] ** 2 == pytest.approx(var + np.var([0.4, 0.6], ddof=1) / 2)


# ------------------------------------------------------------------------------------------ verdicts
def test_clear_gap_holds_with_mdd_and_n_to_decide():
    t = A.claims_table(items(frame("reversal_curse", "reversal", "icl", bern(100, 90)),
                             frame("reversal_curse", "reversal", "ft", bern(100, 10))))
    r = one_row(t, "C2c")
    assert r["verdict"] == A.HOLDS and r["estimate"] == pytest.approx(0.8) and r["ci_lo"] > 0
    # every pair discordant or both right/wrong: d = 1 on 80 items, 0 on 20 -> CR variance 0.16 / 99
    assert r["se"] == pytest.approx(math.sqrt(0.8 * 0.2 / 99))
    assert r["mdd"] == pytest.approx((A.t_ppf(0.975, 99) + A.t_ppf(0.8, 99)) * r["se"])
    assert r["n_to_decide"] < 100
    # FT 10/100: its CI reaches above 0.1, so "near zero" is open at this n, and the table says how many it needs
    assert one_row(t, "C2a")["verdict"] == A.INCONCLUSIVE and one_row(t, "C2a")["n_to_decide"] > 100


def test_ties_read_no_improvement_and_small_gaps_inconclusive():
    # augmented FT and FT both 0.00 on 100 items: the difference's CI is within +-0.1
    t = A.claims_table(items(frame("syllogisms", "syllogism", "aug_both", bern(100, 0)),
                             frame("syllogisms", "syllogism", "ft", bern(100, 0))))
    r = one_row(t, "C6a")
    assert r["verdict"] == A.FAILS and "no improvement" in r["why"]
    small = A.claims_table(items(frame("syllogisms", "syllogism", "aug_both", bern(12, 6)),
                                 frame("syllogisms", "syllogism", "ft", bern(12, 5))))
    rs = one_row(small, "C6a")
    assert rs["verdict"] == A.INCONCLUSIVE and rs["n_to_decide"] > 12


def test_clustering_widens_the_interval():
    n = 60
    a, b = bern(n, 40), bern(n, 20)
    own = A.claims_table(items(frame("syllogisms", "syllogism", "icl", a), frame("syllogisms", "syllogism", "ft", b)))
    shared = [f"k{i // 20}" for i in range(n)]  # 3 clusters of 20: the gap rests on 3 facts
    cl = A.claims_table(items(frame("syllogisms", "syllogism", "icl", a, clusters=shared),
                              frame("syllogisms", "syllogism", "ft", b, clusters=shared)))
    r_own, r_cl = one_row(own, "C4b"), one_row(cl, "C4b")
    assert r_own["verdict"] == A.HOLDS and r_cl["clusters"] == 3
    assert r_cl["ci_hi"] - r_cl["ci_lo"] > r_own["ci_hi"] - r_own["ci_lo"]


def test_at_chance_near_zero_near_ceiling():
    v = lambda kind, k, n, ch=0.25: A._test(items(frame("d", "s", "c", bern(n, k), chance=ch)), kind, ["d"], "s",
                                            ["c"], "acc", 0.1, 0.95)["verdict"]
    assert v("at_chance", 500, 1000, 0.5) == A.HOLDS
    assert v("at_chance", 5, 10, 0.5) == A.INCONCLUSIVE
    assert v("at_chance", 180, 200, 0.5) == A.FAILS
    assert v("near_zero", 0, 200) == A.HOLDS and v("near_zero", 100, 200) == A.FAILS
    assert v("near_ceiling", 199, 200) == A.HOLDS and v("near_ceiling", 100, 200) == A.FAILS
    assert v("at_most_chance_plus_margin", 50, 200) == A.HOLDS


def test_missing_and_unlearned_arms_are_not_tested():
    df = items(frame("reversal_curse", "forward", "ft", bern(40, 10)), frame("reversal_curse", "reversal", "ft", bern(40, 0)),
               frame("reversal_curse", "forward", "icl", bern(40, 39)),
               frame("reversal_curse", "reversal", "icl", bern(40, 38)))
    t = A.claims_table(df, learned_threshold=0.9)
    assert one_row(t, "C2a")["verdict"] == "not tested: ft did not learn reversal_curse (forward 0.25 < 0.9)"
    assert one_row(t, "C2b")["verdict"] == A.HOLDS or one_row(t, "C2b")["verdict"] == A.INCONCLUSIVE
    assert one_row(t, "C4a")["verdict"] == "not tested (missing: syllogisms/ft)"
    checks = A.learning_checks(df, 0.9).set_index("condition")
    assert not checks.loc["ft", "learned"] and checks.loc["icl", "learned"]
    assert A.claims_table(df, learned_threshold=0.0).pipe(one_row, "C2a")["verdict"] != \
        "not tested: ft did not learn reversal_curse (forward 0.25 < 0.9)"
    empty = A.claims_table(pd.DataFrame(columns=A.ITEM_COLUMNS))
    assert set(A.claims_summary(empty)["verdict"]) == {"not tested"} and set(empty["claim"]) == set(A.CLAIMS)


def test_both_reversal_pools_are_tested():
    df = items(*(frame("reversal_curse", sp, c, bern(50, k)) for sp in ("reversal", "reversal_p2d")
                 for c, k in (("icl", 48), ("ft", 1))))
    t = A.claims_table(df)
    assert set(t.loc[t["part"] == "C2c", "split"]) == {"reversal", "reversal_p2d"}


def test_holm_decides_a_claim_of_many_tests():
    # C1 over 3 splits: one pretrained split far off chance -> "does not hold" survives Holm
    df = items(frame("semantic_structure", "rephrase", "pretrained", bern(200, 50)),
               frame("semantic_structure", "reversal", "pretrained", bern(200, 50)),
               frame("semantic_structure", "holdout", "pretrained", bern(200, 150)))
    t = A.claims_table(df)
    c1 = t[t["claim"] == "C1"]
    assert (c1["p_fails_holm"] >= c1["p_fails"]).all()
    assert c1["claim_verdict"].iloc[0] == A.FAILS


def test_metric_beside_and_bad_condition():
    df = items(frame("reversal_curse", "reversal", "icl", bern(200, 180), mi=bern(200, 40)),
               frame("reversal_curse", "reversal", "ft", bern(200, 20), mi=bern(200, 160)))
    r = one_row(A.claims_table(df), "C2c")
    assert r["verdict"] == A.HOLDS and r["verdict_acc_mutual_info"] == A.FAILS
    with pytest.raises(ValueError, match="aug_nothing"):
        A.claims_table(df, augmented="aug_nothing")
    with pytest.raises(ValueError, match="correct"):
        A.summarize(df.drop(columns="correct"))


def test_gap_comparison_uses_both_datasets():
    df = items(frame("reversal_curse", "reversal", "icl", bern(300, 285)), frame("reversal_curse", "reversal", "ft", bern(300, 15)),
               frame("simple_reversals", "reversal", "icl", bern(300, 180), chance=0.5),
               frame("simple_reversals", "reversal", "ft", bern(300, 150), chance=0.5))
    r = one_row(A.claims_table(df), "C3b")
    assert r["estimate"] == pytest.approx(0.9 - 0.1) and r["verdict"] == A.HOLDS


def test_write_claims_results_and_accuracy_table(tmp_path):
    df = items(frame("reversal_curse", "forward", "icl", bern(20, 20)), frame("reversal_curse", "reversal", "icl", bern(20, 10)),
               frame("reversal_curse", "reversal", "ft", bern(20, 2), subsets=["a"] * 10 + ["b"] * 10),
               frame("reversal_curse", "forward", "ft", bern(20, 12)))
    t = A.claims_table(df)
    paths = A.write_claims(t, tmp_path, params_name="unit", metric="acc", ci_level=0.95, margin=0.1,
                           checks=A.learning_checks(df, 0.9))
    assert [p.name for p in paths] == ["claims.csv", "claims.md"]
    md = (tmp_path / "claims.md").read_text()
    assert "Holm" in md and "| C2 |" in md and "Learning checks" in md
    wide = A.accuracy_table(df)
    assert list(wide["split"]) == ["forward", "reversal"]
    assert list(wide.columns) == ["model", "dataset", "split", "n", "chance", "icl", "ft"]
    assert wide.set_index("split").loc["reversal", "ft"] == pytest.approx(0.1)
    paths = A.write_results(df, tmp_path, params_name="unit")
    back = pd.read_csv(tmp_path / "results.csv")
    assert set(back["metric"]) == {"acc", "acc_mutual_info"} and len(back) == 8
    sub = A.summarize(df).set_index(["split", "condition"]).loc[("reversal", "ft")]
    assert sub["k_subsets"] == 2 and sub["mean_subsets"] == pytest.approx(0.1)


def test_reads_other_stages_files(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "RUNS", tmp_path)
    for name, key, loss in (("ft-abc", "current", [3.0, 2.0, 1.5]), ("ft-old", "older code", [9.0, 9.0, 9.0])):
        folder = tmp_path / "unit" / "ft" / "syllogisms" / name  # as lib.training.finetune leaves it
        runs.write_json(folder / "loss_curve.json", {"step": [1, 2, 3], "loss": loss})
        runs.write_json(folder / "train_info.json", {"tag": "ft", "splitting": "independent", "seed": 0})
        runs.mark_fresh(folder, key)
    sp = tmp_path / "unit" / "scores" / "syllogisms__ft.jsonl"
    runs.write_jsonl(sp, [])
    runs.mark_fresh(sp, {"extra": {"ft": runs.key_hash("current")}})
    runs.write_json(tmp_path / "unit" / "augment" / "syllogisms" / "local.stats.json",
                    {"kind": "local", "kept": 7, "dropped": {"copy": 2}})
    curves = A.loss_curves("unit")
    assert list(curves["loss"]) == [3.0, 2.0, 1.5] and set(curves["run"]) == {"ft (independent, s0)"}
    assert [Path(f).name for f in curves.attrs["not_scored"]] == ["ft-old"]
    stats = A.augmentation_stats("unit")
    assert stats.loc[0, "kept"] == 7 and stats.loc[0, "dropped.copy"] == 2
    assert plotting.figS_loss_curves(curves, tmp_path / "figs", params_name="unit")[0].exists()


# ------------------------------------------------------------------------------------------ figures
def synthetic_items():
    out = []
    for ds, splits in A.SPLITS.items():
        for sp in splits + (["reversal_p2d"] if ds == "reversal_curse" else []):
            for i, cond in enumerate(A.CONDITIONS):
                out += frame(ds, sp, cond, bern(20, 4 + i), subsets=["a"] * 10 + ["b"] * 10,
                             clusters=[f"k{j // 4}" for j in range(20)])
    for sp in ("known", "inferred"):  # a dataset of one's own (datasets.<name>: {path: ...})
        out += [r for cond in ("pretrained", "ft", "icl", "icl_fit", "aug_both")
                for r in frame("mine", sp, cond, bern(20, 9), clusters=[f"k{j // 4}" for j in range(20)])]
    return items(out)


def test_own_dataset_gets_its_claim_and_figure(tmp_path):
    df = items(*(frame("mine", sp, c, bern(60, k), clusters=[f"p{j // 2}" for j in range(60)])
                 for sp, c, k in (("known", "icl", 57), ("known", "ft", 58), ("known", "aug_both", 58),
                                  ("inferred", "icl", 50), ("inferred", "ft", 15), ("inferred", "aug_both", 40))))
    df["check"] = df["split"] == "known"  # as read_items flags the manifest's learning_check split
    t = A.claims_table(df, learned_threshold=0.9)
    own = t[(t["claim"] == "own:mine") & (t["split"] != "*")]  # "*": not tested, icl_fit missing
    assert set(own["split"]) == {"inferred"} and set(own["part"]) >= {"mine:a", "mine:b", "mine:c"}
    r = one_row(t, "mine:a")
    assert r["verdict"] == A.HOLDS and r["checks"] == "icl known 0.95; ft known 0.97"
    assert one_row(t, "mine:b")["verdict"] == A.HOLDS
    assert "own:mine" in set(A.claims_summary(t)["claim"]) and not (t["claim"] == "C6").any() or \
        (t.loc[t["claim"] == "C6", "verdict"].astype(str).str.startswith("not tested")).all()
    assert A.learning_checks(df, 0.9)["split"].eq("known").all()
    assert [p.name for p in plotting.figO_own_datasets(df, tmp_path, params_name="unit")] == \
        ["figO_own_datasets.png", "figO_own_datasets.pdf"]


def test_figures_write_png_and_pdf_with_baselines(tmp_path):
    base = pd.DataFrame([dict(dataset="reversal_curse", split="reversal", baseline="b1", acc=0.4, chance=0.25, n=20),
                         dict(dataset="reversal_curse", split="reversal", baseline="b2", acc=0.6, chance=0.25, n=20)])
    written = plotting.draw_all(synthetic_items(), tmp_path, params_name="unit", baselines=base)
    assert set(written) == {f.__name__ for f in plotting.FIGURE_FUNCTIONS}
    for name, paths in written.items():
        assert [p.name for p in paths] == [f"{name}.png", f"{name}.pdf"]
        assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:5] == b"%PDF-"


def test_figures_cope_with_missing_conditions(tmp_path):
    df = synthetic_items()
    df = df[df["condition"].isin(["pretrained", "ft"]) & (df["dataset"] == "reversal_curse")]
    written = plotting.draw_all(df, tmp_path, params_name="unit")
    assert written["fig2_reversal_curse"] and not written["fig4_semantic_structure"]
    assert {p.name for p in tmp_path.iterdir()} == {"fig2_reversal_curse.png", "fig2_reversal_curse.pdf"}
    other = synthetic_items().query("dataset == 'syllogisms'")
    assert plotting.fig2_reversal_curse(other, tmp_path, params_name="unit") == []
    assert not list(tmp_path.iterdir())
    assert plotting.draw_all(items([]), tmp_path / "none", params_name="unit") == \
        {f.__name__: [] for f in plotting.FIGURE_FUNCTIONS}


def test_only_the_cpu_params_write_the_committed_figures():
    assert plotting.figures_dir("cpu") == plotting.FIGURES
    for name in ("smoke", "paper", "cpu-1234abcd"):
        assert plotting.figures_dir(name) == runs.run_dir(name) / "figures"
