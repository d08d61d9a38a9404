"""Dataset cards: a README.md in the Hugging Face dataset-card format in each dataset folder. Its YAML header
(license, task and size categories, configs `test`, the default, and `train`: the two files have different
fields) lets `datasets.load_dataset` read the folder as published.

    >>> write_card(folder, manifest, train, test, baselines=table)     # folder holds train.jsonl, test.jsonl
"""
from __future__ import annotations

from pathlib import Path

import yaml

from . import runs
from .baselines import chance
from .file_datasets import FILE_GENERATOR

LICENSE = "mit"
PAPER = ("the research compendium reproducing Lampinen et al. 2025, *On the generalization of language "
         "models from in-context learning and finetuning* (arXiv 2505.00661)")
ABOUT = {
    "simple_reversals": "Made-up facts relating nonsense words, stated in short articles; the test asks for "
                        "the facts as trained (forward) and reversed (Lampinen et al. 2025, section 3.1).",
    "syllogisms": "Syllogisms over nonsense terms; the test asks which conclusion follows (section 3.2).",
    "reversal_curse": "Fictitious people and their descriptions (Berglund et al. 2023), trained in one "
                      "direction; the test asks forward and reversed (section 3.3).",
    "semantic_structure": "Documents about a made-up hierarchy of categories and properties; the test asks "
                          "rephrasings, reversals, syllogisms and held-out categories (section 3.4).",
    "derivatoids": "Rule-based rewrites of expressions; the test applies trained and composed rules.",
}
FIELDS = {
    "id": "unique id of the row", "split": "evaluation split the item belongs to",
    "subset": "finer grouping inside a split", "prompt": "text the options continue (after a space)",
    "options": "candidate answers", "gold": "index of the correct option (the first when several are)",
    "golds": "indices of every correct option (default [gold])",
    "cluster": "the fact / person / category the answer rests on (for clustered standard errors)",
    "text": "a training document", "facts": "ids of the facts a training document states",
    "support": "ids of the facts an item rests on", "sentences": "the document's sentences",
    "completion": "completion of a training example (the loss is on it; `prompt` is its prompt)",
    "prompt_real": "the prompt with the real-world words the nonsense words stand for",
    "options_real": "the options with the real-world words", "truth": "truth values behind the item",
    "valid": "indices of every logically valid conclusion",
}


def size_category(n: int) -> str:
    names = ["n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M"]
    return names[sum(n >= limit for limit in (1_000, 10_000, 100_000, 1_000_000))]


def split_table(test: list[dict]) -> list[dict]:
    """Per evaluation split: items, options (min-max) and chance (mean of len(golds) / len(options))."""
    rows = []
    for split in dict.fromkeys(it["split"] for it in test):
        xs = [it for it in test if it["split"] == split]
        n_opt = [len(it["options"]) for it in xs]
        rows.append({"split": split, "items": len(xs), "options": f"{min(n_opt)}-{max(n_opt)}"
                     if min(n_opt) != max(n_opt) else str(n_opt[0]),
                     "chance": sum(chance(it) for it in xs) / len(xs)})
    return rows


def _md(rows: list[dict]) -> str:
    # not pandas' to_markdown: tabulate pads the columns, so every card would change
    cols = list(rows[0])
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    return "\n".join(["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
                     + ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]) + "\n"


def _fields(rows: list[dict]) -> list[dict]:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return [{"field": k, "type": type(next(r[k] for r in rows if k in r)).__name__,
             "meaning": FIELDS.get(k, "")} for k in keys]


def write_card(folder, manifest: dict, train: list[dict], test: list[dict], baselines=None) -> Path:
    """Write folder/README.md (atomically) and return its path. `baselines`: lib.baselines.table or its rows;
    train and test are not empty (lib.datasets.validate)."""
    name, version = manifest["dataset"], manifest.get("generator_version")
    # data the compendium did not make: neither its license nor its provenance can be asserted
    from_files = manifest.get("generator") == FILE_GENERATOR
    header = {"license": "other" if from_files else LICENSE, "language": ["en"],
              "pretty_name": name.replace("_", " "),
              "task_categories": ["multiple-choice", "text-generation"],
              "size_categories": [size_category(len(train) + len(test))],
              "configs": [{"config_name": "test", "data_files": [{"split": "test", "path": "test.jsonl"}],
                           "default": True},
                          {"config_name": "train",
                           "data_files": [{"split": "train", "path": "train.jsonl"}]}]}
    if from_files:
        about = (f"A dataset read from files (`{(manifest.get('params') or {}).get('path')}`), in the data "
                 f"contract of {PAPER}. Its learning-check split is `{manifest.get('learning_check')}`.\n")
        source = ["## Source\n", "Read from the files named below and normalised to the data contract "
                  f"(optional fields filled in; normalisation version {version}); the same source files give "
                  "these files byte for byte. Parameters:\n"]
        license = "The license of the source files applies.\n"
    else:
        about = (ABOUT.get(name, "") + f" Generated by {PAPER}; the first public version of the paper's "
                 "synthetic datasets.\n")
        source = ["## Generation\n", f"Generator `{manifest.get('generator')}` version {version}, seed "
                  f"{manifest.get('seed')}; the same parameters give the same files byte for byte. "
                  "Parameters:\n"]
        license = (f"{LICENSE.upper()} (the compendium's LICENSE). The names and words are invented; no "
                   "personal data.\n")
    parts = ["---\n" + yaml.safe_dump(header, sort_keys=False) + "---\n", f"# {name}\n", about,
             "Every test item is multiple choice: score each option as the continuation `\" \" + option` of "
             "`prompt` (lm-evaluation-harness semantics); an item is correct when the best option is in "
             "`golds`. Load with `load_dataset(<folder>)` (the test items) or `load_dataset(<folder>, "
             "\"train\")`.\n", "## Splits and sizes\n",
             f"`train.jsonl`: {len(train)} rows (the documents / examples to learn from). "
             f"`test.jsonl`: {len(test)} items, in these evaluation splits (its `split` field):\n",
             _md(split_table(test)), "## Fields\n", "Train rows:\n", _md(_fields(train)),
             "Test items:\n", _md(_fields(test))]
    if baselines is not None:
        rows = baselines.to_dict(orient="records") if hasattr(baselines, "to_dict") else list(baselines)
        parts += ["## Shortcut baselines\n", "Accuracy of answering without the training data (a model or "
                  "rule that reaches these numbers exploits a shortcut, not the facts):\n", _md(rows)]
    parts += [*source, "```yaml\n" + yaml.safe_dump(manifest.get("params"), sort_keys=True) + "```\n",
              "SHA-256: " + ", ".join(f"`{f}` {h}" for f, h in (manifest.get("sha256") or {}).items()) + "\n",
              "## License\n", license]
    path = Path(folder) / "README.md"
    runs.write_text(path, "\n".join(parts))
    return path
