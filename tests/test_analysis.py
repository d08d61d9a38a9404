"""Claims verdicts, standard errors and figures, on small results tables the tests make by hand."""
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lib import analysis as A
from lib import plotting, runs


def rows(dataset, split, condition, accs, n=100, chance=0.25, seed=0, subsets=None, model="m", mi=None):
    """Result rows of one dataset/split/condition: one per subset accuracy in `accs`."""
    subsets = subsets or [f"s{i}" for i in range(len(accs))]
    ns = n if isinstance(n, list) else [n] * len(accs)
    return [dict(dataset=dataset, split=split, subset=sub, condition=condition, model=model, seed=seed, n=k,
                 acc=a, acc_norm=a, acc_mutual_info=a if mi is None else mi, chance=chance, acc_any_valid=np.nan)
            for sub, a, k in zip(subsets, accs, ns)]


def table(*groups):
    return pd.DataFrame([r for g in groups for r in g])


def one_row(t, part, dataset=None):
    sel = t[(t["part"] == part) & ((t["dataset"] == dataset) if dataset else True)]
    assert len(sel) == 1, sel
    return sel.iloc[0]


# ------------------------------------------------------------------------------------------ verdicts
def test_clear_gap_holds():
    t = A.claims_table(table(rows("reversal_curse", "reversal", "icl", [0.9], n=100),
                             rows("reversal_curse", "reversal", "ft", [0.1], n=100)))
    r = one_row(t, "C2c")
    assert r["verdict"] == A.HOLDS
    assert r["estimate"] == pytest.approx(0.8)
    assert 0 < r["ci_lo"] < 0.8 < r["ci_hi"]


def test_overlapping_cis_are_inconclusive():
    t = A.claims_table(table(rows("simple_reversals", "reversal", "icl", [0.55], n=20, chance=0.5),
                             rows("simple_reversals", "reversal", "ft", [0.45], n=20, chance=0.5)))
    r = one_row(t, "C3a")
    assert r["ci_lo"] < 0 < r["ci_hi"]
    assert r["verdict"] == A.INCONCLUSIVE


def test_clear_reverse_gap_does_not_hold():
    t = A.claims_table(table(rows("syllogisms", "syllogism", "icl", [0.2], n=200, chance=1 / 6),
                             rows("syllogisms", "syllogism", "ft", [0.7], n=200, chance=1 / 6)))
    assert one_row(t, "C4b")["verdict"] == A.FAILS
    assert one_row(t, "C4a")["verdict"] == A.HOLDS          # FT at 0.7 is above chance 1/6
    assert t.loc[t["claim"] == "C4", "claim_verdict"].iloc[0] == A.FAILS


def test_missing_conditions_are_not_tested_not_errors():
    t = A.claims_table(table(rows("reversal_curse", "reversal", "ft", [0.02], n=200),
                             rows("reversal_curse", "forward", "ft", [0.9])))
    assert one_row(t, "C2c")["verdict"] == "not tested (missing: reversal_curse/icl)"
    assert one_row(t, "C4a")["verdict"] == "not tested (missing: syllogisms)"
    summary = A.claims_summary(t).set_index("claim")
    assert summary.loc["C4", "verdict"] == "not tested"
    assert summary.loc["C7", "verdict"] == "not tested"
    # A claim with one tested part and one untested part is judged on the tested part only.
    assert one_row(t, "C2a")["verdict"] == A.HOLDS           # FT reversed 0.02, CI within [0, 0.1]
    assert t.loc[t["claim"] == "C2", "claim_verdict"].iloc[0] == A.HOLDS
    empty = A.claims_table(pd.DataFrame(columns=A.COLUMNS))
    assert set(A.claims_summary(empty)["verdict"]) == {"not tested"}
    assert set(empty["claim"]) == set(A.CLAIMS)


