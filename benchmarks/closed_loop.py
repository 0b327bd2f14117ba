"""Closed-loop point speed: ``serving.measured.simulate_run`` per row of the H200
concurrency CSV (issue 18: "a closed-loop point simulates in under 50 ms on one core").

Run:  python benchmarks/closed_loop.py [CSV] [--rows 60] [--seed 0]

A random sample of the simulable rows (``read_concurrency_csv``) is simulated twice in the
same run, after each row's iteration-cost table has been built once (the table is shared by
every row of one model x device x precision x layout, so its build is reported apart):

- fast: ``simulate_run(run)`` as validate and the engine fit call it (cached cost tables,
  decode rows in lockstep, vectorized pure-decode stretches);
- step: ``simulate_run(run, fast=False)``: every iteration scheduled and costed one at a
  time (same tables), the baseline; its TTFT / TPOT must equal the fast run's (rel 1e-9).

Prints median / p90 / max ms per row for both, the table builds, and the slowest rows.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

from llmroofline.errors import InputError
from llmroofline.serving import measured

_REL = "shared/reference/measured_modern/serving_h200_concurrency.csv"
DEFAULT = next((p / _REL for p in Path(__file__).resolve().parents if (p / _REL).is_file()),
               Path(_REL))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", nargs="?", default=str(DEFAULT))
    ap.add_argument("--rows", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    runs, _ = measured.read_concurrency_csv(a.csv)
    sample = random.Random(a.seed).sample(runs, min(a.rows, len(runs)))
    builds, fast, step, ok = [], [], [], []
    for r in sample:
        t = time.perf_counter()
        try:
            first = measured.simulate_run(r)       # builds the row's cost table if new
        except InputError as e:                     # a layout the engine refuses
            print(f"skip {r.id}: {e}")
            continue
        builds.append(time.perf_counter() - t)
        t = time.perf_counter()
        f = measured.simulate_run(r)
        fast.append(time.perf_counter() - t)
        t = time.perf_counter()
        s = measured.simulate_run(r, fast=False)
        step.append(time.perf_counter() - t)
        assert np.isclose(f["ttft_ms"], s["ttft_ms"], rtol=1e-9), r.id
        assert np.isclose(f["tpot_ms"], s["tpot_ms"], rtol=1e-9), r.id
        assert f["ttft_ms"] == first["ttft_ms"], r.id
        ok.append(r)

    def line(name, xs):
        ms = np.array(xs) * 1e3
        return (f"{name:6s} median {np.median(ms):7.1f} ms  p90 {np.percentile(ms, 90):7.1f} ms  "
                f"max {ms.max():7.1f} ms  (n {ms.size})")
    print(f"{len(ok)} rows of {a.csv}")
    print(line("fast", fast))
    print(line("step", step))
    print(line("first", builds) + "  [first call: cost table (once per setup) + simulation]")
    print(f"under 50 ms (fast): {np.mean(np.array(fast) < 0.05):.0%} of rows")
    worst = sorted(zip(fast, ok), key=lambda t: -t[0])[:5]
    for t, r in worst:
        print(f"  slowest: {r.id} c {r.concurrency} isl {r.isl} osl {r.osl}: {t * 1e3:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
