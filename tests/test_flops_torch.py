"""Matmul FLOPs of the engine checked against PyTorch's ``FlopCounterMode`` on real forwards.

For one tiny random-weight model per architecture family (``transformers`` eager
attention, float32, CPU) the reference numbers are counted by PyTorch while the model
runs: ``torch.utils.flop_counter.FlopCounterMode`` counts ``aten.mm / addmm / bmm``
(2 FLOPs per multiply-add), i.e. every projection, the unfused attention matmuls
``QK^T`` and ``PV``, the MoE router and expert matmuls, and ``lm_head``. It does not count
elementwise work, so the engine's ``norm`` / ``elementwise`` / ``embedding`` rows are left
out and only rows of kind ``matmul`` and ``attention`` are summed.

- Prefill: batch ``B``, ``S`` tokens, ``logits_to_keep=1`` (the engine counts ``lm_head``
  for the last position of each sequence only) vs ``build_ops(.., B, S, S, flash=False)``.
- Decode: one new token per sequence on the ``past_key_values`` of that prefill vs
  ``build_ops(.., B, 1, S + 1, flash=False)``.
- Fused attention (``flash=True``) counts only the (query, key) pairs the causal /
  sliding-window mask keeps. Checked (1) by hand formula and (2) against the number of
  non-zero attention probabilities of the same real forwards (eager attention adds the
  mask as -inf-like logits, so masked probabilities are exactly 0.0, unmasked ones are not).

The comparisons are exact (integers). Differences between what ``transformers 5.23``
executes and what the engine models are documented next to the test and added to the
expected value by hand formula, never absorbed by a tolerance:

- MoE experts: transformers 5.23 runs experts with ``experts_implementation="grouped_mm"``
  by default on CPU, and ``torch.nn.functional.grouped_mm`` has no FLOP formula in
  torch 2.13's counter (it counts 0). The models are therefore built with
  ``experts_implementation="eager"``, the per-expert loop of ``F.linear`` over the tokens
  routed to that expert. That loop runs every (token, expert) pair once, so its FLOPs are
  ``2 x tokens x top_k x ...`` whatever the router picks: exact for ``top_k < E`` too
  (``mixtral_top2``). :func:`test_moe_grouped_mm_is_invisible_to_flop_counter` pins the
  counter's blind spot.
- MLA: transformers 5.23 DeepSeek-V2 caches the compressed latent (``kv_lora_rank``
  + ``qk_rope_head_dim`` per token) and re-runs ``kv_b_proj`` over *every* cached token at
  each step: the engine's up-projection path, ``build_ops(.., mla_absorb=False)``. Serving
  engines absorb W_UK/W_UV in decode instead (the engine's default), tested by formula.
- Rotary embeddings: transformers 5.23 builds ``cos/sin`` with a broadcast multiply
  (``position_ids[..., None] * inv_freq``), not the ``inv_freq @ position_ids`` matmul of
  transformers 4.x, so there is no rotary matmul to add (the exact totals prove it).
- Sliding window beyond the window (``mistral_beyond_window``, ``gemma2``): eager prefill
  still multiplies the full S x S score block and masks afterwards (engine unfused:
  ``min(L, T + W - 1) = S`` keys); in decode, transformers' sliding-window cache layer keeps
  the last ``W - 1`` tokens, so the new token scores ``W`` keys (engine: ``min(L, W)``).
  Both are exact.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

from llmroofline import Precision, from_hf_config  # noqa: E402
from llmroofline.graph import build_ops, causal_pairs  # noqa: E402

B = 2                                   # sequences per batch
MATMUL_KINDS = ("matmul", "attention")  # rows PyTorch's counter sees
# Engine rows of the attention block (everything else but lm_head is the MLP / MoE block).
ATTN_ROWS = re.compile(r"^(qkv_proj|q_proj|q_a_proj|q_b_proj|kv_a_proj|kv_b_proj|attn_score"
                       r"|attn_av|attention|o_proj)( \((local|global)\))?$")
# Modules of transformers' attention block per family: llama-likes/opt/deepseek ``self_attn``,
# gpt2/gptj ``attn``, falcon ``self_attention``.
ATTN_MODULE = re.compile(r"\.(layers|h)\.\d+\.(self_attn|attn|self_attention)$")

_TINY = dict(hidden_size=64, num_attention_heads=4, num_hidden_layers=2, intermediate_size=96,
             vocab_size=128, max_position_embeddings=64)
_IDS = dict(bos_token_id=0, eos_token_id=1, pad_token_id=0)  # inside the tiny vocabularies
_MLA = dict(kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
            n_routed_experts=3, num_experts_per_tok=3, n_shared_experts=1,
            moe_intermediate_size=32, first_k_dense_replace=1, topk_method="greedy",
            n_group=1, topk_group=1)

# config.json-style keyword arguments (transformers builds the model from them, the engine
# parses the same dict) and the prefill length S.
FAMILIES: dict[str, tuple[dict, int]] = {
    "llama_mha": (dict(model_type="llama", **_TINY, num_key_value_heads=4), 8),
    "llama_gqa": (dict(model_type="llama", hidden_size=96, num_attention_heads=6,
                       num_key_value_heads=2, num_hidden_layers=3, intermediate_size=160,
                       vocab_size=200, max_position_embeddings=64), 11),
    # S < W: the window never bites.
    "mistral_in_window": (dict(model_type="mistral", **_TINY, num_key_value_heads=2,
                               sliding_window=16), 13),
    # S > W: see the module docstring (eager prefill scores all S keys, decode W keys).
    "mistral_beyond_window": (dict(model_type="mistral", **_TINY, num_key_value_heads=2,
                                   sliding_window=5), 12),
    # Every token goes to every expert.
    "mixtral_all_experts": (dict(model_type="mixtral", **_TINY, num_key_value_heads=2,
                                 num_local_experts=3, num_experts_per_tok=3), 9),
    # top-2 of 4: the routing is data-dependent, the FLOPs of the eager expert loop are not.
    "mixtral_top2": (dict(model_type="mixtral", **{**_TINY, "vocab_size": 300},
                          num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2), 16),
    # Routed experts + shared expert + its sigmoid gate (a Linear(hidden, 1)).
    "qwen2_moe": (dict(model_type="qwen2_moe", **_TINY, num_key_value_heads=2, num_experts=4,
                       num_experts_per_tok=4, moe_intermediate_size=32,
                       shared_expert_intermediate_size=48), 10),
    "qwen3_moe": (dict(model_type="qwen3_moe", **_TINY, num_key_value_heads=2, head_dim=32,
                       num_experts=3, num_experts_per_tok=3, moe_intermediate_size=32), 9),
    # Parallel block, partial rotary, biases on the MLP and lm_head.
    "gptj": (dict(model_type="gptj", n_embd=64, n_head=4, n_layer=2, vocab_size=128,
                  n_positions=64, rotary_dim=8, **_IDS), 12),
    # falcon-7b style: parallel block, multi-query (1 KV head), one LayerNorm.
    "falcon_mqa": (dict(model_type="falcon", hidden_size=64, num_attention_heads=4,
                        num_hidden_layers=2, vocab_size=128, multi_query=True,
                        parallel_attn=True, new_decoder_architecture=False, bias=False,
                        alibi=False, **_IDS), 10),
    # falcon-40b style: grouped KV heads, two LayerNorms.
    "falcon_new_arch": (dict(model_type="falcon", hidden_size=64, num_attention_heads=4,
                             num_kv_heads=2, num_hidden_layers=2, vocab_size=128,
                             new_decoder_architecture=True, parallel_attn=True, bias=False,
                             alibi=False, **_IDS), 8),
    "gpt2": (dict(model_type="gpt2", n_embd=64, n_head=4, n_layer=2, vocab_size=128,
                  n_positions=64, **_IDS), 14),
    "opt": (dict(model_type="opt", hidden_size=64, num_attention_heads=4, num_hidden_layers=2,
                 ffn_dim=96, vocab_size=128, max_position_embeddings=64,
                 word_embed_proj_dim=64, **_IDS), 9),
    "qwen2": (dict(model_type="qwen2", **_TINY, num_key_value_heads=2), 12),
    "qwen3": (dict(model_type="qwen3", **_TINY, num_key_value_heads=2, head_dim=32), 15),
    # Alternating local (window 6 < S) / global layers, head_dim != hidden / heads.
    "gemma2": (dict(model_type="gemma2", **{**_TINY, "num_hidden_layers": 3},
                    num_key_value_heads=2, head_dim=32, sliding_window=6, **_IDS), 12),
    "phi3": (dict(model_type="phi3", **_TINY, num_key_value_heads=2, **_IDS), 11),
    # MLA without a query LoRA; layer 0 dense, layers 1-2 MoE (3 experts, top-3) + shared.
    "deepseek_v2": (dict(model_type="deepseek_v2", **{**_TINY, "num_hidden_layers": 3},
                         q_lora_rank=None, **_MLA), 10),
    # MLA with a query LoRA (q_a_proj -> RMSNorm -> q_b_proj).
    "deepseek_v2_q_lora": (dict(model_type="deepseek_v2", **_TINY, q_lora_rank=24, **_MLA), 12),
}


# -- running the real forwards once per family ------------------------------------------
@dataclass(frozen=True)
class Count:
    total: int                   # FlopCounterMode total of the forward
    attention_block: int         # of which inside the layers' attention modules
    lm_head: int                 # of which inside ``lm_head``
    by_module: dict              # full per-module, per-op breakdown (for failure messages)
    nonzero_probs: tuple         # per layer: non-zero attention probabilities (B x heads x T x keys)


@dataclass(frozen=True)
class Run:
    spec: object
    S: int
    prefill: Count
    decode: Count


def _build(cfg: dict, **kw):
    hf_cfg = AutoConfig.for_model(cfg["model_type"],
                                  **{k: v for k, v in cfg.items() if k != "model_type"})
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_config(hf_cfg, attn_implementation="eager",
                                                 dtype=torch.float32, **kw)
    # The engine reads the same config.json keys transformers was built from. (The dict
    # transformers 5.23 serializes is not used: Qwen3MoeConfig.to_dict() renames
    # num_experts -> num_local_experts, which the engine's qwen3_moe parser does not read.)
    spec = from_hf_config({**hf_cfg.to_dict(), **cfg})
    return model.eval(), spec


def _count(model, **inputs) -> tuple[Count, object]:
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        out = model(**inputs, logits_to_keep=1, use_cache=True, output_attentions=True)
    by_module = {mod: {str(op): int(n) for op, n in ops.items()}
                 for mod, ops in fc.get_flop_counts().items()}
    attn = sum(sum(ops.values()) for mod, ops in by_module.items() if ATTN_MODULE.search(mod))
    head = sum(sum(ops.values()) for mod, ops in by_module.items() if mod.endswith(".lm_head"))
    nnz = tuple(int((a > 0).sum()) for a in out.attentions)
    return Count(int(fc.get_total_flops()), attn, head, by_module, nnz), out


@lru_cache(maxsize=None)
def run(family: str, experts_implementation: str = "eager") -> Run:
    cfg, S = FAMILIES[family]
    model, spec = _build(cfg, experts_implementation=experts_implementation)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, spec.vocab_size, (B, S), generator=gen)
    prefill, out = _count(model, input_ids=ids)
    new = torch.randint(0, spec.vocab_size, (B, 1), generator=gen)
    decode, _ = _count(model, input_ids=new, past_key_values=out.past_key_values)
    assert len(prefill.nonzero_probs) == spec.num_layers
    return Run(spec, S, prefill, decode)


# -- engine side ------------------------------------------------------------------------
def engine_rows(spec, q_len, kv_len, flash=False) -> dict[str, int]:
    """Matmul FLOPs per engine row for a batch of ``B``, as exact integers."""
    kw = {"mla_absorb": False} if spec.mla else {}
    rows = {}
    for o in build_ops(spec, Precision(), B, q_len, kv_len, flash=flash, **kw):
        if o.kind in MATMUL_KINDS:
            f = float(o.flops)
            assert f.is_integer(), (o.name, f)
            rows[o.name] = rows.get(o.name, 0) + int(f)
    return rows


def split(rows: dict[str, int]) -> tuple[int, int, int]:
    """(attention block, MLP/MoE block, lm_head) of an engine row dict."""
    attn = sum(v for k, v in rows.items() if ATTN_ROWS.match(k))
    head = rows["lm_head"]
    return attn, sum(rows.values()) - attn - head, head


def _check(count: Count, rows: dict[str, int], what: str, extra: int = 0) -> None:
    msg = f"{what}: torch per module {count.by_module}\nengine rows {rows}"
    # The whole forward: PyTorch's count == engine matmul rows (+ documented extra).
    assert count.total == sum(rows.values()) + extra, msg
    # And block by block, so that two errors cannot cancel out.
    attn, mlp, head = split(rows)
    assert count.lm_head == head, msg
    assert count.attention_block == attn + extra, msg
    assert count.total - count.attention_block - count.lm_head == mlp, msg


FAMILY_IDS = list(FAMILIES)


@pytest.mark.parametrize("family", FAMILY_IDS)
def test_prefill_matmul_flops_equal_torch(family):
    r = run(family)
    _check(r.prefill, engine_rows(r.spec, r.S, r.S), f"{family} prefill B={B} S={r.S}")


@pytest.mark.parametrize("family", FAMILY_IDS)
def test_decode_matmul_flops_equal_torch(family):
    r = run(family)
    _check(r.decode, engine_rows(r.spec, 1, r.S + 1), f"{family} decode B={B} cache={r.S}")


@pytest.mark.parametrize("family", FAMILY_IDS)
def test_fused_attention_flops_equal_unmasked_pairs_of_real_forward(family):
    """flash=True attention FLOPs == 2 x (d_qk + d_v) x (non-zero attention probabilities).

    The non-zero probabilities of the eager forward are exactly the (sequence, head, query,
    key) tuples the causal / sliding-window mask keeps (transformers' own mask semantics).
    """
    r = run(family)
    spec = r.spec
    if spec.mla:
        d = spec.mla.qk_head_dim + spec.mla.v_head_dim
    else:
        d = 2 * spec.head_dim
    for count, (T, L) in ((r.prefill, (r.S, r.S)), (r.decode, (1, r.S + 1))):
        rows = engine_rows(spec, T, L, flash=True)
        fused = sum(v for k, v in rows.items() if k.startswith("attention"))
        assert fused == 2 * d * sum(count.nonzero_probs), (family, T, L, count.nonzero_probs)
        # Everything else is the same as unfused.
        unfused = engine_rows(spec, T, L, flash=False)
        assert sum(rows.values()) - fused == sum(
            v for k, v in unfused.items() if not k.startswith("attn_"))


# -- fused attention by hand formula ----------------------------------------------------
def _pairs_brute_force(q_len: int, kv_len: int, window: int | None) -> int:
    """Query i (absolute position kv_len - q_len .. kv_len - 1) keeps min(i + 1, W) keys."""
    w = window or kv_len
    return sum(min(i + 1, w) for i in range(kv_len - q_len, kv_len))


@pytest.mark.parametrize("S,W", [(1, None), (8, None), (13, None), (16, None),
                                 (12, 5), (12, 12), (12, 11), (9, 1), (16, 6), (8, 16)])
def test_fused_prefill_attention_by_hand(S, W):
    """Prefill of S tokens, per head per layer per sequence: 2 x pairs x (d_qk + d_v), with
    pairs = S(S+1)/2 without a window and sum_i min(i+1, W) with one."""
    cfg = dict(model_type="mistral", hidden_size=96, num_attention_heads=6,
               num_key_value_heads=2, num_hidden_layers=3, intermediate_size=64,
               vocab_size=100, sliding_window=W)
    spec = from_hf_config(cfg)
    H, nl, d = 6, 3, 16
    pairs = S * (S + 1) // 2 if W is None or W >= S else sum(min(i + 1, W) for i in range(S))
    assert pairs == _pairs_brute_force(S, S, W)
    rows = engine_rows(spec, S, S, flash=True)
    assert rows["attention"] == nl * B * H * 2 * pairs * (d + d)
    assert float(causal_pairs(S, S, np.inf if W is None else W)) == pairs


@pytest.mark.parametrize("q_len,kv_len,W", [(1, 1, None), (1, 17, None), (1, 17, 5),
                                            (1, 5, 5), (4, 20, None), (4, 20, 6), (7, 9, 3)])
def test_fused_decode_and_chunked_prefill_attention_by_hand(q_len, kv_len, W):
    """Decode (q_len = 1) and chunked prefill: the new queries at the end of the block."""
    spec = from_hf_config(dict(model_type="llama", **_TINY, num_key_value_heads=2,
                               sliding_window=W, use_sliding_window=W is not None))
    assert spec.layer_windows == (W, W)
    rows = engine_rows(spec, q_len, kv_len, flash=True)
    pairs = _pairs_brute_force(q_len, kv_len, W)
    assert rows["attention"] == 2 * B * 4 * 2 * pairs * (16 + 16)


def test_fused_gemma2_local_and_global_layers_by_hand():
    """gemma2: layers 0 and 2 are sliding (W=6), layer 1 is global; S = 12."""
    r = run("gemma2")
    S, W, H, d = r.S, 6, 4, 32
    rows = engine_rows(r.spec, S, S, flash=True)
    local = sum(min(i + 1, W) for i in range(S))
    assert rows["attention (local)"] == 2 * B * H * 2 * local * (d + d)
    assert rows["attention (global)"] == 1 * B * H * 2 * (S * (S + 1) // 2) * (d + d)
    # Real forward: per-layer non-zero probabilities are B x H x pairs.
    assert r.prefill.nonzero_probs == (B * H * local, B * H * S * (S + 1) // 2, B * H * local)
    # Decode beyond the window: the cache of a local layer holds W - 1 tokens + the new one.
    assert r.decode.nonzero_probs == (B * H * W, B * H * (S + 1), B * H * W)


def test_fused_mla_prefill_by_hand():
    """MLA (mla_absorb=False): heads x pairs x 2 x (qk_nope + qk_rope + v)."""
    r = run("deepseek_v2")
    S = r.S
    rows = engine_rows(r.spec, S, S, flash=True)
    assert rows["attention"] == 3 * B * 4 * 2 * (S * (S + 1) // 2) * (16 + 8 + 16)


# -- documented differences, asserted on their own ---------------------------------------
def test_moe_grouped_mm_is_invisible_to_flop_counter():
    """transformers' default CPU expert path (grouped_mm) counts 0 FLOPs in torch 2.13.

    Why the models above are built with ``experts_implementation="eager"``: with the
    default, PyTorch's count is exactly the engine's total minus the routed-expert rows.
    """
    r = run("mixtral_all_experts", experts_implementation="grouped_mm")
    rows = engine_rows(r.spec, r.S, r.S)
    experts = rows["experts_gate_up"] + rows["experts_down"]
    assert experts > 0
    assert r.prefill.total == sum(rows.values()) - experts
    eager = run("mixtral_all_experts")
    assert eager.prefill.total - r.prefill.total == experts


def test_mla_decode_recomputes_kv_b_proj_over_the_latent_cache():
    """transformers 5.23 DeepSeek-V2 caches the latent and decompresses all of it per step.

    The cache holds kv_lora_rank + qk_rope_head_dim elements per token (not decompressed
    K/V), and the decode step's kv_b_proj FLOPs (PyTorch's count in the layers'
    ``kv_b_proj`` modules) cover all S + 1 tokens: the engine's prefill-style latent path.
    """
    for family in ("deepseek_v2", "deepseek_v2_q_lora"):
        r = run(family)
        a, H, nl = r.spec.mla, r.spec.num_heads, r.spec.num_layers
        kv_b = sum(sum(ops.values()) for mod, ops in r.decode.by_module.items()
                   if mod.endswith(".kv_b_proj"))
        assert kv_b == nl * 2 * B * (r.S + 1) * a.kv_lora_rank * H * (a.qk_nope_head_dim
                                                                       + a.v_head_dim)
        engine = engine_rows(r.spec, 1, r.S + 1)["kv_b_proj"]
        assert kv_b == engine
        # Prefill: the engine's default (latent cache, decompress every cached token) and
        # mla_absorb=False agree on FLOPs with each other and with PyTorch.
        default = [o for o in build_ops(r.spec, Precision(), B, r.S, r.S, flash=False)
                   if o.kind in MATMUL_KINDS]
        assert sum(float(o.flops) for o in default) == r.prefill.total
