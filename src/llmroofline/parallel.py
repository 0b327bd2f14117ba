"""Parallel layouts: how a model is split over devices, and the sizes that split implies.

Only sizes live here (heads per device, bytes per collective); turning bytes into seconds
is ``cost.py``'s job.

- Tensor parallel (Megatron): q/k/v and gate/up column-parallel, o and down row-parallel,
  embedding and lm_head split by vocabulary. Heads, MLP width and vocabulary are divided
  by ``tp``; KV heads too, replicated when there are fewer KV heads than devices. Norms,
  biases of row-parallel layers and the MoE router are replicated. One all-reduce of the
  layer's ``tokens x hidden`` activations after attention and one after the MLP (one per
  layer for parallel attention+MLP blocks).
- Pipeline parallel: ``pp`` stages of consecutive layers; activations cross each stage
  boundary point-to-point.
- Expert parallel (MoE): the routed experts are split over ``ep`` devices of the
  tensor-parallel group (``ep`` divides ``tp``); each expert is tensor-split over the
  remaining ``tp / ep``. Tokens travel to their experts and back by all-to-all.
- Data parallel: ``dp`` independent replicas; throughput scales, latency does not.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from dataclasses import dataclass

from .errors import InputError
from .specs.model import ModelSpec, Slice, param_groups

ALLREDUCE_ALGORITHMS = ("auto", "ring", "tree", "oneshot", "twoshot")


@dataclass(frozen=True)
class Layout:
    """Degrees of parallelism and the collective options that go with them."""

    tp: int = 1
    pp: int = 1
    ep: int = 1
    dp: int = 1
    gpus_per_node: int = 8
    microbatches: int | None = None   # pipeline micro-batches; default = pp
    overlap: bool = False             # hide collectives behind the layer's matmuls
    allreduce: str = "auto"
    offload_weights: float = 0.0      # fraction of weights kept in host memory, streamed per step
    offload_kv: float = 0.0           # fraction of the KV cache kept in host memory
    host_bw_bytes_s: float | None = None  # host<->device bandwidth; None: the device's PCIe

    def __post_init__(self) -> None:
        for f, hi in (("tp", 1024), ("pp", 1024), ("ep", 1024), ("dp", 1_000_000),
                      ("gpus_per_node", 1024)):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
                raise InputError(f"{f} must be an integer in [1, {hi}], got {v!r}")
        if self.microbatches is not None and (not isinstance(self.microbatches, int)
                                              or self.microbatches < 1):
            raise InputError(f"microbatches must be an integer >= 1, got {self.microbatches!r}")
        if self.allreduce not in ALLREDUCE_ALGORITHMS:
            raise InputError(f"allreduce must be one of {', '.join(ALLREDUCE_ALGORITHMS)}, "
                             f"got {self.allreduce!r}")
        for f in ("offload_weights", "offload_kv"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise InputError(f"{f} must be a fraction in [0, 1], got {v!r}")
        if self.host_bw_bytes_s is not None and not 1e6 <= self.host_bw_bytes_s <= 1e15:
            raise InputError(f"host_bw must be a bandwidth in [1e6, 1e15] bytes/s, got "
                             f"{self.host_bw_bytes_s!r}")
        if self.tp % self.ep:
            raise InputError(f"ep ({self.ep}) must divide tp ({self.tp}): experts are split "
                             "inside the tensor-parallel group")

    @property
    def devices_per_replica(self) -> int:
        return self.tp * self.pp

    @property
    def devices(self) -> int:
        return self.tp * self.pp * self.dp

    @property
    def num_microbatches(self) -> int:
        return self.microbatches or self.pp

    @property
    def label(self) -> str:
        parts = [f"{k.upper()}{getattr(self, k)}" for k in ("tp", "pp", "ep", "dp")
                 if getattr(self, k) > 1]
        label = " x ".join(parts) or "1 device"
        if self.offload_weights or self.offload_kv:
            label += f", offload W{self.offload_weights:g}/KV{self.offload_kv:g}"
        return label

    def check(self, m: ModelSpec) -> None:
        """Raise an InputError when the model cannot be split this way."""
        tp = self.tp
        if m.num_heads % tp:
            raise InputError(f"tp: {tp} does not divide num_attention_heads = {m.num_heads} "
                             f"of {m.name}")
        if not m.mla and m.num_kv_heads % tp and tp % m.num_kv_heads:
            raise InputError(f"tp: {tp} and num_key_value_heads = {m.num_kv_heads} of {m.name} "
                             "must divide one another")
        if m.num_moe_layers < m.num_layers and m.intermediate_size % tp:
            raise InputError(f"tp: {tp} does not divide intermediate_size = "
                             f"{m.intermediate_size} of {m.name}")
        if self.pp > m.num_layers:
            raise InputError(f"pp: {self.pp} stages but {m.name} has only {m.num_layers} layers")
        if self.ep > 1 and not m.moe:
            raise InputError(f"ep: {m.name} is not a mixture-of-experts model; use ep = 1")
        if m.moe:
            if m.moe.num_experts % self.ep:
                raise InputError(f"ep: {self.ep} does not divide the {m.moe.num_experts} experts "
                                 f"of {m.name}")
            split = tp // self.ep
            if m.moe.expert_ffn % split:
                raise InputError(f"tp/ep: {split} does not divide the expert intermediate size "
                                 f"{m.moe.expert_ffn} of {m.name}")
            if m.moe.shared_ffn % tp:
                raise InputError(f"tp: {tp} does not divide the shared-expert intermediate size "
                                 f"{m.moe.shared_ffn} of {m.name}")


def shard(m: ModelSpec, layout: Layout) -> Slice:
    """Sizes held by one tensor-parallel rank (KV heads replicated when fewer than tp)."""
    tp = layout.tp
    kv = m.num_heads // tp if m.mla else max(m.num_kv_heads // tp, 1)
    e = m.moe
    return Slice(
        heads=m.num_heads // tp,
        kv_heads=kv,
        ffn=m.intermediate_size // tp,
        vocab=math.ceil(m.vocab_size / tp),
        experts=e.num_experts // layout.ep if e else 0,
        expert_ffn=e.expert_ffn // (tp // layout.ep) if e else 0,
        shared_ffn=e.shared_ffn // tp if e else 0,
    )


def stages(m: ModelSpec, layout: Layout) -> list[range]:
    """Layers of each pipeline stage: contiguous, as even as possible (earlier stages +1)."""
    n, pp = m.num_layers, layout.pp
    base, extra = divmod(n, pp)
    out, start = [], 0
    for k in range(pp):
        size = base + (1 if k < extra else 0)
        out.append(range(start, start + size))
        start += size
    return out


def device_param_groups(m: ModelSpec, layout: Layout) -> dict[str, int]:
    """Parameters of the most loaded device (largest pipeline stage of one TP rank)."""
    sl = shard(m, layout)
    st = stages(m, layout)
    best: dict[str, int] = {}
    for k, layers in enumerate(st):
        g = param_groups(m, sl, layers, first=k == 0, last=k == len(st) - 1)
        if sum(g.values()) > sum(best.values(), 0):
            best = g
    return best


def expert_load_imbalance(tokens, top_k: int, ep: int):
    """Expected max over ``ep`` devices of routed token-expert pairs, over the mean.

    With uniform routing each of the ``n = tokens x top_k`` pairs lands on a given device
    with probability 1/ep: load ~ Binomial(n, 1/ep), mean n/ep, sd sqrt(n (1/ep)(1 - 1/ep)).
    The expected maximum of ``ep`` such loads is about mean + sd x z, with z the expected
    maximum of ``ep`` standard normals (Blom: z = Phi^-1((ep - 0.375) / (ep + 0.25))),
    capped at all pairs on one device. A Monte-Carlo test checks it within 5 %.
    """
    import numpy as np
    if ep <= 1:
        return np.ones_like(np.asarray(tokens, dtype=float))
    z = NormalDist().inv_cdf((ep - 0.375) / (ep + 0.25))
    n = np.asarray(tokens, dtype=float) * top_k
    mean = n / ep
    sd = np.sqrt(n * (1 / ep) * (1 - 1 / ep))
    return np.minimum(1 + sd * z / np.maximum(mean, 1e-30), ep)


def expected_experts(tokens, num_experts: int, top_k: int):
    """Expected distinct experts hit by ``tokens`` tokens under uniform top-k routing.

    Each expert is missed by one token with probability 1 - k/E, so
    E[distinct] = E x (1 - (1 - k/E) ** tokens).
    """
    return num_experts * (1.0 - (1.0 - top_k / num_experts) ** tokens)


def experts_hit_on_busiest_device(tokens, num_experts: int, top_k: int, ep: int):
    """Expected distinct experts the busiest of ``ep`` devices must stream in one step.

    Each expert is hit with probability p = 1 - (1 - k/E)^tokens. A device holds E/ep
    experts, so its count is about Binomial(E/ep, p); the busiest device's count is about
    mean + sd x z_ep (Blom, as in :func:`expert_load_imbalance`), capped at E/ep. With
    ep = 1 this is the plain expectation E x p.
    """
    import numpy as np
    p = expected_experts(np.asarray(tokens, dtype=float), num_experts, top_k) / num_experts
    n = num_experts / ep
    if ep <= 1:
        return n * p
    z = NormalDist().inv_cdf((ep - 0.375) / (ep + 0.25))
    return np.minimum(n * p + z * np.sqrt(n * p * (1 - p)), n)
