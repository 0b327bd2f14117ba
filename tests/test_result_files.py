"""Benchmark result files read back (llmroofline.result_files) and used by `validate` and
`calibrate --results` with the launch setup. The sample files are written here in each
tool's documented output shape (docs/results.md); the round trip writes one from the
`simulate` command's closed-loop report."""

from __future__ import annotations

import json
import tomllib
from importlib import resources

import pytest

from llmroofline.cli import main
from llmroofline.errors import InputError
from llmroofline.result_files import read_results

VLLM = {"date": "20260101-120000", "backend": "vllm", "model_id": "meta-llama/Llama-3.1-8B",
        "tokenizer_id": "meta-llama/Llama-3.1-8B", "num_prompts": 80, "request_rate": "inf",
        "max_concurrency": 8, "duration": 40.0, "completed": 80, "total_input_tokens": 80000,
        "total_output_tokens": 16000, "request_throughput": 2.0, "output_throughput": 400.0,
        "total_token_throughput": 2400.0, "mean_ttft_ms": 120.0, "median_ttft_ms": 110.0,
        "std_ttft_ms": 5.0, "p99_ttft_ms": 200.0, "mean_tpot_ms": 9.5, "median_tpot_ms": 9.4,
        "std_tpot_ms": 0.1, "p99_tpot_ms": 11.0, "mean_itl_ms": 9.5, "mean_e2el_ms": 2000.0}
SGLANG = {"backend": "sglang", "dataset_name": "random", "request_rate": float("inf"),
          "max_concurrency": 4, "random_input_len": 2000, "random_output_len": 300,
          "random_range_ratio": 1.0, "duration": 30.0, "completed": 40,
          "total_input_tokens": 80000, "total_output_tokens": 12000,
          "request_throughput": 1.3, "input_throughput": 2666.7, "output_throughput": 400.0,
          "mean_e2e_latency_ms": 3000.0, "median_e2e_latency_ms": 2990.0,
          "mean_ttft_ms": 150.0, "median_ttft_ms": 140.0, "p99_ttft_ms": 300.0,
          "mean_tpot_ms": 9.0, "median_tpot_ms": 8.9, "p99_tpot_ms": 10.5, "mean_itl_ms": 9.0}
GENAI_PERF = {
    "time_to_first_token": {"unit": "ms", "avg": 130.0, "p50": 125.0, "p99": 250.0},
    "inter_token_latency": {"unit": "ms", "avg": 10.0, "p50": 9.8, "p99": 12.0},
    "request_latency": {"unit": "ms", "avg": 2100.0},
    "output_sequence_length": {"unit": "tokens", "avg": 200.0},
    "input_sequence_length": {"unit": "tokens", "avg": 1000.0},
    "output_token_throughput": {"unit": "tokens/sec", "avg": 750.0},
    "request_throughput": {"unit": "requests/sec", "avg": 3.75},
    "request_count": {"unit": "count", "avg": 160},
    "input_config": {"model": ["meta-llama/Llama-3.1-8B"], "concurrency": 8,
                     "request_count": 160}}
AIPERF = {"records": {
    "time_to_first_token": {"unit": "ms", "avg": 0.14, "p50": 0.13, "p99": 0.3},
    "inter_token_latency": {"unit": "ms", "avg": 11.0, "p50": 10.9, "p99": 13.0},
    "output_sequence_length": {"unit": "tokens", "avg": 200.0},
    "input_sequence_length": {"unit": "tokens", "avg": 1000.0},
    "output_token_throughput": {"unit": "tokens/sec", "avg": 700.0},
    "request_throughput": {"unit": "requests/sec", "avg": 3.5},
    "request_count": {"unit": "requests", "avg": 64}},
    "input_config": {"loadgen": {"concurrency": 16, "request_count": 64}}}
