"""The semantic structure benchmark: determinism, coverage, no leaks, false distractors, clean options."""
from __future__ import annotations

import json
import re

import pytest

from lib import params as P
from lib import semantic as S


@pytest.fixture(scope="module")
def cfg():
    return P.load("smoke").datasets.semantic_structure


@pytest.fixture(scope="module")
def data(cfg):
    return S.make_semantic_structure(cfg, 0)


@pytest.fixture(scope="module")
def world(cfg):
    return S.make_world(cfg, 0)


def test_same_seed_same_rows_other_seed_differs(cfg, data):
    again = S.make_semantic_structure(cfg, 0)
    assert json.dumps(again) == json.dumps(data)
    assert json.dumps(S.make_semantic_structure(cfg, 1)) != json.dumps(data)


def test_tree_file_is_real_and_large_enough():
    tree = S._load_tree()
    assert len(tree["order"]) >= 110
    assert tree["parent"]["poodle"] == "dog" and tree["parent"]["dog"] == "mammal"
    assert all(1 <= len(p) <= 6 for p in tree["props"].values())


def test_world_is_a_connected_subtree_with_holdout_leaves(cfg, world):
    cats = set(world["categories"])
    assert len(cats) == cfg.n_categories
    assert all(world["parent"][c] is None or world["parent"][c] in cats for c in cats)
    assert world["holdouts"] and all(not world["children"][h] for h in world["holdouts"])


def test_all_splits_and_subsets_present(data):
    _, items = data
    have = {(it["split"], it["subset"]) for it in items}
    want = {(s, sub) for s, subs in S.SUBSETS.items() for sub in subs}
    assert want <= have


def test_documents_respect_the_contract(cfg, data):
    rows, _ = data
    assert len(rows) == cfg.n_documents
    for r in rows:
        assert cfg.min_sentences <= len(r["sentences"]) <= cfg.max_sentences
        sep = " " if r["style"] == "prose" else "\n"
        assert sep.join(r["sentences"]) == r["text"]
        assert len(r["text_real"].split("\n")) == len(r["text"].split("\n"))
    assert {r["style"] for r in rows} == set(S.STYLES) or len(rows) < 8


def test_every_tested_fact_is_trained_and_holdouts_only_have_their_parent(data, world):
    rows, items = data
    stated = {f for r in rows for f in r["facts"]}
    assert stated == set(world["trained"])  # every trainable fact appears somewhere
    for it in items:
        assert set(it["support"]) <= stated, it
    hold = set(world["holdouts"])
    for f in stated:
        subj, rel, _ = world["facts"][f]
        assert subj not in hold or rel == "isa", f
    # the holdouts' own properties are true in the world but never said
    for h in hold:
        for rel, v in world["props"][h]:
            assert f"{rel}:{h}:{v}" not in stated


def test_inherited_properties_are_never_stated_for_the_child(data, world):
    rows, _ = data
    for r in rows:
        for f in r["facts"]:
            subj, rel, v = world["facts"][f]
            assert rel == "isa" or (rel, v) in world["props"][subj]  # only owners state their properties


def test_no_test_prompt_and_gold_verbatim_in_train(data):
    rows, items = data
    train = "\n".join(r["text"] for r in rows)
    train_real = "\n".join(r["text_real"] for r in rows)
    for it in items:
        assert it["prompt"] + " " + it["options"][it["gold"]] not in train, it["id"]
        # the real twin: as a whole statement (real "swim" is a prefix of "swim upstream"; nonsense words are not)
        real = it["prompt_real"] + " " + it["options_real"][it["gold"]]
        assert not re.search(re.escape(real) + r"(\.|$)", train_real, flags=re.M), it["id"]


def _key(world, real_option, is_category):
    if is_category:
        return {world["plural"][c]: c for c in world["categories"]}[real_option]
    return real_option


def test_gold_is_true_and_every_distractor_is_false_in_the_world(data, world):
    _, items = data
    n_checked = 0
    for it in items:
        t = it["truth"]
        for j, opt in enumerate(it["options_real"]):
            if t["answer"] == "subject":  # reversal: the option is the subject
                ok = S.holds(world, _key(world, opt, True), t["relation"], t["value"])
            else:
                ok = S.holds(world, t["subject"], t["relation"], _key(world, opt, t["relation"] == "isa"))
            assert ok == (j == it["gold"]), (it["id"], opt)
            n_checked += 1
        assert len(set(it["options"])) == len(it["options"]) >= 2
    assert n_checked > 2 * len(items)


