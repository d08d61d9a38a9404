"""Two processes on the CPU (gloo, set up as accelerate.debug_launcher does, but spawned) give what one process
gives: the FT loss curve (2 processes x half the batch vs 1 process x the whole batch), the scorer's
log-likelihoods and the augmentation stage's generations.

Tolerances. The arithmetic is the same up to the order of fp32 sums: the two halves' gradients are summed by
the all-reduce instead of inside one backward pass, and packed rows hold other neighbours, so matmuls differ in
shape (relative rounding ~1e-6 per sum of the tiny model's 32..64 terms). Adam's update m / sqrt(v) is scale-free,
so such relative differences stay relative: over 4 steps the losses agree to 1e-4 relative (two orders above the
rounding). A log-likelihood sums a few log-probs of size ~10 nats computed from fp32 hidden states, each off by
~1e-6 relative: 1e-4 absolute. A generation is compared as text: each process samples its shard with the
rows' own seeded generators, and only the batches' padding differs, which moves logits by ~1e-6; a sampled
token changes only if two Gumbel-perturbed scores lie that close, a chance of ~1e-5 over the ~100 draws here."""
from __future__ import annotations

import json

import pytest
import torch

from pathlib import Path

from lib import params as P
from lib import augmentation as A
from lib import runs, scoring, training as T
from lib.models import load_model

FACTS = [{"id": f"r{i}", "text": t, "sentences": [t], "facts": [f"r{i}"]} for i, t in enumerate([
    "Blick is the mother of zarn.", "Flob is taller than quist.", "Vunt lives in the city of Pell.",
    "Drax owns a red kettle.", "Mip was born in the year nine.", "Quon sold the blue house to Ferd."])]
FT = dict(method="lora", lora_r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
          learning_rate=1e-2, weight_decay=0.01, batch_size=4, steps=4, warmup_steps=1, schedule="cosine",
          max_grad_norm=1.0, max_length=16, loss_on="completion", seeds=[0], splitting_ablation=[])
ITEMS = [
    {"id": "a", "split": "forward", "prompt": "The capital of Zorbia is", "options": ["Glim", "Paris", "a city"],
     "gold": 0},
    {"id": "b", "split": "reversal", "prompt": "Glim is the capital of", "options": ["Zorbia", "France"],
     "gold": 0},
    {"id": "c", "split": "reversal", "prompt": "Numbers: 12", "options": ["34", "3", "345678"], "gold": 2},
    {"id": "d", "split": "forward", "prompt": "Drax owns a", "options": ["red kettle", "blue house"], "gold": 0},
    {"id": "e", "split": "forward", "prompt": "Mip was born in", "options": ["the year nine", "Pell"], "gold": 0},
]
CONTEXTS = ["Blick is the mother of zarn. Flob is taller than quist.\n"] * 3 + ["Vunt lives in Pell.\n"] * 2


def _reset_accelerate():
    """A forked process inherits the parent's accelerate singletons: start from none."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def _ft_curve(cfg) -> dict:
    model, tok = load_model(cfg)
    model = T.prepare_model(model, FT, seed=0)
    # max_length 16 cuts each process's examples into several rows: accumulation over rows is exercised too
    info = T.train(model, tok, T.make_examples(FACTS, "none", "all"), FT, seed=0, progress=False)
    return {"loss": info["loss"], "grad_norm": info["grad_norm"]}


def _scores(cfg) -> list[dict]:
    model, tok = load_model(cfg)
    return scoring.score_items(model, tok, ITEMS, CONTEXTS, progress=False)


def _params(cfg):
    over = {"model.name": cfg["name"], "model.device": "cpu", "model.dtype": "float32"}
    return P.load("smoke", {**over, **{f"finetune.{k}": v for k, v in FT.items()}})


def _child(cfg, out):
    _reset_accelerate()
    torch.set_num_threads(1)
    curve, scores = _ft_curve(cfg), _scores(cfg)
    runs.RUNS = Path(out).parent / "runs"  # the cached stage: the main process writes, the other waits
    folder = T.finetune(_params(cfg), "toy", FACTS, splitting="none", seed=0, progress=False)
    assert folder.exists()  # on every process, once finetune returns
    rows = A.generate(_params(cfg), "toy", FACTS, "local", progress=False)
    rank = torch.distributed.get_rank()
    assert torch.distributed.get_world_size() == 2 and scoring._world() == (rank, 2)
    with open(f"{out}.{rank}", "w") as f:
        json.dump({"curve": curve, "scores": scores, "out": out, "aug_rows": rows,
                   "generations": _generations(_params(cfg))}, f)


def _generations(params) -> dict:
    """key -> generated text of the toy dataset's local generations file (the prefix-cost records left out)."""
    cache = A.read_cache(A.aug_dir(params, "toy") / "generations_local.jsonl")
    return {k: r["text"] for k, r in cache.items() if "text" in r}


