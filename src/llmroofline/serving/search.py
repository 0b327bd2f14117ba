"""Search over serving configurations: the cheapest one that meets latency SLOs at a
target request rate, and the Pareto front of throughput per device vs TPOT.

A configuration is a device, a tensor-parallel degree ``tp`` (devices per replica), a max
batch and a max tokens per iteration (the prefill chunk budget). For each one:

1. its **capacity** per replica: the highest Poisson rate whose percentile TTFT/TPOT (/e2e)
   meet the limits (:func:`capacity.capacity`: bisection, ``requests`` per trial);
2. its point on the **Pareto front**: x = TPOT percentile at that capacity (lower is
   better), y = capacity per device = capacity / tp (higher is better); a configuration is
   on the front when no other is at least as good on both and better on one;
3. with a target rate R: ``replicas = ceil(R / capacity)``, ``devices = replicas x tp``,
   cost = devices x USD per device-hour (with a price file) else devices.

The candidates are then **verified** cheapest first: ``replicas`` replicas behind the
``router`` are simulated at R (``requests`` per replica); a candidate that misses the SLOs
gets one more replica and goes back in line; the first that passes is the answer, and one
replica fewer is tried on it (a router over several replicas smooths the load, so the
per-replica estimate can be conservative). Ties in cost go to the higher capacity per
device, then the lower TPOT.

Each configuration's capacity is independent, so they run in parallel worker processes
(``workers``, default: the CPU count; fork start method, else one process).
"""

from __future__ import annotations

import heapq
import math
import os
import time
from dataclasses import asdict, dataclass, field
from itertools import product

import numpy as np

from ..errors import InputError
from ..parallel import Layout
from .capacity import capacity
from .cost import IterationCost
from .sim import SchedulerConfig, simulate
from .workload import make_workload


@dataclass
class SearchPoint:
    hardware: str
    tp: int
    max_batch: int
    max_tokens: int
    rate: float = 0.0                  # capacity of one replica, requests/s (0: none)
    ttft_s: float | None = None        # percentile TTFT at that rate
    tpot_s: float | None = None        # percentile TPOT at that rate
    trials: int = 0
    error: str | None = None
    usd_per_hour: float | None = None  # per device
    replicas: int | None = None        # for the target rate
    devices: int | None = None
    cost_usd_h: float | None = None
    verified: bool | None = None       # simulated at the target rate with `replicas`
    pareto: bool = False
    seconds: float = 0.0

    @property
    def label(self) -> str:
        tp = f"TP{self.tp} " if self.tp > 1 else ""
        return f"{tp}{self.hardware} b{self.max_batch} t{self.max_tokens}"

    @property
    def per_device(self) -> float:
        return self.rate / self.tp if self.rate else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["label"] = self.label
        d["per_device_requests_s"] = self.per_device
        return d


@dataclass
class Search:
    points: list[SearchPoint]
    best: SearchPoint | None
    rate_target: float | None
    percentile: float
    slo: dict
    verifications: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def front(self) -> list[SearchPoint]:
        return sorted((p for p in self.points if p.pareto), key=lambda p: p.tpot_s)

    def to_dict(self) -> dict:
        return {"rate_target": self.rate_target, "percentile": self.percentile, "slo": self.slo,
                "best": self.best.to_dict() if self.best else None,
                "pareto_front": [p.label for p in self.front],
                "points": [p.to_dict() for p in self.points],
                "verifications": self.verifications, "notes": self.notes,
                "elapsed_s": self.elapsed_s}


