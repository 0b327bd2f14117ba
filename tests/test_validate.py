"""validate / calibrate: parameter recovery, reporting, profile files, bad CSVs."""

from __future__ import annotations

import csv
from dataclasses import replace
from importlib.resources import files
import json
import subprocess
import sys

import pytest
import numpy as np

from llmroofline.errors import InputError
from llmroofline.fit import calibrate
from llmroofline.specs.profile import Efficiency, Profile, load_profile, profile_to_toml
from llmroofline.validate import (Row, cross_validate, predict_rows, read_measurements,
                                  summarize, validate)

SHIPPED = files("llmroofline") / "data" / "measured" / "calibration.csv"

COLUMNS = ["id", "source_id", "engine", "hardware", "tp", "pp", "model", "weight_dtype",
           "act_dtype", "kv_dtype", "mode", "batch", "input_len", "output_len",
           "throughput_tok_s", "ttft_ms", "tpot_ms", "e2e_ms"]


def write_csv(path, rows, extra=()):
    cols = COLUMNS + list(extra)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in cols})
    return path


def write_text(path, text):
    path.write_text(text)
    return path


def row(i, **kw):
    base = dict(id=str(i), source_id="synthetic", engine="x", hardware="a100-sxm-80gb", tp=1,
                pp=1, model="meta-llama/Llama-2-7b-hf", weight_dtype="fp16", act_dtype="fp16",
                kv_dtype="fp16", mode="static", batch=1, input_len=128, output_len=128)
    base.update(kw)
    return base


TRUE = Efficiency(bandwidth=0.82, attention_bandwidth=0.6, compute=0.7, gemm_half_rows=96.0,
                  launch_overhead_s=4e-6, step_overhead_s=300e-6, prefill_overhead_s=2e-3,
                  gemm_tile_rows=16.0)   # the tile calibrate keeps fixed
FITTED = ("bandwidth", "attention_bandwidth", "compute", "gemm_half_rows",
          "launch_overhead_s", "step_overhead_s", "prefill_overhead_s")


def test_calibrate_recovers_known_parameters(tmp_path):
    # "Measurements" generated from known parameters over a design that exercises every
    # regime: small/large batch (bandwidth vs GEMM efficiency), short/long prompts
    # (prefill compute, attention), two depths (launch vs step overhead).
    design = []
    i = 0
    # GPT-2 (12 small layers) is overhead-dominated: it separates launch from step overhead.
    for model, inputs in (("meta-llama/Llama-2-7b-hf", (128, 2048)),
                          ("meta-llama/Llama-2-13b-hf", (128, 2048)),
                          ("openai-community/gpt2", (128, 512))):
        for b in (1, 8, 64, 256):
            for n in inputs:
                for o in (16, 256):
                    i += 1
                    design.append(Row(str(i), "a100-sxm-80gb", model, 1, 1, "fp16", "fp16",
                                      "fp16", "static", b, n, o, {"throughput_tok_s": 1.0,
                                                                  "ttft_ms": 1.0, "tpot_ms": 1.0}))
    truth = predict_rows(design, Profile("truth", fallback=TRUE))
    rows = []
    for r in design:
        got = {p.metric: p.predicted for p in truth.predictions if p.row.id == r.id}
        if not got:       # does not fit in 80 GB
            continue
        rows.append(row(r.id, model=r.model, batch=r.batch, input_len=r.input_len,
                        output_len=r.output_len, throughput_tok_s=repr(got["throughput_tok_s"]),
                        ttft_ms=repr(got["ttft_ms"]), tpot_ms=repr(got["tpot_ms"])))
    path = write_csv(tmp_path / "synthetic.csv", rows)
    prof, _ = calibrate(read_measurements(path), FITTED, per_family=False, prior_weight=0.0)
    for name in FITTED:
        assert getattr(prof.fallback, name) == pytest.approx(getattr(TRUE, name), rel=0.02), name


