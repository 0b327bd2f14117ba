"""Request bodies of the HTTP API, and the caps that bound the work of one request.

Field names are the CLI's ``--json`` names (``model``, ``hardware``, ``batch``,
``input_len``, ``output_len``, ``tp``, ``quant``, ``wbits``, ..., ``profile``). Unknown
fields are rejected (a typo such as ``input`` for ``input_len`` is an error, not a
silently ignored value). Numbers are strict: ``16`` is a batch, ``"16"``, ``16.5`` and
``true`` are not.

Nothing in a request names a file: ``model`` is a catalog id or alias (or only the display
name of an uploaded ``config``), ``hardware`` a catalog device id, ``engine`` and ``profile`` built-in
engine names, ``prices`` an object of device id -> USD per device-hour.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Optional, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..deployment import SETUP_FIELDS
from ..errors import InputError
from ..gridspec import parse_grid
from ..specs.engine import builtin_engines
from ..phases import MAX_CHUNK_CELLS, MAX_PREFILL_CHUNKS

# -- caps (documented in docs/web.md) ----------------------------------------------------
MAX_BATCH = 65_536              # batch per replica (analyze, roofline, rank, mesh values)
MAX_LEN = 1_048_576             # input_len and output_len, each (tokens)
MAX_PARALLEL = 1_024            # tp, pp, ep, dp
MAX_ROWS = 1_024                # beams, samples
MAX_COMPARE_DEVICES = 4
MAX_ROOFLINE_DEVICES = 4
MAX_RANK_DEVICES = 64
MAX_MESH_AXIS = 64              # values per mesh axis: at most 64 x 64 cells per device
MAX_PRICES = 256
MAX_BODY_BYTES = 1_000_000      # request body (an uploaded config.json included)
MAX_CONFIG_ITEMS = 20_000       # keys + list entries of an uploaded config.json
MAX_CONFIG_DEPTH = 8
MAX_CONFIG_LAYERS = 1_024       # num_hidden_layers of an uploaded config.json
LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers")

CAPS = {
    "batch": MAX_BATCH, "input_len": MAX_LEN, "output_len": MAX_LEN, "tp/pp/ep/dp": MAX_PARALLEL,
    "beams/samples": MAX_ROWS, "compare devices": MAX_COMPARE_DEVICES,
    "roofline devices": MAX_ROOFLINE_DEVICES, "rank devices": MAX_RANK_DEVICES,
    "mesh values per axis": MAX_MESH_AXIS, "prices": MAX_PRICES,
    "body bytes": MAX_BODY_BYTES, "config items": MAX_CONFIG_ITEMS,
    "config depth": MAX_CONFIG_DEPTH, "config layers": MAX_CONFIG_LAYERS,
    "prefill chunks": MAX_PREFILL_CHUNKS, "prefill chunk x grid cells": MAX_CHUNK_CELLS,
}

Int = Annotated[int, Field(strict=True)]
Batch = Annotated[int, Field(strict=True, ge=1, le=MAX_BATCH, description=f"Batch size per replica, 1..{MAX_BATCH}.")]
Length = Annotated[int, Field(strict=True, ge=1, le=MAX_LEN)]
Par = Annotated[int, Field(strict=True, ge=1, le=MAX_PARALLEL)]
Bits = Optional[Literal[4, 8, 16, 32]]
DeviceId = Annotated[str, Field(min_length=1, max_length=100, description="Catalog device id (GET /api/hardware).")]


def check_config(cfg: dict) -> dict:
    """Bound the size of an uploaded config.json (the engine itself checks its meaning)."""
    count = 0

    def walk(v, depth: int) -> None:
        nonlocal count
        if depth > MAX_CONFIG_DEPTH:
            raise ValueError(f"nested deeper than {MAX_CONFIG_DEPTH} levels")
        if isinstance(v, dict):
            count += len(v)
            for x in v.values():
                walk(x, depth + 1)
        elif isinstance(v, list):
            count += len(v)
            for x in v:
                walk(x, depth + 1)
        elif isinstance(v, float) and not math.isfinite(v):
            raise ValueError("numbers must be finite")
        if count > MAX_CONFIG_ITEMS:
            raise ValueError(f"more than {MAX_CONFIG_ITEMS} keys and list entries")

    walk(cfg, 0)
    for k in LAYER_KEYS:
        v = cfg.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and v > MAX_CONFIG_LAYERS:
            raise ValueError(f"{k} = {v} exceeds the server's cap of {MAX_CONFIG_LAYERS} layers")
    return cfg


def _no_surrogates(v, depth: int = 0):
    """Reject text that is not valid Unicode (a lone surrogate such as "\\ud800")."""
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text must be valid Unicode (it has a lone surrogate)") from None
    elif isinstance(v, dict) and depth < MAX_CONFIG_DEPTH + 2:
        for k, x in v.items():
            _no_surrogates(k, depth + 1)
            _no_surrogates(x, depth + 1)
    elif isinstance(v, list) and depth < MAX_CONFIG_DEPTH + 2:
        for x in v:
            _no_surrogates(x, depth + 1)
    return v


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    @field_validator("*", mode="before")
    @classmethod
    def _unicode(cls, v):
        return _no_surrogates(v)


class ModelFields(_Body):
    model: Optional[str] = Field(
        None, min_length=1, max_length=200,
        description="Built-in model id or alias (GET /api/models). With `config`, only the "
                    "name shown for it. Never a file path or a hub id to download.")
    config: Optional[dict[str, Any]] = Field(
        None, description="A Hugging Face config.json object (instead of a catalog model).")

    @field_validator("config")
    @classmethod
    def _config(cls, v):
        return None if v is None else check_config(v)


# built-in engines only (never a path): the names of data/engines/*.toml
EngineName = Literal[builtin_engines()]


def _setup(name: str):
    """A request field declared once in ``deployment.SETUP_FIELDS``: its default and help."""
    f = SETUP_FIELDS[name]
    return Field(f.default, description=f.help)


class PrecisionFields(_Body):
    quant: Optional[str] = Field(SETUP_FIELDS["quant"].default, max_length=64,
                                 description=SETUP_FIELDS["quant"].help)
    wbits: Bits = _setup("wbits")
    abits: Bits = _setup("abits")
    kvbits: Bits = _setup("kvbits")
    flash: Annotated[bool, Field(strict=True)] = _setup("flash")
    cuda_graphs: Annotated[bool, Field(strict=True)] = _setup("cuda_graphs")
    prefill_chunk: Optional[Length] = _setup("prefill_chunk")
    engine: Optional[EngineName] = _setup("engine")
    profile: Optional[EngineName] = _setup("profile")


class AnalyzeRequest(ModelFields, PrecisionFields):
    """One workload: the body of POST /api/analyze (the CLI's `analyze --json`)."""

    hardware: DeviceId = "a100-sxm-80gb"
    batch: Batch = 1
    input_len: Length = 128
    output_len: Length = 128
    tp: Par = _setup("tp")
    pp: Par = _setup("pp")
    ep: Par = _setup("ep")
    dp: Par = _setup("dp")
    beams: Annotated[int, Field(strict=True, ge=1, le=MAX_ROWS)] = 1
    samples: Annotated[int, Field(strict=True, ge=1, le=MAX_ROWS)] = 1


class RooflineRequest(ModelFields, PrecisionFields):
    """Body of POST /api/roofline (the CLI's `roofline --json`)."""

    hardware: list[DeviceId] = Field(["a100-sxm-80gb"], min_length=1, max_length=MAX_ROOFLINE_DEVICES)
    batch: Batch = 1
    input_len: Length = 512
    output_len: Length = 128
    phase: Literal["prefill", "decode", "both"] = "both"
    tp: Par = _setup("tp")
    ep: Par = _setup("ep")


def _mesh_axis(name: str, v, hi: int) -> list[int]:
    if isinstance(v, str):
        vals = parse_grid(name, v, hi=hi)
    else:
        vals = np.asarray(v, dtype=float)
        if vals.size == 0:
            raise ValueError("give at least one value")
        if np.any(vals < 1) or np.any(vals > hi):
            raise ValueError(f"values must be in [1, {hi}]")
        if np.any(np.diff(vals) <= 0):
            raise ValueError("values must be strictly increasing")
    if len(vals) > MAX_MESH_AXIS:
        raise ValueError(f"{len(vals)} values; at most {MAX_MESH_AXIS} per mesh axis are "
                         f"allowed per request (e.g. '1:256:{MAX_MESH_AXIS}')")
    return [int(x) for x in vals]


class CompareRequest(ModelFields, PrecisionFields):
    """Body of POST /api/compare (the CLI's `compare --json`): a batch x seq mesh."""

    hardware: list[DeviceId] = Field(["a100-sxm-80gb", "h20"], min_length=2,
                                     max_length=MAX_COMPARE_DEVICES)
    batch: Union[str, list[Int]] = Field(
        "1:256:16", description=f"Batch axis: grid syntax ('1:256', '1:1024:32', '1,8,64') or "
                                f"a list; at most {MAX_MESH_AXIS} values.")
    seq: Union[str, list[Int]] = Field(
        "128:32768:16", description=f"Sequence axis (mean KV length of the decode steps); at "
                                    f"most {MAX_MESH_AXIS} values.")
    output_len: Annotated[int, Field(strict=True, ge=2, le=MAX_LEN, multiple_of=2)] = 128
    method: Literal["ops", "global", "both"] = "ops"
    tp: Par = _setup("tp")
    ep: Par = _setup("ep")
    dp: Par = _setup("dp")
    ignore_context: Annotated[bool, Field(strict=True)] = False

    @field_validator("batch")
    @classmethod
    def _batch(cls, v):
        return _mesh_axis("batch", v, MAX_BATCH)

    @field_validator("seq")
    @classmethod
    def _seq(cls, v):
        return _mesh_axis("seq", v, MAX_LEN)


class RankRequest(ModelFields, PrecisionFields):
    """Body of POST /api/rank (the CLI's `rank --json`)."""

    hardware: Optional[list[DeviceId]] = Field(
        None, min_length=1, max_length=MAX_RANK_DEVICES, description="Devices (default: the catalog).")
    vendor: Optional[str] = Field(None, max_length=50)
    batch: Union[Batch, Literal["max"]] = Field(1, description="Batch size or 'max'.")
    input_len: Length = 512
    output_len: Length = 128
    tp: Union[Par, Literal["auto"]] = Field(1, description="Tensor-parallel devices or 'auto'.")
    max_ttft_s: Optional[Annotated[float, Field(gt=0, allow_inf_nan=False)]] = None
    max_tpot_s: Optional[Annotated[float, Field(gt=0, allow_inf_nan=False)]] = None
    prices: Optional[dict[Annotated[str, Field(max_length=100)],
                          Annotated[float, Field(gt=0, allow_inf_nan=False)]]] = Field(
        None, max_length=MAX_PRICES, description="Device id -> USD per device-hour.")
    sort: Literal["tok_s", "tok_s_per_device", "tok_s_per_w", "tok_per_usd"] = "tok_s"


class InputErrorBody(BaseModel):
    """A 400 answer: the engine's one-line message and the request field it names."""

    detail: str
    field: Optional[str] = None


__all__ = ["AnalyzeRequest", "RooflineRequest", "CompareRequest", "RankRequest", "CAPS",
           "InputErrorBody", "check_config", "InputError"]
