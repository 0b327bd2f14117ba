"""Disaggregated prefill/decode serving: two pools, each with its own layout and limits.

An xPyD deployment (x prefill workers, y decode workers; :class:`Pool`) serves a request
in three legs:

1. a **prefill worker** (least outstanding requests, ties to the lowest index) computes
   the prompt and its first token;
2. the KV cache goes to a **decode worker** (least outstanding requests) over the link
   the two workers share (:func:`kv_transfer`); the client sees the first token when it
   arrives there, so TTFT = the engine's per-request fixed cost ``request_fixed_s`` +
   queueing + prefill + transfer (a one-token request ends at the prefill worker);
3. the decode worker decodes the remaining ``output_len - 1`` tokens from then on (TPOT
   is the decode pool's alone: its queueing for a batch slot and its decode steps).

Each pool's workers are :class:`~.replica.Replica` schedulers with the pool's own
IterationCost (layout) and SchedulerConfig (batch limits, KV capacity). The pools are
co-simulated event by event (:func:`simulate_disagg`): the worker whose next iteration
starts first runs one iteration (or a lockstep stretch that no arrival can interrupt),
and what it completes is handed on at once: a first token to a decode worker at
``first token + transfer``; a finish, in a closed loop, to the client, which sends its
next request (think time, then ``request_fixed_s``). A hand-off always lands at or after
the start of the receiver's running iteration (every worker's last iteration started no
later than the earliest pending one), so it is admitted exactly when a single engine
would admit it. Open-loop arrivals (Poisson, trace) are sent up front.

Not modelled: the prefill worker holding the KV cache until the transfer ends (its blocks
are freed at the first token), transfer contention between concurrent requests on one
link, and layer-wise overlap of the transfer with prefill.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..cost import kv_transfer_link
from ..errors import InputError
from ..memory import kv_cache_bytes_per_seq
from ..parallel import Layout
from .config import SchedulerConfig, kv_blocks_of
from .cost import IterationCost
from .replica import Replica
from .result import SimResult
from .workload import Workload

MAX_WORKERS = 1024


@dataclass(frozen=True)
class Pool:
    """One pool: its per-worker ``layout``, ``workers`` count and, per worker, the running
    requests ``max_batch`` and tokens per iteration ``max_tokens`` (None: the engine's)."""

    layout: Layout
    workers: int = 1
    max_batch: int | None = None
    max_tokens: int | None = None

    def check(self, name: str) -> Pool:
        for f, v, lo, hi in (("workers", self.workers, 1, MAX_WORKERS),
                             ("max_batch", self.max_batch, 1, 1_000_000),
                             ("max_tokens", self.max_tokens, 1, 10_000_000)):
            if v is None and f != "workers":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
                raise InputError(f"{name}_{f}: must be an integer in [{lo}, {hi}], got {v!r}")
        if self.layout.pp > 1:
            raise InputError(f"{name}_pp: the serving simulator does not model pipeline "
                             f"parallelism; use {name} pp 1")
        return self

    @property
    def devices(self) -> int:
        """Devices of one worker (tp x pp x dp of its layout)."""
        return self.layout.tp * self.layout.pp * self.layout.dp


@dataclass(frozen=True)
class Transfer:
    """KV hand-off of one request: ``total_bytes`` (the whole cache, no sharding),
    ``device_bytes`` (what each decode device receives), the link and ``seconds``."""

    total_bytes: float
    device_bytes: float
    link_bytes_s: float
    latency_s: float
    seconds: float


def kv_transfer(model, prec, hw, tokens, prefill: Layout, decode: Layout,
                link_bytes_s: float | None = None, gpus_per_node: int | None = None) -> Transfer:
    """The KV cache of ``tokens`` prompt tokens sent from a prefill worker to a decode
    worker. Bytes (``memory.kv_cache_bytes_per_seq``): ``total`` = tokens x layers x
    kv_heads x head_dim x 2 x kv bytes (MLA: the latent width, once), ``device`` = the
    decode layout's share per device (an MLA latent is whole on every TP rank). Each
    decode device receives its share over its own link while the prefill devices send
    ``device x decode devices`` bytes between them, so

        seconds = device_bytes x max(1, Dd / Pd) / link + latency

    with Pd, Dd the devices of one prefill / decode worker and ``link`` the per-device,
    one-direction bandwidth of ``cost.kv_transfer_link`` over Pd + Dd devices (the
    scale-up link when both workers fit in one node, else the network), or
    ``link_bytes_s``."""
    tokens = np.asarray(tokens, dtype=float)
    total = kv_cache_bytes_per_seq(model, prec, tokens, Layout())
    dev = kv_cache_bytes_per_seq(model, prec, tokens, decode)
    pd, dd = prefill.tp * prefill.pp, decode.tp * decode.pp
    link = kv_transfer_link(hw, pd + dd, gpus_per_node)
    bw = float(link_bytes_s) if link_bytes_s is not None else float(link.bytes_s)
    if not (math.isfinite(bw) and bw > 0):
        raise InputError(f"kv_link_bw: must be a positive bandwidth, got {link_bytes_s!r}")
    seconds = dev * max(1.0, dd / pd) / bw + link.latency_s
    return Transfer(total, dev, bw, float(link.latency_s), seconds)


def pool_cost(name: str, model, hardware, pool: Pool, cfg: SchedulerConfig, **engine
              ) -> IterationCost:
    """The IterationCost of one worker of ``pool`` (errors name the pool)."""
    try:
        return IterationCost.of(model, hardware, layout=pool.layout, max_tokens=cfg.max_tokens,
                                max_batch=cfg.max_batch, **engine)
    except InputError as e:
        raise InputError(f"{name} pool: {e}") from None


def pool_config(cfg: SchedulerConfig, pool: Pool) -> SchedulerConfig:
    """The engine's scheduler config with the pool's limits (max_tokens >= max_batch kept)."""
    given = {k: v for k, v in (("max_batch", pool.max_batch), ("max_tokens", pool.max_tokens))
             if v is not None}
    if "max_batch" in given and "max_tokens" not in given:
        given["max_tokens"] = max(cfg.max_tokens, given["max_batch"])
    return replace(cfg, **given)


def _ramp_s(pcost, dcost, cfg, wl: Workload, P: int, D: int) -> float:
    """The span the closed-loop clients start over (default): one request cycle as the
    aggregated simulator estimates it (workload.closed_loop_ramp_s), with the prefills
    shared by P workers and the decode rows by D: ``f + ceil(c / P) t_pre(I) + (O - 1)
    t_dec(ceil(c / D), I + O / 2)``."""
    c = int(wl.concurrency)
    I = max(round(float(wl.input_len.mean())), 1)
    O = float(wl.output_len.mean())
    rows = -(-c // D)
    t_pre = pcost.time([I], [I], prefill=True)
    t_dec = dcost.time(np.ones(rows), np.full(rows, I + int(O // 2)), prefill=False)
    return float(cfg.request_fixed_s + -(-c // P) * t_pre + max(O - 1, 0) * t_dec)


def simulate_disagg(model="llama-3.1-8b", hardware="h100-sxm", workload: Workload | None = None,
                    *, prefill: Pool, decode: Pool, config: SchedulerConfig | None = None,
                    decode_config: SchedulerConfig | None = None,
                    kv_link_bytes_s: float | None = None, fast: bool = True,
                    prefill_cost: IterationCost | None = None,
                    decode_cost: IterationCost | None = None, speculative: dict | None = None,
                    **engine) -> SimResult:
    """Simulate ``workload`` on ``prefill.workers`` prefill and ``decode.workers`` decode
    workers (module docstring). ``config``: the engine's scheduler (each pool's limits
    replace its max_batch / max_tokens); ``decode_config``: the decode pool's own (with
    its limits applied too; default ``config``); ``engine``: the setup keywords of
    ``IterationCost.of`` (``quant``, ``profile``, ``engine``, ...; no ``layout``: the pools
    have theirs); ``speculative``: keywords of ``SpeculativeCost.of`` (``mtp`` or
    ``draft``, ``draft_k``, ``accept``, ``draft_tp``) for the decode pool."""
    from .sim import _measured_window, _merge
    from .workload import make_workload
    cfg = config or SchedulerConfig()
    if cfg.policy != "continuous":
        raise InputError("disaggregate: needs continuous batching (--policy continuous)")
    if "layout" in engine:
        raise InputError("layout: a disaggregated run takes one layout per pool "
                         "(--prefill-tp/--decode-tp), not --tp")
    prefill, decode = prefill.check("prefill"), decode.check("decode")
    pcfg, dcfg = pool_config(cfg, prefill), pool_config(decode_config or cfg, decode)
    pcost = prefill_cost or pool_cost("prefill", model, hardware, prefill, pcfg, **engine)
    dcost = decode_cost or pool_cost("decode", model, hardware, decode, dcfg, **engine)
    if speculative:
        from .speculative import SpeculativeCost
        dcost = SpeculativeCost.of(dcost, step_cpu_s=dcfg.step_cpu_s, **speculative)
    m = pcost.model
    wl = workload or make_workload(1000, rate=10.0, max_context=m.max_position_embeddings)
    n, inp, outl = wl.n, wl.input_len, wl.output_len
    too_long = (inp + outl) > m.max_position_embeddings
    if too_long.any() and m.learned_positions:
        k = int(np.argmax(too_long))
        raise InputError(f"workload: request {k} needs {int(inp[k] + outl[k])} tokens, more "
                         f"than the context of {m.name} ({m.max_position_embeddings})")
    P, D = prefill.workers, decode.workers
    blocks = []
    for name, cost, c in (("prefill", pcost, pcfg), ("decode", dcost, dcfg)):
        b = kv_blocks_of(cost, c)
        if b < 1:
            raise InputError(f"{name} pool: the model's weights and activations leave no room "
                             f"for a KV cache on {cost.roof.hw.id} at tp {cost.layout.tp}; "
                             f"use more devices per worker or quantize")
        blocks.append(b)
    pre = [Replica(pcost, pcfg, blocks[0], fast) for _ in range(P)]
    dec = [Replica(dcost, dcfg, blocks[1], fast) for _ in range(D)]
    xfer = kv_transfer(m, pcost.prec, pcost.roof.hw, inp, prefill.layout, decode.layout,
                       kv_link_bytes_s, prefill.layout.gpus_per_node)
    t_xfer = np.broadcast_to(xfer.seconds, inp.shape).astype(float)
    fixed = float(pcfg.request_fixed_s)
    closed = bool(wl.concurrency)
    think = wl.think_s if wl.think_s is not None else np.zeros(n)
    sent = [0]                                    # requests sent so far (closed loop)

    def least(reps):
        return min(range(len(reps)), key=lambda j: (reps[j].n - reps[j].done, j))

    def send(k: int, t: float) -> None:           # request k reaches the prefill pool
        pre[least(pre)].send(k, t + fixed, int(inp[k]), 1)

    if closed:
        c = min(int(wl.concurrency), n)
        ramp = wl.ramp_s if wl.ramp_s is not None else _ramp_s(pcost, dcost, pcfg, wl, P, D)
        for k in range(c):
            send(k, k * ramp / c + float(think[k]))
        sent[0] = c
    else:
        for k in np.argsort(wl.arrival_s, kind="stable").tolist():
            send(k, float(wl.arrival_s[k]))

    def finished(t: float) -> None:               # closed loop: the client sends the next
        if closed and sent[0] < n:
            k = sent[0]
            sent[0] += 1
            send(k, t + float(think[k]))

    reps = pre + dec
    seen = [0] * len(reps)
    while True:
        ts = [rp.next_event_s() for rp in reps]
        i = min(range(len(reps)), key=ts.__getitem__)
        if ts[i] == math.inf:
            break
        rp = reps[i]
        rp.advance(float(np.nextafter(ts[i], math.inf)))
        new, seen[i] = rp.done_ids[seen[i]:], len(rp.done_ids)
        for r in new:
            g = rp.gid[r]
            if i < P:                            # first token: hand the KV cache over
                t1 = rp.first_tok[r]
                if outl[g] > 1:
                    # the client sees the first token once the decode worker holds the KV
                    t1 = t1 + t_xfer[g]
                    dec[least(dec)].send(g, t1, int(inp[g]), int(outl[g]),
                                         comp=int(inp[g]), gen=1, last_emit=t1)
                else:
                    finished(t1)
            else:
                finished(rp.finish[r])
    m1, m2 = _merge(pre, n), _merge(dec, n, offset=P)
    has_dec = outl > 1
    finish = np.where(has_dec, m2["finish"], m1["finish"])
    npre = m1["npre"] + m2["npre"]
    swaps = m1["nswap"] + m2["nswap"]
    rep = np.where(has_dec, m2["rep"], m1["rep"])
    arrival = m1["arrival"] - fixed               # sent by the client
    notes = list(wl.notes)
    measured = None
    if closed:
        measured = _measured_window(arrival, finish, wl)
        if not measured.any():
            notes.append("closed loop: no request in the measured window; send more requests")
            measured = None
    logs, log_rep = m1["logs"] + m2["logs"], m1["log_rep"] + m2["log_rep"]
    cols = [lg.arrays() for lg in logs]
    it = [np.concatenate([c_[j] for c_ in cols]) for j in range(5)]
    it_rep = np.concatenate([np.full(c_[0].size, j) for c_, j in zip(cols, log_rep)])
    o = np.argsort(it[0], kind="stable")
    it, it_rep = [x[o] for x in it], it_rep[o]
    itl = [lg.itl_arrays() for lg in logs]
    caps = tuple(int(r.total_blocks * r.bs) for r in reps)
    roles = ("prefill",) * P + ("decode",) * D
    first_tok = np.where(has_dec, m1["first_tok"] + t_xfer, m1["first_tok"])
    return SimResult(arrival, inp.copy(), outl.copy(), m1["first_sched"], first_tok,
                     finish, npre, np.concatenate([v for v, _ in itl]),
                     np.concatenate([w for _, w in itl]), *it,
                     kv_capacity_tokens=int(sum(caps)), config=dcfg, replica=rep,
                     notes=tuple(notes), iter_replica=it_rep.astype(np.int64), roles=roles,
                     replica_kv_tokens=caps, swaps=swaps,
                     kv_transfer_s=np.where(has_dec, t_xfer, np.nan), measured=measured,
                     concurrency=wl.concurrency)


# -- the disaggregated rows of the concurrency CSV (serving/measured.py) ---------------------
def _pool_layout(pool: tuple, moe: bool) -> Layout:
    tp, _pp, _adp, _mtp, mep = pool[:5]
    return Layout(tp=tp, ep=mep if moe else 1)


def measured_skip_reason(run, model_problem: tuple) -> str | None:
    """Why a disagg row of the concurrency CSV cannot be simulated, or None: a pool with
    attention data-parallelism (DEP layouts are not modelled yet) or pipeline stages, a MoE
    split that is not moe_tp x moe_ep = tp, no concurrency, osl 1, a model that does not
    load."""
    problem, moe = model_problem
    if run.concurrency is None:
        return "disaggregated row without silicon_concurrency"
    for side, pool in (("prefill", run.prefill_pool), ("decode", run.decode_pool)):
        tp, pp, adp, mtp, mep = pool[:5]
        if adp > 1:
            return f"{side} pool attention data-parallel x{adp} (DEP layouts not modelled yet)"
        if pp > 1:
            return f"{side} pool pipeline parallelism (not in the serving simulator)"
        if moe and mtp * mep != tp:
            return f"{side} pool MoE layout moe_tp {mtp} x moe_ep {mep} != tp {tp}"
    if run.osl < 2:
        return "osl 1: no TPOT"
    return problem


def measured_pools(run) -> tuple[Pool, Pool]:
    """The two pools of a disagg row: the columns' layouts; workers 1 where the row leaves
    them empty (1P1D); per-worker max batch = the decode column's batch (clients per
    attention rank) where given, else the engine's."""
    from .measured import _model_problem
    moe = _model_problem(run.model)[1]
    out = []
    for pool in (run.prefill_pool, run.decode_pool):
        out.append(Pool(_pool_layout(pool, moe), workers=pool[5] or 1, max_batch=pool[6]))
    return out[0], out[1]


_DCOSTS: dict = {}


def simulate_measured(run, preset: str | None = None, *, profile=None, rounds: int = 2,
                      warmup: int = 1, ramp_s: float | None = None, behaviours: bool = True,
                      jitter_s: float = 0.0, seed: int = 0, config=None) -> dict:
    """:func:`measured.simulate_run` for a disagg row: ``concurrency`` closed-loop clients
    (``warmup + rounds`` requests each) on the row's xPyD pools (:func:`measured_pools`),
    each pool under its engine's scheduler config for its TP size (``config`` replaces
    both). Returns the same dict (ttft_ms, tpot_ms, tok_s, sim)."""
    from .measured import run_config, throughput_tok_s
    from .workload import make_workload
    pp_, dp_ = measured_pools(run)
    cfgs, costs = [], []
    for pool in (pp_, dp_):
        base = config or run_config(replace(run, tp=pool.layout.tp), preset, behaviours)
        cfg = pool_config(base, pool)
        key = (run.model, run.hardware, run.precision, pool.layout, cfg.max_tokens,
               cfg.max_batch, str(profile))
        if key not in _DCOSTS:
            _DCOSTS[key] = IterationCost.of(run.model, run.hardware, quant=run.precision,
                                            layout=pool.layout, profile=profile,
                                            max_tokens=cfg.max_tokens, max_batch=cfg.max_batch)
        cfgs.append(cfg)
        costs.append(_DCOSTS[key])
    c = run.concurrency
    wl = make_workload(c * (warmup + rounds), concurrency=c, input_dist=f"fixed:{run.isl}",
                       output_dist=f"fixed:{run.osl}", ramp_s=ramp_s, warmup=warmup,
                       max_context=costs[0].model.max_position_embeddings, jitter_s=jitter_s,
                       seed=seed)
    r = simulate_disagg(workload=wl, prefill=pp_, decode=dp_, config=cfgs[0],
                        decode_config=cfgs[1], prefill_cost=costs[0], decode_cost=costs[1])
    b = r.benchmark()
    ttft, tpot = b["ttft_s"]["mean"] * 1e3, b["tpot_s"]["mean"] * 1e3
    return {"ttft_ms": ttft, "tpot_ms": tpot,
            "tok_s": throughput_tok_s(c, run.osl, ttft, tpot), "sim": b}
