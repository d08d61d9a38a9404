"""Augmented finetuning (the paper's Section 6, explained in notebook 04): the model writes new training
sentences (local: restatements of each training sentence; global: inferences linking a document to the
training set in context), parsed and filtered (filter_sentences), then finetuned on with the original rows
(run_augmented); the control `ft_repeat` adds plain repetitions instead, as many FT examples as the largest
augmentation adds.

Caching: every generation is appended to runs/<p>/augment/<dataset>/generations_<kind>.jsonl under
generation_key, with its tokens and seconds (the compute spent is known even when all came from the cache);
a rerun generates nothing twice and a line cut by a killed run is ignored. The parsed rows go to
<kind>.jsonl, their counts (kept, dropped by reason, tokens, seconds) to <kind>.stats.json.
"""
from __future__ import annotations

import functools
import json
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from . import datasets, icl, models, runs, scoring, training

PROMPTS = Path(__file__).resolve().parent / "prompts"
KINDS = ("local", "global")
STOP = "\n\n"  # a blank line ends the generated list (the prompt's examples are separated by blank lines)
MIN_WORDS, MAX_WORDS = 3, 60
DROP_REASONS = ("unfinished", "too_short", "too_long", "markup", "copy_of_prompt", "example_words",
                "off_topic", "duplicate")
COMMON_ZIPF = 5.0  # words at least this frequent in English (the, are, than, more, ...) are not content words
_SENTINEL = "\x00ITEM\x00"


# -------------------------------------------------------------------------------------------- prompts
def prompt_path(name: str) -> Path:
    """A prompt file: a name inside lib/prompts/ (e.g. "local.txt"), or a path to a file of your own."""
    path = Path(name)
    if not path.is_file():
        path = PROMPTS / name
    if not path.is_file():
        known = ", ".join(sorted(p.name for p in PROMPTS.glob("*.txt")))
        raise FileNotFoundError(f"augmentation prompt not found: {name!r} "
                                f"(neither a file nor in {PROMPTS}: {known})")
    return path


def load_prompt(name: str, kind: str) -> str:
    """The template text; local needs {sentence}, global needs {context} then {document}."""
    text = prompt_path(name).read_text(encoding="utf-8")
    need = {"local": ["{sentence}"], "global": ["{context}", "{document}"]}[kind]
    for ph in need:
        if text.count(ph) != 1:
            raise ValueError(f"{kind} augmentation prompt {name!r} must contain {ph} exactly once "
                             f"(found {text.count(ph)})")
    if kind == "global" and text.index("{context}") > text.index("{document}"):
        raise ValueError(f"global augmentation prompt {name!r}: {{context}} must come before {{document}}")
    return text


def prompt_parts(template: str, placeholder: str, fmt: str, tok, **fixed) -> tuple[str, str]:
    """(prefix, suffix) around the item's slot: prompt = prefix + item + suffix. The prefix is shared by
    every item and run once. fmt "chat" wraps the text as one user turn of the model's chat template."""
    text = template
    for k, v in fixed.items():
        text = text.replace("{" + k + "}", v)
    text = text.replace(placeholder, _SENTINEL)
    if fmt == "chat":
        if not getattr(tok, "chat_template", None):
            raise ValueError("augment.format is 'chat' but the tokenizer has no chat template: use 'plain'")
        text = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                       add_generation_prompt=True)
    elif fmt != "plain":
        raise ValueError(f"unknown augment.format {fmt!r} (known: plain, chat)")
    prefix, suffix = text.split(_SENTINEL)
    return prefix, suffix


# ------------------------------------------------------------------------------------ parse and filter
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_MARKER = re.compile(r"^\s*(?:[-*\u2022]+|\(?\d+[.)]|[a-z][.)])\s+")
_MARKUP = re.compile(r"<\|[^|>]*\|>|<\s*/?\s*(?:s|im_start|im_end|eos|bos)\s*>"
                     r"|^\s*(?:user|assistant|system)\s*:|\||^#+\s", re.I)  # chat markup, cells, headings
_END = re.compile(r"[.!?][\"'\u201d)\]]*$")
_SPLIT = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"'\u201d)\]])\s+")