def test_calibrate_recovers_gemm_overlap_and_gqa_reuse(tmp_path):
    # The two shape terms are identifiable: mid-size GEMMs (prefills of 128-512 tokens,
    # decode batches near the A100 ridge) pin gemm_overlap; the same decode workloads on an
    # MHA and a GQA model (group 4) separate gqa_kv_reuse from attention_bandwidth.
    true = Efficiency(bandwidth=0.85, attention_bandwidth=0.75, compute=0.8, gemm_overlap=0.4,
                      gqa_kv_reuse=0.5, gemm_tile_rows=16.0)
    fitted = ("bandwidth", "attention_bandwidth", "compute", "gemm_overlap", "gqa_kv_reuse")
    design, i = [], 0
    for model in ("meta-llama/Llama-2-7b-hf", "meta-llama/Meta-Llama-3-8B"):
        for b in (1, 16, 128, 256):
            for n in (128, 512, 2048):
                i += 1
                design.append(Row(str(i), "a100-sxm-80gb", model, 1, 1, "fp16", "fp16", "fp16",
                                  "static", b, n, 256, {"throughput_tok_s": 1.0, "ttft_ms": 1.0,
                                                        "tpot_ms": 1.0}))
    truth = predict_rows(design, Profile("truth", fallback=true))
    rows = []
    for r in design:
        got = {p.metric: p.predicted for p in truth.predictions if p.row.id == r.id}
        if got:
            rows.append(row(r.id, model=r.model, batch=r.batch, input_len=r.input_len,
                            output_len=r.output_len, throughput_tok_s=repr(got["throughput_tok_s"]),
                            ttft_ms=repr(got["ttft_ms"]), tpot_ms=repr(got["tpot_ms"])))
    prof, _ = calibrate(read_measurements(write_csv(tmp_path / "s.csv", rows)), fitted,
                        per_family=False, prior_weight=0.0)
    for name in fitted:
        assert getattr(prof.fallback, name) == pytest.approx(getattr(true, name), rel=0.02), name


def test_calibrate_holds_the_gqa_group_limit_fixed(tmp_path):
    # Rows made by an engine that shares KV reads for groups up to 16 only: Llama-3-8B
    # (group 4) shows the reuse, Falcon-180B at TP 8 (group 29) re-reads per query head.
    # Fitting with the same limit recovers the reuse; fitting without one cannot follow
    # both models with one share.
    true = Efficiency(bandwidth=0.85, attention_bandwidth=0.8, compute=0.8, gqa_kv_reuse=0.9,
                      gqa_max_group=16, gemm_tile_rows=16.0)
    fitted = ("bandwidth", "attention_bandwidth", "compute", "gqa_kv_reuse")
    design, i = [], 0
    for model, tp in (("meta-llama/Meta-Llama-3-8B", 1), ("tiiuae/falcon-180B", 8)):
        for b in (8, 64):
            for n in (512, 2048):
                i += 1
                design.append(Row(str(i), "h100-sxm", model, tp, 1, "fp8", "fp8", "fp8",
                                  "static", b, n, 512, {"throughput_tok_s": 1.0, "tpot_ms": 1.0}))
    truth = predict_rows(design, Profile("truth", fallback=true))
    rows = []
    for r in design:
        got = {p.metric: p.predicted for p in truth.predictions if p.row.id == r.id}
        rows.append(row(r.id, model=r.model, tp=r.tp, hardware=r.hardware, weight_dtype="fp8",
                        act_dtype="fp8", kv_dtype="fp8", batch=r.batch, input_len=r.input_len,
                        output_len=r.output_len, throughput_tok_s=repr(got["throughput_tok_s"]),
                        tpot_ms=repr(got["tpot_ms"])))
    measured = read_measurements(write_csv(tmp_path / "g.csv", rows))
    prof, _ = calibrate(measured, fitted, per_family=False, prior_weight=0.0, gqa_max_group=16)
    assert prof.fallback.gqa_max_group == 16
    for name in fitted:
        assert getattr(prof.fallback, name) == pytest.approx(getattr(true, name), rel=0.02), name
    back = load_profile(write_text(tmp_path / "g.toml", profile_to_toml(prof)))
    assert back.fallback.gqa_max_group == 16
    unlimited, _ = calibrate(measured, fitted, per_family=False, prior_weight=0.0)
    err = lambda p: max(abs(x.error) for x in predict_rows(measured, p).predictions)
    assert err(prof) < 0.01 < err(unlimited)


