"""In-context learning (paper section 4): the training documents in the prompt, then the test item.

The context is the training documents, one after another, followed by a short instruction ("Use the
information above to answer."), either inside one user turn of the instruct model's chat template (the item's
prompt then opens the assistant's reply) or as plain text (`icl.format`). When the documents do not fit
`icl.max_context_tokens` (the paper subsampled 8x on its largest sets), a seeded random subset is kept, always
including at least one document for each fact that a scored item rests on ("support"); the fraction kept and
the context's length in tokens are recorded.

Beyond the paper, the context-size curve: `icl_n{size}` puts `size` documents in each context (curve_contexts:
items of one cluster share a context holding their support facts and a mention of every option, filled with
random documents), on at most `icl.curve_items` items per split; `icl_fit` scores every item at the largest
size whose learning-check accuracy reaches `analysis.learned_threshold` (choose_fit). Optionally two retrieval
conditions put only k = `icl.retrieval_k` documents in context per item:
`icl_bm25` (the k documents most similar to the item's prompt under BM25; the options are never used) and
`icl_oracle` (the documents stating the item's support facts, plus random others up to k, as the authors'
follow-up work 2509.16189 did). The pretrained control scores the prompt alone.

Fairness: a context holding only the tested facts lets a model pick "the one candidate it saw";
`option_occurrence` counts how often each option string occurs in the context an item is scored with.
"""
from __future__ import annotations

import functools
import math
import random
import re
import warnings

import pandas as pd

from . import runs, scoring
from .baselines import golds, words  # the same word split as the shortcut baselines

INSTRUCTION = "Use the information above to answer."
DOC_SEP = "\n\n"


# --------------------------------------------------------------------------------------------- context
def format_context(tok, docs: list[str], fmt: str) -> str:
    """The documents + the instruction, as text that the item's prompt directly follows.

    plain: docs, blank line, instruction, newline (a newline, not a blank line: "\\n\\n" + a letter would
    tokenise differently from "\\n\\n" alone, and the shared context's tokens must stay a prefix).
    chat: one user turn (docs + instruction) and the assistant's turn opened by the chat template."""
    body = DOC_SEP.join(docs) + (DOC_SEP if docs else "") + INSTRUCTION
    if fmt == "plain":
        return body + "\n"
    if fmt == "chat":
        if not getattr(tok, "chat_template", None):
            raise ValueError("icl.format is 'chat' but the tokenizer has no chat template: "
                             "use icl.format: plain")
        return tok.apply_chat_template([{"role": "user", "content": body}], add_generation_prompt=True,
                                       tokenize=False)
    raise ValueError(f"unknown icl.format {fmt!r} (chat or plain)")


def _n_tokens(tok, text: str) -> int:
    return len(tok(text, add_special_tokens=False)["input_ids"])


def docs_by_fact(train_rows: list[dict]) -> dict[str, list[int]]:
    """fact -> indices of the training documents stating it."""
    by_fact: dict[str, list[int]] = {}
    for i, r in enumerate(train_rows):
        for f in r["facts"]:
            by_fact.setdefault(f, []).append(i)
    return by_fact


def required_documents(train_rows: list[dict], items: list[dict], rng: random.Random,
                       by_fact: dict[str, list[int]] | None = None) -> set[int]:
    """Indices of documents covering every support fact of the items: one random covering document per
    fact not already covered (facts in sorted order, so the choice is reproducible). `by_fact`:
    docs_by_fact(train_rows), when the caller has it already."""
    by_fact = docs_by_fact(train_rows) if by_fact is None else by_fact
    needed = sorted({f for it in items for f in it.get("support", [])})
    missing = [f for f in needed if f not in by_fact]
    if missing:
        raise ValueError(f"{len(missing)} support facts are in no training document, e.g. {missing[:3]}")
    chosen: set[int] = set()
    for f in needed:
        if not chosen.intersection(by_fact[f]):
            chosen.add(rng.choice(by_fact[f]))
    return chosen


