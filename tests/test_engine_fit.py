"""Fitting the engines' fixed costs: recovery of known costs, and a cross-validation that
never scores a row with a fit that saw it."""

from __future__ import annotations

import pytest

from llmroofline.serving import engine_fit as ef
from llmroofline.serving.measured import MeasuredRun
from llmroofline.specs.precision import Precision


def _run(i, model, backend="vllm", c=8, ttft=0.0, tpot=0.0):
    return MeasuredRun(id=f"r{i}", line=i, backend=backend, version="x", model_path=model,
                       model=model, hardware="h200", precision=Precision(), mode="agg", tp=1,
                       pp=1, attention_dp=1, moe_tp=1, moe_ep=1, isl=1000, osl=100,
                       concurrency=c, ttft_ms=ttft, tpot_ms=tpot)


def _synthetic(r_s, d_s):
    """Rows whose measurements are exactly the first-order law at costs (r, d):
    TTFT = TTFT0 + r + k d with k = TTFT0 / TPOT0, TPOT = TPOT0 + d (ms)."""
    bs = []
    for i, (t0, p0) in enumerate([(50, 10), (120, 12), (300, 20), (80, 8), (40, 15), (200, 25)]):
        k = max(1.0, t0 / p0)
        run = _run(i, f"m{i % 3}", ttft=t0 + r_s * 1e3 + k * d_s * 1e3, tpot=p0 + d_s * 1e3)
        bs.append(ef.Baseline(run, t0, p0))
    return bs


def test_fit_recovers_known_costs():
    p = ef.fit(_synthetic(0.080, 0.0012))
    assert p["request_overhead_s"] == pytest.approx(0.080, abs=1e-5)
    assert p["iteration_overhead_s"] == pytest.approx(0.0012, abs=1e-7)


def test_fit_respects_its_bounds():
    p = ef.fit(_synthetic(2.0, 0.0))       # the data asks for 2 s: the bound is 0.5 s
    assert p["request_overhead_s"] == pytest.approx(0.5)


def test_cross_validation_never_sees_the_held_out_model():
    bs = _synthetic(0.05, 0.001)
    bs[0] = ef.Baseline(_run(0, "m0", ttft=5000.0, tpot=500.0), 50, 10)   # m0 is odd
    cv = ef.cross_validate(bs, "model")
    assert len(cv) == len(bs)
    for row in cv:
        train = [b for b in bs if b.run.model != row["held_out"]]
        assert row["request_overhead_s"] == pytest.approx(ef.fit(train)["request_overhead_s"])
    # the folds without m0 fit the clean law; m0's outlier moves only the others' folds
    clean = [r for r in cv if r["held_out"] == "m0"]
    assert all(r["request_overhead_s"] == pytest.approx(0.05, abs=1e-4) for r in clean)


def test_mape_by_hand():
    rows = [{"ttft_ms": 110, "measured_ttft_ms": 100, "tpot_ms": 9, "measured_tpot_ms": 10,
             "tok_s": 1, "measured_tok_s": 1, "backend": "a"},
            {"ttft_ms": 70, "measured_ttft_ms": 100, "tpot_ms": 10, "measured_tpot_ms": 10,
             "tok_s": 2, "measured_tok_s": 1, "backend": "b"}]
    m = ef.mape(rows)
    assert (m["ttft_ms"], m["tpot_ms"], m["tok_s"]) == pytest.approx((0.2, 0.05, 0.5))
    assert ef.mape(rows, key=lambda r: r["backend"])["b"]["ttft_ms"] == pytest.approx(0.3)
