"""Benchmarks that print numbers (`make bench`, `python -m tools.bench [--params cpu] [--only scoring,...]`).

scoring: the same ICL items and model, scored (a) with shared-context reuse (lib.scoring: the context's cache
    computed once, every option run from it, the vocabulary head only at scored positions) and (b) as
    lm-evaluation-harness does, recomputing the whole context + continuation for every option with logits at
    every position. Recomputing an 8K-token context for every option takes minutes on a CPU, so (b) runs on
    the first few options only and its time per option is extrapolated to all options (printed as such);
    the log-prob difference is measured on those options.
forward: decoder forward tokens/s at context lengths 512, 2K and 8K (one pass, no vocabulary head).

generation: augmentation's sampler (lib.augmentation.sample: the prompt prefix's cache computed once, rows
    sampled from it) vs `model.generate` without prefix reuse (every row recomputes prefix + item), tokens/s.
all (the default): the three side by side in one run, each ratio printed with its goal, and the keys of the
    issue "Engines" written to runs/bench/bench.json. `--quick` runs each at a small size (checks the
    plumbing; its numbers mean nothing).

Other stages add theirs with `register("name", fn)` (fn(params, args) -> dict of numbers), e.g. the training
benchmark of the trainer. Results are printed and written to runs/<params>/bench/<name>.json.
Timings on a shared machine are noisy: run it alone.
"""
from __future__ import annotations

import argparse
import time

import torch

from lib import runs
from lib.models import load_model
from lib.training import (_linear_shape, default_splitting, make_examples, prepare_model, tokenize_examples,
                          train)

BENCHMARKS: dict = {}


def register(name: str, fn) -> None:
    """Add a benchmark: fn(params, args) -> dict of numbers (printed and saved)."""
    BENCHMARKS[name] = fn


def _model(params):
    return load_model(params.model)


