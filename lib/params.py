"""The params files (`params/<name>.yaml`) and the one schema that validates them.

Every key is required (no hidden defaults), so a params file is a complete record of a run; an unknown key, a
wrong type or a missing value raises `ParamsError` naming the file and the key. A dataset absent from
`datasets:` is not built; beside the built-in generators, `datasets.<any name>: {path: <folder>,
learning_check: <split>}` is a dataset of your own (lib.file_datasets). Every path the params name must exist
when they load; `python -m lib.params` also checks the model and every line of the dataset files.

    >>> p = load("smoke")                        # params/smoke.yaml
    >>> p = load("cpu", {"model.name": "HuggingFaceTB/SmolLM2-360M-Instruct"})   # with an override
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .file_datasets import file_problems, folder_problems
from .runs import ROOT

PARAMS_DIR = ROOT / "params"
DATASETS = ("simple_reversals", "syllogisms", "reversal_curse", "semantic_structure", "derivatoids")
# A dataset from files: its name is part of file names (`<dataset>__<condition>.jsonl`) and lm-eval task names
FILE_DATASET_NAME = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
PROMPTS_DIR = ROOT / "lib" / "prompts"


class ParamsError(ValueError):
    """A params file (or override) that does not match the schema."""


class _Strict(BaseModel):
    # extra="forbid": unknown keys are errors; strict: "3" is not an int, 1 is not a bool.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ModelParams(_Strict):
    name: str  # "smollm2-135m-instruct" (the bundled GGUF), a Hugging Face hub id, or a local path
    dtype: Literal["float32", "bfloat16", "float16"]  # float32 on CPU
    quantization: Literal["none", "nf4"]  # nf4: 4-bit NormalFloat, bitsandbytes (QLoRA when finetuning)
    device: Literal["auto", "cpu", "cuda"]  # auto: CUDA when present, else CPU


class SimpleReversalsParams(_Strict):
    n_facts: int = Field(gt=0)  # paper: 100
    articles_per_fact: int = Field(gt=0)  # paper: 10
    counterbalance: bool  # half the facts (seeded) trained in the reverse form (subset = orientation)


class SyllogismsParams(_Strict):
    n_items: int = Field(gt=0)  # paper: 69
    existential_import: bool  # terms are non-empty sets (Aristotelian reading) when deciding validity
    counterbalance: bool  # gold quantifiers All : Some : No = 2 : 1 : 1 (each "always Q" scores chance)


class ReversalCurseParams(_Strict):
    people_per_group: int = Field(gt=0, le=30)  # P2D, D2P and Both groups have 30 people each (paper: all 30)
    distractor_pool: Literal["targets", "p2d"]  # targets: names that were training completions (paper)
    n_distractors: int = Field(gt=0)  # paper: 3 (4-way)
    both_pools: bool  # also a split `reversal_<other pool>` with distractors from the other pool
    examples_per_person: Optional[int] = Field(gt=0)  # paraphrases kept per person (null: all 30; Both: 2x)
    templates_per_person: int = Field(gt=0, le=10)  # held-out test templates per person (paper: 10)


class SemanticStructureParams(_Strict):
    n_categories: int = Field(gt=0)  # paper: 110
    n_documents: int = Field(gt=0)  # paper: 2,200
    min_sentences: int = Field(gt=0)  # paper: 4
    max_sentences: int = Field(gt=0)  # paper: 20
    holdout_fraction: float = Field(ge=0, lt=1)  # share of leaf categories held out
    max_items_per_split: int = Field(gt=0)  # cap on test items per split (0 < cap)
    n_options: int = Field(ge=2)  # options per test item: the answer + hard distractors (paper: not stated)
    counterbalance: bool  # each answer gold ~1/n_options of the times it is shown; neighbour distractors


class DerivatoidsParams(_Strict):
    n_train: int = Field(gt=0)  # training examples (the transform applied to one expression each)
    n_test: int = Field(gt=0)  # test items, split between `trained` and `compositional`
    n_options: int = Field(ge=2)  # the correct output + outputs of wrong rule applications
    counterbalance: bool  # distractors matched to the gold on symbol overlap with the prompt


class FileDatasetParams(_Strict):
    path: str  # folder holding train.jsonl and test.jsonl (the data contract); relative: from the repo root
    learning_check: str  # the test split that asks the trained material as trained (was it learned at all?)

    def folder(self) -> Path:
        """The dataset's folder: `path` as given when absolute, else from the repository root (never the cwd,
        which is notebooks/ under papermill)."""
        p = Path(self.path).expanduser()
        return p if p.is_absolute() else ROOT / p


class DatasetsParams(_Strict):
    # extra="allow": any other name is a dataset from files (its entries are validated as FileDatasetParams)
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    __pydantic_extra__: dict[str, FileDatasetParams] = Field(init=False)

    simple_reversals: Optional[SimpleReversalsParams] = None
    syllogisms: Optional[SyllogismsParams] = None
    reversal_curse: Optional[ReversalCurseParams] = None
    semantic_structure: Optional[SemanticStructureParams] = None
    derivatoids: Optional[DerivatoidsParams] = None

    @model_validator(mode="before")
    @classmethod
    def _file_dataset_names(cls, raw):
        if not isinstance(raw, dict):
            return raw
        # null switches a dataset from files off, as it does a built-in one (e.g. an override)
        raw = {k: v for k, v in raw.items() if k in DATASETS or v is not None}
        for name, entry in raw.items():
            if name not in DATASETS and not FILE_DATASET_NAME.fullmatch(str(name)):
                raise ValueError(f"datasets.{name}: a dataset's name must be lowercase letters, digits and "
                                 "single underscores, starting with a letter (it names files and tasks)")
            # an unknown name without `path` is far more often a misspelt built-in than a dataset from files
            if name not in DATASETS and (not isinstance(entry, dict) or "path" not in entry):
                raise ValueError(f"datasets.{name}: unknown dataset (built-in: {', '.join(DATASETS)}; a "
                                 "dataset from files is {path: <folder>, learning_check: <split>})")
        return raw

    @property
    def files(self) -> dict[str, FileDatasetParams]:
        """The datasets from files, in the order the params file gives them."""
        return dict(self.model_extra or {})


class ICLParams(_Strict):
    format: Literal["chat", "plain"]  # the instruct model's chat template, or plain text
    max_context_tokens: int = Field(gt=0)  # documents are subsampled to fit (always keeping tested facts)
    retrieval_k: int = Field(gt=0)  # documents per question for icl_retrieved
    retrieval_modes: list[Literal["bm25", "oracle"]]
    max_test_items: Optional[int] = Field(gt=0)  # cap on items per split; null: every item (cpu, paper)
    curve_sizes: list[int]  # documents per context on the curve (icl_n{size})
    curve_items: Optional[int] = Field(gt=0)  # items per split scored on the curve; null: every item
    support_last: bool = False  # curve contexts: the documents the items rest on last, after the filler

    @field_validator("curve_sizes")
    @classmethod
    def _sizes(cls, v):
        if any(s < 1 for s in v) or len(set(v)) != len(v):
            raise ValueError(f"icl.curve_sizes must be distinct positive document counts, got {v}")
        return sorted(v)


class FinetuneParams(_Strict):
    method: Literal["lora", "full"]
    lora_r: int = Field(gt=0)
    lora_alpha: int = Field(gt=0)
    lora_dropout: float = Field(ge=0, lt=1)
    target_modules: list[str]
    learning_rate: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    batch_size: int = Field(gt=0)
    steps: int = Field(gt=0)
    # passes over the plain-FT examples; when set, steps = ceil(epochs x examples / batch_size) (lib.training)
    epochs: Optional[float] = Field(default=None, gt=0)
    # sentence splitting of FT on the documents (not the splitting ablation's); null: the paper's
    # (independent; unsplit for the semantic structure's plain ft)
    splitting: Optional[Literal["none", "independent", "cumulative"]] = None
    warmup_steps: int = Field(ge=0)  # linear warmup from 0 to learning_rate over these steps, then `schedule`
    schedule: Literal["constant", "cosine"]  # after warmup: constant, or cosine decay to 0 at `steps`
    max_grad_norm: float = Field(gt=0)  # gradients clipped to this global L2 norm
    max_length: int = Field(gt=0)  # tokens per example; longer examples are an error, not silently cut
    loss_on: Literal["all", "completion"]  # completion: only where the data has prompt/completion
    seeds: list[int] = Field(min_length=1)
    splitting_ablation: list[str]  # datasets on which to run none / independent / cumulative
    # dataset -> the training keys above that differ for it: one recipe for every FT condition of the dataset,
    # chosen on its learning-check split only (lib.training.recipe)
    recipes: dict[str, dict[str, Any]]
    eval_every: Optional[int] = Field(gt=0)  # learning-check accuracy every k steps of plain ft (null: none)
    eval_items: int = Field(gt=0)  # items of the learning-check split in that curve (a seeded subset)


class AugmentParams(_Strict):
    kinds: list[Literal["local", "global", "both"]]
    model: Optional[str]  # generating model; null: the same model as the one finetuned
    temperature: float = Field(ge=0)
    samples_per_item: int = Field(gt=0)
    max_new_tokens: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    global_max_documents: int = Field(gt=0)  # documents that get a global augmentation (a random subset)
    repeat_control: bool  # also train on plain repetitions of the original data, matched in size
    format: Literal["plain", "chat"]  # plain text to continue, or one user turn of the chat template
    local_prompt: str  # file in lib/prompts/ (or a path): worked examples, then {sentence}
    global_prompt: str  # file in lib/prompts/ (or a path): {context} (the training set), then {document}
    seed: int  # sampling and the random subsets of sentences / documents
    max_local_sentences: int = Field(gt=0)  # distinct sentences that get a local augmentation (random subset)
    global_context_tokens: int = Field(gt=0)  # training-set context of global augmentation, subsampled to fit


class AnalysisParams(_Strict):
    ci_level: float = Field(gt=0, lt=1)  # confidence level of the claims table's intervals
    metric: Literal["acc", "acc_norm", "acc_mutual_info"]  # of the verdicts and figures (the other beside it)
    margin: float = Field(gt=0, lt=1)  # band for "at chance", "near zero", "near ceiling" (0.1 = 10 points)
    augmented_condition: Literal["aug_local", "aug_global", "aug_both"]  # "augmented FT" in Figs. 2-4 and C6
    learned_threshold: float = Field(ge=0, le=1)  # learning-check accuracy below which an arm is not tested


class Params(_Strict):
    name: str  # the file's stem (plus a hash of any overrides); runs go to runs/<name>/
    seed: int
    model: ModelParams
    datasets: DatasetsParams
    icl: ICLParams
    finetune: FinetuneParams
    augment: AugmentParams
    analysis: AnalysisParams

    @property
    def dataset_names(self) -> list[str]:
        """The datasets built: the built-in ones in the paper's order, then those from files in the file's."""
        return [d for d in DATASETS if getattr(self.datasets, d) is not None] + list(self.datasets.files)


def _format_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid params"]
    for e in err.errors():
        key = ".".join(str(x) for x in e["loc"]) or "(top level)"
        kind = {"extra_forbidden": "unknown key", "missing": "missing value"}.get(e["type"], e["msg"])
        if e["type"] == "value_error" and str(e["ctx"]["error"]).startswith(key + "."):
            lines.append(f"  {e['ctx']['error']}")  # a validator's own message, naming its key already
            continue
        got = "" if e["type"] in ("extra_forbidden", "missing") else f" (got {e.get('input')!r})"
        lines.append(f"  {key}: {kind}{got}")
    return "\n".join(lines)


def _apply_overrides(raw: dict, overrides: dict, source: str) -> dict:
    """Overrides use dotted keys: {"model.name": "gpt2", "finetune.steps": 10}. The key must exist."""
    raw = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = raw
        for k in [*parents, leaf]:
            if not isinstance(node, dict) or k not in node:
                raise ParamsError(f"{source}: override {dotted!r}: unknown key {k!r}")
            parent, node = node, node[k]
        parent[leaf] = value
    return raw


def validate(raw: dict, name: str, source: str = "<params>", overrides: dict | None = None) -> Params:
    """The Params of a params file's contents `raw` (with `overrides` applied); ParamsError naming every
    problem, `source` (the file) first."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    if "name" in raw:
        raise ParamsError(f"{source}: name: unknown key (the name is the file's stem)")
    raw = _apply_overrides(raw, overrides or {}, source)
    try:
        params = Params.model_validate({"name": name, **raw})
    except ValidationError as e:
        raise ParamsError(_format_error(e, source)) from None
    problems = _cross_field_problems(params)
    if problems:
        raise ParamsError(f"{source}: invalid params\n  " + "\n  ".join(problems))
    return params


