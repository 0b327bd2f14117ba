"""Setups and their evaluation: one engine run per candidate configuration.

A :class:`Setup` is everything a lever can change (device, precision, layout, fused
attention, batch, CUDA graphs, draft model, offload). :func:`_evaluate` runs it through the
engine (``phases.analyze``, or ``decoding.speculative`` with a draft) into an
:class:`Outcome` of scalars with its goal-weighted regime shares. ``batch_mode`` ("max":
the batch, current .. memory limit, with the highest throughput within the TTFT/TPOT
limits; "paged": the same with the mean paged-KV occupancy) and ``offload`` (the smallest
host-memory fraction that fits) are resolved at evaluation, so a combination re-resolves
them for its own setup. :func:`metric` reads the goal's number off an outcome.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .. import decoding
from ..cost import Roofline
from ..graph import build_ops
from ..memory import kv_cache_bytes_per_seq, largest_batch, weight_bytes_total
from ..parallel import Layout
from ..phases import Analysis, analyze, step_cost
from ..specs.hardware import HardwareSpec
from ..specs.model import ModelSpec
from ..specs.precision import Precision
from ..specs.engine import Engine
from ..specs.profile import Profile, without_wave_quantization
from .diagnosis import GOALS, _phase_weights, _shares, _split, _top, _weighted


MAX_BATCH_CANDIDATES = 4096


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
    stream_k: bool = False        # GEMMs that lose nothing to a partial last wave

    def config(self) -> dict:
        p, lay = self.precision, self.layout
        return {"hardware": self.hardware.id, "precision": p.label, "wbits": p.wbits,
                "abits": p.abits, "kvbits": p.kvbits, "group_size": p.group_size,
                "scale_bits": p.scale_bits, "int8": p.int8, "tp": lay.tp, "pp": lay.pp,
                "ep": lay.ep, "dp": lay.dp,
                "microbatches": lay.microbatches, "offload_weights": lay.offload_weights,
                "offload_kv": lay.offload_kv, "flash": self.flash, "batch": self.batch,
                "cuda_graphs": self.graphs, "stream_k": self.stream_k,
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
    engine: Engine | None = None


def _profile(ctx: _Ctx, s: Setup) -> Profile:
    return without_wave_quantization(ctx.profile) if s.stream_k else ctx.profile


def _run(ctx: _Ctx, s: Setup, batch, layout: Layout | None = None) -> Analysis:
    return analyze(ctx.model, s.hardware, batch, ctx.input_len, ctx.output_len,
                   quant=s.precision, flash=s.flash, layout=layout or s.layout,
                   engine=ctx.engine, profile=_profile(ctx, s), cuda_graphs=s.graphs)


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
        top = int(largest_batch(cap, w, kv1 + act1))
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
                                  flash=s.flash, layout=s.layout, engine=ctx.engine,
                                  profile=_profile(ctx, s),
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
