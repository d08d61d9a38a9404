"""Where a run's time went: minutes per notebook stage and per FT run, printed by `make reproduce`.

    python -m tools.timings runs/cpu        # a run folder under runs/

reads `runs/<run>/stage_times.tsv` (written by the Makefile, one line per notebook) and the `train_info.json`
of every finished FT run of the run (lib.training.ft_runs; its `seconds` is the training time alone).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def stage_times(run: Path) -> pd.DataFrame:
    """(stage, minutes) of the notebooks of the last `make reproduce` in `run`; empty when there is none."""
    path = Path(run) / "stage_times.tsv"
    if not path.is_file():
        return pd.DataFrame(columns=["stage", "minutes"])
    df = pd.read_csv(path, sep="\t", dtype={"stage": str})
    return df.assign(minutes=(df["seconds"] / 60).round(1))[["stage", "minutes"]]


def ft_times(run: Path) -> pd.DataFrame:
    """(dataset, run, splitting, seed, minutes) of every finished FT run in `run` (lib.training.ft_runs)."""
    from lib.training import ft_runs

    rows = [{"dataset": d["dataset"], "run": Path(d["folder"]).name, "splitting": d["splitting"],
             "seed": d["seed"], "minutes": round(float(d["seconds"]) / 60, 2)}
            for d in ft_runs(Path(run).name)]
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
        sys.exit("usage: python -m tools.timings runs/<run>")
    print(report(Path(sys.argv[1])))