def _cross_field_problems(p: Params) -> list[str]:
    """The rules one key's schema cannot state, each broken one as `key: what is wrong`: every path named
    exists (dataset folders and files; the prompts the augmentation kinds use), then the rules across keys."""
    out = [x for name, cfg in p.datasets.files.items() for x in folder_problems(name, cfg)]
    kinds = set(p.augment.kinds)
    for key, needed in (("local_prompt", {"local", "both"}), ("global_prompt", {"global", "both"})):
        name = getattr(p.augment, key)
        # the same lookup as lib.augmentation.prompt_path (which imports torch; this module must stay light)
        if kinds & needed and not (Path(name).is_file() or (PROMPTS_DIR / name).is_file()):
            out.append(f"augment.{key}: prompt not found: {name!r} (neither a file nor in {PROMPTS_DIR})")
    if not p.dataset_names:
        out.append("datasets: no dataset given (name at least one of " + ", ".join(DATASETS)
                   + ", or a dataset from files {path: <folder>, learning_check: <split>})")
    ft = p.finetune
    if ft.warmup_steps >= ft.steps:
        out.append(f"finetune.warmup_steps: {ft.warmup_steps} is not below finetune.steps ({ft.steps})")
    if len(set(ft.seeds)) != len(ft.seeds):
        out.append(f"finetune.seeds: repeated seeds {ft.seeds} "
                   "(each seed is one FT run; give distinct seeds)")
    unknown = [d for d in ft.splitting_ablation if d not in p.dataset_names]
    if unknown:
        out.append(f"finetune.splitting_ablation: {unknown} not among the datasets built ({p.dataset_names})")
    if len(set(ft.splitting_ablation)) != len(ft.splitting_ablation):
        out.append(f"finetune.splitting_ablation: repeated datasets {ft.splitting_ablation}")
    fixed = {"seeds", "splitting_ablation", "recipes", "eval_every", "eval_items"}
    for name, over in ft.recipes.items():
        if name not in p.dataset_names:
            if name not in DATASETS:  # a built-in dataset switched off (null) keeps its recipe, unused
                out.append(f"finetune.recipes: {name!r} is not among the datasets built ({p.dataset_names})")
            continue
        bad = sorted(set(over) - (set(FinetuneParams.model_fields) - fixed))
        if bad:
            out.append(f"finetune.recipes.{name}: {bad} are not per-dataset training keys")
            continue
        try:
            r = FinetuneParams(**{**ft.model_dump(), **over})
        except ValidationError as err:
            why = "; ".join(_format_error(err, "").splitlines()[1:]).strip()
            out.append(f"finetune.recipes.{name}: " + why)
            continue
        if r.warmup_steps >= r.steps and r.epochs is None:
            out.append(f"finetune.recipes.{name}: warmup_steps {r.warmup_steps} is not below steps {r.steps}")
    return out


