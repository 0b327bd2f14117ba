"""Optimization advisor: name the bottleneck, then rank the levers by predicted gain.

:func:`advise` runs the engine on the user's workload (the *baseline*), diagnoses where the
time goes, and re-runs the engine once per lever with that lever applied. Every gain it
reports compares two engine runs (the baseline and the lever's); none is a rule of thumb.

The modules, as the data flows: ``diagnosis.py`` (:func:`diagnose`: time per regime and
operator class, intensity against the ridge point, the bottleneck sentence; ``GOALS``);
``setups.py`` (:class:`Setup`, one engine evaluation of it as an :class:`Outcome`, batch
and offload resolution, :func:`metric`); ``levers.py`` (the single levers per axis:
quantization, layout, batch, kernels, speculative decoding, offload, devices);
``results.py`` (:class:`Lever`, :class:`Advice`, gain, costs and rejection of an outcome);
this module (:func:`advise`: the baseline, the single levers, their combinations).

Goals and their metric (``GOALS``): ``throughput`` generated tokens/s of the deployment;
``latency`` end-to-end seconds; ``ttft``; ``tpot``; ``cost`` tokens per USD with a price
file, else tokens/s per device (every device-hour assumed to cost the same).
``gain`` = after / before for higher-is-better metrics, before / after for times: a
speed-up factor, > 1 is better. ``delta`` = after - before in the metric's unit.

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
from dataclasses import replace

import numpy as np

from .. import decoding
from ..errors import InputError
from ..parallel import Layout
from ..phases import analyze
from ..specs.catalog import load_model
from ..specs.hardware import hardware_ids, load_hardware
from ..specs.precision import compute_dtypes
from ..specs.engine import compose_engine
from .diagnosis import CLASS_LABELS, CLASSES, GOALS, REGIMES, _check_goal, diagnose
from .levers import _Def, _layout_defs, _other_defs, _quant_defs
from .results import Advice, Lever, _costs, _gain, _rejection, _sort_gain
from .setups import MAX_BATCH_CANDIDATES, Outcome, Setup, _Ctx, _evaluate, _Skip, metric


COMBO_TOP = 4               # axes whose levers are combined
COMBO_PER_AXIS = 2          # levers per axis taken into combinations
COMBO_MIN_GAIN = 1.01       # a lever (or a combination over its best part) must beat this

# Axes in the order a combination applies them (the batch is resolved last).
_AXES = ("weights", "kv", "attention", "kernels", "gemm", "device", "layout", "decoding",
         "offload", "batch")
_INCOMPATIBLE = {frozenset(("decoding", "batch")), frozenset(("decoding", "offload")),
                 frozenset(("offload", "batch"))}


def advise(model, hardware, batch: int = 1, input_len: int = 128, output_len: int = 128, *,
           goal: str = "throughput", max_ttft_s: float | None = None,
           max_tpot_s: float | None = None, draft: str | None = None, draft_k: int = 4,
           accept: float = 0.7, draft_tp: int | None = None, devices=None,
           prices: dict | str | None = None, combos: bool = True, quant=None,
           wbits: int | None = None, abits: int | None = None, kvbits: int | None = None,
           flash: bool = True, tp: int = 1, pp: int = 1, ep: int = 1, dp: int = 1,
           layout: Layout | None = None, engine=None, profile=None,
           cuda_graphs: bool = False) -> Advice:
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
        from ..rank import load_prices
        prices = load_prices(prices)
    eng = compose_engine(engine, profile)
    prof = eng.profile
    m = load_model(model)
    hw = load_hardware(hardware)
    a0 = analyze(m, hw, batch, input_len, output_len, quant=quant, wbits=wbits, abits=abits,
                 kvbits=kvbits, flash=flash, tp=tp, pp=pp, ep=ep, dp=dp, layout=layout,
                 engine=eng, cuda_graphs=cuda_graphs)
    if goal == "cost" and prices and hw.id not in prices:
        raise InputError(f"prices: no price for the baseline device {hw.id}")
    ctx = _Ctx(m, int(input_len), int(output_len), goal, prof, max_ttft_s, max_tpot_s,
               draft_k, accept, draft_tp, prices, eng)
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
        "engine": eng.name, "profile": prof.name, "batch": int(batch), "input_len": int(input_len),
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


# The constants are listed too: they were module attributes before the split into a
# package, and listing the re-exported ones keeps pyflakes from calling them unused.
__all__ = ["advise", "diagnose", "Advice", "Lever", "Outcome", "Setup", "GOALS", "metric",
           "REGIMES", "CLASSES", "CLASS_LABELS", "COMBO_TOP", "COMBO_PER_AXIS",
           "COMBO_MIN_GAIN", "MAX_BATCH_CANDIDATES"]
