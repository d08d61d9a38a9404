"""Multiple-choice log-likelihood scoring, with the semantics of lm-evaluation-harness.

An item is a prompt and options; each option is scored as the continuation " " + option of the prompt,
never shown to the model beforehand. As in lm-eval (`TemplateLM._encode_pair`), the context (shared
context + prompt) and the continuation are tokenised *jointly* and the joint tokens are cut at the
context's own token length; a trailing space of the context moves onto the continuation. Per option we
keep the summed log-probability of the continuation tokens, its token count and its character count
(lm-eval's `acc_norm` divides by `len(option)`), and the log-probability of the option with no context at
all (lm-eval's `acc_mutual_info`: the empty context is the tokenizer's BOS token, or EOS when it has none,
as lm-eval's `prefix_token_id`). Per item:

    pred      = argmax  ll                     -> acc
    pred_norm = argmax  ll / n_chars           -> acc_norm
    pred_mi   = argmax  ll - ll_uncond         -> acc_mutual_info

Shared-context reuse. In ICL every item of a dataset follows the same long context (the training
documents). The context's tokens are run once and their key/value cache is kept; every option of every
item is then run from that cache, and the vocabulary head is applied only at the positions that are scored.
Options (of many items) are packed side by side into one sequence after the cache, with a 4D attention mask
(each option sees the cached context, its item's prompt and its own earlier tokens only), so one pass reads
the cache once for ~PACK_TOKENS tokens, and an item's prompt is run once for all its options (with no
shared context too); with attention implementations that take no 4D mask (flash) the options are batched as
rows over the cache expanded as a view (never deep-copied per option). The result
equals a full recomputation (tests/test_scoring.py checks this to 1e-4): the cached prefix stops one token
before the context's end, and for every item we check that the joint tokenisation starts with exactly the
cached tokens (a token that merges across the join would break this; such an item is recomputed in full).
"""
from __future__ import annotations

import inspect
import math
import warnings
from collections import defaultdict

import numpy as np
import pandas as pd
import torch

from . import runs
from .baselines import chance, golds  # noqa: F401 - golds is also scoring's public name
from .models import check_fits, encode, encode_pair

SCORING_VERSION = 2
# Tokens per forward pass when filling the shared context's cache. A context up to this long is run in one
# pass, where attention takes the causal kernel with no mask: a 40K-token context fills ~3.5x faster than in
# 2048-token chunks against the growing cache (whose chunks need a materialised mask), and the cache came out
# bitwise identical to the chunked one (bundled model, a 4K-token context; tiny-random, 19K). Longer contexts
# go in chunks, which bounds the activations' memory (65536 x intermediate size floats per layer).
PREFIX_CHUNK = 65536
# Rows per fp64 log-softmax after the vocabulary head: a pack's 1024 x 49K logits as one fp64 copy and its
# log-softmax are 0.8 GB of fresh memory, bound by memory; 32 rows at a time stay small and reused. Measured
# (1024 positions, 49K vocabulary): 2.2x faster for a 64-wide head, 1.4x for 576-wide; the same values (each
# row's log-softmax is its own).
SOFTMAX_ROWS = 32
CACHE_ROWS = 32768  # batch x cached tokens per forward: the model concatenates (copies) the expanded cache


# ---------------------------------------------------------------------------------------- the forward
def _parts(model):
    """(decoder, output head, final logit softcap) of a causal LM, also under a peft wrapper."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder()
    head = base.get_output_embeddings()
    return decoder, head, getattr(base.config, "final_logit_softcapping", None)


def _logprobs_at(model, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) from the hidden states of the positions that predict them (vocabulary head only
    there)."""
    _, head, cap = _parts(model)
    logits = head(hidden).float()
    if cap:
        logits = torch.tanh(logits / cap) * cap
    # fp64 here: the normaliser sums a vocabulary of terms, and fp32's error there (~1e-5 per token, its sign
    # set by the CPU's vector reduction) would dominate every comparison; it runs only at scored positions.
    return torch.cat([torch.log_softmax(logits[s:s + SOFTMAX_ROWS].double(), dim=-1)
                      .gather(-1, targets[s:s + SOFTMAX_ROWS, None])[:, 0]
                      for s in range(0, len(logits), SOFTMAX_ROWS)] or [logits.new_zeros(0).double()])