def load(name: str = "smoke", overrides: dict | None = None) -> Params:
    """Load and validate `params/<name>.yaml` (or a path to a YAML file)."""
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = PARAMS_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
        raise ParamsError(f"params file not found: {path} (known: {', '.join(known)})")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None
    source = str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return validate(raw, run_name(path, overrides), source, overrides)


def run_name(path: Path, overrides: dict | None = None) -> str:
    """The run's folder name under runs/: the stem of a file in params/ (`cpu`); a file kept anywhere else
    gets a hash of its contents (`smoke-1a2b3c4d`), so that it never shares the built-in file's folder;
    overrides add a hash of their own (`cpu-5e6f7a8b`). Different params never share cached results."""
    path = Path(path).resolve()
    name = path.stem
    if path.parent != PARAMS_DIR.resolve():
        name += "-" + hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    if overrides:
        text = json.dumps(overrides, sort_keys=True, default=str)
        name += "-" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return name


USAGE = """usage: python -m lib.params <params name or path.yaml> [overrides as a JSON object]
  validates the params (the model, every path and every dataset file's lines) and prints the run's folder
  name under runs/
  e.g. python -m lib.params cpu '{"model.name": "HuggingFaceTB/SmolLM2-360M-Instruct"}'"""


def cli_overrides(model: str = "", extra: str = "") -> dict:
    """The overrides of `make reproduce MODEL=... OVERRIDES='{json}'`: the JSON object, plus model.name."""
    try:
        out = json.loads(extra) if extra.strip() else {}
    except json.JSONDecodeError as e:
        raise ParamsError(f"OVERRIDES is not valid JSON ({e.msg}): {extra!r}") from None
    if not isinstance(out, dict):
        raise ParamsError(f"OVERRIDES must be a JSON object of dotted keys, got {extra!r}")
    return {**out, "model.name": model} if model else out


