"""Closed-loop serving measurements in the concurrency CSV schema, and their simulation.

The schema is that of ``shared/reference/measured_modern/serving_h200_concurrency.csv``
(aiconfigurator's ``silicon_sample.csv``): one row = one benchmark run of an engine at a
fixed concurrency, ``batch_size`` clients each sending ``isl`` input tokens and waiting for
``osl`` output tokens before sending the next; measured mean TTFT ``silicon_ttft_ms`` and
mean TPOT after the first token ``silicon_tpot_ms``.

:func:`read_concurrency_csv` turns rows into :class:`MeasuredRun` setups (model id,
device id of the catalog, :class:`Precision`, layout, engine and release, lengths,
concurrency, the measurements) and lists the rows it cannot simulate with the reason
(disaggregated pools, pipeline parallelism, models that do not load, layouts the
simulator lacks). Attention data-parallel rows (``attention_dp_size`` > 1, or empty with
``moe_tp_size x moe_ep_size > tp_size``) run as DEP layouts (``Layout.dp_attention``); their
``batch_size`` may be per attention rank, so the concurrency is the global
``silicon_concurrency=N`` of ``silicon_data_source`` where the row states it. A row whose columns cannot be read at all (a missing
column, a number that is not one, an unknown device or quantization mode) is an
:class:`InputError` naming the line and the field, from :func:`parse_row`.

:func:`simulate_run` simulates one run as the benchmark ran it (closed loop at its
concurrency, staggered clients, warm-up excluded; ``workload.py``) and returns predicted
TTFT and TPOT (ms) and the throughput ``c x OSL / (TTFT + TPOT x (OSL - 1))`` tokens/s,
the same law applied to the measured means.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from ..errors import InputError, suggest
from ..parallel import Layout
from ..specs.precision import Precision

# device names of the schema -> catalog ids
SYSTEMS = {"h200_sxm": "h200", "h100_sxm": "h100-sxm", "b200_sxm": "b200", "gb200": "gb200",
           "a100_sxm": "a100-sxm-80gb", "h20": "h20", "gb200_sxm": "gb200"}
# checkpoints with another's shapes (the README: R1 has V3's shapes)
MODEL_ALIASES = {"deepseek-ai/DeepSeek-R1": "deepseek-ai/DeepSeek-V3"}
# backend -> engine of its release family (data/engines/*.toml, docs/engines.md)
ENGINE_PRESETS = {"vllm": "vllm-v1", "sglang": "sglang", "trtllm": "trtllm-1"}
# KV-cache bits an engine uses by default for a checkpoint whose weights are 8-bit or less:
# TensorRT-LLM 1.x runs the FP8 KV cache of its FP8 / NVFP4 checkpoints; vLLM and SGLang
# keep kv_cache_dtype "auto" = the model's 16-bit dtype unless told otherwise.
KV_BITS_QUANTIZED = {"vllm": 16, "sglang": 16, "trtllm": 8}
# weight / activation formats of the gemm_quant_mode and moe_quant_mode columns:
# (weight bits, activation bits, weights per scale (0: per channel/tensor), scale bits)
_QUANT_BITS = {"": (16, 16, 0, 16), "bf16": (16, 16, 0, 16), "fp16": (16, 16, 0, 16),
               "fp8": (8, 8, 0, 16), "fp8_block": (8, 8, 0, 16),   # 128x128 blocks: ~0
               "nvfp4": (4, 4, 16, 8),               # FP8 scale per 16 weights
               "w4a16_mxfp4": (4, 16, 32, 8),        # E8M0 scale per 32 weights
               "int4_wo": (4, 16, 128, 16), "w4a16": (4, 16, 128, 16),
               "int8_wo": (8, 16, 0, 16)}
_NEED = ("id", "backend", "backend_version", "model_path", "system", "precision", "mode",
         "isl", "osl", "gemm_quant_mode", "moe_quant_mode", "batch_size", "tp_size",
         "pp_size", "attention_dp_size", "moe_tp_size", "moe_ep_size", "silicon_ttft_ms",
         "silicon_tpot_ms")


@dataclass(frozen=True)
class MeasuredRun:
    """One row: the setup to simulate and what was measured (ms)."""

    id: str
    line: int
    backend: str
    version: str
    model_path: str
    model: str                 # id to load (MODEL_ALIASES applied)
    hardware: str              # catalog id
    precision: Precision
    mode: str                  # agg or disagg
    tp: int
    pp: int
    attention_dp: int
    moe_tp: int
    moe_ep: int
    isl: int
    osl: int
    concurrency: int | None    # disagg rows: silicon_concurrency (None when not given)
    ttft_ms: float
    tpot_ms: float
    # disagg rows: each pool's (tp, pp, attention_dp, moe_tp, moe_ep, workers, batch) from
    # the prefill_* / decode_* columns; workers and batch None where the row leaves them empty
    prefill_pool: tuple | None = None
    decode_pool: tuple | None = None

    @property
    def tok_s(self) -> float:
        """Measured output tokens/s: c x OSL / (TTFT + TPOT x (OSL - 1))."""
        return throughput_tok_s(self.concurrency or 0, self.osl, self.ttft_ms, self.tpot_ms)

    @property
    def preset(self) -> str:
        return ENGINE_PRESETS[self.backend]

    @property
    def layout(self) -> Layout:
        """TP layout; experts split over ``moe_ep`` ranks of the ``tp x attention_dp``
        MoE group (MoE models; the MoE columns of dense models are ignored); attention-DP
        rows dispatch in FP8 where the engine does (``Engine.fp8_dispatch``)."""
        if not _model_problem(self.model)[1]:
            return Layout(tp=self.tp)
        if self.attention_dp == 1:
            return Layout(tp=self.tp, ep=self.moe_ep)
        from ..specs.engine import load_engine
        return Layout(tp=self.tp, ep=self.moe_ep, dp_attention=self.attention_dp,
                      fp8_dispatch=load_engine(self.preset).fp8_dispatch)


def throughput_tok_s(c: int, osl: int, ttft_ms: float, tpot_ms: float) -> float:
    """Output tokens/s of ``c`` closed-loop clients: c x OSL / (TTFT + TPOT x (OSL - 1))
    with TTFT and TPOT in ms (converted to seconds)."""
    return c * osl / ((ttft_ms + tpot_ms * (osl - 1)) / 1e3)


def _num(where: str, field: str, text: str, integer: bool = False, lo: float = 0,
         empty: float | None = None) -> float:
    t = (text or "").strip()
    if not t and empty is not None:
        return empty
    try:
        v = float(t)
    except ValueError:
        raise InputError(f"{where}: {field} must be a number, got {text!r}") from None
    if not math.isfinite(v) or v < lo or (integer and v != int(v)):
        kind = "an integer" if integer else "a number"
        raise InputError(f"{where}: {field} must be {kind} >= {lo:g}, got {text!r}")
    return int(v) if integer else v


def _bits(where: str, field: str, mode: str) -> tuple[int, int]:
    m = (mode or "").strip().lower()
    if m not in _QUANT_BITS:
        raise InputError(f"{where}: {field} {mode!r} is not a known quantization mode"
                         + suggest(m, _QUANT_BITS) + f" (known: {', '.join(k for k in _QUANT_BITS if k)})")
    return _QUANT_BITS[m]


def parse_row(r: dict, line: int = 0, source: str = "row") -> MeasuredRun:
    """One CSV row (a dict of the schema's columns) as a :class:`MeasuredRun`; an
    InputError naming ``source:line`` and the field when it cannot be read."""
    where = f"{source}:{line}"
    missing = [c for c in _NEED if c not in r]
    if missing:
        raise InputError(f"{where}: missing column {missing[0]!r} (the concurrency schema of "
                         "measured_modern/README.md)")
    backend = r["backend"].strip().lower()
    if backend not in ENGINE_PRESETS:
        raise InputError(f"{where}: backend {r['backend']!r} is not one of "
                         f"{', '.join(ENGINE_PRESETS)}" + suggest(backend, ENGINE_PRESETS))
    system = r["system"].strip().lower()
    if system not in SYSTEMS:
        raise InputError(f"{where}: system {r['system']!r} is not mapped to a catalog device"
                         + suggest(system, SYSTEMS) + f" (known: {', '.join(SYSTEMS)})")
    mode = r["mode"].strip().lower()
    if mode not in ("agg", "disagg"):
        raise InputError(f"{where}: mode must be agg or disagg, got {r['mode']!r}")
    gw, ga, gg, gs = _bits(where, "gemm_quant_mode", r["gemm_quant_mode"])
    mw, ma, mg, ms = _bits(where, "moe_quant_mode", r["moe_quant_mode"])
    from ..specs.hardware import load_hardware
    hw = load_hardware(SYSTEMS[system])
    # one Precision for the whole model: the narrower of the dense-GEMM and expert formats
    # (they differ only in scaling granularity in these files: fp8 vs fp8_block)
    wbits, abits, group, sbits = (mw, ma, mg, ms) if mw < gw else (gw, ga, gg, gs)
    if abits == 4 and not hw.peak("fp4"):
        abits = 16           # no FP4 tensor units (Hopper): FP4 weights run W4A16 kernels
    kvbits = KV_BITS_QUANTIZED[backend] if wbits < 16 else 16
    prec = Precision(wbits=wbits, abits=abits, kvbits=kvbits, group_size=group,
                     scale_bits=sbits)
    agg = mode == "agg"
    tp = _num(where, "tp_size", r["tp_size"], True, 1, empty=1 if not agg else None)
    moe_tp = _num(where, "moe_tp_size", r["moe_tp_size"], True, 1, empty=1 if not agg else None)
    moe_ep = _num(where, "moe_ep_size", r["moe_ep_size"], True, 1, empty=1 if not agg else None)
    # an empty attention_dp_size: the MoE ranks beyond the TP group are attention-DP ranks
    adp = _num(where, "attention_dp_size", r["attention_dp_size"], True, 1,
               empty=max(moe_tp * moe_ep // max(tp, 1), 1))
    model = r["model_path"].strip()
    conc = None
    if agg:
        conc = _num(where, "batch_size", r["batch_size"], True, 1)
        # the global client count where the row states it (batch_size is then per
        # attention rank in attention-DP rows)
        found = re.search(r"silicon_concurrency=(\d+)", r.get("silicon_data_source") or "")
        if found and int(found.group(1)) >= 1:
            conc = int(found.group(1))
    pools = {}
    if not agg:
        for side in ("prefill", "decode"):
            def col(f, integer=True, empty=1, _s=side):
                return _num(where, f"{_s}_{f}", r.get(f"{_s}_{f}", ""), integer, 1, empty=empty)
            pools[f"{side}_pool"] = (col("tp_size"), col("pp_size"), col("attention_dp_size"),
                                     col("moe_tp_size"), col("moe_ep_size"),
                                     col("num_workers", empty=0) or None,
                                     col("batch_size", empty=0) or None)
    return MeasuredRun(
        id=r["id"], line=line, backend=backend, version=r["backend_version"].strip(),
        model_path=model, model=MODEL_ALIASES.get(model, model), hardware=hw.id,
        precision=prec, mode=mode, tp=tp, pp=_num(where, "pp_size", r["pp_size"], True, 1, 1),
        attention_dp=adp, moe_tp=moe_tp, moe_ep=moe_ep,
        isl=_num(where, "isl", r["isl"], True, 1), osl=_num(where, "osl", r["osl"], True, 1),
        concurrency=conc if agg else _source_concurrency(r),
        ttft_ms=_num(where, "silicon_ttft_ms", r["silicon_ttft_ms"], lo=0),
        tpot_ms=_num(where, "silicon_tpot_ms", r["silicon_tpot_ms"], lo=0), **pools)


def _source_concurrency(r: dict) -> int | None:
    """A disagg row's clients: ``silicon_concurrency=N`` in ``silicon_data_source`` (the
    README), else None (``batch_size`` is empty in these rows)."""
    m = re.search(r"silicon_concurrency=(\d+)", r.get("silicon_data_source") or "")
    return int(m.group(1)) if m and int(m.group(1)) >= 1 else None


_LOADS: dict[str, tuple[str | None, bool]] = {}


def _model_problem(model: str) -> tuple[str | None, bool]:
    """(None when ``model`` loads from the catalog or a cached config, else why not;
    whether it is a mixture of experts)."""
    if model not in _LOADS:
        from ..specs.catalog import load_model
        try:
            _LOADS[model] = (None, load_model(model).is_moe)
        except InputError:
            _LOADS[model] = (f"model {model} does not load (not built in, no cached config)",
                             False)
    return _LOADS[model]


def skip_reason(run: MeasuredRun, disagg: bool = False) -> str | None:
    """Why the simulator cannot run ``run`` today, or None. ``disagg``: disaggregated rows
    are simulated (serving/disagg.py) where both pools' layouts are (else they are skipped
    as before, so the aggregated fits do not change)."""
    if run.mode == "disagg":
        if not disagg:
            return "disaggregated prefill/decode pools (per-pool layouts not modelled yet)"
        from .disagg import measured_skip_reason
        return measured_skip_reason(run, _model_problem(run.model))
    if run.pp > 1:
        return "pipeline parallelism (not in the serving simulator)"
    if run.osl < 2:
        return "osl 1: no TPOT"
    problem, moe = _model_problem(run.model)
    if problem:
        return problem
    if run.attention_dp > 1 and not moe:
        return f"attention data-parallel x{run.attention_dp} on a dense model"
    ranks = run.tp * run.attention_dp
    if moe and run.moe_tp * run.moe_ep != ranks:
        return (f"MoE layout moe_tp {run.moe_tp} x moe_ep {run.moe_ep} != tp {run.tp} x "
                f"attention_dp {run.attention_dp}")
    if moe and run.moe_ep > 1 and ranks % run.moe_ep:
        return f"moe_ep {run.moe_ep} does not divide tp x attention_dp {ranks}"
    return None


def read_concurrency_csv(path: str | Path, disagg: bool = False
                         ) -> tuple[list[MeasuredRun], list[tuple[MeasuredRun, str]]]:
    """All rows of a concurrency CSV: (simulable runs, [(run, reason skipped)]);
    ``disagg``: the disaggregated rows whose pools can be simulated count as simulable."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"measured: file {p} does not exist")
    with p.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise InputError(f"measured: {p} has no rows")
    ok, skipped = [], []
    for i, r in enumerate(rows, start=2):
        run = parse_row(r, i, p.name)
        why = skip_reason(run, disagg)
        (skipped.append((run, why)) if why else ok.append(run))
    ok, dups = drop_duplicates(ok)
    return ok, skipped + dups


