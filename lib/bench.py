"""Benchmarks that print numbers (`make bench`, `python -m lib.bench [--params cpu] [--only scoring,forward]`).

scoring: the same ICL items and model, scored (a) with shared-context reuse (lib.scoring: the context's cache
    computed once, every option run from it, the vocabulary head only at scored positions) and (b) as
    lm-evaluation-harness does, recomputing the whole context + continuation for every option with logits at
    every position. Recomputing an 8K-token context for every option takes minutes on a CPU, so (b) runs on
    the first few options only and its time per option is extrapolated to all options (printed as such);
    the log-prob difference is measured on those options.
forward: decoder forward tokens/s at context lengths 512, 2K and 8K (one pass, no vocabulary head).

Other stages add theirs with `register("name", fn)` (fn(params, args) -> dict of numbers), e.g. the training
benchmark of lib.training. Results are printed and written to runs/<params>/bench/<name>.json.
Timings on a shared machine are noisy: run it alone.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from . import runs

BENCHMARKS: dict = {}


def register(name: str, fn) -> None:
    """Add a benchmark: fn(params, args) -> dict of numbers (printed and saved)."""
    BENCHMARKS[name] = fn


def _model(params):
    from .models import load_model

    return load_model(params.model)


def icl_bench_items(params, tok, n_tokens: int, n_items: int):
    """Real ICL items and an ICL context of about `n_tokens` tokens (reversal_curse's documents, which are
    many and short, subsampled to fit; smoke-sized data is enough and builds in seconds)."""
    from . import datasets, icl
    from . import params as P

    smoke = P.load("smoke")
    train, test, _ = datasets.load(smoke, "reversal_curse")
    items = icl.select_items(test, max(1, n_items // 2), seed=0, dataset="bench")[:n_items]
    ctx, info = icl.build_context(tok, train, items, fmt=params.icl.format, max_tokens=n_tokens, seed=0)
    if info["n_tokens"] < 0.8 * n_tokens:  # not enough documents: repeat them (timing only)
        train = train * (n_tokens // max(1, info["n_tokens"]) + 1)
        ctx, info = icl.build_context(tok, train, items, fmt=params.icl.format, max_tokens=n_tokens, seed=0)
    return items, ctx, info


def bench_scoring(params, args) -> dict:
    from . import scoring

    model, tok = _model(params)
    from .models import context_window

    # an 8K context plus the longest item must fit the window (SmolLM2: 8192 positions)
    items, ctx, info = icl_bench_items(params, tok, min(args.context, context_window(model) - 100), args.items)
    n_options = sum(len(it["options"]) for it in items)
    t = time.perf_counter()
    lls, _ = scoring.loglikelihoods(model, tok, items, ctx, batch_size=args.batch_size)
    reuse_s = time.perf_counter() - t
    # lm-eval: every option recomputes context + continuation, logits at every position
    done, diffs, t_rec = 0, [], 0.0
    for it, ll in zip(items, lls):
        for j, o in enumerate(it["options"]):
            if done >= args.recompute:
                break
            c_ids, k_ids = scoring.encode_pair(tok, ctx + it["prompt"], " " + o)
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
            "reuse_seconds": round(reuse_s, 2), "reuse_seconds_per_option": round(reuse_s / n_options, 3),
            "recompute_options_measured": done, "recompute_seconds_per_option": round(per_option, 2),
            "recompute_seconds_extrapolated": round(recompute_s, 1), "speedup": round(recompute_s / reuse_s, 1),
            "max_abs_logprob_diff": float(f"{max(diffs):.3g}") if diffs else None,
            "device": str(model.device), "torch_threads": torch.get_num_threads()}


def bench_forward(params, args) -> dict:
    from .scoring import _call_decoder, _parts

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


def bench_training(params, args) -> dict:
    """Our trainer vs HF Trainer + peft (tokens/s), and vs the measured fp32 matmul peak (lib.training.benchmark)."""
    from .training import benchmark

    return benchmark(params)


register("training", bench_training)


def main(argv=None) -> int:
    from . import params as P

    ap = argparse.ArgumentParser(prog="python -m lib.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="cpu", help="params file whose model (and icl.format) is benchmarked")
    ap.add_argument("--only", default=None, help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    ap.add_argument("--context", type=int, default=8192, help="ICL context tokens for the scoring benchmark")
    ap.add_argument("--items", type=int, default=24, help="ICL items scored with reuse")
    ap.add_argument("--recompute", type=int, default=2, help="options recomputed in full (time extrapolated)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lengths", type=int, nargs="+", default=[512, 2048, 8192])
    args = ap.parse_args(argv)
    params = P.load(args.params)
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; known: {list(BENCHMARKS)}")
    for name in names:
        res = BENCHMARKS[name](params, args)
        print(f"== {name} ({params.model.name}, params {params.name})")
        for k, v in res.items():
            print(f"  {k:34s} {v}")
        runs.write_json(runs.run_dir(params) / "bench" / f"{name}.json", res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
