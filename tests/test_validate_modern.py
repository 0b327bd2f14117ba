"""`validate` and `calibrate` on the closed-loop concurrency CSV (serving/validate_runs.py)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from llmroofline.serving import engine_fit, measured
from llmroofline.serving.validate_runs import (
    engine_text,
    fit_engine,
    is_concurrency_csv,
    validate_concurrency,
)
from llmroofline.specs.engine import load_engine

HEADER = ["id", "silicon_data_source", "backend", "backend_version", "model_path", "system", "precision", "mode", "isl", "osl", "gemm_quant_mode", "moe_quant_mode", "batch_size", "tp_size", "pp_size", "attention_dp_size", "moe_tp_size", "moe_ep_size", "prefill_batch_size", "prefill_num_workers", "prefill_tp_size", "prefill_pp_size", "prefill_attention_dp_size", "prefill_moe_tp_size", "prefill_moe_ep_size", "decode_batch_size", "decode_num_workers", "decode_tp_size", "decode_pp_size", "decode_attention_dp_size", "decode_moe_tp_size", "decode_moe_ep_size", "silicon_ttft_ms", "silicon_tpot_ms"]


def run_row(i, **kw):
    base = {"id": f"r{i}", "silicon_data_source": "test", "backend": "vllm", "backend_version": "0.16.0",
                "model_path": "meta-llama/Llama-3.1-8B", "system": "h200_sxm", "precision": "fp8",
                "mode": "agg", "isl": 256, "osl": 32, "gemm_quant_mode": "fp8", "moe_quant_mode": "fp8",
                "batch_size": 2, "tp_size": 1, "pp_size": 1, "attention_dp_size": 1, "moe_tp_size": 1,
                "moe_ep_size": 1, "silicon_ttft_ms": 40.0, "silicon_tpot_ms": 5.0}
    base.update(kw)
    return base


def write(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, HEADER)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in HEADER})
    return path


def cli(*args):
    return subprocess.run([sys.executable, "-m", "llmroofline", *args], capture_output=True,
                          text=True, timeout=300, check=False)


def test_schema_detection(tmp_path):
    assert is_concurrency_csv(write(tmp_path / "c.csv", [run_row(1)]))
    (tmp_path / "m.csv").write_text("id,hardware,tp\n1,h100-sxm,1\n")
    assert not is_concurrency_csv(tmp_path / "m.csv")
    assert not is_concurrency_csv(tmp_path / "missing.csv")


def test_validate_concurrency_errors_by_hand(tmp_path):
    """Two agg rows and a disaggregated one: the disaggregated row is set aside with its
    reason; each agg row is simulate_run's prediction; the throughput error is computed here
    from c x OSL / (TTFT + TPOT x (OSL - 1)) of the predicted and the measured means, and
    the MAPE is the mean of the |errors|."""
    rows = [run_row(1), run_row(2, batch_size=4, silicon_ttft_ms=60.0, silicon_tpot_ms=6.0,
                                backend_version="0.15.1"),
            run_row(3, mode="disagg", batch_size="")]
    p = write(tmp_path / "c.csv", rows)
    data = validate_concurrency(p)
    assert [s["id"] for s in data["skipped"]] == ["r3"]
    assert data["skipped"][0]["reason"].startswith("disaggregated")
    runs, _ = measured.read_concurrency_csv(p)
    errs = []
    for run, (c, ttft_m, tpot_m) in zip(runs, ((2, 40.0, 5.0), (4, 60.0, 6.0))):
        s = measured.simulate_run(run)
        pred = c * 32 / ((s["ttft_ms"] + s["tpot_ms"] * 31) / 1e3)
        meas = c * 32 / ((ttft_m + tpot_m * 31) / 1e3)
        errs.append(abs(pred / meas - 1))
        got = next(r for r in data["rows"] if r["id"] == run.id)
        assert got["tok_s"] == pytest.approx(pred, rel=1e-9)
        assert got["measured_tok_s"] == pytest.approx(meas, rel=1e-12)
    overall = data["summary"]["overall"]
    assert overall["n"] == 2 and overall["tok_s"] == pytest.approx(sum(errs) / 2, rel=1e-9)
    assert set(data["summary"]["by_release"]) == {"vllm 0.16.0", "vllm 0.15.1"}
    assert set(data["summary"]["by_concurrency"]) == {"c 1-8"}
    assert set(data["summary"]["by_layout"]) == {"tp1"}

    out = cli("validate", "--serving-csv", str(p), "--json")
    assert out.returncode == 0, out.stderr
    j = json.loads(out.stdout)
    assert j["summary"]["overall"]["tok_s"] == pytest.approx(overall["tok_s"], rel=1e-9)
    auto = cli("validate", str(p))                        # detected from the header
    assert auto.returncode == 0 and "Closed-loop error" in auto.stdout
    assert "skipped 1 row(s): disaggregated" in auto.stdout


def test_calibrate_recovers_a_known_request_overhead_and_writes_a_loadable_engine(tmp_path):
    """Rows whose measured TTFT is the zero-cost simulation + 100 ms and whose TPOT is the
    zero-cost one: engine_fit.fit must find request_overhead 0.1 s and no iteration cost;
    `calibrate` writes the vllm-v1 engine file with those costs, loadable by --engine."""
    seed = [run_row(i, batch_size=c, isl=isl) for i, (c, isl) in
            enumerate(((1, 256), (2, 512), (4, 256)), start=1)]
    p0 = write(tmp_path / "seed.csv", seed)
    runs, _ = measured.read_concurrency_csv(p0)
    bs = engine_fit.baselines(runs)
    for r, b in zip(seed, bs):
        r["silicon_ttft_ms"] = b.ttft0_ms + 100.0
        r["silicon_tpot_ms"] = b.tpot0_ms
    p = write(tmp_path / "c.csv", seed)
    backend, params, n, skipped = fit_engine(p)
    assert (backend, n, skipped) == ("vllm", 3, [])
    assert params["request_overhead_s"] == pytest.approx(0.1, abs=2e-3)
    assert params["iteration_overhead_s"] == pytest.approx(0.0, abs=2e-5)
    out_file = tmp_path / "my-vllm.toml"
    r = cli("calibrate", str(p), "--out", str(out_file))
    assert r.returncode == 0, r.stderr
    e = load_engine(str(out_file))
    v = load_engine("vllm-v1")
    assert e.name == "my-vllm"
    assert e.request_overhead_s == pytest.approx(0.1, abs=2e-3)
    assert (e.batching, e.kv_memory, e.runtime_gb) == (v.batching, v.kv_memory, v.runtime_gb)
    # the file drives the simulation: one row, costs as fitted
    s = measured.simulate_run(runs[0], str(out_file))
    assert s["ttft_ms"] == pytest.approx(bs[0].ttft0_ms + 1e3 * e.request_overhead_s
                                         + bs[0].k * 1e3 * e.iteration_overhead_s, rel=0.02)


def test_engine_text_adds_missing_cost_lines():
    text = engine_text("trtllm-0.8", "x", {"request_overhead_s": 0.02,
                                           "iteration_overhead_s": 1e-3}, "a.csv", 5)
    assert "request_overhead_us = 20000.0" in text and "iteration_overhead_us = 1000.0" in text
    assert 'name = "x"' in text


def test_bad_input_is_one_line(tmp_path):
    p = write(tmp_path / "c.csv", [run_row(1), run_row(2, backend="sglang", backend_version="0.5.9")])
    r = cli("calibrate", str(p), "--out", str(tmp_path / "o.toml"))
    assert r.returncode == 2 and "choose one with --backend" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = cli("calibrate", str(p), "--out", str(tmp_path / "o.toml"), "--backend", "vlm")
    assert r.returncode == 2 and "backend: must be one of" in r.stderr and "vllm" in r.stderr
    r = cli("validate", "--serving-csv", str(p), "--cv", "model")
    assert r.returncode == 2 and "--cv" in r.stderr
    bad = write(tmp_path / "bad.csv", [run_row(1, isl="abc")])
    r = cli("validate", "--serving-csv", str(bad))
    assert r.returncode == 2 and "bad.csv:2: isl must be a number" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
