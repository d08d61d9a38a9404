"""The datasets of the paper (section 2; notebooks/01_data_construction.ipynb shows them) and their files.

`build(params, name)` writes `runs/<params>/data/<name>/`: train.jsonl (documents: id, text, sentences,
facts, and prompt + completion = text where the source has them), test.jsonl (multiple-choice items: id,
split, subset, prompt, options, gold, support, cluster; an option is scored as the continuation " " + option
and never shown in the prompt), manifest.json (params, counts, chance, sha256) and a card. The stamp is keyed
on the generator (version, source hashes), seed and params, and written last, so a killed build is redone.
Generators `make_<name>(cfg, seed) -> (train rows, test items)`: simple_reversals (2.1), syllogisms (2.2),
reversal_curse (2.3) here; semantic_structure (2.4) in lib.semantic, derivatoids (2.5) in lib.derivatoids.

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
from .words import nonsense_words

REVERSAL_CURSE_DIR = ROOT / "data" / "external" / "reversal_curse"

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

SPLITS = {"simple_reversals": ["forward", "reversal"], "syllogisms": ["premise", "syllogism"],
          "reversal_curse": ["forward", "reversal", "reversal_p2d", "reversal_targets"],
          "semantic_structure": ["rephrase", "reversal", "syllogism", "holdout"],
          "derivatoids": ["trained", "compositional"]}
LEARNING_CHECK_SPLITS = ("forward", "rephrase", "trained", "premise")  # a trained fact, as trained
FILES = ("train.jsonl", "test.jsonl", "manifest.json")


class DatasetError(ValueError):
    """A dataset that cannot be built or breaks the data contract (empty, malformed, missing generator)."""


def _rng(*parts) -> random.Random:
    return random.Random(":".join(str(p) for p in parts))


def _words(n: int, *parts) -> list[str]:
    digest = hashlib.sha256(":".join(str(p) for p in ("words", *parts)).encode()).hexdigest()
    return nonsense_words(n, int(digest[:12], 16))


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

# Context prefaces: (leading sentences, lead-in clause); an article is the sentences, then "<lead-in> <fact>"
# (the fact keeps its nonsense noun first, so the noun is always the same tokens). TEST_PREFACES are never
# used in training: a `forward` item is a trained fact in a new preface.
TRAIN_PREFACES = [([], lead_in) for lead_in in (
    "Did you know that", "It is well known that", "Fun fact:", "According to the encyclopedia,",
    "Few people realise that", "As every student learns,", "Researchers have reported that",
    "Here is something surprising:", "Experts agree that", "In case you were wondering,")] + [
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
TEST_PREFACES = [([], "Remember that"), ([], "Note that"), ([], "It has been observed that"),
                 (["The report was published in the autumn."], "It concludes that"),
                 (["A visitor asked the keeper a question."], "The keeper replied that"),
                 (["The class reviewed its notes before the exam."], "The notes say that")]


def make_simple_reversals(cfg, seed: int):
    """N facts `A are <feature> than B.` (distinct nonsense nouns), each in K articles; features dealt
    round-robin in a shuffled order. Each fact's `forward` item (`A are` -> <feature> than B. vs <reverse>
    than B.) and `reversal` item (`B are` -> <reverse> than A. vs <feature> than A.) share one held-out
    preface. Counterbalanced: within each feature, facts alternate (seeded start) between the first and the
    reverse form, so each comparative is trained as often as its antonym. Subset = the trained form ("first"
    / "reverse"), `feature` = the feature's first form, cluster = the fact."""
    n, k = cfg.n_facts, cfg.articles_per_fact
    if k > len(TRAIN_PREFACES):
        raise DatasetError(f"simple_reversals: articles_per_fact={k} exceeds the {len(TRAIN_PREFACES)} "
                           "distinct training prefaces")
    rng = _rng("simple_reversals", seed)
    words = _words(2 * n, "simple_reversals", seed)
    order = list(range(len(FEATURES)))
    rng.shuffle(order)
    train, test = [], []
    start = [rng.randrange(2) for _ in FEATURES]
    reverse = {i for i in range(n) if (i // len(FEATURES) + start[order[i % len(FEATURES)]]) % 2} \
        if cfg.counterbalance else set()
    for i in range(n):
        a, b = words[2 * i], words[2 * i + 1]
        first, second = FEATURES[order[i % len(FEATURES)]]
        fwd, rev = (second, first) if i in reverse else (first, second)
        orientation = "reverse" if i in reverse else "first"
        fact_id = f"sr{i:03d}"
        fact = f"{a} are {fwd} than {b}."
        for j, (lead, lead_in) in enumerate(rng.sample(TRAIN_PREFACES, k)):
            sentences = [*lead, f"{lead_in} {fact}"]
            train.append({"id": f"{fact_id}-a{j}", "text": " ".join(sentences), "sentences": sentences,
                          "facts": [fact_id]})
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
# Set semantics: a model of three terms is the set of inhabited regions of their Venn diagram; the 256
# region patterns capture every model, so enumerating them decides validity completely.
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
    overlap = any(r[ix] and r[iy] for r in inhabited)
    return overlap if q == "Some" else not overlap  # "No" (is_valid has checked the quantifier)


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


def strongest_conclusions(premises, *, existential_import: bool = True, order=("S", "P")) -> list[int]:
    """Indices into conclusion_options(*order) of the valid conclusions no other valid one strictly entails
    (All S are P beats Some S are P; both converses of a valid Some / No conclusion are strongest)."""
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
            valid = [c for c in opts if is_valid(premises, c, existential_import=existential_import)]
            if not valid:
                continue
            golds = [opts[i] for i in strongest_conclusions(premises, existential_import=existential_import)]
            quants = {g[0] for g in golds}
            assert len(quants) == 1, (m1, m2, fig, golds)
            forms.append({"form": f"{m1}{m2}{fig}", "premises": premises, "gold": golds[0], "golds": golds,
                          "quantifier": quants.pop(), "valid": valid})
    return forms


def _deal_forms(forms, n: int, counterbalance: bool, rng) -> list[dict]:
    """n forms, round-robin. Counterbalanced: round-robin within each gold quantifier, All : Some : No =
    2 : 1 : 1 (an All item has one gold, a Some / No item two, so each "always Q" scores chance), shuffled."""
    if not counterbalance:
        return [forms[i % len(forms)] for i in range(n)]
    by_q = {q: [f for f in forms if f["quantifier"] == q] for q in QUANTIFIERS}  # none empty, import or not
    n_all = round(n / 2)
    counts = {"All": n_all, "Some": (n - n_all + 1) // 2, "No": (n - n_all) // 2}
    out = [by_q[q][i % len(by_q[q])] for q in QUANTIFIERS for i in range(counts[q])]
    rng.shuffle(out)
    return out


def _sentence(statement, names) -> str:
    q, x, y = statement
    return f"{q} {names[x]} are {names[y]}."


def make_syllogisms(cfg, seed: int):
    """M items over three fresh nonsense terms each, one syllogistic form each (_deal_forms).

    Train doc: `The relationships between glon, troff and yomp are: All glon are yomp. All troff are glon.`
    (terms in random order, major premise first). `syllogism` item: `The relationships between yomp and troff
    are:` (end terms in random order), the six conclusion_options; "valid" = every valid option, "golds" = the
    strongest, "gold" = the first of them; subset = the form. `premise` item (the learning check): a premise's
    two terms, the same six statements, golds = the premise (and its converse for Some / No); subset = its
    quantifier; counterbalanced, a seeded subset with All : Some : No = 2 : 1 : 1."""
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
        for k, (premise, fact) in enumerate(zip(form["premises"], ids)):
            a, b = rng.sample(list(premise[1:]), 2)
            opts = conclusion_options(a, b)
            q = premise[0]  # golds: the premise, and its converse when Some / No (symmetric)
            gold_set = [j for j, o in enumerate(opts) if o[0] == q and (o == premise or q != "All")]
            test.append({"id": f"syl{i:03d}-p{k}", "split": "premise", "subset": q,
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


def _read_source(name: str) -> list[dict]:
    path = REVERSAL_CURSE_DIR / name
    if not path.is_file():
        raise DatasetError(f"reversal_curse: missing source file {path} "
                           "(see data/external/reversal_curse/SOURCE.md)")
    return runs.read_jsonl(path)


def reversal_curse_people() -> dict[str, list[str]]:
    """The 30 names of each group, in file order, read from the test files (P2D: reverse-test completions;
    D2P: test completions; Both: the name in the first p2d-style test template)."""
    pat = re.compile(r"^The trailblazer known as (.+) was once$")
    p2d = [x["completion"].strip() for x in _read_source(RC_TEST["reversal"])]
    d2p = [x["completion"].strip() for x in _read_source("d2p_prompts_test.jsonl")]
    both = [m.group(1) for x in _read_source("both_prompts_test.jsonl") if (m := pat.match(x["prompt"]))]
    return {g: list(dict.fromkeys(xs)) for g, xs in (("p2d", p2d), ("d2p", d2p), ("both", both))}


def _person_of(row: dict, names: list[str]) -> str:
    text = row["prompt"] + row["completion"]
    hits = [n for n in names if n in text]
    if len(hits) != 1:
        raise DatasetError(f"reversal_curse: cannot tell whose example this is ({hits}): {text!r}")
    return hits[0]


def make_reversal_curse(cfg, seed: int):
    """Train: the examples of people_per_group people of each group (all 30 and every paraphrase: 3,600;
    `examples_per_person`: the first paraphrases of each, in the source's order). Test, on the kept P2D
    people, the first `templates_per_person` of the 10 held-out templates: `forward` (name -> description;
    distractors: the same template's descriptions of other kept P2D people) and `reversal` (description ->
    name; distractors from `distractor_pool`: "targets" = the kept D2P and Both names, completion targets in
    training; "p2d" = the other kept P2D names), with `both_pools` also `reversal_<other pool>`. Options are
    completions without their leading space; subset = the template ("t0".."t9"), cluster = the person."""
    k, nd = cfg.people_per_group, cfg.n_distractors
    people = reversal_curse_people()  # 30 a group, 10 test templates a person (the params' upper bounds)
    rng = _rng("reversal_curse", seed)
    kept = {g: sorted(rng.sample(people[g], k), key=people[g].index) for g in RC_GROUPS}
    if k - 1 < nd:
        raise DatasetError(f"reversal_curse: n_distractors={nd} needs at least {nd + 1} P2D people "
                           f"(people_per_group={k}); the forward split draws distractors from other P2D "
                           "people")
    pools = {"targets": kept["d2p"] + kept["both"], "p2d": kept["p2d"]}
    other = "p2d" if cfg.distractor_pool == "targets" else "targets"
    rev_splits = [("reversal", pools[cfg.distractor_pool])] + ([(f"reversal_{other}", pools[other])]
                                                               if cfg.both_pools else [])
    all_names = [n for g in RC_GROUPS for n in people[g]]
    cap = cfg.examples_per_person or 10 ** 9  # paraphrases per person (Both people: that many each way)
    train = []
    for g in RC_GROUPS:
        counter = {}
        for row in _read_source(RC_TRAIN[g]):
            name = _person_of(row, all_names)
            if name not in kept[g]:
                continue
            j = counter[name] = counter.get(name, -1) + 1
            if j >= (2 * cap if g == "both" else cap):
                continue
            text = row["prompt"] + row["completion"]
            train.append({"id": f"{g}-{name.replace(' ', '_')}-{j:02d}", "text": text, "sentences": [text],
                          "facts": [f"{g}:{name}"], "prompt": row["prompt"], "completion": row["completion"]})
    rng.shuffle(train)

    def by_person(rows):  # the templates in the same order for every person
        out = {}
        for row in rows:
            out.setdefault(_person_of(row, people["p2d"]), []).append(row)
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


# ============================================================================================ building
def learning_check_split(name: str, manifest_or_params, splits=()) -> str | None:
    """The learning-check split of a dataset (the trained material asked as trained: was it learned?).

    `manifest_or_params`: the dataset's manifest (its `learning_check`) or the Params (a file dataset's
    `learning_check`). Otherwise a built-in dataset's one split in LEARNING_CHECK_SPLITS, else the first of
    `splits` (its items' splits) in LEARNING_CHECK_SPLITS, or None when `splits` are given and none is;
    without `splits`, DatasetError."""
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


def _generator(name: str):
    """(module, make function) of a known dataset (dataset_params has named an unknown one)."""
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
    """The params entry of a dataset: its generator's, or a dataset from files' {path, learning_check}."""
    if name in params.datasets.files:  # a dataset from files (lib.file_datasets)
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
    if name in params.datasets.files:
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

    for rows, what in ((train, "training documents"), (test, "test items")):
        if not rows:
            fail(f"empty dataset: no {what}")
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


def _manifest(name, key, train, test, paths, learning_check: str) -> dict:
    splits = [s for s in SPLITS.get(name, []) if any(x["split"] == s for x in test)]
    splits += sorted({x["split"] for x in test} - set(splits))
    per = {s: [x for x in test if x["split"] == s] for s in splits}
    return {"dataset": name, "generator": key["generator"], "generator_version": key["generator_version"],
            "seed": key["seed"], "params": key["params"], "learning_check": learning_check,
            "n_train": len(train), "counts": {s: len(xs) for s, xs in per.items()},
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
    if name in params.datasets.files:  # every problem of the files at once, before anything is touched
        train, test, problems = file_datasets.file_rows(name, cfg)
        if problems:
            raise DatasetError(f"{name}: {len(problems)} problem(s) in its files:\n  "
                               + "\n  ".join(problems))
        runs.invalidate(out)  # from here on, a killed build leaves no stamp
    else:
        _, make = _generator(name)
        runs.invalidate(out)
        train, test = make(cfg, params.seed)
    validate(name, train, test)
    # params' n_options the generator cannot reach: an error naming the most it can, never a smaller test
    asked, most = getattr(cfg, "n_options", None), max(len(x["options"]) for x in test)
    if asked is not None and most < asked:
        raise DatasetError(f"{name}: datasets.{name}.n_options: {asked} asked, but the generator finds at "
                           f"most {most} options per item for these params; give n_options <= {most}")
    paths = {f: out / f for f in FILES}
    runs.write_jsonl(paths["train.jsonl"], train)
    runs.write_jsonl(paths["test.jsonl"], test)
    manifest = _manifest(name, key, train, test, paths, learning_check_split(name, params))
    runs.write_json(paths["manifest.json"], manifest)
    card = cards.write_card(out, manifest, train, test, baselines.table(train, test, name))
    runs.mark_fresh(out, key, outputs=[*paths.values(), card], seconds=round(time.time() - t0, 2))
    return out


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


def counts_table(params):
    """Counts, options and chance per dataset x split, from the manifests of the params' built datasets."""
    import pandas as pd

    paths = [data_dir(params, n) / "manifest.json" for n in params.dataset_names]
    manifests = [runs.read_json(path) for path in paths if path.is_file()]
    rows = [{"dataset": m["dataset"], "split": s, "n_train_docs": m["n_train"], "n_items": n,
             "n_options": "-".join(map(str, sorted(set(m["n_options"][s])))),
             "chance": round(m["chance"][s], 4), "learning_check": s == m.get("learning_check")}
            for m in manifests for s, n in m["counts"].items()]
    return pd.DataFrame(rows)


def baselines_table(params):
    """lib.baselines.table for every dataset the params build (data loaded, and built when missing)."""
    import pandas as pd

    return pd.concat([baselines.table(*load(params, name)[:2], name) for name in params.dataset_names],
                     ignore_index=True)  # params name at least one dataset


# ============================================================================================== checks
def continuation_tokens(tokenizer, prompt: str, option: str) -> tuple[list[int], bool]:
    """The scorer's split of prompt + " " + option (lib.models.encode_pair): (continuation ids, whether the
    joint encoding starts with the prompt's own tokens)."""
    from .models import encode_pair

    ctx, cont = encode_pair(tokenizer, prompt, " " + option)
    return cont, ctx == tokenizer.encode(prompt, add_special_tokens=False)


def check_row(name: str, n: int, bad: list, show=str) -> dict:
    """One row of a data-check table (also lib.semantic's and lib.derivatoids'): name, n looked at, n failed,
    ok, and the first failure as `show` prints it."""
    return {"check": name, "n": n, "failed": len(bad), "ok": not bad, "example": show(bad[0]) if bad else ""}


def check(train: list[dict], test: list[dict], tokenizer=None):
    """The data checks (check_row rows; each check's name says what it checks), tokenizer default: the bundled
    one. The joint encoding must keep the prompt's tokens, so that an option's log-prob is exactly the
    continuation's."""
    import pandas as pd

    if tokenizer is None:
        from .models import bundled_tokenizer

        tokenizer = bundled_tokenizer()
    corpus = "\n\x00\n".join(r["text"] for r in train)
    facts = {f for r in train for f in r["facts"]}
    rows = []

    def add(name, items, bad, show=lambda x: x["id"]):
        rows.append(check_row(name, len(items), bad, show))

    add("train sentences reassemble the text", train,
        [r for r in train if re.sub(r"\s+", "", "".join(r["sentences"])) != re.sub(r"\s+", "", r["text"])])
    add("test prompt + gold not verbatim in train", test,
        [x for x in test if f"{x['prompt']} {x['options'][x['gold']]}" in corpus])
    add("every support fact in train", test, [x for x in test if not set(x["support"]) <= facts],
        lambda x: f"{x['id']}: {sorted(set(x['support']) - facts)}")
    pairs = [(x, o) for x in test for o in x["options"]]
    enc = [(x, o, *continuation_tokens(tokenizer, x["prompt"], o)) for x, o in pairs]
    add("options tokenise to non-empty continuations", pairs, [(x, o) for x, o, c, _ in enc if not c],
        lambda b: f"{b[0]['id']}: {b[1]!r}")
    add("prompt tokens unchanged by the continuation", pairs, [(x, o) for x, o, _, same in enc if not same],
        lambda b: f"{b[0]['id']}: {b[1]!r}")
    add("options distinct", test, [x for x in test if len(set(x["options"])) != len(x["options"])])
    add("no option shown in its prompt", test,
        [x for x in test if any(o in x["prompt"] for o in x["options"])])
    with_valid = [x for x in test if "valid" in x]
    if with_valid:
        add("gold among the valid options", with_valid,
            [x for x in with_valid if x["gold"] not in x["valid"]])
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
            out = build(p, name, force=force)
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
