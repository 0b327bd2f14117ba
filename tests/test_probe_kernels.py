"""The probe's timing interface, time budget, kernel table, its fit and the CUDA-path code
run with the CPU backend (issue 19). Expected numbers come from hand formulas or from
parameters a synthetic table was generated with, never from the code's own output.

Pure tests need numpy/scipy only; the torch tests run 1 thread on small shapes (~15 s in
all on a loaded 2-core VM, most of it the budgeted probe).
"""

from __future__ import annotations

import importlib.util
import io
import math
import time

import pytest

from llmroofline.errors import InputError

HAVE_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed")


# -- timing interface ----------------------------------------------------------------------
def test_cpu_clock_warmup_repeats_median():
    from llmroofline.probe.timing import Clock, CpuTimer
    calls = []
    sleeps = iter([0.0] * 2 + [0.010, 0.030, 0.020])   # 2 warm-ups, then 3 timed

    def fn():
        calls.append(1)
        time.sleep(next(sleeps))
    c = Clock("cpu")
    assert isinstance(c.timer, CpuTimer) and not c.cuda
    m = c.measure(fn, repeats=3, warmup=2)
    assert len(calls) == 5 and len(m.samples_s) == 3
    # sleep() never returns early; the median sample is the 20 ms one
    assert 0.020 <= m.median_s < 0.020 + 0.015
    assert m.min_s >= 0.010
    with pytest.raises(InputError, match="repeats"):
        c.measure(fn, repeats=0)
    with pytest.raises(InputError, match="warmup"):
        c.measure(fn, repeats=1, warmup=-1)


def test_cuda_timer_uses_events_and_converts_ms(monkeypatch):
    """The CUDA backend's arithmetic with a stand-in for torch.cuda's events."""
    torch = pytest.importorskip("torch")
    from llmroofline.probe.timing import Clock, CudaTimer
    log = []

    class Event:
        def __init__(self, enable_timing=False):
            assert enable_timing
            self.t = None

        def record(self):
            self.t = len(log)
            log.append("record")

        def synchronize(self):
            log.append("sync")

        def elapsed_time(self, other):        # milliseconds, as torch.cuda.Event reports
            return 250.0 * (other.t - self.t)

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: log.append("device-sync"))
    c = Clock("cuda", timer=CudaTimer("cuda"))
    assert c.cuda
    t, r = c.once(lambda: log.append("work") or 7)
    assert r == 7 and log == ["record", "work", "record", "sync"]
    assert t == pytest.approx(0.5)          # 2 log entries apart x 250 ms = 0.5 s
    log.clear()
    c.measure(lambda: None, repeats=1, warmup=1)
    assert log[0] == "device-sync"          # warm-up work drained before timing


@needs_torch
def test_device_selection(monkeypatch):
    import torch
    from llmroofline.probe.timing import check_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert check_device("auto") == "cpu" and check_device(" CPU ") == "cpu"
    with pytest.raises(InputError) as e:
        check_device("cuda")
    assert "device" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(InputError, match="device must be one of cpu, cuda, cuda:N or auto"):
        check_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert check_device("auto") == "cuda"
    with pytest.raises(InputError, match="cuda:1"):
        check_device("cuda:1")


def test_budget_validates_and_counts():
    from llmroofline.probe.timing import Budget
    for bad in (0, -1, float("nan"), True, "5"):
        with pytest.raises(InputError, match="budget_s"):
            Budget(bad)
    b = Budget(10.0)
    time.sleep(0.01)
    assert 0.01 <= b.used_s < 1 and b.left_s == pytest.approx(10 - b.used_s, abs=1e-3)
    assert math.isinf(Budget().left_s)


