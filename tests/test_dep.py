"""Attention data-parallel x expert-parallel ("DEP") layouts: sizes, bytes and errors.

Hand numbers use Qwen3-235B-A22B (config.json: hidden 4096, 64 query / 4 KV heads of 128,
94 layers, all MoE: 128 experts of intermediate 1536, top-8, no shared expert, no
group-limited routing), so a token sends top_k = 8 copies of its hidden state.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from llmroofline.cost import Roofline
from llmroofline.deployment import resolve
from llmroofline.errors import InputError
from llmroofline.graph import build_ops
from llmroofline.memory import kv_cache_bytes_per_seq, weight_bytes_total
from llmroofline.parallel import Layout
from llmroofline.phases import analyze
from llmroofline.specs.catalog import load_model
from llmroofline.specs.hardware import load_hardware
from llmroofline.specs.precision import Precision

QWEN = "Qwen/Qwen3-235B-A22B"
H, LAYERS, E, K, F = 4096, 94, 128, 8, 1536
BF16 = Precision(wbits=16, abits=16, kvbits=16)
FP8 = Precision(wbits=8, abits=8, kvbits=8)


@pytest.fixture(scope="module")
def qwen():
    m = load_model(QWEN)
    e = m.moe
    assert (m.hidden_size, m.num_layers, e.num_experts, e.top_k, e.expert_ffn) == (H, LAYERS, E, K, F)
    assert m.num_moe_layers == LAYERS and not e.shared_ffn
    return m


def _op(ops, name):
    (o,) = [o for o in ops if o.name == name]
    return o


def test_alltoall_bytes_by_hand(qwen):
    """DEP 8 (tp 1, dp_attention 8, ep 8), 4 decode rows per rank: each MoE layer's dispatch
    and combine send N_moe / ep x top_k x h x 2 bytes per device (N_moe = 8 ranks x 4), of
    which (ep - 1) / ep leaves the device: 4 x 8 x 4096 x 2 x 7/8 = 229,376 bytes per
    direction, priced a + S' / bw on NVLink."""
    lay = Layout(tp=1, ep=8, dp_attention=8)
    ops = build_ops(qwen, BF16, 4, 1, 100, layout=lay)
    per_layer = 4 * 8 / 8 * K * H * 2            # 262,144 bytes sent per device
    for name in ("moe_dispatch", "moe_combine"):
        o = _op(ops, name)
        assert o.count == LAYERS and o.group == 8 and o.collective == "alltoall"
        assert float(o.comm_bytes) == pytest.approx(LAYERS * per_layer, rel=1e-12)
    hw = load_hardware("h200")
    roof = Roofline.of(hw, BF16, lay)
    bw = hw.scaleup_bytes_s() * roof.eff.communication
    wire = 4 * K * H * 2 * 7 / 8                  # the brief's per-direction formula
    assert wire == 229_376
    _, _, comm, _ = roof.terms(_op(ops, "moe_dispatch"))
    assert float(comm) == pytest.approx(LAYERS * (hw.scaleup_latency_s() + wire / bw), rel=1e-9)
    # no TP all-reduce anywhere: attention is whole on each rank, the combine returns sums
    assert not [o for o in ops if o.collective == "allreduce"]
    # FP8 dispatch (engine trtllm-1 with an 8-bit checkpoint): dispatch at 1 byte, combine 2
    fp8 = build_ops(qwen, FP8, 4, 1, 100, layout=Layout(tp=1, ep=8, dp_attention=8,
                                                          fp8_dispatch=True))
    assert float(_op(fp8, "moe_dispatch").comm_bytes) == pytest.approx(LAYERS * per_layer / 2)
    assert float(_op(fp8, "moe_combine").comm_bytes) == pytest.approx(LAYERS * per_layer)
    assert resolve(QWEN, "h200", quant="fp8", layout=Layout(tp=1, ep=8, dp_attention=8),
                   engine="trtllm-1").layout.fp8_dispatch
    assert not resolve(QWEN, "h200", quant="fp8", layout=Layout(tp=1, ep=8, dp_attention=8),
                       engine="vllm-v1").layout.fp8_dispatch


