"""Model lookup: built-in catalog ids and aliases, local ``config.json`` paths, hub ids."""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ..errors import InputError, suggest
from .model import ModelSpec, from_hf_config

DEFAULT_MODEL = "meta-llama/Llama-2-7b-hf"
# ModelOpt writes hf_quant_config.json beside config.json; a file X.json may carry its
# sidecar as X.hf_quant_config.json.
SIDECAR = "hf_quant_config.json"
SIDECAR_SUFFIX = "." + SIDECAR


@lru_cache(maxsize=1)
def builtin_model_files() -> dict[str, str]:
    """Map Hugging Face id -> packaged file name (``org__name.json``)."""
    root = resources.files("llmroofline") / "data" / "models"
    out = {}
    for entry in root.iterdir():
        if entry.name.endswith(".json") and not entry.name.endswith(SIDECAR_SUFFIX):
            out[entry.name[:-5].replace("__", "/", 1)] = entry.name
    return dict(sorted(out.items(), key=lambda kv: kv[0].lower()))


@lru_cache(maxsize=1)
def model_aliases() -> dict[str, str]:
    """Short lowercase aliases -> Hugging Face id.

    ``meta-llama/Llama-2-7b-hf`` is reachable as ``llama-2-7b-hf`` and ``llama-2-7b``;
    a stripped suffix (``-hf``, ``-instruct``, ``-it``, ``-v0.1``) is an alias only when it
    does not collide with another model's name.
    """
    ids = list(builtin_model_files())
    out: dict[str, str] = {}
    for hf in ids:
        base = hf.split("/", 1)[1].lower()
        out.setdefault(base, hf)
        out.setdefault(hf.lower(), hf)
    for hf in ids:
        base = hf.split("/", 1)[1].lower()
        short = re.sub(r"(-hf|-instruct|-it|-v0\.1|-chat|-bf16|-fp8)+$", "", base)
        short = re.sub(r"^meta-", "", short) if short.startswith("meta-llama") else short
        if short != base and short not in out:
            out[short] = hf
    for al, hf in _EXTRA_ALIASES.items():
        if hf in builtin_model_files():
            out.setdefault(al, hf)
    return out


# Short names people use for the 2025-26 releases (and the hub org GLM-5 was published
# under first): alias -> built-in id.
_EXTRA_ALIASES = {
    "zhipuai/glm-5": "zai-org/GLM-5-FP8",
    "zai-org/glm-5": "zai-org/GLM-5-FP8",
    "glm-5": "zai-org/GLM-5-FP8",
    "llama-4-scout": "meta-llama/Llama-4-Scout-17B-16E-Instruct",
    "llama-4-maverick": "meta-llama/Llama-4-Maverick-17B-128E-Instruct",
    "nemotron-3-nano": "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16",
    "nemotron-3-super": "nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-FP8",
    "qwen3.5-397b": "Qwen/Qwen3.5-397B-A17B",
    "kimi-k2.5": "moonshotai/Kimi-K2.5",
}


# Fine-tuned or re-packaged variants keep the base model's architecture (config.json differs
# in token ids and generation settings, not in shapes), so they resolve to the built-in base.
_VARIANT_SUFFIX = re.compile(r"(-hf|-instruct|-it|-chat|-base|-fp8)+$")


def _variant_key(name: str) -> str:
    base = _VARIANT_SUFFIX.sub("", name.split("/", 1)[-1].lower())
    return re.sub(r"^meta-(?=llama)", "", base)


@lru_cache(maxsize=1)
def _variants() -> dict[str, str]:
    """Variant key -> built-in id (the shortest id when several built-ins share a key)."""
    out: dict[str, str] = {}
    for hf in builtin_model_files():
        k = _variant_key(hf)
        if k not in out or len(hf) < len(out[k]):
            out[k] = hf
    return out


def _builtin_config(hf_id: str) -> dict:
    root = resources.files("llmroofline") / "data" / "models"
    return json.loads((root / builtin_model_files()[hf_id]).read_text())


def _builtin_sidecar(hf_id: str) -> dict | None:
    """The packaged ``org__name.hf_quant_config.json`` of a built-in model, if shipped."""
    root = resources.files("llmroofline") / "data" / "models"
    f = root / (builtin_model_files()[hf_id][:-5] + SIDECAR_SUFFIX)
    return json.loads(f.read_text()) if f.is_file() else None
@lru_cache(maxsize=None)
def _builtin_spec(hf_id: str) -> ModelSpec:
    """A built-in model's spec, built once (specs are frozen; validate and calibrate load
    the same few models thousands of times)."""
    return from_hf_config(_builtin_config(hf_id), name=hf_id,
                          hf_quant_config=_builtin_sidecar(hf_id))


def _read_json(p: Path, what: str) -> dict:
    """A JSON file of bounded size (``safeio.read_text``), parsed; one-line errors."""
    from ..safeio import read_text
    text = read_text(p, "model", what=what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"model: {p} is not valid JSON (line {e.lineno}: {e.msg})") from None


