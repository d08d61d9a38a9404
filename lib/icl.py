"""In-context learning (paper section 4): the training documents in the prompt, then the test item.

The conditions (run_icl; notebook 02 describes them): pretrained (the prompt alone), icl (build_context),
the context-size curve icl_n{size} (curve_contexts), icl_fit (choose_fit) and the optional retrieval
conditions icl_bm25 and icl_oracle (retrieved_contexts; the oracle as in the authors' follow-up 2509.16189).
Fairness: a context holding only the tested facts lets a model pick "the one candidate it saw";
`option_occurrence` counts how often each option occurs in the context an item is scored with.
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
    fact not already covered (facts in sorted order). Raises ValueError for a fact no document states."""
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


def _costs(tok, texts: list[str], fmt: str) -> tuple[list[int], int]:
    """(estimated tokens of each document in a context, with its separator; tokens of the empty context)."""
    cost = [c + 2 for c in map(len, tok(texts, add_special_tokens=False)["input_ids"])]
    return cost, _n_tokens(tok, format_context(tok, [], fmt))


def _fill(tok, texts, costs, need: set[int], rng, *, fmt, max_tokens, n_docs=None, need_last=False):
    """(context, its tokens, documents kept): `need` plus other documents in a random order (rng) while
    their estimated `costs` fit `max_tokens` (at most `n_docs` in all), the last added dropped until the exact
    context fits; in training-set order (`need_last`: `need` after the others)."""
    cost, overhead = costs
    kept, added = set(need), []
    others = [i for i in range(len(texts)) if i not in kept]
    rng.shuffle(others)
    total = overhead + sum(cost[i] for i in kept)
    for i in others:
        if n_docs is not None and len(kept) >= n_docs:
            break
        if total + cost[i] <= max_tokens:
            kept.add(i)
            added.append(i)
            total += cost[i]
    while True:  # the estimate is close; make it exact
        order = sorted(kept - need) + sorted(need) if need_last else sorted(kept)
        context = format_context(tok, [texts[i] for i in order], fmt)
        n = _n_tokens(tok, context)
        if n <= max_tokens or not added:
            return context, n, kept
        kept.discard(added.pop())


def build_context(tok, train_rows: list[dict], items: list[dict], *, fmt: str, max_tokens: int,
                  seed: int) -> tuple[str, dict]:
    """(context, info: n_docs, n_kept, frac_kept, n_tokens, n_required, max_tokens, format) for `items`:
    every training document when they fit in `max_tokens`, else a seeded random subset keeping a document
    per support fact (required_documents), in training-set order. Raises ValueError when those alone do not
    fit."""
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
    n = _n_tokens(tok, format_context(tok, [texts[i] for i in sorted(required)], fmt))
    if n > max_tokens:
        raise ValueError(f"the {len(required)} documents holding the tested facts alone make a context of "
                         f"{n} tokens, more than the {max_tokens} allowed (icl.max_context_tokens or the "
                         f"model's window): score fewer items (icl.max_test_items) or use a model with a "
                         f"longer window")
    context, n, kept = _fill(tok, texts, _costs(tok, texts, fmt), required, rng, fmt=fmt,
                             max_tokens=max_tokens)
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
        chosen = sorted(required_documents(train_rows, [it], rng, by_fact)) if len(support) > k else support
        rest = [i for i in support if i not in chosen]  # empty when all fit: shuffling it draws nothing
        rng.shuffle(rest)
        chosen += rest[:max(0, k - len(chosen))]
        others = [i for i in range(len(train_rows)) if i not in set(chosen)]
        rng.shuffle(others)
        chosen += others[:max(0, k - len(chosen))]
        out.append(chosen)
    return out


