"""Closed-loop benchmark clients, engine scheduler behaviours and presets, and the reader of
the concurrency CSV schema (issue 18). Expected values are built from the pieces of
IterationCost (token ops, row ops, attention features, overheads) or from the engines'
documented defaults, not from simulator output."""

from __future__ import annotations

import numpy as np
import pytest

from llmroofline.errors import InputError
from llmroofline.parallel import Layout
from llmroofline.serving import IterationCost, SchedulerConfig, Workload, make_workload, simulate
from llmroofline.serving.config import SGLANG_MEM_FRACTION_BY_TP, kv_blocks_of, scheduler_config
from llmroofline.specs.engine import load_engine
from llmroofline.serving.measured import (parse_row, read_concurrency_csv, simulate_run,
                                          skip_reason, throughput_tok_s)

MODEL, HW = "llama-3.1-8b", "h100-sxm"


@pytest.fixture(scope="module")
def cost():
    return IterationCost.of(MODEL, HW)


def _prefill_s(cost, I):
    """One unloaded prefill of I tokens: token ops of I tokens, lm_head of one row, the
    attention features (q, pairs, keys, q x keys) = (I, I (I + 1) / 2, I, I^2), step +
    prefill overheads."""
    att = cost.attention_s(np.array([I, I * (I + 1) / 2, I, I * I], dtype=float))
    extra = cost._extra["raw_step_s"] + cost.prefill_overhead_s
    return cost.token_s(I) + cost.row_s(1) + att + (extra if extra > 1e-9 else 0.0)


def _decode_s(cost, B, sum_L, rows_priced=None):
    """One pure decode iteration of B rows attending to sum_L tokens in all (features
    q = B, pairs = keys = q x keys = sum_L), token and row ops at ``rows_priced``."""
    n = B if rows_priced is None else rows_priced
    att = cost.attention_s(np.array([B, sum_L, sum_L, sum_L], dtype=float))
    return cost.token_s(n) + cost.row_s(n) + att + cost.step_overhead_s


# -- closed loop ------------------------------------------------------------------------------
def test_c1_ttft_is_prefill_plus_fixed_cost_and_tpot_the_batch1_decode(cost):
    I, O, fixed, cpu = 512, 64, 0.025, 0.001
    cfg = SchedulerConfig(request_fixed_s=fixed, step_cpu_s=cpu)
    wl = make_workload(6, concurrency=1, input_dist=f"fixed:{I}", output_dist=f"fixed:{O}")
    r = simulate(workload=wl, config=cfg, cost=cost)
    ttft = _prefill_s(cost, I) + cpu + fixed
    assert r.ttft_s == pytest.approx(np.full(6, ttft), rel=1e-9)
    # decode token j (j = 2..O) attends to I + j - 1 tokens
    tpot = np.mean([_decode_s(cost, 1, I + j - 1) + cpu for j in range(2, O + 1)])
    assert r.tpot_s == pytest.approx(np.full(6, tpot), rel=1e-9)
    # a client sends its next request when the previous one finishes
    assert r.arrival_s[1:] == pytest.approx(r.finish_s[:-1], abs=1e-12)
    b = r.benchmark()
    # warm-up (the first request) and the drain (the last: finishes after the last send)
    assert (b["measured_requests"], b["excluded_requests"]) == (4, 2)
    assert b["output_tok_s_law"] == pytest.approx(O / (ttft + tpot * (O - 1)), rel=1e-9)


