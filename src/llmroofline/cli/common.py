"""Shared pieces of the command line: the app, consoles, number formatting, the options
every engine command takes, and ``engine_kwargs`` that turns them into ``analyze`` keywords."""

from __future__ import annotations

from typing import Annotated, Optional

import numpy as np
import typer
from rich.console import Console

from ..errors import InputError
from ..parallel import Layout

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Predict LLM inference performance on any accelerator, and explain it.")
def fit_table(t, width: int) -> None:
    """Keep every number of a table whole at ``width`` columns: right-aligned (number)
    columns never shrink below their widest cell; left-aligned (text) columns wrap, and a
    boxed table drops its box when that is what it takes."""
    from rich.text import Text

    def cell_len(c) -> int:
        if isinstance(c, str):
            return max((Text.from_markup(x).cell_len for x in c.split("\n")), default=0)
        return getattr(c, "cell_len", 0) or 0
    cols = t.columns
    widths = [max([cell_len(c.header)] + [cell_len(x) for x in c._cells]) for c in cols]
    pad = sum(t.padding[1] + t.padding[3] for _ in cols) if hasattr(t, "padding") else 2 * len(cols)
    need = sum(widths) + pad + (len(cols) + 1 if t.box else 0)
    if need <= width:
        return
    if t.box and sum(widths) + pad <= width:
        t.box = None
        return
    t.box, t.collapse_padding = None, True      # one space between columns
    for c, w in zip(cols, widths):
        body = max([cell_len(x) for x in c._cells], default=0)
        c.no_wrap, c.overflow = False, "fold"     # a long header wraps, never a number
        c.min_width = body if c.justify == "right" else min(w, 10)


class _Out(Console):
    """The stdout console: tables are fitted to its width (no "1.…" cut numbers)."""

    def print(self, *objects, **kw):
        from rich.table import Table
        for o in objects:
            if isinstance(o, Table):
                fit_table(o, self.width)
        super().print(*objects, **kw)


out = _Out()
if not out.is_terminal:  # piped output: wide enough for the operator tables, no wrapping
    out = _Out(width=132)
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
PrefillChunkOpt = Annotated[Optional[int], typer.Option("--prefill-chunk", help="Prefill the prompt in chunks of N tokens (chunked prefill): one forward step each; activation memory of one chunk.")]
GraphsOpt = Annotated[bool, typer.Option("--cuda-graphs", help="Decode steps replay CUDA graphs: launch overhead x 0.2 per kernel (prefill stays eager).")]
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
ProfileOpt = Annotated[str, typer.Option("--profile", "-p", help="Efficiency profile: default (calibrated to measured engines), ideal (bare roofline), trtllm-0.8 or lmdeploy-0.1 (one engine's fit), or a .toml from `calibrate`.")]


def engine_kwargs(quant, wbits, abits, kvbits, flash, tp, pp, ep, dp, gpus_per_node=8,
                  microbatches=None, overlap=False, allreduce="auto", offload_weights=0.0,
                  offload_kv=0.0, host_bw=None, profile=None, nodes=None,
                  cuda_graphs=False, prefill_chunk=None) -> dict:
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
    kw = dict(quant=quant, wbits=wbits, abits=abits, kvbits=kvbits, flash=flash, layout=layout,
              profile=profile)
    if cuda_graphs:
        kw["cuda_graphs"] = True
    if prefill_chunk is not None:   # analyze-based commands (the simulator chunks by --max-tokens)
        kw["prefill_chunk"] = prefill_chunk
    return kw


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
