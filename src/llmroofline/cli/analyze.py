"""`analyze`: the per-operator report of one workload or a grid."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from .. import decoding, jsonout, phases, report
from ..gridspec import cartesian, parse_grid
from ..errors import InputError
from ..specs.catalog import DEFAULT_MODEL
from ..specs.model import mtp_draft
from ..specs.hardware import DEFAULT_HARDWARE
from .common import (
    _engine_label, app, BOUND_STYLE, deployment_options, engine_kwargs, err, gb, ModelOpt, out,
    secs, si,
)


@app.command()
@deployment_options()
def analyze(
    model: ModelOpt = DEFAULT_MODEL,
    hardware: Annotated[str, typer.Option("--hardware", "-H", help="Device id or .toml/.yaml device file.")] = DEFAULT_HARDWARE,
    batch: Annotated[str, typer.Option("--batch", "-b", help="Batch size (per replica) or grid: 16, 1,8,64, 1:256, 1:256:8.")] = "1",
    input_len: Annotated[str, typer.Option("--input", "-i", help="Prompt tokens (or grid).")] = "128",
    output_len: Annotated[str, typer.Option("--output", "-o", help="Generated tokens incl. the first (or grid).")] = "128",
    beams: Annotated[int, typer.Option("--beams", help="Beam width W: B x W decode rows sharing each prompt's KV; B sequences returned.")] = 1,
    samples: Annotated[int, typer.Option("--samples", help="Parallel samples n per prompt: B x n decode rows and sequences.")] = 1,
    draft: Annotated[Optional[str], typer.Option("--draft", help="Speculative decoding: draft model (id, alias or config.json).")] = None,
    draft_k: Annotated[int, typer.Option("--draft-k", help="Draft tokens per speculative round [1, 16].")] = 4,
    accept: Annotated[float, typer.Option("--accept", help="Acceptance rate per draft token [0, 1].")] = 0.7,
    draft_tp: Annotated[Optional[int], typer.Option("--draft-tp", help="Tensor-parallel devices of the draft (default: --tp).")] = None,
    mtp: Annotated[Optional[int], typer.Option("--mtp", help="Speculative decoding with the model's own MTP module as draft: N draft tokens per round (with --accept).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: one object per point; a grid as columns (axes + one array per metric).")] = False,
    with_ops: Annotated[bool, typer.Option("--ops", help="With --json on a grid: per-operator arrays too (most of the size and time).")] = False,
    setup: dict = None,
) -> None:
    """Per-operator roofline of prefill and decode, latency, throughput and memory."""
    axes = cartesian(batch=parse_grid("batch", batch, hi=1_000_000),
                     input_len=parse_grid("input_len", input_len),
                     output_len=parse_grid("output_len", output_len))
    kw = engine_kwargs(setup)
    decoding.check_draft_k(draft_k), decoding.check_accept(accept)
    a = phases.analyze(model, hardware, axes["batch"], axes["input_len"], axes["output_len"], **kw,
                       beams=beams, samples=samples)
    spec = None
    if mtp is not None:
        if draft is not None:
            raise InputError("mtp: give either --mtp or --draft, not both")
        draft, draft_k = mtp_draft(a.model), decoding.check_draft_k(mtp)
    if draft is not None:
        spec = decoding.speculative(model, hardware, axes["batch"], axes["input_len"],
                                    axes["output_len"], draft=draft, draft_k=draft_k,
                                    accept=accept, draft_tp=draft_tp, beams=beams,
                                    samples=samples, **kw)
    points = list(report.grid_points(a))
    for w in a.warnings + tuple(w for w in (spec.warnings if spec else ()) if w not in a.warnings):
        err.print(f"[yellow]warning:[/] {w}")
    fit = report.fit_warning(a, points)
    if fit:
        err.print(f"[yellow]warning:[/] {fit}", soft_wrap=True)
    if as_json:
        if len(points) > 1:   # columns, compact: a grid's output costs what its numbers do
            print(jsonout.dumps(report.grid_dict(a, spec, ops=with_ops), indent=None))
            return
        d = report.add_fit(report.to_dict(a, points[0]), a, points[0])
        if spec is not None:
            d["speculative"] = report.speculative_dict(spec, points[0])
        print(jsonout.dumps(d))
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
              f"{d['precision']['label']}  {_engine_label(d)}  batch {d['batch']}, input "
              f"{d['input_len']}, output {d['output_len']} tokens, attention "
              f"{'fused' if d['flash'] else 'unfused'}"
              + (", decode from CUDA graphs" if d.get("cuda_graphs") else "")
              + (f", prefill in chunks of {d['prefill_chunk']}" if d.get("prefill_chunk") else ""))
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
    if m.get("state_bytes"):
        mt.add_row("recurrent state (linear attention / SSM)", gb(m["state_bytes"]))
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


