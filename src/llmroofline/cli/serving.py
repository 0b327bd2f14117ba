"""`simulate` and `capacity`: serving simulation and capacity planning."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from .. import jsonout
from ..errors import InputError
from .common import (
    int_list,
    _device_list, _parse_seconds, app, deployment_options, engine_kwargs, err, ModelOpt, out,
    secs,
)

# setup fields of the serving commands (capacity declares its own --tp list)
_SIM_FIELDS = ("quant", "wbits", "abits", "kvbits", "flash", "cuda_graphs", "tp", "pp", "ep",
               "dp_attention",
               "gpus_per_node", "overlap", "allreduce", "offload_weights", "offload_kv",
               "host_bw", "engine", "profile")


# -- simulate, capacity (issue 9) --------------------------------------------------------------
ArrivalOpt = Annotated[Optional[str], typer.Option("--arrival", help="poisson, gamma, fixed, offline (all at t=0) or closed (needs --concurrency). Default: poisson with --rate, closed with --concurrency, else offline.")]
InDistOpt = Annotated[str, typer.Option("--input-dist", help="Prompt lengths: N, fixed:N, uniform:a,b, lognormal:mean,sigma, empirical:FILE.csv[:column].")]
OutDistOpt = Annotated[str, typer.Option("--output-dist", help="Output lengths (same syntax as --input-dist).")]
TraceOpt = Annotated[Optional[str], typer.Option("--trace", help="CSV arrival_s,input_len,output_len (replaces --rate and the distributions).")]
BurstOpt = Annotated[float, typer.Option("--burstiness", help="Gamma arrivals: shape of the gaps (1 = Poisson, < 1 burstier).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (same seed, same run).")]
PolicyOpt = Annotated[str, typer.Option("--policy", help="continuous (in-flight batching) or static (batch runs to its longest request).")]
PresetOpt = Annotated[Optional[str], typer.Option("--preset", help="Older spelling: take only the scheduler facts (batching limits, KV-memory rule, runtime memory) of this engine, e.g. vllm (max batch 256, 8192 tokens per iteration, 16-token blocks) or trtllm (= trtllm-0.8: 2048, 2048, 64, 3 GB runtime); the current releases vllm-v1, sglang, trtllm-1 also bring their mixing policy, CUDA-graph sizes and fixed costs (docs/engines.md); --max-batch, --max-tokens, --block-size override.")]
MaxBatchOpt = Annotated[Optional[int], typer.Option("--max-batch", help="Running requests per iteration (vLLM max_num_seqs). Default: from --preset.")]
MaxTokOpt = Annotated[Optional[int], typer.Option("--max-tokens", help="Tokens per iteration (vLLM max_num_batched_tokens). Default: from --preset.")]
ChunkOpt = Annotated[bool, typer.Option("--chunked/--no-chunked", help="Chunked prefill.")]
BlockOpt = Annotated[Optional[int], typer.Option("--block-size", help="KV cache tokens per block. Default: from --preset.")]
KvFracOpt = Annotated[Optional[float], typer.Option("--kv-fraction", help="Fraction in the engine's KV-memory rule (TensorRT-LLM: of the memory left after weights and activations; vLLM: of the whole device). Default: from the engine.")]
RuntimeOpt = Annotated[Optional[float], typer.Option("--runtime-gb", help="Memory the engine holds outside weights, activations and the KV cache (CUDA context, runtime buffers), decimal GB per device. Default: from the engine (vllm 0, trtllm-0.8 3).")]
ReplicasOpt = Annotated[int, typer.Option("--replicas", help="Replicas behind the --router.")]
RouterOpt = Annotated[str, typer.Option("--router", help="round-robin; least-loaded (fewest prompt tokens awaiting their first token, then fewest outstanding requests); least-requests (fewest outstanding requests).")]
PreemptOpt = Annotated[str, typer.Option("--preemption", help="When KV blocks run out: recompute (free the cache, re-prefill later) or swap (copy the cache to host memory over PCIe).")]
SwapGbOpt = Annotated[Optional[float], typer.Option("--swap-gb", help="Host swap space per device in GB (default: unlimited); a victim that does not fit is recomputed.")]
SwapBwOpt = Annotated[Optional[float], typer.Option("--swap-bw", help="Host link for swapping, GB/s per direction (default: the device's PCIe / 2).")]
ReserveOpt = Annotated[str, typer.Option("--reserve", help="KV blocks reserved at admission: prompt (vLLM; decodes may preempt) or full (prompt + output: TensorRT-LLM guaranteed-no-evict, never preempts).")]
RampOpt = Annotated[Optional[float], typer.Option("--ramp", help="Closed loop: the clients start evenly over this many seconds (0: all at t = 0). Default: one request cycle estimated at this concurrency.")]
WarmupOpt = Annotated[int, typer.Option("--warmup", help="Closed loop: requests per client before the measured window (the drain after the last request is sent is excluded too).")]
DisaggOpt = Annotated[Optional[str], typer.Option("--disaggregate", help="P:D = P prefill and D decode replicas; the KV cache is sent between them (replaces --replicas).")]
DisaggFlagOpt = Annotated[bool, typer.Option("--disagg", help="Disaggregated prefill/decode pools, each with its own layout, workers and max batch (--prefill-*/--decode-*); the KV cache goes from the prefill worker to a decode worker over the link they share.")]
PoolTpOpt = Annotated[int | None, typer.Option(help="--disagg: tensor-parallel devices per worker of this pool (default: --tp).")]
PoolEpOpt = Annotated[int | None, typer.Option(help="--disagg: expert-parallel ranks per worker of this pool, MoE models (default: --ep).")]
PoolWorkersOpt = Annotated[int, typer.Option(help="--disagg: workers in this pool (xPyD).")]
PoolBatchOpt = Annotated[int | None, typer.Option(help="--disagg: running requests per worker of this pool (default: --max-batch).")]
DraftOpt = Annotated[str | None, typer.Option("--draft", help="Speculative decoding: draft model (id, alias or config.json); decode iterations verify --draft-k tokens per sequence.")]
DraftKOpt = Annotated[int, typer.Option("--draft-k", help="Draft tokens per speculative round [1, 16].")]
AcceptOpt = Annotated[float, typer.Option("--accept", help="Acceptance rate per draft token [0, 1]: tau = (1 - a^(k+1)) / (1 - a) tokens per verify step.")]
DraftTpOpt = Annotated[int | None, typer.Option("--draft-tp", help="Tensor-parallel devices of the draft (default: the target's).")]
MtpOpt = Annotated[int | None, typer.Option("--mtp", help="Speculative decoding with the model's own MTP module as draft: N draft tokens per round (with --accept).")]
KvLinkOpt = Annotated[Optional[float], typer.Option("--kv-link-bw", help="Disaggregation: KV transfer link, GB/s per device and direction (default: the scale-up link if all replicas fit in one node, else the network).")]


def _engine_limits(engine, profile, preset, **given):
    """The run's engine (``--engine``, with ``--profile``'s kernels and ``--preset``'s
    scheduler where given) and its scheduler limits, the options given overriding them."""
    from ..specs.engine import compose_engine
    eng = compose_engine(engine, profile, preset)
    b = eng.batching
    lim = dict(max_batch=b.max_batch, max_tokens=b.max_tokens, block_size=b.block_size,
               runtime_gb=eng.runtime_gb, kv_fraction=eng.kv_memory.fraction)
    lim.update({k: v for k, v in given.items() if v is not None})
    lim["kv_rule"] = eng.kv_memory.rule
    return eng, lim


def _sim_cost(model, hardware, setup: dict, eng, cfg):
    """The iteration cost of the run: the setup options with the composed engine."""
    from ..serving import IterationCost
    kw = engine_kwargs({**setup, "engine": eng, "profile": None})
    return IterationCost.of(model, hardware, max_tokens=cfg.max_tokens, max_batch=cfg.max_batch,
                            **kw)


def _scheduler_config(policy, max_batch, max_tokens, chunked, block_size, kv_fraction,
                      preemption, swap_gb, swap_bw, reserve, runtime_gb, kv_rule="free_fraction"):
    """The CLI's scheduler options as a SchedulerConfig (``swap_bw`` in GB/s)."""
    from ..serving import SchedulerConfig
    return SchedulerConfig(policy=policy, max_batch=max_batch, max_tokens=max_tokens,
                           chunked=chunked, block_size=block_size, kv_fraction=kv_fraction,
                           preemption=preemption, swap_gb=swap_gb, reserve=reserve,
                           swap_bytes_s=None if swap_bw is None else swap_bw * 1e9,
                           runtime_gb=runtime_gb, kv_rule=kv_rule)


