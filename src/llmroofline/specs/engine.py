"""Serving engines: a named, versioned description of what an engine does, as data.

An :class:`Engine` is one release family of a serving engine (``trtllm-0.8``: TensorRT-LLM
0.8-0.10; ``vllm``: vLLM with its default limits; ``default``: the calibrated blend of the
shipped 2024 measurements; ``ideal``: the bare roofline). It is read from one TOML file per
family in ``data/engines/`` and holds:

- ``profile``: the fitted efficiency entries per device family and activation width
  (:class:`~llmroofline.specs.profile.Profile`), or those of another engine
  (``efficiency_from = "default"``) when the engine has no fit of its own;
- ``coverage``: kernel coverage per device family (``gqa_max_group``,
  ``gqa_covers_sliding_window``), held fixed when the engine is calibrated;
- ``batching``: the scheduler defaults (max batch, tokens per iteration, chunked prefill,
  KV block size, what is reserved at admission, whether prefill chunks mix with decodes,
  the CUDA-graph batch sizes decode batches are padded up to);
- ``kv_memory``: the rule by which the engine sizes its KV-cache pool (:class:`KVMemoryRule`);
- ``runtime_gb``: memory per device the engine holds outside weights, activations and KV;
- ``cuda_graphs`` / ``cuda_graph_launch_factor``: whether decode steps replay CUDA graphs
  by default, and the share of the per-kernel launch cost a replayed kernel keeps;
- ``kernels`` (``[kernels]``): how the engine's kernels differ from the profile's, as a
  compute factor and a MoE routing cost (:class:`Kernels`), applied to ``profile`` at load;
- ``request_overhead_s`` / ``iteration_overhead_s``: fixed costs per request (added to its
  time to first token) and per scheduler iteration, outside the efficiency profile;
- ``attention_dp`` / ``fp8_dispatch`` (``[parallel]``): which models the engine runs with
  attention data-parallel groups (``any``, ``moe`` = mixture-of-experts models only,
  ``none``), and whether its attention-DP MoE dispatch sends 8-bit activations at one byte
  per element (DeepEP-style FP8 dispatch; the combine stays 16-bit).

A user's efficiency profile TOML (written by ``llmroofline calibrate``) is an engine too:
the ``default`` engine's scheduler facts with that file's efficiency entries. A full engine
TOML (with an ``[engine]`` table) may be given as a path.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import InputError, suggest
from .profile import Efficiency, Profile, efficiency_from_dict, profile_from_dict

DEFAULT_ENGINE = "default"
# Old spellings that select an engine: `--preset trtllm` meant TensorRT-LLM 0.10's build.
ALIASES = {"trtllm": "trtllm-0.8", "tensorrt-llm": "trtllm-0.8", "lmdeploy": "lmdeploy-0.1",
           "roofline": "ideal"}
KV_RULES = ("free_fraction", "total_fraction", "static_fraction")
RESERVES = ("prompt", "full")
ATTENTION_DP = ("any", "moe", "none")


@dataclass(frozen=True)
class KVMemoryRule:
    """How an engine sizes its KV-cache pool on one device, in bytes.

    With ``M`` the device memory as the engine sees it (``engine_memory_bytes``), ``W`` the
    weights on the device, ``A`` the activation peak of one full iteration, ``R`` the
    engine's runtime memory and ``f`` the fraction:

    - ``free_fraction`` (TensorRT-LLM ``free_gpu_memory_fraction``): ``f x (M - W - A - R)``,
      a share of what is free once the engine has loaded;
    - ``total_fraction`` (vLLM ``gpu_memory_utilization``): ``f x M - W - A - R``, the
      engine may use ``f`` of the whole device and the KV pool gets what is left of it;
    - ``static_fraction`` (SGLang ``mem_fraction_static``): ``f x M - W - R``, weights and
      KV pool share ``f`` of the device; activations live in the remaining ``1 - f``.
    """

    rule: str = "free_fraction"
    fraction: float = 0.9
    # M: "visible" = the capacity the driver reports (nvidia-smi MiB, HardwareSpec.memory_mib)
    # where the catalog records it; "marketed" = the datasheet's decimal GB. The shipped
    # 2024 fits were made against the marketed figure and keep it until refitted.
    capacity: str = "visible"

    def __post_init__(self) -> None:
        if self.rule not in KV_RULES:
            raise InputError(f"kv_memory.rule: must be one of {', '.join(KV_RULES)}, got "
                             f"{self.rule!r}" + suggest(str(self.rule), KV_RULES))
        if self.capacity not in ("visible", "marketed"):
            raise InputError(f"kv_memory.capacity: must be visible or marketed, got "
                             f"{self.capacity!r}")
        if not (isinstance(self.fraction, (int, float)) and 0 < self.fraction <= 1):
            raise InputError(f"kv_memory.fraction: must be in (0, 1], got {self.fraction!r}")

    def pool_bytes(self, memory_bytes: float, weights_bytes: float, activation_bytes: float,
                   runtime_bytes: float = 0.0) -> float:
        """KV pool bytes per device (>= 0) by this rule (see the class docstring)."""
        M, W, A, R, f = memory_bytes, weights_bytes, activation_bytes, runtime_bytes, self.fraction
        if self.rule == "free_fraction":
            pool = f * (M - W - A - R)
        elif self.rule == "total_fraction":
            pool = f * M - W - A - R
        else:
            pool = f * M - W - R
        return max(float(pool), 0.0)


@dataclass(frozen=True)
class Batching:
    """Scheduler defaults of an engine release (each overridable per run)."""

    max_batch: int = 256           # running requests per iteration (vLLM max_num_seqs)
    max_tokens: int = 8192         # tokens per iteration (max_num_batched_tokens)
    chunked: bool = True           # chunked prefill
    block_size: int = 16           # KV tokens per paged block
    reserve: str = "prompt"        # blocks reserved at admission: prompt, or full (+ output)
    mix_prefill: bool = True       # prefill chunks share iterations with decodes (SGLang: no)
    cuda_graph_sizes: tuple = ()   # captured decode batch sizes, padded up to (() = none)

    def __post_init__(self) -> None:
        if isinstance(self.cuda_graph_sizes, list):
            object.__setattr__(self, "cuda_graph_sizes", tuple(self.cuda_graph_sizes))
        for f, lo, hi in (("max_batch", 1, 1_000_000), ("max_tokens", 1, 10_000_000),
                          ("block_size", 1, 65536)):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise InputError(f"batching.{f}: must be an integer in [{lo}, {hi}], got {v!r}")
        if not isinstance(self.chunked, bool):
            raise InputError(f"batching.chunked: must be true or false, got {self.chunked!r}")
        if self.reserve not in RESERVES:
            raise InputError(f"batching.reserve: must be one of {', '.join(RESERVES)}, got "
                             f"{self.reserve!r}")


@dataclass(frozen=True)
class Kernels:
    """How one engine's kernels differ from the profile it takes them from
    (``efficiency_from``), as two named, bounded factors fitted to that engine's own
    measurements (``[kernels]``; docs/engines.md):

    - ``compute_factor`` in [0.25, 2]: the GEMM and attention compute efficiency of every
      entry times this (capped at 1): the engine's prefill kernels against the profile's;
    - ``moe_routing_overhead_s`` in [0, 1 ms]: fixed time per MoE layer and step of the
      routing stage (``Efficiency.moe_routing_overhead_s``).
    """

    compute_factor: float = 1.0
    moe_routing_overhead_s: float = 0.0

    def __post_init__(self) -> None:
        for f, lo, hi in (("compute_factor", 0.25, 2.0), ("moe_routing_overhead_s", 0.0, 1e-3)):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
                    math.isfinite(v) and lo <= v <= hi):
                raise InputError(f"kernels.{f} must be in [{lo:g}, {hi:g}], got {v!r}")

    def apply(self, e: Efficiency) -> Efficiency:
        """``e`` under these kernels."""
        if self == Kernels():
            return e
        ac = None if e.attention_compute is None else min(1.0, e.attention_compute
                                                          * self.compute_factor)
        return replace(e, compute=min(1.0, e.compute * self.compute_factor),
                       attention_compute=ac,
                       moe_routing_overhead_s=self.moe_routing_overhead_s)

    def apply_profile(self, p: Profile) -> Profile:
        """Every entry of ``p`` (and its fallback) under these kernels."""
        if self == Kernels():
            return p
        return Profile(p.name, {k: self.apply(e) for k, e in p.families.items()},
                       self.apply(p.fallback), p.provenance)


@dataclass(frozen=True)
class Engine:
    """One serving-engine release family (see the module docstring)."""

    name: str
    versions: str = ""
    description: str = ""
    fitted_to: str = ""
    profile: Profile = field(default_factory=lambda: Profile("ideal"), repr=False)
    coverage: dict[str, dict[str, float | bool]] = field(default_factory=dict)
    batching: Batching = field(default_factory=Batching)
    kv_memory: KVMemoryRule = field(default_factory=KVMemoryRule)
    runtime_gb: float = 0.0
    cuda_graphs: bool = False
    cuda_graph_launch_factor: float = 0.2
    request_overhead_s: float = 0.0
    iteration_overhead_s: float = 0.0
    bare_roofline: bool = False     # ideal: 100 % of every peak, device files' blocks ignored
    source: str = ""                # the file it was read from
    attention_dp: str = "any"       # models it runs with --dp-attention: any, moe, none
    fp8_dispatch: bool = False      # attention-DP MoE dispatch at 1 byte for 8-bit activations
    kernels: Kernels = field(default_factory=Kernels)   # already applied to ``profile``
    # ``profile`` before ``kernels`` (None: the same), so a refit starts from the source
    unkerneled: Profile | None = field(default=None, repr=False, compare=False)

    @property
    def base_profile(self) -> Profile:
        """The efficiency entries before this engine's ``[kernels]`` factors."""
        return self.profile if self.unkerneled is None else self.unkerneled

    def with_kernels(self, kernels: Kernels, cuda_graph_launch_factor: float | None = None,
                     cuda_graphs: bool | None = None) -> "Engine":
        """This engine with other ``[kernels]`` factors (and CUDA-graph settings)."""
        base = self.base_profile
        return replace(self, kernels=kernels, profile=kernels.apply_profile(base),
                       unkerneled=base,
                       cuda_graph_launch_factor=(self.cuda_graph_launch_factor
                                                 if cuda_graph_launch_factor is None
                                                 else cuda_graph_launch_factor),
                       cuda_graphs=self.cuda_graphs if cuda_graphs is None else cuda_graphs)

    def __post_init__(self) -> None:
        for f, hi in (("runtime_gb", 1e4), ("request_overhead_s", 10.0),
                      ("iteration_overhead_s", 1.0)):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
                    math.isfinite(v) and 0 <= v <= hi):
                raise InputError(f"engine {self.name}: {f} must be in [0, {hi:g}], got {v!r}")
        if self.attention_dp not in ATTENTION_DP:
            raise InputError(f"engine {self.name}: parallel.attention_dp must be one of "
                             f"{', '.join(ATTENTION_DP)}, got {self.attention_dp!r}"
                             + suggest(str(self.attention_dp), ATTENTION_DP))
        if not 0 < self.cuda_graph_launch_factor <= 1:
            raise InputError(f"engine {self.name}: cuda_graph_launch_factor must be in (0, 1], "
                             f"got {self.cuda_graph_launch_factor!r}")

    def efficiency(self, hw_efficiency: Efficiency, family: str, abits: int | None) -> Efficiency:
        """The efficiency a device runs at under this engine: the device file's own
        ``[efficiency]`` block when it has one (e.g. written by ``probe``), else the
        engine's entry for the family and activation width; ``ideal`` ignores both."""
        if self.bare_roofline:
            return Efficiency()
        if not hw_efficiency.is_ideal:
            return hw_efficiency
        return self.profile.for_family(family, abits)

    def graphed(self, e: Efficiency) -> Efficiency:
        """``e`` for steps replayed from a CUDA graph: launch overhead x the engine's factor
        (the CPU launch path disappears; the GPU-side gap between kernels stays)."""
        return replace(e, launch_overhead_s=e.launch_overhead_s * self.cuda_graph_launch_factor)

    def with_profile(self, profile: Profile) -> "Engine":
        """This engine's scheduler facts with the efficiency entries of ``profile`` (a
        calibrate TOML)."""
        return replace(self, profile=profile, coverage={}, bare_roofline=profile.name == "ideal",
                       fitted_to=str(profile.provenance.get("data", "")), kernels=Kernels(),
                       unkerneled=None)

    def with_efficiency_of(self, other: "Engine") -> "Engine":
        """This engine's scheduler facts, ``other``'s kernels: efficiency entries, kernel
        coverage, CUDA-graph launch factor (``--profile``)."""
        return replace(self, profile=other.profile, coverage=other.coverage,
                       bare_roofline=other.bare_roofline, fitted_to=other.fitted_to,
                       cuda_graph_launch_factor=other.cuda_graph_launch_factor,
                       kernels=other.kernels, unkerneled=other.unkerneled)

    def with_scheduler_of(self, other: "Engine") -> "Engine":
        """This engine's kernels, ``other``'s scheduler: batching defaults, KV-memory rule,
        runtime memory, CUDA-graph default, fixed per-request and per-iteration costs
        (``--preset``)."""
        return replace(self, batching=other.batching, kv_memory=other.kv_memory,
                       runtime_gb=other.runtime_gb, cuda_graphs=other.cuda_graphs,
                       request_overhead_s=other.request_overhead_s,
                       iteration_overhead_s=other.iteration_overhead_s,
                       attention_dp=other.attention_dp, fp8_dispatch=other.fp8_dispatch)

    def check_layout(self, layout, model) -> None:
        """One-line InputError when this engine cannot run ``model`` with ``layout``'s
        attention data-parallel groups (``attention_dp``)."""
        adp = getattr(layout, "dp_attention", 1)
        if adp <= 1 or self.attention_dp == "any":
            return
        if self.attention_dp == "none":
            raise InputError(f"dp_attention: engine {self.name} has no attention data-parallel "
                             f"mode; use dp_attention = 1 (or an engine that has it: trtllm-1, "
                             "sglang, vllm-v1)")
        if not model.is_moe:
            raise InputError(f"dp_attention: engine {self.name} runs attention data-parallel "
                             f"only for mixture-of-experts models, and {model.name} is dense; "
                             "use dp (replicas) instead")

    @property
    def memory_rule(self) -> str:
        """One line: the KV pool rule with its fraction and the runtime memory."""
        k = self.kv_memory
        return f"{k.rule} {k.fraction:g} of {k.capacity}" + (f", runtime {self.runtime_gb:g} GB"
                                             if self.runtime_gb else "")


