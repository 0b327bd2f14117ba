"""Comparison mesh: one vectorized ``compare`` vs. a per-point loop, in the same run.

Run:  python benchmarks/compare.py [--repeats 7] [--loop-points 256] [--profile]

The mesh is 64 x 64 cells (batch 1..256 and seq 128..32768, 64 distinct near-log-spaced
integers each, output 128 so every cell sums 127 decode steps exactly) for two devices
(A100 SXM 80GB vs H20, Llama-3.1-8B), per-operator method, full decode aggregation.

- vectorized: ``compare(...)`` = one ``analyze`` call per device over the whole mesh
  (best of ``--repeats``; the first, cold call is reported too);
- loop: ``analyze`` with scalars for each (cell, device), reading batch / TPOT, on a
  random subset of ``--loop-points`` cells, extrapolated to the 4,096 cells; its results
  must equal the mesh's to rel 1e-9 (asserted).

Target: the whole mesh in < 50 ms on the project's 2-core machine. ``--profile`` prints
where the time of one mesh goes (cProfile, top functions by own time).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np

import llmroofline as lr
from llmroofline.compare import compare

MODEL = "meta-llama/Llama-3.1-8B"
DEVICES = ("a100-sxm-80gb", "h20")
N = 64
OUTPUT_LEN = 128
TARGET_S = 0.050
RTOL = 1e-9


def log_axis(lo: int, hi: int, n: int) -> np.ndarray:
    """``n`` distinct integers from lo to hi, as log-spaced as integers allow."""
    k = n
    while True:
        v = np.unique(np.round(np.geomspace(lo, hi, k)))
        if len(v) >= n:
            return v if len(v) == n else np.unique(np.concatenate([v[:n - 1], [hi]]))
        k += 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--loop-points", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()

    model = lr.load_model(MODEL)
    hws = [lr.load_hardware(d) for d in DEVICES]
    batch, seq = log_axis(1, 256, N), log_axis(128, 32768, N)
    assert len(batch) == len(seq) == N

    def run():
        return compare(model, hws, batch, seq, method="ops", output_len=OUTPUT_LEN)

    t0 = time.perf_counter()
    mesh = run()
    cold = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    best, median = min(times), float(np.median(times))
    t0 = time.perf_counter()
    compare(model, hws, batch, seq, method="global", output_len=OUTPUT_LEN)
    t_global = time.perf_counter() - t0

    # per-point loop on a random subset, checked against the mesh
    rng = np.random.default_rng(args.seed)
    cells = rng.choice(N * N, size=min(args.loop_points, N * N), replace=False)
    t0 = time.perf_counter()
    worst = 0.0
    for c in cells:
        i, j = divmod(int(c), N)
        for k, hw in enumerate(hws):
            a = lr.analyze(model, hw, int(batch[i]), int(seq[j] - OUTPUT_LEN // 2), OUTPUT_LEN)
            v = float(a.batch / a.tpot_s)
            want = float(mesh.throughput_tok_s[k, i, j])
            rel = abs(v - want) / want
            worst = max(worst, rel)
            assert rel <= RTOL, f"loop != mesh at batch {batch[i]:g}, seq {seq[j]:g}: {v} vs {want}"
    loop_subset = time.perf_counter() - t0
    loop_full = loop_subset * (N * N) / len(cells)

    print(f"llmroofline compare benchmark: {MODEL}, {' vs '.join(DEVICES)}, {N} x {N} mesh "
          f"(batch {batch[0]:g}..{batch[-1]:g}, seq {seq[0]:g}..{seq[-1]:g}), output {OUTPUT_LEN}, "
          f"per-operator, exact decode sum")
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}")
    print(f"vectorized mesh (2 analyze calls): best {best * 1e3:.1f} ms, median "
          f"{median * 1e3:.1f} ms, cold {cold * 1e3:.1f} ms  (target < {TARGET_S * 1e3:.0f} ms: "
          f"{'met' if best < TARGET_S else 'NOT met'})")
    print(f"global method mesh: {t_global * 1e3:.1f} ms")
    print(f"per-point loop: {len(cells)} cells x 2 devices in {loop_subset:.2f} s -> "
          f"{loop_full:.1f} s extrapolated to {N * N} cells "
          f"({loop_subset / len(cells) / 2 * 1e3:.2f} ms per analyze)")
    print(f"speed-up of the vectorized mesh: {loop_full / best:,.0f}x; loop matches mesh to "
          f"rel {worst:.1e}")
    if args.profile:
        import cProfile
        import pstats
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(5):
            run()
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
