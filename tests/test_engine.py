"""Engine arithmetic checked against hand formulas and brute-force recomputation."""

from __future__ import annotations

import numpy as np
import pytest

import llmroofline as lr
from llmroofline.cost import Roofline
from llmroofline.graph import build_ops, causal_pairs, keys_touched
from llmroofline.parallel import expected_experts
from llmroofline.memory import kv_cache_bytes_per_seq
from llmroofline.specs.precision import Precision

LLAMA2_7B_PARAMS = 6_738_415_616  # published count of meta-llama/Llama-2-7b-hf (HF model card / transformers)


def brute_force_decode_total(model, hw, batch, input_len, output_len, eff, prec=Precision(),
                             flash=True):
    """Decode time summed step by step: build the graph at every KV length and add up."""
    m, h = lr.load_model(model), lr.load_hardware(hw)
    roof = Roofline.of(h, prec, None, eff)
    total = 0.0
    for t in range(2, output_len + 1):
        for o in build_ops(m, prec, batch, 1, input_len + t - 1, flash=flash):
            c, mem, comm, oh = (float(x) for x in roof.terms(o))
            # a GEMM hides only gemm_overlap of the shorter term under the longer one
            hidden = eff.gemm_overlap if o.kind == "matmul" else 1.0
            total += max(c, mem) + (1 - hidden) * min(c, mem) + comm + oh
        total += eff.step_overhead_s
    return total


# -- hand-worked example (docs/conventions.md, "Worked example") -------------------------
def test_llama2_7b_a100_decode_step_by_hand():
    a = lr.analyze("meta-llama/Llama-2-7b-hf", "a100-sxm-80gb", batch=1, input_len=128,
                   output_len=128, profile="ideal")
    assert a.params == LLAMA2_7B_PARAMS
    h, vocab = 4096, 32000
    # A decode step streams every weight once at 2 bytes, except the embedding table, of
    # which it reads one row per token.
    expected_weight_bytes = 2 * (LLAMA2_7B_PARAMS - vocab * h) + 2 * h
    step_weight_bytes = sum(float(o.weight_bytes) for o in a.decode.ops)
    assert step_weight_bytes == pytest.approx(expected_weight_bytes, rel=1e-12)
    assert step_weight_bytes == pytest.approx(13.2e9, rel=0.01)  # "about 13.5 GB" incl. embedding
    # KV read per step: 2 (K,V) x 32 layers x 32 heads x 128 dims x 2 bytes per cached token,
    # mean cached length (129 + 255) / 2 = 192 tokens, plus the one token written.
    kv_per_token = 2 * 32 * 32 * 128 * 2
    assert float(sum(o.kv_bytes for o in a.decode.ops)) == pytest.approx(kv_per_token * 193, rel=1e-12)
    # Memory-bound: time = bytes / 2039 GB/s, about 6.6 ms.
    assert float(a.tpot_s) == pytest.approx(float(a.decode.bytes) / 2039e9, rel=1e-6)
    assert 6.4e-3 < float(a.tpot_s) < 6.8e-3
    assert all(str(o.bound) == "memory" for o in a.decode.ops)


def test_throughput_and_latency_definitions():
    a = lr.analyze("llama-2-7b", "h100-sxm", batch=8, input_len=512, output_len=64)
    assert float(a.e2e_s) == pytest.approx(float(a.ttft_s + a.tpot_s * 63), rel=1e-12)
    assert float(a.throughput_tok_s) == pytest.approx(8 * 64 / float(a.e2e_s), rel=1e-12)
    one = lr.analyze("llama-2-7b", "h100-sxm", batch=8, input_len=512, output_len=1)
    assert np.isnan(one.tpot_s) and float(one.e2e_s) == float(one.ttft_s)


