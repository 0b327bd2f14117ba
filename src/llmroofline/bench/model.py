"""Shrinking a Hugging Face config to fit the machine, and building it with random weights.

:func:`shrink_config` works on the ``config.json`` dict (no torch needed):

- ``layers``: keep the first N decoder layers (per-layer lists such as ``layer_types``
  are cut to N; DeepSeek's leading dense layers are capped at N).
- ``scale`` in (0, 1]: narrow the model while keeping ``head_dim``, the grouped-query
  ratio and the MLP ratio. KV heads become ``max(1, round(kv_heads x scale))``, query heads
  ``kv_heads' x group``, so the width factor actually applied is ``s = heads' / heads``;
  the hidden size, MLP/expert intermediate sizes and MLA low-rank sizes are multiplied by
  ``s`` (rounded to integers; hidden stays ``heads' x head_dim`` when the config derives
  head_dim from it). Vocabulary, context length, number of experts and top-k are kept.

:func:`build_model` instantiates the architecture with ``transformers`` on the device in
the requested dtype without running the (slow) random initializers, then fills every
parameter with a tiled block of small uniform random values (no download, no NaNs, no
denormals; values do not change a kernel's speed).
"""

from __future__ import annotations

import copy
from typing import Any

from ..errors import InputError

_HIDDEN = ("hidden_size", "n_embd", "d_model")
_HEADS = ("num_attention_heads", "n_head")
_KV = ("num_key_value_heads", "num_kv_heads", "n_head_kv")
_LAYERS = ("num_hidden_layers", "n_layer", "num_layers")
# Widths proportional to the hidden size (MLP, experts, MLA low-rank projections).
_WIDTHS = ("intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size", "moe_intermediate_size",
           "shared_expert_intermediate_size", "q_lora_rank", "kv_lora_rank")
_PER_LAYER_LISTS = ("layer_types",)

DTYPES = ("bf16", "fp16", "fp32")


def _key(cfg: dict, names: tuple[str, ...]) -> str | None:
    return next((k for k in names if cfg.get(k) is not None), None)