def _parse_pd(text: Optional[str]) -> Optional[tuple[int, int]]:
    """'2:6' -> (2, 6): prefill and decode replicas."""
    if text is None:
        return None
    parts = text.split(":")
    try:
        p, d = (int(x) for x in parts)
    except ValueError:
        raise InputError(f"disaggregate: expected P:D (prefill and decode replicas, e.g. 2:6), "
                         f"got {text!r}") from None
    if p < 1 or d < 1:
        raise InputError(f"disaggregate: P and D must be >= 1, got {text!r}")
    return p, d


def _gb_s(field: str, v: Optional[float]) -> Optional[float]:
    if v is not None and not (0 < v < float("inf")):
        raise InputError(f"{field}: must be a positive number of GB/s, got {v!r}")
    return None if v is None else v * 1e9


MAX_RATE = 1e6     # requests/s: 1 per microsecond
MIN_RATE = 1e-6    # requests/s: 1 per 11.6 days; slower rates lose TTFT to float rounding


def _check_seed(seed: int) -> None:
    if not 0 <= seed < 2**63:
        raise InputError(f"seed must be an integer in [0, 2^63), got {seed}")


def _check_rate(rate) -> None:
    if rate is not None and not MIN_RATE <= rate <= MAX_RATE:
        raise InputError(f"rate must be in [{MIN_RATE:g}, {MAX_RATE:g}] requests/s, got {rate!r}")


