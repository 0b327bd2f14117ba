"""Launch commands for a resolved deployment, and the benchmark that measures it.

For a :class:`~llmroofline.deployment.Deployment` (model x device x precision x layout x
engine) and a closed-loop :class:`Workload` (concurrency, ISL / OSL, request count),
:func:`launch_commands` writes the server command of the engine's real counterpart

- ``vllm serve MODEL ...`` (engines ``vllm``, ``vllm-v1``),
- ``python -m sglang.launch_server --model-path MODEL ...`` (engine ``sglang``),
- ``trtllm-serve MODEL ... --extra_llm_api_options extra_llm_api_options.yaml``
  (engine ``trtllm-1``, PyTorch backend),

and the benchmark that sends the same workload (``vllm bench serve``,
``python -m sglang.bench_serving``, ``genai-perf profile``; ``aiperf profile`` for every
engine). Every argument name the generator may write is declared once, in :data:`ARGS`:
the flag, what it means, which Deployment / engine / workload field feeds it and the
release it is documented for. :func:`check_command` parses a command against that table
(argparse built from it), and the tests parse every generated command with it.

:func:`setup_record` is the plain record of the deployment and workload that
``launch --out`` writes as ``setup.toml`` and ``validate`` / ``calibrate --results`` read
back (:func:`read_setup`, :func:`setup_deployment`).
"""

from __future__ import annotations

import argparse
import json
import shlex
from dataclasses import dataclass
from typing import Any

from .errors import InputError

# engine (data/engines/*.toml) -> launcher; an engine file named "<key>-..." (e.g. one that
# `calibrate --results` wrote from vllm-v1) takes the launcher of its key
LAUNCHERS = {"vllm": "vllm", "vllm-v1": "vllm", "sglang": "sglang", "trtllm-1": "trtllm"}
# tool names of each launcher: (server, its YAML file or None, benchmark)
TOOLS = {"vllm": ("vllm serve", None, "vllm bench serve"),
         "sglang": ("sglang.launch_server", None, "sglang.bench_serving"),
         "trtllm": ("trtllm-serve", "trtllm-serve yaml", "genai-perf profile")}
# the words before the flags, and how many positional arguments follow them (the model)
PROGRAMS = {"vllm serve": (("vllm", "serve"), 1),
            "sglang.launch_server": (("python", "-m", "sglang.launch_server"), 0),
            "trtllm-serve": (("trtllm-serve",), 1),
            "vllm bench serve": (("vllm", "bench", "serve"), 0),
            "sglang.bench_serving": (("python", "-m", "sglang.bench_serving"), 0),
            "genai-perf profile": (("genai-perf", "profile"), 0),
            "aiperf profile": (("aiperf", "profile"), 0)}
PORTS = {"vllm": 8000, "sglang": 30000, "trtllm": 8000}

V_VLLM = "vLLM 0.10-0.19"
V_SGL = "SGLang 0.4-0.5"
V_TRT = "TensorRT-LLM 1.0-1.3 (trtllm-serve, PyTorch backend)"
V_GP = "genai-perf 0.0.13+ (Triton 25.x)"
V_AIP = "aiperf 0.1-0.3"


@dataclass(frozen=True)
class Arg:
    """One argument a generated command may carry (flag or YAML key path)."""

    tool: str          # a key of PROGRAMS, or "trtllm-serve yaml"
    flag: str          # "--tensor-parallel-size"; YAML: dotted key path
    meaning: str
    source: str        # the Deployment / engine / workload field that feeds it
    release: str       # the release it is documented for
    switch: bool = False   # a flag without a value


