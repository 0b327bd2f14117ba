"""Disaggregated prefill/decode pools and speculative decoding in the serving simulator.

Hand-computed expectations: KV bytes from the model shapes, the link from the device
catalog (H100 SXM: NVLink 4 at 900 GB/s bidirectional = 450 GB/s per direction within an
8-GPU node; 50 GB/s per GPU across nodes), TTFT at one client from analyze's own prefill,
TPOT against an aggregated replica on the decode pool's layout, the verify step against
analyze's verify operators (decoding.verify_ops), tau = 1 + a + ... + a^k.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from llmroofline import phases
from llmroofline.cost import Roofline
from llmroofline.decoding import verify_ops
from llmroofline.parallel import Layout
from llmroofline.serving import make_workload, simulate
from llmroofline.serving.config import SchedulerConfig
from llmroofline.serving.cost import IterationCost
from llmroofline.serving.disagg import Pool, kv_transfer, simulate_disagg
from llmroofline.serving.speculative import SpeculativeCost, tokens_per_step
from llmroofline.specs.catalog import load_model
from llmroofline.specs.hardware import load_hardware
from llmroofline.specs.precision import Precision

MODEL, HW = "llama-3.1-8b", "h100-sxm"


@pytest.fixture(scope="module")
def costs():
    """Prefill pool TP 1, decode pool TP 2 (different, so a test can tell them apart)."""
    kw = dict(max_tokens=2048, max_batch=32)
    return (IterationCost.of(MODEL, HW, layout=Layout(tp=1), **kw),
            IterationCost.of(MODEL, HW, layout=Layout(tp=2), **kw))


CFG = SchedulerConfig(max_batch=32, max_tokens=2048, request_fixed_s=0.05, step_cpu_s=0.001)


def test_kv_transfer_bytes_and_seconds_by_hand():
    m, hw = load_model(MODEL), load_hardware(HW)
    # Llama-3.1-8B: 32 layers x 8 KV heads x head_dim 128 x (K and V) x 2 bytes (BF16)
    per_token = 32 * 8 * 128 * 2 * 2
    assert per_token == 131072
    t = kv_transfer(m, Precision(), hw, 1024, Layout(tp=1), Layout(tp=2))
    assert t.total_bytes == pytest.approx(1024 * per_token)          # 134,217,728 bytes
    assert t.device_bytes == pytest.approx(1024 * per_token / 2)     # 4 KV heads per rank
    # 1 + 2 devices in one node: NVLink, 450 GB/s per direction, 2 us; the one prefill
    # device sends both decode devices' halves: 2 x 67,108,864 bytes
    assert t.link_bytes_s == pytest.approx(450e9)
    assert t.seconds == pytest.approx(2 * 67_108_864 / 450e9 + 2e-6, rel=1e-12)
    # TP 8 -> TP 8: 16 devices span two nodes, so the 50 GB/s network (10 us)
    t8 = kv_transfer(m, Precision(), hw, 1024, Layout(tp=8), Layout(tp=8))
    assert t8.device_bytes == pytest.approx(1024 * per_token / 8)
    assert t8.seconds == pytest.approx(16_777_216 / 50e9 + 10e-6, rel=1e-12)


def test_kv_transfer_mla_latent_is_whole_on_every_rank():
    m, hw = load_model("deepseek-ai/DeepSeek-V3"), load_hardware("h200")
    # MLA: kv_lora_rank 512 + rope 64 = 576 values per token per layer, 61 layers, FP8 KV
    t = kv_transfer(m, Precision(wbits=8, abits=8, kvbits=8), hw, 8192, Layout(tp=8),
                    Layout(tp=8))
    assert t.total_bytes == pytest.approx(8192 * 61 * 576)
    assert t.device_bytes == pytest.approx(t.total_bytes)            # replicated latent
    assert t.seconds == pytest.approx(8192 * 61 * 576 / 50e9 + 10e-6, rel=1e-12)


def _closed(c, n_per_client, I, O):
    return make_workload(c * n_per_client, concurrency=c, input_dist=f"fixed:{I}",
                         output_dist=f"fixed:{O}", warmup=1)


def test_disagg_ttft_at_one_client_is_fixed_plus_prefill_plus_transfer(costs):
    pcost, dcost = costs
    I, O = 1000, 64
    r = simulate_disagg(workload=_closed(1, 3, I, O), prefill=Pool(Layout(tp=1)),
                        decode=Pool(Layout(tp=2)), config=CFG, prefill_cost=pcost,
                        decode_cost=dcost)
    b = r.benchmark()
    prefill_s = float(phases.analyze(MODEL, HW, 1, I, O).ttft_s)       # analyze's prefill
    xfer = 2 * I * 131072 / 2 / 450e9 + 2e-6
    expect = 0.05 + prefill_s + 0.001 + xfer                          # fixed + one iteration
    assert b["ttft_s"]["mean"] == pytest.approx(expect, rel=1e-9)
    assert np.nanmax(r.kv_transfer_s) == pytest.approx(xfer, rel=1e-12)


def test_decode_pool_tpot_equals_an_aggregated_replica_on_its_layout(costs):
    pcost, dcost = costs
    I, O = 1000, 64
    r = simulate_disagg(workload=_closed(1, 3, I, O), prefill=Pool(Layout(tp=1)),
                        decode=Pool(Layout(tp=2)), config=CFG, prefill_cost=pcost,
                        decode_cost=dcost)
    agg = simulate(workload=_closed(1, 3, I, O), config=CFG, cost=dcost)
    tpot = r.benchmark()["tpot_s"]["mean"]
    assert tpot == pytest.approx(agg.benchmark()["tpot_s"]["mean"], rel=1e-9)
    # by hand: O - 1 decode steps at contexts I + 1 .. I + O - 1, each plus the CPU cost
    steps = [dcost.time([1], [I + j], prefill=False) + 0.001 for j in range(1, O)]
    assert tpot == pytest.approx(np.mean(steps), rel=1e-9)
    # and it is not the prefill pool's (TP 1) decode
    assert abs(tpot / (pcost.time([1], [I + 32], prefill=False) + 0.001) - 1) > 0.2


def test_disagg_pools_take_many_clients_and_workers(costs):
    pcost, dcost = costs
    r = simulate_disagg(workload=_closed(24, 3, 512, 128), prefill=Pool(Layout(tp=1), 2),
                        decode=Pool(Layout(tp=2), 3, max_batch=8), config=CFG,
                        prefill_cost=pcost, decode_cost=dcost)
    assert r.roles == ("prefill",) * 2 + ("decode",) * 3
    assert np.all(np.isfinite(r.finish_s))
    # 24 clients over 3 decode workers of at most 8 rows: none ever runs more than 8, and
    # the decode workers run every decode row (the prefill workers one token each)
    dec = np.isin(r.iter_replica, [2, 3, 4])
    assert r.iter_rows[dec].max() == 8
    assert r.iter_tokens[~dec].sum() == 72 * 512        # every prompt, prefilled once
    assert np.all(r.replica[r.output_len > 1] >= 2)
    b = r.benchmark()
    assert b["measured_requests"] > 0 and b["tpot_s"]["mean"] > 0


def test_tokens_per_step_formula_by_hand():
    assert tokens_per_step(4, 0.5) == pytest.approx(1 + 0.5 + 0.25 + 0.125 + 0.0625)
    assert tokens_per_step(3, 0.8) == pytest.approx((1 - 0.8 ** 4) / (1 - 0.8))
    assert tokens_per_step(4, 1.0) == 5.0
    assert tokens_per_step(4, 0.0) == 1.0


@pytest.fixture(scope="module")
def spec_costs():
    c = IterationCost.of(MODEL, HW, max_tokens=2048, max_batch=32)
    return c, {a: SpeculativeCost.of(c, draft="llama-3.2-1b", draft_k=3, accept=a)
               for a in (0.0, 0.8)}


def test_verify_step_is_analyze_verify_step_plus_drafts(spec_costs):
    c, spec = spec_costs
    s = spec[0.0]                                                    # tau = 1
    dep = c.deployment
    B, L, k = 4, 1000, 3
    roof = Roofline.of(dep.hardware, dep.precision, dep.layout, dep.efficiency)
    verify = float(np.asarray(phases.step_cost(verify_ops(
        dep.model, dep.precision, B, k, L + k, flash=dep.flash, layout=dep.layout), roof,
        "verify").time_s))
    drafts = sum(s.draft.time(np.ones(B), np.full(B, L + i), prefill=False) for i in range(k))
    assert s.time(np.ones(B), np.full(B, L), prefill=False) == pytest.approx(verify + drafts,
                                                                             rel=1e-12)
    # a = 0.8: the same round spread over tau = 1 + .8 + .64 + .512 tokens
    tau = 1 + 0.8 + 0.64 + 0.512
    assert spec[0.8].time(np.ones(B), np.full(B, L), prefill=False) == pytest.approx(
        (verify + drafts) / tau, rel=1e-12)


def test_speculative_tpot_at_acceptance_zero_is_no_better(spec_costs):
    c, spec = spec_costs
    cfg = replace(CFG, request_fixed_s=0.0)
    wl = _closed(2, 3, 512, 64)
    plain = simulate(workload=wl, config=cfg, cost=c).benchmark()["tpot_s"]["mean"]
    zero = simulate(workload=wl, config=cfg, cost=spec[0.0]).benchmark()["tpot_s"]["mean"]
    high = simulate(workload=wl, config=cfg, cost=spec[0.8]).benchmark()["tpot_s"]["mean"]
    assert zero > plain            # the verify step and three draft steps, one token
    assert high < plain            # tau = 2.95 tokens per round pays for them


def _cli(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "llmroofline", "simulate", "-m", MODEL,
                           "-c", "2", "-n", "4", *args], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.parametrize("args, field", [
    (("--disagg", "--decode-workers", "0"), "decode_workers"),
    (("--disagg", "--prefill-tp", "3"), "prefill pool: tp"),
    (("--disagg", "--decode-max-batch", "0"), "decode_max_batch"),
    (("--disagg", "--disaggregate", "1:1"), "disagg"),
    (("--disagg", "--replicas", "2"), "replicas"),
    (("--mtp", "2"), "mtp"),
    (("--draft", "llama-3.2-1b", "--accept", "1.5"), "accept"),
])
def test_bad_pools_and_drafts_give_one_line(args, field):
    p = _cli(*args)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2, p.stderr
    assert len(lines) == 1 and field in lines[0] and "Traceback" not in p.stderr


def test_cli_disagg_json_reports_pools_and_tau():
    import json
    p = _cli("--disagg", "--prefill-workers", "2", "--decode-tp", "2", "--draft",
             "llama-3.2-1b", "--draft-k", "4", "--accept", "0.5", "--input-dist", "fixed:256",
             "--output-dist", "fixed:32", "--json")
    assert p.returncode == 0, p.stderr
    cfg = json.loads(p.stdout)["config"]
    assert cfg["disagg"]["prefill"]["workers"] == 2 and cfg["disagg"]["decode"]["tp"] == 2
    assert cfg["speculative"]["tokens_per_step"] == pytest.approx(1.9375)


def test_measured_disagg_rows_parse_and_stay_out_of_the_default_read(tmp_path):
    from llmroofline.serving.measured import parse_row, skip_reason
    row = {"id": "x", "backend": "trtllm", "backend_version": "1.2", "model_path":
           "deepseek-ai/DeepSeek-V3", "system": "h200_sxm", "precision": "fp8",
           "mode": "disagg", "isl": "1024", "osl": "1024", "gemm_quant_mode": "fp8",
           "moe_quant_mode": "fp8", "batch_size": "", "tp_size": "", "pp_size": "",
           "attention_dp_size": "", "moe_tp_size": "", "moe_ep_size": "",
           "silicon_ttft_ms": "900", "silicon_tpot_ms": "20",
           "silicon_data_source": "a=1; silicon_concurrency=144; b=2",
           "prefill_tp_size": "8", "prefill_pp_size": "1", "prefill_attention_dp_size": "1",
           "prefill_moe_tp_size": "1", "prefill_moe_ep_size": "8", "prefill_num_workers": "1",
           "prefill_batch_size": "1", "decode_tp_size": "1", "decode_pp_size": "1",
           "decode_attention_dp_size": "8", "decode_moe_tp_size": "1",
           "decode_moe_ep_size": "8", "decode_num_workers": "9", "decode_batch_size": "16"}
    run = parse_row(row, 2)
    assert run.concurrency == 144
    assert run.prefill_pool == (8, 1, 1, 1, 8, 1, 1)
    assert run.decode_pool == (1, 1, 8, 1, 8, 9, 16)
    # 144 x 1024 / ((900 + 20 x 1023) ms)
    assert run.tok_s == pytest.approx(144 * 1024 / 21.36)
    assert skip_reason(run).startswith("disaggregated")               # default: as before
    assert skip_reason(run, disagg=True) == ("decode pool attention data-parallel x8 "
                                             "(DEP layouts not modelled yet)")
    ok = {**row, "decode_tp_size": "8", "decode_attention_dp_size": "1"}
    assert skip_reason(parse_row(ok, 3), disagg=True) is None


def test_speculative_fast_and_stepped_simulations_agree_with_graph_padding(spec_costs):
    c, spec = spec_costs
    cfg = replace(CFG, cuda_graph_sizes=(1, 2, 4, 8, 16, 32))
    wl = _closed(6, 3, 300, 200)
    fast = simulate(workload=wl, config=cfg, cost=spec[0.8]).benchmark()
    slow = simulate(workload=wl, config=cfg, cost=spec[0.8], fast=False).benchmark()
    assert fast["tpot_s"]["mean"] == pytest.approx(slow["tpot_s"]["mean"], rel=1e-9)
    assert fast["ttft_s"]["mean"] == pytest.approx(slow["ttft_s"]["mean"], rel=1e-9)


def test_speculative_sliding_window_model_prices_each_row():
    # Gemma-2 alternates 4096-token sliding-window layers: the verify features need each
    # row's own context, so the three ways the replica asks for a step must agree
    c = IterationCost.of("google/gemma-2-9b", HW, max_tokens=1024, max_batch=8)
    s = SpeculativeCost.of(c, draft="google/gemma-2-9b", draft_k=2, accept=0.6)
    L = np.array([100.0, 3000.0, 5000.0])
    t = s.time(np.ones(3), L, prefill=False)
    assert s.time_of_sums(3, 3, s.feature_sums(np.ones(3), L), False) == pytest.approx(t, rel=1e-12)
    run = s.decode_run(L, 3)
    assert run[0] == pytest.approx(t, rel=1e-12)
    assert run[2] == pytest.approx(s.time(np.ones(3), L + 2, prefill=False), rel=1e-12)
    # verify rows attend to L + k: a row past the window costs what a windowless one
    # would not (features of q = 3 at 5002 tokens: keys min(5002, 3 + 4096 - 1) = 4098)
    f = s.verify_features(np.array([5000.0]))
    assert 4098.0 in f
