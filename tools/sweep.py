"""The model-scale sweep (beyond the paper): the pipeline once per model, then the key numbers against size.

    python -m tools.sweep <params> <model> [<model> ...] [--extra '{"finetune.steps": 5}']
    make sweep PARAMS=cpu MODELS="HuggingFaceTB/SmolLM2-135M-Instruct HuggingFaceTB/SmolLM2-360M-Instruct"

Each model runs notebooks 01-05 with papermill into its own run folder (runs/<params>-<hash of the
overrides>/, the same folder `make reproduce MODEL=<model>` uses, so a finished run is cached). Then, into
runs/sweep-<params>-<hash>/: `scale.png/.pdf`, one panel per key number (learning checks, reversals,
syllogisms, category holdout) with ICL, FT and augmented FT against the parameter count (log axis), and
`claims.md/.csv`, the claims table with one column per model ("verdict (estimate)").
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lib import analysis, runs
from lib.params import load
from lib.runs import ROOT

# (panel title, dataset, split): the numbers each claim rests on
KEY_NUMBERS = [
    ("simple reversals: forward", "simple_reversals", "forward"),
    ("simple reversals: reversal", "simple_reversals", "reversal"),
    ("reversal curse: forward", "reversal_curse", "forward"),
    ("reversal curse: reversal", "reversal_curse", "reversal"),
    ("syllogisms", "syllogisms", "syllogism"),
    ("semantic: rephrase", "semantic_structure", "rephrase"),
    ("semantic: reversal", "semantic_structure", "reversal"),
    ("semantic: syllogism", "semantic_structure", "syllogism"),
    ("semantic: holdout", "semantic_structure", "holdout"),
]


def model_params(params_name: str, model: str, extra: dict | None = None):
    return load(params_name, {"model.name": model, **(extra or {})})


def n_parameters(model: str) -> int:
    """Parameter count of a model, from its config alone (built on the meta device: no weights are read)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from lib.models import _from_pretrained

    cfg = _from_pretrained(AutoConfig, model)
    with torch.device("meta"):
        m = AutoModelForCausalLM.from_config(cfg)
    return sum(p.numel() for p in m.parameters())


def run_pipeline(params_name: str, model: str, extra: dict | None = None, notebooks=None) -> str:
    """Run the notebooks (default 01-05) with papermill for one model; returns the run's name."""
    import papermill as pm

    p = model_params(params_name, model, extra)
    overrides = {"model.name": model, **(extra or {})}
    out = runs.run_dir(p) / "notebooks"
    out.mkdir(parents=True, exist_ok=True)
    for nb in notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        print(f"== {model}: {Path(nb).name} -> {out}", flush=True)
        pm.execute_notebook(str(nb), str(out / Path(nb).name), kernel_name="python3",
                            cwd=str(ROOT / "notebooks"),
                            parameters={"params_name": params_name, "overrides": overrides}, log_output=False,
                            progress_bar=False)
    return p.name


def collect(params_name: str, models: list[str], extra: dict | None = None) -> pd.DataFrame:
    """Every model's item-level frame (lib.analysis.read_items), one table (the `model` column tells them
    apart)."""
    frames = [analysis.read_items(model_params(params_name, m, extra)) for m in models]
    frames = [f for f in frames if len(f)]
    if not frames:
        raise ValueError(f"no results for any of {models}: run the pipeline first")
    return pd.concat(frames, ignore_index=True)


def scale_table(items: pd.DataFrame, sizes: dict[str, int], *, metric: str = "acc",
                augmented: str = "aug_both") -> pd.DataFrame:
    """Long table of the key numbers: model, n_params, panel, dataset, split, condition, acc, se, chance."""
    agg = analysis.summarize(items, metric)
    keys = {(d, s): t for t, d, s in KEY_NUMBERS}
    wanted = np.array([(d, s) in keys for d, s in zip(agg["dataset"], agg["split"])], dtype=bool)
    agg = agg[wanted & agg["condition"].isin(["icl", "ft", augmented]).to_numpy()].copy()
    agg.insert(1, "n_params", agg["model"].map(sizes))
    agg.insert(2, "panel", [keys[(d, s)] for d, s in zip(agg["dataset"], agg["split"])])
    order = {t: i for i, (t, _, _) in enumerate(KEY_NUMBERS)}
    agg = agg.sort_values(["panel", "condition", "n_params"],
                          key=lambda c: c.map(order) if c.name == "panel" else c)
    cols = ["model", "n_params", "panel", "dataset", "split", "condition", "acc", "se", "chance"]
    return agg[cols].reset_index(drop=True)


