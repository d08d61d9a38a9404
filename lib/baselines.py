"""Shortcut baselines (notebooks/01_data_construction.ipynb, 1.7, describes each): how far the data alone,
without a model, move accuracy off chance. A baseline scores every option of an item (`scores`); the item is
credited like a model's, ties fractionally (`credit`), so a baseline that cannot tell the options apart
scores exactly the item's chance.

    >>> table(train, test, "simple_reversals")   # dataset, split, baseline, acc, chance, n, by_definition
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict

import pandas as pd

WORD = re.compile(r"[A-Za-z]+|\d+")
STOP = frozenset("""a an the and or of to in on at by for from with as is are was were be been being it its
this that these those there their they them he she his her we you i not no all some than who which what whose
known also once often always can""".split())
QUANTS = ("All", "Some", "No")

# (dataset, split) -> the baselines off chance by the split's definition (excluded from the at-chance bound):
# co-occurrence and copying answer a trained direction (and answer a reversal wrongly), the prior answers the
# paper's reversal-curse `reversal` (its distractors are never gold), atmosphere needs the trained premises
BY_DEFINITION = {
    ("simple_reversals", "forward"): {"cooccurrence", "copy_relation"},
    ("simple_reversals", "reversal"): {"cooccurrence", "copy_relation"},
    ("reversal_curse", "forward"): {"cooccurrence"},
    ("reversal_curse", "reversal"): {"cooccurrence", "prior_option", "prior_first_word"},
    ("reversal_curse", "reversal_p2d"): {"cooccurrence"},
    ("semantic_structure", "rephrase"): {"cooccurrence"},
    ("semantic_structure", "reversal"): {"cooccurrence"},
    ("semantic_structure", "holdout"): {"cooccurrence"},
    ("semantic_structure", "syllogism"): {"cooccurrence"},
    ("derivatoids", "trained"): {"cooccurrence"},
    ("derivatoids", "compositional"): {"cooccurrence"},
    ("syllogisms", "syllogism"): {"atmosphere", "cooccurrence"},
    ("syllogisms", "premise"): {"atmosphere", "cooccurrence"},
}


def golds(item: dict) -> list[int]:
    """The indices of every correct option of a test item: its `golds` (several equally correct answers, e.g.
    both converses of "Some X are Y") or [gold]. An item is answered correctly when the argmax is in it."""
    return list(item.get("golds") or [item["gold"]])


def chance(item: dict) -> float:
    """A test item's chance accuracy: |golds| / |options|."""
    return len(golds(item)) / len(item["options"])


def words(text: str) -> list[str]:
    return WORD.findall(text)


def credit(scores, item) -> float:
    """|top ∩ golds| / |top|: the expected accuracy of argmax with a uniform random tie-break."""
    top = max(scores)
    best = [j for j, s in enumerate(scores) if s == top]
    return len(set(best) & set(golds(item))) / len(best)


def _prior(items, key):
    """Leave-one-out gold rate of key(option) within the items (one split), smoothed toward chance."""
    per = [([key(o) for o in it["options"]], set(golds(it))) for it in items]
    shown = Counter(k for ks, _ in per for k in ks)
    gold = Counter(k for ks, g in per for j, k in enumerate(ks) if j in g)
    out = []
    for ks, g in per:
        own_shown, own_gold = Counter(ks), Counter(k for j, k in enumerate(ks) if j in g)
        out.append([(gold[k] - own_gold[k] + 1 / len(ks)) / (shown[k] - own_shown[k] + 1) for k in ks])
    return out


def _overlap(it, sign):
    p = set(words(it["prompt"]))
    return [sign * len(set(words(o)) & p) for o in it["options"]]