def retrieved_contexts(tok, train_rows, items, *, mode: str, k: int, fmt: str, seed: int,
                       max_tokens: int | None = None) -> list[str]:
    """One context per item: its k retrieved documents (`mode` bm25 or oracle) and a seeded mention of each
    option absent from them (_mention_options), in training-set order. With `max_tokens`, documents are
    dropped until it fits: retrieved ones from the lowest rank, then mentions, the oracle's support last."""
    if mode == "bm25":
        picks = retrieve_bm25(train_rows, items, k)
    elif mode == "oracle":
        picks = retrieve_oracle(train_rows, items, k, seed)
    else:
        raise ValueError(f"unknown retrieval mode {mode!r} (bm25 or oracle)")
    texts = [r["text"] for r in train_rows]
    by_fact, index = docs_by_fact(train_rows), _word_index(texts)
    out = []
    for it, pick in zip(items, picks):
        docs = _mention_options(texts, index, [it], list(pick), random.Random(f"icl-cover:{seed}:{it['id']}"))
        extra = docs[len(pick):]
        support = ({i for f in it.get("support", []) for i in by_fact.get(f, [])} if mode == "oracle"
                   else set())
        drop = [i for i in reversed(pick) if i not in support] + list(reversed(extra)) + \
            [i for i in reversed(pick) if i in support]
        kept = list(docs)
        ctx = format_context(tok, [texts[i] for i in sorted(kept)], fmt)
        while max_tokens is not None and _n_tokens(tok, ctx) > max_tokens and len(kept) > 1:
            kept.remove(drop.pop(0))
            ctx = format_context(tok, [texts[i] for i in sorted(kept)], fmt)
        out.append(ctx)
    return out


# ------------------------------------------------------------------------------------ context-size curve
def _word_index(texts: list[str]) -> dict[str, list[int]]:
    idx: dict[str, list[int]] = {}
    for i, t in enumerate(texts):
        for w in set(words(t)):
            idx.setdefault(w, []).append(i)
    return idx


def _mention_options(texts, index, items, chosen: list[int], rng: random.Random) -> list[int]:
    """`chosen` with, for each option of `items` none of whose distinctive words occurs in the chosen
    documents, one random document (rng) that mentions one of them appended, when one exists."""
    for it in items:
        for ws in distinctive_words(it):
            if not ws or any(_word_present(texts[i], ws) for i in chosen):
                continue
            cands = sorted({i for w in ws for i in index.get(w, [])})
            cands = [i for i in cands if _word_present(texts[i], ws)]
            if cands:
                chosen.append(rng.choice(cands))
    return chosen


def curve_contexts(tok, train_rows: list[dict], items: list[dict], n_docs: int | None, *, fmt: str,
                   max_tokens: int, seed: int, support_last: bool = False) -> tuple[list[str], dict]:
    """(one context per item, info: n_docs, n_contexts, n_tokens_mean, n_tokens_max, n_docs_mean, format) for
    contexts of `n_docs` documents (None: build_context's). Items sharing a `cluster` (default: the id) share
    a context. A cluster needs a document per support fact and a mention of every option (_mention_options);
    clusters are packed first-fit, in a seeded order, into contexts of at most `n_docs` documents and
    `max_tokens` tokens (a need above `n_docs` gets a context of its own), each then filled with random
    documents up to `n_docs` (_fill; `support_last`: the needed documents last, nearest the question).
    Raises ValueError when a cluster's need alone exceeds `max_tokens`."""
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
    costs = _costs(tok, texts, fmt)
    cost, overhead = costs
    clusters: dict[str, list[int]] = {}
    for j, it in enumerate(items):
        clusters.setdefault(str(it.get("cluster", it["id"])), []).append(j)
    needs = {}
    for c, js in clusters.items():
        its, rng = [items[j] for j in js], random.Random(f"icl-curve-need:{seed}:{c}")
        required = required_documents(train_rows, its, rng, by_fact)
        needs[c] = set(_mention_options(texts, index, its, list(required), rng))
    rng = random.Random(f"icl-curve:{seed}:{n_docs}")
    order = sorted(clusters)
    rng.shuffle(order)
    groups: list[tuple[set[int], list[str]]] = []  # (documents, clusters)
    for c in order:
        need = needs[c]
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
            groups.append((set(need), [c]))
    contexts: list[str | None] = [None] * len(items)
    lens, sizes = [], []
    for docs, members in groups:
        ctx, n, kept = _fill(tok, texts, costs, docs, rng, fmt=fmt, max_tokens=max_tokens, n_docs=n_docs,
                             need_last=support_last)
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
    """Whether one of the words `ws` (runs of word characters, as `words` gives) occurs in `text` between
    non-word characters, i.e. is one of its maximal runs (one cached set per text, not a regex per word)."""
    return not _runs(text).isdisjoint(ws)


def option_occurrence(items: list[dict], context: str | list[str]) -> pd.DataFrame:
    """Per item: how often the gold and each distractor occur in the item's context (whole option strings,
    trailing punctuation ignored), whether the gold is the only option present (a context that gives the
    answer away by elimination), and the same at word level (an option is present when one of its
    distinctive_words occurs). `upper_bound`: the gold is the only candidate present at word level, so a
    condition scored on this context is an upper bound."""
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
    """Per split of option_occurrence's rows: n and the mean of each column."""
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
    """pretrained, icl, icl_n{size} per curve size, icl_fit, then icl_<mode> per retrieval mode."""
    return (["pretrained", "icl"] + [curve_name(s) for s in cfg.curve_sizes] + ["icl_fit"]
            + [f"icl_{m}" for m in cfg.retrieval_modes])