A = Arg
ARGS: tuple[Arg, ...] = (
    # -- vllm serve MODEL
    A("vllm serve", "--host", "address to listen on", "launch option host", V_VLLM),
    A("vllm serve", "--port", "port to listen on", "launch option port", V_VLLM),
    A("vllm serve", "--served-model-name", "model name in the API", "model.name", V_VLLM),
    A("vllm serve", "--tensor-parallel-size", "tensor-parallel GPUs", "layout.tp", V_VLLM),
    A("vllm serve", "--pipeline-parallel-size", "pipeline stages", "layout.pp", V_VLLM),
    A("vllm serve", "--data-parallel-size", "data-parallel ranks (for MoE models the attention "
      "data-parallel groups, experts over all ranks)", "layout.dp x layout.dp_attention",
      V_VLLM),
    A("vllm serve", "--enable-expert-parallel", "MoE experts split over the TP x DP ranks",
      "layout.ep", V_VLLM, switch=True),
    A("vllm serve", "--speculative-config", "speculative decoding as JSON: method (mtp or "
      "draft_model), num_speculative_tokens, model (the draft)", "fleet mtp axis", V_VLLM),
    A("vllm serve", "--max-num-seqs", "running requests per iteration",
      "engine.batching.max_batch", V_VLLM),
    A("vllm serve", "--max-num-batched-tokens", "tokens per iteration",
      "engine.batching.max_tokens", V_VLLM),
    A("vllm serve", "--block-size", "KV tokens per paged block", "engine.batching.block_size",
      V_VLLM),
    A("vllm serve", "--gpu-memory-utilization", "share of the device the engine may use "
      "(weights + activations + KV pool)", "engine.kv_memory.fraction (total_fraction)", V_VLLM),
    A("vllm serve", "--kv-cache-dtype", "KV cache format (fp8 = e4m3)", "precision.kvbits",
      V_VLLM),
    A("vllm serve", "--quantization", "online weight quantization (fp8: dynamic per-tensor)",
      "precision.wbits/abits (not native)", V_VLLM),
    A("vllm serve", "--no-enable-chunked-prefill", "chunked prefill off (a prompt runs whole "
      "in one iteration)", "engine.batching.chunked", V_VLLM, switch=True),
    A("vllm serve", "--no-enable-prefix-caching", "prefix caching off (the simulator reuses "
      "no KV across requests)", "fixed", V_VLLM, switch=True),
    # -- python -m sglang.launch_server
    A("sglang.launch_server", "--model-path", "checkpoint (hub id or path)", "model.name", V_SGL),
    A("sglang.launch_server", "--host", "address to listen on", "launch option host", V_SGL),
    A("sglang.launch_server", "--port", "port to listen on", "launch option port", V_SGL),
    A("sglang.launch_server", "--tp-size", "tensor-parallel GPUs (with --enable-dp-attention: "
      "all ranks of the replica)", "layout.tp (x layout.dp_attention)", V_SGL),
    A("sglang.launch_server", "--pp-size", "pipeline stages", "layout.pp", V_SGL),
    A("sglang.launch_server", "--dp-size", "data-parallel replicas, or with "
      "--enable-dp-attention the attention groups", "layout.dp or layout.dp_attention", V_SGL),
    A("sglang.launch_server", "--enable-dp-attention", "attention data-parallel groups, "
      "experts over all ranks", "layout.dp_attention", V_SGL, switch=True),
    A("sglang.launch_server", "--speculative-algorithm", "NEXTN (the model's MTP modules) or "
      "STANDALONE (a draft model)", "fleet mtp axis", V_SGL),
    A("sglang.launch_server", "--speculative-draft-model-path", "the draft model",
      "fleet draft", V_SGL),
    A("sglang.launch_server", "--speculative-num-steps", "draft steps per round", "draft_k",
      V_SGL),
    A("sglang.launch_server", "--speculative-eagle-topk", "draft branches per step (1: a "
      "chain)", "fixed", V_SGL),
    A("sglang.launch_server", "--speculative-num-draft-tokens", "tokens verified per round "
      "(steps + 1 for a chain)", "draft_k + 1", V_SGL),
    A("sglang.launch_server", "--ep-size", "expert-parallel ranks", "layout.ep", V_SGL),
    A("sglang.launch_server", "--max-running-requests", "running requests per iteration",
      "engine.batching.max_batch", V_SGL),
    A("sglang.launch_server", "--chunked-prefill-size", "prefill tokens per chunk (-1: off)",
      "engine.batching.max_tokens, .chunked", V_SGL),
    A("sglang.launch_server", "--page-size", "KV tokens per page", "engine.batching.block_size",
      V_SGL),
    A("sglang.launch_server", "--mem-fraction-static", "share of the device for weights + KV "
      "pool", "engine.kv_memory.fraction (static_fraction)", V_SGL),
    A("sglang.launch_server", "--kv-cache-dtype", "KV cache format (fp8_e4m3)",
      "precision.kvbits", V_SGL),
    A("sglang.launch_server", "--quantization", "online weight quantization (fp8)",
      "precision.wbits/abits (not native)", V_SGL),
    A("sglang.launch_server", "--enable-mixed-chunk", "prefill chunks share iterations with "
      "decodes", "engine.batching.mix_prefill", V_SGL, switch=True),
    A("sglang.launch_server", "--disable-radix-cache", "prefix caching off",
      "fixed", V_SGL, switch=True),
    # -- trtllm-serve MODEL
    A("trtllm-serve", "--host", "address to listen on", "launch option host", V_TRT),
    A("trtllm-serve", "--port", "port to listen on", "launch option port", V_TRT),
    A("trtllm-serve", "--backend", "runtime (pytorch)", "fixed", V_TRT),
    A("trtllm-serve", "--tp_size", "tensor-parallel GPUs (with enable_attention_dp: all "
      "ranks of the replica)", "layout.tp (x layout.dp_attention)", V_TRT),
    A("trtllm-serve", "--pp_size", "pipeline stages", "layout.pp", V_TRT),
    A("trtllm-serve", "--ep_size", "expert-parallel ranks", "layout.ep", V_TRT),
    A("trtllm-serve", "--max_batch_size", "running requests per iteration",
      "engine.batching.max_batch", V_TRT),
    A("trtllm-serve", "--max_num_tokens", "tokens per iteration", "engine.batching.max_tokens",
      V_TRT),
    A("trtllm-serve", "--kv_cache_free_gpu_memory_fraction", "share of the free memory for "
      "the KV pool (also set in the YAML)", "engine.kv_memory.fraction (free_fraction)", V_TRT),
    A("trtllm-serve", "--extra_llm_api_options", "YAML file of LLM API options", "the YAML",
      V_TRT),
    # -- its --extra_llm_api_options YAML (LLM API keys)
    A("trtllm-serve yaml", "kv_cache_config.free_gpu_memory_fraction", "share of the free "
      "memory for the KV pool", "engine.kv_memory.fraction (free_fraction)", V_TRT),
    A("trtllm-serve yaml", "kv_cache_config.dtype", "KV cache format (fp8)", "precision.kvbits",
      V_TRT),
    A("trtllm-serve yaml", "kv_cache_config.enable_block_reuse", "prefix reuse (off)", "fixed",
      V_TRT),
    A("trtllm-serve yaml", "enable_attention_dp", "attention data-parallel over the TP ranks",
      "layout.dp_attention", V_TRT),
    A("trtllm-serve yaml", "speculative_config.decoding_type", "MTP (the model's modules) or "
      "DraftTarget (a draft model)", "fleet mtp axis", V_TRT),
    A("trtllm-serve yaml", "speculative_config.num_nextn_predict_layers", "MTP draft tokens "
      "per round", "draft_k", V_TRT),
    A("trtllm-serve yaml", "speculative_config.max_draft_len", "draft tokens per round",
      "draft_k", V_TRT),
    A("trtllm-serve yaml", "speculative_config.speculative_model_dir", "the draft model",
      "fleet draft", V_TRT),
    A("trtllm-serve yaml", "enable_chunked_prefill", "chunked prefill",
      "engine.batching.chunked", V_TRT),
    A("trtllm-serve yaml", "scheduler_config.capacity_scheduler_policy", "GUARANTEED_NO_EVICT "
      "(reserve full) or MAX_UTILIZATION (reserve prompt)", "engine.batching.reserve", V_TRT),
    A("trtllm-serve yaml", "cuda_graph_config.enable_padding", "pad decode batches to a "
      "captured size", "cuda_graphs", V_TRT),
    A("trtllm-serve yaml", "cuda_graph_config.max_batch_size", "largest captured batch",
      "engine.batching.cuda_graph_sizes / max_batch", V_TRT),
    # -- vllm bench serve
    A("vllm bench serve", "--backend", "client protocol (vllm = OpenAI completions)", "fixed",
      V_VLLM),
    A("vllm bench serve", "--base-url", "server URL", "launch option host, port", V_VLLM),
    A("vllm bench serve", "--endpoint", "API path", "fixed", V_VLLM),
    A("vllm bench serve", "--model", "model name sent and tokenizer", "model.name", V_VLLM),
    A("vllm bench serve", "--dataset-name", "random: synthetic prompts", "fixed", V_VLLM),
    A("vllm bench serve", "--random-input-len", "input tokens per request", "workload.isl",
      V_VLLM),
    A("vllm bench serve", "--random-output-len", "output tokens per request", "workload.osl",
      V_VLLM),
    A("vllm bench serve", "--random-range-ratio", "length spread (0: fixed lengths)", "fixed",
      V_VLLM),
    A("vllm bench serve", "--num-prompts", "requests sent", "workload.requests", V_VLLM),
    A("vllm bench serve", "--max-concurrency", "clients (closed loop)", "workload.concurrency",
      V_VLLM),
    A("vllm bench serve", "--request-rate", "inf: every client sends at once", "fixed", V_VLLM),
    A("vllm bench serve", "--ignore-eos", "always generate OSL tokens", "fixed", V_VLLM,
      switch=True),
    A("vllm bench serve", "--percentile-metrics", "metrics with percentiles", "fixed", V_VLLM),
    A("vllm bench serve", "--metric-percentiles", "percentiles reported", "fixed", V_VLLM),
    A("vllm bench serve", "--save-result", "write the result JSON", "fixed", V_VLLM,
      switch=True),
    A("vllm bench serve", "--result-dir", "folder of the result JSON", "launch option out",
      V_VLLM),
    A("vllm bench serve", "--result-filename", "name of the result JSON", "fixed", V_VLLM),
    # -- python -m sglang.bench_serving
    A("sglang.bench_serving", "--backend", "client protocol (sglang)", "fixed", V_SGL),
    A("sglang.bench_serving", "--host", "server address", "launch option host", V_SGL),
    A("sglang.bench_serving", "--port", "server port", "launch option port", V_SGL),
    A("sglang.bench_serving", "--model", "model name and tokenizer", "model.name", V_SGL),
    A("sglang.bench_serving", "--dataset-name", "random: synthetic prompts", "fixed", V_SGL),
    A("sglang.bench_serving", "--random-input-len", "input tokens per request", "workload.isl",
      V_SGL),
    A("sglang.bench_serving", "--random-output-len", "output tokens per request",
      "workload.osl", V_SGL),
    A("sglang.bench_serving", "--random-range-ratio", "lengths in [ratio x len, len] (1: "
      "fixed)", "fixed", V_SGL),
    A("sglang.bench_serving", "--num-prompts", "requests sent", "workload.requests", V_SGL),
    A("sglang.bench_serving", "--max-concurrency", "clients (closed loop)",
      "workload.concurrency", V_SGL),
    A("sglang.bench_serving", "--request-rate", "inf: every client sends at once", "fixed",
      V_SGL),
    A("sglang.bench_serving", "--output-file", "JSONL file, one result object appended per "
      "run", "launch option out", V_SGL),
    # -- genai-perf profile (and aiperf profile: the same names)
    *(A(tool, flag, meaning, source, rel, switch=sw)
      for tool, rel in (("genai-perf profile", V_GP), ("aiperf profile", V_AIP))
      for flag, meaning, source, sw in (
          ("--model", "model name sent", "model.name", False),
          ("--tokenizer", "tokenizer of the synthetic prompts", "model.name", False),
          ("--url", "server host:port", "launch option host, port", False),
          ("--endpoint-type", "chat: /v1/chat/completions", "fixed", False),
          ("--streaming", "stream tokens (needed for TTFT and inter-token latency)", "fixed",
           True),
          ("--synthetic-input-tokens-mean", "input tokens per request", "workload.isl", False),
          ("--synthetic-input-tokens-stddev", "0: fixed input length", "fixed", False),
          ("--output-tokens-mean", "output tokens per request", "workload.osl", False),
          ("--output-tokens-stddev", "0: fixed output length", "fixed", False),
          ("--extra-inputs", "request fields: ignore_eos, min_tokens", "workload.osl", False),
          ("--concurrency", "clients (closed loop)", "workload.concurrency", False),
          ("--request-count", "requests sent", "workload.requests", False),
          ("--warmup-request-count", "requests before the measurement", "fixed", False),
          ("--artifact-dir", "folder of the profile export", "launch option out", False))),
)
del A


