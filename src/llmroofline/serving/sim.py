"""Discrete-event simulation of LLM serving replicas, iteration by iteration.

:func:`simulate` prices a workload on one replica, several behind a router, or
prefill/decode-disaggregated replicas, and returns a :class:`SimResult`. The pieces:
``config.py`` the scheduler settings (:class:`SchedulerConfig`) and the KV capacity they
imply; ``replica.py`` one replica's scheduler (continuous or static batching, chunked
prefill, paged KV with preemption by recompute or swap; the semantics and how it stays
fast are in its docstring); ``router.py`` the routers; ``result.py`` the per-request
results and the iteration log.

**Engine behaviours** (``SchedulerConfig``): a request reaches the scheduler
``request_fixed_s`` after it is sent (tokenize, schedule; its TTFT and end-to-end latency
include it; the GPU keeps running other requests meanwhile); every iteration costs
``step_cpu_s`` more; decode batches are padded to ``cuda_graph_sizes``; with
``mix_prefill=False`` prefill batches run alone (replica.py).

**Closed loop** (``workload.concurrency``): clients start staggered
(``workload.closed_loop_starts_s``) and ``SimResult.measured`` marks the requests a
benchmark reports: not the first ``warmup`` of each client, and finished by the time the
last request is sent (``SimResult.benchmark`` summarizes them).

**Attention data-parallel** (a layout with ``dp_attention`` = A > 1, "DEP"): a replica is
A attention ranks (groups of ``tp`` devices), each with its own scheduler, batch and KV
pool (one :class:`Replica` each; requests and closed-loop clients spread round-robin over
all ranks). Their MoE layers join every rank's tokens, so each rank's iteration is priced
with the experts and the all-to-all at A x its own token count (``graph._moe``): the ranks
are taken to run aligned, equally loaded iterations (SGLang and TensorRT-LLM run every
rank's forward together, prefill with prefill), so the step time is that of the busiest
rank; with unequal ranks (c not a multiple of A) the lighter ones are not slowed to the
busiest one's pace.

**Disaggregation** (``disaggregate=(P, D)``): P prefill replicas compute the prompts (a
request leaves them with its first token), the KV cache is sent to one of D decode
replicas (``kv bytes / link bandwidth`` later), which decode to the end.
"""

from __future__ import annotations

import numpy as np

from ..cost import kv_transfer_link
from ..errors import InputError
from .config import SchedulerConfig, kv_blocks_of, swap_seconds_per_token
from .cost import IterationCost
from .replica import Replica
from .result import SimResult
from .router import ROUTERS, route
from .workload import Workload

__all__ = ["SchedulerConfig", "SimResult", "simulate", "default_kv_link_bytes_s",
           "kv_blocks_of", "swap_seconds_per_token"]


def default_kv_link_bytes_s(cost: IterationCost, devices: int,
                            gpus_per_node: int | None = None) -> float:
    """Per-device bandwidth (one direction) of the link a prefill -> decode KV transfer
    crosses: the scale-up link (NVLink, else PCIe) when all ``devices`` fit in one node,
    else the network."""
    return float(kv_transfer_link(cost.roof.hw, devices, gpus_per_node).bytes_s)


