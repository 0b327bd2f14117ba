"""Fitting an engine's costs to closed-loop serving measurements.

Named, bounded parameters per engine (and device family: every shipped row is an H200).
Two fixed costs sit outside the kernels:

- ``request_overhead_s`` in [0, 0.5] s: added to each request's time to first token
  (tokenization, scheduling, the first detokenize, the HTTP round trip of the benchmark);
- ``iteration_overhead_s`` in [0, 5] ms: CPU time of each scheduler iteration (batch
  assembly, sampling, the host synchronisation), paid by every iteration.

Three describe how the engine's kernels differ from the profile it takes them from
(``efficiency_from``; ``specs.engine.Kernels`` and the CUDA-graph factor):

- ``cuda_graph_launch_factor`` in [0.05, 1]: the share of the profile's per-kernel launch
  cost a decode step replayed from a CUDA graph keeps (the engines capture decode batches;
  their fused kernels launch fewer kernels than the profile's operator list counts);
- ``compute_factor`` in [0.5, 2]: GEMM and attention compute efficiency relative to the
  profile's (prefill-bound time to first token);
- ``moe_routing_overhead_s`` in [0, 1] ms: fixed time per MoE layer and iteration of the
  routing stage (top-k, permute, combine).

:func:`fit` fits any subset (``free``; the default: the two fixed costs, the only ones a
handful of a user's own rows can carry), holding the others at the baselines' centre.

Method. Each row is simulated as its benchmark ran it with the fixed costs at zero and the
kernel parameters at a centre (:func:`baselines`), and, with ``kernels=True``, once more per
kernel parameter moved by a step, which gives the row's sensitivities. A row's TTFT and
TPOT then move with the parameters to first order:

    TPOT = TPOT0 + d + sum_j s_j (p_j - c_j)
    TTFT = TTFT0 + r + k d + sum_j t_j (p_j - c_j)

with ``k`` = TTFT0 / TPOT0 (>= 1) the iterations a request spends before its first token,
``c_j`` the centre and ``s_j``/``t_j`` the simulated slopes (``compute_factor`` enters as
its inverse, the time scale of compute-bound kernels). :func:`verify` simulates the rows
again with the fitted values, the closed loop's feedback included. :func:`fit` minimises a
soft-L1 loss of the relative errors (predicted / measured - 1) of both metrics over the
rows, the errors the targets are stated in; :func:`cross_validate` refits leaving one group
of rows (a model, by default) out and predicts those rows with the fit that never saw them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import InputError
from .measured import MeasuredRun, run_config, simulate_run, throughput_tok_s

PARAMS = {"request_overhead_s": (0.0, 0.5), "iteration_overhead_s": (0.0, 5e-3),
          "cuda_graph_launch_factor": (0.05, 1.0), "compute_factor": (0.5, 2.0),
          "moe_routing_overhead_s": (0.0, 1e-3), "first_wave_share": (0.0, 1.0)}
FIXED_COSTS = ("request_overhead_s", "iteration_overhead_s")
KERNEL_PARAMS = ("cuda_graph_launch_factor", "compute_factor", "moe_routing_overhead_s")
# parameters priced by simulated slopes: the kernels' and the harness's first wave
SLOPE_PARAMS = (*KERNEL_PARAMS, "first_wave_share")
# centre of the slope parameters and the step each slope is simulated over
CENTRE = {"cuda_graph_launch_factor": 0.5, "compute_factor": 1.0, "moe_routing_overhead_s": 0.0,
          "first_wave_share": 0.0}
_STEP = {"cuda_graph_launch_factor": -0.35, "compute_factor": -0.2,
         "moe_routing_overhead_s": 50e-6, "first_wave_share": 1.0}
# optimiser scale of each parameter (about its expected size)
_SCALE = {"request_overhead_s": 0.05, "iteration_overhead_s": 1e-3,
          "cuda_graph_launch_factor": 0.5, "compute_factor": 1.0, "moe_routing_overhead_s": 5e-5,
          "first_wave_share": 0.1}


def _coord(name: str, v: float) -> float:
    """The coordinate a parameter is linear in: compute enters as time scale 1 / factor."""
    return 1.0 / v if name == "compute_factor" else v


@dataclass(frozen=True)
class Baseline:
    """A row simulated with the fixed costs at zero and the kernel parameters at ``centre``
    (the engine's own values when no sensitivities were simulated); ``slopes``: per kernel
    parameter, (dTTFT, dTPOT) in ms per unit of its coordinate (:func:`_coord`)."""

    run: MeasuredRun
    ttft0_ms: float
    tpot0_ms: float
    centre: dict = field(default_factory=dict)
    slopes: dict = field(default_factory=dict)

    @property
    def k(self) -> float:
        """Iterations before the first token (TTFT0 / TPOT0, at least 1)."""
        return max(1.0, self.ttft0_ms / self.tpot0_ms) if self.tpot0_ms > 0 else 1.0

    def predict(self, request_overhead_s: float = 0.0, iteration_overhead_s: float = 0.0,
                **kernel) -> tuple[float, float]:
        """(TTFT ms, TPOT ms) at these values (first order, module docstring); kernel
        parameters not given stay at the centre."""
        d = iteration_overhead_s * 1e3
        ttft = self.ttft0_ms + request_overhead_s * 1e3 + self.k * d
        tpot = self.tpot0_ms + d
        for name, v in kernel.items():
            if name not in self.slopes:
                continue
            dx = _coord(name, v) - _coord(name, self.centre[name])
            ttft += self.slopes[name][0] * dx
            tpot += self.slopes[name][1] * dx
        return ttft, tpot


def engine_of(run: MeasuredRun, kernel: dict | None = None):
    """The run's engine, with ``kernel`` parameters (CUDA graphs on) when given."""
    from ..specs.engine import Kernels, load_engine
    eng = load_engine(run.preset)
    if not kernel:
        return eng
    k = {**CENTRE, **{f: v for f, v in kernel.items() if f in KERNEL_PARAMS}}
    return eng.with_kernels(Kernels(compute_factor=k["compute_factor"],
                                    moe_routing_overhead_s=k["moe_routing_overhead_s"]),
                            cuda_graph_launch_factor=k["cuda_graph_launch_factor"],
                            cuda_graphs=True)


def _zero_costs(run: MeasuredRun, config_of=None):
    return replace((config_of or run_config)(run), request_fixed_s=0.0, step_cpu_s=0.0)


def baselines(runs: list[MeasuredRun], progress=None, skipped: list | None = None,
              config_of=None, kernels: bool = False, **sim) -> list[Baseline]:
    """Simulate every run with its engine's fixed costs at zero (``sim``: simulate_run's
    keywords, e.g. ``rounds``; ``config_of(run)``: its SchedulerConfig, default
    :func:`run_config`). ``kernels``: at the kernel parameters' :data:`CENTRE`, and once
    more per kernel parameter moved by a step (the slopes; four simulations per row).
    A run the engine refuses (a layout the model cannot take, e.g. tp 64 over 32 heads
    without attention data-parallelism) is left out and, when ``skipped`` is a list,
    appended to it with the reason."""
    out = []
    for i, r in enumerate(runs):
        cfg = _zero_costs(r, config_of)
        try:
            if not kernels:
                p = simulate_run(r, config=cfg, **sim)
                out.append(Baseline(r, p["ttft_ms"], p["tpot_ms"]))
            else:
                p = simulate_run(r, config=cfg, engine=engine_of(r, CENTRE), first_wave=0.0,
                                 **sim)
                slopes = {}
                for name, step in _STEP.items():
                    moved = {**CENTRE, name: CENTRE[name] + step}
                    q = simulate_run(r, config=cfg, engine=engine_of(r, moved),
                                     first_wave=moved["first_wave_share"], **sim)
                    dx = _coord(name, moved[name]) - _coord(name, CENTRE[name])
                    slopes[name] = ((q["ttft_ms"] - p["ttft_ms"]) / dx,
                                    (q["tpot_ms"] - p["tpot_ms"]) / dx)
                out.append(Baseline(r, p["ttft_ms"], p["tpot_ms"], dict(CENTRE), slopes))
        except InputError as e:
            if skipped is not None:
                skipped.append((r, str(e)))
            continue
        if progress:
            progress(i + 1, len(runs))
    return out


def fit(bs: list[Baseline], free: tuple[str, ...] = FIXED_COSTS) -> dict[str, float]:
    """The ``free`` parameters (seconds; factors) that best explain the rows' TTFT and TPOT
    (soft-L1 on the relative errors, bounded by :data:`PARAMS`); kernel parameters not
    free are returned at the centre when the baselines have slopes."""
    from scipy.optimize import least_squares
    if not bs:
        raise InputError("fit: no rows to fit")
    unknown = [f for f in free if f not in PARAMS]
    if unknown:
        raise InputError(f"fit: unknown parameter {unknown[0]!r} (allowed: {', '.join(PARAMS)})")
    if any(f in SLOPE_PARAMS for f in free) and not all(b.slopes for b in bs):
        raise InputError(f"fit: {', '.join(f for f in free if f in SLOPE_PARAMS)} need "
                         "baselines(..., kernels=True)")
    t0 = np.array([b.ttft0_ms for b in bs])
    p0 = np.array([b.tpot0_ms for b in bs])
    k = np.array([b.k for b in bs])
    tm = np.array([b.run.ttft_ms for b in bs])
    pm = np.array([b.run.tpot_ms for b in bs])
    osl1 = np.array([max(b.run.osl - 1, 0) for b in bs], dtype=float)
    e2e_m = tm + pm * osl1
    kern = [f for f in SLOPE_PARAMS if f in free]
    st = {f: np.array([b.slopes[f][0] for b in bs]) for f in kern}
    sp = {f: np.array([b.slopes[f][1] for b in bs]) for f in kern}
    scale = np.array([_SCALE[f] for f in free])
    lo = np.array([PARAMS[f][0] for f in free]) / scale
    hi = np.array([PARAMS[f][1] for f in free]) / scale
    x0 = np.clip(np.array([CENTRE.get(f, 0.5 * _SCALE[f] if f in FIXED_COSTS else 0.0)
                           for f in free]) / scale, lo, hi)

    def resid(x):
        v = dict(zip(free, x * scale))
        r, d = v.get("request_overhead_s", 0.0) * 1e3, v.get("iteration_overhead_s", 0.0) * 1e3
        tt, pp = t0 + r + k * d, p0 + d
        for f in kern:
            dx = _coord(f, v[f]) - _coord(f, CENTRE[f])
            tt, pp = tt + st[f] * dx, pp + sp[f] * dx
        # throughput's error is the end-to-end time's, measured over predicted, - 1
        return np.concatenate([tt / tm - 1, pp / pm - 1, e2e_m / (tt + pp * osl1) - 1])

    sol = least_squares(resid, x0=x0, bounds=(lo, hi), loss="soft_l1", f_scale=0.2)
    out = {f: 0.0 for f in FIXED_COSTS}
    if all(b.slopes for b in bs):
        out.update(CENTRE)
    out.update(zip(free, (float(v) for v in sol.x * scale)))
    return out


def cross_validate(bs: list[Baseline], by: str = "model",
                   free: tuple[str, ...] = FIXED_COSTS) -> list[dict]:
    """Leave-one-``by``-out (model, version, ...): each group's rows predicted by the fit of
    the same engine's other groups; one dict per row with the fold's parameters."""
    out = []
    engines = sorted({b.run.backend for b in bs})
    for eng in engines:
        rows = [b for b in bs if b.run.backend == eng]
        groups = sorted({getattr(b.run, by) for b in rows})
        for g in groups:
            train = [b for b in rows if getattr(b.run, by) != g]
            test = [b for b in rows if getattr(b.run, by) == g]
            if not train:
                continue
            params = fit(train, free)
            for b in test:
                ttft, tpot = b.predict(**params)
                out.append(_row(b.run, ttft, tpot, params, held_out=g))
    return out


def _row(run: MeasuredRun, ttft_ms: float, tpot_ms: float, params: dict, **extra) -> dict:
    c = run.concurrency or 0
    return {"id": run.id, "backend": run.backend, "model": run.model_path, "tp": run.tp,
            "concurrency": c, "isl": run.isl, "osl": run.osl, **extra, **params,
            "ttft_ms": ttft_ms, "tpot_ms": tpot_ms,
            "tok_s": throughput_tok_s(c, run.osl, ttft_ms, tpot_ms),
            "measured_ttft_ms": run.ttft_ms, "measured_tpot_ms": run.tpot_ms,
            "measured_tok_s": run.tok_s}


def verify(rows: list[dict], runs: dict[str, MeasuredRun], **sim) -> list[dict]:
    """Simulate each predicted row again with its fold's values (the full closed loop)."""
    out = []
    for p in rows:
        run = runs[p["id"]]
        cfg = replace(run_config(run), request_fixed_s=p["request_overhead_s"],
                      step_cpu_s=p["iteration_overhead_s"])
        kernel = {f: p[f] for f in KERNEL_PARAMS if f in p}
        s = simulate_run(run, config=cfg, engine=engine_of(run, kernel),
                         first_wave=p.get("first_wave_share"), **sim)
        out.append({**p, "ttft_ms": s["ttft_ms"], "tpot_ms": s["tpot_ms"], "tok_s": s["tok_s"]})
    return out


def set_fixed_costs(engine_toml: str, params: dict, comment: str) -> str:
    """An engine TOML's text with the fitted values of ``params`` set: the fixed costs
    (``request_overhead_us``, ``iteration_overhead_us`` in ``[runtime]``, seconds in
    ``params``) and, when given, the kernel parameters (``cuda_graphs = true`` and
    ``cuda_graph_launch_factor`` in ``[runtime]``, ``compute_factor`` and
    ``moe_routing_overhead_us`` in ``[kernels]``); the comment lines under an old value
    are dropped, a missing key is added at the top of its table (added when missing)."""
    import re
    s = engine_toml
    keys = [("runtime", "request_overhead_us", params["request_overhead_s"] * 1e6, ".1f"),
            ("runtime", "iteration_overhead_us", params["iteration_overhead_s"] * 1e6, ".1f")]
    if "cuda_graph_launch_factor" in params:
        keys += [("runtime", "cuda_graphs", True, ""),
                 ("runtime", "cuda_graph_launch_factor", params["cuda_graph_launch_factor"], ".3f"),
                 ("kernels", "compute_factor", params["compute_factor"], ".3f"),
                 ("kernels", "moe_routing_overhead_us", params["moe_routing_overhead_s"] * 1e6,
                  ".1f")]
    for table, key, v, fmt in keys:
        val = ("true" if v else "false") if isinstance(v, bool) else format(v, fmt)
        line = f"{key} = {val}" + ("" if isinstance(v, bool) else f"   # {comment}")
        s, k = re.subn(rf"^{key} = .*(\n[ \t]+#.*)*$", lambda _m: line, s, count=1, flags=re.M)
        if not k:
            if not re.search(rf"^\[{table}\]", s, flags=re.M):
                s = s.rstrip("\n") + f"\n\n[{table}]\n"
            s = re.sub(rf"^\[{table}\]\n", lambda _m: f"[{table}]\n{line}\n", s, count=1,
                       flags=re.M)
    return s


def set_first_wave(clients_toml: str, backend: str, share: float, comment: str) -> str:
    """``data/benchmark_clients.toml``'s text with ``first_wave_share`` of ``backend`` set."""
    import re
    line = f"first_wave_share = {share:.3f}   # {comment}"
    pat = rf"(^\[{re.escape(backend)}\]\n(?:(?!\[).*\n)*?)first_wave_share = .*$"
    s, k = re.subn(pat, lambda m: m.group(1) + line, clients_toml, count=1, flags=re.M)
    if not k:
        s = clients_toml.rstrip("\n") + f"\n\n[{backend}]\n{line}\n"
    return s


def mape(rows: list[dict], key=None) -> dict:
    """Mean absolute percentage error of TTFT, TPOT and throughput, overall or per group."""
    def one(rs):
        e = {m: float(np.mean([abs(r[f"{m}"] / r[f"measured_{m}"] - 1) for r in rs]))
             for m in ("ttft_ms", "tpot_ms", "tok_s")}
        return {"n": len(rs), **e}
    if key is None:
        return one(rows)
    groups: dict = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    return {g: one(rs) for g, rs in sorted(groups.items(), key=lambda kv: str(kv[0]))}


def bucket(c: int) -> str:
    return "c 1-8" if c <= 8 else "c 9-32" if c <= 32 else "c 33-128" if c <= 128 else "c > 128"


__all__ = ["PARAMS", "FIXED_COSTS", "KERNEL_PARAMS", "SLOPE_PARAMS", "CENTRE", "Baseline",
           "baselines", "fit", "cross_validate", "verify", "mape", "bucket", "engine_of",
           "set_fixed_costs", "set_first_wave"]
