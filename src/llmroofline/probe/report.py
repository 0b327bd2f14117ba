"""Tables of a probe for the terminal (rich renderables; the CLI prints them)."""

from __future__ import annotations

from rich.table import Table

from .measure import ProbeResult


def _gbs(x: float | None) -> str:
    return "-" if not x else f"{x / 1e9:,.1f} GB/s"


def _tflops(x: float | None) -> str:
    if not x:
        return "-"
    return f"{x / 1e12:,.3f} TFLOP/s" if x < 1e13 else f"{x / 1e12:,.0f} TFLOP/s"


def tables(r: ProbeResult, sheet: dict | None = None) -> list:
    """Summary (beside the datasheet when given), GEMM curve, attention, efficiency."""
    where = f"{r.device}, {r.threads} thread(s)" if r.device == "cpu" else r.device
    t = Table(title=f"Probe of {r.name} ({where}, torch {r.torch_version}; medians of "
                    f"{r.repeats}{', quick' if r.quick else ''})", title_justify="left")
    t.add_column("ceiling")
    t.add_column("measured", justify="right")
    if sheet:
        t.add_column(f"datasheet {sheet['id']}", justify="right")
        t.add_column("measured / datasheet", justify="right")

    def row(label, meas, fmt, sheet_v=None):
        cells = [label, fmt(meas)]
        if sheet:
            cells += [fmt(sheet_v), f"{meas / sheet_v:.1%}" if sheet_v and meas else "-"]
        t.add_row(*cells)

    row("memory bandwidth (best stream kernel)", r.mem_bw_bytes_s, _gbs,
        sheet and sheet["mem_bw_bytes_s"])
    for k, v in r.stream_bytes_s.items():
        row(f"  {k.replace('_', ' ')} (read + written)" if k != "read" else "  read (sum)", v, _gbs)
    peaks = r.peaks_flops_s
    for dt in ("fp32", "bf16", "fp16"):
        if dt in peaks:
            row(f"{dt} matmul peak", peaks[dt], _tflops,
                sheet and sheet["peaks_flops_s"].get(dt))
    oh = r.overhead
    cells = ["dispatch per operator call", f"{r.dispatch_s * 1e6:.2f} us"]
    t.add_row(*(cells + (["-", "-"] if sheet else [])))
    if oh:
        cells = ["framework per layer: decode / prefill",
                 f"{oh['per_layer_s'] * 1e3:.3f} / {oh['prefill_per_layer_s'] * 1e3:.3f} ms"]
        t.add_row(*(cells + (["-", "-"] if sheet else [])))
        cells = ["framework per step (tiny model, 0 layers)", f"{oh['decode_intercept_s'] * 1e3:.3f} ms"]
        t.add_row(*(cells + (["-", "-"] if sheet else [])))
    out = [t]
    if sheet and sheet.get("family") == "cpu":
        t.caption = (f"CPU datasheet values are per socket ({sheet.get('cores') or '?'} cores); "
                     f"this probe used {r.threads} thread(s).")
        t.caption_justify = "left"

    for dt in dict.fromkeys([r.fit_dtype, "bf16", "fp32"]):
        cur = r.curve(dt)
        if not cur:
            continue
        c = Table(title=f"Decode-shaped {dt} GEMMs: M token rows x "
                        f"{cur[0].get('matrices', '?')} weight matrices "
                        f"({r.weight_set_bytes.get(dt, 0) / 1e6:,.0f} MB)", title_justify="left")
        for col in ("M", "time", "weight GB/s", "GFLOP/s", "% of peak"):
            c.add_column(col, justify="right")
        fitted = "model_s" in cur[0]
        if fitted:
            c.add_column("fitted engine", justify="right")
        for p in cur:
            cells = [str(p["rows"]), f"{p['time_s'] * 1e3:.2f} ms", f"{p['bytes_s'] / 1e9:.1f}",
                     f"{p['flops_s'] / 1e9:,.1f}", f"{p['flops_s'] / peaks[dt]:.1%}"]
            if fitted:
                cells.append(f"{p['model_s'] * 1e3:.2f} ms")
            c.add_row(*cells)
        out.append(c)

    if r.attention:
        a = Table(title=f"Attention ({r.fit_dtype}, scaled_dot_product_attention, 16 heads x 128)",
                  title_justify="left")
        for col in ("kind", "batch", "tokens", "time", "GB/s", "GFLOP/s (causal pairs)"):
            a.add_column(col, justify="right")
        for p in r.attention:
            a.add_row(p["kind"], str(p["batch"]), f"{p['length']:,}", f"{p['time_s'] * 1e3:.3f} ms",
                      f"{p['bytes'] / p['time_s'] / 1e9:.1f}",
                      f"{p['flops'] / p['time_s'] / 1e9:,.1f}")
        out.append(a)

    e = Table(title=f"\\[efficiency] written to the device file (fitted for {r.fit_dtype})",
              title_justify="left", show_header=False)
    e.add_column()
    e.add_column(justify="right")
    e.add_column()
    why = {"bandwidth": "decode-GEMM bandwidth / stream bandwidth",
           "compute": "GEMM plateau / measured peak",
           "gemm_half_rows": "M at half the plateau (fit of the M-curve)",
           "attention_bandwidth": "decode attention bytes/s / stream bandwidth",
           "attention_compute": "causal prefill attention / matmul peak",
           "launch_overhead_us": "framework time per layer / engine operators per layer",
           "step_overhead_us": "tiny-model step time not explained by its operators",
           "prefill_overhead_us": "extra fixed time of a prefill"}
    for k, v in r.efficiency.items():
        e.add_row(k, f"{v:g}", why.get(k, ""))
    g = r.gemm_fit
    if g:
        e.caption = (f"GEMM fit over {g['points']} points: rms log error {g['rms_log_error']:.2f}, "
                     f"worst point {g['max_abs_error']:.0%} off")
        e.caption_justify = "left"
    out.append(e)
    return out
