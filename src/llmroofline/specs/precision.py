"""Bit widths of weights, activations and KV cache, and the compute dtype they imply."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from .hardware import HardwareSpec

ALLOWED_BITS = (4, 8, 16, 32)


@dataclass(frozen=True)
class Precision:
    """``wbits`` for matmul weights, ``abits`` for activations, ``kvbits`` for the KV cache.

    Weight-only quantization (``wbits < abits``) dequantizes to the activation dtype, so
    the matmul runs at the ``abits`` peak. Norm weights, biases, the embedding table and
    ``lm_head`` stay at 16 bits (32 when ``abits = 32``), as AWQ, GPTQ and FP8 recipes do.
    """

    wbits: int = 16
    abits: int = 16
    kvbits: int = 16

    def __post_init__(self) -> None:
        for f in ("wbits", "abits", "kvbits"):
            v = getattr(self, f)
            if isinstance(v, bool) or v not in ALLOWED_BITS:
                raise InputError(f"{f} must be one of {', '.join(map(str, ALLOWED_BITS))}, got {v!r}")
        if self.abits < 16 and self.wbits > self.abits:
            raise InputError(f"abits={self.abits} needs wbits <= abits (W{self.abits}A{self.abits}); "
                             f"got wbits={self.wbits}")
        if self.abits == 4 and self.wbits != 4:
            raise InputError("abits=4 is only supported with wbits=4 (FP4)")

    @property
    def weight_bytes(self) -> float:
        return self.wbits / 8

    @property
    def act_bytes(self) -> float:
        return self.abits / 8

    @property
    def kv_bytes(self) -> float:
        return self.kvbits / 8

    @property
    def base_bytes(self) -> float:
        """Bytes per unquantized parameter (norms, biases, embeddings, lm_head)."""
        return 4.0 if self.abits == 32 or self.wbits == 32 else 2.0

    @property
    def label(self) -> str:
        return f"W{self.wbits}A{self.abits}KV{self.kvbits}"


def _half(hw: HardwareSpec) -> str:
    for dt in ("bf16", "fp16", "fp32"):
        if hw.peak(dt):
            return dt
    return next(iter(hw.peak_flops))


def compute_dtypes(prec: Precision, hw: HardwareSpec) -> tuple[dict[str, str], list[str]]:
    """Map op compute classes to the device dtype whose peak applies, plus fallback warnings.

    Classes: ``gemm`` (quantizable projections), ``gemm16`` (lm_head, router, attention
    matmuls: 16-bit), ``vector`` (norms, activations, softmax: FP32 vector units).
    """
    warnings: list[str] = []
    half = _half(hw)
    if prec.abits == 32:
        gemm = "fp32" if hw.peak("fp32") else half
        half = gemm
    elif prec.abits == 16:
        gemm = half
    else:
        wanted = ("fp4",) if prec.abits == 4 else ("fp8", "int8")
        gemm = next((dt for dt in wanted if hw.peak(dt)), "")
        if not gemm:
            chain = ("fp8", "int8") if prec.abits == 4 else ()
            gemm = next((dt for dt in chain if hw.peak(dt)), half)
            warnings.append(f"{hw.id} has no {'/'.join(wanted)} tensor units; "
                            f"{prec.abits}-bit matmuls are costed at the {gemm} peak")
    vector = "fp32" if hw.peak("fp32") else half
    return {"gemm": gemm, "gemm16": half, "vector": vector}, warnings
