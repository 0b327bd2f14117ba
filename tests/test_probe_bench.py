"""``probe`` and ``bench``: measured ground truth on this machine beside the engine.

Pure parts (no torch): the efficiency fits recover known parameters from curves generated
by the engine's own cost formula (checked against ``cost.Roofline`` on a real ``Op``, so
the fit and the engine cannot drift apart), the overhead fit, config shrinking, CLI input
errors and the one-line error when torch is missing.

Real runs (skipped, with the reason printed, only when torch/transformers are missing).
Everything runs on 1 thread (steadier on a shared 2-core VM), bf16, static KV cache:

- a quick probe writes a device file that ``load_hardware`` accepts;
- a Llama-3.2-1B shrunk to 4 layers at half width (0.19 B params, 0.38 GB of bf16
  weights: more than the caches) is benchmarked with that file; predicted / measured for
  TTFT and the decode step must lie in ``RATIO_BAND``. The band is wide on purpose: the
  machine is shared, the probe is CI-sized, and the engine misses real effects that
  docs/bench.md lists (shape-dependent GEMV bandwidth, the static cache's attention over
  all slots). One retry (re-probe and re-bench) before failing;
- the overhead test: a hidden-64 model with 8 heads is overhead-bound (a quarter of the
  width, R_w > 6, does not change its time), a hidden-2048 prefill of 256 tokens is
  compute-bound (halving the width cuts the time ~4x, doubling the batch doubles it). Both
  verdicts are checked for the engine with the probed file too.
- on a CPU whose bf16 matmuls run below 5 % of fp32 (no 16-bit matrix units) the bench
  tests run in fp32 with an fp32 probe (``probed_native``).

Speed claims are not tested here; docs/bench.md records real runs.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import sys
from importlib import resources

import numpy as np
import pytest

from llmroofline.bench.model import shrink_config
from llmroofline.errors import InputError
from llmroofline.probe.fit import fit_gemm, fit_overhead, gemm_model_s

HAVE_TORCH = importlib.util.find_spec("torch") is not None and \
    importlib.util.find_spec("transformers") is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch/transformers not installed: "
                                 "probe/bench real runs skipped (pip install \".[bench]\")")
if not HAVE_TORCH:  # pragma: no cover - printed so the skip is visible in any CI log
    print("test_probe_bench: torch/transformers missing; real-run tests will be skipped")

RATIO_BAND = (0.6, 1.7)   # predicted / measured, TTFT and decode step (see docstring)
THREADS = 1


def _cfg(name: str) -> dict:
    root = resources.files("llmroofline") / "data" / "models"
    return json.loads((root / name).read_text())


# -- pure: fits ---------------------------------------------------------------------------
def test_gemm_formula_is_the_engines():
    """The fit's model equals cost.Roofline's time for a matmul row of M token rows."""
    from llmroofline.cost import Roofline
    from llmroofline.graph import Op
    from llmroofline.specs.hardware import from_dict
    from llmroofline.specs.precision import Precision
    hw = from_dict("t", {"name": "t", "memory_gb": 10, "mem_bw_gb_s": 20, "bf16_tflops": 1.0,
                         "efficiency": {"bandwidth": 0.6, "compute": 0.8, "gemm_half_rows": 64}})
    roof = Roofline.of(hw, Precision())
    k = n = 4096
    for m in (1, 8, 64, 512):
        flops, byts = 2.0 * m * k * n, 2.0 * (k * n + m * (k + n))
        op = Op("x", "matmul", "gemm", 1, np.array(flops), np.array(2.0 * k * n),
                np.array(2.0 * m * (k + n)), np.array(0.0), rows=np.array(float(m)))
        c, mem, _, _ = roof.terms(op)
        assert float(np.maximum(c, mem)) == pytest.approx(
            float(gemm_model_s(m, flops, byts, 1e12, 20e9, 0.8, 64, 0.6)), rel=1e-12)


def test_fit_gemm_recovers_known_parameters():
    peak, bw = 1e12, 20e9
    k = n = 4096
    rows = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096], dtype=float)
    flops = 2 * rows * k * n
    byts = 2 * (k * n + rows * (k + n))
    # memory-bound up to M ~ 57 rows (ridge point 50 FLOP/B), then a compute ramp
    t = gemm_model_s(rows, flops, byts, peak, bw, 0.8, 16.0, 0.55)
    f = fit_gemm(rows, flops, byts, t, peak, bw)
    assert f["compute"] == pytest.approx(0.8, rel=0.02)
    assert f["gemm_half_rows"] == pytest.approx(16.0, rel=0.05)
    assert f["bandwidth"] == pytest.approx(0.55, rel=0.02)
    assert f["rms_log_error"] < 1e-3
    # 10 % multiplicative noise: still close, and the error is reported
    noisy = t * np.exp(np.random.default_rng(0).normal(0, 0.1, t.size))
    g = fit_gemm(rows, flops, byts, noisy, peak, bw)
    assert g["bandwidth"] == pytest.approx(0.55, rel=0.15)
    assert 0.03 < g["rms_log_error"] < 0.2
    # a CPU-like curve: flat (memory) up to 16 rows, then a line whose intercept lies above
    # the flat part (weights re-packed per call). A large half-row count would fit it too;
    # the GEMV points must stay memory-bound and give the bandwidth.
    mem = byts / (0.5 * bw)
    flat = np.where(rows <= 16, mem, 1.25 * mem[0] + flops / (0.9 * peak))
    h = fit_gemm(rows, flops, byts, flat, peak, bw)
    small = rows <= 4
    comp = flops * (rows + h["gemm_half_rows"]) / (peak * h["compute"] * rows)
    assert np.all(comp[small] <= byts[small] / (bw * h["bandwidth"]) * (1 + 1e-9))
    assert h["bandwidth"] == pytest.approx(0.5, rel=0.01)


def test_fit_overhead_matches_engine_accounting():
    # engine: step + (fixed + per_layer x n) x launch; prefill adds a constant
    launch, step, pre, per, fixed = 25e-6, 300e-6, 450e-6, 11, 3
    n = np.array([1, 2, 4, 8])
    dec = step + (fixed + per * n) * launch
    f = fit_overhead(n, dec, dec + pre, per, fixed)
    assert f["launch_overhead_s"] == pytest.approx(launch, rel=1e-9)
    assert f["step_overhead_s"] == pytest.approx(step, rel=1e-9)
    assert f["prefill_overhead_s"] == pytest.approx(pre, rel=1e-9)
    assert f["per_layer_s"] == pytest.approx(per * launch, rel=1e-9)
    # a negative intercept (noise) is clipped to 0, never a negative overhead
    g = fit_overhead(n, 1e-3 * n - 1e-4, 1e-3 * n, per, fixed)
    assert g["step_overhead_s"] == 0.0 and g["launch_overhead_s"] > 0


# -- pure: shrinking configs -------------------------------------------------------------------
def test_shrink_keeps_head_dim_and_ratios():
    cfg = _cfg("meta-llama__Llama-3.2-1B.json")   # 2048 hidden, 32/8 heads, head_dim 64, ffn 8192
    s = shrink_config(cfg, layers=4, scale=0.25)
    assert (s["num_hidden_layers"], s["num_attention_heads"], s["num_key_value_heads"]) == (4, 8, 2)
    assert s["hidden_size"] == 512 and s["head_dim"] == 64 and s["intermediate_size"] == 2048
    assert s["vocab_size"] == cfg["vocab_size"] and cfg["num_hidden_layers"] == 16  # copy
    mha = shrink_config(_cfg("meta-llama__Llama-2-7b-hf.json"), scale=0.5)   # 4096, 32 heads
    assert (mha["hidden_size"], mha["num_attention_heads"], mha["num_key_value_heads"]) == (2048, 16, 16)
    assert mha["intermediate_size"] == 11008 // 2
    g2 = shrink_config(_cfg("google__gemma-2-9b.json"), layers=3)
    if "layer_types" in g2:
        assert len(g2["layer_types"]) == 3
    from llmroofline import from_hf_config
    m = from_hf_config(s)
    assert m.head_dim == 64 and m.num_heads // m.num_kv_heads == 4


@pytest.mark.parametrize("kw, field", [(dict(scale=0.0), "scale"), (dict(scale=1.5), "scale"),
                                       (dict(layers=0), "layers"), (dict(layers=99), "layers")])
def test_shrink_rejects_bad_input(kw, field):
    with pytest.raises(InputError, match=field):
        shrink_config(_cfg("meta-llama__Llama-3.2-1B.json"), **kw)


@pytest.mark.parametrize("name, dev", [
    ("NVIDIA A100-SXM4-80GB", "a100-sxm-80gb"), ("NVIDIA A100 80GB PCIe", "a100-pcie-80gb"),
    ("NVIDIA H100 80GB HBM3", "h100-sxm"), ("NVIDIA H100 PCIe", "h100-pcie"),
    ("Tesla T4", "t4"), ("NVIDIA GeForce RTX 4090", "rtx-4090"),
    ("Intel(R) Xeon(R) Platinum 8480+", "xeon-8480"), ("Intel(R) Xeon(R) Processor", None)])
def test_datasheet_matched_by_device_name(name, dev):
    """Names as torch.cuda.get_device_name / /proc/cpuinfo report them."""
    from llmroofline.probe import match_catalog
    assert match_catalog(name) == dev


# -- pure: CLI errors and a missing torch -----------------------------------------------------
@pytest.mark.parametrize("argv, field", [
    (["probe", "--out", "probe.txt"], "out"),
    (["probe", "--out", "/no/such/dir/p.toml"], "out"),
    (["probe", "--device", "tpu"], "device"),
    (["probe", "--dtype", "int3"], "dtype"),
    (["probe", "--budget-s", "0"], "budget-s"),
    (["probe", "--kernels-out", "k.txt"], "kernels-out"),
    (["calibrate", "--kernels", "/no/such/k.csv"], "kernels"),
    (["bench", "--model", "no-such-model-xyz"], "model"),
    (["bench", "--model", "llama-3.2-1b", "--csv", "x.txt"], "csv"),
])
def test_cli_errors_are_one_line(argv, field, capsys):
    from llmroofline.cli import main
    if not HAVE_TORCH and argv[0] == "bench" and field == "model":
        pytest.skip("bench validates the model after importing torch")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and field in err and "Traceback" not in err


def test_missing_torch_is_one_line(monkeypatch):
    from llmroofline.probe.timing import require_torch
    monkeypatch.setitem(sys.modules, "torch", None)   # import torch -> ImportError
    with pytest.raises(InputError) as e:
        require_torch()
    assert 'pip install "llmroofline[bench]"' in str(e.value) and "\n" not in str(e.value)


def test_import_llmroofline_stays_light():
    import subprocess
    code = ("import sys, llmroofline, llmroofline.cli, llmroofline.probe, llmroofline.bench; "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# -- real runs ------------------------------------------------------------------------------------
def _probe_file(tmp_path_factory, dtype: str = "bf16"):
    from llmroofline.probe import probe
    # transformers is loaded here: its overhead step needs ~3 s of the budget
    r = probe(quick=True, threads=THREADS, dtype=dtype, budget_s=8.0)
    path = tmp_path_factory.mktemp("probe") / f"this-machine-{dtype}.toml"
    path.write_text(r.to_toml())
    return r, path


def _ratio_dtype(r) -> str:
    """bf16, unless this CPU runs bf16 matmuls below SLOW_DTYPE_FRACTION of fp32 (no 16-bit
    matrix units: AVX2-only VMs convert every element, and their bf16 GEMM speed varies 5x
    with the shape, which one peak per dtype cannot describe; probe skips such dtypes
    itself). Then the ratio test runs in fp32, inside the engine's model."""
    from llmroofline.probe.measure import SLOW_DTYPE_FRACTION
    rates = r.rates_flops_s
    return "fp32" if rates.get("bf16", math.inf) < SLOW_DTYPE_FRACTION * rates["fp32"] else "bf16"


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    if not HAVE_TORCH:
        pytest.skip("torch/transformers not installed")
    return _probe_file(tmp_path_factory)


