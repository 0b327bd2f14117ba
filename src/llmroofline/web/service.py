"""What each API route computes: a validated request -> the CLI's ``--json`` data.

No web framework here: every function takes a request model of ``schemas.py`` and returns
plain JSON-ready data, or raises :class:`InputError` with a one-line message naming the
field. The engine calls are the CLI's (same functions, same keyword arguments, same JSON
builders), so a number on the page is the number ``llmroofline ... --json`` prints.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import numpy as np

from .. import phases, report
from ..jsonout import clean
from ..errors import InputError, suggest
from ..gridspec import cartesian
from ..specs import catalog, hardware as hwmod
from ..specs.catalog import DEFAULT_MODEL
from ..specs.model import ModelSpec, from_hf_config
from .schemas import AnalyzeRequest, CompareRequest, RankRequest, RooflineRequest

REQUEST_FIELDS = {
    "model", "config", "hardware", "batch", "input_len", "output_len", "quant", "wbits",
    "abits", "kvbits", "flash", "cuda_graphs", "prefill_chunk", "profile", "tp", "pp", "ep", "dp", "beams", "samples", "phase",
    "seq", "method", "ignore_context", "vendor", "max_ttft_s", "max_tpot_s", "prices", "sort",
}
_FIELD_ALIASES = {"config.json": "config", "max_ttft": "max_ttft_s", "max_tpot": "max_tpot_s",
                  "tp/ep": "tp", "grid": "batch"}


def field_of(message: str) -> str | None:
    """The request field an engine message names (its first word), if any."""
    m = re.match(r"\s*([A-Za-z_][\w./]*)", message)
    if not m:
        return None
    word = m.group(1).rstrip(".")
    word = _FIELD_ALIASES.get(word, word)
    return word if word in REQUEST_FIELDS else None


# -- names -> specs, without touching the file system ---------------------------------------
def _looks_like_path(name: str) -> bool:
    return (name.startswith(("/", ".", "~", "\\")) or "\\" in name or name.count("/") > 1
            or name.lower().endswith((".json", ".toml", ".yaml", ".yml")) or ".." in name)


def resolve_model(model: str | None, config: dict | None) -> ModelSpec:
    """A catalog model (id or alias), or the uploaded ``config``; never a path or a download."""
    if config is not None:
        label = model or config.get("_name_or_path") or "custom"
        label = str(label).strip()[:100] or "custom"
        with engine_guard(True):
            return from_hf_config(config, name=label)
    name = (model or DEFAULT_MODEL).strip()
    files = catalog.builtin_model_files()
    hf = name if name in files else catalog.model_aliases().get(name.lower())
    if hf:
        return catalog.load_model(hf)
    if _looks_like_path(name):
        raise InputError(f"model: '{name}' looks like a file path; the server reads no files: "
                         "give a built-in id or alias (GET /api/models) or send the "
                         "config.json object itself in the field `config`")
    raise InputError(f"model: unknown model '{name}'"
                     + suggest(name, list(files) + list(catalog.model_aliases()))
                     + "; the server knows the built-in models (GET /api/models) and downloads "
                       "nothing: send a config.json object in the field `config` for another model")


def resolve_hardware(dev: str) -> hwmod.HardwareSpec:
    """A catalog device by id (case-insensitive); never a device file."""
    ids = hwmod.hardware_ids()
    key = dev.strip().lower()
    if key in ids:
        return hwmod.load_hardware(key)
    if _looks_like_path(dev):
        raise InputError(f"hardware: '{dev}' looks like a file path; the server reads no files: "
                         "give a catalog device id (GET /api/hardware)")
    raise InputError(f"hardware: unknown device '{dev}'" + suggest(dev, ids)
                     + "; GET /api/hardware lists the device ids")


def resolve_devices(devs: list[str]) -> list[hwmod.HardwareSpec]:
    hws = [resolve_hardware(d) for d in devs]
    ids = [h.id for h in hws]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise InputError(f"hardware: device listed twice ({', '.join(dup)})")
    return hws


@contextmanager
def engine_guard(from_config: bool):
    """An uploaded config.json can break the engine in ways the catalog never does: report
    such failures as a 400 on the field ``config`` rather than a server error."""
    try:
        yield
    except InputError as e:
        if from_config and field_of(str(e)) == "model":  # "model custom: hidden_size must ..."
            raise InputError(f"config: {e}") from None
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, ArithmeticError,
            OverflowError, RecursionError, MemoryError) as e:
        if not from_config:
            raise
        raise InputError(f"config: the engine cannot evaluate this config.json "
                         f"({type(e).__name__}: {str(e)[:200]})") from None


def _precision_kw(req) -> dict:
    return dict(quant=req.quant, wbits=req.wbits, abits=req.abits, kvbits=req.kvbits,
                flash=req.flash, engine=req.engine, profile=req.profile,
                cuda_graphs=req.cuda_graphs, prefill_chunk=req.prefill_chunk)


# -- routes --------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def models() -> list[dict]:
    """Built-in models: the rows of ``llmroofline models --json``."""
    return catalog.model_summaries()


@lru_cache(maxsize=1)
def hardware_list() -> list[dict]:
    """Catalog devices: the rows of ``llmroofline hardware --json``."""
    return clean([hwmod.to_dict(hwmod.load_hardware(i)) for i in hwmod.hardware_ids()])


def hardware_one(dev: str) -> dict:
    return clean(hwmod.to_dict(resolve_hardware(dev)))


def analyze(req: AnalyzeRequest) -> dict:
    """One workload: exactly ``llmroofline analyze --json`` for the same inputs."""
    m = resolve_model(req.model, req.config)
    hw = resolve_hardware(req.hardware)
    axes = cartesian(batch=np.asarray([req.batch], float), input_len=np.asarray([req.input_len], float),
                     output_len=np.asarray([req.output_len], float))
    kw = dict(_precision_kw(req), tp=req.tp, pp=req.pp, ep=req.ep, dp=req.dp)
    with engine_guard(req.config is not None):
        a = phases.analyze(m, hw, axes["batch"], axes["input_len"], axes["output_len"], **kw,
                           beams=req.beams, samples=req.samples)
        return clean(report.add_fit(report.to_dict(a, (0, 0, 0)), a, (0, 0, 0)))


def roofline(req: RooflineRequest) -> dict:
    """Ridge points and operator points: ``llmroofline roofline --json`` (+ ``warnings``)."""
    m = resolve_model(req.model, req.config)
    hws = resolve_devices(req.hardware)
    phs = {"both": ("prefill", "decode"), "prefill": ("prefill",), "decode": ("decode",)}[req.phase]
    with engine_guard(req.config is not None):
        analyses = [phases.analyze(m, h, req.batch, req.input_len, req.output_len, tp=req.tp,
                                   ep=req.ep, **_precision_kw(req)) for h in hws]
        data = report.roofline_payload(analyses, phs)
    warnings = list(dict.fromkeys(w for a in analyses for w in a.warnings))
    return clean({**data, "model": m.name,
                  "precision": analyses[0].precision.label, "warnings": warnings})


def compare(req: CompareRequest) -> dict:
    """Comparison mesh: ``llmroofline compare --json`` (+ ``warnings``)."""
    from .. import compare as cmpmod
    m = resolve_model(req.model, req.config)
    hws = resolve_devices(req.hardware)
    methods = {"both": ("ops", "global"), "ops": ("ops",), "global": ("global",)}[req.method]
    with engine_guard(req.config is not None):
        meshes = cmpmod.compare_methods(
            m, hws, np.asarray(req.batch, float), np.asarray(req.seq, float), methods,
            req.output_len, ignore_context=req.ignore_context, tp=req.tp, ep=req.ep, dp=req.dp,
            **_precision_kw(req))
        ms = [meshes[k] for k in methods]
        data: dict[str, Any] = cmpmod.compare_payload(ms)
    data["warnings"] = list(ms[0].warnings)
    return clean(data)


def rank(req: RankRequest) -> dict:
    """Devices ranked for one workload: ``llmroofline rank --json``."""
    from .. import rank as rankmod
    m = resolve_model(req.model, req.config)
    hws = resolve_devices(req.hardware) if req.hardware else None
    if req.prices:
        ids = hwmod.hardware_ids()
        prices = {}
        for k, v in req.prices.items():
            if k.strip().lower() not in ids:
                raise InputError(f"prices: unknown device '{k}'" + suggest(k, ids))
            prices[k.strip().lower()] = v
    else:
        prices = None
    with engine_guard(req.config is not None):
        r = rankmod.rank(m, hws, vendor=req.vendor, batch=req.batch, input_len=req.input_len,
                         output_len=req.output_len, max_ttft_s=req.max_ttft_s,
                         max_tpot_s=req.max_tpot_s, prices=prices, sort_by=req.sort, tp=req.tp,
                         **_precision_kw(req))
        return clean(r.to_json_data())


__all__ = ["analyze", "roofline", "compare", "rank", "models", "hardware_list", "hardware_one",
           "resolve_model", "resolve_hardware", "field_of", "clean"]
