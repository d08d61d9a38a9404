"""Derivatoids: determinism, the compositional split, and an independent re-implementation of the rules."""
from __future__ import annotations

import json
import re

import pytest

from lib import derivatoids as D
from lib import params as P


@pytest.fixture(scope="module")
def cfg():
    return P.load("smoke").datasets.derivatoids


@pytest.fixture(scope="module")
def data(cfg):
    return D.make_derivatoids(cfg, 0)


# --- a parser and the five rules written again from the module docstring, independent of lib.derivatoids
def _parse(s):
    toks = re.findall(r"\d+|[a-z]+|[()+*-]", s)
    pos = [0]

    def peek():
        return toks[pos[0]] if pos[0] < len(toks) else None

    def eat(t=None):
        tok = toks[pos[0]]
        assert t is None or tok == t, (s, tok, t)
        pos[0] += 1
        return tok

    def term():
        t = peek()
        if t == "(":
            eat("(")
            e = expr()
            eat(")")
            return e
        if t.isdigit():
            return ("scale", int(eat()), term())
        name = eat()
        eat("(")
        if peek() == "x":
            eat("x")
            eat(")")
            return ("atom", name)
        e = expr()
        eat(")")
        return ("nest", name, e)

    def expr():
        left = term()
        if peek() in ("+", "*", "-"):
            op = {"+": "sum", "*": "product", "-": "minus"}[eat()]
            return (op, left, term())
        return left

    e = expr()
    assert pos[0] == len(toks), s
    return e


def _rules(e, partner):
    op = e[0]
    if op == "atom":
        return ("atom", partner[e[1]])
    if op == "sum":
        return ("product", _rules(e[1], partner), _rules(e[2], partner))
    if op == "product":
        return ("minus", _rules(e[2], partner), e[1])
    if op == "nest":
        return ("nest", partner[e[1]], _rules(e[2], partner))
    return ("scale", e[1] + 1, _rules(e[2], partner))


def _copies(e, partner):
    """The outputs in which one node keeps a part of its input that the rules transform: an atom kept, a nest's
    symbol or inside kept, a scale's constant or scaled part kept, a sum kept a sum."""
    op, R = e[0], (lambda x: _rules(x, partner))
    if op == "atom":
        return [e]
    if op == "sum":
        return ([("sum", R(e[1]), R(e[2]))] + [("product", c, R(e[2])) for c in _copies(e[1], partner)]
                + [("product", R(e[1]), c) for c in _copies(e[2], partner)])
    if op == "product":  # the left factor is kept by the rule itself
        return [("minus", c, e[1]) for c in _copies(e[2], partner)]
    if op == "nest":
        return ([("nest", e[1], R(e[2])), ("nest", partner[e[1]], e[2])]
                + [("nest", partner[e[1]], c) for c in _copies(e[2], partner)])
    return ([("scale", e[1], R(e[2])), ("scale", e[1] + 1, e[2])]
            + [("scale", e[1] + 1, c) for c in _copies(e[2], partner)])


def _partner_table(rows):
    table = {}
    for r in rows:
        m = re.fullmatch(r"(\w+)\[(\w+)\(x\)\] = (\w+)\(x\)", r["text"])
        if m:
            table[m.group(2)] = m.group(3)
    return table


def test_same_seed_same_rows_other_seed_differs(cfg, data):
    assert json.dumps(D.make_derivatoids(cfg, 0)) == json.dumps(data)
    assert json.dumps(D.make_derivatoids(cfg, 1)) != json.dumps(data)


def test_partner_table_is_one_cycle(data):
    rows, _ = data
    table = _partner_table(rows)
    assert len(table) == D.N_SYMBOLS
    a, seen = next(iter(table)), set()
    while a not in seen:
        seen.add(a)
        a = table[a]
    assert len(seen) == D.N_SYMBOLS


def test_training_rows_follow_the_rules(data):
    rows, _ = data
    table = _partner_table(rows)
    for r in rows:
        assert r["text"] == r["prompt"] + r["completion"] and r["sentences"] == [r["text"]]
        m = re.fullmatch(r"\w+\[(.*)\] =", r["prompt"])
        assert D.show(_rules(_parse(m.group(1)), table)) == r["completion"].removeprefix(" ")


