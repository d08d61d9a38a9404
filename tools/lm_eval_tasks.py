"""Our datasets as lm-evaluation-harness tasks: `python -m tools.lm_eval_tasks <params> [overrides as JSON]`.

Writes runs/<run>/lm_eval_tasks/<dataset>/: per test split two tasks, the no-context format (`pretrained`:
the item's prompt alone) and the ICL format (`icl`: the ICL context of notebook 02's `icl` condition, built
with lib.icl.build_context for the params' model window, as the prefix of every doc's prompt), each a task
YAML + a JSONL of docs, and a group YAML per dataset (`iclft_<dataset>`, acc averaged weighted by size):

    lm_eval --include_path runs/<run>/lm_eval_tasks --tasks iclft_simple_reversals --model hf \\
            --model_args pretrained=<model> --device cpu

The tasks are `output_type: multiple_choice` with `target_delimiter: " "`: each option is scored as the
continuation " " + option of the prompt, which is exactly lib.scoring's semantics, so lm-eval's per-option
log-likelihoods equal ours (tests/test_lm_eval_tasks.py checks this). lm-eval scores one target per doc: items
with several correct options (`golds`) are exported with `gold` as the target, so lm-eval's acc on them can
be lower than ours (we count any of `golds` as correct); the JSONL keeps `golds` and `cluster` for re-scoring.
The docs' paths in the YAMLs are absolute: export again after moving the run folder.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from lib import datasets, icl, runs, scoring

PREFIX = "iclft_"
FORMATS = ("pretrained", "icl")
GOLDS_NOTE = ("lm-eval scores one target per doc: items with several correct options (golds) use `gold`; "
              "lib.scoring counts any of `golds` as correct")


def task_name(dataset: str, split: str, fmt: str) -> str:
    return f"{PREFIX}{dataset}_{split}_{fmt}"


def _docs(items: list[dict], context: str) -> list[dict]:
    return [{"id": it["id"], "split": it["split"], "subset": it.get("subset", ""),
             "prompt": context + it["prompt"], "options": list(it["options"]), "gold": int(it["gold"]),
             "golds": scoring.golds(it),
             "cluster": it.get("cluster", it["id"])} for it in items]


def task_yaml(name: str, data_file: Path, *, dataset: str, split: str, fmt: str, n: int) -> str:
    cfg = {"task": name, "tag": [f"{PREFIX}{dataset}_{fmt}"], "dataset_path": "json",
           "dataset_kwargs": {"data_files": {"test": str(data_file.resolve())}}, "test_split": "test",
           "output_type": "multiple_choice", "doc_to_text": "prompt", "doc_to_choice": "options",
           "doc_to_target": "gold", "target_delimiter": " ",
           "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True}
                           for m in ("acc", "acc_norm")],
           "metadata": {"version": 1.0, "dataset": dataset, "split": split, "format": fmt, "n_docs": n}}
    head = (f"# {dataset}, split {split}, {fmt} format ({n} docs), exported by tools.lm_eval_tasks.\n"
            f"# {GOLDS_NOTE}.\n")
    return head + yaml.safe_dump(cfg, sort_keys=False, width=1000)


def context_budget(params, tok, items: list[dict], dataset: str) -> int:
    """The ICL context's token budget, as lib.icl.run_icl computes it, with the model's window read from its
    config (no weights loaded)."""
    from transformers import AutoConfig

    from lib.models import _from_pretrained, context_window

    window = context_window(_from_pretrained(AutoConfig, params.model.name))
    return icl.context_budget(params.icl.max_context_tokens, window, tok, items, dataset)


def export_dataset(params, dataset: str, out: Path, tok, *, write: bool = True,
                   report: dict | None = None) -> list[str]:
    """Write one dataset's task YAMLs, JSONLs and group YAML under out/<dataset>/; return the task names.
    write=False builds every context and writes nothing; `report` (a dict) receives the ICL context's info."""
    train, test, _ = datasets.load(params, dataset)
    items = icl.select_items(test, params.icl.max_test_items, params.seed, dataset)
    ctx, info = icl.build_context(tok, train, items, fmt=params.icl.format,
                                  max_tokens=context_budget(params, tok, items, dataset), seed=params.seed)
    if report is not None:
        report[dataset] = {"n_items": len(items), **info,
                           "icl_jsonl_mb": round(len(items) * len(ctx) / 1e6, 1)}
    if not write:
        return [task_name(dataset, s, f) for f in FORMATS for s in dict.fromkeys(it["split"] for it in items)]
    folder = out / dataset
    names = []
    splits = list(dict.fromkeys(it["split"] for it in items))
    for fmt, context in (("pretrained", ""), ("icl", ctx)):
        for split in splits:
            part = [it for it in items if it["split"] == split]
            name = task_name(dataset, split, fmt)
            data = folder / f"{name}.jsonl"
            runs.write_jsonl(data, _docs(part, context))
            runs.write_text(folder / f"{name}.yaml",
                            task_yaml(name, data, dataset=dataset, split=split, fmt=fmt, n=len(part)))
            names.append(name)
    group = {"group": f"{PREFIX}{dataset}", "task": names,
             "aggregate_metric_list": [{"metric": "acc", "aggregation": "mean", "weight_by_size": True}],
             "metadata": {"version": 1.0}}
    runs.write_text(folder / f"{PREFIX}{dataset}.yaml",
                    f"# every split of {dataset}, both formats. {GOLDS_NOTE}.\n"
                    + yaml.safe_dump(group, sort_keys=False))
    return names


def export(params, out: Path | None = None) -> dict[str, list[str]]:
    """Export every dataset of `params`; returns {dataset: [task names]}. Default folder
    runs/<run>/lm_eval_tasks."""
    from lib.models import load_tokenizer

    out = Path(out) if out is not None else runs.run_dir(params) / "lm_eval_tasks"
    tok = load_tokenizer(params.model)
    tasks = {d: export_dataset(params, d, out, tok) for d in params.dataset_names}
    runs.write_json(out / "tasks.json", {"params": params.name, "model": params.model.name, "tasks": tasks})
    return tasks


def main(argv=None) -> int:
    from lib.params import ParamsError, load

    argv = list(sys.argv[1:] if argv is None else argv)
    dry = "--dry-run" in argv  # build every dataset and ICL context, print their sizes, write no tasks
    argv = [a for a in argv if a != "--dry-run"]
    if not argv:
        print("usage: python -m tools.lm_eval_tasks <params> [overrides as JSON] [--dry-run]", file=sys.stderr)
        return 2
    try:
        params = load(argv[0], json.loads(argv[1]) if len(argv) > 1 else None)
    except (ParamsError, json.JSONDecodeError) as e:
        print(f"lm_eval_tasks: {e}", file=sys.stderr)
        return 2
    out = runs.run_dir(params) / "lm_eval_tasks"
    if dry:
        from lib.models import load_tokenizer

        tok, report, failed = load_tokenizer(params.model), {}, []
        for d in params.dataset_names:
            try:
                export_dataset(params, d, out, tok, write=False, report=report)
                print(d, json.dumps(report[d]), flush=True)
            except ValueError as e:
                failed.append(d)
                print(f"FAILED: {d}: {e}", file=sys.stderr, flush=True)
        return 1 if failed else 0
    tasks = export(params, out)
    print(f"{sum(map(len, tasks.values()))} tasks in {out}; run with:\n"
          f"  lm_eval --include_path {out} --tasks {','.join(PREFIX + d for d in tasks)} "
          "--model hf --model_args pretrained=<model> --device cpu")
    return 0


if __name__ == "__main__":
    sys.exit(main())