def expand_cache(cache, batch: int):
    """A cache whose layers are views of `cache`'s tensors expanded to `batch` rows: nothing is copied, and
    the model's update (a concatenation) makes new tensors, so the shared cache is never modified."""
    import copy

    new = copy.copy(cache)
    new.layers = []
    for layer in cache.layers:
        view = copy.copy(layer)
        view.keys = layer.keys.expand(batch, -1, -1, -1)
        view.values = layer.values.expand(batch, -1, -1, -1)
        new.layers.append(view)
    return new


def _call_decoder(decoder, ids: torch.Tensor, start: int, cache=None, *, position_ids=None,
                  attention_mask=None) -> torch.Tensor:
    """Hidden states of `ids` at cache slots start.. (after `cache`). Positions default to the slots
    (packed rows pass their own); `attention_mask`, when given, is passed through (a 4D mask);
    `cache_position` only to the few decoders that still take it."""
    params = inspect.signature(decoder.forward).parameters
    pos = torch.arange(start, start + ids.shape[1], device=ids.device)
    kw = {"position_ids": pos[None].expand(ids.shape[0], -1) if position_ids is None else position_ids}
    if attention_mask is not None:
        kw["attention_mask"] = attention_mask
    if "cache_position" in params:
        kw["cache_position"] = pos
    if cache is not None:
        kw["cache"] = cache
        kw["use_cache"] = True
    else:
        kw["use_cache"] = False
    return decoder(input_ids=ids, **kw).last_hidden_state


def fill_cache(model, ids: list[int]):
    """Run the shared context once (in chunks, no vocabulary head) and return its key/value cache."""
    from transformers import DynamicCache

    decoder, _, _ = _parts(model)
    cache = DynamicCache()
    dev = model.device
    with torch.inference_mode():
        for start in range(0, len(ids), PREFIX_CHUNK):
            chunk = torch.tensor([ids[start:start + PREFIX_CHUNK]], device=dev)
            _call_decoder(decoder, chunk, start, cache)
    return cache


PACKED = True  # rows go through _score_packed (False: batched rows, a shared cache expanded to the batch)
PACK_TOKENS = 1024  # query tokens per packed forward pass


def _attn_impl(model) -> str:
    return getattr(_parts(model)[0].config, "_attn_implementation", None) or "eager"


def _trunks(rows: list[dict]) -> list[tuple[list[int], int]]:
    """Consecutive rows with the same "group" key (the options of one item) as (row indices, trunk length):
    the trunk is the input tokens (all but the last) that every row of the group starts with, the prompt
    and any shared first words of the options, run once for the group. A row without the key is a group."""
    groups: list[list[int]] = []
    for i, r in enumerate(rows):
        g = r.get("group")
        if groups and g is not None and rows[groups[-1][0]].get("group") == g:
            groups[-1].append(i)
        else:
            groups.append([i])
    out = []
    for g in groups:
        first = rows[g[0]]["ids"][:-1]
        n = len(first)
        for i in g[1:]:
            ids = rows[i]["ids"][:-1]
            n = min(n, len(ids))
            n = next((k for k in range(n) if ids[k] != first[k]), n)
        out.append((g, n))
    return out