def _pct_row(t: Table, label: str, d: dict, fmt=None) -> None:
    fmt = fmt or secs
    t.add_row(label, *(fmt(d[k]) if d[k] is not None else "-" for k in ("mean", "p50", "p90", "p99")))


def _print_sim(s: dict, title: str) -> None:
    out.print(f"[bold]{title}[/]")
    t = Table(title_justify="left", box=None, header_style="bold")
    for col in ("", "mean", "p50", "p90", "p99"):
        t.add_column(col, justify="left" if not col else "right")
    _pct_row(t, "time to first token", s["ttft_s"])
    _pct_row(t, "time per output token", s["tpot_s"])
    _pct_row(t, "inter-token latency", s["itl_s"])
    _pct_row(t, "end-to-end latency", s["e2e_s"])
    _pct_row(t, "queueing delay", s["queue_s"])
    out.print(t)
    th, slo, kv = s["throughput"], s["slo"], s["kv"]
    u = Table(show_header=False, box=None)
    u.add_column(justify="left")
    u.add_column(justify="right")
    u.add_row("requests / duration", f"{s['requests']} in {s['duration_s']:.1f} s ({s['iterations']} iterations)")
    u.add_row("throughput over the makespan: requests/s", f"{th['requests_s']:.2f}")
    u.add_row("  input / output tokens/s", f"{th['input_tok_s']:,.0f} / {th['output_tok_s']:,.0f}")
    st = s.get("steady") or {}
    if st.get("requests_s") is not None:
        u.add_row("steady state (10-90 % of finishes): req/s", f"{st['requests_s']:.2f}"
                  + (" [red](saturated)[/]" if st.get("overloaded") else ""))
        u.add_row("  output tokens/s", f"{st['output_tok_s']:,.0f}")
    if any(slo[k] is not None for k in ("max_ttft_s", "max_tpot_s", "max_e2e_s")):
        u.add_row("SLO attained / goodput", f"{100 * slo['attained']:.1f} % / {slo['goodput_requests_s']:.2f} req/s")
    u.add_row("batch: mean / max", f"{s['batch']['mean']:.1f} / {s['batch']['max']}")
    u.add_row("KV cache: capacity, mean / max use", f"{kv['capacity_tokens']:,} tokens, "
              f"{100 * kv['mean_used']:.1f} % / {100 * kv['max_used']:.1f} %")
    u.add_row("busy / preemptions", f"{100 * s['busy']:.1f} % / {s['preemptions']}"
              + (f" ({s['swaps']} by swap)" if s.get("swaps") else ""))
    b = s.get("benchmark")
    if b:
        u.add_row("closed loop: measured / excluded requests",
                  f"{b['measured_requests']} / {b['excluded_requests']} (warm-up, drain)")
        u.add_row("closed loop: TTFT / TPOT mean, output tok/s",
                  f"{secs(b['ttft_s']['mean'])} / {secs(b['tpot_s']['mean'])}, "
                  f"{b['output_tok_s_law']:,.0f}")
    if s.get("kv_transfer_s"):
        u.add_row("KV transfer prefill -> decode: mean / p99",
                  f"{secs(s['kv_transfer_s']['mean'])} / {secs(s['kv_transfer_s']['p99'])}")
    out.print(u)


def _speculative_options(draft, draft_k, accept, draft_tp, mtp) -> dict | None:
    """The speculative-decoding options as SpeculativeCost.of keywords (None: plain)."""
    from ..decoding import check_accept, check_draft_k
    check_draft_k(draft_k), check_accept(accept)
    if mtp is not None and draft is not None:
        raise InputError("mtp: give either --mtp or --draft, not both")
    if mtp is not None:
        return {"mtp": check_draft_k(mtp), "accept": accept}
    if draft is not None:
        return {"draft": draft, "draft_k": draft_k, "accept": accept, "draft_tp": draft_tp}
    return None


