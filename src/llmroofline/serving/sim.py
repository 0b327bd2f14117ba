"""Discrete-event simulation of an LLM serving replica, iteration by iteration.

State of a request: ``gen`` tokens emitted, ``comp`` tokens in its KV cache. It must
compute ``target = input_len + gen`` tokens before emitting the next one: a prompt of
``I`` tokens emits token 1 when ``comp`` reaches ``I``; from then on every iteration feeds
the last emitted token (``q = 1``) and emits the next. A request is done when
``gen = output_len``; its KV cache holds at most ``input_len + output_len - 1`` tokens.

Continuous batching (``policy="continuous"``, vLLM / TensorRT-LLM in-flight batching), per
iteration:

1. every running request with one token left to compute is a decode row (oldest first);
   if its next token needs a new KV block and none is free, the most recently admitted
   running request is preempted by recompute: its blocks are freed and it goes back to the
   front of the queue, to re-prefill its prompt plus the tokens it had generated;
2. running requests still in prefill get chunks from the token budget ``max_tokens``
   (whole prompts only, when ``chunked=False``);
3. queued requests are admitted first-come first-served while the batch has fewer than
   ``max_batch`` requests, the budget has tokens left, and the KV blocks of the request's
   whole prompt are free (keeping a ``watermark`` share of the blocks spare);
4. the iteration's time is ``IterationCost.time`` of its rows; tokens are emitted at its end.

Static batching (``policy="static"``): when idle, the engine takes up to ``max_batch``
queued requests whose full KV cache (``input + output - 1`` tokens each) fits, prefills
them in one forward, and decodes all rows until the longest is done; finished rows keep
costing their slot (padding), as in a static ``generate`` call.

Paged KV memory: ``block_size`` tokens per block; capacity ``kv_fraction x (device memory
- weights - activation reserve of a max_tokens iteration)`` per device.

Speed: stretches of pure-decode iterations (no prefill, nothing admissible) are advanced in
one vectorized step up to the next event (an arrival that could be admitted, the first
finish, or the first iteration that would need more KV blocks than exist); within them the
iteration times come from :meth:`IterationCost.decode_run`. ``fast=False`` steps every
iteration (same results up to rounding; the benchmark's baseline).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from .cost import IterationCost
from .workload import Workload

POLICIES = ("continuous", "static")


@dataclass(frozen=True)
class SchedulerConfig:
    policy: str = "continuous"
    max_batch: int = 256          # running requests per iteration (vLLM max_num_seqs)
    max_tokens: int = 8192        # tokens per iteration (vLLM max_num_batched_tokens)
    chunked: bool = True          # chunked prefill
    block_size: int = 16          # KV tokens per block
    kv_fraction: float = 0.9      # share of the memory left after weights and activations
    watermark: float = 0.01       # share of blocks kept free when admitting
    kv_blocks: int | None = None  # override the KV capacity (blocks)

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise InputError(f"policy: must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        for f, lo, hi in (("max_batch", 1, 1_000_000), ("max_tokens", 1, 10_000_000),
                          ("block_size", 1, 65536)):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
                raise InputError(f"{f}: must be an integer in [{lo}, {hi}], got {v!r}")
        if self.policy == "continuous" and self.max_tokens < self.max_batch:
            raise InputError(f"max_tokens: must be >= max_batch ({self.max_batch}) so every "
                             f"running request can decode each iteration, got {self.max_tokens}")
        if not 0 < self.kv_fraction <= 1:
            raise InputError(f"kv_fraction: must be in (0, 1], got {self.kv_fraction!r}")
        if not 0 <= self.watermark < 1:
            raise InputError(f"watermark: must be in [0, 1), got {self.watermark!r}")
        if self.kv_blocks is not None and (isinstance(self.kv_blocks, bool) or self.kv_blocks < 1):
            raise InputError(f"kv_blocks: must be an integer >= 1, got {self.kv_blocks!r}")


@dataclass
class SimResult:
    """Per-request results and the iteration log of a simulation."""

    arrival_s: np.ndarray
    input_len: np.ndarray
    output_len: np.ndarray
    first_scheduled_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    preemptions: np.ndarray
    itl_s: np.ndarray             # inter-token latencies (values) ...
    itl_weight: np.ndarray        # ... and how many tokens had each value
    iter_start_s: np.ndarray      # iteration log
    iter_time_s: np.ndarray
    iter_rows: np.ndarray
    iter_tokens: np.ndarray
    iter_kv_tokens: np.ndarray    # KV tokens held after the iteration
    kv_capacity_tokens: int
    config: SchedulerConfig
    replica: np.ndarray | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def ttft_s(self) -> np.ndarray:
        return self.first_token_s - self.arrival_s

    @property
    def e2e_s(self) -> np.ndarray:
        return self.finish_s - self.arrival_s

    @property
    def tpot_s(self) -> np.ndarray:
        """Mean time per output token after the first, per request (NaN for 1 token)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.output_len > 1, (self.finish_s - self.first_token_s)
                            / np.maximum(self.output_len - 1, 1), np.nan)

    @property
    def queue_s(self) -> np.ndarray:
        return self.first_scheduled_s - self.arrival_s

    @property
    def makespan_s(self) -> float:
        return float(self.finish_s.max() - self.arrival_s.min())

    def meets(self, max_ttft_s=None, max_tpot_s=None, max_e2e_s=None) -> np.ndarray:
        ok = np.ones(self.arrival_s.size, dtype=bool)
        if max_ttft_s is not None:
            ok &= self.ttft_s <= max_ttft_s
        if max_tpot_s is not None:
            ok &= ~(self.tpot_s > max_tpot_s)     # NaN (1-token requests) meets it
        if max_e2e_s is not None:
            ok &= self.e2e_s <= max_e2e_s
        return ok

    def summary(self, max_ttft_s=None, max_tpot_s=None, max_e2e_s=None) -> dict:
        """Percentiles, throughput, goodput (requests/s meeting every given SLO), queueing,
        batch size and KV use."""
        span = self.makespan_s
        dur = self.iter_time_s
        busy = float(dur.sum())

        def pct(x, w=None):
            x = np.asarray(x, dtype=float)
            ok = ~np.isnan(x)
            if not ok.any():
                return {"mean": None, "p50": None, "p90": None, "p99": None, "max": None}
            if w is None:
                x = x[ok]
                p = np.percentile(x, [50, 90, 99])
                return {"mean": float(x.mean()), "p50": float(p[0]), "p90": float(p[1]),
                        "p99": float(p[2]), "max": float(x.max())}
            w = np.asarray(w, dtype=float)[ok]
            x = x[ok]
            order = np.argsort(x, kind="stable")
            x, w = x[order], w[order]
            cw = np.cumsum(w)
            q = [float(x[min(np.searchsorted(cw, f * cw[-1], side="left"), x.size - 1)])
                 for f in (0.5, 0.9, 0.99)]
            return {"mean": float((x * w).sum() / cw[-1]), "p50": q[0], "p90": q[1],
                    "p99": q[2], "max": float(x.max())}

        good = self.meets(max_ttft_s, max_tpot_s, max_e2e_s)
        in_system = float(self.e2e_s.sum() / span) if span > 0 else float("nan")
        w = dur / busy if busy > 0 else dur
        return {
            "requests": int(self.arrival_s.size),
            "duration_s": span,
            "iterations": int(dur.size),
            "ttft_s": pct(self.ttft_s), "tpot_s": pct(self.tpot_s),
            "itl_s": pct(self.itl_s, self.itl_weight), "e2e_s": pct(self.e2e_s),
            "queue_s": pct(self.queue_s),
            "throughput": {
                "requests_s": self.arrival_s.size / span if span > 0 else float("nan"),
                "input_tok_s": float(self.input_len.sum() / span) if span > 0 else float("nan"),
                "output_tok_s": float(self.output_len.sum() / span) if span > 0 else float("nan"),
            },
            "slo": {"max_ttft_s": max_ttft_s, "max_tpot_s": max_tpot_s, "max_e2e_s": max_e2e_s,
                    "attained": float(good.mean()),
                    "goodput_requests_s": float(good.sum() / span) if span > 0 else float("nan")},
            "mean_in_system": in_system,
            "batch": {"mean": float((self.iter_rows * w).sum()), "max": int(self.iter_rows.max())},
            "kv": {"capacity_tokens": int(self.kv_capacity_tokens),
                   "mean_used": float((self.iter_kv_tokens * w).sum() / self.kv_capacity_tokens),
                   "max_used": float(self.iter_kv_tokens.max() / self.kv_capacity_tokens)},
            "busy": busy / span if span > 0 else float("nan"),
            "preemptions": int(self.preemptions.sum()),
            "notes": list(self.notes),
        }

    def to_csv(self, path) -> None:
        """Per-request CSV: arrival, lengths, queueing, TTFT, TPOT, e2e, preemptions."""
        import csv
        with open(path, "w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(["request", "replica", "arrival_s", "input_len", "output_len", "queue_s",
                         "ttft_s", "tpot_s", "e2e_s", "finish_s", "preemptions"])
            rep = self.replica if self.replica is not None else np.zeros(self.arrival_s.size, int)
            tp = self.tpot_s
            for k in range(self.arrival_s.size):
                wr.writerow([k, int(rep[k]), f"{self.arrival_s[k]:.6f}", int(self.input_len[k]),
                             int(self.output_len[k]), f"{self.queue_s[k]:.6f}",
                             f"{self.ttft_s[k]:.6f}", "" if np.isnan(tp[k]) else f"{tp[k]:.6f}",
                             f"{self.e2e_s[k]:.6f}", f"{self.finish_s[k]:.6f}",
                             int(self.preemptions[k])])


