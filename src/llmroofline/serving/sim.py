"""Discrete-event simulation of LLM serving replicas, iteration by iteration.

State of a request: ``gen`` tokens emitted, ``comp`` tokens in its KV cache. It must
compute ``target = input_len + gen`` tokens before emitting the next one: a prompt of
``I`` tokens emits token 1 when ``comp`` reaches ``I``; from then on every iteration feeds
the last emitted token (``q = 1``) and emits the next. A request is done when
``gen = output_len``; its KV cache holds at most ``input_len + output_len - 1`` tokens.

Continuous batching (``policy="continuous"``, vLLM / TensorRT-LLM in-flight batching), per
iteration:

1. every running request with one token left to compute is a decode row (oldest first);
   if its next token needs a new KV block and none is free, the most recently admitted
   running request is preempted: by **recompute** (its blocks are freed; it goes back to
   the front of the queue, to re-prefill its prompt plus the tokens it had generated) or by
   **swap** (its KV cache is copied to host memory over the host link and its blocks
   freed; it is swapped back in before any new request is admitted, and continues where it
   stopped). Swap traffic is priced at ``kv bytes / host link bandwidth`` (per direction;
   the device's PCIe by default) and added to the iteration that moves it, as vLLM's
   blocking swap does. Host swap space is unlimited unless ``swap_gb`` is given; a victim
   that does not fit there is recomputed;
2. running requests still in prefill get chunks from the token budget ``max_tokens``
   (whole prompts only, when ``chunked=False``);
3. swapped-out requests are swapped back in, then queued requests are admitted
   first-come first-served, while the batch has fewer than ``max_batch`` requests, the
   budget has tokens left, and the KV blocks of the request's whole prompt (``reserve=
   "full"``: prompt + output, TensorRT-LLM's guaranteed-no-evict) are free (keeping a
   ``watermark`` share of the blocks spare);
4. the iteration's time is ``IterationCost.time`` of its rows plus the swap time; tokens
   are emitted at its end.

Static batching (``policy="static"``): when idle, the engine takes up to ``max_batch``
queued requests whose full KV cache (``input + output - 1`` tokens each) fits, prefills
them in one forward, and decodes all rows until the longest is done; finished rows keep
costing their slot (padding), as in a static ``generate`` call.

Paged KV memory: ``block_size`` tokens per block; capacity ``kv_fraction x (device memory
- weights - activation reserve of a max_tokens iteration)`` per device.

Several replicas: a **round-robin** router sends the k-th arrival to replica k mod N (the
replicas are then independent and simulated one after the other); **least-loaded** sends
each arrival to the replica with the fewest prompt tokens still waiting for their first
token (queued or in prefill) at its arrival time, ties broken by the fewest outstanding
requests (routed, not finished), then round-robin; **least-requests** uses the outstanding
requests alone. Both read each replica's state exactly at the arrival time (from its
first-token and finish times), which couples the replicas: they are advanced together,
each up to the next arrival. **Disaggregation** (``disaggregate=(P, D)``): P prefill replicas compute the
prompts (a request leaves them with its first token), the KV cache is sent to one of D
decode replicas (``kv bytes / link bandwidth`` later), which decode to the end.

Speed: the running batch is kept in integer slot arrays (see ``_Replica._slots``), so an
iteration updates every decode row with a few vectorized operations and handles one by one
only the rows that are not plain decode rows (prefill chunks, admissions, first tokens,
finishes, preemptions); without sliding windows its attention features are summed
exactly in integers, with no per-row array. Stretches
of pure-decode iterations (no prefill, nothing admissible) are advanced in
one vectorized step up to the next event (an arrival that could be admitted, the first
finish, or the first iteration that would need more KV blocks than exist); within them the
iteration times come from :meth:`IterationCost.decode_run`. ``fast=False`` steps every
iteration (same results up to rounding; the benchmark's baseline).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from .cost import IterationCost
from .workload import Workload

POLICIES = ("continuous", "static")
ROUTERS = ("round-robin", "least-loaded", "least-requests")
PREEMPTIONS = ("recompute", "swap")
RESERVES = ("prompt", "full")


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
    preemption: str = "recompute"  # or "swap" (KV to host memory over the host link)
    swap_gb: float | None = None  # host swap space per device, GB (None: unlimited)
    swap_bytes_s: float | None = None  # host link bytes/s per direction (None: PCIe / 2)
    reserve: str = "prompt"       # blocks reserved at admission: "prompt" or "full" (+ output)

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
        if self.preemption not in PREEMPTIONS:
            raise InputError(f"preemption: must be one of {', '.join(PREEMPTIONS)}, got "
                             f"{self.preemption!r}")
        if self.reserve not in RESERVES:
            raise InputError(f"reserve: must be one of {', '.join(RESERVES)}, got {self.reserve!r}")
        if self.swap_gb is not None and not (np.isfinite(self.swap_gb) and self.swap_gb >= 0):
            raise InputError(f"swap_gb: must be a number of GB >= 0, got {self.swap_gb!r}")
        if self.swap_bytes_s is not None and not (np.isfinite(self.swap_bytes_s)
                                                  and self.swap_bytes_s > 0):
            raise InputError(f"swap_bw: must be a positive bandwidth, got {self.swap_bytes_s!r}")


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
    iter_kv_tokens: np.ndarray    # KV tokens held after the iteration (on its replica)
    kv_capacity_tokens: int       # all replicas
    config: SchedulerConfig
    replica: np.ndarray | None = None        # replica of each request (decode replica if
    notes: tuple[str, ...] = field(default=())  # disaggregated)
    iter_replica: np.ndarray | None = None   # replica of each iteration
    roles: tuple[str, ...] = ()              # per replica: "mixed", "prefill" or "decode"
    replica_kv_tokens: tuple[int, ...] = ()  # KV capacity of each replica (tokens)
    swaps: np.ndarray | None = None          # preemptions by swap, per request
    kv_transfer_s: np.ndarray | None = None  # disaggregated: KV transfer time per request

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

    @property
    def n_replicas(self) -> int:
        return len(self.roles) if self.roles else 1

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
        batch size and KV use. With several replicas, batch and KV use are per replica
        (time-weighted over each replica's busy time, then averaged)."""
        span = self.makespan_s
        dur = self.iter_time_s
        busy = float(dur.sum())
        nrep = self.n_replicas

        good = self.meets(max_ttft_s, max_tpot_s, max_e2e_s)
        in_system = float(self.e2e_s.sum() / span) if span > 0 else float("nan")
        w = dur / busy if busy > 0 else dur
        kv_frac = self.iter_kv_tokens / self._iter_capacity()
        s = {
            "requests": int(self.arrival_s.size),
            "duration_s": span,
            "iterations": int(dur.size),
            "ttft_s": _pct(self.ttft_s), "tpot_s": _pct(self.tpot_s),
            "itl_s": _pct(self.itl_s, self.itl_weight), "e2e_s": _pct(self.e2e_s),
            "queue_s": _pct(self.queue_s),
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
                   "mean_used": float((kv_frac * w).sum()),
                   "max_used": float(kv_frac.max())},
            "busy": busy / span / nrep if span > 0 else float("nan"),
            "preemptions": int(self.preemptions.sum()),
            "swaps": int(self.swaps.sum()) if self.swaps is not None else 0,
            "replicas": nrep,
            "notes": list(self.notes),
        }
        if self.kv_transfer_s is not None:
            s["kv_transfer_s"] = _pct(self.kv_transfer_s)
        return s

    def _iter_capacity(self) -> np.ndarray | float:
        if self.iter_replica is None or not self.replica_kv_tokens:
            return float(self.kv_capacity_tokens)
        return np.asarray(self.replica_kv_tokens, float)[self.iter_replica.astype(int)]

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