def args_of(tool: str) -> dict[str, Arg]:
    """The declared arguments of one tool (:data:`ARGS`), by flag."""
    return {a.flag: a for a in ARGS if a.tool == tool}


def _parser(tool: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=tool, add_help=False, exit_on_error=False,
                                allow_abbrev=False)
    for _ in range(PROGRAMS[tool][1]):
        p.add_argument("positional")
    for a in args_of(tool).values():
        # repeated flags (--extra-inputs) append; a switch takes no value
        p.add_argument(a.flag, action="store_true" if a.switch else "append")
    return p


def check_command(tool: str, argv: list[str]) -> dict[str, Any]:
    """Parse ``argv`` (the whole command, program words included) against the declared
    arguments of ``tool``; {flag: value or [values]}; InputError naming an unknown flag."""
    words, _ = PROGRAMS[tool]
    if tuple(argv[:len(words)]) != words:
        raise InputError(f"{tool}: the command must start with {' '.join(words)!r}")
    rest = argv[len(words):]
    try:
        ns, unknown = _parser(tool).parse_known_args(rest)
    except (argparse.ArgumentError, SystemExit) as e:
        raise InputError(f"{tool}: {e}") from None
    if unknown:
        raise InputError(f"{tool}: argument(s) not in the table of {tool}: {' '.join(unknown)}")
    got = {}
    for a in args_of(tool).values():
        v = getattr(ns, a.flag.lstrip("-").replace("-", "_"))
        if v not in (None, False):
            got[a.flag] = v if a.switch or len(v) > 1 else v[0]
    return got


