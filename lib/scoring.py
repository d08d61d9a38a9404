"""Multiple-choice log-likelihood scoring, with the semantics of lm-evaluation-harness.

Each option of an item is scored as the continuation " " + option of the prompt, never shown to the model
beforehand. As in lm-eval (`TemplateLM._encode_pair`), context (shared context + prompt) and continuation
are tokenised *jointly* and cut at the context's own token length; a trailing space of the context moves
onto the continuation. Per option we keep the summed log-probability of the continuation tokens (ll), its
token and character counts (lm-eval's `acc_norm` divides by `len(option)`), and its log-probability with no
context at all (ll_uncond; the empty context is the tokenizer's BOS token, else EOS, as lm-eval's
`prefix_token_id`). Per item:

    pred      = argmax  ll                     -> acc
    pred_norm = argmax  ll / n_chars           -> acc_norm
    pred_mi   = argmax  ll - ll_uncond         -> acc_mutual_info

Shared-context reuse. In ICL every item follows the same long context (the training documents). Its tokens
are run once and their key/value cache kept; every option of every item then runs from that cache, with the
vocabulary head only at the scored positions. Options of many items are packed side by side after the cache
under a 4D attention mask (_score_packed): one pass reads the cache once for ~PACK_TOKENS tokens, and an
item's prompt runs once for all its options; attention implementations that take no 4D mask (flash) get
batched rows over the cache expanded as a view (never copied per option). The result equals a full
recomputation (tests/test_scoring.py checks it to 1e-4): the cached prefix stops one token before the
context's end, and an item whose joint tokens do not start with exactly the cached ones (a token merging
across the join) is recomputed in full.
"""
from __future__ import annotations

import copy
import itertools
import os
import warnings
from collections import defaultdict

import numpy as np
import torch

from . import runs
from .baselines import golds
from .models import check_fits, encode, encode_pair

SCORING_VERSION = 2
# Tokens per forward pass when filling the shared context's cache. A context up to this long is run in one
# pass with the causal kernel and no mask: a 40K-token context fills ~3.5x faster than in 2048-token chunks,
# with a bitwise identical cache (bundled model, 4K tokens; tiny-random, 19K). Longer contexts go in chunks,
# which bounds the activations' memory (65536 x intermediate size floats per layer).
PREFIX_CHUNK = 65536
# Rows per fp64 log-softmax after the vocabulary head: a pack's 1024 x 49K logits in fp64 are 0.8 GB of fresh
# memory; 32 rows at a time stay small and reused: 2.2x faster for a 64-wide head, 1.4x for 576-wide (1024
# positions, 49K vocabulary), the same values (each row's log-softmax is its own).
SOFTMAX_ROWS = 32
CACHE_ROWS = 32768  # batch x cached tokens per forward: the model concatenates (copies) the expanded cache
PACK_TOKENS = 1024  # query tokens per packed forward pass


# ---------------------------------------------------------------------------------------- the forward
def _parts(model):
    """(decoder, output head, final logit softcap) of a causal LM, also under a peft wrapper."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cap = getattr(base.config, "final_logit_softcapping", None)
    return base.get_decoder(), base.get_output_embeddings(), cap


def _logprobs_at(model, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) from the hidden states of the positions that predict them."""
    _, head, cap = _parts(model)
    logits = head(hidden).float()
    if cap:
        logits = torch.tanh(logits / cap) * cap
    # fp64: the normaliser sums a vocabulary of terms, and fp32's error there (~1e-5 per token, its sign set
    # by the CPU's vector reduction) would dominate every comparison
    return torch.cat([torch.log_softmax(logits[s:s + SOFTMAX_ROWS].double(), dim=-1)
                      .gather(-1, targets[s:s + SOFTMAX_ROWS, None])[:, 0]
                      for s in range(0, len(logits), SOFTMAX_ROWS)] or [logits.new_zeros(0).double()])


def expand_cache(cache, batch: int):
    """A cache whose layers are views of `cache`'s tensors expanded to `batch` rows: nothing is copied, and
    the model's update (a concatenation) makes new tensors, so `cache` is never modified."""
    new = copy.copy(cache)
    new.layers = [copy.copy(layer) for layer in cache.layers]
    for view, layer in zip(new.layers, cache.layers):
        view.keys, view.values = layer.keys.expand(batch, -1, -1, -1), layer.values.expand(batch, -1, -1, -1)
    return new


