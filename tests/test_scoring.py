"""The scorer: lm-eval's tokenisation split, reuse of a shared context's cache == full recomputation,
errors for bad items, and the cached stage."""
from __future__ import annotations

import warnings

import pytest
import torch

from lib import scoring
from lib.models import load_model


def reference_loglikelihood(model, tok, context: str, continuation: str) -> float:
    """Full recomputation as lm-eval does it: the whole sequence through the model, logits everywhere."""
    c_ids, k_ids = scoring.encode_pair(tok, context, continuation)
    ids = torch.tensor([c_ids + k_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].double(), -1)
    return sum(float(logp[len(c_ids) + i - 1, t]) for i, t in enumerate(k_ids))


def tolerance(n_tokens: int) -> float:
    """How far reuse may sit from recomputation. Both take the log-softmax in fp64, so what differs is the fp32
    forward pass (other matmul shapes and reduction orders, a cached vs a recomputed prefix). Its relative
    error grows like u * sqrt(depth * inner dimension) = 6e-8 * sqrt(30 * 1536) ~ 1.3e-5 for the bundled
    30-layer model (less for the tiny ones), on logits whose scale (spread across the vocabulary) is a few
    units: ~5e-5 per scored token, and the option's log-prob sums one such error per token."""
    return 5e-5 * n_tokens


ITEMS = [
    {"id": "a", "split": "forward", "subset": "", "prompt": "The capital of Zorbia is", "options": ["Glim", "Paris", "a big city"], "gold": 0, "support": []},
    {"id": "b", "split": "reversal", "subset": "", "prompt": "Glim is the capital of", "options": ["Zorbia", "France"], "gold": 0, "support": []},
    {"id": "c", "split": "reversal", "subset": "x", "prompt": "Numbers: 12", "options": ["34", "3", "345678"], "gold": 2, "support": []},
]


@pytest.fixture(scope="module")
def tiny(tiny_model_cfg):
    return load_model(tiny_model_cfg)


@pytest.fixture(scope="module")
def bundled():
    return load_model({"name": "smollm2-135m-instruct", "dtype": "float32", "quantization": "none", "device": "cpu"})


