"""Serving simulation (issue 9): iteration cost against analyze, queueing laws, scheduler
invariants, determinism, bad inputs, and the offline mode against published measurements."""

from __future__ import annotations

import numpy as np
import pytest

import llmroofline as lr
from llmroofline.errors import InputError
from llmroofline.parallel import Layout
from llmroofline.serving import (IterationCost, SchedulerConfig, Workload, capacity,
                                 make_workload, simulate)
from llmroofline.serving.offline import offline_comparison, shipped_serving_rows

MODEL, HW = "llama-3.1-8b", "h100-sxm"


@pytest.fixture(scope="module")
def cost():
    return IterationCost.of(MODEL, HW)


def _fixed(n, I, O, arrival=None):
    a = np.zeros(n) if arrival is None else arrival
    return Workload(a, np.full(n, I), np.full(n, O), "offline")


# -- iteration cost ------------------------------------------------------------------------
@pytest.mark.parametrize("model,hw,kw", [
    (MODEL, HW, {}), ("llama-2-7b", "a100-sxm-80gb", {"flash": False}),
    ("mixtral-8x7b", HW, {"layout": Layout(tp=2)}), ("gemma-2-9b", "a100-sxm-80gb", {}),
    ("llama-3.1-8b", "h100-sxm", {"quant": "w4a16"}),    # 16-bit kernels: the a16 entry
    (MODEL, HW, {"cuda_graphs": True}),    # decode iterations from graphs, prefill eager
])
def test_iteration_cost_equals_analyze(model, hw, kw):
    c = IterationCost.of(model, hw, max_batch=512, **kw)
    flash = kw.get("flash", True)
    for B, I in ((1, 1024), (64, 300), (7, 5000)):
        a = lr.analyze(model, hw, B, I, 2, flash=flash, layout=kw.get("layout"),
                       quant=kw.get("quant"), cuda_graphs=kw.get("cuda_graphs", False))
        dec = c.time(np.ones(B), np.full(B, I + 1.0))
        pre = c.time(np.full(B, float(I)), np.full(B, float(I)), prefill=True)
        assert dec == pytest.approx(float(a.decode.total_time_s), rel=1e-9)
        assert pre == pytest.approx(float(a.ttft_s), rel=1e-9)
        # a run of decode iterations = the iterations one by one
        run = c.decode_run(np.arange(B) + I + 1.0, 5)
        one = [c.time(np.ones(B), np.arange(B) + I + 1.0 + j) for j in range(5)]
        assert run == pytest.approx(one, rel=1e-12)


def test_iteration_cost_mixed_batch_is_sum_of_attention(cost):
    """A mixed batch costs more than its decode rows alone and less than running the
    chunk and the decodes as two iterations (weights are streamed once)."""
    q = np.array([1, 1, 1, 512.0])
    L = np.array([100, 2000, 30000, 1024.0])
    mixed = cost.time(q, L)
    split = cost.time(q[:3], L[:3]) + cost.time(q[3:], L[3:])
    assert cost.time(q[:3], L[:3]) < mixed < split


# -- simulation vs analyze ------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["continuous", "static"])
def test_no_contention_reproduces_analyze(cost, policy):
    B, I, O = 8, 512, 64
    cfg = SchedulerConfig(policy=policy, max_batch=B, max_tokens=B * I)
    r = simulate(workload=_fixed(B, I, O), config=cfg, cost=cost)
    a = lr.analyze(MODEL, HW, B, I, O)
    assert r.ttft_s == pytest.approx(np.full(B, float(a.ttft_s)), rel=1e-9)
    assert r.e2e_s == pytest.approx(np.full(B, float(a.e2e_s)), rel=1e-9)
    assert r.tpot_s == pytest.approx(np.full(B, float(a.tpot_s)), rel=1e-9)


def test_low_rate_ttft_is_prefill_and_tpot_is_batch1_decode(cost):
    wl = make_workload(60, rate=0.05, input_dist="fixed:1000", output_dist="fixed:100", seed=3)
    r = simulate(workload=wl, cost=cost)
    a = lr.analyze(MODEL, HW, 1, 1000, 100)
    assert np.median(r.ttft_s) == pytest.approx(float(a.ttft_s), rel=1e-6)
    assert np.median(r.tpot_s) == pytest.approx(float(a.tpot_s), rel=1e-6)
    assert r.summary()["queue_s"]["p50"] == pytest.approx(0.0, abs=1e-12)


