"""Parallel layouts, collectives, quantization schemes and offloading, by hand formulas."""

from __future__ import annotations

import numpy as np
import pytest

import llmroofline as lr
from llmroofline.cost import Link, collective_time
from llmroofline.errors import InputError
from llmroofline.graph import build_ops
from llmroofline.memory import weight_bytes_total
from llmroofline.parallel import Layout, expert_load_imbalance
from llmroofline.specs.model import param_groups
from llmroofline.specs.precision import Precision, parse_quant


def test_tp_weight_bytes_are_total_over_n_plus_replicated_parts():
    m = lr.load_model("meta-llama/Llama-2-70b-hf")
    full = param_groups(m)
    h, L = 8192, 80
    # Replicated on every rank: two RMSNorm weights per layer and the final norm.
    replicated = 2 * L * h + h
    assert full["small"] == replicated          # Llama has no biases
    for tp in (2, 4, 8):
        per_device = weight_bytes_total(m, Precision(), Layout(tp=tp))
        sharded = full["linear"] + full["embedding"] + full["lm_head"]
        assert per_device == 2 * (sharded / tp + replicated)


def test_tp_replicates_kv_heads_when_fewer_than_devices():
    m = lr.load_model("tiiuae/falcon-40b")          # 128 heads, 8 kv heads
    ops = {o.name: o for o in build_ops(m, Precision(), 1, 1, 10, layout=Layout(tp=16))}
    d, h = 64, 8192
    # 128/16 = 8 query heads per rank, one KV head each (8 KV heads replicated over 16 ranks)
    assert float(ops["qkv_proj"].weight_bytes) == 60 * 2 * h * (8 * d + 2 * 1 * d)


def test_allreduce_bytes_per_layer_by_hand():
    m = lr.load_model("llama-2-13b")
    B, T = 4, 512
    ops = {o.name: o for o in build_ops(m, Precision(), B, T, T, layout=Layout(tp=4))}
    # One all-reduce of B x T x hidden fp16 activations after attention and after the MLP.
    per_layer = B * T * 5120 * 2
    assert float(ops["attn_allreduce"].comm_bytes) == 40 * per_layer
    assert float(ops["mlp_allreduce"].comm_bytes) == 40 * per_layer
    assert ops["attn_allreduce"].collective == "allreduce" and ops["attn_allreduce"].group == 4
    # Parallel blocks (GPT-J) sum attention and MLP partials before one all-reduce per layer.
    g = {o.name: o for o in build_ops(lr.load_model("EleutherAI/gpt-j-6b"), Precision(), B, T, T,
                                      layout=Layout(tp=4))}
    assert "attn_allreduce" not in g and float(g["allreduce"].comm_bytes) == 28 * B * T * 4096 * 2


def test_collective_formulas():
    link = Link(bytes_s=100e9, latency_s=2e-6, all_to_all=True)
    S = 64e6
    ring = collective_time("allreduce", S, 8, link, "ring")
    assert ring == pytest.approx(2 * 7 * 2e-6 + 2 * 7 / 8 * S / 100e9)
    assert collective_time("allreduce", S, 8, link, "oneshot") == pytest.approx(2e-6 + 7 * S / 100e9)
    # auto on a switched node: one-shot for tiny messages, two-shot for large ones
    small = collective_time("allreduce", 16e3, 8, link)
    assert small == pytest.approx(2e-6 + 7 * 16e3 / 100e9)
    assert collective_time("allreduce", S, 8, link) == pytest.approx(2 * 2e-6 + 2 * 7 / 8 * S / 100e9)
    assert collective_time("allreduce", S, 1, link) == 0


def test_tp8_70b_decode_is_partly_communication_bound():
    kw = dict(batch=1, input_len=512, output_len=64, profile="ideal")
    a1 = lr.analyze("meta-llama/Llama-2-70b-hf", "h100-sxm", **kw)
    a8 = lr.analyze("meta-llama/Llama-2-70b-hf", "h100-sxm", tp=8, **kw)
    comm = [o for o in a8.decode.ops if o.kind == "communication"]
    assert comm and all(str(o.bound) == "communication" for o in comm)
    speedup = float(a1.tpot_s / a8.tpot_s)
    assert 1 < speedup < 8
    # NVLink (H100) loses less to communication than PCIe (L40S)
    l1 = lr.analyze("meta-llama/Llama-2-70b-hf", "l40s", **kw)
    l8 = lr.analyze("meta-llama/Llama-2-70b-hf", "l40s", tp=8, **kw)
    assert float(l1.tpot_s / l8.tpot_s) < speedup


def test_pipeline_static_batch_schedule():
    m = "meta-llama/Llama-2-13b-hf"
    one = lr.analyze(m, "a100-sxm-80gb", batch=8, input_len=256, output_len=32)
    pp1mb = lr.analyze(m, "a100-sxm-80gb", batch=8, input_len=256, output_len=32,
                       layout=Layout(pp=4, microbatches=1))
    # One micro-batch: stages run one after another; only the p2p transfers are added.
    assert float(pp1mb.ttft_s) > float(one.ttft_s)
    assert float(pp1mb.ttft_s) == pytest.approx(float(one.ttft_s), rel=0.02)
    # Memory per device: about a quarter of the weights
    assert pp1mb.memory.weights_bytes < 0.3 * one.memory.weights_bytes
    # Throughput with micro-batches fills the pipeline in prefill: (m + M - 1) slots of 1/M
    pp = lr.analyze(m, "a100-sxm-80gb", batch=8, input_len=256, output_len=32, pp=4)
    assert float(pp.ttft_s) < float(one.ttft_s)


