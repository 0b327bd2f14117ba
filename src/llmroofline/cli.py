"""Command line: a thin layer that parses flags, calls the Python API and formats results."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import numpy as np
import typer

try:  # newer typer (0.29) vendors click as typer._click and raises its exception classes
    from typer._click import exceptions as click_exc
except ImportError:  # older typer runs on click itself
    from click import exceptions as click_exc
from rich.console import Console
from rich.table import Table

from . import phases, report
from .errors import InputError
from .gridspec import cartesian, parse_grid
from .parallel import Layout
from .specs import catalog, hardware as hwmod
from .specs.catalog import DEFAULT_MODEL
from .specs.hardware import DEFAULT_HARDWARE
from .specs.model import param_count

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Predict LLM inference performance on any accelerator, and explain it.")
out = Console()
if not out.is_terminal:  # piped output: wide enough for the operator tables, no wrapping
    out = Console(width=132)
err = Console(stderr=True)

BOUND_STYLE = {"compute": "red", "memory": "cyan", "overhead": "yellow", "communication": "magenta"}


# -- number formatting (decimal units: 1 GB = 1e9 bytes) ----------------------------------
def si(x: float, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "-"
    for p, s in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= p:
            return f"{x / p:.3g}{s}{unit}"
    return f"{x:.3g}{unit}"


def secs(x: float) -> str:
    if x is None or np.isnan(x):
        return "-"
    if x >= 1:
        return f"{x:.3f} s"
    if x >= 1e-3:
        return f"{x * 1e3:.3f} ms"
    return f"{x * 1e6:.1f} us"


def gb(x: float) -> str:
    return f"{x / 1e9:,.2f} GB"


# -- commands -------------------------------------------------------------------------------
# Options shared by every command that runs the engine.
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Built-in id or alias, config.json path, or hub id.")]
QuantOpt = Annotated[Optional[str], typer.Option("--quant", "-q", help="Scheme: fp16, bf16, fp8, int8-sq, w8a16, w4a16, fp4; KV: kv-fp8, kv-int8, kv-int4; combine with commas.")]
WbitsOpt = Annotated[Optional[int], typer.Option("--wbits", help="Weight bits: 4, 8, 16, 32 (overrides --quant).")]
AbitsOpt = Annotated[Optional[int], typer.Option("--abits", help="Activation bits: 4, 8, 16, 32.")]
KvbitsOpt = Annotated[Optional[int], typer.Option("--kvbits", help="KV cache bits: 4, 8, 16, 32.")]
FlashOpt = Annotated[bool, typer.Option("--flash/--no-flash", help="Fused (FlashAttention-style) attention.")]
TpOpt = Annotated[int, typer.Option("--tp", help="Tensor-parallel devices.")]
PpOpt = Annotated[int, typer.Option("--pp", help="Pipeline stages.")]
EpOpt = Annotated[int, typer.Option("--ep", help="Expert-parallel devices (MoE; divides --tp).")]
DpOpt = Annotated[int, typer.Option("--dp", help="Data-parallel replicas (throughput scales).")]
NodeOpt = Annotated[int, typer.Option("--gpus-per-node", help="Devices per node; larger groups use the network.")]
MicroOpt = Annotated[Optional[int], typer.Option("--microbatches", help="Pipeline micro-batches (default: --pp).")]
OverlapOpt = Annotated[bool, typer.Option("--overlap/--no-overlap", help="Hide collectives behind matmuls.")]
AllreduceOpt = Annotated[str, typer.Option("--allreduce", help="auto, ring, tree, oneshot, twoshot.")]
OffWOpt = Annotated[float, typer.Option("--offload-weights", help="Fraction of weights in host memory [0, 1].")]
OffKvOpt = Annotated[float, typer.Option("--offload-kv", help="Fraction of KV cache in host memory [0, 1].")]
HostBwOpt = Annotated[Optional[float], typer.Option("--host-bw", help="Host link bytes/s (default: the device's PCIe).")]


def engine_kwargs(quant, wbits, abits, kvbits, flash, tp, pp, ep, dp, gpus_per_node=8,
                  microbatches=None, overlap=False, allreduce="auto", offload_weights=0.0,
                  offload_kv=0.0, host_bw=None) -> dict:
    """Keyword arguments of ``analyze`` from the shared CLI options."""
    layout = Layout(tp=tp, pp=pp, ep=ep, dp=dp, gpus_per_node=gpus_per_node,
                    microbatches=microbatches, overlap=overlap, allreduce=allreduce,
                    offload_weights=offload_weights, offload_kv=offload_kv, host_bw_bytes_s=host_bw)
    return dict(quant=quant, wbits=wbits, abits=abits, kvbits=kvbits, flash=flash, layout=layout)


@app.command()
def analyze(
    model: ModelOpt = DEFAULT_MODEL,
    hardware: Annotated[str, typer.Option("--hardware", "-H", help="Device id or .toml/.yaml device file.")] = DEFAULT_HARDWARE,
    batch: Annotated[str, typer.Option("--batch", "-b", help="Batch size (per replica) or grid: 16, 1,8,64, 1:256, 1:256:8.")] = "1",
    input_len: Annotated[str, typer.Option("--input", "-i", help="Prompt tokens (or grid).")] = "128",
    output_len: Annotated[str, typer.Option("--output", "-o", help="Generated tokens incl. the first (or grid).")] = "128",
    quant: QuantOpt = None, wbits: WbitsOpt = None, abits: AbitsOpt = None, kvbits: KvbitsOpt = None,
    flash: FlashOpt = True, tp: TpOpt = 1, pp: PpOpt = 1, ep: EpOpt = 1, dp: DpOpt = 1,
    gpus_per_node: NodeOpt = 8, microbatches: MicroOpt = None, overlap: OverlapOpt = False,
    allreduce: AllreduceOpt = "auto", offload_weights: OffWOpt = 0.0, offload_kv: OffKvOpt = 0.0,
    host_bw: HostBwOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (an array for a grid).")] = False,
) -> None:
    """Per-operator roofline of prefill and decode, latency, throughput and memory."""
    axes = cartesian(batch=parse_grid("batch", batch, hi=1_000_000),
                     input_len=parse_grid("input_len", input_len),
                     output_len=parse_grid("output_len", output_len))
    kw = engine_kwargs(quant, wbits, abits, kvbits, flash, tp, pp, ep, dp, gpus_per_node,
                       microbatches, overlap, allreduce, offload_weights, offload_kv, host_bw)
    a = phases.analyze(model, hardware, axes["batch"], axes["input_len"], axes["output_len"], **kw)
    points = list(report.grid_points(a))
    for w in a.warnings:
        err.print(f"[yellow]warning:[/] {w}")
    if as_json:
        data = [report.to_dict(a, i) for i in points]
        print(json.dumps(data[0] if len(data) == 1 else data, indent=1))
        return
    if len(points) == 1:
        _print_single(report.to_dict(a, points[0]))
    else:
        _print_grid(a, points)


def _op_table(title: str, phase: dict, note: str) -> Table:
    t = Table(title=title, caption=note, title_justify="left", caption_justify="left",
              pad_edge=False, box=None, header_style="bold")
    cols = ("operator", "n", "FLOP", "weights", "activ.", "KV", "comm", "FLOP/B", "time", "%", "bound")
    for col in cols:
        t.add_column(col, justify="left" if col in ("operator", "bound") else "right",
                     no_wrap=True)
    total = sum(o["time_s"] for o in phase["ops"]) or 1.0
    for o in phase["ops"]:
        t.add_row(o["name"], str(o["count"]), si(o["flops"]), si(o["weight_bytes"], "B"),
                  si(o["activation_bytes"], "B"), si(o["kv_bytes"], "B"), si(o["comm_bytes"], "B"),
                  f"{o['intensity']:.3g}",
                  secs(o["time_s"]), f"{100 * o['time_s'] / total:.1f}",
                  f"[{BOUND_STYLE.get(o['bound'], '')}]{o['bound']}[/]")
    sums = {k: sum(o[k] for o in phase["ops"]) for k in ("weight_bytes", "activation_bytes", "kv_bytes")}
    t.add_row("total", "", si(phase["flops"]), si(sums["weight_bytes"], "B"),
              si(sums["activation_bytes"], "B"), si(sums["kv_bytes"], "B"),
              si(sum(o["comm_bytes"] for o in phase["ops"]), "B"),
              f"{phase['flops'] / phase['bytes']:.3g}" if phase["bytes"] else "-",
              secs(phase["time_s"]), "100", "", style="bold")
    return t


def _print_single(d: dict) -> None:
    p = d["precision"]
    where = d["hardware"] if d["devices"] == 1 else f"{d['devices']} x {d['hardware']} ({d['layout']})"
    out.print(f"[bold]{d['model']}[/] ({d['params'] / 1e9:.2f} B params) on [bold]{where}[/]  "
              f"{d['precision']['label']}  batch {d['batch']}, input "
              f"{d['input_len']}, output {d['output_len']} tokens, attention "
              f"{'fused' if d['flash'] else 'unfused'}")
    out.print(_op_table("Prefill (whole batch)", d["prefill"],
                        "Bytes in decimal units (1 GB = 1e9 B). Times are roofline times per phase."))
    out.print(_op_table(f"Decode step (mean of {d['decode']['steps']} steps)", d["decode"],
                        "KV cache grows from input+1 to input+output-1 tokens; values are per-step means."))
    s = Table(title="Totals", title_justify="left", show_header=False)
    s.add_column(justify="left")
    s.add_column(justify="right")
    s.add_row("time to first token (TTFT)", secs(d["ttft_s"]))
    s.add_row("time per output token (TPOT, excl. first)", secs(d["tpot_s"]) if d["tpot_s"] is not None else "- (output = 1)")
    s.add_row("end-to-end latency", secs(d["e2e_s"]))
    s.add_row("generated tokens/s (whole batch)", f"{d['throughput_tok_s']:,.1f}")
    out.print(s)
    m = d["memory"]
    mt = Table(title="Memory (decimal GB)", title_justify="left", show_header=False)
    mt.add_column(justify="left")
    mt.add_column(justify="right")
    mt.add_row("weights", gb(m["weights_bytes"]))
    mt.add_row(f"KV cache ({d['input_len'] + d['output_len']} tokens x {d['batch']})", gb(m["kv_cache_bytes"]))
    mt.add_row("activation peak (prefill)", gb(m["activation_bytes"]))
    fits = "[green]fits[/]" if m["fits"] else "[red]does not fit[/]"
    mt.add_row("total / capacity", f"{gb(m['total_bytes'])} / {gb(m['capacity_bytes'])}  {fits}")
    mt.add_row("largest batch that fits", str(d["max_batch"]))
    out.print(mt)


def _print_grid(a: phases.Analysis, points) -> None:
    t = Table(title=f"{a.model.name} on {a.hardware.id} ({a.precision.label})", title_justify="left")
    for col in ("batch", "input", "output", "TTFT", "TPOT", "e2e", "tokens/s", "memory", "fits"):
        t.add_column(col, justify="right")
    for i in points:
        t.add_row(f"{a.batch[i]:g}", f"{a.input_len[i]:g}", f"{a.output_len[i]:g}",
                  secs(a.ttft_s[i]), secs(a.tpot_s[i]), secs(a.e2e_s[i]),
                  f"{a.throughput_tok_s[i]:,.1f}", gb(a.memory.total_bytes[i]),
                  "yes" if a.memory.fits[i] else "[red]no[/]")
    out.print(t)


@app.command()
def models(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List built-in models with their aliases and parameter counts."""
    aliases: dict[str, list[str]] = {}
    for al, hf in catalog.model_aliases().items():
        if al != hf.lower():
            aliases.setdefault(hf, []).append(al)
    rows = []
    for hf in catalog.builtin_model_files():
        m = catalog.load_model(hf)
        rows.append({"id": hf, "aliases": sorted(aliases.get(hf, []), key=len),
                     "model_type": m.model_type, "params": param_count(m),
                     "layers": m.num_layers, "hidden": m.hidden_size, "heads": m.num_heads,
                     "kv_heads": m.num_kv_heads, "moe": m.moe is not None, "mla": m.mla is not None})
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    t = Table(title="Built-in models", title_justify="left")
    for col in ("id", "aliases", "type", "params", "layers", "hidden", "heads/kv"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["id"], ", ".join(r["aliases"][:2]), r["model_type"], f"{r['params'] / 1e9:.2f} B",
                  str(r["layers"]), str(r["hidden"]), f"{r['heads']}/{r['kv_heads']}")
    out.print(t)


