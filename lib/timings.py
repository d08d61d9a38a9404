"""Where a run's time went: minutes per notebook stage and per FT run, printed by `make reproduce`.

    python -m lib.timings runs/cpu

reads `runs/<run>/stage_times.tsv` (written by the Makefile, one line per notebook) and the `train_info.json`
of every FT run folder under `runs/<run>/ft/` (its `seconds` is the training time alone, scoring excluded).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from . import runs


def stage_times(run: Path) -> pd.DataFrame:
    """(stage, minutes) of the notebooks of the last `make reproduce` in `run`; empty when there is none."""
    path = Path(run) / "stage_times.tsv"
    if not path.is_file():
        return pd.DataFrame(columns=["stage", "minutes"])
    df = pd.read_csv(path, sep="\t")
    return df.assign(minutes=(df["seconds"] / 60).round(1))[["stage", "minutes"]]


def ft_times(run: Path) -> pd.DataFrame:
    """(dataset, run, splitting, seed, minutes) of every finished FT run in `run` (those with a stamp)."""
    rows = []
    for info in sorted((Path(run) / "ft").glob("*/*/train_info.json")):
        folder = info.parent
        if not runs.stamp_path(folder).is_file():
            continue
        try:
            d = runs.read_json(info)
            rows.append({"dataset": d["dataset"], "run": folder.name, "splitting": d["splitting"],
                         "seed": d["seed"], "minutes": round(float(d["seconds"]) / 60, 2)})
        except (ValueError, KeyError, TypeError):
            continue  # a damaged info file: its run is retrained by the next make reproduce anyway
    return pd.DataFrame(rows, columns=["dataset", "run", "splitting", "seed", "minutes"])


def report(run: Path) -> str:
    st, ft = stage_times(run), ft_times(run)
    out = [f"== time per stage ({run}):", st.to_string(index=False) if len(st) else "  (none recorded)"]
    if len(ft):
        per = ft.groupby("dataset")["minutes"].agg(["count", "sum"]).round(1)
        out += [f"== FT runs: {len(ft)}, {ft['minutes'].sum():.1f} min of training in all; per dataset:",
                per.rename(columns={"count": "runs", "sum": "minutes"}).to_string(),
                "== per FT run (minutes):", ft.to_string(index=False)]
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m lib.timings runs/<run>")
    print(report(Path(sys.argv[1])))