def test_data_parallel_scales_throughput_not_latency():
    a = lr.analyze("llama-2-7b", "l4", batch=4, input_len=256, output_len=64)
    b = lr.analyze("llama-2-7b", "l4", batch=4, input_len=256, output_len=64, dp=3)
    assert float(b.tpot_s) == float(a.tpot_s)
    assert float(b.throughput_tok_s) == pytest.approx(3 * float(a.throughput_tok_s))


def test_expert_parallel_all_to_all_and_imbalance():
    m = lr.load_model("mistralai/Mixtral-8x7B-v0.1")
    N = 64
    ops = {o.name: o for o in build_ops(m, Precision(), N, 1, 100, layout=Layout(tp=4, ep=4))}
    # dispatch: each rank sends its N/ep tokens' top-2 copies of the hidden state
    assert float(ops["moe_dispatch"].comm_bytes) == 32 * N / 4 * 2 * 4096 * 2
    imb = float(expert_load_imbalance(N, 2, 4))
    assert 1 < imb < 4
    assert float(ops["experts_down"].flops) == pytest.approx(32 * 2 * (N * 2 / 4 * imb) * 14336 * 4096)
    # Monte-Carlo of the max load over 4 devices under uniform routing of 128 pairs
    rng = np.random.default_rng(1)
    loads = rng.multinomial(N * 2, [0.25] * 4, size=20000).max(axis=1).mean()
    assert imb == pytest.approx(loads / (N * 2 / 4), rel=0.05)


@pytest.mark.parametrize("kw,msg", [
    (dict(tp=3), "does not divide num_attention_heads"),
    (dict(pp=100), "only 80 layers"),
    (dict(ep=2, tp=2), "not a mixture-of-experts"),
    (dict(tp=4, ep=3), "must divide tp"),
    (dict(tp=0), "tp must be an integer"),
])
def test_impossible_layouts(kw, msg):
    with pytest.raises(InputError, match=msg):
        lr.analyze("meta-llama/Llama-2-70b-hf", "h100-sxm", **kw)


def test_quant_schemes_and_group_scales():
    p = parse_quant("w4a16")
    # AWQ/GPTQ group 128: 4-bit weights + (16-bit scale + 4-bit zero) per 128 weights
    assert p.weight_bytes == 0.5 + 20 / 8 / 128
    assert parse_quant("fp8").label == "W8A8KV8"
    assert parse_quant("w4a16,kv-int8").kvbits == 8
    assert parse_quant("fp8", kvbits=16).kvbits == 16
    with pytest.raises(InputError, match="did you mean: fp8"):
        parse_quant("fp9")
    a = lr.analyze("llama-2-7b", "a100-sxm-80gb", quant="int8-sq")
    assert a.warnings == () and str(a.precision.int8) == "True"


def test_offloading_streams_weights_over_the_host_link():
    hw = lr.load_hardware("rtx-4090")
    base = lr.analyze("llama-2-13b", hw, batch=1, input_len=128, output_len=16, profile="ideal")
    off = lr.analyze("llama-2-13b", hw, batch=1, input_len=128, output_len=16,
                     layout=Layout(offload_weights=0.5), profile="ideal")
    step_w = sum(float(o.weight_bytes) for o in off.decode.ops)
    host_bw = hw.pcie_bytes_s_bidir / 2
    extra = 0.5 * step_w / host_bw - 0.5 * step_w / hw.mem_bw_bytes_s
    assert float(off.tpot_s) == pytest.approx(float(base.tpot_s) + extra, rel=1e-9)
    assert off.memory.weights_bytes == pytest.approx(0.5 * base.memory.weights_bytes)
    assert not bool(base.memory.fits) and bool(off.memory.fits)


def test_busiest_device_expert_weights_monte_carlo():
    from llmroofline.parallel import experts_hit_on_busiest_device
    rng = np.random.default_rng(2)
    E, k, ep = 8, 2, 4
    for tokens in (1, 4, 32):
        maxima = []
        for _ in range(4000):
            hit = set()
            for _t in range(tokens):
                hit.update(rng.choice(E, size=k, replace=False).tolist())
            per_dev = np.bincount([x // (E // ep) for x in hit], minlength=ep)
            maxima.append(per_dev.max())
        assert float(experts_hit_on_busiest_device(tokens, E, k, ep)) == pytest.approx(
            np.mean(maxima), rel=0.1), tokens


def test_groups_beyond_one_node_use_the_network():
    # TP 16 over 2 nodes of 8: each all-reduce crosses the per-GPU network link
    # (default 50 GB/s per direction, 10 us per hop) instead of NVLink (450 GB/s, 2 us).
    m, B = "meta-llama/Llama-2-70b-hf", 4
    intra = lr.analyze(m, "h100-sxm", batch=B, input_len=256, output_len=2, profile="ideal",
                       layout=Layout(tp=16, gpus_per_node=16))
    inter = lr.analyze(m, "h100-sxm", batch=B, input_len=256, output_len=2, profile="ideal",
                       layout=Layout(tp=16, gpus_per_node=8))
    S = B * 256 * 8192 * 2                      # one prefill all-reduce message, bytes
    n = 16
    ring = 2 * (n - 1) * 10e-6 + 2 * (n - 1) / n * S / 50e9
    tree = 2 * np.log2(n) * 10e-6 + 2 * S / 50e9
    row = next(o for o in inter.prefill.ops if o.name == "attn_allreduce")
    assert float(row.comm_s) == pytest.approx(80 * min(ring, tree), rel=1e-9)
    one = 2e-6 + (n - 1) * S / 450e9
    two = 2 * 2e-6 + 2 * (n - 1) / n * S / 450e9
    row = next(o for o in intra.prefill.ops if o.name == "attn_allreduce")
    assert float(row.comm_s) == pytest.approx(80 * min(one, two), rel=1e-9)
