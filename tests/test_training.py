"""lib.training: examples and loss masks, packing, the trainable-parameter check, learning, caching, QLoRA.

All on a tiny random Llama (tests/conftest.py); a few seconds each on 2 CPU cores."""
from __future__ import annotations

import json
import math

import pytest
import torch

from lib import params as P
from lib import runs, training as T
from lib.models import load_model

DOC = {"id": "d0", "text": "Glon is a troff. Every troff is yomp.\nYomps sing.",
       "sentences": ["Glon is a troff.", "Every troff is yomp.", "Yomps sing."], "facts": ["f0", "f1", "f2"]}
PC = {"id": "p0", "text": "Q: Who is Daphne Barrington? A: the director of A Journey Through Time.",
      "prompt": "Q: Who is Daphne Barrington? A:", "completion": " the director of A Journey Through Time.",
      "sentences": ["Q: Who is Daphne Barrington? A: the director of A Journey Through Time."], "facts": ["p0"]}
FACTS = [{"id": f"r{i}", "text": t, "sentences": [t], "facts": [f"r{i}"]} for i, t in enumerate([
    "Blick is the mother of zarn.", "Flob is taller than quist.", "Vunt lives in the city of Pell.",
    "Drax owns a red kettle.", "Mip was born in the year nine."])]


def _ft(**kw):
    base = dict(method="lora", lora_r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                learning_rate=1e-2, weight_decay=0.0, batch_size=4, steps=5, warmup_steps=1,
                schedule="constant", max_grad_norm=1.0, max_length=64, loss_on="completion",
                seeds=[0], splitting_ablation=[])
    return {**base, **kw}


def _params(tiny_model_cfg, **ft):
    over = {"model.name": tiny_model_cfg["name"], "model.device": "cpu", "model.dtype": "float32"}
    over.update({f"finetune.{k}": v for k, v in ft.items()})
    return P.load("smoke", over)


# ---------------------------------------------------------------------------------------- examples
def test_splitting_modes_give_the_documented_examples():
    none = T.make_examples([DOC], "none", "all")
    assert [(e["context"], e["target"]) for e in none] == [("", DOC["text"])]
    ind = T.make_examples([DOC], "independent", "all")
    assert [(e["context"], e["target"]) for e in ind] == [("", s) for s in DOC["sentences"]]
    cum = T.make_examples([DOC], "cumulative", "all")
    assert [(e["context"], e["target"]) for e in cum] == [
        ("", "Glon is a troff."), ("Glon is a troff.", " Every troff is yomp."),
        ("Glon is a troff. Every troff is yomp.", "\nYomps sing.")]
    for e in cum:  # context + target is always a prefix of the document
        assert DOC["text"].startswith(e["context"] + e["target"])
    # prompt/completion rows: completion-only loss keeps the prompt as unscored context, in every splitting
    for s in T.SPLITTINGS:
        assert [(e["context"], e["target"]) for e in T.make_examples([PC], s, "completion")] == [
            (PC["prompt"], PC["completion"])]
    assert [(e["context"], e["target"]) for e in T.make_examples([PC], "none", "all")] == [("", PC["text"])]
    with pytest.raises(ValueError, match="unknown splitting"):
        T.make_examples([DOC], "sentences", "all")
    with pytest.raises(ValueError, match="empty dataset"):
        T.make_examples([], "none", "all")