def build_context(tok, train_rows: list[dict], items: list[dict], *, fmt: str, max_tokens: int,
                  seed: int) -> tuple[str, dict]:
    """The ICL context for `items`: every training document when they fit in `max_tokens`, else a seeded
    random subset that keeps a document for each support fact. Documents keep their order in the training set.

    Returns (context, info) with info: n_docs, n_kept, frac_kept, n_tokens, n_required, max_tokens, format."""
    if not train_rows:
        raise ValueError("no training documents to put in context")
    texts = [r["text"] for r in train_rows]
    info = {"format": fmt, "n_docs": len(texts), "max_tokens": max_tokens}
    context = format_context(tok, texts, fmt)
    n = _n_tokens(tok, context)
    if n <= max_tokens:
        return context, {**info, "n_kept": len(texts), "frac_kept": 1.0, "n_tokens": n, "n_required": 0}
    rng = random.Random(f"icl-context:{seed}")
    required = required_documents(train_rows, items, rng)
    overhead = _n_tokens(tok, format_context(tok, [], fmt))
    cost = [c + 2 for c in map(len, tok(texts, add_special_tokens=False)["input_ids"])]  # + the separator
    kept = set(required)
    n = _n_tokens(tok, format_context(tok, [texts[i] for i in sorted(kept)], fmt))
    if n > max_tokens:
        raise ValueError(f"the {len(required)} documents holding the tested facts alone make a context of "
                         f"{n} tokens, more than the {max_tokens} allowed (icl.max_context_tokens or the "
                         f"model's window): score fewer items (icl.max_test_items) or use a model with a "
                         f"longer window")
    others = [i for i in range(len(texts)) if i not in kept]
    rng.shuffle(others)
    total = overhead + sum(cost[i] for i in kept)
    added = []
    for i in others:
        if total + cost[i] <= max_tokens:
            kept.add(i)
            added.append(i)
            total += cost[i]
    while True:  # the estimate is close; make it exact
        context = format_context(tok, [texts[i] for i in sorted(kept)], fmt)
        n = _n_tokens(tok, context)
        if n <= max_tokens or not added:
            break
        kept.discard(added.pop())
    return context, {**info, "n_kept": len(kept), "frac_kept": len(kept) / len(texts), "n_tokens": n,
                     "n_required": len(required)}


# ------------------------------------------------------------------------------------------- retrieval
def retrieve_bm25(train_rows: list[dict], items: list[dict], k: int) -> list[list[int]]:
    """Per item, the indices of the k training documents most similar to its prompt (BM25, bm25s)."""
    import bm25s

    k = min(k, len(train_rows))
    corpus = bm25s.tokenize([r["text"] for r in train_rows], stopwords="en", show_progress=False)
    retriever = bm25s.BM25()
    retriever.index(corpus, show_progress=False)
    queries = bm25s.tokenize([it["prompt"] for it in items], stopwords="en", show_progress=False)
    docs, _ = retriever.retrieve(queries, k=k, show_progress=False, n_threads=1)
    return [[int(d) for d in row] for row in docs]


def retrieve_oracle(train_rows: list[dict], items: list[dict], k: int, seed: int) -> list[list[int]]:
    """Per item, the documents stating its support facts (all of them when they fit in k, else one per fact)
    plus random other documents up to k."""
    by_fact = docs_by_fact(train_rows)
    out = []
    for it in items:
        rng = random.Random(f"icl-oracle:{seed}:{it['id']}")
        support = sorted({i for f in it.get("support", []) for i in by_fact.get(f, [])})
        if len(support) > k:
            chosen = sorted(required_documents(train_rows, [it], rng, by_fact))
            rest = [i for i in support if i not in chosen]
            rng.shuffle(rest)
            chosen += rest[:max(0, k - len(chosen))]
        else:
            chosen = list(support)
        others = [i for i in range(len(train_rows)) if i not in set(chosen)]
        rng.shuffle(others)
        chosen += others[:max(0, k - len(chosen))]
        out.append(chosen)
    return out


def cover_options(train_rows, items, picks, seed: int) -> list[list[int]]:
    """Per item, the picked documents plus, for each option none of whose distinctive words occurs in them,
    one training document (seeded) that mentions one of its words, so that the gold is not the only candidate
    present wherever the training set mentions the others."""
    texts = [r["text"] for r in train_rows]
    index = _word_index(texts)
    out = []
    for it, pick in zip(items, picks):
        rng = random.Random(f"icl-cover:{seed}:{it['id']}")
        chosen = list(pick)
        for ws in distinctive_words(it):
            if not ws or _word_present("\n".join(texts[i] for i in chosen), ws):
                continue
            cands = _mentioning(texts, index, ws)  # none is chosen already: they would mention ws
            if cands:
                chosen.append(rng.choice(cands))
        out.append(chosen)
    return out


