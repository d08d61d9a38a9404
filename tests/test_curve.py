"""The ICL context-size curve: contexts per cluster holding every option at word level; the icl_fit choice."""
from __future__ import annotations

import pytest

from lib import icl


def town(i):
    """A one-word town name per number (digits spelled as letters: the word split reads letters only)."""
    return "".join("abcdefghij"[int(d)] for d in str(i)).capitalize() + "ville"


def rows(n=60):
    """Document i states fact f{i} (person i's city is town{i}); documents 50.. only mention the distractor
    towns town90.. (so covering them needs a document of their own)."""
    out = [{"id": f"d{i}", "text": f"Person {town(i)[:-5]} lives in {town(i)}.", "sentences": [],
            "facts": [f"f{i}"]}
           for i in range(50)]
    out += [{"id": f"e{i}", "text": f"The market of {town(90 + i)} is busy.", "sentences": [], "facts": [f"g{i}"]}
            for i in range(n - 50)]
    return out


def make_items():
    """12 items in 6 clusters (two items per person: forward and reverse); options: the person's town and
    two distractors, one of them a town that only the e-documents mention."""
    out = []
    for c in range(6):
        p = 3 * c + 1
        for sp in ("forward", "reversal"):
            out.append({"id": f"{sp}{c}", "split": sp, "cluster": f"person{p}",
                        "prompt": f"Person {town(p)[:-5]} lives in",
                        "options": [town(p), town((p + 7) % 50), town(90 + c)], "gold": 0,
                        "support": [f"f{p}"]})
    return out


def docs_in(ctx, train):
    return {i for i, r in enumerate(train) if r["text"] in ctx}


