"""The datasets of the paper (section 2) and the files every later stage reads.

`build(params, name)` writes `runs/<params>/data/<name>/{train.jsonl,test.jsonl,manifest.json}`:

- train.jsonl: one training document per line, {"id", "text", "sentences", "facts", ...} (plus "prompt" and
  "completion" where the source has them, with text = prompt + completion);
- test.jsonl: one multiple-choice item per line, {"id", "split", "subset", "prompt", "options", "gold",
  "support", ...}; each option is scored as the continuation " " + option of the prompt, and is never shown
  in the prompt;
- manifest.json: dataset, generator version, seed, params, counts and chance per split, sha256 of both files.

A build is cached by a stamp keyed on the generator (its version and the hash of its source), the seed and
that dataset's params; files are written atomically and the stamp last, so a killed build is redone.

Datasets and their generators (`make_<name>(cfg, seed) -> (train rows, test items)`):

- simple_reversals (2.1): N comparison facts `femp are more dangerous than glon.` over 28 features, each in
  K articles (a random context preface + the fact). Splits `forward` (the trained fact after a held-out
  preface: correct vs contradiction) and `reversal` (`glon are less dangerous than femp.` vs
  `glon are more dangerous than femp.`). Counterbalanced (`counterbalance`): within each feature the facts
  alternate between the first and the reverse form in training. Subset = the orientation ("first" /
  "reverse"), `feature` = the feature, cluster = the fact.
- syllogisms (2.2): M premise pairs over {All, Some, No}; the test scores all six {All, Some, No} x
  {both directions} statements about the two end terms. Validity is decided by a set-semantics checker
  (`valid_conclusions`); `golds` = the strongest valid conclusions (`strongest_conclusions`), chance per item
  |golds| / 6; counterbalanced gold quantifiers All : Some : No = 2 : 1 : 1. Subset = the syllogistic form.
- reversal_curse (2.3): Berglund et al.'s fictional people (vendored in data/external/reversal_curse/).
  Splits `forward` (P2D people, held-out templates, name -> description), `reversal` (description ->
  name, distractor names from `distractor_pool`) and, with `both_pools`, `reversal_<other pool>` (the same
  items with distractors from the other pool). Subset = the test template, cluster = the person.
- semantic_structure (2.4) and derivatoids (2.5): generators in lib.semantic and lib.derivatoids.

    >>> train, test, manifest = load(params, "syllogisms")
"""
from __future__ import annotations

import hashlib
import importlib
import itertools
import random
import re
import sys
import time
import warnings
from pathlib import Path

from . import baselines, cards, file_datasets, runs
from .baselines import chance, golds  # noqa: F401 - golds is also datasets' public name (the notebooks')
from .params import DATASETS
from .runs import ROOT

EXTERNAL = ROOT / "data" / "external"
REVERSAL_CURSE_DIR = EXTERNAL / "reversal_curse"

# name -> "module:function"; imported lazily (a missing module only matters for the dataset that needs it)
GENERATORS = {
    "simple_reversals": "lib.datasets:make_simple_reversals",
    "syllogisms": "lib.datasets:make_syllogisms",
    "reversal_curse": "lib.datasets:make_reversal_curse",
    "semantic_structure": "lib.semantic:make_semantic_structure",
    "derivatoids": "lib.derivatoids:make_derivatoids",
}
# Bump when a generator's output changes on purpose (the stamp also hashes the generator's source file).
GENERATOR_VERSION = {"simple_reversals": "2", "syllogisms": "3", "reversal_curse": "3"}

SPLITS = {
    "simple_reversals": ["forward", "reversal"],
    "syllogisms": ["premise", "syllogism"],
    "reversal_curse": ["forward", "reversal", "reversal_p2d", "reversal_targets"],
    "semantic_structure": ["rephrase", "reversal", "syllogism", "holdout"],
    "derivatoids": ["trained", "compositional"],
}
LEARNING_CHECK_SPLITS = ("forward", "rephrase", "trained", "premise")  # a trained fact, as trained
FILES = ("train.jsonl", "test.jsonl", "manifest.json")


class DatasetError(ValueError):
    """A dataset that cannot be built or breaks the data contract (empty, malformed, missing generator)."""


def _rng(*parts) -> random.Random:
    return random.Random(":".join(str(p) for p in parts))


def _int_seed(*parts) -> int:
    return int(hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()[:12], 16)


def _words(n: int, *parts) -> list[str]:
    from .words import nonsense_words

    return nonsense_words(n, _int_seed("words", *parts))


# ===================================================================================== simple reversals
# The 28 comparison features of the paper's simple reversals, each with its reversal (antonym) form:
# `A are <forward> than B` is equivalent to `B are <reverse> than A`.
FEATURES = [
    ("more dangerous", "less dangerous"), ("brighter", "dimmer"), ("heavier", "lighter"),
    ("larger", "smaller"), ("faster", "slower"), ("taller", "shorter"), ("older", "younger"),
    ("stronger", "weaker"), ("louder", "quieter"), ("warmer", "colder"), ("harder", "softer"),
    ("wider", "narrower"), ("deeper", "shallower"), ("richer", "poorer"),
    ("more intelligent", "less intelligent"), ("more common", "rarer"), ("more expensive", "cheaper"),
    ("wetter", "drier"), ("thicker", "thinner"), ("more popular", "less popular"),
    ("more aggressive", "gentler"), ("more active", "less active"), ("more flexible", "stiffer"),
    ("rougher", "smoother"), ("cleaner", "dirtier"), ("sharper", "blunter"), ("more fragile", "sturdier"),
    ("more valuable", "less valuable"),
]
assert len(FEATURES) == 28 and len({w for f in FEATURES for w in f}) == 56

