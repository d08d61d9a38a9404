"""The semantic structure benchmark (PAPER.md 2.4): the real-world hierarchy of `lib/semantic_tree.yaml`
(Rogers & McClelland style; notebook 01 shows it) rewritten in nonsense words (`lib.words.nonsense_words`).

A run takes `n_categories` categories as a connected subtree (seeded; one branch at least three levels deep,
so every inference type exists) and holds out `holdout_fraction` of its leaves (at least one, leaves with a
grandparent first): a holdout's only trained fact is its parent. Properties inherit without exceptions. Rows
and items keep a real-word twin (`text_real`, `prompt_real`, `options_real`); models see only the nonsense.

Training documents: `n_documents` articles about a focal category and its neighbours in one of `STYLES`, of
`min_sentences`..`max_sentences` lines, each a statement of one fact that names its subject (so sentence
splitting never loses it). Facts are stated only about their owner and only forward: inherited properties
and reversed forms never are, which is what makes them tests. Every trained fact is stated at least once
(ValueError otherwise) and twice where the budget allows.

Test splits (`subset`: the inference type, for standard errors over subsets as in the paper):
  rephrase   category | property   a trained fact in a phrasing never used in training, same direction
  reversal   category | property   `gruds are a type of abmes` -> `abmes include gruds`
  syllogism  category | property   an ancestor or an inherited property, never stated for the category
  holdout    category | property | reversal   every inference about a holdout category
Distractors bear the same relation to a different entity and are false in the world (inheritance included);
an item has up to `n_options` options and `support` lists the trained facts the inference rests on.
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import random
from collections import Counter
from pathlib import Path

import yaml

TREE_PATH = Path(__file__).with_name("semantic_tree.yaml")
# the version names the tree file's contents too, so that editing the tree rebuilds the cached datasets
GENERATOR_VERSION = "semantic-2+tree-" + hashlib.sha256(TREE_PATH.read_bytes()).hexdigest()[:12]
RELATIONS = ("is", "has", "can", "eats", "lives_in", "made_of", "used_for", "found_in")

# Per relation: training phrasings (forward), a question for the Q&A style, a label for table-like lines,
# test-only rephrasings (forward) and test-only reversed forms. {X} is the subject, {V} the value; every
# phrasing ends in the slot that a test asks for, so a prompt is the phrasing cut before its last slot.
TEMPLATES = {
    "isa": dict(
        train=["{X} are a type of {V}.", "{X} are a kind of {V}.", "{X} belong to the group of {V}."],
        question="What are {X} a type of?", label="type of",
        rephrase=["{X} fall under the category of {V}", "{X} are classified as {V}"],
        reverse=["{V} include {X}", "Examples of {V} are {X}"]),
    "is": dict(
        train=["{X} are {V}.", "{X} are known to be {V}.", "{X} are always {V}."],
        question="What are {X} like?", label="is",
        rephrase=["It is true that {X} are {V}", "One thing about {X} is that they are {V}"],
        reverse=["Things that are {V} include {X}", "Among the things that are {V} are {X}"]),
    "has": dict(
        train=["{X} have {V}.", "{X} all have {V}.", "Every one of the {X} has {V}."],
        question="What do {X} have?", label="has",
        rephrase=["It is true that {X} have {V}", "{X} come with {V}"],
        reverse=["Things that have {V} include {X}", "Among the things with {V} are {X}"]),
    "can": dict(
        train=["{X} can {V}.", "{X} are able to {V}.", "{X} know how to {V}."],
        question="What can {X} do?", label="can",
        rephrase=["It is true that {X} can {V}", "{X} have the ability to {V}"],
        reverse=["Things that can {V} include {X}", "Among the things able to {V} are {X}"]),
    "eats": dict(
        train=["{X} eat {V}.", "{X} feed on {V}.", "The diet of {X} consists of {V}."],
        question="What do {X} eat?", label="eats",
        rephrase=["It is true that {X} eat {V}", "The food of {X} is {V}"],
        reverse=["Creatures that eat {V} include {X}", "Among the creatures that feed on {V} are {X}"]),
    "lives_in": dict(
        train=["{X} live in {V}.", "{X} make their home in {V}.", "The habitat of {X} is {V}."],
        question="Where do {X} live?", label="lives in",
        rephrase=["It is true that {X} live in {V}", "{X} are at home in {V}"],
        reverse=["Creatures that live in {V} include {X}", "Among the creatures living in {V} are {X}"]),
    "made_of": dict(
        train=["{X} are made of {V}.", "{X} are built from {V}.", "The material of {X} is {V}."],
        question="What are {X} made of?", label="made of",
        rephrase=["It is true that {X} are made of {V}", "{X} consist of {V}"],
        reverse=["Things made of {V} include {X}", "Among the things built from {V} are {X}"]),
    "used_for": dict(
        train=["{X} are used for {V}.", "People use {X} for {V}.", "The purpose of {X} is {V}."],
        question="What are {X} used for?", label="used for",
        rephrase=["It is true that {X} are used for {V}", "{X} are meant for {V}"],
        reverse=["Things used for {V} include {X}", "Among the things people use for {V} are {X}"]),
    "found_in": dict(
        train=["{X} are found in {V}.", "You can find {X} in {V}.", "{X} are usually kept in {V}."],
        question="Where are {X} found?", label="found in",
        rephrase=["It is true that {X} are found in {V}", "{X} can be seen in {V}"],
        reverse=["Things found in {V} include {X}", "Among the things kept in {V} are {X}"]),
}
STYLES = ("prose", "bullets", "table", "qa")
SUBSETS = {"rephrase": ("category", "property"), "reversal": ("category", "property"),
           "syllogism": ("category", "property"), "holdout": ("category", "property", "reversal")}


# ------------------------------------------------------------------------------------------------ the tree
@functools.lru_cache(maxsize=4)
def _load_tree(path: str = str(TREE_PATH)) -> dict:
    """The whole tree: {"parent", "children", "plural", "props": {cat: [(rel, value), ...]}, "order"};
    ValueError naming the first malformed category."""
    tree = {"parent": {}, "children": {}, "plural": {}, "props": {}, "order": []}
    parent, children, plural, props, order = tree.values()

    def walk(name, node, par):
        if not isinstance(node, dict) or "plural" not in node:
            raise ValueError(f"{path}: category {name!r} needs a mapping with a 'plural'")
        if name in parent:
            raise ValueError(f"{path}: category {name!r} appears twice")
        unknown = set(node) - {"plural", "children", *RELATIONS}
        if unknown:
            raise ValueError(f"{path}: category {name!r}: unknown keys {sorted(unknown)}")
        parent[name], plural[name], children[name] = par, node["plural"], list(node.get("children") or {})
        props[name] = [(rel, v) for rel in RELATIONS for v in node.get(rel, [])]
        if not 1 <= len(props[name]) <= 6:
            raise ValueError(f"{path}: category {name!r} has {len(props[name])} properties (1-6 allowed)")
        order.append(name)
        for c in children[name]:
            walk(c, node["children"][c], name)

    for name, node in yaml.safe_load(Path(path).read_text()).items():
        walk(name, node, None)
    names = {plural[c] for c in order} | set(order)
    for c in order:
        for rel, v in props[c]:
            if v in names:
                raise ValueError(f"{path}: value {v!r} of {c!r} is also a category name")
            # no property repeated below its owner (inheritance has no exceptions)
            a = next((a for a in ancestors(tree, c) if (rel, v) in props[a]), None)
            if a is not None:
                raise ValueError(f"{path}: {c!r} repeats {rel} {v!r} of its ancestor {a!r}")
    return tree


def ancestors(world, c) -> list[str]:
    """Parent, grandparent, ... of `c` in a world (or the tree)."""
    out, a = [], world["parent"][c]
    while a is not None:
        out.append(a)
        a = world["parent"][a]
    return out


def _choose(tree, n: int, rng: random.Random) -> list[str]:
    """`n` categories closed under parent; one random path to a leaf of depth >= 3 first."""
    order = tree["order"]
    if n > len(order):
        raise ValueError(f"semantic_structure: n_categories={n} but the tree has only {len(order)} "
                         "categories")
    if n < 6:
        raise ValueError(f"semantic_structure: n_categories={n} is too small to hold every inference type "
                         "(>= 6)")
    leaf = rng.choice([c for c in order if not tree["children"][c] and len(ancestors(tree, c)) >= 2])
    chosen = {leaf, *ancestors(tree, leaf)}
    while len(chosen) < n:
        frontier = [c for c in order
                    if c not in chosen and (tree["parent"][c] is None or tree["parent"][c] in chosen)]
        chosen.add(rng.choice(frontier))
    return [c for c in order if c in chosen]


def make_world(cfg, seed: int) -> dict:
    """The categories of one run, its holdouts, its facts and its lexicon (real phrase -> nonsense word).

    facts: {fact_id: (subject, relation, value)}, relation "isa" (value = parent) or a property relation.
    """
    from .words import nonsense_words

    tree = _load_tree()
    rng = random.Random(f"semantic-world:{seed}")
    cats = _choose(tree, cfg.n_categories, rng)
    parent = {c: tree["parent"][c] for c in cats}
    children = {c: [k for k in tree["children"][c] if k in parent] for c in cats}
    leaves = [c for c in cats if not children[c]]
    n_hold = max(1, round(cfg.holdout_fraction * len(leaves))) if cfg.holdout_fraction > 0 else 0
    deep_leaves = [c for c in leaves if parent[c] is not None and parent[parent[c]] is not None]
    holdouts = rng.sample(deep_leaves, min(n_hold, len(deep_leaves)))
    hold = set(holdouts + rng.sample([c for c in leaves if c not in deep_leaves], n_hold - len(holdouts)))
    facts = {}
    for c in cats:
        if parent[c] is not None:
            facts[f"isa:{c}"] = (c, "isa", parent[c])
        for rel, v in tree["props"][c]:
            facts[f"{rel}:{c}:{v}"] = (c, rel, v)
    trained = [f for f, (s, rel, _) in facts.items() if s not in hold or rel == "isa"]
    values = sorted({v for (_, rel, v) in facts.values() if rel != "isa"})
    concepts = [tree["plural"][c] for c in cats] + values
    words = nonsense_words(len(concepts), seed)
    rng.shuffle(words)
    return {"categories": cats, "parent": parent, "children": children,
            "holdouts": [c for c in cats if c in hold],
            "plural": {c: tree["plural"][c] for c in cats}, "props": {c: tree["props"][c] for c in cats},
            "facts": facts, "trained": trained, "lexicon": dict(zip(concepts, words)), "seed": seed}


def holds(world, subject: str, rel: str, value: str) -> bool:
    """Truth in the world, inheritance included (isa: value is an ancestor; property: owned or inherited)."""
    if rel == "isa":
        return value in ancestors(world, subject)
    return any((rel, value) in world["props"][a] for a in [subject, *ancestors(world, subject)])


# ----------------------------------------------------------------------------------------------- rendering
def _fill(template: str, x: str, v: str) -> str:
    s = template.replace("{X}", x).replace("{V}", v)
    return s[0].upper() + s[1:]


def _name(world, kind: str, key: str, real: bool) -> str:
    """A category ("cat") or a property value ("val") as written: its real phrase or its nonsense word."""
    phrase = world["plural"][key] if kind == "cat" else key
    return phrase if real else world["lexicon"][phrase]


def _xv(world, subj, rel, val, real):
    """A fact's subject and value as written."""
    return _name(world, "cat", subj, real), _name(world, "cat" if rel == "isa" else "val", val, real)