def _score_packed(model, rows: list[dict], cache, n_prefix: int) -> list[float]:
    """Rows after a shared cache (or none: n_prefix 0), packed side by side into one sequence with a 4D
    attention mask. The cache is read once per pass instead of once per row, its keys are never copied, and
    the trunk an item's options share (_trunks) is run once. One item of L trunk and two option tokens:

        query:   t1 .. tL | a1 a2 | b1 b2        positions n_prefix + (0..L-1 | L, L+1 | L, L+1)
        sees:    cache + causal trunk;  a_k: cache + trunk + a_1..a_k;  b_k: cache + trunk + b_1..b_k

    An option's first token is predicted at the trunk's last position; the others at its own."""
    decoder, _, _ = _parts(model)
    dev = model.device
    sdpa = _attn_impl(model) == "sdpa"
    total = torch.zeros(len(rows), dtype=torch.float64)  # summed log-prob per row
    width = lambda g, L: L + sum(len(rows[i]["ids"]) - 1 - L for i in g)  # noqa: E731 - query tokens
    packs, cur, size = [], [], 0
    for g, L in _trunks(rows):
        if cur and size + width(g, L) > PACK_TOKENS:
            packs.append(cur)
            cur, size = [], 0
        cur.append((g, L))
        size += width(g, L)
    if cur:
        packs.append(cur)
    with torch.inference_mode():
        for pack in packs:
            q = sum(width(g, L) for g, L in pack)
            inp, pos, sel, tgt, owner = [], [], [], [], []
            allowed = torch.zeros(q, n_prefix + q, dtype=torch.bool)
            allowed[:, :n_prefix] = True
            a = 0  # where the group's trunk starts in the query
            for g, L in pack:
                inp += rows[g[0]]["ids"][:L]
                pos += range(n_prefix, n_prefix + L)
                allowed[a:a + L, n_prefix + a:n_prefix + a + L] = torch.ones(L, L, dtype=torch.bool).tril()
                b = a + L  # where the next row's own tokens start
                for i in g:
                    ids = rows[i]["ids"]
                    m = len(ids) - 1 - L
                    inp += ids[L:-1]
                    pos += range(n_prefix + L, n_prefix + L + m)
                    allowed[b:b + m, n_prefix + a:n_prefix + a + L] = True
                    allowed[b:b + m, n_prefix + b:n_prefix + b + m] = torch.ones(m, m, dtype=torch.bool).tril()
                    for t in range(rows[i]["start"], len(ids)):
                        sel.append(a + t - 1 if t - 1 < L else b + t - 1 - L)
                        tgt.append(ids[t])
                        owner.append(i)
                    b += m
                a = b
            mask = (allowed if sdpa
                    else torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min))
            mask = mask[None, None].to(dev)
            if not sdpa:
                mask = mask.to(_parts(model)[1].weight.dtype)
            hidden = _call_decoder(decoder, torch.tensor([inp], device=dev), n_prefix,
                                   None if cache is None else expand_cache(cache, 1),
                                   position_ids=torch.tensor([pos], device=dev), attention_mask=mask)[0]
            lp = _logprobs_at(model, hidden[torch.tensor(sel, device=dev)], torch.tensor(tgt, device=dev))
            total.index_add_(0, torch.tensor(owner), lp.double().cpu())
    return total.tolist()