# -- the closed-form decode sum equals the step-by-step sum --------------------------------
@pytest.mark.parametrize("model,hw,batch,inp,out", [
    ("meta-llama/Llama-2-7b-hf", "a100-sxm-80gb", 1, 128, 64),
    ("meta-llama/Llama-2-7b-hf", "h20", 64, 1000, 40),          # attention crosses compute/memory
    ("mistralai/Mistral-7B-v0.1", "l40s", 4, 4070, 60),          # crosses the 4096 window
    ("google/gemma-2-9b", "h100-sxm", 2, 4090, 20),              # local + global layers
    ("openai/gpt-oss-20b", "h200", 32, 100, 60),                 # window 128 reached mid-decode
    ("mistralai/Mixtral-8x7B-v0.1", "a100-sxm-80gb", 16, 300, 30),
    ("deepseek-ai/DeepSeek-V2-Lite", "h100-sxm", 8, 200, 30),    # MLA, absorbed decode
])
def test_decode_sum_matches_brute_force(model, hw, batch, inp, out):
    # the calibrated default profile: efficiencies, launch and step overheads included
    a = lr.analyze(model, hw, batch=batch, input_len=inp, output_len=out)
    assert a.efficiency.step_overhead_s > 0 or a.efficiency.launch_overhead_s > 0
    # gpt-oss is priced as released (MXFP4 experts): the brute force uses the same precision
    expected = brute_force_decode_total(model, hw, batch, inp, out, a.efficiency, a.precision)
    assert float(a.decode.total_time_s) == pytest.approx(expected, rel=1e-9)


def test_decode_sum_with_launch_overhead_and_unfused_attention():
    hw = lr.load_hardware("h20").with_efficiency(bandwidth=0.8, compute=0.7, launch_overhead_s=4e-6)
    a = lr.analyze("openai-community/gpt2", hw, batch=512, input_len=300, output_len=50, flash=False)
    expected = brute_force_decode_total("openai-community/gpt2", hw, 512, 300, 50, hw.efficiency,
                                        flash=False)
    assert float(a.decode.total_time_s) == pytest.approx(expected, rel=1e-9)
    small = lr.analyze("openai-community/gpt2", hw, batch=1, input_len=16, output_len=8)
    assert {str(o.bound) for o in small.decode.ops if o.kind in ("norm", "elementwise")} == {"overhead"}


# -- vectorized grid equals per-point evaluation -------------------------------------------
def test_grid_equals_pointwise():
    batch = np.array([1, 7, 64])[:, None, None]
    inp = np.array([100, 3000])[None, :, None]
    out = np.array([2, 129])[None, None, :]
    g = lr.analyze("mistral-7b", "rtx-4090", batch, inp, out)
    assert g.ttft_s.shape == (3, 2, 2)
    for i, b in enumerate([1, 7, 64]):
        for j, n in enumerate([100, 3000]):
            for k, o in enumerate([2, 129]):
                p = lr.analyze("mistral-7b", "rtx-4090", b, n, o)
                assert g.throughput_tok_s[i, j, k] == pytest.approx(float(p.throughput_tok_s), rel=1e-12)
                assert g.memory.max_batch[i, j, k] == float(p.max_batch)


# -- attention pair counting ---------------------------------------------------------------
@pytest.mark.parametrize("q,kv,w", [(16, 16, np.inf), (16, 16, 5), (1, 40, 8), (7, 30, 12), (30, 30, 1)])
def test_causal_pairs_against_mask(q, kv, w):
    pos_q = np.arange(kv - q, kv)[:, None]
    pos_k = np.arange(kv)[None, :]
    mask = (pos_k <= pos_q) & (pos_q - pos_k < w)
    assert causal_pairs(q, kv, w) == mask.sum()
    assert keys_touched(q, kv, w) == mask.any(axis=0).sum()


def test_fused_prefill_attention_counts_half_the_square():
    m = lr.load_model("llama-2-7b")
    S = 1024
    fused = {o.name: o for o in build_ops(m, Precision(), 1, S, S, flash=True)}["attention"]
    # per layer, per head: QK^T and PV over S(S+1)/2 causal pairs, 2 FLOPs per MAC, d = 128
    assert float(fused.flops) == 32 * 32 * 2 * (S * (S + 1) / 2) * (128 + 128)


