"""`fleet`: fleet-scale configuration search (serving/fleet.py)."""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer
from rich.table import Table

from .. import jsonout
from ..errors import InputError
from .common import _device_list, app, int_list, deployment_options, engine_kwargs, err, ModelOpt, out, secs

_FIELDS = ("quant", "wbits", "abits", "flash", "gpus_per_node", "overlap", "allreduce",
           "engine", "profile")


def _ints(field: str, text: str) -> tuple[int, ...]:
    return tuple(int_list(field, text))


def _words(text: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in str(text).split(",") if w.strip())


@app.command("fleet")
@deployment_options(*_FIELDS)
def fleet_cmd(
    model: ModelOpt = "meta-llama/Llama-3.1-8B",
    hardware: Annotated[str, typer.Option("--hardware", "-H", help="Devices, comma-separated.")] = "h100-sxm",
    tp: Annotated[str, typer.Option("--tp", help="Tensor-parallel degrees (1,2,4,8).")] = "1,2,4,8",
    pp: Annotated[str, typer.Option("--pp", help="Pipeline stages (the simulator refuses > 1).")] = "1",
    ep: Annotated[str, typer.Option("--ep", help="Expert-parallel degrees (divide TP).")] = "1",
    attention_dp: Annotated[str, typer.Option("--attention-dp", help="Attention data-parallel groups per replica (MoE models on engines that run them: trtllm-1, sglang, vllm-v1).")] = "1",
    replicas_per_node: Annotated[Optional[str], typer.Option("--replicas-per-node", help="Replicas packed per node (default: as many as fit).")] = None,
    max_batch: Annotated[str, typer.Option("--max-batch", help="Max running requests (vLLM max_num_seqs).")] = "64,128,256",
    max_tokens: Annotated[str, typer.Option("--max-tokens", help="Tokens per iteration = chunked-prefill budget (max_num_batched_tokens).")] = "2048,8192",
    chunked: Annotated[str, typer.Option("--chunked", help="Chunked prefill: on, off or on,off.")] = "on",
    kv_dtype: Annotated[str, typer.Option("--kv-dtype", help="KV-cache dtypes: auto, fp8, int8, fp16, bf16, fp4.")] = "auto",
    cuda_graphs: Annotated[str, typer.Option("--cuda-graphs", help="CUDA graphs: on, off or on,off.")] = "off",
    mtp: Annotated[str, typer.Option("--mtp", help="Speculative decoding: off, on or on,off (the model's MTP modules, or --draft).")] = "off",
    draft: Annotated[Optional[str], typer.Option("--draft", help="Draft model for --mtp on (models without MTP modules).")] = None,
    draft_k: Annotated[int, typer.Option("--draft-k", help="Draft tokens per speculative round [1, 16].")] = 2,
    accept: Annotated[float, typer.Option("--accept", help="Acceptance rate per draft token [0, 1].")] = 0.7,
    disagg: Annotated[Optional[str], typer.Option("--disagg", help="Disaggregated xPyD ratios (1:1,1:3), an analytic estimate.")] = None,
    slo: Annotated[str, typer.Option("--slo", help="Percentile limits: ttft_p99=2s,tpot_p99=30ms,e2e_p90=60s.")] = "ttft_p99=2s,tpot_p99=50ms",
    input_dist: Annotated[str, typer.Option("--input-dist", help="Prompt lengths (as simulate).")] = "lognormal:1024,0.6",
    output_dist: Annotated[str, typer.Option("--output-dist", help="Output lengths.")] = "lognormal:256,0.8",
    arrival: Annotated[str, typer.Option("--arrival", help="poisson, gamma, fixed (open loop) or closed (searches clients).")] = "poisson",
    requests: Annotated[int, typer.Option("--requests", "-n", help="Requests per confirming trial.")] = 1000,
    short_requests: Annotated[int, typer.Option("--short-requests", help="Requests per short trial (fast path).")] = 300,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    rate_target: Annotated[Optional[float], typer.Option("--rate-target", help="Request rate to serve: the cheapest fleet.")] = None,
    prices: Annotated[Optional[str], typer.Option("--prices", help="USD per device-hour (.toml/.csv, as rank --prices): rank by tokens per USD.")] = None,
    exhaustive: Annotated[bool, typer.Option("--exhaustive", help="Full bisection of every configuration (no fast path).")] = False,
    executor: Annotated[str, typer.Option("--executor", help="local (process pool) or ray (a Ray cluster; pip install \"llmroofline[cluster]\").")] = "local",
    workers: Annotated[Optional[int], typer.Option("--workers", help="Local processes (default: the cores).")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Allow a space over 100,000 configurations or more workers than cores.")] = False,
    top: Annotated[int, typer.Option("--top", help="Rows to print.")] = 15,
    out_dir: Annotated[Optional[str], typer.Option("--out", help="Write launch and benchmark commands of the Pareto front (and the best) into this folder: one folder per configuration, index.json.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print everything as JSON.")] = False,
    setup: dict = None,
) -> None:
    """Search hundreds of serving configurations with queueing: best per GPU/USD, Pareto front."""
    from ..serving.fleet import RAY_HINT, Space, fleet_search
    if executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise InputError(RAY_HINT) from None
    if workers is not None and workers > (os.cpu_count() or 1) and not yes:
        raise InputError(f"workers: {workers} is more than the {os.cpu_count()} cores here; "
                         "pass --yes to oversubscribe")
    space = Space(hardware=tuple(_device_list([hardware], None)), tp=_ints("tp", tp),
                  pp=_ints("pp", pp), ep=_ints("ep", ep),
                  attention_dp=_ints("attention_dp", attention_dp),
                  replicas_per_node=_ints("replicas_per_node", replicas_per_node)
                  if replicas_per_node else None,
                  max_batch=_ints("max_batch", max_batch), max_tokens=_ints("max_tokens", max_tokens),
                  chunked=_words(chunked), kv_dtype=_words(kv_dtype),
                  cuda_graphs=_words(cuda_graphs), mtp=_words(mtp),
                  disagg=_words(disagg) if disagg else ())
    kw = engine_kwargs({**setup, "tp": 1, "pp": 1, "ep": 1})
    kw.pop("cuda_graphs", None)
    kw.pop("kvbits", None)
    if out_dir:   # before the search: an engine without launch commands fails at once
        from ..launch import launcher_of
        from ..specs.engine import load_engine
        try:
            launcher_of(load_engine(kw.get("engine")).name)
        except InputError as e:
            raise InputError(f"out: {e}; pass --engine vllm-v1, sglang or trtllm-1") from None
    s = fleet_search(model, space, slo=slo, input_dist=input_dist, output_dist=output_dist,
                     arrival=arrival, seed=seed, requests=requests, short_requests=short_requests,
                     rate_target=rate_target, prices=prices, fast=not exhaustive,
                     executor=executor, workers=workers, yes=yes, draft=draft, draft_k=draft_k,
                     accept=accept, **kw)
    index = None
    if out_dir:
        from ..serving.fleet import write_launch
        index = write_launch(s, out_dir)
    if as_json:
        print(jsonout.dumps({**s.to_dict(), "launch_index": index}))
        return
    st = s.stats
    out.print(f"[bold]{model}[/]: {st['configurations']} configurations in {st['cpu_s']:.1f} s CPU "
              f"({st['wall_s']:.1f} s wall, {st['configs_per_cpu_s']:.0f} per CPU second): "
              f"{st['confirmed']} confirmed, {st['simulated']} short-simulated, {st['pruned']} "
              f"pruned, {st['analytic']} analytic, {st['infeasible']} infeasible, "
              f"{st['refused']} refused; {st['simulations']} distinct bisections")
    y = "tok/USD" if s.objective == "usd" else "tok/s/GPU"
    t = Table(box=None, header_style="bold")
    cols = ["configuration", "status", "req/s/replica", y, "tok/s/user",
            *(f"{k}" for k in s.slo), "Pareto"]
    if rate_target:
        cols += ["GPUs", "USD/h"]
    for c in cols:
        t.add_column(c, justify="left" if c in ("configuration", "status") else "right")
    ok = sorted((p for p in s.points if p.rate > 0),
                key=lambda p: -(p.per_usd if s.objective == "usd" else p.per_gpu))
    for p in ok[:top]:
        row = [p.label, p.status, f"{p.rate:.2f}",
               f"{(p.per_usd if s.objective == 'usd' else p.per_gpu):,.0f}", f"{p.per_user:.1f}",
               *(secs(p.metrics[k]) if k in p.metrics else "-" for k in s.slo),
               "*" if p.pareto else ""]
        if rate_target:
            row += [str(p.gpus), f"{p.cost_usd_h:.2f}" if p.cost_usd_h is not None else "-"]
        t.add_row(*row)
    out.print(t)
    refused = sorted({p.error for p in s.points if p.status == "refused"})
    for r in refused:
        err.print(f"[yellow]refused:[/] {r}")
    if s.best is not None:
        b = s.best
        where = (f" = {b.gpus} GPUs" + (f", {b.cost_usd_h:.2f} USD/h" if b.cost_usd_h else "")
                 if rate_target else "")
        out.print(f"[bold]best: {b.label}[/] ({b.rate:.2f} req/s per replica{where})")
    for n in s.notes:
        err.print(f"[yellow]note:[/] {n}")
    if index is not None:
        done = [r["folder"] for r in index["configurations"] if r["folder"]]
        out.print(f"wrote {len(done)} launch folder(s) and index.json in {out_dir}",
                  highlight=False)