def normalize(s: str) -> str:
    """Lowercase, single spaces, no final punctuation: the form compared for copies and duplicates."""
    return re.sub(r"\s+", " ", s.lower()).strip().rstrip(".!?\"'\u201d) ").strip()


def parse_generation(text: str) -> list[str]:
    """Candidate sentences of one generation: cut at the stop (blank line), one list item per line,
    list markers stripped, each line cut into sentences. Nothing is dropped here."""
    text = text.split(STOP)[0]
    out = []
    for line in text.splitlines():
        line = _MARKER.sub("", line).strip()
        if not line:
            continue
        out.extend(p.strip() for p in _SPLIT.split(line) if p.strip())
    return out


def words(text: str) -> set[str]:
    """Lowercased words, a plural -s dropped (so "tovs" and "tov" are the same word)."""
    return {_stem(w) for w in _WORD.findall(text)}


def _stem(w: str) -> str:
    w = w.lower().strip("'-")
    return w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")) else w


@functools.lru_cache(maxsize=100_000)
def _zipf(w: str) -> float:
    from wordfreq import zipf_frequency

    return zipf_frequency(w, "en")


def content_words(text: str) -> set[str]:
    """Words of 3+ letters that are not very common English words (plural -s dropped)."""
    return {_stem(w) for w in _WORD.findall(text) if len(w) >= 3 and _zipf(w.lower()) < COMMON_ZIPF}


def example_only_words(template: str) -> set[str]:
    """The made-up words of a prompt's worked examples: words of the template (placeholders aside) that
    are not English (absent from wordfreq's English list)."""
    body = re.sub(r"\{[a-z]+\}", " ", template)
    out = set()
    for w in _WORD.findall(body):
        w = w.lower()
        if len(w) > 2 and _zipf(w) == 0.0:
            out |= {_stem(w)} | ({w[:-2]} if w.endswith("es") else set())
    return out


def prompt_collisions(template: str, rows: list[dict]) -> list[str]:
    """Made-up words of a prompt's worked examples that also occur in a dataset's training text (these
    would let the examples state something about a dataset word; expected: none)."""
    text = " ".join(r["text"] for r in rows)
    return sorted(example_only_words(template) & words(text))


def filter_sentences(candidates: list[str], *, prompt: str, item_text: str, example_words: set[str],
                     seen: set[str]) -> tuple[list[str], Counter]:
    """Keep the well-formed new sentences; count the dropped ones by reason (see DROP_REASONS).

    `prompt`: the full prompt (a sentence found in it verbatim is a copy); `item_text`: the item's own
    text (the sentence, or the document for global: a kept sentence must share a content word with it, and
    may use its made-up words even when the examples also use them); `seen`: normalized sentences kept so
    far (updated in place)."""
    kept, dropped = [], Counter()
    prompt_norm = normalize(prompt)
    allowed = words(item_text)
    topic = content_words(item_text)
    for s in candidates:
        n = normalize(s)
        nw = len(_WORD.findall(s))
        if _MARKUP.search(s):
            reason = "markup"
        elif not _END.search(s):
            reason = "unfinished"
        elif nw < MIN_WORDS:
            reason = "too_short"
        elif nw > MAX_WORDS:
            reason = "too_long"
        elif re.search(r"(?<![\w-])" + re.escape(n) + r"(?![\w-])", prompt_norm):
            reason = "copy_of_prompt"
        elif (words(s) & example_words) - allowed:
            reason = "example_words"
        elif not content_words(s) & topic:
            reason = "off_topic"
        elif n in seen:
            reason = "duplicate"
        else:
            seen.add(n)
            kept.append(s)
            continue
        dropped[reason] += 1
    return kept, dropped


# ----------------------------------------------------------------------------------------- generation
def _forward(model, ids, mask, pos, cache):
    """One forward with a KV cache; returns (last-position logits, cache)."""
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True,
                logits_to_keep=1)
    return out.logits[:, -1, :].float(), out.cache


def stop_token_ids(tok) -> set[int]:
    ids = {tok.eos_token_id} if tok.eos_token_id is not None else set()
    for t in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<end_of_turn>"):
        i = tok.convert_tokens_to_ids(t)
        if isinstance(i, int) and i != tok.unk_token_id and i >= 0:
            ids.add(i)
    return ids


