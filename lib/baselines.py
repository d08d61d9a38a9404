"""Shortcut baselines: how far the data alone (training rows + test items) move accuracy off chance.

Each baseline scores every option of an item from the data, without a model, and is credited like a model
(`golds`: an item is right when the prediction is in its gold set). Ties are counted
fractionally: among the k options with the top score, the item gets |top ∩ golds| / k (the expected accuracy
of a uniformly random tie-break), so a baseline that cannot tell the options apart scores exactly the item's
chance.

Baselines that use the test items only (no trained fact):
- `prior_option`: leave-one-out answer-string prior: an option's score is its gold rate (times gold / times
  shown) among the *other* items of the split, smoothed toward chance (+1 shown, +1/n_options gold);
- `prior_first_word`: the same for the option's first word ("deeper", "All", ...);
- `overlap_max` / `overlap_min`: the number of the option's word/symbol tokens that also occur in the prompt
  (pick the most / the least overlapping option);
- `always_some` (syllogisms): pick the "Some" conclusions.

Baselines that use the training rows (a shallow learner could follow them; they need the trained material):
- `cooccurrence`: sentence-level co-occurrence in training of the prompt's entity words with the option's
  own content words (words of the option not in the prompt and not English stop words);
- `copy_relation` (simple_reversals): the option whose comparative is the one trained about the prompt's noun;
- `atmosphere` (syllogisms): the atmosphere heuristic on the item's *trained* premises (a negative premise ->
  "No", else a particular one -> "Some", else "All"; both directions tied).

Expected high by definition (`BY_DEFINITION`, excluded from the at-chance bound): a split that tests a trained
fact in its trained direction (simple_reversals / reversal_curse `forward`, semantic `rephrase`, derivatoids
`trained`) is answered by co-occurrence and by copying the trained word, which is what learning the fact
means; a reversal split is answered *wrongly* by them (the trained sentence co-occurs with the wrong option),
and the paper's reversal-curse `reversal` split (distractors = training targets, never gold) is answered by
the answer-string prior, which is the paper's own design (`reversal_p2d` is the control without it). The
atmosphere heuristic is right on most valid syllogisms whatever the balance (a "No" conclusion needs a
negative premise), so on syllogisms it is reported, not bounded: it needs the trained premises, which is
what the no-learning conditions do not have.

    >>> table(train, test, "simple_reversals")   # dataset, split, baseline, acc, chance, n
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

# (dataset, split) -> the baselines expected off chance by the task's definition (see the module docstring)
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
    """The indices of every correct option of a test item: its `golds` when it has several equally correct
    answers (e.g. both converses of "Some X are Y"), else [gold]. An item is answered correctly when the
    argmax is in it."""
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


# ------------------------------------------------------------------------------------------- scorers
def _prior(items, key):
    """Leave-one-out gold rate of key(option) within the items (one split)."""
    shown, gold = Counter(), Counter()
    per = []
    for it in items:
        g = set(golds(it))
        ks = [key(o) for o in it["options"]]
        per.append(ks)
        for j, k in enumerate(ks):
            shown[k] += 1
            gold[k] += j in g
    out = []
    for it, ks in zip(items, per):
        g, n = set(golds(it)), len(ks)
        own_shown, own_gold = Counter(ks), Counter(k for j, k in enumerate(ks) if j in g)
        out.append([(gold[k] - own_gold[k] + 1 / n) / (shown[k] - own_shown[k] + 1) for k in ks])
    return out


def _overlap(it, sign):
    p = set(words(it["prompt"]))
    return [sign * len(set(words(o)) & p) for o in it["options"]]


class _Sentences:
    """Training sentences as word sets, with an index word -> sentence numbers."""

    def __init__(self, train):
        self.sets = [set(words(s)) for r in train for s in r["sentences"]]
        self.index = defaultdict(set)
        for i, s in enumerate(self.sets):
            for w in s:
                self.index[w].add(i)

    def cooccurrence(self, it):
        p = set(words(it["prompt"]))
        ent = {w for w in p if w.lower() not in STOP}
        hits = set().union(*(self.index.get(w, set()) for w in ent)) if ent else set()
        out = []
        for o in it["options"]:
            own = {w for w in words(o) if w not in p and w.lower() not in STOP}
            out.append(sum(len(own & self.sets[i]) / len(own) for i in hits) if own else 0.0)
        return out


def _comparative(option: str) -> str:
    return option.split(" than ")[0]


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
        out.append([float(_comparative(o) in trained[noun]) for o in it["options"]])
    return out



def _atmosphere(train, items):
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
    sent = _Sentences(train)
    out = {"prior_option": _prior(items, lambda o: o),
           "prior_first_word": _prior(items, lambda o: (words(o) or [o])[0]),
           "overlap_max": [_overlap(it, 1) for it in items],
           "overlap_min": [_overlap(it, -1) for it in items],
           "cooccurrence": [sent.cooccurrence(it) for it in items]}
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
    splits = list(dict.fromkeys(x["split"] for x in test))
    for split in splits:
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