def pareto_flags(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """True where no other point has x <= and y >= with one strict (lower x, higher y)."""
    n = x.size
    out = np.ones(n, dtype=bool)
    for i in range(n):
        dom = (x <= x[i]) & (y >= y[i]) & ((x < x[i]) | (y > y[i]))
        out[i] = not dom.any()
    return out


# Worker state: set before the pool forks, inherited by the workers.
_COSTS: dict = {}
_TASKS: list = []
_KW: dict = {}


def _eval(i: int) -> dict:
    key, cfg = _TASKS[i]
    t = time.perf_counter()
    try:
        c = capacity(cost=_COSTS[key], config=cfg, **_KW)
    except InputError as e:
        return {"error": str(e), "seconds": time.perf_counter() - t}
    pct = _KW.get("percentile", 99.0)
    tr = next((x for x in c.trials if x["rate"] == c.rate), None)
    return {"rate": c.rate, "trials": len(c.trials), "seconds": time.perf_counter() - t,
            "ttft_s": tr[f"ttft_p{pct:g}_s"] if tr else None,
            "tpot_s": tr[f"tpot_p{pct:g}_s"] if tr else None}


def _map(n: int, workers: int) -> list[dict]:
    if workers > 1 and n > 1:
        import multiprocessing as mp
        try:
            ctx = mp.get_context("fork")
        except ValueError:
            ctx = None
        if ctx is not None:
            with ctx.Pool(min(workers, n)) as pool:
                return pool.map(_eval, range(n), chunksize=1)
    return [_eval(i) for i in range(n)]


def _ints(name: str, values) -> list[int]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InputError(f"{name}: must be integers >= 1, got {v!r}")
        out.append(int(v))
    if not out:
        raise InputError(f"{name}: give at least one value")
    return sorted(set(out))


def search(model="llama-3.1-8b", hardware=("h100-sxm",), *, tp=(1, 2, 4, 8),
           max_batch=(64, 128, 256), max_tokens=(2048, 8192), rate_target: float | None = None,
           prices: dict[str, float] | str | None = None, max_ttft_s: float | None = None,
           max_tpot_s: float | None = None, max_e2e_s: float | None = None,
           percentile: float = 99.0, requests: int = 2000, input_dist="lognormal:1024,0.6",
           output_dist="lognormal:256,0.8", seed: int = 0, arrival: str = "poisson",
           burstiness: float = 1.0, router: str = "round-robin", rel_tol: float = 0.05,
           workers: int | None = None, max_verifications: int = 12,
           config: SchedulerConfig | None = None, layout: Layout | None = None,
           **engine) -> Search:
    """Evaluate every configuration of ``hardware x tp x max_batch x max_tokens`` (see the
    module docstring). ``config`` gives the other scheduler settings (block size, KV
    fraction, preemption, ...); ``layout`` the other parallel settings (its ``tp`` is
    replaced); ``engine``: precision, profile, flash."""
    t0 = time.perf_counter()
    if max_ttft_s is None and max_tpot_s is None and max_e2e_s is None:
        raise InputError("capacity: give at least one SLO (--max-ttft-p99, --max-tpot-p99 or "
                         "--max-e2e-p99)")
    if rate_target is not None and not (np.isfinite(rate_target) and rate_target > 0):
        raise InputError(f"rate_target: must be a positive number of requests/s, got {rate_target!r}")
    hws = [str(h) for h in hardware]
    if not hws:
        raise InputError("hardware: give at least one device")
    tps, mbs, mts = _ints("tp", tp), _ints("max_batch", max_batch), _ints("max_tokens", max_tokens)
    if isinstance(prices, str) or hasattr(prices, "__fspath__"):
        from ..rank import load_prices
        prices = load_prices(prices)
    base_cfg = config or SchedulerConfig()
    base_layout = layout or Layout()
    notes: list[str] = []
    points: list[SearchPoint] = []
    tasks: list = []
    costs: dict = {}
    task_points: list[SearchPoint] = []
    from dataclasses import replace
    for hw, t in product(hws, tps):
        try:
            lay = replace(base_layout, tp=t)
            cost = IterationCost.of(model, hw, layout=lay, max_tokens=max(mts),
                                    max_batch=max(mbs), **engine)
            err = None
        except InputError as e:
            cost, err = None, str(e)
        hw_id = cost.roof.hw.id if cost is not None else hw
        usd = prices.get(hw_id.lower()) if prices else None
        if prices and usd is None and cost is not None:
            notes.append(f"no price for {hw_id} in the price file: ranked by devices after the priced ones")
        for mb, mt in product(mbs, mts):
            p = SearchPoint(hw_id, t, mb, mt, usd_per_hour=usd)
            points.append(p)
            if err is not None:
                p.error = err
                continue
            if mt < mb:
                p.error = f"max_tokens {mt} < max_batch {mb}"
                continue
            try:
                cfg = replace(base_cfg, max_batch=mb, max_tokens=mt)
            except InputError as e:
                p.error = str(e)
                continue
            costs[(hw_id, t)] = cost
            tasks.append(((hw_id, t), cfg))
            task_points.append(p)
    if not tasks:
        raise InputError("search: no configuration can run: " + "; ".join(
            sorted({p.error for p in points if p.error})))
    kw = dict(max_ttft_s=max_ttft_s, max_tpot_s=max_tpot_s, max_e2e_s=max_e2e_s,
              percentile=percentile, requests=requests, input_dist=input_dist,
              output_dist=output_dist, seed=seed, arrival=arrival, burstiness=burstiness,
              rel_tol=rel_tol)
    global _COSTS, _TASKS, _KW
    _COSTS, _TASKS, _KW = costs, tasks, kw
    try:
        res = _map(len(tasks), workers if workers is not None else (os.cpu_count() or 1))
    finally:
        _COSTS, _TASKS, _KW = {}, [], {}
    for p, r in zip(task_points, res):
        p.seconds = r.get("seconds", 0.0)
        if "error" in r:
            p.error = r["error"]
            continue
        p.rate, p.trials, p.ttft_s, p.tpot_s = r["rate"], r["trials"], r["ttft_s"], r["tpot_s"]
    ok = [p for p in points if p.rate > 0]
    if ok:
        x = np.array([p.tpot_s if p.tpot_s is not None else math.inf for p in ok])
        y = np.array([p.per_device for p in ok])
        for p, f in zip(ok, pareto_flags(x, y)):
            p.pareto = bool(f)
    slo = {"max_ttft_s": max_ttft_s, "max_tpot_s": max_tpot_s, "max_e2e_s": max_e2e_s}
    out = Search(points, None, rate_target, percentile, slo, notes=notes)
    if not ok:
        out.notes.append("no configuration meets the SLOs at any rate")
    if rate_target is not None and ok:
        cfgs = {id(p): c for p, (_, c) in zip(task_points, tasks)}
        out.best = _cheapest(ok, costs, cfgs, rate_target, router, max_verifications, kw, out)
    out.elapsed_s = time.perf_counter() - t0
    return out


def _price(p: SearchPoint, n: int) -> tuple:
    devices = n * p.tp
    usd = devices * p.usd_per_hour if p.usd_per_hour is not None else None
    # priced configurations first (by USD/h), then by devices; ties: capacity per device, TPOT
    return (0 if usd is not None else 1, usd if usd is not None else devices, devices,
            -p.per_device, p.tpot_s if p.tpot_s is not None else math.inf)


def _cheapest(ok, costs, cfgs, rate, router, max_ver, kw, out: Search) -> SearchPoint | None:
    pct = kw["percentile"]

    def verify(p: SearchPoint, n: int) -> bool:
        cost = costs[(p.hardware, p.tp)]
        cfg = cfgs[id(p)]
        nreq = int(min(kw["requests"] * n, 50_000))
        wl = make_workload(nreq, rate=rate, arrival=kw["arrival"], input_dist=kw["input_dist"],
                           output_dist=kw["output_dist"], seed=kw["seed"],
                           burstiness=kw["burstiness"],
                           max_context=cost.model.max_position_embeddings)
        r = simulate(workload=wl, config=cfg, replicas=n, router=router, cost=cost)
        t = float(np.percentile(r.ttft_s, pct))
        tp_ = r.tpot_s[~np.isnan(r.tpot_s)]
        q = float(np.percentile(tp_, pct)) if tp_.size else 0.0
        e = float(np.percentile(r.e2e_s, pct))
        good = ((kw["max_ttft_s"] is None or t <= kw["max_ttft_s"])
                and (kw["max_tpot_s"] is None or q <= kw["max_tpot_s"])
                and (kw["max_e2e_s"] is None or e <= kw["max_e2e_s"]))
        out.verifications.append({"config": p.label, "replicas": n, "requests": nreq, "ok": good,
                                  f"ttft_p{pct:g}_s": t, f"tpot_p{pct:g}_s": q,
                                  f"e2e_p{pct:g}_s": e})
        return good

    heap = []
    for k, p in enumerate(ok):
        n = max(1, math.ceil(rate / p.rate * (1 - 1e-9)))
        p.replicas, p.devices = n, n * p.tp
        p.cost_usd_h = n * p.tp * p.usd_per_hour if p.usd_per_hour is not None else None
        heapq.heappush(heap, (_price(p, n), k, n))
    done = 0
    failed: dict[int, int] = {}        # config -> most replicas known to miss the SLOs
    while heap and done < max_ver:
        _, k, n = heapq.heappop(heap)
        p = ok[k]
        done += 1
        if verify(p, n):
            while n - 1 > failed.get(k, 0) and done < max_ver:
                done += 1
                if not verify(p, n - 1):
                    break
                n -= 1
            p.replicas, p.devices, p.verified = n, n * p.tp, True
            p.cost_usd_h = n * p.tp * p.usd_per_hour if p.usd_per_hour is not None else None
            return p
        p.verified = False
        failed[k] = n
        heapq.heappush(heap, (_price(p, n + 1), k, n + 1))
        p.replicas, p.devices = n + 1, (n + 1) * p.tp
        p.cost_usd_h = (n + 1) * p.tp * p.usd_per_hour if p.usd_per_hour is not None else None
    out.notes.append(f"no configuration verified at {rate:g} req/s within {max_ver} simulations")
    return None