def test_calibrate_holds_kernel_coverage_per_family(tmp_path):
    # H100 rows made by an engine whose KV-sharing kernel skips sliding-window layers
    # (Mistral-7B re-reads per query head, Llama-3-8B shares); A100 rows by one that covers
    # both. Coverage given for the Hopper family only recovers both entries' reuse shares.
    hopper = Efficiency(bandwidth=0.85, attention_bandwidth=0.8, compute=0.8, gqa_kv_reuse=0.9,
                        gqa_covers_sliding_window=False, gemm_tile_rows=16.0)
    ampere = replace(hopper, gqa_kv_reuse=0.6, gqa_covers_sliding_window=True)
    fitted = ("bandwidth", "attention_bandwidth", "compute", "gqa_kv_reuse")
    truth_prof = Profile("truth", {"hopper": hopper, "ampere": ampere}, fallback=ampere)
    design, i = [], 0
    for hw in ("h100-sxm", "a100-sxm-80gb"):
        for model in ("meta-llama/Meta-Llama-3-8B", "mistralai/Mistral-7B-v0.1"):
            for b in (8, 64):
                for n in (512, 2048):
                    i += 1
                    design.append(Row(str(i), hw, model, 1, 1, "fp16", "fp16", "fp16",
                                      "static", b, n, 512,
                                      {"throughput_tok_s": 1.0, "tpot_ms": 1.0}))
    truth = predict_rows(design, truth_prof)
    rows = []
    for r in design:
        got = {p.metric: p.predicted for p in truth.predictions if p.row.id == r.id}
        rows.append(row(r.id, model=r.model, hardware=r.hardware, batch=r.batch,
                        input_len=r.input_len, output_len=r.output_len,
                        throughput_tok_s=repr(got["throughput_tok_s"]),
                        tpot_ms=repr(got["tpot_ms"])))
    measured = read_measurements(write_csv(tmp_path / "c.csv", rows))
    cov = {"hopper": {"gqa_covers_sliding_window": False}}
    prof, _ = calibrate(measured, fitted, prior_weight=0.0, coverage=cov)
    h, a = prof.for_family("hopper", 16), prof.for_family("ampere", 16)
    assert not h.gqa_covers_sliding_window and a.gqa_covers_sliding_window
    assert h.gqa_kv_reuse == pytest.approx(0.9, rel=0.02)
    assert a.gqa_kv_reuse == pytest.approx(0.6, rel=0.02)
    back = load_profile(write_text(tmp_path / "c.toml", profile_to_toml(prof)))
    assert not back.for_family("hopper", 16).gqa_covers_sliding_window
    with pytest.raises(InputError, match="coverage of 'hopper'.*bandwidth"):
        calibrate(measured, fitted, coverage={"hopper": {"bandwidth": 0.5}})


def test_calibrate_recovers_wave_quantization(tmp_path):
    # Prefills of 64-2048 tokens put the GEMMs at 1-5 waves of tiles on the A100's 108
    # SMs, so the idle share of the last wave varies row to row and pins the term.
    true = Efficiency(bandwidth=0.85, compute=0.8, wave_quantization=0.6, gemm_tile_rows=16.0)
    fitted = ("bandwidth", "compute", "wave_quantization")
    design, i = [], 0
    for model in ("meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-13b-hf"):
        for b in (1, 4):
            for n in (64, 128, 384, 1024, 2048):
                i += 1
                design.append(Row(str(i), "a100-sxm-80gb", model, 1, 1, "fp16", "fp16", "fp16",
                                  "static", b, n, 64, {"throughput_tok_s": 1.0, "ttft_ms": 1.0}))
    truth = predict_rows(design, Profile("truth", fallback=true))
    rows = []
    for r in design:
        got = {p.metric: p.predicted for p in truth.predictions if p.row.id == r.id}
        rows.append(row(r.id, model=r.model, batch=r.batch, input_len=r.input_len,
                        output_len=r.output_len, throughput_tok_s=repr(got["throughput_tok_s"]),
                        ttft_ms=repr(got["ttft_ms"])))
    prof, _ = calibrate(read_measurements(write_csv(tmp_path / "w.csv", rows)), fitted,
                        per_family=False, prior_weight=0.0)
    for name in fitted:
        assert getattr(prof.fallback, name) == pytest.approx(getattr(true, name), rel=0.02), name