def check_yaml(options: dict) -> None:
    """Every key path of a trtllm-serve ``--extra_llm_api_options`` dict is declared."""
    known = args_of("trtllm-serve yaml")

    def walk(d: dict, pre: str = ""):
        for k, v in d.items():
            path = pre + k
            if isinstance(v, dict):
                yield from walk(v, path + ".")
            else:
                yield path
    bad = [p for p in walk(options) if p not in known]
    if bad:
        raise InputError(f"trtllm-serve yaml: key(s) not in the table: {', '.join(bad)}")


@dataclass(frozen=True)
class Workload:
    """A closed loop: ``concurrency`` clients, each sending its next request of ``isl``
    input and ``osl`` output tokens when the previous one finishes, ``requests`` in all."""

    concurrency: int
    isl: int
    osl: int
    requests: int

    def __post_init__(self) -> None:
        for f, lo, hi in (("concurrency", 1, 100_000), ("isl", 1, 10_000_000),
                          ("osl", 1, 10_000_000), ("requests", 1, 10_000_000)):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise InputError(f"workload: {f} must be an integer in [{lo}, {hi}], got {v!r}")


def launcher_of(engine_name: str) -> str:
    """'vllm', 'sglang' or 'trtllm' for an engine name; one line naming the engines that
    have launchers otherwise."""
    n = engine_name.lower()
    for key in sorted(LAUNCHERS, key=len, reverse=True):
        if n == key or n.startswith(key + "-"):
            return LAUNCHERS[key]
    raise InputError(f"launch: engine {engine_name!r} has no launcher; engines with launch "
                     f"commands: {', '.join(LAUNCHERS)} (or an engine file named after one, "
                     "e.g. vllm-v1-mycluster)")