def test_allgather_exchange_without_ep(qwen):
    """vLLM's DP + TP MoE (tp 1, dp_attention 2, ep 1: experts split 2 ways by width): an
    all-gather of each rank's N tokens before the experts and a reduce-scatter after, each
    N x h x 2 bytes per device part; every expert GEMM sees both ranks' tokens."""
    lay = Layout(tp=1, dp_attention=2)
    assert lay.moe_tp == 2 and lay.moe_ranks == 2 and lay.devices_per_replica == 2
    ops = build_ops(qwen, BF16, 3, 1, 10, layout=lay)
    ag, rs = _op(ops, "moe_allgather"), _op(ops, "moe_reducescatter")
    assert (ag.collective, rs.collective, ag.group) == ("allgather", "reducescatter", 2)
    assert float(ag.comm_bytes) == float(rs.comm_bytes) == LAYERS * 3 * H * 2
    # gate_up FLOPs: 2 ranks x 3 tokens x 8 pairs, each 2 x h x (2 x F / 2)
    up = _op(ops, "experts_gate_up")
    assert float(up.flops) == pytest.approx(LAYERS * 6 * K * 2 * H * F)


def test_per_rank_kv_and_weights_by_hand(qwen):
    """Per rank: the KV cache of its own requests with all 4 KV heads (no TP split), the
    whole attention / embeddings, 1/8 of the routed experts."""
    dep = Layout(tp=1, ep=8, dp_attention=8)
    kv_tok = LAYERS * 2 * 4 * 128 * 2                   # 192,512 bytes per token (BF16)
    assert float(kv_cache_bytes_per_seq(qwen, BF16, 1, dep)) == kv_tok
    experts = LAYERS * E * 3 * H * F * 2                # every routed expert, BF16 bytes
    whole = weight_bytes_total(qwen, BF16, Layout())
    assert weight_bytes_total(qwen, BF16, dep) == pytest.approx(whole - experts * 7 / 8,
                                                                rel=1e-12)
    # batch 20 over 8 ranks: the busiest holds ceil(20 / 8) = 3 requests of 1000 + 200
    a = analyze(QWEN, "h200", batch=20, input_len=1000, output_len=200, quant="bf16",
                layout=dep, engine="ideal")
    assert float(a.memory.kv_cache_bytes) == 3 * 1200 * kv_tok
    per_seq = kv_tok * 1200 + float(a.memory.activation_bytes) / 3
    free = a.memory.capacity_bytes - a.memory.weights_bytes
    assert a.max_batch == 8 * np.floor(free / per_seq)
    # the serving simulator's per-rank pool uses the same per-token bytes and weights
    from llmroofline.serving.cost import IterationCost
    cost = IterationCost.of(QWEN, "h200", quant="bf16", layout=dep, engine="ideal",
                            max_tokens=512, max_batch=64)
    assert cost.kv_bytes_per_token == kv_tok
    assert cost.weights_bytes == pytest.approx(whole - experts * 7 / 8, rel=1e-12)


def test_adp1_equals_tp_ep(qwen):
    """dp_attention = 1 is today's TP + EP: the same operators and numbers (an engine with
    FP8 dispatch does not change a layout without attention-DP)."""
    plain = analyze(QWEN, "h200", batch=16, input_len=512, output_len=64, quant="fp8",
                    layout=Layout(tp=8, ep=8), engine="trtllm-1")
    assert not plain.deployment.layout.fp8_dispatch
    ops = build_ops(qwen, FP8, 16, 1, 600, layout=Layout(tp=8, ep=8))
    # the TP + EP dispatch: each rank sends its N / ep share, top_k copies, 16-bit
    assert float(_op(ops, "moe_dispatch").comm_bytes) == pytest.approx(LAYERS * 16 / 8 * K * H * 2)
    # a DEP layout's experts at per-rank batch b see dp_attention x b tokens: the same
    # expert work as TP8 x EP8 at batch 8 b (whole experts, 16 per rank in both)
    dep = build_ops(qwen, FP8, 2, 1, 600, layout=Layout(tp=1, ep=8, dp_attention=8))
    for name in ("experts_gate_up", "experts_act_fn"):
        a, b = _op(ops, name), _op(dep, name)
        for f in ("flops", "weight_bytes", "act_bytes"):
            assert float(getattr(a, f)) == pytest.approx(float(getattr(b, f)), rel=1e-12)