@lru_cache(maxsize=1)
def builtin_engines() -> tuple[str, ...]:
    folder = resources.files("llmroofline") / "data" / "engines"
    return tuple(sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml")))


def _table(data: dict, key: str, where: str) -> dict:
    v = data.get(key, {})
    if not isinstance(v, dict):
        raise InputError(f"{where}: [{key}] must be a table")
    return v


def _take(table: dict, allowed: dict[str, type], where: str) -> dict:
    out = {}
    for k, v in table.items():
        if k not in allowed:
            raise InputError(f"{where}: unknown field '{k}'" + suggest(k, allowed)
                             + f" (allowed: {', '.join(allowed)})")
        want = allowed[k]
        if want is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, want) or (want is not bool and isinstance(v, bool)):
            raise InputError(f"{where}: field '{k}' must be {want.__name__}, got {v!r}")
        out[k] = v
    return out


_ENGINE_KEYS = {"name": str, "versions": str, "description": str, "fitted_to": str,
                "efficiency_from": str, "bare_roofline": bool}
_BATCHING_KEYS = {"max_batch": int, "max_tokens": int, "chunked": bool, "block_size": int,
                  "reserve": str, "mix_prefill": bool, "cuda_graph_sizes": list}
_KV_KEYS = {"rule": str, "fraction": float, "capacity": str}
_PARALLEL_KEYS = {"attention_dp": str, "fp8_dispatch": bool}
_KERNELS_KEYS = {"compute_factor": float, "moe_routing_overhead_us": float}
_RUNTIME_KEYS = {"runtime_gb": float, "cuda_graphs": bool, "cuda_graph_launch_factor": float,
                 "request_overhead_us": float, "iteration_overhead_us": float}


