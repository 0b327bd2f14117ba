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


# -- measured kernels beside the engine ------------------------------------------------------
def _shape(r: dict) -> str:
    if r["op"] == "gemm":
        if r.get("n") and r.get("k"):
            return f"M={r['m']} N={r['n']} K={r['k']}"
        return f"M={r['m']} x set ({r.get('matrices', '')[:28]})"
    if r["op"].startswith("attn"):
        return (f"B={r['m']} H={r['heads']}/{r['kv_heads']} d={r['head_dim']} "
                f"{'KV' if r['op'] == 'attn_decode' else 'S'}={r['kv_len']:,}")
    return f"{r['layers']} layers x {r['hidden']}, B={r['m']}, {r['kv_len']} slots"


def _ms(s: float) -> str:
    return f"{s * 1e3:.3f} ms" if s < 1 else f"{s:.2f} s"


def kernel_tables(pred: list[dict], hw_label: str, detail: bool = True) -> list:
    """Per operator class (GEMM per dtype, attention decode/prefill, decode loop eager /
    CUDA graphs): rows, median predicted / measured, median and worst |error|, the engine's
    regimes; then every row (measured, predicted, ratio, regime)."""
    from .kernels import class_of, summarize
    s = summarize(pred)
    t = Table(title=f"Measured kernels beside the engine ({hw_label})", title_justify="left",
              caption="ratio = predicted / measured; regime = the engine's (compute, memory, "
                      "overhead); decode_* rows are whole decode steps (end to end)",
              caption_justify="left")
    for col in ("operator class", "rows", "median ratio", "median |err|", "worst |err|", "regime"):
        t.add_column(col, justify="left" if col in ("operator class", "regime") else "right")
    for k, v in s.items():
        t.add_row(k, str(v["n"]), f"{v['median_ratio']:.2f}", f"{v['median_abs_err']:.0%}",
                  f"{v['max_abs_err']:.0%}", ", ".join(v["regimes"]))
    out = [t]
    if detail:
        d = Table(title="Kernel rows", title_justify="left")
        for col in ("class", "shape", "measured", "predicted", "ratio", "regime"):
            d.add_column(col, justify="left" if col in ("class", "shape", "regime") else "right")
        for r in pred:
            d.add_row(class_of(r), _shape(r), _ms(r["time_s"]), _ms(r["predicted_s"]),
                      f"{r['ratio']:.2f}", r["regime"])
        out.append(d)
    return out


def calibrate_kernels_cli(csv_file, kernels, hardware, out_file: str, console) -> None:
    """``calibrate --kernels FILE``: fit, write the profile, print before / after."""
    from pathlib import Path

    from ..errors import InputError
    from ..specs.profile import profile_to_toml
    from .kernels import calibrate_kernels
    if kernels is None:
        raise InputError("csv_file: give a measurements CSV or --kernels FILE (a kernel table)")
    if csv_file is not None:
        raise InputError("kernels: give either a measurements CSV or --kernels FILE, not both")
    prof, hw, before, after = calibrate_kernels(kernels, hardware, name=Path(out_file).stem)
    Path(out_file).write_text(profile_to_toml(prof))
    t = Table(title=f"Kernel table {Path(kernels).name} on {hw.id}: engine before / after the fit",
              title_justify="left", caption="ratio = predicted / measured (median per class)",
              caption_justify="left")
    for col in ("operator class", "rows", "ratio before", "|err| before", "ratio after",
                "|err| after", "regime"):
        t.add_column(col, justify="left" if col in ("operator class", "regime") else "right")
    for k, b in before.items():
        a = after[k]
        t.add_row(k, str(b["n"]), f"{b['median_ratio']:.2f}", f"{b['median_abs_err']:.0%}",
                  f"{a['median_ratio']:.2f}", f"{a['median_abs_err']:.0%}", ", ".join(a["regimes"]))
    console.print(t)
    key = next(k for k in prof.families if k == f"{hw.family or 'fallback'}-a16")
    e = prof.families[key]
    console.print(f"fitted \\[families.{key}]: " + ", ".join(
        f"{k} = {getattr(e, k):.4g}" for k in ("bandwidth", "compute", "gemm_half_rows",
                                               "attention_bandwidth", "attention_compute",
                                               "launch_overhead_s")
        if getattr(e, k) is not None))
    console.print(f"wrote {out_file}: use it as --profile {out_file} (with --hardware {hw.id})")


def probe_kernel_report(r: ProbeResult, sheet_id: str | None, detail: bool = False) -> list:
    """Kernel rows of a probe priced by the engine: with the probed device file, and with
    the catalog entry and the default profile when the device is in the catalog."""
    import tomllib

    from ..specs.hardware import from_dict, load_hardware
    from ..specs.engine import load_engine
    from .kernels import predict_rows
    if not r.kernels:
        return []
    rows = [dict(k, shapes=_shapes(k)) if k["op"] == "gemm" else dict(k) for k in r.kernels]
    out = []
    probed = from_dict("probed", tomllib.loads(r.to_toml()))
    out += kernel_tables(predict_rows(rows, probed), "probed device file", detail)
    if sheet_id and r.device != "cpu":
        hw = load_hardware(sheet_id)
        eff = load_engine("default").efficiency(hw.efficiency, hw.family, 16)
        out += kernel_tables(predict_rows(rows, hw, eff), f"catalog {hw.id}, default profile",
                             detail)
    return out


def _shapes(k: dict):
    from .kernels import parse_matrices
    if k.get("matrices"):
        return parse_matrices(k["matrices"])
    return [(k["n"], k["k"], 1)]