@needs_torch
def test_probe_writes_a_loadable_device_file(probed):
    from llmroofline import load_hardware
    from llmroofline.probe import probe_header
    from llmroofline.probe.report import tables
    r, path = probed
    hw = load_hardware(str(path))          # the catalog's own validation accepts it
    assert hw.family == "cpu" and hw.confidence == "measured"
    assert 0.5e9 < hw.mem_bw_bytes_s < 2e12
    assert set(hw.peak_flops) >= {"fp32", "bf16"}
    assert hw.peak_flops["bf16"] == pytest.approx(r.peaks_flops_s["bf16"], rel=1e-4)
    e = hw.efficiency
    assert not e.is_ideal and 0 < e.bandwidth <= 1 and e.launch_overhead_s > 0
    assert probe_header(path) == {"device": "cpu", "threads": str(THREADS), "dtype": "bf16",
                                  "quick": "true", "torch": r.torch_version}
    # the decode-GEMM curve of the fit dtype is measured from M = 1 on (the budget may cut
    # the larger M on a CPU without 16-bit matrix units), and the cut is stated
    cur = r.curve("bf16")
    assert cur and cur[0]["rows"] == 1 and [c["rows"] for c in cur] == sorted(c["rows"] for c in cur)
    if len(cur) < 5:
        assert any("budget" in s for s in r.skipped)
    assert r.elapsed_s < r.budget_s + 3.0
    # the tables render (what the CLI prints), with a datasheet column when asked
    from rich.console import Console
    buf = io.StringIO()
    con = Console(file=buf, width=160)
    from llmroofline.probe import compare_datasheet
    for t in tables(r, compare_datasheet(r, "xeon-8480")):
        con.print(t)
    text = buf.getvalue()
    assert "datasheet xeon-8480" in text and "bandwidth" in text and "gemm_half_rows" in text