def main(argv: list[str]) -> int:
    """`python -m lib.params <name> [overrides]`: validate the params, the model (it can be had) and every
    line of every dataset from files (lib.file_datasets), and print the run's name, or the problems (exit 2).
    `python -m lib.params --overrides`: the JSON of MODEL and OVERRIDES from the environment. The Makefile
    calls both before running any notebook. Reads files, writes nothing."""
    if len(argv) not in (1, 2) or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr)
        return 2
    try:
        if argv == ["--overrides"]:
            print(json.dumps(cli_overrides(os.environ.get("MODEL", ""), os.environ.get("OVERRIDES", ""))))
            return 0
        try:
            overrides = json.loads(argv[1]) if len(argv) == 2 else None
        except json.JSONDecodeError as e:
            raise ParamsError(f"overrides are not valid JSON ({e.msg}): {argv[1]!r}") from None
        if overrides is not None and not isinstance(overrides, dict):
            raise ParamsError(f"overrides must be a JSON object of dotted keys, got {argv[1]!r}")
        params = load(argv[0], overrides or None)
        from .models import check_available  # imports torch

        problems = []
        try:
            check_available(params.model.name)
        except FileNotFoundError as e:
            problems.append(f"model.name: {e}")
        problems += [x for name in params.datasets.files for x in file_problems(params, name)]
        if len(problems) == 1:
            raise ParamsError(problems[0])
        if problems:
            raise ParamsError(f"{len(problems)} problems:\n  " + "\n  ".join(problems))
    except (ParamsError, FileNotFoundError) as e:
        print(f"params: {e}", file=sys.stderr)
        return 2
    print(params.name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