# -- MoE routing ----------------------------------------------------------------------------
@pytest.mark.parametrize("tokens,E,k", [(1, 8, 2), (4, 8, 2), (16, 64, 6), (3, 256, 8), (100, 128, 8)])
def test_expected_experts_monte_carlo(tokens, E, k):
    rng = np.random.default_rng(0)
    trials = 4000
    hits = np.empty(trials)
    for t in range(trials):
        chosen = np.argsort(rng.random((tokens, E)), axis=1)[:, :k]
        hits[t] = len(np.unique(chosen))
    assert expected_experts(tokens, E, k) == pytest.approx(hits.mean(), rel=0.01)


# -- memory ---------------------------------------------------------------------------------
def test_kv_cache_and_max_batch_by_hand():
    m = lr.load_model("meta-llama/Llama-2-70b-hf")
    # 80 layers x 2 (K,V) x 8 kv heads x 128 dims x 2 bytes = 327,680 bytes per token
    assert float(kv_cache_bytes_per_seq(m, Precision(), 1)) == 327_680
    a = lr.analyze(m, "h200", batch=4, input_len=1000, output_len=24)
    assert float(a.memory.kv_cache_bytes) == 4 * 1024 * 327_680
    per_seq = (float(a.memory.kv_cache_bytes) + float(a.memory.activation_bytes)) / 4
    assert float(a.max_batch) == np.floor((141e9 - a.memory.weights_bytes) / per_seq)
    assert a.memory.weights_bytes == pytest.approx(2 * a.params, rel=1e-12)


def test_sliding_window_bounds_cache():
    m = lr.load_model("mistralai/Mistral-7B-v0.1")
    per_token = 2 * 32 * 8 * 128 * 2
    assert float(kv_cache_bytes_per_seq(m, Precision(), 10_000)) == 4096 * per_token
    g = lr.load_model("google/gemma-2-9b")
    # 21 local layers (window 4096) + 21 global layers, 8 kv heads x 256 dims
    assert float(kv_cache_bytes_per_seq(g, Precision(), 8000)) == (21 * 4096 + 21 * 8000) * 2 * 8 * 256 * 2


def test_quantized_weights_memory():
    a16 = lr.analyze("llama-2-13b", "l40s", profile="ideal")
    a4 = lr.analyze("llama-2-13b", "l40s", wbits=4, profile="ideal")
    g = lr.specs.model.param_groups(a16.model)
    assert a4.memory.weights_bytes == g["linear"] * 0.5 + (g["small"] + g["embedding"] + g["lm_head"]) * 2
    assert float(a4.tpot_s) < 0.4 * float(a16.tpot_s)


# -- bounds follow the physics ----------------------------------------------------------------
def test_prefill_projections_compute_bound_decode_memory_bound():
    a = lr.analyze("llama-2-7b", "a100-sxm-80gb", batch=1, input_len=2048, output_len=16,
                   profile="ideal")
    proj = [o for o in a.prefill.ops if o.kind == "matmul" and o.name != "lm_head"]
    assert all(str(o.bound) == "compute" for o in proj)
    ridge = 312e12 / 2039e9      # A100 SXM 80GB datasheet: dense BF16 FLOP/s over bytes/s
    assert all(float(o.intensity) > ridge for o in proj)
    assert all(str(o.bound) == "memory" for o in a.decode.ops if o.kind == "matmul")


