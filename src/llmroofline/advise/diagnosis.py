"""Diagnosis: where the time of one workload goes, and the goals that weight it.

:func:`diagnose`, per phase (prefill: the whole prefill; decode: the mean step):

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
  ``cost.Roofline.roofs``);
- the goal weights the phases: ``ttft`` prefill only, ``tpot`` decode only, ``latency``,
  ``throughput`` and ``cost`` both phases by their share of the end-to-end time. The
  dominant regime is the largest weighted share; one sentence names it and why.

Also here: ``GOALS`` (each goal's metric, see the package docstring), the regime and class
names, and the phrasing helpers (percent, bytes, seconds) the other modules share.
"""

from __future__ import annotations

import math

import numpy as np

from ..cost import Roofline
from ..errors import InputError, suggest
from ..phases import Analysis, OpResult, prefill_fixed_s


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

_PROJ = {"qkv_proj", "o_proj", "q_a_proj", "q_b_proj", "q_proj", "kv_a_proj", "kv_b_proj",
         "q_absorb", "o_absorb", "lm_head"}


def _check_goal(goal: str) -> None:
    if goal not in GOALS:
        raise InputError(f"goal must be one of {', '.join(GOALS)}, got {goal!r}"
                         + suggest(str(goal), GOALS))


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
    return float(Roofline.of(a.hardware, a.precision, a.layout, a.efficiency).roofs()["ridge"])


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


def _fmt_s(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.3g} s" if x >= 1 else f"{x * 1e3:.3g} ms"


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
