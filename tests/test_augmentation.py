"""Augmentation: parsing and filtering, the generation cache, batched KV-cache sampling, and the whole local
and global path (plus one augmented FT run) on a tiny random model."""
from __future__ import annotations

import json

import pytest
import torch

from lib import augmentation as A
from lib import params as P
from lib import runs

ROWS = [
    {"id": "d0", "text": "Did you know that femp are more dangerous than glon? Glon live near the river.",
     "sentences": ["Did you know that femp are more dangerous than glon?", "Glon live near the river."],
     "facts": ["f0", "f9"]},
    {"id": "d1", "text": "Glon live near the river.", "sentences": ["Glon live near the river."], "facts": ["f1"]},
    {"id": "d2", "text": "All glon are yomp.", "sentences": ["All glon are yomp."], "facts": ["f2"]},
]


def _tiny(model_dir, **extra):
    """Smoke params on the tiny random model, with small generation settings (and `extra` overrides)."""
    return P.load("smoke", {"model.name": str(model_dir), "model.device": "cpu", "augment.max_new_tokens": 6,
                            "augment.batch_size": 2, "augment.samples_per_item": 2,
                            "augment.global_max_documents": 2, "augment.global_context_tokens": 200, **extra})


@pytest.fixture
def tiny_params(tiny_model_dir):
    return _tiny(tiny_model_dir)


def _stats(params, kind: str) -> dict:
    return runs.read_json(A.aug_dir(params, "toy") / f"{kind}.stats.json")


# ---------------------------------------------------------------------------------------- parse/filter
def test_parse_generation_strips_markers_splits_sentences_and_stops_at_blank_line():
    text = ('- Glon are less dangerous than femp.\n2. Femp are riskier than glon. Glon are safer.\n'
            '* "A Journey" was made by Ann Lee."\n\nStatement: All daxes are vusks.\n- ignored.')
    assert A.parse_generation(text) == ["Glon are less dangerous than femp.", "Femp are riskier than glon.",
                                        "Glon are safer.", '"A Journey" was made by Ann Lee."']
    assert A.parse_generation("") == []
    assert A.parse_generation("\n\n- after the stop.") == []


def test_filter_drops_each_malformed_kind_and_counts_it():
    template = A.load_prompt("local.txt", "local")
    ex = A.example_only_words(template)
    assert {"tov", "vusk", "wug"} <= ex and "heavier" not in ex
    prompt = template.replace("{sentence}", "femp are more dangerous than glon.")
    cands = ["Glon are less dangerous than femp.",       # kept
             "glon are less dangerous than  FEMP",         # unfinished (no final punctuation)
             "Glon are safer than femp and",               # unfinished
             "Glon win.",                                  # too short
             " ".join(["glon"] * 61) + ".",                # too long
             "<|im_start|>assistant Glon are safer.",      # chat markup
             "Glon | This is a yomp.",                     # table markup
             "Femp are more dangerous than glon.",         # copy of the source sentence
             "Wugs are lighter than blickets.",            # copy of a worked example
             "Some tovs are femp.",                        # a made-up word of the examples (not in the item)
             "Some people prefer to play chess.",          # off topic: no content word of the item
             "Glon are less dangerous than femp!",         # duplicate of the first (normalized)
             "Femp are riskier than glon."]                # kept
    seen: set[str] = set()
    kept, dropped = A.filter_sentences(cands, prompt=prompt, item_text="femp are more dangerous than glon.",
                                       example_words=ex, seen=seen)
    assert kept == ["Glon are less dangerous than femp.", "Femp are riskier than glon."]
    assert dict(dropped) == {"unfinished": 2, "too_short": 1, "too_long": 1, "markup": 2,
                             "copy_of_prompt": 2, "example_words": 1, "off_topic": 1, "duplicate": 1}
    # an item that itself uses a word of the examples may keep it
    kept, _ = A.filter_sentences(["Some tovs are femp."], prompt=prompt, item_text="All femp are tovs.",
                                 example_words=ex, seen=set())
    assert kept == ["Some tovs are femp."]