def test_fp8_uses_fp8_peak_and_falls_back_with_warning():
    h100 = lr.analyze("llama-2-7b", "h100-sxm", batch=1, input_len=4094, output_len=2, wbits=8,
                      abits=8, profile="ideal")
    qkv = next(o for o in h100.prefill.ops if o.name == "qkv_proj")
    assert float(qkv.compute_s) == pytest.approx(float(qkv.flops) / 1978.9e12, rel=1e-12)
    a100 = lr.analyze("llama-2-7b", "a100-sxm-80gb", wbits=8, abits=8)
    # A100 runs W8A8 on its INT8 tensor cores, and says so (docs/hardware.md)
    assert len(a100.warnings) == 1 and "no fp8 tensor units" in a100.warnings[0]
    assert "int8 peak" in a100.warnings[0]
    qkv = next(o for o in a100.prefill.ops if o.name == "qkv_proj")
    assert float(qkv.flops) / float(qkv.compute_s) <= 624e12 * 1.0000001   # A100 INT8 dense
    v100 = lr.analyze("llama-2-7b", "v100-sxm2-32gb", wbits=8, abits=8)
    assert v100.warnings and "fp8" in v100.warnings[0]


# -- efficiency terms with a shape: GEMM overlap, GQA KV re-reads (hand formulas) ----------
def test_gemm_overlap_adds_the_unhidden_share_of_the_shorter_term():
    from llmroofline.specs.profile import Efficiency, Profile
    prof = Profile("t", fallback=Efficiency(gemm_overlap=0.25))
    a = lr.analyze("meta-llama/Llama-2-7b-hf", "a100-sxm-80gb", batch=1, input_len=128,
                   output_len=1, profile=prof)
    row = next(o for o in a.prefill.ops if o.name == "qkv_proj")
    layers, h, n = 32, 4096, 128
    compute_s = 2 * n * h * 3 * h * layers / 312e12
    memory_s = (h * 3 * h * 2 + n * (h + 3 * h) * 2) * layers / 2039e9
    assert float(row.compute_s) == pytest.approx(compute_s, rel=1e-12)
    assert float(row.memory_s) == pytest.approx(memory_s, rel=1e-12)
    # 128 rows on an A100 sit near the ridge: both terms ~5 ms, only a quarter overlaps
    assert float(row.time_s) == pytest.approx(max(compute_s, memory_s)
                                              + 0.75 * min(compute_s, memory_s), rel=1e-12)
    norm = next(o for o in a.prefill.ops if o.name == "attn_norm")   # not a GEMM: plain roofline
    assert float(norm.time_s) == pytest.approx(max(float(norm.compute_s), float(norm.memory_s)),
                                               rel=1e-12)


@pytest.mark.parametrize("m, n, sms, expected", [
    (128, 4096, 108, 32 / 108),          # one row of 32 tiles: 76 of 108 SMs idle
    (1, 4096, 108, 32 / 108),            # decode: a 16-row tile, still one row of tiles
    (2048, 4096, 108, 512 / 540),        # 16 x 32 tiles = 4.74 waves -> 5
    (300, 4096, 108, 96 / 108),          # ceil(300 / 128) = 3 rows of tiles
    (256, 128 * 66, 132, 1.0),           # 2 x 66 tiles: exactly one H100 wave
    (129, 128 * 132, 132, 264 / 264),    # 2 x 132 tiles: two full waves
    (133, 129, 132, 4 / 132),            # ceil(133/128) x ceil(129/128) = 2 x 2 tiles
])
def test_wave_efficiency_by_hand(m, n, sms, expected):
    from llmroofline.cost import wave_efficiency
    assert float(wave_efficiency(m, n, sms)) == pytest.approx(expected, rel=1e-12)