def simulate(model="llama-3.1-8b", hardware="h100-sxm", workload: Workload | None = None, *,
             config: SchedulerConfig | None = None, replicas: int = 1, router: str = "round-robin",
             disaggregate: tuple[int, int] | None = None, kv_link_bytes_s: float | None = None,
             fast: bool = True, cost: IterationCost | None = None, **engine) -> SimResult:
    """Simulate serving ``workload`` (default: 1000 Poisson requests at 10 req/s) on
    ``replicas`` replicas of ``model`` on ``hardware`` behind a ``router``
    (``round-robin`` or ``least-loaded``), or on ``disaggregate = (P, D)`` prefill and
    decode replicas with the KV cache sent over a link of ``kv_link_bytes_s`` bytes/s per
    device (default: the scale-up link within a node of 8, else the network).

    ``engine``: keyword arguments of ``analyze`` (``quant``, ``layout``, ``profile``, ...).
    """
    from .workload import make_workload
    cfg = config or SchedulerConfig()
    if isinstance(replicas, bool) or not isinstance(replicas, (int, np.integer)) or not 1 <= replicas <= 10000:
        raise InputError(f"replicas: must be an integer in [1, 10000], got {replicas!r}")
    if router not in ROUTERS:
        raise InputError(f"router: must be one of {', '.join(ROUTERS)}, got {router!r}")
    if cost is None:
        cost = IterationCost.of(model, hardware, max_tokens=cfg.max_tokens,
                                max_batch=cfg.max_batch, **engine)
    wl = workload or make_workload(1000, rate=10.0, max_context=cost.model.max_position_embeddings)
    ctx = cost.model.max_position_embeddings
    too_long = (wl.input_len + wl.output_len) > ctx
    if too_long.any() and cost.model.learned_positions:
        k = int(np.argmax(too_long))
        raise InputError(f"workload: request {k} needs {int(wl.input_len[k] + wl.output_len[k])} "
                         f"tokens, more than the context of {cost.model.name} ({ctx})")
    if wl.concurrency and router != "round-robin" and replicas * cost.layout.dp_attention > 1:
        raise InputError(f"router: {router} needs open-loop arrivals (a closed loop splits its "
                         "clients over the replicas); use --router round-robin")
    total_blocks = kv_blocks_of(cost, cfg)
    if total_blocks < 1:
        held = (f"weights, activations and {cfg.runtime_gb:g} GB of engine runtime memory"
                if cfg.runtime_gb else "weights and activations")
        raise InputError(f"memory: the model's {held} leave no room for a KV cache on "
                         f"{cost.roof.hw.id}; use more devices (--tp) or quantize")
    swap_s = swap_seconds_per_token(cost, cfg) if cfg.preemption == "swap" else 0.0
    swap_blocks = None
    if cfg.swap_gb is not None:
        swap_blocks = int(cfg.swap_gb * 1e9 / (cost.kv_bytes_per_token * cfg.block_size))

    def new(k):
        return [Replica(cost, cfg, total_blocks, fast, swap_s, swap_blocks) for _ in range(k)]

    n = wl.n
    inp, outl = wl.input_len, wl.output_len
    notes = list(wl.notes)
    transfer = None
    fixed = float(cfg.request_fixed_s)
    ready = wl.arrival_s + fixed if fixed else wl.arrival_s   # reaching the scheduler
    adp = cost.layout.dp_attention
    if disaggregate is None:
        # attention-DP: one scheduler per attention rank (module docstring)
        roles = ("mixed",) * (replicas * adp)
        reps = new(replicas * adp)
        starts = None
        if wl.concurrency and (wl.ramp_s is None or wl.ramp_s > 0):
            from .workload import closed_loop_starts_s
            starts = closed_loop_starts_s(cost, cfg, wl)
        rep = route(reps, router, ready, inp, outl, concurrency=wl.concurrency,
                    starts_s=starts, think_s=wl.think_s)
        merged = _merge(reps, n)
    else:
        if adp > 1:
            raise InputError("disaggregate: attention data-parallel pools (dp_attention > 1) "
                             "are not modelled with disaggregation; use dp_attention = 1")
        P, D = _check_disaggregate(disaggregate, replicas, wl, cfg)
        roles = ("prefill",) * P + ("decode",) * D
        pre = new(P)
        route(pre, router, ready, inp, np.ones(n, dtype=np.int64))
        m1 = _merge(pre, n)
        link = kv_link_bytes_s if kv_link_bytes_s is not None else \
            default_kv_link_bytes_s(cost, (P + D) * cost.layout.tp, cost.layout.gpus_per_node)
        if not (np.isfinite(link) and link > 0):
            raise InputError(f"kv_link_bw: must be a positive bandwidth, got {link!r}")
        transfer = cost.kv_bytes_per_token * inp / link + cost.roof.hw.scaleup_latency_s()
        dec_idx = np.flatnonzero(outl > 1)
        dec = new(D)
        merged = m1
        rep = m1["rep"].copy()
        if dec_idx.size:
            t_dec = m1["first_tok"][dec_idx] + transfer[dec_idx]
            sub = route(dec, router, t_dec, inp[dec_idx], outl[dec_idx], comp=inp[dec_idx],
                         gen=np.ones(dec_idx.size, dtype=np.int64),
                         last_emit=m1["first_tok"][dec_idx])
            m2 = _merge(dec, dec_idx.size, offset=P)
            merged = dict(m1)
            merged["finish"] = m1["finish"].copy()
            merged["finish"][dec_idx] = m2["finish"]
            merged["npre"] = m1["npre"].copy()
            merged["npre"][dec_idx] += m2["npre"]
            merged["nswap"] = m1["nswap"].copy()
            merged["nswap"][dec_idx] += m2["nswap"]
            rep[dec_idx] = sub + P
            for key in ("logs", "log_rep"):
                merged[key] = m1[key] + m2[key]
        transfer = np.where(outl > 1, transfer, np.nan)
        reps = pre + dec
    if fixed:
        merged["arrival"] = merged["arrival"] - fixed         # sent by the client
    measured = None
    if wl.concurrency:
        measured = _measured_window(merged["arrival"], merged["finish"], wl)
        if not measured.any():
            notes.append(f"closed loop: no request in the measured window (the first "
                         f"{wl.warmup} of each client are warm-up; the drain after the last "
                         f"request is sent is excluded): send more requests")
            measured = None
    logs, log_rep = merged["logs"], merged["log_rep"]
    cols = [lg.arrays() for lg in logs]
    it = [np.concatenate([c[i] for c in cols]) for i in range(5)]
    it_rep = np.concatenate([np.full(c[0].size, j) for c, j in zip(cols, log_rep)]) \
        if cols else np.zeros(0)
    if len(reps) > 1:     # the log of all replicas, ordered by start time
        o = np.argsort(it[0], kind="stable")
        it = [x[o] for x in it]
        it_rep = it_rep[o]
    itl = [lg.itl_arrays() for lg in logs]
    caps = tuple(int(rp.total_blocks * rp.bs) for rp in reps)
    return SimResult(merged["arrival"], inp.copy(), outl.copy(), merged["first_sched"],
                     merged["first_tok"], merged["finish"], merged["npre"],
                     np.concatenate([v for v, _ in itl]), np.concatenate([w for _, w in itl]),
                     *it, kv_capacity_tokens=int(sum(caps)), config=cfg, replica=rep,
                     notes=tuple(notes), iter_replica=it_rep.astype(np.int64), roles=roles,
                     replica_kv_tokens=caps, swaps=merged["nswap"], kv_transfer_s=transfer,
                     measured=measured, concurrency=wl.concurrency)


