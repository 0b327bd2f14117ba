"""Parameter counts and KV-cache sizes checked against Hugging Face ``transformers``.

Every expected number in this file is produced at test time by ``transformers``
(an independent implementation of each architecture): parameter counts come from
``sum(p.numel() for p in model.parameters())`` of the model built from the same
``config.json`` on the meta device, KV-cache sizes from the tensors of the
``DynamicCache`` a real forward pass returns. None of them is pasted engine output.
The only hand-written constant is DeepSeek-V3's latent-cache size, derived in
:func:`test_deepseek_v3_latent_kv_cache_by_hand` from its published dimensions.
"""

from __future__ import annotations

import json
import warnings
from importlib import resources

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from transformers import (  # noqa: E402
    AutoConfig,
    AutoModelForCausalLM,
    FalconConfig,
    LlamaConfig,
    OPTConfig,
)

from llmroofline import Precision, from_hf_config, load_model, param_count  # noqa: E402
from llmroofline.memory import kv_cache_bytes_per_seq  # noqa: E402
from llmroofline.specs.catalog import builtin_model_files  # noqa: E402

MODELS = list(builtin_model_files().items())
_ROOT = resources.files("llmroofline") / "data" / "models"

# Keys of the falcon-7b "RefinedWebModel" config.json (transformers < 4.33 remote code)
# -> FalconConfig names. transformers 5.x FalconConfig has no attribute_map for them: it
# would silently keep them as unknown attributes and use its defaults (which happen to be
# falcon-7b's 71 heads / 32 layers, so the count would match by coincidence only).
_OLD_FALCON_KEYS = {"n_head": "num_attention_heads", "n_layer": "num_hidden_layers",
                    "n_embed": "hidden_size", "n_head_kv": "num_kv_heads"}


def _read(file: str) -> dict:
    return json.loads((_ROOT / file).read_text())


def hf_config_from_json(cfg: dict):
    """The ``transformers`` config for one packaged ``config.json``.

    - ``quantization_config`` (gpt-oss mxfp4, DeepSeek-V3 fp8) is dropped so plain bf16
      modules are built: packed/quantized storage would change ``numel`` per tensor.
    - ``auto_map`` (remote code pointers) is dropped: everything below is in-library.
    - ``internlm`` is remote code, not in transformers. InternLM (v1) is Llama with one
      switch ``bias`` for q/k/v/o biases, so it is built as ``LlamaConfig`` with
      ``attention_bias = cfg["bias"]``.
    - ``RefinedWebModel`` / ``RefinedWeb`` (falcon-7b's old remote code) is built as
      ``FalconConfig`` with the old key names translated (see ``_OLD_FALCON_KEYS``).
    - ``facebook__opt-175b.json`` is not a HF config (metaseq hyper-parameters, no
      ``model_type``): built as the ``OPTConfig`` below; vocab 50272 is OPT's vocabulary
      (the same GPT-2 BPE + padding OPT-125m..66b ship with), which the engine assumes.
    """
    if isinstance(cfg.get("text_config"), dict):
        # Multimodal releases (Qwen3.5, Llama-4, Kimi-K2.5): the engine models the text
        # decoder, so the reference is transformers' text-only causal LM of text_config.
        text = dict(cfg["text_config"])
        if "tie_word_embeddings" in cfg:
            text.setdefault("tie_word_embeddings", cfg["tie_word_embeddings"])
        text.setdefault("model_type", {"qwen3_5_moe": "qwen3_5_moe_text",
                                       "qwen3_5": "qwen3_5_text"}.get(cfg["model_type"]))
        cfg = text
    cfg = {k: v for k, v in cfg.items()
           if k not in ("quantization_config", "auto_map", "_comment")}
    mt = cfg.pop("model_type", None)
    if mt == "kimi_k2":   # Kimi-K2's decoder is DeepSeek-V3 (its architectures say so)
        mt = "deepseek_v3"
    if mt is None:
        return OPTConfig(num_hidden_layers=96, hidden_size=12288, num_attention_heads=96,
                         ffn_dim=49152, word_embed_proj_dim=12288,
                         max_position_embeddings=2048, vocab_size=50272)
    if mt == "internlm":
        return LlamaConfig(**cfg, attention_bias=cfg["bias"])
    if mt in ("RefinedWebModel", "RefinedWeb"):
        cfg = {_OLD_FALCON_KEYS.get(k, k): v for k, v in cfg.items()}
        return FalconConfig(**cfg)
    return AutoConfig.for_model(mt, **cfg)