def _kv_dtype(launcher: str, kvbits: int) -> str | None:
    if kvbits == 16:
        return None
    if kvbits == 8:
        return {"vllm": "fp8", "sglang": "fp8_e4m3", "trtllm": "fp8"}[launcher]
    raise InputError(f"launch: a {kvbits}-bit KV cache has no {launcher} setting (it serves "
                     "16-bit or FP8 KV caches); use --kvbits 16 or 8")


def _quant_flag(d, launcher: str, notes: list[str]) -> str | None:
    """The online-quantization value for the weights, or None (16-bit, or a release that
    ships quantized: the engine reads its format from the checkpoint)."""
    p = d.precision
    if p.native or getattr(d.model, "native_quant", None) is not None or p.wbits >= 16:
        return None
    if p.wbits == 8 and p.abits == 8 and not p.int8 and launcher in ("vllm", "sglang"):
        return "fp8"
    notes.append(f"weights W{p.wbits}A{p.abits}: serve a checkpoint quantized to this format "
                 f"(no online {launcher} flag does it); the command names {d.model.name}")
    return None


def _values(d, overrides: dict) -> dict:
    """The batching values the commands carry: the engine's, ``overrides`` winning."""
    e = d.engine
    v = dict(max_batch=e.batching.max_batch, max_tokens=e.batching.max_tokens,
             kv_fraction=e.kv_memory.fraction, block_size=e.batching.block_size,
             chunked=bool(e.batching.chunked))
    v.update({k: x for k, x in overrides.items() if x is not None})
    return v


def _speculative(launcher: str, spec: dict | None) -> tuple[list[str], dict | None]:
    """Server flags (vllm, sglang) or the YAML ``speculative_config`` (trtllm) of ``spec``
    = {"mtp": k} (the model's MTP modules) or {"draft": model, "draft_k": k}."""
    if not spec:
        return [], None
    k = int(spec.get("mtp") or spec.get("draft_k") or 1)
    draft = spec.get("draft") if not spec.get("mtp") else None
    if draft is not None and not isinstance(draft, str):
        draft = getattr(draft, "name", str(draft))
    if launcher == "vllm":
        conf = {"method": "mtp", "num_speculative_tokens": k} if draft is None else \
            {"method": "draft_model", "model": draft, "num_speculative_tokens": k}
        return ["--speculative-config", json.dumps(conf)], None
    if launcher == "sglang":
        head = ["--speculative-algorithm", "NEXTN"] if draft is None else \
            ["--speculative-algorithm", "STANDALONE", "--speculative-draft-model-path", draft]
        return head + ["--speculative-num-steps", str(k), "--speculative-eagle-topk", "1",
                       "--speculative-num-draft-tokens", str(k + 1)], None
    conf = {"decoding_type": "MTP", "num_nextn_predict_layers": k} if draft is None else \
        {"decoding_type": "DraftTarget", "max_draft_len": k, "speculative_model_dir": draft}
    return [], conf