def shrink_config(cfg: dict[str, Any], layers: int | None = None,
                  scale: float | None = None) -> dict[str, Any]:
    """A narrower and/or shallower copy of an HF config dict (module docstring)."""
    out = copy.deepcopy(dict(cfg))
    lk = _key(out, _LAYERS)
    if layers is not None:
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
            raise InputError(f"layers must be an integer >= 1, got {layers!r}")
        if lk is None:
            raise InputError("layers: the config has no num_hidden_layers / n_layer field")
        if layers > out[lk]:
            raise InputError(f"layers must be <= the model's {out[lk]} layers, got {layers}")
        out[lk] = layers
        for k in _PER_LAYER_LISTS:
            if isinstance(out.get(k), list):
                out[k] = out[k][:layers]
        if out.get("first_k_dense_replace"):
            out["first_k_dense_replace"] = min(out["first_k_dense_replace"], layers)
    if scale is None or scale == 1:
        return out
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 1:
        raise InputError(f"scale must be a number in (0, 1], got {scale!r}")
    hk, nk = _key(out, _HIDDEN), _key(out, _HEADS)
    if hk is None or nk is None:
        raise InputError("scale: the config has no hidden_size / num_attention_heads field")
    h, heads = int(out[hk]), int(out[nk])
    kk = _key(out, _KV)
    kv = int(out[kk]) if kk else heads
    if out.get("model_type") == "falcon" and not out.get("new_decoder_architecture") \
            and out.get("multi_query", True):
        kv = 1
    group = max(heads // kv, 1)
    kv_new = max(1, round(kv * scale)) if kv > 1 else 1
    heads_new = kv_new * group if kv > 1 else max(1, round(heads * scale))
    s = heads_new / heads
    explicit_hd = out.get("head_dim") is not None
    h_new = round(h * s) if explicit_hd else heads_new * (h // heads)
    out[hk] = h_new
    out[nk] = heads_new
    if kk:
        out[kk] = kv_new if kv > 1 else out[kk]
    if out.get("word_embed_proj_dim") == h:
        out["word_embed_proj_dim"] = h_new
    for k in _WIDTHS:
        if isinstance(out.get(k), int) and not isinstance(out.get(k), bool) and out[k] > 0:
            out[k] = max(1, round(out[k] * s))
    return out


def width_factor(before: dict, after: dict) -> float:
    hk = _key(before, _HIDDEN)
    return after[hk] / before[hk] if hk else 1.0


def torch_dtype(name: str):
    import torch
    if name not in DTYPES:
        raise InputError(f"dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def hf_config(cfg: dict[str, Any], attn: str = "sdpa"):
    """A transformers config object from the dict (no download)."""
    from transformers import AutoConfig
    d = {k: v for k, v in cfg.items() if not k.startswith("_") and k not in
         ("architectures", "transformers_version", "auto_map", "torch_dtype", "dtype")}
    mt = d.pop("model_type", None)
    if mt in ("RefinedWebModel", "RefinedWeb", "falcon"):  # remote-code falcon key names
        mt = "falcon"
        for old, new in (("n_head", "num_attention_heads"), ("n_layer", "num_hidden_layers"),
                         ("n_head_kv", "num_kv_heads")):
            if old in d:
                d.setdefault(new, d.pop(old))
    if mt is None:
        raise InputError("bench: the config has no model_type")
    try:
        conf = AutoConfig.for_model(mt, **d)
    except (ValueError, KeyError) as e:
        raise InputError(f"bench: transformers cannot build model_type {mt!r}: "
                         f"{str(e).splitlines()[0]}") from None
    conf._attn_implementation = attn
    return conf


def build_model(cfg: dict[str, Any], dtype: str = "bf16", device: str = "cpu",
                attn: str = "sdpa", seed: int = 0):
    """Random-weight causal LM of ``cfg`` on ``device`` in eval mode (module docstring).

    ``attn="sdpa"`` (PyTorch's fused scaled_dot_product_attention) falls back to
    ``"eager"`` (unfused matmul-softmax-matmul) for architectures transformers has no SDPA
    path for; ``model.config._attn_implementation`` tells which one runs.
    """
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.initialization import no_init_weights
    dt = torch_dtype(dtype)
    model = None
    for impl in dict.fromkeys((attn, "eager")):
        conf = hf_config(cfg, impl)
        try:
            with no_init_weights(), torch.device(device):
                model = AutoModelForCausalLM.from_config(conf, dtype=dt, attn_implementation=impl)
            break
        except ValueError as e:
            if "attention implementation" not in str(e):
                raise InputError(f"bench: transformers cannot build this config: "
                                 f"{str(e).splitlines()[0]}") from None
    model.tie_weights()
    gen = torch.Generator().manual_seed(seed)
    block = (torch.rand(1 << 20, generator=gen) * 0.04 - 0.02).to(device=device, dtype=dt)
    with torch.no_grad():
        for p in model.parameters():
            flat = p.data.view(-1)
            for i in range(0, flat.numel(), block.numel()):
                n = min(block.numel(), flat.numel() - i)
                flat[i:i + n].copy_(block[:n])
    model.eval()
    return model


def model_weight_bytes(model) -> int:
    """Bytes of the parameters (tied tensors once)."""
    seen, total = set(), 0
    for p in model.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel() * p.element_size()
    return total


def describe(cfg: dict[str, Any]) -> str:
    """'layers 4, hidden 1024, heads 16/4 (head_dim 64), ffn 4096' (the engine's reading)."""
    from ..specs.model import from_hf_config
    m = from_hf_config(cfg, name="bench")
    ffn = m.moe.expert_ffn if m.moe else m.intermediate_size
    return (f"layers {m.num_layers}, hidden {m.hidden_size}, heads {m.num_heads}/"
            f"{m.num_kv_heads} (head_dim {m.head_dim}), ffn {ffn}"
            + (f" x {m.moe.num_experts} experts (top {m.moe.top_k})" if m.moe else ""))
