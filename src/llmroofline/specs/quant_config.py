"""Native quantization of a release, read from its ``quantization_config`` (config.json)
and the ``hf_quant_config.json`` that NVIDIA ModelOpt writes beside it.

The result, :class:`NativeQuant`, gives every weight class of the operator graph its
storage format (bits per weight plus the scales of its group), so that the weights a
release ships are priced as shipped: gpt-oss keeps attention in BF16 and stores its
experts in MXFP4; DeepSeek-V3 is FP8 with one FP32 scale per 128 x 128 block; NVIDIA's
NVFP4 releases quantize the MLPs and leave the layers of ``exclude_modules`` in 16 bits.
:meth:`NativeQuant.precision` turns it into the :class:`~.precision.Precision` the engine
uses (``Precision.native``: one bytes-per-weight value per class, the one source of truth
for graph and memory).

Weight classes (``precision.WEIGHT_CLASSES``): ``attn_qkv`` (q/k/v and MLA down/up
projections), ``attn_out`` (o_proj), ``dense_mlp``, ``shared_experts``, ``experts``
(routed), ``lm_head``, ``embedding``. For each class and each decoder layer the module
names of that class are matched against the config's lists; a class's bytes per weight is
the mean over its layers and modules (layers of one class have equal shapes, so a layer
left in 16 bits counts exactly; modules of one layer count alike). Names past
``num_hidden_layers`` (MTP layers), vision towers and projectors are not priced.

Formats (``docs/conventions.md``, "Native quantization"):

=====================  ====  ==========  ======================================
format                 bits  group       scale per group
=====================  ====  ==========  ======================================
bf16 (not quantized)   16    -           -
fp8 (per tensor/chan.)  8    -           negligible
fp8 block 128 x 128     8    16384       32-bit FP32 (``weight_scale_inv``)
mxfp4 (OCP MX)          4    32          8-bit E8M0
nvfp4                   4    16          8-bit FP8 E4M3 (+ one FP32 per tensor)
mxfp8                   8    32          8-bit E8M0
int / compressed        n    group_size  16-bit BF16 scale (+ n-bit zero if asym.)
=====================  ====  ==========  ======================================
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
import fnmatch
from typing import Any

from ..errors import InputError
from .precision import ALLOWED_BITS, WEIGHT_CLASSES, Precision


@dataclass(frozen=True)
class WeightFormat:
    """Storage of one quantized weight tensor: ``bits`` per element and one
    ``scale_bits`` scale per ``group_size`` elements (0: per tensor/channel, negligible)."""

    name: str
    bits: int
    group_size: int = 0
    scale_bits: int = 0
    abits: int = 16          # activation width of the matmul kernels the release targets

    @property
    def bytes_per_weight(self) -> float:
        scales = self.scale_bits / 8 / self.group_size if self.group_size else 0.0
        return self.bits / 8 + scales


BF16 = WeightFormat("bf16", 16)
FP8 = WeightFormat("fp8", 8, abits=8)
NVFP4 = WeightFormat("nvfp4", 4, 16, 8, abits=4)
NVFP4_W4A16 = WeightFormat("nvfp4 (W4A16)", 4, 16, 8, abits=16)
MXFP4 = WeightFormat("mxfp4", 4, 32, 8, abits=16)   # weight-only: dequantized in the GEMM
MXFP8 = WeightFormat("mxfp8", 8, 32, 8, abits=8)


def fp8_block(rows: int, cols: int) -> WeightFormat:
    """FP8 E4M3 with one FP32 scale per ``rows x cols`` block (DeepSeek-V3 style)."""
    return WeightFormat(f"fp8 block {rows}x{cols}", 8, rows * cols, 32, abits=8)


# ModelOpt quant_algo -> format (W4A8_* and INT4 AWQ are not in the releases here).
MODELOPT_ALGOS = {"NVFP4": NVFP4, "FP8": FP8, "W4A16_NVFP4": NVFP4_W4A16, "MXFP8": MXFP8,
                  "MXFP4": MXFP4, "FP8_PER_CHANNEL_PER_TOKEN": FP8}


@dataclass(frozen=True)
class NativeQuant:
    """The storage format of each weight class of a release (see module docstring)."""

    method: str                                        # "fp8", "mxfp4", "modelopt NVFP4", ...
    classes: tuple[tuple[str, float, int], ...]        # (class, bytes per weight, bits)
    abits: int                                         # matmul activation width
    wbits: int                                         # bits of the dominant class
    group_size: int = 0
    scale_bits: int = 16
    kvbits: int | None = None                          # KV width the release ships scales for

    def bytes_per_weight(self, cls: str) -> float:
        """Bytes per weight of a class the model has (scales included)."""
        return next(b for c, b, _ in self.classes if c == cls)

    @property
    def summary(self) -> str:
        """One line: which classes are stored how."""
        groups: dict[str, list[str]] = {}
        for c, b, _ in self.classes:
            groups.setdefault(f"{8 * b:.4g} bits", []).append(c)
        return f"{self.method}: " + "; ".join(f"{', '.join(cs)} {k}" for k, cs in groups.items())

    def precision(self, kvbits: int | None = None) -> Precision:
        """The engine precision of the release as shipped (``kvbits`` overrides the KV)."""
        kv = kvbits if kvbits is not None else (self.kvbits or 16)
        return Precision(wbits=self.wbits, abits=self.abits, kvbits=kv,
                         group_size=self.group_size, scale_bits=self.scale_bits,
                         native=self.classes, native_label=self.method)


# -- module names of each class in one decoder layer ------------------------------------
_LAYER_PREFIXES = ("model.layers.{i}.", "language_model.model.layers.{i}.",
                   "model.language_model.layers.{i}.", "layers.{i}.")
_TOP_PREFIXES = ("", "language_model.", "model.language_model.", "model.")


def _layer_modules(m, i: int) -> dict[str, list[tuple[str, ...]]]:
    """Class -> modules of layer ``i``, each a tuple of alternative spellings."""
    if m.mla:
        qkv = [(f"self_attn.{n}", f"attn.w{n.split('_proj')[0]}") for n in
               ((["q_a_proj", "q_b_proj"] if m.mla.q_lora_rank else ["q_proj"])
                + ["kv_a_proj_with_mqa", "kv_b_proj"])]
    else:
        qkv = [(f"self_attn.{x}_proj", "self_attn.qkv_proj", "self_attn.query_key_value",
                f"attn.w{x}") for x in ("q", "k", "v")]
    out: dict[str, list[tuple[str, ...]]] = {
        "attn_qkv": qkv, "attn_out": [("self_attn.o_proj", "self_attn.dense", "attn.wo")]}
    trio = (("gate", 1), ("up", 3), ("down", 2))
    if m.moe_layer(i):
        out["experts"] = [(f"mlp.experts.0.{p}_proj", f"mlp.experts.{p}_proj",
                           "mlp.experts.gate_up_proj" if p != "down" else "mlp.experts.down_proj",
                           f"block_sparse_moe.experts.0.w{w}", f"ffn.experts.0.w{w}",
                           f"feed_forward.experts.{'down' if p == 'down' else 'gate_up'}_proj")
                          for p, w in trio]
        if m.moe.shared_ffn:
            out["shared_experts"] = [(f"mlp.shared_experts.{p}_proj", f"mlp.shared_expert.{p}_proj",
                                      f"ffn.shared_experts.w{w}",
                                      f"feed_forward.shared_expert.{p}_proj") for p, w in trio]
    else:
        out["dense_mlp"] = [(f"mlp.{p}_proj", f"ffn.w{w}", f"feed_forward.{p}_proj")
                            for p, w in trio]
    return out


class _Patterns:
    """A module list with transformers' semantics: an entry matches a module name when it
    is the name, a dotted suffix or prefix of it, a glob of it (or of a prefix), or, as
    ``re:<regex>``, matches it from the start (compressed-tensors). Compiled once: plain
    entries are set lookups over the name's dotted prefixes and suffixes, the rest one
    regex."""

    def __init__(self, patterns: list[str]):
        self.plain = {p for p in patterns if not p.startswith("re:") and not set(p) & set("*?[")}
        rx = [p[3:] for p in patterns if p.startswith("re:")]
        rx += [fnmatch.translate(p) for p in patterns
               if not p.startswith("re:") and set(p) & set("*?[")]
        rx += [fnmatch.translate(p + ".*") for p in patterns
               if not p.startswith("re:") and set(p) & set("*?[")]
        self.regex = re.compile("|".join(f"(?:{r})" for r in rx)) if rx else None

    def __call__(self, name: str) -> bool:
        if self.plain:
            parts = name.split(".")
            if any(".".join(parts[:k]) in self.plain or ".".join(parts[k - 1:]) in self.plain
                   for k in range(1, len(parts) + 1)):
                return True
        return bool(self.regex and self.regex.match(name))

    def any(self, names: list[str]) -> bool:
        return any(self(n) for n in names)


def _names(m, i: int | None, spellings: tuple[str, ...]) -> list[str]:
    prefixes = [p.format(i=i) for p in _LAYER_PREFIXES] if i is not None else list(_TOP_PREFIXES)
    return [p + s for p in prefixes for s in spellings]


def _resolve(m, method: str, fmt_of, abits_default: int | None = None,
             kvbits: int | None = None) -> NativeQuant:
    """Average ``fmt_of(names, cls) -> WeightFormat`` over the layers and modules of each
    class of ``m`` into a :class:`NativeQuant`."""
    per: dict[str, list[WeightFormat]] = {c: [] for c in WEIGHT_CLASSES}
    for i in range(m.num_layers):
        for cls, modules in _layer_modules(m, i).items():
            for spellings in modules:
                per[cls].append(fmt_of(_names(m, i, spellings), cls))
    per["lm_head"].append(fmt_of(_names(m, None, ("lm_head", "head")), "lm_head"))
    per["embedding"].append(fmt_of(_names(m, None, ("embed_tokens", "embed")), "embedding"))
    classes, dominant = [], None
    for cls in WEIGHT_CLASSES:
        if not per[cls]:
            continue           # the model has no such weights
        fmts = per[cls]
        mean = sum(f.bytes_per_weight for f in fmts) / len(fmts)
        top = Counter(fmts).most_common(1)[0][0]
        classes.append((cls, mean, top.bits))
        if cls in ("experts", "dense_mlp") and (dominant is None or cls == "experts"):
            dominant = top
    dominant = dominant or BF16
    wbits = dominant.bits if dominant.bits in ALLOWED_BITS else 16
    abits = abits_default if abits_default is not None else dominant.abits
    if abits < 16 and wbits > abits:
        abits = 16
    return NativeQuant(method, tuple(classes), abits=abits, wbits=wbits,
                       group_size=dominant.group_size, scale_bits=dominant.scale_bits or 16,
                       kvbits=kvbits)


def _excluding(fmt: WeightFormat, excluded: list[str]):
    """Every linear module in ``fmt`` but those matched by ``excluded``; lm_head and the
    embedding stay 16-bit (no exclusion-list recipe quantizes them)."""
    skip = _Patterns(excluded)

    def fmt_of(names: list[str], cls: str) -> WeightFormat:
        if cls in ("lm_head", "embedding"):
            return BF16
        return BF16 if skip.any(names) else fmt
    return fmt_of


def _str_list(v: Any, where: str) -> list[str]:
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise InputError(f"{where} must be a list of module names, got {v!r}")
    return v


def _int_field(d: Mapping, key: str, where: str, lo: int, hi: int, default: int | None = None) -> int:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise InputError(f"{where}.{key} must be an integer in [{lo}, {hi}], got {v!r}")
    return v


def _kv_bits(algo: Any) -> int | None:
    if isinstance(algo, Mapping):
        return algo.get("num_bits") if algo.get("num_bits") in (4, 8) else None
    return 8 if isinstance(algo, str) and algo.upper() in ("FP8", "INT8") else None


def _modelopt(m, q: Mapping, where: str) -> NativeQuant:
    """ModelOpt: ``quant_algo`` (+ ``group_size``, ``exclude_modules``), or
    ``MIXED_PRECISION`` with a ``quantized_layers`` table."""
    algo = q.get("quant_algo")
    kv = _kv_bits(q.get("kv_cache_quant_algo", q.get("kv_cache_scheme")))
    excluded = _str_list(q.get("exclude_modules", q.get("ignore")), f"{where}.exclude_modules")

    def fmt(a: Any, d: Mapping, w: str) -> WeightFormat:
        if not isinstance(a, str) or a.upper() not in MODELOPT_ALGOS:
            raise InputError(f"{w}.quant_algo: unsupported {a!r}; supported: "
                             + ", ".join(MODELOPT_ALGOS) + ", MIXED_PRECISION")
        f = MODELOPT_ALGOS[a.upper()]
        if f.group_size and "group_size" in d:
            gs = _int_field(d, "group_size", w, 1, 65536)
            f = WeightFormat(f.name + ("" if gs == f.group_size else f" g{gs}"), f.bits, gs,
                             f.scale_bits, f.abits)
        return f

    if isinstance(algo, str) and algo.upper() == "MIXED_PRECISION":
        layers = q.get("quantized_layers")
        if not isinstance(layers, Mapping) or not layers:
            raise InputError(f"{where}.quantized_layers: MIXED_PRECISION needs a table of "
                             "module -> {quant_algo, group_size}")
        table = [(k, fmt(v.get("quant_algo") if isinstance(v, Mapping) else None,
                         v if isinstance(v, Mapping) else {}, f"{where}.quantized_layers.{k}"))
                 for k, v in layers.items()]

        skip = _Patterns(excluded)
        keyed = [(_Patterns([k]), f) for k, f in table]
        exact = {k: f for k, f in table}

        def fmt_of(names: list[str], cls: str) -> WeightFormat:
            if skip.any(names):
                return BF16
            for n in names:                      # most keys are module names or prefixes
                parts = n.split(".")
                for k in range(len(parts), 0, -1):
                    f = exact.get(".".join(parts[:k]))
                    if f is not None:
                        return f
            return next((f for pat, f in keyed if not pat.plain and pat.any(names)), BF16)
        algos = Counter(f.name for _, f in table).most_common()
        return _resolve(m, "modelopt mixed (" + ", ".join(a for a, _ in algos) + ")", fmt_of,
                        kvbits=kv)
    f = fmt(algo, q, where)
    return _resolve(m, f"modelopt {f.name}", _excluding(f, excluded), kvbits=kv)


def _compressed_tensors(m, q: Mapping, where: str) -> NativeQuant:
    groups = q.get("config_groups")
    if not isinstance(groups, Mapping) or not groups:
        raise InputError(f"{where}.config_groups: compressed-tensors needs at least one group")
    ignore = _str_list(q.get("ignore"), f"{where}.ignore")
    fmt_name = str(q.get("format") or "")
    rules: list[tuple[list[str], WeightFormat]] = []
    for gname, g in groups.items():
        w = f"{where}.config_groups.{gname}"
        if not isinstance(g, Mapping) or not isinstance(g.get("weights"), Mapping):
            raise InputError(f"{w}.weights: expected a table with num_bits")
        wt = g["weights"]
        bits = _int_field(wt, "num_bits", f"{w}.weights", 1, 16)
        gfmt = str(g.get("format") or fmt_name)
        strategy = wt.get("strategy") or "tensor"
        group = 0
        if strategy == "group":
            group = _int_field(wt, "group_size", f"{w}.weights", 1, 65536)
        elif strategy == "block":
            bs = wt.get("block_structure")
            if not (isinstance(bs, list) and len(bs) == 2 and all(isinstance(x, int) and x > 0 for x in bs)):
                raise InputError(f"{w}.weights.block_structure must be [rows, cols], got {bs!r}")
            group = bs[0] * bs[1]
        elif strategy not in ("tensor", "channel", "tensor_group"):
            raise InputError(f"{w}.weights.strategy: unsupported {strategy!r}; supported: "
                             "tensor, channel, group, block, tensor_group")
        if strategy == "tensor_group":     # NVFP4 in compressed-tensors
            group = wt.get("group_size") or 16
        fp_scales = "nvfp4" in gfmt or "mxfp4" in gfmt or strategy == "tensor_group"
        scale_bits = 8 if fp_scales else 16 + (0 if wt.get("symmetric", True) else bits)
        ia = g.get("input_activations")
        abits = ia.get("num_bits") if isinstance(ia, Mapping) and ia.get("num_bits") in (4, 8) else 16
        if bits not in ALLOWED_BITS:
            raise InputError(f"{w}.weights.num_bits: {bits}-bit weights are not modelled "
                             f"(allowed: {', '.join(map(str, ALLOWED_BITS))})")
        name = gfmt or f"{wt.get('type', 'int')}{bits}"
        rules.append((_str_list(g.get("targets") or ["Linear"], f"{w}.targets"),
                      WeightFormat(name, bits, group, scale_bits if group else 0, abits)))

    skip = _Patterns(ignore)
    compiled = [("Linear" in t, _Patterns([x for x in t if x != "Linear"]), f) for t, f in rules]

    def fmt_of(names: list[str], cls: str) -> WeightFormat:
        if skip.any(names):
            return BF16
        for linear, targets, f in compiled:
            if linear and cls != "embedding" or targets.any(names):
                return f
        return BF16
    return _resolve(m, f"compressed-tensors {rules[0][1].name}", fmt_of,
                    kvbits=_kv_bits(q.get("kv_cache_scheme")))


def parse_native_quant(m, qc: Mapping | None, sidecar: Mapping | None = None,
                       name: str = "model") -> NativeQuant | None:
    """The release's :class:`NativeQuant` from ``config.json``'s ``quantization_config``
    (``qc``) and ModelOpt's ``hf_quant_config.json`` (``sidecar``; it wins when both are
    given), for the model ``m``; None when neither quantizes the weights."""
    where = f"config.json of {name}: quantization_config"
    if sidecar is not None:
        q = sidecar.get("quantization") if isinstance(sidecar, Mapping) else None
        if not isinstance(q, Mapping):
            raise InputError(f"hf_quant_config.json of {name}: missing table 'quantization'")
        return _modelopt(m, q, f"hf_quant_config.json of {name}: quantization")
    if qc is None:
        return None
    if not isinstance(qc, Mapping):
        raise InputError(f"{where} must be a JSON object, got {type(qc).__name__}")
    method = qc.get("quant_method")
    if method is None and qc.get("quant_algo"):   # ModelOpt writes quant_algo alone, too
        method = "modelopt"
    if method == "fp8":
        if qc.get("quant_algo"):              # ModelOpt exports tagged fp8 (DeepSeek-V4 NVFP4)
            return _modelopt(m, qc, where)
        bs = qc.get("weight_block_size")
        if bs is None:
            fmt = FP8
        elif isinstance(bs, list) and len(bs) == 2 and all(
                isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 4096 for x in bs):
            fmt = fp8_block(*bs)
        else:
            raise InputError(f"{where}.weight_block_size must be [rows, cols] of integers in "
                             f"[1, 4096], got {bs!r}")
        abits = 16 if qc.get("activation_scheme") == "weight_only" else 8
        fmt = WeightFormat(fmt.name, 8, fmt.group_size, fmt.scale_bits, abits)
        excl = _str_list(qc.get("modules_to_not_convert"), f"{where}.modules_to_not_convert")
        return _resolve(m, fmt.name, _excluding(fmt, excl))
    if method == "mxfp4":
        excl = _str_list(qc.get("modules_to_not_convert"), f"{where}.modules_to_not_convert")
        return _resolve(m, "mxfp4", _excluding(MXFP4, excl))
    if method == "modelopt":
        return _modelopt(m, qc, where)
    if method == "compressed-tensors":
        return _compressed_tensors(m, qc, where)
    raise InputError(f"{where}.quant_method: unsupported {method!r}; supported: fp8, mxfp4, "
                     "modelopt, compressed-tensors (or pass --quant to price the weights)")


# -- the precision an analysis uses ----------------------------------------------------
# A quantized release's name (Qwen3-30B-A3B-FP8, ...-NVFP4, ...-AWQ) resolved to a config
# without quantization_config (a built-in base of the same shapes) is priced at 16 bits.
_QUANT_TAG = re.compile(r"[-_.](fp8|nvfp4|mxfp4|fp4|awq|gptq|int4|int8|w4a16|w8a8)(?![a-z0-9])",
                        re.IGNORECASE)

def resolve_precision(m, quant: str | Precision | None = None, wbits: int | None = None,
                      abits: int | None = None, kvbits: int | None = None, hw=None,
                      ) -> tuple[Precision, list[str]]:
    """The precision of an analysis and the notes that explain it.

    A :class:`Precision` is used as given. Without ``quant``/``wbits``/``abits`` a release
    with native quantization is priced as shipped (``kvbits`` still applies; a ``--quant``
    of KV schemes only, e.g. ``kv-fp8``, keeps the native weights); any weight scheme
    overrides the native format, with a note. On a device ``hw`` without tensor units for
    the release's activation format (FP8 on an A100, FP4 on an H100) the weights run
    weight-only, dequantized into 16-bit GEMMs (Marlin-style kernels), with a note.
    """
    from .precision import parse_quant
    nq = getattr(m, "native_quant", None)
    explicit = dict(wbits=wbits, abits=abits, kvbits=kvbits)
    if isinstance(quant, Precision):
        kw = {**quant.__dict__, **{k: v for k, v in explicit.items() if v is not None}}
        return Precision(**kw), []
    parts = [p.strip().lower() for p in (quant or "").split(",") if p.strip()]
    kv_only = all(p.startswith("kv-") for p in parts)
    if nq is None:
        notes = []
        tag = _QUANT_TAG.search(str(getattr(m, "name", "")).rsplit("/", 1)[-1])
        if tag and not parts and wbits is None and abits is None:
            notes.append(f"model: the name says {tag.group(1).upper()} but its config has no "
                         "quantization_config, so the weights are priced at 16 bits; pass "
                         "--quant, or the release's own config.json (and hf_quant_config.json)")
        return parse_quant(quant, **explicit), notes
    if kv_only and wbits is None and abits is None:
        kv = parse_quant(quant, kvbits=kvbits).kvbits if (parts or kvbits is not None) else None
        prec, notes = nq.precision(kv), [f"weights as released: {nq.summary}"]
        unit = {4: "fp4", 8: "fp8"}.get(prec.abits)
        if hw is not None and unit and not hw.peak(unit):
            prec = replace(prec, abits=16)
            notes.append(f"{hw.id} has no {unit} tensor units: the {nq.method} weights run "
                         "weight-only, dequantized into 16-bit GEMMs")
        return prec, notes
    prec = parse_quant(quant, **explicit)
    what = quant or ", ".join(f"{k}={v}" for k, v in explicit.items() if v is not None)
    return prec, [f"quant: {what} overrides the release's native {nq.method} weights "
                  f"({nq.summary.split(': ', 1)[1]})"]