def _ratio_run(path, dtype: str = "bf16"):
    from llmroofline.bench import bench
    return bench("llama-3.2-1b", layers=4, scale=0.5, batch=1, input_len=128, output_len=16,
                 hardware=str(path), threads=THREADS, repeats=3, profile=True,
                 diagnose_phases=(), dtype=dtype)


def _in_band(r) -> bool:
    return all(RATIO_BAND[0] <= r.ratios[k] <= RATIO_BAND[1] for k in ("ttft_s", "tpot_s"))


@pytest.fixture(scope="module")
def probed_native(probed, tmp_path_factory):
    """(dtype, probe, device file) in the dtype the real-run tests use here (_ratio_dtype)."""
    r0, path = probed
    dt = _ratio_dtype(r0)
    if dt == "bf16":
        return dt, r0, path
    print(f"bf16 runs at {r0.rates_flops_s['bf16'] / r0.rates_flops_s['fp32']:.1%} of fp32 "
          "here: the bench tests run in fp32")
    return (dt,) + _probe_file(tmp_path_factory, dt)


@needs_torch
def test_bench_ratio_within_band(probed_native, tmp_path_factory, tmp_path):
    dt, _, path = probed_native
    r = _ratio_run(path, dt)
    if not _in_band(r):   # shared machine: re-probe and re-bench once before failing
        print(f"first attempt out of band: {r.ratios}; retrying")
        _, path = _probe_file(tmp_path_factory, dt)
        r = _ratio_run(path, dt)
    assert r.weight_bytes >= 100e6
    assert _in_band(r), f"predicted/measured {r.ratios} outside {RATIO_BAND}"
    # throughput is derived from the same two times
    m = r.measured
    assert m["throughput_tok_s"] == pytest.approx(1 * 16 / (m["ttft_s"] + 15 * m["tpot_s"]))
    for shares in list(r.shares.values()) + list(r.engine_shares.values()):
        assert sum(shares.values()) == pytest.approx(1.0)
    # batch-1 decode of 0.38 GB of weights: the matmuls hold most of the time, measured and
    # predicted alike
    assert max(r.shares["decode"], key=r.shares["decode"].get) == "matmul"
    assert max(r.engine_shares["decode"], key=r.engine_shares["decode"].get) == "matmul"
    d = r.to_dict()
    assert d["ratio_ttft"] == pytest.approx(d["predicted_ttft_s"] / d["measured_ttft_s"])
    json.dumps(d)
    # the CSV row re-predicts identically through validate
    from llmroofline.bench import write_csv
    from llmroofline.validate import predict_rows, read_measurements
    csv_path = write_csv(r, tmp_path / "runs.csv")
    rows = read_measurements(csv_path)
    res = predict_rows(rows, "default").to_dict()["rows"]
    got = {x["metric"]: x for x in res}
    assert got["ttft_ms"]["predicted"] == pytest.approx(r.predicted["ttft_s"] * 1e3, rel=1e-6)
    assert got["tpot_ms"]["predicted"] == pytest.approx(r.predicted["tpot_s"] * 1e3, rel=1e-6)
    assert got["ttft_ms"]["measured"] == pytest.approx(m["ttft_s"] * 1e3, rel=1e-5)


