"""Fitting an engine's fixed costs to closed-loop serving measurements.

Two named, bounded parameters per engine (and device family: every shipped row is an
H200), the costs that sit outside the kernels:

- ``request_overhead_s`` in [0, 0.5] s: added to each request's time to first token
  (tokenization, scheduling, the first detokenize, the HTTP round trip of the benchmark);
- ``iteration_overhead_s`` in [0, 5] ms: CPU time of each scheduler iteration (batch
  assembly, sampling, the host synchronisation), paid by every decode step.

The kernels (efficiency entries) are not refitted here: the rows are 2025-26 releases on
one device family, and a kernel fit from one device would not transfer to others.

Method. Each row is simulated once as its benchmark ran it with both costs at zero
(:func:`baselines`); a row's TTFT and TPOT then move with the costs as

    TTFT(r, d) = TTFT0 + r + k d        TPOT(r, d) = TPOT0 + d

with ``k`` = TTFT0 / TPOT0 (>= 1) the iterations a request spends before its first token
(first order: the closed loop's feedback, slower requests arriving later, is left out,
which :func:`verify` checks by simulating again). :func:`fit` minimises a soft-L1 loss of
the relative errors (predicted / measured - 1) of both metrics over the rows, the errors the
targets are stated in; :func:`cross_validate` refits it leaving one
group of rows (a model, by default) out and predicts those rows with the fit that never
saw them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..errors import InputError
from .measured import MeasuredRun, run_config, simulate_run, throughput_tok_s

PARAMS = {"request_overhead_s": (0.0, 0.5), "iteration_overhead_s": (0.0, 5e-3)}


@dataclass(frozen=True)
class Baseline:
    """A row simulated with the engine's fixed costs at zero."""

    run: MeasuredRun
    ttft0_ms: float
    tpot0_ms: float

    @property
    def k(self) -> float:
        """Iterations before the first token (TTFT0 / TPOT0, at least 1)."""
        return max(1.0, self.ttft0_ms / self.tpot0_ms) if self.tpot0_ms > 0 else 1.0

    def predict(self, request_overhead_s: float, iteration_overhead_s: float) -> tuple[float, float]:
        """(TTFT ms, TPOT ms) at these costs (first order, module docstring)."""
        d = iteration_overhead_s * 1e3
        return (self.ttft0_ms + request_overhead_s * 1e3 + self.k * d, self.tpot0_ms + d)


def _zero_costs(run: MeasuredRun, config_of=None):
    return replace((config_of or run_config)(run), request_fixed_s=0.0, step_cpu_s=0.0)


def baselines(runs: list[MeasuredRun], progress=None, skipped: list | None = None,
              config_of=None, **sim) -> list[Baseline]:
    """Simulate every run with its engine's fixed costs at zero (``sim``: simulate_run's
    keywords, e.g. ``rounds``; ``config_of(run)``: its SchedulerConfig, default
    :func:`run_config`). A run the engine refuses (a layout the model cannot take,
    e.g. tp 64 over 32 heads without attention data-parallelism) is left out and, when
    ``skipped`` is a list, appended to it with the reason."""
    out = []
    for i, r in enumerate(runs):
        try:
            p = simulate_run(r, config=_zero_costs(r, config_of), **sim)
        except InputError as e:
            if skipped is not None:
                skipped.append((r, str(e)))
            continue
        out.append(Baseline(r, p["ttft_ms"], p["tpot_ms"]))
        if progress:
            progress(i + 1, len(runs))
    return out


def fit(bs: list[Baseline]) -> dict[str, float]:
    """The two costs (seconds) that best explain the rows' TTFT and TPOT (soft-L1 on the
    relative errors, bounded by :data:`PARAMS`)."""
    from scipy.optimize import least_squares
    if not bs:
        raise InputError("fit: no rows to fit")
    t0 = np.array([b.ttft0_ms for b in bs])
    p0 = np.array([b.tpot0_ms for b in bs])
    k = np.array([b.k for b in bs])
    tm = np.array([b.run.ttft_ms for b in bs])
    pm = np.array([b.run.tpot_ms for b in bs])
    lo = [v[0] for v in PARAMS.values()]
    hi = [v[1] for v in PARAMS.values()]
    scale = np.array([0.05, 1e-3])

    def resid(x):
        r, d = x * scale
        return np.concatenate([(t0 + r * 1e3 + k * d * 1e3) / tm - 1, (p0 + d * 1e3) / pm - 1])

    sol = least_squares(resid, x0=np.array([0.5, 0.5]), bounds=(np.array(lo) / scale,
                                                                  np.array(hi) / scale),
                        loss="soft_l1", f_scale=0.2)
    return dict(zip(PARAMS, (float(v) for v in sol.x * scale)))


def cross_validate(bs: list[Baseline], by: str = "model") -> list[dict]:
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
            params = fit(train)
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
    """Simulate each predicted row again with its fold's costs (the full closed loop)."""
    out = []
    for p in rows:
        run = runs[p["id"]]
        cfg = replace(run_config(run), request_fixed_s=p["request_overhead_s"],
                      step_cpu_s=p["iteration_overhead_s"])
        s = simulate_run(run, config=cfg, **sim)
        out.append({**p, "ttft_ms": s["ttft_ms"], "tpot_ms": s["tpot_ms"], "tok_s": s["tok_s"]})
    return out


def set_fixed_costs(engine_toml: str, params: dict, comment: str) -> str:
    """An engine TOML's text with ``request_overhead_us`` and ``iteration_overhead_us`` set
    to ``params`` (seconds; the comment lines under the old values dropped); a file without
    them gets them at the top of its ``[runtime]`` table (added when missing)."""
    import re
    s = engine_toml
    for key, unit in (("request_overhead_s", "request_overhead_us"),
                      ("iteration_overhead_s", "iteration_overhead_us")):
        line = f"{unit} = {params[key] * 1e6:.1f}   # {comment}"
        s, k = re.subn(rf"^{unit} = .*(\n\s+#.*)*$", lambda _m: line, s, count=1, flags=re.M)
        if not k:
            if not re.search(r"^\[runtime\]", s, flags=re.M):
                s = s.rstrip("\n") + "\n\n[runtime]\n"
            s = re.sub(r"^\[runtime\]\n", lambda _m: f"[runtime]\n{line}\n", s, count=1,
                       flags=re.M)
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


__all__ = ["PARAMS", "Baseline", "baselines", "fit", "cross_validate", "verify", "mape",
           "bucket", "set_fixed_costs"]
