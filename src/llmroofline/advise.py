"""Optimization advisor: name the bottleneck, then rank the levers by predicted gain.

:func:`advise` runs the engine on the user's workload (the *baseline*), diagnoses where the
time goes, and re-runs the engine once per lever with that lever applied. Every gain it
reports compares two engine runs (the baseline and the lever's); none is a rule of thumb.

Diagnosis (:func:`diagnose`), per phase (prefill: the whole prefill; decode: the mean step):

- time per **regime**: each operator row's roofline part ``max(compute_s, memory_s)`` goes
  to ``compute`` or ``memory`` (whichever roof is higher), ``comm_s`` to
  ``communication``, ``overhead_s`` (launch overhead, step overhead) to ``overhead``; a
  pipeline row (bubble + stage transfers) to ``pipeline``;
- time per **operator class**: projections (q/k/v/o, MLA projections, ``lm_head``),
  attention (fused or unfused score/softmax/PV, latent cache IO), MLP / experts (dense MLP,
  router, routed and shared experts), norms / elementwise (norms, rotary, activation
  functions, residual adds, embedding lookup), collectives, launch / step overhead (the
  launch term of every row plus the step row), pipeline;
- arithmetic intensity (kernel FLOPs / kernel bytes) against the device's ridge point
  (matmul peak of the precision x compute efficiency / bandwidth x bandwidth efficiency,
  ``plots.ridge``);
- the goal weights the phases: ``ttft`` prefill only, ``tpot`` decode only, ``latency``,
  ``throughput`` and ``cost`` both phases by their share of the end-to-end time. The
  dominant regime is the largest weighted share; one sentence names it and why.

Goals and their metric (``GOALS``): ``throughput`` generated tokens/s of the deployment;
``latency`` end-to-end seconds; ``ttft``; ``tpot``; ``cost`` tokens per USD with a price
file, else tokens/s per device (every device-hour assumed to cost the same).
``gain`` = after / before for higher-is-better metrics, before / after for times: a
speed-up factor, > 1 is better. ``delta`` = after - before in the metric's unit.

Levers (each a transformation of the baseline setup, evaluated by the engine):

- precision: weight-only INT8 (``w8a16``) and INT4 (``w4a16``: AWQ/GPTQ, group 128);
  W8A8 FP8 (``fp8`` without its KV part), or W8A8 INT8 (``int8-sq``) on devices with INT8
  but no FP8 units; W4A4 FP4 where the device has FP4 units; KV cache at 8 and 4 bits;
- batch: the batch (current .. memory limit) with the highest throughput within the
  constraints; **paged KV + continuous batching**: the engine reserves each sequence's
  cache for ``input + output`` tokens (what a static batch holds at its end); with requests
  staggered over their lifetime a paged allocator holds on average ``input + output / 2``
  tokens per sequence, so more sequences fit; timing is the engine's static batch at that
  size, memory the mean occupancy (peaks above it need preemption);
- parallelism: tensor-parallel degree halved and doubled, the smallest degree that fits,
  the TP group halved into two data-parallel replicas (same devices, same requests: batch
  halved per replica), pipeline stages instead of tensor parallelism on the same devices
  (and the reverse when the baseline pipelines);
- kernels: fused attention on/off; **CUDA graphs** for the decode steps
  (``analyze(cuda_graphs=True)``: per-kernel launch overhead x
  ``CUDA_GRAPH_LAUNCH_FACTOR`` (0.2) in decode steps; prefill stays eager; the step
  overhead is kept);
- speculative decoding with a given draft model, ``draft_k`` and acceptance rate
  (``decoding.speculative``);
- offloading (only when the baseline does not fit): the smallest weight fraction, in
  steps of 1 %, then KV fraction, in host memory that makes it fit;
- each other catalog device (or the given ``devices``), same layout and precision.

Combinations: the best ``COMBO_PER_AXIS`` accepted single levers (gain above
``COMBO_MIN_GAIN``) of each of the ``COMBO_TOP`` best axes are combined, one lever per
axis, in every compatible subset of two or more axes; the batch and
offload levers are re-resolved for the combined setup (a quantized model fits a larger
batch). A combination that is not at least 1 % better than its best member is rejected.
Device switches are ranked alone, not combined: to plan on another device, advise on it.

Constraints: a lever whose setup does not fit the device memory, or whose TTFT/TPOT exceed
``max_ttft_s``/``max_tpot_s``, is listed as rejected with the reason. Levers that cannot
be applied (no FP8 units, a TP degree that does not divide the heads, no draft model) are
listed in ``skipped`` and were not run.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace

import numpy as np

from . import decoding
from .cost import Roofline
from .errors import InputError, suggest
from .graph import build_ops
from .memory import kv_cache_bytes_per_seq, weight_bytes_total
from .parallel import Layout
from .phases import Analysis, OpResult, analyze, prefill_fixed_s, step_cost
from .specs.catalog import load_model
from .specs.hardware import HardwareSpec, hardware_ids, load_hardware
from .specs.model import ModelSpec
from .specs.precision import SCHEMES, Precision, compute_dtypes
from .specs.profile import CUDA_GRAPH_LAUNCH_FACTOR, Profile, load_profile

# goal -> (metric key, +1 higher is better / -1 lower is better, label)
GOALS: dict[str, tuple[str, int, str]] = {
    "throughput": ("throughput_tok_s", +1, "tokens/s"),
    "latency": ("e2e_s", -1, "end-to-end latency"),
    "ttft": ("ttft_s", -1, "TTFT"),
    "tpot": ("tpot_s", -1, "TPOT"),
    "cost": ("cost", +1, "tokens/s per device"),
}
REGIMES = ("compute", "memory", "communication", "overhead")
CLASSES = ("projections", "attention", "mlp", "elementwise", "collectives", "overhead")
CLASS_LABELS = {
    "projections": "projections (q/k/v/o, lm_head)",
    "attention": "attention",
    "mlp": "MLP / experts",
    "elementwise": "norms / elementwise",
    "collectives": "collectives",
    "overhead": "launch / step overhead",
    "pipeline": "pipeline bubble + p2p",
}
GRAPH_FACTOR = CUDA_GRAPH_LAUNCH_FACTOR     # launch overhead kept by CUDA graphs
COMBO_TOP = 4               # axes whose levers are combined
COMBO_PER_AXIS = 2          # levers per axis taken into combinations
COMBO_MIN_GAIN = 1.01       # a lever (or a combination over its best part) must beat this
MAX_BATCH_CANDIDATES = 4096

_PROJ = {"qkv_proj", "o_proj", "q_a_proj", "q_b_proj", "q_proj", "kv_a_proj", "kv_b_proj",
         "q_absorb", "o_absorb", "lm_head"}
# Axes in the order a combination applies them (the batch is resolved last).
_AXES = ("weights", "kv", "attention", "kernels", "device", "layout", "decoding", "offload",
         "batch")
_INCOMPATIBLE = {frozenset(("decoding", "batch")), frozenset(("decoding", "offload")),
                 frozenset(("offload", "batch"))}


# -- diagnosis ----------------------------------------------------------------------------
def _op_class(o: OpResult) -> str:
    if o.kind == "matmul":
        return "projections" if o.name in _PROJ else "mlp"
    if o.kind == "attention" or o.name.startswith("softmax") or o.name == "latent_cache_io":
        return "attention"
    if o.kind == "communication":
        return "collectives"
    if o.kind in ("overhead", "pipeline"):
        return o.kind if o.kind == "pipeline" else "overhead"
    return "elementwise"


def _split(rows, idx=()) -> tuple[dict, dict]:
    """Seconds per regime and per operator class of operator rows (module docstring)."""
    reg = dict.fromkeys(REGIMES, 0.0)
    cls = dict.fromkeys(CLASSES, 0.0)
    for o in rows:
        t = float(np.asarray(o.time_s)[idx])
        if o.kind == "pipeline":
            reg["pipeline"] = reg.get("pipeline", 0.0) + t
            cls["pipeline"] = cls.get("pipeline", 0.0) + t
            continue
        oh = float(np.broadcast_to(o.overhead_s, np.shape(o.time_s))[idx])
        comm = float(np.asarray(o.comm_s)[idx])
        roof = max(t - comm - oh, 0.0)
        c, m = float(np.asarray(o.compute_s)[idx]), float(np.asarray(o.memory_s)[idx])
        reg["compute" if c >= m and c > 0 else "memory"] += roof
        reg["communication"] += comm
        reg["overhead"] += oh
        cls[_op_class(o)] += t - oh
        cls["overhead"] += oh
    return reg, cls


def _shares(d: dict) -> dict:
    total = sum(d.values())
    return {k: (v / total if total > 0 else 0.0) for k, v in d.items()}


def _top(d: dict) -> str:
    return max(d, key=lambda k: d[k])


def _ridge(a: Analysis) -> float:
    from .plots import ridge
    return float(ridge(a)["intensity"])


def _phase_dict(a: Analysis, name: str) -> dict:
    p = getattr(a, name)
    reg, cls = _split(p.ops)
    kern = [o for o in p.ops if o.kind not in ("communication", "overhead", "pipeline")]
    flops = float(sum(float(o.flops) for o in kern))
    wb = float(sum(float(o.weight_bytes) for o in kern))
    kv = float(sum(float(o.kv_bytes) for o in kern))
    act = float(sum(float(o.act_bytes) for o in kern))
    nbytes = wb + kv + act
    ai = flops / nbytes if nbytes else 0.0
    comp_s = sum(float(o.compute_s) for o in kern)
    mem_s = sum(float(o.memory_s) for o in kern)
    eff_ridge = (flops / comp_s) / (nbytes / mem_s) if comp_s > 0 and mem_s > 0 else math.nan
    class_flops = {}
    for o in kern:
        class_flops[_op_class(o)] = class_flops.get(_op_class(o), 0.0) + float(o.flops)
    return {
        "time_s": float(p.time_s), "total_time_s": float(p.total_time_s),
        "steps": int(p.steps),
        "regimes": _shares(reg), "regime_s": reg,
        "classes": _shares(cls), "class_s": cls,
        "dominant_regime": _top(reg), "dominant_class": _top(cls),
        "flops": flops, "weight_bytes": wb, "kv_bytes": kv, "activation_bytes": act,
        "comm_bytes": float(sum(float(np.asarray(o.comm_bytes)) for o in p.ops)),
        "kernels": int(sum(o.count for o in kern)),
        "intensity": ai, "ridge_point": _ridge(a),
        "attained_flops_s": flops / comp_s if comp_s > 0 else None,
        "attained_bytes_s": nbytes / mem_s if mem_s > 0 else None,
        "effective_ridge_point": eff_ridge if math.isfinite(eff_ridge) else None,
        "class_flops": class_flops,
    }


def _phase_weights(a_prefill_s: float, a_decode_s: float, goal: str) -> dict:
    if goal == "ttft":
        return {"prefill": 1.0, "decode": 0.0}
    if goal == "tpot":
        return {"prefill": 0.0, "decode": 1.0}
    return {"prefill": a_prefill_s, "decode": a_decode_s}


def _weighted(phase_secs: dict, weights: dict) -> dict:
    """Goal-weighted regime shares from per-phase {regime: seconds} dicts."""
    out: dict[str, float] = {}
    for ph, secs in phase_secs.items():
        w, total = weights.get(ph, 0.0), sum(secs.values())
        if w <= 0 or total <= 0:
            continue
        for k, v in secs.items():
            out[k] = out.get(k, 0.0) + w * v / total
    return _shares(out) if out else dict.fromkeys(REGIMES, 0.0)


_PHRASE = {"ttft": "the time to first token", "tpot": "the decode step",
           "latency": "the end-to-end latency", "throughput": "the batch's prefill + decode time",
           "cost": "the batch's prefill + decode time"}


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def _gbytes(x: float) -> str:
    return f"{x / 1e9:.3g} GB" if x >= 1e8 else f"{x / 1e6:.3g} MB"


def _why(a: Analysis, ph: str, d: dict, regime: str) -> str:
    hw = a.hardware
    what = "per step" if ph == "decode" else "in the prefill"
    share = d["regimes"].get(regime, 0.0)
    ai, ridge = d["intensity"], d["ridge_point"]
    if regime == "memory":
        parts = {"weights": d["weight_bytes"], "the KV cache": d["kv_bytes"],
                 "activations": d["activation_bytes"]}
        big = _top(parts)
        tot = sum(parts.values()) or 1.0
        return (f"{_pct(share)} of the {ph} time streams bytes, mostly {big} "
                f"({_gbytes(parts[big])} {what}, {_pct(parts[big] / tot)} of the bytes); "
                f"at {ai:.3g} FLOP/byte it sits {ridge / max(ai, 1e-12):.3g}x below the "
                f"{hw.id} ridge point of {ridge:.0f} FLOP/byte")
    if regime == "compute":
        cf = d["class_flops"]
        big = _top(cf) if cf else "projections"
        tot = sum(cf.values()) or 1.0
        eff = d["effective_ridge_point"]
        if eff is not None and eff < 0.8 * ridge:
            where = (f"{ai:.3g} FLOP/byte is {ai / eff:.3g}x the ridge point of {eff:.3g} "
                     f"FLOP/byte its kernels attain in profile '{a.profile}' (they reach "
                     f"{d['attained_flops_s'] / 1e12:.3g} TFLOP/s, against {ridge:.0f} FLOP/byte "
                     "at the datasheet peak x compute efficiency)")
        else:
            where = (f"{ai:.3g} FLOP/byte is {ai / max(ridge, 1e-12):.3g}x the {hw.id} ridge "
                     f"point of {ridge:.0f} FLOP/byte")
        return (f"{_pct(share)} of the {ph} time runs at the compute roof: {where}, and "
                f"{CLASS_LABELS[big]} do {_pct(cf.get(big, 0) / tot)} of the FLOPs")
    if regime == "communication":
        link = (hw.scaleup_link or "NVLink-class links") if hw.has_nvlink else "PCIe"
        return (f"{_pct(share)} of the {ph} time is collectives over {link} "
                f"({_gbytes(d['comm_bytes'])} per device {what} across {a.layout.label}); their "
                "latency and bytes do not shrink as the devices' share of the work does")
    if regime == "overhead":
        e = a.efficiency
        step = float(prefill_fixed_s(e, a.input_len)) if ph == "prefill" else e.step_overhead_s
        fixed = f"{d['kernels']} kernel launches at {e.launch_overhead_s * 1e6:.3g} us" \
            + (f" plus {step * 1e6:.3g} us per step" if step else "")
        return (f"{_pct(share)} of the {ph} time is fixed cost ({fixed}) against "
                f"{_fmt_s(d['regime_s']['compute'] + d['regime_s']['memory'])} of roofline work")
    return (f"{_pct(share)} of the {ph} time is the pipeline bubble and stage transfers "
            f"({a.layout.pp} stages, {a.layout.num_microbatches} micro-batches)")


def diagnose(a: Analysis, goal: str = "throughput") -> dict:
    """Where the time of one workload (scalar query) goes, phase by phase (module doc)."""
    _check_goal(goal)
    if np.size(a.batch) != 1:
        raise InputError("advise: batch, input and output must be single values")
    phases = {ph: _phase_dict(a, ph) for ph in ("prefill", "decode")}
    weights = _phase_weights(float(a.prefill.total_time_s), float(a.decode.total_time_s), goal)
    reg = _weighted({ph: d["regime_s"] for ph, d in phases.items()}, weights)
    cls = _weighted({ph: d["class_s"] for ph, d in phases.items()}, weights)
    regime = _top(reg)
    # the phase that contributes most of the dominant regime's time
    ph = max(phases, key=lambda p: weights[p] * phases[p]["regimes"].get(regime, 0.0))
    sentence = (f"{regime.capitalize()}-bound: {_pct(reg[regime])} of {_PHRASE[goal]} is "
                f"{regime if regime != 'pipeline' else 'pipeline idling'}, mostly in the {ph} ("
                + _why(a, ph, phases[ph], regime) + ").")
    for d in phases.values():
        d.pop("class_flops")
    return {"regimes": reg, "classes": cls, "dominant_regime": regime,
            "dominant_class": _top(cls), "dominant_phase": ph, "summary": sentence,
            "phase_weights": _shares(weights), "prefill": phases["prefill"],
            "decode": phases["decode"]}


# -- setups and their evaluation --------------------------------------------------------------
@dataclass(frozen=True)
class Setup:
    """Everything a lever can change; ``batch_mode`` "max"/"paged" and ``offload`` are
    resolved when the setup is evaluated."""

    hardware: HardwareSpec
    precision: Precision
    layout: Layout
    flash: bool
    batch: int
    batch_mode: str = ""          # "", "max" (best batch that fits), "paged"
    graphs: bool = False          # decode steps replayed from CUDA graphs
    draft: str | None = None      # speculative decoding with this draft
    offload: bool = False         # offload just enough to fit

    def config(self) -> dict:
        p, lay = self.precision, self.layout
        return {"hardware": self.hardware.id, "precision": p.label, "wbits": p.wbits,
                "abits": p.abits, "kvbits": p.kvbits, "group_size": p.group_size,
                "scale_bits": p.scale_bits, "int8": p.int8, "tp": lay.tp, "pp": lay.pp,
                "ep": lay.ep, "dp": lay.dp,
                "microbatches": lay.microbatches, "offload_weights": lay.offload_weights,
                "offload_kv": lay.offload_kv, "flash": self.flash, "batch": self.batch,
                "cuda_graphs": self.graphs,
                "draft": self.draft}


@dataclass(frozen=True)
class Outcome:
    """One engine evaluation of a setup (scalars)."""

    setup: Setup
    analysis: Analysis
    spec: decoding.Speculative | None
    ttft_s: float
    tpot_s: float
    e2e_s: float
    throughput_tok_s: float
    memory_bytes: float
    capacity_bytes: float
    max_batch: int
    regimes: dict
    warnings: tuple[str, ...] = ()
    memory_note: str = ""

    @property
    def devices(self) -> int:
        return self.setup.layout.devices

    @property
    def fits(self) -> bool:
        return self.memory_bytes <= self.capacity_bytes

    @property
    def regime(self) -> str:
        return _top(self.regimes)


@dataclass(frozen=True)
class _Ctx:
    model: ModelSpec
    input_len: int
    output_len: int
    goal: str
    profile: Profile
    max_ttft_s: float | None
    max_tpot_s: float | None
    draft_k: int
    accept: float
    draft_tp: int | None
    prices: dict | None


def _run(ctx: _Ctx, s: Setup, batch, layout: Layout | None = None) -> Analysis:
    return analyze(ctx.model, s.hardware, batch, ctx.input_len, ctx.output_len,
                   quant=s.precision, flash=s.flash, layout=layout or s.layout,
                   profile=ctx.profile, cuda_graphs=s.graphs)


def _limits_ok(ctx: _Ctx, ttft, tpot):
    ok = np.ones(np.shape(ttft), bool)
    if ctx.max_ttft_s is not None:
        ok &= np.asarray(ttft) <= ctx.max_ttft_s
    if ctx.max_tpot_s is not None:
        ok &= ~(np.asarray(tpot) > ctx.max_tpot_s)
    return ok


def _paged_kv(ctx: _Ctx, s: Setup, lay: Layout, batch):
    """KV bytes a paged allocator holds on average: input + output / 2 tokens per sequence."""
    mean = ctx.input_len + ctx.output_len / 2
    return np.asarray(batch, float) * kv_cache_bytes_per_seq(ctx.model, s.precision, mean, lay) \
        * (1 - lay.offload_kv)


def _resolve_batch(ctx: _Ctx, s: Setup) -> tuple[Setup, str]:
    """The batch (current .. memory limit) with the highest throughput within limits."""
    a1 = _run(ctx, s, 1)
    cap, w = a1.memory.capacity_bytes, a1.memory.weights_bytes
    act1 = float(a1.memory.activation_bytes)
    if s.batch_mode == "paged":
        kv1 = float(_paged_kv(ctx, s, s.layout, 1))
        top = int((cap - w) // (kv1 + act1)) if cap > w else 0
    else:
        top = int(a1.max_batch)
    if top <= s.batch:
        raise _Skip(f"batch {s.batch} is already at the memory limit (largest batch that "
                    f"fits: {top})")
    if top - s.batch < MAX_BATCH_CANDIDATES:
        cand = np.arange(s.batch, top + 1, dtype=float)
    else:
        cand = np.unique(np.round(np.geomspace(s.batch, top, MAX_BATCH_CANDIDATES)))
    a = _run(ctx, s, cand)
    if s.batch_mode == "paged":
        fits = w + _paged_kv(ctx, s, s.layout, cand) + a.memory.activation_bytes <= cap
    else:
        fits = np.asarray(a.memory.fits, bool)
    ok = fits & _limits_ok(ctx, a.ttft_s, a.tpot_s)
    note = ""
    if not ok.any():
        i = int(np.nonzero(fits)[0][-1]) if fits.any() else len(cand) - 1
        note = "no larger batch meets the latency limits"
    else:
        i = int(np.argmax(np.where(ok, a.throughput_tok_s, -np.inf)))
        if cand[i] == s.batch:
            raise _Skip(f"no batch above {s.batch} gives more tokens/s within the limits")
    return replace(s, batch=int(cand[i])), note


def _resolve_offload(ctx: _Ctx, s: Setup) -> Setup:
    """Smallest weight (then KV) fraction in host memory, in 1 % steps, that fits."""
    lay0 = replace(s.layout, offload_weights=0.0, offload_kv=0.0)
    a = _run(ctx, s, s.batch, lay0)
    excess = float(a.memory.total_bytes) - a.memory.capacity_bytes
    if excess <= 0:
        raise _Skip("fits without offloading")
    wts = weight_bytes_total(ctx.model, s.precision, lay0)
    kv = float(a.memory.kv_cache_bytes)
    fw = min(math.ceil(100 * excess / wts) / 100, 1.0)
    fkv = 0.0
    if excess > wts and kv > 0:
        fkv = min(math.ceil(100 * (excess - wts) / kv) / 100, 1.0)
    return replace(s, layout=replace(s.layout, offload_weights=fw, offload_kv=fkv))


class _Skip(Exception):
    """A lever that cannot be applied to this setup (not run)."""


def _spec_regimes(sp: decoding.Speculative, ctx: _Ctx, goal: str) -> dict:
    """Goal-weighted regimes of speculative decoding: both prefills, and decode as the draft
    and verify steps at the mean context (their time shares from the engine's totals)."""
    p, d = sp.plain, sp.draft
    mid = ctx.input_len + ctx.output_len / 2
    roof = Roofline.of(p.hardware, p.precision, p.layout, p.efficiency)
    droof = Roofline.of(p.hardware, p.precision, d.layout, d.efficiency)
    v = step_cost(decoding.verify_ops(p.model, p.precision, float(p.batch), sp.draft_k,
                                      mid + sp.draft_k, flash=p.flash, layout=p.layout), roof)
    ds = step_cost(build_ops(d.model, p.precision, float(p.batch), 1, mid, flash=p.flash,
                             layout=d.layout), droof)
    pre = {}
    for a in (p, d):
        for k, x in _split(a.prefill.ops)[0].items():
            pre[k] = pre.get(k, 0.0) + x
    dec: dict[str, float] = {}
    for rows, total in ((v.ops, float(sp.verify_s)), (ds.ops, float(sp.draft_decode_s))):
        r = _shares(_split(rows)[0])
        for k, x in r.items():
            dec[k] = dec.get(k, 0.0) + x * total
    weights = _phase_weights(float(sp.ttft_s), float(sp.decode_s), goal)
    return _weighted({"prefill": pre, "decode": dec}, weights)


def _evaluate(ctx: _Ctx, s: Setup) -> Outcome:
    note = ""
    if s.offload:
        s = _resolve_offload(ctx, s)
    if s.batch_mode:
        s, note = _resolve_batch(ctx, s)
    if s.draft:
        if s.layout.pp > 1:
            raise _Skip("speculative decoding is modelled without pipeline stages")
        sp = decoding.speculative(ctx.model, s.hardware, s.batch, ctx.input_len,
                                  ctx.output_len, draft=s.draft, draft_k=ctx.draft_k,
                                  accept=ctx.accept, draft_tp=ctx.draft_tp, quant=s.precision,
                                  flash=s.flash, layout=s.layout, profile=ctx.profile,
                                  cuda_graphs=s.graphs)
        m = sp.memory
        return Outcome(s, sp.plain, sp, float(sp.ttft_s), float(sp.tpot_s), float(sp.e2e_s),
                       float(sp.throughput_tok_s), float(m.total_bytes), m.capacity_bytes,
                       int(m.max_batch), _spec_regimes(sp, ctx, ctx.goal), sp.warnings, note)
    a = _run(ctx, s, s.batch)
    mem = float(a.memory.total_bytes)
    if s.batch_mode == "paged":
        mem = float(a.memory.weights_bytes + _paged_kv(ctx, s, s.layout, s.batch)
                    + a.memory.activation_bytes)
    d = {ph: _split(getattr(a, ph).ops)[0] for ph in ("prefill", "decode")}
    reg = _weighted(d, _phase_weights(float(a.prefill.total_time_s),
                                      float(a.decode.total_time_s), ctx.goal))
    return Outcome(s, a, None, float(a.ttft_s), float(a.tpot_s), float(a.e2e_s),
                   float(a.throughput_tok_s), mem, a.memory.capacity_bytes, int(a.max_batch),
                   reg, a.warnings, note)


def metric(o: Outcome, goal: str, prices: dict | None = None) -> float:
    """The goal's metric of an outcome (``GOALS``)."""
    if goal == "cost":
        per_dev = o.throughput_tok_s / o.devices
        if prices:
            usd = prices.get(o.setup.hardware.id)
            return per_dev * 3600 / usd if usd else math.nan
        return per_dev
    return float(getattr(o, GOALS[goal][0]))


# -- levers --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Lever:
    """One evaluated lever (or combination); ranked by ``gain`` (> 1: better)."""

    lever: str
    category: str
    before: float
    after: float
    gain: float
    delta: float
    regime_after: str
    memory_after_bytes: float
    capacity_bytes: float
    caveat: str
    rejected: str | None
    parts: tuple[str, ...]
    outcome: Outcome = field(repr=False, compare=False)

    @property
    def fits(self) -> bool:
        return self.outcome.fits

    def to_dict(self) -> dict:
        o = self.outcome

        def num(x):
            return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x
        return {"lever": self.lever, "category": self.category, "before": num(self.before),
                "after": num(self.after), "gain": num(self.gain), "delta": num(self.delta),
                "regime_after": self.regime_after,
                "memory_after_bytes": self.memory_after_bytes,
                "capacity_bytes": self.capacity_bytes, "fits": self.fits,
                "caveat": self.caveat, "rejected": self.rejected, "parts": list(self.parts),
                "ttft_s": num(o.ttft_s), "tpot_s": num(o.tpot_s), "e2e_s": num(o.e2e_s),
                "throughput_tok_s": num(o.throughput_tok_s), "devices": o.devices,
                "config": o.setup.config()}


@dataclass(frozen=True)
class _Def:
    """A single lever: how it transforms a setup, what it is called, what to watch."""

    name: str          # full name for the table
    short: str         # name inside a combination
    category: str
    axis: str
    apply: object      # Setup -> Setup
    note: str = ""     # accuracy risk or modelling assumption (static)
    extra: object = None   # (baseline Outcome, Outcome) -> str: what else changes

    def caveat(self, b: Outcome, o: Outcome) -> str:
        bits = [self.note] if self.note else []
        if self.extra is not None:
            bits.append(self.extra(b, o))
        return "; ".join(x for x in bits if x)


@dataclass(frozen=True)
class Advice:
    """Result of :func:`advise`: the diagnosis and the levers, best first."""

    goal: str
    metric_label: str
    higher_is_better: bool
    baseline: Outcome
    diagnosis: dict
    levers: tuple[Lever, ...]
    skipped: tuple[tuple[str, str], ...]
    constraints: dict
    notes: tuple[str, ...] = ()

    @property
    def accepted(self) -> list[Lever]:
        return [lv for lv in self.levers if not lv.rejected]

    @property
    def rejected(self) -> list[Lever]:
        return [lv for lv in self.levers if lv.rejected]

    def lever(self, name: str) -> Lever:
        for lv in self.levers:
            if lv.lever == name:
                return lv
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {"diagnosis": self.diagnosis,
                "levers": [lv.to_dict() for lv in self.levers],
                "skipped": [{"lever": n, "reason": r} for n, r in self.skipped],
                "notes": list(self.notes)}


def _fmt_s(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.3g} s" if x >= 1 else f"{x * 1e3:.3g} ms"


def _costs(goal: str, b: Outcome, o: Outcome) -> str:
    """What gets worse (by more than 5 %) besides the goal's own metric: the lever's price."""
    bits = []
    if goal != "ttft" and o.ttft_s > 1.05 * b.ttft_s:
        bits.append(f"TTFT {_fmt_s(b.ttft_s)} -> {_fmt_s(o.ttft_s)}")
    if goal != "tpot" and o.tpot_s > 1.05 * b.tpot_s:
        bits.append(f"TPOT {_fmt_s(b.tpot_s)} -> {_fmt_s(o.tpot_s)}")
    if goal != "throughput" and o.throughput_tok_s < b.throughput_tok_s / 1.05:
        bits.append(f"tokens/s {b.throughput_tok_s:,.0f} -> {o.throughput_tok_s:,.0f}")
    if o.devices != b.devices:
        bits.append(f"{b.devices} -> {o.devices} devices")
    return ", ".join(bits)


def _max_batch(b: Outcome, o: Outcome) -> str:
    return f"max batch {b.max_batch} -> {o.max_batch}" if o.max_batch != b.max_batch else ""


def _quant_defs(base: Setup) -> tuple[list[_Def], list[tuple[str, str]]]:
    p, hw = base.precision, base.hardware
    defs, skipped = [], []

    def weights(name: str, short: str, scheme: str, note: str) -> _Def:
        kw = {k: v for k, v in SCHEMES[scheme].items() if k != "kvbits"}
        kw = {"int8": False, "group_size": 0, "scale_bits": 16, **kw}
        return _Def(name, short, "quantization", "weights",
                    lambda s: replace(s, precision=Precision(**{**s.precision.__dict__, **kw})),
                    note, _max_batch)

    if p.abits >= 16 and p.wbits > 8:
        defs.append(weights("weight-only INT8 (W8A16)", "W8A16", "w8a16",
                            "accuracy: INT8 weights near-lossless"))
    if p.abits >= 16 and p.wbits > 4:
        defs.append(weights("weight-only INT4 (W4A16, AWQ/GPTQ g128)", "W4A16", "w4a16",
                            "accuracy risk: 4-bit weights, validate on your task"))
    if p.abits > 8:
        if hw.peak("fp8"):
            defs.append(weights("W8A8 FP8 (weights + activations)", "FP8", "fp8",
                                "accuracy: FP8 near-lossless with calibrated scales"))
        elif hw.peak("int8"):
            defs.append(weights("W8A8 INT8 (SmoothQuant)", "INT8-SQ", "int8-sq",
                                "accuracy risk: INT8 activations need outlier smoothing"))
        else:
            skipped.append(("W8A8 FP8/INT8", f"{hw.id} has no FP8 or INT8 tensor units"))
    if p.abits > 4 and hw.peak("fp4"):
        defs.append(weights("W4A4 FP4 (NVFP4)", "FP4", "fp4",
                            "accuracy risk: 4-bit activations need FP4-aware recipes"))
    for bits, note in ((8, "accuracy: 8-bit KV cache near-lossless"),
                       (4, "accuracy risk: 4-bit KV cache hurts long-context recall")):
        if p.kvbits > bits:
            defs.append(_Def(f"KV cache {bits}-bit", f"KV{bits}", "quantization", "kv",
                             lambda s, bits=bits: replace(s, precision=replace(s.precision,
                                                                              kvbits=bits)),
                             note, _max_batch))
    return defs, skipped


def _layout_defs(ctx: _Ctx, base: Setup) -> tuple[list[_Def], list[tuple[str, str]]]:
    lay, m = base.layout, ctx.model
    defs, skipped = [], []

    def invalid(nl: Layout) -> str:
        try:
            nl.check(m)
        except InputError as e:
            return str(e)
        return ""

    def per_device(b: Outcome, o: Outcome) -> str:
        return (f"tokens/s per device {b.throughput_tok_s / b.devices:,.0f} -> "
                f"{o.throughput_tok_s / o.devices:,.0f}")

    def tp_layout(nl: Layout, t: int) -> Layout:
        return replace(nl, tp=t, ep=math.gcd(nl.ep, t))

    cand = ([lay.tp // 2] if lay.tp > 1 else []) + [lay.tp * 2]
    t = 1
    while t < lay.tp // 2:          # the smallest degree that fits, if not a neighbour
        nl = tp_layout(lay, t)
        if not invalid(nl):
            try:
                a = analyze(m, base.hardware, base.batch, ctx.input_len, ctx.output_len,
                            quant=base.precision, flash=base.flash, layout=nl,
                            profile=ctx.profile)
                if bool(a.memory.fits):
                    cand.append(t)
                    break
            except InputError:
                pass
        t *= 2
    for t in cand:
        name = f"TP {lay.tp} -> {t}" + (f" (x PP {lay.pp})" if lay.pp > 1 else "")
        why = invalid(tp_layout(lay, t))
        if why:
            skipped.append((name, why))
            continue
        defs.append(_Def(f"{name} ({'more' if t > lay.tp else 'fewer'} devices)", f"TP {t}",
                         "parallelism", "layout",
                         lambda s, t=t: replace(s, layout=tp_layout(s.layout, t)),
                         "", per_device))
    if lay.tp > 1:
        t = lay.tp // 2
        nl = replace(tp_layout(lay, t), dp=lay.dp * 2)
        name = f"TP {lay.tp} -> TP {t} x DP 2 (same devices and requests)"
        why = invalid(nl) or ("" if base.batch % 2 == 0 else
                              f"batch {base.batch} cannot be split over two replicas")
        if why:
            skipped.append((name, why))
        else:
            defs.append(_Def(name, f"TP {t} x DP 2", "parallelism", "layout",
                             lambda s, t=t: replace(s, layout=replace(tp_layout(s.layout, t),
                                                                      dp=s.layout.dp * 2),
                                                    batch=max(s.batch // 2, 1)),
                             f"batch {base.batch // 2} per replica"))
        while t >= 1:               # pipeline stages instead of TP, same devices
            pp = lay.pp * lay.tp // t
            nl = replace(tp_layout(lay, t), pp=pp, microbatches=None)
            name = (f"TP {lay.tp} -> TP {t} x PP {pp}" if t > 1 else
                    f"TP {lay.tp} -> PP {pp}") + " (same devices)"
            why = invalid(nl)
            if why:
                skipped.append((name, why))
            else:
                defs.append(_Def(name, f"TP {t} x PP {pp}" if t > 1 else f"PP {pp}",
                                 "parallelism", "layout",
                                 lambda s, nl=nl: replace(s, layout=replace(
                                     s.layout, tp=nl.tp, ep=nl.ep, pp=nl.pp, microbatches=None)),
                                 "static-batch pipeline, bubble counted",
                                 lambda b, o: f"{o.setup.layout.num_microbatches} micro-batches"))
            t //= 2
    if lay.pp > 1:
        nl = replace(lay, tp=lay.tp * lay.pp, pp=1, microbatches=None)
        name = f"PP {lay.pp} -> TP {nl.tp} (same devices)"
        why = invalid(nl)
        if why:
            skipped.append((name, why))
        else:
            defs.append(_Def(name, f"TP {nl.tp}", "parallelism", "layout",
                             lambda s, nl=nl: replace(s, layout=replace(
                                 s.layout, tp=nl.tp, pp=1, microbatches=None))))
    return defs, skipped


def _other_defs(ctx: _Ctx, base: Setup, b0: Outcome, draft, devices) -> tuple[list[_Def], list]:
    defs, skipped = [], []
    defs.append(_Def("larger batch", "larger batch", "batch", "batch",
                     lambda s: replace(s, batch_mode="max"), "",
                     lambda b, o: o.memory_note))
    defs.append(_Def("paged KV + continuous batching", "paged KV", "batch", "batch",
                     lambda s: replace(s, batch_mode="paged"),
                     "assumes staggered requests: mean KV = input + output/2",
                     lambda b, o: o.memory_note))
    if base.flash:
        defs.append(_Def("unfused attention (FlashAttention off)", "unfused attention",
                         "kernels", "attention", lambda s: replace(s, flash=False),
                         "what fused attention is worth"))
    else:
        defs.append(_Def("FlashAttention (fused attention)", "FlashAttention", "kernels",
                         "attention", lambda s: replace(s, flash=True),
                         "fused kernel assumed at the bandwidth roof (split-KV)"))
    eff = b0.analysis.efficiency
    if base.graphs:
        skipped.append(("CUDA graphs", "the baseline already replays decode steps from CUDA graphs"))
    elif eff.launch_overhead_s > 0:
        defs.append(_Def(f"CUDA graphs for decode (launch overhead x {GRAPH_FACTOR:g})",
                         "CUDA graphs", "kernels", "kernels", lambda s: replace(s, graphs=True),
                         f"assumes decode launch overhead {eff.launch_overhead_s * 1e6:.3g} -> "
                         f"{eff.launch_overhead_s * GRAPH_FACTOR * 1e6:.3g} us per kernel"))
    else:
        skipped.append(("CUDA graphs",
                        f"launch overhead is 0 in profile '{ctx.profile.name}'; use a "
                        "calibrated profile (--profile default) to evaluate it"))
    if draft:
        defs.append(_Def(f"speculative decoding ({draft}, k = {ctx.draft_k}, acceptance "
                         f"{ctx.accept:g})", "speculative", "decoding", "decoding",
                         lambda s: replace(s, draft=draft),
                         f"acceptance {ctx.accept:g} assumed: measure it",
                         lambda b, o: f"draft weights "
                         f"{_gbytes(float(o.spec.draft.memory.weights_bytes))}"))
    else:
        skipped.append(("speculative decoding", "no draft model given (--draft MODEL, with "
                        "--draft-k and --accept)"))
    if not b0.fits:
        host = base.layout.host_bw_bytes_s or (base.hardware.pcie_bytes_s_bidir or 0) / 2
        defs.append(_Def("offload to host memory", "offload", "memory", "offload",
                         lambda s: replace(s, offload=True),
                         f"streams offloaded bytes every step at {host / 1e9:.0f} GB/s",
                         lambda b, o: f"{o.setup.layout.offload_weights:.0%} of weights, "
                         f"{o.setup.layout.offload_kv:.0%} of KV in host memory"))
    else:
        skipped.append(("offload to host memory", "the baseline fits; offloading only slows it"))
    for hid in devices:
        if hid == base.hardware.id:
            continue
        try:
            hw = load_hardware(hid)
        except InputError as e:
            skipped.append((f"switch to {hid}", str(e)))
            continue
        note = []
        if ctx.goal == "cost" and not ctx.prices:
            note.append("equal price per device-hour assumed")
        if not base.hardware.efficiency.is_ideal and hw.efficiency.is_ideal:
            note.append(f"efficiency from profile '{ctx.profile.name}'")
        defs.append(_Def(f"switch to {hw.id}", hw.id, "device", "device",
                         lambda s, hw=hw: replace(s, hardware=hw), "; ".join(note)))
    return defs, skipped


def _rejection(ctx: _Ctx, o: Outcome) -> str | None:
    why = []
    if not o.fits:
        why.append(f"does not fit: needs {o.memory_bytes / 1e9:.1f} GB of "
                   f"{o.capacity_bytes / 1e9:.0f} GB per device")
    if ctx.max_ttft_s is not None and o.ttft_s > ctx.max_ttft_s:
        why.append(f"TTFT {_fmt_s(o.ttft_s)} > {_fmt_s(ctx.max_ttft_s)}")
    if ctx.max_tpot_s is not None and o.tpot_s > ctx.max_tpot_s:
        why.append(f"TPOT {_fmt_s(o.tpot_s)} > {_fmt_s(ctx.max_tpot_s)}")
    if ctx.goal == "cost" and ctx.prices and o.setup.hardware.id not in ctx.prices:
        why.append(f"no price for {o.setup.hardware.id} in the price file")
    return "; ".join(why) or None


def _gain(before: float, after: float, sign: int) -> float:
    if not (math.isfinite(before) and math.isfinite(after)) or before <= 0 or after <= 0:
        return math.nan
    return after / before if sign > 0 else before / after


def _check_goal(goal: str) -> None:
    if goal not in GOALS:
        raise InputError(f"goal must be one of {', '.join(GOALS)}, got {goal!r}"
                         + suggest(str(goal), GOALS))


def advise(model, hardware, batch: int = 1, input_len: int = 128, output_len: int = 128, *,
           goal: str = "throughput", max_ttft_s: float | None = None,
           max_tpot_s: float | None = None, draft: str | None = None, draft_k: int = 4,
           accept: float = 0.7, draft_tp: int | None = None, devices=None,
           prices: dict | str | None = None, combos: bool = True, quant=None,
           wbits: int | None = None, abits: int | None = None, kvbits: int | None = None,
           flash: bool = True, tp: int = 1, pp: int = 1, ep: int = 1, dp: int = 1,
           layout: Layout | None = None, profile=None, cuda_graphs: bool = False) -> Advice:
    """Diagnose one workload and rank the levers by the goal's metric (module docstring).

    ``devices``: device ids to consider switching to (``None``: the whole catalog; ``()``:
    none). ``prices``: device id -> USD per device-hour (or a price file) for ``goal="cost"``.
    The other keywords are :func:`phases.analyze`'s.
    """
    _check_goal(goal)
    for name, v in (("max_ttft", max_ttft_s), ("max_tpot", max_tpot_s)):
        if v is not None and not 0 < v < math.inf:
            raise InputError(f"{name} must be a positive number of seconds, got {v!r}")
    for name, v in (("batch", batch), ("input_len", input_len), ("output_len", output_len)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InputError(f"{name} must be a single integer >= 1, got {v!r}")
    if goal == "tpot" and output_len < 2:
        raise InputError("output_len: goal tpot needs output_len >= 2 (TPOT excludes the first token)")
    if draft is not None:
        decoding.check_draft_k(draft_k)
        decoding.check_accept(accept)
        try:
            load_model(draft)
        except InputError as e:
            raise InputError(f"draft: {e}") from None
    if isinstance(prices, str):
        from .rank import load_prices
        prices = load_prices(prices)
    prof = load_profile(profile)
    m = load_model(model)
    hw = load_hardware(hardware)
    a0 = analyze(m, hw, batch, input_len, output_len, quant=quant, wbits=wbits, abits=abits,
                 kvbits=kvbits, flash=flash, tp=tp, pp=pp, ep=ep, dp=dp, layout=layout,
                 profile=prof, cuda_graphs=cuda_graphs)
    if goal == "cost" and prices and hw.id not in prices:
        raise InputError(f"prices: no price for the baseline device {hw.id}")
    ctx = _Ctx(m, int(input_len), int(output_len), goal, prof, max_ttft_s, max_tpot_s,
               draft_k, accept, draft_tp, prices)
    base = Setup(hw, a0.precision, a0.layout, a0.flash, int(batch), graphs=bool(cuda_graphs))
    b0 = _evaluate(ctx, base)
    key, sign, label = GOALS[goal]
    if goal == "cost" and prices:
        label = "tokens per USD"
    before = metric(b0, goal, prices)
    if devices is None:
        devices = list(hardware_ids())
    else:
        for d in devices:     # a typo is an error, not a silently skipped lever
            try:
                load_hardware(d)
            except InputError as e:
                raise InputError(f"devices: {e}") from None
    defs, skipped = _quant_defs(base)
    d2, s2 = _layout_defs(ctx, base)
    d3, s3 = _other_defs(ctx, base, b0, draft, devices)
    defs += d2 + d3
    skipped += s2 + s3

    def make(parts: list[_Def]) -> Lever:
        parts = sorted(parts, key=lambda d: _AXES.index(d.axis))
        s = base
        for d in parts:
            s = d.apply(s)
        if s.precision.abits < 16 and (s.precision, s.hardware.id) != (base.precision, hw.id):
            _, warns = compute_dtypes(s.precision, s.hardware)
            if warns:
                raise _Skip(warns[0])
        o = _evaluate(ctx, s)
        after = metric(o, goal, prices)
        if len(parts) == 1:
            d = parts[0]
            name, cat, cav = d.name, d.category, [d.caveat(b0, o)]
            if d.axis == "batch":
                name = f"{d.name} ({base.batch} -> {o.setup.batch})"
        else:
            name = " + ".join(f"{d.short} ({o.setup.batch})" if d.axis == "batch" else d.short
                              for d in parts)
            cat, cav = "combination", [d.note for d in parts]
        cav = "; ".join(x for x in cav + [_costs(goal, b0, o)] if x)
        return Lever(name, cat, before, after, _gain(before, after, sign), after - before,
                     o.regime, o.memory_bytes, o.capacity_bytes, cav, _rejection(ctx, o),
                     tuple(d.short for d in parts), o)

    singles: list[tuple[_Def, Lever]] = []
    for d in defs:
        try:
            singles.append((d, make([d])))
        except _Skip as e:
            skipped.append((d.name, str(e)))
        except InputError as e:
            skipped.append((d.name, str(e)))
    levers = [lv for _, lv in singles]
    notes = []
    if combos:
        # The best two levers of each of the best axes: the runner-up of an axis (INT8
        # SmoothQuant behind W4A16, say) can combine better than its winner does.
        best: dict[str, list[tuple[_Def, Lever]]] = {}
        for d, lv in sorted(singles, key=lambda x: -_sort_gain(x[1])):
            if lv.rejected or not lv.gain > COMBO_MIN_GAIN or d.axis == "device":
                continue
            if d.axis in best:
                # batch levers (larger batch, paged KV) set the same number: one suffices
                if len(best[d.axis]) < (1 if d.axis == "batch" else COMBO_PER_AXIS):
                    best[d.axis].append((d, lv))
            elif len(best) < COMBO_TOP:
                best[d.axis] = [(d, lv)]
        subs = [sub for r in range(2, len(best) + 1) for axes in itertools.combinations(best, r)
                if not any(pair <= set(axes) for pair in _INCOMPATIBLE)
                for sub in itertools.product(*(best[a] for a in axes))]
        for sub in subs:
            try:
                lv = make([d for d, _ in sub])
            except (_Skip, InputError) as e:
                skipped.append((" + ".join(d.short for d, _ in sub), str(e)))
                continue
            top = max(sub, key=lambda x: _sort_gain(x[1]))[1]
            if not lv.rejected and not _sort_gain(lv) > _sort_gain(top) * COMBO_MIN_GAIN:
                lv = replace(lv, rejected=f"not {100 * (COMBO_MIN_GAIN - 1):.0f} % better "
                             f"than {top.lever} alone")
            levers.append(lv)
    ok = sorted((lv for lv in levers if not lv.rejected), key=lambda lv: -_sort_gain(lv))
    bad = sorted((lv for lv in levers if lv.rejected), key=lambda lv: -_sort_gain(lv))
    diag = diagnose(a0, goal)
    base_rej = _rejection(ctx, b0)
    diag.update({
        "model": m.name, "hardware": hw.id, "layout": a0.layout.label,
        "devices": a0.layout.devices, "precision": a0.precision.label, "flash": a0.flash,
        "profile": prof.name, "batch": int(batch), "input_len": int(input_len),
        "output_len": int(output_len), "goal": goal, "metric": label,
        "higher_is_better": sign > 0, "value": before,
        "ttft_s": b0.ttft_s, "tpot_s": b0.tpot_s if math.isfinite(b0.tpot_s) else None,
        "e2e_s": b0.e2e_s, "throughput_tok_s": b0.throughput_tok_s,
        "memory_bytes": b0.memory_bytes, "capacity_bytes": b0.capacity_bytes,
        "fits": b0.fits, "max_batch": b0.max_batch,
        "constraints": {"max_ttft_s": max_ttft_s, "max_tpot_s": max_tpot_s},
        "baseline_violates": base_rej, "warnings": list(a0.warnings),
    })
    if base_rej:
        notes.append(f"the baseline itself is not acceptable: {base_rej}")
    return Advice(goal, label, sign > 0, b0, diag, tuple(ok + bad), tuple(skipped),
                  {"max_ttft_s": max_ttft_s, "max_tpot_s": max_tpot_s}, tuple(notes))


def _sort_gain(lv: Lever) -> float:
    return lv.gain if math.isfinite(lv.gain) else -math.inf


__all__ = ["advise", "diagnose", "Advice", "Lever", "Outcome", "Setup", "GOALS", "metric",
           "GRAPH_FACTOR"]