def retrieved_contexts(tok, train_rows, items, *, mode: str, k: int, fmt: str, seed: int,
                       max_tokens: int | None = None, cover: bool = True) -> list[str]:
    """One context per item from its retrieved documents (kept in training-set order); with `cover`, plus
    documents mentioning the options absent from them (cover_options). With `max_tokens`, the lowest-ranked
    retrieved documents are dropped until the context fits (the option-covering ones and, for the oracle, the
    support ones last)."""
    if mode == "bm25":
        picks = retrieve_bm25(train_rows, items, k)
    elif mode == "oracle":
        picks = retrieve_oracle(train_rows, items, k, seed)
    else:
        raise ValueError(f"unknown retrieval mode {mode!r} (bm25 or oracle)")
    full = cover_options(train_rows, items, picks, seed) if cover else picks
    by_fact = docs_by_fact(train_rows)
    out = []
    for it, pick, docs in zip(items, picks, full):
        extra = docs[len(pick):]
        support = ({i for f in it.get("support", []) for i in by_fact.get(f, [])} if mode == "oracle"
                   else set())
        # drop order: retrieved non-support documents from the lowest rank, then covering ones, then support
        drop = [i for i in reversed(pick) if i not in support] + list(reversed(extra)) + \
            [i for i in reversed(pick) if i in support]
        kept = list(docs)
        ctx = format_context(tok, [train_rows[i]["text"] for i in sorted(kept)], fmt)
        while max_tokens is not None and _n_tokens(tok, ctx) > max_tokens and len(kept) > 1:
            kept.remove(drop.pop(0))
            ctx = format_context(tok, [train_rows[i]["text"] for i in sorted(kept)], fmt)
        out.append(ctx)
    return out


# ------------------------------------------------------------------------------------ context-size curve
def _word_index(texts: list[str]) -> dict[str, list[int]]:
    idx: dict[str, list[int]] = {}
    for i, t in enumerate(texts):
        for w in set(words(t)):
            idx.setdefault(w, []).append(i)
    return idx


def _mentioning(texts, index, ws: set[str]) -> list[int]:
    """Indices of the documents in which one of the words `ws` occurs (as _word_present decides)."""
    cands = sorted({i for w in ws for i in index.get(w, [])})
    return [i for i in cands if _word_present(texts[i], ws)]


def cluster_need(train_rows, items, rng: random.Random, *, by_fact=None, index=None) -> list[int]:
    """The documents one group of items needs: one covering document per support fact (required_documents),
    then, for each option of each item whose distinctive words occur in none of them, one random training
    document mentioning it, when one exists (as cover_options). Sorted indices."""
    texts = [r["text"] for r in train_rows]
    index = _word_index(texts) if index is None else index
    chosen = set(required_documents(train_rows, items, rng, by_fact))
    for it in items:
        for ws in distinctive_words(it):
            if not ws or any(_word_present(texts[i], ws) for i in chosen):
                continue
            cands = _mentioning(texts, index, ws)
            if cands:
                chosen.add(rng.choice(cands))
    return sorted(chosen)