def plot_scale(table: pd.DataFrame, outdir: Path, *, metric: str = "acc") -> list[Path]:
    """One panel per key number: accuracy (±1 SE) against parameter count (log x), a line per condition."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lib.plotting import save

    panels = list(dict.fromkeys(table["panel"]))
    if not panels:
        raise ValueError("no key numbers to draw "
                         "(none of the datasets/splits of KEY_NUMBERS has icl/ft results)")
    ncol = min(3, len(panels))
    nrow = -(-len(panels) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 3 * nrow), squeeze=False, sharey=True)
    for ax, panel in zip(axes.flat, panels):
        t = table[table["panel"] == panel]
        for cond, g in t.groupby("condition", sort=False):
            ax.errorbar(g["n_params"], g["acc"], yerr=g["se"], marker="o", capsize=3, label=cond)
        ax.axhline(float(t["chance"].mean()), color="grey", ls=":", lw=1)
        ax.set(xscale="log", ylim=(0, 1))
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel("parameters")
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel(metric)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("key numbers against model size (dotted: chance)")
    fig.tight_layout()
    return save(fig, outdir, "scale")


def claims_by_model(claims: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """The claims table with one column per model (in the sweep's order): "verdict (estimate)"."""
    c = claims.copy()
    c["cell"] = [v if pd.isna(e) else f"{v} ({e:.2f})" for v, e in zip(c["verdict"], c["estimate"])]
    index = ["claim", "part", "test", "dataset", "split"]
    wide = c.pivot_table(index=index, columns="model", values="cell", aggfunc="first", sort=False)
    return wide.reindex(columns=[m for m in models if m in wide.columns]).reset_index()


def sweep_dir(params_name: str, models: list[str], extra: dict | None = None) -> Path:
    key = runs.key_hash({"models": models, "extra": extra or {}}, 8)
    return runs.RUNS / f"sweep-{Path(params_name).stem}-{key}"


def summarize(params_name: str, models: list[str], extra: dict | None = None,
              outdir: Path | None = None) -> Path:
    """Figure + claims table of finished runs (see the module doc); returns the folder written."""
    p = model_params(params_name, models[0], extra)
    metric, augmented = p.analysis.metric, p.analysis.augmented_condition
    outdir = Path(outdir) if outdir is not None else sweep_dir(params_name, models, extra)
    results = collect(params_name, models, extra)
    sizes = {m: n_parameters(m) for m in models}
    table = scale_table(results, sizes, metric=metric, augmented=augmented)
    runs.write_text(outdir / "scale.csv", table.to_csv(index=False))
    plot_scale(table, outdir, metric=metric)
    claims = analysis.claims_table(results, metric=metric, ci_level=p.analysis.ci_level,
                                   margin=p.analysis.margin, augmented=augmented,
                                   learned_threshold=p.analysis.learned_threshold)
    wide = claims_by_model(claims, models)
    runs.write_text(outdir / "claims.csv", wide.to_csv(index=False))
    sizes_md = ", ".join(f"{m} {sizes[m]:,}" for m in models)
    runs.write_text(outdir / "claims.md", f"# Claims by model ({metric}; params {params_name})\n\n"
                    f"Parameters: {sizes_md}\n\n" + analysis._md_table(wide))
    return outdir


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.sweep", description=__doc__.split("\n")[0])
    ap.add_argument("params")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--extra", default="{}", help="more overrides for every model, as JSON")
    ap.add_argument("--summary-only", action="store_true",
                    help="only draw the figure and table of finished runs")
    a = ap.parse_args(argv)
    extra = json.loads(a.extra or "{}")
    if not a.summary_only:
        for m in a.models:
            run_pipeline(a.params, m, extra)
    print(f"sweep: {summarize(a.params, a.models, extra)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
