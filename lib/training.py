"""Finetuning (the paper's Section 5): LoRA, QLoRA or full finetuning on an accelerate-driven loop.

The model is finetuned on the same training documents that ICL sees in its context (data-matched), then
scored on every test split with the prompt alone (no context) by the same scorer as ICL.

Sentence splitting (`make_examples`): a multi-sentence document is trained on
  - `none`:        as one example (the whole document is the target);
  - `independent`: each sentence is its own example (the paper's default);
  - `cumulative`:  one example per sentence, with all preceding sentences of its document as unscored context.
Where a document has "prompt"/"completion" and `finetune.loss_on` is `completion`, the prompt is unscored
context and only the completion is the target (any splitting: such a document is a single "sentence").

The loop (`train`) is driven by `accelerate.Accelerator` (one CPU, or `accelerate launch` over many processes:
DDP for LoRA, FSDP for full FT; configs in params/accelerate/; bf16 autocast on CUDA):
  - AdamW (torch; lr, weight decay on matrices from params); the schedule is transformers' `get_scheduler`
    (linear warmup from 0 over `warmup_steps`, then constant, or cosine decay to 0 at the last step);
    gradients clipped to `max_grad_norm` by the accelerator. Each step takes `batch_size` examples from a
    seeded shuffle (a fresh permutation per epoch), the same on every process; process r of N trains on
    examples r, r+N, ... of the step (gradient accumulation over its packed rows), so the global batch is
    `batch_size` whatever N. The loss is the sum over the step's target tokens divided by their global count
    (times N, which DDP's gradient mean undoes): the same gradient as one process over the whole batch.
  - No padding: a process's examples are packed back to back into rows of at most `max_length` tokens
    (first-fit decreasing; rows are capped because attention costs grow with the row's square), flattened
    by transformers' `DataCollatorWithFlattening` (positions restarting at 0 for each example); with sdpa or
    eager attention transformers turns restarting `position_ids` into a block-diagonal causal mask, so packed
    examples never attend to each other (tests/test_training.py checks it for both).
  - Logits only where the loss is taken: the model is called with `logits_to_keep` = the positions that
    predict a target token; the other positions never touch the 49K-word vocabulary. `use_cache=False` is
    needed: with a cache, transformers does not look for packed sequences (and lets them attend to each
    other).
  - LoRA through peft: the number of trainable parameters must equal r * (in + out) summed over the Linear
    layers that `target_modules` names (peft silently ignores names that match nothing; we do not).
    `model.quantization: nf4` loads the base in 4-bit NormalFloat (bitsandbytes): QLoRA, same code.

Outputs are cached under runs/<params>/ft/<dataset>/<tag>-<hash>/ keyed by the model params, the finetune
params that shape training, the hash of the examples (which fixes rows, splitting and loss_on) and the seed:
the adapter (or the full model), loss_curve.json and train_info.json. The folder is written under a temp
name, renamed, then stamped: a killed run leaves no stamp and retrains from scratch. train_info.json
records the run's wall time (`wall_seconds`: load, train, save) beside the training time (`seconds`).

Several processes: `accelerate launch --config_file params/accelerate/ddp_lora.yaml -m lib.training cpu`
trains every FT run of the params' datasets (cached); the notebooks then find them in the cache.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path

import torch

from . import runs
from .models import load_model

SPLITTINGS = ("none", "independent", "cumulative")
# The paper's plain-FT splitting per dataset: independent, except the semantic-structure baseline (unsplit).
DEFAULT_SPLITTING = {"semantic_structure": "none"}
CONDITION_OF_SPLITTING = {"independent": "ft_split_independent", "cumulative": "ft_split_cumulative",
                          "none": "ft_nosplit"}
# Params of `finetune.*` that do not change one training run (they choose which runs happen, or what is
# measured along the way: the learning-check curve is scored in eval mode and consumes no random numbers).
_NOT_TRAINING_KEYS = ("seeds", "splitting_ablation", "recipes", "eval_every", "eval_items")
# Part of every finetuning cache key: raise it when a change to this file changes what a seed trains, so that
# adapters cached by older code are retrained (2: the LoRA initialisation is seeded; 3: accelerate loop,
# transformers' schedule, whose warmup starts at lr 0).
TRAINER_VERSION = 3


# ------------------------------------------------------------------------------------------- examples
def default_splitting(dataset: str, ft) -> str:
    """The splitting of the plain `ft` condition of a dataset: its recipe's `splitting` (finetune params
    `ft`), else the paper's."""
    return ft.recipes.get(dataset, {}).get("splitting") or DEFAULT_SPLITTING.get(dataset, "independent")


