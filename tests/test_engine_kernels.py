"""The fitted engine mechanisms: [kernels] factors, the benchmark's first wave, and
duplicate measurements, each checked against a hand computation."""

from __future__ import annotations

from dataclasses import replace
from importlib import resources

import numpy as np
import pytest

from llmroofline.errors import InputError
from llmroofline.serving import engine_fit as ef
from llmroofline.serving.measured import drop_duplicates, parse_row, simulate_run
from llmroofline.specs.engine import Kernels, load_engine
from llmroofline.specs.profile import Efficiency

from test_closedloop import _row


def test_kernels_scale_compute_cap_at_peak_and_set_the_routing_cost():
    e = Efficiency(bandwidth=0.8, compute=0.6, attention_compute=0.9, launch_overhead_s=5e-6)
    k = Kernels(compute_factor=1.5, moe_routing_overhead_s=40e-6)
    out = k.apply(e)
    assert out.compute == pytest.approx(0.9)              # 0.6 x 1.5
    assert out.attention_compute == 1.0                   # 0.9 x 1.5 capped at peak
    assert out.moe_routing_overhead_s == 40e-6
    assert (out.bandwidth, out.launch_overhead_s) == (0.8, 5e-6)
    assert Kernels().apply(e) is e
    with pytest.raises(InputError, match="compute_factor must be in"):
        Kernels(compute_factor=3.0)
    with pytest.raises(InputError, match="moe_routing_overhead_s must be in"):
        Kernels(moe_routing_overhead_s=-1.0)


def test_routing_cost_lands_on_the_router_once_per_moe_layer():
    """Qwen3-30B-A3B: 48 MoE layers. The router operator's time grows by exactly
    48 x the routing cost; no other operator changes."""
    from llmroofline import analyze
    eng = load_engine("vllm-v1")
    base = eng.with_kernels(Kernels())
    routed = eng.with_kernels(Kernels(moe_routing_overhead_s=50e-6))
    kw = dict(model="Qwen/Qwen3-30B-A3B", hardware="h200", batch=4, input_len=128,
              output_len=16)
    a, b = analyze(engine=base, **kw), analyze(engine=routed, **kw)
    for pa, pb in ((a.prefill, b.prefill), (a.decode, b.decode)):
        ta = {o.name: float(np.mean(o.time_s)) for o in pa.ops}
        tb = {o.name: float(np.mean(o.time_s)) for o in pb.ops}
        assert tb["router"] - ta["router"] == pytest.approx(48 * 50e-6, rel=1e-9)
        assert all(tb[n] == pytest.approx(ta[n], rel=1e-12) for n in ta if n != "router")


def test_engine_file_kernels_table_loads_and_names_bad_values(tmp_path):
    text = (resources.files("llmroofline") / "data" / "engines" / "vllm-v1.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("compute_factor = ", "compute_factor = 9.0  #"))
    with pytest.raises(InputError, match=r"\[kernels\].*compute_factor must be in \[0.25, 2\]"):
        load_engine(str(bad))


def test_first_wave_mixes_the_wave_and_the_steady_state_by_the_share():
    run = parse_row(_row(model_path="meta-llama/Llama-3.1-8B", tp_size="1.0",
                         moe_tp_size="1.0", batch_size="4.0", isl="512", osl="64"))
    steady = simulate_run(run, first_wave=0.0)
    wave = simulate_run(run, first_wave=1.0)
    mixed = simulate_run(run, first_wave=0.25)
    for m in ("ttft_ms", "tpot_ms"):
        assert mixed[m] == pytest.approx(0.75 * steady[m] + 0.25 * wave[m], rel=1e-12)
    # the wave queues 4 prompts at once: its mean TTFT exceeds the staggered one
    assert wave["ttft_ms"] > steady["ttft_ms"]
    with pytest.raises(InputError, match=r"first_wave: must be a share in \[0, 1\]"):
        simulate_run(run, first_wave=1.5)


def test_duplicates_are_dropped_and_the_smaller_layout_kept():
    a = parse_row(_row(id="a"), 2)
    b = parse_row(_row(id="b"), 3)                                 # same measurement
    c = parse_row(_row(id="c", tp_size="8.0", moe_tp_size="8.0"), 4)   # same, 8 GPUs
    d = parse_row(_row(id="d", silicon_tpot_ms="17.0"), 5)         # another measurement
    kept, dropped = drop_duplicates([c, a, b, d])
    assert [r.id for r in kept] == ["a", "d"]
    reasons = {r.id: why for r, why in dropped}
    assert reasons["b"] == "same measurement as a"
    assert reasons["c"] == "same measurement as a under 2 GPUs (this row names 8)"


def test_fit_recovers_known_values_from_the_linear_model():
    """Synthetic baselines with given slopes: measured values built from known parameters
    by the module's first-order formula are fitted back."""
    rng = np.random.default_rng(0)
    truth = {"request_overhead_s": 0.05, "iteration_overhead_s": 1e-3,
             "cuda_graph_launch_factor": 0.3, "compute_factor": 1.2,
             "moe_routing_overhead_s": 4e-5, "first_wave_share": 0.1}
    bs = []
    for i in range(40):
        run = parse_row(_row(id=f"r{i}", batch_size=f"{1 + i % 8}.0", osl=str(64 + 16 * i)), i)
        slopes = {f: (float(rng.uniform(1, 40)), float(rng.uniform(0.5, 5))) for f in ef.SLOPE_PARAMS}
        b = ef.Baseline(run, float(rng.uniform(30, 300)), float(rng.uniform(5, 30)),
                        dict(ef.CENTRE), slopes)
        t, p = b.predict(**truth)
        bs.append(ef.Baseline(replace(run, ttft_ms=t, tpot_ms=p), b.ttft0_ms, b.tpot0_ms,
                              b.centre, b.slopes))
    got = ef.fit(bs, tuple(ef.PARAMS))
    for k, v in truth.items():
        assert got[k] == pytest.approx(v, rel=2e-3, abs=1e-7), k
    with pytest.raises(InputError, match="need baselines"):
        ef.fit([ef.Baseline(bs[0].run, 1.0, 1.0)], ("compute_factor",))
