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
)


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
    # The release's own weight formats (quantization_config / hf_quant_config.json).
    native_quant: NativeQuant | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.layer_windows:
            object.__setattr__(self, "layer_windows", (None,) * self.num_layers)
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
        return self.moe is not None and i >= self.moe.dense_layers

    @property
    def num_moe_layers(self) -> int:
        return sum(self.moe_layer(i) for i in range(self.num_layers))


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


def full_slice(m: ModelSpec) -> Slice:
    e = m.moe
    return Slice(m.num_heads, m.num_kv_heads, m.intermediate_size, m.vocab_size,
                 e.num_experts if e else 0, e.expert_ffn if e else 0, e.shared_ffn if e else 0)


def _mlp_split(m: ModelSpec, ffn: int, bias: bool, row_bias: bool = True) -> tuple[int, int]:
    """(matmul weights, biases) of one MLP of width ``ffn``; ``row_bias``: the output bias."""
    h = m.hidden_size
    up = (2 if m.gated_mlp else 1) * ffn
    return h * up + ffn * h, ((up + (h if row_bias else 0)) if bias else 0)


def layer_params(m: ModelSpec, i: int, sl: Slice | None = None) -> tuple[int, int]:
    """(matmul weights, small params) of layer ``i`` held by a device with slice ``sl``.

    Matmul weights are what ``wbits`` quantizes; small params (norms, biases, q/k norms,
    attention sinks, the MoE router and shared-expert gate) stay 16-bit. Replicated parts
    (norms, row-parallel biases, router, MLA down-projections) count in full on every device.
    """
    sl = sl or full_slice(m)
    h = m.hidden_size
    small = m.norms_per_layer * norm_params(m)
    if m.mla:
        a = m.mla
        q = (h * a.q_lora_rank + a.q_lora_rank * sl.heads * a.qk_head_dim) if a.q_lora_rank \
            else h * sl.heads * a.qk_head_dim
        linear = q + h * (a.kv_lora_rank + a.qk_rope_head_dim) \
            + a.kv_lora_rank * sl.heads * (a.qk_nope_head_dim + a.v_head_dim) \
            + sl.heads * a.v_head_dim * h
        small += (a.q_lora_rank or 0) + a.kv_lora_rank + (h if m.o_bias else 0)
    else:
        q, kv = sl.heads * m.head_dim, sl.kv_heads * m.head_dim
        linear = h * (q + 2 * kv) + q * h
        small += ((q + 2 * kv) if m.qkv_bias else 0) + (h if m.o_bias else 0)
        small += (2 * m.head_dim if m.qk_norm else 0) + (sl.heads if m.attention_sinks else 0)
    if m.moe_layer(i):
        e = m.moe
        w, b = _mlp_split(m, sl.expert_ffn, e.expert_bias)
        linear += sl.experts * w
        small += sl.experts * b + h * e.num_experts + (e.num_experts if e.router_bias else 0)
        if e.shared_ffn:
            w, _ = _mlp_split(m, sl.shared_ffn, False)
            linear += w
            small += h if e.shared_gate else 0
    else:
        w, b = _mlp_split(m, sl.ffn, m.mlp_bias)
        linear += w
        small += b
    return linear, small


def linear_by_class(m: ModelSpec, sl: Slice | None = None,
                    layers: range | None = None) -> dict[str, int]:
    """The decoder matmul weights of :func:`param_groups` (``linear``) split by weight
    class (``precision.WEIGHT_CLASSES``): routed experts, shared experts and dense MLPs by
    :func:`_mlp_split`; attention is the rest of each layer, ``attn_out`` its output
    projection and ``attn_qkv`` everything else (q/k/v, MLA down/up projections)."""
    sl = sl or full_slice(m)
    out = dict.fromkeys(("attn_qkv", "attn_out", "dense_mlp", "shared_experts", "experts"), 0)
    for i in (layers if layers is not None else range(m.num_layers)):
        lin, _ = layer_params(m, i, sl)
        if m.moe_layer(i):
            experts = sl.experts * _mlp_split(m, sl.expert_ffn, m.moe.expert_bias)[0]
            shared = _mlp_split(m, sl.shared_ffn, False)[0] if m.moe.shared_ffn else 0
            out["experts"] += experts
            out["shared_experts"] += shared
            mlp = experts + shared
        else:
            mlp = _mlp_split(m, sl.ffn, m.mlp_bias)[0]
            out["dense_mlp"] += mlp
        o = sl.heads * (m.mla.v_head_dim if m.mla else m.head_dim) * m.hidden_size
        out["attn_out"] += o
        out["attn_qkv"] += lin - mlp - o
    return out


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
        lm_head = 0 if m.tie_embeddings else sl.vocab * h
    return {"linear": linear, "small": small, "embedding": embedding, "lm_head": lm_head}


