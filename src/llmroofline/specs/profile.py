"""Efficiency profiles: what fraction of the datasheet roofline real kernels reach.

A profile maps a device family (``ampere``, ``ada``, ``hopper``, ...) to an
:class:`Efficiency`. ``ideal`` is the bare roofline (100 % of every peak, no overhead);
``default`` is fitted to published measurements of real engines
(``data/engines/default.toml`` records the fit and its error); ``trtllm-0.8`` and
``lmdeploy-0.1`` are fitted to one engine's rows each; a user profile is a TOML file of
the same shape written by ``llmroofline calibrate``.

Each term has a physical reason:

- ``bandwidth``: achievable fraction of DRAM bandwidth for streaming weights and
  activations (DRAM refresh, page misses, imperfect overlap: STREAM-like kernels reach
  80-92 % on HBM).
- ``attention_bandwidth``: the same for the decode attention kernel reading a paged KV
  cache (short, scattered reads; per-sequence tails).
- ``compute``, ``gemm_tile_rows`` and ``gemm_half_rows``: GEMM throughput for M token rows
  is ``compute x M / (t x ceil(M / t)) x M / (M + m_half)`` of peak: tensor cores work on
  tiles of at least t rows (16 for an MMA instruction), so a decode GEMM of a few rows pays
  for a padded tile; ``m_half`` adds a smooth ramp (0: none; probe fits it on CPUs).
- ``wave_quantization``: share of the wave-quantization loss a GEMM pays. A GEMM is cut
  into 128 x 128 output tiles, one per SM at a time; with ``tiles`` not a multiple of the
  SM count the last wave leaves SMs idle (``cost.wave_efficiency``: a 128-token prefill
  of a 4096-wide projection is 32 tiles, 30 % of an A100's 108 SMs). Libraries recover
  part of it (split-K, stream-K, smaller tiles): 0 = all recovered, 1 = none.
- ``attention_compute``: fraction of the 16-bit peak a fused attention kernel reaches
  (softmax and masking between the two matmuls).
- ``gqa_kv_reuse``: share of the repeat reads of a shared KV head (grouped-query or
  multi-query attention) that a decode attention kernel serves on-chip; 1 reads each KV
  head from DRAM once per step, 0 once per query head (kernels that parallelize over
  query heads, each streaming its KV head, rely on L2 to catch the repeats).
- ``gqa_max_group``: the largest group (query heads per KV head on one rank) the engine's
  KV-sharing decode kernel handles. Larger groups fall back to a kernel in which every
  query head streams its KV head (no reuse): kernels are specialised per layout, and a
  layout outside the set runs the generic path. Default: no limit; the shipped Hopper
  entries: 16 (docs/accuracy.md, "Kernel coverage").
- ``gqa_covers_sliding_window``: whether that kernel also serves sliding-window layers
  (a cyclic KV cache); when not, those layers run the generic path too (reuse 0).
  Default: yes; the shipped Hopper entries: no.
- ``launch_overhead_s``: fixed cost per kernel (launch latency, prologue/epilogue, the
  tail of each kernel when the next cannot start). CUDA graphs shrink it: with
  ``cuda_graphs=True`` decode steps pay the engine's ``cuda_graph_launch_factor`` of it
  per kernel (``specs.engine.Engine.graphed``).
- ``step_overhead_s``: fixed cost per forward step outside kernels (scheduling, sampling,
  host synchronisation).
- ``prefill_overhead_s``: extra fixed cost of the first step of a request (tokenization,
  admission and cache allocation, a prefill step that runs without CUDA graphs).
- ``moe_routing_overhead_s``: fixed cost per mixture-of-experts layer and step of the
  routing stage beyond the router GEMM (top-k selection, sorting tokens by expert,
  permuting them into the grouped GEMM's layout, and the weighted combine afterwards:
  four to six small kernels whose time hardly depends on the token count at decode
  sizes); charged on the ``router`` operator. 0 in the fitted 2024 profiles (their rows
  are dense models); the 2025-26 engine files set it (``[kernels]``, docs/engines.md).
- ``communication``: achieved fraction of link bandwidth in collectives.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import InputError, suggest



@dataclass(frozen=True)
class Efficiency:
    """Achievable fractions of the roofline and fixed costs (see module docstring).

    ``attention_bandwidth``/``attention_compute`` of ``None`` mean "same as
    ``bandwidth``/``compute``".
    """

    bandwidth: float = 1.0
    compute: float = 1.0
    launch_overhead_s: float = 0.0
    communication: float = 1.0
    attention_bandwidth: float | None = None
    attention_compute: float | None = None
    gemm_half_rows: float = 0.0
    gemm_tile_rows: float = 0.0
    step_overhead_s: float = 0.0
    prefill_overhead_s: float = 0.0
    gemm_overlap: float = 1.0
    gqa_kv_reuse: float = 1.0
    wave_quantization: float = 0.0
    gqa_max_group: float = math.inf
    gqa_covers_sliding_window: bool = True
    moe_routing_overhead_s: float = 0.0

    def __post_init__(self) -> None:
        for f in ("bandwidth", "compute", "communication", "attention_bandwidth",
                  "attention_compute"):
            v = getattr(self, f)
            if v is not None and not (0 < v <= 1):
                raise InputError(f"efficiency.{f} must be in (0, 1], got {v}")
        for f in ("gemm_overlap", "gqa_kv_reuse", "wave_quantization"):
            if not (0 <= getattr(self, f) <= 1):
                raise InputError(f"efficiency.{f} must be in [0, 1], got {getattr(self, f)}")
        if not self.gqa_max_group >= 1:
            raise InputError(f"efficiency.gqa_max_group must be >= 1, got {self.gqa_max_group}")
        for f, hi in (("launch_overhead_s", 1e-2), ("step_overhead_s", 1.0),
                      ("prefill_overhead_s", 10.0), ("gemm_half_rows", 1e6),
                      ("gemm_tile_rows", 1024), ("moe_routing_overhead_s", 1e-3)):
            v = getattr(self, f)
            if not (0 <= v <= hi):
                raise InputError(f"efficiency.{f} must be in [0, {hi:g}], got {v}")

    @property
    def attn_bandwidth(self) -> float:
        return self.bandwidth if self.attention_bandwidth is None else self.attention_bandwidth

    @property
    def attn_compute(self) -> float:
        return self.compute if self.attention_compute is None else self.attention_compute

    def kv_reuse(self, group, window=math.inf) -> np.ndarray | float:
        """Share of GQA/MQA repeat KV reads served on-chip for ``group`` query heads per
        KV head in a layer with sliding ``window`` (inf: full attention):
        ``gqa_kv_reuse`` where the KV-sharing kernel covers the layout, else 0."""
        covered = np.asarray(group) <= self.gqa_max_group
        if not self.gqa_covers_sliding_window:
            covered = covered & ~np.isfinite(np.asarray(window, dtype=float))
        return np.where(covered, self.gqa_kv_reuse, 0.0)

    @property
    def is_ideal(self) -> bool:
        return self == Efficiency()


def without_wave_quantization(p: "Profile") -> "Profile":
    """``p`` with GEMMs that lose nothing to a partial last wave (stream-K style kernels)."""
    return Profile(f"{p.name}, stream-K",
                   {k: replace(e, wave_quantization=0.0) for k, e in p.families.items()},
                   replace(p.fallback, wave_quantization=0.0), p.provenance)


# Data-file keys: seconds are written in microseconds for readability.
_US_FIELDS = {"launch_overhead_us": "launch_overhead_s", "step_overhead_us": "step_overhead_s",
              "prefill_overhead_us": "prefill_overhead_s",
              "moe_routing_overhead_us": "moe_routing_overhead_s"}
_PLAIN_FIELDS = ("bandwidth", "compute", "communication", "attention_bandwidth",
                 "attention_compute", "gemm_half_rows", "gemm_tile_rows", "gemm_overlap",
                 "gqa_kv_reuse", "wave_quantization", "gqa_max_group")
_BOOL_FIELDS = ("gqa_covers_sliding_window",)
# Which head layouts an engine's KV-sharing decode kernel serves: held fixed, not fitted.
COVERAGE_FIELDS = ("gqa_max_group", "gqa_covers_sliding_window")
EFFICIENCY_KEYS = (*_PLAIN_FIELDS, *_BOOL_FIELDS, *_US_FIELDS)


def efficiency_from_dict(d: dict[str, Any], where: str) -> Efficiency:
    if not isinstance(d, dict):
        raise InputError(f"{where}: expected a table of efficiency fields")
    kw: dict[str, float | bool] = {}
    for k, v in d.items():
        if k not in EFFICIENCY_KEYS:
            raise InputError(f"{where}: unknown field '{k}'" + suggest(k, EFFICIENCY_KEYS)
                             + f" (allowed: {', '.join(EFFICIENCY_KEYS)})")
        if k in _BOOL_FIELDS:
            if not isinstance(v, bool):
                raise InputError(f"{where}: field '{k}' must be true or false, got {v!r}")
            kw[k] = v
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InputError(f"{where}: field '{k}' must be a number, got {v!r}")
        if k in _US_FIELDS:
            kw[_US_FIELDS[k]] = float(v) * 1e-6
        else:
            kw[k] = float(v)
    try:
        return Efficiency(**kw)
    except InputError as e:
        raise InputError(f"{where}: {e}") from None


def efficiency_to_dict(e: Efficiency) -> dict[str, float | bool]:
    out: dict[str, float | bool] = {}
    for k in _PLAIN_FIELDS:
        v = getattr(e, k)
        if v is not None and v != math.inf:
            out[k] = v
    for k in _BOOL_FIELDS:
        if not getattr(e, k):      # written only when it differs from the default
            out[k] = False
    for k, attr in _US_FIELDS.items():
        if attr != "moe_routing_overhead_s" or e.moe_routing_overhead_s:
            out[k] = getattr(e, attr) * 1e6
    return out


# Device family -> the fitted family whose kernels it runs (used when a profile has no entry
# of its own for the family): Blackwell datacenter parts run the CUTLASS / FlashAttention /
# TensorRT-LLM kernels that were tuned on Hopper (TMA, warp-specialised GEMMs), so they keep
# Hopper's achievable fractions and fixed per-kernel and per-step costs, and get their own
# peaks, bandwidth and SM count from the catalog. Acyclic by construction.
FAMILY_LINEAGE: dict[str, str] = {"blackwell": "hopper"}


@dataclass(frozen=True)
class Profile:
    """Efficiency per device family and weight precision, with fallbacks.

    Keys of ``families``: ``"<family>-a<bits>"`` (e.g. ``hopper-a8``: FP8/INT8 matmuls),
    ``"a<bits>"`` (any family computing at that activation width), or ``"<family>"``.
    Lookup takes the first present of ``family-aN``, ``aN``, ``family``, then ``fallback``
    (a family with no entry of its own and a parent in :data:`FAMILY_LINEAGE` looks up as
    the parent):
    kernels of one compute format behave alike across GPU generations more than one
    generation behaves alike across formats. Weight-only quantization (W4A16, W8A16) runs
    16-bit kernels that stream narrower weights, so it looks up ``a16``.
    """

    name: str
    families: dict[str, Efficiency] = field(default_factory=dict)
    fallback: Efficiency = field(default_factory=Efficiency)
    provenance: dict[str, Any] = field(default_factory=dict)

    def lookup_keys(self, family: str, abits: int | None = None) -> list[str]:
        keys = [f"{family}-a{abits}", f"a{abits}"] if abits else []
        return keys + [family]

    def entry_key(self, family: str, abits: int | None = None) -> str:
        """The key of the entry a device family resolves to, or ``"fallback"``.

        A family with no entry of its own (neither ``family`` nor ``family-aN``) that has a
        parent in :data:`FAMILY_LINEAGE` resolves exactly as its parent does: the same
        kernels' fractions and fixed overheads, while peaks, bandwidth and SM count come
        from the device itself (``cost.Roofline``)."""
        own = {f"{family}-a{abits}", family} if abits else {family}
        if not own & set(self.families) and family in FAMILY_LINEAGE:
            return self.entry_key(FAMILY_LINEAGE[family], abits)
        return next((k for k in self.lookup_keys(family, abits) if k in self.families),
                    "fallback")

    def for_family(self, family: str, abits: int | None = None) -> Efficiency:
        k = self.entry_key(family, abits)
        return self.fallback if k == "fallback" else self.families[k]


IDEAL = Profile("ideal", provenance={"description": "100 % of datasheet peaks, no overhead"})


def profile_from_dict(name: str, data: dict[str, Any], where: str) -> Profile:
    fams = data.get("families", {})
    if not isinstance(fams, dict):
        raise InputError(f"{where}: [families] must be a table")
    families = {f: efficiency_from_dict(v, f"{where} [families.{f}]") for f, v in fams.items()}
    fallback = efficiency_from_dict(data.get("fallback", {}), f"{where} [fallback]")
    prov = data.get("provenance", {})
    return Profile(name, families, fallback, prov if isinstance(prov, dict) else {})


CHECKED_HEADER = "(complete only with its sha256 line at the end)"


def _sha256(text: str) -> str:
    import hashlib
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_profile_text(text: str, where: str) -> None:
    """A file written by :func:`profile_to_toml` must end with the sha256 of the text above
    that line: a truncated or half-written profile is an error, not a silently different
    profile. Files without the checked header (hand-written, older) are not checked."""
    first = text.split("\n", 1)[0]
    if not (first.startswith("# llmroofline efficiency profile") and CHECKED_HEADER in first):
        return
    body, _, last = text.rstrip("\n").rpartition("\n")
    if not last.startswith("# sha256 "):
        raise InputError(f"profile: {where} is incomplete (its last line is not the '# sha256' "
                         "line `calibrate` writes: a truncated or interrupted write?); "
                         "run calibrate again")
    if _sha256(body + "\n") != last[len("# sha256 "):].strip():
        raise InputError(f"profile: {where} does not match its sha256 line (truncated, "
                         "corrupted or edited by hand; to use an edited file, delete its last "
                         "line)")


def profile_to_toml(p: Profile) -> str:
    """Serialize a profile (round-trips through :func:`load_profile`); the last line is
    the sha256 of the text above it (:func:`check_profile_text`)."""
    lines = [f"# llmroofline efficiency profile '{p.name}' {CHECKED_HEADER}", ""]
    if p.provenance:
        lines.append("[provenance]")
        for k, v in p.provenance.items():
            lines.append(f"{k} = {_toml_value(v)}")
        lines.append("")
    lines.append("[fallback]")
    lines += [f"{k} = {_toml_value(v)}" for k, v in efficiency_to_dict(p.fallback).items()]
    for fam, e in p.families.items():
        lines += ["", f"[families.{fam}]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in efficiency_to_dict(e).items()]
    body = "\n".join(lines) + "\n"
    return body + f"# sha256 {_sha256(body)}\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(float(v)) if isinstance(v, float) else str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    s = str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
    return f'"{s}"'


def load_profile(name_or_path: str | os.PathLike | Profile | None = None) -> Profile:
    """The efficiency entries of a built-in engine (``default``, ``ideal``, ...) or of a
    profile / engine TOML file (``specs.engine.load_engine`` reads them)."""
    if isinstance(name_or_path, Profile):
        return name_or_path
    from .engine import load_engine     # engine files hold the profiles; engine imports us
    return load_engine(name_or_path).profile




