"""Lever definitions: each a transformation of the baseline setup, evaluated by the engine.

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
  the engine's ``cuda_graph_launch_factor`` (0.2) in decode steps; prefill stays eager; the step
  overhead is kept); **stream-K GEMMs**: the profile's ``wave_quantization`` set to 0, so
  no GEMM pays for the SMs a partial last wave of output tiles leaves idle (what tile
  scheduling that splits the last wave's work across all SMs recovers);
- speculative decoding with a given draft model, ``draft_k`` and acceptance rate
  (``decoding.speculative``);
- offloading (only when the baseline does not fit): the smallest weight fraction, in
  steps of 1 %, then KV fraction, in host memory that makes it fit;
- each other catalog device (or the given ``devices``), same layout and precision.

``_quant_defs``, ``_layout_defs`` and ``_other_defs`` return the applicable levers
(:class:`_Def`) and the skipped ones with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..cost import host_link_bytes_s
from ..errors import InputError
from ..parallel import Layout
from ..phases import analyze
from ..specs.hardware import load_hardware
from ..specs.precision import SCHEMES, Precision
from .diagnosis import _gbytes
from .setups import Outcome, Setup, _Ctx


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


def _max_batch(b: Outcome, o: Outcome) -> str:
    return f"max batch {b.max_batch} -> {o.max_batch}" if o.max_batch != b.max_batch else ""


def _quant_defs(base: Setup) -> tuple[list[_Def], list[tuple[str, str]]]:
    p, hw = base.precision, base.hardware
    defs, skipped = [], []

    def weights(name: str, short: str, scheme: str, note: str) -> _Def:
        kw = {k: v for k, v in SCHEMES[scheme].items() if k != "kvbits"}
        kw = {"int8": False, "group_size": 0, "scale_bits": 16, "native": (), "native_label": "", **kw}
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
    graph_factor = ctx.engine.cuda_graph_launch_factor if ctx.engine else 0.2
    if base.graphs:
        skipped.append(("CUDA graphs", "the baseline already replays decode steps from CUDA graphs"))
    elif eff.launch_overhead_s > 0:
        defs.append(_Def(f"CUDA graphs for decode (launch overhead x {graph_factor:g})",
                         "CUDA graphs", "kernels", "kernels", lambda s: replace(s, graphs=True),
                         f"assumes decode launch overhead {eff.launch_overhead_s * 1e6:.3g} -> "
                         f"{eff.launch_overhead_s * graph_factor * 1e6:.3g} us per kernel"))
    else:
        skipped.append(("CUDA graphs",
                        f"launch overhead is 0 in profile '{ctx.profile.name}'; use a "
                        "calibrated profile (--profile default) to evaluate it"))
    w = eff.wave_quantization
    if w > 0 and base.hardware.sm_count:
        defs.append(_Def("stream-K GEMMs (no partial-wave loss)", "stream-K", "kernels", "gemm",
                         lambda s: replace(s, stream_k=True),
                         f"assumes GEMM kernels that spread the last wave over all "
                         f"{base.hardware.sm_count} SMs (the profile pays {w:.0%} of its idle "
                         "share); libraries choose such kernels per shape"))
    else:
        skipped.append(("stream-K GEMMs", f"profile '{ctx.profile.name}' has no wave-"
                        "quantization loss on this device" if base.hardware.sm_count else
                        f"{base.hardware.id} has no SM count in its device data"))
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
        host = host_link_bytes_s(base.hardware, base.layout.host_bw_bytes_s) \
            if base.hardware.pcie_bytes_s_bidir or base.layout.host_bw_bytes_s else 0.0
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