# -- queueing laws -------------------------------------------------------------------------
def test_littles_law(cost):
    """Mean number of running requests (from the iteration log) = arrival rate x mean
    time in service (first scheduled to finish), for a stable load."""
    rate = 6.0
    wl = make_workload(3000, rate=rate, input_dist="lognormal:512,0.5",
                       output_dist="lognormal:128,0.5", seed=1)
    r = simulate(workload=wl, cost=cost)
    t0, t1 = 50.0, float(wl.arrival_s[-1])            # steady window
    start, dur, rows = r.iter_start_s, r.iter_time_s, r.iter_rows
    w = np.clip(np.minimum(start + dur, t1) - np.maximum(start, t0), 0, None)
    in_service = float((rows * w).sum() / (t1 - t0))
    little = rate * float(np.mean(r.finish_s - r.first_scheduled_s))
    assert in_service == pytest.approx(little, rel=0.05)
    # and the whole system: time-average of requests present = rate x mean e2e
    t = np.linspace(t0, t1, 20001)
    present = (np.searchsorted(np.sort(r.arrival_s), t, side="right")
               - np.searchsorted(np.sort(r.finish_s), t, side="right"))
    assert present.mean() == pytest.approx(rate * r.e2e_s.mean(), rel=0.05)


def test_throughput_saturates_and_ttft_explodes(cost):
    out, ttft = [], []
    for rate in (2, 8, 30, 60):
        wl = make_workload(1500, rate=rate, seed=2)
        s = simulate(workload=wl, cost=cost).summary()
        out.append(s["throughput"]["requests_s"])
        ttft.append(s["ttft_s"]["p99"])
    assert out[1] == pytest.approx(8, rel=0.15)           # below capacity: keeps up
    assert out[3] < 1.25 * out[2]                          # saturated
    assert out[3] < 40                                     # far below the offered 60
    assert ttft[3] > 20 * ttft[0] and ttft[3] > 5.0       # queue grows past capacity


def test_static_batching_worse_than_continuous(cost):
    wl = make_workload(600, rate=6, seed=4)
    slo = dict(max_ttft_s=2.0, max_tpot_s=0.05)
    cont = simulate(workload=wl, cost=cost).summary(**slo)
    stat = simulate(workload=wl, cost=cost, config=SchedulerConfig(policy="static")).summary(**slo)
    assert stat["slo"]["goodput_requests_s"] <= cont["slo"]["goodput_requests_s"]
    assert stat["e2e_s"]["mean"] > cont["e2e_s"]["mean"]


# -- scheduler invariants --------------------------------------------------------------------
def test_preemption_when_memory_is_tight_and_all_complete(cost):
    wl = make_workload(300, rate=50, input_dist="uniform:200,600", output_dist="uniform:100,400",
                       seed=5)
    cfg = SchedulerConfig(kv_blocks=400, block_size=16)           # 6400 tokens of KV
    r = simulate(workload=wl, cost=cost, config=cfg)
    assert r.preemptions.sum() > 0
    assert np.all(np.isfinite(r.finish_s)) and np.all(r.finish_s >= r.first_token_s)
    assert np.all(r.first_token_s > r.arrival_s)
    assert r.iter_kv_tokens.max() <= 400 * 16                       # never over-committed
    # every token emitted exactly once: decode tokens in the log = sum(output - 1)
    assert r.itl_weight.sum() == pytest.approx(float((r.output_len - 1).sum()))
    # fast path and step-by-step agree
    slow = simulate(workload=wl, cost=cost, config=cfg, fast=False)
    assert slow.finish_s == pytest.approx(r.finish_s, rel=1e-9)