@app.command("hardware")
def hardware_cmd(
    device: Annotated[Optional[str], typer.Argument(help="Device id (or file) to show in full.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List devices, or show one with its sources."""
    if device:
        d = hwmod.to_dict(hwmod.load_hardware(device))
        if as_json:
            print(json.dumps(d, indent=1))
            return
        t = Table(title=d.get("name", d["id"]), title_justify="left", show_header=False)
        t.add_column(style="bold")
        t.add_column(overflow="fold")
        for k, v in d.items():
            t.add_row(k, json.dumps(v) if isinstance(v, dict) else str(v))
        out.print(t)
        return
    rows = [hwmod.to_dict(hwmod.load_hardware(i)) for i in hwmod.hardware_ids()]
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    t = Table(title="Built-in devices (dense peaks; decimal GB, GB/s)", title_justify="left")
    for col in ("id", "name", "memory GB", "GB/s", "BF16/FP16 TFLOPS", "FP8 TFLOPS", "TDP W"):
        t.add_column(col, justify="left" if col in ("id", "name") else "right")
    for r in rows:
        half = r.get("bf16_tflops", r.get("fp16_tflops"))
        t.add_row(r["id"], r.get("name", ""), f"{r['memory_gb']:g}", f"{r['mem_bw_gb_s']:g}",
                  f"{half:g}" if half else "-", f"{r['fp8_tflops']:g}" if "fp8_tflops" in r else "-",
                  f"{r['tdp_w']:g}" if "tdp_w" in r else "-")
    out.print(t)


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and exit status 2."""
    cmd = typer.main.get_command(app)
    try:
        cmd.main(args=argv, prog_name="llmroofline", standalone_mode=False)
    except InputError as e:
        err.print(f"[red]error:[/] {e}", highlight=False, soft_wrap=True)
        return 2
    except click_exc.NoArgsIsHelpError as e:
        e.show()
        return 0
    except click_exc.UsageError as e:
        msg = e.format_message().replace("\n", " ")
        err.print(f"[red]error:[/] {msg}", highlight=False, soft_wrap=True)
        return 2
    except typer.Abort:
        return 130
    except typer.Exit as e:
        return e.exit_code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
