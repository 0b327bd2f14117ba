"""Bit widths of weights, activations and KV cache, and the compute dtype they imply."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from .hardware import HardwareSpec

ALLOWED_BITS = (4, 8, 16, 32)
# Weight classes a release can store in different formats (specs/quant_config.py); the
# operator graph and memory.py price each matmul weight by its class.
WEIGHT_CLASSES = ("attn_qkv", "attn_out", "dense_mlp", "shared_experts", "experts",
                  "lm_head", "embedding")
_BASE_CLASSES = ("lm_head", "embedding")


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
    group_size: int = 0      # weights sharing one scale (0: per-channel/per-tensor, negligible)
    scale_bits: int = 16     # bits of scale (+ zero point) stored per group
    int8: bool = False       # 8-bit matmuls in INT8 (SmoothQuant) rather than FP8
    # A release's own formats (specs/quant_config.NativeQuant): (class, bytes per weight
    # with its scales, bits) per weight class; empty: every class follows wbits/base_bytes.
    native: tuple[tuple[str, float, int], ...] = ()
    native_label: str = ""

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
        if isinstance(self.group_size, bool) or not isinstance(self.group_size, int) \
                or not 0 <= self.group_size <= 65536:
            raise InputError(f"group_size must be an integer in [0, 65536], got {self.group_size!r}")
        for entry in self.native:
            if not (isinstance(entry, tuple) and len(entry) == 3 and entry[0] in WEIGHT_CLASSES
                    and 0 < entry[1] <= 4 and entry[2] in (1, 2, 3, 4, 5, 6, 7, 8, 16, 32)):
                raise InputError(f"native: each entry must be (class in {', '.join(WEIGHT_CLASSES)}, "
                                 f"bytes per weight in (0, 4], bits), got {entry!r}")

    def class_weight_bytes(self, cls: str) -> float:
        """Bytes per weight of a weight class (``WEIGHT_CLASSES``), scales included: the
        release's own format when ``native`` has it, else ``weight_bytes`` for decoder
        matmuls and ``base_bytes`` for lm_head and the embedding."""
        for c, b, _ in self.native:
            if c == cls:
                return b
        return self.base_bytes if cls in _BASE_CLASSES else self.weight_bytes

    def class_compute(self, cls: str, default: str = "gemm") -> str:
        """Compute class of a matmul of weight class ``cls``: a class a release keeps in
        16 bits runs 16-bit GEMMs (``gemm16``) even when the rest runs at ``abits``."""
        for c, _, bits in self.native:
            if c == cls and bits >= 16 and self.abits < 16:
                return "gemm16"
        return default

    @property
    def weight_bytes(self) -> float:
        """Bytes per quantized weight, including its share of the group's scale."""
        scales = self.scale_bits / 8 / self.group_size if self.group_size else 0.0
        return self.wbits / 8 + scales

    @property
    def act_bytes(self) -> float:
        """Bytes per activation element between operators and in collectives.

        W8A8 and FP4 engines quantize a GEMM's input inside the kernel before it and keep
        the residual stream, norms and all-reduces in 16 bits, so activations are stored
        at max(abits, 16) bits; ``abits`` selects the matmul dtype.
        """
        return max(self.abits, 16) / 8

    @property
    def kv_bytes(self) -> float:
        return self.kvbits / 8

    @property
    def base_bytes(self) -> float:
        """Bytes per unquantized parameter (norms, biases, embeddings, lm_head)."""
        return 4.0 if self.abits == 32 or self.wbits == 32 else 2.0

    @property
    def label(self) -> str:
        g = f"g{self.group_size}" if self.group_size else ""
        return f"W{self.wbits}{g}A{self.abits}KV{self.kvbits}" + (" INT8" if self.int8 else "") \
            + (f" ({self.native_label} as released)" if self.native_label else "")


# Named schemes: shortcuts for the bit widths (comma-combine a weight scheme and a KV one).
SCHEMES: dict[str, dict] = {
    "fp16": dict(wbits=16, abits=16, kvbits=16),
    "bf16": dict(wbits=16, abits=16, kvbits=16),
    "fp8": dict(wbits=8, abits=8, kvbits=8),                 # W8A8 FP8 with FP8 KV cache
    "int8-sq": dict(wbits=8, abits=8, int8=True),            # SmoothQuant W8A8 INT8
    "w8a16": dict(wbits=8, abits=16),                        # weight-only INT8, per channel
    "w4a16": dict(wbits=4, abits=16, group_size=128, scale_bits=20),  # AWQ/GPTQ: fp16 scale + 4-bit zero
    "fp4": dict(wbits=4, abits=4, group_size=16, scale_bits=8),       # NVFP4: FP8 scale per 16
    "kv-fp8": dict(kvbits=8),
    "kv-int8": dict(kvbits=8),
    "kv-int4": dict(kvbits=4),
}


def parse_quant(text: str | None, **explicit) -> Precision:
    """Precision from ``--quant`` (e.g. ``"w4a16,kv-fp8"``) and explicit bit flags.

    Explicit values that are not ``None`` override the scheme.
    """
    kw: dict = {}
    for part in (text or "").split(","):
        part = part.strip().lower()
        if not part:
            continue
        if part not in SCHEMES:
            from ..errors import suggest
            raise InputError(f"quant: unknown scheme '{part}'" + suggest(part, SCHEMES)
                             + f"; choose from {', '.join(SCHEMES)}")
        kw.update(SCHEMES[part])
    kw.update({k: v for k, v in explicit.items() if v is not None})
    return Precision(**kw)


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
        wanted = ("fp4",) if prec.abits == 4 else (("int8",) if prec.int8 else ("fp8", "int8"))
        gemm = next((dt for dt in wanted if hw.peak(dt)), "")
        if gemm and gemm != wanted[0]:   # FP8 on a device with INT8 tensor cores only
            warnings.append(f"{hw.id} has no {wanted[0]} tensor units; {prec.abits}-bit "
                            f"matmuls are costed at its {gemm} peak (an {gemm.upper()} "
                            "engine such as SmoothQuant; --quant int8-sq says so explicitly)")
        if not gemm:
            chain = ("fp8", "int8") if prec.abits == 4 else (("fp8",) if prec.int8 else ())
            gemm = next((dt for dt in chain if hw.peak(dt)), half)
            warnings.append(f"{hw.id} has no {'/'.join(wanted)} tensor units; "
                            f"{prec.abits}-bit matmuls are costed at the {gemm} peak")
    vector = "fp32" if hw.peak("fp32") else half
    return {"gemm": gemm, "gemm16": half, "vector": vector}, warnings