def test_gold_follows_the_rules_and_every_distractor_does_not(data):
    rows, items = data
    table = _partner_table(rows)
    for it in items:
        e = _parse(re.fullmatch(r"\w+\[(.*)\] =", it["prompt"]).group(1))
        right = D.show(_rules(e, table))
        assert it["options"][it["gold"]] == right
        assert [o for o in it["options"] if o == right] == [right]
        assert len(set(it["options"])) == len(it["options"]) >= 2
        for o in it["options"]:
            _parse(o)  # every option is a well-formed expression


@pytest.mark.parametrize("counterbalance", [True, False])
def test_counterbalanced_distractors_never_copy_a_part_the_rules_transform(cfg, counterbalance):
    rows, items = D.make_derivatoids(cfg.model_copy(update={"n_test": 40, "counterbalance": counterbalance}), 0)
    table = _partner_table(rows)
    n_copies = 0
    for it in items:
        e = _parse(re.fullmatch(r"\w+\[(.*)\] =", it["prompt"]).group(1))
        copies = {D.canonical(c) for c in _copies(e, table)}
        n_copies += sum(D.canonical(_parse(o)) in copies for o in it["options"])
    # balanced: none (a model that learnt nothing prefers copies); unbalanced: they are among the distractors
    assert (n_copies == 0) == counterbalance, n_copies


def test_compositional_split_holds_out_rule_pairs(data):
    rows, items = data
    trained = set()
    for r in rows:
        trained |= set(D.pairs(_parse(re.fullmatch(r"\w+\[(.*)\] =", r["prompt"]).group(1))))
    assert len(trained) == 12  # 16 pairs, 4 held out
    stated = {f for r in rows for f in r["facts"]}
    for it in items:
        ps = set(D.pairs(_parse(re.fullmatch(r"\w+\[(.*)\] =", it["prompt"]).group(1))))
        assert ps, it
        if it["split"] == "trained":
            assert ps <= trained
        else:
            assert ps - trained
        assert set(it["support"]) <= stated


def test_splits_subsets_no_leak_and_tokenisation(data, bundled_tokenizer):
    rows, items = data
    assert {(it["split"], it["subset"]) for it in items} == {(s, o) for s in ("trained", "compositional") for o in D.OPS}
    train = "\n".join(r["text"] for r in rows)
    tok = bundled_tokenizer
    for it in items:
        assert it["prompt"] + " " + it["options"][it["gold"]] not in train
        assert not it["prompt"].endswith(" ")
        ctx = tok(it["prompt"], add_special_tokens=False)["input_ids"]
        for o in it["options"]:
            assert o and not o.startswith(" ") and o not in it["prompt"]
            whole = tok(it["prompt"] + " " + o, add_special_tokens=False)["input_ids"]
            assert whole[: len(ctx)] == ctx and len(whole) > len(ctx)


def test_too_few_training_examples_is_one_clear_error(cfg):
    with pytest.raises(ValueError, match="n_train"):
        D.make_derivatoids(cfg.model_copy(update={"n_train": 5}), 0)


def test_library_checks_pass_and_catch_a_wrong_gold(data):
    rows, items = data
    assert D.check(rows, items)["ok"].all()
    assert all(D.parse(D.show(_parse(o))) == _parse(o) for it in items for o in it["options"])
    bad = json.loads(json.dumps(items))
    bad[0]["gold"] = (bad[0]["gold"] + 1) % len(bad[0]["options"])
    assert not D.check(rows, bad).set_index("check").loc["gold follows the rules", "ok"]


def test_partner_table_helper_matches_the_atom_rows(data):
    rows, _ = data
    assert D.partner_table(rows) == _partner_table(rows)


def test_no_distractor_equals_the_gold_up_to_commutativity(data):
    rows, items = data
    for x in items:
        canon = [D.canonical(D.parse(o)) for o in x["options"]]
        assert len(set(canon)) == len(canon), x["id"]
        assert x["cluster"] and x["cluster"] == "+".join(D.pairs(D.expr(x["prompt"])))
    assert D.canonical(D.parse("5 (blern(x) * blark(x))")) == D.canonical(D.parse("5 (blark(x) * blern(x))"))
    assert D.canonical(D.parse("blern(x) - blark(x)")) != D.canonical(D.parse("blark(x) - blern(x)"))