def augmented_splitting(dataset: str, ft) -> str:
    """The splitting of augmented FT and its repeat control: the recipe's `splitting`, else independent (the
    paper's default, also where plain FT is unsplit)."""
    return ft.recipes.get(dataset, {}).get("splitting") or "independent"


def _sentence_spans(text: str, sentences: list[str]) -> list[tuple[int, int]]:
    """(start, end) of each sentence inside the document text, found in order."""
    spans, pos = [], 0
    for s in sentences:
        i = text.find(s, pos)
        if i < 0:
            raise ValueError(f"sentence {s!r} not found in order in the document text {text[:80]!r}...")
        spans.append((i, i + len(s)))
        pos = i + len(s)
    return spans


def make_examples(rows: list[dict], splitting: str, loss_on: str) -> list[dict]:
    """Training examples {"context": unscored text, "target": scored text, "row": row id} from train rows.

    - A row with "prompt"/"completion" under loss_on="completion": one example (prompt | completion).
    - none: one example per row, target = the whole text.
    - independent: one example per sentence, target = the sentence, no context.
    - cumulative: one example per sentence; context = the document up to the end of the previous sentence,
      target = the separator that follows it plus the sentence (so context + target is a prefix of the
      document, tokenised the way the document is: " Word" rather than "Word").
    """
    if splitting not in SPLITTINGS:
        raise ValueError(f"unknown splitting {splitting!r} (known: {', '.join(SPLITTINGS)})")
    if loss_on not in ("all", "completion"):
        raise ValueError(f"unknown loss_on {loss_on!r} (known: all, completion)")
    if not rows:
        raise ValueError("no training rows: cannot finetune on an empty dataset")
    out = []
    for row in rows:
        rid = row.get("id", "")
        if loss_on == "completion" and "prompt" in row and "completion" in row:
            out.append({"context": row["prompt"], "target": row["completion"], "row": rid})
            continue
        text = row["text"]
        sentences = row.get("sentences") or [text]
        if splitting == "none" or len(sentences) == 1:
            out.append({"context": "", "target": text, "row": rid})
        elif splitting == "independent":
            out.extend({"context": "", "target": s, "row": rid} for s in sentences)
        else:
            spans = _sentence_spans(text, sentences)
            prev_end = 0
            for k, (start, end) in enumerate(spans):
                ctx = text[:prev_end] if k else ""
                tgt = text[prev_end:end] if k else text[start:end]
                out.append({"context": ctx, "target": tgt, "row": rid})
                prev_end = end
    return out


def tokenize_examples(tok, examples: list[dict], max_length: int) -> list[dict]:
    """Token ids and the scored positions of each example: {"ids": [...], "n_context": int}.

    As in the scorer (lib.models.encode_pair, lm-eval's convention), context + target are tokenised jointly
    and cut at the context's own token length, so a training example is tokenised exactly like the document
    it comes from. The tokenizer's own special tokens (BOS where it adds one) start the example. An example
    longer than max_length is an error naming it, never silently cut.
    """
    out = []
    special = tok("", add_special_tokens=True).input_ids  # [] or [BOS]
    for i, ex in enumerate(examples):
        if not ex["target"]:
            raise ValueError(f"example {i} (row {ex.get('row')!r}) has an empty target")
        context = ex["context"].rstrip()  # a trailing space belongs to the target's first token
        whole = tok(ex["context"] + ex["target"], add_special_tokens=False).input_ids
        n_ctx = len(tok(context, add_special_tokens=False).input_ids) if context else 0
        ctx = special + whole[:n_ctx]
        ids = special + whole
        if len(ids) > max_length:
            raise ValueError(
                f"example {i} (row {ex.get('row')!r}) has {len(ids)} tokens, more than finetune.max_length="
                f"{max_length}: raise max_length or split the document (splitting: independent/cumulative)")
        n_context = max(len(ctx), 1)  # the first token of a document with no BOS is never predicted
        if len(ids) - n_context < 1:
            raise ValueError(f"example {i} (row {ex.get('row')!r}) has no token to predict: {ex['target']!r}")
        out.append({"ids": ids, "n_context": n_context})
    return out


