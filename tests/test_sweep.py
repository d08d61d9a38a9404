"""The model-scale sweep on two tiny random models of different widths: figure and per-model claims table.

Reduced: the ICL stage (pretrained + icl) of one smoke dataset per model stands for the pipeline (the notebooks
are exercised by nbval); FT results are written from the ICL rows renamed, so every drawn condition exists."""
from __future__ import annotations

import pandas as pd
import pytest

from lib import icl, models, runs, scoring
from tools import sweep

MODELS = ["tiny-random-16", "tiny-random-32"]
ONLY = {f"datasets.{d}": None for d in ("syllogisms", "reversal_curse", "semantic_structure", "derivatoids")}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    mp = pytest.MonkeyPatch()
    mp.setattr(runs, "RUNS", tmp / "runs")
    extra = {**ONLY, "icl.format": "plain"}
    for m in MODELS:
        p = sweep.model_params("smoke", m, extra)
        icl.run_icl(p, "simple_reversals", conditions=["pretrained", "icl"], progress=False)
        for cond in ("ft", "aug_both"):  # stand-ins so that the figure has every condition
            sp = scoring.scores_path(p, "simple_reversals", cond)
            runs.write_text(sp, scoring.scores_path(p, "simple_reversals", "icl").read_text())
            runs.mark_fresh(sp, {"stand-in": cond})
    out = sweep.summarize("smoke", MODELS, extra)
    yield out, extra
    mp.undo()


def test_parameter_counts_grow_with_width():
    n16, n32 = (sweep.n_parameters(models.resolve(m)) for m in MODELS)
    v = models.tiny_random_config(MODELS[0])["vocab_size"]
    # tied embeddings v*w, per layer 4 attention maps (q, o: w*w; k, v: w*w/2), MLP 3*w*2w, 2 norms; final norm
    expect = lambda w: v * w + 2 * (3 * w * w + 6 * w * w + 2 * w) + w  # noqa: E731
    assert (n16, n32) == (expect(16), expect(32))


def test_sweep_writes_figure_and_claims(swept):
    out, extra = swept
    assert (out / "scale.png").stat().st_size > 0 and (out / "scale.pdf").is_file()
    table = pd.read_csv(out / "scale.csv")
    assert set(table["model"]) == set(MODELS)
    assert set(table["panel"]) == {"simple reversals: forward", "simple reversals: reversal"}
    assert set(table["condition"]) == {"icl", "ft", "aug_both"}
    sizes = dict(zip(table["model"], table["n_params"]))
    assert sizes[MODELS[0]] < sizes[MODELS[1]]
    claims = pd.read_csv(out / "claims.csv")
    assert list(claims.columns[-2:]) == MODELS
    md = (out / "claims.md").read_text()
    assert f"| {MODELS[0]} | {MODELS[1]} |" in md
    # the ICL accuracy in the table is the one the run's scores hold
    p = sweep.model_params("smoke", MODELS[1], extra)
    r = [s for s in scoring.read_scores(p, "simple_reversals", "icl") if s["split"] == "reversal"]
    row = table[(table["model"] == MODELS[1]) & (table["condition"] == "icl") & (table["split"] == "reversal")]
    assert float(row["acc"].iloc[0]) == pytest.approx(sum(s["pred"] in s["golds"] for s in r) / len(r))


def test_no_results_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "RUNS", tmp_path)
    with pytest.raises(ValueError, match="no results for any of"):
        sweep.collect("smoke", MODELS)