def run_icl(params, dataset: str, *, model=None, tok=None, conditions=None, progress: bool = True) -> None:
    """Score `conditions` (default_conditions) on at most `icl.max_test_items` test items per split (the curve
    on at most `icl.curve_items` of them; icl_fit on all, at the size choose_fit picks on the learning-check
    split), each through scoring.evaluate. Context sizes, the icl_fit choice and the option-occurrence tables
    go to runs/<p>/icl/<dataset>.json (a partial run keeps what other conditions recorded)."""
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
    info = {"dataset": dataset, "n_items": len(items), "n_test": len(test), "n_curve_items": len(curve_items)}
    key = {"data": manifest.get("sha256")}
    uncond = {}  # option -> log p(option | nothing): one model here, so every condition shares them

    def score(cond, its, ctx, same_as=None):
        if cond != "pretrained":
            info.setdefault("occurrence", {})[cond] = occurrence_summary(
                option_occurrence(its, ctx)).to_dict(orient="records")
        scoring.evaluate(params, dataset, cond, model, tok, its, ctx, seed=params.seed, key=key,
                         progress=progress, same_as=same_as, uncond=uncond)

    def curve(size, its):
        ctx, inf = curve_contexts(tok, train, its, size, fmt=cfg.format, max_tokens=budget, seed=params.seed,
                                  support_last=cfg.support_last)
        return ctx, {**inf, "options_covered": options_covered(train, its, ctx), "n_items": len(its)}

    def whole():
        return build_context(tok, train, items, fmt=cfg.format, max_tokens=budget, seed=params.seed)

    built = {}  # condition -> its context, so icl_fit's choice does not build the curve's contexts again
    for cond in wanted:
        if cond == "pretrained":
            score(cond, items, "")
        elif cond == "icl":
            built[cond], info["icl"] = whole()
            score(cond, items, built[cond])
        elif cond.startswith("icl_n"):
            built[cond], info.setdefault("curve", {})[cond] = curve(curve_size(cond), curve_items)
            score(cond, curve_items, built[cond])
        elif cond == "icl_fit":
            split = datasets.learning_check_split(dataset, manifest, {it["split"] for it in items})
            split = split if any(it["split"] == split for it in curve_items) else None
            acc = {}
            if split is None:  # no curve item of the learning-check split: the smallest context
                chosen = min(cfg.curve_sizes, default=None)
            else:
                ids = {it["id"] for it in curve_items}
                for size in list(cfg.curve_sizes) + [None]:  # each curve point and icl: scored or cached
                    c = curve_name(size)
                    its = items if size is None else curve_items
                    if c not in built:
                        built[c] = (whole() if size is None else curve(size, its))[0]
                    hits = [s["pred"] in golds(s) for s in scoring.evaluate(
                        params, dataset, c, model, tok, its, built[c], seed=params.seed, key=key,
                        progress=progress, uncond=uncond) if s["id"] in ids and s["split"] == split]
                    acc[size] = sum(hits) / len(hits)
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
            score(cond, items, ctx, same_as=curve_name(chosen))
        elif cond.startswith("icl_"):
            ctx = retrieved_contexts(tok, train, items, mode=cond[4:], k=cfg.retrieval_k, fmt=cfg.format,
                                     seed=params.seed, max_tokens=budget)
            lens = [_n_tokens(tok, c) for c in ctx]
            info[cond] = {"format": cfg.format, "k": cfg.retrieval_k, "n_tokens_mean": sum(lens) / len(lens),
                          "n_tokens_max": max(lens)}
            score(cond, items, ctx)
        else:
            raise ValueError(f"unknown ICL condition {cond!r}")
    path = info_path(params, dataset)
    if conditions and path.is_file():  # a partial run keeps what other conditions recorded
        old = runs.read_json(path)
        info = {**old, **info, "occurrence": {**old.get("occurrence", {}), **info.get("occurrence", {})},
                "curve": {**old.get("curve", {}), **info.get("curve", {})}}
    runs.write_json(path, info)


def read_info(params, dataset: str) -> dict:
    return runs.read_json(info_path(params, dataset))