def test_at_chance_is_an_equivalence_test():
    z = A.z_value(0.95)
    at = lambda acc, n: A.verdict("at_chance", dict(acc=acc, se=math.sqrt(acc * (1 - acc) / n), chance=0.5),
                                  z=z, margin=0.1)["verdict"]
    assert at(0.5, 1000) == A.HOLDS            # CI 0.47-0.53, inside 0.4-0.6
    assert at(0.5, 10) == A.INCONCLUSIVE       # too few items to tell
    assert at(0.9, 200) == A.FAILS             # far from chance
    assert at(0.58, 200) == A.FAILS            # CI 0.51-0.65 excludes chance and leaves the band


def test_near_zero_near_ceiling_and_still_hard():
    z = A.z_value(0.95)
    v = lambda kind, acc, se, ch=0.25: A.verdict(kind, dict(acc=acc, se=se, chance=ch), z=z, margin=0.1)["verdict"]
    assert v("near_zero", 0.02, 0.02) == A.HOLDS
    assert v("near_zero", 0.5, 0.02) == A.FAILS
    assert v("near_zero", 0.1, 0.05) == A.INCONCLUSIVE
    assert v("near_ceiling", 0.97, 0.01) == A.HOLDS
    assert v("near_ceiling", 0.5, 0.05) == A.FAILS
    assert v("at_most_chance_plus_margin", 0.25, 0.02) == A.HOLDS
    assert v("at_most_chance_plus_margin", 0.8, 0.02) == A.FAILS


def test_combine_parts():
    assert A.combine([A.HOLDS, A.HOLDS, "not tested (missing: x)"]) == A.HOLDS
    assert A.combine([A.HOLDS, A.INCONCLUSIVE]) == A.INCONCLUSIVE
    assert A.combine([A.HOLDS, A.FAILS, A.INCONCLUSIVE]) == A.FAILS
    assert A.combine(["not tested (missing: x)"]) == "not tested"
    assert A.combine([A.HOLDS, A.INCONCLUSIVE, A.FAILS, A.HOLDS], "often") == A.HOLDS
    assert A.combine([A.FAILS, A.FAILS, A.HOLDS], "often") == A.FAILS


def test_verdict_metric_is_a_parameter_and_the_other_is_reported_beside():
    df = table(rows("reversal_curse", "reversal", "icl", [0.9], n=200, mi=0.2),
               rows("reversal_curse", "reversal", "ft", [0.1], n=200, mi=0.8))
    by_acc = one_row(A.claims_table(df), "C2c")
    assert by_acc["verdict"] == A.HOLDS and by_acc["verdict_acc_mutual_info"] == A.FAILS
    by_mi = one_row(A.claims_table(df, metric="acc_mutual_info"), "C2c")
    assert by_mi["verdict"] == A.FAILS and by_mi["verdict_acc"] == A.HOLDS
    assert by_mi["estimate"] == pytest.approx(-0.6)


def test_syllogisms_report_any_valid_accuracy_beside_and_bad_condition_is_an_error():
    df = table(rows("syllogisms", "syllogism", "ft", [0.3], n=60, chance=1 / 6))
    df["acc_any_valid"] = 0.45
    assert "any valid: ft 0.45" in one_row(A.claims_table(df), "C4a")["numbers"]
    with pytest.raises(ValueError, match="aug_nothing"):
        A.claims_table(df, augmented="aug_nothing")


def test_gap_comparison_uses_both_datasets():
    df = table(rows("reversal_curse", "reversal", "icl", [0.95], n=300), rows("reversal_curse", "reversal", "ft", [0.05], n=300),
               rows("simple_reversals", "reversal", "icl", [0.6], n=300, chance=0.5),
               rows("simple_reversals", "reversal", "ft", [0.5], n=300, chance=0.5))
    r = one_row(A.claims_table(df), "C3b")
    assert r["estimate"] == pytest.approx(0.9 - 0.1)
    assert r["verdict"] == A.HOLDS


