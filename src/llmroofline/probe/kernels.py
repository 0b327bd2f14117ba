"""The measured-kernel table: per-kernel timings, their engine prices, and the fit from them.

File format (``data/measured/kernels/NAME.csv``; written by ``probe --kernels-out FILE``):
``#`` comment lines first (what the file is), then a CSV header and one row per timed
callable. Columns (SI units; blank = not applicable):

==============  ===========================================================================
op              ``gemm`` | ``attn_decode`` | ``attn_prefill`` | ``decode_eager`` | ``decode_graph``
dtype           ``fp32`` | ``bf16`` | ``fp16`` | ``fp8`` (fp8: e4m3 inputs, ``torch._scaled_mm``)
m               GEMM token rows M; attention and decode loops: the batch
n, k            GEMM output columns N and inner dimension K when all matrices share them
matrices        GEMM weight set of one timed call, ``NxK*count`` joined by ``;`` (several
                copies of a matrix keep the set larger than the caches)
heads, kv_heads query and KV heads (attention, decode loop); head_dim the head size
kv_len          keys per query (decode: KV cache slots; prefill: the causal length)
layers, hidden  decode loop: decoder layers and hidden size (ffn, vocab in ``matrices``-free
                form: ``ffn``, ``vocab``)
flops           FLOPs of one timed call (GEMM ``2 M N K`` per matrix; attention over the
                causal pairs only, as the engine counts them: ``4 B H pairs d``)
bytes           bytes of one timed call (GEMM: weights + M (N + K) activations; attention:
                K and V read + q and o)
time_s          median seconds of one timed call (``repeats`` samples, CUDA events on GPU)
repeats         samples behind the median
device_name, driver, torch, date   provenance (the same on every row)
==============  ===========================================================================

:func:`predict_rows` prices every row with the engine (``cost.py`` through
:func:`.fit.engine_gemm_terms` and ``Roofline.terms`` for attention; ``analyze`` for decode
loops) and names the regime. :func:`fit_kernels` fits the device's efficiency entry from
the table (docs/bench.md, "calibrate --kernels").
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from ..errors import InputError

OPS = ("gemm", "attn_decode", "attn_prefill", "decode_eager", "decode_graph")
KDTYPES = ("fp32", "bf16", "fp16", "fp8")
COLUMNS = ("op", "dtype", "m", "n", "k", "matrices", "heads", "kv_heads", "head_dim", "kv_len",
           "layers", "hidden", "ffn", "vocab", "flops", "bytes", "time_s", "repeats",
           "device_name", "driver", "torch", "date")
PROVENANCE = ("device_name", "driver", "torch", "date")
_INT = ("m", "n", "k", "heads", "kv_heads", "head_dim", "kv_len", "layers", "hidden", "ffn",
        "vocab", "repeats")
_FLOAT = ("flops", "bytes", "time_s")


# -- file ------------------------------------------------------------------------------------
def matrices_str(shapes) -> str:
    """``[(N, K), ...]`` -> ``"NxK*count;..."`` (order of first appearance)."""
    counts: dict[tuple[int, int], int] = {}
    for n, k in shapes:
        counts[(int(n), int(k))] = counts.get((int(n), int(k)), 0) + 1
    return ";".join(f"{n}x{k}*{c}" for (n, k), c in counts.items())


def parse_matrices(text: str, where: str = "matrices") -> list[tuple[int, int, int]]:
    """``"NxK*count;..."`` -> ``[(N, K, count), ...]``; InputError on a malformed entry."""
    out = []
    for part in str(text).split(";"):
        part = part.strip()
        if not part:
            continue
        try:
            nk, _, c = part.partition("*")
            n, k = (int(v) for v in nk.lower().split("x"))
            cnt = int(c) if c else 1
        except ValueError:
            raise InputError(f"{where}: expected NxK*count entries joined by ';', got {part!r}") from None
        if n < 1 or k < 1 or cnt < 1:
            raise InputError(f"{where}: N, K and count must be >= 1, got {part!r}")
        out.append((n, k, cnt))
    return out


def write_table(rows: list[dict], path, provenance: dict, comment: str = "") -> Path:
    """Write kernel rows (dicts with COLUMNS keys; missing = blank) and provenance."""
    p = Path(path)
    if p.suffix.lower() != ".csv":
        raise InputError(f"kernels-out: the kernel table must end in .csv, got {p.name!r}")
    if not p.resolve().parent.is_dir():
        raise InputError(f"kernels-out: directory {p.parent} does not exist")
    with open(p, "w", newline="", encoding="utf-8") as f:
        f.write("# llmroofline measured-kernel table (columns: docs/bench.md, probe/kernels.py)\n")
        for line in (comment or "").splitlines():
            f.write(f"# {line}\n")
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: _fmt(r.get(c, provenance.get(c, ""))) for c in COLUMNS})
    return p


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def read_table(path) -> list[dict]:
    """Rows of a kernel table with typed fields; one-line InputError naming row and field."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"kernels: file {p} does not exist")
    with open(p, encoding="utf-8") as f:
        lines = [ln for ln in f if not ln.startswith("#")]
    rdr = csv.DictReader(lines)
    missing = [c for c in ("op", "dtype", "flops", "bytes", "time_s") if c not in (rdr.fieldnames or [])]
    if missing:
        raise InputError(f"kernels: {p.name} lacks column(s) {', '.join(missing)} "
                         f"(columns: {', '.join(COLUMNS)})")
    out = []
    for i, raw in enumerate(rdr, start=2):
        where = f"kernels: {p.name} row {i}"
        r: dict = {c: (raw.get(c) or "").strip() for c in COLUMNS}
        if r["op"] not in OPS:
            raise InputError(f"{where}: op must be one of {', '.join(OPS)}, got {r['op']!r}")
        if r["dtype"] not in KDTYPES:
            raise InputError(f"{where}: dtype must be one of {', '.join(KDTYPES)}, got {r['dtype']!r}")
        for c in _INT:
            if r[c] == "":
                r[c] = None
                continue
            try:
                r[c] = int(float(r[c]))
            except ValueError:
                raise InputError(f"{where}: {c} must be an integer >= 1, got {r[c]!r}") from None
            if r[c] < 1:
                raise InputError(f"{where}: {c} must be an integer >= 1, got {r[c]}")
        for c in _FLOAT:
            try:
                v = float(r[c])
            except ValueError:
                raise InputError(f"{where}: {c} must be a number > 0, got {r[c]!r}") from None
            if not (v > 0 and math.isfinite(v)) and not (c == "flops" and v == 0):
                raise InputError(f"{where}: {c} must be a finite number > 0, got {r[c]!r}")
            r[c] = v
        if r["op"] == "gemm":
            if r["m"] is None:
                raise InputError(f"{where}: m (GEMM token rows) is required for op gemm")
            r["shapes"] = parse_matrices(r["matrices"], f"{where}: matrices") if r["matrices"] \
                else ([(r["n"], r["k"], 1)] if r["n"] and r["k"] else [])
            if not r["shapes"]:
                raise InputError(f"{where}: a gemm row needs n and k or matrices")
        out.append(r)
    if not out:
        raise InputError(f"kernels: {p.name} has no rows")
    return out


