"""`probe` and `bench`: measurements on this machine."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from ..errors import InputError
from ..specs import hardware as hwmod
from .common import (
    app, err, out,
)


# -- probe and bench: ground truth on this machine (issue 6) --------------------------------
@app.command("probe")
def probe_cmd(
    device: Annotated[str, typer.Option("--device", help="cpu, cuda (cuda:N) or auto (cuda when PyTorch sees a GPU).")] = "auto",
    out_file: Annotated[Optional[str], typer.Option("--out", help="Write the device file (TOML) here; use it as --hardware FILE.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="CI-sized run (<10 s on a CPU): smaller buffers, fewer shapes and repeats.")] = False,
    budget_s: Annotated[Optional[float], typer.Option("--budget-s", help="Wall-clock seconds for the measurements (default: CPU 4 quick / 40 full; CUDA 60 / 240); larger shapes are left out to fit.")] = None,
    kernels_out: Annotated[Optional[str], typer.Option("--kernels-out", help="Write the measured-kernel table (CSV) here; fit it with `calibrate --kernels FILE`.")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="CPU threads (default: PyTorch's); bench with the same.")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="Precision the efficiency block is fitted for: bf16, fp16, fp32.")] = "bf16",
    datasheet: Annotated[Optional[str], typer.Option("--datasheet", help="Catalog device to print beside the measurements (default: matched by name).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print every measurement as JSON.")] = False,
) -> None:
    """Measure this machine's roofline (bandwidth, GEMM curves, overheads, attention) and write a device file."""
    from pathlib import Path
    from ..probe import compare_datasheet, match_catalog, probe
    from ..probe.report import tables
    if out_file is not None:
        p = Path(out_file)
        if p.suffix.lower() != ".toml":
            raise InputError(f"out: the device file must end in .toml, got {p.name!r}")
        if not p.resolve().parent.is_dir():
            raise InputError(f"out: directory {p.parent} does not exist")
    if kernels_out is not None:
        k = Path(kernels_out)
        if k.suffix.lower() != ".csv":
            raise InputError(f"kernels-out: the kernel table must end in .csv, got {k.name!r}")
        if not k.resolve().parent.is_dir():
            raise InputError(f"kernels-out: directory {k.parent} does not exist")
    if budget_s is not None and not 0 < budget_s <= 3600:
        raise InputError(f"budget-s: must be a number of seconds in (0, 3600], got {budget_s:g}")
    if datasheet is not None:
        hwmod.load_hardware(datasheet)  # fail before measuring
    from ..probe.progress import RichProgress
    r = probe(device=device, quick=quick, threads=threads, dtype=dtype, budget_s=budget_s,
              progress=None if as_json else RichProgress(err))
    if out_file is not None:
        Path(out_file).write_text(r.to_toml())
        hwmod.load_hardware(out_file)  # the file must load as a device
    if kernels_out is not None:
        r.write_kernels(kernels_out)
    if as_json:
        print(json.dumps(r.to_dict(), indent=1))
        return
    sheet_id = datasheet or match_catalog(r.name)
    for t in tables(r, compare_datasheet(r, sheet_id)):
        out.print(t)
    from ..probe.report import probe_kernel_report
    for t in probe_kernel_report(r, sheet_id, detail=r.device != "cpu"):
        out.print(t)
    for note in r.skipped:
        out.print(f"[yellow]note:[/] {note}")
    out.print(f"probe took {r.elapsed_s:.1f} s (budget {r.budget_s:g} s)")
    if not sheet_id:
        out.print(f"'{r.name}' is not in the catalog; --datasheet ID prints a catalog device beside it.")
    if out_file is not None:
        out.print(f"wrote {out_file}: use it as --hardware {out_file}")
    if kernels_out is not None:
        out.print(f"wrote {kernels_out}: {len(r.kernels)} kernel rows; "
                  f"`llmroofline calibrate --kernels {kernels_out}` fits them")


@app.command("bench")
def bench_cmd(
    model: Annotated[str, typer.Option("--model", "-m", help="Built-in id or alias, config.json path, or hub id (config only; weights are random).")],
    device: Annotated[str, typer.Option("--device", help="cpu, cuda (cuda:N) or auto (cuda when PyTorch sees a GPU).")] = "auto",
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
    from ..bench import bench, write_csv
    from ..bench.report import header, tables
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