def test_validate_reports_every_metric_and_lists_skipped_rows(tmp_path):
    rows = [
        row(1, throughput_tok_s="150", ttft_ms="8", tpot_ms="7", e2e_ms="900"),
        row(2, model="no-such/model-x", throughput_tok_s="100"),
        row(3, hardware="no-such-gpu", throughput_tok_s="100"),
        row(4, model="meta-llama/Llama-2-70b-hf", batch=64, input_len=2048, output_len=2048,
            throughput_tok_s="100"),                                     # 140 GB of weights
        row(5, batch=1, output_len=1, ttft_ms="10", tpot_ms="5"),        # no decode step
        row(6, mode="concurrent", batch=16, ttft_ms="20", tpot_ms="12", throughput_tok_s="1300"),
    ]
    v = validate(write_csv(tmp_path / "m.csv", rows), profile="ideal")
    got = {(p.row.id, p.metric) for p in v.predictions}
    assert got == {("1", "throughput_tok_s"), ("1", "ttft_ms"), ("1", "tpot_ms"), ("1", "e2e_ms"),
                   ("5", "ttft_ms"), ("6", "throughput_tok_s"), ("6", "ttft_ms"), ("6", "tpot_ms")}
    reasons = dict(v.skipped)
    assert "unknown model" in reasons["2"] or "could not be fetched" in reasons["2"]
    assert "unknown device" in reasons["3"]
    assert "does not fit" in reasons["4"]
    assert "tpot_ms undefined" in reasons["5"]
    d = v.to_dict()
    assert set(d) >= {"rows", "skipped", "summary"}
    assert set(d["summary"]["overall"]) == {"throughput_tok_s", "ttft_ms", "tpot_ms", "e2e_ms"}
    assert {"n", "median_ape", "p90_ape", "bias"} <= set(d["summary"]["overall"]["ttft_ms"])


def test_concurrent_mode_uses_min_ttft_and_waves(tmp_path):
    # concurrent: TTFT is an uncontended single-sequence prefill, whatever the batch
    v = validate(write_csv(tmp_path / "c.csv", [
        row(1, mode="concurrent", batch=1, ttft_ms="1"),
        row(2, mode="concurrent", batch=32, ttft_ms="1")]), profile="ideal")
    t = {p.row.id: p.predicted for p in v.predictions}
    assert t["1"] == t["2"]


def test_profile_round_trip(tmp_path):
    prof = Profile("mine", {"hopper-a8": TRUE, "a16": Efficiency(bandwidth=0.9)},
                   Efficiency(compute=0.5), provenance={"data": "x", "rows": 3})
    p = tmp_path / "mine.toml"
    p.write_text(profile_to_toml(prof))
    back = load_profile(str(p))
    assert back.families == prof.families and back.fallback == prof.fallback
    assert back.for_family("hopper", 8) == TRUE
    assert back.for_family("ampere", 16) == Efficiency(bandwidth=0.9)
    assert back.for_family("ada", 4) == Efficiency(compute=0.5)