def _gpus(run: MeasuredRun) -> int:
    return run.tp * run.pp * run.attention_dp


def drop_duplicates(runs: list[MeasuredRun]) -> tuple[list[MeasuredRun], list[tuple]]:
    """``runs`` with each measurement once: (kept, [(dropped run, reason)]).

    Published collections list some runs twice (the same run in two source files, under
    other ids). A measurement is the engine, model, lengths, concurrency and both measured
    means; a second row with the same one is dropped, so that no run is scored twice.
    Where the copies name different layouts, the same numbers cannot come from both: the
    row of fewest GPUs is kept (the 64-GPU copies of 8-GPU DeepSeek-R1 runs name
    ``moe_tp x moe_ep`` = 64 on a one-node system) and the others dropped with the reason.
    """
    groups: dict = {}
    for r in runs:
        key = (r.backend, r.model, r.mode, r.isl, r.osl, r.concurrency,
               round(r.ttft_ms, 6), round(r.tpot_ms, 6))
        groups.setdefault(key, []).append(r)
    keep_ids, dropped = set(), []
    for rs in groups.values():
        best = min(rs, key=lambda r: (_gpus(r), r.line))
        keep_ids.add(id(best))
        for r in rs:
            if r is best:
                continue
            same = (r.tp, r.pp, r.attention_dp, r.moe_tp, r.moe_ep) == (
                best.tp, best.pp, best.attention_dp, best.moe_tp, best.moe_ep)
            dropped.append((r, f"same measurement as {best.id}" + (
                "" if same else f" under {_gpus(best)} GPUs (this row names {_gpus(r)})")))
    return [r for r in runs if id(r) in keep_ids], dropped


