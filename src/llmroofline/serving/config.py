"""Scheduler configuration of a serving replica and the KV memory it implies."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

import numpy as np

from ..cost import host_link_bytes_s
from ..errors import InputError
from ..specs.engine import Engine, KVMemoryRule
from .cost import IterationCost

POLICIES = ("continuous", "static")
PREEMPTIONS = ("recompute", "swap")
RESERVES = ("prompt", "full")
# SGLang's default mem_fraction_static by tensor-parallel size (server_args, 0.4-0.5); the
# sglang engine file holds the TP 1 value (docs/engines.md).
SGLANG_MEM_FRACTION_BY_TP = {1: 0.88, 2: 0.87, 4: 0.85, 8: 0.81, 16: 0.79}


@dataclass(frozen=True)
class SchedulerConfig:
    policy: str = "continuous"
    max_batch: int = 256          # running requests per iteration (vLLM max_num_seqs)
    max_tokens: int = 8192        # tokens per iteration (vLLM max_num_batched_tokens)
    chunked: bool = True          # chunked prefill
    block_size: int = 16          # KV tokens per block
    kv_fraction: float = 0.9      # fraction of the engine's KV-memory rule (kv_rule)
    kv_rule: str = "free_fraction"  # specs.engine.KVMemoryRule: free_/total_/static_fraction
    kv_capacity: str = "marketed"   # device memory the rule starts from: visible or marketed
    watermark: float = 0.01       # share of blocks kept free when admitting
    kv_blocks: int | None = None  # override the KV capacity (blocks)
    preemption: str = "recompute"  # or "swap" (KV to host memory over the host link)
    swap_gb: float | None = None  # host swap space per device, GB (None: unlimited)
    swap_bytes_s: float | None = None  # host link bytes/s per direction (None: PCIe / 2)
    reserve: str = "prompt"       # blocks reserved at admission: "prompt" or "full" (+ output)
    runtime_gb: float = 0.0       # engine memory outside weights, activations, KV, GB/device
    # engine behaviours (issue 18; defaults keep the behaviour before them)
    mix_prefill: bool = True      # prefill chunks share iterations with decodes (False:
                                  # SGLang: an iteration with prefill work runs no decodes)
    step_cpu_s: float = 0.0       # CPU/scheduling seconds added to every iteration
    request_fixed_s: float = 0.0  # seconds per request before it reaches the scheduler
                                  # (tokenize, schedule, first detokenize): added to TTFT
    cuda_graph_sizes: tuple = ()  # captured decode batch sizes; a pure-decode iteration of B
                                  # <= max rows is priced at the next captured size (padded);
                                  # larger ones run eagerly. () = no padding (as before)

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
        KVMemoryRule(self.kv_rule, self.kv_fraction, self.kv_capacity)     # checks all three
        if not 0 <= self.watermark < 1:
            raise InputError(f"watermark: must be in [0, 1), got {self.watermark!r}")
        if self.kv_blocks is not None and (isinstance(self.kv_blocks, bool) or self.kv_blocks < 1):
            raise InputError(f"kv_blocks: must be an integer >= 1, got {self.kv_blocks!r}")
        if self.preemption not in PREEMPTIONS:
            raise InputError(f"preemption: must be one of {', '.join(PREEMPTIONS)}, got "
                             f"{self.preemption!r}")
        if self.reserve not in RESERVES:
            raise InputError(f"reserve: must be one of {', '.join(RESERVES)}, got {self.reserve!r}")
        if not (np.isfinite(self.runtime_gb) and 0 <= self.runtime_gb <= 1e4):
            raise InputError(f"runtime_gb: must be a number of GB in [0, 10000], got "
                             f"{self.runtime_gb!r}")
        if self.swap_gb is not None and not (np.isfinite(self.swap_gb) and self.swap_gb >= 0):
            raise InputError(f"swap_gb: must be a number of GB >= 0, got {self.swap_gb!r}")
        if self.swap_bytes_s is not None and not (np.isfinite(self.swap_bytes_s)
                                                  and self.swap_bytes_s > 0):
            raise InputError(f"swap_bw: must be a positive bandwidth, got {self.swap_bytes_s!r}")
        for f in ("step_cpu_s", "request_fixed_s"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 60:
                raise InputError(f"{f}: must be a number of seconds in [0, 60], got {v!r}")
        if isinstance(self.cuda_graph_sizes, (list, range)):
            object.__setattr__(self, "cuda_graph_sizes", tuple(self.cuda_graph_sizes))
        sizes = self.cuda_graph_sizes
        if (not isinstance(sizes, tuple) or any(isinstance(b, bool) or not isinstance(
                b, (int, np.integer)) or not 1 <= b <= 1_000_000 for b in sizes)
                or list(sizes) != sorted(set(sizes))):
            raise InputError(f"cuda_graph_sizes: must be a tuple of increasing integers in "
                             f"[1, 1000000], got {sizes!r}")

    def padded_rows(self, rows: int) -> int:
        """Rows a pure-decode iteration of ``rows`` requests is priced at: the smallest
        captured CUDA-graph size >= rows, or ``rows`` (no sizes, or above the largest)."""
        sizes = self.cuda_graph_sizes
        if not sizes or rows > sizes[-1]:
            return rows
        return int(sizes[bisect_left(sizes, rows)])

    def graph_replay(self, rows: int) -> bool:
        """Whether a pure-decode iteration of ``rows`` replays a captured graph (no sizes
        given: every one, as ``--cuda-graphs`` prices them)."""
        return not self.cuda_graph_sizes or rows <= self.cuda_graph_sizes[-1]



def scheduler_config(engine: Engine, **given) -> SchedulerConfig:
    """The engine's scheduler defaults (batching limits, KV-memory rule, runtime memory,
    mixing, CUDA-graph sizes, per-request and per-iteration fixed costs) as a
    :class:`SchedulerConfig`, with the values in ``given`` that are not None taking
    precedence (e.g. ``--max-batch``)."""
    b, k = engine.batching, engine.kv_memory
    base = dict(max_batch=b.max_batch, max_tokens=b.max_tokens, chunked=b.chunked,
                block_size=b.block_size, reserve=b.reserve, kv_fraction=k.fraction,
                kv_rule=k.rule, kv_capacity=k.capacity, runtime_gb=engine.runtime_gb, mix_prefill=b.mix_prefill,
                cuda_graph_sizes=tuple(b.cuda_graph_sizes),
                request_fixed_s=engine.request_overhead_s,
                step_cpu_s=engine.iteration_overhead_s)
    base.update({key: v for key, v in given.items() if v is not None})
    return SchedulerConfig(**base)


def kv_blocks_of(cost: IterationCost, cfg: SchedulerConfig) -> int:
    if cfg.kv_blocks is not None:
        return int(cfg.kv_blocks)
    return cost.kv_capacity_tokens(cfg.max_tokens, cfg.kv_fraction, cfg.runtime_gb * 1e9,
                                   cfg.kv_rule, cfg.kv_capacity) // cfg.block_size


def swap_seconds_per_token(cost: IterationCost, cfg: SchedulerConfig) -> float:
    """Seconds to move one token of KV cache (this device's share) over the host link."""
    return cost.kv_bytes_per_token / host_link_bytes_s(cost.roof.hw, cfg.swap_bytes_s, "swap_bw")

