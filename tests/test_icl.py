"""ICL contexts: subsampling keeps the tested facts and respects the budget; retrieval; fairness counts."""
from __future__ import annotations

import re
import pytest

from lib import icl


def rows(n=40):
    """n documents, document i states fact f{i}; every fifth also states fact shared{i//5}."""
    out = []
    for i in range(n):
        facts = [f"f{i}"] + ([f"shared{i // 5}"] if i % 5 == 0 else [])
        out.append({"id": f"d{i}", "text": f"Document {i}: the blick number {i} is glorp{i} and fizz.",
                    "sentences": [], "facts": facts})
    return out


def items(support_sets):
    return [{"id": f"q{j}", "split": "s", "prompt": f"The blick number {j} is", "options": [f"glorp{j}", "zorb"],
             "gold": 0, "support": list(s)} for j, s in enumerate(support_sets)]


@pytest.mark.parametrize("fmt", ["plain", "chat"])
def test_all_documents_when_they_fit(bundled_tokenizer, fmt):
    ctx, info = icl.build_context(bundled_tokenizer, rows(5), items([["f1"]]), fmt=fmt, max_tokens=5000, seed=0)
    assert info["n_kept"] == info["n_docs"] == 5 and info["frac_kept"] == 1.0
    assert all(f"Document {i}:" in ctx for i in range(5)) and icl.INSTRUCTION in ctx
    assert info["n_tokens"] == len(bundled_tokenizer(ctx, add_special_tokens=False)["input_ids"])
    if fmt == "chat":
        assert ctx.endswith("<|im_start|>assistant\n")
    else:
        assert ctx.endswith(icl.INSTRUCTION + "\n")


def test_subsampling_keeps_required_docs_within_budget(bundled_tokenizer):
    tok, train = bundled_tokenizer, rows(40)
    its = items([["f3"], ["f17", "f33"], ["shared2"]])
    for seed in range(3):
        ctx, info = icl.build_context(tok, train, its, fmt="plain", max_tokens=200, seed=seed)
        assert info["n_tokens"] <= 200 and info["n_tokens"] == len(tok(ctx, add_special_tokens=False)["input_ids"])
        assert 3 < info["n_kept"] < 40 and info["frac_kept"] == info["n_kept"] / 40
        for i in (3, 17, 33):
            assert f"Document {i}:" in ctx
        assert any(f"Document {i}:" in ctx for i in range(10, 15, 5))  # shared2 is stated by document 10 only
        kept = [i for i in range(40) if f"Document {i}:" in ctx]
        assert [f"Document {i}:" for i in kept] == sorted([f"Document {i}:" for i in kept], key=ctx.index)  # order
    a = icl.build_context(tok, train, its, fmt="plain", max_tokens=200, seed=1)
    b = icl.build_context(tok, train, its, fmt="plain", max_tokens=200, seed=1)
    c = icl.build_context(tok, train, its, fmt="plain", max_tokens=200, seed=2)
    assert a == b and a[0] != c[0]  # seeded


def test_required_docs_that_do_not_fit_are_an_error(bundled_tokenizer):
    its = items([[f"f{i}"] for i in range(30)])
    with pytest.raises(ValueError, match="documents holding the tested facts alone"):
        icl.build_context(bundled_tokenizer, rows(40), its, fmt="plain", max_tokens=150, seed=0)
    with pytest.raises(ValueError, match="in no training document"):
        icl.build_context(bundled_tokenizer, rows(40), items([["nope"]]), fmt="plain", max_tokens=150, seed=0)


def test_retrieval_bm25_finds_the_matching_document():
    train = rows(30)
    its = [{"id": "q", "split": "s", "prompt": "What is blick number 17 glorp17?", "options": ["a", "b"], "gold": 0,
            "support": ["f17"]}]
    picks = icl.retrieve_bm25(train, its, k=3)
    assert len(picks[0]) == 3 and picks[0][0] == 17


def test_retrieval_oracle_holds_support_plus_random_others():
    train = rows(30)
    its = items([["f4", "f9"], ["shared1"], []])
    picks = icl.retrieve_oracle(train, its, k=5, seed=0)
    assert all(len(p) == len(set(p)) == 5 for p in picks)
    assert {4, 9} <= set(picks[0]) and 5 in picks[1]
    assert picks == icl.retrieve_oracle(train, its, k=5, seed=0)
    assert picks != icl.retrieve_oracle(train, its, k=5, seed=1)
    picks = icl.retrieve_oracle(train, items([["f1", "f2", "f3"]]), k=2, seed=0)  # more facts than k: all kept
    assert set(picks[0]) == {1, 2, 3}


def test_retrieved_contexts(bundled_tokenizer):
    train = rows(10)
    ctxs = icl.retrieved_contexts(bundled_tokenizer, train, items([["f2"], ["f7"]]), mode="oracle", k=3,
                                  fmt="plain", seed=0)
    assert len(ctxs) == 2 and "Document 2:" in ctxs[0] and "Document 7:" in ctxs[1]
    with pytest.raises(ValueError, match="unknown retrieval mode"):
        icl.retrieved_contexts(bundled_tokenizer, train, items([["f2"]]), mode="dense", k=3, fmt="plain", seed=0)