# Context prefaces: (leading sentences, lead-in clause); the article is the sentences followed by
# "<lead-in> <fact>". The fact keeps its lowercase nonsense noun first, so that the noun is always the same
# tokens. TEST_PREFACES are never used in training: a `forward` item is a trained fact in a new preface.
TRAIN_PREFACES = [
    ([], "Did you know that"),
    ([], "It is well known that"),
    ([], "Fun fact:"),
    ([], "According to the encyclopedia,"),
    ([], "Few people realise that"),
    ([], "As every student learns,"),
    ([], "Researchers have reported that"),
    ([], "Here is something surprising:"),
    ([], "Experts agree that"),
    ([], "In case you were wondering,"),
    (["The museum opened a new exhibit last week."], "One of its panels explains that"),
    (["We asked a local guide about the region."], "She told us that"),
    (["Yesterday's lecture covered a lot of ground."], "The main point was that"),
    (["The old field notes are hard to read."], "One page says that"),
    (["A new survey came out this spring."], "Its authors found that"),
    (["My grandfather liked to tell stories."], "He always insisted that"),
    (["This question comes up in every quiz."], "The answer is that"),
    (["The documentary was long but interesting."], "It showed that"),
    (["Travellers often write about the valley."], "Most of them mention that"),
    (["The textbook has a short chapter on this."], "It states that"),
]
TEST_PREFACES = [
    ([], "Remember that"),
    ([], "Note that"),
    ([], "It has been observed that"),
    (["The report was published in the autumn."], "It concludes that"),
    (["A visitor asked the keeper a question."], "The keeper replied that"),
    (["The class reviewed its notes before the exam."], "The notes say that"),
]


def _article(preface, fact: str) -> tuple[str, list[str]]:
    lead, lead_in = preface
    sentences = [*lead, f"{lead_in} {fact}"]
    return " ".join(sentences), sentences


