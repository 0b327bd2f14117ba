"""Result files of serving benchmarks, read as one plain record each.

Formats (docs/results.md lists every field used, with units):

- ``vllm``: ``vllm bench serve --save-result`` JSON (one object, times in ms);
- ``sglang``: ``python -m sglang.bench_serving --output-file`` JSONL (one object per line,
  one per run; times in ms);
- ``genai-perf``: ``profile_export_genai_perf.json`` (metrics as {avg, p50, p99, unit});
- ``aiperf``: ``profile_export_aiperf.json`` (the same metric shape, top level or under
  ``records``);
- ``trtllm-bench``: ``trtllm-bench throughput --report_json`` (sections ``request_info``,
  ``performance``, ``streaming_metrics``).

:func:`read_results` detects the format from the keys and returns a list of
:class:`BenchResult` (seconds, tokens/s); a file of another shape is an InputError that
says which formats were expected and which keys each lacked.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import InputError

FORMATS = ("vllm", "sglang", "genai-perf", "aiperf", "trtllm-bench")
_UNIT_S = {"ms": 1e-3, "s": 1.0, "sec": 1.0, "us": 1e-6, "ns": 1e-9}


@dataclass(frozen=True)
class BenchResult:
    """One benchmark run: the workload it sent and what it measured (seconds, tokens/s).
    Fields a format does not report are None."""

    format: str
    source: str
    concurrency: int | None
    isl: float | None             # mean input tokens per request
    osl: float | None             # mean output tokens per request
    completed: int | None
    ttft_mean_s: float
    ttft_median_s: float | None
    ttft_p99_s: float | None
    tpot_mean_s: float
    tpot_median_s: float | None
    tpot_p99_s: float | None
    output_tok_s: float | None
    request_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _num(x) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def _int(x) -> int | None:
    v = _num(x)
    return int(v) if v is not None else None


def _ms(d: dict, key: str) -> float | None:
    v = _num(d.get(key))
    return None if v is None else v * 1e-3


# -- vLLM and SGLang: flat objects, times in ms ---------------------------------------------
_VLLM_NEED = ("completed", "mean_ttft_ms", "mean_tpot_ms")


def _flat(d: dict, fmt: str, source: str) -> BenchResult:
    n = _int(d.get("completed"))
    tin, tout = _num(d.get("total_input_tokens")), _num(d.get("total_output_tokens"))
    isl = tin / n if tin is not None and n else _num(d.get("random_input_len"))
    osl = tout / n if tout is not None and n else _num(d.get("random_output_len"))
    return BenchResult(fmt, source, _int(d.get("max_concurrency")), isl, osl, n,
                       _ms(d, "mean_ttft_ms"), _ms(d, "median_ttft_ms"), _ms(d, "p99_ttft_ms"),
                       _ms(d, "mean_tpot_ms"), _ms(d, "median_tpot_ms"), _ms(d, "p99_tpot_ms"),
                       _num(d.get("output_throughput")), _num(d.get("request_throughput")))


def _is_sglang(d: dict) -> bool:
    # bench_serving writes mean_e2e_latency_ms (vLLM: mean_e2el_ms) and its dataset args
    return "mean_e2e_latency_ms" in d or "random_input_len" in d


# -- genai-perf and aiperf: {metric: {avg, p50, p99, unit}} ----------------------------------
_GP_NEED = ("time_to_first_token", "inter_token_latency")


def _stat_s(m: dict | None, key: str) -> float | None:
    if not isinstance(m, dict):
        return None
    v = _num(m.get(key))
    unit = str(m.get("unit", "ms")).lower()
    if v is None:
        return None
    if unit not in _UNIT_S:
        raise InputError(f"results: unit {m.get('unit')!r} of a time metric is not one of "
                         f"{', '.join(_UNIT_S)}")
    return v * _UNIT_S[unit]


def _find(d: dict, *names: str):
    """The first of ``names`` found in ``d`` or in nested dicts of it (input_config)."""
    stack = [d]
    while stack:
        x = stack.pop(0)
        for n in names:
            if n in x and not isinstance(x[n], dict):
                return x[n]
        stack.extend(v for v in x.values() if isinstance(v, dict))
    return None


def _profile(d: dict, fmt: str, source: str) -> BenchResult:
    m = d.get("records") if isinstance(d.get("records"), dict) else d
    ttft, itl = m["time_to_first_token"], m["inter_token_latency"]

    def avg(name):
        x = m.get(name)
        return _num(x.get("avg")) if isinstance(x, dict) else None
    cfg = d.get("input_config") if isinstance(d.get("input_config"), dict) else {}
    n = avg("request_count")
    n = _int(n) if n is not None else _int(_find(cfg, "request_count"))
    return BenchResult(fmt, source, _int(_find(cfg, "concurrency")),
                       avg("input_sequence_length"), avg("output_sequence_length"), n,
                       _stat_s(ttft, "avg"), _stat_s(ttft, "p50"), _stat_s(ttft, "p99"),
                       _stat_s(itl, "avg"), _stat_s(itl, "p50"), _stat_s(itl, "p99"),
                       avg("output_token_throughput"), avg("request_throughput"))


def _is_aiperf(d: dict, source: str) -> bool:
    return "aiperf" in source.lower() or isinstance(d.get("records"), dict) or (
        isinstance(d.get("input_config"), dict) and "loadgen" in d["input_config"])


# -- trtllm-bench --report_json ---------------------------------------------------------------
_TRT_NEED = ("request_info", "performance", "streaming_metrics")


def _trtllm(d: dict, source: str) -> BenchResult:
    ri, perf, st = d["request_info"], d["performance"], d["streaming_metrics"]
    tp, pp = st.get("ttft_percentiles") or {}, st.get("tpot_percentiles") or {}
    c = _int(ri.get("max_concurrency") or d.get("max_concurrency")
             or ri.get("avg_num_concurrent_requests"))
    return BenchResult("trtllm-bench", source, c, _num(ri.get("avg_input_length")),
                       _num(ri.get("avg_output_length")), _int(ri.get("num_requests")),
                       _ms(st, "avg_ttft_ms"), _ms(tp, "p50"), _ms(tp, "p99"),
                       _ms(st, "avg_tpot_ms"), _ms(pp, "p50"), _ms(pp, "p99"),
                       _num(perf.get("system_output_throughput_tok_s")),
                       _num(perf.get("request_throughput_req_s")))


_SHAPES = (("vllm / sglang", _VLLM_NEED), ("genai-perf / aiperf", _GP_NEED),
           ("trtllm-bench", _TRT_NEED))


def parse_object(d: Any, source: str = "result") -> BenchResult:
    """One parsed JSON object as a :class:`BenchResult`."""
    if not isinstance(d, dict):
        raise InputError(f"results: {source} holds a JSON {type(d).__name__}, not an object of "
                         f"one of the formats {', '.join(FORMATS)}")
    if all(k in d for k in _VLLM_NEED):
        r = _flat(d, "sglang" if _is_sglang(d) else "vllm", source)
    elif all(k in (d.get("records") if isinstance(d.get("records"), dict) else d)
             for k in _GP_NEED):
        r = _profile(d, "aiperf" if _is_aiperf(d, source) else "genai-perf", source)
    elif all(isinstance(d.get(k), dict) for k in _TRT_NEED):
        r = _trtllm(d, source)
    else:
        have = d.get("records") if isinstance(d.get("records"), dict) else d
        why = "; ".join(f"{name} lacks {', '.join(k for k in need if k not in have)}"
                        for name, need in _SHAPES)
        raise InputError(f"results: {source} is not a result file of {', '.join(FORMATS)} "
                         f"(docs/results.md): {why}")
    if r.ttft_mean_s is None or r.tpot_mean_s is None:
        raise InputError(f"results: {source} ({r.format}) has no numeric mean TTFT / TPOT")
    return r


def read_results(path) -> list[BenchResult]:
    """Every run in a result file (a JSONL file: one per line)."""
    from .safeio import read_text
    p = Path(path)
    text = read_text(p, "results", what="benchmark result file")
    try:
        objs = [json.loads(text)]
    except ValueError:
        objs = []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                objs.append(json.loads(line))
            except ValueError as e:
                raise InputError(f"results: {p.name}:{i} is not JSON ({e.msg})") from None
    if not objs:
        raise InputError(f"results: {p.name} is empty")
    many = len(objs) > 1
    return [parse_object(o, f"{p.name}:{i}" if many else p.name) for i, o in enumerate(objs, 1)]


__all__ = ["FORMATS", "BenchResult", "parse_object", "read_results"]
