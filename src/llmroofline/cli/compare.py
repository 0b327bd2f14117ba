"""`compare`, `roofline`, `rank`: devices side by side."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import numpy as np
import typer
from rich.table import Table

from .. import jsonout, phases, report
from ..errors import InputError
from ..gridspec import parse_grid
from ..specs.catalog import DEFAULT_MODEL
from ..specs.hardware import DEFAULT_HARDWARE
from .common import (
    _device_list, _parse_seconds, app, BOUND_STYLE, deployment_options, err, ModelOpt, out, secs,
)

_PRECISION = ("quant", "wbits", "abits", "kvbits", "flash")


# -- compare, roofline, rank (issue 4) --------------------------------------------------------
def _check_out(paths: Optional[list[str]], allowed: tuple[str, ...]) -> list[str]:
    from ..safeio import check_out_path
    for p in paths or []:
        check_out_path("out", p, allowed)
    return list(paths or [])


def _mesh_map(m, rows: int = 16, cols: int = 64) -> str:
    """Coloured character map of the winner per cell (batch up, seq right)."""
    from ..plots import DEVICE_COLORS
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


@app.command("compare")
@deployment_options(*_PRECISION, "cuda_graphs", "prefill_chunk", "tp", "ep", "dp", "engine",
                    "profile")
def compare_cmd(
    devices: Annotated[Optional[list[str]], typer.Argument(help="Devices to compare (or use --hardware).", show_default=False)] = None,
    model: ModelOpt = DEFAULT_MODEL,
    hardware: Annotated[Optional[list[str]], typer.Option("--hardware", "-H", help="Devices: --hardware a100-sxm-80gb h20, or comma-separated, or repeated. Default: a100-sxm-80gb h20.", show_default=False)] = None,
    batch: Annotated[str, typer.Option("--batch", "-b", help="Batch axis (grid syntax).")] = "1:256:32",
    seq: Annotated[str, typer.Option("--seq", "-s", help="Sequence axis: mean KV length of the decode steps (grid syntax).")] = "128:32768:32",
    output_len: Annotated[int, typer.Option("--output", "-o", help="Generated tokens per sequence (even); input = seq - output/2.")] = 128,
    method: Annotated[str, typer.Option("--method", help="ops (per-operator), global (whole-model intensity) or both.")] = "ops",
    ignore_context: Annotated[bool, typer.Option("--ignore-context", help="Evaluate sequences beyond the model's max_position_embeddings (e.g. RoPE-scaled).")] = False,
    out_files: Annotated[Optional[list[str]], typer.Option("--out", help="Write FILE.png, .svg, .html or .csv (repeatable).", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary and the mesh as JSON.")] = False,
    setup: dict = None,
) -> None:
    """Throughput ratio of two (or more) devices over a batch x sequence-length mesh."""
    from .. import compare as cmpmod
    names = _device_list(hardware, devices) or ["a100-sxm-80gb", "h20"]
    methods = {"both": ("ops", "global"), "ops": ("ops",), "global": ("global",)}.get(method)
    if methods is None:
        raise InputError(f"method must be ops, global or both, got {method!r}")
    outs = _check_out(out_files, (".png", ".svg", ".html", ".csv"))
    meshes = cmpmod.compare_methods(
        model, names, parse_grid("batch", batch, hi=1_000_000), parse_grid("seq", seq),
        methods, output_len, ignore_context=ignore_context, **setup)
    ms = [meshes[k] for k in methods]
    for w in ms[0].warnings:
        err.print(f"[yellow]warning:[/] {w}")
    if outs:
        from .. import plots
        for p in outs:
            plots.save_compare(ms, p)
            err.print(f"wrote {p}")
    data = cmpmod.compare_payload(ms)
    agree = data.get("sign_agreement_ops_global")
    if as_json:
        print(jsonout.dumps(data))
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
@deployment_options(*_PRECISION, "tp", "ep", "engine", "profile")
def roofline_cmd(
    devices: Annotated[Optional[list[str]], typer.Argument(help="Devices (or use --hardware).", show_default=False)] = None,
    model: ModelOpt = DEFAULT_MODEL,
    hardware: Annotated[Optional[list[str]], typer.Option("--hardware", "-H", help="One or more devices (default: a100-sxm-80gb).", show_default=False)] = None,
    batch: Annotated[int, typer.Option("--batch", "-b", help="Batch size.")] = 1,
    input_len: Annotated[int, typer.Option("--input", "-i", help="Prompt tokens.")] = 512,
    output_len: Annotated[int, typer.Option("--output", "-o", help="Generated tokens.")] = 128,
    phase: Annotated[str, typer.Option("--phase", help="prefill, decode or both.")] = "both",
    out_files: Annotated[Optional[list[str]], typer.Option("--out", help="Write FILE.png, .svg, .html or .csv (repeatable).", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print ridge points and operator points as JSON.")] = False,
    setup: dict = None,
) -> None:
    """Roofline chart: each operator of a phase on the devices' compute and bandwidth roofs."""
    from .. import plots
    names = _device_list(hardware, devices) or [DEFAULT_HARDWARE]
    phs = {"both": ("prefill", "decode"), "prefill": ("prefill",), "decode": ("decode",)}.get(phase)
    if phs is None:
        raise InputError(f"phase must be prefill, decode or both, got {phase!r}")
    outs = _check_out(out_files, (".png", ".svg", ".html", ".csv"))
    analyses = [phases.analyze(model, h, batch, input_len, output_len, **setup) for h in names]
    for a in analyses:
        for w in a.warnings:
            err.print(f"[yellow]warning:[/] {w}")
    for p in outs:
        plots.save_roofline(analyses, p, phs)
        err.print(f"wrote {p}")
    data = report.roofline_payload(analyses, phs)
    pts, ridges = data["points"], data["ridges"]
    if as_json:
        print(jsonout.dumps(data))
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
@deployment_options(*_PRECISION, "cuda_graphs", "prefill_chunk", "engine", "profile")
def rank_cmd(
    devices: Annotated[Optional[list[str]], typer.Argument(help="Devices to rank (default: the whole catalog).", show_default=False)] = None,
    model: ModelOpt = DEFAULT_MODEL,
    hardware: Annotated[Optional[list[str]], typer.Option("--hardware", "-H", help="Devices to rank (default: the whole catalog).", show_default=False)] = None,
    vendor: Annotated[Optional[str], typer.Option("--vendor", help="Only this vendor's devices (NVIDIA, AMD, Google, Intel, Apple, ...).")] = None,
    batch: Annotated[str, typer.Option("--batch", "-b", help="Batch size, or 'max': the best batch that fits and meets the limits.")] = "1",
    input_len: Annotated[int, typer.Option("--input", "-i", help="Prompt tokens.")] = 512,
    output_len: Annotated[int, typer.Option("--output", "-o", help="Generated tokens.")] = 128,
    tp: Annotated[str, typer.Option("--tp", help="Tensor-parallel devices, or 'auto': the fewest of 1, 2, 4, 8 that fit.")] = "1",
    max_ttft: Annotated[Optional[str], typer.Option("--max-ttft", help="Limit on time to first token: 500ms, 0.5s or 0.5 (seconds).")] = None,
    max_tpot: Annotated[Optional[str], typer.Option("--max-tpot", help="Limit on time per output token: 50ms, 0.05s.")] = None,
    prices: Annotated[Optional[str], typer.Option("--prices", help="TOML or CSV: device id -> USD per device-hour.")] = None,
    sort: Annotated[str, typer.Option("--sort", help="tok_s, tok_s_per_device, tok_s_per_w or tok_per_usd.")] = "tok_s",
    top: Annotated[Optional[int], typer.Option("--top", help="Show only the first N rows.")] = None,
    out_files: Annotated[Optional[list[str]], typer.Option("--out", help="Write FILE.csv or FILE.json (repeatable).", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    setup: dict = None,
) -> None:
    """Rank devices for one workload by tokens/s, tokens/s per watt or tokens per dollar."""
    from .. import rank as rankmod
    outs = _check_out(out_files, (".csv", ".json"))
    r = rankmod.rank(model, _device_list(hardware, devices) or None, vendor=vendor, batch=batch,
                     input_len=input_len, output_len=output_len,
                     max_ttft_s=_parse_seconds("max_ttft", max_ttft),
                     max_tpot_s=_parse_seconds("max_tpot", max_tpot), prices=prices,
                     sort_by=sort, tp=tp, **setup)
    for p in outs:
        if p.lower().endswith(".csv"):
            r.to_dataframe().to_csv(p, index=False)
        else:
            with open(p, "w") as f:
                json.dump(r.to_json_data(), f, indent=1)
        err.print(f"wrote {p}")
    if as_json:
        print(jsonout.dumps(r.to_json_data()))
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