def test_loss_mask_covers_exactly_the_target_tokens(bundled_tokenizer):
    tok = bundled_tokenizer
    exs = T.make_examples([DOC], "cumulative", "all")
    data = T.tokenize_examples(tok, exs, 64)
    for ex, d in zip(exs, data):
        # the example is tokenised as its document prefix; the scored tokens spell the target
        assert d["ids"] == tok(ex["context"] + ex["target"]).input_ids
        scored = tok.decode(d["ids"][d["n_context"]:])
        assert scored == (ex["target"] if ex["context"] else ex["target"][len(tok.decode(d["ids"][:1])):])
        row = T.collate([d])
        labels = row["labels"][0].tolist()
        assert row["input_ids"][0].tolist() == d["ids"]
        assert row["position_ids"][0].tolist() == list(range(len(d["ids"])))
        # the labelled tokens are exactly the target tokens (position t - 1 predicts the label at t)
        assert [t for t in labels if t != -100] == d["ids"][d["n_context"]:]
        assert labels[:d["n_context"]] == [-100] * d["n_context"]
    with pytest.raises(ValueError, match="more than finetune.max_length=5"):
        T.tokenize_examples(tok, exs, 5)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_examples_do_not_attend_to_each_other(tiny_model_cfg, attn):
    """transformers 5 reads restarting position_ids as packed sequences (block-diagonal causal mask) with
    sdpa and eager attention: every example's logits in a packed row equal its logits alone."""
    model, tok = load_model(tiny_model_cfg)
    model.set_attn_implementation(attn)
    data = T.tokenize_examples(tok, T.make_examples([DOC, PC], "cumulative", "completion"), 64)
    with torch.no_grad():
        row = T.collate(data)
        # use_cache=False matters: with a cache transformers does not look for packed sequences
        packed = model(input_ids=row["input_ids"], position_ids=row["position_ids"], use_cache=False).logits[0]
        alone = torch.cat([model(input_ids=torch.tensor([d["ids"]])).logits[0] for d in data])
        loss_packed = T.packed_loss(model, row)
        loss_alone = sum(T.packed_loss(model, T.collate([d])) for d in data)
    # the same sums in fp32 over 32-dim rows, up to the order of summation: ~1e-6 relative
    assert torch.allclose(packed, alone, atol=1e-5), (packed - alone).abs().max()
    assert torch.allclose(loss_packed, loss_alone, rtol=1e-5), (loss_packed, loss_alone)
    # and the mask matters: a plain causal row (one sequence) lets later examples see earlier ones
    with torch.no_grad():
        leaky = model(input_ids=row["input_ids"]).logits[0]
    assert not torch.allclose(leaky, alone, atol=1e-3)
    # logits only at target positions give the same loss as full logits with the labels
    with torch.no_grad():
        full = model(input_ids=row["input_ids"], position_ids=row["position_ids"], labels=row["labels"],
                     use_cache=False).loss
    n_target = int((row["labels"] != -100).sum())
    assert torch.allclose(loss_packed / n_target, full, rtol=1e-5)
    rows = T.pack(data, 64)
    assert sorted(i for r in rows for i in r) == list(range(len(data)))
    assert all(sum(len(data[i]["ids"]) for i in r) <= 64 for r in rows)


# ------------------------------------------------------------------------------------ trainable check
def test_trainable_count_matches_config_and_wrong_target_fails(tiny_model_cfg):
    model, _ = load_model(tiny_model_cfg)
    # tiny Llama: hidden 32, 2 kv heads of 8 -> v_proj 32->16; q_proj 32->32; 2 layers; r = 8
    assert T.expected_lora_parameters(model, ["q_proj", "v_proj"], 8) == 2 * 8 * ((32 + 32) + (32 + 16))
    m = T.prepare_model(model, _ft(), seed=0)
    assert T.n_trainable(m) == 2 * 8 * ((32 + 32) + (32 + 16))
    model, _ = load_model(tiny_model_cfg)
    with pytest.raises(ValueError, match=r"\['qproj'\] match no Linear layer"):
        T.prepare_model(model, _ft(target_modules=["qproj", "v_proj"]), seed=0)
    model, _ = load_model(tiny_model_cfg)
    full = T.prepare_model(model, _ft(method="full"), seed=0)
    assert T.n_trainable(full) == sum(p.numel() for p in full.parameters())


# ------------------------------------------------------------------------------------------ learning
def test_tiny_model_learns_a_handful_of_facts(tiny_model_cfg):
    model, tok = load_model(tiny_model_cfg)
    # full finetuning: a random 32-dim model's tiny logits need the (tied) embeddings to move
    model = T.prepare_model(model, _ft(method="full"), seed=0)
    exs = T.make_examples(FACTS, "independent", "all")
    info = T.train(model, tok, exs, _ft(method="full", steps=40, batch_size=5, learning_rate=1e-2,
                                        warmup_steps=3), seed=0, progress=False)
    first, last = info["loss"][0], sum(info["loss"][-5:]) / 5
    assert first > 9  # random model: ~ln(49152) = 10.8 nats per token
    assert last < 0.3 * first, info["loss"]


def test_same_seed_same_loss_curve(tiny_model_cfg):
    curves, adapters = [], []
    for before, seed in ((123, 0), (456, 0), (123, 1)):
        model, tok = load_model(tiny_model_cfg)
        torch.manual_seed(before)  # whatever the caller drew before must not matter
        torch.rand(before)
        model = T.prepare_model(model, _ft(lora_dropout=0.1), seed=seed)
        adapters.append(torch.cat([p.detach().flatten().clone() for p in model.parameters() if p.requires_grad]))
        info = T.train(model, tok, T.make_examples(FACTS, "none", "all"), _ft(steps=4, batch_size=2),
                       seed=seed, progress=False)
        curves.append(info["loss"])
    assert torch.equal(adapters[0], adapters[1]) and not torch.equal(adapters[0], adapters[2])
    assert curves[0] == curves[1]
    assert curves[0] != curves[2]