def test_distractors_bear_the_relation_to_another_entity(data, world):
    _, items = data
    for it in items:
        t = it["truth"]
        for j, opt in enumerate(it["options_real"]):
            if j == it["gold"]:
                continue
            if t["answer"] == "value" and t["relation"] != "isa":
                assert any((t["relation"], opt) in world["props"][c] for c in world["categories"])
            elif t["answer"] == "value":
                assert _key(world, opt, True) in world["parent"].values()  # a parent of some category
            else:
                c = _key(world, opt, True)
                assert world["parent"][c] if t["relation"] == "isa" else world["props"][c]


def test_options_continue_the_prompt_and_tokenise(data, bundled_tokenizer):
    _, items = data
    tok = bundled_tokenizer
    for it in items:
        assert not it["prompt"].endswith(" ") and it["prompt"] == it["prompt"].strip()
        words = set(re.findall(r"\w+", it["prompt"]))
        for opt in it["options"]:
            assert opt and not opt.startswith(" ") and opt not in words and opt not in it["prompt"]
            ctx = tok(it["prompt"], add_special_tokens=False)["input_ids"]
            whole = tok(it["prompt"] + " " + opt, add_special_tokens=False)["input_ids"]
            assert whole[: len(ctx)] == ctx and len(whole) > len(ctx), (it["id"], opt)


def test_nonsense_text_has_no_real_content_word(data, world):
    rows, items = data
    from lib.words import is_english

    assert not any(is_english(w) for w in world["lexicon"].values())
    text = "\n".join(r["text"] for r in rows) + "\n".join(it["prompt"] + " " + " ".join(it["options"]) for it in items)
    for phrase in world["lexicon"]:
        assert not re.search(rf"\b{re.escape(phrase)}\b", text, flags=re.I), phrase


def test_too_few_documents_is_one_clear_error(cfg):
    with pytest.raises(ValueError, match="n_documents"):
        S.make_semantic_structure(cfg.model_copy(update={"n_documents": 2}), 0)
    with pytest.raises(ValueError, match="n_categories"):
        S.make_semantic_structure(cfg.model_copy(update={"n_categories": 1000}), 0)


def test_draw_tree_marks_the_holdouts(world):
    import matplotlib

    matplotlib.use("Agg")
    fig = S.draw_tree(world)
    texts = [t for t in fig.axes[0].texts]
    assert len(texts) == len(world["categories"])
    red = [t.get_text() for t in texts if t.get_color() == "tab:red"]
    assert len(red) == len(world["holdouts"])


def test_world_checks_pass_and_catch_a_true_distractor(data, world):
    rows, items = data
    assert S.check(world, rows, items)["ok"].all()
    bad = json.loads(json.dumps(items))
    it = next(i for i in bad if i["split"] == "reversal" and i["subset"] == "category")
    truthy = next(c for c in world["categories"]
                  if S.holds(world, c, "isa", it["truth"]["value"]) and world["plural"][c] not in it["options_real"])
    it["options_real"][(it["gold"] + 1) % len(it["options_real"])] = world["plural"][truthy]
    res = S.check(world, rows, bad).set_index("check")
    assert not res.loc["every distractor is false in the world", "ok"]


def test_clusters_and_neighbourhood_distractors(data, world):
    rows, items = data
    assert all(x["cluster"] == x["truth"]["subject"] for x in items)
    root = lambda c: ([c, *S.ancestors(world, c)])[-1]
    plural_to_cat = {world["plural"][c]: c for c in world["categories"]}
    cross = n = 0
    for x in items:
        if x["truth"]["answer"] == "subject" or x["truth"]["relation"] == "isa":
            for j, o in enumerate(x["options_real"]):
                if j != x["gold"]:
                    n += 1
                    cross += root(plural_to_cat[o]) != root(x["truth"]["subject"])
    assert n and cross / n < 0.5  # most category distractors come from the gold's own top-level domain


@pytest.mark.parametrize("name,least", [("cpu", 5), ("paper", 8)])
def test_holdout_rests_on_enough_categories(name, least):
    from lib import params as P

    p = P.load(name)
    world = S.make_world(p.datasets.semantic_structure, p.seed)
    assert len(world["holdouts"]) >= least