def pack(examples: list[dict], capacity: int) -> list[list[int]]:
    """Indices of `examples` (tokenised) packed into rows of at most `capacity` tokens (first-fit
    decreasing)."""
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["ids"]))
    rows, free = [], []
    for i in order:
        n = len(examples[i]["ids"])
        for r, f in enumerate(free):
            if n <= f:
                rows[r].append(i)
                free[r] -= n
                break
        else:
            rows.append([i])
            free.append(capacity - n)
    return rows


def collate(examples: list[dict]) -> dict:
    """One packed row through transformers' `DataCollatorWithFlattening`: input_ids, position_ids (restarting
    per example) and labels (-100 on context tokens and on each example's first token), all shaped (1, T)."""
    from transformers import DataCollatorWithFlattening

    feats = [{"input_ids": e["ids"], "labels": [-100] * e["n_context"] + e["ids"][e["n_context"]:]}
             for e in examples]
    return DataCollatorWithFlattening(return_tensors="pt")(feats)


def packed_loss(model, batch: dict) -> torch.Tensor:
    """Summed next-token cross-entropy of a packed row (`collate`), logits computed only at the positions
    that predict a label (`logits_to_keep`): position t - 1 predicts the token labelled at t."""
    labels = batch["labels"][0]
    targets = (labels != -100).nonzero()[:, 0]
    dev = next(p for p in model.parameters()).device
    out = model(input_ids=batch["input_ids"].to(dev), position_ids=batch["position_ids"].to(dev),
                logits_to_keep=(targets - 1).to(dev), use_cache=False)
    return torch.nn.functional.cross_entropy(out.logits[0].float(), labels[targets].to(dev), reduction="sum")


# ---------------------------------------------------------------------------------------------- model
def _linear_shape(module) -> tuple[int, int] | None:
    """(in_features, out_features) of a Linear-like layer (torch Linear, bitsandbytes Linear4bit), else
    None."""
    if isinstance(module, torch.nn.Linear) or type(module).__name__ in ("Linear4bit", "Linear8bitLt"):
        return int(module.in_features), int(module.out_features)
    return None


def expected_lora_parameters(model, target_modules: list[str], r: int) -> int:
    """r * (in + out) summed over the Linear layers whose name ends with a target name.

    A target name that matches no Linear layer is an error (peft would silently skip it)."""
    counts = {t: 0 for t in target_modules}
    total = 0
    linear_names = set()
    for name, module in model.named_modules():
        shape = _linear_shape(module)
        if shape is None:
            continue
        leaf = name.rsplit(".", 1)[-1]
        linear_names.add(leaf)
        for t in target_modules:
            if name == t or name.endswith("." + t):
                counts[t] += 1
                total += r * (shape[0] + shape[1])
                break
    missing = [t for t, c in counts.items() if c == 0]
    if missing:
        raise ValueError(f"finetune.target_modules {missing} match no Linear layer of the model "
                         f"(its Linear layers: {', '.join(sorted(linear_names))})")
    return total


def n_trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def prepare_model(model, ft, *, seed: int) -> torch.nn.Module:
    """Put LoRA adapters on the model (or unfreeze it for full finetuning) and check the trainable count.

    The adapters' random initialisation (peft draws LoRA A from torch's global generator) is seeded with
    `seed`, so the same seed gives the same adapter whatever the caller drew before."""
    ft = ft if isinstance(ft, dict) else ft.model_dump()
    quantized = getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_quantized", False)
    if ft["method"] == "full":
        if quantized:
            raise ValueError("finetune.method full cannot train a 4-bit (nf4) model: use method lora (QLoRA)")
        for p in model.parameters():
            p.requires_grad_(True)
        expected = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
        got = n_trainable(model)
    elif ft["method"] == "lora":
        from peft import LoraConfig, get_peft_model

        expected = expected_lora_parameters(model, ft["target_modules"], ft["lora_r"])
        config = LoraConfig(r=ft["lora_r"], lora_alpha=ft["lora_alpha"], lora_dropout=ft["lora_dropout"],
                            target_modules=list(ft["target_modules"]), bias="none", task_type="CAUSAL_LM")
        torch.manual_seed(seed)
        model = get_peft_model(model, config)
        got = n_trainable(model)
    else:
        raise ValueError(f"unknown finetune.method {ft['method']!r} (known: lora, full)")
    if got != expected:
        raise RuntimeError(f"{got:,} trainable parameters, but finetune params imply {expected:,} "
                           f"(method {ft['method']}, target_modules {ft.get('target_modules')})")
    return model


