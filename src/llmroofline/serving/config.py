"""Scheduler configuration of a serving replica and the KV memory it implies."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..cost import host_link_bytes_s
from ..errors import InputError
from ..specs.engine import Engine, KVMemoryRule
from .cost import IterationCost

POLICIES = ("continuous", "static")
PREEMPTIONS = ("recompute", "swap")
RESERVES = ("prompt", "full")
@dataclass(frozen=True)
class SchedulerConfig:
    policy: str = "continuous"
    max_batch: int = 256          # running requests per iteration (vLLM max_num_seqs)
    max_tokens: int = 8192        # tokens per iteration (vLLM max_num_batched_tokens)
    chunked: bool = True          # chunked prefill
    block_size: int = 16          # KV tokens per block
    kv_fraction: float = 0.9      # fraction of the engine's KV-memory rule (kv_rule)
    kv_rule: str = "free_fraction"  # specs.engine.KVMemoryRule: free_/total_/static_fraction
    watermark: float = 0.01       # share of blocks kept free when admitting
    kv_blocks: int | None = None  # override the KV capacity (blocks)
    preemption: str = "recompute"  # or "swap" (KV to host memory over the host link)
    swap_gb: float | None = None  # host swap space per device, GB (None: unlimited)
    swap_bytes_s: float | None = None  # host link bytes/s per direction (None: PCIe / 2)
    reserve: str = "prompt"       # blocks reserved at admission: "prompt" or "full" (+ output)
    runtime_gb: float = 0.0       # engine memory outside weights, activations, KV, GB/device

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
        KVMemoryRule(self.kv_rule, self.kv_fraction)     # checks both
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



def scheduler_config(engine: Engine, **given) -> SchedulerConfig:
    """The engine's scheduler defaults (batching limits, KV-memory rule, runtime memory)
    as a :class:`SchedulerConfig`, with the values in ``given`` that are not None taking
    precedence (e.g. ``--max-batch``)."""
    b, k = engine.batching, engine.kv_memory
    base = dict(max_batch=b.max_batch, max_tokens=b.max_tokens, chunked=b.chunked,
                block_size=b.block_size, reserve=b.reserve, kv_fraction=k.fraction,
                kv_rule=k.rule, runtime_gb=engine.runtime_gb)
    base.update({key: v for key, v in given.items() if v is not None})
    return SchedulerConfig(**base)


def kv_blocks_of(cost: IterationCost, cfg: SchedulerConfig) -> int:
    if cfg.kv_blocks is not None:
        return int(cfg.kv_blocks)
    return cost.kv_capacity_tokens(cfg.max_tokens, cfg.kv_fraction, cfg.runtime_gb * 1e9,
                                   cfg.kv_rule) // cfg.block_size


def swap_seconds_per_token(cost: IterationCost, cfg: SchedulerConfig) -> float:
    """Seconds to move one token of KV cache (this device's share) over the host link."""
    return cost.kv_bytes_per_token / host_link_bytes_s(cost.roof.hw, cfg.swap_bytes_s, "swap_bw")