def curve_contexts(tok, train_rows: list[dict], items: list[dict], n_docs: int | None, *, fmt: str,
                   max_tokens: int, seed: int, support_last: bool = False) -> tuple[list[str], dict]:
    """One context per item for a context of `n_docs` documents (None: the whole subsampled set,
    build_context).

    Items sharing a `cluster` (default: the id) share one context. Each cluster needs cluster_need's documents
    (its support and a mention of every option); clusters are packed first-fit, in a seeded order, into
    contexts of at most `n_docs` documents and `max_tokens` tokens (a cluster whose need alone exceeds
    `n_docs` gets a context of its own holding its need), then each context is filled with random other
    documents up to `n_docs` while it fits. Documents keep their training-set order; with `support_last` the
    filler comes first and the documents the context's clusters need last (nearest the question). Identical
    contexts are scored with one KV cache (lib.scoring groups items by context string).

    Returns (contexts, info): n_docs, n_contexts, n_tokens_mean, n_tokens_max, n_docs_mean, format."""
    if not train_rows:
        raise ValueError("no training documents to put in context")
    if n_docs is None:
        ctx, inf = build_context(tok, train_rows, items, fmt=fmt, max_tokens=max_tokens, seed=seed)
        return [ctx] * len(items), {"n_docs": None, "n_contexts": 1, "n_tokens_mean": inf["n_tokens"],
                                    "n_tokens_max": inf["n_tokens"], "n_docs_mean": inf["n_kept"],
                                    "format": fmt}
    if n_docs < 1:
        raise ValueError(f"a context size must be at least 1 document, got {n_docs}")
    texts = [r["text"] for r in train_rows]
    by_fact, index = docs_by_fact(train_rows), _word_index(texts)
    cost = [c + 2 for c in map(len, tok(texts, add_special_tokens=False)["input_ids"])]  # + the separator
    overhead = _n_tokens(tok, format_context(tok, [], fmt))
    clusters: dict[str, list[int]] = {}
    for j, it in enumerate(items):
        clusters.setdefault(str(it.get("cluster", it["id"])), []).append(j)
    needs = {c: cluster_need(train_rows, [items[j] for j in js], random.Random(f"icl-curve-need:{seed}:{c}"),
                             by_fact=by_fact, index=index) for c, js in clusters.items()}
    rng = random.Random(f"icl-curve:{seed}:{n_docs}")
    order = sorted(clusters)
    rng.shuffle(order)
    groups: list[tuple[set[int], list[str]]] = []  # (documents, clusters)
    for c in order:
        need = set(needs[c])
        if overhead + sum(cost[i] for i in need) > max_tokens:
            raise ValueError(f"cluster {c!r} needs {len(need)} documents, more than the {max_tokens} tokens "
                             f"allowed (icl.max_context_tokens or the model's window)")
        for docs, members in groups:
            union = docs | need
            if len(union) <= n_docs and overhead + sum(cost[i] for i in union) <= max_tokens:
                docs |= need
                members.append(c)
                break
        else:
            groups.append((need, [c]))
    contexts: list[str | None] = [None] * len(items)
    lens, sizes = [], []
    for docs, members in groups:
        kept, added = set(docs), []
        others = [i for i in range(len(texts)) if i not in kept]
        rng.shuffle(others)
        total = overhead + sum(cost[i] for i in kept)
        for i in others:
            if len(kept) >= n_docs:
                break
            if total + cost[i] <= max_tokens:
                kept.add(i)
                added.append(i)
                total += cost[i]
        while True:  # the estimate is close; make it exact, dropping filler first
            order = sorted(kept - docs) + sorted(docs) if support_last else sorted(kept)
            ctx = format_context(tok, [texts[i] for i in order], fmt)
            n = _n_tokens(tok, ctx)
            if n <= max_tokens or not added:
                break
            kept.discard(added.pop())
        for c in members:
            for j in clusters[c]:
                contexts[j] = ctx
        lens.append(n)
        sizes.append(len(kept))
    return contexts, {"n_docs": n_docs, "n_contexts": len(groups), "n_tokens_mean": sum(lens) / len(lens),
                      "n_tokens_max": max(lens), "n_docs_mean": sum(sizes) / len(sizes), "format": fmt}


def options_covered(train_rows: list[dict], items: list[dict], contexts: list[str]) -> float:
    """Share of items whose every option with a distinctive word mentioned somewhere in the training documents
    has one of those words in the item's context (word level, as option_occurrence)."""
    if not items:
        return 1.0
    index = _word_index([r["text"] for r in train_rows])
    ok = 0
    for it, ctx in zip(items, contexts):
        ok += all(_word_present(ctx, ws) for ws in distinctive_words(it)
                  if ws and any(w in index for w in ws))
    return ok / len(items)


def curve_name(n_docs: int | None) -> str:
    """The condition of a curve point: icl_n{size}, or icl for the whole set."""
    return "icl" if n_docs is None else f"icl_n{n_docs}"


