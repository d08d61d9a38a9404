"""Shortcut baselines (lib.baselines): the scoring rule on hand-made items, and the at-chance bound of every
split at `paper` sizes (the bound of issue 13: every baseline within chance + 0.05, except those expected off
chance by the split's definition, listed in baselines.BY_DEFINITION)."""
import pytest

from lib import baselines as B
from lib import datasets as D
from lib import params as P


def _item(i, options, gold, prompt="p", split="s", golds=None):
    it = {"id": f"i{i}", "split": split, "prompt": prompt, "options": options, "gold": gold, "support": []}
    if golds:
        it["golds"] = golds
    return it


def test_ties_are_credited_fractionally_and_golds_count():
    it = _item(0, ["a", "b", "c", "d"], 0, golds=[0, 1])
    assert B.credit([1, 1, 0, 0], it) == 1.0
    assert B.credit([1, 1, 1, 1], it) == 0.5  # = chance: |golds| / n_options
    assert B.credit([0, 1, 1, 0], it) == 0.5
    assert B.credit([0, 0, 1, 0], it) == 0.0


def test_leave_one_out_prior_finds_an_answer_string_that_is_always_gold():
    # "yes" is gold in every item: the prior (from the other items) picks it every time
    items = [_item(i, ["yes", f"no{i % 3}"] if i % 2 else [f"no{i % 3}", "yes"], 1 - i % 2) for i in range(12)]
    t = B.table([{"id": "t", "text": "x", "sentences": ["x"], "facts": []}], items, "toy")
    row = t.set_index("baseline").loc["prior_option"]
    assert row.acc == 1.0 and row.chance == 0.5
    # and it is at chance when each string is gold as often as it is a distractor
    items = [_item(i, ["yes", "no"], i % 2) for i in range(12)]
    t = B.table([{"id": "t", "text": "x", "sentences": ["x"], "facts": []}], items, "toy")
    assert t.set_index("baseline").loc["prior_option"].acc <= 0.5


def test_overlap_and_cooccurrence_read_the_prompt_and_the_training_sentences():
    train = [{"id": "t", "text": "glon are zimp.", "sentences": ["glon are zimp."], "facts": []}]
    it = _item(0, ["zimp", "frab"], 0, prompt="So glon are")
    assert B.scores(train, [it], "toy")["cooccurrence"][0] == [1.0, 0.0]
    it2 = _item(1, ["glon x", "frab"], 1, prompt="glon are")
    assert B.scores(train, [it2], "toy")["overlap_max"][0] == [1, 0]


@pytest.fixture(scope="module")
def paper_tables():
    p = P.load("paper")
    out = {}
    for name in p.dataset_names:
        _, make = D._generator(name)
        train, test = make(D.dataset_params(p, name), p.seed)
        out[name] = B.table(train, test, name)
    return out


def test_every_baseline_at_chance_at_paper_sizes(paper_tables):
    bad = []
    for name, t in paper_tables.items():
        for r in t.itertuples():
            if not r.by_definition and r.acc > r.chance + 0.05:
                bad.append(f"{name}/{r.split}/{r.baseline}: {r.acc:.3f} > chance {r.chance:.3f} + 0.05")
    assert not bad, "\n".join(bad)


def test_by_definition_baselines_are_the_expected_ones(paper_tables):
    t = paper_tables["simple_reversals"].set_index(["split", "baseline"]).acc
    assert t["forward", "copy_relation"] == 1.0 and t["reversal", "copy_relation"] == 0.0
    rc = paper_tables["reversal_curse"].set_index(["split", "baseline"]).acc
    assert rc["reversal", "prior_option"] > 0.9  # the paper's targets pool: the gold is never a distractor
    assert rc["reversal_p2d", "prior_option"] <= 0.3