def _call_decoder(decoder, ids: torch.Tensor, start: int, cache=None, *, position_ids=None,
                  attention_mask=None) -> torch.Tensor:
    """Hidden states of `ids` after `cache`, at positions start.. unless `position_ids` are given;
    `attention_mask`: a 4D mask, or None for the causal one."""
    if position_ids is None:
        position_ids = torch.arange(start, start + ids.shape[1], device=ids.device).expand(ids.shape[0], -1)
    return decoder(input_ids=ids, position_ids=position_ids, attention_mask=attention_mask, cache=cache,
                   use_cache=cache is not None).last_hidden_state


def fill_cache(model, ids: list[int]):
    """Run the shared context once (in chunks of PREFIX_CHUNK, no vocabulary head); its key/value cache."""
    from transformers import DynamicCache

    decoder = _parts(model)[0]
    cache = DynamicCache()
    with torch.inference_mode():
        for start in range(0, len(ids), PREFIX_CHUNK):
            chunk = torch.tensor([ids[start:start + PREFIX_CHUNK]], device=model.device)
            _call_decoder(decoder, chunk, start, cache)
    return cache


def _attn_impl(model) -> str:
    return getattr(_parts(model)[0].config, "_attn_implementation", None) or "eager"


def _trunks(rows: list[dict]) -> list[tuple[list[int], int]]:
    """(row indices, trunk length) per run of consecutive rows with the same "group" key (a row without one
    is a group): the trunk is the input tokens (all but the last) every row of the group starts with."""
    out = []
    for _, g in itertools.groupby(range(len(rows)), key=lambda i: rows[i].get("group", -1 - i)):
        g = list(g)  # commonprefix compares any sequences element-wise, token lists too
        out.append((g, len(os.path.commonprefix([rows[i]["ids"][:-1] for i in g]))))
    return out


def _score_packed(model, rows: list[dict], cache, n_prefix: int) -> list[float]:
    """_score_rows by packing rows side by side into sequences of ~PACK_TOKENS after the cache (or none:
    n_prefix 0), with a 4D attention mask. One item of L trunk and two option tokens:

        query:   t1 .. tL | a1 a2 | b1 b2        positions n_prefix + (0..L-1 | L, L+1 | L, L+1)
        sees:    cache + causal trunk;  a_k: cache + trunk + a_1..a_k;  b_k: cache + trunk + b_1..b_k

    An option's first token is predicted at the trunk's last position; the others at its own."""
    decoder, head, _ = _parts(model)
    dev = model.device
    sdpa = _attn_impl(model) == "sdpa"
    total = torch.zeros(len(rows), dtype=torch.float64)  # summed log-prob per row
    width = lambda g, L: L + sum(len(rows[i]["ids"]) - 1 - L for i in g)  # noqa: E731 - query tokens
    causal = lambda n: torch.ones(n, n, dtype=torch.bool).tril()  # noqa: E731
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
                allowed[a:a + L, n_prefix + a:n_prefix + a + L] = causal(L)
                b = a + L  # where the next row's own tokens start
                for i in g:
                    ids = rows[i]["ids"]
                    m = len(ids) - 1 - L
                    inp += ids[L:-1]
                    pos += range(n_prefix + L, n_prefix + L + m)
                    allowed[b:b + m, n_prefix + a:n_prefix + a + L] = True
                    allowed[b:b + m, n_prefix + b:n_prefix + b + m] = causal(m)
                    for t in range(rows[i]["start"], len(ids)):
                        sel.append(a + t - 1 if t - 1 < L else b + t - 1 - L)
                        tgt.append(ids[t])
                        owner.append(i)
                    b += m
                a = b
            if not sdpa:  # eager adds the mask to the attention scores
                allowed = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
                allowed = allowed.to(head.weight.dtype)
            mask = allowed[None, None].to(dev)
            hidden = _call_decoder(decoder, torch.tensor([inp], device=dev), n_prefix,
                                   None if cache is None else expand_cache(cache, 1),
                                   position_ids=torch.tensor([pos], device=dev), attention_mask=mask)[0]
            lp = _logprobs_at(model, hidden[torch.tensor(sel, device=dev)], torch.tensor(tgt, device=dev))
            total.index_add_(0, torch.tensor(owner), lp.double().cpu())
    return total.tolist()