# ---------------------------------------------------------------------------------- the token split
def toy_tokenizer():
    """A BPE over the whole string (no pre-tokenizer) where 'y'+'z' -> 'yz' and 'x'+'yz' -> 'xyz':
    "xy" alone is [x, y], but "xyz" is one token, so a context ending in "xy" merges with a prompt "z...".
    And "x q" is one token: the continuation " q" of a prompt ending in "x" would be empty."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    chars = ["<s>", "</s>", " ", "x", "y", "z", "q", ":", "."]
    vocab = {c: i for i, c in enumerate(chars)}
    for t in ("yz", "xyz", "x ", " q", "x q"):
        vocab[t] = len(vocab)
    bpe = models.BPE(vocab=vocab, merges=[("y", "z"), ("x", "yz"), ("x", " "), (" ", "q"), ("x ", "q")])
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(bpe), bos_token="<s>", eos_token="</s>",
                                   pad_token="</s>")


def test_encode_pair_is_lm_eval_split():
    tok = toy_tokenizer()
    ids = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    # joint tokenisation cut at the context's length: "xy" + "z q" -> [xyz, " q"]; the cut at len([x, y]) = 2
    c, k = scoring.encode_pair(tok, "xy", "z q")
    assert c + k == ids("xyz q") and len(c) == len(ids("xy")) == 2 and k == ids("xyz q")[2:]
    # a trailing space of the context moves onto the continuation
    c, k = scoring.encode_pair(tok, "x: ", "q")
    assert c == ids("x:") and k == ids(" q")
    # an empty context is lm-eval's prefix token (BOS here)
    c, k = scoring.encode_pair(tok, "", " q")
    assert c == [tok.bos_token_id] and k == ids(" q")


@pytest.fixture(scope="module")
def toy():
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = toy_tokenizer()
    torch.manual_seed(1)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                         max_position_embeddings=64)).eval()
    return model, tok


def test_merge_across_shared_context_is_recomputed_exactly(toy):
    """A context whose last two tokens merge with the prompt cannot be reused: the scorer notices and
    recomputes those items, so the scores still equal a full recomputation."""
    model, tok = toy
    context = "q.q.xy"  # tokens [..., x, y]; the prefix kept is [..., x], and "x"+"yz" merges over it
    items = [{"id": "m", "split": "s", "prompt": "z:", "options": ["q", "xq"], "gold": 0},
             {"id": "n", "split": "s", "prompt": "q:", "options": ["q", "z"], "gold": 0}]
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        lls, _ = scoring.loglikelihoods(model, tok, items, context)
    assert any("recomputed in full" in str(x.message) for x in w)
    for it, ll in zip(items, lls):
        for o, v in zip(it["options"], ll):
            n = len(scoring.encode_pair(tok, context + it["prompt"], " " + o)[1])
            ref = reference_loglikelihood(model, tok, context + it["prompt"], " " + o)
            assert v == pytest.approx(ref, abs=tolerance(n))


# ------------------------------------------------------------------------- reuse == recomputation
def _check_against_reference(model, tok, context):
    scores = scoring.score_items(model, tok, ITEMS, context, batch_size=2, progress=False)
    worst = 0.0  # the largest difference as a share of its bound
    for it, sc in zip(ITEMS, scores):
        assert sc["id"] == it["id"] and sc["n_chars"] == [len(o) for o in it["options"]]
        for j, o in enumerate(it["options"]):
            ref = reference_loglikelihood(model, tok, context + it["prompt"], " " + o)
            n = len(scoring.encode_pair(tok, context + it["prompt"], " " + o)[1])
            assert sc["n_tokens"][j] == n
            worst = max(worst, abs(sc["loglikelihoods"][j] - ref) / tolerance(n))
            unc = reference_loglikelihood(model, tok, "", " " + o)
            n_unc = len(scoring.encode_pair(tok, "", " " + o)[1])
            assert sc["loglikelihoods_uncond"][j] == pytest.approx(unc, abs=tolerance(n_unc))
    assert worst <= 1.0, f"reuse differs from recomputation by {worst:.2f}x the per-token bound"
    return scores


def test_reuse_equals_recomputation_tiny(tiny):
    model, tok = tiny
    context = "Zorbia is a small country.\nIts capital is Glim, a city of 12 rivers.\n\nAnswer:\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the reuse path, no item recomputed
        _check_against_reference(model, tok, context)
    _check_against_reference(model, tok, "")  # no context: lm-eval's own path


def test_reuse_equals_recomputation_bundled(bundled):
    model, tok = bundled
    context = tok.apply_chat_template(
        [{"role": "user", "content": "Zorbia is a small country. Its capital is Glim.\n\n"
                                     "Use the information above to answer."}], add_generation_prompt=True, tokenize=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = _check_against_reference(model, tok, context)
    assert scores[0]["pred"] == 0  # the fact is in context: Glim


def test_per_item_contexts_and_peft(tiny):
    from peft import LoraConfig, get_peft_model

    model, tok = tiny
    torch.manual_seed(0)
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.eval()
    try:
        contexts = ["Doc one.\n", "Doc two is longer.\n", "Doc one.\n"]
        scores = scoring.score_items(peft_model, tok, ITEMS, contexts, progress=False)
        for it, ctx, sc in zip(ITEMS, contexts, scores):
            for j, o in enumerate(it["options"]):
                ref = reference_loglikelihood(peft_model, tok, ctx + it["prompt"], " " + o)
                n = len(scoring.encode_pair(tok, ctx + it["prompt"], " " + o)[1])
                assert sc["loglikelihoods"][j] == pytest.approx(ref, abs=tolerance(n))
    finally:
        peft_model.unload()  # leave the shared tiny model as it was


# ------------------------------------------------------------------------------------------ errors
def test_empty_continuation_is_an_error(toy, tiny):
    model, tok = toy  # "x" + " q" tokenises as the single token "x q": nothing is left to score
    bad = [{"id": "e", "split": "s", "prompt": "q.x", "options": ["q", "z"], "gold": 1}]
    with pytest.raises(ValueError, match="'e'.*'q' gives an empty continuation"):
        scoring.score_items(model, tok, bad, "", progress=False)
    model, tok = tiny
    with pytest.raises(ValueError, match="empty option"):
        scoring.score_items(model, tok, [{"id": "f", "split": "s", "prompt": "Hi", "options": ["", "a"], "gold": 1}],
                            progress=False)


def test_context_longer_than_window_is_an_error(tiny):
    model, tok = tiny  # window 1024
    with pytest.raises(ValueError, match="longer than the model's context window of 1024"):
        scoring.score_items(model, tok, ITEMS[:1], "word " * 1100, progress=False)


def test_score_items_preds(tiny):
    model, tok = tiny
    sc = scoring.score_items(model, tok, ITEMS, "", progress=False)
    for s in sc:
        ll, ch, un = s["loglikelihoods"], s["n_chars"], s["loglikelihoods_uncond"]
        assert s["pred"] == max(range(len(ll)), key=ll.__getitem__)
        assert s["pred_norm"] == max(range(len(ll)), key=lambda j: ll[j] / ch[j])
        assert s["pred_mi"] == max(range(len(ll)), key=lambda j: ll[j] - un[j])


def test_unconditional_scores_are_shared_through_the_dict(tiny, monkeypatch):
    """A dict passed as `uncond` is filled with every option's unconditional log-likelihood (equal to a
    fresh computation) and read back: the next call with the same model runs only the options it lacks."""
    model, tok = tiny
    shared: dict = {}
    first = scoring.score_items(model, tok, ITEMS[:2], "", progress=False, uncond=shared)
    fresh = scoring.unconditional(model, tok, [o for it in ITEMS[:2] for o in it["options"]])
    assert shared.keys() == fresh.keys() and all(abs(shared[o] - fresh[o]) < 1e-9 for o in fresh)
    assert first[0]["loglikelihoods_uncond"] == [shared[o] for o in ITEMS[0]["options"]]
    asked = []
    real = scoring.unconditional

    def counted(m, t, opts, **kw):
        asked.extend(opts)
        return real(m, t, opts, **kw)

    monkeypatch.setattr(scoring, "unconditional", counted)
    shared["Glim"] = -1.5  # a value the model would not give: it must be read, not recomputed
    again = scoring.score_items(model, tok, ITEMS, "Some context.", progress=False, uncond=shared)
    assert sorted(asked) == sorted(ITEMS[2]["options"])
    assert again[0]["loglikelihoods_uncond"][0] == -1.5


def test_evaluate_writes_and_caches(tiny, tiny_model_cfg, tmp_path, monkeypatch):
    from lib import params as P
    from lib import runs

    monkeypatch.setattr(runs, "RUNS", tmp_path)
    p = P.load("smoke", {"model.name": tiny_model_cfg["name"]})
    model, tok = tiny
    rows = scoring.evaluate(p, "toy", "pretrained", model, tok, ITEMS, progress=False)
    assert [(r["id"], r["split"]) for r in rows] == [("a", "forward"), ("b", "reversal"), ("c", "reversal")]
    sp = scoring.scores_path(p, "toy", "pretrained")
    assert runs.read_jsonl(sp) == rows  # the rows returned are the rows written
    mtime = sp.stat().st_mtime_ns
    again = scoring.evaluate(p, "toy", "pretrained", model, tok, ITEMS, progress=False)  # cached: not rewritten
    assert sp.stat().st_mtime_ns == mtime and again == rows
    assert runs.stamp_path(sp).is_file()
    with pytest.raises(ValueError, match="no items"):
        scoring.evaluate(p, "toy", "x", model, tok, [])


def test_evaluate_refuses_scores_out_of_item_order(tiny, tiny_model_cfg, tmp_path, monkeypatch):
    """Each score row is joined to its item's split, cluster and golds: a misaligned list must not be written."""
    from lib import params as P
    from lib import runs

    monkeypatch.setattr(runs, "RUNS", tmp_path)
    p = P.load("smoke", {"model.name": tiny_model_cfg["name"]})
    model, tok = tiny
    right = scoring.score_items(model, tok, ITEMS, progress=False)
    for wrong in (right[::-1], right[:-1]):
        monkeypatch.setattr(scoring, "score_items", lambda *a, wrong=wrong, **k: wrong)
        with pytest.raises(ValueError, match="not one per item"):
            scoring.evaluate(p, "toy", "pretrained", model, tok, ITEMS, progress=False)
        assert not scoring.scores_path(p, "toy", "pretrained").exists()