def curve_size(condition: str) -> int | None:
    """icl_n16 -> 16, icl -> None; anything else is an error."""
    if condition == "icl":
        return None
    m = re.fullmatch(r"icl_n(\d+)", condition)
    if not m:
        raise ValueError(f"{condition!r} is not a curve condition (icl or icl_n<documents>)")
    return int(m.group(1))


def choose_fit(acc: dict, threshold: float) -> int | None:
    """The curve size for icl_fit from {size (None = all): learning-check accuracy}: the largest size whose
    accuracy is >= threshold (None, "all", counts as the largest), else the one with the best accuracy
    (the largest among ties)."""
    if not acc:
        raise ValueError("no curve point to choose icl_fit from")
    rank = sorted(acc, key=lambda s: math.inf if s is None else s)
    passed = [s for s in rank if acc[s] >= threshold]
    return passed[-1] if passed else max(reversed(rank), key=lambda s: acc[s])


# -------------------------------------------------------------------------------------------- fairness
@functools.lru_cache(maxsize=1 << 16)  # contexts repeat across items and conditions (a str keeps its hash)
def _occurrences(text: str, option: str) -> int:
    core = option.strip().rstrip(".!?").strip()
    if not core or core not in text:  # the substring test is a fast necessary condition
        return 0
    return len(re.findall(r"(?<!\w)" + re.escape(core) + r"(?!\w)", text))


def distinctive_words(item: dict) -> list[set[str]]:
    """Per option, its words that tell it from the other options (words not in every option of the item and
    not in the prompt): the comparative word, the quantifier, the name, the nonsense value."""
    ws = [set(words(o)) for o in item["options"]]
    shared = set.intersection(*ws) if ws else set()
    prompt = set(words(item.get("prompt", "")))
    return [w - shared - prompt for w in ws]


@functools.lru_cache(maxsize=1 << 12)
def _runs(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"\w+", text))


def _word_present(text: str, ws: set[str]) -> bool:
    """Whether one of the words `ws` (each a run of word characters, as `words` gives) occurs in `text`
    standing alone, i.e. between non-word characters: exactly when it is one of the text's maximal runs of
    word characters (one set per text, cached, instead of a regex search per word)."""
    return not _runs(text).isdisjoint(ws)


def option_occurrence(items: list[dict], context: str | list[str]) -> pd.DataFrame:
    """Per item: how often the gold and each distractor occur in the item's context (whole option strings,
    trailing punctuation ignored), whether the gold is the only option present, and the same at word level
    (an option is present when one of its distinctive_words occurs in the context). `upper_bound`: the gold
    is the only candidate present at word level, so a condition scored on this context is an upper bound
    (elimination by presence would answer it)."""
    rows = []
    for i, it in enumerate(items):
        ctx = context if isinstance(context, str) else context[i]
        counts = [_occurrences(ctx, o) for o in it["options"]]
        g = counts[it["gold"]]
        others = [c for j, c in enumerate(counts) if j != it["gold"]]
        wp = [_word_present(ctx, ws) for ws in distinctive_words(it)]
        w_others = [p for j, p in enumerate(wp) if j != it["gold"]]
        rows.append({"id": it["id"], "split": it["split"], "n_options": len(counts), "gold_count": g,
                     "distractor_count_mean": sum(others) / max(1, len(others)),
                     "gold_present": g > 0, "options_present": sum(c > 0 for c in counts),
                     "gold_only_present": g > 0 and not any(others),
                     "gold_word_present": wp[it["gold"]], "options_word_present": sum(wp),
                     "upper_bound": wp[it["gold"]] and not any(w_others)})
    return pd.DataFrame(rows)


def occurrence_summary(occ: pd.DataFrame) -> pd.DataFrame:
    """Per split: share of items whose gold occurs in context, mean options present, share where the gold is
    the only option present (a context that gives the answer away by elimination), mean counts; the same at
    word level, and `upper_bound` (share of items where the gold is the only candidate present at word level:
    the condition is an upper bound on those)."""
    if occ.empty:
        return occ
    return occ.groupby("split", sort=False).agg(
        n=("id", "size"), gold_present=("gold_present", "mean"), options_present=("options_present", "mean"),
        n_options=("n_options", "mean"), gold_only_present=("gold_only_present", "mean"),
        gold_count=("gold_count", "mean"), distractor_count=("distractor_count_mean", "mean"),
        gold_word_present=("gold_word_present", "mean"),
        options_word_present=("options_word_present", "mean"),
        upper_bound=("upper_bound", "mean")).reset_index()