def _score_rows(model, rows: list[dict], cache, n_prefix: int, batch_size: int) -> list[float]:
    """Summed log-prob of each row's scored tokens after `cache` (n_prefix tokens, or None and 0). A row:
    {"ids": tokens after the cache, "start": index of the first scored token, optional "group" (_trunks)}.
    Packed (sdpa, eager) unless rows without a cache exceed a pack; else right-padded batches (padding at the
    end cannot change earlier positions), whose causal kernel needs no materialised mask."""
    short = cache is not None or max(len(r["ids"]) for r in rows) <= PACK_TOKENS
    if short and _attn_impl(model) in ("sdpa", "eager"):
        return _score_packed(model, rows, cache, n_prefix)
    decoder = _parts(model)[0]
    dev = model.device
    batch_size = max(1, min(batch_size, CACHE_ROWS // max(1, n_prefix)))
    out = [0.0] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]["ids"]))
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            width = max(len(rows[i]["ids"]) for i in idx) - 1  # the last token is only a target
            inp = torch.zeros((len(idx), width), dtype=torch.long)  # padded with token 0
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
    """The end `cut` of the last added special token in `text` such that encode(text[:cut] + x) ==
    encode(text[:cut]) + encode(text[cut:] + x) for every x (tokenizers split added tokens out first); 0
    when there is none. Only tokens that are special, not rstrip, not single_word, not normalized and part
    of no other added token qualify."""
    decoder = getattr(tok, "added_tokens_decoder", None) or {}
    contents = [a.content for a in decoder.values()]
    ok = [a.content for a in decoder.values()
          if a.special and a.content and not a.rstrip and not a.single_word and not a.normalized
          and not any(a.content in c for c in contents if c != a.content)]
    return max((text.rfind(c) + len(c) for c in ok if c in text), default=0)


def split_context(tok, context: str, ids: list[int] | None = None) -> tuple[int, list[int]]:
    """(cut, head): `context` cut at special_boundary, head = encode(context[:cut]), so that only the tail
    context[cut:] is tokenised again per option. Checked once: encode(context) (`ids`, when the caller has
    them) == head + encode(context[cut:]). (0, []) when there is no boundary, nothing follows it, or the
    check fails."""
    cut = special_boundary(tok, context)
    if cut == 0 or cut == len(context):
        return 0, []
    head = encode(tok, context[:cut])
    ids = encode(tok, context) if ids is None else ids
    if ids != head + encode(tok, context[cut:]):
        return 0, []
    return cut, head


def _rows_for(tok, context: str, item: dict, split: tuple[int, list[int]] = (0, [])) -> list[dict]:
    """Per option of `item`, {"ids": the joint tokens, "start": where the continuation starts}. With `split`
    (split_context's (cut, head)) the ids leave out the head: the full row is head + ids."""
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
    `context` + prompt. Raises ValueError for an item that does not fit the model's window."""
    if not items:
        return [], []
    ctx_ids = encode(tok, context) if context else []
    cut, head = split_context(tok, context, ctx_ids) if context else (0, [])
    h = len(head)
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
        sel = [(i, j, r) for i, (rs, ok) in enumerate(zip(rows, fits)) if ok == reuse
               for j, r in enumerate(rs)]
        if not sel:
            continue
        if reuse:  # "group": an item's options share their trunk (_trunks)
            cache, n_prefix = fill_cache(model, prefix), len(prefix)
            flat = [{"ids": r["ids"][len(own):], "start": r["start"] - len(own), "group": i}
                    for i, _, r in sel]
        else:
            cache, n_prefix = None, 0
            flat = [{"ids": head + r["ids"], "start": h + r["start"], "group": i} for i, _, r in sel]
        step = batch_size * 8 if progress else len(flat)  # progress: the bar moves per step rows
        starts = range(0, len(flat), step)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="scoring", leave=False)
        scored = [v for s in starts
                  for v in _score_rows(model, flat[s:s + step], cache, n_prefix, batch_size)]
        for (i, j, _), v in zip(sel, scored):
            result[i][j] = v
        del cache
    ntok = [[len(r["ids"]) - r["start"] for r in rs] for rs in rows]
    return result, ntok


def unconditional(model, tok, options: list[str], *, batch_size: int = 16) -> dict[str, float]:
    """log p(" " + option | empty context) for each distinct option string (lm-eval's acc_mutual_info)."""
    distinct = sorted(set(options))
    if not distinct:
        return {}
    rows = _rows_for(tok, "", {"id": "unconditional", "prompt": "", "options": distinct})
    return dict(zip(distinct, _score_rows(model, rows, None, 0, batch_size)))