def _score_rows(model, rows: list[dict], cache, n_prefix: int, batch_size: int) -> list[float]:
    """Summed log-prob of each row's scored tokens. A row: {"ids": tokens after the cached prefix,
    "start": index in "ids" of the first scored token}. Rows are right-padded into batches (causal
    attention: padding at the end cannot change earlier positions)."""
    # packed with or without a cache; rows with no cache longer than a pack take the batched path, whose
    # causal kernel needs no materialised mask
    short = cache is not None or max(len(r["ids"]) for r in rows) <= PACK_TOKENS
    if PACKED and short and _attn_impl(model) in ("sdpa", "eager"):
        return _score_packed(model, rows, cache, n_prefix)
    decoder, _, _ = _parts(model)
    dev = model.device
    batch_size = max(1, min(batch_size, CACHE_ROWS // max(1, n_prefix)))
    out = [0.0] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]["ids"]))
    pad = 0
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            width = max(len(rows[i]["ids"]) for i in idx) - 1  # the last token is only a target
            inp = torch.full((len(idx), width), pad, dtype=torch.long)
            sel_r, sel_c, tgt = [], [], []
            for r, i in enumerate(idx):
                ids = rows[i]["ids"]
                inp[r, :len(ids) - 1] = torch.tensor(ids[:-1])
                for t in range(rows[i]["start"], len(ids)):
                    sel_r.append(r)
                    sel_c.append(t - 1)
                    tgt.append(ids[t])
            hidden = _call_decoder(decoder, inp.to(dev), n_prefix,
                                   None if cache is None else expand_cache(cache, len(idx)))
            sel_r_t, sel_c_t = torch.tensor(sel_r, device=dev), torch.tensor(sel_c, device=dev)
            lp = _logprobs_at(model, hidden[sel_r_t, sel_c_t], torch.tensor(tgt, device=dev)).double().cpu()
            sums = torch.zeros(len(idx), dtype=torch.float64).index_add_(0, torch.tensor(sel_r), lp)
            for r, i in enumerate(idx):
                out[i] = float(sums[r])
    return out


# ------------------------------------------------------------------------------------------- scoring
def special_boundary(tok, text: str) -> int:
    """The end of the last added special token in `text` after which its tokens cannot depend on what follows:
    a tokenizer splits its added tokens out of the text before tokenising the pieces between them, so
    encode(text[:cut] + x) == encode(text[:cut]) + encode(text[cut:] + x) for every x. Only tokens that take
    no whitespace from their right (rstrip), match anywhere (not single_word), are matched on the raw text
    (not normalized) and are part of no other added token qualify. 0 when `text` holds none (plain ICL
    contexts)."""
    decoder = getattr(tok, "added_tokens_decoder", None) or {}
    contents = [a.content for a in decoder.values()]
    ok = [a.content for a in decoder.values()
          if a.special and a.content and not a.rstrip and not a.single_word and not a.normalized
          and not any(a.content in c for c in contents if c != a.content)]
    return max((text.rfind(c) + len(c) for c in ok if c in text), default=0)


def split_context(tok, context: str, ids: list[int] | None = None) -> tuple[int, list[int]]:
    """(cut, head): `context` cut at its last special-token boundary (special_boundary), with head =
    encode(context[:cut]), so that the joint tokens of context + anything are head + the tokens of
    context[cut:] + it, and only the short tail is tokenised again per option. Checked once on the context
    itself (`ids`: its tokens, when the caller has them): encode(context) == head + encode(context[cut:]).
    (0, []) when there is no such boundary, nothing follows it, or the check fails."""
    cut = special_boundary(tok, context)
    if cut == 0 or cut == len(context):
        return 0, []
    head = encode(tok, context[:cut])
    ids = encode(tok, context) if ids is None else ids
    if ids != head + encode(tok, context[cut:]):
        return 0, []
    return cut, head


def _rows_for(tok, context: str, item: dict, split: tuple[int, list[int]] = (0, [])) -> list[dict]:
    """The joint tokens of each option of an item, and where its continuation starts. With `split`
    (split_context's (cut, head) of `context`) the rows leave out the head's len(head) tokens, which every
    row starts with: the full row is head + ids, its continuation starting at len(head) + start."""
    if not item.get("options"):
        raise ValueError(f"item {item.get('id')!r} has no options")
    ctx = context[split[0]:] + item["prompt"]
    rows = []
    for o in item["options"]:
        if not isinstance(o, str) or not o.strip():
            raise ValueError(f"item {item.get('id')!r} has an empty option {o!r}")
        c_ids, k_ids = encode_pair(tok, ctx, " " + o)
        if not k_ids:
            raise ValueError(f"item {item.get('id')!r}: option {o!r} gives an empty continuation "
                             f"(it merges into the prompt's last token); fix the item")
        rows.append({"ids": c_ids + k_ids, "start": len(c_ids)})
    return rows


