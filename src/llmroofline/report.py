"""Plain-data views of results: dicts for ``--json`` and per-point iteration of grids."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from .cost import Roofline
from .phases import Analysis, PhaseResult


def _num(x) -> float | None:
    v = float(x)
    return None if math.isnan(v) else v


def _phase_dict(p: PhaseResult, idx) -> dict[str, Any]:
    ops = []
    for o in p.ops:
        ops.append({
            "name": o.name, "kind": o.kind, "count": o.count,
            "flops": float(o.flops[idx]), "bytes": float(o.bytes[idx]),
            "weight_bytes": float(o.weight_bytes[idx]), "activation_bytes": float(o.act_bytes[idx]),
            "kv_bytes": float(o.kv_bytes[idx]), "comm_bytes": float(np.broadcast_to(o.comm_bytes, o.time_s.shape)[idx]),
            "intensity": float(o.intensity[idx]),
            "compute_s": float(o.compute_s[idx]), "memory_s": float(o.memory_s[idx]),
            "comm_s": float(o.comm_s[idx]),
            "overhead_s": float(o.overhead_s[idx]), "time_s": float(o.time_s[idx]),
            "bound": str(o.bound[idx]),
        })
    return {"time_s": float(p.time_s[idx]), "total_time_s": float(p.total_time_s[idx]),
            "steps": int(p.steps[idx]), "flops": float(p.flops[idx]),
            "bytes": float(p.bytes[idx]), "ops": ops}


def _memory_dict(mem, idx) -> dict[str, Any]:
    """Memory footprint of one grid point (bytes, decimal)."""
    return {
        "weights_bytes": float(mem.weights_bytes),
        "kv_cache_bytes": float(mem.kv_cache_bytes[idx]),
        "state_bytes": float(np.broadcast_to(mem.state_bytes, np.shape(mem.kv_cache_bytes))[idx]),
        "activation_bytes": float(mem.activation_bytes[idx]),
        "total_bytes": float(mem.total_bytes[idx]),
        "capacity_bytes": float(mem.capacity_bytes),
        "fits": bool(mem.fits[idx]),
    }


def to_dict(a: Analysis, idx: tuple = ()) -> dict[str, Any]:
    """One grid point of an analysis as JSON-ready data (the ``--json`` contract).

    ``prefill`` values are totals; ``decode`` values are per decode step (mean over the
    ``steps`` = output_len - 1 steps), with ``total_time_s`` the sum.
    """
    mem = a.memory
    return {
        **to_dict_header(a),
        "batch": int(a.batch[idx]),
        "beams": a.beams, "samples": a.samples,
        "input_len": int(a.input_len[idx]),
        "output_len": int(a.output_len[idx]),
        "ttft_s": float(a.ttft_s[idx]),
        "tpot_s": _num(a.tpot_s[idx]),
        "e2e_s": float(a.e2e_s[idx]),
        "throughput_tok_s": float(a.throughput_tok_s[idx]),
        "memory": _memory_dict(mem, idx),
        "max_batch": int(np.asarray(a.max_batch)[idx]),
        "params": a.params,
        "active_params": a.active_params,
        "prefill": _phase_dict(a.prefill, idx),
        "decode": _phase_dict(a.decode, idx),
        "warnings": list(a.warnings),
    }


def to_dict_header(a: Analysis) -> dict[str, Any]:
    """The leading setup keys of :func:`to_dict` (the same at every grid point)."""
    return {
        "model": a.model.name,
        "hardware": a.hardware.id,
        "precision": {"wbits": a.precision.wbits, "abits": a.precision.abits,
                      "kvbits": a.precision.kvbits, "group_size": a.precision.group_size,
                      "label": a.precision.label,
                      **({"native": a.precision.native_label,
                          "bytes_per_weight": {c: b for c, b, _ in a.precision.native}}
                         if a.precision.native else {})},
        "flash": a.flash,
        "engine": a.engine,
        "profile": a.profile,
        "cuda_graphs": a.cuda_graphs,
        "prefill_chunk": a.prefill_chunk,
        "tp": a.layout.tp, "pp": a.layout.pp, "ep": a.layout.ep, "dp": a.layout.dp,
        "devices": a.layout.devices, "layout": a.layout.label,
        "nvlink_domain": a.layout.node_size(a.hardware),
    }


def speculative_dict(s, idx: tuple = ()) -> dict[str, Any]:
    """One grid point of a :class:`decoding.Speculative` (the ``speculative`` JSON key).

    Times in seconds; ``*_step_s`` are means per step, ``draft_decode_s``/``verify_s``
    totals over the ``rounds`` = (output_len - 1) / tau rounds; memory is target + draft.
    """
    mem = s.memory
    return {
        "draft": s.draft.model.name,
        "draft_k": s.draft_k, "accept": s.accept, "tau": s.tau,
        "rounds": float(s.rounds[idx]),
        "draft_prefill_s": float(s.draft.ttft_s[idx]),
        "draft_step_s": _num(s.draft_step_s[idx]),
        "verify_step_s": _num(s.verify_step_s[idx]),
        "draft_decode_s": float(s.draft_decode_s[idx]),
        "verify_s": float(s.verify_s[idx]),
        "ttft_s": float(s.ttft_s[idx]),
        "tpot_s": _num(s.tpot_s[idx]),
        "e2e_s": float(s.e2e_s[idx]),
        "throughput_tok_s": float(s.throughput_tok_s[idx]),
        "tpot_speedup": _num(s.tpot_speedup[idx]),
        "e2e_speedup": float(s.e2e_speedup[idx]),
        "memory": {**_memory_dict(mem, idx),
                   "draft_weights_bytes": float(s.draft.memory.weights_bytes)},
        "max_batch": int(mem.max_batch[idx]),
        "warnings": list(s.warnings),
    }


def grid_points(a: Analysis) -> Iterator[tuple]:
    return iter(np.ndindex(a.batch.shape))


# -- columnar grid payload (analyze --json over a grid) ---------------------------------------
GRID_FORMAT = "columnar-1"
# the unit of every column (and of the two scalar byte keys beside them)
GRID_UNITS = {
    "batch": "sequences", "input_len": "tokens", "output_len": "tokens",
    "ttft_s": "s", "tpot_s": "s", "e2e_s": "s", "throughput_tok_s": "tokens/s",
    "max_batch": "sequences", "fits": "bool",
    "kv_cache_bytes": "B", "state_bytes": "B", "activation_bytes": "B", "total_bytes": "B",
    "prefill_time_s": "s", "prefill_flops": "FLOP", "prefill_bytes": "B",
    "decode_time_s": "s (mean per decode step)", "decode_total_time_s": "s",
    "decode_steps": "steps", "decode_flops": "FLOP (mean per decode step)",
    "decode_bytes": "B (mean per decode step)",
    "weights_bytes": "B", "capacity_bytes": "B",
}
OP_FIELDS = {  # per-operator arrays with --ops: field -> unit (decode rows: means per step)
    "flops": "FLOP", "bytes": "B", "weight_bytes": "B", "activation_bytes": "B",
    "kv_bytes": "B", "comm_bytes": "B", "intensity": "FLOP/B", "compute_s": "s",
    "memory_s": "s", "comm_s": "s", "overhead_s": "s", "time_s": "s", "bound": "name",
}
SPEC_UNITS = {
    "rounds": "rounds", "draft_prefill_s": "s", "draft_step_s": "s", "verify_step_s": "s",
    "draft_decode_s": "s", "verify_s": "s", "ttft_s": "s", "tpot_s": "s", "e2e_s": "s",
    "throughput_tok_s": "tokens/s", "tpot_speedup": "x", "e2e_speedup": "x",
    "kv_cache_bytes": "B", "total_bytes": "B", "fits": "bool", "max_batch": "sequences",
}


def _column(x, shape: tuple, kind=float) -> list:
    """``x`` broadcast to the grid and flattened in C order (the first axis slowest) as
    a list of Python numbers; NaN and infinities become None (JSON null)."""
    v = np.broadcast_to(np.asarray(x), shape).ravel()
    if kind is bool:
        return v.astype(bool).tolist()
    if kind is int:
        return v.astype(np.int64).tolist()
    if kind is str:
        return v.astype(str).tolist()
    v = v.astype(float)
    ok = np.isfinite(v)
    if ok.all():
        return v.tolist()
    out = v.astype(object)
    out[~ok] = None
    return out.tolist()


def _op_columns(p: PhaseResult, shape: tuple) -> list[dict[str, Any]]:
    rows = []
    for o in p.ops:
        vals = {"flops": o.flops, "bytes": o.bytes, "weight_bytes": o.weight_bytes,
                "activation_bytes": o.act_bytes, "kv_bytes": o.kv_bytes,
                "comm_bytes": o.comm_bytes, "intensity": o.intensity, "compute_s": o.compute_s,
                "memory_s": o.memory_s, "comm_s": o.comm_s, "overhead_s": o.overhead_s,
                "time_s": o.time_s}
        row = {"name": o.name, "kind": o.kind, "count": o.count}
        row.update({k: _column(v, shape) for k, v in vals.items()})
        row["bound"] = _column(o.bound, shape, str)
        rows.append(row)
    return rows


def grid_dict(a: Analysis, spec=None, ops: bool = False) -> dict[str, Any]:
    """A grid analysis as columns (what ``analyze --json`` prints for more than one point).

    The setup keys are those of :func:`to_dict`, once. ``axes`` holds the values of each
    grid axis and ``shape`` their lengths; every entry of ``columns`` is one array of
    ``points`` = prod(shape) values in C order over the axes (batch slowest, output_len
    fastest), so point k is ``columns[name][k]`` and equals ``to_dict(a, idx)[...]`` at
    ``idx = numpy.unravel_index(k, shape)``: ``ttft_s`` = ``ttft_s``, ``kv_cache_bytes``
    = ``memory.kv_cache_bytes``, ``prefill_time_s`` = ``prefill.time_s``,
    ``decode_time_s`` = ``decode.time_s`` (mean per step), and so on. ``units`` names each
    column's unit. Per-operator arrays (``ops``: ``{"prefill": [...], "decode": [...]}``,
    one entry per operator with one array per field of :data:`OP_FIELDS`) only when
    ``ops`` is true: they are most of the size. ``spec`` (a :class:`decoding.Speculative`
    of the same grid) adds ``speculative`` with its own columns.
    """
    shape = tuple(int(n) for n in np.broadcast_shapes(a.batch.shape, a.input_len.shape,
                                                       a.output_len.shape))
    head = {**to_dict_header(a), "beams": a.beams, "samples": a.samples, "params": a.params,
            "active_params": a.active_params, "warnings": list(a.warnings)}
    mem = a.memory

    def col(x, kind=float):
        return _column(x, shape, kind)

    columns = {
        "batch": col(a.batch, int), "input_len": col(a.input_len, int),
        "output_len": col(a.output_len, int),
        "ttft_s": col(a.ttft_s), "tpot_s": col(a.tpot_s), "e2e_s": col(a.e2e_s),
        "throughput_tok_s": col(a.throughput_tok_s), "max_batch": col(a.max_batch, int),
        "fits": col(mem.fits, bool), "kv_cache_bytes": col(mem.kv_cache_bytes),
        "state_bytes": col(mem.state_bytes), "activation_bytes": col(mem.activation_bytes),
        "total_bytes": col(mem.total_bytes),
        "prefill_time_s": col(a.prefill.time_s), "prefill_flops": col(a.prefill.flops),
        "prefill_bytes": col(a.prefill.bytes),
        "decode_time_s": col(a.decode.time_s), "decode_total_time_s": col(a.decode.total_time_s),
        "decode_steps": col(a.decode.steps, int), "decode_flops": col(a.decode.flops),
        "decode_bytes": col(a.decode.bytes),
    }
    axes = {name: np.unique(np.asarray(v)).astype(np.int64).tolist()
            for name, v in (("batch", a.batch), ("input_len", a.input_len),
                            ("output_len", a.output_len))}
    d = {**head, "format": GRID_FORMAT, "shape": list(shape), "points": int(np.prod(shape)),
         "axes": axes, "weights_bytes": float(mem.weights_bytes),
         "capacity_bytes": float(mem.capacity_bytes), "units": dict(GRID_UNITS),
         "columns": columns}
    if ops:
        d["ops"] = {"prefill": _op_columns(a.prefill, shape), "decode": _op_columns(a.decode, shape)}
        d["op_units"] = dict(OP_FIELDS)
    if spec is not None:
        sm = spec.memory
        d["speculative"] = {
            "draft": spec.draft.model.name, "draft_k": spec.draft_k, "accept": spec.accept,
            "tau": spec.tau, "draft_weights_bytes": float(spec.draft.memory.weights_bytes),
            "units": dict(SPEC_UNITS),
            "columns": {
                "rounds": col(spec.rounds), "draft_prefill_s": col(spec.draft.ttft_s),
                "draft_step_s": col(spec.draft_step_s), "verify_step_s": col(spec.verify_step_s),
                "draft_decode_s": col(spec.draft_decode_s), "verify_s": col(spec.verify_s),
                "ttft_s": col(spec.ttft_s), "tpot_s": col(spec.tpot_s), "e2e_s": col(spec.e2e_s),
                "throughput_tok_s": col(spec.throughput_tok_s),
                "tpot_speedup": col(spec.tpot_speedup), "e2e_speedup": col(spec.e2e_speedup),
                "kv_cache_bytes": col(sm.kv_cache_bytes), "total_bytes": col(sm.total_bytes),
                "fits": col(sm.fits, bool), "max_batch": col(sm.max_batch, int)},
            "warnings": list(spec.warnings)}
    return d


# -- roofline chart data (the CLI's roofline --json and the web's /api/roofline) ----------
def roofline_points(analyses: list[Analysis], phases=("prefill", "decode")) -> list[dict]:
    """One point per operator with FLOPs, per device and phase (scalar analyses).

    ``intensity`` = FLOPs / bytes of the operator row; ``flops_s`` = FLOPs / its roofline
    time (what the operator attains, launch overhead included). Decode rows are means over
    the decode steps.
    """
    pts = []
    for a in analyses:
        for ph in phases:
            p = getattr(a, ph)
            total = float(p.time_s) or 1.0
            for o in p.ops:
                f, t = float(o.flops), float(o.time_s)
                if f <= 0 or t <= 0:
                    continue
                pts.append({"hardware": a.hardware.id, "phase": ph, "op": o.name,
                            "intensity": float(o.intensity), "flops": f, "bytes": float(o.bytes),
                            "time_s": t, "flops_s": f / t, "share": t / total,
                            "bound": str(o.bound)})
    return pts


def ridge(a: Analysis) -> dict:
    """Ridge point of a device for an analysis' precision (``cost.Roofline.roofs``): the
    achievable matmul FLOP/s, bytes/s and their ratio in FLOP/byte."""
    r = Roofline.of(a.hardware, a.precision, a.layout, a.efficiency).roofs()
    return {"flops_s": r["gemm"], "bytes_s": r["bw"], "intensity": r["ridge"]}


def roofline_payload(analyses: list[Analysis], phases=("prefill", "decode")) -> dict:
    """``{"ridges": {device: ridge}, "points": [...]}``: what roofline --json prints."""
    return {"ridges": {a.hardware.id: ridge(a) for a in analyses},
            "points": roofline_points(analyses, phases)}
def add_fit(d: dict, a, idx) -> dict:
    """Add ``"fit"``: whether the point fits in device memory and, when it does not, the
    one-line statement and the configurations that would fit (``fitadvice``)."""
    from .fitadvice import fit_report
    d["fit"] = fit_report(a, idx)
    return d


def fit_warning(a, points) -> str | None:
    """The stderr line for a query whose memory does not fit (None when it fits)."""
    from .fitadvice import fit_report
    bad = [i for i in points if not bool(a.memory.fits[i])]
    if not bad:
        return None
    if len(points) == 1:
        return fit_report(a, points[0])["message"]
    return (f"{len(bad)} of {len(points)} grid points do not fit in the memory of "
            f"{a.hardware.id} (the 'fits' column; columns.fits in --json): their times assume "
            "they did")