# -- engine prices -----------------------------------------------------------------------------
def _regime(comp, mem, overhead=0.0) -> str:
    roof = max(comp, mem)
    if overhead > roof:
        return "overhead"
    return "compute" if comp >= mem else "memory"


def gemm_row_terms(r: dict, peak_flops_s: float, mem_bytes_s: float, eff, sm_count=None):
    """(compute_s, memory_s, kernel_s) of a gemm row: the engine's price of each matrix
    (M = ``m``, its N and K; bytes = weights + M (N + K) activations at the row's average
    bytes per element) summed over the set."""
    from .fit import engine_gemm_terms
    elems = sum(c * (n * k + r["m"] * (n + k)) for n, k, c in r["shapes"])
    elt = r["bytes"] / elems
    tot = np.zeros(3)
    for n, k, c in r["shapes"]:
        f = 2.0 * r["m"] * n * k
        q = elt * (n * k + r["m"] * (n + k))
        terms = engine_gemm_terms(r["m"], n, f, q, peak_flops_s, mem_bytes_s, eff, sm_count,
                                  r["dtype"])
        tot += c * np.array([float(t) for t in terms])
    return tuple(tot)


def attention_row_terms(r: dict, hw, eff) -> tuple[float, float]:
    """(compute_s, memory_s) of an attention row: ``Roofline.terms`` of an attention Op."""
    from ..cost import Roofline
    from ..graph import Op
    from ..parallel import Layout
    peak = _peak(hw, "bf16" if r["dtype"] == "fp8" else r["dtype"])
    roof = Roofline(hw=hw, layout=Layout(), eff=eff, peaks={"gemm16": peak},
                    dtypes={"gemm16": r["dtype"]}, host_bytes_s=math.inf)
    group = (r["heads"] or 1) / (r["kv_heads"] or r["heads"] or 1)
    op = Op("sdpa", "attention", "gemm16", 1, np.array(r["flops"]), np.array(0.0),
            np.array(0.0), np.array(r["bytes"]), kv_group=group)
    comp, mem, _, _ = roof.terms(op)
    return float(comp), float(mem)


