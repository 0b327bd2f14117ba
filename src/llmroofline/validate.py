"""Measured versus predicted: read measurement CSVs, predict each metric, summarize errors.

The CSV schema is that of the shipped ``data/measured/calibration.csv`` (see its
``README.md``). Each row is predicted with the semantics of its ``mode``:

- ``static``: ``batch`` identical requests prefilled together, then decoded for exactly
  ``output_len`` tokens (the first from the prefill). ``throughput_tok_s = batch x
  output_len / e2e``; ``e2e_ms`` is the batch latency; ``ttft_ms`` the prefill of the
  batch; ``tpot_ms`` the mean decode step.
- ``concurrent``: ``batch`` clients send one request each at the same moment to a
  continuously batching engine. At most ``B_eff = min(batch, max_batch)`` sequences fit
  in memory at once, so the requests run in ``batch / B_eff`` waves of ``B_eff``:
  ``throughput = batch x output_len / (waves x e2e(B_eff))``; ``tpot_ms`` is the mean
  decode step at ``B_eff`` (the measured median per-token latency); ``ttft_ms`` is the
  minimum first-token latency, i.e. an uncontended prefill of one sequence.
- ``max_throughput``: ``batch`` requests (2000 when empty) queued at once on an in-flight
  batching engine (TensorRT-LLM's ``gptManagerBenchmark --request_rate -1``):
  ``throughput_tok_s`` is the serving simulator's offline output throughput with the
  engine setup of ``serving/offline.py`` (chunked prefill, 2048 tokens per iteration,
  90 % of free memory for a paged KV cache, 3 GB of runtime memory per device, preemption
  by recompute). Optional columns ``max_batch``, ``max_tokens`` (tokens per iteration),
  ``kv_fraction`` (share of the free memory given to the KV cache) and ``runtime_gb``
  (engine memory outside weights, activations and KV cache, GB per device) override that
  setup for rows measured with another engine build. Only throughput is predicted;
  ``calibrate`` fits these rows only with ``fit_serving`` (each needs whole simulations).

Errors are ``predicted / measured - 1`` (0.1 = 10 % over-prediction). The summary reports,
per metric, the median absolute error (``median_ape``), its 90th percentile (``p90_ape``)
and the median signed error (``bias``), overall and by source, hardware, model,
precision, tp and mode. Rows that cannot be predicted are listed with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .parallel import Layout
from .phases import analyze
from .specs.catalog import load_model
from .specs.hardware import load_hardware
from .specs.engine import Engine, compose_engine
from .specs.profile import Profile

METRICS = ("throughput_tok_s", "ttft_ms", "tpot_ms", "e2e_ms")
MODES = ("static", "concurrent", "max_throughput")
OFFLINE_REQUESTS = 2000   # max_throughput rows without a batch: requests queued at once
DTYPE_BITS = {"fp32": 32, "fp16": 16, "bf16": 16, "fp8": 8, "int8": 8, "int4": 4, "fp4": 4}
# other spellings of the same formats, read case-insensitively
DTYPE_ALIASES = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16",
                 "float8": "fp8", "e4m3": "fp8", "fp8_e4m3": "fp8", "float8_e4m3fn": "fp8",
                 "nvfp4": "fp4", "mxfp4": "fp4"}
REQUIRED = ("id", "hardware", "tp", "model", "weight_dtype", "act_dtype", "kv_dtype", "mode",
            "batch", "input_len", "output_len")
SERVING_SETUP = ("max_batch", "max_tokens", "kv_fraction", "runtime_gb")   # max_throughput rows only
# the real-valued ones: allowed range as a test and as text (the others are integers >= 1)
_SETUP_RANGES = {"kv_fraction": (lambda x: 0 < x <= 1, "in (0, 1]"),
                 "runtime_gb": (lambda x: 0 <= x <= 1e4, "a number of GB in [0, 10000]")}
OPTIONAL = ("source_id", "engine", "pp", *SERVING_SETUP, *METRICS)
GROUPS = ("source_id", "hardware", "model", "precision", "tp", "mode")


@dataclass(frozen=True)
class Row:
    id: str
    hardware: str
    model: str
    tp: int
    pp: int
    weight_dtype: str
    act_dtype: str
    kv_dtype: str
    mode: str
    batch: int
    input_len: int
    output_len: int
    measured: dict[str, float]
    source_id: str = ""
    engine: str = ""
    setup: tuple[tuple[str, int | float], ...] = ()   # max_throughput: SERVING_SETUP overrides

    @property
    def precision(self) -> str:
        return f"{self.weight_dtype}/{self.act_dtype}/{self.kv_dtype}"

    def group_key(self) -> tuple:
        return (self.model, self.hardware, self.weight_dtype, self.act_dtype, self.kv_dtype,
                self.tp, self.pp)


def shipped_measurements() -> Path:
    """Path of the packaged calibration CSV (published measurements with provenance)."""
    return Path(str(resources.files("llmroofline") / "data" / "measured" / "calibration.csv"))


def shipped_serving_measurements() -> Path:
    """Path of the packaged in-flight-batching CSV (``max_throughput`` rows)."""
    return Path(str(resources.files("llmroofline") / "data" / "measured" / "serving_calibration.csv"))


def _predict_offline(r: Row, eng: Engine) -> tuple[dict | None, str | None]:
    """A ``max_throughput`` row: ``batch`` requests queued at once, simulated with the
    serving simulator in its offline mode (``serving/offline.py``)."""
    from .serving.offline import TRTLLM_CONFIG, offline_throughput
    if r.pp != 1:
        return None, "max_throughput rows are simulated without pipeline stages (pp = 1)"
    try:
        tok_s, _ = offline_throughput(r.model, r.hardware, r.input_len, r.output_len, tp=r.tp,
                                      requests=r.batch, engine=eng,
                                      config=replace(TRTLLM_CONFIG, **dict(r.setup)),
                                      wbits=DTYPE_BITS[r.weight_dtype],
                                      abits=DTYPE_BITS[r.act_dtype], kvbits=DTYPE_BITS[r.kv_dtype])
    except InputError as e:
        return None, str(e)
    return {"throughput_tok_s": tok_s}, None


def read_measurements(path: str | Path, skipped: list | None = None) -> list[Row]:
    """Parse and check a measurement CSV; errors name the row and the column. With a list
    ``skipped``, a row whose weight / activation / KV format is not known is appended to it
    as (id, reason) instead of being an error."""
    import pandas as pd
    import io
    from .safeio import read_text
    p = Path(path)
    text = read_text(p, "measurements", what="measurements CSV")
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except Exception as e:  # pandas raises several parser error types
        raise InputError(f"measurements: cannot parse {p}: {str(e).splitlines()[0]}") from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise InputError(f"measurements {p.name}: missing column(s) {', '.join(missing)} "
                         f"(required: {', '.join(REQUIRED)})")
    if not any(m in df.columns for m in METRICS):
        raise InputError(f"measurements {p.name}: no metric column (one of {', '.join(METRICS)})")
    seen: dict[str, int] = {}
    for i, rid in enumerate(df["id"]):
        if any(c in rid for c in "\r\n") or rid != rid.strip() or not rid:
            raise InputError(f"measurements {p.name} row {i + 2}: column 'id' must be one "
                             f"non-empty line without surrounding spaces, got {rid!r}")
        if rid in seen:
            raise InputError(f"measurements {p.name} row {i + 2}: id {rid!r} is already the "
                             f"id of row {seen[rid] + 2}; every id must be unique")
        seen[rid] = i
    rows = []
    for i, rec in enumerate(df.to_dict("records")):
        where = f"measurements {p.name} row {i + 2} (id {rec.get('id', '?')})"

        def integer(col: str, lo: int = 1, default: str | None = None) -> int:
            v = rec.get(col, default) if rec.get(col, "") != "" else default
            try:
                x = int(str(v))
            except (TypeError, ValueError):
                raise InputError(f"{where}: column '{col}' must be an integer >= {lo}, got {v!r}") from None
            if x < lo:
                raise InputError(f"{where}: column '{col}' must be an integer >= {lo}, got {x}")
            return x

        mode = rec["mode"].strip().lower().replace("-", "_")
        if mode not in MODES:
            raise InputError(f"{where}: column 'mode' must be one of {', '.join(MODES)}, got {mode!r}")
        bad_dtype = None
        for col in ("weight_dtype", "act_dtype", "kv_dtype"):
            v = str(rec[col]).strip().lower()
            rec[col] = DTYPE_ALIASES.get(v, v)
            if rec[col] not in DTYPE_BITS and bad_dtype is None:
                bad_dtype = (f"column '{col}' must be one of {', '.join(DTYPE_BITS)} "
                             f"(or {', '.join(DTYPE_ALIASES)}), got {v!r}")
        if bad_dtype and skipped is None:
            raise InputError(f"{where}: {bad_dtype}")
        if bad_dtype:
            skipped.append((str(rec["id"]), f"dtype not in the catalog: {bad_dtype}"))
            continue
        measured = {}
        for mcol in METRICS:
            v = str(rec.get(mcol, "")).strip()
            if not v:
                continue
            try:
                x = float(v)
            except ValueError:
                raise InputError(f"{where}: column '{mcol}' must be a number, got {v!r}") from None
            if not math.isfinite(x) or x <= 0:
                raise InputError(f"{where}: column '{mcol}' must be a positive number, got {v!r}")
            measured[mcol] = x
        setup = []
        for col in SERVING_SETUP:
            v = str(rec.get(col, "")).strip()
            if not v:
                continue
            if mode != "max_throughput":
                raise InputError(f"{where}: column '{col}' applies to max_throughput rows only, "
                                 f"got {v!r} on a {mode} row")
            if col in _SETUP_RANGES:
                ok, allowed = _SETUP_RANGES[col]
                try:
                    x = float(v)
                except ValueError:
                    x = math.nan
                if not ok(x):
                    raise InputError(f"{where}: column '{col}' must be {allowed}, got {v!r}")
                setup.append((col, x))
            else:
                setup.append((col, integer(col)))
        rows.append(Row(id=str(rec["id"]), hardware=rec["hardware"].strip(),
                        model=rec["model"].strip(), tp=integer("tp"),
                        pp=integer("pp", default="1"), weight_dtype=rec["weight_dtype"],
                        act_dtype=rec["act_dtype"], kv_dtype=rec["kv_dtype"], mode=mode,
                        batch=integer("batch", default=str(OFFLINE_REQUESTS)
                                      if mode == "max_throughput" else None),
                        input_len=integer("input_len"),
                        output_len=integer("output_len"), measured=measured,
                        source_id=rec.get("source_id", ""), engine=rec.get("engine", ""),
                        setup=tuple(setup)))
    return rows


@dataclass(frozen=True)
class Prediction:
    row: Row
    metric: str
    measured: float
    predicted: float

    @property
    def error(self) -> float:
        return self.predicted / self.measured - 1


@dataclass(frozen=True)
class Validation:
    predictions: list[Prediction]
    skipped: list[tuple[str, str]]              # (row id, reason)
    profile: str = ""

    def summary(self) -> dict[str, Any]:
        return summarize(self.predictions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "rows": [{"id": p.row.id, "metric": p.metric, "measured": p.measured,
                      "predicted": p.predicted, "error": p.error,
                      "hardware": p.row.hardware, "model": p.row.model, "tp": p.row.tp,
                      "precision": p.row.precision, "mode": p.row.mode,
                      "source": p.row.source_id} for p in self.predictions],
            "skipped": [{"id": i, "reason": r} for i, r in self.skipped],
            "summary": self.summary(),
        }


def _stats(errors: list[float]) -> dict[str, float]:
    e = np.asarray(errors, dtype=float)
    return {"n": int(e.size), "median_ape": float(np.median(np.abs(e))),
            "p90_ape": float(np.percentile(np.abs(e), 90)), "bias": float(np.median(e))}


def summarize(preds: list[Prediction]) -> dict[str, Any]:
    """Error statistics per metric, overall and grouped (see module docstring)."""
    def by(key) -> dict[str, dict[str, dict[str, float]]]:
        groups: dict[str, dict[str, list[float]]] = {}
        for p in preds:
            groups.setdefault(str(key(p)), {}).setdefault(p.metric, []).append(p.error)
        return {g: {m: _stats(v) for m, v in ms.items()} for g, ms in sorted(groups.items())}
    out: dict[str, Any] = {"overall": by(lambda p: "all").get("all", {})}
    for g in GROUPS:
        out[f"by_{g}"] = by(lambda p, g=g: getattr(p.row, g) if g != "precision" else p.row.precision)
    return out


def predict_rows(rows: list[Row], profile: str | Profile | None = None,
                 flash: bool = True, engine=None) -> Validation:
    """Predict every metric of every row, vectorized per (model, device, precision, layout),
    with the kernels of ``engine`` (``profile`` replacing its efficiency entries);
    ``max_throughput`` rows run the scheduler of the build they were measured with."""
    eng = compose_engine(engine, profile)
    prof = eng.profile
    preds: list[Prediction] = []
    skipped: list[tuple[str, str]] = []
    groups: dict[tuple, list[Row]] = {}
    for r in rows:
        if r.mode == "max_throughput":
            pred, why = _predict_offline(r, eng)
            if why:
                skipped.append((r.id, why))
                continue
            for metric, meas in r.measured.items():
                if metric not in pred:
                    skipped.append((r.id, f"{metric} is not predicted for max_throughput rows "
                                          "(only throughput_tok_s)"))
                    continue
                preds.append(Prediction(r, metric, meas, pred[metric]))
            continue
        groups.setdefault(r.group_key(), []).append(r)
    for key, rs in groups.items():
        model, hw, wd, ad, kd, tp, pp = key
        try:
            load_model(model)
            load_hardware(hw)
            kw = dict(wbits=DTYPE_BITS[wd], abits=DTYPE_BITS[ad], kvbits=DTYPE_BITS[kd],
                      flash=flash, layout=Layout(tp=tp, pp=pp, microbatches=1), engine=eng)
            B = np.array([r.batch for r in rs], dtype=float)
            I = np.array([r.input_len for r in rs], dtype=float)
            O = np.array([r.output_len for r in rs], dtype=float)
            a = analyze(model, hw, B, I, O, **kw)
            conc = np.array([r.mode == "concurrent" for r in rs])
            if conc.any():
                b_eff = np.where(conc, np.minimum(B, np.maximum(a.max_batch, 1)), B)
                ae = analyze(model, hw, b_eff, I, O, **kw)
                a1 = analyze(model, hw, np.ones_like(B), I, O, **kw)
            else:
                b_eff, ae, a1 = B, a, a
        except InputError as e:
            for r in rs:
                skipped.append((r.id, str(e)))
            continue
        for j, r in enumerate(rs):
            if r.mode == "static":
                if not bool(a.memory.fits[j]):
                    skipped.append((r.id, f"does not fit: needs {a.memory.total_bytes[j] / 1e9:.1f} GB "
                                          f"per device of {a.memory.capacity_bytes / 1e9:.0f} GB"))
                    continue
                pred = {"throughput_tok_s": a.throughput_tok_s[j], "ttft_ms": a.ttft_s[j] * 1e3,
                        "tpot_ms": a.tpot_s[j] * 1e3, "e2e_ms": a.e2e_s[j] * 1e3}
            else:
                if a.max_batch[j] < 1:
                    skipped.append((r.id, "does not fit: not even one sequence fits in memory"))
                    continue
                waves = B[j] / b_eff[j]
                pred = {"throughput_tok_s": B[j] * O[j] / (waves * ae.e2e_s[j]),
                        "ttft_ms": a1.ttft_s[j] * 1e3, "tpot_ms": ae.tpot_s[j] * 1e3,
                        "e2e_ms": waves * ae.e2e_s[j] * 1e3}
            for metric, meas in r.measured.items():
                p = float(pred[metric])
                if not math.isfinite(p):
                    skipped.append((r.id, f"{metric} undefined for output_len = {r.output_len}"))
                    continue
                preds.append(Prediction(r, metric, meas, p))
    order = {r.id: i for i, r in enumerate(rows)}
    preds.sort(key=lambda p: (order[p.row.id], METRICS.index(p.metric)))
    return Validation(preds, skipped, prof.name)


def validate(path: str | Path | None = None, profile: str | Profile | None = None,
             engine=None) -> Validation:
    """Read a measurement CSV (default: the shipped one) and compare with predictions."""
    return predict_rows(read_measurements(path or shipped_measurements()), profile,
                        engine=engine)


def cross_validate(rows: list[Row], by: str, fit_fn) -> list[Prediction]:
    """Leave-one-group-out: for each group, fit on the other rows, predict the held-out ones.

    ``fit_fn(train_rows) -> Profile``; ``by`` is ``hardware``, ``model`` or ``source_id``.
    A ``fit_fn`` with ``uses_held_out_rows`` set is called as ``fit_fn(train, held_out)``
    (to fit only what the held-out rows need; it must not use their measurements).
    """
    if by not in ("hardware", "model", "source_id", "device", "source"):
        raise InputError(f"cv must be one of device, model, source; got {by!r}")
    attr = {"device": "hardware", "source": "source_id"}.get(by, by)
    out: list[Prediction] = []
    for g in sorted({getattr(r, attr) for r in rows}):
        train = [r for r in rows if getattr(r, attr) != g]
        test = [r for r in rows if getattr(r, attr) == g]
        if not train:
            continue
        prof = fit_fn(train, test) if getattr(fit_fn, "uses_held_out_rows", False) else fit_fn(train)
        out += predict_rows(test, prof).predictions
    return out