class _Log:
    def __init__(self) -> None:
        self.parts: list[tuple] = []
        self.itl: list[tuple] = []

    def add(self, start, dt, rows, tokens, kv):
        self.parts.append((np.atleast_1d(np.asarray(start, float)), np.atleast_1d(np.asarray(dt, float)),
                           np.broadcast_to(rows, np.shape(np.atleast_1d(dt))).astype(float),
                           np.broadcast_to(tokens, np.shape(np.atleast_1d(dt))).astype(float),
                           np.broadcast_to(kv, np.shape(np.atleast_1d(dt))).astype(float)))

    def arrays(self):
        if not self.parts:
            z = np.zeros(0)
            return z, z, z, z, z
        return tuple(np.concatenate([p[i] for p in self.parts]) for i in range(5))

    def itl_arrays(self):
        if not self.itl:
            return np.zeros(0), np.zeros(0)
        v = np.concatenate([np.atleast_1d(np.asarray(a, float)) for a, _ in self.itl])
        w = np.concatenate([np.broadcast_to(np.asarray(b, float), np.shape(np.atleast_1d(a)))
                            for a, b in self.itl])
        return v, w


def kv_blocks_of(cost: IterationCost, cfg: SchedulerConfig) -> int:
    if cfg.kv_blocks is not None:
        return int(cfg.kv_blocks)
    return cost.kv_capacity_tokens(cfg.max_tokens, cfg.kv_fraction) // cfg.block_size