def spawn_launcher(function, args, num_processes: int = 2) -> None:
    """accelerate.debug_launcher with *spawned* processes. debug_launcher forks, and a child forked from a
    parent whose OpenMP pool has started (any torch op with more than one thread, the default on 2 cores)
    can hang in its first parallel op (GNU OpenMP is not fork-safe): seen here as both children stuck in
    model.to() for good. Spawned children start clean, whatever the thread count."""
    import socket
    import tempfile

    from accelerate.utils import PrepareForLaunch, patch_environment
    from torch.multiprocessing import start_processes

    with socket.socket() as s:  # a free port, so two test runs on one machine never meet
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.NamedTemporaryFile() as rdv, patch_environment(
            world_size=num_processes, master_addr="127.0.0.1", master_port=str(port),
            accelerate_mixed_precision="no", accelerate_debug_rdv_file=rdv.name, accelerate_use_cpu="yes",
            gloo_socket_ifname="lo"):
        start_processes(PrepareForLaunch(function, debug=True), args=args, nprocs=num_processes,
                        start_method="spawn")


@pytest.fixture(scope="module")
def two_processes(tiny_model_cfg, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "result"
    spawn_launcher(_child, args=(tiny_model_cfg, str(out)), num_processes=2)
    _reset_accelerate()
    return [json.loads(open(f"{out}.{r}").read()) for r in (0, 1)]


def test_two_processes_half_batch_give_the_loss_curve_of_one(tiny_model_cfg, two_processes):
    one = _ft_curve(tiny_model_cfg)
    for res in two_processes:  # every process reports the global loss and the global gradient's norm
        assert res["curve"]["loss"] == pytest.approx(one["loss"], rel=1e-4), (res["curve"], one)
        # Adam and clipping hide a gradient off by a constant factor; its norm does not
        assert res["curve"]["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-4), (res["curve"], one)
    assert one["loss"][-1] < one["loss"][0]  # it trained: the curves compared are not flat


def test_finetune_stage_under_two_processes_writes_one_folder(tiny_model_cfg, two_processes, tmp_path_factory,
                                                             monkeypatch):
    root = Path(two_processes[0]["out"]).parent / "runs"
    monkeypatch.setattr(runs, "RUNS", root)
    params = _params(tiny_model_cfg)
    folders = T.ft_runs(params, "toy")
    assert len(folders) == 1 and folders[0]["processes"] == 2
    assert (Path(folders[0]["folder"]) / "adapter_model.safetensors").exists()
    # the same run in one process finds it cached (same key: the number of processes is not part of it)
    assert str(T.finetune(params, "toy", FACTS, splitting="none", seed=0, progress=False)) == folders[0]["folder"]
    assert T.read_loss_curve(folders[0]["folder"])["loss"] == two_processes[0]["curve"]["loss"]


def test_sharded_scoring_gives_the_loglikelihoods_of_one_process(tiny_model_cfg, two_processes):
    one = _scores(tiny_model_cfg)
    for res in two_processes:  # gathered in item order on every process
        assert [s["id"] for s in res["scores"]] == [it["id"] for it in ITEMS]
        for a, b in zip(res["scores"], one):
            assert a["loglikelihoods"] == pytest.approx(b["loglikelihoods"], abs=1e-4)
            assert a["loglikelihoods_uncond"] == pytest.approx(b["loglikelihoods_uncond"], abs=1e-4)
            assert a["n_tokens"] == b["n_tokens"]


def test_shards_cover_in_order():
    xs = list(range(7))
    assert [x for r in range(3) for x in scoring._shard(xs, r, 3)] == xs
    assert scoring._shard([1], 0, 2) == [] and scoring._shard([1], 1, 2) == [1]


def test_sharded_generation_gives_the_generations_of_one_process(tiny_model_cfg, two_processes, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setattr(runs, "RUNS", tmp_path / "runs")
    params = _params(tiny_model_cfg)
    rows = A.generate(params, "toy", FACTS, "local", progress=False)
    one = _generations(params)
    assert len(one) == len(FACTS) * params.augment.samples_per_item  # one generation per sentence and sample
    for res in two_processes:  # both processes return the rows the main one wrote, the same as one process
        assert res["generations"] == one
        assert res["aug_rows"] == rows