def test_sliding_window_model_fast_equals_step_with_preemption():
    """Gemma-2 (local/global layers) takes the per-row attention cost path: the fast path's
    vectorized decode stretches must match the step-by-step reference there too."""
    gcost = IterationCost.of("google/gemma-2-9b", HW)
    wl = make_workload(200, rate=40, input_dist="uniform:200,6000", output_dist="uniform:50,300",
                       seed=9)
    cfg = SchedulerConfig(kv_blocks=600, block_size=16)
    fast = simulate(workload=wl, cost=gcost, config=cfg)
    slow = simulate(workload=wl, cost=gcost, config=cfg, fast=False)
    assert fast.preemptions.sum() > 0
    assert slow.finish_s == pytest.approx(fast.finish_s, rel=1e-9)
    assert fast.itl_weight.sum() == float((wl.output_len - 1).sum())


def test_fast_path_emits_first_token_of_prompt_chunked_to_its_last_token(cost):
    """A chunk can stop one token short of a prompt: that request then looks like a decode
    row (one token left) but has not emitted yet. A decode stretch must not swallow its
    first token (it used to, leaving TTFT NaN in the fast path only)."""
    wl = make_workload(200, rate=25, seed=1)
    cfg = SchedulerConfig(max_batch=16, max_tokens=512)
    fast = simulate(workload=wl, cost=cost, config=cfg)
    slow = simulate(workload=wl, cost=cost, config=cfg, fast=False)
    assert np.all(np.isfinite(fast.first_token_s))
    assert fast.first_token_s == pytest.approx(slow.first_token_s, rel=1e-9)
    assert fast.finish_s == pytest.approx(slow.finish_s, rel=1e-9)
    assert fast.itl_weight.sum() == float((wl.output_len - 1).sum())


def test_tokens_accounted_and_no_request_lost(cost):
    wl = make_workload(500, rate=15, seed=6)
    r = simulate(workload=wl, cost=cost)
    assert r.iter_tokens.sum() == (wl.input_len.sum() + (wl.output_len - 1).sum())
    assert r.itl_weight.sum() == float((wl.output_len - 1).sum())
    assert np.all(np.isfinite(r.finish_s))


def test_closed_loop_concurrency(cost):
    wl = make_workload(400, concurrency=16, input_dist="fixed:256", output_dist="fixed:64", seed=0)
    r = simulate(workload=wl, cost=cost)
    assert r.iter_rows.max() <= 16
    assert np.sort(r.arrival_s)[16] > 0            # later requests wait for a finish
    s = r.summary()
    assert s["mean_in_system"] == pytest.approx(16, rel=0.05)


def test_deterministic_with_seed(cost):
    a = simulate(workload=make_workload(300, rate=10, seed=7), cost=cost)
    b = simulate(workload=make_workload(300, rate=10, seed=7), cost=cost)
    c = simulate(workload=make_workload(300, rate=10, seed=8), cost=cost)
    assert np.array_equal(a.finish_s, b.finish_s)
    assert not np.array_equal(a.finish_s, c.finish_s)


def test_replicas_round_robin(cost):
    wl = make_workload(800, rate=40, seed=9)
    one = simulate(workload=wl, cost=cost).summary()
    four = simulate(workload=wl, cost=cost, replicas=4).summary()
    assert four["ttft_s"]["p99"] < one["ttft_s"]["p99"]
    assert np.all(np.isfinite(simulate(workload=wl, cost=cost, replicas=4).finish_s))


def test_capacity_meets_slo(cost):
    c = capacity(cost=cost, max_ttft_s=1.0, max_tpot_s=0.05, requests=600)
    assert 0 < c.rate
    s = c.result.summary()
    assert s["ttft_s"]["p99"] <= 1.0 and s["tpot_s"]["p99"] <= 0.05
    assert any(not t["ok"] and t["rate"] > c.rate for t in c.trials)


def test_trace_and_csv(tmp_path, cost):
    tr = tmp_path / "t.csv"
    tr.write_text("arrival_s,input_len,output_len\n0.5,100,10\n0.0,200,20\n1.0,50,5\n")
    wl = make_workload(trace=tr, max_context=131072)
    assert list(wl.input_len) == [200, 100, 50]
    r = simulate(workload=wl, cost=cost)
    out = tmp_path / "r.csv"
    r.to_csv(out)
    assert len(out.read_text().splitlines()) == 4