# ---------------------------------------------------------------------------------------------- stage
def context_budget(max_tokens: int, window: int, tok, items: list[dict], dataset: str) -> int:
    """Tokens an ICL context may take: icl.max_context_tokens, or less where the model's `window` must also
    hold the longest prompt + option (then with a warning: the params asked for more than the model holds)."""
    longest = max(_n_tokens(tok, it["prompt"] + " " + o) for it in items for o in it["options"])
    budget = min(max_tokens, window - longest - 1)
    if budget < max_tokens:
        warnings.warn(f"{dataset}: icl.max_context_tokens={max_tokens} does not fit the model's "
                      f"{window}-token window with the longest item; contexts use {budget} tokens")
    return budget


def select_items(items: list[dict], cap: int | None, seed: int, dataset: str) -> list[dict]:
    """At most `cap` items per split (a seeded random subset, in file order); every item when cap is None."""
    if cap is None:
        return list(items)
    by_split: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        by_split.setdefault(it["split"], []).append(i)
    keep = set()
    for split, idx in by_split.items():
        rng = random.Random(f"icl-items:{seed}:{dataset}:{split}")
        keep.update(idx if len(idx) <= cap else rng.sample(idx, cap))
    return [it for i, it in enumerate(items) if i in keep]


def info_path(params, dataset: str):
    return runs.run_dir(params) / "icl" / f"{dataset}.json"


def default_conditions(cfg) -> list[str]:
    """pretrained, icl, icl_n{size} for every curve size, icl_fit, then icl_<mode> for every retrieval
    mode."""
    return (["pretrained", "icl"] + [curve_name(s) for s in cfg.curve_sizes] + ["icl_fit"]
            + [f"icl_{m}" for m in cfg.retrieval_modes])


def _accuracy(scores: list[dict], split: str) -> float | None:
    hits = [s["pred"] in golds(s) for s in scores if s["split"] == split]
    return sum(hits) / len(hits) if hits else None