def accelerator(model=None):
    """The `accelerate.Accelerator` of this process: bf16 autocast on CUDA, the CPU when the model is
    there."""
    from accelerate import Accelerator

    on_cpu = model is not None and next(model.parameters()).device.type == "cpu"
    bf16 = torch.cuda.is_available() and not on_cpu
    return Accelerator(cpu=on_cpu, mixed_precision="bf16" if bf16 else "no")


def train(model, tok, examples: list[dict], ft, *, seed: int, progress: bool = True,
          desc: str = "finetune", acc=None) -> dict:
    """Finetune `model` (already prepared) on `examples` in place; returns the loss curve and timing.

    {"step": [...], "loss": [...] (mean over the step's target tokens, all processes), "lr": [...], "tokens":
     [...] (tokens forwarded per step, all processes), "seconds": float, "tokens_per_s": float, ...}"""
    return _train(model, tok, examples, ft, seed=seed, progress=progress, desc=desc, acc=acc)[1]


def accuracy(model, tok, items: list[dict]) -> float:
    """Share of `items` (no context) whose highest-likelihood option is a gold (lib.scoring's rule)."""
    from . import scoring

    was_training = model.training
    model.eval()
    lls, _ = scoring.loglikelihoods(model, tok, items)
    model.train(was_training)
    return sum(scoring._argmax(ll) in scoring.golds(it) for ll, it in zip(lls, items)) / len(items)


def _train(model, tok, examples, ft, *, seed, progress=True, desc="finetune", acc=None, check=None):
    from tqdm import tqdm
    from transformers import get_scheduler

    ft = ft if isinstance(ft, dict) else ft.model_dump()
    acc = acc or accelerator(model)
    rank, world = acc.process_index, acc.num_processes
    if ft["batch_size"] < world:
        raise ValueError(f"finetune.batch_size {ft['batch_size']} is smaller than the {world} processes")
    data = tokenize_examples(tok, examples, ft["max_length"])
    torch.manual_seed(seed)
    order_rng = random.Random(f"ft-order:{seed}")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2],
                              "weight_decay": ft["weight_decay"]},
                             {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],
                            lr=ft["learning_rate"])
    sched = get_scheduler("cosine" if ft["schedule"] == "cosine" else "constant_with_warmup", opt,
                          num_warmup_steps=ft["warmup_steps"], num_training_steps=ft["steps"])
    # Model and optimizer in one prepare: FSDP2 swaps the optimizer's parameters for the sharded ones (and
    # refuses them apart). The scheduler stays unprepared: accelerate's would step once per process.
    wrapped, opt = acc.prepare(model, opt)
    params = [p for p in wrapped.parameters() if p.requires_grad]
    wrapped.train()
    stream: list[int] = []
    curve = {k: [] for k in ("step", "loss", "lr", "grad_norm", "tokens", "target_tokens", "step_seconds",
                             "check_step", "check_acc")}
    check_s = 0.0
    t0 = time.perf_counter()
    n_tok = 0
    bar = tqdm(range(ft["steps"]), desc=desc, disable=not progress or rank != 0, mininterval=1.0)
    for step in bar:
        ts = time.perf_counter()
        while len(stream) < ft["batch_size"]:
            perm = list(range(len(data)))
            order_rng.shuffle(perm)
            stream.extend(perm)
        batch, stream = stream[:ft["batch_size"]], stream[ft["batch_size"]:]
        n_target = sum(len(data[i]["ids"]) - data[i]["n_context"] for i in batch)
        mine = [data[i] for i in batch[rank::world]]
        lr = sched.get_last_lr()[0]
        rows = pack(mine, ft["max_length"])
        total = torch.zeros((), dtype=torch.float64, device=acc.device)
        for k, row in enumerate(rows):  # gradients are synchronised on the last row only
            with acc.no_sync(wrapped) if k < len(rows) - 1 else contextlib.nullcontext():
                loss = packed_loss(wrapped, collate([mine[i] for i in row])) / n_target
                acc.backward(loss * world)
            total += loss.detach().double()
        grad_norm = float(acc.clip_grad_norm_(params, ft["max_grad_norm"]))  # the norm before clipping
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        total = float(acc.reduce(total, "sum")) if world > 1 else float(total)
        tokens = sum(len(data[i]["ids"]) for i in batch)
        n_tok += tokens
        for k, v in (("step", step + 1), ("loss", total), ("lr", lr), ("grad_norm", grad_norm),
                     ("tokens", tokens), ("target_tokens", n_target),
                     ("step_seconds", time.perf_counter() - ts)):
            curve[k].append(v)
        if check is not None and ((step + 1) % ft["eval_every"] == 0 or step + 1 == ft["steps"]):
            tc = time.perf_counter()
            curve["check_step"].append(step + 1)
            curve["check_acc"].append(check(acc.unwrap_model(wrapped)))
            check_s += time.perf_counter() - tc
        bar.set_postfix(loss=f"{total:.3f}", tok_s=f"{n_tok / (time.perf_counter() - t0 - check_s):.0f}")
    bar.close()
    wrapped.eval()
    model.eval()
    seconds = time.perf_counter() - t0 - check_s  # training time: the learning-check scoring left out
    return wrapped, {**curve, "seconds": seconds, "check_seconds": check_s, "tokens_per_s": n_tok / seconds,
                     "s_per_step": seconds / ft["steps"], "n_examples": len(data),
                     "n_trainable": n_trainable(model)}


