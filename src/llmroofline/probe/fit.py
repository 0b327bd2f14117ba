"""Turn probe measurements into the engine's efficiency parameters (numpy/scipy only).

The fits use the engine's own cost formulas (``cost.py``), so a device file written by
``probe`` reproduces the measured kernels when the engine prices the same shapes:

- GEMM of M token rows, ``F`` FLOPs and ``Q`` bytes (weights + activations):
  ``t = max(F / (peak x compute x M / (M + gemm_half_rows)), Q / (mem_bw x bandwidth))``
  (with no tiles, wave quantization or overlap set). The time is computed by ``cost.py``
  itself (:func:`engine_gemm_terms`), never re-derived here.
  :func:`fit_gemm` takes ``bandwidth`` from the GEMV-like points and fits ``compute`` and
  ``gemm_half_rows`` to the whole M-curve and the large square GEMMs.
- Framework overhead: a forward step of a tiny model (all work negligible) with ``n``
  layers takes ``a + b x n``. The engine charges ``step_overhead + launches(n) x
  launch_overhead``, where ``launches(n) = fixed + per_layer x n`` is the number of
  operator rows it counts (``sum(op.count)`` of ``build_ops``). :func:`fit_overhead`
  matches the two lines: ``launch_overhead = b / per_layer`` and ``step_overhead = a -
  fixed x launch_overhead``; ``prefill_overhead`` is the mean extra time of a tiny prefill
  over the same formula.
"""

from __future__ import annotations

import math

import numpy as np

# Upper bounds of the Efficiency fields (specs/profile.py validates them).
_MAX_LAUNCH_S, _MAX_STEP_S, _MAX_PREFILL_S = 1e-2, 1.0, 10.0


def engine_gemm_terms(rows, cols, flops, bytes_, peak_flops_s: float, mem_bytes_s: float,
                      eff, sm_count: int | None = None, dtype: str = "bf16"):
    """(compute_s, memory_s, kernel_s) of GEMM rows exactly as the engine prices them.

    Builds one ``graph.Op`` (kind ``matmul``, M = ``rows``, N = ``cols``, F = ``flops``,
    Q = ``bytes_`` all counted as weight bytes) and prices it with ``cost.Roofline.terms``
    and ``cost.kernel_s`` on a device of ``peak_flops_s`` / ``mem_bytes_s`` with efficiency
    ``eff`` (an ``Efficiency`` or a dict of its fields): tiles, half rows, wave quantization
    (needs ``sm_count``) and ``gemm_overlap`` included. Vectorized over the arrays.
    """
    from ..cost import Roofline, kernel_s
    from ..graph import Op
    from ..parallel import Layout
    from ..specs.hardware import HardwareSpec
    from ..specs.profile import Efficiency
    e = eff if isinstance(eff, Efficiency) else Efficiency(**eff)
    hw = HardwareSpec(id="probe-fit", name="probe-fit", memory_bytes=1.0,
                      mem_bw_bytes_s=float(mem_bytes_s), peak_flops={dtype: float(peak_flops_s)},
                      sm_count=sm_count, efficiency=e)
    roof = Roofline(hw=hw, layout=Layout(), eff=e, peaks={"gemm": float(peak_flops_s)},
                    dtypes={"gemm": dtype}, host_bytes_s=math.inf)
    f = np.asarray(flops, dtype=float)
    op = Op("gemm", "matmul", "gemm", 1, f, np.asarray(bytes_, dtype=float) + 0 * f,
            np.zeros_like(f), np.zeros_like(f), rows=np.asarray(rows, dtype=float),
            cols=np.asarray(cols, dtype=float))
    comp, mem, _, _ = roof.terms(op)
    return comp, mem, kernel_s(comp, mem, roof.overlap(op))


def gemm_model_s(rows, flops, bytes_, peak_flops_s, mem_bytes_s, compute, half_rows, bandwidth,
                 cols=np.inf):
    """Engine time of a GEMM (module docstring), vectorized: :func:`engine_gemm_terms`."""
    return engine_gemm_terms(rows, cols, flops, bytes_, peak_flops_s, mem_bytes_s,
                             {"compute": float(compute), "gemm_half_rows": float(half_rows),
                              "bandwidth": float(bandwidth)})[2]


