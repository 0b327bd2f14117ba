"""Command line: a thin layer that parses flags, calls the Python API and formats results."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

try:  # newer typer (0.29) vendors click as typer._click and raises its exception classes
    from typer._click import exceptions as click_exc
except ImportError:  # older typer runs on click itself
    from click import exceptions as click_exc
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import decoding, phases, report
from .errors import InputError
from .gridspec import cartesian, parse_grid
from .parallel import Layout
from .specs import catalog, hardware as hwmod
from .specs.catalog import DEFAULT_MODEL
from .specs.hardware import DEFAULT_HARDWARE

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
NodesOpt = Annotated[Optional[int], typer.Option("--nodes", help="Spread each replica over this many nodes (sets devices per node).")]
MicroOpt = Annotated[Optional[int], typer.Option("--microbatches", help="Pipeline micro-batches (default: --pp).")]
OverlapOpt = Annotated[bool, typer.Option("--overlap/--no-overlap", help="Hide collectives behind matmuls.")]
AllreduceOpt = Annotated[str, typer.Option("--allreduce", help="auto, ring, tree, oneshot, twoshot.")]
OffWOpt = Annotated[float, typer.Option("--offload-weights", help="Fraction of weights in host memory [0, 1].")]
OffKvOpt = Annotated[float, typer.Option("--offload-kv", help="Fraction of KV cache in host memory [0, 1].")]
HostBwOpt = Annotated[Optional[float], typer.Option("--host-bw", help="Host link bytes/s (default: the device's PCIe).")]
ProfileOpt = Annotated[str, typer.Option("--profile", "-p", help="Efficiency profile: default (calibrated to measured engines), ideal (bare roofline), or a .toml from `calibrate`.")]


def engine_kwargs(quant, wbits, abits, kvbits, flash, tp, pp, ep, dp, gpus_per_node=8,
                  microbatches=None, overlap=False, allreduce="auto", offload_weights=0.0,
                  offload_kv=0.0, host_bw=None, profile=None, nodes=None) -> dict:
    """Keyword arguments of ``analyze`` from the shared CLI options.

    ``nodes`` spreads each replica's tp x pp devices over that many nodes (it sets the
    devices per node, so larger collectives cross the network).
    """
    if nodes is not None:
        if not 1 <= nodes <= tp * pp:
            raise InputError(f"nodes must be in [1, tp x pp = {tp * pp}], got {nodes}")
        gpus_per_node = -(-(tp * pp) // nodes)
    layout = Layout(tp=tp, pp=pp, ep=ep, dp=dp, gpus_per_node=gpus_per_node,
                    microbatches=microbatches, overlap=overlap, allreduce=allreduce,
                    offload_weights=offload_weights, offload_kv=offload_kv, host_bw_bytes_s=host_bw)
    return dict(quant=quant, wbits=wbits, abits=abits, kvbits=kvbits, flash=flash, layout=layout,
                profile=profile)


@app.command()
def analyze(
    model: ModelOpt = DEFAULT_MODEL,
    hardware: Annotated[str, typer.Option("--hardware", "-H", help="Device id or .toml/.yaml device file.")] = DEFAULT_HARDWARE,
    batch: Annotated[str, typer.Option("--batch", "-b", help="Batch size (per replica) or grid: 16, 1,8,64, 1:256, 1:256:8.")] = "1",
    input_len: Annotated[str, typer.Option("--input", "-i", help="Prompt tokens (or grid).")] = "128",
    output_len: Annotated[str, typer.Option("--output", "-o", help="Generated tokens incl. the first (or grid).")] = "128",
    quant: QuantOpt = None, wbits: WbitsOpt = None, abits: AbitsOpt = None, kvbits: KvbitsOpt = None,
    flash: FlashOpt = True, tp: TpOpt = 1, pp: PpOpt = 1, ep: EpOpt = 1, dp: DpOpt = 1,
    gpus_per_node: NodeOpt = 8, nodes: NodesOpt = None, microbatches: MicroOpt = None,
    overlap: OverlapOpt = False,
    allreduce: AllreduceOpt = "auto", offload_weights: OffWOpt = 0.0, offload_kv: OffKvOpt = 0.0,
    host_bw: HostBwOpt = None, profile: ProfileOpt = "default",
    beams: Annotated[int, typer.Option("--beams", help="Beam width W: B x W decode rows sharing each prompt's KV; B sequences returned.")] = 1,
    samples: Annotated[int, typer.Option("--samples", help="Parallel samples n per prompt: B x n decode rows and sequences.")] = 1,
    draft: Annotated[Optional[str], typer.Option("--draft", help="Speculative decoding: draft model (id, alias or config.json).")] = None,
    draft_k: Annotated[int, typer.Option("--draft-k", help="Draft tokens per speculative round [1, 16].")] = 4,
    accept: Annotated[float, typer.Option("--accept", help="Acceptance rate per draft token [0, 1].")] = 0.7,
    draft_tp: Annotated[Optional[int], typer.Option("--draft-tp", help="Tensor-parallel devices of the draft (default: --tp).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (an array for a grid).")] = False,
) -> None:
    """Per-operator roofline of prefill and decode, latency, throughput and memory."""
    axes = cartesian(batch=parse_grid("batch", batch, hi=1_000_000),
                     input_len=parse_grid("input_len", input_len),
                     output_len=parse_grid("output_len", output_len))
    kw = engine_kwargs(quant, wbits, abits, kvbits, flash, tp, pp, ep, dp, gpus_per_node,
                       microbatches, overlap, allreduce, offload_weights, offload_kv, host_bw,
                       profile, nodes)
    decoding.check_draft_k(draft_k), decoding.check_accept(accept)
    a = phases.analyze(model, hardware, axes["batch"], axes["input_len"], axes["output_len"], **kw,
                       beams=beams, samples=samples)
    spec = None
    if draft is not None:
        spec = decoding.speculative(model, hardware, axes["batch"], axes["input_len"],
                                    axes["output_len"], draft=draft, draft_k=draft_k,
                                    accept=accept, draft_tp=draft_tp, beams=beams,
                                    samples=samples, **kw)
    points = list(report.grid_points(a))
    for w in a.warnings + tuple(w for w in (spec.warnings if spec else ()) if w not in a.warnings):
        err.print(f"[yellow]warning:[/] {w}")
    if as_json:
        data = [report.to_dict(a, i) for i in points]
        if spec is not None:
            for d, i in zip(data, points):
                d["speculative"] = report.speculative_dict(spec, i)
        print(json.dumps(data[0] if len(data) == 1 else data, indent=1))
        return
    if len(points) == 1:
        _print_single(report.to_dict(a, points[0]))
        if spec is not None:
            _print_speculative(report.speculative_dict(spec, points[0]), report.to_dict(a, points[0]))
    else:
        _print_grid(a, points)
        if spec is not None:
            _print_speculative_grid(spec, points)


def _print_speculative(s: dict, d: dict) -> None:
    """The "Speculative decoding" section of one workload."""
    out.print(f"[bold]Speculative decoding[/]: draft {s['draft']}, k = {s['draft_k']}, "
              f"acceptance a = {s['accept']:g} per token")
    t = Table(show_header=False, caption="tau = (1 - a^(k+1)) / (1 - a); a round = k draft "
              "steps + 1 verify step (q_len = k + 1)", caption_justify="left")
    t.add_column(justify="left")
    t.add_column(justify="right")
    t.add_row("expected tokens per target step (tau)", f"{s['tau']:.3f}")
    t.add_row("rounds (output - 1) / tau", f"{s['rounds']:.1f}")
    t.add_row("draft step / verify step (means)", f"{secs(s['draft_step_s'])} / {secs(s['verify_step_s'])}")
    t.add_row("time to first token (both prefills)", secs(s["ttft_s"]))
    t.add_row("time per output token (TPOT)", secs(s["tpot_s"]) if s["tpot_s"] is not None else "- (output = 1)")
    t.add_row("end-to-end latency", secs(s["e2e_s"]))
    t.add_row("generated tokens/s (whole batch)", f"{s['throughput_tok_s']:,.1f}")
    sp = s["tpot_speedup"]
    t.add_row("speed-up over plain decoding (TPOT / e2e)",
              f"{sp:.2f}x / {s['e2e_speedup']:.2f}x" if sp is not None else f"- / {s['e2e_speedup']:.2f}x")
    m = s["memory"]
    fits = "[green]fits[/]" if m["fits"] else "[red]does not fit[/]"
    t.add_row("memory: target + draft weights", f"{gb(m['weights_bytes'])} (draft {gb(m['draft_weights_bytes'])})")
    t.add_row(f"memory: both KV caches ({d['input_len'] + d['output_len'] + s['draft_k']} tokens x {d['batch']})",
              gb(m["kv_cache_bytes"]))
    t.add_row("memory: total / capacity", f"{gb(m['total_bytes'])} / {gb(m['capacity_bytes'])}  {fits}")
    t.add_row("largest batch that fits", str(s["max_batch"]))
    out.print(t)


def _print_speculative_grid(s, points) -> None:
    p = s.plain
    t = Table(title=f"Speculative decoding (draft {s.draft.model.name}, k = {s.draft_k}, "
              f"acceptance {s.accept:g}, tau = {s.tau:.3f})", title_justify="left")
    for col in ("batch", "input", "output", "TTFT", "TPOT", "e2e", "tokens/s", "speed-up", "memory", "fits"):
        t.add_column(col, justify="right")
    for i in points:
        t.add_row(f"{p.batch[i]:g}", f"{p.input_len[i]:g}", f"{p.output_len[i]:g}",
                  secs(s.ttft_s[i]), secs(s.tpot_s[i]), secs(s.e2e_s[i]),
                  f"{s.throughput_tok_s[i]:,.1f}", f"{s.tpot_speedup[i]:.2f}x",
                  gb(s.memory.total_bytes[i]), "yes" if s.memory.fits[i] else "[red]no[/]")
    out.print(t)


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
    where = d["hardware"] if d["devices"] == 1 else f"{d['devices']} x {d['hardware']} ({d['layout']})"
    out.print(f"[bold]{d['model']}[/] ({d['params'] / 1e9:.2f} B params) on [bold]{where}[/]  "
              f"{d['precision']['label']}  profile {d['profile']}  batch {d['batch']}, input "
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
    rows = max(d.get("beams", 1), d.get("samples", 1))
    if d.get("beams", 1) > 1:
        s.add_row(f"decode rows (beam search, W = {rows})", f"{d['batch']} x {rows}")
        s.add_row(f"returned tokens/s ({d['batch']} sequences)", f"{d['throughput_tok_s']:,.1f}")
    else:
        if rows > 1:
            s.add_row(f"decode rows (parallel sampling, n = {rows})", f"{d['batch']} x {rows}")
        s.add_row("generated tokens/s (whole batch)", f"{d['throughput_tok_s']:,.1f}")
    out.print(s)
    m = d["memory"]
    mt = Table(title="Memory (decimal GB)", title_justify="left", show_header=False)
    mt.add_column(justify="left")
    mt.add_column(justify="right")
    mt.add_row("weights", gb(m["weights_bytes"]))
    mt.add_row(f"KV cache ({d['input_len'] + d['output_len']} tokens x {d['batch']})" if rows == 1 else
               f"KV cache ({d['input_len']} x {d['batch']} prompt + {d['output_len']} x {d['batch']} x {rows} rows)",
               gb(m["kv_cache_bytes"]))
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
    rows = catalog.model_summaries()
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


# -- compare, roofline, rank (issue 4) --------------------------------------------------------
def _device_list(hardware: Optional[list[str]], devices: Optional[list[str]]) -> list[str]:
    """Devices from repeated/comma-separated --hardware and from bare arguments."""
    names = [n.strip() for v in (hardware or []) + (devices or []) for n in v.split(",")]
    return [n for n in names if n]


def _parse_seconds(field: str, text: Optional[str]) -> Optional[float]:
    """'50ms', '0.05s' or '0.05' (seconds) -> seconds."""
    if text is None:
        return None
    s = text.strip().lower()
    scale = 1.0
    for suf, k in (("ms", 1e-3), ("us", 1e-6), ("s", 1.0)):
        if s.endswith(suf):
            s, scale = s[: -len(suf)], k
            break
    try:
        v = float(s) * scale
    except ValueError:
        v = float("nan")
    if not 0 < v < float("inf"):
        raise InputError(f"{field} must be a positive time such as 50ms or 0.05s, got {text!r}")
    return v


def _check_out(paths: Optional[list[str]], allowed: tuple[str, ...]) -> list[str]:
    from pathlib import Path
    for p in paths or []:
        if Path(p).suffix.lower() not in allowed:
            raise InputError(f"out: file suffix must be one of {', '.join(allowed)}, got "
                             f"'{Path(p).name}'")
        if not Path(p).resolve().parent.is_dir():
            raise InputError(f"out: directory {Path(p).parent} does not exist")
    return list(paths or [])


def _mesh_map(m, rows: int = 16, cols: int = 64) -> str:
    """Coloured character map of the winner per cell (batch up, seq right)."""
    from .plots import DEVICE_COLORS
    w = m.winner
    bi = np.unique(np.linspace(0, len(m.batch) - 1, min(rows, len(m.batch))).round().astype(int))
    si = np.unique(np.linspace(0, len(m.seq) - 1, min(cols, len(m.seq))).round().astype(int))
    lines = []
    for i in bi[::-1]:
        cells = []
        for j in si:
            v = w[i, j]
            alone = np.nonzero(m.only_fits[:, i, j])[0]
            if v >= 0:
                cells.append(f"[{DEVICE_COLORS[v % len(DEVICE_COLORS)]}]█[/]")
            elif alone.size:
                cells.append(f"[{DEVICE_COLORS[alone[0] % len(DEVICE_COLORS)]}]░[/]")
            else:
                cells.append(" " if v == -2 else "[grey50]·[/]")
        lines.append(f"{m.batch[i]:>7g} " + "".join(cells))
    lines.append(f"{'':>8}seq {m.seq[si[0]]:g} → {m.seq[si[-1]]:g}")
    legend = "  ".join(f"[{DEVICE_COLORS[k % len(DEVICE_COLORS)]}]█[/] {h}"
                       for k, h in enumerate(m.hardware))
    return "\n".join(["  batch ↑  " + legend + "  (░ only it fits)  [grey50]·[/] fits neither "
                       "or beyond context"] + lines)


def _mesh_json(m) -> dict:
    def clean(a):
        return [[None if np.isnan(x) else float(x) for x in row] for row in a]
    d = m.summary()
    d.update(batch=m.batch.tolist(), seq=m.seq.tolist(), input_len=m.input_len.tolist(),
             throughput_tok_s={h: clean(m.throughput_tok_s[k]) for k, h in enumerate(m.hardware)},
             fits={h: m.fits[k].tolist() for k, h in enumerate(m.hardware)})
    if len(m.hardware) == 2:
        d["ratio"] = clean(m.ratio)
    return d


@app.command("compare")
def compare_cmd(
    devices: Annotated[Optional[list[str]], typer.Argument(help="Devices to compare (or use --hardware).", show_default=False)] = None,
    model: ModelOpt = DEFAULT_MODEL,
    hardware: Annotated[Optional[list[str]], typer.Option("--hardware", "-H", help="Devices: --hardware a100-sxm-80gb h20, or comma-separated, or repeated. Default: a100-sxm-80gb h20.", show_default=False)] = None,
    batch: Annotated[str, typer.Option("--batch", "-b", help="Batch axis (grid syntax).")] = "1:256:32",
    seq: Annotated[str, typer.Option("--seq", "-s", help="Sequence axis: mean KV length of the decode steps (grid syntax).")] = "128:32768:32",
    output_len: Annotated[int, typer.Option("--output", "-o", help="Generated tokens per sequence (even); input = seq - output/2.")] = 128,
    method: Annotated[str, typer.Option("--method", help="ops (per-operator), global (whole-model intensity) or both.")] = "ops",
    quant: QuantOpt = None, wbits: WbitsOpt = None, abits: AbitsOpt = None, kvbits: KvbitsOpt = None,
    flash: FlashOpt = True, tp: TpOpt = 1, ep: EpOpt = 1, dp: DpOpt = 1,
    profile: ProfileOpt = "default",
    ignore_context: Annotated[bool, typer.Option("--ignore-context", help="Evaluate sequences beyond the model's max_position_embeddings (e.g. RoPE-scaled).")] = False,
    out_files: Annotated[Optional[list[str]], typer.Option("--out", help="Write FILE.png, .svg, .html or .csv (repeatable).", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary and the mesh as JSON.")] = False,
) -> None:
    """Throughput ratio of two (or more) devices over a batch x sequence-length mesh."""
    from . import compare as cmpmod
    names = _device_list(hardware, devices) or ["a100-sxm-80gb", "h20"]
    methods = {"both": ("ops", "global"), "ops": ("ops",), "global": ("global",)}.get(method)
    if methods is None:
        raise InputError(f"method must be ops, global or both, got {method!r}")
    outs = _check_out(out_files, (".png", ".svg", ".html", ".csv"))
    meshes = cmpmod.compare_methods(
        model, names, parse_grid("batch", batch, hi=1_000_000), parse_grid("seq", seq),
        methods, output_len, ignore_context=ignore_context, quant=quant, wbits=wbits,
        abits=abits, kvbits=kvbits, flash=flash, tp=tp, ep=ep, dp=dp, profile=profile)
    ms = [meshes[k] for k in methods]
    for w in ms[0].warnings:
        err.print(f"[yellow]warning:[/] {w}")
    if outs:
        from . import plots
        for p in outs:
            plots.save_compare(ms, p)
            err.print(f"wrote {p}")
    agree = cmpmod.sign_agreement(*ms) if len(ms) == 2 and len(ms[0].hardware) == 2 else None
    if as_json:
        data = {"meshes": [_mesh_json(m) for m in ms]}
        if agree is not None:
            data["sign_agreement_ops_global"] = None if np.isnan(agree) else agree
        print(json.dumps(data, indent=1))
        return
    m0 = ms[0]
    lay = "" if m0.layout == "1 device" else f", {m0.layout}"
    out.print(f"[bold]{m0.model}[/] ({m0.precision}{lay}): decode throughput over batch "
              f"{m0.batch[0]:g}..{m0.batch[-1]:g} x seq {m0.seq[0]:g}..{m0.seq[-1]:g} "
              f"({m0.shape[0]} x {m0.shape[1]} cells), output {m0.output_len} tokens, "
              f"input = seq - {m0.output_len // 2}")
    for m in ms:
        s = m.summary()
        t = Table(title=f"method {m.method}: {s['cells_compared']} of {s['cells']} cells compared",
                  title_justify="left")
        for col in ("device", "cells won", "share", "batch range", "seq range", "does not fit",
                    "only it fits"):
            t.add_column(col, justify="left" if col == "device" else "right")
        for d in s["devices"]:
            br = d.get("batch_range")
            sr = d.get("seq_range")
            t.add_row(d["hardware"], str(d["cells_won"]), f"{100 * d['fraction']:.1f}%",
                      f"{br[0]:g}..{br[1]:g}" if br else "-", f"{sr[0]:g}..{sr[1]:g}" if sr else "-",
                      f"{d['cells_not_fitting']} cells", f"{d['cells_only_this_fits']} cells")
        out.print(t)
        notes = []
        if "ratio_min" in s:
            notes.append(f"ratio {m.hardware[0]}/{m.hardware[1]}: {s['ratio_min']:.3g} .. "
                         f"{s['ratio_max']:.3g}")
        if s["cells_tied"]:
            notes.append(f"{s['cells_tied']} cell{'s' if s['cells_tied'] > 1 else ''} tied")
        if s["cells_beyond_context"]:
            notes.append(f"{s['cells_beyond_context']} cells beyond the context of "
                         f"{m.context_limit} tokens (--ignore-context evaluates them)")
        if notes:
            out.print("  " + "; ".join(notes))
        out.print(_mesh_map(m))
    if agree is not None:
        out.print(f"ops and global agree on the faster device in {100 * agree:.1f}% of the "
                  "compared cells")


@app.command("roofline")
def roofline_cmd(
    devices: Annotated[Optional[list[str]], typer.Argument(help="Devices (or use --hardware).", show_default=False)] = None,
    model: ModelOpt = DEFAULT_MODEL,
    hardware: Annotated[Optional[list[str]], typer.Option("--hardware", "-H", help="One or more devices (default: a100-sxm-80gb).", show_default=False)] = None,
    batch: Annotated[int, typer.Option("--batch", "-b", help="Batch size.")] = 1,
    input_len: Annotated[int, typer.Option("--input", "-i", help="Prompt tokens.")] = 512,
    output_len: Annotated[int, typer.Option("--output", "-o", help="Generated tokens.")] = 128,
    phase: Annotated[str, typer.Option("--phase", help="prefill, decode or both.")] = "both",
    quant: QuantOpt = None, wbits: WbitsOpt = None, abits: AbitsOpt = None, kvbits: KvbitsOpt = None,
    flash: FlashOpt = True, tp: TpOpt = 1, ep: EpOpt = 1, profile: ProfileOpt = "default",
    out_files: Annotated[Optional[list[str]], typer.Option("--out", help="Write FILE.png, .svg, .html or .csv (repeatable).", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print ridge points and operator points as JSON.")] = False,
) -> None:
    """Roofline chart: each operator of a phase on the devices' compute and bandwidth roofs."""
    from . import plots
    names = _device_list(hardware, devices) or [DEFAULT_HARDWARE]
    phs = {"both": ("prefill", "decode"), "prefill": ("prefill",), "decode": ("decode",)}.get(phase)
    if phs is None:
        raise InputError(f"phase must be prefill, decode or both, got {phase!r}")
    outs = _check_out(out_files, (".png", ".svg", ".html", ".csv"))
    analyses = [phases.analyze(model, h, batch, input_len, output_len, quant=quant, wbits=wbits,
                               abits=abits, kvbits=kvbits, flash=flash, tp=tp, ep=ep,
                               profile=profile)
                for h in names]
    for a in analyses:
        for w in a.warnings:
            err.print(f"[yellow]warning:[/] {w}")
    for p in outs:
        plots.save_roofline(analyses, p, phs)
        err.print(f"wrote {p}")
    pts = plots.roofline_points(analyses, phs)
    ridges = {a.hardware.id: plots.ridge(a) for a in analyses}
    if as_json:
        print(json.dumps({"ridges": ridges, "points": pts}, indent=1))
        return
    a0 = analyses[0]
    out.print(f"[bold]{a0.model.name}[/] ({a0.precision.label}): batch {batch}, input "
              f"{input_len}, output {output_len}")
    for hid, r in ridges.items():
        out.print(f"  {hid}: {r['flops_s'] / 1e12:,.1f} TFLOP/s / {r['bytes_s'] / 1e9:,.0f} GB/s "
                  f"-> ridge point {r['intensity']:.1f} FLOP/byte")
    t = Table(title="Operators (decode: mean step)", title_justify="left", box=None,
              header_style="bold")
    t.add_column("phase")
    t.add_column("operator")
    t.add_column("FLOP/B", justify="right")
    for a in analyses:
        t.add_column(f"{a.hardware.id} TFLOP/s", justify="right")
        t.add_column("bound")
    keys = list(dict.fromkeys((p["phase"], p["op"]) for p in pts))
    by = {(p["hardware"], p["phase"], p["op"]): p for p in pts}
    for ph, op in keys:
        first = by.get((a0.hardware.id, ph, op)) or next(p for p in pts if (p["phase"], p["op"]) == (ph, op))
        cells = []
        for a in analyses:
            p = by.get((a.hardware.id, ph, op))
            cells += ([f"{p['flops_s'] / 1e12:.3g}", f"[{BOUND_STYLE.get(p['bound'], '')}]{p['bound']}[/]"]
                      if p else ["-", "-"])
        t.add_row(ph, op, f"{first['intensity']:.3g}", *cells)
    out.print(t)