# -------------------------------------------------------------------------------------------- caching
def recipe(ft, dataset: str, n_examples: int | None = None):
    """The finetune params one dataset trains with: `ft` with `ft.recipes[dataset]` (steps, learning rate,
    ...) put in. Every FT condition of the dataset (plain, split, augmented, repeat) trains with it, so their
    comparisons stay step-matched; lib.params has checked the keys. A recipe in `epochs` needs `n_examples`,
    the dataset's plain-FT example count (`plain_examples`): steps = ceil(epochs x n_examples / batch_size)."""
    r = ft.model_copy(update=ft.recipes.get(dataset, {}))
    if r.epochs is None:
        return r
    if n_examples is None:
        raise ValueError(f"the {dataset} recipe is given in epochs: its plain-FT example count is needed")
    steps = math.ceil(r.epochs * n_examples / r.batch_size)
    if r.warmup_steps >= steps:
        raise ValueError(f"finetune recipe of {dataset}: warmup_steps {r.warmup_steps} is not below the "
                         f"{steps} steps of {r.epochs:g} epochs of {n_examples} examples")
    return r.model_copy(update={"steps": steps})


def plain_examples(params, dataset: str) -> int:
    """The number of examples of the dataset's plain `ft` condition (its default splitting): what an epoch
    of every FT condition of the dataset counts."""
    from . import datasets

    rows, _, _ = datasets.load(params, dataset)
    return len(make_examples(rows, default_splitting(dataset, params.finetune), params.finetune.loss_on))


def dataset_recipe(params, dataset: str):
    """`recipe` of the dataset with its epochs, if any, turned into steps."""
    uses_epochs = params.finetune.recipes.get(dataset, {}).get("epochs", params.finetune.epochs) is not None
    return recipe(params.finetune, dataset, plain_examples(params, dataset) if uses_epochs else None)


def ft_key(params, ft, examples: list[dict], seed: int) -> dict:
    """What a finetuned model depends on: model params, the dataset's training recipe `ft` (dataset_recipe),
    the examples, the seed."""
    training = {k: v for k, v in ft.model_dump().items() if k not in _NOT_TRAINING_KEYS + ("epochs",)}
    return {"model": params.model.model_dump(), "finetune": training, "seed": seed,
            "trainer_version": TRAINER_VERSION,
            "examples": runs.key_hash([[e["context"], e["target"]] for e in examples])}


def ft_dir(params, dataset: str, tag: str, key: dict) -> Path:
    return runs.run_dir(params) / "ft" / dataset / f"{tag}-{runs.key_hash(key, 12)}"