def _serve(d, launcher: str, model: str, v: dict, host: str, port: int,
           yaml_name: str, notes: list[str], spec: dict | None = None
           ) -> tuple[list[str], dict | None]:
    lay, b = d.layout, d.engine.batching
    chunked = v["chunked"]
    kv = _kv_dtype(launcher, d.precision.kvbits)
    q = _quant_flag(d, launcher, notes)
    rule = d.engine.kv_memory.rule
    want = {"vllm": "total_fraction", "sglang": "static_fraction", "trtllm": "free_fraction"}
    if rule != want[launcher]:
        notes.append(f"engine {d.engine.name} sizes its KV pool by {rule}; {launcher}'s "
                     f"fraction means {want[launcher]}: the value {v['kv_fraction']:g} is "
                     "passed as it is")
    adp = lay.dp_attention
    if lay.ep > 1 and launcher == "vllm" and lay.ep != lay.tp * lay.dp * adp:
        notes.append(f"vLLM's expert parallelism spans all TP x DP ranks "
                     f"({lay.tp * lay.dp * adp}); "
                     f"ep {lay.ep} is not that")
    yaml = None
    if launcher == "vllm":
        cmd = ["vllm", "serve", model, "--host", host, "--port", str(port),
               "--tensor-parallel-size", str(lay.tp)]
        cmd += ["--pipeline-parallel-size", str(lay.pp)] if lay.pp > 1 else []
        cmd += ["--data-parallel-size", str(lay.dp * adp)] if lay.dp * adp > 1 else []
        cmd += ["--enable-expert-parallel"] if lay.ep > 1 else []
        cmd += ["--max-num-seqs", str(v["max_batch"]),
                "--max-num-batched-tokens", str(v["max_tokens"]),
                "--block-size", str(v["block_size"]),
                "--gpu-memory-utilization", f"{v['kv_fraction']:g}"]
        cmd += [] if chunked else ["--no-enable-chunked-prefill"]
        cmd += ["--kv-cache-dtype", kv] if kv else []
        cmd += ["--quantization", q] if q else []
        cmd += ["--no-enable-prefix-caching"] + _speculative(launcher, spec)[0]
    elif launcher == "sglang":
        cmd = ["python", "-m", "sglang.launch_server", "--model-path", model, "--host", host,
               "--port", str(port), "--tp-size", str(lay.tp * adp)]
        cmd += ["--pp-size", str(lay.pp)] if lay.pp > 1 else []
        if adp > 1 and lay.dp > 1:
            raise InputError("launch: sglang's --dp-size is either replicas or attention "
                             "groups; give dp or dp_attention, not both")
        cmd += ["--dp-size", str(lay.dp)] if lay.dp > 1 else []
        cmd += ["--dp-size", str(adp), "--enable-dp-attention"] if adp > 1 else []
        cmd += ["--ep-size", str(lay.ep)] if lay.ep > 1 else []
        cmd += ["--max-running-requests", str(v["max_batch"]),
                "--chunked-prefill-size", str(v["max_tokens"] if chunked else -1),
                "--page-size", str(v["block_size"]),
                "--mem-fraction-static", f"{v['kv_fraction']:g}"]
        cmd += ["--kv-cache-dtype", kv] if kv else []
        cmd += ["--quantization", q] if q else []
        cmd += ["--enable-mixed-chunk"] if b.mix_prefill else []
        cmd += ["--disable-radix-cache"] + _speculative(launcher, spec)[0]
    else:
        cmd = ["trtllm-serve", model, "--host", host, "--port", str(port), "--backend",
               "pytorch", "--tp_size", str(lay.tp * adp)]
        cmd += ["--pp_size", str(lay.pp)] if lay.pp > 1 else []
        cmd += ["--ep_size", str(lay.ep)] if lay.ep > 1 else []
        cmd += ["--max_batch_size", str(v["max_batch"]), "--max_num_tokens",
                str(v["max_tokens"]), "--kv_cache_free_gpu_memory_fraction",
                f"{v['kv_fraction']:g}", "--extra_llm_api_options", yaml_name]
        if lay.dp > 1:
            notes.append(f"trtllm-serve runs one replica: start {lay.dp} of them behind a "
                         "load balancer (dp)")
        kvc: dict[str, Any] = {"free_gpu_memory_fraction": float(v["kv_fraction"]),
                               "enable_block_reuse": False}
        if kv:
            kvc["dtype"] = kv
        yaml = {"kv_cache_config": kvc, "enable_chunked_prefill": bool(chunked),
                "scheduler_config": {"capacity_scheduler_policy":
                                     "GUARANTEED_NO_EVICT" if b.reserve == "full"
                                     else "MAX_UTILIZATION"}}
        if adp > 1:
            yaml["enable_attention_dp"] = True
        sc = _speculative(launcher, spec)[1]
        if sc:
            yaml["speculative_config"] = sc
        if d.cuda_graphs:
            sizes = b.cuda_graph_sizes
            yaml["cuda_graph_config"] = {"enable_padding": True, "max_batch_size":
                                         int(max(sizes) if sizes else v["max_batch"])}
        check_yaml(yaml)
    return cmd, yaml


def _bench(tool: str, model: str, w: Workload, host: str, port: int,
           out: str) -> list[str]:
    c, i, o, n = (str(x) for x in (w.concurrency, w.isl, w.osl, w.requests))
    if tool == "vllm bench serve":
        return ["vllm", "bench", "serve", "--backend", "vllm", "--base-url",
                f"http://{host}:{port}", "--endpoint", "/v1/completions", "--model", model,
                "--dataset-name", "random", "--random-input-len", i, "--random-output-len", o,
                "--random-range-ratio", "0", "--num-prompts", n, "--max-concurrency", c,
                "--request-rate", "inf", "--ignore-eos", "--percentile-metrics",
                "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,99", "--save-result",
                "--result-dir", out, "--result-filename", "vllm_bench.json"]
    if tool == "sglang.bench_serving":
        return ["python", "-m", "sglang.bench_serving", "--backend", "sglang", "--host", host,
                "--port", str(port), "--model", model, "--dataset-name", "random",
                "--random-input-len", i, "--random-output-len", o, "--random-range-ratio", "1",
                "--num-prompts", n, "--max-concurrency", c, "--request-rate", "inf",
                "--output-file", f"{out}/sglang_bench.jsonl"]
    words = list(PROGRAMS[tool][0])
    return words + ["--model", model, "--tokenizer", model, "--url", f"{host}:{port}",
                    "--endpoint-type", "chat", "--streaming",
                    "--synthetic-input-tokens-mean", i, "--synthetic-input-tokens-stddev", "0",
                    "--output-tokens-mean", o, "--output-tokens-stddev", "0",
                    "--extra-inputs", "ignore_eos:true", "--extra-inputs", f"min_tokens:{o}",
                    "--concurrency", c, "--request-count", n,
                    "--warmup-request-count", c, "--artifact-dir",
                    f"{out}/{words[0]}"]