def build_meta(hf_cfg):
    """Instantiate on the meta device: shapes only, no memory, no init cost."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(hf_cfg)


def _decoder_layers(model):
    base = getattr(model, "model", None) or model.base_model   # Llama4ForCausalLM: .model
    for attr in ("layers", "h", "decoder"):
        sub = getattr(base, attr, None)
        if sub is not None:
            return sub.layers if attr == "decoder" else sub
    raise AssertionError(f"cannot find decoder layers of {type(model).__name__}")


def _group_counts(model) -> dict[str, int]:
    """Per-module-name parameter counts with the layer index stripped (diagnostics)."""
    out: dict[str, int] = {}
    for n, p in model.named_parameters():
        key = ".".join("*" if part.isdigit() else part for part in n.split("."))
        out[key] = out.get(key, 0) + p.numel()
    return out


# -- 1. parameter counts of every built-in model -------------------------------------
@pytest.mark.parametrize("hf_id,file", MODELS, ids=[m[0] for m in MODELS])
def test_param_count_matches_transformers(hf_id, file):
    spec = load_model(hf_id)
    hf_cfg = hf_config_from_json(_read(file))
    model = build_meta(hf_cfg)
    # Expected: transformers' own module tree. parameters() yields a tied
    # embedding / lm_head once; buffers (rotary inv_freq, DeepSeek-V3's
    # e_score_correction_bias) are not parameters (see test_deepseek_v3_extra_state).
    expected = sum(p.numel() for p in model.parameters())
    got = param_count(spec)
    if got != expected:
        groups = "\n".join(f"  {k}: {v:,}" for k, v in sorted(_group_counts(model).items()))
        pytest.fail(f"{hf_id}: engine {got:,} vs transformers {expected:,} "
                    f"(diff {got - expected:+,})\ntransformers per-module totals:\n{groups}")
    # Structure cross-checks that a matching total could hide (e.g. a config key
    # transformers ignored, falling back to a default).
    assert len(_decoder_layers(model)) == spec.num_layers
    assert model.get_input_embeddings().weight.shape == (spec.vocab_size, spec.hidden_size)
    assert hf_cfg.num_attention_heads == spec.num_heads
    if spec.mla is None and getattr(hf_cfg, "num_key_value_heads", None) is not None:
        assert hf_cfg.num_key_value_heads == spec.num_kv_heads
    # parameters() is the complete set of stored weights: the state_dict holds nothing
    # else, except DeepSeek-V3's router bias buffer (see test_deepseek_v3_extra_state).
    # Routers with an aux-loss-free balancing bias (DeepSeek-V3 layout, GLM-5, Nemotron-H)
    # keep it as a buffer, checked in test_deepseek_v3_extra_state.
    params = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    assert [k for k in model.state_dict() if k not in params
            and not k.endswith("e_score_correction_bias")] == []


def test_falcon_7b_refinedweb_shapes():
    """falcon-7b's old-style config builds 71 query heads sharing 1 K/V head (MQA)."""
    spec = load_model("tiiuae/falcon-7b")
    hf_cfg = hf_config_from_json(_read("tiiuae__falcon-7b.json"))
    assert (hf_cfg.num_attention_heads, hf_cfg.num_hidden_layers, hf_cfg.hidden_size) == (71, 32, 4544)
    assert hf_cfg.multi_query and not hf_cfg.new_decoder_architecture
    model = build_meta(hf_cfg)
    attn = model.transformer.h[0].self_attention
    # Fused QKV: 71 query heads + 1 key head + 1 value head, head_dim 64.
    assert attn.query_key_value.weight.shape == ((71 + 2) * 64, 4544)
    assert (spec.num_heads, spec.num_kv_heads, spec.head_dim) == (71, 1, 64)
    assert spec.q_dim + 2 * spec.kv_dim == attn.query_key_value.weight.shape[0]


