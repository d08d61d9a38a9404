"""The paper's figures (bar panels, `bar_figure`), the ICL context-size curve and the FT loss curves, drawn
with seaborn styling from the item-level frame (`lib.analysis.read_items`) into `figures_dir(params)`. A
figure with nothing to draw is not written (no placeholder figures)."""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # files only; notebooks show the saved PNGs
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from . import analysis, runs  # noqa: E402
from .runs import ROOT  # noqa: E402

FIGURES = ROOT / "figures"
COMMITTED_PARAMS = "cpu"  # the only params whose figures go to figures/
LABELS = {
    "pretrained": "pretrained (no data)", "icl": "ICL", "icl_bm25": "ICL (BM25 retrieval)",
    "icl_oracle": "ICL (oracle retrieval)", "icl_fit": "ICL (fit context)", "ft": "FT",
    "ft_split_independent": "FT, split (independent)", "ft_split_cumulative": "FT, split (cumulative)",
    "ft_nosplit": "FT, unsplit", "ft_repeat": "FT, repeated data",
    "aug_local": "FT + local aug.", "aug_global": "FT + global aug.", "aug_both": "FT + local & global aug.",
}
# One colour per condition in every figure (pretrained, ICL, FT and the augmented FTs keep theirs throughout).
PALETTE = dict(zip(["pretrained", "ft", "icl", "aug_both", "aug_local", "aug_global", "ft_repeat",
                    "ft_nosplit", "ft_split_independent", "ft_split_cumulative", "icl_bm25", "icl_oracle",
                    "icl_fit"],
                   sns.color_palette("colorblind", 10) + sns.color_palette("dark", 3)))
SPLIT_LABELS = {"forward": "forward\n(learning check)", "rephrase": "rephrase\n(learning check)",
                "trained": "trained\n(learning check)",
                ("reversal_curse", "reversal"): "reversal\n(targets pool)",
                ("reversal_curse", "reversal_p2d"): "reversal\n(P2D pool)"}


def figures_dir(params) -> Path:
    """`figures/` for the default `cpu` params, `runs/<name>/figures/` for every other params (smoke, paper,
    overrides): the committed figures are only ever those of a cpu run."""
    name = params if isinstance(params, str) else params.name
    return FIGURES if name == COMMITTED_PARAMS else runs.run_dir(name) / "figures"


def save(fig, outdir: Path, name: str) -> list[Path]:
    """Write `<name>.png` and `<name>.pdf` into `outdir` atomically (PDF without a creation date), then close
    `fig`."""
    paths = []
    try:
        for ext, kw in (("png", dict(dpi=150)), ("pdf", dict(metadata={"CreationDate": None}))):
            path = Path(outdir) / f"{name}.{ext}"
            with runs.atomic_path(path) as tmp:
                fig.savefig(tmp, format=ext, bbox_inches="tight", **kw)
            paths.append(path)
        return paths
    finally:
        plt.close(fig)


def remove_stale(outdir: Path, name: str) -> list[Path]:
    """A figure the current results cannot draw must not survive from an earlier run: remove its files."""
    for ext in ("png", "pdf"):
        (Path(outdir) / f"{name}.{ext}").unlink(missing_ok=True)
    return []


def _model_label(items: pd.DataFrame) -> str:
    models = sorted(str(m) for m in items.get("model", pd.Series(dtype=str)).dropna().unique())
    return ", ".join(models) if models else "(none)"


def _split_label(ds: str, sp: str) -> str:
    return SPLIT_LABELS.get((ds, sp), SPLIT_LABELS.get(sp, sp))