# -- fit parity with the engine --------------------------------------------------------------
def test_fit_prices_gemms_exactly_as_the_engine():
    """Every matmul row of a real model on a catalog H100 with the shipped Hopper entry
    (tiles, wave quantization, overlap): the kernel table's price == cost.Roofline's."""
    from llmroofline.cost import Roofline, kernel_s
    from llmroofline.graph import build_ops
    from llmroofline.probe.kernels import gemm_row_terms
    from llmroofline.specs.catalog import load_model
    from llmroofline.specs.hardware import load_hardware
    from llmroofline.specs.precision import Precision
    from llmroofline.specs.profile import load_profile
    hw = load_hardware("h100-sxm")
    eff = load_profile("default").families["hopper"]
    assert eff.gemm_tile_rows and eff.wave_quantization and eff.gemm_overlap < 1
    roof = Roofline.of(hw, Precision(), efficiency=eff)
    model = load_model("llama-3.1-8b")
    seen = 0
    for batch, q in ((1, 1), (8, 1), (1, 96), (4, 512)):
        for op in build_ops(model, Precision(), batch, q, 1024):
            if op.kind != "matmul" or op.name == "lm_head" and q > 1:
                continue
            m, n = float(op.rows), float(op.cols)
            k = float(op.flops) / (2 * m * n * op.count)
            row = {"m": m, "dtype": "bf16", "bytes": float(op.bytes),
                   "shapes": [(n, k, op.count)]}
            comp, mem, t = gemm_row_terms(row, hw.peak("bf16"), hw.mem_bw_bytes_s, eff,
                                          hw.sm_count)
            ec, em, _, _ = roof.terms(op)
            assert comp == pytest.approx(float(ec), rel=1e-9), op.name
            assert mem == pytest.approx(float(em), rel=1e-9), op.name
            assert t == pytest.approx(float(kernel_s(ec, em, roof.overlap(op))), rel=1e-9)
            seen += 1
    assert seen >= 12


def test_gemm_time_hand_formula():
    """No tiles, waves or overlap: t = max(F (M + m) / (P c M), Q / (B b))."""
    from llmroofline.probe.fit import engine_gemm_terms
    P, B = 400e12, 2e12
    for m, n, k in ((1, 4096, 4096), (64, 14336, 4096), (4096, 4096, 4096)):
        F, Q = 2.0 * m * n * k, 2.0 * (n * k + m * (n + k))
        comp, mem, t = engine_gemm_terms(m, n, F, Q, P, B,
                                         {"compute": 0.7, "gemm_half_rows": 32, "bandwidth": 0.9})
        assert float(comp) == pytest.approx(F * (m + 32) / (P * 0.7 * m))
        assert float(mem) == pytest.approx(Q / (B * 0.9))
        assert float(t) == pytest.approx(max(F * (m + 32) / (P * 0.7 * m), Q / (B * 0.9)))


# -- kernel table -----------------------------------------------------------------------------
def _synthetic_table(tmp_path, eff):
    """H100 rows priced by hand-set efficiencies: decode-shaped and square GEMMs, GQA decode
    attention (bytes / (B attention_bandwidth)), causal prefill (F / (P attention_compute))."""
    from llmroofline.probe.kernels import gemm_row_terms, write_table
    from llmroofline.specs.hardware import load_hardware
    hw = load_hardware("h100-sxm")
    P, B = hw.peak("bf16"), hw.mem_bw_bytes_s
    rows = []
    for (n, k) in ((6144, 4096), (4096, 14336)):
        for m in (1, 4, 16, 64, 256, 1024, 4096):
            copies = 4
            f, q = 2.0 * m * n * k * copies, 2.0 * copies * (n * k + m * (n + k))
            r = {"op": "gemm", "dtype": "bf16", "m": m, "n": n, "k": k,
                 "matrices": f"{n}x{k}*{copies}", "flops": f, "bytes": q,
                 "shapes": [(n, k, copies)]}
            r["time_s"] = gemm_row_terms(r, P, B, eff, hw.sm_count)[2]
            rows.append(r)
    for L in (1024, 8192):
        q = 2.0 * 8 * 8 * L * 128 * 2
        rows.append({"op": "attn_decode", "dtype": "bf16", "m": 8, "heads": 32, "kv_heads": 8,
                     "head_dim": 128, "kv_len": L, "flops": 4.0 * 8 * 32 * L * 128, "bytes": q,
                     "time_s": q / (B * 0.8)})
    f = 4.0 * 32 * 4096 * 4097 / 2 * 128
    rows.append({"op": "attn_prefill", "dtype": "bf16", "m": 1, "heads": 32, "kv_heads": 8,
                 "head_dim": 128, "kv_len": 4096, "flops": f, "bytes": 1e8,
                 "time_s": f / (P * 0.6)})
    path = tmp_path / "h100-test.csv"
    write_table([{k: v for k, v in r.items() if k != "shapes"} for r in rows], path,
                {"device_name": "NVIDIA H100 80GB HBM3", "driver": "cuda 12.8, sm_90",
                 "torch": "2.13.0", "date": "2026-12-07"}, comment="synthetic")
    return path, hw