# -- bad inputs ------------------------------------------------------------------------------
@pytest.mark.parametrize("kw,field", [
    (dict(rate=0), "rate"), (dict(rate=-1), "rate"),
    (dict(rate=1, input_dist="lognormal:1024"), "input_dist"),
    (dict(rate=1, output_dist="gauss:3"), "output_dist"),
    (dict(rate=1, input_dist="uniform:10,2"), "input_dist"),
    (dict(arrival="closed"), "concurrency"),
])
def test_bad_workload(kw, field):
    with pytest.raises(InputError, match=field):
        make_workload(10, **kw)


def test_bad_trace_and_context(tmp_path):
    empty = tmp_path / "e.csv"
    empty.write_text("arrival_s,input_len,output_len\n")
    with pytest.raises(InputError, match="no requests"):
        make_workload(trace=empty)
    long = tmp_path / "l.csv"
    long.write_text("arrival_s,input_len,output_len\n0,4000,200\n")
    with pytest.raises(InputError, match="context"):
        make_workload(trace=long, max_context=4096)
    with pytest.raises(InputError, match="max_tokens"):
        SchedulerConfig(max_batch=512, max_tokens=256)
    with pytest.raises(InputError, match="pp"):
        IterationCost.of(MODEL, HW, layout=Layout(pp=2))


def test_request_larger_than_kv_memory(cost):
    with pytest.raises(InputError, match="memory"):
        simulate(workload=_fixed(2, 5000, 10), cost=cost, config=SchedulerConfig(kv_blocks=100))


# -- offline mode vs TensorRT-LLM max-throughput rows -----------------------------------------
def test_offline_vs_trtllm_rows():
    """Simulated offline output throughput vs published TensorRT-LLM v0.10 in-flight-batching
    rows (A100, 1 GPU, 128-token prompts). The default profile's A100 16-bit entry is fitted
    to these rows together with the static ones (calibrate --fit-serving), so this is an
    in-sample check of the simulator's plumbing; docs/serving.md reports all 36 and the
    out-of-sample history. Band: every row within 30 %, median within 12 %."""
    rows = [r for r in shipped_serving_rows() if r["tp"] == "1" and r["input_len"] == "128"]
    res = offline_comparison(rows)
    err = np.array([r["error"] for r in res])
    print({r["model"] + f" {r['input_len']}/{r['output_len']}": round(r["error"], 3) for r in res})
    assert np.all(np.abs(err) < 0.3)
    assert np.median(np.abs(err)) < 0.12



def test_offline_gqa_rows_need_the_kv_reuse_term():
    """docs/serving.md: with ideal GQA reuse (each shared KV head read once per step) the
    Llama-3-8B 128/2048 row, the worst 1-GPU row, is over-predicted by more than 30 %
    whatever the scheduler does (lifting the memory limit or swapping makes it worse); the
    default profile's gqa_kv_reuse (fitted to static and serving rows) brings it within
    25 % of the measurement."""
    from dataclasses import replace
    from llmroofline.serving.offline import TRTLLM_CONFIG
    from llmroofline.specs.profile import Profile, load_profile
    row = [r for r in shipped_serving_rows() if r["model"] == "meta-llama/Meta-Llama-3-8B"
           and r["input_len"] == "128" and r["output_len"] == "2048"]
    d = load_profile("default")
    assert all(e.gqa_kv_reuse < 0.95 for k, e in d.families.items() if k.startswith("ampere"))
    full = Profile("full-reuse", {k: replace(e, gqa_kv_reuse=1.0) for k, e in d.families.items()},
                   replace(d.fallback, gqa_kv_reuse=1.0))
    err = {k: offline_comparison(row, requests=400, config=c, profile=p)[0]["error"]
           for k, c, p in (("full", TRTLLM_CONFIG, full),
                           ("full-unlimited", replace(TRTLLM_CONFIG, kv_blocks=10**7), full),
                           ("full-swap", replace(TRTLLM_CONFIG, preemption="swap"), full),
                           ("default", TRTLLM_CONFIG, d))}
    print(err)
    assert err["full"] > 0.3
    assert err["full-unlimited"] > err["full"] and err["full-swap"] > err["full"]
    assert abs(err["default"]) < 0.25