_COSTS: dict = {}


def run_config(run: MeasuredRun, preset: str | None = None, behaviours: bool = True):
    """The SchedulerConfig of ``run`` under engine ``preset`` (default: its engine's,
    ENGINE_PRESETS; SGLang's ``mem_fraction_static`` by TP size). ``behaviours=False``:
    the engine's limits, KV rule and runtime memory only, without mixing policy, CUDA-graph
    padding and fixed costs (the simulator before them)."""
    from ..specs.engine import load_engine
    from .config import SGLANG_MEM_FRACTION_BY_TP, scheduler_config
    name = preset or run.preset
    given = {}
    if name == "sglang":
        given["kv_fraction"] = SGLANG_MEM_FRACTION_BY_TP[max(
            t for t in SGLANG_MEM_FRACTION_BY_TP if t <= max(run.tp, 1))]
    cfg = scheduler_config(load_engine(name), **given)
    if not behaviours:
        cfg = replace(cfg, mix_prefill=True, cuda_graph_sizes=(), request_fixed_s=0.0,
                      step_cpu_s=0.0)
    return cfg


def simulate_run(run: MeasuredRun, preset: str | None = None, *, profile=None,
                 rounds: int = 2, warmup: int = 1, ramp_s: float | None = None,
                 behaviours: bool = True, cost=None, jitter_s: float = 0.0, seed: int = 0,
                 config=None, fast: bool = True, engine=None,
                 first_wave: float | None = None) -> dict:
    """Simulate ``run`` as its benchmark ran: ``concurrency`` closed-loop clients, each
    sending ``warmup + rounds`` requests of ``isl`` / ``osl`` tokens (staggered starts;
    the warm-up and the drain excluded). ``preset``: scheduler preset (default: the
    engine's); ``behaviours=False`` keeps only its limits, KV rule and runtime memory,
    i.e. the simulator before the engine behaviours (:func:`run_config`); ``config``
    replaces that SchedulerConfig (engine_fit's variants); ``fast=False`` schedules and
    costs every iteration one at a time (sim.simulate; same results); ``profile``:
    the kernels (None: those of the run's engine, ``engine`` when given: an Engine whose
    efficiency entries, ``[kernels]`` factors and CUDA-graph setting price the iterations).
    ``first_wave``: share of the benchmark's requests sent in its first wave, all clients
    at t = 0 (1 / requests per client; None: the harness's, :func:`first_wave_share`):
    the means are that share of the wave's plus the rest of the staggered steady state's
    (a harness that starts every client at once and counts every request).
    Returns {"ttft_ms", "tpot_ms", "tok_s" (c x OSL / (TTFT + TPOT x (OSL - 1))),
    "sim": the benchmark summary (steady state)}."""
    from .cost import IterationCost
    from .sim import simulate
    from .workload import make_workload
    if run.concurrency is None:
        raise InputError(f"measured: row {run.id} has no concurrency (disaggregated)")
    if run.mode == "disagg":
        from .disagg import simulate_measured
        return simulate_measured(run, preset, profile=profile, rounds=rounds, warmup=warmup,
                                 ramp_s=ramp_s, behaviours=behaviours, jitter_s=jitter_s,
                                 seed=seed, config=config)
    cfg = config or run_config(run, preset, behaviours)     # config: a fit's variant
    if cost is None:
        if engine is None:
            from ..specs.engine import load_engine
            engine = load_engine(preset or run.preset)
        key = (run.model, run.hardware, run.precision, run.tp, run.moe_ep, run.attention_dp,
               cfg.max_tokens, cfg.max_batch, str(profile), engine.name, engine.cuda_graphs,
               engine.cuda_graph_launch_factor, engine.kernels, behaviours)
        if key not in _COSTS:
            _COSTS[key] = IterationCost.of(run.model, run.hardware, quant=run.precision,
                                           layout=run.layout, profile=profile, engine=engine,
                                           cuda_graphs=engine.cuda_graphs and behaviours,
                                           max_tokens=cfg.max_tokens, max_batch=cfg.max_batch)
        cost = _COSTS[key]
    c = run.concurrency
    wl = make_workload(c * (warmup + rounds), concurrency=c, input_dist=f"fixed:{run.isl}",
                       output_dist=f"fixed:{run.osl}", ramp_s=ramp_s, warmup=warmup,
                       max_context=cost.model.max_position_embeddings, jitter_s=jitter_s,
                       seed=seed)
    r = simulate(workload=wl, config=cfg, cost=cost, fast=fast)
    b = r.benchmark()
    ttft, tpot = b["ttft_s"]["mean"] * 1e3, b["tpot_s"]["mean"] * 1e3
    w = first_wave_share(run.backend) if first_wave is None else float(first_wave)
    if not 0.0 <= w <= 1.0:
        raise InputError(f"first_wave: must be a share in [0, 1], got {first_wave!r}")
    if w > 0:
        t1, p1 = first_wave_ms(run, cfg, cost, fast)
        ttft, tpot = (1 - w) * ttft + w * t1, (1 - w) * tpot + w * p1
    return {"ttft_ms": ttft, "tpot_ms": tpot,
            "tok_s": throughput_tok_s(c, run.osl, ttft, tpot), "sim": b}


