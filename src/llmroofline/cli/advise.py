"""`advise`: the bottleneck and the levers, ranked."""

from __future__ import annotations

from typing import Annotated, Optional

import numpy as np
import typer
from rich.table import Table

from .. import jsonout
from ..deployment import SETUP_FIELDS
from ..errors import InputError
from ..specs.catalog import DEFAULT_MODEL
from ..specs.hardware import DEFAULT_HARDWARE
from .common import (
    _device_list, _engine_label, _parse_seconds, app, BOUND_STYLE, deployment_options,
    engine_kwargs, err, gb, ModelOpt, out, secs,
)


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
              f"{'fused' if d['flash'] else 'unfused'}, {_engine_label(d)}")
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
    from ..advise import CLASS_LABELS
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
@deployment_options(*(f for f in SETUP_FIELDS if f != "prefill_chunk"))
def advise_cmd(
    model: ModelOpt = DEFAULT_MODEL,
    hardware: Annotated[str, typer.Option("--hardware", "-H", help="Device id or .toml/.yaml device file.")] = DEFAULT_HARDWARE,
    batch: Annotated[int, typer.Option("--batch", "-b", help="Batch size (per replica).")] = 1,
    input_len: Annotated[int, typer.Option("--input", "-i", help="Prompt tokens.")] = 512,
    output_len: Annotated[int, typer.Option("--output", "-o", help="Generated tokens incl. the first.")] = 128,
    goal: Annotated[str, typer.Option("--goal", "-g", help="throughput, latency (end-to-end), ttft, tpot or cost (tokens/s per device, or per USD with --prices).")] = "throughput",
    max_ttft: Annotated[Optional[str], typer.Option("--max-ttft", help="Limit on time to first token: 1s, 500ms.")] = None,
    max_tpot: Annotated[Optional[str], typer.Option("--max-tpot", help="Limit on time per output token: 50ms.")] = None,
    draft: Annotated[Optional[str], typer.Option("--draft", help="Evaluate speculative decoding with this draft model.")] = None,
    draft_k: Annotated[int, typer.Option("--draft-k", help="Draft tokens per speculative round [1, 16].")] = 4,
    accept: Annotated[float, typer.Option("--accept", help="Acceptance rate per draft token [0, 1].")] = 0.7,
    draft_tp: Annotated[Optional[int], typer.Option("--draft-tp", help="Tensor-parallel devices of the draft (default: --tp).")] = None,
    devices: Annotated[str, typer.Option("--devices", help="Devices to consider switching to: all (the catalog), none, or a comma-separated list.")] = "all",
    prices: Annotated[Optional[str], typer.Option("--prices", help="TOML or CSV: device id -> USD per device-hour (goal cost).")] = None,
    combos: Annotated[bool, typer.Option("--combos/--no-combos", help="Also evaluate combinations of the top levers.")] = True,
    top: Annotated[int, typer.Option("--top", help="Rows shown per table (0: all).")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: diagnosis, ranked levers, skipped.")] = False,
    setup: dict = None,
) -> None:
    """Name the bottleneck and rank optimization levers by predicted gain."""
    from .. import advise as advmod
    kw = engine_kwargs(setup)
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
        print(jsonout.dumps(adv.to_dict()))
        return
    _print_advice(adv, top)