# -- plots --------------------------------------------------------------------------------------
def test_plot_simulation(tmp_path, cost):
    pytest.importorskip("matplotlib")
    from llmroofline.serving.plots import plot_simulation, time_binned
    r = simulate(workload=make_workload(300, rate=20, seed=11), cost=cost, replicas=2)
    out = plot_simulation(r, tmp_path / "s.png", "t", max_ttft_s=1.0, max_tpot_s=0.05)
    assert out.stat().st_size > 10_000
    # the time binning is exact: the binned mean x span = sum(rows x duration) per replica
    m = r.iter_replica == 0
    edges = np.linspace(0, r.finish_s.max(), 97)
    b = time_binned(r.iter_start_s[m], r.iter_time_s[m], r.iter_rows[m], edges)
    assert (b * np.diff(edges)).sum() == pytest.approx(float((r.iter_rows * r.iter_time_s)[m].sum()))
    with pytest.raises(InputError, match="plot"):
        plot_simulation(r, tmp_path / "s.jpg")


# -- routers -------------------------------------------------------------------------------------
def test_least_loaded_beats_round_robin_on_tail_ttft(cost):
    """Bursty (gamma, shape 0.25) arrivals of varied prompts over 4 replicas: routing each
    request to the replica with the fewest prompt tokens awaiting their first token cuts the
    TTFT tail that round-robin builds when long prompts land behind each other."""
    wl = make_workload(1500, rate=40, arrival="gamma", burstiness=0.25, seed=1,
                       input_dist="lognormal:1024,1.0", output_dist="lognormal:256,1.0")
    rr = simulate(workload=wl, cost=cost, replicas=4).summary()
    ll = simulate(workload=wl, cost=cost, replicas=4, router="least-loaded").summary()
    assert ll["ttft_s"]["p99"] < 0.8 * rr["ttft_s"]["p99"]
    assert ll["ttft_s"]["p90"] < rr["ttft_s"]["p90"]
    assert ll["tpot_s"]["p99"] <= 1.02 * rr["tpot_s"]["p99"]


@pytest.mark.parametrize("router", ["least-loaded", "least-requests"])
def test_coupled_replicas_fast_equals_step(cost, router):
    """The coupled (state-aware) router advances replicas to each arrival; the fast path's
    decode stretches must not change anything, even with preemptions and swaps."""
    wl = make_workload(400, rate=30, arrival="gamma", burstiness=0.3, seed=3,
                       input_dist="lognormal:800,0.8", output_dist="lognormal:200,0.8")
    for cfg in (SchedulerConfig(kv_blocks=800), SchedulerConfig(kv_blocks=800, preemption="swap")):
        a = simulate(workload=wl, cost=cost, replicas=3, router=router, config=cfg)
        b = simulate(workload=wl, cost=cost, replicas=3, router=router, config=cfg, fast=False)
        assert np.array_equal(a.replica, b.replica)
        assert a.finish_s == pytest.approx(b.finish_s, rel=1e-9)
        assert a.itl_weight.sum() == float((wl.output_len - 1).sum())
        assert a.iter_kv_tokens.max() <= 800 * 16
        assert set(np.unique(a.replica)) == {0, 1, 2}
    with pytest.raises(InputError, match="router"):
        simulate(workload=make_workload(20, concurrency=4), cost=cost, replicas=2, router=router)


# -- preemption by swap --------------------------------------------------------------------------
def test_swap_vs_recompute_for_long_prompts(cost):
    """8k-token prompts, outputs that outgrow the KV cache: recomputing a preempted request
    re-prefills ~9k tokens (~0.2 s on an H100), swapping moves its cache over PCIe (~18 ms
    each way at 64 GB/s), so swap wins; over a 2 GB/s host link the direction flips; and a
    host swap space too small for one request falls back to recompute."""
    n, I, O = 60, 8000, 1500
    wl = _fixed(n, I, O)
    run = {name: simulate(workload=wl, cost=cost, config=SchedulerConfig(kv_blocks=4000, **kw))
           for name, kw in (("recompute", {}), ("swap", {"preemption": "swap"}),
                            ("slow", {"preemption": "swap", "swap_bytes_s": 2e9}),
                            ("small", {"preemption": "swap", "swap_gb": 1.0}))}
    rec, swap, slow, small = (run[k] for k in ("recompute", "swap", "slow", "small"))
    npre = rec.preemptions.sum()
    assert npre > 0 and swap.preemptions.sum() == npre == swap.swaps.sum()
    busy = {k: float(v.iter_time_s.sum()) for k, v in run.items()}
    saved = (busy["recompute"] - busy["swap"]) / npre
    assert 0.1 < saved < 0.4                                    # per preemption, seconds
    assert swap.iter_tokens.sum() == n * (I + O - 1)            # nothing computed twice
    assert rec.iter_tokens.sum() > n * (I + O - 1)
    assert swap.summary()["e2e_s"]["mean"] < rec.summary()["e2e_s"]["mean"]
    assert busy["slow"] > busy["recompute"]
    assert small.swaps.sum() == 0 and busy["small"] == pytest.approx(busy["recompute"])
    # short prompts: the two cost about the same per preemption (the contexts are short)
    short = _fixed(300, 32, 200)
    r2 = {m: simulate(workload=short, cost=cost, config=SchedulerConfig(kv_blocks=100, preemption=m))
          for m in ("recompute", "swap")}
    saved_short = (r2["recompute"].iter_time_s.sum() - r2["swap"].iter_time_s.sum()) / \
        r2["recompute"].preemptions.sum()
    assert abs(saved_short) < 0.05 * saved


