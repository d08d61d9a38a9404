"""Finetuning (the paper's Section 5, explained in notebook 03): LoRA, QLoRA or full finetuning on an
accelerate-driven loop: one CPU, or `accelerate launch` (DDP for LoRA, FSDP for full FT; params/accelerate/).

What the loop relies on that its code does not show:
  - Every process draws the same seeded batch and trains on examples r, r+N, ... of it; the loss is summed
    over target tokens and divided by the batch's global target count, times N (which DDP's gradient mean
    undoes): the gradient of one process over the whole batch, whatever N.
  - No padding: examples are packed into rows of at most `max_length` tokens (attention cost grows with the
    row's square); restarting position_ids make transformers use a block-diagonal causal mask (sdpa, eager;
    tests/test_training.py checks both). `use_cache=False` is needed: with a cache transformers does not look
    for packed sequences, and packed examples attend to each other.
  - Logits only at the positions that predict a target token (`logits_to_keep`).

Outputs: runs/<params>/ft/<dataset>/<tag>-<hash of ft_key>/ (adapter or full model, loss_curve.json,
train_info.json), written under a temp name, renamed, then stamped: a killed run retrains from scratch.
`[accelerate launch ...] python -m lib.training <params> [dataset ...]` trains the FT arm (main).
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
from tqdm import tqdm

from . import datasets, icl, runs, scoring
from .models import load_model

SPLITTINGS = ("none", "independent", "cumulative")
# The paper's plain-FT splitting per dataset: independent, except the semantic-structure baseline (unsplit).
DEFAULT_SPLITTING = {"semantic_structure": "none"}
CONDITION_OF_SPLITTING = {"independent": "ft_split_independent", "cumulative": "ft_split_cumulative",
                          "none": "ft_nosplit"}
# finetune params that do not change a training run (they choose runs, or what is measured along the way:
# the learning-check curve is scored in eval mode and consumes no random numbers).
_NOT_TRAINING_KEYS = ("seeds", "splitting_ablation", "recipes", "eval_every", "eval_items")
# In every finetuning cache key: raise it when a change here changes what a seed trains (2: the LoRA
# initialisation is seeded; 3: accelerate loop, transformers' schedule, whose warmup starts at lr 0).
TRAINER_VERSION = 3


# ------------------------------------------------------------------------------------------- examples
def default_splitting(dataset: str, ft) -> str:
    """The splitting of the plain `ft` condition: the recipe's `splitting` (finetune params `ft`), else the
    paper's."""
    return ft.recipes.get(dataset, {}).get("splitting") or DEFAULT_SPLITTING.get(dataset, "independent")


def augmented_splitting(dataset: str, ft) -> str:
    """The splitting of augmented FT and its repeat control: the recipe's `splitting`, else independent (also
    where plain FT is unsplit)."""
    return ft.recipes.get(dataset, {}).get("splitting") or "independent"