def _world() -> tuple[int, int]:
    """(rank, number of processes) of the torch.distributed group accelerate set up; (0, 1) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        from accelerate import PartialState

        state = PartialState()
        return state.process_index, state.num_processes
    return 0, 1


def _shard(xs: list, rank: int, world: int) -> list:
    """The rank-th of `world` contiguous, near-equal slices of xs (concatenated in rank order: xs)."""
    # not accelerate's split_between_processes: a context manager on the global state that hands the
    # remainder to the first ranks, not the last (augmentation's shards would change); this one is testable
    # without a process group
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
    """Per item {"id", "loglikelihoods", "n_tokens", "n_chars", "loglikelihoods_uncond", "pred", "pred_norm",
    "pred_mi", "gold"}. `context`: a shared prefix ("" = none) or one string per item (equal strings share
    a cache). `uncond`: option -> its unconditional log-likelihood under this model, read where present and
    filled with the rest (pass one dict to every call with one model). Under several processes each scores
    a shard and every process returns all items."""
    contexts = [context] * len(items) if isinstance(context, str) else context
    if len(contexts) != len(items):
        raise ValueError(f"got {len(contexts)} contexts for {len(items)} items")
    groups = defaultdict(list)
    for i, c in enumerate(contexts):
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


# ------------------------------------------------------------------------------------------- the stage
def scores_path(params, dataset: str, condition: str):
    return runs.run_dir(params) / "scores" / f"{dataset}__{condition}.jsonl"


def _results_key(params, dataset, condition, items, context, seed, key) -> dict:
    return {"version": SCORING_VERSION, "model": params.model.model_dump(), "dataset": dataset,
            "condition": condition, "seed": seed, "items": runs.key_hash(items),
            "context": runs.key_hash(context), "extra": key}


def cached_results(params, dataset: str, condition: str, items: list[dict], context: str | list[str] = "",
                   *, seed: int = 0, key=None) -> list[dict] | None:
    """The score rows `evaluate` would return, when they are cached for exactly these arguments; else None
    (lets a caller skip loading a model whose scores are already there)."""
    sp = scores_path(params, dataset, condition)
    if not runs.is_fresh(sp, _results_key(params, dataset, condition, items, context, seed, key)):
        return None
    return runs.read_jsonl(sp)


def evaluate(params, dataset: str, condition: str, model, tok, items: list[dict],
             context: str | list[str] = "", *, seed: int = 0, key=None, batch_size: int = 16,
             progress: bool = True, same_as: str | None = None,
             uncond: dict[str, float] | None = None) -> list[dict]:
    """The cached scoring stage: score `items` after `context`, write scores_path (one line per item:
    score_items' row + the item's split, subset, cluster and golds; its stamp says the file is complete) and
    return those rows. Fresh when the stamp's key matches: scoring version, model params, items, context and
    `key` (what else decides the weights, e.g. a finetuned adapter's hash). `same_as`: a condition whose
    scores, when fresh for these arguments, are this one's (icl_fit at the whole set is icl): copied, not
    scored again. `uncond`: as in score_items. Raises ValueError when there are no items."""
    if not items:
        raise ValueError(f"{dataset}/{condition}: no items to score")
    done = cached_results(params, dataset, condition, items, context, seed=seed, key=key)
    if done is not None:
        return done
    same = cached_results(params, dataset, same_as, items, context, seed=seed, key=key) if same_as else None
    if same is not None:
        drop = ("split", "subset", "cluster", "golds")
        scores = [{k: v for k, v in s.items() if k not in drop} for s in same]
    else:
        scores = score_items(model, tok, items, context, batch_size=batch_size, progress=progress,
                             uncond=uncond)
    if [s["id"] for s in scores] != [it["id"] for it in items]:
        raise ValueError(f"{dataset}/{condition}: the scores are not one per item in the items' order")
    rows = [{**s, "split": it["split"], "subset": it.get("subset", ""),
             "cluster": it.get("cluster", it["id"]), "golds": golds(it)} for s, it in zip(scores, items)]
    sp = scores_path(params, dataset, condition)
    rank, world = _world()
    if rank == 0:  # every process holds the gathered scores; one writes them
        runs.invalidate(sp)  # the stamp goes first and comes back last: a kill in between leaves no stamp
        runs.write_jsonl(sp, rows)
        runs.mark_fresh(sp, _results_key(params, dataset, condition, items, context, seed, key))
    if world > 1:
        torch.distributed.barrier()
    return rows


def read_scores(params, dataset: str, condition: str) -> list[dict]:
    return runs.read_jsonl(scores_path(params, dataset, condition))
