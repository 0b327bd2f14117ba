"""Operator table of one forward step: FLOPs and bytes per operator, vectorized.

``build_ops(model, precision, batch, q_len, kv_len)`` describes one forward pass in which
each of ``batch`` sequences feeds ``q_len`` new tokens and attends to ``kv_len`` tokens
(its cache plus the new ones). Prefill is ``q_len = kv_len = input_len``; a decode step is
``q_len = 1``. ``batch``, ``q_len`` and ``kv_len`` may be numpy arrays of any broadcastable
shape: every column of the table then has the broadcast shape.

Layers of the same type are one row with a ``count``; values in a row are totals over
those layers. Conventions (FLOP = 2 per multiply-add; causal attention; KV cache reads and
writes) are in ``docs/conventions.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .specs.model import ModelSpec, mlp_params
from .specs.precision import Precision

# Elementwise FLOPs per element; they never decide a bound but keep intensities honest.
NORM_FLOPS = {"rms": 4, "layer": 7}
ACT_FLOPS = {True: 5, False: 8}  # gated (silu(g) * u) vs plain GELU/ReLU
ROPE_FLOPS = 3
SOFTMAX_FLOPS = 5


@dataclass(frozen=True)
class Op:
    """One operator row. Arrays broadcast over the query grid; values are row totals."""

    name: str
    kind: str            # matmul | attention | norm | elementwise | embedding
    compute: str         # gemm | gemm16 | vector: which peak applies (see precision.compute_dtypes)
    count: int           # kernel launches per step (layers sharing this row)
    flops: np.ndarray
    weight_bytes: np.ndarray
    act_bytes: np.ndarray
    kv_bytes: np.ndarray
    window: float = np.inf  # attention ops: sliding window bounding the keys read

    @property
    def bytes(self) -> np.ndarray:
        return self.weight_bytes + self.act_bytes + self.kv_bytes


def causal_pairs(q_len, kv_len, window=np.inf):
    """(query, key) pairs a causal (optionally sliding-window) mask keeps, per sequence, per head.

    The ``q_len`` new tokens sit at positions ``kv_len - q_len .. kv_len - 1``; token ``i``
    sees ``min(i + 1, window)`` keys. Sum over u = i + 1 in [lo, hi] of min(u, W).
    """
    lo = kv_len - q_len + 1
    hi = kv_len

    def tri(n):
        return n * (n + 1) / 2

    w = window
    return (tri(np.minimum(hi, w)) - tri(np.minimum(lo - 1, w))
            + w * (np.maximum(hi - w, 0) - np.maximum(lo - 1 - w, 0))) if np.isfinite(w) \
        else tri(hi) - tri(lo - 1)


def keys_touched(q_len, kv_len, window=np.inf):
    """Distinct keys any of the ``q_len`` queries attends to: min(kv_len, q_len + window - 1)."""
    return np.minimum(kv_len, q_len + window - 1)


def expected_experts(tokens, num_experts: int, top_k: int):
    """Expected distinct experts hit by ``tokens`` tokens under uniform top-k routing.

    Each expert is missed by one token with probability 1 - k/E, so
    E[distinct] = E x (1 - (1 - k/E) ** tokens).
    """
    return num_experts * (1.0 - (1.0 - top_k / num_experts) ** tokens)


def build_ops(m: ModelSpec, prec: Precision, batch, q_len, kv_len, *, flash: bool = True,
              mla_absorb: bool | None = None) -> list[Op]:
    """Operator table for one step (see module docstring).

    ``flash``: fused IO-aware attention (scores never leave the chip, masked tiles skipped)
    versus unfused score / softmax / weighted-sum kernels over the full key block.
    ``mla_absorb`` (MLA models): ``True`` caches the compressed latent and absorbs the
    up-projections into the query and output (serving engines' decode); ``False`` caches
    decompressed K and V. ``None``: absorbed when ``q_len == 1`` (decode), decompressed
    attention over the latent cache otherwise (prefill).
    """
    B = np.asarray(batch, dtype=float)
    T = np.asarray(q_len, dtype=float)
    L = np.asarray(kv_len, dtype=float)
    N = B * T                                     # new tokens in this step
    zero = np.zeros(np.broadcast(B, T, L).shape)
    h = m.hidden_size
    wb, ab, kb, sb = prec.weight_bytes, prec.act_bytes, prec.kv_bytes, prec.base_bytes
    nl = m.num_layers
    ops: list[Op] = []

    def op(name, kind, compute, count, flops=0.0, w=0.0, a=0.0, kv=0.0, window=np.inf):
        ops.append(Op(name, kind, compute, count, zero + count * flops, zero + count * w,
                      zero + count * a, zero + count * kv, float(window)))

    def linear(name, n_in, n_out, count, tokens=N, bias=False, wbytes=wb, compute="gemm",
               weight_rows=None):
        rows = n_in if weight_rows is None else weight_rows
        op(name, "matmul", compute, count, flops=2 * tokens * n_in * n_out,
           w=rows * n_out * wbytes + (n_out * sb if bias else 0),
           a=tokens * (n_in + n_out) * ab)

    def norm(name, count, tokens=N, width=h):
        op(name, "norm", "vector", count, flops=NORM_FLOPS[m.norm] * tokens * width,
           w=width * sb * (2 if m.norm == "layer" else 1), a=2 * tokens * width * ab)

    # -- embedding ---------------------------------------------------------------------
    emb_reads = 2 if m.learned_positions else 1
    op("embedding", "embedding", "vector", 1, w=emb_reads * N * h * sb, a=N * h * ab)

    # -- attention block (shared by every layer) ------------------------------------------
    norm("attn_norm", nl)
    if m.mla:
        _mla_ops(m, prec, op, linear, norm, B, T, L, N, flash, mla_absorb)
    else:
        linear("qkv_proj", h, m.q_dim + 2 * m.kv_dim, nl, bias=m.qkv_bias)
        if m.qk_norm:
            norm("qk_norm", nl, tokens=N * (m.num_heads + m.num_kv_heads), width=m.head_dim)
        if not m.learned_positions:
            rope_width = (m.num_heads + m.num_kv_heads) * min(
                m.head_dim, m.extra.get("rotary_dim") or m.head_dim)
            op("rope", "elementwise", "vector", nl, flops=ROPE_FLOPS * N * rope_width,
               a=2 * N * rope_width * ab)
        for window, count in _window_groups(m):
            _attention(op, m, count, window, B, T, L, N, flash, ab, kb,
                       heads=m.num_heads, kv_heads=m.num_kv_heads, d_qk=m.head_dim,
                       d_v=m.head_dim, kv_read_width=2 * m.num_kv_heads * m.head_dim,
                       kv_write_width=m.kv_cache_width(), suffix=_suffix(m, window))
        linear("o_proj", m.q_dim, h, nl, bias=m.o_bias)

    # -- MLP block -----------------------------------------------------------------------
    if m.parallel_block:
        if m.norms_per_layer == 2:
            norm("mlp_norm", nl)
        op("residual_add", "elementwise", "vector", nl, flops=2 * N * h, a=4 * N * h * ab)
    else:
        op("attn_residual_add", "elementwise", "vector", nl, flops=N * h, a=3 * N * h * ab)
        if m.norms_per_layer == 4:
            norm("post_attn_norm", nl)
            norm("pre_mlp_norm", nl)
        else:
            norm("mlp_norm", nl)
    n_moe = m.num_moe_layers
    n_dense = nl - n_moe
    if n_dense:
        _mlp(op, linear, m, "", m.intermediate_size, n_dense, N, ab, bias=m.mlp_bias)
    if n_moe:
        _moe(op, linear, m, n_moe, N, ab, wb, sb)
    if not m.parallel_block:
        if m.norms_per_layer == 4:
            norm("post_mlp_norm", nl)
        op("mlp_residual_add", "elementwise", "vector", nl, flops=N * h, a=3 * N * h * ab)

    # -- head ---------------------------------------------------------------------------------
    if m.final_norm:
        norm("final_norm", 1)
    # Only the last position of each sequence needs logits (prefill and decode alike).
    linear("lm_head", h, m.vocab_size, 1, tokens=B, bias=m.lm_head_bias, wbytes=sb,
           compute="gemm16")
    return ops


def _suffix(m: ModelSpec, window) -> str:
    kinds = {w for w in m.layer_windows}
    if len(kinds) == 1:
        return ""
    return " (local)" if window is not None else " (global)"


def _window_groups(m: ModelSpec) -> list[tuple[int | None, int]]:
    groups: dict[int | None, int] = {}
    for w in m.layer_windows:
        groups[w] = groups.get(w, 0) + 1
    return list(groups.items())


def _attention(op, m, count, window, B, T, L, N, flash, ab, kb, *, heads, kv_heads, d_qk, d_v,
               kv_read_width, kv_write_width, suffix="", q_width=None, out_width=None):
    """Attention core of ``count`` layers.

    Fused: one kernel reading Q, the touched keys/values from the cache, writing O and the
    new tokens' cache entries; FLOPs over the causal (window-limited) pairs only.
    Unfused: QK^T over the whole key block (T x keys), softmax, PV; scores round-trip memory.
    ``kv_read_width``/``kv_write_width``: cached elements per token read/written.
    """
    W = np.inf if window is None else float(window)
    keys = keys_touched(T, L, W)
    q_width = heads * d_qk if q_width is None else q_width
    out_width = heads * d_v if out_width is None else out_width
    kv_read = B * keys * kv_read_width * kb
    kv_write = N * kv_write_width * kb
    if flash:
        pairs = B * heads * causal_pairs(T, L, W)
        op("attention" + suffix, "attention", "gemm16", count,
           flops=2 * pairs * (d_qk + d_v), a=N * (q_width + out_width) * ab,
           kv=kv_read + kv_write, window=W)
        return
    scores = B * heads * T * keys
    k_frac = d_qk / (d_qk + d_v)
    op("attn_score" + suffix, "attention", "gemm16", count, flops=2 * scores * d_qk,
       a=N * q_width * ab + scores * ab, kv=kv_read * k_frac + kv_write, window=W)
    op("softmax" + suffix, "elementwise", "vector", count, flops=SOFTMAX_FLOPS * scores,
       a=2 * scores * ab, window=W)
    op("attn_av" + suffix, "attention", "gemm16", count, flops=2 * scores * d_v,
       a=scores * ab + N * out_width * ab, kv=kv_read * (1 - k_frac), window=W)


def _mla_ops(m, prec, op, linear, norm, B, T, L, N, flash, mla_absorb):
    """DeepSeek MLA: low-rank q, joint compressed KV latent (+ shared rope key)."""
    a = m.mla
    h, H = m.hidden_size, m.num_heads
    nl = m.num_layers
    ab, kb = prec.act_bytes, prec.kv_bytes
    if a.q_lora_rank:
        linear("q_a_proj", h, a.q_lora_rank, nl)
        norm("q_a_norm", nl, width=a.q_lora_rank)
        linear("q_b_proj", a.q_lora_rank, H * a.qk_head_dim, nl)
    else:
        linear("q_proj", h, H * a.qk_head_dim, nl)
    latent = a.kv_lora_rank + a.qk_rope_head_dim
    linear("kv_a_proj", h, latent, nl)
    norm("kv_a_norm", nl, width=a.kv_lora_rank)
    op("rope", "elementwise", "vector", nl, flops=ROPE_FLOPS * N * (H + 1) * a.qk_rope_head_dim,
       a=2 * N * (H + 1) * a.qk_rope_head_dim * ab)
    absorb = bool(np.all(T == 1)) if mla_absorb is None else mla_absorb
    if absorb:
        # Scores and values live in the latent space; heads share one latent "KV head".
        linear("q_absorb", a.qk_nope_head_dim, a.kv_lora_rank, nl, tokens=N * H,
               weight_rows=H * a.qk_nope_head_dim)
        _attention(op, m, nl, None, B, T, L, N, flash, ab, kb, heads=H, kv_heads=1,
                   d_qk=latent, d_v=a.kv_lora_rank, kv_read_width=latent, kv_write_width=latent)
        linear("o_absorb", a.kv_lora_rank, a.v_head_dim, nl, tokens=N * H,
               weight_rows=H * a.kv_lora_rank)
    elif mla_absorb is None:
        # Prefill with a latent cache: decompress every cached token, then plain MHA.
        linear("kv_b_proj", a.kv_lora_rank, H * (a.qk_nope_head_dim + a.v_head_dim), nl,
               tokens=B * L)
        _attention(op, m, nl, None, B, T, L, N, flash, ab, 0.0, heads=H, kv_heads=H,
                   d_qk=a.qk_head_dim, d_v=a.v_head_dim, kv_read_width=0, kv_write_width=0)
        # The cache traffic: read the latent of earlier tokens, write the new tokens'.
        op("latent_cache_io", "elementwise", "vector", nl,
           kv=B * (L - T) * latent * kb + N * latent * kb)
    else:
        # Decompressed cache (Hugging Face eager): K/V of full heads are stored.
        linear("kv_b_proj", a.kv_lora_rank, H * (a.qk_nope_head_dim + a.v_head_dim), nl)
        _attention(op, m, nl, None, B, T, L, N, flash, ab, kb, heads=H, kv_heads=H,
                   d_qk=a.qk_head_dim, d_v=a.v_head_dim,
                   kv_read_width=H * (a.qk_head_dim + a.v_head_dim),
                   kv_write_width=H * (a.qk_head_dim + a.v_head_dim))
    linear("o_proj", H * a.v_head_dim, h, nl, bias=m.o_bias)


def _mlp(op, linear, m, prefix, ffn, count, tokens, ab, bias, weight_rows_scale=None):
    h = m.hidden_size
    if m.gated_mlp:
        linear(prefix + "gate_up_proj", h, 2 * ffn, count, tokens=tokens, bias=bias)
    else:
        linear(prefix + "up_proj", h, ffn, count, tokens=tokens, bias=bias)
    op(prefix + "act_fn", "elementwise", "vector", count, flops=ACT_FLOPS[m.gated_mlp] * tokens * ffn,
       a=tokens * ffn * ab * (3 if m.gated_mlp else 2))
    linear(prefix + "down_proj", ffn, h, count, tokens=tokens, bias=bias)


def _moe(op, linear, m, count, N, ab, wb, sb):
    """Router, routed experts (weights of the experts the step touches), shared experts."""
    e = m.moe
    h = m.hidden_size
    # Router and qwen2_moe's shared-expert gate are small 16-bit matmuls.
    linear("router", h, e.num_experts + (1 if e.shared_gate else 0), count, bias=e.router_bias,
           wbytes=sb, compute="gemm16")
    routed = N * e.top_k
    hit = expected_experts(N, e.num_experts, e.top_k)
    f = e.expert_ffn
    up_out = 2 * f if m.gated_mlp else f
    bias_up = (up_out * sb) if e.expert_bias else 0.0
    bias_down = (h * sb) if e.expert_bias else 0.0
    op("experts_gate_up" if m.gated_mlp else "experts_up", "matmul", "gemm", count,
       flops=2 * routed * h * up_out, w=hit * (h * up_out * wb + bias_up),
       a=routed * (h + up_out) * ab)
    op("experts_act_fn", "elementwise", "vector", count, flops=ACT_FLOPS[m.gated_mlp] * routed * f,
       a=routed * f * ab * (3 if m.gated_mlp else 2))
    # The down projection's kernel also sums each token's top-k outputs (fused combine).
    op("experts_down", "matmul", "gemm", count, flops=2 * routed * f * h,
       w=hit * (f * h * wb + bias_down), a=(routed * f + N * h) * ab)
    if e.shared_ffn:
        _mlp(op, linear, m, "shared_", e.shared_ffn, count, N, ab, bias=False)


def weight_bytes_total(m: ModelSpec, prec: Precision) -> float:
    """Bytes of all parameters at rest: matmul weights at ``wbits``, the rest 16-bit."""
    from .specs.model import param_groups
    g = param_groups(m)
    return g["linear"] * prec.weight_bytes + (g["small"] + g["embedding"] + g["lm_head"]) * prec.base_bytes


__all__ = ["Op", "build_ops", "causal_pairs", "keys_touched", "expected_experts",
           "weight_bytes_total", "mlp_params"]
