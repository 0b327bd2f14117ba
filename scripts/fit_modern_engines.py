"""Fit the engines' fixed costs to the closed-loop H200 runs and cross-validate them.

    python scripts/fit_modern_engines.py [--csv FILE] [--write] [--verify]

Reads ``shared/reference/measured_modern/serving_h200_concurrency.csv`` (``serving.measured``
keeps the aggregated rows without attention data-parallelism whose model loads), simulates
each row once with its engine's fixed costs at zero, then (``serving.engine_fit``):
- fits ``request_overhead_s`` and ``iteration_overhead_s`` per engine on all its rows
  (``--write`` puts them in data/engines/{vllm-v1,sglang,trtllm-1}.toml);
- cross-validates leave-one-model-out: each model's rows predicted by the fit of the same
  engine's other models, and prints the mean absolute percentage error of TTFT, TPOT and
  throughput (c x OSL / (TTFT + TPOT x (OSL - 1))) by engine, model, concurrency and TP,
  against the same rows with both costs at zero; ``--verify`` simulates the held-out rows
  again with their fold's costs (the full closed loop instead of the first-order shift).
About a minute on a 2-core machine (two with --verify).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from llmroofline.serving import engine_fit as ef
from llmroofline.serving.measured import ENGINE_PRESETS, read_concurrency_csv

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = ROOT.parent / "shared" / "reference" / "measured_modern" / "serving_h200_concurrency.csv"


def table(title: str, d: dict) -> None:
    print(f"\n{title}")
    print(f"  {'group':42s} {'n':>4s} {'TTFT':>7s} {'TPOT':>7s} {'tok/s':>7s}")
    for g, v in d.items():
        print(f"  {str(g):42s} {v['n']:4d} {v['ttft_ms']:7.1%} {v['tpot_ms']:7.1%} {v['tok_s']:7.1%}")


def write(engine: str, params: dict, n: int) -> None:
    path = ROOT / "src" / "llmroofline" / "data" / "engines" / f"{engine}.toml"
    path.write_text(ef.set_fixed_costs(path.read_text(), params,
                                       f"fitted: scripts/fit_modern_engines.py, {n} H200 rows"))
    print(f"wrote {path.relative_to(ROOT)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", default=str(DEFAULT_CSV))
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--verify", action="store_true")
    a = ap.parse_args()
    runs, skipped = read_concurrency_csv(a.csv)
    print(f"{len(runs)} rows simulated, {len(skipped)} skipped")
    refused: list = []
    bs = ef.baselines(runs, skipped=refused)
    for r, why in refused:
        print(f"  not simulated: {r.id}: {why}")
    for backend, engine in ENGINE_PRESETS.items():
        rows = [b for b in bs if b.run.backend == backend]
        if not rows:
            continue
        p = ef.fit(rows)
        print(f"{engine}: request_overhead {p['request_overhead_s'] * 1e3:.1f} ms, "
              f"iteration_overhead {p['iteration_overhead_s'] * 1e3:.3f} ms ({len(rows)} rows)")
        if a.write:
            write(engine, p, len(rows))
    zero = [ef._row(b.run, b.ttft0_ms, b.tpot0_ms,
                    {"request_overhead_s": 0.0, "iteration_overhead_s": 0.0}) for b in bs]
    cv = ef.cross_validate(bs, "model")
    if a.verify:
        cv = ef.verify(cv, {b.run.id: b.run for b in bs})
    for name, rows in (("fixed costs at zero", zero), ("leave-one-model-out fit", cv)):
        table(f"{name}: all", {"all": ef.mape(rows)})
        table(f"{name}: by engine", ef.mape(rows, key=lambda r: r["backend"]))
    table("leave-one-model-out: by model", ef.mape(cv, key=lambda r: (r["backend"], r["model"].split("/")[-1])))
    table("leave-one-model-out: by concurrency", ef.mape(cv, key=lambda r: ef.bucket(r["concurrency"])))
    table("leave-one-model-out: by TP", ef.mape(cv, key=lambda r: f"tp {r['tp']:>2d}"))


if __name__ == "__main__":
    main()