def sample(model, tok, prefix: str, suffixes: list[str], seeds: list[int], *, temperature: float,
           max_new_tokens: int, batch_size: int, progress: bool = False,
           on_batch=None) -> tuple[list[dict], dict]:
    """One continuation of prefix + suffix for each suffix: the prefix's KV cache is computed once and
    expanded to every batch (items left-padded after it); a row stops at a stop token, at a blank line
    (STOP) or after max_new_tokens. temperature 0 = greedy, else Gumbel-max over logits / temperature with
    the row's own torch.Generator seeded by `seeds[i]`. Returns per suffix {"text", "n_tokens", "seconds"
    (its share of its batch's time), "stopped"} and {"prefix_tokens", "prefix_seconds"}; `on_batch(indices,
    results)` is called after each batch.

    Not `model.generate`, which draws every row from one global generator: here a sample depends on its
    seed alone, not on its batch (`make bench`: 3.21x generate without prefix reuse, idle 2-core CPU)."""
    if len(seeds) != len(suffixes):
        raise ValueError("one seed per suffix")
    dev = next(model.parameters()).device
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    stops = stop_token_ids(tok)
    pre = tok(prefix, add_special_tokens=True).input_ids if prefix else []
    P = len(pre)
    enc = [tok(s, add_special_tokens=not pre).input_ids for s in suffixes]
    longest = max((len(e) for e in enc), default=0)
    window = models.context_window(model)
    if P + longest + max_new_tokens > window:
        raise ValueError(f"augmentation prompt too long: shared prefix {P} + item {longest} + "
                         f"max_new_tokens {max_new_tokens} tokens > the model's window of {window}")
    t0 = time.perf_counter()
    shared = scoring.fill_cache(model, pre) if pre else None  # the scorer's: bitwise the same cache
    info = {"prefix_tokens": P, "prefix_seconds": time.perf_counter() - t0}
    out: list[dict] = [None] * len(suffixes)
    # Similar lengths together (less padding); results are put back in input order.
    order = sorted(range(len(suffixes)), key=lambda i: -len(enc[i]))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc="generate", disable=not progress, mininterval=2.0):
        t1 = time.perf_counter()
        B, S = len(batch), max(len(enc[i]) for i in batch)
        ids = torch.tensor([[pad] * (S - len(enc[i])) + enc[i] for i in batch], dtype=torch.long)
        mask = torch.tensor([[1] * P + [0] * (S - len(enc[i])) + [1] * len(enc[i]) for i in batch],
                            dtype=torch.long)
        pos = (P + mask[:, P:].cumsum(-1) - 1).clamp(min=P)
        gens = [torch.Generator().manual_seed(seeds[i] % (2 ** 63)) for i in batch]
        cache = scoring.expand_cache(shared, B) if shared is not None else None
        ids, mask, pos = ids.to(dev), mask.to(dev), pos.to(dev)
        new = [[] for _ in batch]
        done = [False] * B  # stopped
        with torch.inference_mode():
            logits, cache = _forward(model, ids, mask, pos, cache)
            for _ in range(max_new_tokens):
                live = [r for r in range(B) if not done[r]]
                rows = logits[live].cpu()
                if temperature > 0:  # each row's noise from its own generator; the arithmetic for all at once
                    u = torch.stack([torch.rand(rows.shape[1], generator=gens[r]) for r in live])
                    rows = rows / temperature - torch.log(-torch.log(u.clamp_(1e-10, 1 - 1e-7)))
                picks = torch.argmax(rows, dim=-1).tolist()
                nxt = [pad] * B
                for r, t in zip(live, picks):
                    if t in stops:
                        done[r] = True
                        continue
                    new[r].append(t)
                    nxt[r] = t
                    done[r] = "\n" in tok.decode([t]) and STOP in tok.decode(new[r])
                if all(done):
                    break
                step = torch.tensor(nxt, device=dev)[:, None]
                mask = torch.cat([mask, torch.ones(B, 1, dtype=mask.dtype, device=dev)], dim=1)
                pos = pos[:, -1:] + 1
                logits, cache = _forward(model, step, mask, pos, cache)
        dt = time.perf_counter() - t1
        total = sum(len(x) for x in new) or 1
        for r, i in enumerate(batch):
            out[i] = {"text": tok.decode(new[r], skip_special_tokens=False), "n_tokens": len(new[r]),
                      "seconds": dt * len(new[r]) / total, "stopped": done[r]}
        if on_batch is not None:
            on_batch(batch, [out[i] for i in batch])
    return out, info