def _cooccurrence(train, items):
    """Per option: summed over the training sentences that hold a prompt entity word, the share of the
    option's own content words in the sentence."""
    sets = [set(words(s)) for r in train for s in r["sentences"]]
    index = defaultdict(set)  # word -> sentence numbers
    for i, s in enumerate(sets):
        for w in s:
            index[w].add(i)
    out = []
    for it in items:
        p = set(words(it["prompt"]))
        ent = {w for w in p if w.lower() not in STOP}
        hits = set().union(*(index.get(w, set()) for w in ent))
        own = [{w for w in words(o) if w not in p and w.lower() not in STOP} for o in it["options"]]
        out.append([sum(len(ws & sets[i]) / len(ws) for i in hits) if ws else 0.0 for ws in own])
    return out


def _copy_relation(train, items):
    """simple_reversals: score 1 for the option whose comparative was trained about the prompt's last noun."""
    trained = defaultdict(set)  # noun -> comparatives stated with it in training
    for r in train:
        for s in r["sentences"]:
            m = re.search(r"(\w+) are (.+) than (\w+)\.$", s)
            if m:
                trained[m.group(1)].add(m.group(2))
                trained[m.group(3)].add(m.group(2))
    out = []
    for it in items:
        noun = words(it["prompt"])[-2]  # "... <noun> are"
        out.append([float(o.split(" than ")[0] in trained[noun]) for o in it["options"]])
    return out


def _atmosphere(train, items):
    """syllogisms: "No" if a trained premise of the item is negative, else "Some" if one is particular, else
    "All" (both directions tied)."""
    by_fact = {f: r for r in train for f in r["facts"]}
    out = []
    for it in items:
        row = by_fact.get((it.get("support") or [None])[0])
        qs = {s.split(" ")[0] for s in (row["sentences"] if row else []) if s.split(" ")[0] in QUANTS}
        q = "No" if "No" in qs else "Some" if "Some" in qs else "All"
        out.append([float(o.split(" ")[0] == q) for o in it["options"]])
    return out


def scores(train: list[dict], items: list[dict], dataset: str) -> dict[str, list[list[float]]]:
    """baseline -> per item (of one split), a score per option (higher = chosen)."""
    out = {"prior_option": _prior(items, lambda o: o),
           "prior_first_word": _prior(items, lambda o: (words(o) or [o])[0]),
           "overlap_max": [_overlap(it, 1) for it in items],
           "overlap_min": [_overlap(it, -1) for it in items],
           "cooccurrence": _cooccurrence(train, items)}
    if dataset == "simple_reversals":
        out["copy_relation"] = _copy_relation(train, items)
    if dataset == "syllogisms":
        out["always_some"] = [[float(o.startswith("Some ")) for o in it["options"]] for it in items]
        out["atmosphere"] = _atmosphere(train, items)
    return out


def table(train: list[dict], test: list[dict], dataset: str) -> pd.DataFrame:
    """One row per split x baseline: dataset, split, baseline, acc, chance, n, by_definition (True where the
    baseline is expected off chance by the split's definition; see BY_DEFINITION)."""
    rows = []
    for split in dict.fromkeys(x["split"] for x in test):
        items = [x for x in test if x["split"] == split]
        ch = sum(map(chance, items)) / len(items)
        for name, sc in scores(train, items, dataset).items():
            acc = sum(credit(s, it) for s, it in zip(sc, items)) / len(items)
            rows.append({"dataset": dataset, "split": split, "baseline": name, "acc": acc, "chance": ch,
                         "n": len(items), "by_definition": name in BY_DEFINITION.get((dataset, split), ())})
    return pd.DataFrame(rows)


def item_table(train: list[dict], test: list[dict], dataset: str, item_id: str) -> pd.DataFrame:
    """For one item: each option, whether it is gold, and each baseline's score of it (for notebook 01)."""
    it = next(x for x in test if x["id"] == item_id)
    items = [x for x in test if x["split"] == it["split"]]
    i = items.index(it)
    sc = scores(train, items, dataset)
    return pd.DataFrame([{"option": o, "gold": j in golds(it),
                          **{b: round(s[i][j], 3) for b, s in sc.items()}}
                         for j, o in enumerate(it["options"])])