def load_config_file(path: str | os.PathLike) -> dict:
    p = Path(path)
    try:
        if p.is_dir():
            p = p / "config.json"
    except OSError:
        pass
    cfg = _read_json(p, "config.json")
    # checked here, where every reader of a config file passes (bench shrinks the raw dict)
    from_hf_config(cfg, name=p.stem if p.name != "config.json" else p.parent.name or str(p))
    return cfg


def load_quant_sidecar(path: str | os.PathLike) -> dict | None:
    """The ``hf_quant_config.json`` beside a config file (``X.json`` -> ``X.hf_quant_config.json``,
    a ``config.json`` or a directory -> ``hf_quant_config.json`` there), or None."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    side = p.parent / SIDECAR if p.name == "config.json" else p.with_name(p.stem + SIDECAR_SUFFIX)
    return _read_json(side, "hf_quant_config.json") if side.is_file() else None


def load_model(name_or_path: str | os.PathLike | ModelSpec = DEFAULT_MODEL) -> ModelSpec:
    """Resolve a model by built-in id/alias, local config path, a variant of a built-in
    model (``-Instruct``, ``-chat``, ``-it``, ``-hf``, ``-base``, ``-FP8``, ``Meta-`` naming:
    same shapes, named as asked), or hub id (config only)."""
    if isinstance(name_or_path, ModelSpec):
        return name_or_path
    name = str(name_or_path)
    files = builtin_model_files()
    hf = files.get(name) and name or model_aliases().get(name.lower())
    if hf:
        return _builtin_spec(hf)
    hub_like = bool(re.fullmatch(r"[\w-][\w.-]*/[\w.-]+", name))  # org/name, never a local path
    from ..safeio import exists
    if name.endswith(".json") or (os.path.sep in name and not hub_like) or exists(name):
        p = Path(name)
        if not exists(p):
            from ..safeio import read_text
            read_text(p, "model", what="config.json")   # a name too long: say so
            raise InputError(f"model: file {name} does not exist")
        return from_hf_config(load_config_file(p), name=p.stem if p.name != "config.json" else p.parent.name or name,
                              hf_quant_config=load_quant_sidecar(p))
    base = _variants().get(_variant_key(name))
    if base:
        return from_hf_config(_builtin_config(base), name=name,
                              hf_quant_config=_builtin_sidecar(base))
    if hub_like:
        return from_hf_config(_fetch_hub_config(name), name=name)
    raise InputError(f"model: unknown model '{name}'"
                     + suggest(name, list(files) + list(model_aliases()))
                     + "; run `llmroofline models` for the list, or pass a config.json path")


@lru_cache(maxsize=1)
def _hub_host_resolves() -> bool:
    """Whether the hub's host name resolves: without DNS the download would retry for
    about half a minute per model before failing."""
    import socket
    from urllib.parse import urlparse
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.getaddrinfo(host or "huggingface.co", 443)
    except OSError:
        return False
    return True


@lru_cache(maxsize=64)
def _hub_config_path(repo_id: str) -> tuple[str | None, str]:
    """(local path of the repo's ``config.json``, downloaded once, or None; why not).
    Failures are cached too, so a CSV of many rows of one unreachable model asks once."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover - dependency is declared
        return None, "huggingface_hub not installed"
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    reachable = offline or _hub_host_resolves()   # offline mode reads the local cache itself
    try:
        return hf_hub_download(repo_id, "config.json", local_files_only=not reachable), ""
    except Exception as e:  # network, auth, 404: all mean "cannot get it here"
        return None, (type(e).__name__ if reachable else
                      "no network: the hub's host name does not resolve, and no cached copy")


def _fetch_hub_config(repo_id: str) -> dict:
    """Download only ``config.json`` of a hub repo (offline: one-line error)."""
    path, why = _hub_config_path(repo_id)
    if path is None:
        known = suggest(repo_id, list(builtin_model_files()))
        raise InputError(f"model: '{repo_id}' is not built in and its config.json could not be "
                         f"fetched from the Hugging Face hub ({why}); offline? pass a local "
                         f"config.json path instead{known}")
    return load_config_file(path)


def model_summaries() -> list[dict]:
    """One row per built-in model (id, aliases, type, parameter count, shape): the data of
    ``llmroofline models --json`` and the web API's model list."""
    from .model import param_count
    aliases: dict[str, list[str]] = {}
    for al, hf in model_aliases().items():
        if al != hf.lower():
            aliases.setdefault(hf, []).append(al)
    rows = []
    for hf in builtin_model_files():
        m = load_model(hf)
        rows.append({"id": hf, "aliases": sorted(aliases.get(hf, []), key=len),
                     "model_type": m.model_type, "params": param_count(m),
                     "layers": m.num_layers, "hidden": m.hidden_size, "heads": m.num_heads,
                     "kv_heads": m.num_kv_heads, "moe": m.moe is not None, "mla": m.mla is not None})
    return rows