def _measured_window(arrival: np.ndarray, finish: np.ndarray, wl: Workload) -> np.ndarray:
    """Requests a closed-loop benchmark reports: index >= warmup x concurrency (requests are
    numbered in the order they are sent, so the first ``warmup`` of every client are out)
    and finished no later than the last request is sent (the drain runs at falling
    concurrency)."""
    n = arrival.size
    k0 = min(wl.warmup * int(wl.concurrency), n)
    ok = np.zeros(n, dtype=bool)
    ok[k0:] = True
    return ok & (finish <= np.nanmax(arrival))


def _check_disaggregate(dis, replicas, wl, cfg) -> tuple[int, int]:
    try:
        P, D = (int(x) for x in dis)
    except (TypeError, ValueError):
        raise InputError(f"disaggregate: expected P:D (prefill and decode replicas), got {dis!r}") from None
    if P < 1 or D < 1 or P + D > 10000:
        raise InputError(f"disaggregate: P and D must be >= 1 (P + D <= 10000), got {P}:{D}")
    if replicas not in (1, P + D):
        raise InputError(f"replicas: with --disaggregate {P}:{D} the replicas are P + D = {P + D}, "
                         f"got {replicas}")
    if wl.concurrency:
        raise InputError("disaggregate: closed-loop arrivals are not supported with "
                         "disaggregation; use an open-loop rate or a trace")
    if cfg.policy != "continuous":
        raise InputError("disaggregate: needs continuous batching (--policy continuous)")
    return P, D


def _merge(reps: list[Replica], n: int, offset: int = 0) -> dict:
    """Per-request arrays (global order) and the logs of a group of replicas."""
    arrival, fs, ft, fin = (np.full(n, np.nan) for _ in range(4))
    npre, nswap, rep = (np.zeros(n, dtype=np.int64) for _ in range(3))
    logs, log_rep = [], []
    for j, rp in enumerate(reps):
        if not rp.gid:
            continue
        g = np.array(rp.gid)
        arrival[g] = rp.arr
        fs[g] = rp.first_sched
        ft[g] = rp.first_tok
        fin[g] = rp.finish
        npre[g] = rp.npre
        nswap[g] = rp.nswap
        rep[g] = j + offset
        logs.append(rp.log)
        log_rep.append(j + offset)
    return dict(arrival=arrival, first_sched=fs, first_tok=ft, finish=fin, npre=npre,
                nswap=nswap, rep=rep, logs=logs, log_rep=log_rep)
