"""The CUDA paths, each checked against the same computation on the CPU in fp32: `make test-gpu` (one GPU,
a few minutes). Every test here is skipped on a machine without CUDA, so `make test` skips them.

Models: a 2-layer Llama the test builds (width 128, the bundled tokenizer) with weights drawn at std 0.1, so
that its logits spread over several nats (the 0.02 of a fresh init gives near-uniform logits, where every
option ties with every other), and `tiny-random` for the paper path.

Tolerance of bf16 against fp32 (scoring). bf16 keeps 8 bits of mantissa: a rounding is off by at most
u = 2^-9 relative. Between the embedding and the logits this model rounds about 27 times (per layer: norm,
q, k, v, attention, o_proj, residual add, norm, gate, up, SiLU x up, down, residual add; then the final norm
and the head), and independent roundings add as a random walk, so a logit is off by about sqrt(27) u ~ 1%
of the logits' scale, which is at most zmax = max |logit| (measured on the fp32 reference). We allow 5 such
sigmas: |delta logit| <= 5 sqrt(27) u zmax; a log-softmax moves by at most twice its inputs' largest error,
so each continuation token's log-prob may move by TOL_TOKEN = 10 sqrt(27) u zmax, and an option of n tokens
by n TOL_TOKEN. A prediction (the top option) may differ only at a near-tie: where the fp32 gap between the
top two options is within the sum of their tolerances.
"""
from __future__ import annotations

import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from lib import augmentation as A
from lib import params as P
from lib import runs, scoring, training as T
from lib.models import load_model
from test_distributed import FACTS, FT as FT_CPU, _reset_accelerate

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (make test-gpu)")]

U_BF16 = 2.0 ** -9
N_ROUNDINGS = 27
TOL_TOKEN_PER_ZMAX = 10 * math.sqrt(N_ROUNDINGS) * U_BF16  # ~0.10: one token's log-prob, per unit of zmax
ROOT = Path(__file__).resolve().parents[1]
WORDS = ("blick zarn quist flob vunt pell drax mip quon ferd glim zorbia red blue kettle house city year "
         "mother taller owns lives sold born nine tall small green river stone bird fish cloud lamp door "
         "wheel snow gold iron salt wind rain").split()
FT = {**FT_CPU, "learning_rate": 2e-2, "steps": 12}  # test_distributed's recipe, trained until the loss falls
TIMES: dict[str, float] = {}