def sh(argv: list[str]) -> str:
    """One shell line, each word quoted where it needs it."""
    return " ".join(shlex.quote(a) for a in argv)


def to_yaml(options: dict) -> str:
    import yaml
    return yaml.safe_dump(options, sort_keys=False, default_flow_style=False)


YAML_NAME = "extra_llm_api_options.yaml"


def launch_commands(d, workload: Workload, *, model_path: str | None = None,
                    max_batch: int | None = None, max_tokens: int | None = None,
                    kv_fraction: float | None = None, chunked: bool | None = None,
                    host: str = "127.0.0.1", port: int | None = None,
                    results_dir: str = "results", setup: dict | None = None,
                    speculative: dict | None = None) -> dict[str, Any]:
    """The server and benchmark commands of deployment ``d`` under ``workload``, as plain
    data: {"launcher", "serve": argv, "yaml": dict or None, "bench": argv, "aiperf": argv,
    "notes": [...], "setup": :func:`setup_record`}. ``model_path``: what the server loads
    (default: the model's hub id); ``max_batch`` / ``max_tokens`` / ``kv_fraction``
    override the engine's defaults; ``setup``: the setup fields as the user gave them, with
    ``model`` and ``hardware`` (the record then resolves back to the same deployment);
    ``chunked``: chunked prefill on/off (default: the engine's); ``speculative``: {"mtp": k}
    or {"draft": model, "draft_k": k} (``SpeculativeCost.of`` keywords) adds the engine's
    speculative-decoding options and a ``[speculative]`` table to the setup record."""
    if not isinstance(workload, Workload):
        raise InputError("launch: workload must be a launch.Workload")
    launcher = launcher_of(d.engine.name)
    port = PORTS[launcher] if port is None else port
    if not 1 <= port <= 65535:
        raise InputError(f"launch: port must be in [1, 65535], got {port}")
    model = model_path or d.model.name
    notes: list[str] = []
    v = _values(d, dict(max_batch=max_batch, max_tokens=max_tokens, kv_fraction=kv_fraction,
                        chunked=chunked))
    if not 0 < v["kv_fraction"] <= 1:
        raise InputError(f"launch: kv_fraction must be in (0, 1], got {v['kv_fraction']!r}")
    serve, yaml = _serve(d, launcher, model, v, host, port, YAML_NAME, notes, speculative)
    server, _, bench_tool = TOOLS[launcher]
    bench = _bench(bench_tool, model, workload, host, port, results_dir)
    aiperf = _bench("aiperf profile", model, workload, host, port, results_dir)
    for tool, argv in ((server, serve), (bench_tool, bench), ("aiperf profile", aiperf)):
        check_command(tool, argv)
    rec = setup_record(d, workload, launcher=launcher, model_path=model, setup=setup, **v)
    if speculative:
        k = int(speculative.get("mtp") or speculative.get("draft_k") or 1)
        draft = speculative.get("draft") if not speculative.get("mtp") else None
        rec["speculative"] = {"method": "mtp" if draft is None else "draft", "draft_k": k,
                              "accept": float(speculative.get("accept", 0.7))}
        if draft is not None:
            rec["speculative"]["draft"] = getattr(draft, "name", str(draft))
        notes.append("speculative decoding: validate / calibrate --results simulate the "
                     "setup without it (the [speculative] table is a record only)")
    return {"launcher": launcher, "engine": d.engine.name, "serve": serve, "yaml": yaml,
            "bench": bench, "aiperf": aiperf, "tools": {"serve": server, "bench": bench_tool,
                                                        "aiperf": "aiperf profile"},
            "notes": notes, "setup": rec}


# -- the setup record (setup.toml) ------------------------------------------------------
def _engine_ref(engine) -> str:
    from .specs.engine import builtin_engines
    if engine.name in builtin_engines():
        return engine.name
    src = engine.source
    return src.split("engine file ", 1)[1] if src.startswith("engine file ") else engine.name


def setup_record(d, workload: Workload, *, launcher: str, model_path: str, max_batch: int,
                 max_tokens: int, kv_fraction: float, block_size: int, chunked: bool = True,
                 setup: dict | None = None) -> dict[str, Any]:
    """Deployment + workload as plain data (setup.toml): what :func:`setup_deployment`
    resolves again. ``setup``: the user's setup fields (and ``model`` / ``hardware`` as
    given); without them the record holds the model's name, the device id and the resolved
    precision bits (native formats: the checkpoint's own, only kvbits kept)."""
    p, lay = d.precision, d.layout
    given = setup or {}
    dep: dict[str, Any] = {"model": given.get("model") or d.model.name,
                           "hardware": given.get("hardware") or d.hardware.id,
                           "engine": _engine_ref(d.engine), "tp": lay.tp, "pp": lay.pp,
                           "ep": lay.ep, "dp": lay.dp, "dp_attention": lay.dp_attention,
                           "cuda_graphs": bool(d.cuda_graphs),
                           "flash": bool(d.flash)}
    if setup is not None:
        for k in ("quant", "wbits", "abits", "kvbits"):
            if setup.get(k) is not None:
                dep[k] = setup[k]
    else:
        dep["kvbits"] = p.kvbits
        if not p.native:
            dep.update(wbits=p.wbits, abits=p.abits)
    return {"deployment": dep,
            "batching": {"max_batch": int(max_batch), "max_tokens": int(max_tokens),
                         "kv_fraction": float(kv_fraction), "block_size": int(block_size),
                         "chunked": bool(chunked)},
            "workload": {"concurrency": workload.concurrency, "isl": workload.isl,
                         "osl": workload.osl, "requests": workload.requests},
            "launch": {"launcher": launcher, "model_path": model_path}}


