"""2025-26 architectures: hybrid linear attention (Gated DeltaNet, Mamba-2), DeepSeek sparse
attention (DSA), chunked local attention, dense/MoE interleaving, MTP, group-limited routing.

Expected numbers come from an independent source, never from the engine:
- parameter counts: transformers 5.23 builds each config on the meta device;
- KV / recurrent-state bytes: derived by hand from the config's published sizes (each
  derivation is written next to its assertion);
- FLOPs of one layer: ``torch.utils.flop_counter.FlopCounterMode`` on a real forward of a
  tiny random-weight model (transformers' reference PyTorch kernels), plus hand-derived
  terms for what the counter cannot see (it counts ``mm``/``bmm``/``convolution`` only:
  triangular solves and the elementwise recurrent decode step count 0).

Which 2026 configs transformers cannot build offline (stated, not tested against it):
- ``mimo`` (MiMo-7B): remote code only; the engine reads it as Qwen2 plus MTP modules.
- ``qwen3_vl_text`` / ``qwen3_vl_moe_text``: no ``AutoModelForCausalLM`` for the text
  config; checked instead against ``Qwen3VL(Moe)TextModel`` + an untied lm_head.
- ``kimi_k2`` (top-level, Kimi-K2-Instruct): remote code; its ``architectures`` say
  ``DeepseekV3ForCausalLM``, so it is built as ``deepseek_v3``.
- Refused architectures (SGLang's DeepSeek-V4 reference layout, Kimi-K3, MiniMax-M3, Gemma-4, Step-3.7,
  MiMo-V2-Flash, Nemotron-NAS): see :data:`REFUSED`.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from llmroofline import Precision, from_hf_config, param_count
from llmroofline.errors import InputError
from llmroofline.graph import build_ops, chunked_pairs
from llmroofline.memory import kv_cache_bytes_per_seq, state_bytes_per_seq
from llmroofline.parallel import Layout, alltoall_copies_per_token
from llmroofline.specs.catalog import load_model
from llmroofline.specs.model import mtp_param_count

# ../shared beside the repository (in CI too)
REF = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "model_configs_2026"
FILES = sorted(p for p in REF.glob("*.json") if not p.name.endswith(".hf_quant_config.json")) \
    if REF.is_dir() else []
needs_ref = pytest.mark.skipif(not FILES, reason="shared/reference/model_configs_2026 not present")

BF16 = Precision()   # 16-bit weights, activations and KV

# Files refused, and the key each refusal must name.
REFUSED = {
    "MiniMaxAI__MiniMax-M3": "model_type", "nvidia__MiniMax-M3-NVFP4": "model_type",
    "XiaomiMiMo__MiMo-V2-Flash": "model_type",
    "sgl-project__DeepSeek-V4-Flash-FP8": "model_type", "sgl-project__DeepSeek-V4-Pro-FP8": "model_type",
    "google__gemma-4-26B-A4B": "model_type", "nvidia__Gemma-4-26B-A4B-NVFP4": "model_type",
    "nvidia__Gemma-4-31B-IT-NVFP4": "model_type",
    "moonshotai__Kimi-K3": "model_type",
    "nvidia__Llama-3_3-Nemotron-Super-49B-v1": "model_type",
    "stepfun-ai__Step-3.7-Flash": "model_type", "stepfun-ai__Step-3.7-Flash-FP8": "model_type",
}


def _read(p: Path) -> dict:
    return json.loads(p.read_text())


# -- 1. every 2026 config loads and is modelled, or is refused in one line ------------------
@needs_ref
@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_2026_config_loads_or_is_refused_in_one_line(path):
    cfg = _read(path)
    if path.stem in REFUSED:
        with pytest.raises(InputError) as e:
            from_hf_config(cfg, path.stem)
        msg = str(e.value)
        assert "\n" not in msg and f"'{REFUSED[path.stem]}'" in msg or REFUSED[path.stem] in msg
        assert "not" in msg   # says why: "... is not supported: <reason>"
        return
    m = from_hf_config(cfg, path.stem)
    for q, L in ((512, 512), (1, 4096)):
        ops = build_ops(m, BF16, 2, q, L)
        flops = sum(float(o.flops) for o in ops)
        assert np.isfinite(flops) and flops > 0
    if "text_config" in cfg:
        assert any("encoder is not priced" in n for n in m.notes)


def test_multimodal_note_reaches_the_analysis():
    from llmroofline import phases
    a = phases.analyze("Qwen/Qwen3.5-27B", "h100-sxm", 1, 128, 8)
    assert any("vision encoder is not priced" in w for w in a.warnings)


# -- 2. bad configs: one line each ------------------------------------------------------------
_GOOD_QWEN35 = dict(model_type="qwen3_5_text", hidden_size=64, num_hidden_layers=4,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                    intermediate_size=96, vocab_size=128, full_attention_interval=2,
                    linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=16,
                    linear_value_head_dim=8, linear_conv_kernel_dim=4)


@pytest.mark.parametrize("change,needle", [
    (dict(layer_types=["full_attention", "fancy_attention", "full_attention", "full_attention"]),
     "unknown attention kind 'fancy_attention'"),
    (dict(num_attention_heads=6, num_key_value_heads=4), "must be a multiple of num_key_value_heads"),
    (dict(linear_num_value_heads=3), "linear_num_value_heads (3) must be a multiple"),
    (dict(linear_key_head_dim=None), "missing field 'linear_key_head_dim'"),
    (dict(hidden_size=None), "missing field 'hidden_size'"),
    (dict(layer_types=["full_attention"] * 3), "layer_types has 3 entries"),
    (dict(mamba_ssm_dtype="float7"), "mamba_ssm_dtype"),
])
def test_bad_qwen35_configs_one_line(change, needle):
    cfg = {**_GOOD_QWEN35, **change}
    cfg = {k: v for k, v in cfg.items() if v is not None}
    with pytest.raises(InputError) as e:
        from_hf_config(cfg, "bad")
    assert needle in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("cfg,needle", [
    (dict(model_type="nemotron_h", hidden_size=64, num_attention_heads=4, vocab_size=128,
          intermediate_size=96, hybrid_override_pattern="M*X"), "unknown block kind 'X'"),
    (dict(model_type="nemotron_h", hidden_size=64, num_attention_heads=4, vocab_size=128,
          intermediate_size=96, hybrid_override_pattern="M*", mamba_num_heads=6,
          mamba_head_dim=8, n_groups=4, ssm_state_size=16, conv_kernel=4),
     "must be a multiple of n_groups"),
    (dict(model_type="deepseek_ref", hidden_size=64), "'deepseek_ref' is not supported"),
    (dict(model_type="deepseek_v4", hidden_size=64, num_attention_heads=4, num_hidden_layers=2,
          vocab_size=128, compress_ratios=[4]), "compress_ratios must list a ratio for each"),
    (dict(model_type="llama", hidden_size=64, num_attention_heads=4, num_hidden_layers=2,
          intermediate_size=96, vocab_size=128, compress_ratios=[4, 4]),
     "key 'compress_ratios' cannot be modelled"),
    (dict(model_type="deepseek_v32", hidden_size=64, num_attention_heads=4, num_hidden_layers=1,
          intermediate_size=96, vocab_size=128, kv_lora_rank=32, qk_nope_head_dim=16,
          qk_rope_head_dim=8, v_head_dim=16, index_topk=64, index_n_heads=4),
     "missing field 'index_head_dim'"),
    (dict(model_type="deepseek_v3", hidden_size=64, num_attention_heads=4, num_hidden_layers=2,
          intermediate_size=96, vocab_size=128, kv_lora_rank=32, qk_nope_head_dim=16,
          qk_rope_head_dim=8, v_head_dim=16, n_routed_experts=6, num_experts_per_tok=2,
          moe_intermediate_size=32, n_group=4, topk_group=2), "n_group = 4 must divide"),
])
def test_bad_configs_one_line(cfg, needle):
    with pytest.raises(InputError) as e:
        from_hf_config(cfg, "bad")
    assert needle in str(e.value) and "\n" not in str(e.value)


# -- 3. parameter counts equal transformers' on the meta device ------------------------------
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from test_params_hf import hf_config_from_json  # noqa: E402  (the reference config builder)


def _meta_params(hf_cfg) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.device("meta"):
            mt = hf_cfg.model_type
            if mt in ("qwen3_vl_text", "qwen3_vl_moe_text"):
                cls = (transformers.Qwen3VLMoeTextModel if mt == "qwen3_vl_moe_text"
                       else transformers.Qwen3VLTextModel)
                model = cls(hf_cfg)
                lm = 0 if hf_cfg.tie_word_embeddings else hf_cfg.vocab_size * hf_cfg.hidden_size
                return sum(p.numel() for p in model.parameters()) + lm
            model = transformers.AutoModelForCausalLM.from_config(hf_cfg)
    return sum(p.numel() for p in model.parameters())


BUILDABLE = [p for p in FILES if p.stem not in REFUSED and _read(p).get("model_type") != "mimo"]


@needs_ref
@pytest.mark.parametrize("path", BUILDABLE, ids=[p.stem for p in BUILDABLE])
def test_2026_param_count_matches_transformers(path):
    cfg = _read(path)
    assert param_count(from_hf_config(cfg, path.stem)) == _meta_params(hf_config_from_json(cfg))


def test_mtp_parameters_are_reported_separately():
    """DeepSeek-V3.2: one MTP module = one MoE decoder layer (as the last layer) + eh_proj
    (2 h x h) + enorm, hnorm and the shared head's norm (h each); embedding and lm_head
    are shared. transformers does not build it, so param_count excludes it."""
    m = load_model("deepseek-ai/DeepSeek-V3.2")
    h, a, x = 7168, m.mla, m.sparse
    attn = (h * 1536 + 1536 * 128 * 192 + h * (512 + 64) + 512 * 128 * (128 + 128)
            + 128 * 128 * h) + 1536 + 512
    indexer = 1536 * 64 * 128 + h * 128 + h * 64 + 2 * 128
    moe = 256 * 3 * h * 2048 + 3 * h * 2048 + h * 256   # routed + shared + router
    layer = attn + indexer + moe + 2 * h
    assert (a.q_lora_rank, x.index_n_heads, x.index_head_dim) == (1536, 64, 128)
    assert mtp_param_count(m) == layer + 2 * h * h + 3 * h
    assert m.mtp_layers == 1


# -- 4. KV-cache and recurrent-state bytes by hand -------------------------------------------
def test_gated_deltanet_hybrid_kv_and_state_by_hand():
    """Qwen3.5-397B-A17B: 60 layers, full attention every 4th (15 layers), GQA 2 KV heads of
    256; 45 Gated DeltaNet layers with 16 key heads x 128, 64 value heads x 128, conv 4,
    state in float32 (mamba_ssm_dtype)."""
    m = load_model("Qwen/Qwen3.5-397B-A17B")
    assert m.layer_mixers.count("attention") == 15 and m.layer_mixers.count("linear") == 45
    kv_per_token = 15 * 2 * 2 * 256 * 2                       # 30,720 B
    assert kv_cache_bytes_per_seq(m, BF16, 1) == kv_per_token
    assert kv_cache_bytes_per_seq(m, BF16, 131072) == 131072 * kv_per_token
    state = 64 * 128 * 128 * 4                               # recurrent state, fp32
    conv = (2 * 16 * 128 + 64 * 128) * (4 - 1) * 2           # last 3 inputs of q,k,v, bf16
    assert state_bytes_per_seq(m) == 45 * (state + conv) == 45 * 4_268_032
    # Under TP 4 each rank holds a quarter of the heads (and of the state).
    assert state_bytes_per_seq(m, Layout(tp=4)) == 45 * (state + conv) / 4


def test_mamba2_hybrid_kv_and_state_by_hand():
    """Nemotron-3-Nano-30B-A3B: pattern MEMEM*E...: 23 Mamba-2 blocks (64 heads x 64, state
    128, 8 groups, conv 4, fp32 SSM cache), 6 attention blocks (2 KV heads x 128)."""
    m = load_model("nemotron-3-nano")
    pat = "MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME"
    assert (pat.count("M"), pat.count("*"), pat.count("E")) == (23, 6, 23)
    assert kv_cache_bytes_per_seq(m, BF16, 1) == 6 * 2 * 2 * 128 * 2          # 6,144 B
    state = 64 * 64 * 128 * 4
    conv = (64 * 64 + 2 * 8 * 128) * 3 * 2
    assert state_bytes_per_seq(m) == 23 * (state + conv)


def test_dsa_sparse_attention_kv_by_hand():
    """DeepSeek-V3.2: 61 MLA layers cache the 512 + 64 latent; every layer's indexer caches a
    128-element key too: 61 x (576 + 128) x 2 B = 85,888 B per token at 16 bits."""
    m = load_model("deepseek-v3.2")
    assert kv_cache_bytes_per_seq(m, BF16, 1) == 61 * (512 + 64 + 128) * 2 == 85_888
    assert state_bytes_per_seq(m) == 0


@needs_ref
def test_glm52_shared_indexers_hold_no_index_keys():
    """GLM-5.2: 78 layers, indexer_types 'full' in layers 0-2 and every 4th from 6 (21), 'shared' in 57
    (reusing an earlier layer's top-k)."""
    cfg = _read(REF / "zai-org__GLM-5.2.json")
    m = from_hf_config(cfg, "glm-5.2")
    full = cfg["indexer_types"].count("full")
    assert full == 3 + len(range(6, 78, 4)) == 21
    assert kv_cache_bytes_per_seq(m, BF16, 1) == (78 * (512 + 64) + full * 128) * 2


def test_chunked_attention_kv_by_hand():
    """Llama-4-Scout: 48 layers, every 4th a global NoPE layer (12), the other 36 chunked
    with 8192-token chunks (the cache holds at most one chunk); 8 KV heads x 128."""
    m = load_model("llama-4-scout")
    per_layer_token = 2 * 8 * 128 * 2
    assert kv_cache_bytes_per_seq(m, BF16, 32768) == (12 * 32768 + 36 * 8192) * per_layer_token
    assert m.num_moe_layers == 48 and m.moe.shared_ffn == 8192


def test_qwen2_max_window_layers_slide_only_the_upper_layers():
    """transformers' Qwen2: with use_sliding_window, only layers >= max_window_layers slide.
    28 layers, max_window_layers 21, window 4096: at 32k tokens 21 x 32768 + 7 x 4096
    tokens are held, not 28 x 4096 (the old reading under-counted by 78 %)."""
    cfg = dict(model_type="qwen2", hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
               num_hidden_layers=28, intermediate_size=96, vocab_size=128,
               use_sliding_window=True, sliding_window=4096, max_window_layers=21)
    m = from_hf_config(cfg, "qwen2-swa")
    width = 2 * 2 * 16 * 2
    assert kv_cache_bytes_per_seq(m, BF16, 32768) == (21 * 32768 + 7 * 4096) * width
    hf = transformers.Qwen2Config(**{k: v for k, v in cfg.items() if k != "model_type"})
    assert [w is not None for w in m.layer_windows] == [t == "sliding_attention"
                                                        for t in hf.layer_types]


# -- 5. FLOPs of one layer against FlopCounterMode -------------------------------------------
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402


def _count_by_module(model, **inputs):
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        out = model(**inputs, logits_to_keep=1, use_cache=True)
    counts = {m: {str(k).split(".")[1]: v for k, v in d.items()} for m, d in fc.get_flop_counts().items()}
    return counts, out


def _module(counts, suffix):
    hits = [v for k, v in counts.items() if k.endswith(suffix)]
    assert len(hits) == 1, (suffix, list(counts))
    return hits[0]


def _rows(ops, *names):
    return {o.name: int(round(float(o.flops))) for o in ops if o.name in names}


_GDN = dict(model_type="qwen3_5_text", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, intermediate_size=96, vocab_size=128,
            layer_types=["linear_attention", "full_attention"], linear_num_key_heads=2,
            linear_num_value_heads=4, linear_key_head_dim=16, linear_value_head_dim=8,
            linear_conv_kernel_dim=4, max_position_embeddings=512)


@pytest.fixture(scope="module")
def gdn_model():
    cfg = transformers.CONFIG_MAPPING["qwen3_5_text"](
        **{k: v for k, v in _GDN.items() if k != "model_type"})
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    return model.float().eval()


def test_gated_deltanet_layer_flops_equal_torch(gdn_model):
    """One Gated DeltaNet layer (layer 0), prefill of B = 2 x T = 128 (two 64-token chunks),
    and the decode step after it.

    Projections (in_proj_qkv/z/b/a, out_proj) are ``aten.mm`` and must equal the engine's
    ``linear_attn_in_proj`` + ``linear_attn_out_proj`` exactly. The chunked rule's ``bmm``
    count is, per chunk and value head (c = 64, dk = 16, dv = 8): (beta K) K^T and Q K^T
    (2 c^2 dk each), the intra-chunk output (2 c^2 dv), W S, Q S and K^T U (2 c dk dv
    each) = 376,832; the engine's scan row adds the two unit-triangular solves the counter
    does not see, c (c - 1) (dk + dv) = 96,768 per chunk and head. The depthwise conv is
    counted over T + kernel - 1 padded positions: 2 x 4 x conv_dim x B x (T + 3); the
    engine counts 2 x kernel per (token, channel) plus 4 for SiLU."""
    B, T, c, dk, dv, nv, K = 2, 128, 64, 16, 8, 4, 4
    conv_dim = 2 * 2 * 16 + 4 * 8
    ids = torch.randint(0, 128, (B, T))
    counts, out = _count_by_module(gdn_model, input_ids=ids)
    spec = from_hf_config(_GDN, "gdn")
    ops = build_ops(spec, Precision(wbits=32, abits=32, kvbits=32), B, T, T)
    layer = [o for o in ops if o.count == 1]       # 1 linear + 1 attention layer: count 1 rows
    rows = _rows(layer, "linear_attn_in_proj", "linear_attn_out_proj", "gated_delta_rule",
                 "linear_attn_conv")
    la = _module(counts, "layers.0.linear_attn")
    assert rows["linear_attn_in_proj"] + rows["linear_attn_out_proj"] == la["mm"]
    chunks = T // c
    counted_scan = B * nv * chunks * (2 * 2 * c * c * dk + 2 * c * c * dv + 3 * 2 * c * dk * dv)
    assert counted_scan == la["bmm"] == 6_029_312
    solves = B * nv * chunks * c * (c - 1) * (dk + dv)
    assert rows["gated_delta_rule"] == la["bmm"] + solves
    assert la["convolution"] == 2 * K * conv_dim * B * (T + K - 1)
    assert rows["linear_attn_conv"] == (2 * K + 4) * conv_dim * B * T

    # Decode: the recurrent step is elementwise in transformers (counts 0); the projections
    # must match exactly, and the engine's step is 7 dk dv FLOPs per value head (decay,
    # S^T k, rank-1 update, read-out S^T q).
    counts, _ = _count_by_module(gdn_model, input_ids=ids[:, :1], past_key_values=out.past_key_values)
    dops = build_ops(spec, Precision(wbits=32, abits=32, kvbits=32), B, 1, T + 1)
    rows = _rows([o for o in dops if o.count == 1], "linear_attn_in_proj", "linear_attn_out_proj",
                 "gated_delta_rule")
    la = _module(counts, "layers.0.linear_attn")
    assert rows["linear_attn_in_proj"] + rows["linear_attn_out_proj"] == la["mm"]
    assert la.get("bmm", 0) == 0
    assert rows["gated_delta_rule"] == B * nv * 7 * dk * dv
    # ... and reads + writes the fp32 state once: 2 x B x nv x dk x dv x 4 bytes.
    scan = next(o for o in dops if o.name == "gated_delta_rule")
    assert float(scan.kv_bytes) == 2 * B * nv * dk * dv * 4


_DSA = dict(model_type="deepseek_v32", hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
            num_key_value_heads=4, intermediate_size=96, vocab_size=128, max_position_embeddings=512,
            q_lora_rank=24, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8,
            v_head_dim=16, n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
            n_shared_experts=1, first_k_dense_replace=1, n_group=1, topk_group=1,
            index_topk=2048, index_n_heads=4, index_head_dim=16,
            bos_token_id=0, eos_token_id=1, pad_token_id=0)


def test_dsa_layer_flops_equal_torch():
    """One DeepSeek-V3.2 layer (MLA + lightning indexer), eager, prefill B = 2 x T = 16 and
    one decode step. With T <= index_topk every key is selected, and transformers' eager
    path scores the full (T x L) block and masks it: the engine's unfused path
    (``flash=False``, ``mla_absorb=False``: kv_b_proj over the cache, as transformers runs)
    must give the same matmul FLOPs, module by module.

    Indexer by hand: per (query, key) pair, index_heads x (2 index_dim) for q . k plus
    index_heads x 2 for the head-weighted sum: 4 x (32 + 2) = 136 FLOPs."""
    B, T = 2, 16
    cfg = transformers.CONFIG_MAPPING["deepseek_v32"](
        **{k: v for k, v in _DSA.items() if k != "model_type"})
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    model = model.float().eval()
    spec = from_hf_config(_DSA, "dsa")
    ids = torch.randint(0, 128, (B, T))
    f32 = Precision(wbits=32, abits=32, kvbits=32)
    for step, (q, L) in enumerate(((T, T), (1, T + 1))):
        if step == 0:
            counts, out = _count_by_module(model, input_ids=ids)
        else:
            counts, _ = _count_by_module(model, input_ids=ids[:, :1],
                                         past_key_values=out.past_key_values)
        ops = build_ops(spec, f32, B, q, L, flash=False, mla_absorb=False)
        idx = _module(counts, "self_attn.indexer")
        rows = _rows(ops, "indexer_q_proj", "indexer_k_proj", "indexer_scores")
        assert rows["indexer_q_proj"] + rows["indexer_k_proj"] == idx["mm"]
        assert rows["indexer_scores"] == idx["bmm"] == B * q * L * 4 * (2 * 16 + 2)
        attn = _module(counts, "layers.0.self_attn")
        core = sum(int(round(float(o.flops))) for o in ops
                   if o.name.startswith(("attn_score", "attn_av")))
        assert core == attn["bmm"] - idx["bmm"] == B * 4 * q * L * 2 * ((16 + 8) + 16)
        proj = sum(int(round(float(o.flops))) for o in ops
                   if o.name in ("q_a_proj", "q_b_proj", "kv_a_proj", "kv_b_proj", "o_proj"))
        assert proj == attn["mm"] - idx["mm"]


def test_dsa_decode_reads_top_k_keys_and_all_index_keys_by_hand():
    """Fused decode at L = 100k for DeepSeek-V3.2: attention covers index_topk = 2048 keys
    per head (latent width 576 for scores, 512 for values: 2 x 2048 x 128 heads x 1088
    FLOPs), while the indexer scores all 100k cached keys (64 heads x 258 FLOPs each)
    and reads 100k x 128 index-key elements per layer."""
    m = load_model("deepseek-v3.2")
    L = 100_000
    ops = {o.name: o for o in build_ops(m, BF16, 1, 1, L)}
    att = ops["attention (top-k)"]
    assert float(att.flops) == 61 * 2 * 2048 * 128 * (576 + 512)
    assert float(att.window) == 2048
    idx = ops["indexer_scores"]
    assert float(idx.flops) == 61 * L * 64 * (2 * 128 + 2)
    assert float(idx.kv_bytes) == 61 * (L * 128 * 2 + 128 * 2)


def test_chunked_attention_pairs_by_hand():
    """Chunks of C = 4, prefill of 10 tokens: positions 0..9 see 1,2,3,4 | 1,2,3,4 | 1,2 keys:
    23 pairs (causal would be 55); a 3-token step at positions 7..9 sees 4 + 1 + 2 = 7."""
    brute = lambda q, L, C: sum((p % C) + 1 for p in range(L - q, L))  # noqa: E731
    assert chunked_pairs(10, 10, 4) == 23 == brute(10, 10, 4)
    assert chunked_pairs(3, 10, 4) == 7 == brute(3, 10, 4)
    for q, L in ((1, 1), (5, 9), (8192, 20000), (1, 8193)):
        assert chunked_pairs(q, L, 8192) == brute(q, L, 8192)
    m = load_model("llama-4-scout")
    S = 20000
    ops = {o.name: o for o in build_ops(m, BF16, 1, S, S)}
    H, d = 40, 128
    assert float(ops["attention (chunked)"].flops) == 36 * 2 * H * brute(S, S, 8192) * 2 * d
    assert float(ops["attention (global)"].flops) == 12 * 2 * H * S * (S + 1) / 2 * 2 * d


# -- 6. interleaving and group-limited routing ------------------------------------------------
def test_dense_moe_interleaving():
    maverick = load_model("meta-llama/Llama-4-Maverick-17B-128E-Instruct")  # step 2
    assert maverick.layer_ffns[:4] == ("dense", "moe", "dense", "moe")
    assert maverick.num_moe_layers == 24
    kimi = load_model("moonshotai/Kimi-K2.5")
    assert kimi.moe.num_experts == 384 and kimi.layer_ffns[0] == "dense" and kimi.num_moe_layers == 60
    q = from_hf_config(dict(model_type="qwen3_moe", hidden_size=64, num_attention_heads=4,
                            num_key_value_heads=2, num_hidden_layers=6, intermediate_size=96,
                            vocab_size=128, num_experts=4, num_experts_per_tok=2,
                            moe_intermediate_size=32, decoder_sparse_step=2,
                            mlp_only_layers=[5]), "q")
    # transformers: MoE when i not in mlp_only_layers and (i + 1) % step == 0
    assert q.layer_ffns == ("dense", "moe", "dense", "moe", "dense", "dense")


def test_group_limited_routing_copies_by_hand():
    """DeepSeek-V3: 256 experts in 8 groups, top-8 from the best 4 groups. At EP 8 each rank
    holds one group; the token's 8 experts are 8 distinct ones among the 4 x 32 = 128 of its
    groups, so a rank of a chosen group is missed with probability C(96, 8) / C(128, 8),
    and the expected ranks reached are 4 x (1 - C(96, 8) / C(128, 8)) = 3.63 (not 8)."""
    m = load_model("deepseek-ai/DeepSeek-V3")
    assert (m.moe.n_group, m.moe.topk_group) == (8, 4)
    expect = 4 * (1 - math.comb(96, 8) / math.comb(128, 8))
    assert alltoall_copies_per_token(m.moe, 8) == pytest.approx(expect, rel=1e-12)
    assert 3.6 < expect < 3.65
    # EP 16: each group spans 2 ranks of 16 experts: 8 candidate ranks, each missed w.p.
    # C(112, 8) / C(128, 8).
    assert alltoall_copies_per_token(m.moe, 16) == pytest.approx(
        8 * (1 - math.comb(112, 8) / math.comb(128, 8)))
    # Without group limits (Kimi-K2: n_group 1) every token-expert pair is a copy.
    assert alltoall_copies_per_token(load_model("kimi-k2.5").moe, 8) == 8.0
    # Monte-Carlo of the same uniform model at EP 8 agrees within 1 %.
    rng = np.random.default_rng(0)
    groups = np.argsort(rng.random((20000, 8)), axis=1)[:, :4]
    ranks = []
    for g in groups:
        experts = rng.choice(128, 8, replace=False)      # among the chosen groups' experts
        ranks.append(len(set(g[experts // 32])))
    assert np.mean(ranks) == pytest.approx(expect, rel=0.01)
    # The all-to-all rows carry those copies.
    ops = {o.name: o for o in build_ops(m, BF16, 64, 1, 1000, layout=Layout(tp=8, ep=8))}
    h = 7168
    assert float(ops["moe_dispatch"].comm_bytes) == pytest.approx(58 * 64 / 8 * expect * h * 2)


# -- 7. MTP as a built-in draft; state in memory accounting ----------------------------------
def test_mtp_draft_step_and_memory_by_hand():
    """DeepSeek-V3.2's MTP module as the draft (analyze --mtp 1): a draft step is one MoE
    decoder layer plus eh_proj (2 x 2h x h FLOPs per token) and the shared lm_head; its
    extra weights are mtp_param_count x 2 bytes (bf16, TP 1), not another embedding."""
    from llmroofline import decoding
    from llmroofline.specs.model import mtp_draft
    m = load_model("deepseek-v3.2")
    d = mtp_draft(m)
    assert d.num_layers == 1 and d.layer_ffns == ("moe",) and d.sparse.has_indexer(0)
    ops = {o.name: o for o in build_ops(d, BF16, 4, 1, 1000)}
    assert float(ops["mtp_eh_proj"].flops) == 2 * 4 * (2 * 7168) * 7168
    s = decoding.speculative(m, "h200", 1, 256, 33, draft=d, draft_k=1, accept=0.5,
                             quant="bf16")   # overrides the release's native FP8
    assert float(s.memory.weights_bytes) == pytest.approx(
        float(s.plain.memory.weights_bytes) + mtp_param_count(m) * 2)
    assert s.tau == pytest.approx(1.5)
    with pytest.raises(InputError, match="no multi-token-prediction"):
        mtp_draft(load_model("llama-3.1-8b"))


def test_hybrid_state_in_footprint_and_serving_capacity():
    """The footprint holds one recurrent state per sequence (batch 8 x 45 layers x
    4,268,032 B for Qwen3.5-397B at TP 8: an eighth of the heads per rank), and the
    serving simulator reserves it for max_batch sequences before sizing the KV pool."""
    from llmroofline import phases
    from llmroofline.serving.cost import IterationCost
    a = phases.analyze("Qwen/Qwen3.5-397B-A17B", "h200", 8, 1024, 64, tp=8)
    assert float(a.memory.state_bytes) == 8 * 45 * 4_268_032 / 8
    cost = IterationCost.of("nemotron-3-nano", "h200", max_tokens=2048, max_batch=64)
    # 23 Mamba-2 blocks x (64 x 64 x 128 x 4 + (4096 + 2048) x 3 x 2) B per sequence
    per_seq = 23 * (64 * 64 * 128 * 4 + (64 * 64 + 2 * 8 * 128) * 3 * 2)
    kv_tok = 6 * 2 * 2 * 128 * 2
    tokens = cost.kv_capacity_tokens(2048, 0.9)
    cost._extra["state_bytes"] = 0.0          # the same pool without the reservation
    without = cost.kv_capacity_tokens(2048, 0.9)
    assert abs((without - tokens) - 0.9 * 64 * per_seq / kv_tok) <= 1


def test_cli_mtp_flag():
    """`analyze --mtp 2 --accept 0.8`: the speculative block uses the model's MTP draft
    (k = 2, tau = 1 + 0.8 + 0.64); a model without MTP modules is one line on stderr."""
    import subprocess
    import sys
    cmd = [sys.executable, "-m", "llmroofline", "analyze", "-m", "nemotron-3-super", "-H", "h200",
           "--tp", "2", "-i", "512", "-o", "64", "--mtp", "2", "--accept", "0.8", "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    spec = json.loads(r.stdout)["speculative"]
    assert spec["draft_k"] == 2 and spec["tau"] == pytest.approx(2.44)
    r = subprocess.run([sys.executable, "-m", "llmroofline", "analyze", "-m", "llama-3.1-8b",
                        "--mtp", "2"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "no multi-token-prediction" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# -- 8. DeepSeek-V4 ---------------------------------------------------------------------------
@needs_ref
def test_deepseek_v4_cache_by_hand():
    """DeepSeek-V4-Flash: 43 layers (compress_ratios 0, 0, then 4 / 128 alternating: 21 CSA,
    20 HCA), one shared K = V head of 512, 128-token sliding window in every layer, CSA
    index keys of 128. At t tokens, in elements: 43 x min(t, 128) x 512 + 21 x t / 4 x
    (512 + 128) + 20 x t / 128 x 512; FP8 KV (1 byte) at 1M tokens: 3.55 GB."""
    from llmroofline.specs.precision import parse_quant
    m = from_hf_config(_read(REF / "deepseek-ai__DeepSeek-V4-Flash.json"), "v4")
    ratios = _read(REF / "deepseek-ai__DeepSeek-V4-Flash.json")["compress_ratios"][:43]
    assert (ratios.count(0), ratios.count(4), ratios.count(128)) == (2, 21, 20)
    kv8 = parse_quant("fp8,kv-fp8")
    for t in (100, 8192, 1_048_576):
        expect = 43 * min(t, 128) * 512 + 21 * t / 4 * (512 + 128) + 20 * t / 128 * 512
        assert float(kv_cache_bytes_per_seq(m, kv8, t)) == pytest.approx(expect)
    # decode at 1M: CSA attention covers index_topk = 512 compressed entries per head, HCA
    # all 8192 of them, the sliding part 128 tokens; 64 heads of 512 (scores + values).
    L = 1_048_576
    ops = {o.name: o for o in build_ops(m, BF16, 1, 1, L)}
    assert float(ops["attention (compressed sparse)"].flops) == pytest.approx(21 * 2 * 64 * 512 * 1024)
    assert float(ops["attention (heavily compressed)"].flops) == pytest.approx(20 * 2 * 64 * L / 128 * 1024)
    assert float(ops["attention (sliding)"].flops) == pytest.approx(43 * 2 * 64 * 128 * 1024)
    assert float(ops["indexer_scores"].flops) == pytest.approx(21 * L / 4 * 64 * (2 * 128 + 2))


_V4 = dict(model_type="deepseek_v4", hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
           num_key_value_heads=1, head_dim=32, qk_rope_head_dim=8, q_lora_rank=24, o_groups=2,
           o_lora_rank=16, sliding_window=8, compress_ratios=[0, 4, 128], hc_mult=2,
           index_topk=4, index_n_heads=2, index_head_dim=16, n_routed_experts=4,
           num_experts_per_tok=2, moe_intermediate_size=32, n_shared_experts=1, vocab_size=128,
           max_position_embeddings=1024, num_hash_layers=0, bos_token_id=0, eos_token_id=1,
           pad_token_id=0)


def test_deepseek_v4_projection_flops_equal_torch():
    """Tiny DeepSeek-V4 (layers: sliding, CSA, HCA), eager prefill B = 2 x T = 256: every
    projection the engine prices (q_a, q_b, kv, grouped o_a, o_b, the CSA/HCA compressors,
    the indexer's projections, the hyper-connection fn GEMMs) equals FlopCounterMode's
    count of the same modules. transformers' eager attention scores the whole block
    (T sliding keys + T / ratio compressed entries, masked) where the engine counts the
    window / top-k pairs a sparse kernel computes, so the cores are checked by hand in
    test_deepseek_v4_cache_by_hand instead."""
    B, T = 2, 256
    cfg = transformers.CONFIG_MAPPING["deepseek_v4"](
        **{k: v for k, v in _V4.items() if k != "model_type"})
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.AutoModelForCausalLM.from_config(
            cfg, attn_implementation="eager", experts_implementation="eager")
    model = model.float().eval()
    assert param_count(from_hf_config(_V4, "v4")) == sum(p.numel() for p in model.parameters())
    counts, _ = _count_by_module(model, input_ids=torch.randint(0, 128, (B, T)))
    total = lambda suffix: sum(sum(v.values()) for k, v in counts.items()  # noqa: E731
                               if any(k.endswith(f"layers.{i}.{suffix}") for i in range(3)))
    ops = {o.name: int(round(float(o.flops)))
           for o in build_ops(from_hf_config(_V4, "v4"), Precision(wbits=32, abits=32, kvbits=32),
                              B, T, T)}
    for row, mods in (("q_a_proj", ["self_attn.q_a_proj"]), ("q_b_proj", ["self_attn.q_b_proj"]),
                      ("kv_proj", ["self_attn.kv_proj"]), ("o_a_proj", ["self_attn.o_a_proj"]),
                      ("o_b_proj", ["self_attn.o_b_proj"]), ("hc_fn", ["attn_hc", "ffn_hc"]),
                      ("csa_compressor", ["self_attn.compressor.kv_proj",
                                          "self_attn.compressor.gate_proj"]),
                      ("indexer_q_proj", ["self_attn.compressor.indexer.q_b_proj"]),
                      ("indexer_k_proj", ["self_attn.compressor.indexer.kv_proj",
                                          "self_attn.compressor.indexer.gate_proj",
                                          "self_attn.compressor.indexer.scorer.weights_proj"])):
        got = sum(total(m) for m in mods)
        if row == "csa_compressor":   # layer 1's compressor only (layer 2's is the HCA one)
            got = sum(sum(counts[k].values()) for k in counts
                      if k.endswith(("layers.1.self_attn.compressor.kv_proj",
                                     "layers.1.self_attn.compressor.gate_proj")))
        assert ops[row] == got, row
    hca = sum(sum(counts[k].values()) for k in counts
              if k.endswith(("layers.2.self_attn.compressor.kv_proj",
                             "layers.2.self_attn.compressor.gate_proj")))
    assert ops["hca_compressor"] == hca == 2 * B * T * 64 * 2 * 32


def test_builtin_sidecar_is_read():
    """Nemotron-3-Super-FP8 ships its ModelOpt hf_quant_config.json beside the built-in
    config: the weights are priced as released (FP8), not at 16 bits."""
    m = load_model("nemotron-3-super")
    assert m.native_quant is not None