# -- prefill/decode disaggregation -----------------------------------------------------------------
def test_disaggregation_lowers_tpot_tail_at_equal_devices(cost):
    """Prefill-heavy load (4k prompts, 128-token outputs) on 4 H100s: 2 prefill + 2 decode
    replicas keep decode iterations free of prefill chunks, so TPOT p99 (and the ITL tail)
    drops well below 4 colocated replicas (least-loaded router) at the same throughput; the
    price is TTFT (half the devices prefill)."""
    wl = make_workload(1000, rate=12, seed=0, input_dist="lognormal:4096,0.5",
                       output_dist="lognormal:128,0.5")
    co = simulate(workload=wl, cost=cost, replicas=4, router="least-loaded")
    dis = simulate(workload=wl, cost=cost, disaggregate=(2, 2), router="least-loaded")
    a, b = co.summary(), dis.summary()
    assert b["tpot_s"]["p99"] < 0.7 * a["tpot_s"]["p99"]
    assert b["itl_s"]["p99"] < 0.3 * a["itl_s"]["p99"]
    assert b["throughput"]["requests_s"] == pytest.approx(a["throughput"]["requests_s"], rel=0.02)
    assert b["ttft_s"]["p50"] > a["ttft_s"]["p50"]
    # every request: prompt on a prefill replica, the rest on a decode replica
    assert dis.roles == ("prefill", "prefill", "decode", "decode")
    assert np.all(np.isfinite(dis.finish_s)) and np.all(dis.replica[wl.output_len > 1] >= 2)
    assert dis.iter_tokens.sum() == wl.input_len.sum() + (wl.output_len - 1).sum()
    assert dis.itl_weight.sum() == float((wl.output_len - 1).sum())
    pre = dis.iter_replica < 2
    assert dis.iter_rows[~pre].max() <= 256 and np.all(dis.iter_tokens[~pre] == dis.iter_rows[~pre])
    # KV transfer = KV bytes / link (NVLink 450 GB/s per direction) + one hop
    x = cost.kv_bytes_per_token * wl.input_len / 450e9 + 2e-6
    m = wl.output_len > 1
    assert dis.kv_transfer_s[m] == pytest.approx(x[m], rel=1e-9)
    # a slow link shows up in TPOT (the first decode waits for the transfer)
    slow = simulate(workload=wl, cost=cost, disaggregate=(2, 2), router="least-loaded",
                    kv_link_bytes_s=1e9)
    assert np.nanmean(slow.tpot_s) > np.nanmean(dis.tpot_s) + 0.5 * np.mean(
        (cost.kv_bytes_per_token * wl.input_len / 1e9)[m] / (wl.output_len[m] - 1))


def test_disaggregation_bad_inputs(cost):
    wl = make_workload(20, rate=5, seed=0)
    for kw, field in ((dict(disaggregate=(0, 2)), "disaggregate"),
                      (dict(disaggregate=(1, 1), replicas=3), "replicas"),
                      (dict(disaggregate=(1, 1), config=SchedulerConfig(policy="static")), "disaggregate"),
                      (dict(disaggregate=(1, 1), kv_link_bytes_s=0.0), "kv_link")):
        with pytest.raises(InputError, match=field):
            simulate(workload=wl, cost=cost, **kw)
    with pytest.raises(InputError, match="disaggregate"):
        simulate(workload=make_workload(20, concurrency=4), cost=cost, disaggregate=(1, 1))


