"""Calibration: fit efficiency profiles to measurements.

For the rows of one device family, the free :class:`Efficiency` parameters are chosen to
minimise a robust loss of the log errors ``log(predicted / measured)`` (scipy's
``least_squares`` with a soft-L1 loss, so a few odd rows do not dominate), within
physical bounds, plus a weak prior that keeps parameters the data cannot identify near
typical values. The fallback entry is fitted on all rows together and serves families
the data does not cover.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, replace

import numpy as np

from .errors import InputError
from .specs.hardware import load_hardware
from .specs.profile import COVERAGE_FIELDS, Efficiency, Profile
from .validate import DTYPE_BITS, Row, predict_rows, summarize


@dataclass(frozen=True)
class Param:
    name: str        # Efficiency field
    lo: float
    hi: float
    scale: float     # typical magnitude, so the optimizer sees O(1) numbers
    prior: float     # typical value the weak prior pulls towards


PARAMS = {p.name: p for p in (
    Param("bandwidth", 0.3, 1.0, 1.0, 0.85),
    Param("attention_bandwidth", 0.1, 1.0, 1.0, 0.7),
    Param("compute", 0.2, 1.0, 1.0, 0.75),
    Param("gemm_half_rows", 0.0, 2048.0, 100.0, 32.0),
    Param("attention_compute", 0.1, 1.0, 1.0, 0.6),
    Param("launch_overhead_s", 0.0, 50e-6, 1e-6, 3e-6),
    Param("step_overhead_s", 0.0, 20e-3, 1e-3, 1e-3),
    Param("prefill_overhead_s", 0.0, 50e-3, 1e-3, 2e-3),
    Param("communication", 0.1, 1.0, 1.0, 0.75),
    Param("gemm_overlap", 0.0, 1.0, 1.0, 0.7),
    Param("gqa_kv_reuse", 0.0, 1.0, 1.0, 0.8),
    Param("wave_quantization", 0.0, 1.0, 1.0, 0.5),
)}
# gemm_half_rows is left out of the default fit: the shipped data has no small-batch run
# on a low-compute device, so a fitted ramp extrapolates badly to decode GEMMs (it made
# batch-1 decode compute-bound on an H20). The fixed 16-row MMA tile covers small M.
DEFAULT_FIT = tuple(p for p in PARAMS if p != "gemm_half_rows")
GEMM_TILE_ROWS = 16.0
PRIOR_WEIGHT = 0.05
def shipped_coverage(engine: str = "default") -> dict[str, dict]:
    """Kernel coverage per device family of a shipped engine (its ``[coverage.*]`` tables),
    held fixed when its efficiency entries are refitted. The default engine's Hopper entry
    (groups up to 16, full-attention layers only) is the TensorRT-LLM v0.8 FP8 pattern of
    the shipped rows (docs/accuracy.md, "Kernel coverage")."""
    from .specs.engine import load_engine
    return {k: dict(v) for k, v in load_engine(engine).coverage.items()}



def _family(hw_id: str) -> str:
    try:
        return load_hardware(hw_id).family or "unknown"
    except InputError:
        return "unknown"


def fit_efficiency(rows: list[Row], params: tuple[str, ...] = DEFAULT_FIT,
                   start: Efficiency | None = None, prior_weight: float = PRIOR_WEIGHT,
                   max_nfev: int = 200, gqa_max_group: float = math.inf,
                   tol: float = 1e-10) -> tuple[Efficiency, dict]:
    """Fit one :class:`Efficiency` to ``rows``; returns it and fit statistics.
    ``gqa_max_group`` is held fixed (an engine's kernel coverage, not a fitted number).
    ``max_nfev`` (iterations; each also estimates the Jacobian, one evaluation per
    parameter) and ``tol`` (scipy's ftol/xtol/gtol) bound the work of the fit."""
    from scipy.optimize import least_squares
    for p in params:
        if p not in PARAMS:
            raise InputError(f"calibrate: unknown parameter '{p}' (allowed: {', '.join(PARAMS)})")
    specs = [PARAMS[p] for p in params]
    # Parameters not fitted keep their ideal defaults (attention_* follow bandwidth/compute).
    start = start or Efficiency(gemm_tile_rows=GEMM_TILE_ROWS, gqa_max_group=gqa_max_group,
                                **{s.name: s.prior for s in specs})

    def eff_of(x) -> Efficiency:
        vals = {s.name: float(np.clip(v * s.scale, s.lo, s.hi)) for s, v in zip(specs, x)}
        # A parameter the optimizer leaves within 1e-6 of a bound is at the bound.
        vals = {k: (s.lo if abs(v - s.lo) < 1e-6 * s.scale else s.hi if abs(v - s.hi) < 1e-6 * s.scale
                    else v) for (k, v), s in zip(vals.items(), specs)}
        return replace(start, **vals)

    def residuals(x) -> np.ndarray:
        e = eff_of(x)
        prof = Profile("fit", fallback=e)
        preds = predict_rows(rows, prof).predictions
        r = [np.log(p.predicted / p.measured) for p in preds]
        prior = [prior_weight * (v - s.prior / s.scale) for s, v in zip(specs, x)]
        return np.asarray(r + prior)

    x0 = np.array([float(np.clip(getattr(start, s.name) if getattr(start, s.name) is not None
                                 else s.prior, s.lo, s.hi)) / s.scale for s in specs])
    lo = np.array([s.lo / s.scale for s in specs])
    hi = np.array([s.hi / s.scale for s in specs])
    if not predict_rows(rows, Profile("fit", fallback=eff_of(x0))).predictions:
        raise InputError("calibrate: no row could be predicted (unknown models/devices, or "
                         "nothing fits in memory); see `llmroofline validate`")
    res = least_squares(residuals, np.clip(x0, lo, hi), bounds=(lo, hi), loss="soft_l1",
                        f_scale=0.1, x_scale=1.0, max_nfev=max_nfev, diff_step=1e-4,
                        ftol=tol, xtol=tol, gtol=tol)
    eff = eff_of(res.x)
    preds = predict_rows(rows, Profile("fit", fallback=eff)).predictions
    return eff, {"rows": len(rows), "metrics": len(preds), "summary": summarize(preds),
                 "converged": bool(res.success), "evaluations": int(res.nfev)}


def calibrate(rows: list[Row], params: tuple[str, ...] = DEFAULT_FIT, name: str = "calibrated",
              source: str = "", per_family: bool = True,
              prior_weight: float = PRIOR_WEIGHT, fit_serving: bool = False,
              serving_max_nfev: int = 30,
              gqa_max_group: float = math.inf,
              coverage: dict[str, dict] | None = None, max_nfev: int = 200,
              tol: float = 1e-10, entries=None) -> tuple[Profile, dict]:
    """Fit a profile: an :class:`Efficiency` per (family, activation bits), per activation
    bits, per family, and a fallback on all rows (see :class:`Profile` for the lookup).

    ``max_throughput`` rows (whole serving simulations, ~0.1-1 s each per evaluation) are
    validated, not fitted, unless ``fit_serving``: then they join the fits of the family
    entries of the devices they were measured on, which start from the static-rows fit;
    the fallback (devices without data) stays a fit of the static rows.

    ``gqa_max_group`` (default: no limit) fits every entry as for an engine whose
    KV-sharing decode kernel serves groups up to that size only (see
    :class:`~llmroofline.specs.profile.Efficiency`). ``coverage`` maps a device family to
    kernel-coverage fields (``gqa_max_group``, ``gqa_covers_sliding_window``) held fixed in
    that family's entries, e.g. ``{"hopper": {"gqa_max_group": 8}}``. ``max_nfev`` and
    ``tol`` bound each entry's fit (:func:`fit_efficiency`; a cheaper fit for tests).
    ``entries``: fit only these family entries (keys such as ``hopper-a8``, ``a16``);
    ``None`` fits all. Each entry's fit depends on its rows and the fallback only, so the
    entries that are fitted come out exactly as in the full profile."""
    coverage = coverage or {}
    for fam, fields in coverage.items():
        bad = set(fields) - set(COVERAGE_FIELDS)
        if bad:
            raise InputError(f"calibrate: coverage of '{fam}' may set "
                             f"{' and '.join(COVERAGE_FIELDS)} only, got {', '.join(sorted(bad))}")
    serving = [r for r in rows if r.mode == "max_throughput"] if fit_serving else []
    rows = [r for r in rows if r.mode != "max_throughput"]
    if not rows:
        raise InputError("calibrate: the measurement file has no static or concurrent rows "
                         + ("(max_throughput rows only refine the entries a static fit gives; "
                            "the fallback needs static rows)" if fit_serving else
                            "(max_throughput rows are validated, not fitted)"))
    fallback, stats_all = fit_efficiency(rows, params, prior_weight=prior_weight,
                                         gqa_max_group=gqa_max_group, max_nfev=max_nfev,
                                         tol=tol)
    families: dict[str, Efficiency] = {}
    stats = {"all": stats_all}
    if per_family:
        groups: dict[str, list[Row]] = {}
        family_of: dict[str, str] = {}      # entry key -> its device family, if one
        for r in rows + serving:
            fam, w = _family(r.hardware), f"a{DTYPE_BITS[r.act_dtype]}"
            if fam != "unknown":
                groups.setdefault(f"{fam}-{w}", []).append(r)
                groups.setdefault(fam, []).append(r)
                family_of[f"{fam}-{w}"] = family_of[fam] = fam
            groups.setdefault(w, []).append(r)
        fitted: dict[tuple, Efficiency] = {}
        for key, rs in sorted(groups.items()):
            if entries is not None and key not in entries:
                continue
            # Kernel coverage belongs to a family's entries; a width entry (``a8``) prices
            # devices of other families, whose kernels default to full coverage.
            cov = coverage.get(family_of.get(key, ""), {})
            ids = (tuple(sorted((r.mode, r.id) for r in rs)), tuple(sorted(cov.items())))
            if len(rs) == len(rows) and not serving and not cov:    # the fallback's rows
                families[key] = fallback
                continue
            if ids not in fitted:           # e.g. "hopper" and "hopper-a8" with the same rows
                start, nfev = replace(fallback, **cov), max_nfev
                static = [r for r in rs if r.mode != "max_throughput"]
                if len(static) < len(rs):
                    # serving rows: start from the static fit of the same entry, and stop
                    # after serving_max_nfev evaluations (each simulates every serving row)
                    nfev = min(serving_max_nfev, max_nfev)
                    if static:
                        start, _ = fit_efficiency(static, params, start=start,
                                                  prior_weight=prior_weight,
                                                  max_nfev=max_nfev, tol=tol)
                fitted[ids], stats[key] = fit_efficiency(rs, params, start=start,
                                                         prior_weight=prior_weight,
                                                         max_nfev=nfev, tol=tol)
            families[key] = fitted[ids]
    prof = Profile(name, families, fallback, provenance={
        "fitted": _dt.date.today().isoformat(),
        "data": source or "user measurements",
        "rows": len(rows) + len(serving),
        "parameters": list(params),
        "method": "scipy least_squares, soft-L1 loss on log(predicted/measured), bounded, "
                  f"weak prior (weight {prior_weight}) towards typical values"
                  + ("; max_throughput rows predicted by the offline serving simulation "
                     "in the family entries of their devices" if serving else ""),
    })
    return prof, stats


def _entries_resolved(train: list[Row], held_out: list[Row]) -> set[str]:
    """The entry keys a profile fitted on ``train`` (as :func:`calibrate` groups them)
    looks the ``held_out`` rows up in; ``"fallback"`` is not a key."""
    present: set[str] = set()
    for r in train:
        if r.mode == "max_throughput":
            continue
        fam, w = _family(r.hardware), f"a{DTYPE_BITS[r.act_dtype]}"
        present |= {w} | ({f"{fam}-{w}", fam} if fam != "unknown" else set())
    shape = Profile("k", families={k: Efficiency() for k in present})
    return {shape.entry_key(_family(r.hardware), DTYPE_BITS[r.act_dtype]) for r in held_out} - {"fallback"}


def calibrate_fn(params: tuple[str, ...] = DEFAULT_FIT, gqa_max_group: float = math.inf,
                 coverage: dict[str, dict] | None = None, max_nfev: int = 200,
                 tol: float = 1e-10, held_out_entries_only: bool = False):
    """A ``rows -> Profile`` function for :func:`validate.cross_validate`.

    ``held_out_entries_only``: fit only the entries the held-out rows resolve to
    (:meth:`Profile.entry_key` over the entries the training rows give: the first of
    family-width, width, family that exists) and the fallback they start from. The
    held-out predictions are exactly those of the full profile (the other entries price
    other devices, or are shadowed by an earlier key), at a fraction of the fits."""
    def fn(rows, held_out=None):
        keys = None
        if held_out_entries_only and held_out is not None:
            keys = _entries_resolved(rows, held_out)
        return calibrate(rows, params, gqa_max_group=gqa_max_group, coverage=coverage,
                         max_nfev=max_nfev, tol=tol, entries=keys)[0]
    fn.uses_held_out_rows = held_out_entries_only
    return fn
