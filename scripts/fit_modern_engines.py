"""Fit the engines' parameters to the closed-loop H200 runs and cross-validate them.

    python scripts/fit_modern_engines.py [--csv FILE] [--write] [--verify]

Reads ``shared/reference/measured_modern/serving_h200_concurrency.csv`` (``serving.measured``
keeps the aggregated rows whose model loads, each measurement once), simulates each row
at the centre of the kernel parameters with the fixed costs at zero and once more per
slope parameter (``serving.engine_fit.baselines(kernels=True)``), then:
- fits the six named parameters per engine on all its rows: request and iteration
  overheads, CUDA-graph launch factor, compute factor, MoE routing overhead, and the
  benchmark harness's first-wave share (``--write`` puts them in
  data/engines/{vllm-v1,sglang,trtllm-1}.toml and data/benchmark_clients.toml);
- cross-validates leave-one-model-out: each model's rows predicted by the fit of the same
  engine's other models, and prints the mean absolute percentage error of TTFT, TPOT and
  throughput (c x OSL / (TTFT + TPOT x (OSL - 1))) by engine, model, concurrency and TP,
  beside the fit of the two fixed costs alone and the rows with every parameter at the
  centre; ``--verify`` simulates the held-out rows again with their fold's values (the
  full closed loop instead of the first-order shift).
About two minutes on a 2-core machine (five with --verify).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from llmroofline.serving import engine_fit as ef
from llmroofline.serving.measured import ENGINE_PRESETS, read_concurrency_csv

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "llmroofline" / "data"
DEFAULT_CSV = ROOT.parent / "shared" / "reference" / "measured_modern" / "serving_h200_concurrency.csv"


def table(title: str, d: dict) -> None:
    print(f"\n{title}")
    print(f"  {'group':42s} {'n':>4s} {'TTFT':>7s} {'TPOT':>7s} {'tok/s':>7s}")
    for g, v in d.items():
        print(f"  {str(g):42s} {v['n']:4d} {v['ttft_ms']:7.1%} {v['tpot_ms']:7.1%} {v['tok_s']:7.1%}")


def show(p: dict) -> str:
    return (f"request {p['request_overhead_s'] * 1e3:.1f} ms, iteration "
            f"{p['iteration_overhead_s'] * 1e3:.3f} ms, graph launch x"
            f"{p['cuda_graph_launch_factor']:.3f}, compute x{p['compute_factor']:.3f}, MoE "
            f"routing {p['moe_routing_overhead_s'] * 1e6:.1f} us, first wave "
            f"{p['first_wave_share']:.3f}")


def write(backend: str, engine: str, params: dict, n: int) -> None:
    note = f"fitted: scripts/fit_modern_engines.py, {n} H200 rows"
    path = DATA / "engines" / f"{engine}.toml"
    path.write_text(ef.set_fixed_costs(path.read_text(), params, note))
    clients = DATA / "benchmark_clients.toml"
    clients.write_text(ef.set_first_wave(clients.read_text(), backend,
                                         params["first_wave_share"], note))
    print(f"wrote {path.relative_to(ROOT)} and {clients.relative_to(ROOT)} [{backend}]")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", default=str(DEFAULT_CSV))
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--verify", action="store_true")
    a = ap.parse_args()
    runs, skipped = read_concurrency_csv(a.csv)
    dups = sum(1 for _, why in skipped if why.startswith("same measurement"))
    print(f"{len(runs)} rows simulated, {len(skipped)} skipped ({dups} repeat a measurement)")
    refused: list = []
    bs = ef.baselines(runs, skipped=refused, kernels=True)
    for r, why in refused:
        print(f"  not simulated: {r.id}: {why}")
    free = tuple(ef.PARAMS)
    for backend, engine in ENGINE_PRESETS.items():
        rows = [b for b in bs if b.run.backend == backend]
        if not rows:
            continue
        p = ef.fit(rows, free)
        print(f"{engine}: {show(p)} ({len(rows)} rows)")
        if a.write:
            write(backend, engine, p, len(rows))
    centre = [ef._row(b.run, b.ttft0_ms, b.tpot0_ms, {}) for b in bs]
    fixed = ef.cross_validate(bs, "model", ef.FIXED_COSTS)
    cv = ef.cross_validate(bs, "model", free)
    if a.verify:
        cv = ef.verify(cv, {b.run.id: b.run for b in bs})
    for name, rows in (("every parameter at the centre", centre),
                       ("leave-one-model-out, two fixed costs only", fixed),
                       ("leave-one-model-out fit" + (" (verified)" if a.verify else ""), cv)):
        table(f"{name}: all", {"all": ef.mape(rows)})
        table(f"{name}: by engine", ef.mape(rows, key=lambda r: r["backend"]))
    table("leave-one-model-out: by model", ef.mape(cv, key=lambda r: (r["backend"], r["model"].split("/")[-1])))
    table("leave-one-model-out: by concurrency", ef.mape(cv, key=lambda r: ef.bucket(r["concurrency"])))
    table("leave-one-model-out: by TP", ef.mape(cv, key=lambda r: f"tp {r['tp']:>2d}"))


if __name__ == "__main__":
    main()