# -- configuration search ----------------------------------------------------------------------
def test_search_cheapest_configuration_and_pareto_front(tmp_path):
    from llmroofline.serving.search import search
    slo = dict(max_ttft_s=1.0, max_tpot_s=0.05)
    s = search(MODEL, [HW], tp=[1, 2, 3], max_batch=[64, 256], max_tokens=[128, 8192],
               rate_target=25, requests=500, **slo)
    by = {p.label: p for p in s.points}
    assert "tp" in by["TP3 h100-sxm b64 t8192"].error           # 32 heads: TP 3 cannot split
    assert "max_tokens" in by["h100-sxm b256 t128"].error
    ok = [p for p in s.points if p.rate > 0]
    assert len(ok) == 6
    for p in ok:    # each configuration meets the SLOs at its capacity
        assert p.ttft_s <= 1.0 and p.tpot_s <= 0.05
    # the front: no point dominates a front point, every other point is dominated
    for p in ok:
        dom = [q for q in ok if q.tpot_s <= p.tpot_s and q.per_device >= p.per_device
               and (q.tpot_s < p.tpot_s or q.per_device > p.per_device)]
        assert p.pareto == (not dom)
    b = s.best
    assert b is not None and b.verified and b.devices == b.replicas * b.tp
    assert any(v["ok"] and v["config"] == b.label and v["replicas"] == b.replicas
               for v in s.verifications)
    if b.replicas > 1:      # one replica fewer was simulated and missed the SLOs
        assert any(not v["ok"] and v["config"] == b.label and v["replicas"] == b.replicas - 1
                   for v in s.verifications)
    # every configuration estimated cheaper than the answer was simulated and missed
    for p in ok:
        if p.devices is not None and p.devices < b.devices:
            assert p.verified is False
    pytest.importorskip("matplotlib")
    from llmroofline.serving.plots import plot_pareto
    assert plot_pareto(s, tmp_path / "p.png").stat().st_size > 10_000


def test_search_prices_and_parallel_workers(tmp_path):
    from llmroofline.serving.search import search
    prices = tmp_path / "p.csv"
    prices.write_text("device,usd_per_hour\nh100-sxm,9.0\na100-sxm-80gb,1.0\n")
    kw = dict(tp=[1], max_batch=[256], max_tokens=[8192], rate_target=10, requests=400,
              max_ttft_s=1.0, max_tpot_s=0.05)
    s = search(MODEL, [HW, "a100-sxm-80gb"], prices=str(prices), workers=2, **kw)
    assert s.best.hardware == "a100-sxm-80gb"          # slower, but 9x cheaper per hour
    assert s.best.cost_usd_h == pytest.approx(s.best.devices * 1.0)
    one = search(MODEL, [HW, "a100-sxm-80gb"], prices={"h100-sxm": 9.0, "a100-sxm-80gb": 1.0},
                 workers=1, **kw)
    assert [p.rate for p in one.points] == [p.rate for p in s.points]
    with pytest.raises(InputError, match="SLO"):
        search(MODEL, [HW], tp=[1], max_batch=[64], max_tokens=[64])