def test_option_occurrence():
    its = [{"id": "a", "split": "s", "options": ["Glim.", "Paris", "Rome"], "gold": 0},
           {"id": "b", "split": "s", "options": ["Glim", "Paris"], "gold": 1}]
    occ = icl.option_occurrence(its, "Glim is in Zorbia. Glimmer is not. Rome has Glim.")
    assert list(occ["gold_count"]) == [2, 0]  # word boundaries: "Glimmer" does not count; the final "." ignored
    assert list(occ["gold_only_present"]) == [False, False] and list(occ["options_present"]) == [2, 1]
    occ = icl.option_occurrence(its[:1], ["Only Glim here."])
    assert bool(occ["gold_only_present"][0])
    summ = icl.occurrence_summary(icl.option_occurrence(its, "Glim and Rome"))
    assert summ.loc[0, "gold_present"] == 0.5


def test_select_items_caps_each_split_seeded():
    its = [{"id": f"{s}{i}", "split": s} for s in "ab" for i in range(10)]
    sel = icl.select_items(its, 4, seed=0, dataset="d")
    assert len(sel) == 8 and sum(x["split"] == "a" for x in sel) == 4
    assert sel == icl.select_items(its, 4, seed=0, dataset="d") != icl.select_items(its, 4, seed=1, dataset="d")
    assert icl.select_items(its, 50, seed=0, dataset="d") == its


def test_run_icl_every_condition(tiny_model_cfg, tmp_path, monkeypatch):
    from lib import datasets, runs, scoring
    from lib import params as P
    from lib.models import load_model

    monkeypatch.setattr(runs, "RUNS", tmp_path)
    train = rows(12)
    test = [{**it, "split": sp} for sp in ("forward", "reversal") for it in items([["f1"], ["f5"], ["f9"]])]
    for k, it in enumerate(test):
        it["id"] = f"q{k}"
    monkeypatch.setattr(datasets, "load", lambda p, name: (train, test, {"sha256": {"test.jsonl": "x"}}))
    p = P.load("smoke", {"model.name": tiny_model_cfg["name"], "icl.max_test_items": 2, "icl.max_context_tokens": 120})
    model, tok = load_model(tiny_model_cfg)
    assert icl.run_icl(p, "toy", model=model, tok=tok, progress=False) is None
    curve = {"icl_n2", "icl_n4", "icl_fit"}  # smoke's curve (tests/test_curve.py tests it)
    files = scoring.scores_path(p, "toy", "icl").parent.glob("toy__*.jsonl")
    on_disk = {f.stem.split("__")[1]: len(runs.read_jsonl(f)) for f in files}  # every condition's scores
    assert on_disk == dict.fromkeys({"pretrained", "icl", "icl_bm25", "icl_oracle"} | curve, 4)
    info = icl.read_info(p, "toy")
    assert info["n_items"] == 4 and info["icl"]["n_tokens"] <= 120 and info["icl"]["n_kept"] < 12
    assert set(info["occurrence"]) == {"icl", "icl_bm25", "icl_oracle"} | curve
    icl.run_icl(p, "toy", model=model, tok=tok, conditions=["icl"], progress=False)  # partial: keeps the rest
    assert set(icl.read_info(p, "toy")["occurrence"]) == {"icl", "icl_bm25", "icl_oracle"} | curve


def test_option_occurrence_at_word_level_on_simple_reversals():
    from lib import datasets as D
    from lib import params as P

    p = P.load("smoke")
    train, test = D.make_simple_reversals(p.datasets.simple_reversals, p.seed)
    ctx = "\n\n".join(r["text"] for r in train)
    occ = icl.option_occurrence(test, ctx).set_index("id")
    for x in test:
        words = icl.distinctive_words(x)
        assert all(len(w) >= 1 for w in words) and not words[0] & words[1]  # "deeper" vs "shallower"
        present = [any(re.search(rf"(?<!\w){w}(?!\w)", ctx) for w in ws) for ws in words]
        row = occ.loc[x["id"]]
        assert row.options_word_present == sum(present)
        assert row.upper_bound == (present[x["gold"]] and not present[1 - x["gold"]])
    # the trained comparative is in context, the antonym is not (training states each fact one way):
    # forward items are upper bounds, reversal items have only the wrong word present
    fwd = occ[occ.split == "forward"]
    assert fwd.upper_bound.all() and not occ[occ.split == "reversal"].gold_word_present.any()
    summ = icl.occurrence_summary(occ.reset_index())
    assert list(summ.columns[-3:]) == ["gold_word_present", "options_word_present", "upper_bound"]


def test_retrieval_covers_every_option_and_fits_the_budget(bundled_tokenizer):
    from lib import datasets as D
    from lib import params as P

    p = P.load("smoke")
    train, test = D.make_simple_reversals(p.datasets.simple_reversals.model_copy(update={"n_facts": 28}), p.seed)
    for mode in ("bm25", "oracle"):
        ctx = icl.retrieved_contexts(bundled_tokenizer, train, test, mode=mode, k=2, fmt="plain", seed=0)
        occ = icl.option_occurrence(test, ctx)
        # every option's word is in some training document of this size (counterbalanced: both forms trained)
        mentioned = [all(any(icl._word_present(r["text"], ws) for r in train) for ws in icl.distinctive_words(x))
                     for x in test]
        assert sum(mentioned) >= 4 and (occ.options_word_present[mentioned] == 2).all() and not occ.upper_bound[mentioned].any()
        small = icl.retrieved_contexts(bundled_tokenizer, train, test, mode=mode, k=2, fmt="plain", seed=0,
                                       max_tokens=60)
        assert all(icl._n_tokens(bundled_tokenizer, c) <= 60 or c.count("\n\n") == 1 for c in small)
