"""Device memory footprint and the largest batch that fits.

    total_bytes = weights_bytes + kv_cache_bytes + activation_bytes

- weights: every parameter once (matmul weights at ``wbits``, the rest 16-bit).
- KV cache: allocated for ``input_len + output_len`` tokens per sequence (what engines
  reserve for the whole request); sliding-window layers keep at most ``window`` tokens.
  Per token per layer: ``2 x kv_heads x head_dim`` elements (MLA: ``kv_lora_rank +
  qk_rope_head_dim``), at ``kvbits``.
- activations: the prefill's transient peak, i.e. the largest per-layer operator's
  input + output activations, plus the residual stream (``batch x input_len x hidden``).

Every term but the weights is proportional to the batch, so
``max_batch = floor((capacity - weights) / (per-sequence bytes))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .graph import Op, weight_bytes_total
from .specs.hardware import HardwareSpec
from .specs.model import ModelSpec
from .specs.precision import Precision


@dataclass(frozen=True)
class Memory:
    weights_bytes: float
    kv_cache_bytes: np.ndarray
    activation_bytes: np.ndarray
    capacity_bytes: float
    max_batch: np.ndarray

    @property
    def total_bytes(self) -> np.ndarray:
        return self.weights_bytes + self.kv_cache_bytes + self.activation_bytes

    @property
    def fits(self) -> np.ndarray:
        return self.total_bytes <= self.capacity_bytes


def kv_cache_bytes_per_seq(m: ModelSpec, prec: Precision, tokens) -> np.ndarray:
    """KV cache of one sequence holding ``tokens`` tokens, summed over layers."""
    t = np.asarray(tokens, dtype=float)
    width = m.kv_cache_width()
    total = 0.0
    for w in m.layer_windows:
        total = total + (t if w is None else np.minimum(t, w))
    return total * width * prec.kv_bytes


def activation_peak_bytes(m: ModelSpec, prec: Precision, batch, input_len, prefill_ops: list[Op]):
    """Transient activation peak of the prefill (see module docstring)."""
    peak = 0.0
    for o in prefill_ops:
        peak = np.maximum(peak, o.act_bytes / o.count)
    return peak + np.asarray(batch) * input_len * m.hidden_size * prec.act_bytes


def memory_footprint(m: ModelSpec, prec: Precision, hw: HardwareSpec, batch, input_len,
                     output_len, prefill_ops: list[Op]) -> Memory:
    B = np.asarray(batch, dtype=float)
    weights = weight_bytes_total(m, prec)
    kv = B * kv_cache_bytes_per_seq(m, prec, np.asarray(input_len) + output_len)
    act = activation_peak_bytes(m, prec, B, input_len, prefill_ops)
    per_seq = (kv + act) / B
    free = hw.memory_bytes - weights
    max_batch = np.where(free > 0, np.floor(np.maximum(free, 0) / per_seq), 0.0)
    return Memory(weights, kv, act, hw.memory_bytes, max_batch)