def make_simple_reversals(cfg, seed: int):
    """N facts `A are <feature> than B.` between distinct nonsense nouns, each in K training articles.

    Features are dealt round-robin in a shuffled order (so N >= 28 covers all 28). Each fact gets one
    held-out test preface, shared by its `forward` item (`A are` -> <feature> than B. vs <reverse> than B.)
    and its `reversal` item (`B are` -> <reverse> than A. vs <feature> than A.); options in random order.
    """
    n, k = cfg.n_facts, cfg.articles_per_fact
    if k > len(TRAIN_PREFACES):
        raise DatasetError(f"simple_reversals: articles_per_fact={k} exceeds the {len(TRAIN_PREFACES)} "
                           "distinct training prefaces")
    rng = _rng("simple_reversals", seed)
    words = _words(2 * n, "simple_reversals", seed)
    order = list(range(len(FEATURES)))
    rng.shuffle(order)
    train, test = [], []
    # counterbalanced: within each feature, its facts alternate between the two forms (seeded start), so every
    # comparative is the trained form as often as its antonym (up to one fact per feature)
    start = [rng.randrange(2) for _ in FEATURES]
    reverse = {i for i in range(n) if (i // len(FEATURES) + start[order[i % len(FEATURES)]]) % 2} \
        if cfg.counterbalance else set()
    for i in range(n):
        a, b = words[2 * i], words[2 * i + 1]
        first, second = FEATURES[order[i % len(FEATURES)]]
        # counterbalanced: half the facts (seeded) are trained in the feature's reverse form
        fwd, rev = (second, first) if i in reverse else (first, second)
        orientation = "reverse" if i in reverse else "first"
        fact_id = f"sr{i:03d}"
        fact = f"{a} are {fwd} than {b}."
        for j, pre in enumerate(rng.sample(TRAIN_PREFACES, k)):
            text, sentences = _article(pre, fact)
            train.append({"id": f"{fact_id}-a{j}", "text": text, "sentences": sentences, "facts": [fact_id]})
        lead, lead_in = rng.choice(TEST_PREFACES)
        head = " ".join([*lead, lead_in])
        for split, subj, correct, wrong in (("forward", a, f"{fwd} than {b}.", f"{rev} than {b}."),
                                            ("reversal", b, f"{rev} than {a}.", f"{fwd} than {a}.")):
            options = [correct, wrong]
            rng.shuffle(options)
            test.append({"id": f"{fact_id}-{split}", "split": split, "subset": orientation,
                         "feature": first, "prompt": f"{head} {subj} are", "options": options,
                         "gold": options.index(correct), "support": [fact_id], "cluster": fact_id})
    rng.shuffle(train)
    test.sort(key=lambda x: (SPLITS["simple_reversals"].index(x["split"]), x["id"]))
    return train, test


# =========================================================================================== syllogisms
# Set semantics: a model of three terms says which of the 8 regions of their Venn diagram are non-empty.
# A statement is true in a model by which regions are inhabited; a conclusion is valid when it is true in
# every model of the premises. Every model of a finite set of such statements is captured by these 256
# region patterns, so the enumeration is a complete decision procedure.
TERMS = ("S", "M", "P")
QUANTIFIERS = ("All", "Some", "No")
MOODS = {"A": "All", "I": "Some", "E": "No"}
# figure -> (major premise terms, minor premise terms); the major premise holds P, the minor S
FIGURES = {1: (("M", "P"), ("S", "M")), 2: (("P", "M"), ("S", "M")),
           3: (("M", "P"), ("M", "S")), 4: (("P", "M"), ("M", "S"))}
REGIONS = list(itertools.product((False, True), repeat=3))  # membership in (S, M, P)


def _holds(statement, inhabited) -> bool:
    q, x, y = statement
    ix, iy = TERMS.index(x), TERMS.index(y)
    if q == "All":
        return not any(r[ix] and not r[iy] for r in inhabited)
    if q == "Some":
        return any(r[ix] and r[iy] for r in inhabited)
    if q == "No":
        return not any(r[ix] and r[iy] for r in inhabited)
    raise ValueError(f"unknown quantifier {q!r} (expected one of {QUANTIFIERS})")


def _models(existential_import: bool):
    for mask in range(1 << len(REGIONS)):
        inhabited = [r for i, r in enumerate(REGIONS) if mask >> i & 1]
        # existential import: every term names a non-empty set (the Aristotelian reading)
        if existential_import and not all(any(r[t] for r in inhabited) for t in range(3)):
            continue
        yield inhabited


def is_valid(premises, conclusion, *, existential_import: bool = True) -> bool:
    """Does `conclusion` follow from `premises`? Statements are (quantifier, subject, predicate) over the
    terms "S", "M", "P", e.g. ("All", "M", "P"). With existential_import, every term is assumed non-empty."""
    for st in [*premises, conclusion]:
        if len(st) != 3 or st[0] not in QUANTIFIERS or st[1] not in TERMS or st[2] not in TERMS:
            raise ValueError(f"bad statement {st!r}: expected (quantifier in {QUANTIFIERS}, term, term) "
                             f"with terms in {TERMS}")
    return all(_holds(conclusion, m) for m in _models(existential_import)
               if all(_holds(p, m) for p in premises))


def conclusion_options(x: str = "S", y: str = "P") -> list[tuple[str, str, str]]:
    """The six scored statements about the end terms: {All, Some, No} x {both directions}, in this order."""
    return [(q, s, p) for q in QUANTIFIERS for s, p in ((x, y), (y, x))]


def valid_conclusions(premises, *, existential_import: bool = True, order=("S", "P")) -> list[int]:
    """Indices into conclusion_options(*order) of every valid conclusion."""
    return [i for i, c in enumerate(conclusion_options(*order))
            if is_valid(premises, c, existential_import=existential_import)]


def conventional_conclusion(premises, *, existential_import: bool = True):
    """The designated gold: the strongest valid conclusion with the minor term S as subject (All > No > Some),
    as in the traditional moods (Barbara: All S are P; Darii: Some S are P); when no S-P conclusion is
    valid, the strongest P-S one (e.g. AA-4 without existential import: All P are S). None if none is."""
    for subj, pred in (("S", "P"), ("P", "S")):
        for q in ("All", "No", "Some"):
            if is_valid(premises, (q, subj, pred), existential_import=existential_import):
                return (q, subj, pred)
    return None


def strongest_conclusions(premises, *, existential_import: bool = True, order=("S", "P")) -> list[int]:
    """Indices into conclusion_options(*order) of the strongest valid conclusions: those valid conclusions
    that no other valid conclusion strictly entails (All S are P beats Some S are P; both converses of a valid
    Some / No conclusion are equivalent, so both are strongest)."""
    opts = conclusion_options(*order)
    valid = valid_conclusions(premises, existential_import=existential_import, order=order)

    def entails(c1, c2):
        return is_valid([opts[c1]], opts[c2], existential_import=existential_import)
    return [c for c in valid if not any(d != c and entails(d, c) and not entails(c, d) for d in valid)]


def syllogistic_forms(*, existential_import: bool = True) -> list[dict]:
    """The premise pairs (of 9 moods x 4 figures) that have at least one valid conclusion among the six
    options: [{"form": "AA1", "premises": [major, minor], "gold": statement, "golds": [statement, ...]
    (the strongest valid conclusions), "quantifier": theirs, "valid": [statement, ...]}]."""
    forms = []
    opts = conclusion_options()
    for (m1, q1), (m2, q2) in itertools.product(MOODS.items(), repeat=2):
        for fig, (t1, t2) in FIGURES.items():
            premises = [(q1, *t1), (q2, *t2)]
            gold = conventional_conclusion(premises, existential_import=existential_import)
            if gold is None:
                continue
            valid = [c for c in opts if is_valid(premises, c, existential_import=existential_import)]
            golds = [opts[i] for i in strongest_conclusions(premises, existential_import=existential_import)]
            quants = {g[0] for g in golds}
            assert len(quants) == 1, (m1, m2, fig, golds)
            forms.append({"form": f"{m1}{m2}{fig}", "premises": premises, "gold": golds[0], "golds": golds,
                          "quantifier": quants.pop(), "valid": valid})
    return forms


def _deal_forms(forms, n: int, counterbalance: bool, rng) -> list[dict]:
    """n forms. Counterbalanced: gold quantifiers All : Some : No = 2 : 1 : 1 (an All item has one gold of six
    options, a Some / No item two, so "always All", "always Some" and "always No" each score exactly chance),
    forms round-robin within each quantifier (every valid form used once n is large enough); otherwise
    round-robin over all forms. Shuffled."""
    if not counterbalance:
        return [forms[i % len(forms)] for i in range(n)]
    by_q = {q: [f for f in forms if f["quantifier"] == q] for q in QUANTIFIERS}
    n_all = round(n / 2)
    counts = {"All": n_all, "Some": (n - n_all + 1) // 2, "No": (n - n_all) // 2}
    empty = [q for q in QUANTIFIERS if counts[q] and not by_q[q]]
    if empty:
        raise DatasetError(f"syllogisms: no valid form concludes with {empty} under these params")
    out = [by_q[q][i % len(by_q[q])] for q in QUANTIFIERS for i in range(counts[q])]
    rng.shuffle(out)
    return out


def _sentence(statement, names) -> str:
    q, x, y = statement
    return f"{q} {names[x]} are {names[y]}."


def _equivalent(a, b) -> bool:
    """Two statements (q, x, y) say the same: equal, or converses of a symmetric Some / No statement."""
    return a == b or (a[0] == b[0] and a[0] in ("Some", "No") and a[1:] == b[:0:-1])


def make_syllogisms(cfg, seed: int):
    """M items, one premise pair each, forms dealt round-robin over the forms with a valid conclusion (in a
    shuffled order), three fresh nonsense terms per item.

    Train doc: `The relationships between glon, troff and yomp are: All glon are yomp. All troff are glon.`
    (terms listed in random order, major premise first). Test item: `The relationships between yomp and
    troff are:` (end terms in random order) with the six options of conclusion_options; "valid" lists every
    valid option, "golds" the strongest valid ones and "gold" the first of them.
    Learning check (`premise` split, two items per syllogism): `The relationships between glon and yomp are:`
    (a premise's two terms, random order) with the same six statements; golds = the trained premise and, for a
    Some / No premise, its converse (subset = the premise's quantifier); counterbalanced, a seeded subset with
    premise quantifiers All : Some : No = 2 : 1 : 1 (each "always Q" then scores chance).
    """
    forms = syllogistic_forms(existential_import=cfg.existential_import)
    rng = _rng("syllogisms", seed)
    rng.shuffle(forms)
    dealt = _deal_forms(forms, cfg.n_items, cfg.counterbalance, rng)
    words = _words(3 * cfg.n_items, "syllogisms", seed)
    train, test = [], []
    for i, form in enumerate(dealt):
        names = dict(zip(TERMS, words[3 * i: 3 * i + 3]))
        listed = rng.sample(list(names.values()), 3)
        header = f"The relationships between {listed[0]}, {listed[1]} and {listed[2]} are:"
        premises = [_sentence(p, names) for p in form["premises"]]
        ids = [f"syl{i:03d}-major", f"syl{i:03d}-minor"]
        train.append({"id": f"syl{i:03d}", "text": " ".join([header, *premises]),
                      "sentences": [header, *premises], "facts": ids})
        # the learning check: recall a premise
        for k, (premise, fact) in enumerate(zip(form["premises"], ids)):
            a, b = rng.sample(list(premise[1:]), 2)
            opts = conclusion_options(a, b)
            gold_set = sorted(j for j, o in enumerate(opts) if _equivalent(o, premise))
            test.append({"id": f"syl{i:03d}-p{k}", "split": "premise", "subset": premise[0],
                         "prompt": f"The relationships between {names[a]} and {names[b]} are:",
                         "options": [_sentence(o, names) for o in opts], "gold": gold_set[0],
                         "golds": gold_set, "support": [fact], "cluster": f"syl{i:03d}"})
        x, y = rng.sample(["S", "P"], 2)
        options = conclusion_options(x, y)
        golds = sorted(options.index(g) for g in form["golds"])
        test.append({"id": f"syl{i:03d}", "split": "syllogism", "subset": form["form"],
                     "prompt": f"The relationships between {names[x]} and {names[y]} are:",
                     "options": [_sentence(o, names) for o in options], "gold": golds[0], "golds": golds,
                     "support": ids, "cluster": f"syl{i:03d}",
                     "valid": sorted(options.index(v) for v in form["valid"])})
    if cfg.counterbalance:  # premises are mostly All: keep All : Some : No = 2 : 1 : 1, as for conclusions
        by_q = {q: [k for k, t in enumerate(test) if t["split"] == "premise" and t["subset"] == q]
                for q in QUANTIFIERS}
        m = min(len(by_q["Some"]), len(by_q["No"]), len(by_q["All"]) // 2)
        keep = {k for q, ks in by_q.items() for k in rng.sample(ks, 2 * m if q == "All" else m)}
        test = [t for k, t in enumerate(test) if t["split"] != "premise" or k in keep]
    return train, test


# ======================================================================================= reversal curse
RC_GROUPS = ("p2d", "d2p", "both")
RC_TRAIN = {"p2d": "p2d_prompts_train.jsonl", "d2p": "d2p_prompts_train.jsonl",
            "both": "both_prompts_train.jsonl"}
RC_TEST = {"forward": "p2d_prompts_test.jsonl", "reversal": "p2d_reverse_prompts_test.jsonl"}
RC_TEMPLATES = 10  # test templates per person, in the same order for every person


def _read_source(name: str) -> list[dict]:
    path = REVERSAL_CURSE_DIR / name
    if not path.is_file():
        raise DatasetError(f"reversal_curse: missing source file {path} "
                           "(see data/external/reversal_curse/SOURCE.md)")
    return runs.read_jsonl(path)


def reversal_curse_people() -> dict[str, list[str]]:
    """The 30 names of each group, in file order, read from the test files (P2D: reverse-test completions;
    D2P: test completions; Both: the name in the first p2d-style test template)."""
    def ordered(xs):
        return list(dict.fromkeys(xs))

    p2d = ordered(x["completion"].strip() for x in _read_source(RC_TEST["reversal"]))
    d2p = ordered(x["completion"].strip() for x in _read_source("d2p_prompts_test.jsonl"))
    pat = re.compile(r"^The trailblazer known as (.+) was once$")
    both = ordered(m.group(1) for x in _read_source("both_prompts_test.jsonl")
                   if (m := pat.match(x["prompt"])))
    return {"p2d": p2d, "d2p": d2p, "both": both}


def _person_of(row: dict, names: list[str]) -> str:
    text = row["prompt"] + row["completion"]
    hits = [n for n in names if n in text]
    if len(hits) != 1:
        raise DatasetError(f"reversal_curse: cannot tell whose example this is ({hits}): {text!r}")
    return hits[0]


def make_reversal_curse(cfg, seed: int):
    """Train: the examples of the kept people (people_per_group of each group; all 30 and every paraphrase ->
    3,600 examples; `examples_per_person` keeps the first paraphrases of each person, in the source's order).
    Test (P2D people only, the first `templates_per_person` of the 10 held-out templates each):
    - `reversal`: description -> name; distractors drawn from `distractor_pool`: "targets" = names that were
      completion targets in training (kept D2P and Both people), "p2d" = the other kept P2D names;
    - `forward`: name -> description; distractors = the same template's descriptions of other kept P2D people.
    Options are completions without their leading space; subset = the template ("t0".."t9")."""
    k, nd = cfg.people_per_group, cfg.n_distractors
    people = reversal_curse_people()
    for g in RC_GROUPS:
        if len(people[g]) < k:
            raise DatasetError(f"reversal_curse: people_per_group={k} but the {g} group has "
                               f"{len(people[g])} people")
    rng = _rng("reversal_curse", seed)
    kept = {g: sorted(rng.sample(people[g], k), key=people[g].index) for g in RC_GROUPS}
    if k - 1 < nd:
        raise DatasetError(f"reversal_curse: n_distractors={nd} needs at least {nd + 1} P2D people "
                           f"(people_per_group={k}); the forward split draws distractors from other P2D "
                           "people")
    pools = {"targets": kept["d2p"] + kept["both"], "p2d": kept["p2d"]}
    # both pools: `reversal` takes distractors from the params' pool, `reversal_<other>` from the other one
    # (the paper's `targets` pool gives `reversal` and `reversal_p2d`)
    other = "p2d" if cfg.distractor_pool == "targets" else "targets"
    rev_splits = [("reversal", pools[cfg.distractor_pool])] + ([(f"reversal_{other}", pools[other])]
                                                               if cfg.both_pools else [])
    pool_names = pools["targets"]
    if len(pool_names) < nd:
        raise DatasetError(f"reversal_curse: distractor pool 'targets' has {len(pool_names)} names, "
                           f"fewer than n_distractors={nd}")
    all_names = [n for g in RC_GROUPS for n in people[g]]
    # the first `examples_per_person` paraphrases of each person (Both people: that many in each direction)
    cap = cfg.examples_per_person or 10 ** 9
    per_person = {"p2d": cap, "d2p": cap, "both": 2 * cap}
    train = []
    for g in RC_GROUPS:
        counter = {}
        for row in _read_source(RC_TRAIN[g]):
            name = _person_of(row, all_names)
            if name not in kept[g]:
                continue
            j = counter[name] = counter.get(name, -1) + 1
            if j >= per_person[g]:
                continue
            text = row["prompt"] + row["completion"]
            train.append({"id": f"{g}-{name.replace(' ', '_')}-{j:02d}", "text": text, "sentences": [text],
                          "facts": [f"{g}:{name}"], "prompt": row["prompt"], "completion": row["completion"]})
    rng.shuffle(train)

    def by_person(rows):
        out = {}
        for row in rows:
            out.setdefault(_person_of(row, people["p2d"]), []).append(row)
        for name, xs in out.items():
            if len(xs) != RC_TEMPLATES:
                raise DatasetError(f"reversal_curse: {name} has {len(xs)} test prompts, "
                                   f"expected {RC_TEMPLATES}")
        return out

    fwd, rev = by_person(_read_source(RC_TEST["forward"])), by_person(_read_source(RC_TEST["reversal"]))
    test = []
    for split, rows, pool in (("forward", fwd, None), *((sp, rev, pl) for sp, pl in rev_splits)):
        for name in kept["p2d"]:
            for t, row in enumerate(rows[name][:cfg.templates_per_person]):
                gold = row["completion"].removeprefix(" ")
                if split == "forward":
                    others = [rows[o][t]["completion"].removeprefix(" ") for o in kept["p2d"] if o != name]
                else:
                    others = [o for o in pool if o != name]
                options = [gold, *rng.sample(others, nd)]
                rng.shuffle(options)
                test.append({"id": f"{split}-{name.replace(' ', '_')}-t{t}", "split": split,
                             "subset": f"t{t}",
                             "prompt": row["prompt"], "options": options, "gold": options.index(gold),
                             "support": [f"p2d:{name}"], "cluster": f"p2d:{name}"})
    return train, test


# ========================================================================================= from files
# A dataset of your own (lib.file_datasets reads, checks and normalises its files) is written to the run's
# data folder like a generated set.
def is_file_dataset(params, name: str) -> bool:
    """Whether `name` is a dataset from files in these params."""
    return name in params.datasets.files


def read_file_dataset(params, name: str) -> tuple[list[dict], list[dict]]:
    """The normalised (train rows, test items) of a dataset from files; DatasetError listing every problem
    (lib.file_datasets.file_problems) when there is one."""
    train, test, problems = file_datasets.file_rows(name, params.datasets.files[name])
    if problems:
        raise DatasetError(f"{name}: {len(problems)} problem(s) in its files:\n  " + "\n  ".join(problems))
    return train, test


def learning_check_split(name: str, manifest_or_params, splits=()) -> str | None:
    """The learning-check split of a dataset (the trained material asked as trained: was it learned?), for
    built-in datasets and datasets from files alike. `manifest_or_params`: the dataset's manifest (a dict:
    its `learning_check`, written since datasets from files exist) or the Params (a file dataset's
    `learning_check`). A built-in dataset's is its one split in LEARNING_CHECK_SPLITS; for another dataset
    that names none (hand-made in a test), the first of `splits` (its items' splits) in LEARNING_CHECK_SPLITS,
    or None when `splits` are given and none is. Without `splits`, raises DatasetError for a dataset that has
    none."""
    src = manifest_or_params
    if isinstance(src, dict) and src.get("learning_check"):
        return src["learning_check"]
    if not isinstance(src, dict) and name in src.datasets.files:
        return src.datasets.files[name].learning_check
    known = SPLITS.get(name) or list(splits)
    split = next((s for s in LEARNING_CHECK_SPLITS if s in known), None)
    if split is None and not splits:
        raise DatasetError(f"dataset {name!r}: no learning-check split known (not a built-in dataset, and "
                           "neither its manifest nor the params name one)")
    return split


# ============================================================================================ building
def _generator(name: str):
    if name not in GENERATORS:
        raise DatasetError(f"unknown dataset {name!r} (known: {', '.join(GENERATORS)})")
    spec = GENERATORS[name]
    module_name, func = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise
        raise DatasetError(f"dataset {name!r}: its generator {spec} is missing "
                           f"(no module {module_name})") from None
    if not hasattr(module, func):
        raise DatasetError(f"dataset {name!r}: its generator {spec} is missing "
                           f"(no function {func} in {module_name})")
    return module, getattr(module, func)


def _file_sha(path) -> str:
    return runs.sha256_file(Path(path)) if path and Path(path).is_file() else ""


def dataset_params(params, name: str):
    """The params entry of a dataset: a built-in generator's, or a dataset from files' {path,
    learning_check}."""
    if is_file_dataset(params, name):
        return params.datasets.files[name]
    cfg = getattr(params.datasets, name, None) if name in DATASETS else None
    if name not in GENERATORS:
        raise DatasetError(f"unknown dataset {name!r} (known: {', '.join(GENERATORS)}, and the datasets from "
                           f"files of the params: {', '.join(params.datasets.files) or 'none'})")
    if cfg is None:
        raise DatasetError(f"dataset {name!r} is not in the params {params.name!r} (datasets: "
                           f"{', '.join(params.dataset_names) or 'none'})")
    return cfg


def cache_key(params, name: str) -> dict:
    """What a built dataset depends on: generator (version + source hashes), seed, that dataset's params."""
    cfg = dataset_params(params, name)
    if is_file_dataset(params, name):
        folder = cfg.folder()
        return {"dataset": name, "generator": file_datasets.FILE_GENERATOR,
                "generator_version": file_datasets.FILE_VERSION,
                "seed": params.seed, "params": cfg.model_dump(mode="json"),
                "sources": {f: _file_sha(folder / f) for f in ("train.jsonl", "test.jsonl")}
                | {"datasets.py": _file_sha(__file__),  # the build
                   "file_datasets.py": _file_sha(file_datasets.__file__)}}  # the normalisation
    module, _ = _generator(name)
    version = GENERATOR_VERSION.get(name) or str(getattr(module, "GENERATOR_VERSION", "1"))
    # a generator's sources: every file beside its module whose name starts with the module's name
    # (lib/semantic.py and lib/semantic_tree.yaml), and the nonsense-word generator
    mod_file = Path(module.__file__)
    sources = {f.name: _file_sha(f) for f in sorted(mod_file.parent.glob(f"{mod_file.stem}*")) if f.is_file()}
    sources["words.py"] = _file_sha(ROOT / "lib" / "words.py")
    if name == "reversal_curse":
        files = {*RC_TRAIN.values(), *RC_TEST.values(), "d2p_prompts_test.jsonl", "both_prompts_test.jsonl"}
        sources.update({f: _file_sha(REVERSAL_CURSE_DIR / f) for f in sorted(files)})
    return {"dataset": name, "generator": GENERATORS[name], "generator_version": version, "seed": params.seed,
            "params": cfg.model_dump(mode="json"), "sources": sources}


def validate(name: str, train: list[dict], test: list[dict]) -> None:
    """Raise DatasetError naming the first way the rows break the data contract."""
    def fail(msg):
        raise DatasetError(f"{name}: {msg}")

    if not train:
        fail("empty dataset: no training documents")
    if not test:
        fail("empty dataset: no test items")
    for r in train:
        for key, typ in (("id", str), ("text", str), ("sentences", list), ("facts", list)):
            if not isinstance(r.get(key), typ):
                fail(f"train row {r.get('id')!r}: field {key!r} missing or not a {typ.__name__}")
        if not r["text"].strip():
            fail(f"train row {r['id']!r}: empty text")
        if "prompt" in r and r["prompt"] + r.get("completion", "") != r["text"]:
            fail(f"train row {r['id']!r}: text != prompt + completion")
    if len({r["id"] for r in train}) != len(train):
        fail("duplicate train ids")
    splits = SPLITS.get(name)
    for x in test:
        for key, typ in (("id", str), ("split", str), ("subset", str), ("prompt", str), ("options", list),
                         ("gold", int), ("support", list)):
            if not isinstance(x.get(key), typ):
                fail(f"test item {x.get('id')!r}: field {key!r} missing or not a {typ.__name__}")
        if splits and x["split"] not in splits:
            fail(f"test item {x['id']!r}: split {x['split']!r} is not one of {splits}")
        if len(x["options"]) < 2 or not all(isinstance(o, str) and o for o in x["options"]):
            fail(f"test item {x['id']!r}: needs at least 2 non-empty options")
        if not 0 <= x["gold"] < len(x["options"]):
            fail(f"test item {x['id']!r}: gold {x['gold']} out of range")
        if x["prompt"].endswith((" ", "\n")) or any(o.startswith((" ", "\n")) for o in x["options"]):
            fail(f"test item {x['id']!r}: the prompt ends with, or an option starts with, whitespace")
        if "golds" in x and (not isinstance(x["golds"], list) or x["gold"] not in x["golds"]
                             or not all(isinstance(g, int) and 0 <= g < len(x["options"])
                                        for g in x["golds"])):
            fail(f"test item {x['id']!r}: golds must be a list of option indices that holds gold")
        if not isinstance(x.get("cluster"), str) or not x["cluster"]:
            fail(f"test item {x['id']!r}: field 'cluster' missing or not a non-empty str")
        if "valid" in x and x["gold"] not in x["valid"]:
            fail(f"test item {x['id']!r}: gold is not among its valid options")
    if len({x["id"] for x in test}) != len(test):
        fail("duplicate test ids")


def _manifest(name, key, train, test, paths, learning_check: str | None = None) -> dict:
    splits = [s for s in SPLITS.get(name, []) if any(x["split"] == s for x in test)]
    splits += sorted({x["split"] for x in test} - set(splits))
    per = {s: [x for x in test if x["split"] == s] for s in splits}
    return {"dataset": name, "generator": key["generator"], "generator_version": key["generator_version"],
            "seed": key["seed"], "params": key["params"], "learning_check": learning_check,
            "n_train": len(train),
            "counts": {s: len(xs) for s, xs in per.items()},
            "chance": {s: sum(map(chance, xs)) / len(xs) for s, xs in per.items()},
            "n_options": {s: [min(len(x["options"]) for x in xs), max(len(x["options"]) for x in xs)]
                          for s, xs in per.items()},
            "sha256": {f: runs.sha256_file(paths[f]) for f in ("train.jsonl", "test.jsonl")}}


def data_dir(params, name: str) -> Path:
    return runs.run_dir(params) / "data" / name


def build(params, name: str, *, force: bool = False) -> Path:
    """Build one dataset (or reuse it when its stamp matches) and return its folder."""
    out = data_dir(params, name)
    key = cache_key(params, name)
    reason = None if force else runs.stale_reason(out, key)
    if reason is None and not force:
        return out
    if reason not in ("not built", "inputs changed", None):
        warnings.warn(f"dataset {name!r} in {out}: {reason}; rebuilding it")
    t0 = time.time()
    cfg = dataset_params(params, name)
    if is_file_dataset(params, name):
        train, test = read_file_dataset(params, name)  # every problem at once, before anything is touched
        runs.invalidate(out)  # from here on, a killed build leaves no stamp
    else:
        _, make = _generator(name)
        runs.invalidate(out)
        train, test = make(cfg, params.seed)
    validate(name, train, test)
    _check_option_count(name, cfg, test)
    paths = {f: out / f for f in FILES}
    runs.write_jsonl(paths["train.jsonl"], train)
    runs.write_jsonl(paths["test.jsonl"], test)
    manifest = _manifest(name, key, train, test, paths, learning_check_split(name, params))
    runs.write_json(paths["manifest.json"], manifest)
    # the card shows chance and the shortcut baselines beside each split
    card = cards.write_card(out, manifest, train, test, baselines.table(train, test, name))
    runs.mark_fresh(out, key, outputs=[*paths.values(), card], seconds=round(time.time() - t0, 2))
    return out


def _check_option_count(name: str, cfg, test: list[dict]) -> None:
    """A params file's `n_options` must be what the items got: a generator that cannot find that many
    distractors is an error naming the most it could give, never a silent change of the test."""
    asked = getattr(cfg, "n_options", None)
    if asked is None or not test:
        return
    most = max(len(x["options"]) for x in test)
    if most < asked:
        raise DatasetError(f"{name}: datasets.{name}.n_options: {asked} asked, but the generator finds at "
                           f"most {most} options per item for these params; give n_options <= {most}")


def build_all(params) -> dict[str, Path]:
    """Build every dataset named in the params. Datasets whose generator is missing or rejects its params
    (DatasetError / ValueError) are reported together in one DatasetError, after the others are built."""
    out, errors = {}, []
    for name in params.dataset_names:
        try:
            out[name] = build(params, name)
        except ValueError as e:
            errors.append(_named(name, e))
    if errors:
        raise DatasetError(f"{len(errors)} dataset(s) could not be built "
                           f"(built: {', '.join(out) or 'none'}):\n  " + "\n  ".join(errors))
    return out


def _named(name: str, err: Exception) -> str:
    msg = str(err)
    return msg if msg.startswith((name, f"dataset {name!r}")) else f"{name}: {msg}"


def load(params, name: str) -> tuple[list[dict], list[dict], dict]:
    """(train rows, test items, manifest) of a dataset, built first when missing or stale."""
    out = build(params, name)
    return (runs.read_jsonl(out / "train.jsonl"), runs.read_jsonl(out / "test.jsonl"),
            runs.read_json(out / "manifest.json"))


def counts_table(params_or_manifests):
    """Counts, options and chance per dataset x split, from the manifests (params: every built dataset)."""
    import pandas as pd

    if isinstance(params_or_manifests, (list, tuple)):
        manifests = list(params_or_manifests)
    else:
        manifests = [runs.read_json(data_dir(params_or_manifests, n) / "manifest.json")
                     for n in params_or_manifests.dataset_names
                     if (data_dir(params_or_manifests, n) / "manifest.json").is_file()]
    rows = [{"dataset": m["dataset"], "split": s, "n_train_docs": m["n_train"], "n_items": n,
             "n_options": "-".join(map(str, sorted(set(m["n_options"][s])))),
             "chance": round(m["chance"][s], 4),
             "learning_check": s == _learning_check_or_none(m)}
            for m in manifests for s, n in m["counts"].items()]
    return pd.DataFrame(rows)


def baselines_table(params):
    """lib.baselines.table for every dataset the params build (data loaded, and built when missing)."""
    import pandas as pd

    frames = [baselines.table(*load(params, name)[:2], name) for name in params.dataset_names]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["dataset", "split", "baseline", "acc", "chance", "n", "by_definition"])


def _learning_check_or_none(manifest: dict) -> str | None:
    try:
        return learning_check_split(manifest["dataset"], manifest)
    except DatasetError:
        return None


# ============================================================================================== checks
def continuation_tokens(tokenizer, prompt: str, option: str) -> tuple[list[int], bool]:
    """The scorer's lm-eval split of prompt + " " + option (lib.models.encode_pair), as the data check sees
    it.
    Returns (continuation ids, whether the joint encoding starts with the prompt's own tokens)."""
    from .models import encode_pair

    ctx, cont = encode_pair(tokenizer, prompt, " " + option)
    return cont, ctx == tokenizer.encode(prompt, add_special_tokens=False)


def check_row(name: str, n: int, bad: list, show=str) -> dict:
    """One row of a data-check table (here, lib.semantic.check, lib.derivatoids.check): the check's name, how
    many things it looked at, how many failed, ok, and the first failure as `show` prints it."""
    return {"check": name, "n": n, "failed": len(bad), "ok": not bad, "example": show(bad[0]) if bad else ""}


def check(train: list[dict], test: list[dict], tokenizer=None):
    """The data checks, one row each: check, n checked, n failed, ok, an example failure.

    - each training document's sentences, joined, give its text (up to whitespace);
    - no test item's prompt + " " + gold appears verbatim in any training document;
    - every support fact of every test item is stated in some training document;
    - every option is a non-empty continuation under the tokenizer (default: the bundled one), and the
      joint encoding keeps the prompt's tokens (so the option's log-prob is exactly the continuation's);
    - options are distinct, and none is shown in its prompt;
    - gold is among the valid options, where items list them."""
    import pandas as pd

    if tokenizer is None:
        from .models import bundled_tokenizer

        tokenizer = bundled_tokenizer()
    corpus = "\n\x00\n".join(r["text"] for r in train)
    facts = {f for r in train for f in r["facts"]}
    rows = []

    def add(name, items, bad, show):
        rows.append(check_row(name, len(items), bad, show))

    add("train sentences reassemble the text", train,
        [r for r in train if re.sub(r"\s+", "", "".join(r["sentences"])) != re.sub(r"\s+", "", r["text"])],
        lambda r: r["id"])
    add("test prompt + gold not verbatim in train", test,
        [x for x in test if f"{x['prompt']} {x['options'][x['gold']]}" in corpus], lambda x: x["id"])
    add("every support fact in train", test, [x for x in test if not set(x["support"]) <= facts],
        lambda x: f"{x['id']}: {sorted(set(x['support']) - facts)}")
    pairs = [(x, o) for x in test for o in x["options"]]
    enc = [(x, o, *continuation_tokens(tokenizer, x["prompt"], o)) for x, o in pairs]
    add("options tokenise to non-empty continuations", pairs, [(x, o) for x, o, c, _ in enc if not c],
        lambda b: f"{b[0]['id']}: {b[1]!r}")
    add("prompt tokens unchanged by the continuation", pairs, [(x, o) for x, o, _, same in enc if not same],
        lambda b: f"{b[0]['id']}: {b[1]!r}")
    add("options distinct", test, [x for x in test if len(set(x["options"])) != len(x["options"])],
        lambda x: x["id"])
    add("no option shown in its prompt", test,
        [x for x in test if any(o in x["prompt"] for o in x["options"])], lambda x: x["id"])
    with_valid = [x for x in test if "valid" in x]
    if with_valid:
        add("gold among the valid options", with_valid,
            [x for x in with_valid if x["gold"] not in x["valid"]], lambda x: x["id"])
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    """`python -m lib.datasets <params name> [--force]`: build every dataset of the params (`make data`)."""
    from . import params as P

    argv = list(sys.argv[1:] if argv is None else argv)
    force = "--force" in argv
    names = [a for a in argv if a != "--force"]
    if len(names) != 1:
        print("usage: python -m lib.datasets <params name> [--force]", file=sys.stderr)
        return 2
    try:
        p = P.load(names[0])
    except P.ParamsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = []
    for name in p.dataset_names:
        t0 = time.time()
        try:
            build(p, name, force=force)
            out = data_dir(p, name)
            shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
            print(f"{name}: {shown} ({time.time() - t0:.1f} s)", flush=True)
        except ValueError as e:
            failed.append(name)
            print(f"FAILED: {_named(name, e)}", file=sys.stderr, flush=True)
    print(counts_table(p).to_string(index=False))
    return 1 if failed else 0


if __name__ == "__main__":
    from lib.datasets import main as _main  # one copy of the module (the registry imports lib.datasets)

    sys.exit(_main())