def test_loss_curve_follows_the_schedule(tiny_model_cfg):
    model, tok = load_model(tiny_model_cfg)
    model = T.prepare_model(model, _ft(), seed=0)
    ft = _ft(steps=6, warmup_steps=2, learning_rate=1.0e-3, schedule="cosine", batch_size=2)
    info = T.train(model, tok, T.make_examples(FACTS, "none", "all"), ft, seed=0, progress=False)
    lrs = info["lr"]  # transformers' warmup starts at 0; cosine decays towards 0 at the last step
    assert lrs[:3] == pytest.approx([0.0, 5e-4, 1e-3]) and lrs[2:] == sorted(lrs[2:], reverse=True)
    assert lrs[-1] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 3 / 4)))


def test_qlora_nf4_trains(tiny_model_cfg):
    pytest.importorskip("bitsandbytes")
    model, tok = load_model({**tiny_model_cfg, "quantization": "nf4"})
    assert any(type(m).__name__ == "Linear4bit" for m in model.modules())
    model = T.prepare_model(model, _ft(), seed=0)
    info = T.train(model, tok, T.make_examples(FACTS, "none", "all"), _ft(steps=6, learning_rate=3e-2),
                   seed=0, progress=False)
    assert all(torch.isfinite(torch.tensor(info["loss"])))
    assert info["loss"][-1] < info["loss"][0]
    with pytest.raises(ValueError, match="cannot train a 4-bit"):
        T.prepare_model(model.get_base_model(), _ft(method="full"), seed=0)


# ------------------------------------------------------------------------------------------- caching
def test_finetune_is_cached_and_an_unstamped_run_retrains(tiny_model_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "RUNS", tmp_path)
    params = _params(tiny_model_cfg, steps=3, batch_size=2, max_length=64)
    calls = []
    real_train = T._train

    def counting_train(*a, **k):
        calls.append(1)
        return real_train(*a, **k)

    monkeypatch.setattr(T, "_train", counting_train)
    out = T.finetune(params, "toy", FACTS, splitting="independent", seed=0, progress=False)
    assert out.parent == tmp_path / params.name / "ft" / "toy"
    assert (out / "adapter_model.safetensors").exists() and len(calls) == 1
    info = json.loads((out / "train_info.json").read_text())
    assert info["processes"] == 1 and info["wall_seconds"] >= info["seconds"] > 0
    curve = json.loads((out / "loss_curve.json").read_text())
    assert curve["step"] == [1, 2, 3] and len(curve["loss"]) == 3
    assert T.finetune(params, "toy", FACTS, splitting="independent", seed=0, progress=False) == out
    assert len(calls) == 1  # reused
    # every row is one sentence: all splittings give the same examples, hence the same trained model
    assert T.finetune(params, "toy", FACTS, splitting="none", seed=0, progress=False) == out and len(calls) == 1
    runs.invalidate(out)  # as if killed before the stamp
    assert T.finetune(params, "toy", FACTS, splitting="independent", seed=0, progress=False) == out
    assert len(calls) == 2
    other = T.finetune(params, "toy", FACTS, splitting="independent", seed=1, progress=False)
    assert other != out and len(calls) == 3
    assert not list(out.parent.glob(".*.tmp"))
    model, _ = T.load_finetuned(params, out)  # the saved adapter loads back
    assert hasattr(model, "peft_config")


def test_bench_quick_writes_every_key(tmp_path, monkeypatch):
    """`python -m tools.bench --quick` (bundled model, smoke data): bench.json has every key the issue names.
    No timing is asserted; about a minute on 2 cores."""
    from tools import bench

    monkeypatch.setattr(runs, "RUNS", tmp_path)
    assert bench.main(["--params", "smoke", "--quick"]) == 0
    out = json.loads((tmp_path / "bench" / "bench.json").read_text())
    keys = ["ft_speedup_vs_hf_trainer", "ft_frac_of_matmul_peak", "matmul_peak_gflops",
            "scoring_speedup_vs_recompute", "scoring_max_abs_diff", "scoring_options_share",
            "generation_speedup", "cpu_model"]
    assert all(k in out for k in keys), sorted(set(keys) - set(out))
    assert all(isinstance(out[k], float) and out[k] > 0 for k in keys[:-1]) and out["cpu_model"]
    assert out["scoring_max_abs_diff"] <= 1e-3  # numerics, not timing: reuse equals recomputation


