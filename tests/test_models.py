"""Model loading: clear errors, NF4 on CPU, the converted bundled model equals its GGUF."""
from __future__ import annotations

import pytest
import torch

from lib import models


def cfg(name, **kw):
    return {"name": str(name), "dtype": "float32", "quantization": "none", "device": "cpu", **kw}


def test_model_not_found_local_path(tmp_path):
    with pytest.raises(models.ModelNotFoundError, match="not a folder with a config.json"):
        models.load_model(cfg(tmp_path / "nope"))
    with pytest.raises(models.ModelNotFoundError, match="not a folder with a config.json"):
        models.load_model(cfg(tmp_path))  # exists, but holds no model


def test_model_not_found_hub_id_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(models.ModelNotFoundError, match="model not found: 'nobody-xyz/no-such-model'"):
        models.load_model(cfg("nobody-xyz/no-such-model"))


def test_fp16_on_cpu_is_an_error(tiny_model_cfg):
    with pytest.raises(ValueError, match="float16 does not run on CPU"):
        models.load_model({**tiny_model_cfg, "dtype": "float16"})


def test_context_window_check(tiny_model_cfg):
    model, _ = models.load_model(tiny_model_cfg)
    assert models.context_window(model) == 1024
    models.check_fits(model, 1024)
    with pytest.raises(ValueError, match="1025 tokens, longer than the model's context window of 1024"):
        models.check_fits(model, 1025, "the ICL context")


def test_nf4_on_cpu(tmp_path, bundled_tokenizer):
    """4-bit NormalFloat through bitsandbytes loads and runs on this CPU; logits stay close to fp32."""
    from bitsandbytes.nn import Linear4bit
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)  # widths of 128: bitsandbytes quantises in blocks of 64
    LlamaForCausalLM(LlamaConfig(vocab_size=len(bundled_tokenizer), hidden_size=128, intermediate_size=256,
                                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                 max_position_embeddings=256)).save_pretrained(tmp_path)
    bundled_tokenizer.save_pretrained(tmp_path)
    ref, tok = models.load_model(cfg(tmp_path))
    q, _ = models.load_model(cfg(tmp_path, quantization="nf4"))
    assert isinstance(q.model.layers[0].self_attn.q_proj, Linear4bit)
    assert q.get_memory_footprint() < ref.get_memory_footprint()
    ids = tok("The relationships between glon and troff are", return_tensors="pt").input_ids
    with torch.no_grad():
        a, b = ref(ids).logits.flatten(), q(ids).logits.flatten()
    assert torch.isfinite(b).all()
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.9  # quantised, not identical: but the same model


def test_bundled_copy_equals_gguf():
    """The safetensors copy of the bundled model gives exactly the GGUF-loaded model's logits."""
    from transformers import AutoModelForCausalLM

    path = models.bundled_model_dir()
    assert (path / ".converted").is_file() and (path / "model.safetensors").is_file()
    gguf = models.bundled_gguf()
    a_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    b_model, tok = models.load_model(cfg(models.BUNDLED))
    ids = tok("Glim is the capital of Zorbia, a country of 12 rivers.", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(a_model(ids).logits, b_model(ids).logits)


def test_tiny_random_builds_loads_and_is_deterministic(tmp_path):
    """tiny-random: a 2-layer Llama with the bundled tokenizer and a 131,072-token window, built once under the
    cache from a seed; a second build gives the same weights bit for bit."""
    model, tok = models.load_model(cfg("tiny-random"))
    assert models.context_window(model) == 131072
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 64
    assert model.config._attn_implementation == "sdpa"
    assert len(tok) == model.config.vocab_size
    path = models.resolve("tiny-random")
    assert path.startswith(str(models.CACHE / "models" / "tiny-random-")) and path == models.resolve("tiny-random")
    ids = tok("The relationships between glon, troff and yomp are:", return_tensors="pt").input_ids
    with torch.no_grad():
        a = model(ids).logits
    other, _ = models.load_model(cfg(models.build_tiny_random("tiny-random", tmp_path / "again")))
    with torch.no_grad():
        assert torch.equal(a, other(ids).logits)
    wide = models.tiny_random_config("tiny-random-128")
    assert wide["hidden_size"] == 128 and models.resolve("tiny-random-128") != path


def test_tiny_random_runs_past_8k_tokens():
    """A context longer than the bundled model's 8,192 positions runs (positions up to 131,071 exist)."""
    model, _ = models.load_model(cfg("tiny-random"))
    ids = torch.randint(0, model.config.vocab_size, (1, 10000), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, 10000, model.config.vocab_size) and torch.isfinite(logits).all()


def test_tiny_random_bad_width():
    with pytest.raises(ValueError, match="multiple of 8"):
        models.tiny_random_config("tiny-random-12")