@pytest.fixture(autouse=True)
def _timed(request):
    """Each check's wall time, printed at the end of the session (README: what ran on which GPU)."""
    t = time.perf_counter()
    yield
    TIMES[request.node.name] = time.perf_counter() - t


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    print(f"\n== {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    for name, s in TIMES.items():
        print(f"== {s:7.1f} s  {name}")


@pytest.fixture(scope="module")
def sharp_dir(tmp_path_factory, bundled_tokenizer):
    """A 2-layer Llama (width 128) with weights at std 0.1: logits that spread over several nats."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = bundled_tokenizer
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      initializer_range=0.1, tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    out = tmp_path_factory.mktemp("sharp-llama")
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def _cfg(folder, **kw) -> dict:
    return {"name": str(folder), "dtype": "float32", "quantization": "none", "device": "cpu", **kw}


def _items(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    items = []
    for i in range(n):
        options = set()
        while len(options) < rng.randint(2, 4):
            options.add(" ".join(rng.sample(WORDS, rng.randint(1, 2))))
        items.append({"id": f"i{i}", "split": "x", "prompt": " ".join(rng.sample(WORDS, 4)) + " is",
                      "options": sorted(options), "gold": 0})
    return items


CONTEXT = " ".join(random.Random(1).choice(WORDS) for _ in range(300)) + ".\n"


def _zmax(model, tok, texts: list[str]) -> float:
    with torch.no_grad():
        return max(float(model(tok(t, return_tensors="pt").input_ids).logits.abs().max()) for t in texts)


@pytest.mark.parametrize("context", ["", CONTEXT], ids=["no-context", "shared-context"])
def test_scoring_bf16_on_cuda_matches_cpu_fp32(sharp_dir, context):
    items = _items(240)
    cpu_model, tok = load_model(_cfg(sharp_dir))
    ref = scoring.score_items(cpu_model, tok, items, context, progress=False)
    zmax = _zmax(cpu_model, tok, [context + it["prompt"] + " " + " ".join(it["options"]) for it in items])
    del cpu_model
    gpu_model, _ = load_model(_cfg(sharp_dir, device="cuda", dtype="bfloat16"))
    got = scoring.score_items(gpu_model, tok, items, context, progress=False)
    tol_token = TOL_TOKEN_PER_ZMAX * zmax
    worst, near_ties, flips = 0.0, 0, 0
    for r, g in zip(ref, got):
        tol = [n * tol_token for n in r["n_tokens"]]
        for a, b, t in zip(r["loglikelihoods"], g["loglikelihoods"], tol):
            assert abs(a - b) <= t, (r["id"], a, b, t)
            worst = max(worst, abs(a - b) / t)
        order = sorted(range(len(tol)), key=lambda j: -r["loglikelihoods"][j])
        gap = r["loglikelihoods"][order[0]] - r["loglikelihoods"][order[1]]
        flips += g["pred"] != r["pred"]
        if gap <= tol[order[0]] + tol[order[1]]:
            near_ties += 1
        else:
            assert g["pred"] == r["pred"], (r["id"], r["loglikelihoods"], g["loglikelihoods"])
    print(f"\nscoring {len(items)} items, context {len(context)} chars: zmax {zmax:.2f}, tolerance "
          f"{tol_token:.3f} nats a token, largest |bf16 - fp32| {worst:.2f} of it, near-ties {near_ties}, "
          f"predictions that differ {flips}")
    # The band is wide (5 sigmas of a worst-case scale): about a third of these items fall in it (76 and 65 of
    # 240 on an H200). The prediction check must still cover most items.
    assert near_ties < len(items) // 2


def _train_and_score(cfg: dict, tmp_path: Path):
    """LoRA-train on FACTS, score ITEMS with the trained model in memory, save the adapter and reload it."""
    _reset_accelerate()
    model, tok = load_model(cfg)
    model = T.prepare_model(model, FT, seed=0)
    acc = T.accelerator(model)
    assert acc.mixed_precision == "bf16"
    info = T.train(model, tok, T.make_examples(FACTS, "none", "all"), FT, seed=0, progress=False, acc=acc)
    model = acc.unwrap_model(model, keep_fp32_wrapper=False)  # scored as a reloaded model is: no autocast
    items = _items(40, seed=2)
    before = scoring.score_items(model, tok, items, progress=False)
    model.save_pretrained(tmp_path / "adapter", safe_serialization=True)
    reloaded, _ = load_model(cfg, adapter=tmp_path / "adapter")
    after = scoring.score_items(reloaded, tok, items, progress=False)
    return info, before, after, reloaded


def test_lora_bf16_autocast_trains_saves_and_reloads(sharp_dir, tmp_path):
    info, before, after, _ = _train_and_score(_cfg(sharp_dir, device="cuda"), tmp_path)
    assert all(map(math.isfinite, info["loss"])) and info["loss"][-1] < info["loss"][0] - 2, info["loss"]
    # the same fp32 weights and the same kernels: equal up to the order of fp32 sums (a few ~10-nat log-probs)
    for a, b in zip(before, after):
        assert a["loglikelihoods"] == pytest.approx(b["loglikelihoods"], abs=1e-4)


def test_qlora_nf4_trains_saves_and_reloads(sharp_dir, tmp_path):
    bnb = pytest.importorskip("bitsandbytes")
    cfg = _cfg(sharp_dir, device="cuda", dtype="bfloat16", quantization="nf4")
    info, before, after, reloaded = _train_and_score(cfg, tmp_path)
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in reloaded.modules())  # the base really is 4-bit
    assert all(map(math.isfinite, info["loss"])) and info["loss"][-1] < info["loss"][0] - 2, info["loss"]
    # the same weights and kernels in bf16: equal up to a few roundings of each log-prob (8 bits of mantissa)
    for a, b in zip(before, after):
        assert a["loglikelihoods"] == pytest.approx(b["loglikelihoods"], rel=4 * U_BF16)


def _fsdp_params(tmp_path: Path) -> Path:
    raw = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())
    raw["model"].update(name="tiny-random-128", device="cuda", dtype="float32")
    raw["finetune"].update(method="full", learning_rate=1e-3, steps=12, warmup_steps=1, seeds=[0],
                           splitting_ablation=[], recipes={}, epochs=None, eval_every=None)
    path = tmp_path / "fsdp_full.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_full_ft_through_accelerate_fsdp_one_process(tmp_path, monkeypatch):
    """`accelerate launch --config_file params/accelerate/fsdp_full.yaml --num_processes 1 -m lib.training`:
    the loss falls, the gathered weights save, and the reloaded model has learned the training documents."""
    params_file = _fsdp_params(tmp_path)
    env = {**os.environ, "COMPENDIUM_RUNS": str(tmp_path / "runs"), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "params" / "accelerate" / "fsdp_full.yaml"), "--num_processes", "1",
           "-m", "lib.training", str(params_file), "simple_reversals"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    monkeypatch.setattr(runs, "RUNS", tmp_path / "runs")
    params = P.load(str(params_file))
    [info] = T.ft_runs(params, "simple_reversals")
    assert info["processes"] == 1 and info["distributed"] == "FSDP" and info["n_trainable"] > 0
    loss = T.read_loss_curve(info["folder"])["loss"]
    assert all(map(math.isfinite, loss)) and loss[-1] < loss[0], loss
    from lib import datasets

    rows, _, _ = datasets.load(params, "simple_reversals")
    examples = T.make_examples(rows, T.default_splitting("simple_reversals", params.finetune), "completion")
    base, tok = load_model(params.model)
    tuned, _ = T.load_finetuned(params, Path(info["folder"]))
    assert type(tuned) is type(base)  # full weights, not an adapter

    def mean_loss(model):
        data = T.tokenize_examples(tok, examples, params.finetune.max_length)
        with torch.no_grad():
            total = sum(float(T.packed_loss(model, T.collate([d]))) for d in data)
        return total / sum(len(d["ids"]) - d["n_context"] for d in data)

    assert mean_loss(tuned) < mean_loss(base) - 0.1  # what was learned was saved


def test_generation_is_reproducible_on_cuda(sharp_dir):
    """Same seeds -> the same samples (bf16); and each row's sample depends on its seed alone, not on the
    batch (fp32 on CUDA, where padding moves a logit by ~1e-6 and a flip needs two Gumbel-perturbed scores
    that close: a chance of ~1e-4 over the draws here)."""
    suffixes = [f" {w} and" for w in WORDS[:12]]
    seeds = list(range(100, 112))
    kw = dict(temperature=1.0, max_new_tokens=12)
    model, tok = load_model(_cfg(sharp_dir, device="cuda", dtype="bfloat16"))
    a, _ = A.sample(model, tok, "Facts: blick zarn quist.", suffixes, seeds, batch_size=4, **kw)
    b, _ = A.sample(model, tok, "Facts: blick zarn quist.", suffixes, seeds, batch_size=4, **kw)
    c, _ = A.sample(model, tok, "Facts: blick zarn quist.", suffixes, [s + 1 for s in seeds], batch_size=4, **kw)
    assert [r["text"] for r in a] == [r["text"] for r in b]
    assert sum(x["text"] != y["text"] for x, y in zip(a, c)) >= len(a) // 2  # the seed matters
    model32, _ = load_model(_cfg(sharp_dir, device="cuda"))
    d, _ = A.sample(model32, tok, "Facts: blick zarn quist.", suffixes, seeds, batch_size=5, **kw)
    e, _ = A.sample(model32, tok, "Facts: blick zarn quist.", suffixes, seeds, batch_size=12, **kw)
    assert [r["text"] for r in d] == [r["text"] for r in e]


def test_paper_path_reduced_on_cuda_bf16(tmp_path):
    """tests/test_paper_path.py's run with model.device cuda and model.dtype bfloat16, and its checks."""
    import test_paper_path as pp

    mp = pytest.MonkeyPatch()
    try:
        run = pp.run_paper_path(mp, tmp_path / "runs", {"model.device": "cuda", "model.dtype": "bfloat16"})
        assert run[0].model.device == "cuda" and run[0].model.dtype == "bfloat16"
        pp.test_paper_params_keep_every_condition(run)
        pp.test_every_expected_result_scores_every_item(run)
        pp.test_long_context_is_subsampled_and_curve_built(run)
        pp.test_figures_and_claims_written(run)
    finally:
        mp.undo()