def _peak(hw, dtype: str) -> float:
    p = hw.peak(dtype) or hw.peak("bf16") or hw.peak("fp16") or hw.peak("fp32")
    if not p:
        raise InputError(f"hardware {hw.id}: no {dtype} peak to price the kernels")
    return float(p)


def decode_row_s(r: dict, hw) -> tuple[float, str]:
    """Engine decode step (``analyze`` tpot at the row's cache position) and its regime."""
    from ..bench.core import engine_regime
    from ..phases import analyze
    from ..specs.model import from_hf_config
    from ..specs.precision import Precision
    from .decoder import DecoderShape
    shape = DecoderShape(r["hidden"], r["layers"], r["heads"], r["kv_heads"], r["ffn"],
                         r["vocab"], r["head_dim"] or 0)
    spec = from_hf_config(shape.hf_config(r["kv_len"]), name="probe-decoder")
    prec = Precision(32, 32, 32) if r["dtype"] == "fp32" else Precision()
    # the loop attends all kv_len slots: a prefill of kv_len - 1 tokens, one decode step
    a = analyze(spec, hw, r["m"], max(r["kv_len"] - 1, 1), 2, quant=prec,
                cuda_graphs=r["op"] == "decode_graph")
    regime, _ = engine_regime(a, "decode")
    return float(a.tpot_s), regime


def predict_rows(rows: list[dict], hw, eff=None) -> list[dict]:
    """Rows with ``predicted_s``, ``ratio`` (predicted / measured) and ``regime`` added."""
    eff = eff or hw.efficiency
    out = []
    for r in rows:
        d = dict(r)
        if r["op"] == "gemm":
            c, m, t = gemm_row_terms(r, _peak(hw, r["dtype"]), hw.mem_bw_bytes_s, eff, hw.sm_count)
            d["predicted_s"], d["regime"] = t, _regime(c, m, sum(x[2] for x in r["shapes"])
                                                       * eff.launch_overhead_s)
        elif r["op"].startswith("attn"):
            c, m = attention_row_terms(r, hw, eff)
            d["predicted_s"], d["regime"] = max(c, m), _regime(c, m, eff.launch_overhead_s)
        else:
            d["predicted_s"], d["regime"] = decode_row_s(r, hw)
        d["ratio"] = d["predicted_s"] / r["time_s"]
        out.append(d)
    return out


def class_of(r: dict) -> str:
    """Operator class of a row for the report: 'gemm bf16', 'attn_decode', ..."""
    return f"gemm {r['dtype']}" if r["op"] == "gemm" else r["op"]


def summarize(pred: list[dict]) -> dict[str, dict]:
    """Per operator class: rows, median and worst |predicted / measured - 1|, the regimes."""
    out: dict[str, dict] = {}
    for r in pred:
        out.setdefault(class_of(r), []).append(r)
    res = {}
    for k, rs in out.items():
        err = np.abs(np.array([x["ratio"] for x in rs]) - 1)
        regimes = sorted({x["regime"] for x in rs})
        res[k] = {"n": len(rs), "median_abs_err": float(np.median(err)),
                  "max_abs_err": float(err.max()), "regimes": regimes,
                  "median_ratio": float(np.median([x["ratio"] for x in rs]))}
    return res