def test_deepseek_v3_extra_state():
    """What transformers builds for DeepSeek-V3 beyond ``parameters()``.

    - The multi-token-prediction module (``num_nextn_predict_layers = 1``) is not
      instantiated by transformers; the engine follows transformers (61 layers, 671.0B).
    - ``mlp.gate.e_score_correction_bias`` (the aux-loss-free load-balancing bias, E fp32
      values per MoE layer) is a persistent *buffer* in transformers: stored in the
      checkpoint but not a parameter (not trained by gradient). ``param_count`` follows
      ``model.parameters()`` / ``model.num_parameters()`` and excludes it; it is
      58 x 256 = 14,848 values (59 KB), negligible for the weight bytes.
    """
    spec = load_model("deepseek-ai/DeepSeek-V3")
    cfg = _read("deepseek-ai__DeepSeek-V3.json")
    model = build_meta(hf_config_from_json(cfg))
    assert cfg["num_nextn_predict_layers"] == 1
    assert len(model.model.layers) == cfg["num_hidden_layers"] == spec.num_layers == 61
    params = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    extra = {k: v.numel() for k, v in model.state_dict().items() if k not in params}
    assert all(k.endswith("mlp.gate.e_score_correction_bias") for k in extra), extra
    assert len(extra) == spec.num_moe_layers == 61 - cfg["first_k_dense_replace"]
    assert sum(extra.values()) == spec.num_moe_layers * spec.moe.num_experts


# -- 2. KV-cache bytes per token from real forward passes ----------------------------
# Tiny random-weight configs. Each dict is given verbatim to transformers AND to
# llmroofline.from_hf_config. Windows (mistral, gemma2) are larger than S, so every
# layer holds all S tokens.
_B, _S = 2, 7
_V = 128

TINY = {
    "llama-mha": dict(model_type="llama", hidden_size=64, num_attention_heads=4,
                      num_key_value_heads=4, num_hidden_layers=2, intermediate_size=96,
                      vocab_size=_V, max_position_embeddings=64),
    "llama-gqa": dict(model_type="llama", hidden_size=64, num_attention_heads=8,
                      num_key_value_heads=2, num_hidden_layers=3, intermediate_size=96,
                      vocab_size=_V, max_position_embeddings=64, attention_bias=True),
    "mistral-swa": dict(model_type="mistral", hidden_size=64, num_attention_heads=4,
                        num_key_value_heads=2, num_hidden_layers=2, intermediate_size=96,
                        vocab_size=_V, max_position_embeddings=64, sliding_window=32),
    "gpt2": dict(model_type="gpt2", n_embd=64, n_head=4, n_layer=2, n_positions=64,
                 vocab_size=_V),
    "opt": dict(model_type="opt", hidden_size=64, num_attention_heads=4, num_hidden_layers=2,
                ffn_dim=128, word_embed_proj_dim=64, vocab_size=_V,
                max_position_embeddings=64),
    "gptj": dict(model_type="gptj", n_embd=64, n_head=4, n_layer=2, rotary_dim=8,
                 n_positions=64, vocab_size=_V),
    "falcon-mqa": dict(model_type="falcon", hidden_size=64, num_attention_heads=4,
                       num_hidden_layers=2, vocab_size=_V, multi_query=True,
                       new_decoder_architecture=False, parallel_attn=True, bias=False,
                       alibi=False, max_position_embeddings=64),
    "falcon-newarch": dict(model_type="falcon", hidden_size=64, num_attention_heads=8,
                           num_kv_heads=2, num_hidden_layers=2, vocab_size=_V,
                           new_decoder_architecture=True, bias=False, alibi=False,
                           max_position_embeddings=64),
    "qwen3-headdim": dict(model_type="qwen3", hidden_size=64, num_attention_heads=4,
                          num_key_value_heads=2, head_dim=32, num_hidden_layers=2,
                          intermediate_size=96, vocab_size=_V, max_position_embeddings=64),
    "gemma2": dict(model_type="gemma2", hidden_size=64, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=32, num_hidden_layers=2,
                   intermediate_size=96, vocab_size=_V, max_position_embeddings=64,
                   sliding_window=32),
    "deepseek_v2-mla": dict(model_type="deepseek_v2", hidden_size=64, num_attention_heads=4,
                            num_key_value_heads=4, num_hidden_layers=2, intermediate_size=96,
                            vocab_size=_V, max_position_embeddings=64, q_lora_rank=None,
                            kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8,
                            v_head_dim=16, n_routed_experts=4, num_experts_per_tok=2,
                            moe_intermediate_size=32, n_shared_experts=1,
                            first_k_dense_replace=1, topk_method="greedy"),
}
# Half of them in bfloat16 (kvbits=16), the rest float32 (kvbits=32).
_BF16 = {"llama-gqa", "gpt2", "gptj", "falcon-newarch", "gemma2"}


