"""Benchmark result files + the launch setup: validate the simulator, fit the engine.

A setup record (``launch --out`` writes it as setup.toml; :mod:`llmroofline.launch`) names
the deployment, the engine's batching values and the closed-loop workload; a result file
(:mod:`llmroofline.result_files`) says what the benchmark measured. :func:`runs_of` turns
each result into a :class:`~.measured.MeasuredRun` (concurrency, ISL and OSL as the file
reports them, else the setup's) with the setup's SchedulerConfig, so the simulator and
:mod:`.engine_fit` treat it as one more measured row:

- :func:`predict` simulates each run as the benchmark ran it (``simulate_run``: closed loop,
  one warm-up request per client, then ``requests / concurrency - 1`` rounds) and compares
  mean / median / p99 TTFT and TPOT and output throughput with the file;
- :func:`fit_engine` fits the engine's two fixed costs (``engine_fit.fit``) to the runs and
  returns an engine TOML with them (``engine_fit.set_fixed_costs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .measured import MeasuredRun

# result record field -> (simulated benchmark summary key, statistic); seconds
_TIME_METRICS = {"ttft_mean_s": ("ttft_s", "mean"), "ttft_median_s": ("ttft_s", "p50"),
                 "ttft_p99_s": ("ttft_s", "p99"), "tpot_mean_s": ("tpot_s", "mean"),
                 "tpot_median_s": ("tpot_s", "p50"), "tpot_p99_s": ("tpot_s", "p99")}


@dataclass(frozen=True)
class SetupRuns:
    """The runs of one setup: its deployment, its scheduler config, and one
    (MeasuredRun, BenchResult) per result."""

    deployment: object
    config: object
    cost: object          # IterationCost of the deployment (layout, CUDA graphs as set up)
    rounds: int
    runs: tuple


def runs_of(rec: dict, results: list) -> SetupRuns:
    """The results of one setup record as measured runs (module docstring)."""
    from ..launch import launcher_of, setup_deployment, setup_workload
    from .config import scheduler_config
    from .cost import IterationCost
    d = setup_deployment(rec)
    w = setup_workload(rec)
    backend = launcher_of(d.engine.name)
    if d.layout.pp > 1 or d.layout.dp > 1:
        raise InputError("setup: the serving simulator runs one replica without pipeline "
                         f"stages; this setup has pp {d.layout.pp}, dp {d.layout.dp}")
    b = rec.get("batching", {})
    cfg = scheduler_config(d.engine, **{k: b.get(k) for k in ("max_batch", "max_tokens",
                                                               "kv_fraction", "block_size")})
    runs = []
    for i, r in enumerate(results):
        c = r.concurrency or w.concurrency
        isl = round(r.isl) if r.isl else w.isl
        osl = round(r.osl) if r.osl else w.osl
        if osl < 2:
            raise InputError(f"results: {r.source} has {osl} output token(s) per request: no "
                             "TPOT to compare")
        run = MeasuredRun(
            id=f"{r.source}", line=i, backend=backend, version=d.engine.name,
            model_path=d.model.name, model=rec["deployment"]["model"], hardware=d.hardware.id,
            precision=d.precision, mode="agg", tp=d.layout.tp, pp=1, attention_dp=1,
            moe_tp=1, moe_ep=d.layout.ep, isl=isl, osl=osl, concurrency=c,
            ttft_ms=r.ttft_mean_s * 1e3, tpot_ms=r.tpot_mean_s * 1e3)
        runs.append((run, r))
    rounds = max(1, round(w.requests / w.concurrency) - 1)
    cost = IterationCost.of(d, max_tokens=cfg.max_tokens, max_batch=cfg.max_batch)
    return SetupRuns(d, cfg, cost, rounds, tuple(runs))


def _sim_kw(s: SetupRuns) -> dict:
    # the result's own request count sets the rounds; the staggered steady state only (no
    # first wave), as predict() reads the simulation's summary
    return dict(cost=s.cost, rounds=s.rounds, warmup=1, first_wave=0.0)


def predict(s: SetupRuns, config=None) -> list[dict]:
    """One row per (result, metric): measured, predicted, error = predicted / measured - 1
    (times in seconds, throughput in output tokens/s). ``config``: another SchedulerConfig
    (e.g. with fitted costs)."""
    from .measured import simulate_run
    rows = []
    for run, res in s.runs:
        p = simulate_run(run, config=config or s.config, **_sim_kw(s))["sim"]
        pred = {k: p[a][b] for k, (a, b) in _TIME_METRICS.items()}
        pred["output_tok_s"] = p["output_tok_s"]
        for k, v in pred.items():
            m = getattr(res, k)
            if m is None or v is None:
                continue
            rows.append({"result": res.source, "format": res.format,
                         "concurrency": run.concurrency, "isl": run.isl, "osl": run.osl,
                         "metric": k, "measured": m, "predicted": v,
                         "error": v / m - 1 if m else float("nan")})
    return rows


def fit_engine(sets: list[SetupRuns], out_file: str) -> tuple[dict, str, list]:
    """Fit request and iteration overhead to every run of ``sets`` (one engine); returns
    (params in seconds, the engine TOML text, [(run, reason skipped)])."""
    from importlib import resources
    from . import engine_fit as ef
    from ..specs.engine import builtin_engines
    engines = {s.deployment.engine.name for s in sets}
    if len(engines) != 1:
        raise InputError(f"calibrate: the setups name several engines ({', '.join(sorted(engines))}); "
                         "fit one engine at a time")
    bs, skipped = [], []
    for s in sets:
        cfg = s.config
        bs += ef.baselines([r for r, _ in s.runs], skipped=skipped, config_of=lambda _r: cfg,
                           **_sim_kw(s))
    if not bs:
        raise InputError("calibrate: no result could be simulated" + (
            f" ({skipped[0][1]})" if skipped else ""))
    params = ef.fit(bs)
    eng = sets[0].deployment.engine
    if eng.name in builtin_engines():
        text = (resources.files("llmroofline") / "data" / "engines" / f"{eng.name}.toml").read_text()
    else:
        from ..safeio import read_text
        text = read_text(eng.source.split("engine file ", 1)[-1], "engine")
    stem = Path(out_file).stem
    base = eng.name
    name = stem if stem == base or stem.startswith(base + "-") else f"{base}-{stem}"
    import json
    import re
    n = len(bs)
    text = re.sub(r'^name = .*$', lambda _m: f'name = "{name}"', text, count=1, flags=re.M)
    fitted = json.dumps(f"fixed costs: {n} benchmark run(s), calibrate --results; kernels: "
                        f"{eng.fitted_to}")      # a JSON string is a TOML basic string
    text = re.sub(r'^fitted_to = .*$', lambda _m: f"fitted_to = {fitted}", text, count=1,
                  flags=re.M)
    text = ef.set_fixed_costs(text, params, f"fitted by calibrate --results: {n} run(s)")
    head = (f"# llmroofline engine '{name}': engine '{base}' with its request and iteration "
            f"overhead fitted to {n} benchmark run(s) by `llmroofline calibrate --results`\n")
    return params, head + text, skipped


def with_costs(s: SetupRuns, params: dict) -> SetupRuns:
    """``s`` with fitted fixed costs (seconds) in its scheduler config."""
    from dataclasses import replace
    return replace(s, config=replace(s.config, request_fixed_s=params["request_overhead_s"],
                                     step_cpu_s=params["iteration_overhead_s"]))


__all__ = ["SetupRuns", "runs_of", "predict", "fit_engine", "with_costs"]