def test_wave_quantization_slows_a_short_prefill_gemm_by_its_idle_sms():
    from llmroofline.specs.profile import Efficiency, Profile
    w = 0.5
    prof = Profile("t", fallback=Efficiency(wave_quantization=w))
    a = lr.analyze("meta-llama/Llama-2-7b-hf", "a100-sxm-80gb", batch=1, input_len=128,
                   output_len=1, profile=prof)
    ops = {o.name: o for o in a.prefill.ops}
    layers, h, f, n = 32, 4096, 11008, 128
    # o_proj: N = 4096 -> 32 tiles on 108 SMs; gate_up: N = 22016 -> 172 tiles, 2 waves
    o_eff = 1 - w * (1 - 32 / 108)
    gu_eff = 1 - w * (1 - 172 / 216)
    assert float(ops["o_proj"].compute_s) == pytest.approx(
        2 * n * h * h * layers / (312e12 * o_eff), rel=1e-12)
    assert float(ops["gate_up_proj"].compute_s) == pytest.approx(
        2 * n * h * 2 * f * layers / (312e12 * gu_eff), rel=1e-12)
    # weight streaming is untouched: only the math waits for idle SMs
    ideal = {o.name: o for o in lr.analyze("meta-llama/Llama-2-7b-hf", "a100-sxm-80gb", batch=1,
                                           input_len=128, output_len=1,
                                           profile="ideal").prefill.ops}
    assert float(ops["o_proj"].memory_s) == pytest.approx(float(ideal["o_proj"].memory_s),
                                                          rel=1e-12)


def test_gemm_cols_are_the_output_width_per_rank():
    m = lr.load_model("meta-llama/Llama-2-70b-hf")       # 64 heads, 8 KV heads, d 128
    from llmroofline.parallel import Layout
    ops = {o.name: o for o in build_ops(m, Precision(), 1, 1, 1, layout=Layout(tp=4))}
    assert float(ops["qkv_proj"].cols) == (64 + 2 * 8) * 128 / 4
    assert float(ops["o_proj"].cols) == 8192
    assert float(ops["gate_up_proj"].cols) == 2 * 28672 / 4
    assert float(ops["down_proj"].cols) == 8192


def test_gqa_kv_reuse_prices_rereads_of_shared_kv_heads():
    from llmroofline.specs.profile import Efficiency, Profile
    B, L = 4, 1001            # first decode step after a 1000-token prompt attends to 1001 keys
    per_token = 2 * 8 * 128 * 2 * 32   # K and V, 8 KV heads x 128 dims, 2 bytes, 32 layers
    read, write = B * L * per_token, B * per_token
    group = 32 // 8           # Llama-3-8B: 32 query heads share 8 KV heads
    for reuse in (1.0, 0.25, 0.0):
        prof = Profile("t", fallback=Efficiency(gqa_kv_reuse=reuse))
        a = lr.analyze("meta-llama/Meta-Llama-3-8B", "a100-sxm-80gb", batch=B, input_len=1000,
                       output_len=2, profile=prof)
        att = next(o for o in a.decode.ops if o.kind == "attention")
        assert float(att.kv_bytes) == read + write     # reported traffic: each KV head once
        q_and_out = B * 2 * 32 * 128 * 2 * 32
        expected = (q_and_out + read + write + (1 - reuse) * (group - 1) * read) / 2039e9
        assert float(att.memory_s) == pytest.approx(expected, rel=1e-12)
    # multi-head attention has nothing to re-read
    prof = Profile("t", fallback=Efficiency(gqa_kv_reuse=0.0))
    mha = lr.analyze("meta-llama/Llama-2-7b-hf", "a100-sxm-80gb", batch=B, input_len=1000,
                     output_len=2, profile=prof)
    ideal = lr.analyze("meta-llama/Llama-2-7b-hf", "a100-sxm-80gb", batch=B, input_len=1000,
                       output_len=2, profile="ideal")
    assert float(mha.tpot_s) == float(ideal.tpot_s)