def finetune(params, dataset: str, rows: list[dict], *, splitting: str, seed: int, tag: str | None = None,
             progress: bool = True, check_items: list[dict] | None = None) -> Path:
    """Finetune the params' model on `rows` with the dataset's recipe (cached); returns the folder holding the
    adapter (or model), loss_curve.json and train_info.json. Same model, recipe, examples and seed -> same
    folder, reused. With `check_items` and finetune.eval_every, their accuracy is scored every eval_every
    steps and after the last (loss_curve.json "check_step" / "check_acc": the learning curve of notebook
    03)."""
    ft = dataset_recipe(params, dataset)
    examples = make_examples(rows, splitting, ft.loss_on)
    key = ft_key(params, ft, examples, seed)
    out = ft_dir(params, dataset, tag or "ft", key)
    if runs.is_fresh(out, key):
        return out
    t_wall = time.perf_counter()
    model, tok = load_model(params.model)
    model = prepare_model(model, ft, seed=seed)
    acc = accelerator(model)
    check = None
    if check_items and ft.eval_every:
        def check(m):  # the share of check items whose top option is gold, the model as it is now
            return accuracy(m, tok, check_items)
    wrapped, info = _train(model, tok, examples, ft, seed=seed, progress=progress,
                           desc=f"{dataset} {tag or 'ft'} {splitting} s{seed}", acc=acc, check=check)
    fsdp = acc.distributed_type.name == "FSDP"
    state = acc.get_state_dict(wrapped) if fsdp else None  # every process takes part (gathers the shards)
    if acc.is_main_process:
        runs.invalidate(out)  # the old stamp goes before the folder does: a kill from here on leaves no stamp
        tmp = out.parent / f".{out.name}.tmp"
        for stale in (tmp, out):
            if stale.exists():
                shutil.rmtree(stale)
        tmp.mkdir(parents=True)
        model.save_pretrained(tmp, safe_serialization=True, **({"state_dict": state} if fsdp else {}))
        if ft.method == "full":
            tok.save_pretrained(tmp)
        curve = {k: info[k] for k in ("step", "loss", "lr", "grad_norm", "tokens", "target_tokens",
                                      "step_seconds", "check_step", "check_acc")}
        runs.write_json(tmp / "loss_curve.json", curve)
        runs.write_json(tmp / "train_info.json", {
            "dataset": dataset, "tag": tag or "ft", "splitting": splitting, "seed": seed,
            **{k: info[k] for k in ("seconds", "check_seconds", "tokens_per_s", "s_per_step", "n_examples",
                                    "n_trainable")},
            "processes": acc.num_processes, "distributed": acc.distributed_type.name,
            "wall_seconds": time.perf_counter() - t_wall,
            "first_loss": info["loss"][0], "last_loss": info["loss"][-1]})
        os.replace(tmp, out)
        runs.mark_fresh(out, key)
    acc.wait_for_everyone()
    return out


def load_finetuned(params, folder: Path):
    """(model, tokenizer) of a finetune() folder, in eval mode (full FT or adapter, from its dataset's
    recipe)."""
    dataset = runs.read_json(Path(folder) / "train_info.json")["dataset"]
    if params.finetune.recipes.get(dataset, {}).get("method", params.finetune.method) == "full":
        return load_model({**params.model.model_dump(), "name": str(folder)})
    return load_model(params.model, adapter=folder)


def read_loss_curve(folder: Path) -> dict:
    return runs.read_json(Path(folder) / "loss_curve.json")


# ------------------------------------------------------------------------------------------ evaluation
def condition_name(base: str, seed: int, params) -> str:
    """`base`, or `base__s<seed>` when the params ask for several seeds."""
    return f"{base}__s{seed}" if len(params.finetune.seeds) > 1 else base


def run_ft(params, dataset: str, condition: str, rows: list[dict], *, splitting: str, seed: int,
           tag: str | None = None, items: list[dict] | None = None, progress: bool = True):
    """Finetune on `rows`, then score every test item with the prompt alone (lib.scoring.evaluate).

    `condition` is the results' condition name (seed suffix added here when params ask for several seeds);
    `items` default to the dataset's test items. Returns the results DataFrame."""
    from . import datasets, scoring

    if items is None:
        _, items, _ = datasets.load(params, dataset)
    first_plain = condition == "ft" and seed == params.finetune.seeds[0]  # records the learning curve
    check = check_items(params, dataset, items) if first_plain else None
    folder = finetune(params, dataset, rows, splitting=splitting, seed=seed, tag=tag, progress=progress,
                      check_items=check)
    key = {"ft": runs.read_json(runs.stamp_path(folder))["key_hash"]}
    name = condition_name(condition, seed, params)
    done = scoring.cached_results(params, dataset, name, items, "", seed=seed, key=key)
    if done is not None:  # scored already: no need to load the model
        return done
    model, tok = load_finetuned(params, folder)
    return scoring.evaluate(params, dataset, name, model, tok, items, context="", seed=seed, key=key)