def _pct(x, w=None) -> dict:
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


class _Log:
    """Iteration log of one replica: single iterations as tuples, decode stretches as
    arrays; :meth:`arrays` returns them in time order."""

    def __init__(self) -> None:
        self.parts: list[tuple] = []
        self.single: list[tuple] = []
        self.itl: list[tuple] = []

    def add(self, start, dt, rows, tokens, kv):
        if not isinstance(dt, np.ndarray):
            self.single.append((float(start), float(dt), float(rows), float(tokens), float(kv)))
            return
        # a stretch: start, dt and kv arrays, rows and tokens constant (expanded in arrays())
        self.parts.append((start, dt, float(rows), float(tokens), kv))

    def arrays(self):
        parts = self.parts
        cols = [[p[0] for p in parts], [p[1] for p in parts], [], [], [p[4] for p in parts]]
        if parts:
            n = [p[0].size for p in parts]
            cols[2].append(np.repeat(np.array([p[2] for p in parts]), n))
            cols[3].append(np.repeat(np.array([p[3] for p in parts]), n))
        if self.single:
            one = np.array(self.single, dtype=float).reshape(-1, 5)
            for i in range(5):
                cols[i].append(one[:, i])
        if not cols[0]:
            z = np.zeros(0)
            return z, z, z, z, z
        cols[4] = [np.asarray(c, float) for c in cols[4]]
        out = [np.concatenate(c) for c in cols]
        order = np.argsort(out[0], kind="stable")
        return tuple(x[order] for x in out)

    def itl_arrays(self):
        if not self.itl:
            return np.zeros(0), np.zeros(0)
        v = np.concatenate([a if isinstance(a, np.ndarray) else (a,) for a, _ in self.itl])
        v = v.astype(float)
        n = [a.size if isinstance(a, np.ndarray) else 1 for a, _ in self.itl]
        w = [b for _, b in self.itl]
        if all(not isinstance(b, np.ndarray) for b in w):
            return v, np.repeat(np.array(w, dtype=float), n)
        w = np.concatenate([np.broadcast_to(np.asarray(b, float), (k,)) for b, k in zip(w, n)])
        return v, w