def param_count(m: ModelSpec) -> int:
    """Total parameters, counting a tied embedding/lm_head once."""
    return sum(param_groups(m).values())


def active_param_count(m: ModelSpec) -> int:
    """Parameters touched per token (MoE: top_k routed experts, not all of them)."""
    total = param_count(m)
    if m.moe:
        w, b = _mlp_split(m, m.moe.expert_ffn, m.moe.expert_bias)
        total -= m.num_moe_layers * (m.moe.num_experts - m.moe.top_k) * (w + b)
    return total


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


def from_hf_config(cfg: Mapping[str, Any], name: str = "custom",
                   hf_quant_config: Mapping[str, Any] | None = None) -> ModelSpec:
    """Normalize a Hugging Face ``config.json`` dict into a :class:`ModelSpec`;
    ``hf_quant_config``: ModelOpt's ``hf_quant_config.json`` found beside it, if any."""
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
    mt = cfg.get("model_type")
    if mt is None and {"num_hidden_layers", "hidden_size", "ffn_dim"} <= set(cfg):
        mt = "opt"  # the metaseq OPT-175B hyper-parameters carry no model_type
    if mt not in SUPPORTED_MODEL_TYPES:
        raise InputError(f"config.json of {name}: unsupported model_type {mt!r}; supported: "
                         + ", ".join(t for t in SUPPORTED_MODEL_TYPES if not t.startswith("Refined")))
    builder = _BUILDERS[mt]
    return builder(cfg, name, mt)


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
    """Per-layer sliding windows from ``layer_types`` or the global window fields."""
    w = cfg.get("sliding_window")
    if cfg.get("use_sliding_window") is False or not w:
        return (None,) * n
    types = cfg.get("layer_types")
    if types:
        return tuple(w if t == "sliding_attention" else None for t in types)
    return (w,) * n


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
    if mt in ("qwen2", "qwen2_moe"):
        kw.update(qkv_bias=True)  # Qwen2 always has q/k/v biases, no o bias
    if mt in ("qwen3", "qwen3_moe"):
        kw.update(qk_norm=True)
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
    if mt in ("qwen2_moe", "qwen3_moe") and (cfg.get("mlp_only_layers") or
                                              cfg.get("decoder_sparse_step", 1) != 1):
        raise InputError(f"config.json of {name}: mlp_only_layers / decoder_sparse_step != 1 "
                         "are not supported")
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
    if cfg.get("moe_layer_freq", 1) != 1:
        raise InputError(f"config.json of {name}: moe_layer_freq != 1 is not supported")
    n_routed = cfg.get("n_routed_experts")
    moe = None
    if n_routed:
        fe = _int(cfg, "moe_intermediate_size", name=name)
        moe = MoESpec(num_experts=n_routed, top_k=_int(cfg, "num_experts_per_tok", name=name),
                      expert_ffn=fe, shared_ffn=fe * (cfg.get("n_shared_experts") or 0),
                      dense_layers=cfg.get("first_k_dense_replace", 0) or 0)
    c["head_dim"] = mla.v_head_dim
    c["num_kv_heads"] = c["num_heads"]
    return ModelSpec(**c, model_type=mt, intermediate_size=_int(cfg, "intermediate_size", name=name),
                     tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
                     o_bias=bool(cfg.get("attention_bias", False)), mla=mla, moe=moe)


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
    "gptj": _gptj, "falcon": _falcon, "RefinedWebModel": _falcon, "RefinedWeb": _falcon,
    "opt": _opt, "gpt2": _gpt2,
}