def check_items(params, dataset: str, items: list[dict]) -> list[dict]:
    """The items of the learning curve: a seeded subset (finetune.eval_items) of the learning-check split."""
    from .datasets import learning_check_split

    split = learning_check_split(dataset, params, {it["split"] for it in items})
    pool = [it for it in items if it["split"] == split]
    k = min(params.finetune.eval_items, len(pool))
    return sorted(random.Random(f"ft-check:{params.seed}:{dataset}").sample(pool, k), key=pool.index)


def ft_plan(params, dataset: str) -> list[dict]:
    """The runs of the plain-FT arm of a dataset: `ft` (the paper's default splitting) for every seed and, for
    datasets in finetune.splitting_ablation, the three splittings at matched steps. Each entry
    {"condition", "splitting", "seed"} (condition without the seed suffix). lib.params has checked that the
    ablation names only datasets the params build."""
    plan = []
    for seed in params.finetune.seeds:
        plan.append({"condition": "ft", "splitting": default_splitting(dataset, params.finetune), "seed": seed})
        if dataset in params.finetune.splitting_ablation:
            plan += [{"condition": CONDITION_OF_SPLITTING[s], "splitting": s, "seed": seed}
                     for s in SPLITTINGS]
    return plan


def arm_items(params, dataset: str, test: list[dict]) -> list[dict]:
    """The test items FT is scored on: the same seeded subset as ICL (icl.max_test_items per split)."""
    from .icl import select_items

    return select_items(test, params.icl.max_test_items, params.seed, dataset)


def run_ft_arm(params, dataset: str, progress: bool = True):
    """Train and score every run of `ft_plan` (cached); returns all their results rows.

    Identical example sets (e.g. `ft` and `ft_split_independent`) share one trained model (same cache key)."""
    import pandas as pd

    from . import datasets

    rows, test, _ = datasets.load(params, dataset)
    items = arm_items(params, dataset, test)
    frames = [run_ft(params, dataset, r["condition"], rows, splitting=r["splitting"], seed=r["seed"],
                     items=items, progress=progress) for r in ft_plan(params, dataset)]
    return pd.concat(frames, ignore_index=True)


def arm_runs(params, dataset: str) -> list[dict]:
    """train_info.json of each finished run of the dataset's FT arm (for the current data), with its
    condition and folder; runs not trained yet are left out."""
    from . import datasets

    rows, _, _ = datasets.load(params, dataset)
    ft = dataset_recipe(params, dataset)
    out = []
    for r in ft_plan(params, dataset):
        examples = make_examples(rows, r["splitting"], params.finetune.loss_on)
        key = ft_key(params, ft, examples, r["seed"])
        folder = ft_dir(params, dataset, "ft", key)
        if runs.is_fresh(folder, key):
            out.append({**runs.read_json(folder / "train_info.json"), "splitting": r["splitting"],
                        "condition": condition_name(r["condition"], r["seed"], params),
                        "folder": str(folder)})
    return out


def ft_runs(params, dataset: str | None = None) -> list[dict]:
    """train_info.json of every finished FT run of these params (one dataset or all), with its folder."""
    base = runs.run_dir(params) / "ft"
    out = []
    for info in sorted(base.glob(f"{dataset or '*'}/*/train_info.json")):
        if runs.stamp_path(info.parent).exists():
            out.append({**runs.read_json(info), "folder": str(info.parent)})
    return out


def main(argv=None) -> int:
    """`[accelerate launch ...] python -m lib.training <params> [dataset ...]`: train every run of the FT arm
    (ft_plan) of the datasets (default: all of the params'), cached; scoring is left to the notebooks."""
    from accelerate import PartialState

    from . import datasets
    from . import params as P

    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(main.__doc__, file=sys.stderr)
        return 2
    params = P.load(argv[0])
    for dataset in argv[1:] or params.dataset_names:
        with PartialState().main_process_first():  # the main process builds and caches the data
            rows, _, _ = datasets.load(params, dataset)
        for r in ft_plan(params, dataset):
            out = finetune(params, dataset, rows, splitting=r["splitting"], seed=r["seed"])
            if PartialState().is_main_process:
                info = runs.read_json(out / "train_info.json")
                print(f"{dataset} {r['condition']} s{r['seed']}: {info['wall_seconds'] / 60:.1f} min "
                      f"({info['processes']} processes) -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