def engine_from_dict(name: str, data: dict[str, Any], where: str, _seen=()) -> Engine:
    """An :class:`Engine` from a parsed engine TOML (``[engine]``, ``[batching]``,
    ``[kv_memory]``, ``[runtime]``, ``[coverage.<family>]`` and the efficiency tables
    ``[provenance]``, ``[fallback]``, ``[families.*]`` of a profile)."""
    meta = _take(_table(data, "engine", where), _ENGINE_KEYS, f"{where} [engine]")
    name = meta.get("name", name)
    src = meta.get("efficiency_from")
    if src is not None:
        if src in _seen or src == name:
            raise InputError(f"{where}: efficiency_from '{src}' refers back to itself")
        parent = load_engine(src, _seen=(*_seen, name))
        profile, inherited = parent.profile, dict(parent.coverage)
        fitted_to = meta.get("fitted_to", f"kernels of engine '{src}': {parent.fitted_to}")
    else:
        profile, inherited = profile_from_dict(name, data, where), {}
        fitted_to = meta.get("fitted_to", profile.provenance.get("data", ""))
    coverage = inherited
    for fam, cov in _table(data, "coverage", where).items():
        cov = _take(cov if isinstance(cov, dict) else {"?": cov},
                    {"gqa_max_group": float, "gqa_covers_sliding_window": bool},
                    f"{where} [coverage.{fam}]")
        efficiency_from_dict(cov, f"{where} [coverage.{fam}]")      # range checks
        coverage[fam] = cov
    profile = apply_coverage(profile, coverage)
    kt = _take(_table(data, "kernels", where), _KERNELS_KEYS, f"{where} [kernels]")
    try:
        kernels = Kernels(compute_factor=kt.get("compute_factor", 1.0),
                          moe_routing_overhead_s=kt.get("moe_routing_overhead_us", 0.0) * 1e-6)
    except InputError as e:
        raise InputError(f"{where} [kernels]: {e}") from None
    unkerneled, profile = profile, kernels.apply_profile(profile)
    rt = _take(_table(data, "runtime", where), _RUNTIME_KEYS, f"{where} [runtime]")
    par = _take(_table(data, "parallel", where), _PARALLEL_KEYS, f"{where} [parallel]")
    try:
        return Engine(
            name=name, versions=meta.get("versions", ""), description=meta.get("description", ""),
            fitted_to=fitted_to, profile=profile, coverage=coverage,
            batching=Batching(**_take(_table(data, "batching", where), _BATCHING_KEYS,
                                      f"{where} [batching]")),
            kv_memory=KVMemoryRule(**_take(_table(data, "kv_memory", where), _KV_KEYS,
                                           f"{where} [kv_memory]")),
            runtime_gb=rt.get("runtime_gb", 0.0), cuda_graphs=rt.get("cuda_graphs", False),
            cuda_graph_launch_factor=rt.get("cuda_graph_launch_factor", 0.2),
            request_overhead_s=rt.get("request_overhead_us", 0.0) * 1e-6,
            iteration_overhead_s=rt.get("iteration_overhead_us", 0.0) * 1e-6,
            bare_roofline=meta.get("bare_roofline", False), source=where,
            attention_dp=par.get("attention_dp", "any"),
            fp8_dispatch=par.get("fp8_dispatch", False), kernels=kernels,
            unkerneled=unkerneled)
    except InputError as e:
        msg = str(e)
        raise InputError(msg if msg.startswith(where) else f"{where}: {msg}") from None