def test_gqa_groups_beyond_the_kernel_limit_get_no_reuse():
    """Falcon-180B: 232 query heads share 8 KV heads (group 29); at TP 8 each rank holds 29
    query heads and one KV head, so the group stays 29. Llama-3-8B's group is 4."""
    from llmroofline.parallel import Layout
    from llmroofline.specs.profile import Efficiency, Profile
    B, L = 2, 513
    cases = (("tiiuae/falcon-180B", 8, 29, 1 * 64, 80), ("meta-llama/Meta-Llama-3-8B", 1, 4, 8 * 128, 32))
    for model, tp, group, kv_width, layers in cases:
        read = B * L * 2 * kv_width * 2 * layers           # K and V, 16-bit, all layers
        times = {}
        for max_group in (16, 64):
            prof = Profile("t", fallback=Efficiency(gqa_kv_reuse=0.75, gqa_max_group=max_group))
            a = lr.analyze(model, "h100-sxm", batch=B, input_len=512, output_len=2, profile=prof,
                           layout=Layout(tp=tp))
            att = next(o for o in a.decode.ops if o.kind == "attention")
            times[max_group] = float(att.memory_s)
        covered = group <= 16
        # extra reads beyond the one pass: (group - 1) x read x (1 - reuse), reuse 0.75 or 0
        extra_16 = (group - 1) * read * (0.25 if covered else 1.0)
        extra_64 = (group - 1) * read * 0.25
        assert times[16] - times[64] == pytest.approx((extra_16 - extra_64) / 3350e9, rel=1e-9)
        assert (times[16] > times[64]) == (not covered)
    with pytest.raises(lr.InputError, match="gqa_max_group"):
        Efficiency(gqa_max_group=0.5)


def test_sliding_window_layers_outside_the_kernel_coverage_get_no_reuse():
    """Mistral-7B-v0.1: every layer has a 4096-token window, 32 query heads share 8 KV
    heads (group 4). A kernel that does not serve sliding-window layers re-reads each KV
    head per query head there; Llama-3-8B (same group, no window) keeps its reuse."""
    from llmroofline.specs.profile import Efficiency, Profile
    B, L = 2, 513                       # first decode step after a 512-token prompt
    read = B * L * 2 * 8 * 128 * 2 * 32     # K and V, 8 KV heads x 128, 16-bit, 32 layers
    for model, windowed in (("mistralai/Mistral-7B-v0.1", True),
                            ("meta-llama/Meta-Llama-3-8B", False)):
        times = {}
        for covers in (True, False):
            prof = Profile("t", fallback=Efficiency(gqa_kv_reuse=0.75,
                                                    gqa_covers_sliding_window=covers))
            a = lr.analyze(model, "h100-sxm", batch=B, input_len=512, output_len=2,
                           profile=prof)
            att = next(o for o in a.decode.ops if o.kind == "attention")
            times[covers] = float(att.memory_s)
        # uncovered: (group - 1) x read x 1 extra instead of x (1 - 0.75)
        extra = 3 * read * (1.0 - 0.25) / 3350e9 if windowed else 0.0
        assert times[False] - times[True] == pytest.approx(extra, rel=1e-9, abs=1e-15)


def test_analyze_says_when_a_layer_is_outside_the_kernel_coverage():
    """The shipped Hopper FP8 entry covers full-attention layers of groups up to 16: Mistral
    (sliding window) and Falcon-180B at TP 8 (group 29) get a note, Llama-3.1-8B none,
    and a profile covering everything silences it."""
    from llmroofline.parallel import Layout
    from llmroofline.specs.profile import Efficiency, Profile

    def notes(model, tp=1, profile="default"):
        a = lr.analyze(model, "h100-sxm", 8, 1024, 16, quant="fp8", layout=Layout(tp=tp),
                       profile=profile)
        return [w for w in a.warnings if "KV-sharing" in w]
    assert len(notes("mistral-7b")) == 1 and "sliding-window" in notes("mistral-7b")[0]
    assert "group of 29" in notes("falcon-180b", tp=8)[0]
    assert notes("llama-3.1-8b") == []
    assert notes("mistral-7b", profile=Profile("all", fallback=Efficiency(gqa_kv_reuse=0.9))) == []