AIPERF["records"]["time_to_first_token"]["unit"] = "s"     # a unit other than ms
TRTLLM_BENCH = {
    "engine": {"model": "meta-llama/Llama-3.1-8B", "backend": "pytorch"},
    "world_info": {"tp_size": 1, "pp_size": 1},
    "request_info": {"num_requests": 100, "avg_input_length": 1024.0,
                     "avg_output_length": 128.0, "max_concurrency": 32},
    "performance": {"total_latency_ms": 20000.0, "request_throughput_req_s": 5.0,
                    "system_output_throughput_tok_s": 640.0},
    "streaming_metrics": {"avg_ttft_ms": 90.0, "avg_tpot_ms": 12.0,
                          "ttft_percentiles": {"p50": 85.0, "p99": 150.0},
                          "tpot_percentiles": {"p50": 11.5, "p99": 14.0}}}


def write(tmp_path, name: str, text: str):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_vllm_json(tmp_path):
    (r,) = read_results(write(tmp_path, "vllm.json", json.dumps(VLLM, indent=2)))
    assert r.format == "vllm"
    assert (r.concurrency, r.completed, r.isl, r.osl) == (8, 80, 1000, 200)
    assert r.ttft_mean_s == pytest.approx(0.120) and r.ttft_median_s == pytest.approx(0.110)
    assert r.ttft_p99_s == pytest.approx(0.200) and r.tpot_mean_s == pytest.approx(0.0095)
    assert r.tpot_p99_s == pytest.approx(0.011)
    assert (r.output_tok_s, r.request_s) == (400.0, 2.0)


def test_sglang_jsonl_one_record_per_line(tmp_path):
    second = {**SGLANG, "max_concurrency": 16, "mean_ttft_ms": 300.0}
    text = json.dumps(SGLANG).replace("Infinity", '"inf"') + "\n" + json.dumps(second) + "\n"
    rs = read_results(write(tmp_path, "sglang.jsonl", text))
    assert [r.format for r in rs] == ["sglang", "sglang"]
    assert [r.concurrency for r in rs] == [4, 16]
    assert [r.ttft_mean_s for r in rs] == [pytest.approx(0.150), pytest.approx(0.300)]
    assert (rs[0].isl, rs[0].osl, rs[0].tpot_median_s) == (2000, 300, pytest.approx(0.0089))


def test_genai_perf_and_aiperf_profile_exports(tmp_path):
    (g,) = read_results(write(tmp_path, "profile_export_genai_perf.json", json.dumps(GENAI_PERF)))
    assert g.format == "genai-perf"
    assert (g.concurrency, g.completed, g.isl, g.osl) == (8, 160, 1000, 200)
    assert (g.ttft_mean_s, g.ttft_p99_s) == (pytest.approx(0.130), pytest.approx(0.250))
    assert g.tpot_mean_s == pytest.approx(0.010) and g.output_tok_s == 750.0
    (a,) = read_results(write(tmp_path, "profile_export_aiperf.json", json.dumps(AIPERF)))
    assert a.format == "aiperf" and (a.concurrency, a.completed) == (16, 64)
    assert a.ttft_mean_s == pytest.approx(0.14)        # unit "s"
    assert a.tpot_median_s == pytest.approx(0.0109)


def test_trtllm_bench_report(tmp_path):
    (t,) = read_results(write(tmp_path, "report.json", json.dumps(TRTLLM_BENCH)))
    assert t.format == "trtllm-bench"
    assert (t.concurrency, t.completed, t.isl, t.osl) == (32, 100, 1024, 128)
    assert (t.ttft_mean_s, t.ttft_median_s) == (pytest.approx(0.09), pytest.approx(0.085))
    assert (t.tpot_mean_s, t.tpot_p99_s) == (pytest.approx(0.012), pytest.approx(0.014))
    assert t.output_tok_s == 640.0 and t.request_s == 5.0


def test_unknown_shape_names_the_formats_and_missing_keys(tmp_path):
    p = write(tmp_path, "odd.json", json.dumps({"completed": 3, "ttft": 1}))
    with pytest.raises(InputError) as e:
        read_results(p)
    msg = str(e.value)
    assert "\n" not in msg
    for word in ("vllm", "sglang", "genai-perf", "aiperf", "trtllm-bench", "mean_ttft_ms",
                 "time_to_first_token", "streaming_metrics"):
        assert word in msg
    assert "completed," not in msg.split("lacks", 1)[1].split(";")[0]   # it has completed
    with pytest.raises(InputError, match="not JSON"):
        read_results(write(tmp_path, "b.jsonl", '{"a": 1}\nnot json\n'))
    bad_unit = {**GENAI_PERF, "time_to_first_token": {"unit": "fortnights", "avg": 1}}
    with pytest.raises(InputError, match="unit"):
        read_results(write(tmp_path, "u.json", json.dumps(bad_unit)))


