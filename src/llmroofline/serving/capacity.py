"""Highest request rate meeting latency SLOs, by bisection over the Poisson rate.

For a rate ``r`` the workload (same seed, so the same lengths and the same arrival
pattern scaled by ``1 / r``) is simulated and the SLOs are checked on the p99 (or another
percentile) of TTFT and TPOT (and e2e if given). The bracket starts at the offline
saturation throughput (all requests at once), which a finite run's drain makes slightly
low, so rates above it are tried too. The search stops when the bracket is within
``rel_tol`` (default 2 %). A rate "meets" the SLOs for this finite run of ``requests``
requests: just past capacity the queue grows slowly, so more requests give a sharper answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .cost import IterationCost
from .sim import SchedulerConfig, SimResult, simulate
from .workload import Workload, make_workload


@dataclass
class Capacity:
    rate: float                  # highest rate meeting the SLOs (0: none does)
    result: SimResult | None     # the simulation at that rate
    saturation_rate: float       # offline throughput in requests/s (upper bound)
    trials: list[dict]           # every rate tried: rate, ok, ttft/tpot percentiles

    def to_dict(self, **slo) -> dict:
        return {"max_rate_requests_s": self.rate, "saturation_requests_s": self.saturation_rate,
                "trials": self.trials,
                "at_capacity": self.result.summary(**slo) if self.result is not None else None}


def _pct(x, q):
    x = np.asarray(x, float)
    x = x[~np.isnan(x)]
    return float(np.percentile(x, q)) if x.size else 0.0


def capacity(model="llama-3.1-8b", hardware="h100-sxm", *, max_ttft_s: float | None = None,
             max_tpot_s: float | None = None, max_e2e_s: float | None = None,
             percentile: float = 99.0, requests: int = 2000,
             input_dist="lognormal:1024,0.6", output_dist="lognormal:256,0.8",
             trace=None, seed: int = 0, arrival: str = "poisson", burstiness: float = 1.0,
             config: SchedulerConfig | None = None, replicas: int = 1, rel_tol: float = 0.02,
             cost: IterationCost | None = None, router: str = "round-robin",
             disaggregate: tuple[int, int] | None = None, kv_link_bytes_s: float | None = None,
             **engine) -> Capacity:
    """Bisection for the highest rate whose ``percentile`` TTFT/TPOT/e2e meet the limits.

    ``replicas``, ``router``, ``disaggregate`` and ``kv_link_bytes_s`` are passed to
    :func:`simulate`: the rate is then that of the whole group."""
    if max_ttft_s is None and max_tpot_s is None and max_e2e_s is None:
        raise InputError("capacity: give at least one SLO (--max-ttft-p99, --max-tpot-p99 or "
                         "--max-e2e-p99)")
    for name, v in (("max_ttft", max_ttft_s), ("max_tpot", max_tpot_s), ("max_e2e", max_e2e_s)):
        if v is not None and not (np.isfinite(v) and v > 0):
            raise InputError(f"{name}: must be a positive number of seconds, got {v!r}")
    if not 0 < percentile <= 100:
        raise InputError(f"percentile: must be in (0, 100], got {percentile!r}")
    if arrival not in ("poisson", "gamma", "fixed"):
        raise InputError(f"arrival: capacity searches over an open-loop rate: poisson, gamma "
                         f"or fixed, got {arrival!r}")
    cfg = config or SchedulerConfig()
    cost = cost or IterationCost.of(model, hardware, max_tokens=cfg.max_tokens,
                                    max_batch=cfg.max_batch, **engine)
    ctx = cost.model.max_position_embeddings
    base = make_workload(requests, rate=1.0, arrival=arrival, input_dist=input_dist,
                         output_dist=output_dist, trace=trace, seed=seed, burstiness=burstiness,
                         max_context=ctx)
    # Unit-rate arrival pattern, rescaled for each rate (a trace keeps its shape too).
    unit = base.arrival_s
    trace_rate = (base.n - 1) / unit[-1] if trace is not None and unit[-1] > 0 else 1.0
    offline = Workload(np.zeros(base.n), base.input_len, base.output_len, "offline")
    sim_kw = dict(config=cfg, replicas=replicas, cost=cost, router=router,
                  disaggregate=disaggregate, kv_link_bytes_s=kv_link_bytes_s)
    sat = simulate(workload=offline, **sim_kw)
    sat_rate = base.n / sat.makespan_s
    trials: list[dict] = []

    def run(rate):
        wl = Workload(unit * trace_rate / rate, base.input_len, base.output_len, arrival, rate)
        r = simulate(workload=wl, **sim_kw)
        t, p, e = _pct(r.ttft_s, percentile), _pct(r.tpot_s, percentile), _pct(r.e2e_s, percentile)
        ok = ((max_ttft_s is None or t <= max_ttft_s) and (max_tpot_s is None or p <= max_tpot_s)
              and (max_e2e_s is None or e <= max_e2e_s))
        trials.append({"rate": rate, "ok": ok, f"ttft_p{percentile:g}_s": t,
                       f"tpot_p{percentile:g}_s": p, f"e2e_p{percentile:g}_s": e})
        return ok, r

    # Bracket: the offline throughput is near the limit (a finite run's drain makes it a
    # little low, so look above it too), then halve down to a passing rate.
    lo, hi, best = 0.0, None, None
    ok, r = run(sat_rate)
    if ok:
        lo, best = sat_rate, r
        probe = sat_rate * 1.25
        for _ in range(12):
            ok, r = run(probe)
            if not ok:
                hi = probe
                break
            lo, best = probe, r
            probe *= 1.25
        if hi is None:
            return Capacity(lo, best, sat_rate, trials)
    else:
        hi = sat_rate
        probe = hi / 2
        while probe > sat_rate * 1e-4:
            ok, r = run(probe)
            if ok:
                lo, best = probe, r
                break
            hi = probe
            probe /= 2
        if best is None:
            return Capacity(0.0, None, sat_rate, trials)
    while hi - lo > rel_tol * lo:
        mid = (lo * hi) ** 0.5 if hi > 2 * lo else (lo + hi) / 2
        ok, r = run(mid)
        if ok:
            lo, best = mid, r
        else:
            hi = mid
    return Capacity(lo, best, sat_rate, trials)