@pytest.mark.parametrize("mutate,msg", [
    (lambda r: r.pop("mode"), "missing column"),
    (lambda r: r.update(mode="streaming"), "column 'mode' must be one of"),
    (lambda r: r.update(throughput_tok_s="-5"), "column 'throughput_tok_s' must be a positive"),
    (lambda r: r.update(batch="0"), "column 'batch' must be an integer >= 1"),
    (lambda r: r.update(weight_dtype="fp7"), "column 'weight_dtype' must be one of"),
])
def test_bad_csv_names_row_and_column(tmp_path, mutate, msg):
    r = row(7, throughput_tok_s="100")
    mutate(r)
    cols = [c for c in COLUMNS if c in r]
    p = tmp_path / "bad.csv"
    with open(p, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerow(r)
    with pytest.raises(InputError, match=msg) as e:
        read_measurements(p)
    if "missing" not in msg:
        assert "row 2 (id 7)" in str(e.value)


def test_dtype_spellings_read_as_the_same_format(tmp_path):
    rows = [row(1, weight_dtype="FP8", act_dtype="e4m3", kv_dtype="float8", throughput_tok_s="9"),
            row(2, weight_dtype="BF16", act_dtype="bfloat16", kv_dtype="Float16", throughput_tok_s="9")]
    got = read_measurements(write_csv(tmp_path / "d.csv", rows))
    assert [r.precision for r in got] == ["fp8/fp8/fp8", "bf16/bf16/fp16"]


def test_validate_cli_json_on_shipped_data():
    out = subprocess.run([sys.executable, "-m", "llmroofline", "validate", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert len(d["rows"]) >= 300 and d["profile"] == "default"
    overall = d["summary"]["overall"]
    # the calibrated default profile is what the README's accuracy table reports
    # issue targets: median <= 10 % and p90 <= 25 % on throughput and TTFT
    # (README, "How accurate is it?": 3.3 % / 15.3 % and 5.3 % / 24.2 %)
    for metric in ("throughput_tok_s", "ttft_ms"):
        assert overall[metric]["median_ape"] <= 0.10, metric
        assert overall[metric]["p90_ape"] <= 0.25, metric
    ideal = subprocess.run([sys.executable, "-m", "llmroofline", "validate", "--json",
                            "--profile", "ideal"], capture_output=True, text=True, timeout=120)
    assert json.loads(ideal.stdout)["summary"]["overall"]["throughput_tok_s"]["median_ape"] > 0.3


def test_calibrate_cli_writes_a_usable_profile(tmp_path):
    # One parameter, two rows: measured throughput is 80 % of the ideal prediction, so the
    # fitted bandwidth of a memory-bound batch-1 decode must come out near 0.8.
    ideal = predict_rows([Row("1", "a100-sxm-80gb", "meta-llama/Llama-2-7b-hf", 1, 1, "fp16",
                              "fp16", "fp16", "static", 1, 16, 512, {"tpot_ms": 1.0})],
                         "ideal").predictions[0].predicted
    path = write_csv(tmp_path / "m.csv", [row(1, input_len=16, output_len=512,
                                              tpot_ms=repr(ideal / 0.8))])
    out = tmp_path / "mine.toml"
    r = subprocess.run([sys.executable, "-m", "llmroofline", "calibrate", str(path), "--out",
                        str(out), "--params", "bandwidth"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    prof = load_profile(str(out))
    assert prof.for_family("ampere", 16).bandwidth == pytest.approx(0.8, rel=0.02)
    a = subprocess.run([sys.executable, "-m", "llmroofline", "analyze", "--json", "-p", str(out)],
                       capture_output=True, text=True, timeout=60)
    assert a.returncode == 0 and json.loads(a.stdout)["profile"] == "mine"


def test_hopper_gqa_rows_follow_the_kernel_coverage():
    # TensorRT-LLM v0.8 FP8 on H100/H200 read a shared KV head once for Llama-2-70B (group
    # 8, full attention) and once per query head for Mistral-7B (sliding window) and
    # Falcon-180B (group 29 per rank). With that coverage in the Hopper entries the default
    # profile follows the two whose decode the share decided; with one reuse share for all
    # it had to split them (Llama-2-70B -24 % median, down to -36 %; Falcon-180B up to
    # +52 %). (Mistral-7B's rows scatter either way: median |error| 12 % before, 10 % now.)
    from llmroofline.validate import shipped_measurements
    rows = [r for r in read_measurements(shipped_measurements())
            if r.hardware in ("h100-sxm", "h200")]
    for model in ("meta-llama/Llama-2-70b-hf", "tiiuae/falcon-180B"):
        errs = [abs(p.error) for p in predict_rows([r for r in rows if r.model == model],
                                                   "default").predictions
                if p.metric == "throughput_tok_s"]
        assert len(errs) == 8
        assert np.median(errs) <= 0.10, (model, errs)
    llama = [p.error for p in predict_rows([r for r in rows if r.model == "meta-llama/Llama-2-70b-hf"],
                                           "default").predictions]
    assert max(abs(e) for e in llama) <= 0.15, llama


@pytest.mark.parametrize("name,source", [("trtllm-0.8", "trtllm_v0.8.0"),
                                         ("lmdeploy-0.1", "lmdeploy_v0.1.0a1_a100")])
def test_engine_profiles_fit_their_engine_at_least_as_well_as_default(name, source):
    from llmroofline.validate import shipped_measurements, summarize
    rows = [r for r in read_measurements(shipped_measurements()) if r.source_id == source]
    own = summarize(predict_rows(rows, name).predictions)["overall"]
    default = summarize(predict_rows(rows, "default").predictions)["overall"]
    for metric in own:
        assert own[metric]["median_ape"] <= default[metric]["median_ape"] + 0.01, metric


def test_max_throughput_rows_are_simulated_offline(tmp_path):
    """mode max_throughput: `batch` requests queued at once, predicted by the serving
    simulator's offline mode; only throughput is predicted, and calibrate leaves them out."""
    from llmroofline.fit import calibrate
    from llmroofline.serving.offline import offline_throughput
    rows = [row(1, mode="max_throughput", batch=150, input_len=512, output_len=64,
                throughput_tok_s="3000", ttft_ms="100"),
            row(2, mode="max_throughput", batch="", model="meta-llama/Llama-2-70b-hf", tp=4,
                input_len=128, output_len=128, throughput_tok_s="2400")]
    v = validate(write_csv(tmp_path / "s.csv", rows))
    got = {(p.row.id, p.metric): p.predicted for p in v.predictions}
    assert set(got) == {("1", "throughput_tok_s"), ("2", "throughput_tok_s")}
    assert "only throughput_tok_s" in dict(v.skipped)["1"]
    expected, _ = offline_throughput("meta-llama/Llama-2-7b-hf", "a100-sxm-80gb", 512, 64,
                                     requests=150, quant="fp16")
    assert got[("1", "throughput_tok_s")] == pytest.approx(expected, rel=1e-12)
    assert [r.batch for r in read_measurements(tmp_path / "s.csv")] == [150, 2000]
    with pytest.raises(InputError, match="validated, not fitted"):
        calibrate(read_measurements(tmp_path / "s.csv"))


def test_max_throughput_rows_take_their_engine_setup(tmp_path):
    """max_batch = 1 serves the queued requests one after the other, each uncontended, so
    throughput = output tokens / (requests x one request's latency from analyze); a smaller
    kv_fraction can only preempt more and lower a long-output row's throughput."""
    import llmroofline as lr
    n, I, O = 3, 128, 16
    rows = [row(1, mode="max_throughput", batch=n, input_len=I, output_len=O,
                throughput_tok_s="100", max_batch=1, max_tokens=2048),
            row(2, mode="max_throughput", batch=400, input_len=128, output_len=1024,
                throughput_tok_s="100"),
            row(3, mode="max_throughput", batch=400, input_len=128, output_len=1024,
                throughput_tok_s="100", kv_fraction=0.3)]
    extra = ("max_batch", "max_tokens", "kv_fraction")
    got = {p.row.id: p.predicted for p in validate(write_csv(tmp_path / "s.csv", rows, extra)).predictions}
    one = lr.analyze("meta-llama/Llama-2-7b-hf", "a100-sxm-80gb", batch=1, input_len=I, output_len=O)
    assert got["1"] == pytest.approx(O / float(one.e2e_s), rel=1e-9)
    assert got["3"] < got["2"]
    bad = [row(4, throughput_tok_s="100", kv_fraction=0.5)]          # a static row
    with pytest.raises(InputError, match="'kv_fraction' applies to max_throughput rows only"):
        read_measurements(write_csv(tmp_path / "b.csv", bad, extra))
    bad = [row(5, mode="max_throughput", throughput_tok_s="100", kv_fraction=1.5)]
    with pytest.raises(InputError, match=r"'kv_fraction' must be in \(0, 1\]"):
        read_measurements(write_csv(tmp_path / "b.csv", bad, extra))


def test_max_throughput_rows_take_their_runtime_memory(tmp_path):
    # A row's runtime_gb replaces the setup's 3 GB: 20 GB of an 80 GB A100 held by the
    # engine shrinks the KV pool, so a long-output row preempts more and runs slower.
    from dataclasses import replace
    from llmroofline.serving.offline import TRTLLM_CONFIG, offline_throughput
    rows = [row(1, mode="max_throughput", batch=400, input_len=128, output_len=1024,
                throughput_tok_s="100"),
            row(2, mode="max_throughput", batch=400, input_len=128, output_len=1024,
                throughput_tok_s="100", runtime_gb=20)]
    extra = ("runtime_gb",)
    got = {p.row.id: p.predicted for p in validate(write_csv(tmp_path / "r.csv", rows, extra)).predictions}
    direct, _ = offline_throughput("meta-llama/Llama-2-7b-hf", "a100-sxm-80gb", 128, 1024,
                                   requests=400, config=replace(TRTLLM_CONFIG, runtime_gb=20.0))
    assert TRTLLM_CONFIG.runtime_gb == 3.0
    assert got["2"] == pytest.approx(direct, rel=1e-12)
    assert got["2"] < got["1"]
    bad = [row(3, mode="max_throughput", throughput_tok_s="100", runtime_gb=-2)]
    with pytest.raises(InputError, match=r"'runtime_gb' must be a number of GB"):
        read_measurements(write_csv(tmp_path / "b.csv", bad, extra))


def test_validate_serving_rows_cli():
    """The shipped TensorRT-LLM v0.10 in-flight-batching rows (docs/serving.md): the
    calibrated profile, never fitted to them, stays within the documented accuracy."""
    out = subprocess.run([sys.executable, "-m", "llmroofline", "validate", "--serving", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)["summary"]["overall"]["throughput_tok_s"]
    assert s["n"] == 36
    # fitted in the A100 entries of the default profile (calibrate --fit-serving): 5.2 % / 15.0 %
    # today; 9.5 % / 23.5 % when the profile saw only static rows (docs/serving.md)
    assert s["median_ape"] < 0.07 and s["p90_ape"] < 0.20


def test_cross_validate_never_scores_a_group_with_a_fit_that_saw_it():
    rows = read_measurements(str(SHIPPED))
    seen = []

    def fit_fn(train):
        seen.append({r.hardware for r in train})
        return Profile("t", fallback=Efficiency())

    preds = cross_validate(rows, "device", fit_fn)
    devices = sorted({r.hardware for r in rows})
    assert len(seen) == len(devices)
    assert all(d not in s and len(s) == len(devices) - 1 for d, s in zip(devices, seen))
    # every predictable metric of every row is scored exactly once
    full = predict_rows(rows, Profile("t", fallback=Efficiency())).predictions
    assert sorted((p.row.id, p.metric) for p in preds) == sorted((p.row.id, p.metric) for p in full)


def test_leave_one_device_out_meets_the_issue_target():
    # Issue target: leave-one-device-out median <= 15 % (throughput and TTFT); each device
    # is predicted by a profile refitted without it, as the shipped profile is fitted
    # (same parameters and coverage). Cheaper than the full refit in two ways: only the
    # entries the held-out device is looked up in are fitted (its family and activation
    # width, and the fallback: exactly the held-out predictions of the full profile,
    # test_held_out_entries_give_the_full_profiles_predictions), and each fit stops when an
    # iteration improves the loss by less than 0.1 % (tol 1e-3; the shipped fit uses
    # 1e-10; the medians move by under 0.5 points: README 7.5 % / 14.1 % fully fitted).
    from llmroofline.fit import calibrate_fn, shipped_coverage
    s = summarize(cross_validate(read_measurements(str(SHIPPED)), "device",
                                 calibrate_fn(coverage=shipped_coverage(), tol=1e-3,
                                              held_out_entries_only=True)))
    for metric in ("throughput_tok_s", "ttft_ms"):
        assert s["overall"][metric]["median_ape"] <= 0.15, (metric, s["overall"][metric])


def test_held_out_entries_give_the_full_profiles_predictions(monkeypatch):
    # the restriction the leave-one-device-out test uses is exact: with and without it every
    # held-out row is predicted identically (the other entries price other devices only).
    # A stand-in fit (a distinct efficiency per set of rows) keeps this instant.
    from llmroofline import fit
    from llmroofline.fit import calibrate_fn, shipped_coverage

    def fake_fit(rows, params=(), start=None, **kw):
        h = sum(int(r.id) for r in rows) % 97
        return replace(start or Efficiency(), bandwidth=0.5 + h / 200, compute=0.4 + len(rows) / 400), {}
    monkeypatch.setattr(fit, "fit_efficiency", fake_fit)
    rows = [r for r in read_measurements(str(SHIPPED)) if r.mode != "max_throughput"]
    full = cross_validate(rows, "device", calibrate_fn(coverage=shipped_coverage()))
    some = cross_validate(rows, "device", calibrate_fn(coverage=shipped_coverage(),
                                                       held_out_entries_only=True))
    assert len(full) > 100
    assert [(p.row.id, p.metric, p.predicted) for p in full] == \
        [(p.row.id, p.metric, p.predicted) for p in some]


def test_calibrate_fits_serving_rows_into_their_devices_entries(tmp_path):
    # max_throughput rows on an A100 (the only rows there) measured with known efficiencies;
    # static rows on an H100 only. With fit_serving the A100 entries are fitted from the
    # serving simulations alone and recover the truth; the fallback stays the static fit.
    true = Efficiency(bandwidth=0.7, compute=0.5, gemm_tile_rows=16.0)
    model = "openai-community/gpt2"
    serving = [Row(f"s{i}", "a100-sxm-80gb", model, 1, 1, "fp16", "fp16", "fp16",
                   "max_throughput", 300, n, o, {"throughput_tok_s": 1.0})
               for i, (n, o) in enumerate(((64, 256), (512, 64), (768, 16), (128, 128)))]
    truth = {p.row.id: p.predicted
             for p in predict_rows(serving, Profile("t", fallback=true)).predictions}
    static = [Row(f"h{i}", "h100-sxm", model, 1, 1, "fp16", "fp16", "fp16", "static", b, 128,
                  64, {"throughput_tok_s": 1000.0 * b}) for i, b in enumerate((1, 8, 64))]
    rows = static + [replace(r, measured={"throughput_tok_s": truth[r.id]}) for r in serving]
    params = ("bandwidth", "compute")
    prof, _ = calibrate(rows, params, prior_weight=0.0, fit_serving=True)
    for name in params:
        assert getattr(prof.families["ampere-a16"], name) == pytest.approx(getattr(true, name),
                                                                           rel=0.02), name
    static_only, _ = calibrate(static, params, prior_weight=0.0)
    assert prof.fallback == static_only.fallback
    plain, _ = calibrate(rows, params, prior_weight=0.0)       # validated, not fitted
    assert "ampere-a16" not in plain.families
