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
  MoE group, the ``tp x dp_attention`` ranks of a replica (``ep`` divides it); each expert
  is tensor-split over the remaining ``moe_tp = tp x dp_attention / ep``. Tokens travel to
  their experts and back by all-to-all.
- Attention data parallel ("DEP", ``dp_attention`` > 1): the replica's ranks form
  ``dp_attention`` attention groups of ``tp`` ranks; each group has its own batch and KV
  cache, and holds the attention, dense-MLP, shared-expert, embedding and lm_head weights
  (tensor-split over its ``tp`` ranks, replicated over the groups); the routed experts are
  sharded over all ranks. Every MoE layer exchanges the groups' tokens: all-to-all
  dispatch and combine when ``ep`` > 1, all-gather and reduce-scatter when ``ep`` = 1
  (experts tensor-split over all ranks). ``dp_attention = 1`` is the plain TP (+ EP) layout.
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
    dp_attention: int = 1             # attention-DP groups of tp ranks per replica (DEP)
    fp8_dispatch: bool = False        # attention-DP: MoE dispatch at 1 byte per element
                                      # for 8-bit activations (DeepEP; set from the engine)
    gpus_per_node: int | None = None  # devices per NVLink domain; None: the device's own
    microbatches: int | None = None   # pipeline micro-batches; default = pp
    overlap: bool = False             # hide collectives behind the layer's matmuls
    allreduce: str = "auto"
    offload_weights: float = 0.0      # fraction of weights kept in host memory, streamed per step
    offload_kv: float = 0.0           # fraction of the KV cache kept in host memory
    host_bw_bytes_s: float | None = None  # host<->device bandwidth; None: the device's PCIe

    def __post_init__(self) -> None:
        for f, hi in (("tp", 1024), ("pp", 1024), ("ep", 1024), ("dp", 1_000_000),
                      ("dp_attention", 1024), ("gpus_per_node", 1024)):
            v = getattr(self, f)
            if f == "gpus_per_node" and v is None:
                continue
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
        if self.dp_attention == 1 and self.tp % self.ep:
            raise InputError(f"ep ({self.ep}) must divide tp ({self.tp}): experts are split "
                             "inside the tensor-parallel group (or use --dp-attention so "
                             "that ep divides tp x dp_attention)")
        if self.moe_ranks % self.ep:
            raise InputError(f"ep ({self.ep}) must divide tp x dp_attention = {self.moe_ranks}"
                             f" (tp {self.tp}, dp_attention {self.dp_attention})")
        if self.dp_attention > 1 and self.pp > 1:
            raise InputError(f"dp_attention: attention data-parallel ({self.dp_attention}) is "
                             "modelled without pipeline stages (pp = 1)")

    def node_size(self, hw) -> int:
        """Devices that share the scale-up link: ``gpus_per_node`` when given, else the
        device's ``nvlink_domain`` (8 for HGX boards, 72 for an NVL72 rack)."""
        return self.gpus_per_node if self.gpus_per_node is not None else hw.nvlink_domain

    @property
    def moe_ranks(self) -> int:
        """Ranks the routed experts are sharded over: ``tp x dp_attention``."""
        return self.tp * self.dp_attention

    @property
    def moe_tp(self) -> int:
        """Tensor split of each routed expert: ``tp x dp_attention / ep``."""
        return self.moe_ranks // self.ep

    @property
    def devices_per_replica(self) -> int:
        return self.tp * self.pp * self.dp_attention

    @property
    def devices(self) -> int:
        return self.devices_per_replica * self.dp

    def rank_batch(self, batch):
        """Requests on the busiest attention-DP group: ``ceil(batch / dp_attention)``
        (the batch itself without attention-DP)."""
        import numpy as np
        if self.dp_attention == 1:
            return batch
        return np.ceil(np.asarray(batch, dtype=float) / self.dp_attention)

    @property
    def num_microbatches(self) -> int:
        return self.microbatches or self.pp

    @property
    def label(self) -> str:
        parts = [f"{n}{getattr(self, k)}" for k, n in (("tp", "TP"), ("pp", "PP"),
                                                          ("dp_attention", "ADP"), ("ep", "EP"),
                                                          ("dp", "DP"))
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
        if m.v4 and m.v4.o_groups % tp:
            raise InputError(f"tp: {tp} does not divide o_groups = {m.v4.o_groups} of {m.name}")
        g = m.linear_attn
        if g and (g.num_k_heads % tp or g.num_v_heads % tp):
            raise InputError(f"tp: {tp} must divide linear_num_key_heads = {g.num_k_heads} and "
                             f"linear_num_value_heads = {g.num_v_heads} of {m.name}")
        if m.mamba and (m.mamba.num_heads % tp or (m.mamba.n_groups % tp and tp % m.mamba.n_groups)):
            raise InputError(f"tp: {tp} must divide mamba_num_heads = {m.mamba.num_heads}, and tp "
                             f"and n_groups = {m.mamba.n_groups} must divide one another ({m.name})")
        if m.num_dense_layers and m.intermediate_size % tp:
            raise InputError(f"tp: {tp} does not divide intermediate_size = "
                             f"{m.intermediate_size} of {m.name}")
        if self.pp > m.num_layers:
            raise InputError(f"pp: {self.pp} stages but {m.name} has only {m.num_layers} layers")
        if self.ep > 1 and not m.moe:
            raise InputError(f"ep: {m.name} is not a mixture-of-experts model; use ep = 1")
        if m.moe:
            if self.ep > m.moe.num_experts:
                raise InputError(f"ep: {self.ep} ranks but {m.name} has only "
                                 f"{m.moe.num_experts} experts; use ep <= {m.moe.num_experts}")
            if m.moe.num_experts % self.ep:
                raise InputError(f"ep: {self.ep} does not divide the {m.moe.num_experts} experts "
                                 f"of {m.name}")
            split = self.moe_tp
            if m.moe.expert_ffn % split:
                raise InputError(f"tp x dp_attention / ep: {split} does not divide the expert "
                                 f"intermediate size {m.moe.expert_ffn} of {m.name}")
            if m.moe.shared_ffn % tp:
                raise InputError(f"tp: {tp} does not divide the shared-expert intermediate size "
                                 f"{m.moe.shared_ffn} of {m.name}")


def shard(m: ModelSpec, layout: Layout) -> Slice:
    """Sizes held by one tensor-parallel rank (KV heads replicated when fewer than tp):
    attention, dense MLP, shared experts and vocabulary split by ``tp``; routed experts
    ``E / ep`` per rank, each ``expert_ffn / moe_tp`` wide (``moe_tp = tp x dp_attention /
    ep``, so attention-DP groups hold replicated attention but a 1/(tp x dp_attention)
    share of the routed experts)."""
    tp = layout.tp
    kv = m.num_heads // tp if m.mla else max(m.num_kv_heads // tp, 1)
    e, g, x = m.moe, m.linear_attn, m.mamba
    return Slice(
        heads=m.num_heads // tp,
        kv_heads=kv,
        ffn=m.intermediate_size // tp,
        vocab=math.ceil(m.vocab_size / tp),
        experts=e.num_experts // layout.ep if e else 0,
        expert_ffn=e.expert_ffn // layout.moe_tp if e else 0,
        shared_ffn=e.shared_ffn // tp if e else 0,
        lin_k_heads=g.num_k_heads // tp if g else 0,
        lin_v_heads=g.num_v_heads // tp if g else 0,
        mamba_heads=x.num_heads // tp if x else 0,
        # B/C groups replicated when there are fewer than tp (like KV heads)
        mamba_groups=max(x.n_groups // tp, 1) if x else 0,
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


def alltoall_copies_per_token(moe, ep: int) -> float:
    """Copies of a token's hidden state the MoE all-to-all sends (dispatch, and combine back).

    Default: one per routed expert, ``top_k`` (a per-pair dispatch). Group-limited routing
    (``n_group`` > 1, ``topk_group`` < ``n_group``: DeepSeek-V3's node-limited routing) lets
    an engine send one copy per destination rank, and bounds the ranks a token reaches.
    With routing uniform over the experts of the chosen groups (the token's k experts are
    k distinct ones among the ``M = topk_group x E / n_group`` experts of its groups), a
    set of ``e`` of those experts is missed with probability ``C(M - e, k) / C(M, k)``:

    - ``ep`` a multiple of ``n_group`` (each group spans ``r = ep / n_group`` ranks of
      ``E / ep`` experts): copies = ``topk_group x r x (1 - C(M - E/ep, k) / C(M, k))``;
    - ``n_group`` a multiple of ``ep`` (each rank holds ``g = n_group / ep`` groups): the
      number j of the token's groups on a rank is hypergeometric, P(j) = C(g, j)
      C(n_group - g, topk_group - j) / C(n_group, topk_group), and copies =
      ``ep x sum_j P(j) (1 - C(M - j E / n_group, k) / C(M, k))``;
    - otherwise ``top_k``. The result never exceeds ``top_k``.

    DeepSeek-V3 at EP 8 (E 256, k 8, 8 groups, top 4): 4 x (1 - C(96, 8) / C(128, 8)) =
    3.63 copies instead of 8.
    """
    k, E = moe.top_k, moe.num_experts
    G, tg = getattr(moe, "n_group", 1), getattr(moe, "topk_group", 1)
    if ep <= 1 or G <= 1 or tg >= G:
        return float(k)
    M = tg * E // G
    miss = lambda e: math.comb(M - e, k) / math.comb(M, k)   # noqa: E731
    if ep % G == 0:
        copies = tg * (ep // G) * (1 - miss(E // ep))
    elif G % ep == 0:
        g = G // ep
        copies = ep * sum(math.comb(g, j) * math.comb(G - g, tg - j) / math.comb(G, tg)
                          * (1 - miss(j * E // G)) for j in range(0, min(g, tg) + 1))
    else:
        return float(k)
    return float(min(copies, k))