def test_kernel_table_roundtrip_and_fit_recovers_parameters(tmp_path):
    from dataclasses import replace
    from llmroofline.probe.kernels import fit_kernels, read_table
    from llmroofline.specs.profile import load_profile
    base = load_profile("default").families["hopper"]
    true = replace(base, compute=0.72, gemm_half_rows=24.0, bandwidth=0.85)
    path, hw = _synthetic_table(tmp_path, true)
    text = path.read_text()
    assert text.startswith("# llmroofline measured-kernel table") and "# synthetic" in text
    rows = read_table(path)
    assert len(rows) == 17 and rows[0]["shapes"] == [(6144, 4096, 4)]
    assert rows[0]["device_name"] == "NVIDIA H100 80GB HBM3" and rows[0]["torch"] == "2.13.0"
    fit = fit_kernels(rows, hw, base)
    e = fit["efficiency"]
    assert e.bandwidth == pytest.approx(0.85, rel=0.02)
    assert e.compute == pytest.approx(0.72, rel=0.02)
    assert e.gemm_half_rows == pytest.approx(24.0, rel=0.1)
    # the table stores 6 significant digits
    assert e.attention_bandwidth == pytest.approx(0.8, rel=1e-5)
    assert e.attention_compute == pytest.approx(0.6, rel=1e-5)
    assert e.wave_quantization == base.wave_quantization        # held fixed
    assert fit["stats"]["gemm"]["rms_log_error"] < 0.01


@pytest.mark.parametrize("line, field", [
    ("gemv,bf16,1,4,4,,,,,,,,,,8,8,1", "op"), ("gemm,int3,1,4,4,,,,,,,,,,8,8,1", "dtype"),
    ("gemm,bf16,0,4,4,,,,,,,,,,8,8,1", "m"), ("gemm,bf16,1,4,4,,,,,,,,,,8,8,-1", "time_s"),
    ("gemm,bf16,1,,,4x,,,,,,,,,8,8,1", "matrices"), ("gemm,bf16,1,,,,,,,,,,,,8,8,1", "n and k")])
def test_kernel_table_bad_rows_are_one_line(tmp_path, line, field):
    from llmroofline.probe.kernels import COLUMNS, read_table
    p = tmp_path / "bad.csv"
    p.write_text("# c\n" + ",".join(COLUMNS[:17]) + "\n" + line + "\n")
    with pytest.raises(InputError) as e:
        read_table(p)
    assert field in str(e.value) and "row 2" in str(e.value) and "\n" not in str(e.value)