def test_staggered_clients_reach_a_steady_state_llama70b_tp2():
    """Issue 18: Llama-3.1-70B TP 2, 1024/1024, 8 clients. Started together, the clients
    stay in one wave (each TTFT is a prefill of all 8 prompts); staggered, each prompt is
    prefilled alongside the other 7 clients' decodes."""
    cost = IterationCost.of("llama-3.1-70b", "h200", quant="fp8", layout=Layout(tp=2))
    I = O = 1024
    c = 8
    runs = {}
    for ramp in (0.0, None):
        wl = make_workload(c * 6, concurrency=c, input_dist=f"fixed:{I}",
                           output_dist=f"fixed:{O}", ramp_s=ramp)
        runs[ramp] = simulate(workload=wl, cost=cost)
    sync, stag = runs[0.0], runs[None]
    m = sync.measured
    # synchronized: one iteration prefills the 8 prompts (8192 tokens)
    att8 = cost.attention_s(np.array([c * I, c * I * (I + 1) / 2, c * I, c * I * I], float))
    extra = cost._extra["raw_step_s"] + cost.prefill_overhead_s
    wave = cost.token_s(c * I) + cost.row_s(c) + att8 + extra
    assert sync.ttft_s[m] == pytest.approx(np.full(m.sum(), wave), rel=1e-6)
    # staggered: a prompt of 1024 with 7 decode rows at L between I and I + O
    ms = stag.measured
    lo = cost.time(np.r_[I, np.ones(c - 1)], np.r_[I, np.full(c - 1, I + 1)])
    hi = cost.time(np.r_[I, np.ones(c - 1)], np.r_[I, np.full(c - 1, I + O)])
    assert np.all(stag.ttft_s[ms] >= lo * (1 - 1e-9))
    assert np.all(stag.ttft_s[ms] <= hi * (1 + 1e-9))
    assert stag.ttft_s[ms].mean() < wave / 4
    # steady state: the sends stay spread over the cycle (no two within 1/4 of the even
    # spacing), and every measured TPOT is within 1 % of their mean
    sends = np.sort(stag.arrival_s[ms])
    cycle = np.median(stag.e2e_s[ms])
    assert np.diff(sends).min() > cycle / c / 4
    assert stag.tpot_s[ms].max() / stag.tpot_s[ms].min() < 1.01


def test_ramp_zero_is_the_old_closed_loop(cost):
    wl = make_workload(64, concurrency=8, input_dist="fixed:256", output_dist="fixed:32",
                       ramp_s=0.0)
    r = simulate(workload=wl, cost=cost)
    assert np.all(r.arrival_s[:8] == 0)


def test_range_lengths_as_vllm_random_range_ratio():
    wl = make_workload(4000, concurrency=4, input_dist="range:1000,0.5",
                       output_dist="range:100,0")
    assert wl.input_len.min() == 500 and wl.input_len.max() == 1500
    assert np.all(wl.output_len == 100)
    with pytest.raises(InputError, match="input_dist"):
        make_workload(10, concurrency=2, input_dist="range:1000,1.5")


def test_bad_closed_loop_options():
    with pytest.raises(InputError, match="ramp_s"):
        make_workload(10, concurrency=2, ramp_s=-1.0)
    with pytest.raises(InputError, match="warmup"):
        make_workload(10, concurrency=2, warmup=-1)