# -- round trip: simulated run -> result file -> validate / calibrate -----------------------
def simulated_vllm_result(capsys, c: int, n: int, engine: str = "vllm-v1") -> dict:
    """A vLLM result JSON holding the `simulate` command's closed-loop report."""
    assert main(["simulate", "--model", "llama-3.1-8b", "-H", "h100-sxm", "-e", engine,
                 "-c", str(c), "--input-dist", "fixed:1000", "--output-dist", "fixed:200",
                 "-n", str(n), "--warmup", "1", "--json"]) == 0
    b = json.loads(capsys.readouterr().out)["benchmark"]
    m = b["measured_requests"]
    return {"backend": "vllm", "max_concurrency": c, "completed": m,
            "total_input_tokens": 1000 * m, "total_output_tokens": 200 * m,
            "mean_ttft_ms": b["ttft_s"]["mean"] * 1e3, "median_ttft_ms": b["ttft_s"]["p50"] * 1e3,
            "p99_ttft_ms": b["ttft_s"]["p99"] * 1e3, "mean_tpot_ms": b["tpot_s"]["mean"] * 1e3,
            "median_tpot_ms": b["tpot_s"]["p50"] * 1e3, "p99_tpot_ms": b["tpot_s"]["p99"] * 1e3,
            "output_throughput": b["output_tok_s"], "request_throughput": 1.0}


def launch_setup(tmp_path, capsys, c: int, n: int):
    out = tmp_path / "launch"
    assert main(["launch", "--model", "llama-3.1-8b", "-H", "h100-sxm", "-e", "vllm-v1",
                 "-c", str(c), "--isl", "1000", "--osl", "200", "-n", str(n),
                 "--out", str(out)]) == 0
    capsys.readouterr()
    return out / "setup.toml"


def test_round_trip_validate_reproduces_the_simulation(tmp_path, capsys):
    setup = launch_setup(tmp_path, capsys, 8, 32)
    res = write(tmp_path, "vllm_bench.json", json.dumps(simulated_vllm_result(capsys, 8, 32)))
    assert main(["validate", "--results", str(res), "--setup", str(setup), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert {r["metric"] for r in rows} == {"ttft_mean_s", "ttft_median_s", "ttft_p99_s",
                                           "tpot_mean_s", "tpot_median_s", "tpot_p99_s",
                                           "output_tok_s"}
    for r in rows:
        assert abs(r["error"]) < 1e-9, r
    assert main(["validate", "--results", str(res)]) == 2             # no --setup: one line
    assert "--setup" in capsys.readouterr().err


def test_calibrate_results_recovers_the_engine_fixed_costs(tmp_path, capsys):
    """Results simulated with vllm-v1's own fixed costs; the fit from them gets those costs
    back within the first-order model's error (engine_fit's docstring)."""
    setup = launch_setup(tmp_path, capsys, 8, 32)
    lines = [json.dumps(simulated_vllm_result(capsys, c, 4 * c)) for c in (1, 8, 32)]
    res = write(tmp_path, "runs.jsonl", "\n".join(lines) + "\n")
    out = tmp_path / "vllm-v1-mine.toml"
    assert main(["calibrate", "--results", str(res), "--setup", str(setup),
                 "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    fitted = tomllib.loads(out.read_text())
    base = tomllib.loads((resources.files("llmroofline") / "data" / "engines"
                          / "vllm-v1.toml").read_text())
    assert fitted["engine"]["name"] == "vllm-v1-mine"
    for key in ("request_overhead_us", "iteration_overhead_us"):
        assert fitted["runtime"][key] == pytest.approx(base["runtime"][key], rel=0.10), key
    # the fitted engine file launches as vLLM and validates
    assert main(["launch", "-e", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["launcher"] == "vllm"