# ------------------------------------------------------------------------------------------ aggregation
def test_se_over_subsets_and_pooled_binomial_se_by_hand():
    df = table(rows("semantic_structure", "reversal", "ft", [0.2, 0.4, 0.9], n=[10, 20, 10]))
    agg = A.aggregate(df).iloc[0]
    assert agg["k_subsets"] == 3 and agg["n"] == 40 and agg["n_seeds"] == 1
    assert agg["mean_subsets"] == pytest.approx(0.5)
    assert agg["se_subsets"] == pytest.approx(np.std([0.2, 0.4, 0.9], ddof=1) / math.sqrt(3))
    assert agg["acc"] == pytest.approx((2 + 8 + 9) / 40)
    p = (19 + 1) / (40 + 2)
    assert agg["se"] == pytest.approx(math.sqrt(p * (1 - p) / 40))
    one = A.aggregate(table(rows("syllogisms", "syllogism", "ft", [0.5], n=10))).iloc[0]
    assert math.isnan(one["se_subsets"]) and one["se"] > 0


def test_seeds_are_averaged_and_their_spread_enters_the_se():
    df = table(rows("syllogisms", "syllogism", "ft", [0.4], n=50, seed=0),
               rows("syllogisms", "syllogism", "ft__s1", [0.6], n=50, seed=1))
    agg = A.aggregate(df)
    assert list(agg["condition"]) == ["ft"]                    # the seed suffix is dropped
    a = agg.iloc[0]
    assert a["acc"] == pytest.approx(0.5) and a["n_seeds"] == 2 and a["n"] == 50
    v = lambda x: ((x + 1) / 52) * (1 - (x + 1) / 52) / 50
    assert a["se"] == pytest.approx(math.sqrt((v(20) + v(30)) / 2 + np.var([0.4, 0.6], ddof=1) / 2))


def test_bad_table_names_the_missing_column():
    with pytest.raises(ValueError, match="chance"):
        A.aggregate(pd.DataFrame(rows("syllogisms", "syllogism", "ft", [0.5])).drop(columns="chance"))


def test_write_claims_csv_and_markdown(tmp_path):
    t = A.claims_table(table(rows("reversal_curse", "reversal", "icl", [0.9]), rows("reversal_curse", "reversal", "ft", [0.1])))
    paths = A.write_claims(t, tmp_path, params_name="unit", metric="acc", ci_level=0.95, margin=0.1)
    assert [p.name for p in paths] == ["claims.csv", "claims.md"]
    back = pd.read_csv(tmp_path / "claims.csv")
    assert list(back["verdict"]) == list(t["verdict"])
    md = (tmp_path / "claims.md").read_text()
    assert "| C2 |" in md and "params `unit`" in md and A.HOLDS in md


def test_results_table_and_files(tmp_path):
    res = table(rows("reversal_curse", "reversal", "ft", [0.0, 0.2], n=10),  # 2 subsets x 10 items
                rows("reversal_curse", "forward", "icl", [1.0], n=20, mi=0.5),
                rows("reversal_curse", "reversal", "icl", [0.5], n=20),
                rows("reversal_curse", "forward", "ft", [0.6], n=20))
    wide = A.accuracy_table(res)
    assert list(wide["split"]) == ["forward", "reversal"]  # the dataset's split order, not alphabetical
    assert list(wide.columns) == ["model", "dataset", "split", "n", "chance", "icl", "ft"]  # CONDITIONS order
    rev = wide.set_index("split").loc["reversal"]
    assert rev["ft"] == pytest.approx(0.1) and rev["icl"] == pytest.approx(0.5)
    assert rev["n"] == "20" and wide.set_index("split").loc["forward", "n"] == "20"
    assert A.accuracy_table(res, "acc_mutual_info").set_index("split").loc["forward", "icl"] == pytest.approx(0.5)
    paths = A.write_results(res, tmp_path, params_name="unit")
    assert [p.name for p in paths] == ["results.csv", "results.md"]
    back = pd.read_csv(tmp_path / "results.csv")
    assert set(back["metric"]) == {"acc", "acc_mutual_info"} and len(back) == 8
    md = (tmp_path / "results.md").read_text()
    assert "## `acc_mutual_info`" in md and "| m | reversal_curse | reversal | 20 | 0.250 | 0.500 | 0.100 |" in md


