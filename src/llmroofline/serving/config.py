"""Scheduler configuration of a serving replica and the KV memory it implies."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, fields

import numpy as np

from ..errors import InputError, suggest
from .cost import IterationCost

POLICIES = ("continuous", "static")
PREEMPTIONS = ("recompute", "swap")
RESERVES = ("prompt", "full")
KV_MEMORY = ("free", "total", "static")
# Batching limits of an engine build (--preset): vllm = vLLM's defaults (max_num_seqs 256,
# max_num_batched_tokens 8192 with chunked prefill, 16-token blocks); trtllm = the
# TensorRT-LLM max-throughput benchmark builds of serving_calibration.csv (max batch 2048,
# max_num_tokens 2048, 64-token blocks). runtime_gb: memory the engine holds outside
# weights, activations and the KV pool, GB per device. TensorRT-LLM sizes its runtime
# buffers by the build's max batch (logits and sampling workspaces of max_batch x vocab,
# decoder state) and takes them, with the CUDA context, before the KV pool: ~3 GB at max
# batch 2048 (docs/serving.md, "Runtime memory"). vLLM's 10 % headroom covers its context.
PRESETS = {
    "vllm": {"max_batch": 256, "max_tokens": 8192, "block_size": 16, "runtime_gb": 0.0},
    "trtllm": {"max_batch": 2048, "max_tokens": 2048, "block_size": 64, "runtime_gb": 3.0},
}
# Engine releases of 2025-2026 (issue 18; docs/engines.md gives each value and its source,
# with how sure it is). Values are the engines' documented defaults as remembered from their
# docs and source, not fitted to any measurement; fields not given keep SchedulerConfig's.
_VLLM_V1_GRAPHS = (1, 2, 4) + tuple(range(8, 513, 8))
_SGLANG_GRAPHS = (1, 2, 4, 8, 12) + tuple(range(16, 257, 8))
PRESETS.update({
    # vLLM V1 engine, 0.10-0.19, OpenAI server on a >= 70 GiB GPU (H100/H200/B200):
    "vllm-v1": {
        "max_batch": 1024,       # max_num_seqs: 1024 on >= 70 GiB GPUs (256 on smaller ones)
        "max_tokens": 8192,      # max_num_batched_tokens, API server on >= 70 GiB (else 2048)
        "block_size": 16,        # block_size default on CUDA
        "runtime_gb": 1.0,       # non-torch memory (CUDA context, NCCL, cuBLAS) + CUDA graph
                                 # pools, which the profiling run subtracts; ~1 GB, estimate
        "chunked": True,         # V1: chunked prefill always on ...
        "mix_prefill": True,     # ... and chunks share iterations with decodes (decodes first)
        "kv_memory": "total",    # gpu_memory_utilization x total memory - weights - peak
        "kv_fraction": 0.9,      # activations - non-torch memory: gpu_memory_utilization 0.9
        "cuda_graph_sizes": _VLLM_V1_GRAPHS,  # [1, 2, 4] + range(8, 513, 8), padded up;
                                 # larger decode batches run eagerly (max capture size 512)
        "request_fixed_s": 0.02,  # tokenize + API server -> engine core IPC + detokenize +
                                 # HTTP streaming of the first token: ~20 ms, an estimate
        "step_cpu_s": 0.0,       # scheduler CPU time: in the profile's step_overhead
    },
    # SGLang 0.4-0.5, default server arguments on an H100/H200-class GPU:
    "sglang": {
        "max_batch": 2048,       # max_running_requests: derived from the KV pool (large)
        "max_tokens": 8192,      # chunked_prefill_size 8192 on 80-160 GB GPUs (B200: 16384)
        "block_size": 1,         # page_size 1 (token-granular radix cache)
        "runtime_gb": 0.0,       # outside the static pool: inside 1 - mem_fraction_static
        "chunked": True,
        "mix_prefill": False,    # --enable-mixed-chunk off: a prefill batch runs alone and
                                 # the decode batch waits (prefill first)
        "kv_memory": "static",   # mem_fraction_static x total memory holds weights + KV
        "kv_fraction": 0.88,     # mem_fraction_static at TP 1 (0.87 TP 2, 0.85 TP 4, 0.81
                                 # TP 8: SGLANG_MEM_FRACTION_BY_TP)
        "cuda_graph_sizes": _SGLANG_GRAPHS,   # [1, 2, 4, 8, 12] + range(16, 257, 8) up to
                                 # cuda_graph_max_bs (256 here; 160 in some releases/GPUs)
        "request_fixed_s": 0.02,  # tokenizer manager + detokenizer processes: estimate
        "step_cpu_s": 0.0,       # the overlap scheduler hides CPU scheduling
    },
    # TensorRT-LLM 1.0-1.3, PyTorch backend (trtllm-serve / LLM API defaults):
    "trtllm-1": {
        "max_batch": 2048,       # max_batch_size 2048
        "max_tokens": 8192,      # max_num_tokens 8192 (0.x builds: 2048, the trtllm preset)
        "block_size": 32,        # KvCacheConfig tokens_per_block 32
        "runtime_gb": 3.0,       # runtime buffers sized by max batch 2048 (as trtllm)
        "chunked": False,        # enable_chunked_prefill False by default
        "mix_prefill": True,     # in-flight batching: context and generation requests mix
        "kv_memory": "free",     # free_gpu_memory_fraction x memory free after weights and
        "kv_fraction": 0.9,      # runtime buffers: 0.9
        "reserve": "full",       # capacity scheduler GUARANTEED_NO_EVICT
        "cuda_graph_sizes": (),  # captured sizes are not padded to by default
                                 # (enable_padding False): not modelled
        "request_fixed_s": 0.02,  # tokenize + detokenize + HTTP: estimate
        "step_cpu_s": 0.0,       # Python executor loop: in the profile's step_overhead
    },
})
# SGLang's default mem_fraction_static by tensor-parallel size (server_args, 0.4-0.5).
SGLANG_MEM_FRACTION_BY_TP = {1: 0.88, 2: 0.87, 4: 0.85, 8: 0.81, 16: 0.79}


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
    kv_memory: str = "free"       # KV pool rule, M = device memory, W = weights, A = the
                                  # activation peak, R = runtime memory (bytes per device):
                                  # "free":   kv_fraction x (M - W - A - R)   (TensorRT-LLM)
                                  # "total":  kv_fraction x M - W - A - R     (vLLM)
                                  # "static": kv_fraction x M - W - R         (SGLang)

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
        if self.kv_memory not in KV_MEMORY:
            raise InputError(f"kv_memory: must be one of {', '.join(KV_MEMORY)}, got "
                             f"{self.kv_memory!r}")

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



def preset_limits(preset: str, **given) -> dict:
    """``PRESETS[preset]`` with the values in ``given`` that are not None taking precedence."""
    if preset not in PRESETS:
        raise InputError(f"preset: must be one of {', '.join(PRESETS)}, got {preset!r}"
                         + suggest(preset, PRESETS))
    return {k: (given[k] if given.get(k) is not None else v) for k, v in PRESETS[preset].items()}


def preset_config(preset: str, tp: int = 1, **given) -> dict:
    """SchedulerConfig keyword arguments of ``preset`` (those it sets; the others keep
    SchedulerConfig's defaults), with the values in ``given`` that are not None taking
    precedence. ``sglang``: ``kv_fraction`` = SGLANG_MEM_FRACTION_BY_TP at ``tp`` (the
    largest tabulated TP <= tp)."""
    if preset not in PRESETS:
        raise InputError(f"preset: must be one of {', '.join(PRESETS)}, got {preset!r}"
                         + suggest(preset, PRESETS))
    names = {f.name for f in fields(SchedulerConfig)}
    bad = [k for k in given if k not in names]
    if bad:
        raise InputError(f"preset: unknown scheduler setting {bad[0]!r}" + suggest(bad[0], names))
    kw = dict(PRESETS[preset])
    if preset == "sglang":
        kw["kv_fraction"] = SGLANG_MEM_FRACTION_BY_TP[max(
            t for t in SGLANG_MEM_FRACTION_BY_TP if t <= max(int(tp), 1))]
    kw.update({k: v for k, v in given.items() if v is not None})
    return kw


def kv_blocks_of(cost: IterationCost, cfg: SchedulerConfig) -> int:
    if cfg.kv_blocks is not None:
        return int(cfg.kv_blocks)
    return cost.kv_capacity_tokens(cfg.max_tokens, cfg.kv_fraction, cfg.runtime_gb * 1e9,
                                   rule=cfg.kv_memory) // cfg.block_size


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