# -- fit ---------------------------------------------------------------------------------------
def fit_kernels(rows: list[dict], hw, base=None, dtype: str = "bf16") -> dict:
    """The device's efficiency entry refitted to a kernel table (engine pricing throughout).

    ``base``: the entry to start from (default: ``hw.efficiency``); its other fields
    (tile rows, wave quantization, overlap, GQA) are held fixed.

    1-2. ``compute`` in [0.01, 1], ``gemm_half_rows`` in [0, 4096] and ``bandwidth`` in
       [0.01, 1] together: least squares of ``log(engine kernel_s / measured)`` over all
       ``dtype`` GEMM rows, starting from the median achieved ``bytes / time / mem_bw`` of
       the GEMV-like rows (arithmetic intensity below a quarter of the ridge point). Joint,
       because with tile rows and wave quantization a small-M GEMM need not be
       memory-bound in the engine.
    3. ``attention_bandwidth``: median achieved bytes/s / mem_bw of the decode attention rows
       (GQA groups whose KV reads the engine counts once); ``attention_compute``: best causal
       prefill FLOP/s / peak.
    4. ``launch_overhead_s``: slope of the eager decode-loop step time over layers /
       the engine's operator rows per layer, and ``step_overhead_s``: the intercept less
       the engine's fixed rows x launch (``fit.fit_overhead``), when rows of two or more
       depths exist (the plain-torch decoder: an engine's own loop costs differ).

    Returns ``{"efficiency": Efficiency, "fp8_compute": float | None, "stats": {...}}``.
    """
    from dataclasses import replace

    from scipy.optimize import least_squares

    from ..specs.profile import Efficiency
    base = base or hw.efficiency
    peak, bw = _peak(hw, dtype), hw.mem_bw_bytes_s
    stats: dict = {}
    fields: dict = {}
    g = [r for r in rows if r["op"] == "gemm" and r["dtype"] == dtype]
    if g:
        inten = np.array([r["flops"] / r["bytes"] for r in g])
        t = np.array([r["time_s"] for r in g])
        memb = inten < 0.25 * peak / bw
        if not memb.any():
            memb = inten == inten.min()
        bw0 = float(np.clip(np.median(np.array([r["bytes"] for r in g])[memb] / t[memb]) / bw,
                            0.01, 1.0))

        def resid(p):
            e = replace(base, compute=float(p[0]), gemm_half_rows=float(p[1]),
                        bandwidth=float(p[2]))
            return np.log([gemm_row_terms(r, peak, bw, e, hw.sm_count)[2] for r in g]) - np.log(t)
        c0 = float(np.clip(max(r["flops"] / r["time_s"] for r in g) / peak, 0.02, 1.0))
        best = None
        for h0 in (0.0, 16.0, 128.0):
            sol = least_squares(resid, x0=[c0, h0, bw0], bounds=([0.01, 0.0, 0.01], [1.0, 4096.0, 1.0]))
            if best is None or sol.cost < best.cost:
                best = sol
        fields["bandwidth"] = float(best.x[2])
        fields["compute"], fields["gemm_half_rows"] = float(best.x[0]), float(best.x[1])
        err = resid(best.x)
        stats["gemm"] = {"points": len(g), "memory_bound_points": int(memb.sum()),
                         "rms_log_error": float(np.sqrt(np.mean(err ** 2)))}
    dec = [r for r in rows if r["op"] == "attn_decode" and r["dtype"] == dtype]
    if dec:
        fields["attention_bandwidth"] = float(np.clip(np.median(
            [r["bytes"] / r["time_s"] / bw for r in dec]), 0.01, 1.0))
    pre = [r for r in rows if r["op"] == "attn_prefill" and r["dtype"] == dtype]
    if pre:
        fields["attention_compute"] = float(np.clip(max(r["flops"] / r["time_s"] for r in pre)
                                                    / peak, 0.01, 1.0))
    loop = [r for r in rows if r["op"] == "decode_eager"]
    if loop:                      # the overhead line: the narrowest model's depths only
        hmin = min(r["hidden"] for r in loop)
        loop = [r for r in loop if r["hidden"] == hmin]
    if len({r["layers"] for r in loop}) > 1:
        from .fit import fit_overhead
        per, fixed = _launches(loop[0])
        oh = fit_overhead([r["layers"] for r in loop], [r["time_s"] for r in loop],
                          [r["time_s"] for r in loop], per, fixed)
        fields["launch_overhead_s"] = oh["launch_overhead_s"]
        fields["step_overhead_s"] = oh["step_overhead_s"]
        stats["decode_loop"] = {"per_layer_s": oh["per_layer_s"], "rows": len(loop)}
    f8 = [r for r in rows if r["op"] == "gemm" and r["dtype"] == "fp8"]
    fp8 = None
    if f8 and hw.peak("fp8"):
        fp8 = float(np.clip(max(r["flops"] / r["time_s"] for r in f8) / hw.peak("fp8"), 0.01, 1.0))
    eff = replace(base, **fields)
    Efficiency(**{k: getattr(eff, k) for k in Efficiency.__dataclass_fields__})  # validates
    return {"efficiency": eff, "fp8_compute": fp8, "fields": fields, "stats": stats}


