"""``bench``: run a real model, compare with the engine, and diagnose the regime.

Measured (``bench/run.py``): TTFT (prefill + first greedy pick), the mean decode step and
end-to-end throughput ``batch x output / (ttft + (output - 1) x step)``, medians of
``repeats`` generations; the profiler's split of time into matmuls, attention,
elementwise kernels and framework time.

Predicted: ``analyze`` on the *same* (shrunk) config with the probed device file, the
bench dtype (bf16/fp16: 16-bit; fp32: ``wbits = abits = kvbits = 32``) and the attention
path that ran (SDPA: fused; eager: unfused). Ratios are predicted / measured (> 1: the
engine is too slow, < 1: too optimistic). The engine's split of a phase: each operator
row's roofline time ``max(compute, memory)`` goes to its kind (``matmul``, ``attention``;
norms, activations, rotary, residual adds and the embedding to ``elementwise``) and its
launch overhead, plus the step and prefill overheads, to ``framework``.

Diagnosis from first principles (:func:`diagnose`): scale the work and see whether the time
follows.

- *width test*: the same config at a quarter of the width (``shrink_config(scale=0.25)``:
  fewer heads, narrower hidden and MLP, same head_dim and depth; half when the grouped-query
  heads allow no less). Its matmul/attention/elementwise work is ``R_w`` times smaller (the
  engine's roofline time ratio without overheads: ~16 for the layers, ~4 for the
  vocabulary projection). The width elasticity ``e_w = log(t / t_narrow) / log(R_w)`` is
  ~1 when time is work, ~0 when it is overhead. A large ``R_w`` keeps the test meaningful
  when narrow kernels run less efficiently (CPU GEMVs with a short inner dimension do).
- *token test*: twice the batch on the same model: FLOPs double, weight traffic does not.
  ``e_t = log2(t_2B / t)`` is ~1 when compute-bound, ~0 when weight-bandwidth-bound.
- verdict: ``overhead`` if ``e_w < 0.5``; else ``compute`` if ``e_t >= 0.5``; else
  ``memory``. The engine's verdict is the regime holding the largest share of its predicted
  time (roof time per row by its compute/memory bound, launch and step overheads).
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InputError
from ..phases import Analysis, analyze
from ..specs.hardware import HardwareSpec, load_hardware
from ..specs.model import from_hf_config
from ..specs.precision import Precision
from .model import DTYPES, build_model, describe, model_weight_bytes, shrink_config
from .run import CLASSES, Generator, Timings, profile_shares, time_generation

PHASES = ("prefill", "decode")
ENGINE_CLASS = {"matmul": "matmul", "attention": "attention", "norm": "elementwise",
                "elementwise": "elementwise", "embedding": "elementwise"}
RATIO_NAMES = {"ttft_s": "ttft", "tpot_s": "tpot", "e2e_s": "e2e", "throughput_tok_s": "throughput"}
OVERHEAD_ELASTICITY = 0.5   # e_w below: time does not follow the work
COMPUTE_ELASTICITY = 0.5    # e_t at or above: time follows the FLOPs
DIAGNOSE_WIDTH = 0.25       # narrow twin: a quarter of the width where the heads allow


def raw_config(model: str) -> tuple[dict, str]:
    """(config.json dict, display name) of a built-in id/alias, a local file or a hub id."""
    import re
    from importlib import resources
    from ..specs import catalog
    files = catalog.builtin_model_files()
    hf = model if model in files else catalog.model_aliases().get(model.lower())
    if hf:
        root = resources.files("llmroofline") / "data" / "models"
        return json.loads((root / files[hf]).read_text()), hf
    p = Path(model)
    if model.endswith(".json") or p.exists():
        if not p.exists():
            raise InputError(f"model: file {model} does not exist")
        return catalog.load_config_file(p), p.stem if p.name != "config.json" else p.parent.name
    if re.fullmatch(r"[\w-][\w.-]*/[\w.-]+", model):
        return catalog._fetch_hub_config(model), model
    catalog.load_model(model)  # raises the catalog's one-line error with suggestions
    raise InputError(f"model: unknown model {model!r}")  # pragma: no cover


def precision_of(dtype: str) -> Precision:
    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return Precision(32, 32, 32) if dtype == "fp32" else Precision()


def _check_int(name: str, v, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
        raise InputError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")
    return int(v)


# -- engine side ------------------------------------------------------------------------------
def engine_shares(a: Analysis, phase: str) -> dict[str, float]:
    """Seconds per class of one phase of a scalar analysis (module docstring)."""
    ph = a.prefill if phase == "prefill" else a.decode
    out = dict.fromkeys(CLASSES, 0.0)
    for o in ph.ops:
        t, oh = float(o.time_s), float(np.asarray(o.overhead_s))
        if o.kind in ENGINE_CLASS:
            out[ENGINE_CLASS[o.kind]] += t - oh
            out["framework"] += oh
        else:  # step / prefill overhead rows, pipeline rows
            out["framework"] += t
    return out


def engine_regime(a: Analysis, phase: str) -> tuple[str, dict[str, float]]:
    """Regime with the largest share of predicted time: compute, memory or overhead."""
    ph = a.prefill if phase == "prefill" else a.decode
    t = {"compute": 0.0, "memory": 0.0, "overhead": 0.0}
    for o in ph.ops:
        oh = float(np.asarray(o.overhead_s))
        c, m = float(o.compute_s), float(o.memory_s)
        if o.kind in ENGINE_CLASS:
            t["compute" if c >= m else "memory"] += max(c, m)
            t["overhead"] += oh
        else:
            t["overhead"] += float(o.time_s)
    total = sum(t.values()) or 1.0
    return max(t, key=t.get), {k: v / total for k, v in t.items()}


def work_s(a: Analysis, phase: str) -> float:
    """Predicted roofline time of a phase without any overhead (the 'work')."""
    s = engine_shares(a, phase)
    return s["matmul"] + s["attention"] + s["elementwise"]


# -- results -------------------------------------------------------------------------------------
@dataclass
class Diagnosis:
    phase: str
    verdict: str                 # overhead | compute | memory (measured)
    width_elasticity: float      # e_w
    token_elasticity: float      # e_t
    width_work_ratio: float      # R_w
    time_s: float
    narrow_time_s: float
    double_batch_time_s: float
    engine_verdict: str = ""
    engine_regime_shares: dict = field(default_factory=dict)
    width: float = 0.5           # hidden size of the narrow twin / as run


@dataclass
class BenchResult:
    model: str
    config: dict
    description: str
    dtype: str
    device: str
    threads: int
    attention: str               # sdpa | eager
    batch: int
    input_len: int
    output_len: int
    params: int
    weight_bytes: int
    hardware: str                # device file path or catalog id
    hardware_name: str
    repeats: int
    measured: dict               # ttft_s, tpot_s, e2e_s, throughput_tok_s
    predicted: dict
    samples: dict                # raw seconds
    shares: dict                 # measured fractions per phase and class
    engine_shares: dict          # predicted fractions per phase and class
    diagnosis: dict = field(default_factory=dict)   # phase -> Diagnosis
    warnings: list = field(default_factory=list)

    @property
    def ratios(self) -> dict[str, float]:
        return {k: self.predicted[k] / self.measured[k] for k in self.measured
                if self.measured.get(k) and self.predicted.get(k) is not None}

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("measured", "predicted", "diagnosis")}
        for k in self.measured:
            d[f"measured_{k}"] = self.measured[k]
            d[f"predicted_{k}"] = self.predicted.get(k)
            d[f"ratio_{RATIO_NAMES[k]}"] = self.ratios.get(k)
        d["diagnosis"] = {p: asdict(v) for p, v in self.diagnosis.items()}
        return d


def _metrics(batch: int, output_len: int, ttft: float, tpot: float) -> dict[str, float]:
    e2e = ttft + (output_len - 1) * tpot
    return {"ttft_s": ttft, "tpot_s": tpot, "e2e_s": e2e, "throughput_tok_s": batch * output_len / e2e}


def _norm(d: dict[str, float]) -> dict[str, float]:
    tot = sum(d.values()) or 1.0
    return {k: v / tot for k, v in d.items()}


# -- the run --------------------------------------------------------------------------------
def bench(model: str | dict, *, device: str = "cpu", dtype: str = "bf16", batch: int = 1,
          input_len: int = 128, output_len: int = 32, layers: int | None = None,
          scale: float | None = None, hardware: str | HardwareSpec | None = None,
          threads: int | None = None, repeats: int = 3, profile: bool = True,
          diagnose_phases: tuple[str, ...] = PHASES, phases: tuple[str, ...] = PHASES,
          attn: str = "sdpa", name: str | None = None,
          progress: Callable[[str], None] | None = None) -> BenchResult:
    """Build ``model`` with random weights, time it, predict it, diagnose it.

    ``model``: built-in id/alias, config.json path, hub id, or a config dict.
    ``hardware``: a device file from ``probe`` (or a catalog id); ``None`` runs a quick
    probe first with the same threads and dtype. ``phases``: which phases to time
    (``("prefill",)`` skips the decode loop). ``diagnose_phases``: phases to run the
    scaling tests for (each builds a narrow twin and runs twice the batch).
    """
    from ..probe.timing import check_device, check_threads, require_torch, torch_threads
    require_torch(transformers=True)
    device = check_device(device)
    threads = check_threads(threads)
    prec = precision_of(dtype)
    batch = _check_int("batch", batch, 1, 4096)
    input_len = _check_int("input_len", input_len, 1, 1_000_000)
    output_len = _check_int("output_len", output_len, 2 if "decode" in phases else 1, 1_000_000)
    repeats = _check_int("repeats", repeats, 1, 1000)
    for p in tuple(phases) + tuple(diagnose_phases):
        if p not in PHASES:
            raise InputError(f"phase must be prefill or decode, got {p!r}")
    say = progress or (lambda s: None)
    if isinstance(model, dict):
        cfg0, label = dict(model), name or "custom"
    else:
        cfg0, label = raw_config(model)
    cfg = shrink_config(cfg0, layers=layers, scale=scale)
    spec = from_hf_config(cfg, name=label)
    if input_len + output_len > spec.max_position_embeddings:
        raise InputError(f"input_len + output_len = {input_len + output_len} exceeds the context "
                         f"of {label} (max_position_embeddings = {spec.max_position_embeddings})")
    warnings: list[str] = []
    with torch_threads(threads) as nthreads:
        hw_label, hw = _resolve_hardware(hardware, device, nthreads, dtype, warnings, say)
        a = analyze(spec, hw, batch, input_len, output_len, quant=prec, flash=(attn == "sdpa"))
        need = float(a.memory.total_bytes)
        avail = _available_bytes(device)
        if avail and need > 0.8 * avail:
            raise InputError(f"model: {label} needs ~{need / 1e9:.1f} GB (weights + KV cache) but "
                             f"{avail / 1e9:.1f} GB is available; shrink it with --layers or --scale")
        say(f"building {label} ({describe(cfg)})")
        mdl = build_model(cfg, dtype, device, attn)
        impl = mdl.config._attn_implementation
        if impl != attn:
            warnings.append(f"transformers has no {attn} attention for {spec.model_type}; ran "
                            f"{impl} (engine: unfused attention)")
            a = analyze(spec, hw, batch, input_len, output_len, quant=prec, flash=False)
        gen = Generator(mdl, batch, input_len, output_len, device)
        say("timing prefill and decode")
        steps = None if "decode" in phases else 0
        t = time_generation(gen, repeats=repeats, warmup=1, steps=steps)
        ttft = t.ttft_s
        tpot = t.tpot_s if "decode" in phases else float("nan")
        measured = _metrics(batch, output_len, ttft, tpot)
        predicted = _metrics(batch, output_len, float(a.ttft_s), float(a.tpot_s))
        if "decode" not in phases:
            measured = {"ttft_s": ttft}
            predicted = {"ttft_s": float(a.ttft_s)}
        shares = {}
        if profile:
            say("profiling")
            shares = {p: v for p, v in profile_shares(gen).items() if p in phases}
        eng = {p: _norm(engine_shares(a, p)) for p in phases}
        res = BenchResult(
            model=label, config=cfg, description=describe(cfg), dtype=dtype, device=device,
            threads=nthreads if device == "cpu" else 0, attention=impl, batch=batch,
            input_len=input_len, output_len=output_len, params=int(a.params),
            weight_bytes=model_weight_bytes(mdl), hardware=hw_label, hardware_name=hw.name,
            repeats=repeats, measured=measured, predicted=predicted,
            samples={"prefill_s": t.prefill_s, "step_s": t.step_s, "steps": t.steps},
            shares=shares, engine_shares=eng, warnings=warnings)
        del gen
        for p in diagnose_phases:
            if p not in phases:
                continue
            say(f"diagnosing {p} (narrow twin, twice the batch)")
            res.diagnosis[p] = diagnose(mdl, cfg, spec, hw, p, res, prec, attn=impl)
    return res


def _resolve_hardware(hardware, device, threads, dtype, warnings, say) -> tuple[str, HardwareSpec]:
    from ..probe import probe, probe_header
    if hardware is None:
        say("no --hardware: running a quick probe first")
        r = probe(device=device, quick=True, threads=threads, dtype=dtype, budget_s=10.0)
        import tomllib
        from ..specs.hardware import from_dict
        return "quick probe", from_dict("probed", tomllib.loads(r.to_toml()))
    hw = load_hardware(hardware)
    label = str(hardware) if not isinstance(hardware, HardwareSpec) else hardware.id
    if isinstance(hardware, (str, os.PathLike)) and Path(str(hardware)).is_file():
        label = str(Path(str(hardware)).resolve())
        head = probe_header(hardware)
        if head.get("threads") and device == "cpu" and int(head["threads"]) != threads:
            warnings.append(f"the device file was probed with {head['threads']} thread(s), this "
                            f"run uses {threads}: overheads and bandwidth differ")
        if head.get("dtype") and head["dtype"] != dtype:
            warnings.append(f"the device file's efficiency was fitted for {head['dtype']}, this run "
                            f"is {dtype}")
    elif hw.efficiency.is_ideal:
        warnings.append(f"{hw.id} is a datasheet entry: predictions use its default efficiency "
                        "profile, not this machine's; run `llmroofline probe --out FILE` for that")
    return label, hw


def _available_bytes(device: str) -> float:
    if device.startswith("cuda"):
        import torch
        free, _ = torch.cuda.mem_get_info(device)
        return float(free)
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return 0.0


def diagnose(mdl, cfg: dict, spec, hw: HardwareSpec, phase: str, res: BenchResult,
             prec: Precision, attn: str = "sdpa", steps: int = 8,
             width: float = DIAGNOSE_WIDTH) -> Diagnosis:
    """Width and token scaling tests of one phase (module docstring).

    The three variants (as run, narrow, twice the batch) are timed in turns within each
    repeat, so a neighbour that slows the shared machine for a few seconds slows all three
    alike instead of faking a scaling.
    """
    flash = attn == "sdpa"
    B, I, O = res.batch, res.input_len, res.output_len
    n = min(steps, O - 1) if phase == "decode" else 0
    out_len = O if phase == "decode" else 1
    narrow_cfg = shrink_config(cfg, scale=width)
    narrow_spec = from_hf_config(narrow_cfg, name="narrow")
    kw = dict(quant=prec, flash=flash)
    a_full = analyze(spec, hw, B, I, O, **kw)
    a_narrow = analyze(narrow_spec, hw, B, I, O, **kw)
    r_w = work_s(a_full, phase) / max(work_s(a_narrow, phase), 1e-30)
    gens = {"base": Generator(mdl, B, I, out_len, res.device),
            "double": Generator(mdl, 2 * B, I, out_len, res.device)}
    if narrow_spec.hidden_size < spec.hidden_size:
        gens["narrow"] = Generator(build_model(narrow_cfg, res.dtype, res.device, attn),
                                   B, I, out_len, res.device)
    samples = {k: Timings() for k in gens}
    for g in gens.values():                       # warm-up
        g.generation(steps=min(n, 2))
    for _ in range(max(res.repeats, 3)):
        for k, g in gens.items():
            pre, times = g.generation(steps=n)
            samples[k].prefill_s.append(pre)
            if times:
                samples[k].step_s.append(times)
                samples[k].steps = len(times)
    t = {k: (v.tpot_s if phase == "decode" else v.ttft_s) for k, v in samples.items()}
    base, dbl = t["base"], t["double"]
    t_narrow = t.get("narrow", float("nan"))
    e_w = math.log(base / t_narrow) / math.log(r_w) if "narrow" in t and r_w > 1 else float("nan")
    e_t = math.log2(dbl / base)
    if not math.isnan(e_w) and e_w < OVERHEAD_ELASTICITY:
        verdict = "overhead"
    else:
        verdict = "compute" if e_t >= COMPUTE_ELASTICITY else "memory"
    ev, shares = engine_regime(a_full, phase)
    return Diagnosis(phase, verdict, e_w, e_t, r_w, base, t_narrow, dbl, ev, shares,
                     width=narrow_spec.hidden_size / spec.hidden_size)


# -- CSV for validate -----------------------------------------------------------------------
CSV_COLUMNS = ("id", "source_id", "engine", "hardware", "tp", "pp", "model", "weight_dtype",
               "act_dtype", "kv_dtype", "mode", "batch", "input_len", "output_len",
               "throughput_tok_s", "ttft_ms", "tpot_ms", "e2e_ms")


def write_csv(res: BenchResult, path: str | os.PathLike) -> Path:
    """Append a row in the schema ``validate`` reads (static batch; times in ms).

    The shrunk config is written beside the CSV (``<model>.<hash>.config.json``) and named
    by path in the ``model`` column; ``hardware`` is the device file's path, so
    ``llmroofline validate FILE.csv`` re-predicts the row with the same inputs.
    """
    import hashlib
    p = Path(path)
    if p.suffix.lower() != ".csv":
        raise InputError(f"csv: the file must end in .csv, got {p.name!r}")
    if not p.resolve().parent.is_dir():
        raise InputError(f"csv: directory {p.parent} does not exist")
    if res.hardware == "quick probe":
        raise InputError("csv: pass --hardware FILE (a probed device file) so the rows can be "
                         "re-predicted by validate")
    text = json.dumps(res.config, sort_keys=True)
    stem = res.model.replace("/", "__")
    cfg_path = p.resolve().parent / f"{stem}.{hashlib.sha1(text.encode()).hexdigest()[:8]}.config.json"
    cfg_path.write_text(json.dumps(res.config, indent=1) + "\n")
    rows = []
    if p.exists() and p.stat().st_size:
        with open(p, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    m = res.measured
    row = {"id": f"bench-{len(rows) + 1}", "source_id": "llmroofline-bench",
           "engine": f"transformers-{res.attention}", "hardware": res.hardware, "tp": 1, "pp": 1,
           "model": str(cfg_path), "weight_dtype": res.dtype, "act_dtype": res.dtype,
           "kv_dtype": res.dtype, "mode": "static", "batch": res.batch, "input_len": res.input_len,
           "output_len": res.output_len,
           "throughput_tok_s": f"{m['throughput_tok_s']:.6g}" if "throughput_tok_s" in m else "",
           "ttft_ms": f"{m['ttft_s'] * 1e3:.6g}",
           "tpot_ms": f"{m['tpot_s'] * 1e3:.6g}" if "tpot_s" in m else "",
           "e2e_ms": f"{m['e2e_s'] * 1e3:.6g}" if "e2e_s" in m else ""}
    rows.append(row)
    with open(p, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return p
