"""`validate` and `calibrate`: measured versus predicted, and fitting profiles."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich.table import Table

from .. import jsonout
from ..errors import InputError
from .common import app, err, out, setup_option


# -- accuracy: validate and calibrate ----------------------------------------------------
def _summary_table(title: str, summary: dict) -> Table:
    t = Table(title=title, title_justify="left", caption="error = predicted / measured - 1",
              caption_justify="left")
    for col in ("group", "metric", "n", "median |err|", "p90 |err|", "bias"):
        t.add_column(col, justify="left" if col in ("group", "metric") else "right")
    for gname, key in (("all", "overall"),):
        for metric, st in summary[key].items():
            t.add_row(gname, metric, str(st["n"]), f"{st['median_ape']:.1%}",
                      f"{st['p90_ape']:.1%}", f"{st['bias']:+.1%}")
    for key in ("by_hardware", "by_model", "by_source_id", "by_precision", "by_tp", "by_mode"):
        for g, metrics in summary[key].items():
            for metric, st in metrics.items():
                t.add_row(f"{key[3:]}={g}", metric, str(st["n"]), f"{st['median_ape']:.1%}",
                          f"{st['p90_ape']:.1%}", f"{st['bias']:+.1%}")
    return t


ResultsOpt = Annotated[Optional[list[str]], typer.Option("--results", help="Result file of a serving benchmark (vllm bench serve --save-result JSON, sglang.bench_serving JSONL, genai-perf / aiperf profile export, trtllm-bench --report_json; docs/results.md); repeat for several. Needs --setup.")]
SetupFileOpt = Annotated[Optional[str], typer.Option("--setup", help="The setup.toml `llmroofline launch --out` wrote for these results: deployment, engine batching values, workload.")]


def _result_runs(results: Optional[list[str]], setup_file: Optional[str], csv_file):
    """The results with their setup as simulator runs (``serving.from_results``)."""
    from ..launch import read_setup
    from ..result_files import read_results
    from ..serving.from_results import runs_of
    if csv_file:
        raise InputError("results: give either a measurements CSV or --results files")
    if not setup_file:
        raise InputError("results: --results needs --setup FILE (the setup.toml that "
                         "`llmroofline launch --out` wrote)")
    rec = read_setup(setup_file)
    return runs_of(rec, [r for f in results for r in read_results(f)])


def _results_table(title: str, rows: list[dict]) -> Table:
    t = Table(title=title, title_justify="left", caption="error = predicted / measured - 1; "
              "times in ms, throughput in output tokens/s", caption_justify="left")
    for col in ("result", "c", "isl", "osl", "metric", "measured", "predicted", "error"):
        t.add_column(col, justify="left" if col in ("result", "metric") else "right")
    for r in rows:
        k = 1.0 if r["metric"] == "output_tok_s" else 1e3
        t.add_row(r["result"], str(r["concurrency"]), str(r["isl"]), str(r["osl"]),
                  r["metric"].replace("_s", "_ms") if k == 1e3 else r["metric"],
                  f"{r['measured'] * k:.4g}", f"{r['predicted'] * k:.4g}", f"{r['error']:+.1%}")
    return t


@app.command("validate")
def validate_cmd(
    csv_file: Annotated[Optional[str], typer.Argument(help="Measurements CSV (default: the shipped calibration data).", show_default=False)] = None,
    results: ResultsOpt = None, setup_file: SetupFileOpt = None,
    engine: setup_option("engine") = None, profile: setup_option("profile") = None,
    serving: Annotated[bool, typer.Option("--serving", help="Validate the shipped in-flight-batching rows (max_throughput mode, simulated; ~15 s).")] = False,
    cv: Annotated[Optional[str], typer.Option("--cv", help="Leave-one-group-out: device, model or source (refits the profile per fold).")] = None,
    plot: Annotated[Optional[str], typer.Option("--plot", help="Write a predicted-vs-measured scatter (PNG/SVG).")] = None,
    rows: Annotated[bool, typer.Option("--rows/--no-rows", help="Print every row, not only the summary.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: rows, skipped, summary.")] = False,
    serving_csv: Annotated[Optional[str], typer.Option("--serving-csv", help="A closed-loop concurrency CSV (measured_modern/serving_h200_concurrency.csv schema; also detected from a CSV argument's header): every row simulated, TTFT/TPOT/throughput error by engine, release, concurrency and layout (8 s for the 967 H200 rows on 2 cores).")] = None,
) -> None:
    """Compare predictions with measured throughput, TTFT, TPOT and latency.

    Three CSV kinds: the calibration schema (static / concurrent / max_throughput rows),
    TensorRT-LLM 0.11-0.17 offline max-throughput runs (that schema, source_id
    trtllm_v0.11..v0.17: simulated under engine trtllm-0.1x unless --engine), and the
    closed-loop concurrency schema (--serving-csv, or detected)."""
    from .. import validate as val
    from ..serving.validate_runs import is_concurrency_csv
    if results or setup_file:
        from ..serving.from_results import predict
        if serving or cv or plot or rows:
            raise InputError("results: --serving, --cv, --plot and --rows apply to "
                             "measurement CSVs; --results prints every row")
        rows_ = predict(_result_runs(results or [], setup_file, csv_file))
        if as_json:
            print(jsonout.dumps({"rows": rows_}))
        else:
            out.print(_results_table("Benchmark results versus the simulated closed loop", rows_))
        return
    if serving and (csv_file or serving_csv):
        raise InputError("serving: give either a CSV file or --serving (the shipped serving rows)")
    if csv_file and serving_csv:
        raise InputError("serving-csv: give the concurrency CSV either as the argument or "
                         "with --serving-csv, not both")
    if serving_csv or (csv_file and is_concurrency_csv(csv_file)):
        if cv or plot or profile:
            raise InputError("serving-csv: --cv, --plot and --profile apply to the calibration "
                             "schema; a concurrency CSV takes --engine, --rows and --json")
        return _validate_concurrency(serving_csv or csv_file, engine, rows, as_json)
    if csv_file and not cv and not plot:
        from ..serving import offline_trt
        if offline_trt.is_offline_csv(csv_file):
            return _validate_offline(csv_file, engine, profile, rows, as_json)
    default = val.shipped_serving_measurements() if serving else val.shipped_measurements()
    if plot:
        from ..safeio import check_out_path
        check_out_path("plot", plot, (".png", ".svg"))
    measured = val.read_measurements(csv_file or default)
    if cv:
        from ..fit import calibrate_fn, shipped_coverage
        # the shipped rows are refitted as the shipped profile is; a user's file without
        # assumptions about its engine's kernels
        preds = val.cross_validate(measured, cv, calibrate_fn(
            coverage=None if csv_file else shipped_coverage()))
        result = val.Validation(preds, [], f"leave-one-{cv}-out refit")
    else:
        result = val.predict_rows(measured, profile, engine=engine)
    data = result.to_dict()
    if plot:
        from ..plots import validation_scatter
        validation_scatter(result, plot)
    if as_json:
        print(jsonout.dumps(data))
        return
    if rows:
        t = Table(title="Rows", title_justify="left")
        for col in ("id", "device", "model", "tp", "prec", "mode", "metric", "measured", "predicted", "error"):
            t.add_column(col)
        for r in data["rows"]:
            t.add_row(r["id"], r["hardware"], r["model"].split("/")[-1], str(r["tp"]), r["precision"],
                      r["mode"], r["metric"], f"{r['measured']:.4g}", f"{r['predicted']:.4g}",
                      f"{r['error']:+.1%}")
        out.print(t)
    out.print(_summary_table(f"Prediction error, profile {result.profile}", data["summary"]))
    for s in data["skipped"]:
        out.print(f"[yellow]skipped[/] row {s['id']}: {s['reason']}")
    if plot:
        out.print(f"wrote {plot}")


def _mape_table(title: str, summary: dict) -> Table:
    t = Table(title=title, title_justify="left",
              caption="mean |predicted / measured - 1| (engine_fit.mape)", caption_justify="left")
    for col in ("group", "n", "TTFT", "TPOT", "throughput"):
        t.add_column(col, justify="left" if col == "group" else "right")

    def add(name, st):
        if st.get("n"):
            t.add_row(name, str(st["n"]), f"{st['ttft_ms']:.1%}", f"{st['tpot_ms']:.1%}",
                      f"{st['tok_s']:.1%}")
    add("all", summary["overall"])
    for key in ("by_engine", "by_release", "by_concurrency", "by_layout"):
        for g, st in summary[key].items():
            add(f"{key[3:]}={g}", st)
    return t


def _validate_concurrency(path: str, engine, rows: bool, as_json: bool) -> None:
    from ..serving.validate_runs import validate_concurrency
    data = validate_concurrency(path, engine)
    if as_json:
        print(jsonout.dumps(data))
        return
    if rows:
        t = Table(title="Rows", title_justify="left")
        for col in ("id", "engine", "model", "layout", "c", "isl/osl", "TTFT ms", "TPOT ms",
                    "tok/s err"):
            t.add_column(col)
        for r in data["rows"]:
            t.add_row(r["id"], f"{r['backend']} {r['version']}", r["model"].split("/")[-1],
                      r["layout"], str(r["concurrency"]), f"{r['isl']}/{r['osl']}",
                      f"{r['ttft_ms']:.4g} ({r['measured_ttft_ms']:.4g})",
                      f"{r['tpot_ms']:.4g} ({r['measured_tpot_ms']:.4g})",
                      f"{r['tok_s'] / r['measured_tok_s'] - 1:+.1%}")
        out.print(t)
    out.print(_mape_table(f"Closed-loop error, engine {data['engine']}", data["summary"]))
    _print_skip_counts(data["skipped"])


def _print_skip_counts(skipped: list[dict]) -> None:
    counts: dict[str, int] = {}
    for s in skipped:
        # the kind of reason: its text before the details (': ...', ' (...)')
        k = s["reason"].split(" (")[0]
        k = k.split(":")[0] if len(k.split(":")[0]) > 8 else k
        counts[k] = counts.get(k, 0) + 1
    for k, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        out.print(f"[yellow]skipped[/] {n} row(s): {k}")


def _validate_offline(path: str, engine, profile, rows: bool, as_json: bool) -> None:
    from .. import validate as val
    from ..serving import offline_trt
    runs, skipped = offline_trt.read_offline_csv(path)
    res = offline_trt.simulate_offline(runs, engine or offline_trt.OFFLINE_ENGINE,
                                       profile=profile, skipped=skipped)
    v = val.Validation(res.predictions, res.skipped, res.engine)
    data = {**v.to_dict(), "summary": res.summary(),
            "seconds_per_row": {"median": float(np.median(res.seconds)) if res.seconds else 0.0,
                                "total": float(sum(res.seconds))}}
    if as_json:
        print(jsonout.dumps(data))
        return
    if rows:
        t = Table(title="Rows", title_justify="left")
        for col in ("id", "release", "device", "model", "tp", "prec", "in/out", "measured",
                    "predicted", "error"):
            t.add_column(col)
        for p in res.predictions:
            t.add_row(p.row.id, offline_trt.release_of(p.row), p.row.hardware,
                      p.row.model.split("/")[-1], str(p.row.tp), p.row.weight_dtype,
                      f"{p.row.input_len}/{p.row.output_len}", f"{p.measured:.4g}",
                      f"{p.predicted:.4g}", f"{p.error:+.1%}")
        out.print(t)
    summary = data["summary"]
    t = _summary_table(f"Offline throughput error, engine {res.engine}", summary)
    for key in ("by_release", "by_dtype"):
        for g, st in summary[key].items():
            st = st["throughput_tok_s"]
            t.add_row(f"{key[3:]}={g}", "throughput_tok_s", str(st["n"]),
                      f"{st['median_ape']:.1%}", f"{st['p90_ape']:.1%}", f"{st['bias']:+.1%}")
    out.print(t)
    _print_skip_counts([{"id": i, "reason": r} for i, r in res.skipped])


@app.command("calibrate")
def calibrate_cmd(
    csv_file: Annotated[Optional[str], typer.Argument(help="Measurements CSV (schema of the shipped calibration.csv); omit with --kernels or --results.", show_default=False)] = None,
    results: ResultsOpt = None, setup_file: SetupFileOpt = None,
    out_file: Annotated[str, typer.Option("--out", help="Profile TOML to write (use it as --profile FILE).")] = "calibrated.toml",
    params: Annotated[Optional[str], typer.Option("--params", help="Comma-separated parameters to fit (default: all but gemm_half_rows, as for the default profile).")] = None,
    cv: Annotated[Optional[str], typer.Option("--cv", help="Also report leave-one-group-out error: device, model or source.")] = None,
    fit_serving: Annotated[bool, typer.Option("--fit-serving", help="Also fit max_throughput rows (each a serving simulation per evaluation: minutes) in the entries of their devices; by default they are only validated.")] = False,
    gqa_max_group: Annotated[Optional[int], typer.Option("--gqa-max-group", help="Largest GQA group (query heads per KV head per device) your engine's decode kernel shares KV reads for; larger groups re-read KV per query head. Held fixed in the fit. Default: no limit.")] = None,
    kernels: Annotated[Optional[str], typer.Option("--kernels", help="Fit the device's entry to a measured-kernel table (`probe --kernels-out`) instead of a measurements CSV.")] = None,
    hardware: Annotated[Optional[str], typer.Option("--hardware", "-H", help="With --kernels: the device (default: matched by the table's device name).")] = None,
    backend: Annotated[Optional[str], typer.Option("--backend", help="With a concurrency CSV: the backend whose rows to fit (trtllm, vllm, sglang; needed when the file has several).")] = None,
) -> None:
    """Fit an efficiency profile to your own measurements (e.g. your engine on your GPU).

    Given a closed-loop concurrency CSV (measured_modern/serving_h200_concurrency.csv
    schema, detected from its header), fits instead one backend's fixed costs
    (request_overhead_us, iteration_overhead_us; serving/engine_fit.py) and writes an
    engine TOML for --engine FILE. With --results, fits the engine's request and iteration
    overhead to benchmark result files."""
    from .. import fit, validate as val
    from ..specs.profile import profile_to_toml
    from ..safeio import atomic_write_text, check_out_path, exists
    if not out_file.endswith(".toml"):
        raise InputError(f"out: the profile file must end in .toml, got {out_file!r}")
    if results or setup_file:
        from ..serving.from_results import fit_engine, predict, with_costs
        if params or cv or fit_serving or kernels or gqa_max_group is not None:
            raise InputError("results: --params, --cv, --fit-serving, --kernels and "
                             "--gqa-max-group fit kernels to measurement CSVs; --results "
                             "fits the engine's request and iteration overhead")
        sets = _result_runs(results or [], setup_file, csv_file)
        check_out_path("out", out_file)
        replacing = exists(out_file)
        params, text, skipped = fit_engine([sets], out_file)
        atomic_write_text(out_file, text, "out")
        if replacing:
            err.print(f"[yellow]note:[/] replaced the existing {out_file}")
        for run, why in skipped:
            out.print(f"[yellow]skipped[/] {run.id}: {why}")
        out.print(_results_table("Fit error (results used for the fit)",
                                 predict(with_costs(sets, params))))
        out.print(f"wrote {out_file}: request overhead {params['request_overhead_s'] * 1e3:.2f} "
                  f"ms, iteration overhead {params['iteration_overhead_s'] * 1e3:.3f} ms "
                  f"(use it as --engine {out_file})")
        return
    if kernels is not None or csv_file is None:
        from ..probe.report import calibrate_kernels_cli
        return calibrate_kernels_cli(csv_file, kernels, hardware, out_file, out)
    check_out_path("out", out_file)          # before the fit, which can take minutes
    from ..serving.validate_runs import is_concurrency_csv
    if is_concurrency_csv(csv_file):
        return _calibrate_engine(csv_file, out_file, backend)
    if backend is not None:
        raise InputError("backend: applies to a concurrency CSV only (serving_h200_"
                         "concurrency.csv schema)")
    if exists(out_file) and exists(csv_file) and Path(out_file).samefile(csv_file):
        raise InputError(f"out: {out_file} is the measurements file itself; write the "
                         "profile to another file")
    replacing = exists(out_file)
    chosen = tuple(p.strip() for p in params.split(",")) if params else fit.DEFAULT_FIT
    if gqa_max_group is not None and gqa_max_group < 1:
        raise InputError(f"gqa-max-group: must be an integer >= 1, got {gqa_max_group}")
    max_group = float(gqa_max_group) if gqa_max_group is not None else math.inf
    measured = val.read_measurements(csv_file)
    prof, stats = fit.calibrate(measured, chosen, name=Path(out_file).stem, source=str(csv_file),
                                fit_serving=fit_serving, gqa_max_group=max_group)
    atomic_write_text(out_file, profile_to_toml(prof), "out")   # temporary file + rename
    if replacing:
        err.print(f"[yellow]note:[/] replaced the existing {out_file}")
    fitted = val.predict_rows(measured, prof)
    out.print(_summary_table("Fit error (rows used for the fit)", fitted.summary()))
    if cv:
        preds = val.cross_validate(measured, cv, fit.calibrate_fn(chosen, max_group))
        out.print(_summary_table(f"Leave-one-{cv}-out error", val.summarize(preds)))
    out.print(f"wrote {out_file}: families {', '.join(prof.families) or '-'} + fallback")




def _calibrate_engine(csv_file: str, out_file: str, backend: str | None) -> None:
    from ..safeio import atomic_write_text, exists
    from ..serving.measured import ENGINE_PRESETS
    from ..serving.validate_runs import engine_text, fit_engine
    from ..specs.engine import load_engine
    if backend is not None and backend.strip().lower() not in ENGINE_PRESETS:
        from ..errors import suggest
        raise InputError(f"backend: must be one of {', '.join(ENGINE_PRESETS)}, got {backend!r}"
                         + suggest(backend, ENGINE_PRESETS))
    name, params, n, _ = fit_engine(csv_file, backend and backend.strip().lower())
    preset = ENGINE_PRESETS[name]
    replacing = exists(out_file)
    text = engine_text(preset, Path(out_file).stem, params, csv_file, n)
    atomic_write_text(out_file, text, "out")
    load_engine(out_file, field="out")          # the file loads as an engine
    if replacing:
        err.print(f"[yellow]note:[/] replaced the existing {out_file}")
    out.print(f"{name} ({preset}): request_overhead {params['request_overhead_s'] * 1e3:.2f} ms, "
              f"iteration_overhead {params['iteration_overhead_s'] * 1e3:.3f} ms "
              f"(engine_fit bounds {', '.join(f'{k} [{lo:g}, {hi:g}] s' for k, (lo, hi) in _bounds().items())})")
    out.print(f"wrote {out_file}: use it as --engine {out_file}")


def _bounds() -> dict:
    from ..serving.engine_fit import FIXED_COSTS, PARAMS
    return {k: PARAMS[k] for k in FIXED_COSTS}