def test_chunked_context_cache_equals_recomputation(tiny, monkeypatch):
    """A context longer than one chunk is cached over several forward passes: still the same scores."""
    model, tok = tiny
    monkeypatch.setattr(scoring, "PREFIX_CHUNK", 7)
    monkeypatch.setattr(scoring, "CACHE_ROWS", 40)  # forces batches of 1 for this ~45-token context
    context = "Zorbia is a small country. Its capital is Glim, a city of 12 rivers and 3 bridges.\nAnswer:\n"
    _check_against_reference(model, tok, context)


@pytest.mark.parametrize("packed", [True, False])
def test_packed_and_batched_paths_agree(tiny, monkeypatch, packed):
    """Options after a shared cache are packed into one sequence (block-causal mask) or, for an attention
    that takes no 4D mask, batched as rows."""
    model, tok = tiny
    if not packed:
        monkeypatch.setattr(scoring, "_attn_impl", lambda m: "flash_attention_2")
    monkeypatch.setattr(scoring, "PACK_TOKENS", 9)  # several packs
    _check_against_reference(model, tok, "Zorbia is a small country.\nIts capital is Glim.\n")


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("context", ["", "Zorbia is a small country.\nIts capital is Glim.\n"])
def test_an_items_prompt_is_run_once_for_all_its_options(tiny, monkeypatch, attn, context):
    """The packed pass runs an item's trunk (prompt and shared first words) once: it feeds fewer tokens than
    the rows hold, and every option still scores as its full recomputation, with a cache and without."""
    model, tok = tiny
    monkeypatch.setattr(scoring, "PACK_TOKENS", 12)  # several packs, an item alone in some
    before = scoring._attn_impl(model)
    model.set_attn_implementation(attn)
    try:
        _check_against_reference(model, tok, context)
        fed = []
        call = scoring._call_decoder
        monkeypatch.setattr(scoring, "_call_decoder",
                            lambda d, ids, *a, **k: fed.append(ids.shape[1]) or call(d, ids, *a, **k))
        scoring.loglikelihoods(model, tok, ITEMS, context)
    finally:
        model.set_attn_implementation(before)
    n_prefix = len(scoring.encode(tok, context)) - 1 if context else 0
    rows = [r for it in ITEMS for r in scoring._rows_for(tok, context, it)]
    fill = 1 if context else 0  # the cache is filled in one pass (the context is shorter than a chunk)
    assert sum(fed[fill:]) < sum(len(r["ids"]) - n_prefix - 1 for r in rows)