def _run_replica(cost: IterationCost, cfg: SchedulerConfig, wl: Workload, fast: bool,
                 concurrency: int | None) -> dict:
    n = wl.n
    inp = [int(x) for x in wl.input_len]
    out = [int(x) for x in wl.output_len]
    arr = [float(x) for x in wl.arrival_s]
    bs = cfg.block_size
    total_blocks = kv_blocks_of(cost, cfg)
    if total_blocks < 1:
        raise InputError("memory: the model's weights and activations leave no room for a KV "
                         f"cache on {cost.roof.hw.id}; use more devices (--tp) or quantize")
    need_max = max(math.ceil((i + o - 1) / bs) for i, o in zip(inp, out))
    if need_max > total_blocks:
        k = max(range(n), key=lambda r: inp[r] + out[r])
        raise InputError(f"memory: request {k} needs {inp[k] + out[k] - 1} tokens of KV cache, "
                         f"more than the {total_blocks * bs} that fit on {cost.roof.hw.id}")
    gen = [0] * n
    comp = [0] * n
    blocks = [0] * n
    first_sched = [math.nan] * n
    first_tok = [math.nan] * n
    finish = [math.nan] * n
    last_emit = [math.nan] * n
    npre = [0] * n
    log = _Log()
    free = total_blocks
    watermark = int(cfg.watermark * total_blocks)
    now = 0.0
    waiting: deque[int] = deque()
    running: list[int] = []
    done = 0
    # Arrival stream: open loop = pre-sorted times; closed loop = released on finishes.
    if concurrency:
        for r in range(min(concurrency, n)):
            arr[r] = 0.0
        pending = list(range(min(concurrency, n)))
        next_release = min(concurrency, n)
    else:
        pending = sorted(range(n), key=lambda r: arr[r])
        next_release = n
    pi = 0                                  # next pending arrival
    kv_tokens = 0                           # sum of comp over running requests

    def admit_arrivals():
        nonlocal pi
        while pi < len(pending) and arr[pending[pi]] <= now:
            waiting.append(pending[pi])
            pi += 1

    def on_finish(r):
        nonlocal next_release, done
        done += 1
        if concurrency and next_release < n:
            arr[next_release] = now
            pending.append(next_release)
            next_release += 1

    while done < n:
        admit_arrivals()
        if not running and not waiting:
            now = max(now, arr[pending[pi]])     # idle: jump to the next arrival
            continue
        if cfg.policy == "static":
            now, batch = _static_batch(cost, cfg, now, waiting, inp, out, first_sched,
                                       first_tok, finish, log, total_blocks, bs)
            for r in batch:
                on_finish(r)
            continue
        # -- fast path: a stretch of pure-decode iterations ------------------------------
        if fast and running and all(comp[r] == inp[r] + gen[r] - 1 for r in running) and \
                not _admissible(waiting, running, cfg, free, watermark, inp, gen, bs):
            k = min(out[r] - gen[r] for r in running)
            c0 = np.array([comp[r] for r in running], dtype=float)
            held = sum(blocks[r] for r in running) + free
            # iterations j = 0..k-1 need sum ceil((c0 + j + 1) / bs) blocks
            lo, hi = 0, k                   # largest m with blocks(m - 1) <= held
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if np.ceil((c0 + mid) / bs).sum() <= held:
                    lo = mid
                else:
                    hi = mid - 1
            k = lo
            if k >= 2:
                dts = cost.decode_run(c0 + 1, k)
                starts = now + np.concatenate([[0.0], np.cumsum(dts)[:-1]])
                can_admit_new = len(running) < cfg.max_batch and not waiting
                if can_admit_new and pi < len(pending):
                    t_arr = arr[pending[pi]]
                    k = int(max(1, np.searchsorted(starts, t_arr, side="left")))
                    dts, starts = dts[:k], starts[:k]
                if k >= 2:
                    B = len(running)
                    ends = starts + dts
                    log.add(starts, dts, B, B, kv_tokens + B * np.arange(1, k + 1))
                    log.itl.append((dts, B))
                    now = float(ends[-1])
                    kv_tokens += B * k
                    for r in running:
                        comp[r] += k
                        gen[r] += k
                        nb = -(-comp[r] // bs)
                        free -= nb - blocks[r]
                        blocks[r] = nb
                        last_emit[r] = now
                    still = []
                    for r in running:
                        if gen[r] >= out[r]:
                            finish[r] = now
                            free += blocks[r]
                            kv_tokens -= comp[r]
                            blocks[r] = 0
                            on_finish(r)
                        else:
                            still.append(r)
                    running = still
                    continue
        # -- one iteration -------------------------------------------------------------------
        budget = cfg.max_tokens
        rows_q: list[tuple[int, int]] = []
        # 1. decode rows, oldest first; preempt the newest when blocks run out
        i = 0
        while i < len(running):
            r = running[i]
            if comp[r] != inp[r] + gen[r] - 1:
                i += 1
                continue
            need = -(-(comp[r] + 1) // bs) - blocks[r]
            while need > free:
                v = running.pop()
                free += blocks[v]
                kv_tokens -= comp[v]
                blocks[v] = 0
                comp[v] = 0
                npre[v] += 1
                waiting.appendleft(v)
                if v == r:
                    break
            else:
                free -= need
                blocks[r] += need
                rows_q.append((r, 1))
                budget -= 1
                i += 1
                continue
            break   # r itself was preempted: it was the last one
        # 2. running prefills (chunks), then 3. admissions
        has_prefill = False
        for r in running:
            if budget <= 0:
                break
            rem = inp[r] + gen[r] - comp[r]
            if rem <= 1:        # decode rows: scheduled above
                continue
            if not cfg.chunked and rem > budget and has_prefill:
                continue
            q = min(rem, budget) if cfg.chunked else rem
            rows_q.append((r, q))
            budget -= q
            has_prefill = True
        while waiting and len(running) < cfg.max_batch and budget > 0:
            r = waiting[0]
            tgt = inp[r] + gen[r]
            nb = -(-tgt // bs)
            if free - nb < watermark and running:
                break
            if free < nb:
                break
            if not cfg.chunked and tgt > budget and has_prefill:
                break
            waiting.popleft()
            free -= nb
            blocks[r] = nb
            running.append(r)
            if math.isnan(first_sched[r]):
                first_sched[r] = now
            q = min(tgt, budget) if cfg.chunked else tgt
            rows_q.append((r, q))
            budget -= q
            has_prefill = True
        if not rows_q:
            if pi < len(pending):   # nothing fits now: wait for the next arrival
                now = max(now, arr[pending[pi]])
                continue
            raise RuntimeError("scheduler stalled")  # pragma: no cover - guarded by the checks above
        q = np.array([x for _, x in rows_q], dtype=float)
        L = np.array([comp[r] + x for r, x in rows_q], dtype=float)
        dt = cost.time(q, L, prefill=any(x > 1 or comp[r] == 0 for r, x in rows_q))
        start = now
        now = now + dt
        n_dec = 0
        for r, x in rows_q:
            comp[r] += x
            kv_tokens += x
            if comp[r] == inp[r] + gen[r]:
                gen[r] += 1
                if gen[r] == 1:
                    first_tok[r] = now
                elif x == 1 and last_emit[r] == start:
                    n_dec += 1
                else:   # first token after a recompute: the gap since the last one
                    log.itl.append((now - last_emit[r], 1))
                last_emit[r] = now
        if n_dec:
            log.itl.append((dt, n_dec))
        log.add(start, dt, len(rows_q), q.sum(), kv_tokens)
        if any(gen[r] >= out[r] for r, _ in rows_q):
            still = []
            for r in running:
                if gen[r] >= out[r]:
                    finish[r] = now
                    free += blocks[r]
                    kv_tokens -= comp[r]
                    blocks[r] = 0
                    on_finish(r)
                else:
                    still.append(r)
            running = still
    return dict(arrival=np.array(arr), first_sched=np.array(first_sched),
                first_tok=np.array(first_tok), finish=np.array(finish),
                npre=np.array(npre), log=log, capacity=total_blocks * bs)


def _admissible(waiting, running, cfg, free, watermark, inp, gen, bs) -> bool:
    if not waiting or len(running) >= cfg.max_batch:
        return False
    r = waiting[0]
    nb = -(-(inp[r] + gen[r]) // bs)
    return free >= nb and (free - nb >= watermark or not running)


def _static_batch(cost, cfg, now, waiting, inp, out, first_sched, first_tok, finish, log,
                  total_blocks, bs):
    """One static batch from the queue head: prefill together, decode to the longest."""
    batch, used = [], 0
    while waiting and len(batch) < cfg.max_batch:
        r = waiting[0]
        nb = -(-(inp[r] + out[r] - 1) // bs)
        if used + nb > total_blocks:
            break
        waiting.popleft()
        batch.append(r)
        used += nb
    I = np.array([inp[r] for r in batch], dtype=float)
    O = np.array([out[r] for r in batch])
    for r in batch:
        first_sched[r] = now
    dt = cost.time(I, I, prefill=True)
    log.add(now, dt, len(batch), I.sum(), I.sum())
    now += dt
    for r in batch:
        first_tok[r] = now
    K = int(O.max()) - 1
    if K > 0:
        dts = cost.decode_run(I + 1, K)
        ends = now + np.cumsum(dts)
        log.add(ends - dts, dts, len(batch), len(batch), I.sum() + len(batch) * np.arange(1, K + 1))
        # ITL: step j emits a token for the rows with output > j + 1
        alive = len(batch) - np.searchsorted(np.sort(O), np.arange(K) + 2, side="left")
        log.itl.append((dts, alive))
        for r, o in zip(batch, O):
            finish[r] = float(ends[o - 2]) if o > 1 else now
        now = float(ends[-1])
    else:
        for r in batch:
            finish[r] = now
    return now, batch


def simulate(model="llama-3.1-8b", hardware="h100-sxm", workload: Workload | None = None, *,
             config: SchedulerConfig | None = None, replicas: int = 1, router: str = "round-robin",
             fast: bool = True, cost: IterationCost | None = None, **engine) -> SimResult:
    """Simulate serving ``workload`` (default: 1000 Poisson requests at 10 req/s) on
    ``replicas`` replicas of ``model`` on ``hardware`` behind a round-robin router.

    ``engine``: keyword arguments of ``analyze`` (``quant``, ``layout``, ``profile``, ...).
    """
    from .workload import make_workload
    cfg = config or SchedulerConfig()
    if isinstance(replicas, bool) or not isinstance(replicas, (int, np.integer)) or not 1 <= replicas <= 10000:
        raise InputError(f"replicas: must be an integer in [1, 10000], got {replicas!r}")
    if router not in ("round-robin",):
        raise InputError(f"router: only round-robin is supported, got {router!r}")
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
    n = wl.n
    rep = np.arange(n) % replicas
    parts = []
    for k in range(replicas):
        idx = np.flatnonzero(rep == k)
        if idx.size == 0:
            continue
        sub = Workload(wl.arrival_s[idx], wl.input_len[idx], wl.output_len[idx], wl.arrival,
                       wl.rate, None)
        conc = None
        if wl.concurrency:
            conc = len(range(k, wl.concurrency, replicas)) or 1
        parts.append((idx, _run_replica(cost, cfg, sub, fast, conc)))
    arrival = np.zeros(n)
    fs, ft, fin, npre = (np.zeros(n) for _ in range(4))
    logs = []
    cap = 0
    for idx, p in parts:
        arrival[idx], fs[idx], ft[idx], fin[idx], npre[idx] = (p["arrival"], p["first_sched"],
                                                               p["first_tok"], p["finish"], p["npre"])
        logs.append(p["log"])
        cap += p["capacity"]
    cols = [l.arrays() for l in logs]
    it = [np.concatenate([c[i] for c in cols]) for i in range(5)]
    if replicas > 1:     # the log of all replicas, ordered by start time
        order = np.argsort(it[0], kind="stable")
        it = [x[order] for x in it]
    itl = [l.itl_arrays() for l in logs]
    notes = list(wl.notes)
    return SimResult(arrival, wl.input_len.copy(), wl.output_len.copy(), fs, ft, fin, npre,
                     np.concatenate([v for v, _ in itl]), np.concatenate([w for _, w in itl]),
                     *it, kv_capacity_tokens=cap, config=cfg, replica=rep, notes=tuple(notes))
