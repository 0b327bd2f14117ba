"""`validate` and `calibrate` on a closed-loop concurrency CSV (serving/measured.py schema).

:func:`validate_concurrency` simulates every simulable row as its benchmark ran
(:func:`measured.simulate_run`, the engine of its backend unless ``engine`` names another
preset) and scores predicted TTFT, TPOT and throughput ``c x OSL / (TTFT + TPOT x (OSL - 1))``
against the measured means: the mean absolute percentage error (``engine_fit.mape``:
mean of |predicted / measured - 1|) overall and by engine, release, concurrency bucket
(``engine_fit.bucket``) and layout; rows the simulator cannot run are listed with the reason.

:func:`fit_engine` fits one backend's fixed costs to such rows (``engine_fit.fit``, its
algorithm and bounds unchanged) and :func:`engine_text` writes them into a copy of that
backend's engine file, loadable by ``--engine FILE``.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from ..errors import InputError
from . import engine_fit
from .measured import MeasuredRun, read_concurrency_csv, simulate_run, throughput_tok_s

SCHEMA_COLUMNS = ("backend", "silicon_ttft_ms", "silicon_tpot_ms")
GROUPS = {"engine": lambda r: r["backend"], "release": lambda r: f"{r['backend']} {r['version']}",
          "concurrency": lambda r: engine_fit.bucket(r["concurrency"]),
          "layout": lambda r: r["layout"]}


def is_concurrency_csv(path: str | Path) -> bool:
    """Whether the file's header is the concurrency schema (measured_modern/README.md)."""
    p = Path(path)
    if not p.is_file():
        return False
    with p.open(newline="") as f:
        header = next(csv.reader(f), [])
    return all(c in header for c in SCHEMA_COLUMNS)


def layout_of(run: MeasuredRun) -> str:
    return f"tp{run.tp}" + (f" ep{run.moe_ep}" if run.moe_ep > 1 else "")


def _row(run: MeasuredRun, ttft_ms: float, tpot_ms: float) -> dict:
    c = run.concurrency or 0
    return {"id": run.id, "backend": run.backend, "version": run.version,
            "model": run.model_path, "layout": layout_of(run), "tp": run.tp,
            "concurrency": c, "isl": run.isl, "osl": run.osl,
            "ttft_ms": ttft_ms, "tpot_ms": tpot_ms,
            "tok_s": throughput_tok_s(c, run.osl, ttft_ms, tpot_ms),
            "measured_ttft_ms": run.ttft_ms, "measured_tpot_ms": run.tpot_ms,
            "measured_tok_s": run.tok_s}


def validate_concurrency(path: str | Path, engine: str | None = None, progress=None) -> dict:
    """{"rows": per-row predictions, "skipped": [{"id", "reason"}], "summary": {"overall",
    "by_engine", "by_release", "by_concurrency", "by_layout"}} (module docstring)."""
    runs, skipped = read_concurrency_csv(path)
    rows, skip = [], [{"id": r.id, "reason": why} for r, why in skipped]
    for i, run in enumerate(runs):
        try:
            p = simulate_run(run, engine)
        except InputError as e:
            skip.append({"id": run.id, "reason": str(e)})
            continue
        rows.append(_row(run, p["ttft_ms"], p["tpot_ms"]))
        if progress:
            progress(i + 1, len(runs))
    summary = {"overall": engine_fit.mape(rows) if rows else {"n": 0}}
    for name, key in GROUPS.items():
        summary[f"by_{name}"] = engine_fit.mape(rows, key) if rows else {}
    return {"engine": engine or "per backend", "rows": rows, "skipped": skip,
            "summary": summary}


def fit_engine(path: str | Path, backend: str | None = None) -> tuple[str, dict, int, list[dict]]:
    """(backend, {request_overhead_s, iteration_overhead_s}, rows fitted, set-aside rows)
    fitted to the rows of ``backend`` (the only one in the file when None) with
    ``engine_fit.fit``."""
    runs, skipped = read_concurrency_csv(path)
    backends = sorted({r.backend for r in runs})
    if backend is None:
        if len(backends) != 1:
            raise InputError(f"backend: {Path(path).name} has rows of {', '.join(backends) or 'no'}"
                             " backend; choose one with --backend")
        backend = backends[0]
    if backend not in backends:
        raise InputError(f"backend: no simulable rows of {backend!r} in {Path(path).name} "
                         f"(has: {', '.join(backends) or 'none'})")
    refused: list = []
    bs = engine_fit.baselines([r for r in runs if r.backend == backend], skipped=refused)
    params = engine_fit.fit(bs)
    out = [{"id": r.id, "reason": why} for r, why in [*skipped, *refused]]
    return backend, params, len(bs), out


def engine_text(preset: str, name: str, params: dict, source: str, rows: int) -> str:
    """The built-in engine file of ``preset`` renamed ``name``, its ``request_overhead_us``
    and ``iteration_overhead_us`` set to ``params`` (seconds -> microseconds)."""
    from importlib import resources
    text = (resources.files("llmroofline") / "data" / "engines" / f"{preset}.toml").read_text()
    text = re.sub(r'(?m)^name = ".*"$', f'name = "{name}"', text, count=1)
    text = re.sub(r'(?m)^fitted_to = ".*"$', f'fitted_to = "fixed costs: {rows} rows of '
                  f'{_escape(source)}; kernels as engine {preset}"', text, count=1)
    note = f"   # calibrate --fit-serving: {rows} rows of {_escape(Path(source).name)}"
    for key, v in (("request_overhead_us", params["request_overhead_s"]),
                   ("iteration_overhead_us", params["iteration_overhead_s"])):
        line = f"{key} = {v * 1e6:.1f}{note}"
        text, n = re.subn(rf"(?m)^{key} = .*$", line, text, count=1)
        if not n:
            text = re.sub(r"(?m)^\[runtime\]$", f"[runtime]\n{line}", text, count=1)
    return text


def _escape(s: str) -> str:
    return str(s).replace("\\", "/").replace('"', "'")