@pytest.mark.parametrize("kw, model, engine, match", [
    ({"tp": 1, "ep": 16, "dp_attention": 8}, QWEN, None, r"ep \(16\) must divide tp x dp_attention = 8"),
    ({"tp": 8, "ep": 16}, QWEN, None, r"ep \(16\) must divide tp \(8\)"),
    ({"tp": 1, "ep": 256, "dp_attention": 256}, QWEN, None, "only 128 experts"),
    ({"tp": 1, "ep": 3, "dp_attention": 3}, "mistralai/Mixtral-8x7B-v0.1", None,
     "ep: 3 does not divide the 8 experts"),
    ({"tp": 1, "dp_attention": 4}, "llama-3.1-8b", "trtllm-1", "only for mixture-of-experts"),
    ({"tp": 1, "ep": 8, "dp_attention": 8}, QWEN, "trtllm-0.8", "no attention data-parallel mode"),
    ({"tp": 1, "dp_attention": 0}, QWEN, None, r"dp_attention must be an integer in \[1, 1024\]"),
])
def test_bad_layouts_one_line(kw, model, engine, match):
    with pytest.raises(InputError, match=match) as e:
        resolve(model, "h200", layout=Layout(**kw), engine=engine)
    assert "\n" not in str(e.value)


def test_dense_attention_dp_where_the_engine_has_it():
    """vLLM's data-parallel mode runs dense models: attention-DP groups are then replicas
    sharing nothing (no MoE exchange)."""
    a = analyze("llama-3.1-8b", "h200", batch=8, input_len=256, output_len=16,
                layout=Layout(dp_attention=4), engine="vllm-v1")
    b = analyze("llama-3.1-8b", "h200", batch=2, input_len=256, output_len=16, engine="vllm-v1")
    assert float(a.tpot_s) == pytest.approx(float(b.tpot_s), rel=1e-12)
    assert float(a.throughput_tok_s) == pytest.approx(4 * float(b.throughput_tok_s), rel=1e-12)


def test_cli_bad_layout_is_one_line():
    r = subprocess.run([sys.executable, "-m", "llmroofline", "analyze", "-m", QWEN,
                        "--hardware", "h200", "--dp-attention", "8", "--ep", "16"],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "ep (16) must divide" in r.stderr


def test_dep_replica_in_the_simulator():
    """A DEP replica of 8 attention ranks serving 8 closed-loop clients: one scheduler per
    rank (8 replicas in the result, each its own KV pool), one client each, so every
    request runs unloaded: TTFT = one prefill of the prompt (experts priced at the 8 ranks'
    tokens), TPOT = a one-row decode step."""
    from llmroofline.serving.cost import IterationCost
    from llmroofline.serving.sim import SchedulerConfig, simulate
    from llmroofline.serving.workload import make_workload
    cost = IterationCost.of(QWEN, "h200", quant="fp8", layout=Layout(tp=1, ep=8, dp_attention=8),
                            engine="ideal", max_tokens=1024, max_batch=16)
    cfg = SchedulerConfig(max_batch=16, max_tokens=1024)
    wl = make_workload(8 * 3, concurrency=8, input_dist="fixed:300", output_dist="fixed:4",
                       warmup=1)
    r = simulate(workload=wl, config=cfg, cost=cost)
    assert r.n_replicas == 8 and len(set(r.replica.tolist())) == 8
    b = r.benchmark()
    assert b["ttft_s"]["mean"] == pytest.approx(cost.time([300], [300], prefill=True), rel=1e-9)
    assert b["tpot_s"]["mean"] == pytest.approx(
        np.mean([cost.time([1], [L]) for L in (301, 302, 303)]), rel=1e-9)