def test_reads_other_stages_files(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "RUNS", tmp_path)
    assert A.load_results("nothing").empty
    for name, key, loss in (("ft-abc", "current", [3.0, 2.0, 1.5]), ("ft-old", "older code", [9.0, 9.0, 9.0])):
        folder = tmp_path / "unit" / "ft" / "syllogisms" / name  # as lib.training.finetune leaves it
        runs.write_json(folder / "loss_curve.json", {"step": [1, 2, 3], "loss": loss})
        runs.write_json(folder / "train_info.json", {"tag": "ft", "splitting": "independent", "seed": 0})
        runs.mark_fresh(folder, key)
    # only the run a results file was scored with (its stamp names it, as lib.scoring.evaluate writes it) counts
    runs.mark_fresh(tmp_path / "unit" / "results" / "syllogisms__ft.csv", {"extra": {"ft": runs.key_hash("current")}})
    runs.write_json(tmp_path / "unit" / "augment" / "syllogisms" / "local.stats.json",
                    {"kind": "local", "kept": 7, "dropped": {"copy": 2}})
    curves = A.loss_curves("unit")
    assert list(curves["loss"]) == [3.0, 2.0, 1.5] and set(curves["run"]) == {"ft (independent, s0)"}
    assert [Path(f).name for f in curves.attrs["not_scored"]] == ["ft-old"]
    stats = A.augmentation_stats("unit")
    assert stats.loc[0, "kept"] == 7 and stats.loc[0, "dropped.copy"] == 2
    assert plotting.figS_loss_curves(curves, tmp_path / "figs", params_name="unit")[0].exists()


# ------------------------------------------------------------------------------------------ figures
def synthetic_results():
    out = []
    for ds, splits in A.SPLITS.items():
        for sp in splits:
            for i, cond in enumerate(A.CONDITIONS):
                out += rows(ds, sp, cond, [0.3 + 0.05 * i, 0.35 + 0.04 * i], n=20)
    return pd.DataFrame(out)


def test_figures_write_png_and_pdf(tmp_path):
    written = plotting.draw_all(synthetic_results(), tmp_path, params_name="unit")
    assert set(written) == {f.__name__ for f in plotting.FIGURE_FUNCTIONS}
    for name, paths in written.items():
        assert [p.name for p in paths] == [f"{name}.png", f"{name}.pdf"]
        assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for ps in written.values() for p in ps)


def test_figures_cope_with_missing_conditions(tmp_path):
    df = synthetic_results()
    df = df[df["condition"].isin(["pretrained", "ft"]) & (df["dataset"] == "reversal_curse")]
    written = plotting.draw_all(df, tmp_path, params_name="unit")
    assert written["fig2_reversal_curse"] and not written["fig4_semantic_structure"]
    assert not written["figB1_sentence_splitting"] and not written["figB5_derivatoids"]
    assert {p.name for p in tmp_path.iterdir()} == {"fig2_reversal_curse.png", "fig2_reversal_curse.pdf"}
    # A later run whose results cannot draw a figure removes that figure's files from an earlier run.
    other = synthetic_results().query("dataset == 'syllogisms'")
    assert plotting.fig2_reversal_curse(other, tmp_path, params_name="unit") == []
    assert not list(tmp_path.iterdir())
    assert plotting.draw_all(pd.DataFrame(columns=A.COLUMNS), tmp_path / "none", params_name="unit") == \
        {f.__name__: [] for f in plotting.FIGURE_FUNCTIONS}


def test_no_results_at_all_leave_earlier_figures_alone(tmp_path):
    plotting.fig2_reversal_curse(synthetic_results(), tmp_path, params_name="unit")
    assert plotting.draw_all(pd.DataFrame(columns=A.COLUMNS), tmp_path, params_name="unit")["fig2_reversal_curse"] == []
    assert (tmp_path / "fig2_reversal_curse.png").exists()


def test_only_the_cpu_params_write_the_committed_figures():
    assert plotting.figures_dir("cpu") == plotting.FIGURES
    for name in ("smoke", "paper", "cpu-1234abcd"):
        assert plotting.figures_dir(name) == runs.run_dir(name) / "figures"
