"""Configuration search speed: today's ``capacity`` search (serving/search.py) vs the fleet
search (serving/fleet.py), in the same run, as configurations per CPU second.

Run:  python benchmarks/search.py [--workers 2] [--requests 1000] [--skip-today]

Case (issue 20): Qwen3-32B FP8 on H100 SXM, fixed 4000-token prompts and 1000-token outputs,
Poisson arrivals, TTFT p99 <= 2 s and TPOT p99 <= 30 ms.

1. today: ``search.search`` over TP 1, 2, 4, 8 x max batch 64, 256 x max tokens 2048, 8192
   (16 configurations), 2000 requests per trial, every configuration bisected;
2. fleet, same 16 configurations, fast path (fluid bracket, 300-request trials, the best
   confirmed with ``--requests``), and exhaustive (every configuration bisected with
   ``--requests``): both must name the same best;
3. fleet, the large space: H100 SXM, H200, A100 SXM 80GB (priced) x TP 1, 2, 4, 8 x max
   batch 32, 64, 128, 256 x max tokens 2048, 8192 x KV auto/fp8 x CUDA graphs off/on x
   chunked prefill on/off (768 configurations), ranked by output tokens per USD.

CPU seconds are this process's plus its worker processes' (``os.times``), so they do not
depend on how many cores ran them; wall seconds do (and on other load on the machine).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

PRICES = {"h100-sxm": 2.99, "h200": 3.79, "a100-sxm-80gb": 1.79}   # illustrative USD/GPU-h
CASE = dict(input_dist="4000", output_dist="1000")


def cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(fn):
    c, w = cpu(), time.perf_counter()
    r = fn()
    return r, cpu() - c, time.perf_counter() - w


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--skip-today", action="store_true")
    a = ap.parse_args()
    from llmroofline.serving.fleet import Space, fleet_search
    from llmroofline.serving.search import search
    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores, "
          f"{a.workers} workers")
    rows = []
    if not a.skip_today:
        s, c, w = timed(lambda: search("Qwen/Qwen3-32B", ["h100-sxm"], tp=[1, 2, 4, 8],
                                       max_batch=[64, 256], max_tokens=[2048, 8192], quant="fp8",
                                       max_ttft_s=2.0, max_tpot_s=0.030, requests=2000,
                                       workers=a.workers, **CASE))
        best = max((p for p in s.points if p.rate > 0), key=lambda p: p.per_device)
        rows.append(("today: capacity search, 16", len(s.points), c, w, best.label))
    small = Space(hardware=("h100-sxm",), tp=(1, 2, 4, 8), max_batch=(64, 256),
                  max_tokens=(2048, 8192))
    kw = dict(slo={"ttft_p99": 2.0, "tpot_p99": 0.030}, quant="fp8", requests=a.requests,
              workers=a.workers, **CASE)
    bests = {}
    for fast in (True, False):
        f, c, w = timed(lambda: fleet_search("Qwen/Qwen3-32B", small, fast=fast, **kw))
        bests[fast] = f.best.label
        rows.append((f"fleet {'fast' if fast else 'exhaustive'}, 16", len(f.points), c, w,
                     f.best.label))
    big = Space(hardware=("h100-sxm", "h200", "a100-sxm-80gb"), tp=(1, 2, 4, 8),
                max_batch=(32, 64, 128, 256), max_tokens=(2048, 8192), kv_dtype=("auto", "fp8"),
                cuda_graphs=(False, True), chunked=(True, False))
    f, c, w = timed(lambda: fleet_search("Qwen/Qwen3-32B", big, prices=PRICES, **kw))
    rows.append((f"fleet fast, {big.size} (priced)", len(f.points), c, w, f.best.label))
    print(f"{'search':34s} {'configs':>7s} {'CPU s':>7s} {'wall s':>7s} {'configs/CPU s':>13s}  best")
    for name, n, c, w, b in rows:
        print(f"{name:34s} {n:7d} {c:7.1f} {w:7.1f} {n / c:13.1f}  {b}")
    st = f.stats
    print(f"large space: {st['confirmed']} confirmed, {st['simulated']} short-simulated, "
          f"{st['pruned']} pruned, {st['infeasible']} infeasible; {st['simulations']} distinct "
          f"bisections, {st['cost_tables']} cost tables ({st['tables_and_bounds_s']:.1f} s with "
          f"the bounds)")
    print(f"fast and exhaustive best agree: {bests[True] == bests[False]}")


if __name__ == "__main__":
    main()
