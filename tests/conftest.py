"""Shared fixtures: a tiny random Llama model (mechanics tests) and the bundled tokenizer."""
from __future__ import annotations

import os

# No test ever reaches a model hub: a model that is not on disk fails at once instead of retrying the network.
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(scope="session")
def bundled_tokenizer():
    from lib.models import bundled_tokenizer

    return bundled_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, bundled_tokenizer):
    """A 2-layer random Llama with the bundled tokenizer, saved as safetensors, loadable by lib.models."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = bundled_tokenizer
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    model = LlamaForCausalLM(cfg)
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_cfg(tiny_model_dir):
    return {"name": str(tiny_model_dir), "dtype": "float32", "quantization": "none", "device": "cpu"}


@pytest.fixture
def tmp_runs(tmp_path, monkeypatch):
    """runs/ redirected to a temp folder: nothing a test writes reaches the repository's runs/."""
    from lib import runs

    monkeypatch.setattr(runs, "RUNS", tmp_path / "runs")
    return tmp_path / "runs"


@pytest.fixture
def smoke():
    """The smoke params without the two slower datasets (semantic structure, derivatoids)."""
    from lib import params as P

    return P.load("smoke", {"datasets.semantic_structure": None, "datasets.derivatoids": None})
