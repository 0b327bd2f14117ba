"""Offline mode against published max-throughput measurements.

Each row of ``data/measured/serving_calibration.csv`` (TensorRT-LLM v0.10 in-flight
batching, ``gptManagerBenchmark --request_rate -1``: 2000 requests queued at once, fixed
input/output lengths, chunked context, ``kv_cache_free_gpu_mem_fraction 0.9``) is
simulated with the same setup: 2000 requests at t = 0, continuous batching with chunked
prefill, ``max_batch`` 2048, 2048 tokens per iteration (the engines' ``max_num_tokens``,
as the data's README states), 64-token KV blocks, 90 % of the free memory for the KV
cache, preemption by recompute (TensorRT-LLM pauses a request by freeing its cache; it
re-runs its context later), the default profile. The error is predicted / measured - 1.
Nothing in the simulator is tuned to these rows; the shipped default profile fits its A100
16-bit entry to them together with the static rows (``calibrate --fit-serving``), so the
comparison with that profile is in sample (docs/serving.md gives the out-of-sample history).
"""

from __future__ import annotations

import csv
from importlib import resources

import numpy as np

from ..parallel import Layout
from ..specs.engine import load_engine
from .config import scheduler_config
from .cost import IterationCost
from .sim import SchedulerConfig, simulate
from .workload import Workload

# the scheduler facts of the TensorRT-LLM 0.8-0.10 engine file (its max-throughput builds)
TRTLLM_CONFIG = scheduler_config(load_engine("trtllm-0.8"))


def shipped_serving_rows() -> list[dict]:
    path = resources.files("llmroofline") / "data" / "measured" / "serving_calibration.csv"
    with path.open() as f:
        return list(csv.DictReader(f))


def offline_throughput(model, hardware, input_len: int, output_len: int, *, tp: int = 1,
                       requests: int = 2000, config: SchedulerConfig = TRTLLM_CONFIG,
                       engine=None, profile=None, **precision):
    """Output tokens/s of ``requests`` identical requests queued at t = 0 (the offline,
    max-throughput mode; module docstring), and the simulation result."""
    cost = IterationCost.of(model, hardware, layout=Layout(tp=tp), engine=engine, profile=profile,
                            max_tokens=config.max_tokens, max_batch=512, **precision)
    wl = Workload(np.zeros(requests), np.full(requests, input_len), np.full(requests, output_len),
                  "offline")
    res = simulate(workload=wl, config=config, cost=cost)
    return float(res.output_len.sum() / res.makespan_s), res


def offline_comparison(rows: list[dict] | None = None, requests: int = 2000,
                       config: SchedulerConfig = TRTLLM_CONFIG, profile=None) -> list[dict]:
    """Simulated offline output throughput vs each measured row."""
    out = []
    for r in rows if rows is not None else shipped_serving_rows():
        tp = int(r["tp"])
        I, O = int(r["input_len"]), int(r["output_len"])
        pred, res = offline_throughput(r["model"], r["hardware"], I, O, tp=tp, requests=requests,
                                       config=config, profile=profile, quant=r["weight_dtype"])
        meas = float(r["throughput_tok_s"])
        out.append({"id": r["id"], "model": r["model"], "hardware": r["hardware"], "tp": tp,
                    "input_len": I, "output_len": O, "measured_tok_s": meas,
                    "predicted_tok_s": pred, "error": pred / meas - 1,
                    "mean_batch": res.summary()["batch"]["mean"],
                    "preemptions": int(res.preemptions.sum())})
    return out