def kv_blocks_of(cost: IterationCost, cfg: SchedulerConfig) -> int:
    if cfg.kv_blocks is not None:
        return int(cfg.kv_blocks)
    return cost.kv_capacity_tokens(cfg.max_tokens, cfg.kv_fraction) // cfg.block_size


def swap_seconds_per_token(cost: IterationCost, cfg: SchedulerConfig) -> float:
    """Seconds to move one token of KV cache (this device's share) over the host link."""
    bw = cfg.swap_bytes_s
    if bw is None:
        bidir = cost.roof.hw.pcie_bytes_s_bidir
        if not bidir:
            raise InputError(f"swap: {cost.roof.hw.id} has no PCIe bandwidth in its device "
                             "data; give the host link with --swap-bw")
        bw = bidir / 2
    return cost.kv_bytes_per_token / bw


class _Replica:
    """One replica's scheduler state; :meth:`add` routes a request to it, :meth:`advance`
    runs its iterations that start before a time."""

    def __init__(self, cost: IterationCost, cfg: SchedulerConfig, total_blocks: int,
                 fast: bool = True, swap_s_per_token: float = 0.0,
                 swap_blocks: int | None = None) -> None:
        self.cost, self.cfg, self.fast = cost, cfg, fast
        self.bs = cfg.block_size
        self.total_blocks = total_blocks
        self.free = total_blocks
        self.watermark = int(cfg.watermark * total_blocks)
        self.swap = cfg.preemption == "swap"
        self.swap_s = swap_s_per_token
        self.swap_blocks = swap_blocks
        self.host_used = 0
        self.full = cfg.reserve == "full"
        self.now = 0.0
        self.kv_tokens = 0
        self.done = 0
        self.pi = 0
        self.concurrency = 0
        self.next_release = 0
        self.n = 0                              # requests routed here
        self.gid: list[int] = []
        # hot per-request state: numpy arrays (grown by doubling) so the scheduler reads
        # and updates the running batch with a few vectorized operations per iteration
        self._cap = 0
        self.inp = np.zeros(0, dtype=np.int64)
        self.out = np.zeros(0, dtype=np.int64)
        self.gen = np.zeros(0, dtype=np.int64)
        self.comp = np.zeros(0, dtype=np.int64)
        self.blocks = np.zeros(0, dtype=np.int64)
        self.last_emit = np.zeros(0)
        self.arr: list[float] = []
        self.hblocks: list[int] = []
        self.first_sched: list[float] = []
        self.first_tok: list[float] = []
        self.finish: list[float] = []
        self.npre: list[int] = []
        self.nswap: list[int] = []
        self.finish_times: list[float] = []     # nondecreasing (for the router)
        self.ft_times: list[float] = []         # first-token times, nondecreasing ...
        self.ft_cum: list[int] = [0]            # ... and the prompt tokens they completed
        self.prompt_routed = 0                  # prompt tokens routed here (to compute)
        self.metric = "prompt"                  # router load: see _route
        self.pending: list[int] = []
        self.waiting: deque[int] = deque()
        self.swapped: deque[int] = deque()
        self.one_token_prompts = False          # a prompt of 1 token was routed here
        self.nrun = 0                           # running requests (see _slots)
        self.S = np.zeros((6, 0), dtype=np.int64)
        self.rle = np.zeros(0)
        self.log = _Log()

    # -- requests -------------------------------------------------------------------------
    def add(self, gid: int, arrival: float, inp: int, out: int, comp: int = 0, gen: int = 0,
            last_emit: float = math.nan, release: bool = True) -> None:
        """A request reaching this replica at ``arrival`` with ``comp`` tokens of KV cache
        already computed and ``gen`` tokens emitted (a disaggregated decode replica receives
        ``comp = input``, ``gen = 1``). ``release=False``: closed loop, arrival set later."""
        need = -(-(inp + out - 1) // self.bs)
        if need > self.total_blocks:
            raise InputError(f"memory: request {gid} needs {inp + out - 1} tokens of KV cache, "
                             f"more than the {self.total_blocks * self.bs} that fit on "
                             f"{self.cost.roof.hw.id}")
        k = self.n
        if k == self._cap:
            self._grow()
        self.n = k + 1
        self.gid.append(gid)
        self.inp[k] = inp
        self.out[k] = out
        self.gen[k] = gen
        self.comp[k] = comp
        self.last_emit[k] = last_emit
        self.arr.append(float(arrival))
        self.hblocks.append(0)
        self.first_sched.append(math.nan)
        self.first_tok.append(math.nan)
        self.finish.append(math.nan)
        self.npre.append(0)
        self.nswap.append(0)
        if inp == 1:
            self.one_token_prompts = True
        if gen == 0:
            self.prompt_routed += int(inp)
        if release:
            self.pending.append(k)

    def _grow(self) -> None:
        cap = max(64, 2 * self._cap)
        for name in ("inp", "out", "gen", "comp", "blocks", "last_emit"):
            a = getattr(self, name)
            b = np.zeros(cap, dtype=a.dtype)
            b[:a.size] = a
            setattr(self, name, b)
        self._cap = cap

    def set_closed_loop(self, concurrency: int) -> None:
        """Closed loop over the requests added with ``release=False``: the first
        ``concurrency`` arrive at t = 0, each finish releases the next."""
        n = self.n
        self.concurrency = min(concurrency, n)
        for r in range(self.concurrency):
            self.arr[r] = 0.0
            self.pending.append(r)
        self.next_release = self.concurrency

    def outstanding(self, t: float) -> int:
        """Requests routed here and not finished by time ``t``."""
        return self.n - bisect_right(self.finish_times, t)

    def pending_prompt(self, t: float) -> int:
        """Prompt tokens routed here whose request has no first token by time ``t``."""
        return self.prompt_routed - self.ft_cum[bisect_right(self.ft_times, t)]

    def load(self, t: float) -> tuple:
        if self.metric == "requests":
            return (self.outstanding(t),)
        return (self.pending_prompt(t), self.outstanding(t))

    def _first_token(self, r: int, t: float) -> None:
        self.first_tok[r] = t
        self.ft_times.append(t)
        self.ft_cum.append(self.ft_cum[-1] + int(self.inp[r]))

    def busy(self) -> bool:
        return self.done < self.n

    def _need(self, r: int) -> int:
        """Blocks to reserve when (re)admitting request r."""
        tgt = int(self.inp[r] + self.gen[r])
        if self.full:
            tgt = max(tgt, int(self.inp[r] + self.out[r]) - 1)
        return -(-tgt // self.bs)

    def _finished(self, r: int) -> None:
        self.done += 1
        self.finish_times.append(self.now)
        if self.concurrency and self.next_release < self.n:
            k = self.next_release
            self.arr[k] = self.now
            self.pending.append(k)
            self.next_release += 1

    def _admissible(self) -> bool:
        nrun = self.nrun
        if nrun >= self.cfg.max_batch:
            return False
        if self.swapped:
            r = self.swapped[0]
        elif self.waiting:
            r = self.waiting[0]
        else:
            return False
        nb = self._need(r)
        return self.free >= nb and (self.free - nb >= self.watermark or not nrun)

    # -- the running batch ------------------------------------------------------------------
    # The running requests live in the first ``nrun`` columns of the slot matrix ``S``
    # (admission order), one row per field: request id, tokens computed (``rc``), input +
    # emitted (``rt``: tokens to compute before the next emission), input + output (``re``:
    # done when ``rt >= re``), KV blocks held (``rb``), input (``ri``); ``rle`` holds the time
    # of each one's last emitted token. The per-request arrays are written back when a
    # request is preempted.
    _ID, _C, _T, _E, _B, _I = range(6)

    def _slots(self):
        """Views of the running batch: ids, rc, rt, re, rb, ri, rle."""
        n = self.nrun
        return (*self.S[:, :n], self.rle[:n])

    def _reserve(self, n: int) -> None:
        if n > self.S.shape[1]:
            cap = max(n, 2 * self.S.shape[1], 16)
            old = self.S.shape[1]
            S = np.zeros((6, cap), dtype=np.int64)
            S[:, :old] = self.S
            rle = np.zeros(cap)
            rle[:old] = self.rle
            self.S, self.rle = S, rle

    def _load(self, ids: list) -> None:
        n = len(ids)
        self._reserve(n)
        self.nrun = n
        if n:
            ix = np.array(ids, dtype=np.int64)
            ri = self.inp[ix]
            self.S[:, :n] = (ix, self.comp[ix], ri + self.gen[ix], ri + self.out[ix],
                             self.blocks[ix], ri)
            self.rle[:n] = self.last_emit[ix]

    def _store(self) -> None:
        ids, rc, rt, re, rb, ri, rle = self._slots()
        self.comp[ids] = rc
        self.gen[ids] = rt - ri
        self.blocks[ids] = rb
        self.last_emit[ids] = rle

    # -- the scheduler ----------------------------------------------------------------------
    def advance(self, until: float = math.inf) -> None:
        """Run the iterations that start before ``until`` (all of them by default); stop
        early when every request routed here so far is done."""
        cost, cfg, bs = self.cost, self.cfg, self.bs
        inp, out, arr = self.inp, self.out, self.arr
        first_sched, first_tok, finish = self.first_sched, self.first_tok, self.finish
        pending, waiting, swapped, log = self.pending, self.waiting, self.swapped, self.log
        max_batch = cfg.max_batch
        full = self.full
        while self.done < self.n:
            while self.pi < len(pending) and arr[pending[self.pi]] <= self.now:
                waiting.append(pending[self.pi])
                self.pi += 1
            B = self.nrun
            if not B and not waiting and not swapped:
                if self.pi >= len(pending):
                    return                       # wait for more requests
                t = arr[pending[self.pi]]
                if t >= until:
                    return
                self.now = max(self.now, t)      # idle: jump to the next arrival
                continue
            if self.now >= until:
                return
            if cfg.policy == "static":
                self.now, batch = _static_batch(cost, cfg, self.now, waiting, inp, out,
                                                first_sched, first_tok, finish, log,
                                                self.total_blocks, bs)
                for r in batch:
                    self.ft_times.append(first_tok[r])
                    self.ft_cum.append(self.ft_cum[-1] + int(inp[r]))
                for r in batch:
                    self._finished(r)
                continue
            # -- fast path: a stretch of pure-decode iterations ----------------------------
            if self.fast and B and not self._admissible():
                _, rc, rt, re, rb, _, rle = self._slots()
                if (rt - rc == 1).all():
                    k = int((re - rt).min())
                    c0 = rc.astype(float)
                    # iterations j = 0..k-1 need sum max(blocks, ceil((c0 + j + 1) / bs)) blocks
                    lo, hi = 0, k                # largest m with blocks(m - 1) <= held
                    if full or self.free >= B * -(-k // bs):
                        lo = k                   # reserved up front, or room for any row
                    else:
                        held = int(rb.sum()) + self.free
                        if np.ceil((c0 + k) / bs).sum() <= held:
                            lo = k               # the whole stretch fits
                    while lo < hi:
                        mid = (lo + hi + 1) // 2
                        if np.ceil((c0 + mid) / bs).sum() <= held:
                            lo = mid
                        else:
                            hi = mid - 1
                    k = lo
                    if k >= 2:
                        dts = cost.decode_run(c0 + 1, k)
                        starts = self.now + np.concatenate([[0.0], np.cumsum(dts)[:-1]])
                        if B < max_batch and not waiting and not swapped:
                            # an arrival could be admitted: stop before the next one (or
                            # before ``until``, where the router may send one)
                            t_next = until
                            if self.pi < len(pending):
                                t_next = min(t_next, arr[pending[self.pi]])
                            if t_next < starts[-1] + dts[-1]:
                                k = int(max(1, np.searchsorted(starts, t_next, side="left")))
                                dts, starts = dts[:k], starts[:k]
                        if k >= 2:
                            log.add(starts, dts, B, B, self.kv_tokens + B * np.arange(1, k + 1))
                            log.itl.append((dts, B))
                            self.now = float(starts[-1] + dts[-1])
                            self.kv_tokens += B * k
                            rc += k
                            rt += k
                            nb = -(-rc // bs)
                            np.maximum(nb, rb, out=nb)
                            self.free -= int((nb - rb).sum())
                            rb[:] = nb
                            rle[:] = self.now
                            if (rt >= re).any():
                                self._retire()
                            continue
            self._iteration()

    def _retire(self) -> None:
        n = self.nrun
        S, rle = self.S, self.rle
        fin = np.flatnonzero(S[self._T, :n] >= S[self._E, :n])
        if fin.size == 1:                        # the common case: one request done
            j = int(fin[0])
            r, c, _, _, b, _ = S[:, j].tolist()
            S[:, j:n - 1] = S[:, j + 1:n]
            rle[j:n - 1] = rle[j + 1:n]
            done = [(r, c, b)]
        else:
            done = [(r, c, b) for r, c, _, _, b, _ in S[:, fin].T.tolist()]
            keep = np.ones(n, dtype=bool)
            keep[fin] = False
            S[:, :n - fin.size] = S[:, :n][:, keep]
            rle[:n - fin.size] = rle[:n][keep]
        self.nrun = n - fin.size
        for r, c, b in done:
            self.free += b
            self.kv_tokens -= c
            self.finish[r] = self.now
            self._finished(r)

    def _preempt_decode(self, free: int) -> tuple[int, int]:
        """Step 1 of an iteration when the decode rows need more blocks than are free:
        row by row, preempting the newest running requests. Returns (free, swapped-out
        tokens); the batch is reloaded without the preempted requests."""
        self._store()
        running = self.S[self._ID, :self.nrun].tolist()
        inp, gen, comp, blocks, bs = self.inp, self.gen, self.comp, self.blocks, self.bs
        swapped, waiting = self.swapped, self.waiting
        swap_tokens = 0
        i = 0
        while i < len(running):
            r = running[i]
            if comp[r] != inp[r] + gen[r] - 1:
                i += 1
                continue
            need = int(-(-(comp[r] + 1) // bs) - blocks[r])
            while need > free:
                v = running.pop()
                cv = int(comp[v])
                free += int(blocks[v])
                self.kv_tokens -= cv
                self.npre[v] += 1
                hb = -(-cv // bs)
                if self.swap and cv > 0 and (self.swap_blocks is None
                                             or self.host_used + hb <= self.swap_blocks):
                    swap_tokens += cv
                    self.host_used += hb
                    self.hblocks[v] = hb
                    self.nswap[v] += 1
                    swapped.appendleft(v)
                else:
                    comp[v] = 0
                    waiting.appendleft(v)
                blocks[v] = 0
                if v == r:
                    break
            else:
                if need > 0:
                    free -= need
                    blocks[r] += need
                i += 1
                continue
            break   # r itself was preempted: it was the last one
        self._load(running)
        return free, swap_tokens

    def _iteration(self) -> None:
        """One continuous-batching iteration (see the module docstring)."""
        cfg, bs, cost = self.cfg, self.bs, self.cost
        chunked = cfg.chunked
        inp, out, gen, comp = self.inp, self.out, self.gen, self.comp
        waiting, swapped = self.waiting, self.swapped
        budget = cfg.max_tokens
        swap_tokens = 0
        free = self.free
        # 1. decode rows, oldest first; preempt the newest when blocks run out. A decode
        # row needs a new block when its blocks are full (rc = rb x bs); a prefill row never
        # does (it holds the blocks of its whole target).
        ids, rc, rt, re, rb, ri, rle = self._slots()
        is_dec = rt - rc == 1
        grow = rb * bs == rc
        tot = int(np.count_nonzero(grow))
        if tot <= free:                          # no preemption (the common case)
            free -= tot
            if tot:
                rb += grow
        else:
            free, swap_tokens = self._preempt_decode(free)
            ids, rc, rt, re, rb, ri, rle = self._slots()
            is_dec = rt - rc == 1
        nrun = n0 = self.nrun
        n_dec = int(np.count_nonzero(is_dec))
        budget -= n_dec
        # rows besides the decode rows: (slot, tokens computed, new tokens, target)
        extra: list[tuple[int, int, int, int]] = []
        # 2. running prefills (chunks)
        has_prefill = False
        all_dec = n_dec == nrun
        if not all_dec:
            nd = np.flatnonzero(~is_dec)
            for j, c, t in zip(nd.tolist(), rc[nd].tolist(), rt[nd].tolist()):
                if budget <= 0:
                    break
                rem = t - c
                if not chunked and rem > budget and has_prefill:
                    continue
                q = min(rem, budget) if chunked else rem
                extra.append((j, c, q, t))
                budget -= q
                has_prefill = True
            sum_c_dec = int(rc[is_dec].sum()) if n_dec else 0
        else:
            sum_c_dec = int(rc.sum())
        # a decode row with nothing computed is a one-token prompt: prefill
        prefill = n_dec > 0 and self.one_token_prompts and bool((rc[is_dec] == 0).any())
        # 3. swapped-out requests back in, then admissions (first come, first served)
        while nrun < cfg.max_batch and budget > 0:
            if swapped:
                r, queue = swapped[0], swapped
            elif waiting:
                r, queue = waiting[0], waiting
            else:
                break
            nb = self._need(r)
            if free - nb < self.watermark and nrun:
                break
            if free < nb:
                break
            cr = int(comp[r])
            ir = int(inp[r])
            tr = ir + int(gen[r])
            qfull = tr - cr
            if not chunked and qfull > budget and has_prefill:
                break
            queue.popleft()
            free -= nb
            if queue is swapped:
                swap_tokens += cr
                self.host_used -= self.hblocks[r]
                self.hblocks[r] = 0
            self.kv_tokens += cr                 # swapped in, or KV received (disaggregated)
            if nrun == self.S.shape[1]:
                self._reserve(nrun + 1)
            self.S[:, nrun] = (r, cr, tr, ir + int(out[r]), nb, ir)
            self.rle[nrun] = self.last_emit[r]
            if math.isnan(self.first_sched[r]):
                self.first_sched[r] = self.now
            q = min(qfull, budget) if chunked else qfull
            extra.append((nrun, cr, q, tr))
            nrun += 1
            budget -= q
            if q > 1 or cr == 0:
                has_prefill = True
        self.free = free
        if nrun != n0:
            self.nrun = nrun
            ids, rc, rt, re, rb, ri, rle = self._slots()
        n_rows = n_dec + len(extra)
        if not n_rows:
            if self.pi < len(self.pending):   # nothing fits now: wait for the next arrival
                self.now = max(self.now, self.arr[self.pending[self.pi]])
                return
            raise RuntimeError("scheduler stalled")  # pragma: no cover - guarded by the checks above
        n_tok = n_dec + sum(e[2] for e in extra)
        if cost.windowless:
            # features (q, pairs, L, q x L) summed exactly over the rows, in integers (so
            # in any order); a decode row has q = 1 and attends to L = c + 1: (1, L, L, L)
            s_L = s_pairs = s_qL = sum_c_dec + n_dec
            for _, c, q, _ in extra:
                L = c + q
                s_L += L
                s_pairs += (L * (L + 1) - c * (c + 1)) // 2
                s_qL += q * L
                if q > 1 or c == 0:
                    prefill = True
            dt = cost.time_of_sums(n_tok, n_rows,
                                   np.array([float(n_tok), float(s_pairs), float(s_L),
                                             float(s_qL)]), prefill)
        else:
            x = np.zeros(nrun, dtype=np.int64)
            x[:n0] = is_dec
            for j, _, q, _ in extra:
                x[j] = q
            sched = x > 0
            c_old = rc[sched]
            q_arr = x[sched]
            prefill = bool((q_arr > 1).any()) or bool((c_old == 0).any())
            dt = cost.time(q_arr.astype(float), (c_old + q_arr).astype(float), prefill=prefill)
        dt += swap_tokens * self.swap_s
        start = self.now
        now = self.now = start + dt
        itl = self.log.itl
        n_plain = 0
        if n_dec:                                # every decode row emits a token
            if all_dec:
                self.S[self._C:self._T + 1, :n0] += 1     # rc and rt
                plain = rle[:n0] == start
            else:
                rc[:n0] += is_dec
                rt[:n0] += is_dec
                plain = rle[:n0] == start
                plain &= is_dec
            # tokens one decode step after the previous one (the iteration's ITL); a row
            # that emitted at ``start`` has emitted before: not its first token
            n_plain = int(np.count_nonzero(plain))
            if n_plain != n_dec:
                for j in np.flatnonzero(is_dec & ~plain).tolist():
                    self._emitted(j, int(ids[j]), now, int(rt[j]) - 1, int(ri[j]), rle)
            if all_dec:
                rle[:n0] = now
            else:
                rle[:n0][is_dec] = now
        for j, c, q, t in extra:
            rc[j] = c + q
            if c + q == t:
                rt[j] = t + 1
                if q == 1 and rle[j] == start and t != ri[j]:
                    n_plain += 1
                else:
                    self._emitted(j, int(ids[j]), now, t, int(ri[j]), rle)
                rle[j] = now
        if n_plain:
            itl.append((dt, n_plain))
        self.kv_tokens += n_tok
        self.log.add(start, dt, n_rows, float(n_tok), self.kv_tokens)
        if (rt >= re).any():
            self._retire()

    def _emitted(self, j: int, r: int, now: float, t: int, i: int, rle) -> None:
        """A token emitted by slot ``j`` (request ``r``, target ``t`` before the emission,
        input ``i``) other than one decode step after its previous token."""
        if t == i:
            self._first_token(r, now)
        else:    # first token after a recompute, a swap or a KV transfer
            self.log.itl.append((now - float(rle[j]), 1))


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


def _route(reps: list[_Replica], router: str, arrival: np.ndarray, inp, out, comp=None,
           gen=None, last_emit=None, concurrency: int | None = None) -> np.ndarray:
    """Send requests (global ids 0..n-1) to replicas and run them all to the end; returns
    the replica of each request."""
    n = arrival.size
    R = len(reps)
    rep = np.zeros(n, dtype=np.int64)

    def extra(k):
        return dict(comp=int(comp[k]) if comp is not None else 0,
                    gen=int(gen[k]) if gen is not None else 0,
                    last_emit=float(last_emit[k]) if last_emit is not None else math.nan)

    if concurrency:                       # closed loop: clients split over the replicas
        rep = np.arange(n) % R
        for j, rp in enumerate(reps):
            idx = np.flatnonzero(rep == j)
            for k in idx:
                rp.add(int(k), math.nan, int(inp[k]), int(out[k]), release=False, **extra(k))
            if idx.size:
                rp.set_closed_loop(len(range(j, concurrency, R)) or 1)
                rp.advance()
        return rep
    order = np.argsort(arrival, kind="stable")
    if router == "round-robin" or R == 1:
        rep[order] = np.arange(n) % R
        for k in order:
            reps[rep[k]].add(int(k), float(arrival[k]), int(inp[k]), int(out[k]), **extra(k))
        for rp in reps:
            rp.advance()
        return rep
    for rp in reps:
        rp.metric = "requests" if router == "least-requests" else "prompt"
    last = R - 1
    for k in order:
        t = float(arrival[k])
        best, best_load = 0, None
        for j0 in range(R):                       # ties: round-robin order
            j = (last + 1 + j0) % R
            rp = reps[j]
            if rp.now < t and rp.busy():
                rp.advance(t)
            load = rp.load(t)
            if best_load is None or load < best_load:
                best, best_load = j, load
                if not any(load):
                    break
        rep[k] = best
        last = best
        reps[best].add(int(k), t, int(inp[k]), int(out[k]), **extra(k))
    for rp in reps:
        rp.advance()
    return rep


def default_kv_link_bytes_s(cost: IterationCost, devices: int, gpus_per_node: int = 8) -> float:
    """Per-device bandwidth (one direction) of the link a prefill -> decode KV transfer
    crosses: the scale-up link (NVLink, else PCIe) when all ``devices`` fit in one node,
    else the network."""
    hw = cost.roof.hw
    if devices <= gpus_per_node and hw.scaleup_bytes_s():
        return float(hw.scaleup_bytes_s())
    return float(hw.scaleout_bytes_s)


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
    if wl.concurrency and router != "round-robin" and replicas > 1:
        raise InputError(f"router: {router} needs open-loop arrivals (a closed loop splits its "
                         "clients over the replicas); use --router round-robin")
    total_blocks = kv_blocks_of(cost, cfg)
    if total_blocks < 1:
        raise InputError("memory: the model's weights and activations leave no room for a KV "
                         f"cache on {cost.roof.hw.id}; use more devices (--tp) or quantize")
    swap_s = swap_seconds_per_token(cost, cfg) if cfg.preemption == "swap" else 0.0
    swap_blocks = None
    if cfg.swap_gb is not None:
        swap_blocks = int(cfg.swap_gb * 1e9 / (cost.kv_bytes_per_token * cfg.block_size))

    def new(k):
        return [_Replica(cost, cfg, total_blocks, fast, swap_s, swap_blocks) for _ in range(k)]

    n = wl.n
    inp, outl = wl.input_len, wl.output_len
    notes = list(wl.notes)
    transfer = None
    if disaggregate is None:
        roles = ("mixed",) * replicas
        reps = new(replicas)
        rep = _route(reps, router, wl.arrival_s, inp, outl, concurrency=wl.concurrency)
        merged = _merge(reps, n)
    else:
        P, D = _check_disaggregate(disaggregate, replicas, wl, cfg)
        roles = ("prefill",) * P + ("decode",) * D
        pre = new(P)
        _route(pre, router, wl.arrival_s, inp, np.ones(n, dtype=np.int64))
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
            sub = _route(dec, router, t_dec, inp[dec_idx], outl[dec_idx], comp=inp[dec_idx],
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
                     replica_kv_tokens=caps, swaps=merged["nswap"], kv_transfer_s=transfer)


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


def _merge(reps: list[_Replica], n: int, offset: int = 0) -> dict:
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