# -- scheduler behaviours ---------------------------------------------------------------------
def test_no_mix_raises_ttft_and_lowers_tpot():
    """SGLang's default (prefill batches alone, decodes wait) against vLLM's mixed
    iterations, everything else equal, with the clients started together as the benchmark
    tools start them (ramp 0): without mixing, the prompts that arrive together are
    prefilled together, their requests finish together and come back together, so the
    prefill groups persist: TTFT rises and TPOT falls at nearly equal throughput (the
    issue: x4.5 and x0.73 measured). Staggered clients show no such gap (docs/engines.md)."""
    cost = IterationCost.of(MODEL, "h200", quant="fp8")
    c, I, O = 64, 8192, 1024
    wl = make_workload(c * 4, concurrency=c, input_dist=f"fixed:{I}", output_dist=f"fixed:{O}",
                       ramp_s=0.0)
    mixed = simulate(workload=wl, config=SchedulerConfig(), cost=cost)
    alone = simulate(workload=wl, config=SchedulerConfig(mix_prefill=False), cost=cost)
    bm, ba = mixed.benchmark(), alone.benchmark()
    assert ba["ttft_s"]["mean"] > 2 * bm["ttft_s"]["mean"]
    assert ba["tpot_s"]["mean"] < 0.95 * bm["tpot_s"]["mean"]
    assert ba["output_tok_s_law"] == pytest.approx(bm["output_tok_s_law"], rel=0.1)
    # no iteration of the no-mix run carries a prefill chunk and a decode row: every one
    # with prefill tokens has only prefill rows, at most max_tokens / I... whole prompts
    pre = alone.iter_tokens > alone.iter_rows
    assert pre.any() and np.all(alone.iter_tokens[pre] >= (I // 2) * alone.iter_rows[pre])
    assert np.any((mixed.iter_tokens > mixed.iter_rows) & (mixed.iter_rows > 1)
                  & (mixed.iter_tokens - mixed.iter_rows < I))        # a chunk + decodes
    assert alone.itl_weight.sum() == float((wl.output_len - 1).sum())


def test_no_mix_c2_prefill_runs_alone(cost):
    """Two clients: each prefill iteration of the no-mix run has one row; the other
    client's decode waits, so its TTFT is the plain prefill."""
    I, O = 1024, 128
    wl = make_workload(10, concurrency=2, input_dist=f"fixed:{I}", output_dist=f"fixed:{O}")
    r = simulate(workload=wl, config=SchedulerConfig(mix_prefill=False), cost=cost)
    pre = r.iter_tokens > r.iter_rows
    assert np.all(r.iter_rows[pre] == 1) and np.all(r.iter_tokens[pre] == I)
    assert r.ttft_s[r.measured] == pytest.approx(np.full(r.measured.sum(),
                                                         _prefill_s(cost, I)), rel=1e-9)


def test_cuda_graph_padding_by_hand(cost):
    """9 identical requests prefilled together, then decoding in lockstep: the first decode
    iteration (L = I + 1 each) is priced at the captured size 16 (vLLM V1 sizes 1, 2, 4,
    8, 16, ...)."""
    cfg = SchedulerConfig(cuda_graph_sizes=load_engine("vllm-v1").batching.cuda_graph_sizes)
    assert [cfg.padded_rows(b) for b in (1, 3, 5, 9, 17, 512, 513)] == \
        [1, 4, 8, 16, 24, 512, 513]
    I, O, B = 128, 40, 9
    wl = Workload(np.zeros(B), np.full(B, I), np.full(B, O), "offline")
    r = simulate(workload=wl, config=cfg, cost=cost)
    plain = simulate(workload=wl, cost=cost)
    assert r.iter_time_s[1] == pytest.approx(_decode_s(cost, B, B * (I + 1), 16), rel=1e-9)
    assert plain.iter_time_s[1] == pytest.approx(_decode_s(cost, B, B * (I + 1)), rel=1e-9)
    # the last decode iteration (L = I + O - 1) in the vectorized stretch, too
    assert r.iter_time_s[-1] == pytest.approx(_decode_s(cost, B, B * (I + O - 1), 16), rel=1e-9)


def test_cuda_graphs_replay_only_up_to_the_largest_captured_size():
    g = IterationCost.of(MODEL, HW, cuda_graphs=True, max_batch=16)
    cfg = SchedulerConfig(cuda_graph_sizes=(1, 2, 4))
    eager = g.time_of_sums(9, 9, np.array([9, 900, 900, 900.]), False, 9, True)
    base = IterationCost.of(MODEL, HW, max_batch=16)
    assert eager == pytest.approx(_decode_s(base, 9, 900), rel=1e-12)
    assert not cfg.graph_replay(9) and cfg.graph_replay(3) and cfg.padded_rows(3) == 4
    replay = g.time_of_sums(3, 3, np.array([3, 300, 300, 300.]), False, 4)
    assert replay == pytest.approx(_decode_s(g._extra["graphs"], 3, 300, 4), rel=1e-12)
    assert replay < base.time_of_sums(3, 3, np.array([3, 300, 300, 300.]), False, 4)


def test_bad_behaviour_settings():
    with pytest.raises(InputError, match="step_cpu_s"):
        SchedulerConfig(step_cpu_s=-1.0)
    with pytest.raises(InputError, match="request_fixed_s"):
        SchedulerConfig(request_fixed_s=float("nan"))
    with pytest.raises(InputError, match="cuda_graph_sizes"):
        SchedulerConfig(cuda_graph_sizes=(8, 4))
    with pytest.raises(InputError, match="engine"):
        load_engine("sglang-0.3")


# -- engine files: the documented defaults ------------------------------------------------
def test_vllm_v1_defaults():
    c = scheduler_config(load_engine("vllm-v1"))
    assert (c.max_batch, c.max_tokens, c.block_size) == (1024, 8192, 16)
    assert c.chunked and c.mix_prefill and c.reserve == "prompt"
    assert (c.kv_rule, c.kv_fraction, c.runtime_gb) == ("total_fraction", 0.9, 1.0)
    assert c.cuda_graph_sizes[:5] == (1, 2, 4, 8, 16) and c.cuda_graph_sizes[-1] == 512
    assert c.cuda_graph_sizes == (1, 2, 4) + tuple(range(8, 513, 8))
    # fitted fixed costs (scripts/fit_modern_engines.py): within the fit's bounds
    assert 0 <= c.request_fixed_s <= 0.5 and 0 <= c.step_cpu_s <= 5e-3


def test_sglang_defaults():
    c = scheduler_config(load_engine("sglang"))
    assert (c.max_tokens, c.block_size, c.mix_prefill, c.kv_rule) == \
        (8192, 1, False, "static_fraction")
    assert c.cuda_graph_sizes == (1, 2, 4, 8, 12) + tuple(range(16, 257, 8))
    assert c.kv_fraction == 0.88
    assert SGLANG_MEM_FRACTION_BY_TP == {1: 0.88, 2: 0.87, 4: 0.85, 8: 0.81, 16: 0.79}


def test_trtllm_1_defaults():
    c = scheduler_config(load_engine("trtllm-1"))
    assert (c.max_batch, c.max_tokens, c.block_size) == (2048, 8192, 32)
    assert (c.reserve, c.chunked, c.mix_prefill) == ("full", False, True)
    assert (c.kv_rule, c.kv_fraction, c.runtime_gb) == ("free_fraction", 0.9, 3.0)
    assert c.cuda_graph_sizes == ()
    # the engines before them keep the old behaviour
    for name in ("vllm", "trtllm-0.8", "default"):
        old = scheduler_config(load_engine(name))
        assert old.mix_prefill and old.cuda_graph_sizes == () and old.request_fixed_s == 0


def test_kv_pool_rules_by_hand():
    """Llama-3.1-8B BF16 on one H200 (143,771 MiB as nvidia-smi reports it; the engines
    of 2025-26 size their pools from what the driver reports): K and V of 32 layers x 8 KV
    heads x 128 dims x 2 bytes = 131,072 bytes per token."""
    from llmroofline.graph import build_ops
    from llmroofline.memory import activation_peak_bytes
    c = IterationCost.of(MODEL, "h200")
    kvb = 2 * 32 * 8 * 128 * 2
    assert c.kv_bytes_per_token == kvb
    M, W = 143771 * 2**20, c.weights_bytes
    sg = scheduler_config(load_engine("sglang"))
    assert kv_blocks_of(c, sg) == int((0.88 * M - W) // kvb)
    ops = build_ops(c.model, c.prec, 1, 8192.0, 8192.0, **c._extra["kw"])
    A = float(activation_peak_bytes(c.model, c.prec, 1, 8192, ops))
    v1 = scheduler_config(load_engine("vllm-v1"))
    assert kv_blocks_of(c, v1) == int((0.9 * M - W - A - 1e9) // kvb) // 16
    tr = scheduler_config(load_engine("trtllm-1"))
    assert kv_blocks_of(c, tr) == int((0.9 * (M - W - A - 3e9)) // kvb) // 32


# -- the concurrency CSV ----------------------------------------------------------------------
def _row(**kw):
    r = {"id": "x", "silicon_data_source": "", "backend": "vllm", "backend_version": "0.12.0",
         "model_path": "meta-llama/Llama-3.1-70B", "system": "h200_sxm", "precision": "fp8",
         "mode": "agg", "isl": "1024", "osl": "1024", "gemm_quant_mode": "fp8",
         "moe_quant_mode": "fp8", "batch_size": "8.0", "tp_size": "2.0", "pp_size": "1.0",
         "attention_dp_size": "1.0", "moe_tp_size": "2.0", "moe_ep_size": "1.0",
         "silicon_ttft_ms": "150.0", "silicon_tpot_ms": "16.0"}
    r.update(kw)
    return r


def test_parse_row_setup():
    run = parse_row(_row())
    assert (run.model, run.hardware, run.tp, run.concurrency, run.isl) == \
        ("meta-llama/Llama-3.1-70B", "h200", 2, 8, 1024)
    assert (run.precision.wbits, run.precision.abits, run.precision.kvbits) == (8, 8, 16)
    assert run.preset == "vllm-v1" and run.layout.ep == 1
    assert run.tok_s == pytest.approx(8 * 1024 / ((150 + 16 * 1023) / 1e3))
    assert throughput_tok_s(4, 100, 50.0, 10.0) == pytest.approx(4 * 100 / 1.04)
    # TensorRT-LLM: FP8 KV cache for FP8 checkpoints; R1 has V3's shapes
    t = parse_row(_row(backend="trtllm", model_path="deepseek-ai/DeepSeek-R1", tp_size="8",
                       moe_tp_size="1", moe_ep_size="8", moe_quant_mode="fp8_block"))
    assert t.precision.kvbits == 8 and t.model == "deepseek-ai/DeepSeek-V3"
    assert t.layout.ep == 8 and skip_reason(t) is None
    # NVFP4 on a device without FP4 tensor units: W4A16 kernels
    g = parse_row(_row(model_path="openai/gpt-oss-120b", precision="fp4",
                       gemm_quant_mode="nvfp4", moe_quant_mode="nvfp4"))
    assert (g.precision.wbits, g.precision.abits, g.precision.group_size) == (4, 16, 16)


def test_parse_row_errors_and_skips():
    with pytest.raises(InputError, match="system 'h300_sxm'"):
        parse_row(_row(system="h300_sxm"), 7, "f.csv")
    with pytest.raises(InputError, match="f.csv:3: isl"):
        parse_row(_row(isl="lots"), 3, "f.csv")
    with pytest.raises(InputError, match="gemm_quant_mode"):
        parse_row(_row(gemm_quant_mode="fp6"))
    with pytest.raises(InputError, match="missing column 'osl'"):
        r = _row()
        del r["osl"]
        parse_row(r)
    dis = parse_row(_row(mode="disagg", batch_size="", tp_size="", moe_tp_size="",
                         moe_ep_size="", attention_dp_size=""))
    assert "disaggregated" in skip_reason(dis)
    dep = parse_row(_row(model_path="deepseek-ai/DeepSeek-V3", tp_size="8",
                         attention_dp_size="8", moe_tp_size="1", moe_ep_size="8"))
    # attention-DP rows run as DEP layouts now; this one's MoE ranks (1 x 8) do not cover
    # its tp 8 x attention_dp 8 = 64 ranks
    assert "!= tp 8 x attention_dp 8" in skip_reason(dep)
    dep8 = parse_row(_row(model_path="deepseek-ai/DeepSeek-V3", tp_size="1",
                          attention_dp_size="8", moe_tp_size="1", moe_ep_size="8"))
    assert skip_reason(dep8) is None and dep8.layout.dp_attention == 8
    # an empty attention_dp_size: MoE ranks beyond TP are attention-DP ranks
    q = parse_row(_row(model_path="Qwen/Qwen3-235B-A22B-FP8", tp_size="1",
                       attention_dp_size="", moe_tp_size="2"))
    assert q.attention_dp == 2
    assert "does not load" in skip_reason(parse_row(_row(model_path="nobody/NoSuchModel-1B")))


def test_read_and_simulate_the_shared_file():
    from pathlib import Path
    p = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / \
        "measured_modern" / "serving_h200_concurrency.csv"       # ../shared beside the repo
    if not p.is_file():
        pytest.skip("shared measurements not available")
    ok, skipped = read_concurrency_csv(p)
    assert len(ok) + len(skipped) == 967
    assert all(r.mode == "agg" for r in ok)
    # 142 rows repeat another row's measurement (34 of them under a larger layout)
    dups = [why for _, why in skipped if why.startswith("same measurement")]
    assert len(dups) == 142 and sum("GPUs" in w for w in dups) == 34
    # the 27 distinct attention-DP rows (8 TensorRT-LLM DeepSeek, 19 vLLM Qwen3-235B) run as DEP
    dep = [r for r in ok if r.attention_dp > 1]
    assert len(dep) == 27 and {r.backend for r in dep} == {"trtllm", "vllm"}
    d8 = next(r for r in dep if r.attention_dp == 8 and r.isl == r.osl == 1024
              and r.concurrency == 256)
    assert d8.layout.dp_attention == 8 and d8.layout.ep == 8 and d8.layout.fp8_dispatch
    run = next(r for r in ok if r.model == "meta-llama/Llama-3.1-70B" and r.backend == "vllm"
               and r.tp == 2 and r.isl == 1024 and r.osl == 1024)
    p = simulate_run(run, rounds=2)
    assert p["tok_s"] == pytest.approx(throughput_tok_s(run.concurrency, run.osl,
                                                        p["ttft_ms"], p["tpot_ms"]))
    assert p["sim"]["measured_requests"] > 0


@pytest.mark.parametrize("model", [MODEL, "gemma-2-9b"])     # gemma-2: sliding windows
def test_fast_path_equals_stepping_with_the_behaviours(model):
    c = IterationCost.of(model, HW)
    cfg = SchedulerConfig(mix_prefill=False, step_cpu_s=0.0005, request_fixed_s=0.01,
                          cuda_graph_sizes=(1, 2, 4, 8, 16, 24, 32))
    wl = make_workload(120, concurrency=24, input_dist="range:600,0.5",
                       output_dist="range:200,0.5", seed=3)
    a = simulate(workload=wl, config=cfg, cost=c, fast=True)
    b = simulate(workload=wl, config=cfg, cost=c, fast=False)
    assert a.finish_s == pytest.approx(b.finish_s, rel=1e-9)
    assert a.first_token_s == pytest.approx(b.first_token_s, rel=1e-9)
    assert a.itl_weight.sum() == b.itl_weight.sum() == float((wl.output_len - 1).sum())


def test_cli_closed_loop_with_an_engine_preset(capsys):
    import json
    from llmroofline.cli import main
    base = ["simulate", "-m", MODEL, "-H", "h200", "-q", "fp8", "--arrival", "closed",
            "--concurrency", "4", "-n", "16", "--input-dist", "512", "--output-dist", "32",
            "--json"]
    assert main(base + ["--engine", "sglang"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["config"]["mix_prefill"] is False and s["config"]["kv_rule"] == "static_fraction"
    assert s["config"]["kv_fraction"] == 0.88 and s["config"]["block_size"] == 1
    b = s["benchmark"]
    assert b["concurrency"] == 4 and b["measured_requests"] + b["excluded_requests"] == 16
    assert main(base + ["--preset", "trtllm-1", "--reserve", "prompt", "--ramp", "0"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["config"]["reserve"] == "prompt" and s["config"]["chunked"] is False
    assert main(base + ["--warmup", "-1"]) == 2
    assert "warmup" in capsys.readouterr().err