# ------------------------------------------------------------------ a context cut at its last special token
def test_chat_context_is_cut_after_its_last_special_token(bundled_tokenizer):
    """The rows of a chat context leave out its head (the tokens up to its last special token): head + each row
    is the joint tokenisation of the whole context + prompt + option, with the same continuation start."""
    from lib import icl

    tok = bundled_tokenizer
    context = icl.format_context(tok, ["Glim is the capital of Zorbia.", "Troff lives in Glim.  "], "chat")
    cut, head = scoring.split_context(tok, context)
    assert cut == context.rindex("<|im_start|>") + len("<|im_start|>") and head == scoring.encode(tok, context[:cut])
    item = {"id": "a", "prompt": "", "options": ["Zorbia", "x"]}
    for prompt in ["The capital of Zorbia is", " ", "\n\nQ:", "<|im_end|>\nA:", "12 "]:
        item["prompt"] = prompt
        full = scoring._rows_for(tok, context, item)
        for f, r in zip(full, scoring._rows_for(tok, context, item, (cut, head))):
            assert head + r["ids"] == f["ids"] and len(head) + r["start"] == f["start"]
    assert scoring.split_context(tok, icl.format_context(tok, ["Glim is a city."], "plain")) == (0, [])


def test_special_token_that_takes_whitespace_is_no_boundary():
    """A special token that strips the whitespace after it (rstrip) joins what follows: not a cut."""
    from tokenizers import AddedToken

    tok = toy_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": [AddedToken("<r>", rstrip=True), AddedToken("<t>")]})
    assert scoring.special_boundary(tok, "q<t>x<r> q") == len("q<t>")
    assert scoring.special_boundary(tok, "q<r> q") == 0


@pytest.fixture(scope="module")
def toy_special():
    from tokenizers import AddedToken
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = toy_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": [AddedToken("<t>")]})
    torch.manual_seed(2)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                         max_position_embeddings=64)).eval()
    return model, tok


@pytest.mark.parametrize("context", ["q.q<t>q.q:", "q.<t>q.xy"])
def test_context_with_special_token_equals_recomputation(toy_special, context):
    """Scores after a context cut at its special token equal a full recomputation, also for items whose tokens
    merge over the cached prefix ("xy" + "z:" -> "xyz"), recomputed in full as head + their tokens."""
    model, tok = toy_special
    assert scoring.split_context(tok, context)[0] == context.index("<t>") + 3
    items = [{"id": "m", "split": "s", "prompt": "z:", "options": ["q", "xq"], "gold": 0},
             {"id": "n", "split": "s", "prompt": "q:", "options": ["q", "z"], "gold": 0}]
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        lls, ntok = scoring.loglikelihoods(model, tok, items, context)
    assert any("recomputed in full" in str(x.message) for x in w) == context.endswith("xy")
    for it, ll, nt in zip(items, lls, ntok):
        for o, v, n in zip(it["options"], ll, nt):
            assert n == len(scoring.encode_pair(tok, context + it["prompt"], " " + o)[1])
            ref = reference_loglikelihood(model, tok, context + it["prompt"], " " + o)
            assert v == pytest.approx(ref, abs=tolerance(n))


def test_reuse_equals_recomputation_chat_context(tiny):
    from lib import icl

    model, tok = tiny
    _check_against_reference(model, tok, icl.format_context(tok, ["Zorbia is a small country.", "Glim."], "chat"))