def icl_bench_items(params, tok, n_tokens: int, n_items: int):
    """Real ICL items and an ICL context of about `n_tokens` tokens (reversal_curse's documents, which are
    many and short, subsampled to fit; smoke-sized data is enough and builds in seconds)."""
    from lib import datasets, icl
    from lib import params as P

    smoke = P.load("smoke")
    train, test, _ = datasets.load(smoke, "reversal_curse")
    items = icl.select_items(test, max(1, n_items // 2), seed=0, dataset="bench")[:n_items]
    ctx, info = icl.build_context(tok, train, items, fmt=params.icl.format, max_tokens=n_tokens, seed=0)
    if info["n_tokens"] < 0.8 * n_tokens:  # not enough documents: repeat them (timing only)
        train = train * (n_tokens // max(1, info["n_tokens"]) + 1)
        ctx, info = icl.build_context(tok, train, items, fmt=params.icl.format, max_tokens=n_tokens, seed=0)
    return items, ctx, info


def bench_scoring(params, args) -> dict:
    from lib import scoring

    model, tok = _model(params)
    from lib.models import context_window, encode, encode_pair

    # an 8K context plus the longest item must fit the window (SmolLM2: 8192 positions)
    n_ctx = min(args.context, context_window(model) - 100)
    items, ctx, info = icl_bench_items(params, tok, n_ctx, args.items)
    n_options = sum(len(it["options"]) for it in items)
    t = time.perf_counter()
    scoring.fill_cache(model, encode(tok, ctx)[:-1])
    fill_s = time.perf_counter() - t  # the context's part of the reuse time (loglikelihoods fills it again)
    t = time.perf_counter()
    lls, _ = scoring.loglikelihoods(model, tok, items, ctx, batch_size=args.batch_size)
    reuse_s = time.perf_counter() - t
    # lm-eval: every option recomputes context + continuation, logits at every position
    done, diffs, t_rec = 0, [], 0.0
    for it, ll in zip(items, lls):
        for j, o in enumerate(it["options"]):
            if done >= args.recompute:
                break
            c_ids, k_ids = encode_pair(tok, ctx + it["prompt"], " " + o)
            ids = torch.tensor([c_ids + k_ids], device=model.device)
            t = time.perf_counter()
            with torch.inference_mode():
                logp = torch.log_softmax(model(ids).logits[0].float(), -1)
            ref = sum(float(logp[len(c_ids) + i - 1, tk]) for i, tk in enumerate(k_ids))
            t_rec += time.perf_counter() - t
            diffs.append(abs(ref - ll[j]))
            done += 1
    per_option = t_rec / max(1, done)
    recompute_s = per_option * n_options
    return {"context_tokens": info["n_tokens"], "items": len(items), "options": n_options,
            "reuse_seconds": round(reuse_s, 2), "context_fill_seconds": round(fill_s, 2),
            "options_share": round(max(0.0, reuse_s - fill_s) / reuse_s, 3),
            "reuse_seconds_per_option": round(reuse_s / n_options, 3),
            "recompute_options_measured": done, "recompute_seconds_per_option": round(per_option, 2),
            "recompute_seconds_extrapolated": round(recompute_s, 1),
            "speedup": round(recompute_s / reuse_s, 1),
            "max_abs_logprob_diff": float(f"{max(diffs):.3g}") if diffs else None,
            "device": str(model.device), "torch_threads": torch.get_num_threads()}


def bench_forward(params, args) -> dict:
    from lib.scoring import _call_decoder, _parts

    model, _ = _model(params)
    decoder = _parts(model)[0]
    out = {}
    for n in args.lengths:
        ids = torch.randint(1000, 20000, (1, n), device=model.device)
        with torch.inference_mode():
            _call_decoder(decoder, ids[:, :16], 0)  # warm up
            t = time.perf_counter()
            _call_decoder(decoder, ids, 0)
            dt = time.perf_counter() - t
        out[f"tokens_per_s_{n}"] = round(n / dt, 1)
    out["device"], out["torch_threads"] = str(model.device), torch.get_num_threads()
    return out


register("scoring", bench_scoring)
register("forward", bench_forward)


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """The machine's measured fp32 matmul rate: best of `repeats` torch.mm of two n x n matrices (GFLOP/s)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def _flops_per_step(model, data: list[dict], full: bool) -> float:
    """Matmul FLOPs of one training step: decoder Linear layers on every token (forward 2N, backward 2N for
    activations, + 2N for weights when full), the output layer only on target tokens (same factors)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings()
    n_dec = sum(m.in_features * m.out_features for n, m in base.named_modules()
                if _linear_shape(m) and "lora_" not in n and m is not head)
    n_head = head.in_features * head.out_features
    k = 6 if full else 4
    return sum(k * n_dec * len(d["ids"]) + k * n_head * (len(d["ids"]) - d["n_context"]) for d in data)


def _hf_trainer_tokens_per_s(params, examples, steps: int, seed: int) -> dict:
    """HF Trainer + peft with default settings on the same examples, model, batch size and LoRA config:
    padded batches (DataCollatorForSeq2Seq pads to the longest, labels -100 on context and padding), full
    logits at every position. Tokens/s counts real (non-padding) tokens, steps after the first."""
    import datasets as hfds
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments
    import tempfile

    ft = params.finetune
    model, tok = load_model(params.model)
    model = prepare_model(model, ft, seed=seed)
    data = tokenize_examples(tok, examples, ft.max_length)
    rows = [{"input_ids": d["ids"], "attention_mask": [1] * len(d["ids"]),
             "labels": [-100] * d["n_context"] + d["ids"][d["n_context"]:]} for d in data]
    times = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            times.append([time.perf_counter()])

        def on_step_end(self, args, state, control, **kw):
            times[-1].append(time.perf_counter())

    seen = []

    def collate(batch):
        seen.append(sum(len(b["input_ids"]) for b in batch))
        return DataCollatorForSeq2Seq(tok, padding=True)(batch)

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=ft.batch_size, max_steps=steps,
                                 learning_rate=ft.learning_rate, seed=seed, report_to=[], save_strategy="no",
                                 logging_strategy="no", use_cpu=not torch.cuda.is_available(),
                                 disable_tqdm=True, dataloader_num_workers=0)
        trainer = Trainer(model=model, args=args, train_dataset=hfds.Dataset.from_list(rows),
                          data_collator=collate, callbacks=[Clock()])
        trainer.train()
    secs = sum(t1 - t0 for t0, t1 in times[1:])
    tokens = sum(seen[1:len(times)])
    return {"tokens_per_s": tokens / secs, "s_per_step": secs / (len(times) - 1)}


def benchmark(params=None, dataset: str | None = None, *, steps: int = 8, seed: int = 0) -> dict:
    """Tokens/s of our trainer vs HF Trainer + peft (defaults) on the same data, model, LoRA config and batch
    size, and our matmul FLOP/s as a share of the machine's fp32 matmul peak. Prints and returns the numbers.

    Data: the dataset's training rows with the paper's default splitting (first dataset of the params when
    `dataset` is None). The first step of each trainer (warm-up) is not timed."""
    from lib import datasets
    from lib import params as P

    params = params or P.load("cpu")
    dataset = dataset or params.dataset_names[0]
    rows, _, _ = datasets.load(params, dataset)
    ft = params.finetune.model_dump()
    examples = make_examples(rows, default_splitting(dataset, params.finetune), ft["loss_on"])
    peak = matmul_peak_gflops()

    model, tok = load_model(params.model)
    model = prepare_model(model, ft, seed=seed)
    info = train(model, tok, examples, {**ft, "steps": steps}, seed=seed, progress=False)
    secs = sum(info["step_seconds"][1:])
    ours_tps = sum(info["tokens"][1:]) / secs
    data = tokenize_examples(tok, examples, ft["max_length"])
    n_tokens = sum(len(d["ids"]) for d in data)
    mean_flops_per_token = _flops_per_step(model, data, ft["method"] == "full") / n_tokens
    ours_gflops = ours_tps * mean_flops_per_token / 1e9
    hf = _hf_trainer_tokens_per_s(params, examples, steps, seed)
    out = {"dataset": dataset, "model": params.model.name, "method": ft["method"],
           "batch_size": ft["batch_size"],
           "steps_timed": steps - 1, "threads": torch.get_num_threads(),
           "ours_tokens_per_s": ours_tps, "ours_s_per_step": secs / (steps - 1),
           "hf_trainer_tokens_per_s": hf["tokens_per_s"], "hf_trainer_s_per_step": hf["s_per_step"],
           "speedup_vs_hf": ours_tps / hf["tokens_per_s"],
           "matmul_peak_gflops": peak, "ours_gflops": ours_gflops, "frac_of_peak": ours_gflops / peak}
    print(f"finetune benchmark ({dataset}, {params.model.name}, {ft['method']}, batch {ft['batch_size']}, "
          f"{torch.get_num_threads()} threads, {steps - 1} timed steps):")
    print(f"  ours        {ours_tps:8.0f} tokens/s  {out['ours_s_per_step']:.2f} s/step")
    print(f"  HF Trainer  {hf['tokens_per_s']:8.0f} tokens/s  {hf['s_per_step']:.2f} s/step   "
          f"speedup {out['speedup_vs_hf']:.2f}x (goal >= 2x)")
    print(f"  matmul peak {peak:8.1f} GFLOP/s (fp32 torch.mm 2048^2); ours {ours_gflops:.1f} GFLOP/s = "
          f"{100 * out['frac_of_peak']:.0f}% of peak (goal >= 50%)")
    return out


def bench_training(params, args) -> dict:
    """Our trainer vs HF Trainer + peft (tokens/s), and vs the measured fp32 matmul peak
    (benchmark)."""
    return benchmark(params)


register("training", bench_training)


def bench_generation(params, args) -> dict:
    """Tokens/s of augmentation's sampler (prefix cache reused) vs model.generate recomputing the prefix."""
    from lib.augmentation import sample, stop_token_ids

    model, tok = _model(params)
    items, ctx, info = icl_bench_items(params, tok, args.gen_context, args.gen_rows)
    suffixes = [it["prompt"] for it in items]
    new, bs = args.gen_tokens, args.batch_size
    t = time.perf_counter()
    res, _ = sample(model, tok, ctx, suffixes, list(range(len(suffixes))), temperature=0.7,
                    max_new_tokens=new, batch_size=bs)
    ours_s = time.perf_counter() - t
    ours_tokens = sum(r["n_tokens"] for r in res)
    stops = stop_token_ids(tok)
    tok.padding_side = "left"
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    torch.manual_seed(0)
    hf_tokens, t = 0, time.perf_counter()
    for b in range(0, len(suffixes), bs):
        enc = tok([ctx + s for s in suffixes[b:b + bs]], return_tensors="pt", padding=True).to(model.device)
        with torch.inference_mode():
            out = model.generate(**enc, do_sample=True, temperature=0.7, top_k=0, max_new_tokens=new,
                                 eos_token_id=sorted(stops), pad_token_id=pad)
        for row in out[:, enc["input_ids"].shape[1]:].tolist():
            n = next((k + 1 for k, x in enumerate(row) if x in stops), len(row))
            hf_tokens += n
    hf_s = time.perf_counter() - t
    ours_tps, hf_tps = ours_tokens / ours_s, hf_tokens / hf_s
    return {"prefix_tokens": info["n_tokens"], "rows": len(suffixes), "max_new_tokens": new,
            "ours_tokens_per_s": round(ours_tps, 1), "generate_tokens_per_s": round(hf_tps, 1),
            "speedup": round(ours_tps / hf_tps, 2)}


register("generation", bench_generation)


def _cpu_model() -> str:
    import platform

    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bench_all(params, args) -> dict:
    """FT, scoring and generation side by side; prints each ratio with its goal; writes
    runs/bench/bench.json."""
    ft_data = ["reversal_curse", "semantic_structure"]
    ft = {d: benchmark(params, d, steps=args.ft_steps) for d in ft_data}
    sc, gen = bench_scoring(params, args), bench_generation(params, args)
    out = {"ft_speedup_vs_hf_trainer": min(r["speedup_vs_hf"] for r in ft.values()),
           "ft_frac_of_matmul_peak": min(r["frac_of_peak"] for r in ft.values()),
           "matmul_peak_gflops": max(r["matmul_peak_gflops"] for r in ft.values()),
           "scoring_speedup_vs_recompute": sc["speedup"], "scoring_max_abs_diff": sc["max_abs_logprob_diff"],
           "scoring_options_share": sc["options_share"], "generation_speedup": gen["speedup"],
           "cpu_model": _cpu_model(), "torch_threads": torch.get_num_threads(), "quick": bool(args.quick),
           "ft": ft, "scoring": sc, "generation": gen}
    print(f"== bench ({params.model.name}, {out['cpu_model']}, {out['torch_threads']} threads"
          f"{', --quick: sizes too small to mean anything' if args.quick else ''})")
    for k, goal in (("ft_speedup_vs_hf_trainer", ">= 2 (worst of reversal_curse, semantic_structure)"),
                    ("ft_frac_of_matmul_peak", ">= 0.5"), ("matmul_peak_gflops", "(fp32 torch.mm, this run)"),
                    ("scoring_speedup_vs_recompute", ">= 100"), ("scoring_max_abs_diff", "<= 1e-3"),
                    ("scoring_options_share", "<= 0.25"), ("generation_speedup", "(ours / model.generate)")):
        v = out[k]
        print(f"  {k:30s} {v:10.4g}   goal {goal}" if isinstance(v, (int, float)) else f"  {k:30s} {v}")
    runs.write_json(runs.RUNS / "bench" / "bench.json", out)
    return out


register("all", bench_all)


def main(argv=None) -> int:
    from lib import params as P

    ap = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="cpu", help="params file whose model (and icl.format) is benchmarked")
    ap.add_argument("--only", default="all", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    ap.add_argument("--quick", action="store_true",
                    help="every benchmark at a small size (numbers mean nothing)")
    ap.add_argument("--ft-steps", type=int, default=8, help="FT steps per trainer (the first is not timed)")
    ap.add_argument("--gen-context", type=int, default=1000, help="generation: prompt prefix tokens")
    ap.add_argument("--gen-rows", type=int, default=16, help="generation: rows sampled")
    ap.add_argument("--gen-tokens", type=int, default=24, help="generation: max new tokens per row")
    ap.add_argument("--context", type=int, default=8192, help="ICL context tokens for the scoring benchmark")
    ap.add_argument("--items", type=int, default=24, help="ICL items scored with reuse")
    ap.add_argument("--recompute", type=int, default=2, help="options recomputed in full (time extrapolated)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lengths", type=int, nargs="+", default=[512, 2048, 8192])
    args = ap.parse_args(argv)
    if args.quick:
        args.context, args.items, args.recompute, args.ft_steps = 256, 4, 1, 3
        args.gen_context, args.gen_rows, args.gen_tokens, args.lengths = 256, 4, 4, [64]
    params = P.load(args.params)
    names = args.only.split(",")
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; known: {list(BENCHMARKS)}")
    for name in names:
        res = BENCHMARKS[name](params, args)
        if name == "all":
            continue  # printed and written by bench_all
        print(f"== {name} ({params.model.name}, params {params.name})")
        for k, v in res.items():
            print(f"  {k:34s} {v}")
        runs.write_json(runs.run_dir(params) / "bench" / f"{name}.json", res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