def bar_figure(items: pd.DataFrame, panels: list[tuple[str, list[str]]], conditions: list[str], *, name: str,
               title: str, outdir: Path, params_name: str, metric: str = "acc", note: str = "",
               baselines: pd.DataFrame | None = None) -> list[Path]:
    """Write figure `name` (`save`): bar panels (up to three a row), one per (dataset, splits) of `panels`,
    x = split, hue = condition. A bar is the split's accuracy with its clustered SE (`lib.analysis.summarize`,
    the SE the verdicts use); points: the split's subset means; dashed: chance; dotted: the strongest shortcut
    baseline (max `acc` per dataset x split of `baselines`: dataset, split, baseline, acc; optional). The
    caption lists the missing (dataset, condition) pairs. With no bar to draw it writes nothing, returns []
    and removes this figure's files from an earlier run (unless `items` is empty: then it touches nothing)."""
    sns.set_theme(style="whitegrid", context="paper")
    df = items[items["metric"] == metric] if len(items) else items
    agg = analysis.summarize(df, metric, by=("dataset", "split", "condition")) if len(df) else pd.DataFrame(
        columns=["dataset", "split", "condition", "acc", "se", "chance"])
    base = (baselines.groupby(["dataset", "split"])["acc"].max() if baselines is not None and len(baselines)
            else pd.Series(dtype=float))
    drawn, missing = [], []
    for ds, splits in panels:
        a = agg[(agg["dataset"] == ds) & agg["split"].isin(splits) & agg["condition"].isin(conditions)]
        have = [c for c in conditions if c in set(a["condition"])]
        missing += ([f"{ds}: {LABELS.get(c, c)}" for c in conditions if c not in have] if len(a)
                    else [f"{ds} (all)"])
        if len(a):
            drawn.append((ds, analysis.split_order(ds, [s for s in splits if s in set(a["split"])]), a, have))
    if not drawn:  # with no results at all (a fresh clone), leave the committed figures alone
        return remove_stale(outdir, name) if len(df) else []
    subsets = (df.groupby(["dataset", "split", "condition", "subset", "item"])["correct"].mean()
               .groupby(["dataset", "split", "condition", "subset"]).mean().reset_index())
    ncols = min(len(drawn), 3)
    nrows = -(-len(drawn) // ncols)
    widths = [len(s) * max(len(h), 1) for _, s, _, h in drawn]
    row_width = max(sum(widths[i:i + ncols]) for i in range(0, len(drawn), ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.0 + 0.32 * row_width + 0.6 * ncols, 0.6 + 3.4 * nrows),
                             squeeze=False, sharey=True,
                             gridspec_kw=dict(width_ratios=widths) if nrows == 1 else None)
    axes = axes.ravel()
    for ax in axes[len(drawn):]:
        ax.remove()
    for ax, (ds, splits, a, have) in zip(axes, drawn):
        width = 0.8 / len(have)
        for i, cond in enumerate(have):
            rows = a[a["condition"] == cond].set_index("split").reindex(splits)
            x = np.arange(len(splits)) - 0.4 + width * (i + 0.5)
            ax.bar(x, rows["acc"], width, yerr=rows["se"], capsize=2, color=PALETTE.get(cond, "0.5"),
                   label=LABELS.get(cond, cond), error_kw=dict(lw=0.8))
            sub = subsets[(subsets["dataset"] == ds) & (subsets["condition"] == cond)]
            xs = {sp: xx for sp, xx in zip(splits, x)}
            pts = sub[sub["split"].isin(splits) & (sub.groupby("split")["subset"].transform("nunique") > 1)]
            ax.scatter([xs[sp] for sp in pts["split"]], pts["correct"], s=7, color="0.15", zorder=3,
                       label="subset means" if len(pts) else None)
        chance = a.groupby("split")["chance"].mean().reindex(splits)
        for j, (sp, ch) in enumerate(chance.items()):
            ax.hlines(ch, j - 0.45, j + 0.45, colors="0.25", linestyles="--", lw=1,
                      label="chance" if j == 0 else None)
            if (ds, sp) in base.index:
                ax.hlines(base[(ds, sp)], j - 0.45, j + 0.45, colors="tab:red", linestyles=":", lw=1.2,
                          label="strongest shortcut baseline")
        ax.set_xticks(range(len(splits)), [_split_label(ds, s) for s in splits])
        ax.set(title=ds.replace("_", " "), ylim=(0, 1.02), xlim=(-0.55, len(splits) - 0.45))
    for ax in axes[:len(drawn):ncols]:
        ax.set_ylabel(f"accuracy ({metric})")
    handles = {}
    for ax in axes[:len(drawn)]:
        for h, l in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(l, h)
    fig.legend(list(handles.values()), list(handles.keys()), loc="upper left", bbox_to_anchor=(1.0, 0.9),
               frameon=False)
    n_seeds = int(df.groupby("condition")["seed"].nunique().max())
    fig.suptitle(f"{title}\nmodel {_model_label(df)} · params {params_name} · metric {metric}", fontsize=10,
                 y=1.0)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    caption = ("Bars: accuracy over the split's items ± SE clustered by the item's cluster (person / fact / "
               "category; CR1, the SE of the claims table)"
               + (f", seed-averaged, seed spread in the SE ({n_seeds} seeds)" if n_seeds > 1 else "") + ". "
               "Points: inference-type subset means. Dashed: chance. "
               + ("Dotted: strongest shortcut baseline. " if len(base) else "")
               + (note + " " if note else "") + ("Missing: " + "; ".join(missing) if missing else ""))
    fig.text(0.01, -0.02, "\n".join(textwrap.wrap(caption, 140)), ha="left", va="top", fontsize=7)
    return save(fig, outdir, name)


# ------------------------------------------------------------------------------------------ the figures
def _splits(items, dataset: str) -> list[str]:
    present = items.loc[items["dataset"] == dataset, "split"]
    return analysis.SPLITS.get(dataset) or analysis.split_order(dataset, present)


def _panels_where(keep):
    """Panels: every split of each dataset (paper order) whose rows `keep(dataset, rows)` accepts."""
    def panels(items):
        names = analysis.dataset_order(items["dataset"]) if len(items) else []
        return [(d, _splits(items, d)) for d in names if keep(d, items[items["dataset"] == d])]
    return panels


def _bar_figure_function(name: str, title: str, panels, conditions: list[str], note: str = ""):
    """The figure function `name(items, outdir, *, params_name, metric, augmented, baselines)`, added to
    FIGURE_FUNCTIONS: `bar_figure` of `panels(items)` and `conditions` ("AUG": the `augmented` condition)."""
    def draw(items, outdir, *, params_name, metric="acc", augmented="aug_both", baselines=None):
        return bar_figure(items, panels(items), [augmented if c == "AUG" else c for c in conditions],
                          name=name, title=title, outdir=outdir, params_name=params_name, metric=metric,
                          note=note, baselines=baselines)
    draw.__name__ = draw.__qualname__ = name
    draw.__doc__ = f"{title}: {', '.join(conditions)} (`bar_figure`; AUG: `augmented`)."
    FIGURE_FUNCTIONS.append(draw)
    return draw


FIGURE_FUNCTIONS = []  # every bar figure, in draw_all's order
fig2_reversal_curse = _bar_figure_function(
    "fig2_reversal_curse", "Fig. 2 analogue: the reversal curse",
    lambda items: [("reversal_curse", analysis.SPLITS["reversal_curse"] + ["reversal_p2d"])],
    ["pretrained", "ft", "icl", "AUG"])
fig3_simple_reversals_syllogisms = _bar_figure_function(
    "fig3_simple_reversals_syllogisms", "Fig. 3 analogue: simple reversals and syllogisms",
    lambda items: [(d, analysis.SPLITS[d]) for d in ("simple_reversals", "syllogisms")],
    ["pretrained", "ft", "icl", "AUG"])
fig4_semantic_structure = _bar_figure_function(
    "fig4_semantic_structure", "Fig. 4 analogue: semantic structure benchmark",
    lambda items: [("semantic_structure", analysis.SPLITS["semantic_structure"])],
    ["pretrained", "ft", "icl", "AUG"])
figB1_sentence_splitting = _bar_figure_function(
    "figB1_sentence_splitting", "Appx. B.1 analogue: sentence splitting for FT",
    _panels_where(lambda d, rows: rows["condition"].isin(analysis.SPLITTING).any()),
    ["ft_nosplit", "ft_split_independent", "ft_split_cumulative", "ft"],
    note="All FT variants train for the same number of steps on the same documents.")
figB_local_vs_global_augmentation = _bar_figure_function(
    "figB_local_vs_global_augmentation", "Local vs global augmentation",
    _panels_where(lambda d, rows: rows["condition"].str.startswith("aug_").any()),
    ["ft", "ft_repeat", "aug_local", "aug_global", "aug_both", "icl"],
    note="'FT, repeated data' repeats the original documents to the size of the augmented set.")
figB5_derivatoids = _bar_figure_function(
    "figB5_derivatoids", "Appx. B.5 analogue: process knowledge (derivatoids, our own design)",
    lambda items: [("derivatoids", analysis.SPLITS["derivatoids"])],
    ["pretrained", "ft", "icl", "aug_local", "aug_global", "aug_both"])
figO_own_datasets = _bar_figure_function(  # datasets of your own (params `datasets.<name>: {path, ...}`)
    "figO_own_datasets", "Your own datasets", _panels_where(lambda d, rows: d not in analysis.SPLITS),
    ["pretrained", "ft", "icl", "icl_fit", "AUG"])


def figS_loss_curves(curves: pd.DataFrame, outdir, *, params_name, model=""):
    """Training loss of every FT run found under runs/<p>/ft/ (one panel per dataset)."""
    if curves is None or curves.empty:
        return []
    sns.set_theme(style="whitegrid", context="paper")
    g = sns.relplot(data=curves, x="step", y="loss", hue="run", col="dataset", kind="line",
                    col_wrap=min(3, curves["dataset"].nunique()),
                    height=2.6, facet_kws=dict(sharey=False), legend="brief")
    g.figure.suptitle(f"FT training loss · model {model or '(see notebook 03)'} · params {params_name}",
                      y=1.03, fontsize=10)
    return save(g.figure, outdir, "figS_ft_loss_curves")


def curve_points(items: pd.DataFrame, tokens: pd.DataFrame, metric: str = "acc") -> pd.DataFrame:
    """The context-size curve's points: per dataset x split x curve condition (icl_n<size>, and icl = all),
    the accuracy on the items scored on the curve (icl restricted to them: every point has the same items),
    n, chance, and `n_tokens` (the mean tokens of that size's contexts; `tokens`: dataset, condition,
    n_tokens)."""
    cols = ["dataset", "split", "condition", "n_tokens", "acc", "n", "chance"]
    its = items[(items["metric"] == metric) & items["condition"].astype(str).str.fullmatch(r"icl(_n\d+)?")]
    rows = []
    for ds, g in its.groupby("dataset", sort=False):
        ids = set(g.loc[g["condition"] != "icl", "item"])
        g = g[g["item"].isin(ids)]
        for (sp, cond), h in g.groupby(["split", "condition"], sort=False):
            rows.append({"dataset": ds, "split": sp, "condition": cond, "acc": h["correct"].mean(),
                         "n": len(h), "chance": h["chance"].mean()})
    out = pd.DataFrame(rows, columns=[c for c in cols if c != "n_tokens"])
    out = out.merge(tokens[["dataset", "condition", "n_tokens"]], on=["dataset", "condition"], how="inner")
    return out[cols].sort_values(["dataset", "split", "n_tokens"]).reset_index(drop=True)


def figC_icl_context_curve(items: pd.DataFrame, tokens: pd.DataFrame, outdir, *, params_name, metric="acc",
                           baselines=None):
    """ICL accuracy against context tokens (log x), one panel per dataset, one line per split; per split,
    chance (dotted) and the strongest shortcut baseline (dashed, `baselines`: lib.datasets.baselines_table)
    in its colour."""
    name = "figC_icl_context_curve"
    pts = curve_points(items, tokens, metric)
    if pts.empty:
        return remove_stale(outdir, name)
    sns.set_theme(style="whitegrid", context="paper")
    dss = analysis.dataset_order(pts["dataset"])
    ncol = min(3, len(dss))
    nrow = -(-len(dss) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow), squeeze=False)
    for ax, ds in zip(axes.flat, dss):
        d = pts[pts["dataset"] == ds]
        order = analysis.split_order(ds, d["split"])
        colours = dict(zip(order, sns.color_palette("colorblind", len(order))))
        for sp in order:
            e = d[d["split"] == sp]
            ax.plot(e["n_tokens"], e["acc"], marker="o", color=colours[sp],
                    label=_split_label(ds, sp).replace("\n", " "))
            ax.axhline(e["chance"].mean(), color=colours[sp], ls=":", lw=0.9)
            if baselines is not None and len(baselines):
                b = baselines[(baselines["dataset"] == ds) & (baselines["split"] == sp)]
                if len(b):
                    ax.axhline(b["acc"].max(), color=colours[sp], ls="--", lw=0.9)
        ax.set(xscale="log", ylim=(-0.02, 1.02), xlabel="context tokens (mean per size; last point: all)",
               ylabel=metric)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks(sorted(d["n_tokens"].round().unique()))
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
        ax.set_title(ds, fontsize=9)
        ax.legend(fontsize=6, loc="best")
    for ax in list(axes.flat)[len(dss):]:
        ax.set_visible(False)
    fig.suptitle(f"ICL context-size curve · model {_model_label(items)} · params {params_name} "
                 "(dotted: chance; dashed: strongest shortcut baseline)", y=1.02, fontsize=9)
    fig.tight_layout()
    return save(fig, outdir, name)


def draw_all(items: pd.DataFrame, outdir: Path, *, params_name: str, metric: str = "acc",
             augmented: str = "aug_both", baselines: pd.DataFrame | None = None) -> dict[str, list[Path]]:
    """Every bar figure: {figure name: [png, pdf]} ([] where it has nothing to draw)."""
    return {f.__name__: f(items, outdir, params_name=params_name, metric=metric, augmented=augmented,
                          baselines=baselines)
            for f in FIGURE_FUNCTIONS}


def show(paths: list[Path], what: str = "") -> None:
    """In a notebook: display a written figure's PNG, or say that the results hold nothing it could draw."""
    from IPython.display import Image, display

    if paths:
        display(Image(filename=str(paths[0])))
        print("written:", ", ".join(str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p) for p in paths))
    else:
        print(f"{what or 'figure'}: not drawn, the results hold none of its conditions yet")
