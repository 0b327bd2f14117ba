"""Serving simulator speed: fast path vs. step-by-step vs. a naive per-iteration engine call;
routers; and (``--search``) a capacity search over 48 configurations.

Run:  python benchmarks/simulate.py [--requests 5000] [--rate 20] [--naive-iters 300] [--search]

One workload (Llama-3.1-8B on H100 SXM, Poisson arrivals, lognormal 1024/0.6 prompts and
256/0.8 outputs) is simulated three ways in the same run:

- fast: ``simulate(..., fast=True)``: cached iteration-cost tables, decode rows kept in
  lockstep as running totals, and pure-decode stretches of 8 or more iterations advanced
  in one vectorized step;
- step: ``fast=False``: every iteration scheduled and costed one at a time (same tables,
  same lockstep totals); results must equal the fast run (asserted, rel 1e-9);
- naive: each iteration costed by building the operator graph for its rows and calling
  ``phases.step_cost`` (what a simulator without the tables would do); timed on the first
  ``--naive-iters`` iterations of the step run's log and extrapolated to the whole run.

Then 4 replicas at 4 x ``--rate`` behind the round-robin router (replicas simulated one
after the other) and the least-loaded router (replicas advanced together, to each arrival);
the speed targets of issue 9: 10,000 requests (saturated and decode-dominated) in under
2 s, and one ``capacity`` (TTFT p99 <= 1 s, TPOT p99 <= 50 ms, 2000 requests per trial) in
under 5 s.
``--search``: ``serving.search`` over H100 SXM and A100 SXM 80GB x TP 1, 2, 4, 8 x max
batch 64, 128, 256 x max tokens 2048, 8192 (48 configurations, 2000 requests per trial,
target 100 req/s, TTFT p99 <= 1 s, TPOT p99 <= 50 ms), on all cores.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from llmroofline.graph import build_ops
from llmroofline.phases import step_cost
import os

from llmroofline.serving import IterationCost, make_workload, simulate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--naive-iters", type=int, default=300)
    ap.add_argument("--model", default="meta-llama/Llama-3.1-8B")
    ap.add_argument("--hardware", default="h100-sxm")
    ap.add_argument("--search", action="store_true", help="also time a 48-configuration search")
    args = ap.parse_args()
    t = time.perf_counter()
    cost = IterationCost.of(args.model, args.hardware)
    t_build = time.perf_counter() - t
    print(f"python {platform.python_version()}, {platform.machine()}; cost tables built in "
          f"{t_build * 1e3:.0f} ms")
    for rate in (args.rate, args.rate / 4):
        wl = make_workload(args.requests, rate=rate, seed=0,
                           max_context=cost.model.max_position_embeddings)
        res = {}
        for fast in (True, False):
            best = float("inf")
            for _ in range(2):
                t = time.perf_counter()
                r = simulate(workload=wl, cost=cost, fast=fast)
                best = min(best, time.perf_counter() - t)
            res[fast] = (best, r)
        (tf, rf), (ts, rs) = res[True], res[False]
        assert np.allclose(rf.finish_s, rs.finish_s, rtol=1e-9, atol=0)
        iters = rs.iter_time_s.size
        # naive: graph + step_cost per iteration, on the rows of a similar mix
        roof = cost.roof
        n = min(args.naive_iters, iters)
        rows = rs.iter_rows[:n].astype(int)
        toks = rs.iter_tokens[:n]
        t = time.perf_counter()
        for b, tok in zip(rows, toks):
            q = np.ones(b)
            q[0] += max(tok - b, 0)
            L = np.full(b, 1000.0)
            step_cost(build_ops(cost.model, cost.prec, 1, q, L + q, layout=cost.layout), roof)
        t_naive = (time.perf_counter() - t) / n * iters
        print(f"rate {rate:g} req/s, {args.requests} requests, {iters} iterations "
              f"({rf.iter_time_s.size} in the fast log):")
        print(f"  fast  {tf:7.3f} s   ({iters / tf:,.0f} iterations/s, "
              f"{tf / iters * 1e6:.1f} us per iteration)")
        print(f"  step  {ts:7.3f} s   ({iters / ts:,.0f} iterations/s)   fast is {ts / tf:.1f}x")
        print(f"  naive {t_naive:7.3f} s   (extrapolated from {n} iterations)   fast is "
              f"{t_naive / tf:.0f}x")
    wl = make_workload(args.requests, rate=4 * args.rate, seed=0,
                       max_context=cost.model.max_position_embeddings)
    for router in ("round-robin", "least-loaded"):
        t = time.perf_counter()
        r = simulate(workload=wl, cost=cost, replicas=4, router=router)
        dt = time.perf_counter() - t
        print(f"4 replicas, {router:12s} at {4 * args.rate:g} req/s: {dt:6.3f} s "
              f"({r.iter_time_s.size} iterations, {r.iter_time_s.size / dt:,.0f} it/s)")
    print("targets (one core):")
    for rate in (args.rate, args.rate / 4):
        wl = make_workload(10_000, rate=rate, seed=0,
                           max_context=cost.model.max_position_embeddings)
        best = float("inf")
        for _ in range(2):
            t = time.perf_counter()
            r = simulate(workload=wl, cost=cost)
            best = min(best, time.perf_counter() - t)
        n_it = r.iter_time_s.size
        print(f"  10,000 requests at {rate:g} req/s: {best:.3f} s, {n_it} iterations "
              f"({n_it / best:,.0f} it/s)   [target < 2 s: {'met' if best < 2 else 'MISSED'}]")
    closed_loop_points()
    from llmroofline.serving import capacity
    t = time.perf_counter()
    c = capacity(args.model, args.hardware, max_ttft_s=1.0, max_tpot_s=0.05, cost=cost)
    dt = time.perf_counter() - t
    print(f"  capacity at TTFT p99 <= 1 s, TPOT p99 <= 50 ms: {c.rate:.2f} req/s in {dt:.2f} s "
          f"[target < 5 s: {'met' if dt < 5 else 'MISSED'}]")
    if args.search:
        from llmroofline.serving.search import search
        t = time.perf_counter()
        s = search(args.model, [args.hardware, "a100-sxm-80gb"], tp=[1, 2, 4, 8],
                   max_batch=[64, 128, 256], max_tokens=[2048, 8192], rate_target=100,
                   max_ttft_s=1.0, max_tpot_s=0.05, requests=2000)
        dt = time.perf_counter() - t
        b = s.best
        print(f"search: {len(s.points)} configurations in {dt:.1f} s on {os.cpu_count()} cores "
              f"({sum(p.seconds for p in s.points):.1f} s of capacity searches, "
              f"{len(s.verifications)} verifications); cheapest at 100 req/s: "
              f"{b.replicas} x {b.label} = {b.devices} devices" if b else "none")
        print(f"  50 configurations at this pace: {dt / len(s.points) * 50:.1f} s "
              f"[target < 60 s: {'met' if dt / len(s.points) * 50 < 60 else 'MISSED'}]")


# closed-loop points as serving.measured.simulate_run runs a measured row: c clients, 1
# warm-up request, one measured and one that keeps the load while it runs (staggered) (model, device, quant, tp, preset, I, O, c)
CLOSED_POINTS = [
    ("meta-llama/Llama-3.1-70B", "h200", "fp8", 2, "vllm-v1", 1024, 1024, 8),
    ("meta-llama/Llama-3.1-8B-Instruct", "h200", "fp8", 1, "sglang", 1000, 100, 160),
    ("meta-llama/Llama-3.1-70B", "h200", "fp8", 2, "trtllm-1", 1024, 8192, 128),
    ("openai/gpt-oss-120b", "h200", "w4a16,kv-fp8", 8, "trtllm-1", 1024, 8192, 64),
    ("meta-llama/Llama-3.1-8B-Instruct", "h200", "fp8", 1, "vllm-v1", 8192, 1024, 256),
]


def closed_loop_points() -> None:
    """Time one closed-loop point (the simulation, cost tables prebuilt), best of 3;
    target < 50 ms on one core (issue 18)."""
    from llmroofline.parallel import Layout
    from llmroofline.serving.config import scheduler_config
    from llmroofline.specs.engine import load_engine
    print("closed-loop points (3 requests per client: 1 warm-up, 1 measured, 1 to keep the load; staggered; best of 3):")
    for model, hw, quant, tp, preset, I, O, c in CLOSED_POINTS:
        cfg = scheduler_config(load_engine(preset))
        cost = IterationCost.of(model, hw, quant=quant, layout=Layout(tp=tp),
                                max_tokens=cfg.max_tokens, max_batch=cfg.max_batch)
        wl = make_workload(3 * c, concurrency=c, input_dist=f"fixed:{I}",
                           output_dist=f"fixed:{O}",
                           max_context=cost.model.max_position_embeddings)
        best, cpu = float("inf"), float("inf")
        for _ in range(3):
            t, p = time.perf_counter(), time.process_time()
            r = simulate(workload=wl, config=cfg, cost=cost)
            best = min(best, time.perf_counter() - t)
            cpu = min(cpu, time.process_time() - p)
        print(f"  {model.split('/')[-1]} TP {tp} {preset} {I}/{O} c = {c}: "
              f"{best * 1e3:.1f} ms wall, {cpu * 1e3:.1f} ms CPU, {r.iter_time_s.size} "
              f"iterations [target < 50 ms: {'met' if best < 0.05 else 'MISSED'}]")


if __name__ == "__main__":
    main()