def loglikelihoods(model, tok, items: list[dict], context: str = "", *, batch_size: int = 16,
                   progress: bool = False) -> tuple[list[list[float]], list[list[int]]]:
    """Per item, the summed log-prob and the token count of each option's continuation given
    `context` + prompt. The context's tokens are run once and reused for every item (see the module doc)."""
    if not items:
        return [], []
    ctx_ids = encode(tok, context) if context else []
    cut, head = split_context(tok, context, ctx_ids) if context else (0, [])
    h = len(head)  # rows hold the tokens after the head (split_context): full row = head + ids
    rows = [_rows_for(tok, context, it, (cut, head)) for it in items]
    for it, rs in zip(items, rows):
        check_fits(model, h + max(len(r["ids"]) for r in rs), f"item {it.get('id')!r} with its context")
    prefix = ctx_ids[:-1]  # stop one token early: it may merge with the prompt
    own = prefix[h:]  # the prefix after the head (the head is a prefix of it: split_context's check)
    fits = [bool(prefix) and all(r["ids"][:len(own)] == own and r["start"] > len(own) for r in rs)
            for rs in rows]
    if prefix and not all(fits):
        warnings.warn(f"{fits.count(False)} of {len(items)} items do not tokenise with the shared context's "
                      f"tokens as a prefix: they are recomputed in full")
    result: list = [[None] * len(rs) for rs in rows]
    for reuse in (True, False):
        flat, where = [], []
        for i, (rs, ok) in enumerate(zip(rows, fits)):
            if ok == reuse:
                for j, r in enumerate(rs):
                    flat.append(r)
                    where.append((i, j))
        if not flat:
            continue
        cache = fill_cache(model, prefix) if reuse else None
        if reuse:
            flat = [{"ids": r["ids"][len(own):], "start": r["start"] - len(own)} for r in flat]
        else:
            flat = [{"ids": head + r["ids"], "start": h + r["start"]} for r in flat]
        for r, (i, _) in zip(flat, where):
            r["group"] = i  # an item's options share their trunk (_score_packed)
        for (i, j), v in zip(where, _batched(model, flat, cache, len(prefix) if reuse else 0, batch_size,
                                             progress)):
            result[i][j] = v
        del cache
    ntok = [[len(r["ids"]) - r["start"] for r in rs] for rs in rows]
    return result, ntok


def _batched(model, flat, cache, n_prefix, batch_size, progress):
    if not flat:
        return []
    if not progress:
        return _score_rows(model, flat, cache, n_prefix, batch_size)
    from tqdm.auto import tqdm

    out, step = [], batch_size * 8
    for s in tqdm(range(0, len(flat), step), desc="scoring", leave=False):
        out += _score_rows(model, flat[s:s + step], cache, n_prefix, batch_size)
    return out


def unconditional(model, tok, options: list[str], *, batch_size: int = 16) -> dict[str, float]:
    """log p(" " + option | empty context) for each distinct option string (lm-eval's acc_mutual_info)."""
    distinct = sorted(set(options))
    rows = []
    for o in distinct:
        c_ids, k_ids = encode_pair(tok, "", " " + o)
        rows.append({"ids": c_ids + k_ids, "start": len(c_ids)})
    return dict(zip(distinct, _score_rows(model, rows, None, 0, batch_size))) if rows else {}


def _world() -> tuple[int, int]:
    """(rank, number of processes) of the torch.distributed group accelerate set up; (0, 1) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        from accelerate import PartialState

        state = PartialState()
        return state.process_index, state.num_processes
    return 0, 1


def _shard(xs: list, rank: int, world: int) -> list:
    """The rank-th of `world` contiguous, near-equal slices of xs (their concatenation in rank order is
    xs)."""
    # our own: accelerate's split_between_processes is a context manager on the global state that hands the
    # remainder to the first ranks, not the last; a plain slice of (rank, world) is testable without a group
    n = len(xs)
    return xs[rank * n // world:(rank + 1) * n // world]


def _gather(xs: list, world: int) -> list:
    """Every process's list, concatenated in rank order (xs itself for one process)."""
    if world == 1:
        return xs
    from accelerate.utils import gather_object

    return gather_object(xs)


