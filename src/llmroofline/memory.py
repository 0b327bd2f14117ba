"""Device memory footprint and the largest batch that fits, per device.

    total_bytes = weights_bytes + kv_cache_bytes + state_bytes + activation_bytes

- weights: the parameters the most loaded device holds (its tensor-parallel slice of its
  pipeline stage); matmul weights at ``wbits``, the rest 16-bit; a release with native
  quantization (``Precision.native``): each weight class at its own format, scales
  included (docs/conventions.md, "Native quantization").
- KV cache: allocated for ``input_len + output_len`` tokens per sequence (what engines
  reserve for the whole request); sliding-window layers keep at most ``window`` tokens.
  With ``rows`` decode rows per request (beam width or parallel samples) the prompt's
  entries are held once and each row holds its own generated part:
  ``kv(I) + rows x (kv(I + O) - kv(I))`` per request, i.e. ``I + rows x O`` tokens per
  full-attention layer.
  Per token per layer: ``2 x kv_heads x head_dim`` elements (kv heads of this device;
  MLA: the ``kv_lora_rank + qk_rope_head_dim`` latent, replicated on every TP rank), at
  ``kvbits``.
- recurrent state (Gated DeltaNet, Mamba-2 layers): a fixed number of bytes per decode
  row (:func:`state_bytes_per_seq`), not growing with the context; never offloaded.
- offloaded fractions of weights / KV cache live in host memory and are not counted.
- activations: the prefill's transient peak, i.e. the largest per-layer operator's
  input + output activations, plus the residual stream (``batch x input_len x hidden``);
  with a chunked prefill, of one chunk (``input_len`` -> the chunk length).

Every term but the weights is proportional to the batch, so
``max_batch = floor((capacity - weights) / (per-sequence bytes))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .graph import Op
from .parallel import Layout, device_param_groups, shard, stages
from .specs.hardware import HardwareSpec
from .specs.model import ModelSpec, conv_state_bytes, linear_by_class, param_groups
from .specs.precision import Precision


@dataclass(frozen=True)
class Memory:
    """Bytes on the most loaded device (decimal: 1 GB = 1e9 bytes)."""

    weights_bytes: float
    kv_cache_bytes: np.ndarray
    activation_bytes: np.ndarray
    capacity_bytes: float
    max_batch: np.ndarray
    state_bytes: np.ndarray | float = 0.0   # recurrent state of linear-attention/SSM layers

    @property
    def total_bytes(self) -> np.ndarray:
        return self.weights_bytes + self.kv_cache_bytes + self.state_bytes + self.activation_bytes

    @property
    def fits(self) -> np.ndarray:
        return self.total_bytes <= self.capacity_bytes


def largest_batch(capacity_bytes, weights_bytes, per_seq_bytes) -> np.ndarray:
    """Sequences that fit: ``floor((capacity - weights) / per-sequence bytes)``, 0 when the
    weights alone do not fit (the one max-batch formula)."""
    free = np.asarray(capacity_bytes, float) - weights_bytes
    return np.where(free > 0, np.floor(np.maximum(free, 0) / per_seq_bytes), 0.0)


def weight_bytes_total(m: ModelSpec, prec: Precision, layout: Layout | None = None) -> float:
    """Bytes of the parameters one device holds (the whole model with the default layout).

    With a release's native formats (``prec.native``) each weight class is priced at its
    own bytes per weight (scales included) and the heaviest pipeline stage in bytes is the
    one held."""
    layout = layout or Layout()
    if not prec.native:
        g = device_param_groups(m, layout)
        return g["linear"] * prec.weight_bytes + (g["small"] + g["embedding"] + g["lm_head"]) * prec.base_bytes
    sl, st = shard(m, layout), stages(m, layout)
    best = 0.0
    for k, layers in enumerate(st):
        g = param_groups(m, sl, layers, first=k == 0, last=k == len(st) - 1)
        cls = linear_by_class(m, sl, layers)
        total = sum(n * prec.class_weight_bytes(c) for c, n in cls.items()) \
            + g["embedding"] * prec.class_weight_bytes("embedding") \
            + g["lm_head"] * prec.class_weight_bytes("lm_head") + g["small"] * prec.base_bytes
        best = max(best, total)
    return best


def kv_width_per_device(m: ModelSpec, layout: Layout, layer: int | None = None) -> int:
    """Cached elements per token of one layer on one tensor-parallel rank (``layer`` None:
    a softmax-attention layer of the model).

    0 for layers without softmax attention (linear attention, Mamba-2, MLP-only blocks);
    MLA: the latent, plus the DSA indexer's ``index_head_dim`` key in layers with an
    indexer; otherwise ``2 x kv_heads x head_dim``.
    """
    if layer is not None and m.layer_mixers[layer] != "attention":
        return 0
    if m.mla:
        extra = m.sparse.index_head_dim if m.sparse and (layer is None or
                                                         m.sparse.has_indexer(layer)) else 0
        return m.kv_cache_width() + extra
    return 2 * shard(m, layout).kv_heads * m.head_dim


def kv_cache_bytes_per_seq(m: ModelSpec, prec: Precision, tokens, layout: Layout | None = None):
    """KV cache of one sequence holding ``tokens`` tokens on the most loaded device
    (sum over the stage's attention layers of ``min(tokens, window) x width``, at
    ``kvbits``). Recurrent state is separate: :func:`state_bytes_per_seq`."""
    layout = layout or Layout()
    t = np.asarray(tokens, dtype=float)
    best = 0.0
    for layers in stages(m, layout):
        total = 0.0
        for i in layers:
            if m.v4:
                total = total + _v4_layer_kv_elements(m, i, t)
                continue
            width = kv_width_per_device(m, layout, i)
            if width:
                w = m.layer_windows[i]
                total = total + (t if w is None else np.minimum(t, w)) * width
        best = np.maximum(best, total)
    return best * prec.kv_bytes


def _v4_layer_kv_elements(m: ModelSpec, i: int, t):
    """DeepSeek-V4 cache of layer ``i`` for ``t`` tokens, in elements (replicated on every
    TP rank): the sliding window's ``min(t, window)`` K = V entries of head_dim, plus
    ``t / ratio`` compressed entries of head_dim (CSA also ``t / ratio`` index keys of
    index_head_dim; HCA none)."""
    v = m.v4
    out = np.minimum(t, v.window) * v.head_dim
    kind = v.kind(i)
    if kind == "csa":
        out = out + t / v.csa_rate * (v.head_dim + v.index_head_dim)
    elif kind == "hca":
        out = out + t / v.hca_rate * v.head_dim
    return out


def state_layer_bytes(m: ModelSpec, layout: Layout, layer: int) -> float:
    """Recurrent state of one sequence in one layer on one TP rank (bytes; independent of
    the context length).

    Gated DeltaNet: ``nv x dk x dv`` state elements at ``state_bytes`` + conv state
    ``(2 kd + vd) x (kernel - 1)`` at 16 bits; Mamba-2: ``H x P x N`` at ``state_bytes`` +
    conv state ``(d_inner + 2 G N) x (kernel - 1)`` at 16 bits; 0 for other layers.
    """
    kind = m.layer_mixers[layer]
    sh = shard(m, layout)
    if kind == "linear":
        g = m.linear_attn
        conv = 2 * sh.lin_k_heads * g.head_k_dim + sh.lin_v_heads * g.head_v_dim
        return g.recurrent_state_bytes(sh.lin_v_heads) + conv_state_bytes(conv, g.conv_kernel)
    if kind == "mamba":
        x = m.mamba
        conv = sh.mamba_heads * x.head_dim + 2 * sh.mamba_groups * x.state_size
        return x.recurrent_state_bytes(sh.mamba_heads) + conv_state_bytes(conv, x.conv_kernel)
    return 0.0


def state_bytes_per_seq(m: ModelSpec, layout: Layout | None = None) -> float:
    """Recurrent state (linear attention, Mamba-2) of one sequence on the most loaded
    device: it does not grow with the context (0 for pure-attention models)."""
    layout = layout or Layout()
    if not m.is_hybrid:
        return 0.0
    return max(sum(state_layer_bytes(m, layout, i) for i in layers)
               for layers in stages(m, layout))


def activation_peak_bytes(m: ModelSpec, prec: Precision, batch, input_len, prefill_ops: list[Op]):
    """Transient activation peak of the prefill (see module docstring)."""
    peak = 0.0
    for o in prefill_ops:
        peak = np.maximum(peak, o.act_bytes / o.count)
    return peak + np.asarray(batch) * input_len * m.hidden_size * prec.act_bytes


def memory_footprint(m: ModelSpec, prec: Precision, hw: HardwareSpec, batch, input_len,
                     output_len, prefill_ops: list[Op], layout: Layout | None = None,
                     micro_batch=None, rows: int = 1, act_len=None) -> Memory:
    """Footprint of ``batch`` requests of ``rows`` decode rows each (see module docstring);
    ``prefill_ops`` were built for ``micro_batch`` and ``act_len`` tokens per sequence (the
    prompt, or one chunk of a chunked prefill; default ``input_len``)."""
    layout = layout or Layout()
    B = np.asarray(batch, dtype=float)
    b = B if micro_batch is None else np.asarray(micro_batch, dtype=float)
    weights = weight_bytes_total(m, prec, layout) * (1 - layout.offload_weights)
    kv_seq = kv_cache_bytes_per_seq(m, prec, np.asarray(input_len) + output_len, layout)
    if rows > 1:   # prompt part shared by the rows, generated part per row
        kv_seq = kv_seq + (rows - 1) * (kv_seq - kv_cache_bytes_per_seq(m, prec, input_len, layout))
    kv = B * kv_seq * (1 - layout.offload_kv)
    state = B * rows * state_bytes_per_seq(m, layout)   # one state per decode row
    act = activation_peak_bytes(m, prec, b, input_len if act_len is None else act_len, prefill_ops)
    per_seq = (kv + state + act) / B   # act of a micro-batch B/mb also grows with B
    return Memory(weights, kv, act, hw.memory_bytes,
                  largest_batch(hw.memory_bytes, weights, per_seq), state)