@pytest.mark.parametrize("n_docs", [2, 4, 16])
def test_curve_contexts_cover_options_share_per_cluster_and_fit(bundled_tokenizer, n_docs):
    tok, train, its = bundled_tokenizer, rows(), make_items()
    ctx, info = icl.curve_contexts(tok, train, its, n_docs, fmt="plain", max_tokens=400, seed=0)
    assert len(ctx) == len(its)
    assert icl.options_covered(train, its, ctx) == 1.0
    # before covering, the e-document towns are absent: the check can fail
    assert icl.options_covered(train, its, [icl.format_context(tok, [train[3 * c + 1]["text"]], "plain")
                                            for c in range(6) for _ in (0, 1)]) == 0.0
    for a, b in zip(its, ctx):
        for c, d in zip(its, ctx):
            if a["cluster"] == c["cluster"]:
                assert b == d
        assert train[int(a["support"][0][1:])]["text"] in b  # the support document
    need = 3  # support + the distractor person's town + the market town
    for c in set(ctx):
        n = len(docs_in(c, train))
        assert n == max(n_docs, need) if n_docs < need else n == n_docs
        assert len(tok(c, add_special_tokens=False)["input_ids"]) <= 400
        kept = sorted(docs_in(c, train))
        assert [c.index(train[i]["text"]) for i in kept] == sorted(c.index(train[i]["text"]) for i in kept)
    assert info["n_contexts"] == len(set(ctx))
    per_context = max(1, n_docs // need)  # clusters whose needs fit one context (the needs do not overlap)
    assert info["n_contexts"] == -(-6 // per_context)
    assert info["n_tokens_max"] <= 400
    assert info["n_docs_mean"] == sum(len(docs_in(c, train)) for c in set(ctx)) / len(set(ctx))


def test_curve_contexts_are_seeded(bundled_tokenizer):
    tok, train, its = bundled_tokenizer, rows(), make_items()
    a = icl.curve_contexts(tok, train, its, 8, fmt="plain", max_tokens=400, seed=0)
    b = icl.curve_contexts(tok, train, its, 8, fmt="plain", max_tokens=400, seed=0)
    c = icl.curve_contexts(tok, train, its, 8, fmt="plain", max_tokens=400, seed=1)
    assert a == b and a[0] != c[0]


def test_curve_contexts_drop_filler_to_fit_and_reject_a_need_too_long(bundled_tokenizer):
    tok, train, its = bundled_tokenizer, rows(), make_items()
    ctx, info = icl.curve_contexts(tok, train, its, 40, fmt="plain", max_tokens=80, seed=0)
    assert info["n_tokens_max"] <= 80 and icl.options_covered(train, its, ctx) == 1.0
    assert all(len(docs_in(c, train)) < 40 for c in ctx)
    with pytest.raises(ValueError, match="needs 3 documents"):
        icl.curve_contexts(tok, train, its, 4, fmt="plain", max_tokens=20, seed=0)


def test_curve_all_is_build_context(bundled_tokenizer):
    tok, train, its = bundled_tokenizer, rows(), make_items()
    ctx, info = icl.curve_contexts(tok, train, its, None, fmt="plain", max_tokens=5000, seed=0)
    assert set(ctx) == {icl.build_context(tok, train, its, fmt="plain", max_tokens=5000, seed=0)[0]}
    assert info["n_contexts"] == 1 and info["n_docs_mean"] == len(train)


def test_choose_fit_and_names():
    assert icl.choose_fit({4: 0.95, 16: 0.92, None: 0.5}, 0.9) == 16
    assert icl.choose_fit({4: 0.95, 16: 0.5, None: 0.91}, 0.9) is None  # all counts as the largest
    assert icl.choose_fit({4: 0.6, 16: 0.7, None: 0.7}, 0.9) is None  # none passes: the best, largest of ties
    assert icl.choose_fit({4: 0.8, 16: 0.7, None: 0.5}, 0.9) == 4
    assert [icl.curve_size(icl.curve_name(s)) for s in (4, None)] == [4, None]
    with pytest.raises(ValueError, match="not a curve condition"):
        icl.curve_size("icl_bm25")


def test_run_icl_curve_and_fit(tiny_model_cfg, tmp_path, monkeypatch):
    from lib import analysis, datasets, runs, scoring
    from lib import params as P
    from lib.models import load_model

    monkeypatch.setattr(runs, "RUNS", tmp_path)
    train, test = rows(), make_items()
    monkeypatch.setattr(datasets, "load", lambda p, name: (train, test, {"sha256": {"test.jsonl": "x"}}))
    p = P.load("smoke", {"model.name": tiny_model_cfg["name"], "icl.max_test_items": None, "icl.curve_items": 3,
                         "icl.curve_sizes": [4, 8], "icl.retrieval_modes": [], "icl.max_context_tokens": 300,
                         "analysis.learned_threshold": 0.5})
    model, tok = load_model(tiny_model_cfg)
    icl.run_icl(p, "toy", model=model, tok=tok, progress=False)
    files = scoring.scores_path(p, "toy", "icl").parent.glob("toy__*.jsonl")
    n = {f.stem.split("__")[1]: len(runs.read_jsonl(f)) for f in files}
    assert n == {"pretrained": 12, "icl": 12, "icl_fit": 12, "icl_n4": 6, "icl_n8": 6}  # 3 per split on the curve
    info = icl.read_info(p, "toy")
    fit = info["icl_fit"]
    assert fit["split"] == "forward" and set(fit["acc"]) == {"icl_n4", "icl_n8", "icl"}
    acc = {icl.curve_size(c): a for c, a in fit["acc"].items()}
    assert fit["size"] == icl.choose_fit(acc, 0.5) and fit["condition"] == icl.curve_name(fit["size"])
    for c in ("icl_n4", "icl_n8"):  # the recorded accuracy is the score file's, on the forward items
        s = [x for x in scoring.read_scores(p, "toy", c) if x["split"] == "forward"]
        assert fit["acc"][c] == sum(x["pred"] == x["gold"] for x in s) / len(s)
    assert info["curve"]["icl_n4"]["options_covered"] == 1.0
    assert {c for ds, _, c, _ in analysis.expected_conditions(P.load("smoke"))} >= {"icl_n2", "icl_n4", "icl_fit"}


def test_curve_points_use_the_curve_items_and_draw(tmp_path):
    from lib import analysis, plotting
    import pandas as pd

    base = dict(model="m", dataset="toy", subset="", cluster="c", seed=0, metric="acc", margin=0.0, chosen=0,
                chance=0.25, n_options=4)
    rows = [{**base, "split": "forward", "item": f"i{k}", "condition": "icl", "correct": float(k < 2)}
            for k in range(6)]  # icl on 6 items: i0, i1 right; the curve scored i0 and i2 only
    rows += [{**base, "split": "forward", "item": i, "condition": "icl_n4", "correct": 1.0} for i in ("i0", "i2")]
    rows += [{**base, "split": "forward", "item": "i0", "condition": "icl_bm25", "correct": 0.0}]
    items = pd.DataFrame(rows, columns=analysis.ITEM_COLUMNS)
    tokens = pd.DataFrame({"dataset": ["toy", "toy"], "condition": ["icl_n4", "icl"], "n_tokens": [100.0, 900.0]})
    pts = plotting.curve_points(items, tokens)
    assert list(pts["condition"]) == ["icl_n4", "icl"] and list(pts["n"]) == [2, 2]
    assert list(pts["acc"]) == [1.0, 0.5] and list(pts["n_tokens"]) == [100.0, 900.0]
    base_lines = pd.DataFrame([{"dataset": "toy", "split": "forward", "baseline": "b", "acc": 0.4}])
    paths = plotting.figC_icl_context_curve(items, tokens, tmp_path, params_name="t", baselines=base_lines)
    assert [p.name for p in paths] == ["figC_icl_context_curve.png", "figC_icl_context_curve.pdf"]
    assert all(p.stat().st_size > 0 for p in paths)
    assert plotting.figC_icl_context_curve(items[items["condition"] == "ft"], tokens, tmp_path, params_name="t") == []
    assert not any(tmp_path.iterdir())  # nothing to draw: the stale figure is removed


def test_claims_plan_tests_every_icl_part_with_icl_fit_and_conditions_are_expected():
    from lib import analysis
    from lib import params as P

    plan = analysis._plan("aug_both", {"reversal_curse": ["forward", "reversal"], "simple_reversals": ["reversal"]})
    icl_parts = [r for r in plan if "icl" in r[6]]
    fit = {r[1]: r for r in plan if r[1].endswith("_fit")}
    assert icl_parts and len(fit) == len({r[1] for r in icl_parts})
    for claim, part, mode, kind, dss, sp, conds, desc in icl_parts:
        assert any(f[6] == ["icl_fit" if c == "icl" else c for c in conds] and f[5] == sp and f[4] == dss
                   and f[7] == desc + " (icl_fit)" for f in plan if f[1] == part + "_fit")
    p = P.load("smoke", {"icl.curve_sizes": [16, 2], "icl.retrieval_modes": []})
    conds = [c for ds, _, c, _ in analysis.expected_conditions(p) if ds == "simple_reversals"][:5]
    assert conds == ["pretrained", "icl", "icl_n2", "icl_n16", "icl_fit"]
    assert analysis._natural("icl_n4") < analysis._natural("icl_n16")
    with pytest.raises(P.ParamsError, match="curve_sizes"):
        P.load("smoke", {"icl.curve_sizes": [4, 4]})


def test_icl_fit_at_the_whole_set_reuses_the_icl_scores(tiny_model_cfg, tmp_path, monkeypatch):
    from lib import datasets, runs, scoring
    from lib import params as P
    from lib.models import load_model

    monkeypatch.setattr(runs, "RUNS", tmp_path)
    train, test = rows(), make_items()
    monkeypatch.setattr(datasets, "load", lambda p, name: (train, test, {"sha256": {"test.jsonl": "x"}}))
    p = P.load("smoke", {"model.name": tiny_model_cfg["name"], "icl.max_test_items": None, "icl.curve_items": 2,
                         "icl.curve_sizes": [4], "icl.retrieval_modes": [], "icl.max_context_tokens": 300,
                         "analysis.learned_threshold": 0.0})  # every size passes: the whole set is chosen
    model, tok = load_model(tiny_model_cfg)
    icl.run_icl(p, "toy", model=model, tok=tok, conditions=["icl", "icl_n4"], progress=False)
    calls = []
    monkeypatch.setattr(scoring, "score_items", lambda *a, **k: calls.append(a) or [])
    icl.run_icl(p, "toy", model=model, tok=tok, conditions=["icl_fit"], progress=False)
    assert not calls and icl.read_info(p, "toy")["icl_fit"]["size"] is None
    assert scoring.read_scores(p, "toy", "icl_fit") == scoring.read_scores(p, "toy", "icl")


@pytest.mark.parametrize("curve_items", [None, 2])
def test_icl_fit_at_a_curve_size_reuses_its_scores_when_the_curve_scores_every_item(
        tiny_model_cfg, tmp_path, monkeypatch, curve_items):
    from lib import datasets, runs, scoring
    from lib import params as P
    from lib.models import load_model

    monkeypatch.setattr(runs, "RUNS", tmp_path)
    train, test = rows(), make_items()
    monkeypatch.setattr(datasets, "load", lambda p, name: (train, test, {"sha256": {"test.jsonl": "x"}}))
    monkeypatch.setattr(icl, "choose_fit", lambda acc, threshold: 4)
    p = P.load("smoke", {"model.name": tiny_model_cfg["name"], "icl.max_test_items": None,
                         "icl.curve_items": curve_items, "icl.curve_sizes": [4], "icl.retrieval_modes": [],
                         "icl.max_context_tokens": 300})
    model, tok = load_model(tiny_model_cfg)
    icl.run_icl(p, "toy", model=model, tok=tok, conditions=["icl", "icl_n4"], progress=False)
    calls = []
    real = scoring.score_items
    monkeypatch.setattr(scoring, "score_items", lambda *a, **k: calls.append(a) or real(*a, **k))
    icl.run_icl(p, "toy", model=model, tok=tok, conditions=["icl_fit"], progress=False)
    assert icl.read_info(p, "toy")["icl_fit"]["size"] == 4
    if curve_items is None:  # the same items and contexts as icl_n4: its scores, not scored again
        assert not calls
        assert scoring.read_scores(p, "toy", "icl_fit") == scoring.read_scores(p, "toy", "icl_n4")
    else:  # the curve scored a subset: icl_fit scores every item
        assert calls and len(scoring.read_scores(p, "toy", "icl_fit")) == len(test)


def test_support_last_puts_the_needed_documents_after_the_filler(bundled_tokenizer):
    tok, train, its = bundled_tokenizer, rows(), make_items()
    same = icl.curve_contexts(tok, train, its, 8, fmt="plain", max_tokens=400, seed=0)
    last = icl.curve_contexts(tok, train, its, 8, fmt="plain", max_tokens=400, seed=0, support_last=True)
    assert same[0] != last[0]
    for a, b in zip(same[0], last[0]):
        assert docs_in(a, train) == docs_in(b, train)  # the same documents, another order
        members = [it for it, c in zip(its, last[0]) if c == b]
        supports = {int(f[1:]) for it in members for f in it["support"]}
        options = {o for it in members for o in it["options"]}
        pos = {i: b.index(train[i]["text"]) for i in docs_in(b, train)}
        pure = [i for i in pos if i not in supports and not any(o in train[i]["text"] for o in options)]
        assert pure and max(pos[i] for i in pure) < min(pos[i] for i in supports)
