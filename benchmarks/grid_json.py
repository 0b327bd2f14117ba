"""What ``analyze --json`` costs on a grid: the old per-point objects vs the columns.

Run:  python benchmarks/grid_json.py [--repeats 3]

The grid of issue 21: ``--batch 1:256:64 --input 128:32768:64`` (47 distinct batch sizes
after rounding x 64 input lengths = 3,008 points, output 128), Llama-2-7B on an A100
SXM 80GB. In one run it times, best of ``--repeats``:

- engine: the one vectorized ``analyze`` call (what the numbers cost);
- old-style: one ``report.to_dict`` per point (every operator row of both phases at every
  point) serialised as a list with indent 1, what ``--json`` printed for a grid before;
- columnar: ``report.grid_dict`` (axes + one array per metric) serialised compactly, what
  ``--json`` prints now;
- columnar + ops: the same with the per-operator arrays (``--json --ops``).

Each path's time is building the data plus ``jsonout.dumps``; the engine is not included
in them. The columnar values are checked against the old per-point ones at sampled
points (asserted), so both encode the same numbers.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

import llmroofline as lr
from llmroofline import jsonout, report
from llmroofline.gridspec import cartesian, parse_grid


def best(fn, repeats: int):
    t, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        t = min(t, time.perf_counter() - t0)
    return t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    ax = cartesian(batch=parse_grid("batch", "1:256:64"), input_len=parse_grid("input", "128:32768:64"),
                   output_len=np.array([128.0]))
    model, hw = lr.load_model("llama-2-7b"), lr.load_hardware("a100-sxm-80gb")
    t_engine, a = best(lambda: lr.analyze(model, hw, ax["batch"], ax["input_len"],
                                          ax["output_len"]), args.repeats)
    points = list(report.grid_points(a))

    def old():
        return jsonout.dumps([report.to_dict(a, i) for i in points])

    t_old, old_text = best(old, args.repeats)
    t_col, col_text = best(lambda: jsonout.dumps(report.grid_dict(a), indent=None), args.repeats)
    t_ops, ops_text = best(lambda: jsonout.dumps(report.grid_dict(a, ops=True), indent=None),
                           args.repeats)

    # same numbers: sampled points of the old list against the columns
    old_data, col = json.loads(old_text), json.loads(col_text)["columns"]
    for k in np.linspace(0, len(points) - 1, 50).astype(int):
        for key in ("ttft_s", "tpot_s", "e2e_s", "throughput_tok_s", "batch", "input_len"):
            assert old_data[k][key] == col[key][k], (k, key)
        assert old_data[k]["memory"]["total_bytes"] == col["total_bytes"][k]

    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"best of {args.repeats}")
    shape = tuple(int(n) for n in np.broadcast_shapes(a.batch.shape, a.input_len.shape))
    print(f"grid: {len(points):,} points (shape {shape}), {len(a.decode.ops)} decode / "
          f"{len(a.prefill.ops)} prefill operator rows")
    print(f"{'path':<34}{'time':>10}{'JSON size':>14}")
    print(f"{'engine (one analyze call)':<34}{t_engine * 1e3:>8.1f} ms{'':>14}")
    for name, t, text in (("old-style: per-point objects", t_old, old_text),
                          ("columnar (--json)", t_col, col_text),
                          ("columnar + per-operator (--ops)", t_ops, ops_text)):
        print(f"{name:<34}{t * 1e3:>8.1f} ms{len(text) / 1e6:>11.2f} MB")
    print(f"columnar is {t_old / t_col:.0f}x faster than old-style "
          f"({t_col / t_engine:.2f}x the engine time); with --ops {t_old / t_ops:.1f}x")


if __name__ == "__main__":
    main()