def test_calibrate_kernels_cli(tmp_path, capsys):
    from dataclasses import replace
    from llmroofline.cli import main
    from llmroofline.specs.profile import load_profile
    # calibrate starts from the entry the default profile gives a 16-bit Hopper run
    base = load_profile("default").for_family("hopper", 16)
    path, _ = _synthetic_table(tmp_path, replace(base, compute=0.5, bandwidth=0.7))
    out = tmp_path / "fitted.toml"
    assert main(["calibrate", "--kernels", str(path), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "before / after" in text and "gemm bf16" in text and "[families.hopper-a16]" in text
    prof = load_profile(str(out))
    e = prof.for_family("hopper", 16)            # the fitted entry is what a lookup finds
    assert e.compute == pytest.approx(0.5, rel=0.03) and e.bandwidth == pytest.approx(0.7, rel=0.02)
    assert main(["calibrate", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--kernels" in err


# -- CUDA-path code on the CPU backend ---------------------------------------------------------
@needs_torch
def test_sweep_jobs_count_work_by_hand():
    import torch
    from llmroofline.probe.sweep import SWEEP, attention_jobs, fp8_support, gemm_jobs
    cfg = SWEEP["cpu"]
    ok, why = fp8_support(torch, "cpu")
    assert not ok and "CUDA" in why
    g = gemm_jobs(torch, torch.bfloat16, "bf16", "cpu", cfg, cache_bytes=1e6)
    # 512 x 256 bf16 = 262144 B -> ceil(1e6 / 262144) = 4 copies
    j = next(x for x in g if (x["m"], x["n"], x["k"]) == (16, 512, 256))
    assert j["matrices"] == "512x256*4"
    assert j["flops"] == 2 * 16 * 512 * 256 * 4
    assert j["bytes"] == 4 * (512 * 256 + 16 * (512 + 256)) * 2
    out = j["fn"]()
    assert len(out) == 4 and tuple(out[0].shape) == (16, 512)
    a = attention_jobs(torch, torch.float32, "fp32", "cpu", cfg)
    d = next(x for x in a if x["op"] == "attn_decode" and x["kv_heads"] == 1 and x["kv_len"] == 256)
    assert d["heads"] == 4 and d["bytes"] == (2 * 1 * 1 * 256 * 32 + 2 * 1 * 4 * 32) * 4
    assert tuple(d["fn"]().shape) == (1, 4, 1, 32)
    p = next(x for x in a if x["op"] == "attn_prefill" and x["kv_heads"] == 1)
    assert p["flops"] == 4 * 4 * 128 * 129 / 2 * 32


@needs_torch
def test_decoder_step_matches_a_reference_and_refuses_graphs_on_cpu():
    """The plain-torch decoder's step, recomputed by hand for one layer at position 0
    (softmax over one key = the value itself)."""
    import torch
    from llmroofline.probe.decoder import Decoder, DecoderShape, time_steps
    from llmroofline.probe.timing import Clock
    F = torch.nn.functional
    sh = DecoderShape(hidden=32, layers=1, heads=4, kv_heads=2, ffn=64, vocab=50)
    d = Decoder(sh, batch=2, max_len=8, dtype=torch.float32, device="cpu")
    tok = torch.tensor([[3], [7]])
    with torch.inference_mode():
        got = d.step(tok, torch.tensor([0]))
        x = d.emb[tok]
        L = d.layers[0]
        y = F.rms_norm(x, (32,), d.norm, 1e-5)
        v = F.linear(y, L["qkv"])[..., 32 + 16:].view(2, 1, 2, 8)   # q: 4 x 8, k: 2 x 8
        a = v.repeat_interleave(2, dim=2).reshape(2, 1, 32)     # each query head's KV head
        x = x + F.linear(a, L["o"])
        y = F.rms_norm(x, (32,), d.norm, 1e-5)
        g, u = F.linear(y, L["gu"]).chunk(2, dim=-1)
        x = x + F.linear(F.silu(g) * u, L["down"])
        ref = F.linear(F.rms_norm(x, (32,), d.norm, 1e-5), d.lm_head).argmax(-1)
    assert torch.equal(got, ref)
    with pytest.raises(InputError, match="cuda"):
        d.capture()
    t = time_steps(d, Clock("cpu"), steps=3, start=2)
    assert len(t) == 3 and all(s > 0 for s in t) and int(d.pos) == 5
    with pytest.raises(InputError, match="steps"):
        time_steps(d, Clock("cpu"), steps=7, start=2)


# -- the budgeted probe --------------------------------------------------------------------------
@needs_torch
def test_probe_respects_budget_and_skips_slow_dtypes(monkeypatch, tmp_path):
    """A 2.5 s budget on a shared 2-core VM: done within budget + 1.5 s (the framework
    step's reserve is the slack); a dtype reported at 1 % of fp32 is skipped and said so."""
    from llmroofline.probe import measure
    from llmroofline.probe.kernels import read_table
    real = measure._rates

    def rates(*a, **k):
        r, bw = real(*a, **k)
        r["bf16"] = 0.01 * r["fp32"]
        return r, bw
    monkeypatch.setattr(measure, "_rates", rates)
    t0 = time.perf_counter()
    r = measure.probe(quick=True, threads=1, dtype="fp32", budget_s=2.5)
    wall = time.perf_counter() - t0
    assert wall < 2.5 + 1.5, (wall, r.skipped)
    assert r.elapsed_s <= wall
    assert any(s.startswith("bf16 matmuls skipped") and "1.0% of fp32" in s for s in r.skipped)
    assert "bf16" not in r.peaks_flops_s and "fp32" in r.peaks_flops_s
    # plain-torch decoder unless an earlier test loaded transformers (then as bench runs)
    assert r.overhead["source"].startswith(("torch decoder", "transformers"))
    ops = {k["op"] for k in r.kernels}
    assert {"gemm", "decode_eager"} <= ops
    path = r.write_kernels(tmp_path / "cpu.csv")
    rows = read_table(path)
    assert len(rows) == len(r.kernels) and rows[0]["device_name"] == r.name
    # the report renders measured beside predicted with regimes
    from rich.console import Console
    from llmroofline.probe.report import probe_kernel_report
    buf = io.StringIO()
    for t in probe_kernel_report(r, None, detail=True):
        Console(file=buf, width=160).print(t)
    text = buf.getvalue()
    assert "Measured kernels beside the engine" in text and "decode_eager" in text
    assert "overhead" in text and "gemm fp32" in text


# -- the planner, with a fake clock (pure) --------------------------------------------------------
class _FakeClock:
    """once(fn) -> (fn(), None): each job's fn returns the seconds it 'takes'."""
    cuda = False

    def once(self, fn):
        return fn(), None


def _job(fam, t, flops, required=False):
    return {"job": "curve", "family": fam, "dtype": "bf16", "rows": 1, "flops": flops,
            "bytes": 0.0, "required": required, "fn": lambda: t}


def test_plan_keeps_warmup_times_reps_within_allowance():
    """rate 1 GFLOP/s: a job's bound is flops / 1e9 s. Allowance 10 s, 3 repeats: each kept
    job costs 4 x its warm-up. a0 (required, 1 s) -> 4; b0 (0.5 s) -> 6; a1 bound 1 s but
    a0 took 1 s for a bound of 0.1 s, so a1 is estimated 10 s -> dropped, and a2 with it
    (a family stops at its first miss); b1 (bound 0.5, b0 took 0.5 for 0.5) -> 8; b2 (1 s)
    would reach 12 -> dropped."""
    from llmroofline.probe.measure import _by_rank, _plan
    jobs = _by_rank([_job("a", 1.0, 1e8, required=True), _job("a", 2.0, 1e9), _job("a", 0.1, 1e7),
                     _job("b", 0.5, 5e8), _job("b", 0.5, 5e8), _job("b", 1.0, 1e9)])
    assert [j["family"] for j in jobs] == ["a", "b", "a", "b", "a", "b"]
    kept, dropped = _plan(jobs, _FakeClock(), 3, 10.0, {"bf16": 1e9}, 1e12, lambda n=1: None)
    assert [(j["family"], j["warm_s"]) for j in kept] == [("a", 1.0), ("b", 0.5), ("b", 0.5)]
    assert len(dropped) == 3
    assert sum(4 * j["warm_s"] for j in kept) <= 10.0
    # a required job runs even with no allowance at all
    k2, _ = _plan([_job("a", 1.0, 1e8, required=True)], _FakeClock(), 3, 0.0, {"bf16": 1e9},
                  1e12, lambda n=1: None)
    assert len(k2) == 1


def test_fit_rounds_cuts_rounds_then_steps():
    from llmroofline.probe.overhead import _fit_rounds
    # one round = 16 x 1 ms + 16 x 2 ms = 48 ms
    assert _fit_rounds([1e-3, 2e-3], [16, 16], 5, 1.0) == (5, [16, 16])
    assert _fit_rounds([1e-3, 2e-3], [16, 16], 5, 0.1) == (2, [16, 16])
    assert _fit_rounds([1e-3, 2e-3], [16, 16], 5, 0.024) == (1, [8, 8])
    assert _fit_rounds([1e-3, 2e-3], [16, 16], 5, 0.0) == (1, [2, 2])


@needs_torch
def test_cuda_without_gpu_is_one_line(capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    from llmroofline.cli import main
    for argv in (["probe", "--device", "cuda"], ["bench", "--model", "llama-3.2-1b", "--device", "cuda"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "device: cuda requested" in err
