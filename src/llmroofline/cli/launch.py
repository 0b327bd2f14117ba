"""`launch`: server and benchmark commands for a deployment (``llmroofline.launch``)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .. import jsonout
from .common import app, deployment_options, engine_kwargs, err, ModelOpt, out

_LAUNCH_FIELDS = ("quant", "wbits", "abits", "kvbits", "cuda_graphs", "tp", "pp", "ep", "dp",
                  "engine")
DEFAULT_LAUNCH_ENGINE = "vllm-v1"


@app.command("launch")
@deployment_options(*_LAUNCH_FIELDS)
def launch_cmd(
    model: ModelOpt = "meta-llama/Llama-3.1-8B",
    hardware: Annotated[str, typer.Option("--hardware", "-H", help="Device id or .toml/.yaml device file.")] = "h100-sxm",
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Benchmark clients (closed loop).")] = 16,
    isl: Annotated[int, typer.Option("--isl", help="Input tokens per request.")] = 1024,
    osl: Annotated[int, typer.Option("--osl", help="Output tokens per request.")] = 256,
    requests: Annotated[Optional[int], typer.Option("--requests", "-n", help="Requests the benchmark sends (default: 10 x concurrency).")] = None,
    max_batch: Annotated[Optional[int], typer.Option("--max-batch", help="Running requests per iteration. Default: the engine's.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", help="Tokens per iteration. Default: the engine's.")] = None,
    kv_fraction: Annotated[Optional[float], typer.Option("--kv-fraction", help="The fraction of the engine's KV-memory rule (vLLM gpu-memory-utilization, SGLang mem-fraction-static, TensorRT-LLM free_gpu_memory_fraction). Default: the engine's.")] = None,
    served_model: Annotated[Optional[str], typer.Option("--served-model", help="Checkpoint the server loads (hub id or path). Default: the model's hub id.")] = None,
    host: Annotated[str, typer.Option("--host", help="Server address.")] = "127.0.0.1",
    port: Annotated[Optional[int], typer.Option("--port", help="Server port (default: vLLM and trtllm-serve 8000, SGLang 30000).")] = None,
    out_dir: Annotated[Optional[str], typer.Option("--out", help="Write serve.sh, bench.sh, aiperf.sh, the trtllm-serve YAML and setup.toml into this folder.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the commands as JSON.")] = False,
    setup: dict = None,
) -> None:
    """Server and benchmark commands for this deployment (engines vllm, vllm-v1, sglang,
    trtllm-1; the default here is vllm-v1), and the setup file validate and calibrate
    --results read back."""
    from ..deployment import resolve
    from ..launch import Workload, launch_commands, sh, to_yaml, write_files
    setup = dict(setup)
    if setup["engine"] is None:
        setup["engine"] = DEFAULT_LAUNCH_ENGINE
    w = Workload(concurrency, isl, osl, requests if requests is not None else 10 * concurrency)
    d = resolve(model, hardware, **engine_kwargs(setup))
    given = {**{k: setup[k] for k in ("quant", "wbits", "abits", "kvbits")},
             "model": model, "hardware": hardware}
    plan = launch_commands(d, w, model_path=served_model, max_batch=max_batch,
                           max_tokens=max_tokens, kv_fraction=kv_fraction, host=host, port=port,
                           setup=given)
    written = write_files(plan, out_dir) if out_dir else []
    if as_json:
        print(jsonout.dumps({**plan, "written": written}))
        return
    for note in (*d.notes, *plan["notes"]):
        err.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    t = plan["tools"]
    out.print(f"# server ({t['serve']})", highlight=False)
    out.print(sh(plan["serve"]), highlight=False, soft_wrap=True)
    if plan["yaml"] is not None:
        out.print("# extra_llm_api_options.yaml", highlight=False)
        out.print(to_yaml(plan["yaml"]).rstrip(), highlight=False, soft_wrap=True)
    out.print(f"# benchmark ({t['bench']})", highlight=False)
    out.print(sh(plan["bench"]), highlight=False, soft_wrap=True)
    out.print("# or, for any engine (aiperf profile)", highlight=False)
    out.print(sh(plan["aiperf"]), highlight=False, soft_wrap=True)
    for f in written:
        out.print(f"wrote {f}", highlight=False)
