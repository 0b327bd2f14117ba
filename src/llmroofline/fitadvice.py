"""What would fit when a configuration does not fit in device memory.

``analyze`` still prices a configuration whose weights, KV cache and activations exceed
the device (the latencies are what it would take with enough memory), so every front end
must say that it does not fit. :func:`fit_report` gives that statement and the nearest
configurations that do fit, each checked by the engine's own memory accounting:

- more tensor-parallel devices: the smallest ``tp`` in 2, 4, 8, 16, 32, 64 that fits;
- quantization: 8-bit weights (FP8 where the device has FP8 tensor cores, else INT8
  weight-only), 4-bit weights, and an 8-bit KV cache, each alone at the present layout;
- offloading: the share of the weights (and of the KV cache) to keep in host memory;
- a smaller batch: the largest that fits.

Memory does not depend on the efficiency profile, so the checks run on the ideal profile.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from .errors import InputError
from .specs.precision import Precision

TP_CHOICES = (2, 4, 8, 16, 32, 64)


def _fits(a, idx, **kw) -> bool:
    from .phases import analyze
    args = dict(quant=a.precision, layout=a.layout, profile="ideal", flash=a.flash,
                beams=a.beams, samples=a.samples, prefill_chunk=a.prefill_chunk)
    args.update(kw)
    try:
        b = analyze(a.model, a.hardware, float(a.batch[idx]), float(a.input_len[idx]),
                    float(a.output_len[idx]), **args)
    except InputError:
        return False
    return bool(np.all(b.memory.fits))


def fit_report(a, idx) -> dict:
    """``{"fits": bool, "message": str | None, "would_fit": [str, ...]}`` for point ``idx``."""
    mem = a.memory
    total = float(mem.total_bytes[idx])
    cap = float(mem.capacity_bytes)
    if total <= cap:
        return {"fits": True, "message": None, "would_fit": []}
    lay, prec = a.layout, a.precision
    options: list[str] = []
    for t in TP_CHOICES:
        if t > lay.tp and _fits(a, idx, layout=replace(lay, tp=t, ep=min(lay.ep, t))):
            options.append(f"--tp {t}")
            break
    has_fp8 = "fp8" in a.hardware.peak_flops
    quants = []
    if prec.wbits > 8:
        quants.append(("--quant fp8", Precision(8, 8, 8)) if has_fp8 else
                      ("--quant w8a16", replace(prec, wbits=8)))
    if prec.wbits > 4:
        quants.append(("--quant w4a16", replace(prec, wbits=4, abits=max(prec.abits, 16),
                                                int8=False)))
    if prec.kvbits > 8:
        quants.append(("--kvbits 8", replace(prec, kvbits=8)))
    for label, p in quants:
        try:
            if _fits(a, idx, quant=p):
                options.append(label)
        except InputError:
            continue
    weights = float(mem.weights_bytes)
    kv = float(mem.kv_cache_bytes[idx])
    need = total - cap
    if weights > 0 and need < weights * (1 - lay.offload_weights) + 1:
        f = min(1.0, math.ceil(100 * (lay.offload_weights + need / weights * 1.0001)) / 100)
        for frac in (f, min(1.0, f + 0.01), min(1.0, f + 0.05)):
            if _fits(a, idx, layout=replace(lay, offload_weights=frac)):
                options.append(f"--offload-weights {frac:g}")
                break
    mb = int(np.asarray(mem.max_batch)[idx]) if np.ndim(mem.max_batch) else int(mem.max_batch)
    if 1 <= mb < float(a.batch[idx]):
        options.append(f"--batch {mb}")
    parts = []
    for name, v in (("weights", weights), ("KV cache", kv),
                    ("activations", float(mem.activation_bytes[idx]))):
        parts.append(f"{name} {v / 1e9:,.1f}")
    msg = (f"does not fit: {total / 1e9:,.1f} GB needed ({', '.join(parts)}) against "
           f"{cap / 1e9:,.1f} GB on {a.hardware.id}; the times assume it did")
    if options:
        msg += "; would fit: " + ", ".join(options)
    else:
        msg += "; no single change of tp, quantization, offloading or batch makes it fit"
    return {"fits": False, "message": msg, "would_fit": options}


__all__ = ["fit_report"]