def run_icl(params, dataset: str, *, model=None, tok=None, conditions=None,
            progress: bool = True) -> pd.DataFrame:
    """Score the pretrained control, ICL, the context-size curve (icl_n{size}, on at most `icl.curve_items`
    items per split), icl_fit (every item, at the curve size chosen on the learning-check split: choose_fit)
    and the retrieval conditions on every split of `dataset` (cached per condition through scoring.evaluate),
    and return their results rows. Context lengths, the fraction of documents kept, the curve's contexts, the
    icl_fit choice and the option-occurrence tables go to runs/<p>/icl/<dataset>.json."""
    from . import datasets
    from .models import context_window, load_model

    train, test, manifest = datasets.load(params, dataset)
    items = select_items(test, params.icl.max_test_items, params.seed, dataset)
    curve_items = select_items(items, params.icl.curve_items, params.seed, dataset)
    if model is None:
        model, tok = load_model(params.model)
    cfg = params.icl
    wanted = conditions or default_conditions(cfg)
    budget = context_budget(cfg.max_context_tokens, context_window(model), tok, items, dataset)
    info, frames = {"dataset": dataset, "n_items": len(items), "n_test": len(test),
                    "n_curve_items": len(curve_items)}, []
    key = {"data": manifest.get("sha256")}
    uncond = {}  # option -> log p(option | nothing): one model here, so every condition shares them

    def score(cond, its, ctx, same_as=None):
        if cond != "pretrained":
            info.setdefault("occurrence", {})[cond] = occurrence_summary(
                option_occurrence(its, ctx)).to_dict(orient="records")
        return scoring.evaluate(params, dataset, cond, model, tok, its, ctx, seed=params.seed, key=key,
                                progress=progress, same_as=same_as, uncond=uncond)

    def curve(size, its):
        ctx, inf = curve_contexts(tok, train, its, size, fmt=cfg.format, max_tokens=budget, seed=params.seed,
                                  support_last=cfg.support_last)
        return ctx, {**inf, "options_covered": options_covered(train, its, ctx), "n_items": len(its)}

    built = {}  # condition -> its context, so icl_fit's choice does not build the curve's contexts again
    for cond in wanted:
        if cond == "pretrained":
            frames.append(score(cond, items, ""))
        elif cond == "icl":
            ctx, info["icl"] = build_context(tok, train, items, fmt=cfg.format, max_tokens=budget,
                                             seed=params.seed)
            built[cond] = ctx
            frames.append(score(cond, items, ctx))
        elif cond.startswith("icl_n"):
            ctx, info.setdefault("curve", {})[cond] = curve(curve_size(cond), curve_items)
            built[cond] = ctx
            frames.append(score(cond, curve_items, ctx))
        elif cond == "icl_fit":
            split = datasets.learning_check_split(dataset, manifest, {it["split"] for it in items})
            split = split if any(it["split"] == split for it in curve_items) else None
            sizes = list(cfg.curve_sizes) + [None]
            if split is None:  # no curve item of the learning-check split: the smallest context
                chosen, acc = min(cfg.curve_sizes, default=None), {}
            else:
                acc = {}
                ids = {it["id"] for it in curve_items}
                for size in sizes:  # each curve point (and icl, the whole set): scored above or here, cached
                    c = curve_name(size)
                    its = items if size is None else curve_items
                    if c not in built:
                        built[c] = (build_context(tok, train, items, fmt=cfg.format, max_tokens=budget,
                                                  seed=params.seed) if size is None else curve(size, its))[0]
                    scoring.evaluate(params, dataset, c, model, tok, its, built[c], seed=params.seed, key=key,
                                     progress=progress, uncond=uncond)
                    scored = [s for s in scoring.read_scores(params, dataset, c) if s["id"] in ids]
                    acc[size] = _accuracy(scored, split)
                chosen = choose_fit(acc, params.analysis.learned_threshold)
            ctx, inf = curve(chosen, items)
            ctx = ctx[0] if chosen is None else ctx  # the whole set: icl's one context string
            info["icl_fit"] = {"size": chosen, "condition": curve_name(chosen), "split": split,
                               "threshold": params.analysis.learned_threshold,
                               "acc": {curve_name(s): a for s, a in acc.items()},
                               "rule": ("largest context whose learning-check accuracy >= threshold, "
                                        "else the best" if split
                                        else "no learning-check split: the smallest context"), **inf}
            # icl_fit's contexts are its curve point's when the curve scores every item (and the whole set's
            # are icl's): those scores are reused
            frames.append(score(cond, items, ctx, same_as=curve_name(chosen)))
        elif cond.startswith("icl_"):
            ctx = retrieved_contexts(tok, train, items, mode=cond[4:], k=cfg.retrieval_k, fmt=cfg.format,
                                     seed=params.seed, max_tokens=budget)
            lens = [_n_tokens(tok, c) for c in ctx]
            info[cond] = {"format": cfg.format, "k": cfg.retrieval_k, "n_tokens_mean": sum(lens) / len(lens),
                          "n_tokens_max": max(lens)}
            frames.append(score(cond, items, ctx))
        else:
            raise ValueError(f"unknown ICL condition {cond!r}")
    path = info_path(params, dataset)
    if conditions and path.is_file():  # a partial run keeps what other conditions recorded
        old = runs.read_json(path)
        info = {**old, **info, "occurrence": {**old.get("occurrence", {}), **info.get("occurrence", {})},
                "curve": {**old.get("curve", {}), **info.get("curve", {})}}
    runs.write_json(path, info)
    return pd.concat(frames, ignore_index=True)


def read_info(params, dataset: str) -> dict:
    return runs.read_json(info_path(params, dataset))


def by_split(results: pd.DataFrame) -> pd.DataFrame:
    """Results rows aggregated over subsets (weighted by n): one row per dataset x split x condition."""
    metrics = [c for c in ("acc", "acc_norm", "acc_mutual_info", "chance", "acc_any_valid") if c in results]
    df = results.copy()
    for m in metrics:
        df[m] = df[m] * df["n"]
    g = df.groupby(["dataset", "split", "condition"], sort=False)
    out = g[metrics].sum(min_count=1).div(g["n"].sum(), axis=0)
    out.insert(0, "n", g["n"].sum())
    return out.reset_index()