def _tiny_model(cfg: dict, dtype):
    hf_cfg = AutoConfig.for_model(cfg["model_type"],
                                  **{k: v for k, v in cfg.items() if k != "model_type"})
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_config(hf_cfg, attn_implementation="eager")
    return model.to(dtype).eval()


def _cache_bytes(cache) -> tuple[int, int]:
    """Total bytes of all K and V tensors in a transformers 5 ``DynamicCache``."""
    total = 0
    for layer in cache.layers:
        for t in (layer.keys, layer.values):
            total += t.numel() * t.element_size()
    return total, len(cache.layers)


@pytest.mark.parametrize("key", list(TINY))
def test_kv_cache_bytes_match_transformers(key):
    cfg = TINY[key]
    dtype = torch.bfloat16 if key in _BF16 else torch.float32
    prec = Precision(kvbits=16 if dtype == torch.bfloat16 else 32)
    spec = from_hf_config(cfg, name=key)
    assert all(w is None or w > _S for w in spec.layer_windows)

    model = _tiny_model(cfg, dtype)
    # The tiny configs also cover biases/norm variants: parameter counts must agree too.
    assert param_count(spec) == sum(p.numel() for p in model.parameters())

    ids = torch.randint(0, _V, (_B, _S), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
    hf_bytes, n_layers = _cache_bytes(out.past_key_values)
    assert n_layers == spec.num_layers
    for layer in out.past_key_values.layers:
        assert layer.keys.dtype == dtype and layer.keys.shape[0] == _B
        assert layer.keys.shape[-2] == _S

    engine_per_seq = float(kv_cache_bytes_per_seq(spec, prec, _S))
    if key == "falcon-newarch":
        # transformers' Falcon broadcasts each K/V head to its whole query group before
        # caching (modeling_falcon: ``num_kv_heads = self.num_heads if
        # self.new_decoder_architecture``), so its cache holds heads/kv_heads identical
        # copies. Serving engines (vLLM, TGI) cache the kv_heads distinct heads, which is
        # what the engine counts. Check the copies really are identical, then compare the
        # distinct content.
        group = spec.num_heads // spec.num_kv_heads
        for layer in out.past_key_values.layers:
            for t in (layer.keys, layer.values):
                g = t.reshape(_B, spec.num_kv_heads, group, _S, t.shape[-1])
                assert torch.equal(g, g[:, :, :1].expand_as(g))
        assert hf_bytes == group * _B * engine_per_seq
        hf_bytes //= group
    if spec.mla is not None:
        # transformers 5 caches MLA's compressed latent (the normalized kv_lora_rank part
        # as "keys", the shared rotary key qk_rope_head_dim as "values", one head each),
        # as serving engines do: the engine's kv_cache_width().
        layer = out.past_key_values.layers[0]
        assert layer.keys.shape == (_B, 1, _S, cfg["kv_lora_rank"])
        assert layer.values.shape == (_B, 1, _S, cfg["qk_rope_head_dim"])
        assert spec.kv_cache_width() == 32 + 8
    assert hf_bytes == _B * engine_per_seq, (key, hf_bytes, _B * engine_per_seq)


def test_deepseek_v3_latent_kv_cache_by_hand():
    """MLA latent cache: per layer kv_lora_rank (512) + qk_rope_head_dim (64) elements,
    61 layers, 2 bytes -> 61 * (512 + 64) * 2 = 70,272 bytes per token (DeepSeek-V3
    config.json values, computed by hand, not by the engine)."""
    spec = load_model("deepseek-ai/DeepSeek-V3")
    assert float(kv_cache_bytes_per_seq(spec, Precision(), 1)) == 61 * (512 + 64) * 2 == 70_272

