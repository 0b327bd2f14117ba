"""`models` and `hardware`: the built-in catalogs."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.table import Table

from .. import jsonout
from ..specs import catalog, hardware as hwmod
from .common import (
    app, out,
)


@app.command()
def models(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List built-in models with their aliases and parameter counts."""
    rows = catalog.model_summaries()
    if as_json:
        print(jsonout.dumps(rows))
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
            print(jsonout.dumps(d))
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
        print(jsonout.dumps(rows))
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




@app.command("engines")
def engines_cmd(
    name: Annotated[Optional[str], typer.Argument(help="Engine (or engine TOML) to show in full.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List the serving engines (--engine NAME) with what each was fitted to."""
    from ..specs import engine as engmod
    names = [name] if name else list(engmod.builtin_engines())
    rows = [engmod.engine_summary(engmod.load_engine(n)) for n in names]
    if as_json:
        print(json.dumps(rows[0] if name else rows, indent=1))
        return
    if name:
        t = Table(title=f"engine {rows[0]['name']}", title_justify="left", show_header=False)
        t.add_column(style="bold")
        t.add_column(overflow="fold")
        for k, v in rows[0].items():
            t.add_row(k, json.dumps(v) if isinstance(v, (dict, list)) else str(v))
        out.print(t)
        return
    t = Table(title="Serving engines (--engine NAME; --profile / --preset take one part of one)",
              title_justify="left")
    for col in ("name", "versions", "batching", "KV pool", "fitted to"):
        t.add_column(col, overflow="fold")
    for r in rows:
        b = r["batching"]
        t.add_row(r["name"], r["versions"], f"{b['max_batch']} seqs, {b['max_tokens']} tok/iter, "
                  f"{b['block_size']}-tok blocks", r["kv_memory"], r["fitted_to"])
    out.print(t)