def first_wave_ms(run: MeasuredRun, cfg, cost, fast: bool = True) -> tuple[float, float]:
    """(mean TTFT ms, mean TPOT ms) of a benchmark's first wave: every client sends its
    first request at t = 0, so ``concurrency`` prompts queue for prefill at once."""
    from .sim import simulate
    from .workload import make_workload
    c = run.concurrency
    wl = make_workload(c, concurrency=c, input_dist=f"fixed:{run.isl}",
                       output_dist=f"fixed:{run.osl}", ramp_s=0.0, warmup=0,
                       max_context=cost.model.max_position_embeddings)
    b = simulate(workload=wl, config=cfg, cost=cost, fast=fast).benchmark()
    return b["ttft_s"]["mean"] * 1e3, b["tpot_s"]["mean"] * 1e3


# Share of a run's requests in its synchronised first wave, per benchmark harness (the
# CSV's backend names the engine and with it the client that measured it); fitted by
# scripts/fit_modern_engines.py, docs/engines.md "Benchmark clients".
FIRST_WAVE_BOUNDS = (0.0, 1.0)


def first_wave_share(backend: str) -> float:
    """The harness's first-wave share (``data/benchmark_clients.toml``; 0 when absent)."""
    return float(_harnesses().get(backend, {}).get("first_wave_share", 0.0))


@lru_cache(maxsize=1)
def _harnesses() -> dict:
    import tomllib
    from importlib import resources
    text = (resources.files("llmroofline") / "data" / "benchmark_clients.toml").read_text()
    data = tomllib.loads(text)
    lo, hi = FIRST_WAVE_BOUNDS
    for k, v in data.items():
        s = v.get("first_wave_share", 0.0)
        if isinstance(s, bool) or not (isinstance(s, (int, float)) and lo <= s <= hi):
            raise InputError(f"benchmark_clients.toml [{k}]: first_wave_share must be in "
                             f"[{lo:g}, {hi:g}], got {s!r}")
    return data


def with_concurrency(run: MeasuredRun, c: int) -> MeasuredRun:
    """The same setup at another concurrency (for sweeps)."""
    return replace(run, concurrency=c)