def _render(world, fact, style, k, real):
    """One line stating `fact` in `style`, phrasing number `k`."""
    rel = world["facts"][fact][1]
    x, v = _xv(world, *world["facts"][fact], real)
    t = TEMPLATES[rel]
    sentence = _fill(t["train"][k % len(t["train"])], x, v)
    if style == "prose":
        return sentence
    if style == "bullets":
        return "- " + sentence
    if style == "table":
        return f"{x} | {t['label']} | {v}"
    return f"Q: {_fill(t['question'], x, v)} A: {sentence}"


def _neighbourhood(world, focal) -> list[str]:
    """Categories an article about `focal` talks about: itself, parent, siblings, children (then farther)."""
    parent, children = world["parent"], world["children"]
    near = [focal, *([parent[focal], *children[parent[focal]]] if parent[focal] else []), *children[focal]]
    far = [x for c in near for x in ([parent[c]] if parent[c] else []) + children[c]]
    return list(dict.fromkeys(near + far))


def _documents(world, cfg, rng):
    facts, trained, hold = world["facts"], world["trained"], set(world["holdouts"])
    by_subject = {c: [f for f in trained if facts[f][0] == c] for c in world["categories"]}
    count = {f: 0 for f in trained}
    focal_pool = [c for c in world["categories"] if c not in hold]
    rows = []
    for i in range(cfg.n_documents):
        uncovered = [f for f in trained if count[f] == 0]
        if uncovered:  # aim the article at a fact nobody has stated yet
            subj = facts[rng.choice(uncovered)][0]
            focal = world["parent"][subj] if subj in hold else subj
        else:
            focal = rng.choice(focal_pool)
        n = rng.randint(cfg.min_sentences, cfg.max_sentences)
        cands = [f for c in _neighbourhood(world, focal) for f in by_subject[c]]
        own = [f for f in cands if facts[f][0] == focal]
        rng.shuffle(cands)
        far = []
        if len(cands) < n:  # a small neighbourhood: fill up with facts about other categories
            far = [f for f in trained if f not in set(cands)]
            rng.shuffle(far)
            cands += far
        far = set(far)
        # priority: the neighbourhood first; stated fewer than twice so far; the focal category's own
        cands.sort(key=lambda f: (f in far, min(count[f], 2), f not in own))
        # order like an article: the focal category first (its parent first of all), then the others
        lines = sorted(cands[:n], key=lambda f: (facts[f][0] != focal, facts[f][1] != "isa"))
        style = STYLES[rng.randrange(len(STYLES))]
        ks = [rng.randrange(3) for _ in lines]
        sents, sents_real = ([_render(world, f, style, k, real) for f, k in zip(lines, ks)]
                             for real in (False, True))
        sep = " " if style == "prose" else "\n"
        for f in lines:
            count[f] += 1
        rows.append({"id": f"semantic-doc-{i:05d}", "text": sep.join(sents), "sentences": sents,
                     "facts": lines, "text_real": sep.join(sents_real), "style": style, "focal": focal})
    missing = [f for f, n in count.items() if n == 0]
    if missing:
        raise ValueError(f"semantic_structure: {len(missing)} of {len(count)} trained facts are never stated "
                         f"in {cfg.n_documents} documents of <= {cfg.max_sentences} sentences "
                         f"(e.g. {missing[0]}); raise n_documents or max_sentences")
    return rows


