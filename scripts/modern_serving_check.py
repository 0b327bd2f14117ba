"""Score the simulator on the closed-loop H200 runs of vLLM, SGLang and TensorRT-LLM.

Reads ``shared/reference/measured_modern/serving_h200_concurrency.csv`` (or ``--csv``) with
``serving.measured``, keeps the aggregated rows without attention data-parallelism whose
model loads, simulates each at its concurrency (``simulate_run``) in several setups, and
prints the mean absolute percentage error of TTFT, TPOT and throughput
(``c x OSL / (TTFT + TPOT x (OSL - 1))``, for measured and predicted alike) by backend,
model, layout and concurrency bucket. Nothing is fitted: every value comes from the
default kernels and the engine files' documented defaults (data/engines/).

Setups (``--setups``, comma-separated):
- ``today``: the simulator before issue 18: the ``vllm`` engine's scheduler for every
  backend, all clients started at t = 0, no engine behaviours;
- ``stagger``: the same limits, clients staggered over one request cycle (the new default);
- ``engine``: the backend's engine file (``vllm-v1``, ``sglang``, ``trtllm-1``: limits, mixing,
  CUDA-graph padding, KV rule, reservation, per-request fixed cost), staggered;
- ``engine-burst``: the backend's engine file with the clients started together (ramp 0).

Run:  python scripts/modern_serving_check.py [--setups today,engine] [--limit N]
      [--out predictions.csv]
"""

from __future__ import annotations

import argparse
import csv
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from llmroofline.errors import InputError
from llmroofline.serving.measured import read_concurrency_csv, simulate_run

DEFAULT_CSV = Path(__file__).resolve().parents[1] / ".." / ".." / "shared" / "reference" / \
    "measured_modern" / "serving_h200_concurrency.csv"
SETUPS = {
    "today": dict(preset="vllm", behaviours=False, ramp_s=0.0),
    "stagger": dict(preset="vllm", behaviours=False, ramp_s=None),
    "engine": dict(preset=None, behaviours=True, ramp_s=None),
    "engine-burst": dict(preset=None, behaviours=True, ramp_s=0.0),
}


def bucket(c: int) -> str:
    return "c 1-8" if c <= 8 else "c 9-32" if c <= 32 else "c 33-128" if c <= 128 else "c > 128"


def short(model: str) -> str:
    return model.split("/")[-1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", default=str(DEFAULT_CSV))
    ap.add_argument("--setups", default="today,stagger,engine,engine-burst")
    ap.add_argument("--limit", type=int, default=0, help="only the first N simulable rows")
    ap.add_argument("--rounds", type=int, default=2, help="requests per client after the warm-up (the last round keeps the load on the measured one)")
    ap.add_argument("--out", default=None, help="write per-row predictions to this CSV")
    args = ap.parse_args()
    p = Path(args.csv)
    if not p.is_file():
        p = Path("/work/shared/reference/measured_modern/serving_h200_concurrency.csv")
    runs, skipped = read_concurrency_csv(p)
    print(f"{p.name}: {len(runs) + len(skipped)} rows, {len(runs)} simulable, "
          f"{len(skipped)} skipped:")
    why = defaultdict(int)
    for _, w in skipped:
        why[w] += 1
    for w, n in sorted(why.items(), key=lambda x: -x[1]):
        print(f"  {n:4d}  {w}")
    if args.limit:
        runs = runs[:args.limit]
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    for s in setups:
        if s not in SETUPS:
            raise SystemExit(f"setups: unknown {s!r} (known: {', '.join(SETUPS)})")
    rows, failed, times = [], defaultdict(list), defaultdict(list)
    for run in runs:
        rec = {"id": run.id, "backend": run.backend, "version": run.version or "?",
               "model": short(run.model_path), "layout": f"TP{run.tp}" + (
                   f" EP{run.moe_ep}" if run.moe_ep > 1 else ""), "isl": run.isl,
               "osl": run.osl, "c": run.concurrency, "bucket": bucket(run.concurrency),
               "ttft_ms": run.ttft_ms, "tpot_ms": run.tpot_ms, "tok_s": run.tok_s}
        for s in setups:
            t = time.perf_counter()
            try:
                pr = simulate_run(run, rounds=args.rounds, **SETUPS[s])
            except InputError as e:
                failed[s].append((run.id, str(e)))
                continue
            times[s].append(time.perf_counter() - t)
            for k in ("ttft_ms", "tpot_ms", "tok_s"):
                rec[f"{s}:{k}"] = pr[k]
        rows.append(rec)
    for s in setups:
        if failed[s]:
            print(f"{s}: {len(failed[s])} rows failed to simulate, e.g. {failed[s][0][1]}")
    if args.out:
        keys = sorted({k for r in rows for k in r}, key=lambda k: (":" in k, k))
        with open(args.out, "w", newline="") as f:
            w = csv.DictWriter(f, keys)
            w.writeheader()
            w.writerows(rows)
    print()
    for s in setups:
        t = np.array(times[s])
        if t.size:
            print(f"{s}: {t.size} rows simulated, per row median {1e3 * np.median(t):.0f} ms, "
                  f"p90 {1e3 * np.percentile(t, 90):.0f} ms (first row of each setup "
                  "includes building its cost tables)")
    for group in ("all", "backend", "model", "layout", "bucket"):
        print(f"\nMAPE by {group}: TTFT / TPOT / throughput, % (n rows)")
        head = f"| {group} | n | " + " | ".join(s for s in setups) + " |"
        print(head)
        print("|" + "---|" * (2 + len(setups)))
        keys = sorted({"all" if group == "all" else (
            f"{r['backend']} {r['model']}" if group == "model" else r[group]) for r in rows})
        for key in keys:
            sel = [r for r in rows if group == "all" or (
                f"{r['backend']} {r['model']}" if group == "model" else r[group]) == key]
            cells = []
            for s in setups:
                ok = [r for r in sel if f"{s}:ttft_ms" in r]
                if not ok:
                    cells.append("-")
                    continue
                e = [100 * np.mean([abs(r[f"{s}:{k}"] / r[k] - 1) for r in ok])
                     for k in ("ttft_ms", "tpot_ms", "tok_s")]
                cells.append(f"{e[0]:.0f} / {e[1]:.0f} / {e[2]:.0f}")
            print(f"| {key} | {len(sel)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