def make_examples(rows: list[dict], splitting: str, loss_on: str) -> list[dict]:
    """Training examples {"context": unscored text, "target": scored text, "row": row id} from train rows.

    A row with "prompt"/"completion" under loss_on="completion" is one example (prompt | completion), any
    splitting. Else none: the whole text; independent: each sentence, no context; cumulative: each sentence,
    context = the document up to the previous sentence's end, target = the separator after it plus the
    sentence (context + target is a prefix of the document, tokenised like it: " Word", not "Word").
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
        else:  # cumulative
            end = 0
            for k, sent in enumerate(sentences):
                start = text.find(sent, end)
                if start < 0:
                    raise ValueError(f"sentence {sent!r} not found in order in the document text "
                                     f"{text[:80]!r}...")
                out.append({"context": text[:end], "target": text[end if k else start:start + len(sent)],
                            "row": rid})
                end = start + len(sent)
    return out


def tokenize_examples(tok, examples: list[dict], max_length: int) -> list[dict]:
    """{"ids": [...], "n_context": int} of each example: context + target tokenised jointly and cut at the
    context's own token length (as lib.models.encode_pair), after the tokenizer's special tokens (BOS where it
    adds one). An example longer than max_length is an error naming it, never silently cut."""
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
    """One packed row (transformers' `DataCollatorWithFlattening`): input_ids, position_ids (restarting per
    example) and labels (-100 on context tokens and each example's first token), all shaped (1, T)."""
    from transformers import DataCollatorWithFlattening

    feats = [{"input_ids": e["ids"], "labels": [-100] * e["n_context"] + e["ids"][e["n_context"]:]}
             for e in examples]
    return DataCollatorWithFlattening(return_tensors="pt")(feats)


def packed_loss(model, batch: dict) -> torch.Tensor:
    """Summed next-token cross-entropy of a packed row (`collate`), logits only at the positions that
    predict a label (position t - 1 predicts the label at t)."""
    labels = batch["labels"][0]
    targets = (labels != -100).nonzero()[:, 0]
    dev = next(p for p in model.parameters()).device
    out = model(input_ids=batch["input_ids"].to(dev), position_ids=batch["position_ids"].to(dev),
                logits_to_keep=(targets - 1).to(dev), use_cache=False)
    return torch.nn.functional.cross_entropy(out.logits[0].float(), labels[targets].to(dev), reduction="sum")


# ---------------------------------------------------------------------------------------------- model
def _linear_shape(module) -> tuple[int, int] | None:
    """(in_features, out_features) of a torch or bitsandbytes Linear layer, else None."""
    if isinstance(module, torch.nn.Linear) or type(module).__name__ in ("Linear4bit", "Linear8bitLt"):
        return int(module.in_features), int(module.out_features)
    return None


def expected_lora_parameters(model, target_modules: list[str], r: int) -> int:
    """r * (in + out) summed over the Linear layers whose name ends with a target name; a target name that
    matches no Linear layer is an error (peft would silently skip it)."""
    counts, total, linear_names = dict.fromkeys(target_modules, 0), 0, set()
    for name, module in model.named_modules():
        shape = _linear_shape(module)
        if shape is None:
            continue
        linear_names.add(name.rsplit(".", 1)[-1])
        t = next((t for t in target_modules if name == t or name.endswith("." + t)), None)
        if t is not None:  # a layer counts once, for its first matching target
            counts[t] += 1
            total += r * (shape[0] + shape[1])
    missing = [t for t, c in counts.items() if c == 0]
    if missing:
        raise ValueError(f"finetune.target_modules {missing} match no Linear layer of the model "
                         f"(its Linear layers: {', '.join(sorted(linear_names))})")
    return total


def n_trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def prepare_model(model, ft, *, seed: int) -> torch.nn.Module:
    """The model with LoRA adapters (or unfrozen, for full FT), its trainable count checked. peft draws
    LoRA A from torch's global generator: seeded with `seed`, whatever the caller drew before."""
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


def accelerator(model):
    """The `accelerate.Accelerator` of this process: bf16 autocast on CUDA, the CPU when the model is
    there."""
    from accelerate import Accelerator

    on_cpu = next(model.parameters()).device.type == "cpu"
    bf16 = torch.cuda.is_available() and not on_cpu
    return Accelerator(cpu=on_cpu, mixed_precision="bf16" if bf16 else "no")


def train(model, tok, examples: list[dict], ft, *, seed: int, progress: bool = True,
          desc: str = "finetune", acc=None) -> dict:
    """Finetune `model` (prepare_model's) on `examples` in place; returns the per-step curve ("step", "loss":
    mean over the step's target tokens, "lr", "grad_norm", "tokens" forwarded, ...) and timings."""
    return _train(model, tok, examples, ft, seed=seed, progress=progress, desc=desc, acc=acc)[1]


def accuracy(model, tok, items: list[dict]) -> float:
    """Share of `items` (no context) whose highest-likelihood option is a gold (lib.scoring's rule)."""
    was_training = model.training
    model.eval()
    lls, _ = scoring.loglikelihoods(model, tok, items)
    model.train(was_training)
    return sum(scoring._argmax(ll) in scoring.golds(it) for ll, it in zip(lls, items)) / len(items)


def _train(model, tok, examples, ft, *, seed, progress=True, desc="finetune", acc=None, check=None):
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
        for k, v in (("step", step + 1), ("loss", total), ("lr", lr), ("grad_norm", grad_norm),
                     ("tokens", sum(len(data[i]["ids"]) for i in batch)), ("target_tokens", n_target),
                     ("step_seconds", time.perf_counter() - ts)):
            curve[k].append(v)
        if check is not None and ((step + 1) % ft["eval_every"] == 0 or step + 1 == ft["steps"]):
            tc = time.perf_counter()
            curve["check_step"].append(step + 1)
            curve["check_acc"].append(check(acc.unwrap_model(wrapped)))
            check_s += time.perf_counter() - tc
        tok_s = sum(curve["tokens"]) / (time.perf_counter() - t0 - check_s)
        bar.set_postfix(loss=f"{total:.3f}", tok_s=f"{tok_s:.0f}")
    bar.close()
    wrapped.eval()
    model.eval()
    seconds = time.perf_counter() - t0 - check_s  # training time: the learning-check scoring left out
    return wrapped, {**curve, "seconds": seconds, "check_seconds": check_s,
                     "tokens_per_s": sum(curve["tokens"]) / seconds,
                     "s_per_step": seconds / ft["steps"], "n_examples": len(data),
                     "n_trainable": n_trainable(model)}


# -------------------------------------------------------------------------------------------- caching
def recipe(ft, dataset: str, n_examples: int | None = None):
    """The finetune params every FT condition of `dataset` trains with: `ft` with `ft.recipes[dataset]` put in
    (lib.params has checked its keys). A recipe in `epochs` needs `n_examples` (`plain_examples`): steps =
    ceil(epochs x n_examples / batch_size)."""
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
    """The example count of the dataset's plain `ft` condition: one epoch of every FT condition."""
    rows, _, _ = datasets.load(params, dataset)
    return len(make_examples(rows, default_splitting(dataset, params.finetune), params.finetune.loss_on))


def dataset_recipe(params, dataset: str):
    """`recipe` of the dataset with its epochs, if any, turned into steps."""
    uses_epochs = params.finetune.recipes.get(dataset, {}).get("epochs", params.finetune.epochs) is not None
    return recipe(params.finetune, dataset, plain_examples(params, dataset) if uses_epochs else None)


def ft_key(params, ft, examples: list[dict], seed: int) -> dict:
    """What a finetuned model depends on: model params, the dataset's recipe `ft` (dataset_recipe), the
    examples (which fix rows, splitting and loss_on), the seed."""
    training = {k: v for k, v in ft.model_dump().items() if k not in _NOT_TRAINING_KEYS + ("epochs",)}
    return {"model": params.model.model_dump(), "finetune": training, "seed": seed,
            "trainer_version": TRAINER_VERSION,
            "examples": runs.key_hash([[e["context"], e["target"]] for e in examples])}


def ft_dir(params, dataset: str, tag: str, key: dict) -> Path:
    return runs.run_dir(params) / "ft" / dataset / f"{tag}-{runs.key_hash(key, 12)}"


def finetune(params, dataset: str, rows: list[dict], *, splitting: str, seed: int, tag: str | None = None,
             progress: bool = True, check_items: list[dict] | None = None) -> Path:
    """Finetune the params' model on `rows` with the dataset's recipe, cached (ft_key); returns the folder.
    With `check_items` and finetune.eval_every, their accuracy is scored every eval_every steps and after the
    last (loss_curve.json "check_step" / "check_acc"). train_info.json's `wall_seconds` (load, train, save)
    is beside `seconds` (training alone)."""
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
    check = (lambda m: accuracy(m, tok, check_items)) if check_items and ft.eval_every else None
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
           items: list[dict], tag: str | None = None, progress: bool = True) -> None:
    """Finetune on `rows`, then score `items` with the prompt alone: lib.scoring.evaluate writes the score
    file of `condition` (seed suffix added: condition_name)."""
    first_plain = condition == "ft" and seed == params.finetune.seeds[0]  # records the learning curve
    check = check_items(params, dataset, items) if first_plain else None
    folder = finetune(params, dataset, rows, splitting=splitting, seed=seed, tag=tag, progress=progress,
                      check_items=check)
    key = {"ft": runs.read_json(runs.stamp_path(folder))["key_hash"]}
    name = condition_name(condition, seed, params)
    if scoring.cached_results(params, dataset, name, items, "", seed=seed, key=key) is not None:
        return  # scored already: no need to load the model
    model, tok = load_finetuned(params, folder)
    scoring.evaluate(params, dataset, name, model, tok, items, context="", seed=seed, key=key)


