"""Normalized transformer description built from a Hugging Face ``config.json``.

Each ``model_type`` has its own key names and quirks (falcon's ``n_head`` vs
``num_attention_heads``, gpt2's ``n_inner = None`` meaning 4 x hidden, gemma2's
alternating sliding-window layers, deepseek's MLA and dense first layers, ...).
:func:`from_hf_config` resolves them once; everything downstream only sees a
:class:`ModelSpec`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..errors import InputError

if TYPE_CHECKING:
    from .quant_config import NativeQuant

SUPPORTED_MODEL_TYPES = (
    "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma2",
    "phi3", "gptj", "falcon", "RefinedWebModel", "RefinedWeb", "opt", "gpt2", "internlm",
    "deepseek_v2", "deepseek_v3", "gpt_oss",
    # 2025-26 architectures
    "qwen3_5_text", "qwen3_5_moe_text", "qwen3_next", "nemotron_h", "deepseek_v32",
    "glm_moe_dsa", "kimi_k2", "minimax_m2", "llama4_text", "qwen3_vl_text",
    "qwen3_vl_moe_text", "mimo", "deepseek_v4",
)

# Multimodal wrappers whose ``text_config`` is the decoder modelled here (the vision or
# audio encoder is not priced; a note says so).
MULTIMODAL_TYPES = ("qwen3_5", "qwen3_5_moe", "qwen3_vl", "qwen3_vl_moe", "llama4", "kimi_k25",
                    "gemma4", "minimax_m3_vl")

# Architectures recognised but refused, with the reason (one line each).
REFUSED_MODEL_TYPES = {
    "deepseek_ref": "SGLang's DeepSeek-V4 reference config layout is not transformers' "
                    "(its keys are not checked); load the deepseek_v4 release config instead",
    "kimi_linear": "Kimi Delta Attention layers (linear_attn_config) are not modelled",
    "kimi_k3": "Kimi Delta Attention layers (linear_attn_config) and attention residual "
               "blocks (attn_res_block_size) are not modelled",
    "minimax_m3": "not in the installed transformers; its attention output gate and MTP "
                  "layout (attention_output_gate, num_mtp_modules) are not modelled",
    "minimax_m3_vl": "MiniMax-M3 (sparse_attention_config) is not modelled",
    "gemma4_text": "per-layer input embeddings (hidden_size_per_layer_input), KV sharing "
                   "across layers (num_kv_shared_layers) and K = V attention "
                   "(attention_k_eq_v) are not modelled",
    "step3p7": "Step-3.7 has no causal-LM class in the installed transformers to check its "
               "expert layout (share_expert_dim, use_moe_router_bias) against; not modelled",
    "mimo_v2_flash": "sliding-window layers with their own head counts and dims "
                     "(swa_num_attention_heads, swa_head_dim, hybrid_layer_pattern) are not "
                     "modelled",
    "nemotron-nas": "per-layer NAS block_configs (pruned attention / FFN per layer) are not "
                    "modelled",
}

LAYER_MIXERS = ("attention", "linear", "mamba", "none")
LAYER_FFNS = ("dense", "moe", "none")


@dataclass(frozen=True)
class MoESpec:
    """Mixture-of-experts feed-forward block (used in all but the first ``dense_layers``)."""

    num_experts: int
    top_k: int
    expert_ffn: int            # intermediate size of one routed expert
    shared_ffn: int = 0        # total intermediate size of the always-on shared expert(s)
    shared_gate: bool = False  # qwen2_moe: sigmoid gate Linear(hidden, 1) on the shared expert
    router_bias: bool = False
    expert_bias: bool = False  # gpt_oss: biases on the expert projections
    dense_layers: int = 0      # deepseek first_k_dense_replace: leading layers with a dense MLP
    n_group: int = 1           # group-limited routing: experts in n_group groups ...
    topk_group: int = 1        # ... a token's experts come from at most topk_group of them
    latent: int = 0            # nemotron-h latent MoE: experts run in this width (0: hidden)


@dataclass(frozen=True)
class LinearAttnSpec:
    """Gated DeltaNet layer (Qwen3-Next / Qwen3.5): ``linear_*`` keys of the config.

    Recurrent state per sequence per layer: ``num_v_heads x head_k_dim x head_v_dim``
    elements; short causal conv over ``conv_dim = 2 x num_k_heads x head_k_dim +
    num_v_heads x head_v_dim`` channels with ``conv_kernel`` taps.
    """

    num_k_heads: int
    num_v_heads: int
    head_k_dim: int
    head_v_dim: int
    conv_kernel: int
    chunk: int = 64            # chunk length of the chunked-scan prefill (fla's default)
    state_bytes: int = 4       # bytes per recurrent-state element (mamba_ssm_dtype)

    @property
    def key_dim(self) -> int:
        return self.num_k_heads * self.head_k_dim

    @property
    def value_dim(self) -> int:
        return self.num_v_heads * self.head_v_dim

    @property
    def conv_dim(self) -> int:
        return 2 * self.key_dim + self.value_dim

    def recurrent_state_bytes(self, v_heads: int) -> int:
        """State of ``v_heads`` value heads of one sequence: v_heads x dk x dv elements."""
        return v_heads * self.head_k_dim * self.head_v_dim * self.state_bytes


@dataclass(frozen=True)
class MambaSpec:
    """Mamba-2 mixer (Nemotron-H): ``mamba_*``, ``ssm_state_size``, ``n_groups``, ``conv_kernel``.

    ``d_inner = num_heads x head_dim``; SSM state per sequence per layer ``num_heads x
    head_dim x state_size`` elements; conv over ``conv_dim = d_inner + 2 x n_groups x
    state_size`` channels.
    """

    num_heads: int
    head_dim: int
    n_groups: int
    state_size: int
    conv_kernel: int
    chunk: int = 128
    bias: bool = False         # use_bias: in_proj / out_proj biases
    conv_bias: bool = True
    state_bytes: int = 4       # mamba_ssm_cache_dtype

    @property
    def d_inner(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def conv_dim(self) -> int:
        return self.d_inner + 2 * self.n_groups * self.state_size

    def recurrent_state_bytes(self, heads: int) -> int:
        """SSM state of ``heads`` heads of one sequence: heads x head_dim x state elements."""
        return heads * self.head_dim * self.state_size * self.state_bytes


CONV_STATE_BYTES = 2   # the short convs' state (last kernel - 1 inputs) is kept in 16 bits


def conv_state_bytes(channels: int, kernel: int) -> int:
    """Conv state of one sequence: the last ``kernel - 1`` inputs of each channel."""
    return channels * (kernel - 1) * CONV_STATE_BYTES


@dataclass(frozen=True)
class SparseAttnSpec:
    """DeepSeek sparse attention (DSA: DeepSeek-V3.2, GLM-5): a lightweight indexer scores
    every cached token with ``index_n_heads`` heads of ``index_head_dim``, and attention
    reads the top ``index_topk`` of them. The indexer caches one ``index_head_dim`` key per
    token per layer."""

    index_topk: int
    index_n_heads: int
    index_head_dim: int
    # GLM-5.2 ``indexer_types``: layers marked "shared" reuse an earlier layer's top-k
    # selection and have no indexer (no weights, no index-key cache, no scoring).
    shared_layers: tuple[int, ...] = ()

    def has_indexer(self, i: int) -> bool:
        return i not in self.shared_layers


@dataclass(frozen=True)
class MLASpec:
    """DeepSeek multi-head latent attention dimensions."""

    q_lora_rank: int | None
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim


@dataclass(frozen=True)
class CompressedAttnSpec:
    """DeepSeek-V4 attention (``compress_ratios``): single shared-KV head of ``head_dim``
    (K = V), low-rank query, grouped low-rank output (``o_groups`` x ``o_lora_rank``),
    per-head sinks, a ``window``-token sliding window in every layer, and per layer either
    nothing more (ratio 0), compressed sparse attention (CSA, ratio ``csa_rate``: every
    ``csa_rate`` tokens -> one compressed entry, an indexer picks ``index_topk`` of them)
    or heavily compressed attention (HCA, ratio ``hca_rate``: all compressed entries
    attended). ``hc_mult`` hyper-connection residual streams."""

    head_dim: int
    q_lora_rank: int
    o_groups: int
    o_lora_rank: int
    window: int
    layer_ratios: tuple[int, ...]
    csa_rate: int
    hca_rate: int
    hc_mult: int
    index_topk: int
    index_n_heads: int
    index_head_dim: int
    rope_dim: int = 64

    def kind(self, i: int) -> str:
        r = self.layer_ratios[i]
        return "sliding" if r == 0 else ("csa" if r == self.csa_rate else "hca")


@dataclass(frozen=True)
class ModelSpec:
    """Architecture facts the cost model needs; all sizes are element counts."""

    name: str
    model_type: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    intermediate_size: int
    max_position_embeddings: int
    gated_mlp: bool = True
    activation: str = "silu"
    norm: str = "rms"               # "rms" (weight only) or "layer" (weight + bias)
    norms_per_layer: int = 2
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    lm_head_bias: bool = False
    qk_norm: bool = False           # qwen3: RMSNorm over head_dim on q and k
    attention_sinks: bool = False   # gpt_oss: one learned logit per head
    parallel_block: bool = False    # gptj / falcon: attention and MLP read the same input
    tie_embeddings: bool = False
    learned_positions: int = 0      # rows of a learned position table (gpt2, opt), 0 for rotary
    final_norm: bool = True
    # One entry per layer: the sliding-window length, or None for full attention.
    layer_windows: tuple[int | None, ...] = ()
    moe: MoESpec | None = None
    mla: MLASpec | None = None
    # One entry per layer: the token mixer ("attention", "linear" = Gated DeltaNet, "mamba" =
    # Mamba-2, "none") and the feed-forward block ("dense", "moe", "none"). Default: attention
    # everywhere; MoE in all layers from moe.dense_layers on.
    layer_mixers: tuple[str, ...] = ()
    layer_ffns: tuple[str, ...] = ()
    # Llama-4 chunked local attention: True where the layer's window is a chunk (a query
    # sees the keys of its own chunk of ``window`` tokens), not a sliding window.
    layer_chunked: tuple[bool, ...] = ()
    linear_attn: LinearAttnSpec | None = None
    mamba: MambaSpec | None = None
    sparse: SparseAttnSpec | None = None
    v4: CompressedAttnSpec | None = None   # deepseek-v4 compressed attention + mHC
    attn_output_gate: bool = False  # qwen3.5/qwen3-next: q_proj also emits a sigmoid gate
    qk_norm_full: bool = False      # minimax-m2: q/k RMSNorm over all heads (not head_dim)
    mtp_layers: int = 0             # multi-token-prediction modules (not in transformers' count)
    notes: tuple[str, ...] = field(default=(), compare=False)
    # The release's own weight formats (quantization_config / hf_quant_config.json).
    native_quant: NativeQuant | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        n = self.num_layers
        if not self.layer_windows:
            object.__setattr__(self, "layer_windows", (None,) * n)
        if not self.layer_mixers:
            object.__setattr__(self, "layer_mixers", ("attention",) * n)
        if not self.layer_ffns:
            d = self.moe.dense_layers if self.moe else n
            object.__setattr__(self, "layer_ffns", tuple("moe" if self.moe and i >= d else "dense"
                                                         for i in range(n)))
        if not self.layer_chunked:
            object.__setattr__(self, "layer_chunked", (False,) * n)
        for fname, allowed in (("layer_mixers", LAYER_MIXERS), ("layer_ffns", LAYER_FFNS)):
            v = getattr(self, fname)
            if len(v) != n:
                raise InputError(f"model {self.name}: {fname} has {len(v)} entries, expected "
                                 f"num_hidden_layers = {n}")
            bad = sorted(set(v) - set(allowed))
            if bad:
                raise InputError(f"model {self.name}: unknown layer kind {bad[0]!r} in {fname}")
        if "linear" in self.layer_mixers and self.linear_attn is None:
            raise InputError(f"model {self.name}: linear-attention layers need linear_* sizes")
        if "mamba" in self.layer_mixers and self.mamba is None:
            raise InputError(f"model {self.name}: mamba layers need mamba_* sizes")
        if "moe" in self.layer_ffns and self.moe is None:
            raise InputError(f"model {self.name}: MoE layers need num_experts")
        if self.linear_attn and self.linear_attn.num_v_heads % self.linear_attn.num_k_heads:
            raise InputError(f"model {self.name}: linear_num_value_heads "
                             f"({self.linear_attn.num_v_heads}) must be a multiple of "
                             f"linear_num_key_heads ({self.linear_attn.num_k_heads})")
        if self.mamba and self.mamba.num_heads % self.mamba.n_groups:
            raise InputError(f"model {self.name}: mamba_num_heads ({self.mamba.num_heads}) must be "
                             f"a multiple of n_groups ({self.mamba.n_groups})")
        for fname in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                      "vocab_size", "intermediate_size"):
            v = getattr(self, fname)
            if not isinstance(v, int) or v < 1:
                raise InputError(f"model {self.name}: {fname} must be a positive integer, got {v!r}")
        if self.num_heads % self.num_kv_heads:
            raise InputError(
                f"model {self.name}: num_attention_heads ({self.num_heads}) must be a multiple "
                f"of num_key_value_heads ({self.num_kv_heads})")
        for w in self.layer_windows:
            if w is not None and (isinstance(w, bool) or not isinstance(w, int) or w < 1):
                raise InputError(f"model {self.name}: sliding_window must be a positive integer "
                                 f"or null, got {w!r}")
        if len(self.layer_windows) != self.num_layers:
            raise InputError(f"model {self.name}: layer_types has {len(self.layer_windows)} "
                             f"entries, expected num_hidden_layers = {self.num_layers}")

    # -- derived sizes -------------------------------------------------------------
    @property
    def q_dim(self) -> int:
        """Width of the query projection output (heads x qk head dim)."""
        d = self.mla.qk_head_dim if self.mla else self.head_dim
        return self.num_heads * d

    @property
    def kv_dim(self) -> int:
        """Width of one of K or V (kv heads x head dim); MLA: see :attr:`kv_cache_width`."""
        return self.num_kv_heads * self.head_dim

    def kv_cache_width(self) -> int:
        """Elements cached per token per layer (K and V together).

        Standard attention: 2 x kv_heads x head_dim. MLA: the compressed latent,
        kv_lora_rank + qk_rope_head_dim, shared by K and V and by all heads.
        """
        if self.mla:
            return self.mla.kv_lora_rank + self.mla.qk_rope_head_dim
        return 2 * self.num_kv_heads * self.head_dim

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    def moe_layer(self, i: int) -> bool:
        return self.layer_ffns[i] == "moe"

    @property
    def num_moe_layers(self) -> int:
        return self.layer_ffns.count("moe")

    @property
    def num_dense_layers(self) -> int:
        return self.layer_ffns.count("dense")

    @property
    def attention_layers(self) -> tuple[int, ...]:
        """Indices of the layers with (softmax) attention, i.e. the ones holding a KV cache."""
        return tuple(i for i, k in enumerate(self.layer_mixers) if k == "attention")

    @property
    def is_hybrid(self) -> bool:
        return self.linear_attn is not None or self.mamba is not None


# -- parameter counting -------------------------------------------------------------
@dataclass(frozen=True)
class Slice:
    """Sizes held by one device: the whole model, or one tensor/expert-parallel rank."""

    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    experts: int = 0       # routed experts held
    expert_ffn: int = 0    # intermediate size of the held slice of one expert
    shared_ffn: int = 0
    lin_k_heads: int = 0   # Gated DeltaNet key / value heads held
    lin_v_heads: int = 0
    mamba_heads: int = 0   # Mamba-2 heads / B,C groups held
    mamba_groups: int = 0


def full_slice(m: ModelSpec) -> Slice:
    e, g, s = m.moe, m.linear_attn, m.mamba
    return Slice(m.num_heads, m.num_kv_heads, m.intermediate_size, m.vocab_size,
                 e.num_experts if e else 0, e.expert_ffn if e else 0, e.shared_ffn if e else 0,
                 g.num_k_heads if g else 0, g.num_v_heads if g else 0,
                 s.num_heads if s else 0, s.n_groups if s else 0)


def _mlp_split(m: ModelSpec, ffn: int, bias: bool, row_bias: bool = True,
               width: int | None = None) -> tuple[int, int]:
    """(matmul weights, biases) of one MLP of width ``ffn`` on a ``width`` (default hidden)
    stream; ``row_bias``: the output bias."""
    h = m.hidden_size if width is None else width
    up = (2 if m.gated_mlp else 1) * ffn
    return h * up + ffn * h, ((up + (h if row_bias else 0)) if bias else 0)


def _attention_params(m: ModelSpec, sl: Slice, i: int = -1) -> tuple[int, int]:
    """(matmul weights, small params) of one softmax-attention block (MLA, GQA or
    DeepSeek-V4's compressed attention)."""
    h = m.hidden_size
    small = 0
    if m.v4:
        return _v4_attention_params(m, sl, i)
    if m.mla:
        a = m.mla
        q = (h * a.q_lora_rank + a.q_lora_rank * sl.heads * a.qk_head_dim) if a.q_lora_rank \
            else h * sl.heads * a.qk_head_dim
        linear = q + h * (a.kv_lora_rank + a.qk_rope_head_dim) \
            + a.kv_lora_rank * sl.heads * (a.qk_nope_head_dim + a.v_head_dim) \
            + sl.heads * a.v_head_dim * h
        small += (a.q_lora_rank or 0) + a.kv_lora_rank + (h if m.o_bias else 0)
        if m.sparse and m.sparse.has_indexer(i):   # DSA indexer (replicated): wq_b, wk, weights_proj; k_norm LayerNorm
            x = m.sparse
            linear += (a.q_lora_rank or h) * x.index_n_heads * x.index_head_dim \
                + h * x.index_head_dim + h * x.index_n_heads
            small += 2 * x.index_head_dim
        return linear, small
    q, kv = sl.heads * m.head_dim, sl.kv_heads * m.head_dim
    q_out = 2 * q if m.attn_output_gate else q
    linear = h * (q_out + 2 * kv) + q * h
    small += ((q_out + 2 * kv) if m.qkv_bias else 0) + (h if m.o_bias else 0)
    if m.qk_norm:
        small += (q + kv) if m.qk_norm_full else 2 * m.head_dim
    small += sl.heads if m.attention_sinks else 0
    return linear, small


def linear_by_class(m: ModelSpec, sl: Slice | None = None,
                    layers: range | None = None) -> dict[str, int]:
    """The decoder matmul weights of :func:`param_groups` (``linear``) split by weight
    class (``precision.WEIGHT_CLASSES``): routed experts (with the latent projections of a
    latent MoE), shared experts and dense MLPs by :func:`_mlp_split`; the token mixer is the
    rest of each layer, ``attn_out`` its output projection (attention o_proj, DeepSeek-V4's
    o_a + o_b, the linear-attention / Mamba out_proj) and ``attn_qkv`` everything else."""
    sl = sl or full_slice(m)
    h = m.hidden_size
    out = dict.fromkeys(("attn_qkv", "attn_out", "dense_mlp", "shared_experts", "experts"), 0)
    for i in (layers if layers is not None else range(m.num_layers)):
        lin, _ = layer_params(m, i, sl)
        ffn, mixer = m.layer_ffns[i], m.layer_mixers[i]
        mlp = 0
        if ffn == "moe":
            e = m.moe
            experts = sl.experts * _mlp_split(m, sl.expert_ffn, e.expert_bias,
                                              width=e.latent or None)[0] + 2 * h * e.latent
            shared = _mlp_split(m, sl.shared_ffn, False)[0] if e.shared_ffn else 0
            out["experts"] += experts
            out["shared_experts"] += shared
            mlp = experts + shared
        elif ffn == "dense":
            mlp = _mlp_split(m, sl.ffn, m.mlp_bias)[0]
            out["dense_mlp"] += mlp
        if mixer == "attention" and m.v4:
            v = m.v4
            o = v.o_lora_rank * sl.heads * v.head_dim \
                + (v.o_groups * sl.heads // m.num_heads) * v.o_lora_rank * h
        elif mixer == "attention":
            o = sl.heads * (m.mla.v_head_dim if m.mla else m.head_dim) * h
        elif mixer == "linear":
            o = sl.lin_v_heads * m.linear_attn.head_v_dim * h
        elif mixer == "mamba":
            o = sl.mamba_heads * m.mamba.head_dim * h
        else:
            o = 0
        out["attn_out"] += o
        out["attn_qkv"] += lin - mlp - o
    return out


def _v4_attention_params(m: ModelSpec, sl: Slice, i: int) -> tuple[int, int]:
    """DeepSeek-V4 attention of layer ``i`` (transformers' DeepseekV4Attention):
    q_a (h -> q_lora), q_b (q_lora -> heads x D), kv_proj (h -> D), grouped o_a
    (block-diagonal: o_lora x heads x D in all), o_b (o_groups x o_lora -> h); small:
    q_a / kv norms, sinks. CSA layers add a compressor (kv and gate h -> 2 D, position
    bias csa_rate x 2 D, norm D) and its indexer (kv and gate h -> 2 Di, position bias
    csa_rate x 2 Di, norm Di, q_b q_lora -> Hi x Di, weights_proj h -> Hi); HCA layers a
    compressor (kv and gate h -> D, position bias hca_rate x D, norm D). Plus the two
    hyper-connections of the layer (fn: (2 + N) N x N h, base (2 + N) N, scale 3 each)."""
    v, h = m.v4, m.hidden_size
    D, H, ql = v.head_dim, sl.heads, v.q_lora_rank
    g = v.o_groups * H // m.num_heads
    linear = h * ql + ql * H * D + h * D + v.o_lora_rank * H * D + g * v.o_lora_rank * h
    small = ql + D + H
    kind = v.kind(i)
    if kind == "csa":
        Di, Hi = v.index_head_dim, v.index_n_heads
        linear += 2 * h * 2 * D + 2 * h * 2 * Di + ql * Hi * Di + h * Hi
        small += v.csa_rate * 2 * D + D + v.csa_rate * 2 * Di + Di
    elif kind == "hca":
        linear += 2 * h * D
        small += v.hca_rate * D + D
    N = v.hc_mult
    small += 2 * ((2 + N) * N * N * h + (2 + N) * N + 3)
    return linear, small


def _linear_attn_params(m: ModelSpec, sl: Slice, i: int = -1) -> tuple[int, int]:
    """Gated DeltaNet: in_proj_qkv (h -> 2 kd + vd), in_proj_z (h -> vd), in_proj_b/a
    (h -> nv each), out_proj (vd -> h); small: depthwise conv (conv_dim x kernel, no bias),
    dt_bias and A_log (nv each), gated RMSNorm (head_v_dim)."""
    g, h = m.linear_attn, m.hidden_size
    kd, vd, nv = sl.lin_k_heads * g.head_k_dim, sl.lin_v_heads * g.head_v_dim, sl.lin_v_heads
    linear = h * (2 * kd + 2 * vd + 2 * nv) + vd * h
    small = (2 * kd + vd) * g.conv_kernel + 2 * nv + g.head_v_dim
    return linear, small


def _mamba_params(m: ModelSpec, sl: Slice, i: int = -1) -> tuple[int, int]:
    """Mamba-2: in_proj (h -> 2 d_inner + 2 groups x state + heads), out_proj (d_inner -> h);
    small: depthwise conv (conv_dim x kernel, + conv_dim bias), dt_bias, A_log, D (heads
    each), gated RMSNorm (d_inner), projection biases when ``use_bias``."""
    s, h = m.mamba, m.hidden_size
    di, gn, nh = sl.mamba_heads * s.head_dim, sl.mamba_groups * s.state_size, sl.mamba_heads
    in_out = 2 * di + 2 * gn + nh
    linear = h * in_out + di * h
    conv = di + 2 * gn
    small = conv * s.conv_kernel + (conv if s.conv_bias else 0) + 3 * nh + di
    small += (in_out + h) if s.bias else 0
    return linear, small


def _moe_params(m: ModelSpec, sl: Slice) -> tuple[int, int]:
    """Routed experts held, router (+ bias), shared expert(s) (+ qwen gate), latent
    projections (nemotron-h latent MoE)."""
    e, h = m.moe, m.hidden_size
    w, b = _mlp_split(m, sl.expert_ffn, e.expert_bias, width=e.latent or None)
    linear = sl.experts * w
    small = sl.experts * b + h * e.num_experts + (e.num_experts if e.router_bias else 0)
    if e.latent:
        linear += 2 * h * e.latent
    if e.shared_ffn:
        w, _ = _mlp_split(m, sl.shared_ffn, False)
        linear += w
        small += h if e.shared_gate else 0
    return linear, small


_MIXER_PARAMS = {"attention": _attention_params, "linear": _linear_attn_params,
                 "mamba": _mamba_params, "none": lambda m, sl, i: (0, 0)}


def layer_params(m: ModelSpec, i: int, sl: Slice | None = None) -> tuple[int, int]:
    """(matmul weights, small params) of layer ``i`` held by a device with slice ``sl``.

    Matmul weights are what ``wbits`` quantizes; small params (norms, biases, q/k norms,
    attention sinks, the MoE router and shared-expert gate, short convolutions, SSM
    decay/step parameters) stay 16-bit. Replicated parts (norms, row-parallel biases,
    router, MLA down-projections, the DSA indexer) count in full on every device.
    """
    sl = sl or full_slice(m)
    linear, small = _MIXER_PARAMS[m.layer_mixers[i]](m, sl, i)
    small += m.norms_per_layer * norm_params(m)
    ffn = m.layer_ffns[i]
    if ffn == "moe":
        lin, sm = _moe_params(m, sl)
    elif ffn == "dense":
        lin, sm = _mlp_split(m, sl.ffn, m.mlp_bias)
    else:
        lin, sm = 0, 0
    return linear + lin, small + sm


def norm_params(m: ModelSpec) -> int:
    return m.hidden_size * (2 if m.norm == "layer" else 1)


def param_groups(m: ModelSpec, sl: Slice | None = None, layers: range | None = None,
                 first: bool = True, last: bool = True) -> dict[str, int]:
    """Parameters held by a device, split by how they are stored and quantized.

    ``linear``: matmul weights of the decoder layers (quantized with ``wbits``);
    ``small``: norms, biases, router; ``embedding``: token (+ position) tables;
    ``lm_head``: the output projection when not tied to the embedding.
    ``layers``: the layers this device holds (a pipeline stage; default all);
    ``first``/``last``: whether it holds the embedding / the final norm and lm_head.
    """
    sl = sl or full_slice(m)
    h = m.hidden_size
    linear = small = 0
    for i in (layers if layers is not None else range(m.num_layers)):
        lin, sm = layer_params(m, i, sl)
        linear += lin
        small += sm
    embedding = (sl.vocab * h + m.learned_positions * h) if (first or (last and m.tie_embeddings)) else 0
    lm_head = 0
    if last:
        small += (norm_params(m) if m.final_norm else 0) + (sl.vocab if m.lm_head_bias else 0)
        if m.v4:   # hyper-connection head: hc_fn N x N h, hc_base N, hc_scale 1
            N = m.v4.hc_mult
            small += N * N * h + N + 1
        lm_head = 0 if m.tie_embeddings else sl.vocab * h
    return {"linear": linear, "small": small, "embedding": embedding, "lm_head": lm_head}


def param_count(m: ModelSpec) -> int:
    """Total parameters, counting a tied embedding/lm_head once."""
    return sum(param_groups(m).values())


def active_param_count(m: ModelSpec) -> int:
    """Parameters touched per token (MoE: top_k routed experts, not all of them)."""
    total = param_count(m)
    if m.moe:
        w, b = _mlp_split(m, m.moe.expert_ffn, m.moe.expert_bias, width=m.moe.latent or None)
        total -= m.num_moe_layers * (m.moe.num_experts - m.moe.top_k) * (w + b)
    return total


def mtp_param_count(m: ModelSpec) -> int:
    """Parameters of the multi-token-prediction modules (``num_nextn_predict_layers``,
    ``mtp_num_hidden_layers``, ``num_mtp_modules``), which transformers does not
    instantiate: per module its decoder block(s) (:func:`mtp_draft`: a layer like the
    model's last one; Nemotron-H: the blocks of ``mtp_hybrid_override_pattern``), the
    ``eh_proj`` / ``fc`` projection (2 hidden -> hidden) and three norms (embedding,
    hidden, output); the embedding and lm_head are shared with the main model."""
    if not m.mtp_layers:
        return 0
    d = _mtp_module(m)
    blocks = sum(sum(layer_params(d, i)) for i in range(d.num_layers))
    h = m.hidden_size
    return m.mtp_layers * (blocks + 2 * h * h + 3 * norm_params(m))


def _mtp_module(m: ModelSpec) -> ModelSpec:
    blocks = m.extra.get("mtp_blocks")   # ((mixer, ffn), ...) of one module; default: last layer
    if not blocks:
        last = m.num_layers - 1
        blocks = ((m.layer_mixers[last], m.layer_ffns[last]),)
        windows, chunked = (m.layer_windows[last],), (m.layer_chunked[last],)
    else:
        windows, chunked = (None,) * len(blocks), (False,) * len(blocks)
    return replace(m, name=f"{m.name} MTP", num_layers=len(blocks), layer_windows=windows,
                   layer_mixers=tuple(b[0] for b in blocks), layer_ffns=tuple(b[1] for b in blocks),
                   layer_chunked=chunked,
                   moe=replace(m.moe, dense_layers=0) if m.moe else None,
                   sparse=replace(m.sparse, shared_layers=()) if m.sparse else None,
                   mtp_layers=0, notes=(), extra={**m.extra, "mtp_of": m.name,
                                                  "mtp_modules": m.mtp_layers})


def mtp_draft(m: ModelSpec) -> ModelSpec:
    """The model's own multi-token-prediction module as a draft model.

    One draft step runs one MTP module: ``eh_proj`` (2 hidden -> hidden, on the concatenated
    normed embedding and hidden state), its decoder block(s), the shared final norm and
    lm_head. The embedding and lm_head are the target's (``speculative`` counts only
    :func:`mtp_param_count` as extra weights).
    """
    if not m.mtp_layers:
        raise InputError(f"mtp: {m.name} has no multi-token-prediction modules "
                         "(num_nextn_predict_layers / mtp_num_hidden_layers is 0 or absent)")
    return _mtp_module(m)


# -- Hugging Face config normalization ---------------------------------------------
def _get(cfg: Mapping[str, Any], *keys: str, default: Any = None, required: bool = False,
         name: str = "") -> Any:
    for k in keys:
        if k in cfg and cfg[k] is not None:
            return cfg[k]
    if required:
        raise InputError(f"config.json of {name or 'model'}: missing field '{keys[0]}'"
                         + (f" (or {', '.join(keys[1:])})" if len(keys) > 1 else ""))
    return default


def _int(cfg: Mapping[str, Any], *keys: str, name: str, default: Any = None,
         required: bool = True) -> int:
    v = _get(cfg, *keys, default=default, required=required and default is None, name=name)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise InputError(f"config.json of {name}: field '{keys[0]}' must be a positive integer, got {v!r}")
    return v


_DTYPE_BYTES = {"float32": 4, "fp32": 4, "bfloat16": 2, "float16": 2, "fp16": 2, "bf16": 2}

# Keys that change the architecture in ways no builder models: present -> refused.
_UNMODELLED_KEYS = {
    "compress_ratios": "compressed attention (per-layer KV compression) is not modelled",
    "hc_mult": "hyper-connections (hc_mult parallel residual streams) are not modelled",
    "linear_attn_config": "Kimi Delta Attention layers are not modelled",
    "block_configs": "per-layer NAS block_configs are not modelled",
    "num_kv_shared_layers": "KV sharing across layers is not modelled",
    "hidden_size_per_layer_input": "per-layer input embeddings are not modelled",
}

KNOWN_LAYER_TYPES = ("full_attention", "sliding_attention", "linear_attention",
                     "chunked_attention", "deepseek_sparse_attention")


def from_hf_config(cfg: Mapping[str, Any], name: str = "custom",
                   hf_quant_config: Mapping[str, Any] | None = None) -> ModelSpec:
    """Normalize a Hugging Face ``config.json`` dict into a :class:`ModelSpec`;
    ``hf_quant_config``: ModelOpt's ``hf_quant_config.json`` found beside it, if any.

    Multimodal releases (``text_config``) model their text decoder; the vision/audio
    encoder is not priced and a note on the spec says so. Architectures and keys that
    cannot be modelled are refused with one line naming the key and why.
    """
    spec = _from_hf_config(cfg, name)
    qc = cfg.get("quantization_config")
    if qc is not None or hf_quant_config is not None:
        from .quant_config import parse_native_quant
        nq = parse_native_quant(spec, qc, hf_quant_config, name)
        if nq is not None:
            spec = replace(spec, native_quant=nq)
    return spec


def _from_hf_config(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    if not isinstance(cfg, Mapping):
        raise InputError(f"config.json of {name}: expected a JSON object")
    notes: tuple[str, ...] = ()
    mt = cfg.get("model_type")
    if isinstance(cfg.get("text_config"), Mapping) and (mt in MULTIMODAL_TYPES or
                                                        "num_hidden_layers" not in cfg):
        text = dict(cfg["text_config"])
        for k in ("tie_word_embeddings", "quantization_config"):
            if k in cfg and k not in text:
                text[k] = cfg[k]
        enc = [k for k in ("vision_config", "audio_config") if k in cfg]
        notes = (f"{name}: multimodal release ({mt}); the text decoder is modelled, the "
                 + (" and ".join(k.split("_")[0] for k in enc) or "vision") +
                 " encoder is not priced",)
        cfg, mt = text, text.get("model_type") or mt
        if mt in MULTIMODAL_TYPES:   # wrappers whose text part carries the wrapper's name
            mt = {"kimi_k25": "kimi_k2", "qwen3_5": "qwen3_5_text",
                  "qwen3_5_moe": "qwen3_5_moe_text"}.get(mt, mt)
    if mt is None and {"num_hidden_layers", "hidden_size", "ffn_dim"} <= set(cfg):
        mt = "opt"  # the metaseq OPT-175B hyper-parameters carry no model_type
    if mt in REFUSED_MODEL_TYPES:
        raise InputError(f"config.json of {name}: model_type {mt!r} is not supported: "
                         f"{REFUSED_MODEL_TYPES[mt]}")
    if mt not in SUPPORTED_MODEL_TYPES:
        raise InputError(f"config.json of {name}: unsupported model_type {mt!r}; supported: "
                         + ", ".join(t for t in SUPPORTED_MODEL_TYPES if not t.startswith("Refined")))
    for k, why in _UNMODELLED_KEYS.items():
        if cfg.get(k) and not (mt == "deepseek_v4" and k in ("compress_ratios", "hc_mult")):
            raise InputError(f"config.json of {name}: key '{k}' cannot be modelled: {why}")
    types = cfg.get("layer_types")
    if types is not None:
        if not isinstance(types, list):
            raise InputError(f"config.json of {name}: layer_types must be a list")
        if mt != "nemotron_h":
            bad = [t for t in types if t not in KNOWN_LAYER_TYPES
                   or (t == "deepseek_sparse_attention" and not cfg.get("index_topk"))]
            if bad:
                raise InputError(f"config.json of {name}: layer_types has unknown attention kind "
                                 f"{bad[0]!r} (known: {', '.join(KNOWN_LAYER_TYPES)})")
    spec = _BUILDERS[mt](cfg, name, mt)
    if notes:
        spec = replace(spec, notes=spec.notes + notes)
    return spec


def _common(cfg: Mapping[str, Any], name: str) -> dict[str, Any]:
    h = _int(cfg, "hidden_size", "n_embd", "d_model", name=name)
    heads = _int(cfg, "num_attention_heads", "n_head", name=name)
    return {
        "name": name,
        "hidden_size": h,
        "num_layers": _int(cfg, "num_hidden_layers", "n_layer", "num_layers", name=name),
        "num_heads": heads,
        "num_kv_heads": _int(cfg, "num_key_value_heads", name=name, default=heads),
        "head_dim": _int(cfg, "head_dim", name=name, default=h // heads),
        "vocab_size": _int(cfg, "vocab_size", name=name),
        "max_position_embeddings": _int(cfg, "max_position_embeddings", "n_positions", name=name,
                                        default=2048),
    }


def _windows(cfg: Mapping[str, Any], n: int) -> tuple[int | None, ...]:
    """Per-layer sliding windows from ``layer_types`` or the global window fields.

    Qwen2-style ``use_sliding_window`` with ``max_window_layers``: only layers
    ``i >= max_window_layers`` slide (as transformers builds them); the rest are full.
    """
    w = cfg.get("sliding_window")
    if cfg.get("use_sliding_window") is False or not w:
        return (None,) * n
    types = cfg.get("layer_types")
    if types:
        return tuple(w if t == "sliding_attention" else None for t in types)
    first = cfg.get("max_window_layers")
    if cfg.get("use_sliding_window") and isinstance(first, int) and not isinstance(first, bool):
        return tuple(w if i >= first else None for i in range(n))
    return (w,) * n


def _interleaved_ffns(cfg: Mapping[str, Any], n: int, has_moe: bool) -> tuple[str, ...]:
    """Qwen-style dense/MoE interleaving: layer i is MoE unless it is in ``mlp_only_layers``
    or ``(i + 1) % decoder_sparse_step != 0`` (transformers' rule)."""
    step = cfg.get("decoder_sparse_step") or 1
    only = set(cfg.get("mlp_only_layers") or ())
    return tuple("moe" if has_moe and i not in only and (i + 1) % step == 0 else "dense"
                 for i in range(n))


def _llama_like(cfg, name, mt):
    c = _common(cfg, name)
    n = c["num_layers"]
    kw: dict[str, Any] = dict(
        model_type=mt,
        intermediate_size=_int(cfg, "intermediate_size", name=name),
        activation=cfg.get("hidden_act", "silu"),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        layer_windows=_windows(cfg, n),
    )
    if mt in ("llama", "mistral", "mixtral", "internlm", "phi3", "qwen3", "qwen3_moe"):
        bias = bool(cfg.get("attention_bias", cfg.get("bias", False)))
        kw.update(qkv_bias=bias, o_bias=bias)
    if mt in ("qwen2", "qwen2_moe", "mimo"):
        kw.update(qkv_bias=True)  # Qwen2 always has q/k/v biases, no o bias
    if mt in ("qwen3", "qwen3_moe"):
        kw.update(qk_norm=True)
    if mt in ("qwen3_vl_text", "qwen3_vl_moe_text"):
        bias = bool(cfg.get("attention_bias", False))
        kw.update(qkv_bias=bias, o_bias=bias, qk_norm=True)
        mt = kw["model_type"] = "qwen3_moe" if mt == "qwen3_vl_moe_text" else "qwen3"
    if mt == "internlm":
        # InternLM's remote code has one switch, "bias", for q/k/v/o.
        b = bool(cfg.get("bias", True))
        kw.update(qkv_bias=b, o_bias=b)
    if mt == "mixtral":
        kw["moe"] = MoESpec(num_experts=_int(cfg, "num_local_experts", name=name),
                            top_k=_int(cfg, "num_experts_per_tok", name=name),
                            expert_ffn=kw["intermediate_size"])
    if mt == "qwen2_moe":
        kw["moe"] = MoESpec(num_experts=_int(cfg, "num_experts", name=name),
                            top_k=_int(cfg, "num_experts_per_tok", name=name),
                            expert_ffn=_int(cfg, "moe_intermediate_size", name=name),
                            shared_ffn=cfg.get("shared_expert_intermediate_size") or 0,
                            shared_gate=bool(cfg.get("shared_expert_intermediate_size")))
    if mt == "qwen3_moe":
        kw["moe"] = MoESpec(num_experts=_int(cfg, "num_experts", "num_local_experts", name=name),
                            top_k=_int(cfg, "num_experts_per_tok", name=name),
                            expert_ffn=_int(cfg, "moe_intermediate_size", name=name))
    if mt in ("qwen2_moe", "qwen3_moe"):
        kw["layer_ffns"] = _interleaved_ffns(cfg, n, True)
    if mt == "mimo":
        kw["mtp_layers"] = cfg.get("num_nextn_predict_layers") or 0
    return ModelSpec(**c, **kw, extra={"rope_scaling": cfg.get("rope_scaling")})


def _gemma2(cfg, name, mt):
    c = _common(cfg, name)
    n = c["num_layers"]
    w = cfg.get("sliding_window")
    types = cfg.get("layer_types") or [
        "sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(n)]
    windows = tuple(w if t == "sliding_attention" else None for t in types) if w else (None,) * n
    bias = bool(cfg.get("attention_bias", False))
    return ModelSpec(**c, model_type=mt, intermediate_size=_int(cfg, "intermediate_size", name=name),
                     activation=cfg.get("hidden_activation") or cfg.get("hidden_act", "gelu"),
                     norms_per_layer=4, qkv_bias=bias, o_bias=bias,
                     tie_embeddings=bool(cfg.get("tie_word_embeddings", True)),
                     layer_windows=windows)


def _gpt_oss(cfg, name, mt):
    c = _common(cfg, name)
    bias = bool(cfg.get("attention_bias", True))
    ffn = _int(cfg, "intermediate_size", name=name)
    return ModelSpec(**c, model_type=mt, intermediate_size=ffn, qkv_bias=bias, o_bias=bias,
                     attention_sinks=True,
                     tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
                     layer_windows=_windows({**cfg, "use_sliding_window": True}, c["num_layers"]),
                     moe=MoESpec(num_experts=_int(cfg, "num_local_experts", name=name),
                                 top_k=_int(cfg, "num_experts_per_tok", "experts_per_token", name=name),
                                 expert_ffn=ffn, router_bias=True, expert_bias=True))


def _deepseek(cfg, name, mt):
    c = _common(cfg, name)
    mla = MLASpec(q_lora_rank=cfg.get("q_lora_rank"),
                  kv_lora_rank=_int(cfg, "kv_lora_rank", name=name),
                  qk_nope_head_dim=_int(cfg, "qk_nope_head_dim", name=name),
                  qk_rope_head_dim=_int(cfg, "qk_rope_head_dim", name=name),
                  v_head_dim=_int(cfg, "v_head_dim", name=name))
    freq = cfg.get("moe_layer_freq", 1) or 1
    n_routed = cfg.get("n_routed_experts")
    moe = None
    dense = cfg.get("first_k_dense_replace", 0) or 0
    if n_routed:
        fe = _int(cfg, "moe_intermediate_size", name=name)
        moe = MoESpec(num_experts=n_routed, top_k=_int(cfg, "num_experts_per_tok", name=name),
                      expert_ffn=fe, shared_ffn=fe * (cfg.get("n_shared_experts") or 0),
                      dense_layers=dense, **_group_routing(cfg, name, n_routed))
    c["head_dim"] = mla.v_head_dim
    c["num_kv_heads"] = c["num_heads"]
    n = c["num_layers"]
    # transformers' rule: MoE in layer i when i >= first_k_dense_replace and i % freq == 0
    ffns = tuple("moe" if moe and i >= dense and i % freq == 0 else "dense" for i in range(n))
    kinds = cfg.get("mlp_layer_types")   # GLM-5.2 spells the layout out: dense / sparse
    if kinds:
        if len(kinds) != n or set(kinds) - {"dense", "sparse"}:
            raise InputError(f"config.json of {name}: mlp_layer_types must list 'dense' or "
                             f"'sparse' for each of the {n} layers")
        ffns = tuple("moe" if k == "sparse" and moe else "dense" for k in kinds)
    sparse = None
    if cfg.get("index_topk"):
        kinds = cfg.get("indexer_types") or ["full"] * n
        if len(kinds) != n or set(kinds) - {"full", "shared"}:
            raise InputError(f"config.json of {name}: indexer_types must list 'full' or 'shared' "
                             f"for each of the {n} layers")
        sparse = SparseAttnSpec(index_topk=_int(cfg, "index_topk", name=name),
                                index_n_heads=_int(cfg, "index_n_heads", name=name),
                                index_head_dim=_int(cfg, "index_head_dim", name=name),
                                shared_layers=tuple(i for i, k in enumerate(kinds)
                                                    if k == "shared"))
    return ModelSpec(**c, model_type=mt, intermediate_size=_int(cfg, "intermediate_size", name=name),
                     tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
                     o_bias=bool(cfg.get("attention_bias", False)), mla=mla, moe=moe,
                     layer_ffns=ffns, sparse=sparse,
                     mtp_layers=cfg.get("num_nextn_predict_layers") or 0)


def _deepseek_v4(cfg, name, mt):
    """DeepSeek-V4 (Flash / Pro): see :class:`CompressedAttnSpec`. Every layer is MoE
    (the first ``num_hash_layers`` hash-routed: same router weight, same cost)."""
    c = _common(cfg, name)
    n = c["num_layers"]
    ratios = cfg.get("compress_ratios")
    if not isinstance(ratios, list) or len(ratios) < n:
        raise InputError(f"config.json of {name}: compress_ratios must list a ratio for each "
                         f"of the {n} layers")
    ratios = tuple(int(r) for r in ratios[:n])   # a trailing entry is the MTP layer's
    rates = sorted({r for r in ratios if r})
    if len(rates) > 2:
        raise InputError(f"config.json of {name}: compress_ratios has more than two nonzero "
                         f"ratios {rates}; only CSA (4) and HCA (128) layers are modelled")
    csa, hca = (rates[0], rates[-1]) if len(rates) == 2 else (4, 128)
    v4 = CompressedAttnSpec(
        head_dim=_int(cfg, "head_dim", name=name), q_lora_rank=_int(cfg, "q_lora_rank", name=name),
        o_groups=_int(cfg, "o_groups", name=name), o_lora_rank=_int(cfg, "o_lora_rank", name=name),
        window=_int(cfg, "sliding_window", name=name), layer_ratios=ratios, csa_rate=csa,
        hca_rate=hca, hc_mult=_int(cfg, "hc_mult", name=name),
        index_topk=_int(cfg, "index_topk", name=name),
        index_n_heads=_int(cfg, "index_n_heads", name=name),
        index_head_dim=_int(cfg, "index_head_dim", name=name),
        rope_dim=_int(cfg, "qk_rope_head_dim", name=name, default=64))
    if c["num_heads"] % v4.o_groups:
        raise InputError(f"config.json of {name}: o_groups = {v4.o_groups} must divide "
                         f"num_attention_heads = {c['num_heads']}")
    e = _int(cfg, "n_routed_experts", name=name)
    fe = _int(cfg, "moe_intermediate_size", name=name)
    moe = MoESpec(num_experts=e, top_k=_int(cfg, "num_experts_per_tok", name=name), expert_ffn=fe,
                  shared_ffn=fe * (cfg.get("n_shared_experts") or 0))
    c["num_kv_heads"] = 1
    return ModelSpec(**c, model_type=mt, intermediate_size=fe,
                     tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
                     layer_windows=(v4.window,) * n, layer_ffns=("moe",) * n, moe=moe, v4=v4,
                     mtp_layers=cfg.get("num_nextn_predict_layers") or 0,
                     notes=(f"{name}: DeepSeek-V4 compressed attention is modelled with the "
                            "assumptions in docs/conventions.md (compressor cost, cache layout)",),
                     extra={"rotary_dim": v4.rope_dim})


def _group_routing(cfg: Mapping[str, Any], name: str, experts: int) -> dict[str, int]:
    """``n_group`` / ``topk_group`` of group-limited routing (1 / 1 when absent)."""
    g = cfg.get("n_group") or 1
    k = cfg.get("topk_group") or g
    if experts % g or not 1 <= k <= g:
        raise InputError(f"config.json of {name}: n_group = {g} must divide the {experts} experts "
                         f"and topk_group = {k} must be in [1, n_group]")
    return {"n_group": g, "topk_group": k if g > 1 else 1}


def _dtype_bytes(cfg: Mapping[str, Any], key: str, name: str, default: int = 4) -> int:
    v = cfg.get(key)
    if v is None:
        return default
    if v not in _DTYPE_BYTES:
        raise InputError(f"config.json of {name}: {key} = {v!r} is not a known dtype")
    return _DTYPE_BYTES[v]


def _rope_fraction(cfg: Mapping[str, Any]) -> float:
    rp = cfg.get("rope_parameters") or {}
    return float(cfg.get("partial_rotary_factor") or rp.get("partial_rotary_factor") or 1.0)


def _qwen35(cfg, name, mt):
    """Qwen3.5 / Qwen3.6 / Qwen3-Next: Gated DeltaNet layers with a gated full-attention
    layer every ``full_attention_interval`` (or as ``layer_types`` says)."""
    c = _common(cfg, name)
    n = c["num_layers"]
    types = cfg.get("layer_types")
    if not types:
        every = _int(cfg, "full_attention_interval", name=name, default=4)
        types = ["full_attention" if (i + 1) % every == 0 else "linear_attention" for i in range(n)]
    if len(types) != n:
        raise InputError(f"config.json of {name}: layer_types has {len(types)} entries, expected "
                         f"num_hidden_layers = {n}")
    bad = [t for t in types if t not in ("full_attention", "linear_attention")]
    if bad:
        raise InputError(f"config.json of {name}: layer_types has unknown attention kind "
                         f"{bad[0]!r} for {mt} (known: full_attention, linear_attention)")
    lin = LinearAttnSpec(num_k_heads=_int(cfg, "linear_num_key_heads", name=name),
                         num_v_heads=_int(cfg, "linear_num_value_heads", name=name),
                         head_k_dim=_int(cfg, "linear_key_head_dim", name=name),
                         head_v_dim=_int(cfg, "linear_value_head_dim", name=name),
                         conv_kernel=_int(cfg, "linear_conv_kernel_dim", name=name),
                         state_bytes=_dtype_bytes(cfg, "mamba_ssm_dtype", name))
    moe = None
    n_exp = cfg.get("num_experts") or 0
    if n_exp:
        sh = cfg.get("shared_expert_intermediate_size") or 0
        moe = MoESpec(num_experts=n_exp, top_k=_int(cfg, "num_experts_per_tok", name=name),
                      expert_ffn=_int(cfg, "moe_intermediate_size", name=name),
                      shared_ffn=sh, shared_gate=bool(sh))
    ffn = _int(cfg, "intermediate_size", name=name,
               default=moe.expert_ffn if moe else None)   # MoE-only models: unused width
    bias = bool(cfg.get("attention_bias", False))
    d = c["head_dim"]
    return ModelSpec(**c, model_type=mt, intermediate_size=ffn,
                     activation=cfg.get("hidden_act", "silu"), qkv_bias=bias, o_bias=bias,
                     qk_norm=True, tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
                     layer_mixers=tuple("attention" if t == "full_attention" else "linear"
                                        for t in types),
                     layer_ffns=_interleaved_ffns(cfg, n, moe is not None),
                     linear_attn=lin, moe=moe,
                     attn_output_gate=bool(cfg.get("attn_output_gate", True)),
                     mtp_layers=cfg.get("mtp_num_hidden_layers") or 0,
                     extra={"rotary_dim": int(d * _rope_fraction(cfg))})


_NEMOTRON_BLOCKS = {"M": ("mamba", "none"), "*": ("attention", "none"), "-": ("none", "dense"),
                    "E": ("none", "moe"), "mamba": ("mamba", "none"),
                    "attention": ("attention", "none"), "full_attention": ("attention", "none"),
                    "mlp": ("none", "dense"), "moe": ("none", "moe")}


def _nemotron_h(cfg, name, mt):
    """Nemotron-H / Nemotron-3: one mixer per block (Mamba-2 ``M``, attention ``*``, MLP
    ``-``, MoE ``E`` in ``hybrid_override_pattern``), one RMSNorm per block, ReLU^2 MLPs."""
    pattern = cfg.get("hybrid_override_pattern") or cfg.get("layers_block_type") \
        or cfg.get("layer_types")
    if not pattern:
        raise InputError(f"config.json of {name}: missing field 'hybrid_override_pattern'")
    blocks = list(pattern)
    bad = [b for b in blocks if b not in _NEMOTRON_BLOCKS]
    if bad:
        raise InputError(f"config.json of {name}: hybrid_override_pattern has unknown block kind "
                         f"{bad[0]!r} (known: M mamba, * attention, - mlp, E moe)")
    cfg = {**cfg, "num_hidden_layers": len(blocks)}
    c = _common(cfg, name)
    mixers = tuple(_NEMOTRON_BLOCKS[b][0] for b in blocks)
    ffns = tuple(_NEMOTRON_BLOCKS[b][1] for b in blocks)
    mamba = None
    if "mamba" in mixers:
        mamba = MambaSpec(num_heads=_int(cfg, "mamba_num_heads", name=name),
                          head_dim=_int(cfg, "mamba_head_dim", name=name),
                          n_groups=_int(cfg, "n_groups", name=name),
                          state_size=_int(cfg, "ssm_state_size", name=name),
                          conv_kernel=_int(cfg, "conv_kernel", name=name),
                          chunk=_int(cfg, "chunk_size", name=name, default=128),
                          bias=bool(cfg.get("use_bias", False)),
                          conv_bias=bool(cfg.get("use_conv_bias", True)),
                          state_bytes=_dtype_bytes(cfg, "mamba_ssm_cache_dtype", name))
    moe = None
    if "moe" in ffns:
        e = _int(cfg, "n_routed_experts", "num_local_experts", name=name)
        moe = MoESpec(num_experts=e, top_k=_int(cfg, "num_experts_per_tok", name=name),
                      expert_ffn=_int(cfg, "moe_intermediate_size", name=name),
                      shared_ffn=(cfg.get("moe_shared_expert_intermediate_size") or 0)
                      * (cfg.get("n_shared_experts") or 0),
                      latent=cfg.get("moe_latent_size") or 0, **_group_routing(cfg, name, e))
    mtp = cfg.get("num_nextn_predict_layers") or 0
    mtp_pat = cfg.get("mtp_hybrid_override_pattern") or cfg.get("mtp_layers_block_type") or "*E"
    bad = [b for b in mtp_pat if b not in _NEMOTRON_BLOCKS]
    if bad:
        raise InputError(f"config.json of {name}: mtp_hybrid_override_pattern has unknown block "
                         f"kind {bad[0]!r}")
    mtp_blocks = tuple(_NEMOTRON_BLOCKS[b] for b in mtp_pat)
    if any(f == "moe" for _, f in mtp_blocks) and moe is None or \
            any(x == "mamba" for x, _ in mtp_blocks) and mamba is None:
        mtp, mtp_blocks = 0, ()
    bias = bool(cfg.get("attention_bias", False))
    return ModelSpec(**c, model_type=mt,
                     intermediate_size=_int(cfg, "intermediate_size", name=name),
                     gated_mlp=False, activation=cfg.get("mlp_hidden_act", "relu2"),
                     norms_per_layer=1, qkv_bias=bias, o_bias=bias,
                     mlp_bias=bool(cfg.get("mlp_bias", False)),
                     tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
                     layer_mixers=mixers, layer_ffns=ffns, mamba=mamba, moe=moe,
                     mtp_layers=mtp, extra={"rotary_dim": 0, "mtp_blocks": mtp_blocks})


def _minimax_m2(cfg, name, mt):
    """MiniMax-M2.x: GQA with RMSNorm over the whole q / k projections, 256 experts,
    partial rotary (``rotary_dim``), MTP modules (``num_mtp_modules``)."""
    c = _common(cfg, name)
    e = _int(cfg, "num_local_experts", name=name)
    ffn = _int(cfg, "intermediate_size", name=name)
    if cfg.get("shared_intermediate_size"):
        raise InputError(f"config.json of {name}: key 'shared_intermediate_size' cannot be "
                         "modelled: MiniMax shared experts are not in transformers")
    qk = bool(cfg.get("use_qk_norm", True))
    return ModelSpec(**c, model_type=mt, intermediate_size=ffn,
                     activation=cfg.get("hidden_act", "silu"), qk_norm=qk,
                     qk_norm_full=qk and cfg.get("qk_norm_type", "per_layer") == "per_layer",
                     tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
                     moe=MoESpec(num_experts=e, top_k=_int(cfg, "num_experts_per_tok", name=name),
                                 expert_ffn=ffn),
                     mtp_layers=(cfg.get("num_mtp_modules") or 0) if cfg.get("use_mtp") else 0,
                     extra={"rotary_dim": cfg.get("rotary_dim")})


def _llama4(cfg, name, mt):
    """Llama-4 text decoder: MoE in ``moe_layers`` (every ``interleave_moe_layer_step``-th
    layer), dense ``intermediate_size_mlp`` MLPs elsewhere, one shared expert; chunked local
    attention of ``attention_chunk_size`` tokens in the RoPE layers, global NoPE layers
    where ``no_rope_layers[i] == 0``."""
    c = _common(cfg, name)
    n = c["num_layers"]
    step = cfg.get("interleave_moe_layer_step") or 1
    moe_layers = cfg.get("moe_layers")
    if moe_layers is None:
        moe_layers = list(range(step - 1, n, step))
    moe_set = set(moe_layers)
    rope = cfg.get("no_rope_layers") or [int((i + 1) % (cfg.get("no_rope_layer_interval") or 4) != 0)
                                         for i in range(n)]
    chunk = cfg.get("attention_chunk_size")
    types = cfg.get("layer_types") or ["chunked_attention" if r else "full_attention" for r in rope]
    if len(types) != n:
        raise InputError(f"config.json of {name}: layer_types has {len(types)} entries, expected "
                         f"num_hidden_layers = {n}")
    chunked = tuple(bool(chunk) and t == "chunked_attention" for t in types)
    e = _int(cfg, "num_local_experts", name=name)
    ffn = _int(cfg, "intermediate_size", name=name)
    bias = bool(cfg.get("attention_bias", False))
    return ModelSpec(**c, model_type=mt,
                     intermediate_size=_int(cfg, "intermediate_size_mlp", name=name),
                     activation=cfg.get("hidden_act", "silu"), qkv_bias=bias, o_bias=bias,
                     tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
                     layer_windows=tuple(chunk if ch else None for ch in chunked),
                     layer_chunked=chunked,
                     layer_ffns=tuple("moe" if i in moe_set else "dense" for i in range(n)),
                     moe=MoESpec(num_experts=e, top_k=_int(cfg, "num_experts_per_tok", name=name),
                                 expert_ffn=ffn, shared_ffn=ffn),
                     extra={"rope_scaling": cfg.get("rope_scaling")})


def _gptj(cfg, name, mt):
    c = _common(cfg, name)
    return ModelSpec(**c, model_type=mt,
                     intermediate_size=cfg.get("n_inner") or 4 * c["hidden_size"],
                     gated_mlp=False, activation=cfg.get("activation_function", "gelu_new"),
                     norm="layer", norms_per_layer=1, mlp_bias=True, lm_head_bias=True,
                     parallel_block=True,
                     tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
                     extra={"rotary_dim": cfg.get("rotary_dim")})


def _falcon(cfg, name, mt):
    c = _common(cfg, name)
    new_arch = bool(cfg.get("new_decoder_architecture", False))
    if new_arch:
        kv = _int(cfg, "num_kv_heads", "n_head_kv", name=name, default=c["num_heads"])
    elif cfg.get("multi_query", True):
        kv = 1
    else:
        kv = c["num_heads"]
    c["num_kv_heads"] = kv
    if cfg.get("alibi"):
        raise InputError(f"config.json of {name}: falcon with alibi=true is not supported")
    parallel = bool(cfg.get("parallel_attn", True))
    two_ln = new_arch and cfg.get("num_ln_in_parallel_attn", 2) == 2
    bias = bool(cfg.get("bias", False))
    return ModelSpec(**c, model_type="falcon",
                     intermediate_size=cfg.get("ffn_hidden_size") or 4 * c["hidden_size"],
                     gated_mlp=False, activation="gelu", norm="layer",
                     norms_per_layer=2 if (two_ln or not parallel) else 1,
                     qkv_bias=bias, o_bias=bias, mlp_bias=bias, parallel_block=parallel,
                     tie_embeddings=bool(cfg.get("tie_word_embeddings", True)))


def _opt(cfg, name, mt):
    if "vocab_size" not in cfg:  # metaseq OPT-175B: the GPT-2 BPE vocabulary OPT uses
        cfg = {**cfg, "vocab_size": 50272}
    c = _common(cfg, name)
    if cfg.get("word_embed_proj_dim", c["hidden_size"]) != c["hidden_size"]:
        raise InputError(f"config.json of {name}: word_embed_proj_dim != hidden_size "
                         "(OPT-350m's projections) is not supported")
    if cfg.get("do_layer_norm_before", True) is False:
        raise InputError(f"config.json of {name}: do_layer_norm_before=false is not supported")
    bias = bool(cfg.get("enable_bias", True))
    return ModelSpec(**c, model_type="opt", intermediate_size=_int(cfg, "ffn_dim", name=name),
                     gated_mlp=False, activation=cfg.get("activation_function", "relu"),
                     norm="layer", qkv_bias=bias, o_bias=bias, mlp_bias=bias,
                     tie_embeddings=bool(cfg.get("tie_word_embeddings", True)),
                     # OPT's learned position table has 2 extra rows (padding offset).
                     learned_positions=c["max_position_embeddings"] + 2,
                     final_norm=not cfg.get("_remove_final_layer_norm", False))


def _gpt2(cfg, name, mt):
    c = _common(cfg, name)
    return ModelSpec(**c, model_type=mt, intermediate_size=cfg.get("n_inner") or 4 * c["hidden_size"],
                     gated_mlp=False, activation=cfg.get("activation_function", "gelu_new"),
                     norm="layer", qkv_bias=True, o_bias=True, mlp_bias=True,
                     tie_embeddings=bool(cfg.get("tie_word_embeddings", True)),
                     learned_positions=c["max_position_embeddings"])


_BUILDERS = {
    **{t: _llama_like for t in ("llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3",
                                "qwen3_moe", "phi3", "internlm")},
    "gemma2": _gemma2, "gpt_oss": _gpt_oss, "deepseek_v2": _deepseek, "deepseek_v3": _deepseek,
    "deepseek_v32": _deepseek, "glm_moe_dsa": _deepseek, "kimi_k2": _deepseek,
    "qwen3_5_text": _qwen35, "qwen3_5_moe_text": _qwen35, "qwen3_next": _qwen35,
    "nemotron_h": _nemotron_h, "minimax_m2": _minimax_m2, "llama4_text": _llama4,
    "deepseek_v4": _deepseek_v4,
    "qwen3_vl_text": _llama_like, "qwen3_vl_moe_text": _llama_like, "mimo": _llama_like,
    "gptj": _gptj, "falcon": _falcon, "RefinedWebModel": _falcon, "RefinedWeb": _falcon,
    "opt": _opt, "gpt2": _gpt2,
}