def apply_coverage(profile: Profile, coverage: dict[str, dict]) -> Profile:
    """``profile`` with each family's kernel coverage set in its entries (``hopper``
    applies to ``hopper`` and ``hopper-aN``)."""
    if not coverage:
        return profile
    fams = dict(profile.families)
    for key, e in fams.items():
        fam = key.split("-a")[0]
        if fam in coverage:
            fams[key] = replace(e, **coverage[fam])
    return Profile(profile.name, fams, profile.fallback, profile.provenance)


@lru_cache(maxsize=None)
def _builtin(name: str, _seen=()) -> Engine:
    path = resources.files("llmroofline") / "data" / "engines" / f"{name}.toml"
    return engine_from_dict(name, tomllib.loads(path.read_text()), f"engine {name}", _seen)


def _read_toml(p: Path, what: str) -> dict:
    """A regular engine/profile file of bounded size (``safeio.read_text``); a profile
    written by ``calibrate`` must still match its sha256 line (``check_profile_text``)."""
    from ..safeio import read_text
    from .profile import check_profile_text
    text = read_text(p, what, what="engine or profile .toml file")
    check_profile_text(text, str(p))
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{what}: cannot parse {p}: {str(e).splitlines()[0]}") from None


def load_engine(name_or_path: str | os.PathLike | Engine | None = None, *, _seen=(),
                field: str = "engine") -> Engine:
    """A built-in engine by name (or alias), an engine TOML file, or a profile TOML file
    from ``calibrate`` (the default engine's scheduler facts with that efficiency)."""
    if isinstance(name_or_path, Engine):
        return name_or_path
    if isinstance(name_or_path, Profile):
        return load_engine(DEFAULT_ENGINE).with_profile(name_or_path)
    name = str(name_or_path or DEFAULT_ENGINE)
    names = builtin_engines()
    key = ALIASES.get(name.lower(), name.lower())
    if key in names:
        return _builtin(key, _seen)
    p = Path(name)
    from ..safeio import exists
    if p.suffix.lower() == ".toml" or exists(p):
        data = _read_toml(p, field)
        if "engine" in data:
            return engine_from_dict(p.stem, data, f"engine file {p}")
        prof = profile_from_dict(p.stem, data, f"profile file {p}")
        return load_engine(DEFAULT_ENGINE).with_profile(prof)
    raise InputError(f"{field}: unknown engine '{name}'" + suggest(name, (*names, *ALIASES))
                     + f"; use one of {', '.join(names)} (`llmroofline engines`), or a .toml "
                     "file from `llmroofline calibrate`")