# -------------------------------------------------------------------------------------------- caching
def aug_dir(params, dataset: str) -> Path:
    return runs.run_dir(params) / "augment" / dataset


def read_cache(path: Path) -> dict[str, dict]:
    """key -> record of a generations file; a line cut short by a killed run is ignored."""
    out = {}
    if not Path(path).exists():
        return out
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            out[rec["key"]] = rec
    return out


def append_cache(path: Path, records: list[dict]) -> None:
    """Append finished generations (one JSON line each, flushed), so a killed run loses one batch at most."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cut = path.exists() and path.stat().st_size > 0 and path.read_bytes()[-1:] != b"\n"
    with open(path, "a", encoding="utf-8") as f:
        if cut:  # a line left unfinished by a killed run: start on a fresh line
            f.write("\n")
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        f.flush()


def generation_key(model: dict, prompt: str, aug, sample_index: int) -> str:
    """What one generation depends on: the generating model (name, dtype, quantization), the full prompt,
    the sampling params and the sample index (the row's random seed is drawn from this key)."""
    model = {k: model[k] for k in ("name", "dtype", "quantization")}
    return runs.key_hash({"model": model, "prompt": prompt, "temperature": aug.temperature,
                          "max_new_tokens": aug.max_new_tokens, "seed": aug.seed, "sample": sample_index,
                          "stop": STOP})


def generator_cfg(params) -> dict:
    """The generating model: augment.model, or (null) the same model as the one finetuned."""
    cfg = params.model.model_dump()
    if params.augment.model:
        cfg["name"] = params.augment.model
    return cfg


# ------------------------------------------------------------------------------------------ the items
def local_items(rows: list[dict], max_sentences: int, seed: int) -> tuple[list[dict], int]:
    """Distinct training sentences (first occurrence order) with the facts of every document holding them;
    at most `max_sentences` of them (a seeded random subset, kept in order). Returns (items, n distinct)."""
    by_sent: dict[str, dict] = {}
    for row in rows:
        for s in row.get("sentences") or [row["text"]]:
            s = s.strip()
            if not s:
                continue
            it = by_sent.setdefault(s, {"text": s, "source_ids": [], "facts": []})
            it["source_ids"].append(row["id"])
            it["facts"].extend(f for f in row.get("facts", []) if f not in it["facts"])
    items = list(by_sent.values())
    n = len(items)
    if n > max_sentences:
        keep = set(random.Random(f"augment-local:{seed}").sample(range(n), max_sentences))
        items = [it for i, it in enumerate(items) if i in keep]
    return items, n


def global_items(rows: list[dict], max_documents: int, seed: int) -> list[dict]:
    """The documents that get a global augmentation: all, or a seeded random subset (kept in order)."""
    idx = list(range(len(rows)))
    if len(idx) > max_documents:
        idx = sorted(random.Random(f"augment-global:{seed}").sample(idx, max_documents))
    return [{"text": rows[i]["text"], "source_ids": [rows[i]["id"]], "facts": list(rows[i].get("facts", []))}
            for i in idx]


def global_context(tok, rows: list[dict], max_tokens: int, seed: int) -> tuple[str, dict]:
    """The training set as context for global augmentation, subsampled to fit `max_tokens` as for ICL
    (lib.icl.build_context, plain format, without ICL's closing instruction). Augmentation never looks at
    test items, so no document is kept for being tested: the subset is a seeded random one."""
    text, info = icl.build_context(tok, rows, [], fmt="plain", max_tokens=max_tokens, seed=seed)
    tail = icl.DOC_SEP + icl.INSTRUCTION + "\n"
    if not text.endswith(tail):
        raise RuntimeError("lib.icl.format_context changed: update augmentation.global_context")
    return text[: -len(tail)], info


# ------------------------------------------------------------------------------------------- generate
def generate(params, dataset: str, rows: list[dict], kind: str, *, progress: bool = True) -> list[dict]:
    """Augmentation rows of one kind ("local", "global" or "both" = local + global) of a dataset's train rows:
    the train-row schema plus "source" ("aug_<kind>"), "source_ids" and "source_text"; "facts" are copied
    from the source document(s). Writes <kind>.jsonl and <kind>.stats.json under aug_dir. Under accelerate
    each process samples a contiguous shard of jobs (a sample depends on its seed alone); rank 0 writes."""
    if kind == "both":
        return (generate(params, dataset, rows, "local", progress=progress)
                + generate(params, dataset, rows, "global", progress=progress))
    if kind not in KINDS:
        raise ValueError(f"unknown augmentation kind {kind!r} (known: local, global, both)")
    if not rows:
        raise ValueError(f"{dataset}: no training rows to augment")
    aug = params.augment
    gen_cfg = generator_cfg(params)
    out_dir = aug_dir(params, dataset)
    cache_path = out_dir / f"generations_{kind}.jsonl"
    template = load_prompt(aug.local_prompt if kind == "local" else aug.global_prompt, kind)
    tok = models.load_tokenizer(gen_cfg)
    if kind == "local":
        srcs, n_distinct = local_items(rows, aug.max_local_sentences, aug.seed)
        prefix, suffix = prompt_parts(template, "{sentence}", aug.format, tok)
        ctx_info = None
    else:
        srcs = global_items(rows, aug.global_max_documents, aug.seed)
        n_distinct = len(rows)
        context, ctx_info = global_context(tok, rows, aug.global_context_tokens, aug.seed)
        prefix, suffix = prompt_parts(template, "{document}", aug.format, tok, context=context)
    jobs = [(s, k) for s in srcs for k in range(aug.samples_per_item)]
    prompts = [prefix + s["text"] + suffix for s, _ in jobs]
    keys = [generation_key(gen_cfg, p, aug, k) for p, (_, k) in zip(prompts, jobs)]
    cache = read_cache(cache_path)
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    todo = [i for key, i in first.items() if key not in cache]
    prefix_key = "prefix:" + runs.key_hash({"model": generation_key(gen_cfg, prefix, aug, -1)})
    rank, world = scoring._world()
    if todo:
        model, tok = models.load_model(gen_cfg)
        mine = scoring._shard(todo, rank, world)

        def record(i, g):
            return {"key": keys[i], "kind": kind, "source_ids": jobs[i][0]["source_ids"],
                    "sample": jobs[i][1], **g}

        def save(idx, gens):  # one process: each batch goes to the cache at once (a killed run resumes)
            append_cache(cache_path, [record(mine[j], g) for j, g in zip(idx, gens)])

        gens, info = sample(model, tok, prefix, [jobs[i][0]["text"] + suffix for i in mine],
                            [int(keys[i][:15], 16) for i in mine], temperature=aug.temperature,
                            max_new_tokens=aug.max_new_tokens, batch_size=aug.batch_size, progress=progress,
                            on_batch=save if world == 1 else None)
        done = scoring._gather([record(i, g) for i, g in zip(mine, gens)], world) if world > 1 else []
        if rank == 0:
            append_cache(cache_path, done)
            # The shared prefix's cost, once per generating session (a resumed run pays it again).
            append_cache(cache_path, [{"key": f"{prefix_key}:{time.time_ns()}", "prefix_key": prefix_key,
                                       **info}])
        if world > 1:
            torch.distributed.barrier()
        cache = read_cache(cache_path)
    prefix_recs = [r for r in cache.values() if r.get("prefix_key") == prefix_key]
    ex_words = example_only_words(template)
    seen: set[str] = set()
    dropped, out = Counter(), []
    n_empty = 0
    for (src, _), prompt, key in zip(jobs, prompts, keys):  # parse and filter, in item order
        cands = parse_generation(cache[key]["text"])
        n_empty += not cands
        kept, drop = filter_sentences(cands, prompt=prompt, item_text=src["text"], example_words=ex_words,
                                      seen=seen)
        dropped.update(drop)
        if kept:
            out.append({"id": f"{dataset}-aug_{kind}-{len(out):05d}", "text": " ".join(kept),
                        "sentences": kept, "facts": list(src["facts"]), "source": f"aug_{kind}",
                        "source_ids": src["source_ids"], "source_text": src["text"]})
    n_kept = sum(len(r["sentences"]) for r in out)
    n_tokens = sum(cache[key]["n_tokens"] for key in keys)
    seconds = sum((cache[key]["seconds"] for key in keys), 0.0)
    stats = {"dataset": dataset, "kind": kind, "generator": gen_cfg["name"], "n_sources": len(srcs),
             "n_sources_total": n_distinct, "coverage": len(srcs) / max(1, n_distinct),
             "generations": len(jobs), "generated_now": len(todo), "empty_generations": n_empty,
             "candidates": n_kept + sum(dropped.values()), "kept": n_kept,
             "dropped": {r: dropped.get(r, 0) for r in DROP_REASONS}, "rows": len(out),
             "new_tokens": n_tokens, "seconds": seconds,
             "tokens_per_s": n_tokens / seconds if seconds else None,
             "prefix_tokens": sum(r["prefix_tokens"] for r in prefix_recs),
             "prefix_seconds": sum(r["prefix_seconds"] for r in prefix_recs), "context": ctx_info}
    if rank == 0:
        runs.write_jsonl(out_dir / f"{kind}.jsonl", out)
        runs.write_json(out_dir / f"{kind}.stats.json", stats)
    if world > 1:
        torch.distributed.barrier()
    return out


# -------------------------------------------------------------------------------------- augmented FT
def repeat_rows(rows: list[dict], n_examples: int, seed: int, splitting: str, loss_on: str) -> list[dict]:
    """Plain repetitions of original documents (seeded order, cycling) that add at least `n_examples` FT
    examples under `splitting`: the control matched in size to an augmentation."""
    if n_examples <= 0:
        return []
    out, added = [], 0
    rng = random.Random(f"augment-repeat:{seed}")
    while added < n_examples:
        order = list(range(len(rows)))
        rng.shuffle(order)
        for i in order:
            row = rows[i]
            out.append({**row, "id": f"{row['id']}-rep{len(out):05d}", "source": "repeat"})
            added += len(training.make_examples([row], splitting, loss_on))
            if added >= n_examples:
                break
    return out


def run_augmented(params, dataset: str, kind: str, *, progress: bool = True) -> None:
    """Finetune (training.run_ft, every seed, training.augmented_splitting) on the original rows plus the
    augmentations of `kind` (local, global, both: condition aug_<kind>) or, for kind `repeat` (condition
    ft_repeat), plain repetitions adding as many FT examples as the largest augmentation of augment.kinds;
    scored on the same item subset as ICL and plain FT (training.arm_items)."""
    rows, test, _ = datasets.load(params, dataset)
    items = training.arm_items(params, dataset, test)
    splitting = training.augmented_splitting(dataset, params.finetune)
    if kind == "repeat":
        sizes = [len(training.make_examples(a, splitting, params.finetune.loss_on)) if a else 0
                 for a in (generate(params, dataset, rows, k, progress=progress)
                           for k in params.augment.kinds)]
        extra = repeat_rows(rows, max(sizes, default=0), params.augment.seed, splitting,
                            params.finetune.loss_on)
    elif kind in ("local", "global", "both"):
        extra = generate(params, dataset, rows, kind, progress=progress)
    else:
        raise ValueError(f"unknown augmented-FT kind {kind!r} (known: local, global, both, repeat)")
    condition = _condition(kind)
    for seed in params.finetune.seeds:
        training.run_ft(params, dataset, condition, rows + extra, splitting=splitting, seed=seed,
                        tag=condition, items=items, progress=progress)


def _condition(kind: str) -> str:
    return "ft_repeat" if kind == "repeat" else f"aug_{kind}"


def _kinds(params) -> list[str]:
    return list(params.augment.kinds) + (["repeat"] if params.augment.repeat_control else [])


def run_all(params, dataset: str, *, progress: bool = True) -> None:
    """Every augmented-FT condition of a dataset (augment.kinds, plus ft_repeat when
    augment.repeat_control)."""
    for kind in _kinds(params):
        run_augmented(params, dataset, kind, progress=progress)


# ------------------------------------------------------------------------------------------ reporting
def stats_table(params, names: list[str]):
    """One row per dataset x kind: sources covered, generations, sentences kept / dropped by reason,
    tokens generated, seconds, tokens/s (from the stats files that `generate` wrote)."""
    out = []
    for name in names:
        for kind in KINDS:
            path = aug_dir(params, name) / f"{kind}.stats.json"
            if not path.exists():
                continue
            st = runs.read_json(path)
            out.append({"dataset": name, "kind": kind, "sources": st["n_sources"],
                        "of": st["n_sources_total"],
                        "coverage": st["coverage"], "generations": st["generations"],
                        "empty": st["empty_generations"], "candidates": st["candidates"], "kept": st["kept"],
                        **{f"drop_{r}": st["dropped"][r] for r in DROP_REASONS},
                        "context_docs": (st.get("context") or {}).get("n_kept"),
                        "prefix_tokens": st["prefix_tokens"], "new_tokens": st["new_tokens"],
                        "seconds": round(st["seconds"] + st["prefix_seconds"], 1),
                        "tokens_per_s": round(st["tokens_per_s"] or 0, 1)})
    return pd.DataFrame(out)


def to_real_words(text: str, lexicon: dict[str, str]) -> str:
    """Replace nonsense words by the real phrases they stand for (lexicon: real phrase -> nonsense word)."""
    back = {v: k for k, v in lexicon.items()}
    if not back:
        return text
    pat = re.compile(r"\b(" + "|".join(map(re.escape, sorted(back, key=len, reverse=True))) + r")\b", re.I)
    return pat.sub(lambda m: back.get(m.group(0).lower(), m.group(0)), text)


def samples(params, name: str, n: int = 4, seed: int = 0, lexicon: dict | None = None):
    """A few augmentation rows of each kind beside the training text they came from (a seeded sample);
    with `lexicon` (real phrase -> nonsense word), also in real words."""
    out = []
    for kind in KINDS:
        path = aug_dir(params, name) / f"{kind}.jsonl"
        if not path.exists():
            continue
        aug = runs.read_jsonl(path)
        for r in random.Random(f"augment-samples:{seed}:{kind}").sample(aug, min(n, len(aug))):
            rec = {"kind": kind, "source": r["source_text"], "generated": r["text"]}
            if lexicon:
                rec["source (real words)"] = to_real_words(r["source_text"], lexicon)
                rec["generated (real words)"] = to_real_words(r["text"], lexicon)
            out.append(rec)
    return pd.DataFrame(out)


def main(argv=None) -> int:
    """`[accelerate launch ...] python -m lib.augmentation <params> [dataset ...]`: generate the augmentations
    and train and score every augmented-FT condition (run_all) of the datasets (default: all of the params'),
    data-parallel over the processes, cached: notebook 04 then finds them."""
    from accelerate import PartialState

    from . import analysis
    from . import params as P

    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(main.__doc__, file=sys.stderr)
        return 2
    state = PartialState()  # the process group (and each process's device) before any model loads
    params = P.load(argv[0])
    for dataset in argv[1:] or params.dataset_names:
        with state.main_process_first():  # the main process builds and caches the data
            datasets.load(params, dataset)
        run_all(params, dataset, progress=False)
        if not state.is_main_process:
            continue
        for kind in _kinds(params):
            for seed in params.finetune.seeds:
                name = training.condition_name(_condition(kind), seed, params)
                items = pd.DataFrame(analysis.item_rows(scoring.read_scores(params, dataset, name),
                                                        dataset=dataset, condition=name, seed=seed))
                acc = items[items["metric"] == "acc"].groupby(["split", "subset"])["correct"].mean()
                print(f"{dataset} {name}: mean acc over splits {acc.mean():.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
