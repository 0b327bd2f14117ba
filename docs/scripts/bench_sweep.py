"""Accuracy sweep behind docs/bench.md: measured vs predicted over a grid of workloads.

    python docs/scripts/bench_sweep.py DEVICE.toml [--threads 1] [--quick]

For each model (built once, random weights, bf16, static cache) and each workload:

- prefill grid: input 32 / 128 / 512 tokens x batch 1 / 4: measured TTFT (prefill + first
  greedy pick) vs the engine's ``ttft_s``;
- decode grid: batch 1 / 4 / 16 x context 128 / 512 / 1024: the cache is prefilled once
  (untimed), then decode steps are timed; to repeat, the static cache is rewound to the
  prompt length (later slots are masked by ``cache_position``). Measured mean step vs the
  engine's ``tpot_s`` for the same input and number of steps.

Prints one markdown row per workload and the median absolute error per model and phase.
Takes ~4 minutes on one CPU thread of the repository's VM.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from llmroofline import analyze, from_hf_config, load_hardware
from llmroofline.bench.core import raw_config
from llmroofline.bench.model import build_model, describe, model_weight_bytes, shrink_config
from llmroofline.bench.run import Generator

MODELS = [  # (label, model, layers, scale): GQA and MHA, 0.2-0.5 B params
    ("Llama-3.2-1B, 4 layers (GQA 32/8)", "llama-3.2-1b", 4, None),
    ("Llama-2-7B, 2 layers, width 1/2 (MHA 16/16)", "llama-2-7b", 2, 0.5),
]
PREFILL = [(b, i) for i in (32, 128, 512) for b in (1, 4)]
DECODE = [(b, c) for b in (1, 4, 16) for c in (128, 512, 1024)]
STEPS = 8


def time_decode(gen: Generator, steps: int, repeats: int) -> float:
    with torch.inference_mode():
        gen.cache.reset()
        tok = gen.prefill()
        samples = []
        for r in range(repeats + 1):
            for layer in gen.cache.layers:
                layer.cumulative_length.fill_(gen.input_len)
            t0 = time.perf_counter()
            for s in range(steps):
                tok = gen.step(tok, s)
            if r:   # the first pass is the warm-up
                samples.append((time.perf_counter() - t0) / steps)
    return statistics.median(samples)


def time_prefill(gen: Generator, repeats: int) -> float:
    samples = []
    with torch.inference_mode():
        for r in range(repeats + 1):
            gen.cache.reset()
            t, _ = gen.clock.once(gen.prefill)
            if r:
                samples.append(t)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("device")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="first model, fewer points")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    hw = load_hardware(args.device)
    models = MODELS[:1] if args.quick else MODELS
    errs: dict[tuple[str, str], list[float]] = {}
    print("| model | phase | batch | tokens | measured | predicted | pred/meas |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for label, name, layers, scale in models:
        cfg = shrink_config(raw_config(name)[0], layers=layers, scale=scale)
        spec = from_hf_config(cfg, name=label)
        model = build_model(cfg, "bf16")
        print(f"<!-- {label}: {describe(cfg)}, {model_weight_bytes(model) / 1e9:.2f} GB -->")
        for b, i in (PREFILL[::2] if args.quick else PREFILL):
            meas = time_prefill(Generator(model, b, i, 2), args.repeats)
            pred = float(analyze(spec, hw, b, i, 2, quant="bf16").ttft_s)
            errs.setdefault((label, "prefill"), []).append(pred / meas - 1)
            print(f"| {label} | prefill | {b} | {i} | {meas * 1e3:.1f} ms | {pred * 1e3:.1f} ms | "
                  f"{pred / meas:.2f} |", flush=True)
        for b, c in (DECODE[::3] if args.quick else DECODE):
            meas = time_decode(Generator(model, b, c, STEPS + 1), STEPS, args.repeats)
            pred = float(analyze(spec, hw, b, c, STEPS + 1, quant="bf16").tpot_s)
            errs.setdefault((label, "decode"), []).append(pred / meas - 1)
            print(f"| {label} | decode | {b} | {c} | {meas * 1e3:.1f} ms | {pred * 1e3:.1f} ms | "
                  f"{pred / meas:.2f} |", flush=True)
        del model
    print()
    print("| model | phase | points | median abs error | median signed error |")
    print("|---|---|---:|---:|---:|")
    everything = []
    for (label, phase), e in errs.items():
        everything += e
        print(f"| {label} | {phase} | {len(e)} | {statistics.median(abs(x) for x in e):.0%} | "
              f"{statistics.median(e):+.0%} |")
    print(f"| all | both | {len(everything)} | "
          f"{statistics.median(abs(x) for x in everything):.0%} | {statistics.median(everything):+.0%} |")


if __name__ == "__main__":
    main()