def test_one_token_prompt_pays_no_prefill_overhead():
    from llmroofline.specs.profile import Efficiency, Profile
    prof = Profile("t", fallback=Efficiency(step_overhead_s=1e-3, prefill_overhead_s=5e-3))
    base = Profile("t0", fallback=Efficiency())
    for n, extra in ((1, 1e-3), (2, 6e-3)):
        with_oh = lr.analyze("llama-2-7b", "a100-sxm-80gb", input_len=n, output_len=1, profile=prof)
        plain = lr.analyze("llama-2-7b", "a100-sxm-80gb", input_len=n, output_len=1, profile=base)
        assert float(with_oh.ttft_s - plain.ttft_s) == pytest.approx(extra, rel=1e-9)


def test_cuda_graphs_shrink_decode_launches_only():
    from llmroofline.specs.engine import load_engine
    from llmroofline.specs.profile import Efficiency, Profile
    CUDA_GRAPH_LAUNCH_FACTOR = 0.2      # data/engines/default.toml [runtime]
    assert load_engine("default").cuda_graph_launch_factor == CUDA_GRAPH_LAUNCH_FACTOR
    prof = Profile("t", fallback=Efficiency(launch_overhead_s=10e-6))
    eager = lr.analyze("llama-2-7b", "a100-sxm-80gb", batch=4, input_len=256, output_len=64,
                       profile=prof)
    graphs = lr.analyze("llama-2-7b", "a100-sxm-80gb", batch=4, input_len=256, output_len=64,
                        profile=prof, cuda_graphs=True)
    assert float(graphs.ttft_s) == float(eager.ttft_s)          # prefill runs eagerly
    qkv = next(o for o in graphs.decode.ops if o.name == "qkv_proj")
    assert float(qkv.overhead_s) == pytest.approx(32 * 10e-6 * CUDA_GRAPH_LAUNCH_FACTOR, rel=1e-12)
    kernels = sum(o.count for o in eager.decode.ops)
    saved = kernels * 10e-6 * (1 - CUDA_GRAPH_LAUNCH_FACTOR)
    assert float(eager.tpot_s - graphs.tpot_s) == pytest.approx(saved, rel=1e-9)


def test_chunked_prefill_matches_the_simulator_and_conserves_work():
    """analyze's chunked prefill against the serving simulator's chunking of one request
    (two separate implementations), and the bookkeeping a chunked prefill must satisfy."""
    from llmroofline.serving import IterationCost, SchedulerConfig, simulate
    from llmroofline.serving.workload import Workload
    for model, hw, I, C in (("llama-3.1-8b", "h100-sxm", 10000, 2048),
                            ("gemma-2-9b", "a100-sxm-80gb", 9000, 2048)):   # sliding windows
        a = lr.analyze(model, hw, 1, I, 2, prefill_chunk=C)
        cost = IterationCost.of(model, hw, max_tokens=C, max_batch=8)
        one = Workload(np.zeros(1), np.full(1, I), np.full(1, 2), "offline")
        r = simulate(workload=one, config=SchedulerConfig(max_batch=8, max_tokens=C), cost=cost)
        assert float(a.ttft_s) == pytest.approx(float(r.ttft_s[0]), rel=1e-9)
    whole = lr.analyze("llama-3.1-8b", "h100-sxm", 2, 10000, 2)
    parts = lr.analyze("llama-3.1-8b", "h100-sxm", 2, 10000, 2, prefill_chunk=2048)
    n = 5                                          # ceil(10000 / 2048) forward steps
    row = {o.name: o for o in parts.prefill.ops}
    base = {o.name: o for o in whole.prefill.ops}
    assert float(row["qkv_proj"].weight_bytes) == pytest.approx(n * float(base["qkv_proj"].weight_bytes))
    assert float(row["attention"].flops) == pytest.approx(float(base["attention"].flops), rel=1e-12)
    # activations: the residual stream of one chunk, not of the prompt
    h, ab = 4096, 2
    drop = 2 * (10000 - 2048) * h * ab
    assert float(whole.memory.activation_bytes - parts.memory.activation_bytes) >= drop
    assert float(parts.memory.kv_cache_bytes) == float(whole.memory.kv_cache_bytes)