# -- command line ----------------------------------------------------------------------------------
def test_cli_simulate_and_capacity_search(tmp_path, capsys):
    import json
    from llmroofline.cli import main
    base = ["--model", MODEL, "--hardware", HW]
    assert main(["simulate", *base, "--rate", "5", "-n", "120", "--disaggregate", "1:1",
                 "--router", "least-loaded", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["config"]["disaggregate"] == [1, 1] and d["replicas"] == 2
    assert d["kv_transfer_s"]["mean"] > 0
    png = tmp_path / "s.png"
    assert main(["simulate", *base, "--rate", "20", "-n", "200", "--preemption", "swap",
                 "--kv-fraction", "0.02", "--plot", str(png), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["swaps"] == d["preemptions"] > 0 and png.stat().st_size > 10_000
    assert main(["capacity", *base, "--tp", "1,2", "--max-batch", "64", "--rate-target", "8",
                 "-n", "300", "--max-tpot-p99", "50ms", "--workers", "1", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert len(d["points"]) == 2 and d["best"]["verified"] and d["pareto_front"]
    capsys.readouterr()
    for args in (["simulate", "--disaggregate", "2x3"], ["simulate", "--router", "nearest"],
                 ["simulate", "--plot", str(tmp_path / "s.jpg")],
                 ["capacity", "--tp", "1,x", "--max-tpot-p99", "50ms"],
                 ["capacity", "--tp", "1,2", "--replicas", "2", "--max-tpot-p99", "50ms"]):
        assert main(args) == 2
    e = capsys.readouterr().err
    for word in ("disaggregate", "router", "plot", "tp", "search"):
        assert word in e


def test_cli_preset_trtllm_reproduces_the_published_setup(capsys):
    """`--preset trtllm` is the engine build of the TensorRT-LLM max-throughput runs (max
    batch 2048, 2048 tokens per iteration, 64-token blocks): Llama-3-8B on an A100 at
    FP16, 2000 requests of 128 + 2048 tokens queued at once, measured 3,386 tok/s
    (serving_calibration.csv). An explicit flag overrides the preset."""
    import json
    from llmroofline.cli import main
    base = ["simulate", "-m", "meta-llama/Meta-Llama-3-8B", "-H", "a100-sxm-80gb", "-q", "fp16",
            "--arrival", "offline", "-n", "2000", "--input-dist", "128", "--output-dist", "2048",
            "--json"]
    runs = {}
    for name, extra in (("trtllm", ["--preset", "trtllm"]), ("vllm", []),
                        ("override", ["--preset", "trtllm", "--max-batch", "256"])):
        assert main(base + extra) == 0
        runs[name] = json.loads(capsys.readouterr().out)
    cfg = runs["trtllm"]["config"]
    assert (cfg["max_batch"], cfg["max_tokens"], cfg["block_size"], cfg["runtime_gb"]) == \
        (2048, 2048, 64, 3.0)
    assert runs["vllm"]["config"]["runtime_gb"] == 0.0
    assert (runs["vllm"]["config"]["max_batch"], runs["vllm"]["config"]["block_size"]) == (256, 16)
    assert runs["override"]["config"]["max_batch"] == 256
    tok_s = {k: r["throughput"]["output_tok_s"] for k, r in runs.items()}
    assert abs(tok_s["trtllm"] / 3386 - 1) < 0.15
    assert runs["override"]["batch"]["max"] <= 256 < runs["trtllm"]["batch"]["max"]
    assert main(base + ["--preset", "sglangx"]) == 2
    assert "preset" in capsys.readouterr().err


def test_runtime_memory_comes_out_of_the_kv_pool():
    """KV capacity = kv_fraction x (memory - weights - activations - runtime) / KV bytes per
    token. Llama-2-70B at TP 2 on A100 80GB, FP16: KV per token per device = 2 (K, V) x
    80 layers x 4 KV heads x 128 x 2 bytes = 163,840. 3 GB of runtime memory takes 0.9 x 3e9 / 163,840 =
    16,479.5 tokens from the pool."""
    from llmroofline.serving.config import SchedulerConfig, kv_blocks_of
    c = IterationCost.of("meta-llama/Llama-2-70b-hf", "a100-sxm-80gb", layout=Layout(tp=2),
                         max_tokens=2048, max_batch=64)
    assert c.kv_bytes_per_token == 163_840
    free0 = c.kv_capacity_tokens(2048, 0.9)
    free3 = c.kv_capacity_tokens(2048, 0.9, 3e9)
    assert free0 - free3 == pytest.approx(0.9 * 3e9 / 163_840, abs=1.0)
    base = SchedulerConfig(max_batch=64, max_tokens=2048, block_size=64)
    b0 = kv_blocks_of(c, base)
    b3 = kv_blocks_of(c, SchedulerConfig(max_batch=64, max_tokens=2048, block_size=64,
                                         runtime_gb=3.0))
    assert b0 == free0 // 64 and b3 == free3 // 64
    with pytest.raises(lr.InputError, match="runtime_gb"):
        SchedulerConfig(runtime_gb=-1.0)
