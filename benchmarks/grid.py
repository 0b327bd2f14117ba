"""Vectorized grid vs. per-point loop: what one broadcast ``analyze`` call saves.

Run:  python benchmarks/grid.py [--repeats 5] [--loop-budget 60] [--seed 0]

For each device, a 64 x 64 grid (batch log-spaced 1..256 x input length log-spaced
128..32768, output 128, exact decode aggregation over all 127 decode steps) is computed

- vectorized: ONE ``llmroofline.analyze(model, hw, batch[:, None], input[None, :], 128)``
  call (best of ``--repeats``), and
- naively: a Python loop calling ``analyze`` with scalars for each of the 4096 points
  (if the first points project the full loop past ``--loop-budget`` seconds, a random
  subset is timed and the full-loop time extrapolated; the output says so).

Both paths include reading ttft_s, tpot_s and throughput_tok_s, and receive the same
already-loaded model and device specs, so the timing is the engine alone (no file
parsing). The loop's results must equal the vectorized ones to rel 1e-9 (asserted).
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import time

import numpy as np

import llmroofline as lr

MODEL = "meta-llama/Llama-2-7b-hf"
DEVICES = ("a100-sxm-80gb", "h20")
N = 64
OUTPUT_LEN = 128
RTOL = 1e-9


def grid_axes() -> tuple[np.ndarray, np.ndarray]:
    """64 log-spaced integers per axis (rounding repeats small batches; kept: grid is 64 x 64)."""
    batch = np.round(np.geomspace(1, 256, N))
    input_len = np.round(np.geomspace(128, 32768, N))
    return batch, input_len


def metrics(a: lr.Analysis) -> dict[str, np.ndarray]:
    return {"ttft_s": a.ttft_s, "tpot_s": a.tpot_s, "throughput_tok_s": a.throughput_tok_s}


def run_vectorized(model, hw, batch, input_len) -> dict[str, np.ndarray]:
    return metrics(lr.analyze(model, hw, batch[:, None], input_len[None, :], OUTPUT_LEN))


def run_point(model, hw, b: float, i: float) -> dict[str, float]:
    a = lr.analyze(model, hw, int(b), int(i), OUTPUT_LEN)
    return {k: float(v) for k, v in metrics(a).items()}


def time_loop(model, hw, batch, input_len, points, ref):
    """Time the per-point loop over ``points`` and check each result against ``ref``."""
    worst = 0.0
    t0 = time.perf_counter()
    for (r, c) in points:
        got = run_point(model, hw, batch[r], input_len[c])
        for k, v in got.items():
            want = float(ref[k][r, c])
            rel = abs(v - want) / abs(want) if want else abs(v)
            worst = max(worst, rel)
            assert rel <= RTOL, f"loop != vectorized at batch {batch[r]:g}, input {input_len[c]:g}: {k} {v!r} vs {want!r}"
    return time.perf_counter() - t0, worst


def bench_device(model, dev_id: str, repeats: int, budget_s: float, rng) -> dict:
    hw = lr.load_hardware(dev_id)
    batch, input_len = grid_axes()
    n_points = batch.size * input_len.size

    # vectorized: one call per repeat, first call reported separately (cold caches)
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        ref = run_vectorized(model, hw, batch, input_len)
        times.append(time.perf_counter() - t0)
    cold, vec = times[0], min(times[1:])
    assert all(v.shape == (N, N) for v in ref.values())
    assert np.all(np.isfinite(ref["ttft_s"])) and np.all(np.isfinite(ref["tpot_s"]))

    # naive loop: probe a few points, then the whole grid or a random subset
    every = [(r, c) for r in range(N) for c in range(N)]
    probe = [every[k] for k in rng.choice(n_points, size=32, replace=False)]
    t_probe, _ = time_loop(model, hw, batch, input_len, probe, ref)
    projected = t_probe / len(probe) * n_points
    if projected <= budget_s:
        points, extrapolated = every, False
    else:
        k = max(64, int(budget_s / (t_probe / len(probe)) * 0.5))
        points = [every[j] for j in rng.choice(n_points, size=min(k, n_points), replace=False)]
        extrapolated = True
    t_loop, worst = time_loop(model, hw, batch, input_len, points, ref)
    per_point = t_loop / len(points)
    return {"device": dev_id, "points": n_points, "vec_s": vec, "vec_cold_s": cold,
            "loop_s": per_point * n_points, "loop_points": len(points), "loop_measured_s": t_loop,
            "per_point_s": per_point, "extrapolated": extrapolated, "worst_rel": worst,
            "speedup": per_point * n_points / vec}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="vectorized repeats (best is kept)")
    ap.add_argument("--loop-budget", type=float, default=60.0,
                    help="seconds the per-point loop may take per device before sampling")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    # Llama-2-7b's context is 4096 tokens; the grid reaches 32768 + 128, so the context
    # limit is lifted for this benchmark (the roofline arithmetic does not depend on it).
    model = lr.load_model(MODEL)
    model = dataclasses.replace(model, max_position_embeddings=32768 + OUTPUT_LEN)
    batch, input_len = grid_axes()

    print("llmroofline grid benchmark: one vectorized analyze() call vs. a per-point Python loop")
    print(f"  model {MODEL} (context limit lifted to {32768 + OUTPUT_LEN} tokens), W16A16KV16, fused attention")
    print(f"  grid {N} x {N} = {N * N} points: batch {batch.min():g}..{batch.max():g} "
          f"({len(np.unique(batch))} distinct after rounding), input {input_len.min():g}.."
          f"{input_len.max():g}, output {OUTPUT_LEN} (exact sum over {OUTPUT_LEN - 1} decode steps)")
    print(f"  vectorized: best of {args.repeats} calls (first, cold call shown apart); "
          f"loop: one analyze() per point, checked equal to rel {RTOL:g}")
    print(f"  Python {platform.python_version()}, numpy {np.__version__}, llmroofline "
          f"{lr.__version__}, {platform.machine()}")
    print()

    rows = [bench_device(model, dev, args.repeats, args.loop_budget, rng) for dev in DEVICES]

    hdr = (f"{'device':<15} {'points':>6} {'vectorized':>11} {'(cold)':>9} {'loop':>10} "
           f"{'per point':>10} {'speed-up':>9} {'max rel diff':>13}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        loop = f"{r['loop_s']:.2f} s" + ("*" if r["extrapolated"] else "")
        print(f"{r['device']:<15} {r['points']:>6} {r['vec_s'] * 1e3:>8.2f} ms {r['vec_cold_s'] * 1e3:>6.1f} ms "
              f"{loop:>10} {r['per_point_s'] * 1e3:>7.3f} ms {r['speedup']:>8.0f}x {r['worst_rel']:>13.1e}")
    print()
    for r in rows:
        if r["extrapolated"]:
            print(f"* {r['device']}: loop timed on a random subset of {r['loop_points']} points "
                  f"({r['loop_measured_s']:.1f} s) and extrapolated to {r['points']}.")
        else:
            print(f"  {r['device']}: loop ran all {r['points']} points; every one matched the "
                  f"vectorized result (ttft_s, tpot_s, throughput_tok_s).")
    vec_total = sum(r["vec_s"] for r in rows)
    loop_total = sum(r["loop_s"] for r in rows)
    print(f"  total for {len(rows)} devices: vectorized {vec_total * 1e3:.1f} ms, loop "
          f"{loop_total:.1f} s, speed-up {loop_total / vec_total:.0f}x; vectorized cost per point "
          f"{vec_total / sum(r['points'] for r in rows) * 1e6:.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