# --------------------------------------------------------------------------------------------- test items
def _prompt(template, x, v):
    """The template filled and cut before its last slot (the answer); never ends with a space."""
    t = template.rstrip(".")
    last = "{X}" if t.endswith("{X}") else "{V}"
    assert t.endswith(last), template
    head = t[: -len(last)].rstrip()
    return _fill(head, x, v) if head else head


def _items(world, cfg, rng):
    facts, hold, cats, trained = world["facts"], set(world["holdouts"]), world["categories"], world["trained"]
    depth = lambda c: len(ancestors(world, c))
    root = lambda c: ([c, *ancestors(world, c)])[-1]
    # relation -> values stated in training (the pool for property distractors)
    stated_props = {rel: {facts[f][2] for f in trained if facts[f][1] == rel} for rel in RELATIONS}
    parents = sorted({world["parent"][c] for c in cats if world["parent"][c]}, key=cats.index)
    has_parent = [c for c in cats if world["parent"][c]]
    bearers = {rel: [c for c in cats if c not in hold and any(r == rel for r, _ in world["props"][c])]
               for rel in RELATIONS}
    k = cfg.n_options - 1
    out = {s: {sub: [] for sub in subs} for s, subs in SUBSETS.items()}
    owners = {rv: [c for c in cats if rv in world["props"][c]] for o in cats for rv in world["props"][o]}

    def distance(a, b):
        pa, pb = [a, *ancestors(world, a)], [b, *ancestors(world, b)]
        common = next((i for i, x in enumerate(pa) if x in pb), None)
        return len(pa) + len(pb) if common is None else common + pb.index(pa[common])

    def add(split, subset, template, x_key, v_key, rel, answer_is_subject, support):
        """One item: the answer is the subject (reversal) or the value (forward)."""
        prompt = _prompt(template, *_xv(world, x_key, rel, v_key, False))
        # an option must never be shown in the prompt
        shown = lambda kind, key: _name(world, kind, key, False) in prompt
        if answer_is_subject:
            gold, kind = x_key, "cat"
            pool = [c for c in (has_parent if rel == "isa" else bearers[rel])
                    if c != gold and c != v_key and not holds(world, c, rel, v_key) and not shown("cat", c)]
        elif rel == "isa":
            gold, kind = v_key, "cat"
            pool = [p for p in parents
                    if p != x_key and not holds(world, x_key, "isa", p) and not shown("cat", p)]
        else:
            gold, kind = v_key, "val"
            pool = sorted(v for v in stated_props[rel] if not holds(world, x_key, rel, v)
                          and not shown("val", v))
        near = {v: owners[(rel, v)] for v in pool} if kind == "val" else {c: [c] for c in pool}
        if shown(kind, gold) or not pool:
            return
        rng.shuffle(pool)
        if cfg.counterbalance:  # x_key's neighbourhood first: same top-level domain, then tree distance
            pool.sort(key=lambda c: min((root(o) != root(x_key), distance(o, x_key)) for o in near[c]))
        elif kind == "cat":
            pool.sort(key=lambda c: abs(depth(c) - depth(gold)))
        out[split][subset].append({
            "split": split, "subset": subset, "support": sorted(support), "cluster": x_key,
            "truth": {"subject": x_key, "relation": rel, "value": v_key,
                      "answer": "subject" if answer_is_subject else "value"},
            "_kind": kind, "_gold": gold, "_pool": pool, "_t": template,
            "_far": {c for c in pool if all(root(o) != root(x_key) for o in near[c])}})

    for f in trained:
        s, rel, v = facts[f]
        t = TEMPLATES[rel]
        sub = "category" if rel == "isa" else "property"
        add("rephrase", sub, rng.choice(t["rephrase"]), s, v, rel, False, [f])
        # the reversal of a holdout's one fact is a holdout inference
        split_sub = ("holdout", "reversal") if s in hold else ("reversal", sub)
        add(*split_sub, rng.choice(t["reverse"]), s, v, rel, True, [f])
    for c in cats:
        anc = ancestors(world, c)
        chain = [f"isa:{x}" for x in [c, *anc[:-1]]]  # c -> parent -> ... -> root
        split = "holdout" if c in hold else "syllogism"
        t = TEMPLATES["isa"]
        for i, a in enumerate(anc[1:], start=1):  # grandparents and up: never stated for c
            add(split, "category", rng.choice(t["train"] + t["rephrase"]), c, a, "isa", False, chain[: i + 1])
        for i, a in enumerate(anc):  # inherited properties
            for rel, v in world["props"][a]:
                t = TEMPLATES[rel]
                add(split, "property", rng.choice(t["train"] + t["rephrase"]), c, v, rel, False,
                    chain[: i + 1] + [f"{rel}:{a}:{v}"])

    cap = cfg.max_items_per_split
    items = []
    for split, subs in out.items():
        per = [rng.sample(lst, len(lst)) for lst in subs.values()]
        n_golds = len({it["_gold"] for lst in per for it in lst})
        # counterbalanced: no answer string is gold more than an equal share of the split's items
        gold_cap = max(2, -(-cap // max(1, n_golds))) if cfg.counterbalance else cap
        chosen, g = [], Counter()
        for it in itertools.chain(*itertools.zip_longest(*per)):  # round-robin over subsets
            if it is not None and len(chosen) < cap and g[it["_gold"]] < gold_cap:
                chosen.append(it)
                g[it["_gold"]] += 1
        if cfg.counterbalance:  # drop items of the most over-gold strings (gold share of its items > 1 / k+1)
            n_can = Counter(c for it in chosen for c in it["_pool"][:3 * k])
            while len(chosen) > 2:
                over = [c for c in g if g[c] > 1 and g[c] * k > n_can[c] + 1]
                if not over:
                    break
                worst = max(over, key=lambda c: (g[c] * k - n_can[c], c))
                drop = max(j for j, it in enumerate(chosen) if it["_gold"] == worst)
                n_can.subtract(chosen[drop]["_pool"][:3 * k])
                g[worst] -= 1
                del chosen[drop]
        # distractor appearances so far; a string should be shown k times per gold (gold rate 1/n_options)
        d = Counter()
        for j, it in enumerate(chosen):
            pool = it["_pool"]
            if cfg.counterbalance:  # within the same domain, strings that still need distractor appearances
                pool = sorted(pool, key=lambda c: (c in it["_far"], g[c] * k - d[c] <= 0))  # ties: pool order
            options = [it["_gold"], *pool[:k]]
            d.update(options[1:])
            order = list(range(len(options)))
            rng.shuffle(order)
            item = {"id": f"semantic-{split}-{j:04d}", **{key: x for key, x in it.items() if key[0] != "_"}}
            t = it["truth"]
            for real, sfx in ((False, ""), (True, "_real")):
                item["prompt" + sfx] = _prompt(it["_t"], *_xv(world, t["subject"], t["relation"], t["value"],
                                                               real))
                item["options" + sfx] = [_name(world, it["_kind"], options[o], real) for o in order]
            items.append(item | {"gold": order.index(0)})
    return items


def make_semantic_structure(cfg, seed: int) -> tuple[list[dict], list[dict]]:
    """Training documents and test items (data contract of lib.datasets); same cfg and seed, same rows."""
    if cfg.min_sentences > cfg.max_sentences:
        raise ValueError(f"semantic_structure: min_sentences={cfg.min_sentences} > "
                         f"max_sentences={cfg.max_sentences}")
    world = make_world(cfg, seed)
    rng = random.Random(f"semantic-data:{seed}")
    rows = _documents(world, cfg, rng)
    items = _items(world, cfg, rng)
    stated = {f for r in rows for f in r["facts"]}
    for it in items:  # every fact a test rests on is stated in some document
        missing = [f for f in it["support"] if f not in stated]
        assert not missing, f"{it['id']}: support {missing} never stated in training"
    return rows, items


# ------------------------------------------------------------------------------------------------- figure
def draw_tree(world, *, ax=None, real: bool = True):
    """The chosen categories as a tree (roots left, leaves right); holdouts in red. Returns the Figure."""
    import matplotlib.pyplot as plt
    import networkx as nx

    cats, hold, lex, plural = world["categories"], set(world["holdouts"]), world["lexicon"], world["plural"]
    g = nx.DiGraph()
    g.add_nodes_from(cats)
    g.add_edges_from((world["parent"][c], c) for c in cats if world["parent"][c])
    pos, leaf_rows = {}, itertools.count()

    def place(c, d):  # a leaf on the next row down, a parent at the mean height of its children
        kids = world["children"][c]
        for k in kids:
            place(k, d + 1)
        pos[c] = (d, sum(pos[k][1] for k in kids) / len(kids)) if kids else (d, -next(leaf_rows))
    for c in cats:
        if world["parent"][c] is None:
            place(c, 0)
    if ax is None:
        _, ax = plt.subplots(figsize=(10, max(3, 0.22 * sum(not world["children"][c] for c in cats))))
    fig = ax.figure
    nx.draw_networkx_edges(g, pos, ax=ax, arrows=False, edge_color="0.6")
    nx.draw_networkx_nodes(g, pos, ax=ax, node_size=25,
                           node_color=["tab:red" if c in hold else "tab:blue" for c in cats])
    for c in cats:
        label = f"{plural[c]} ({lex[plural[c]]})" if real else lex[plural[c]]
        ax.text(pos[c][0] + 0.06, pos[c][1], label, fontsize=7, va="center",
                color="tab:red" if c in hold else "black",
                bbox=dict(facecolor="white", edgecolor="none", pad=0.5, alpha=0.8))
    ax.set_xlim(-0.2, max(x for x, _ in pos.values()) + 1.3)
    ax.set_axis_off()
    ax.set_title(f"{len(cats)} categories (red: {len(hold)} holdouts; only their parent is trained)")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------- checks
def check(world, rows, items):
    """The world-level checks of a built dataset, one row each: check, n, failed, ok, example.

    (lib.datasets.check covers the contract-level ones: no leak, support trained, options tokenise.)"""
    import pandas as pd

    from .datasets import check_row

    facts, hold = world["facts"], set(world["holdouts"])
    count = Counter(f for r in rows for f in r["facts"])
    plural_to_cat = {world["plural"][c]: c for c in world["categories"]}
    gold_bad, dis_bad = [], []
    for it in items:
        t = it["truth"]
        for j, opt in enumerate(it["options_real"]):
            if t["answer"] == "subject":
                ok = holds(world, plural_to_cat[opt], t["relation"], t["value"])
            else:
                val = plural_to_cat[opt] if t["relation"] == "isa" else opt
                ok = holds(world, t["subject"], t["relation"], val)
            if j == it["gold"] and not ok:
                gold_bad.append(it["id"])
            elif j != it["gold"] and ok:
                dis_bad.append(f"{it['id']}: {opt}")
    return pd.DataFrame([
        check_row("every trainable fact is stated", len(world["trained"]),
                  [f for f in world["trained"] if f not in count]),
        check_row("holdouts: only their parent is stated", len(count),
                  [f for f in count if facts[f][0] in hold and facts[f][1] != "isa"]),
        check_row("facts stated only by their owner (inherited ones never)", len(count),
                  [f for f in count if facts[f][1] != "isa"
                   and (facts[f][1], facts[f][2]) not in world["props"][facts[f][0]]]),
        check_row("gold is true in the world", len(items), gold_bad),
        check_row("every distractor is false in the world", sum(len(it["options_real"]) - 1 for it in items),
                  dis_bad),
        {"check": "redundancy: statements per trained fact (min / mean / max)", "n": len(count), "failed": 0,
         "ok": True, "example": f"{min(count.values())} / {sum(count.values()) / len(count):.1f} / "
                                f"{max(count.values())}"}])