@app.command("rank")
def rank_cmd(
    devices: Annotated[Optional[list[str]], typer.Argument(help="Devices to rank (default: the whole catalog).", show_default=False)] = None,
    model: ModelOpt = DEFAULT_MODEL,
    hardware: Annotated[Optional[list[str]], typer.Option("--hardware", "-H", help="Devices to rank (default: the whole catalog).", show_default=False)] = None,
    vendor: Annotated[Optional[str], typer.Option("--vendor", help="Only this vendor's devices (NVIDIA, AMD, Google, Intel, Apple, ...).")] = None,
    batch: Annotated[str, typer.Option("--batch", "-b", help="Batch size, or 'max': the best batch that fits and meets the limits.")] = "1",
    input_len: Annotated[int, typer.Option("--input", "-i", help="Prompt tokens.")] = 512,
    output_len: Annotated[int, typer.Option("--output", "-o", help="Generated tokens.")] = 128,
    quant: QuantOpt = None, wbits: WbitsOpt = None, abits: AbitsOpt = None, kvbits: KvbitsOpt = None,
    flash: FlashOpt = True, profile: ProfileOpt = "default",
    tp: Annotated[str, typer.Option("--tp", help="Tensor-parallel devices, or 'auto': the fewest of 1, 2, 4, 8 that fit.")] = "1",
    max_ttft: Annotated[Optional[str], typer.Option("--max-ttft", help="Limit on time to first token: 500ms, 0.5s or 0.5 (seconds).")] = None,
    max_tpot: Annotated[Optional[str], typer.Option("--max-tpot", help="Limit on time per output token: 50ms, 0.05s.")] = None,
    prices: Annotated[Optional[str], typer.Option("--prices", help="TOML or CSV: device id -> USD per device-hour.")] = None,
    sort: Annotated[str, typer.Option("--sort", help="tok_s, tok_s_per_device, tok_s_per_w or tok_per_usd.")] = "tok_s",
    top: Annotated[Optional[int], typer.Option("--top", help="Show only the first N rows.")] = None,
    out_files: Annotated[Optional[list[str]], typer.Option("--out", help="Write FILE.csv or FILE.json (repeatable).", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Rank devices for one workload by tokens/s, tokens/s per watt or tokens per dollar."""
    from . import rank as rankmod
    outs = _check_out(out_files, (".csv", ".json"))
    r = rankmod.rank(model, _device_list(hardware, devices) or None, vendor=vendor, batch=batch,
                     input_len=input_len, output_len=output_len,
                     max_ttft_s=_parse_seconds("max_ttft", max_ttft),
                     max_tpot_s=_parse_seconds("max_tpot", max_tpot), prices=prices,
                     sort_by=sort, tp=tp, quant=quant, wbits=wbits, abits=abits, kvbits=kvbits,
                     flash=flash, profile=profile)
    for p in outs:
        if p.lower().endswith(".csv"):
            r.to_dataframe().to_csv(p, index=False)
        else:
            with open(p, "w") as f:
                json.dump(r.to_json_data(), f, indent=1)
        err.print(f"wrote {p}")
    if as_json:
        print(json.dumps(r.to_json_data(), indent=1))
        return
    lim = [f"{k} {secs(v)}" for k, v in (("TTFT <=", r.constraints["max_ttft_s"]),
                                          ("TPOT <=", r.constraints["max_tpot_s"])) if v]
    t = Table(title=f"{r.model} ({r.precision}), batch {r.batch}, input {r.input_len}, output "
                    f"{r.output_len}; sorted by {r.sort_by}" + (f"; {', '.join(lim)}" if lim else ""),
              title_justify="left")
    for col in ("#", "device", "TP", "batch", "TTFT", "TPOT", "tokens/s", "tok/s/device",
                "tok/s/W", "tok/$", "memory", "note"):
        t.add_column(col, justify="left" if col in ("device", "note") else "right",
                     overflow="fold" if col == "note" else "ellipsis")
    for row in r.rows[:top] if top else r.rows:
        def num(v, fmt):
            return "-" if v is None or np.isnan(v) else format(v, fmt)
        style = None if row.ok else "dim"
        t.add_row(str(row.rank) if row.rank else "-", row.hardware, str(row.tp or "-"),
                  str(row.batch or "-"), secs(row.ttft_s), secs(row.tpot_s),
                  num(row.throughput_tok_s, ",.0f"), num(row.tok_s_per_device, ",.0f"),
                  num(row.tok_s_per_w, ".2f"), num(row.tok_per_usd, ",.0f"),
                  f"{row.memory_bytes / 1e9:.0f}/{row.capacity_bytes / 1e9:.0f} GB"
                  if not np.isnan(row.memory_bytes) else "-",
                  "; ".join(row.reasons), style=style)
    out.print(t)
    for n in r.notes:
        out.print(f"note: {n}")


# -- accuracy: validate and calibrate ----------------------------------------------------
def _summary_table(title: str, summary: dict) -> Table:
    t = Table(title=title, title_justify="left", caption="error = predicted / measured - 1",
              caption_justify="left")
    for col in ("group", "metric", "n", "median |err|", "p90 |err|", "bias"):
        t.add_column(col, justify="left" if col in ("group", "metric") else "right")
    for gname, key in (("all", "overall"),):
        for metric, st in summary[key].items():
            t.add_row(gname, metric, str(st["n"]), f"{st['median_ape']:.1%}",
                      f"{st['p90_ape']:.1%}", f"{st['bias']:+.1%}")
    for key in ("by_hardware", "by_model", "by_source_id", "by_precision", "by_tp", "by_mode"):
        for g, metrics in summary[key].items():
            for metric, st in metrics.items():
                t.add_row(f"{key[3:]}={g}", metric, str(st["n"]), f"{st['median_ape']:.1%}",
                          f"{st['p90_ape']:.1%}", f"{st['bias']:+.1%}")
    return t


@app.command("validate")
def validate_cmd(
    csv_file: Annotated[Optional[str], typer.Argument(help="Measurements CSV (default: the shipped calibration data).", show_default=False)] = None,
    profile: ProfileOpt = "default",
    cv: Annotated[Optional[str], typer.Option("--cv", help="Leave-one-group-out: device, model or source (refits the profile per fold).")] = None,
    plot: Annotated[Optional[str], typer.Option("--plot", help="Write a predicted-vs-measured scatter (PNG/SVG).")] = None,
    rows: Annotated[bool, typer.Option("--rows/--no-rows", help="Print every row, not only the summary.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: rows, skipped, summary.")] = False,
) -> None:
    """Compare predictions with measured throughput, TTFT, TPOT and latency."""
    from . import validate as val
    measured = val.read_measurements(csv_file or val.shipped_measurements())
    if cv:
        from .fit import calibrate_fn
        preds = val.cross_validate(measured, cv, calibrate_fn())
        result = val.Validation(preds, [], f"leave-one-{cv}-out refit")
    else:
        result = val.predict_rows(measured, profile)
    data = result.to_dict()
    if plot:
        from .plots import validation_scatter
        validation_scatter(result, plot)
    if as_json:
        print(json.dumps(data, indent=1))
        return
    if rows:
        t = Table(title="Rows", title_justify="left")
        for col in ("id", "device", "model", "tp", "prec", "mode", "metric", "measured", "predicted", "error"):
            t.add_column(col)
        for r in data["rows"]:
            t.add_row(r["id"], r["hardware"], r["model"].split("/")[-1], str(r["tp"]), r["precision"],
                      r["mode"], r["metric"], f"{r['measured']:.4g}", f"{r['predicted']:.4g}",
                      f"{r['error']:+.1%}")
        out.print(t)
    out.print(_summary_table(f"Prediction error, profile {result.profile}", data["summary"]))
    for s in data["skipped"]:
        out.print(f"[yellow]skipped[/] row {s['id']}: {s['reason']}")
    if plot:
        out.print(f"wrote {plot}")


@app.command("calibrate")
def calibrate_cmd(
    csv_file: Annotated[str, typer.Argument(help="Measurements CSV (schema of the shipped calibration.csv).")],
    out_file: Annotated[str, typer.Option("--out", help="Profile TOML to write (use it as --profile FILE).")] = "calibrated.toml",
    params: Annotated[Optional[str], typer.Option("--params", help="Comma-separated parameters to fit (default: all).")] = None,
    cv: Annotated[Optional[str], typer.Option("--cv", help="Also report leave-one-group-out error: device, model or source.")] = None,
) -> None:
    """Fit an efficiency profile to your own measurements (e.g. your engine on your GPU)."""
    from . import fit, validate as val
    from .specs.profile import profile_to_toml
    if not out_file.endswith(".toml"):
        raise InputError(f"out: the profile file must end in .toml, got {out_file!r}")
    chosen = tuple(p.strip() for p in params.split(",")) if params else fit.DEFAULT_FIT
    measured = val.read_measurements(csv_file)
    prof, stats = fit.calibrate(measured, chosen, name=Path(out_file).stem, source=str(csv_file))
    Path(out_file).write_text(profile_to_toml(prof))
    fitted = val.predict_rows(measured, prof)
    out.print(_summary_table("Fit error (rows used for the fit)", fitted.summary()))
    if cv:
        preds = val.cross_validate(measured, cv, fit.calibrate_fn(chosen))
        out.print(_summary_table(f"Leave-one-{cv}-out error", val.summarize(preds)))
    out.print(f"wrote {out_file}: families {', '.join(prof.families) or '-'} + fallback")


# -- advise (issue 8) -------------------------------------------------------------------------
def _advise_value(x, adv) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    if not adv.higher_is_better:
        return secs(x)
    if adv.metric_label == "tokens per USD":
        return f"{x:,.0f} tok/$"
    return f"{x:,.1f}" + (" tok/s/device" if adv.goal == "cost" else " tok/s")


def _styled(label: str) -> str:
    style = BOUND_STYLE.get(label)
    return f"[{style}]{label}[/]" if style else label


def _print_advice(adv, top: int) -> None:
    d = adv.diagnosis
    where = d["hardware"] if d["devices"] == 1 else f"{d['devices']} x {d['hardware']} ({d['layout']})"
    out.print(f"[bold]{d['model']}[/] on [bold]{where}[/], {d['precision']}, batch {d['batch']}, "
              f"input {d['input_len']}, output {d['output_len']}, attention "
              f"{'fused' if d['flash'] else 'unfused'}, profile {d['profile']}")
    fits = "[green]fits[/]" if d["fits"] else "[red]does not fit[/]"
    out.print(f"goal [bold]{d['goal']}[/] ({d['metric']}, {'higher' if d['higher_is_better'] else 'lower'}"
              f" is better): {_advise_value(d['value'], adv)}; TTFT {secs(d['ttft_s'])}, TPOT "
              f"{secs(d['tpot_s']) if d['tpot_s'] is not None else '-'}, "
              f"{d['throughput_tok_s']:,.1f} tok/s, memory {gb(d['memory_bytes'])} / "
              f"{gb(d['capacity_bytes'])} per device {fits} (max batch {d['max_batch']})")
    t = Table(title="Diagnosis: share of time", title_justify="left", box=None, header_style="bold")
    t.add_column("")
    for col in ("prefill", "decode step", f"goal ({d['goal']})"):
        t.add_column(col, justify="right")
    pre, dec = d["prefill"], d["decode"]
    t.add_row("time", secs(pre["time_s"]), secs(dec["time_s"]),
              f"{100 * d['phase_weights']['prefill']:.0f} % / {100 * d['phase_weights']['decode']:.0f} %")
    t.add_section()
    keys = list(dict.fromkeys(list(pre["regimes"]) + list(dec["regimes"])))
    for k in keys:
        t.add_row(_styled(k), f"{100 * pre['regimes'].get(k, 0):.1f} %",
                  f"{100 * dec['regimes'].get(k, 0):.1f} %", f"{100 * d['regimes'].get(k, 0):.1f} %")
    from .advise import CLASS_LABELS
    t.add_section()
    for k in dict.fromkeys(list(pre["classes"]) + list(dec["classes"])):
        t.add_row(CLASS_LABELS.get(k, k), f"{100 * pre['classes'].get(k, 0):.1f} %",
                  f"{100 * dec['classes'].get(k, 0):.1f} %", f"{100 * d['classes'].get(k, 0):.1f} %")
    t.add_section()
    t.add_row("intensity (FLOP/byte)", f"{pre['intensity']:.3g}", f"{dec['intensity']:.3g}", "")
    t.add_row("ridge point (FLOP/byte)", f"{pre['ridge_point']:.3g}", f"{dec['ridge_point']:.3g}", "")
    eff = [x["effective_ridge_point"] for x in (pre, dec)]
    t.add_row("attained ridge (FLOP/byte)", *(f"{x:.3g}" if x else "-" for x in eff), "")
    out.print(t)
    out.print(f"[bold]Bottleneck:[/] {d['summary']}")
    for n in adv.notes:
        out.print(f"[yellow]note:[/] {n}")
    ok, bad = adv.accepted, adv.rejected
    lt = Table(title=f"Levers ranked by {d['metric']} (each evaluated by the engine)",
               title_justify="left", header_style="bold")
    for col in ("#", "lever", "before -> after", "gain", "regime after", "memory after", "caveat"):
        lt.add_column(col, justify="right" if col in ("#", "gain", "memory after") else "left",
                      overflow="fold")
    for i, lv in enumerate(ok[:top] if top else ok, 1):
        lt.add_row(str(i), lv.lever, f"{_advise_value(lv.before, adv)} -> {_advise_value(lv.after, adv)}",
                   f"{lv.gain:.2f}x" if np.isfinite(lv.gain) else "-",
                   _styled(lv.regime_after),
                   f"{lv.memory_after_bytes / 1e9:.1f}/{lv.capacity_bytes / 1e9:.0f} GB", lv.caveat)
    out.print(lt)
    if top and len(ok) > top:
        out.print(f"  ... {len(ok) - top} more accepted levers (--top 0 or --json for all)")
    if bad:
        rt = Table(title="Rejected (limits, memory, or no gain over a part)", title_justify="left", box=None,
                   header_style="bold")
        for col in ("lever", "after", "gain", "reason"):
            rt.add_column(col, justify="right" if col == "gain" else "left", overflow="fold")
        for lv in bad[:top] if top else bad:
            rt.add_row(lv.lever, _advise_value(lv.after, adv),
                       f"{lv.gain:.2f}x" if np.isfinite(lv.gain) else "-", lv.rejected, style="dim")
        out.print(rt)
        if top and len(bad) > top:
            out.print(f"  ... {len(bad) - top} more rejected")
    if adv.skipped:
        by: dict[str, list[str]] = {}
        for n, r in adv.skipped:   # one line per reason: devices often share one
            by.setdefault(r.split(": ", 1)[1] if r.startswith("hardware ") else r, []).append(n)
        out.print("[bold]Not evaluated:[/]")
        for r, names in by.items():
            out.print(f"  {', '.join(names)}: {r}", style="dim", highlight=False)


@app.command("advise")
def advise_cmd(
    model: ModelOpt = DEFAULT_MODEL,
    hardware: Annotated[str, typer.Option("--hardware", "-H", help="Device id or .toml/.yaml device file.")] = DEFAULT_HARDWARE,
    batch: Annotated[int, typer.Option("--batch", "-b", help="Batch size (per replica).")] = 1,
    input_len: Annotated[int, typer.Option("--input", "-i", help="Prompt tokens.")] = 512,
    output_len: Annotated[int, typer.Option("--output", "-o", help="Generated tokens incl. the first.")] = 128,
    goal: Annotated[str, typer.Option("--goal", "-g", help="throughput, latency (end-to-end), ttft, tpot or cost (tokens/s per device, or per USD with --prices).")] = "throughput",
    max_ttft: Annotated[Optional[str], typer.Option("--max-ttft", help="Limit on time to first token: 1s, 500ms.")] = None,
    max_tpot: Annotated[Optional[str], typer.Option("--max-tpot", help="Limit on time per output token: 50ms.")] = None,
    quant: QuantOpt = None, wbits: WbitsOpt = None, abits: AbitsOpt = None, kvbits: KvbitsOpt = None,
    flash: FlashOpt = True, tp: TpOpt = 1, pp: PpOpt = 1, ep: EpOpt = 1, dp: DpOpt = 1,
    gpus_per_node: NodeOpt = 8, nodes: NodesOpt = None, microbatches: MicroOpt = None,
    overlap: OverlapOpt = False,
    allreduce: AllreduceOpt = "auto", offload_weights: OffWOpt = 0.0, offload_kv: OffKvOpt = 0.0,
    host_bw: HostBwOpt = None, profile: ProfileOpt = "default",
    draft: Annotated[Optional[str], typer.Option("--draft", help="Evaluate speculative decoding with this draft model.")] = None,
    draft_k: Annotated[int, typer.Option("--draft-k", help="Draft tokens per speculative round [1, 16].")] = 4,
    accept: Annotated[float, typer.Option("--accept", help="Acceptance rate per draft token [0, 1].")] = 0.7,
    draft_tp: Annotated[Optional[int], typer.Option("--draft-tp", help="Tensor-parallel devices of the draft (default: --tp).")] = None,
    devices: Annotated[str, typer.Option("--devices", help="Devices to consider switching to: all (the catalog), none, or a comma-separated list.")] = "all",
    prices: Annotated[Optional[str], typer.Option("--prices", help="TOML or CSV: device id -> USD per device-hour (goal cost).")] = None,
    combos: Annotated[bool, typer.Option("--combos/--no-combos", help="Also evaluate combinations of the top levers.")] = True,
    top: Annotated[int, typer.Option("--top", help="Rows shown per table (0: all).")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: diagnosis, ranked levers, skipped.")] = False,
) -> None:
    """Name the bottleneck and rank optimization levers by predicted gain."""
    from . import advise as advmod
    kw = engine_kwargs(quant, wbits, abits, kvbits, flash, tp, pp, ep, dp, gpus_per_node,
                       microbatches, overlap, allreduce, offload_weights, offload_kv, host_bw,
                       profile, nodes)
    if top < 0:
        raise InputError(f"top must be >= 0, got {top}")
    dv = devices.strip().lower()
    dev_list = None if dv == "all" else [] if dv in ("none", "") else _device_list([devices], None)
    adv = advmod.advise(model, hardware, batch, input_len, output_len, goal=goal,
                        max_ttft_s=_parse_seconds("max_ttft", max_ttft),
                        max_tpot_s=_parse_seconds("max_tpot", max_tpot), draft=draft,
                        draft_k=draft_k, accept=accept, draft_tp=draft_tp, devices=dev_list,
                        prices=prices, combos=combos, **kw)
    for w in adv.diagnosis["warnings"]:
        err.print(f"[yellow]warning:[/] {w}")
    if as_json:
        print(json.dumps(adv.to_dict(), indent=1))
        return
    _print_advice(adv, top)


# -- probe and bench: ground truth on this machine (issue 6) --------------------------------
@app.command("probe")
def probe_cmd(
    device: Annotated[str, typer.Option("--device", help="cpu or cuda (cuda:N).")] = "cpu",
    out_file: Annotated[Optional[str], typer.Option("--out", help="Write the device file (TOML) here; use it as --hardware FILE.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="CI-sized run (~10 s on a CPU): smaller buffers, fewer shapes and repeats.")] = False,
    threads: Annotated[Optional[int], typer.Option("--threads", help="CPU threads (default: PyTorch's); bench with the same.")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="Precision the efficiency block is fitted for: bf16, fp16, fp32.")] = "bf16",
    datasheet: Annotated[Optional[str], typer.Option("--datasheet", help="Catalog device to print beside the measurements (default: matched by name).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print every measurement as JSON.")] = False,
) -> None:
    """Measure this machine's roofline (bandwidth, GEMM curves, overheads, attention) and write a device file."""
    from pathlib import Path
    from .probe import compare_datasheet, match_catalog, probe
    from .probe.report import tables
    if out_file is not None:
        p = Path(out_file)
        if p.suffix.lower() != ".toml":
            raise InputError(f"out: the device file must end in .toml, got {p.name!r}")
        if not p.resolve().parent.is_dir():
            raise InputError(f"out: directory {p.parent} does not exist")
    if datasheet is not None:
        hwmod.load_hardware(datasheet)  # fail before measuring
    r = probe(device=device, quick=quick, threads=threads, dtype=dtype,
              progress=None if as_json else (lambda s: err.print(f"[dim]probe: {s}...[/]")))
    if out_file is not None:
        Path(out_file).write_text(r.to_toml())
        hwmod.load_hardware(out_file)  # the file must load as a device
    if as_json:
        print(json.dumps(r.to_dict(), indent=1))
        return
    sheet_id = datasheet or match_catalog(r.name)
    for t in tables(r, compare_datasheet(r, sheet_id)):
        out.print(t)
    if not sheet_id:
        out.print(f"'{r.name}' is not in the catalog; --datasheet ID prints a catalog device beside it.")
    if out_file is not None:
        out.print(f"wrote {out_file}: use it as --hardware {out_file}")


@app.command("bench")
def bench_cmd(
    model: Annotated[str, typer.Option("--model", "-m", help="Built-in id or alias, config.json path, or hub id (config only; weights are random).")],
    device: Annotated[str, typer.Option("--device", help="cpu or cuda (cuda:N).")] = "cpu",
    dtype: Annotated[str, typer.Option("--dtype", help="bf16, fp16 or fp32.")] = "bf16",
    batch: Annotated[int, typer.Option("--batch", "-b", help="Sequences decoded together.")] = 1,
    input_len: Annotated[int, typer.Option("--input", "-i", help="Prompt tokens.")] = 128,
    output_len: Annotated[int, typer.Option("--output", "-o", help="Generated tokens incl. the first (>= 2).")] = 32,
    layers: Annotated[Optional[int], typer.Option("--layers", help="Keep only the first N decoder layers.")] = None,
    scale: Annotated[Optional[float], typer.Option("--scale", help="Width factor in (0, 1]: fewer heads, same head_dim and ratios.")] = None,
    hardware: Annotated[Optional[str], typer.Option("--hardware", "-H", help="Device file from `probe --out` (default: a quick probe first).")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="CPU threads (use the probe's).")] = None,
    repeats: Annotated[int, typer.Option("--repeats", help="Timed generations (medians).")] = 3,
    prof: Annotated[bool, typer.Option("--profile/--no-profile", help="Split measured time by operator class with torch.profiler.")] = True,
    diagnose: Annotated[bool, typer.Option("--diagnose/--no-diagnose", help="Scaling tests: a narrow twin (1/4 width) and twice the batch.")] = True,
    csv_file: Annotated[Optional[str], typer.Option("--csv", help="Append the measured row to a CSV that `validate` reads.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: measured_*, predicted_*, ratio_*, shares, diagnosis.")] = False,
) -> None:
    """Run a real model (random weights) on this machine and compare with the engine."""
    from .bench import bench, write_csv
    from .bench.report import header, tables
    if csv_file is not None and not csv_file.lower().endswith(".csv"):
        raise InputError(f"csv: the file must end in .csv, got {csv_file!r}")
    r = bench(model, device=device, dtype=dtype, batch=batch, input_len=input_len,
              output_len=output_len, layers=layers, scale=scale, hardware=hardware,
              threads=threads, repeats=repeats, profile=prof,
              diagnose_phases=("prefill", "decode") if diagnose else (),
              progress=None if as_json else (lambda s: err.print(f"[dim]bench: {s}...[/]")))
    for w in r.warnings:
        err.print(f"[yellow]warning:[/] {w}")
    if csv_file is not None:
        write_csv(r, csv_file)
    if as_json:
        print(json.dumps(r.to_dict(), indent=1, default=float))
        return
    out.print(header(r))
    for t in tables(r):
        out.print(t)
    if csv_file is not None:
        out.print(f"appended to {csv_file}: `llmroofline validate {csv_file}` re-predicts it")


# -- simulate, capacity (issue 9) --------------------------------------------------------------
ArrivalOpt = Annotated[Optional[str], typer.Option("--arrival", help="poisson, gamma, fixed, offline (all at t=0) or closed (needs --concurrency). Default: poisson with --rate, closed with --concurrency, else offline.")]
InDistOpt = Annotated[str, typer.Option("--input-dist", help="Prompt lengths: N, fixed:N, uniform:a,b, lognormal:mean,sigma, empirical:FILE.csv[:column].")]
OutDistOpt = Annotated[str, typer.Option("--output-dist", help="Output lengths (same syntax as --input-dist).")]
TraceOpt = Annotated[Optional[str], typer.Option("--trace", help="CSV arrival_s,input_len,output_len (replaces --rate and the distributions).")]
BurstOpt = Annotated[float, typer.Option("--burstiness", help="Gamma arrivals: shape of the gaps (1 = Poisson, < 1 burstier).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (same seed, same run).")]
PolicyOpt = Annotated[str, typer.Option("--policy", help="continuous (in-flight batching) or static (batch runs to its longest request).")]
MaxBatchOpt = Annotated[int, typer.Option("--max-batch", help="Running requests per iteration (vLLM max_num_seqs).")]
MaxTokOpt = Annotated[int, typer.Option("--max-tokens", help="Tokens per iteration (vLLM max_num_batched_tokens).")]
ChunkOpt = Annotated[bool, typer.Option("--chunked/--no-chunked", help="Chunked prefill.")]
BlockOpt = Annotated[int, typer.Option("--block-size", help="KV cache tokens per block.")]
KvFracOpt = Annotated[float, typer.Option("--kv-fraction", help="Share of memory left after weights and activations given to the KV cache.")]
ReplicasOpt = Annotated[int, typer.Option("--replicas", help="Replicas behind the --router.")]
RouterOpt = Annotated[str, typer.Option("--router", help="round-robin; least-loaded (fewest prompt tokens awaiting their first token, then fewest outstanding requests); least-requests (fewest outstanding requests).")]
PreemptOpt = Annotated[str, typer.Option("--preemption", help="When KV blocks run out: recompute (free the cache, re-prefill later) or swap (copy the cache to host memory over PCIe).")]
SwapGbOpt = Annotated[Optional[float], typer.Option("--swap-gb", help="Host swap space per device in GB (default: unlimited); a victim that does not fit is recomputed.")]
SwapBwOpt = Annotated[Optional[float], typer.Option("--swap-bw", help="Host link for swapping, GB/s per direction (default: the device's PCIe / 2).")]
ReserveOpt = Annotated[str, typer.Option("--reserve", help="KV blocks reserved at admission: prompt (vLLM; decodes may preempt) or full (prompt + output: TensorRT-LLM guaranteed-no-evict, never preempts).")]
DisaggOpt = Annotated[Optional[str], typer.Option("--disaggregate", help="P:D = P prefill and D decode replicas; the KV cache is sent between them (replaces --replicas).")]
KvLinkOpt = Annotated[Optional[float], typer.Option("--kv-link-bw", help="Disaggregation: KV transfer link, GB/s per device and direction (default: the scale-up link if all replicas fit in one node, else the network).")]


def _sim_setup(model, hardware, quant, wbits, abits, kvbits, flash, tp, pp, ep, gpus_per_node,
               overlap, allreduce, offload_weights, offload_kv, host_bw, profile, policy,
               max_batch, max_tokens, chunked, block_size, kv_fraction, preemption="recompute",
               swap_gb=None, swap_bw=None, reserve="prompt"):
    from .serving import IterationCost, SchedulerConfig
    kw = engine_kwargs(quant, wbits, abits, kvbits, flash, tp, pp, ep, 1, gpus_per_node,
                       None, overlap, allreduce, offload_weights, offload_kv, host_bw, profile)
    cfg = SchedulerConfig(policy=policy, max_batch=max_batch, max_tokens=max_tokens,
                          chunked=chunked, block_size=block_size, kv_fraction=kv_fraction,
                          preemption=preemption, swap_gb=swap_gb, reserve=reserve,
                          swap_bytes_s=None if swap_bw is None else swap_bw * 1e9)
    return cfg, IterationCost.of(model, hardware, max_tokens=max_tokens, max_batch=max_batch, **kw)


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
    u.add_row("throughput: requests/s", f"{th['requests_s']:.2f}")
    u.add_row("throughput: input / output tokens/s", f"{th['input_tok_s']:,.0f} / {th['output_tok_s']:,.0f}")
    if any(slo[k] is not None for k in ("max_ttft_s", "max_tpot_s", "max_e2e_s")):
        u.add_row("SLO attained / goodput", f"{100 * slo['attained']:.1f} % / {slo['goodput_requests_s']:.2f} req/s")
    u.add_row("batch: mean / max", f"{s['batch']['mean']:.1f} / {s['batch']['max']}")
    u.add_row("KV cache: capacity, mean / max use", f"{kv['capacity_tokens']:,} tokens, "
              f"{100 * kv['mean_used']:.1f} % / {100 * kv['max_used']:.1f} %")
    u.add_row("busy / preemptions", f"{100 * s['busy']:.1f} % / {s['preemptions']}"
              + (f" ({s['swaps']} by swap)" if s.get("swaps") else ""))
    if s.get("kv_transfer_s"):
        u.add_row("KV transfer prefill -> decode: mean / p99",
                  f"{secs(s['kv_transfer_s']['mean'])} / {secs(s['kv_transfer_s']['p99'])}")
    out.print(u)


@app.command("simulate")
def simulate_cmd(
    model: ModelOpt = "meta-llama/Llama-3.1-8B",
    hardware: Annotated[str, typer.Option("--hardware", "-H", help="Device id or .toml/.yaml device file.")] = "h100-sxm",
    rate: Annotated[Optional[float], typer.Option("--rate", "-r", help="Requests per second (open loop).")] = None,
    requests: Annotated[int, typer.Option("--requests", "-n", help="Number of requests.")] = 1000,
    input_dist: InDistOpt = "lognormal:1024,0.6", output_dist: OutDistOpt = "lognormal:256,0.8",
    trace: TraceOpt = None,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", "-c", help="Closed loop: N clients, each sending its next request when the previous one finishes.")] = None,
    arrival: ArrivalOpt = None, burstiness: BurstOpt = 1.0, seed: SeedOpt = 0,
    policy: PolicyOpt = "continuous", max_batch: MaxBatchOpt = 256, max_tokens: MaxTokOpt = 8192,
    chunked: ChunkOpt = True, block_size: BlockOpt = 16, kv_fraction: KvFracOpt = 0.9,
    replicas: ReplicasOpt = 1, router: RouterOpt = "round-robin",
    preemption: PreemptOpt = "recompute", swap_gb: SwapGbOpt = None, swap_bw: SwapBwOpt = None,
    reserve: ReserveOpt = "prompt", disaggregate: DisaggOpt = None, kv_link_bw: KvLinkOpt = None,
    max_ttft: Annotated[Optional[str], typer.Option("--max-ttft", help="SLO for goodput: TTFT limit (1s, 500ms).")] = None,
    max_tpot: Annotated[Optional[str], typer.Option("--max-tpot", help="SLO for goodput: TPOT limit (50ms).")] = None,
    quant: QuantOpt = None, wbits: WbitsOpt = None, abits: AbitsOpt = None, kvbits: KvbitsOpt = None,
    flash: FlashOpt = True, tp: TpOpt = 1, pp: PpOpt = 1, ep: EpOpt = 1,
    gpus_per_node: NodeOpt = 8, overlap: OverlapOpt = False, allreduce: AllreduceOpt = "auto",
    offload_weights: OffWOpt = 0.0, offload_kv: OffKvOpt = 0.0, host_bw: HostBwOpt = None,
    profile: ProfileOpt = "default",
    csv_out: Annotated[Optional[str], typer.Option("--csv", help="Write per-request results to this CSV.")] = None,
    plot: Annotated[Optional[str], typer.Option("--plot", help="Draw batch size and KV use over time and the TTFT/TPOT distributions (.png or .svg).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Simulate serving a stream of requests: continuous batching, paged KV cache, SLOs."""
    from .serving import make_workload, simulate
    if plot:
        from .serving.plots import check_plot_path
        check_plot_path(plot)
    pd = _parse_pd(disaggregate)
    link = _gb_s("kv_link_bw", kv_link_bw)
    slo_ttft, slo_tpot = _parse_seconds("max_ttft", max_ttft), _parse_seconds("max_tpot", max_tpot)
    cfg, cost = _sim_setup(model, hardware, quant, wbits, abits, kvbits, flash, tp, pp, ep,
                           gpus_per_node, overlap, allreduce, offload_weights, offload_kv,
                           host_bw, profile, policy, max_batch, max_tokens, chunked, block_size,
                           kv_fraction, preemption, swap_gb, swap_bw, reserve)
    wl = make_workload(requests, rate=rate, arrival=arrival, input_dist=input_dist,
                       output_dist=output_dist, trace=trace, concurrency=concurrency,
                       burstiness=burstiness, seed=seed,
                       max_context=cost.model.max_position_embeddings)
    r = simulate(workload=wl, config=cfg, replicas=replicas, router=router, disaggregate=pd,
                 kv_link_bytes_s=link, cost=cost)
    s = r.summary(slo_ttft, slo_tpot)
    s["workload"] = {"arrival": wl.arrival, "rate": rate, "concurrency": concurrency,
                     "input_dist": None if trace else input_dist,
                     "output_dist": None if trace else output_dist, "trace": trace,
                     "seed": seed, "mean_input_len": float(wl.input_len.mean()),
                     "mean_output_len": float(wl.output_len.mean())}
    s["config"] = {"model": cost.model.name, "hardware": cost.roof.hw.id, "tp": tp,
                   "replicas": r.n_replicas, "router": router,
                   "disaggregate": list(pd) if pd else None, "policy": policy,
                   "max_batch": max_batch, "max_tokens": max_tokens, "chunked": chunked,
                   "block_size": block_size, "kv_fraction": kv_fraction,
                   "preemption": preemption, "swap_gb": swap_gb, "reserve": reserve,
                   "profile": profile}
    if csv_out:
        r.to_csv(csv_out)
    where = cost.roof.hw.id if tp == 1 else f"{tp} x {cost.roof.hw.id}"
    load = (f"{rate:g} req/s {wl.arrival}" if rate else f"{concurrency} clients (closed loop)"
            if concurrency else "trace" if trace else "all at once (offline)")
    reps = (f" x ({pd[0]} prefill + {pd[1]} decode replicas, {router})" if pd else
            f" x {replicas} replicas ({router})" if replicas > 1 else "")
    title = (f"{cost.model.name} on {where}{reps}, {policy} batching, {load}, mean input "
             f"{wl.input_len.mean():.0f} / output {wl.output_len.mean():.0f} tokens")
    if plot:
        from .serving.plots import plot_simulation
        plot_simulation(r, plot, title, max_ttft_s=slo_ttft, max_tpot_s=slo_tpot)
    for note in r.notes:
        err.print(f"[yellow]note:[/] {note}")
    if as_json:
        print(json.dumps(s, indent=1))
        return
    _print_sim(s, title)
    if plot:
        out.print(f"wrote {plot}")


@app.command("capacity")
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
    policy: PolicyOpt = "continuous",
    max_batch: Annotated[str, typer.Option("--max-batch", help="Running requests per iteration (vLLM max_num_seqs); a list (64,128,256) searches.")] = "256",
    max_tokens: Annotated[str, typer.Option("--max-tokens", help="Tokens per iteration = prefill chunk budget (vLLM max_num_batched_tokens); a list searches.")] = "8192",
    chunked: ChunkOpt = True, block_size: BlockOpt = 16, kv_fraction: KvFracOpt = 0.9,
    replicas: ReplicasOpt = 1, router: RouterOpt = "round-robin",
    preemption: PreemptOpt = "recompute", swap_gb: SwapGbOpt = None, swap_bw: SwapBwOpt = None,
    reserve: ReserveOpt = "prompt", disaggregate: DisaggOpt = None, kv_link_bw: KvLinkOpt = None,
    rate_target: Annotated[Optional[float], typer.Option("--rate-target", help="Search: the request rate to serve; reports the cheapest configuration meeting the SLOs there.")] = None,
    prices: Annotated[Optional[str], typer.Option("--prices", help="Search: USD per device-hour (.toml 'h100-sxm = 2.49' or .csv device,usd_per_hour); cheapest = lowest USD/h instead of fewest devices.")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Search: parallel processes (default: CPU count).")] = None,
    plot: Annotated[Optional[str], typer.Option("--plot", help="Search: the Pareto front (throughput per device vs TPOT); single configuration: the run at capacity (.png/.svg).")] = None,
    quant: QuantOpt = None, wbits: WbitsOpt = None, abits: AbitsOpt = None, kvbits: KvbitsOpt = None,
    flash: FlashOpt = True,
    tp: Annotated[str, typer.Option("--tp", help="Tensor-parallel devices per replica; a list (1,2,4,8) searches.")] = "1",
    pp: PpOpt = 1, ep: EpOpt = 1,
    gpus_per_node: NodeOpt = 8, overlap: OverlapOpt = False, allreduce: AllreduceOpt = "auto",
    offload_weights: OffWOpt = 0.0, offload_kv: OffKvOpt = 0.0, host_bw: HostBwOpt = None,
    profile: ProfileOpt = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result and every trial as JSON.")] = False,
) -> None:
    """Highest request rate meeting latency SLOs (bisection over the rate); with lists of
    devices / --tp / --max-batch / --max-tokens or a --rate-target, a search for the cheapest
    configuration and the Pareto front."""
    from .serving import capacity
    slo = dict(max_ttft_s=_parse_seconds("max_ttft_p99", max_ttft_p99),
               max_tpot_s=_parse_seconds("max_tpot_p99", max_tpot_p99),
               max_e2e_s=_parse_seconds("max_e2e_p99", max_e2e_p99))
    hws = _device_list([hardware], None)
    tps = _int_list("tp", tp)
    mbs = _int_list("max_batch", max_batch)
    mts = _int_list("max_tokens", max_tokens)
    if plot:
        from .serving.plots import check_plot_path
        check_plot_path(plot)
    if len(hws) > 1 or len(tps) > 1 or len(mbs) > 1 or len(mts) > 1 or rate_target or prices:
        if disaggregate or replicas != 1 or trace:
            raise InputError("capacity: a configuration search sizes replicas itself (no "
                             "--replicas, --disaggregate or --trace); run them as one configuration")
        _capacity_search(model, hws, tps, mbs, mts, slo, percentile, requests, input_dist,
                         output_dist, arrival, burstiness, seed, policy, chunked, block_size,
                         kv_fraction, preemption, swap_gb, swap_bw, reserve, router, rate_target,
                         prices, workers, plot, quant, wbits, abits, kvbits, flash, pp, ep,
                         gpus_per_node, overlap, allreduce, offload_weights, offload_kv, host_bw,
                         profile, as_json)
        return
    pd = _parse_pd(disaggregate)
    cfg, cost = _sim_setup(model, hws[0], quant, wbits, abits, kvbits, flash, tps[0], pp, ep,
                           gpus_per_node, overlap, allreduce, offload_weights, offload_kv,
                           host_bw, profile, policy, mbs[0], mts[0], chunked, block_size,
                           kv_fraction, preemption, swap_gb, swap_bw, reserve)
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
        from .serving.plots import plot_simulation
        plot_simulation(c.result, plot, f"{cost.model.name} on {where}{group} at capacity "
                        f"{c.rate:.2f} req/s ({lim})", max_ttft_s=slo["max_ttft_s"],
                        max_tpot_s=slo["max_tpot_s"])
    if as_json:
        print(json.dumps(d, indent=1))
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
    vals = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            v = int(part)
        except ValueError:
            v = 0
        if v < 1:
            raise InputError(f"{field}: expected integers >= 1 separated by commas, got {text!r}")
        vals.append(v)
    if not vals:
        raise InputError(f"{field}: expected integers >= 1 separated by commas, got {text!r}")
    return sorted(set(vals))


def _capacity_search(model, hws, tps, mbs, mts, slo, percentile, requests, input_dist,
                     output_dist, arrival, burstiness, seed, policy, chunked, block_size,
                     kv_fraction, preemption, swap_gb, swap_bw, reserve, router, rate_target,
                     prices, workers, plot, quant, wbits, abits, kvbits, flash, pp, ep,
                     gpus_per_node, overlap, allreduce, offload_weights, offload_kv, host_bw,
                     profile, as_json) -> None:
    from .serving import SchedulerConfig
    from .serving.search import search
    if workers is not None and workers < 1:
        raise InputError(f"workers: must be >= 1, got {workers}")
    kw = engine_kwargs(quant, wbits, abits, kvbits, flash, 1, pp, ep, 1, gpus_per_node, None,
                       overlap, allreduce, offload_weights, offload_kv, host_bw, profile)
    layout = kw.pop("layout")
    cfg = SchedulerConfig(policy=policy, max_batch=mbs[0], max_tokens=max(mts[0], mbs[0]),
                          chunked=chunked, block_size=block_size, kv_fraction=kv_fraction,
                          preemption=preemption, swap_gb=swap_gb, reserve=reserve,
                          swap_bytes_s=None if swap_bw is None else swap_bw * 1e9)
    s = search(model, hws, tp=tps, max_batch=mbs, max_tokens=mts, rate_target=rate_target,
               prices=prices, percentile=percentile, requests=requests, input_dist=input_dist,
               output_dist=output_dist, seed=seed, arrival=arrival, burstiness=burstiness,
               router=router, workers=workers, config=cfg, layout=layout, **slo, **kw)
    if plot:
        from .serving.plots import plot_pareto
        plot_pareto(s, plot)
    if as_json:
        print(json.dumps(s.to_dict(), indent=1))
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


# -- serve (issue 7) ----------------------------------------------------------------------------
@app.command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback by default; the API has no authentication).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
) -> None:
    """Web page and HTTP JSON API on http://HOST:PORT/ (needs the web extra)."""
    from . import web
    web.require()
    web.check_listen(host, port)
    if not web.is_loopback(host):
        err.print(f"[yellow]warning:[/] listening on {host}, not a loopback address: anyone who "
                  "can reach it can use the API (it has no authentication)")
    err.print(f"llmroofline: http://{host if ':' not in host else f'[{host}]'}:{port}/  "
              f"(API schema: /openapi.json; Ctrl+C stops)")
    web.serve(host, port)


def _error(msg: str) -> int:
    """One line on stderr; the message is printed literally (it may contain brackets)."""
    err.print("[red]error:[/] " + escape(msg.replace("\n", " ")), highlight=False, soft_wrap=True)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and exit status 2."""
    cmd = typer.main.get_command(app)
    try:
        rc = cmd.main(args=argv, prog_name="llmroofline", standalone_mode=False)
    except InputError as e:
        return _error(str(e))
    except click_exc.NoArgsIsHelpError as e:
        e.show()
        return 0
    except click_exc.UsageError as e:
        return _error(e.format_message())
    except typer.Abort:
        return 130
    except typer.Exit as e:
        return e.exit_code
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
