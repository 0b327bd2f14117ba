"""Score the serving simulator on the TensorRT-LLM 0.11-0.17 offline max-throughput rows.

python scripts/offline_trt_check.py [CSV] [--engine NAME] [--json OUT]
Prints the error (predicted / measured - 1) of throughput by release, device, model, TP
and weight format, the set-aside rows by reason, and the time per row (docs/accuracy.md,
"TensorRT-LLM 0.11-0.17 offline").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from llmroofline.serving.offline_trt import (
    OFFLINE_ENGINE,
    read_offline_csv,
    simulate_offline,
    skip_counts,
)

_REL = "shared/reference/measured_modern/trtllm_max_throughput_v0.11-v0.17.csv"
# the shared folder sits beside the checkout (or beside the folder of worktrees)
DEFAULT = next((p / _REL for p in Path(__file__).resolve().parents if (p / _REL).is_file()),
               Path(_REL))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", nargs="?", default=str(DEFAULT))
    ap.add_argument("--engine", default=OFFLINE_ENGINE)
    ap.add_argument("--json", help="write every row's prediction to this JSON file")
    a = ap.parse_args(argv)
    rows, skipped = read_offline_csv(a.csv)
    res = simulate_offline(rows, a.engine, skipped=skipped)
    s = res.summary()
    print(f"{len(res.predictions)} rows simulated, {len(res.skipped)} set aside: "
          f"{skip_counts(res.skipped)}")
    print(f"time per row: median {np.median(res.seconds) * 1e3:.0f} ms, "
          f"p90 {np.percentile(res.seconds, 90) * 1e3:.0f} ms, total {sum(res.seconds):.0f} s")
    o = s["overall"]["throughput_tok_s"]
    print(f"all: n {o['n']} median |err| {o['median_ape']:.1%} p90 {o['p90_ape']:.1%} "
          f"bias {o['bias']:+.1%}")
    for g in ("by_release", "by_hardware", "by_model", "by_tp", "by_dtype"):
        print(f"-- {g[3:]}")
        for k, ms in s[g].items():
            st = ms.get("throughput_tok_s", ms)
            print(f"  {k:32s} n {st['n']:4d}  median {st['median_ape']:6.1%}  "
                  f"p90 {st['p90_ape']:6.1%}  bias {st['bias']:+6.1%}")
    if a.json:
        Path(a.json).write_text(json.dumps([
            {"id": p.row.id, "release": p.row.source_id, "hardware": p.row.hardware,
             "model": p.row.model, "tp": p.row.tp, "dtype": p.row.weight_dtype,
             "input_len": p.row.input_len, "output_len": p.row.output_len,
             "batch": p.row.batch, "measured": p.measured, "predicted": p.predicted,
             "error": p.error} for p in res.predictions], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
