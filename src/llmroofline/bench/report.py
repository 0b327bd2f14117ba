"""Tables of a bench run for the terminal (rich renderables; the CLI prints them)."""

from __future__ import annotations

import math

from rich.table import Table

from .core import BenchResult
from .run import CLASSES


def _t(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.3f} s" if x >= 1 else f"{x * 1e3:.2f} ms"


def header(r: BenchResult) -> str:
    where = f"{r.device}, {r.threads} thread(s)" if r.device == "cpu" else r.device
    size = f"{r.params / 1e9:.3f} B" if r.params >= 1e8 else f"{r.params / 1e6:.2f} M"
    return (f"[bold]{r.model}[/] as built: {r.description}; {size} params, "
            f"{r.weight_bytes / 1e6:,.1f} MB of {r.dtype} weights\n"
            f"{where}, batch {r.batch}, input {r.input_len}, output {r.output_len} tokens, "
            f"attention {r.attention}, static KV cache, medians of {r.repeats}; predicted with "
            f"{r.hardware} ({r.hardware_name})")


def tables(r: BenchResult) -> list:
    m, p, q = r.measured, r.predicted, r.ratios
    t = Table(title="Measured vs predicted", title_justify="left",
              caption="ratio = predicted / measured (> 1: the engine predicts slower than "
                      "measured)", caption_justify="left")
    for col in ("metric", "measured", "predicted", "ratio"):
        t.add_column(col, justify="left" if col == "metric" else "right")
    names = {"ttft_s": "time to first token (TTFT)", "tpot_s": "decode step (TPOT)",
             "e2e_s": "end-to-end latency", "throughput_tok_s": "throughput (tokens/s)"}
    for k, label in names.items():
        if k not in m:
            continue
        fmt = (lambda v: f"{v:,.1f}") if k == "throughput_tok_s" else _t
        t.add_row(label, fmt(m[k]), fmt(p[k]), f"{q[k]:.2f}" if k in q else "-")
    out = [t]

    phases = list(r.engine_shares)
    s = Table(title="Where the time goes (share of each phase)", title_justify="left",
              caption="measured: torch.profiler self time per operator class; framework = wall "
                      "time outside any operator. engine: roofline time per operator kind; "
                      "framework = launch, step and prefill overheads", caption_justify="left")
    s.add_column("class")
    for ph in phases:
        s.add_column(f"{ph} measured", justify="right")
        s.add_column(f"{ph} engine", justify="right")
    for c in CLASSES:
        cells = [c if c != "framework" else "framework / overhead"]
        for ph in phases:
            meas = r.shares.get(ph, {}).get(c)
            cells += ["-" if meas is None else f"{meas:.1%}", f"{r.engine_shares[ph][c]:.1%}"]
        s.add_row(*cells)
    out.append(s)

    if r.diagnosis:
        d = Table(title="Diagnosis: scale the work and see whether the time follows",
                  title_justify="left",
                  caption="e_w = log(time / narrow-twin time) / log(work ratio): ~1 time is work, "
                          "~0 overhead (< 0.5: overhead-bound). e_t = log2(time at 2x batch / "
                          "time): ~1 compute, ~0 weight bandwidth (>= 0.5: compute-bound).",
                  caption_justify="left")
        for col in ("phase", "measured verdict", "narrow twin", "e_w", "2x batch", "e_t",
                    "engine verdict"):
            d.add_column(col, justify="left" if col in ("phase", "measured verdict",
                                                        "engine verdict") else "right")
        for ph, g in r.diagnosis.items():
            share = g.engine_regime_shares.get(g.engine_verdict, 0.0)
            d.add_row(ph, f"[bold]{g.verdict}[/]",
                      f"{_t(g.time_s)} -> {_t(g.narrow_time_s)} (width x{g.width:.2g}, "
                      f"work / {g.width_work_ratio:.1f})",
                      "-" if math.isnan(g.width_elasticity) else f"{g.width_elasticity:.2f}",
                      f"{_t(g.time_s)} -> {_t(g.double_batch_time_s)}",
                      f"{g.token_elasticity:.2f}", f"{g.engine_verdict} ({share:.0%} of time)")
        out.append(d)
    return out
