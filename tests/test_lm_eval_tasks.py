"""The lm-evaluation-harness export: lm_eval on an exported task gives our scorer's log-likelihoods and acc."""
from __future__ import annotations

import pytest
import yaml

from lib import datasets, models, params as P, runs, scoring
from tools import lm_eval_tasks

ONLY = "syllogisms"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lm-eval")
    mp = pytest.MonkeyPatch()
    mp.setattr(runs, "RUNS", tmp / "runs")
    others = {**{f"datasets.{d}": None for d in P.DATASETS if d != ONLY}, "finetune.splitting_ablation": []}
    params = P.load("smoke", {"model.name": str(models.bundled_model_dir()), "icl.max_test_items": None, **others})
    tasks = lm_eval_tasks.export(params, tmp / "tasks")
    yield params, tasks, tmp / "tasks"
    mp.undo()


def test_export_layout(exported):
    params, tasks, out = exported
    _, test, _ = datasets.load(params, ONLY)
    splits = list(dict.fromkeys(it["split"] for it in test))
    assert tasks == {ONLY: [lm_eval_tasks.task_name(ONLY, s, f) for f in ("pretrained", "icl") for s in splits]}
    group = yaml.safe_load((out / ONLY / f"iclft_{ONLY}.yaml").read_text())
    assert group["group"] == f"iclft_{ONLY}" and group["task"] == tasks[ONLY]
    for name in tasks[ONLY]:
        cfg = yaml.safe_load((out / ONLY / f"{name}.yaml").read_text())
        assert (cfg["output_type"], cfg["target_delimiter"], cfg["doc_to_choice"], cfg["doc_to_target"]) == \
               ("multiple_choice", " ", "options", "gold")
        docs = runs.read_jsonl(out / ONLY / f"{name}.jsonl")
        split = cfg["metadata"]["split"]
        assert [d["id"] for d in docs] == [it["id"] for it in test if it["split"] == split]
        for d, it in zip(docs, [it for it in test if it["split"] == split]):
            assert d["prompt"].endswith(it["prompt"]) and d["options"] == it["options"]
            assert d["gold"] == it["gold"] and d["golds"] == scoring.golds(it)
            if name.endswith("_pretrained"):
                assert d["prompt"] == it["prompt"]
            else:
                assert len(d["prompt"]) > len(it["prompt"]) and "Use the information above" in d["prompt"]


def test_lm_eval_matches_our_scorer(exported):
    """lm_eval (hf model, bundled SmolLM2 on CPU) on the ICL task of one split: per-option log-likelihoods equal
    lib.scoring's within 1e-3 (both sum fp32 log-softmaxes over the same tokens; ours reuses the context's KV
    cache, a reordering of fp32 sums that moves a sum of ~10 token log-probs by ~1e-5), and the same acc."""
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    params, tasks, out = exported
    name = next(t for t in tasks[ONLY] if t.endswith("_icl"))
    docs = runs.read_jsonl(out / ONLY / f"{name}.jsonl")
    res = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={models.bundled_model_dir()},dtype=float32",
                                  tasks=[name], device="cpu", batch_size=4, log_samples=True,
                                  task_manager=TaskManager(include_path=str(out)))
    samples = sorted(res["samples"][name], key=lambda s: s["doc_id"])
    theirs = [[r[0][0] for r in s["resps"]] for s in samples]
    assert [s["doc"]["id"] for s in samples] == [d["id"] for d in docs]

    _, test, _ = datasets.load(params, ONLY)
    items = {it["id"]: it for it in test}
    items = [items[d["id"]] for d in docs]
    context = docs[0]["prompt"][:-len(items[0]["prompt"])]
    assert all(d["prompt"] == context + it["prompt"] for d, it in zip(docs, items))
    model, tok = models.load_model({"name": str(models.bundled_model_dir()), "dtype": "float32",
                                    "quantization": "none", "device": "cpu"})
    ours = scoring.score_items(model, tok, items, context, progress=False)
    diff = max(abs(a - b) for o, t in zip(ours, theirs) for a, b in zip(o["loglikelihoods"], t))
    assert diff <= 1e-3, diff
    acc = sum(o["pred"] == o["gold"] for o in ours) / len(ours)
    assert res["results"][name]["acc,none"] == pytest.approx(acc, abs=1e-12)


def test_dry_run_writes_nothing(exported, tmp_path):
    params, tasks, _ = exported
    report = {}
    names = lm_eval_tasks.export_dataset(params, ONLY, tmp_path / "x", models.load_tokenizer(params.model),
                                         write=False, report=report)
    assert names == tasks[ONLY] and not (tmp_path / "x").exists()
    assert report[ONLY]["n_items"] == len(datasets.load(params, ONLY)[1]) and report[ONLY]["n_tokens"] > 0