def _argmax(xs) -> int:
    return int(np.argmax(np.asarray(xs, dtype=float)))


def score_items(model, tok, items: list[dict], context: str | list[str] = "", *, batch_size: int = 16,
                progress: bool = True, uncond: dict[str, float] | None = None) -> list[dict]:
    """Score every option of every item. `context`: a shared prefix ("" = none) or one string per item.
    `uncond`: option -> its unconditional log-likelihood under this same model, read where present and
    filled with the rest (a caller scoring several contexts with one model passes one dict to them all).

    Returns per item {"id", "loglikelihoods", "n_tokens", "n_chars", "loglikelihoods_uncond",
    "pred", "pred_norm", "pred_mi", "gold"}."""
    if isinstance(context, str):
        groups = {context: list(range(len(items)))}
    else:
        if len(context) != len(items):
            raise ValueError(f"got {len(context)} contexts for {len(items)} items")
        groups = defaultdict(list)
        for i, c in enumerate(context):
            groups[c].append(i)
    rank, world = _world()
    lls: list = [None] * len(items)
    ntok: list = [None] * len(items)
    for ctx, idx in groups.items():
        mine = _shard(idx, rank, world)
        ll, nt = loglikelihoods(model, tok, [items[i] for i in mine], ctx, batch_size=batch_size,
                                progress=progress and len(groups) == 1 and rank == 0)
        for i, a, b in _gather(list(zip(mine, ll, nt)), world):
            lls[i], ntok[i] = a, b
    uncond = {} if uncond is None else uncond
    missing = sorted({o for it in items for o in it["options"]} - set(uncond))
    uncond.update(_gather(list(unconditional(model, tok, _shard(missing, rank, world),
                                             batch_size=batch_size).items()), world))
    out = []
    for it, ll, nt in zip(items, lls, ntok):
        n_chars = [len(o) for o in it["options"]]
        ll_u = [uncond[o] for o in it["options"]]
        out.append({"id": it["id"], "loglikelihoods": ll, "n_tokens": nt, "n_chars": n_chars,
                    "loglikelihoods_uncond": ll_u, "pred": _argmax(ll),
                    "pred_norm": _argmax([a / c for a, c in zip(ll, n_chars)]),
                    "pred_mi": _argmax([a - u for a, u in zip(ll, ll_u)]), "gold": it["gold"]})
    return out


# ------------------------------------------------------------------------------------- summaries, stage
RESULT_COLUMNS = ["dataset", "split", "subset", "condition", "model", "seed", "n", "acc", "acc_norm",
                  "acc_mutual_info", "chance", "acc_any_valid"]


def summarize(items: list[dict], scores: list[dict], *, dataset: str, condition: str, model: str,
              seed: int) -> pd.DataFrame:
    """One row per split x subset: n, acc, acc_norm, acc_mutual_info, chance (mean |golds|/#options) and
    acc_any_valid (the prediction is any of the item's "valid" options; NaN where items have none)."""
    if len(items) != len(scores):
        raise ValueError(f"{len(items)} items but {len(scores)} scores")
    recs = []
    for it, sc in zip(items, scores):
        if it["id"] != sc["id"]:
            raise ValueError(f"scores out of order: item {it['id']!r} vs score {sc['id']!r}")
        valid, g = it.get("valid"), golds(it)
        recs.append({"split": it["split"], "subset": it.get("subset", ""),
                     "acc": float(sc["pred"] in g), "acc_norm": float(sc["pred_norm"] in g),
                     "acc_mutual_info": float(sc["pred_mi"] in g),
                     "chance": chance(it),
                     "acc_any_valid": float(sc["pred"] in valid) if valid else math.nan})
    if not recs:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    df = pd.DataFrame(recs)
    g = df.groupby(["split", "subset"], sort=False)
    out = g.agg(n=("acc", "size"), acc=("acc", "mean"), acc_norm=("acc_norm", "mean"),
                acc_mutual_info=("acc_mutual_info", "mean"), chance=("chance", "mean"),
                acc_any_valid=("acc_any_valid", "mean")).reset_index()
    out.insert(0, "dataset", dataset)
    out.insert(3, "condition", condition)
    out.insert(4, "model", model)
    out.insert(5, "seed", seed)
    return out[RESULT_COLUMNS]