def compose_engine(engine=None, profile=None, preset=None) -> Engine:
    """The engine of a run from ``--engine`` and the older spellings ``--profile`` (its
    efficiency part) and ``--preset`` (its scheduler part): the engine (default if none),
    with the efficiency of engine or file ``profile`` and the scheduler facts of engine
    ``preset`` where given."""
    e = load_engine(engine)
    if isinstance(profile, Profile):      # a variant of the entries (e.g. advise's stream-K)
        e = replace(e, profile=profile, bare_roofline=profile.name == "ideal")
    elif profile is not None:
        e = e.with_efficiency_of(load_engine(profile, field="profile"))
    if preset is not None:
        e = e.with_scheduler_of(load_engine(preset, field="preset"))
    return e


def replace_efficiency_text(engine_toml: str, profile: Profile) -> str:
    """An engine file's text with its efficiency tables (``[provenance]``, ``[fallback]``,
    ``[families.*]``) replaced by ``profile``'s; the engine's own tables and comments before
    ``[provenance]`` are kept as written (the refit script rewrites only the fit)."""
    from .profile import profile_to_toml
    head = engine_toml.split("\n[provenance]", 1)[0].rstrip("\n")
    body = profile_to_toml(profile).split("\n", 1)[1].lstrip("\n")   # drop its title line
    return f"{head}\n\n{body}"


def engine_summary(e: Engine) -> dict[str, Any]:
    """Plain data of an engine (``llmroofline engines --json``)."""
    return {"name": e.name, "versions": e.versions, "description": e.description,
            "fitted_to": e.fitted_to, "efficiency_entries": sorted(e.profile.families),
            "coverage": e.coverage, "batching": dict(e.batching.__dict__),
            "kv_memory": e.memory_rule, "runtime_gb": e.runtime_gb,
            "cuda_graphs": e.cuda_graphs, "cuda_graph_launch_factor": e.cuda_graph_launch_factor,
            "request_overhead_s": e.request_overhead_s,
            "iteration_overhead_s": e.iteration_overhead_s,
            "compute_factor": e.kernels.compute_factor,
            "moe_routing_overhead_s": e.kernels.moe_routing_overhead_s, "source": e.source}