def fit_gemm(rows, flops, bytes_, time_s, peak_flops_s: float, mem_bytes_s: float,
             memory_bound_below: float = 0.25) -> dict:
    """Fit ``bandwidth``, then ``compute`` and ``gemm_half_rows`` (log-time least squares
    by :func:`grid_min`).

    1. ``bandwidth``: the median achieved ``bytes / time / mem_bw`` of the points that
       are surely memory-bound: arithmetic intensity ``F / Q`` below ``memory_bound_below``
       x the ridge point ``peak / mem_bw`` (the GEMV-like decode shapes; at least the
       smallest M). Capped at 1.
    2. ``compute`` in [0.01, 1] and ``gemm_half_rows`` >= 0 minimizing the squared log error
       over all points, *subject to* those points staying memory-bound in the engine
       (``compute_s <= memory_s``). Without the constraint the hyperbola ``M / (M + m)``
       can also mimic the flat small-M part of the curve with a large ``m``; the fit would be
       as close but the engine would then label a batch-1 decode "compute-bound".
    """
    rows, flops, bytes_, t = (np.asarray(v, dtype=float) for v in (rows, flops, bytes_, time_s))
    logt = np.log(t)
    ridge = peak_flops_s / mem_bytes_s
    mem_pts = flops / bytes_ < memory_bound_below * ridge
    if not mem_pts.any():
        mem_pts = rows == rows.min()
    bw = float(np.clip(np.median(bytes_[mem_pts] / t[mem_pts]) / mem_bytes_s, 0.01, 1.0))
    fm, bm, mm = flops[mem_pts], bytes_[mem_pts], rows[mem_pts]

    def half_rows(c, frac):
        # compute_s <= memory_s at every memory-bound point <=> m <= M (Q P c / (F BW b) - 1)
        hmax = float(np.min(mm * (bm * peak_flops_s * c / (fm * mem_bytes_s * bw) - 1)))
        return max(hmax, 0.0) * frac

    def resid(p):
        c, frac = p
        return np.log(gemm_model_s(rows, flops, bytes_, peak_flops_s, mem_bytes_s, c,
                                   half_rows(c, frac), bw)) - logt

    c, frac = grid_min(lambda p: float(np.sum(resid(p) ** 2)), [(0.01, 1.0), (0.0, 1.0)])
    err = resid((c, frac))
    return {"compute": c, "gemm_half_rows": half_rows(c, frac), "bandwidth": bw,
            "memory_bound_points": int(mem_pts.sum()),
            "rms_log_error": float(np.sqrt(np.mean(err ** 2))),
            "max_abs_error": float(np.max(np.abs(np.expm1(err))))}


def grid_min(cost, bounds, points: int = 11, levels: int = 8) -> tuple[float, ...]:
    """Minimize ``cost(params)`` over a box by a refined grid: ``points`` per axis, then
    ``levels - 1`` times a grid of the same size over +-2 cells around the best point
    (resolution ``(4 / (points - 1))^levels`` of each range: ~7e-4 with the defaults).
    Deterministic, no scipy import (it costs 1-2.5 s on a loaded 2-core VM, a quarter of a
    ``--quick`` probe)."""
    lo = np.array([b[0] for b in bounds], dtype=float)
    hi = np.array([b[1] for b in bounds], dtype=float)
    best, best_cost = None, math.inf
    for _ in range(levels):
        axes = [np.linspace(a, b, points) for a, b in zip(lo, hi)]
        for p in np.array(np.meshgrid(*axes, indexing="ij")).reshape(len(bounds), -1).T:
            c = cost(tuple(p))
            if c < best_cost:
                best, best_cost = p, c
        step = (hi - lo) / (points - 1)
        lo = np.maximum(best - 2 * step, [b[0] for b in bounds])
        hi = np.minimum(best + 2 * step, [b[1] for b in bounds])
    return tuple(float(v) for v in best)


def fit_overhead(layers, decode_s, prefill_s, per_layer_launches: float,
                 fixed_launches: float) -> dict:
    """Launch, step and prefill overheads from tiny-model step times (module docstring)."""
    n = np.asarray(layers, dtype=float)
    d = np.asarray(decode_s, dtype=float)
    p = np.asarray(prefill_s, dtype=float)
    slope, icpt = np.polyfit(n, d, 1) if len(set(n.tolist())) > 1 else (0.0, float(np.mean(d)))
    slope = max(float(slope), 0.0)
    launch = min(slope / per_layer_launches, _MAX_LAUNCH_S)
    step = float(np.clip(icpt - fixed_launches * launch, 0.0, _MAX_STEP_S))
    engine = step + (fixed_launches + per_layer_launches * n) * launch
    prefill = float(np.clip(np.mean(p - engine), 0.0, _MAX_PREFILL_S))
    return {"launch_overhead_s": launch, "step_overhead_s": step, "prefill_overhead_s": prefill,
            "per_layer_s": slope, "decode_intercept_s": float(icpt),
            "prefill_per_layer_s": float(np.polyfit(n, p, 1)[0]) if len(set(n.tolist())) > 1 else 0.0}