def scores_path(params, dataset: str, condition: str):
    return runs.run_dir(params) / "scores" / f"{dataset}__{condition}.jsonl"


def _results_key(params, dataset, condition, items, context, seed, key) -> dict:
    return {"version": SCORING_VERSION, "model": params.model.model_dump(), "dataset": dataset,
            "condition": condition, "seed": seed, "items": runs.key_hash(items),
            "context": runs.key_hash(context), "extra": key}


def cached_results(params, dataset: str, condition: str, items: list[dict], context: str | list[str] = "",
                   *, seed: int = 0, key=None) -> pd.DataFrame | None:
    """The rows `evaluate` would return, when the scores are cached for exactly these arguments; else None
    (lets a caller skip loading a model whose scores are already there)."""
    sp = scores_path(params, dataset, condition)
    if not runs.is_fresh(sp, _results_key(params, dataset, condition, items, context, seed, key)):
        return None
    return summarize(items, runs.read_jsonl(sp), dataset=dataset, condition=condition, model=params.model.name,
                     seed=seed)


def evaluate(params, dataset: str, condition: str, model, tok, items: list[dict],
             context: str | list[str] = "", *, seed: int = 0, key=None, batch_size: int = 16,
             progress: bool = True, same_as: str | None = None,
             uncond: dict[str, float] | None = None) -> pd.DataFrame:
    """The cached scoring stage: score `items` (after `context`), write
    runs/<p>/scores/<dataset>__<condition>.jsonl (one line per item; its stamp says the file is complete)
    and return summarize's rows.

    Fresh when the stamp's key matches: scoring version, model params, the items, the context and `key`
    (callers add what else decides the model's weights, e.g. a finetuned adapter's hash). `same_as`: a
    condition whose cached scores, when fresh for exactly these arguments, are this one's (e.g. icl_fit at the
    whole set is icl): they are copied instead of scored again. `uncond`: as in score_items."""
    if not items:
        raise ValueError(f"{dataset}/{condition}: no items to score")
    done = cached_results(params, dataset, condition, items, context, seed=seed, key=key)
    if done is not None:
        return done
    full_key = _results_key(params, dataset, condition, items, context, seed, key)
    sp = scores_path(params, dataset, condition)
    if same_as and cached_results(params, dataset, same_as, items, context, seed=seed, key=key) is not None:
        drop = ("split", "subset", "cluster", "golds")
        scores = [{k: v for k, v in s.items() if k not in drop}
                  for s in read_scores(params, dataset, same_as)]
    else:
        scores = score_items(model, tok, items, context, batch_size=batch_size, progress=progress,
                             uncond=uncond)
    extra = [{"split": it["split"], "subset": it.get("subset", ""), "cluster": it.get("cluster", it["id"]),
              "golds": golds(it)} for it in items]
    df = summarize(items, scores, dataset=dataset, condition=condition, model=params.model.name, seed=seed)
    rank, world = _world()
    if rank == 0:  # every process holds the gathered scores; one writes them
        runs.invalidate(sp)  # the stamp goes first and comes back last: a kill in between leaves no stamp
        runs.write_jsonl(sp, [{**s, **e} for s, e in zip(scores, extra)])
        runs.mark_fresh(sp, full_key)
    if world > 1:
        torch.distributed.barrier()
    return df


def read_scores(params, dataset: str, condition: str) -> list[dict]:
    return runs.read_jsonl(scores_path(params, dataset, condition))