def _disagg_pools(model, hardware, setup, eng, cfg, spec, pre, dec):
    """--disagg: the two Pools (layouts from --tp/--ep unless the pool's own are given)
    and their IterationCosts (the decode pool's speculative with --draft / --mtp)."""
    from dataclasses import replace

    from ..serving.disagg import Pool, pool_config, pool_cost
    kw = engine_kwargs({**setup, "engine": eng, "profile": None})
    base = kw.pop("layout")
    pools, costs = [], []
    for name, (tp, ep, workers, mb) in (("prefill", pre), ("decode", dec)):
        for f, v in (("tp", tp), ("ep", ep)):
            if v is not None and not 1 <= v <= 4096:
                raise InputError(f"{name}_{f}: must be an integer in [1, 4096], got {v}")
        pool = Pool(replace(base, tp=tp or base.tp, ep=ep or base.ep), workers, mb).check(name)
        pools.append(pool)
        costs.append(pool_cost(name, model, hardware, pool, pool_config(cfg, pool), **kw))
    dcost = costs[1]
    if spec:
        from ..serving.speculative import SpeculativeCost
        dcost = SpeculativeCost.of(dcost, step_cpu_s=cfg.step_cpu_s, **spec)
    return pools, dcost, costs[0]


@app.command("simulate")
@deployment_options(*_SIM_FIELDS)
def simulate_cmd(
    model: ModelOpt = "meta-llama/Llama-3.1-8B",
    hardware: Annotated[str, typer.Option("--hardware", "-H", help="Device id or .toml/.yaml device file.")] = "h100-sxm",
    rate: Annotated[Optional[float], typer.Option("--rate", "-r", help="Requests per second (open loop).")] = None,
    requests: Annotated[int, typer.Option("--requests", "-n", help="Number of requests.")] = 1000,
    input_dist: InDistOpt = "lognormal:1024,0.6", output_dist: OutDistOpt = "lognormal:256,0.8",
    trace: TraceOpt = None,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", "-c", help="Closed loop: N clients, each sending its next request when the previous one finishes.")] = None,
    arrival: ArrivalOpt = None, burstiness: BurstOpt = 1.0, seed: SeedOpt = 0,
    ramp: RampOpt = None, warmup: WarmupOpt = 1,
    policy: PolicyOpt = "continuous", preset: PresetOpt = None, max_batch: MaxBatchOpt = None,
    max_tokens: MaxTokOpt = None,
    chunked: Annotated[Optional[bool], typer.Option("--chunked/--no-chunked", help="Chunked prefill. Default: from the engine.")] = None,
    block_size: BlockOpt = None, kv_fraction: KvFracOpt = None,
    runtime_gb: RuntimeOpt = None,
    replicas: ReplicasOpt = 1, router: RouterOpt = "round-robin",
    preemption: PreemptOpt = "recompute", swap_gb: SwapGbOpt = None, swap_bw: SwapBwOpt = None,
    reserve: Annotated[Optional[str], typer.Option("--reserve", help="KV blocks reserved at admission: prompt (vLLM; decodes may preempt) or full (prompt + output: TensorRT-LLM guaranteed-no-evict). Default: from the engine.")] = None,
    disaggregate: DisaggOpt = None, kv_link_bw: KvLinkOpt = None,
    disagg: DisaggFlagOpt = False,
    prefill_tp: PoolTpOpt = None, prefill_ep: PoolEpOpt = None, prefill_workers: PoolWorkersOpt = 1,
    prefill_max_batch: PoolBatchOpt = None,
    decode_tp: PoolTpOpt = None, decode_ep: PoolEpOpt = None, decode_workers: PoolWorkersOpt = 1,
    decode_max_batch: PoolBatchOpt = None,
    draft: DraftOpt = None, draft_k: DraftKOpt = 4, accept: AcceptOpt = 0.7,
    draft_tp: DraftTpOpt = None, mtp: MtpOpt = None,
    max_ttft: Annotated[Optional[str], typer.Option("--max-ttft", help="SLO for goodput: TTFT limit (1s, 500ms).")] = None,
    max_tpot: Annotated[Optional[str], typer.Option("--max-tpot", help="SLO for goodput: TPOT limit (50ms).")] = None,
    csv_out: Annotated[Optional[str], typer.Option("--csv", help="Write per-request results to this CSV.")] = None,
    plot: Annotated[Optional[str], typer.Option("--plot", help="Draw batch size and KV use over time and the TTFT/TPOT distributions (.png or .svg).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    setup: dict = None,
) -> None:
    """Simulate serving a stream of requests: continuous batching, paged KV cache, SLOs."""
    from dataclasses import replace
    from ..serving import make_workload, simulate
    from ..serving.result import simulation_payload
    eng, lim = _engine_limits(setup["engine"], setup["profile"], preset, max_batch=max_batch,
                              max_tokens=max_tokens,
                              block_size=block_size, runtime_gb=runtime_gb,
                              kv_fraction=kv_fraction)
    max_batch, max_tokens, block_size = lim["max_batch"], lim["max_tokens"], lim["block_size"]
    kv_fraction = lim["kv_fraction"]
    chunked = eng.batching.chunked if chunked is None else chunked
    reserve = eng.batching.reserve if reserve is None else reserve
    if plot:
        from ..serving.plots import check_plot_path
        check_plot_path(plot)
    if csv_out:
        from ..safeio import check_out_path
        check_out_path("csv", csv_out)
    _check_seed(seed)
    _check_rate(rate)
    pd = _parse_pd(disaggregate)
    link = _gb_s("kv_link_bw", kv_link_bw)
    slo_ttft, slo_tpot = _parse_seconds("max_ttft", max_ttft), _parse_seconds("max_tpot", max_tpot)
    cfg = _scheduler_config(policy, max_batch, max_tokens, chunked, block_size, kv_fraction,
                            preemption, swap_gb, swap_bw, reserve, lim["runtime_gb"],
                            lim["kv_rule"])
    cfg = replace(cfg, mix_prefill=eng.batching.mix_prefill,
                  cuda_graph_sizes=tuple(eng.batching.cuda_graph_sizes),
                  request_fixed_s=eng.request_overhead_s, step_cpu_s=eng.iteration_overhead_s)
    spec = _speculative_options(draft, draft_k, accept, draft_tp, mtp)
    pools = None
    if disagg:
        if pd is not None:
            raise InputError("disagg: give either --disagg (pools with their own layouts) or "
                             "--disaggregate P:D, not both")
        if replicas != 1:
            raise InputError("replicas: with --disagg the workers are --prefill-workers and "
                             f"--decode-workers, got --replicas {replicas}")
        pools, cost, pcost = _disagg_pools(model, hardware, setup, eng, cfg, spec, (
            prefill_tp, prefill_ep, prefill_workers, prefill_max_batch), (
            decode_tp, decode_ep, decode_workers, decode_max_batch))
    else:
        cost = _sim_cost(model, hardware, setup, eng, cfg)
        if spec:
            from ..serving.speculative import SpeculativeCost
            cost = SpeculativeCost.of(cost, step_cpu_s=cfg.step_cpu_s, **spec)
    tp = setup["tp"]
    wl = make_workload(requests, rate=rate, arrival=arrival, input_dist=input_dist,
                       output_dist=output_dist, trace=trace, concurrency=concurrency,
                       burstiness=burstiness, seed=seed,
                       max_context=cost.model.max_position_embeddings, ramp_s=ramp,
                       warmup=warmup)
    if pools:
        from ..serving.disagg import simulate_disagg
        r = simulate_disagg(workload=wl, prefill=pools[0], decode=pools[1], config=cfg,
                            kv_link_bytes_s=link, prefill_cost=pcost, decode_cost=cost)
    else:
        r = simulate(workload=wl, config=cfg, replicas=replicas, router=router,
                     disaggregate=pd, kv_link_bytes_s=link, cost=cost)
    s = simulation_payload(r, wl, cfg, cost, slo_ttft, slo_tpot,
                           workload_spec={"rate": rate, "concurrency": concurrency,
                                          "input_dist": None if trace else input_dist,
                                          "output_dist": None if trace else output_dist,
                                          "trace": trace, "seed": seed},
                           setup={"router": router, "disaggregate": list(pd) if pd else None,
                                  "preset": preset,
                                  "disagg": {n: {"tp": p.layout.tp, "ep": p.layout.ep,
                                                 "workers": p.workers,
                                                 "max_batch": p.max_batch}
                                             for n, p in zip(("prefill", "decode"), pools)}
                                  if pools else None,
                                  "speculative": {**spec, "tokens_per_step": cost.tau}
                                  if spec else None})
    if csv_out:
        r.to_csv(csv_out)
    where = cost.roof.hw.id if tp == 1 else f"{tp} x {cost.roof.hw.id}"
    load = (f"{rate:g} req/s {wl.arrival}" if rate else f"{concurrency} clients (closed loop)"
            if concurrency else "trace" if trace else "all at once (offline)")
    if pools:
        pl, dl = pools[0].layout, pools[1].layout
        where = (f"{pools[0].workers} prefill x {pl.tp} + {pools[1].workers} decode x {dl.tp} "
                 f"{cost.roof.hw.id}")
    reps = (f" x ({pd[0]} prefill + {pd[1]} decode replicas, {router})" if pd else
            f" x {replicas} replicas ({router})" if replicas > 1 else "")
    title = (f"{cost.model.name} on {where}{reps}, {policy} batching, {load}, mean input "
             f"{wl.input_len.mean():.0f} / output {wl.output_len.mean():.0f} tokens")
    if plot:
        from ..serving.plots import plot_simulation
        plot_simulation(r, plot, title, max_ttft_s=slo_ttft, max_tpot_s=slo_tpot)
    for note in r.notes:
        err.print(f"[yellow]note:[/] {note}")
    st = s["steady"]
    if st["overloaded"] and wl.arrival not in ("offline", "closed"):
        err.print(f"[yellow]warning:[/] overloaded: requests arrive at "
                  f"{st['offered_requests_s']:.2f} req/s but this deployment completes at "
                  f"most {st['saturation_requests_s']:.2f} req/s (saturation rate); the queue "
                  "grows for the whole run, so latencies depend on its length", soft_wrap=True)
    if as_json:
        print(jsonout.dumps(s))
        return
    _print_sim(s, title)
    if plot:
        out.print(f"wrote {plot}")


@app.command("capacity")
@deployment_options(*(f for f in _SIM_FIELDS if f != "tp"))
def capacity_cmd(
    model: ModelOpt = "meta-llama/Llama-3.1-8B",
    hardware: Annotated[str, typer.Option("--hardware", "-H", help="Device id or .toml/.yaml device file; a comma-separated list searches over devices.")] = "h100-sxm",
    max_ttft_p99: Annotated[Optional[str], typer.Option("--max-ttft-p99", help="Limit on the TTFT percentile (1s, 500ms).")] = None,
    max_tpot_p99: Annotated[Optional[str], typer.Option("--max-tpot-p99", help="Limit on the TPOT percentile (50ms).")] = None,
    max_e2e_p99: Annotated[Optional[str], typer.Option("--max-e2e-p99", help="Limit on the end-to-end latency percentile.")] = None,
    percentile: Annotated[float, typer.Option("--percentile", help="Which percentile the limits apply to.")] = 99.0,
    requests: Annotated[int, typer.Option("--requests", "-n", help="Requests per trial (per replica when verifying a search).")] = 2000,
    input_dist: InDistOpt = "lognormal:1024,0.6", output_dist: OutDistOpt = "lognormal:256,0.8",
    trace: TraceOpt = None,
    arrival: Annotated[str, typer.Option("--arrival", help="poisson, gamma or fixed.")] = "poisson",
    burstiness: BurstOpt = 1.0, seed: SeedOpt = 0,
    policy: PolicyOpt = "continuous", preset: PresetOpt = None,
    max_batch: Annotated[Optional[str], typer.Option("--max-batch", help="Running requests per iteration (vLLM max_num_seqs); a list (64,128,256) searches. Default: from --preset.")] = None,
    max_tokens: Annotated[Optional[str], typer.Option("--max-tokens", help="Tokens per iteration = prefill chunk budget (vLLM max_num_batched_tokens); a list searches. Default: from --preset.")] = None,
    chunked: ChunkOpt = True, block_size: BlockOpt = None, kv_fraction: KvFracOpt = None,
    runtime_gb: RuntimeOpt = None,
    replicas: ReplicasOpt = 1, router: RouterOpt = "round-robin",
    preemption: PreemptOpt = "recompute", swap_gb: SwapGbOpt = None, swap_bw: SwapBwOpt = None,
    reserve: ReserveOpt = "prompt", disaggregate: DisaggOpt = None, kv_link_bw: KvLinkOpt = None,
    rate_target: Annotated[Optional[float], typer.Option("--rate-target", help="Search: the request rate to serve; reports the cheapest configuration meeting the SLOs there.")] = None,
    prices: Annotated[Optional[str], typer.Option("--prices", help="Search: USD per device-hour (.toml 'h100-sxm = 2.49' or .csv device,usd_per_hour); cheapest = lowest USD/h instead of fewest devices.")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Search: parallel processes (default: CPU count).")] = None,
    plot: Annotated[Optional[str], typer.Option("--plot", help="Search: the Pareto front (throughput per device vs TPOT); single configuration: the run at capacity (.png/.svg).")] = None,
    tp: Annotated[str, typer.Option("--tp", help="Tensor-parallel devices per replica; a list (1,2,4,8) searches.")] = "1",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result and every trial as JSON.")] = False,
    setup: dict = None,
) -> None:
    """Highest request rate meeting latency SLOs (bisection over the rate); with lists of
    devices / --tp / --max-batch / --max-tokens or a --rate-target, a search for the cheapest
    configuration and the Pareto front."""
    from ..serving import capacity
    eng, lim = _engine_limits(setup["engine"], setup["profile"], preset, max_batch=max_batch,
                              max_tokens=max_tokens,
                              block_size=block_size, runtime_gb=runtime_gb,
                              kv_fraction=kv_fraction)
    max_batch, max_tokens = str(lim["max_batch"]), str(lim["max_tokens"])   # lists allowed
    block_size, kv_fraction = lim["block_size"], lim["kv_fraction"]
    slo = dict(max_ttft_s=_parse_seconds("max_ttft_p99", max_ttft_p99),
               max_tpot_s=_parse_seconds("max_tpot_p99", max_tpot_p99),
               max_e2e_s=_parse_seconds("max_e2e_p99", max_e2e_p99))
    _check_seed(seed)
    hws = _device_list([hardware], None)
    tps = _int_list("tp", tp)
    mbs = _int_list("max_batch", max_batch)
    mts = _int_list("max_tokens", max_tokens)
    if plot:
        from ..serving.plots import check_plot_path
        check_plot_path(plot)
    if len(hws) > 1 or len(tps) > 1 or len(mbs) > 1 or len(mts) > 1 or rate_target or prices:
        if disaggregate or replicas != 1 or trace:
            raise InputError("capacity: a configuration search sizes replicas itself (no "
                             "--replicas, --disaggregate or --trace); run them as one configuration")
        _capacity_search(model, hws, tps, mbs, mts, slo, percentile, requests, input_dist,
                         output_dist, arrival, burstiness, seed, policy, chunked, block_size,
                         kv_fraction, preemption, swap_gb, swap_bw, reserve, router, rate_target,
                         prices, workers, plot, setup, eng, as_json, lim["runtime_gb"],
                         lim["kv_rule"])
        return
    pd = _parse_pd(disaggregate)
    cfg = _scheduler_config(policy, mbs[0], mts[0], chunked, block_size, kv_fraction,
                            preemption, swap_gb, swap_bw, reserve, lim["runtime_gb"],
                            lim["kv_rule"])
    cost = _sim_cost(model, hws[0], {**setup, "tp": tps[0]}, eng, cfg)
    c = capacity(max_ttft_s=slo["max_ttft_s"], max_tpot_s=slo["max_tpot_s"],
                 max_e2e_s=slo["max_e2e_s"], percentile=percentile, requests=requests,
                 input_dist=input_dist, output_dist=output_dist, trace=trace, seed=seed,
                 arrival=arrival, burstiness=burstiness, config=cfg, replicas=replicas, cost=cost,
                 router=router, disaggregate=pd, kv_link_bytes_s=_gb_s("kv_link_bw", kv_link_bw))
    d = c.to_dict(**slo)
    lim = ", ".join(f"{k[4:-2]} p{percentile:g} <= {secs(v)}" for k, v in slo.items() if v is not None)
    where = cost.roof.hw.id if tps[0] == 1 else f"{tps[0]} x {cost.roof.hw.id}"
    group = (f" x ({pd[0]} prefill + {pd[1]} decode)" if pd else
             f" x {replicas} ({router})" if replicas > 1 else "")
    if plot and c.result is not None:
        from ..serving.plots import plot_simulation
        plot_simulation(c.result, plot, f"{cost.model.name} on {where}{group} at capacity "
                        f"{c.rate:.2f} req/s ({lim})", max_ttft_s=slo["max_ttft_s"],
                        max_tpot_s=slo["max_tpot_s"])
    if as_json:
        print(jsonout.dumps(d))
        return
    out.print(f"[bold]{cost.model.name} on {where}[/]{group}"
              + f": highest rate with {lim}: [bold]{c.rate:.2f} req/s[/] "
              f"(offline saturation {c.saturation_rate:.2f} req/s; {len(c.trials)} trials of "
              f"{requests} requests)")
    t = Table(box=None, header_style="bold")
    for col in ("rate req/s", "meets", f"TTFT p{percentile:g}", f"TPOT p{percentile:g}", f"e2e p{percentile:g}"):
        t.add_column(col, justify="right")
    for tr in sorted(c.trials, key=lambda x: x["rate"]):
        v = list(tr.values())
        t.add_row(f"{tr['rate']:.2f}", "yes" if tr["ok"] else "[red]no[/]", secs(v[2]), secs(v[3]), secs(v[4]))
    out.print(t)
    if c.result is not None:
        _print_sim(d["at_capacity"], f"At {c.rate:.2f} req/s")
    if plot and c.result is not None:
        out.print(f"wrote {plot}")


def _int_list(field: str, text: str) -> list[int]:
    return sorted(set(int_list(field, text)))


def _capacity_search(model, hws, tps, mbs, mts, slo, percentile, requests, input_dist,
                     output_dist, arrival, burstiness, seed, policy, chunked, block_size,
                     kv_fraction, preemption, swap_gb, swap_bw, reserve, router, rate_target,
                     prices, workers, plot, setup, eng, as_json, runtime_gb=0.0,
                     kv_rule="free_fraction") -> None:
    from ..serving.search import search
    if workers is not None and workers < 1:
        raise InputError(f"workers: must be >= 1, got {workers}")
    kw = engine_kwargs({**setup, "tp": 1, "engine": eng, "profile": None})
    layout = kw.pop("layout")
    cfg = _scheduler_config(policy, mbs[0], max(mts[0], mbs[0]), chunked, block_size,
                            kv_fraction, preemption, swap_gb, swap_bw, reserve, runtime_gb,
                            kv_rule)
    s = search(model, hws, tp=tps, max_batch=mbs, max_tokens=mts, rate_target=rate_target,
               prices=prices, percentile=percentile, requests=requests, input_dist=input_dist,
               output_dist=output_dist, seed=seed, arrival=arrival, burstiness=burstiness,
               router=router, workers=workers, config=cfg, layout=layout, **slo, **kw)
    if plot:
        from ..serving.plots import plot_pareto
        plot_pareto(s, plot)
    if as_json:
        print(jsonout.dumps(s.to_dict()))
        return
    pct = f"p{percentile:g}"
    lim = ", ".join(f"{k[4:-2]} {pct} <= {secs(v)}" for k, v in slo.items() if v is not None)
    n_ok = sum(p.rate > 0 for p in s.points)
    out.print(f"[bold]{model}[/]: {len(s.points)} configurations ({n_ok} meet {lim} at some "
              f"rate), {requests} requests per trial, {s.elapsed_s:.1f} s")
    t = Table(box=None, header_style="bold")
    cols = ["configuration", "req/s per replica", "per device", f"TTFT {pct}", f"TPOT {pct}",
            "Pareto"]
    if rate_target:
        cols += ["replicas", "devices"] + (["USD/h"] if prices else []) + ["verified"]
    for c in cols:
        t.add_column(c, justify="left" if c == "configuration" else "right")
    for p in s.points:
        if p.error:
            t.add_row(p.label, f"[red]{p.error}[/]", *[""] * (len(cols) - 2))
            continue
        row = [p.label, f"{p.rate:.2f}", f"{p.per_device:.2f}", secs(p.ttft_s) if p.ttft_s else "-",
               secs(p.tpot_s) if p.tpot_s else "-", "*" if p.pareto else ""]
        if rate_target:
            row += [str(p.replicas or "-"), str(p.devices or "-")]
            if prices:
                row.append(f"{p.cost_usd_h:.2f}" if p.cost_usd_h is not None else "-")
            row.append({True: "yes", False: "[red]no[/]", None: ""}[p.verified])
        t.add_row(*row)
    out.print(t)
    if s.front:
        out.print("Pareto front (lower TPOT <-> more requests/s per device): "
                  + ", ".join(p.label for p in s.front))
    if rate_target:
        b = s.best
        if b is not None:
            cost = f", {b.cost_usd_h:.2f} USD/h" if b.cost_usd_h is not None else ""
            v = next(x for x in reversed(s.verifications) if x["ok"] and x["config"] == b.label
                     and x["replicas"] == b.replicas)
            out.print(f"[bold]cheapest at {rate_target:g} req/s: {b.replicas} x {b.label} = "
                      f"{b.devices} devices{cost}[/] (simulated at {rate_target:g} req/s, "
                      f"{router} router: TTFT {pct} {secs(v[f'ttft_{pct}_s'])}, TPOT {pct} "
                      f"{secs(v[f'tpot_{pct}_s'])})")
    for note in s.notes:
        err.print(f"[yellow]note:[/] {note}")
    if plot:
        out.print(f"wrote {plot}")