# ------------------------------------------------------------------------------------------- recipes
def test_recipe_overrides_one_dataset_and_bad_recipes_are_named(tiny_model_cfg):
    p = _params(tiny_model_cfg, steps=3, recipes={"syllogisms": {"steps": 7, "learning_rate": 0.5}})
    r = T.recipe(p.finetune, "syllogisms")
    assert r.steps == 7 and r.learning_rate == 0.5 and r.batch_size == p.finetune.batch_size
    assert T.recipe(p.finetune, "simple_reversals") == p.finetune
    for bad, msg in [({"simple_reversals": {"seeds": [1]}}, r"\['seeds'\] are not per-dataset training keys"),
                     ({"simple_reversals": {"steps": 0}}, "steps"),
                     ({"simple_reversals": {"steps": 2, "warmup_steps": 2}}, "warmup_steps 2 is not below steps 2"),
                     ({"nonsense": {"steps": 2}}, "'nonsense' is not among the datasets built")]:
        with pytest.raises(P.ParamsError, match=msg):
            _params(tiny_model_cfg, recipes=bad)


def test_learning_curve_is_recorded_and_recipe_is_in_the_key(tmp_path, monkeypatch, tiny_model_cfg):
    """The plain-ft run scores its check items every eval_every steps and after the last; the scoring neither
    changes the trained weights (same folder, same loss curve as without it) nor enters the cache key."""
    monkeypatch.setattr(runs, "RUNS", tmp_path)
    items = [{"id": f"q{i}", "split": "forward", "prompt": f"Fact {i}:", "options": ["glon", "troff"], "gold": i % 2}
             for i in range(4)]
    p = _params(tiny_model_cfg, steps=5, warmup_steps=1, batch_size=2, max_length=64, eval_every=2)
    out = T.finetune(p, "toy", FACTS, splitting="independent", seed=0, progress=False, check_items=items)
    curve = T.read_loss_curve(out)
    assert curve["check_step"] == [2, 4, 5] and all(a in (0.0, 0.25, 0.5, 0.75, 1.0) for a in curve["check_acc"])
    plain = _params(tiny_model_cfg, steps=5, warmup_steps=1, batch_size=2, max_length=64, eval_every=None)
    monkeypatch.setattr(runs, "RUNS", tmp_path / "plain")
    out2 = T.finetune(plain, "toy", FACTS, splitting="independent", seed=0, progress=False)
    assert out2.name == out.name and T.read_loss_curve(out2)["loss"] == curve["loss"]
    assert T.read_loss_curve(out2)["check_step"] == []
    # the last check equals scoring the saved model afresh
    model, tok = T.load_finetuned(p, out)
    assert T.accuracy(model, tok, items) == curve["check_acc"][-1]
    rec = _params(tiny_model_cfg, steps=5, warmup_steps=1, batch_size=2, max_length=64,
                  recipes={"syllogisms": {"steps": 4}})
    def key(params, dataset):
        return T.ft_key(params, T.dataset_recipe(params, dataset), [], 0)

    assert key(rec, "syllogisms") != key(plain, "syllogisms")
    assert key(rec, "syllogisms")["finetune"]["steps"] == 4
    assert key(rec, "simple_reversals") == key(plain, "simple_reversals")


def test_recipe_in_epochs_is_one_step_count_for_every_condition(tiny_model_cfg):
    p = _params(tiny_model_cfg, steps=3, warmup_steps=1, batch_size=4, recipes={"syllogisms": {"epochs": 2.5}})
    assert T.recipe(p.finetune, "syllogisms", 10).steps == 7  # ceil(2.5 x 10 / 4), whatever the condition's set
    assert T.recipe(p.finetune, "simple_reversals", 10).steps == 3  # no epochs: the steps as given
    with pytest.raises(ValueError, match="given in epochs"):
        T.recipe(p.finetune, "syllogisms")
    with pytest.raises(ValueError, match="warmup_steps 1 is not below the 1 steps of 2.5 epochs of 1 examples"):
        T.recipe(p.finetune, "syllogisms", 1)
    # the cache key holds the steps, not how they were asked for: 7 steps given either way train one adapter
    steps = _params(tiny_model_cfg, steps=3, warmup_steps=1, batch_size=4, recipes={"syllogisms": {"steps": 7}})
    assert T.recipe(steps.finetune, "syllogisms").steps == 7


def test_recipe_splitting_sets_plain_and_augmented_ft(tiny_model_cfg):
    p = _params(tiny_model_cfg, recipes={"syllogisms": {"splitting": "none"}})
    assert T.default_splitting("syllogisms", p.finetune) == T.augmented_splitting("syllogisms", p.finetune) == "none"
    # without one, the paper's: unsplit plain FT on the semantic structure, independent everywhere else
    assert T.default_splitting("semantic_structure", p.finetune) == "none"
    assert T.augmented_splitting("semantic_structure", p.finetune) == "independent"
    assert T.default_splitting("simple_reversals", p.finetune) == "independent"
    assert [r["splitting"] for r in T.ft_plan(p, "syllogisms")] == ["none"]