TINY = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
        "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2,
        "vocab_size": 256, "max_position_embeddings": 1024}
WIDE = {**TINY, "hidden_size": 2048, "intermediate_size": 5632, "num_attention_heads": 16,
        "num_key_value_heads": 4, "vocab_size": 1024}


# Eight heads of 8 (4 KV heads), so the width test's narrow twin is a quarter of the width
# (2 heads, 1 KV head, hidden 16) and its work ratio R_w is large (engine: ~8): an
# overhead-bound model then has e_w = log(t / t_narrow) / log(R_w) < 0.5 unless a
# neighbour slows one variant's median by ~2.8x. The old TINY (4 heads, kv 2) could only
# halve (R_w ~3: a 1.76x blip flipped the verdict; it failed 3 of 11 runs).
TINY_OVERHEAD = {**TINY, "num_attention_heads": 8, "num_key_value_heads": 4}


@needs_torch
def test_tiny_model_is_overhead_bound(probed):
    from llmroofline.bench import bench
    _, path = probed
    r = bench(TINY_OVERHEAD, name="tiny", batch=1, input_len=32, output_len=9, hardware=str(path),
              threads=THREADS, repeats=7, profile=False, diagnose_phases=("decode",))
    d = r.diagnosis["decode"]
    assert d.width == pytest.approx(0.25)
    assert d.width_work_ratio > 6, d          # the test's power comes from a large R_w
    assert d.verdict == "overhead", d
    assert d.width_elasticity < 0.5
    assert d.engine_verdict == "overhead"
    # physically: streaming the step's weights (0.36 MB) at the probed bandwidth takes a
    # small part of the measured step (the rest is 25+ operator calls through Python)
    r_probe, _ = probed
    assert r.weight_bytes / r_probe.mem_bw_bytes_s < 0.2 * r.measured["tpot_s"]


@needs_torch
def test_wide_prefill_is_compute_bound(probed_native):
    from llmroofline.bench import bench
    dt, _, path = probed_native
    r = bench(WIDE, name="wide", batch=1, input_len=256, output_len=1, phases=("prefill",),
              hardware=str(path), threads=THREADS, repeats=3, profile=False,
              diagnose_phases=("prefill",), dtype=dt)
    d = r.diagnosis["prefill"]
    assert d.verdict == "compute", d
    assert d.width_elasticity > 0.5 and d.token_elasticity >= 0.5
    assert d.engine_verdict == "compute"
    assert math.isnan(r.measured.get("tpot_s", math.nan))
