"""The paper path, reduced: the `paper` params with the tiny random model (lib.models, a 131K-token window)
through the lib functions notebooks 01-05 call, on every condition, with the data cut to CI size.

What stays at paper settings: the params file itself (chat-format ICL, the curve sizes 4-256, bm25 + oracle
retrieval with k = 16, every item scored, LoRA r=16 on every projection, the three
augmentation kinds and the ft_repeat control, the splitting ablation on four datasets). What is cut: the data
sizes, FT to one step of 2 x 512 tokens (a step of 16 x 1024 tokens through the 49K-token vocabulary head
took ~1 min here), augmentation to one 4-token sample of a few sources, and the ICL budget to 10K tokens,
which simple reversals' 600 documents (~11.7K tokens) exceed, so the ICL context is subsampled and still longer
than the paper's 8K (the full-size form, README: `make reproduce PARAMS=paper MODEL=tiny-random`). The tiny
model's numbers mean nothing: the test asserts that every expected result exists with every item scored, that
the long context was built and subsampled, and that the figures and the claims file are written."""
from __future__ import annotations

import math

import pytest

from lib import analysis, augmentation, datasets, icl, plotting, runs, scoring, training
from lib import params as P

BUDGET = 10000
REDUCED = {
    "model.name": "tiny-random",
    "icl.max_context_tokens": BUDGET,
    "finetune.steps": 1, "finetune.warmup_steps": 0, "finetune.seeds": [0], "finetune.batch_size": 2,
    "finetune.max_length": 512,
    "augment.samples_per_item": 1, "augment.max_new_tokens": 4, "augment.max_local_sentences": 24,
    "augment.global_max_documents": 8, "augment.global_context_tokens": 2000,
    "datasets.simple_reversals": {"n_facts": 60, "articles_per_fact": 10, "counterbalance": True},
    "datasets.syllogisms": {"n_items": 12, "existential_import": True, "counterbalance": True},
    "datasets.reversal_curse": {"people_per_group": 4, "distractor_pool": "targets", "n_distractors": 3,
                                "both_pools": True, "examples_per_person": None, "templates_per_person": 2},
    "datasets.semantic_structure": {"n_categories": 20, "n_documents": 40, "min_sentences": 4,
                                    "max_sentences": 20, "holdout_fraction": 0.15, "max_items_per_split": 8,
                                    "n_options": 4, "counterbalance": True},
    "datasets.derivatoids": {"n_train": 40, "n_test": 16, "n_options": 4, "counterbalance": True},
}


def run_paper_path(mp: pytest.MonkeyPatch, runs_dir, extra: dict | None = None):
    """The calls of notebooks 01-05 on the reduced paper params (plus `extra` overrides), writing under
    `runs_dir` (set as runs.RUNS through `mp`, which the caller undoes after its checks); returns (params,
    items, figures, written, claims). tests/test_cuda.py runs it on CUDA."""
    from lib.models import load_model

    mp.setattr(runs, "RUNS", runs_dir)
    p = P.load("paper", {**REDUCED, **(extra or {})})
    datasets.build_all(p)                                              # notebook 01
    model, tok = load_model(p.model)
    for name in p.dataset_names:                                      # notebook 02
        icl.run_icl(p, name, model=model, tok=tok, progress=False)
    for name in p.dataset_names:                                      # notebook 03
        training.run_ft_arm(p, name, progress=False)
    for name in p.dataset_names:                                      # notebook 04
        augmentation.run_all(p, name, progress=False)
    items = analysis.read_items(p)                                    # notebook 05
    outdir = plotting.figures_dir(p)
    kw = dict(params_name=p.name, metric=p.analysis.metric, augmented=p.analysis.augmented_condition,
              baselines=datasets.baselines_table(p))
    figures = []
    for fig in (plotting.fig2_reversal_curse, plotting.fig3_simple_reversals_syllogisms,
                plotting.fig4_semantic_structure, plotting.figB1_sentence_splitting,
                plotting.figB_local_vs_global_augmentation, plotting.figB5_derivatoids):
        figures += fig(items, outdir, **kw)
    figures += plotting.figS_loss_curves(analysis.loss_curves(p), outdir, params_name=p.name,
                                         model=p.model.name)
    checks = analysis.learning_checks(items, p.analysis.learned_threshold, p.analysis.metric)
    claims = analysis.claims_table(items, metric=p.analysis.metric, ci_level=p.analysis.ci_level,
                                   margin=p.analysis.margin, augmented=p.analysis.augmented_condition,
                                   learned_threshold=p.analysis.learned_threshold)
    written = analysis.write_claims(claims, outdir, params_name=p.name, metric=p.analysis.metric,
                                    ci_level=p.analysis.ci_level, margin=p.analysis.margin, checks=checks)
    written += analysis.write_results(items, outdir, params_name=p.name)
    return p, items, figures, written, claims


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    yield run_paper_path(mp, tmp_path_factory.mktemp("paper") / "runs")
    mp.undo()


def test_paper_params_keep_every_condition(paper_run):
    p = paper_run[0]
    assert p.icl.format == "chat" and p.icl.curve_sizes == [4, 16, 64, 256] and p.icl.curve_items is None
    assert p.icl.retrieval_modes == ["bm25", "oracle"] and p.icl.max_test_items is None
    assert p.augment.kinds == ["local", "global", "both"] and p.augment.repeat_control
    assert len(p.finetune.splitting_ablation) == 4 and p.finetune.method == "lora"


def test_every_expected_result_scores_every_item(paper_run):
    p, items = paper_run[:2]
    assert items.attrs["missing"] == []
    expected = analysis.expected_conditions(p)
    assert len(expected) == len(p.dataset_names) * 9 + 4 * 3 + len(p.dataset_names) * 5  # ICL, ablation, ft + aug
    for name in p.dataset_names:
        test = datasets.load(p, name)[1]
        n_options = {it["id"]: len(it["options"]) for it in test}
        for ds, file_cond, _, _ in expected:
            if ds != name:
                continue
            scores = runs.read_jsonl(scoring.scores_path(p, name, file_cond))
            assert [s["id"] for s in scores] == [it["id"] for it in test], f"{name}__{file_cond}"
            for s in scores:
                assert len(s["loglikelihoods"]) == n_options[s["id"]]
                assert all(math.isfinite(v) and v < 0 for v in s["loglikelihoods"]), f"{name}__{file_cond}"


def test_long_context_is_subsampled_and_curve_built(paper_run):
    p = paper_run[0]
    info = icl.read_info(p, "simple_reversals")
    assert 8000 < info["icl"]["n_tokens"] <= BUDGET and info["icl"]["frac_kept"] < 1
    assert set(info["curve"]) == {"icl_n4", "icl_n16", "icl_n64", "icl_n256"}
    assert info["curve"]["icl_n256"]["n_docs_mean"] > 64 and info["icl_fit"]["condition"].startswith("icl")
    for name in p.dataset_names:
        assert icl.read_info(p, name)["icl_oracle"]["k"] == 16


def test_figures_and_claims_written(paper_run):
    p, items, figures, written, claims = paper_run
    assert figures and all(f.is_file() and f.stat().st_size > 0 for f in figures)
    names = {f.name for f in written}
    assert {"claims.md", "claims.csv", "results.md", "results.csv"} <= names
    text = next(f for f in written if f.name == "claims.md").read_text()
    for claim in sorted(set(claims["claim"])):
        assert claim in text
    stats = augmentation.stats_table(p, p.dataset_names)
    assert set(stats["kind"]) == {"local", "global"} and len(stats) == 2 * len(p.dataset_names)