def _launches(r: dict) -> tuple[float, float]:
    """(operator rows per layer, fixed rows) the engine counts for a decode-loop row."""
    from ..graph import build_ops
    from ..specs.model import from_hf_config
    from ..specs.precision import Precision
    from .decoder import DecoderShape
    counts = []
    for n in (1, 2):
        shape = DecoderShape(r["hidden"], n, r["heads"], r["kv_heads"], r["ffn"], r["vocab"],
                             r["head_dim"] or 0)
        counts.append(sum(o.count for o in build_ops(from_hf_config(shape.hf_config(r["kv_len"])),
                                                     Precision(), 1, 1, 2)))
    per = counts[1] - counts[0]
    return float(per), float(counts[0] - per)


# -- calibrate --kernels -------------------------------------------------------------------------
def table_hardware(rows: list[dict], hardware=None):
    """The device a table was measured on: ``hardware`` (catalog id or device file), else
    the catalog entry matched by the rows' ``device_name``; one-line error when none."""
    from ..specs.hardware import load_hardware
    from .measure import match_catalog
    if hardware is not None:
        return load_hardware(hardware)
    names = sorted({r["device_name"] for r in rows if r.get("device_name")})
    dev = match_catalog(names[0]) if names else None
    if not dev:
        raise InputError(f"hardware: the table's device {names[0] if names else '(unnamed)'!r} "
                         "matches no catalog entry; give --hardware ID or a probed device file")
    return load_hardware(dev)


def calibrate_kernels(path, hardware=None, profile="default", dtype: str = "bf16", name=None):
    """Fit a profile entry for the table's device family (:func:`fit_kernels`).

    Returns ``(Profile, hw, before, after)``: the profile (the base profile with the
    family's entry replaced, and ``<family>-a8`` with the fp8 compute when measured) and
    the per-class summaries (:func:`summarize`) of the engine before and after.
    """
    from dataclasses import replace

    from ..specs.engine import load_engine
    from ..specs.profile import Profile, load_profile
    rows = read_table(path)
    hw = table_hardware(rows, hardware)
    base_prof = load_profile(profile)
    before_eff = load_engine(base_prof).efficiency(hw.efficiency, hw.family, 16)
    fit = fit_kernels(rows, hw, before_eff, dtype=dtype)
    after_eff = fit["efficiency"]
    # the lookup takes <family>-a16 first (Profile.lookup_keys): the fitted entry goes there
    fam = hw.family or "fallback"
    families = dict(base_prof.families)
    families[f"{fam}-a16"] = after_eff
    if fit["fp8_compute"] is not None:
        a8 = base_prof.for_family(fam, 8)
        families[f"{fam}-a8"] = replace(a8, compute=fit["fp8_compute"])
    prov = {"source": f"calibrate --kernels {Path(path).name}", "device": hw.id,
            "base_profile": base_prof.name, "fitted": ", ".join(sorted(fit["fields"])),
            **{f"rms_log_error_{k}": v["rms_log_error"] for k, v in fit["stats"].items()
               if "rms_log_error" in v}}
    prof = Profile(name or Path(path).stem, families, base_prof.fallback, prov)
    hw_after = replace(hw, efficiency=after_eff)
    before = summarize(predict_rows(rows, hw, before_eff))
    after = summarize(predict_rows(rows, hw_after, after_eff))
    return prof, hw, before, after