def test_prompts_are_checked(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("no slot here")
    with pytest.raises(ValueError, match=r"\{sentence\}"):
        A.load_prompt(str(bad), "local")
    with pytest.raises(FileNotFoundError, match="augmentation prompt not found"):
        A.load_prompt("nope.txt", "local")
    swapped = tmp_path / "swapped.txt"
    swapped.write_text("{document} then {context}")
    with pytest.raises(ValueError, match="must come before"):
        A.load_prompt(str(swapped), "global")


def test_items_dedupe_sentences_and_copy_facts():
    items, n = A.local_items(ROWS, 100, seed=0)
    assert n == 3 and [it["text"] for it in items] == [
        "Did you know that femp are more dangerous than glon?", "Glon live near the river.", "All glon are yomp."]
    assert items[1]["source_ids"] == ["d0", "d1"] and items[1]["facts"] == ["f0", "f9", "f1"]
    sub, n = A.local_items(ROWS, 2, seed=0)
    assert n == 3 and len(sub) == 2 and sub == A.local_items(ROWS, 2, seed=0)[0]
    assert len(A.global_items(ROWS, 2, seed=1)) == 2


# ------------------------------------------------------------------------------------------- sampling
def _reference_sample(model, tok, prompt: str, seed: int, temperature: float, max_new_tokens: int) -> str:
    """The slow reference: a full forward without any cache for every new token, same Gumbel draws."""
    ids = tok(prompt, add_special_tokens=True).input_ids
    gen, new = torch.Generator().manual_seed(seed), []
    stops = A.stop_token_ids(tok)
    for _ in range(max_new_tokens):
        with torch.no_grad():
            row = model(torch.tensor([ids + new])).logits[0, -1].float()
        u = torch.rand(row.shape, generator=gen).clamp_(1e-10, 1 - 1e-7)
        t = int(torch.argmax(row / temperature - torch.log(-torch.log(u))))
        if t in stops:
            break
        new.append(t)
        if A.STOP in tok.decode(new):
            break
    return tok.decode(new)


def test_sample_with_shared_cache_and_padding_equals_uncached_reference(tiny_model_cfg):
    from lib.models import load_model

    model, tok = load_model(tiny_model_cfg)
    prefix = "Rewrite the statement.\nStatement: "
    suffixes = ["glon are yomp.\nRewrites:", "a much longer statement about femp and glon and yomp.\nRewrites:",
                "x."]
    hot = dict(temperature=1.0, max_new_tokens=8)
    three, info = A.sample(model, tok, prefix, suffixes, [7, 8, 9], batch_size=3, **hot)
    assert info["prefix_tokens"] == len(tok(prefix).input_ids)
    for s, seed, g in zip(suffixes, [7, 8, 9], three):  # KV cache + padding after the prefix change nothing
        assert g["text"] == _reference_sample(model, tok, prefix + s, seed, **hot)
        assert 0 < g["n_tokens"] <= 8 and (g["n_tokens"] == 8 or g["stopped"])
    one, _ = A.sample(model, tok, prefix, suffixes, [7, 8, 9], batch_size=1, **hot)
    other, _ = A.sample(model, tok, prefix, suffixes, [70, 80, 90], batch_size=3, **hot)
    assert [g["text"] for g in one] == [g["text"] for g in three]  # a row's sample does not depend on its batch
    assert [g["text"] for g in one] != [g["text"] for g in other]
    with pytest.raises(ValueError, match="window"):
        A.sample(model, tok, prefix, suffixes, [1, 2, 3], temperature=0.0, max_new_tokens=5000, batch_size=3)


# ------------------------------------------------------------------------------------ generate + cache
def test_local_and_global_end_to_end_then_cached(tiny_params, tiny_model_dir, tmp_runs, monkeypatch):
    got = {}
    for kind in ("local", "global"):
        rows = A.generate(tiny_params, "toy", ROWS, kind, progress=False)
        st = _stats(tiny_params, kind)
        n_src = 3 if kind == "local" else 2
        assert st["n_sources"] == n_src and st["generations"] == 2 * n_src == st["generated_now"]
        assert st["new_tokens"] > 0 and st["seconds"] > 0 and st["tokens_per_s"] > 0 and st["prefix_tokens"] > 0
        assert st["kept"] == sum(len(r["sentences"]) for r in rows)
        assert st["candidates"] == st["kept"] + sum(st["dropped"].values())
        for r in rows:
            assert r["source"] == f"aug_{kind}" and r["text"] == " ".join(r["sentences"]) and r["facts"]
            assert r["source_text"] in {s for row in ROWS for s in row["sentences"] + [row["text"]]}
        cache = runs.read_jsonl(A.aug_dir(tiny_params, "toy") / f"generations_{kind}.jsonl")
        assert len([c for c in cache if "text" in c]) == 2 * n_src
        got[kind] = rows
    assert _stats(tiny_params, "global")["context"]["n_kept"] >= 1

    def boom(*a, **k):
        raise AssertionError("the model was called although every generation is cached")

    monkeypatch.setattr(A, "sample", boom)
    monkeypatch.setattr("lib.models.load_model", boom)
    for kind in ("local", "global"):
        assert A.generate(tiny_params, "toy", ROWS, kind, progress=False) == got[kind]
        assert _stats(tiny_params, kind)["generated_now"] == 0
    # other sampling params are other keys: the model is needed again
    hotter = _tiny(tiny_model_dir, **{"augment.temperature": 1.3})
    with pytest.raises(AssertionError, match="every generation is cached"):
        A.generate(hotter, "toy", ROWS, "local", progress=False)


def test_resume_after_a_cut_line_generates_only_what_is_missing(tiny_params, tmp_runs, monkeypatch):
    A.generate(tiny_params, "toy", ROWS, "local", progress=False)
    path = A.aug_dir(tiny_params, "toy") / "generations_local.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    gen_lines = [l for l in lines if '"text"' in l]
    path.write_text("".join(gen_lines[:-2]) + gen_lines[-2][: len(gen_lines[-2]) // 2])  # killed mid-line
    calls = []
    real = A.sample

    def counting(model, tok, prefix, suffixes, seeds, **kw):
        calls.append(len(suffixes))
        return real(model, tok, prefix, suffixes, seeds, **kw)

    monkeypatch.setattr(A, "sample", counting)
    A.generate(tiny_params, "toy", ROWS, "local", progress=False)
    assert calls == [2]


def test_repeat_rows_match_the_number_of_added_examples():
    from lib.training import make_examples

    rep = A.repeat_rows(ROWS, 5, 0, "independent", "completion")
    n = len(make_examples(rep, "independent", "completion"))
    assert 5 <= n < 5 + 2 and all(r["source"] == "repeat" for r in rep)
    assert len({r["id"] for r in rep}) == len(rep)
    assert A.repeat_rows(ROWS, 0, 0, "independent", "completion") == []


def test_augmented_ft_end_to_end(tiny_model_dir, tmp_runs, monkeypatch, capsys):
    """One tiny augmented FT run (generate -> train -> score) and the size-matched repetition control."""
    from lib import datasets, scoring

    items = [{"id": "t0", "split": "reversal", "subset": "r", "prompt": "glon are less dangerous than",
              "options": ["femp", "yomp"], "gold": 0, "support": ["f0"]}]
    monkeypatch.setattr(datasets, "load", lambda params, name: (ROWS, items, {}))
    p = _tiny(tiny_model_dir, **{"finetune.steps": 2, "finetune.batch_size": 2, "finetune.target_modules": ["q_proj"]})
    assert A.run_augmented(p, "toy", "local", progress=False) is None
    A.run_augmented(p, "toy", "repeat", progress=False)
    for condition in ("aug_local", "ft_repeat"):  # one score line per item, stamped
        assert [s["id"] for s in scoring.read_scores(p, "toy", condition)] == ["t0"]
        assert runs.stamp_path(scoring.scores_path(p, "toy", condition)).exists()
    info = [json.loads(f.read_text()) for f in (tmp_runs / p.name / "ft" / "toy").glob("*/train_info.json")]
    assert len(info) == 2 and all(i["splitting"] == "independent" for i in info)
    # the CLI prints each condition's mean accuracy over splits from the score files (aug_both trains now)
    monkeypatch.setattr(P, "load", lambda name: p)
    assert A.main(["tiny", "toy"]) == 0
    printed = capsys.readouterr().out
    assert "toy aug_both: mean acc over splits" in printed
    assert "toy ft_repeat: mean acc over splits" in printed


def test_prompt_collisions_find_example_words_in_the_data():
    template = A.load_prompt("local.txt", "local")
    assert A.prompt_collisions(template, ROWS) == []
    assert A.prompt_collisions(template, ROWS + [{"id": "x", "text": "Some wugs are glon."}]) == ["wug"]


def test_generation_key_covers_model_prompt_and_sampling():
    aug = P.load("smoke").augment
    m = {"name": "m", "dtype": "float32", "quantization": "none", "device": "cpu"}
    k = A.generation_key(m, "prompt", aug, 0)
    assert k == A.generation_key({**m, "device": "cuda"}, "prompt", aug, 0)  # where it runs is not an input
    others = [A.generation_key({**m, "dtype": "bfloat16"}, "prompt", aug, 0),
              A.generation_key({**m, "name": "m2"}, "prompt", aug, 0),
              A.generation_key(m, "prompt!", aug, 0), A.generation_key(m, "prompt", aug, 1),
              A.generation_key(m, "prompt", aug.model_copy(update={"temperature": 0.1}), 0),
              A.generation_key(m, "prompt", aug.model_copy(update={"max_new_tokens": 7}), 0),
              A.generation_key(m, "prompt", aug.model_copy(update={"seed": 5}), 0)]
    assert len({k, *others}) == 1 + len(others)