def setup_toml(rec: dict) -> str:
    """The record as TOML (tables of scalars; strings as JSON strings, valid TOML)."""
    lines = ["# llmroofline launch setup: read back by validate / calibrate --setup"]
    for section, table in rec.items():
        lines.append(f"\n[{section}]")
        for k, v in table.items():
            if isinstance(v, bool):
                s = "true" if v else "false"
            elif isinstance(v, (int, float)):
                s = repr(v)
            else:
                s = json.dumps(str(v))
            lines.append(f"{k} = {s}")
    return "\n".join(lines) + "\n"


_SETUP_KEYS = {"deployment": ("model", "hardware", "engine"),
               "workload": ("concurrency", "isl", "osl", "requests")}


def read_setup(path) -> dict[str, Any]:
    """A setup.toml (or .json) written by ``launch --out``; one line naming what is
    missing."""
    import tomllib
    from pathlib import Path
    from .safeio import read_text
    text = read_text(path, "setup", what="setup file")
    try:
        rec = json.loads(text) if str(path).endswith(".json") else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise InputError(f"setup: cannot parse {Path(path).name}: {str(e).splitlines()[0]}") \
            from None
    missing = [f"{s}.{k}" for s, keys in _SETUP_KEYS.items() for k in keys
               if not isinstance(rec.get(s), dict) or k not in rec[s]]
    if missing:
        raise InputError(f"setup: {Path(path).name} is not a launch setup (written by "
                         f"`llmroofline launch --out`): missing {', '.join(missing)}")
    rec.setdefault("batching", {})
    rec.setdefault("launch", {})
    return rec


def setup_deployment(rec: dict):
    """The Deployment a setup record describes (``deployment.resolve``)."""
    from .deployment import resolve
    dep = rec["deployment"]
    kw = {k: dep[k] for k in ("quant", "wbits", "abits", "kvbits", "tp", "pp", "ep", "dp",
                              "dp_attention",
                              "cuda_graphs", "flash") if k in dep}
    return resolve(dep["model"], dep["hardware"], engine=dep["engine"], **kw)


def setup_workload(rec: dict) -> Workload:
    w = rec["workload"]
    try:
        return Workload(**{k: w[k] for k in ("concurrency", "isl", "osl", "requests")})
    except TypeError as e:
        raise InputError(f"setup: workload: {e}") from None


def write_files(plan: dict, folder) -> list[str]:
    """serve.sh, bench.sh, aiperf.sh, the YAML (trtllm) and setup.toml in ``folder``."""
    from pathlib import Path
    from .safeio import atomic_write_text
    f = Path(folder)
    if f.exists() and not f.is_dir():
        raise InputError(f"out: {folder} exists and is not a folder")
    f.mkdir(parents=True, exist_ok=True)
    head = "#!/usr/bin/env bash\n# written by llmroofline launch\nset -euo pipefail\n"
    files = {"serve.sh": head + "cd \"$(dirname \"$0\")\"\n" + sh(plan["serve"]) + "\n",
             "bench.sh": head + "cd \"$(dirname \"$0\")\"\nmkdir -p results\n"
             + sh(plan["bench"]) + "\n",
             "aiperf.sh": head + "cd \"$(dirname \"$0\")\"\nmkdir -p results\n"
             + sh(plan["aiperf"]) + "\n",
             "setup.toml": setup_toml(plan["setup"])}
    if plan["yaml"] is not None:
        files[YAML_NAME] = to_yaml(plan["yaml"])
    written = []
    for name, text in files.items():
        atomic_write_text(f / name, text, "out")
        if name.endswith(".sh"):
            (f / name).chmod(0o755)
        written.append(str(f / name))
    return written


def arg_table() -> list[dict[str, Any]]:
    """:data:`ARGS` as rows (docs, ``launch --flags``)."""
    return [dict(tool=a.tool, flag=a.flag, meaning=a.meaning, source=a.source,
                 release=a.release, switch=a.switch) for a in ARGS]


__all__ = ["ARGS", "Arg", "LAUNCHERS", "Workload", "launch_commands", "check_command",
           "check_yaml", "launcher_of", "setup_record", "setup_toml", "read_setup",
           "setup_deployment", "setup_workload", "write_files", "arg_table", "sh"]