def check_items(params, dataset: str, items: list[dict]) -> list[dict]:
    """The items of the learning curve: a seeded subset (finetune.eval_items) of the learning-check split."""
    split = datasets.learning_check_split(dataset, params, {it["split"] for it in items})
    pool = [it for it in items if it["split"] == split]
    k = min(params.finetune.eval_items, len(pool))
    return sorted(random.Random(f"ft-check:{params.seed}:{dataset}").sample(pool, k), key=pool.index)


def ft_plan(params, dataset: str) -> list[dict]:
    """{"condition" (no seed suffix), "splitting", "seed"} of each run of the dataset's plain-FT arm: `ft` for
    every seed and, for datasets in finetune.splitting_ablation, the three splittings."""
    plan = []
    for seed in params.finetune.seeds:
        plan.append({"condition": "ft", "splitting": default_splitting(dataset, params.finetune),
                     "seed": seed})
        if dataset in params.finetune.splitting_ablation:
            plan += [{"condition": CONDITION_OF_SPLITTING[s], "splitting": s, "seed": seed}
                     for s in SPLITTINGS]
    return plan


def arm_items(params, dataset: str, test: list[dict]) -> list[dict]:
    """The test items FT is scored on: the same seeded subset as ICL (icl.max_test_items per split)."""
    return icl.select_items(test, params.icl.max_test_items, params.seed, dataset)


def run_ft_arm(params, dataset: str, progress: bool = True) -> None:
    """Train and score every run of `ft_plan` (cached; identical example sets share one trained model)."""
    rows, test, _ = datasets.load(params, dataset)
    items = arm_items(params, dataset, test)
    for r in ft_plan(params, dataset):
        run_ft(params, dataset, r["condition"], rows, splitting=r["splitting"], seed=r["seed"], items=items,
               progress=progress)


def arm_runs(params, dataset: str) -> list[dict]:
    """train_info.json of each finished run of the dataset's FT arm (for the current data), with its
    condition and folder; runs not trained yet are left out."""
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
    infos = sorted((runs.run_dir(params) / "ft").glob(f"{dataset or '*'}/*/train_info.json"))
    return [{**runs.read_json(i), "folder": str(i.parent)} for i in infos
            if runs.stamp_path(i.parent).exists()]


def main(argv=None) -> int:
    """`[accelerate launch ...] python -m lib.training <params> [dataset ...]`: train every run of the FT arm
    (ft_plan) of the datasets (default: all of the params'), cached; scoring is left to the notebooks."""
    from accelerate import PartialState

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
