"""Fleet search (serving/fleet.py): fast path vs exhaustive, bad input, executors."""

import os

import pytest

from llmroofline.errors import InputError
from llmroofline.serving.fleet import FLUID_SLACK, Space, fleet_search, parse_slo

MODEL = "meta-llama/Llama-3.1-8B"
KW = dict(slo="ttft_p99=2s,tpot_p99=50ms", requests=300, short_requests=100, workers=1)


def test_fast_path_returns_the_exhaustive_best():
    sp = Space(hardware=("h100-sxm",), tp=(1, 2), max_batch=(16, 64), max_tokens=(2048,))
    fast = fleet_search(MODEL, sp, **KW)
    full = fleet_search(MODEL, sp, fast=False, **KW)
    assert fast.best.label == full.best.label
    # the confirmed rate lies on the same grid point as the exhaustive bisection's
    same = next(p for p in full.points if p.label == fast.best.label)
    assert fast.best.rate == pytest.approx(same.rate, rel=1e-12)
    # the pruning bound holds on every simulated point
    for p in full.points:
        if p.rate > 0 and p.fluid > 0:
            assert p.rate <= FLUID_SLACK * p.fluid * 1.0001


def test_refused_axes_and_slo_parsing():
    sp = Space(hardware=("h100-sxm",), tp=(1,), max_batch=(64,), max_tokens=(2048,),
               attention_dp=(1, 2), mtp=(False, True))
    s = fleet_search(MODEL, sp, **KW)
    refused = [p for p in s.points if p.status == "refused"]
    assert refused and all("\n" not in p.error for p in refused)
    assert any("attention-DP" in p.error for p in refused)
    assert parse_slo("ttft_p99=2s,tpot_p50=20ms,e2e_p90=60") == {
        "ttft_p99": 2.0, "tpot_p50": 0.02, "e2e_p90": 60.0}
    with pytest.raises(InputError, match="ttft_pNN"):
        parse_slo("latency=2s")


def test_limits_ask_for_yes():
    big = Space(hardware=("h100-sxm",), tp=tuple(range(1, 11)), max_batch=tuple(range(1, 101)),
                max_tokens=tuple(range(1000, 1101)))
    with pytest.raises(InputError, match="100,000"):
        fleet_search(MODEL, big, **KW)
    with pytest.raises(InputError, match="--yes"):
        fleet_search(MODEL, Space(tp=(1,)), slo="ttft_p99=2s", workers=(os.cpu_count() or 1) + 1)


def test_ray_executor_equals_local():
    ray = pytest.importorskip("ray")
    sp = Space(hardware=("h100-sxm",), tp=(1, 2), max_batch=(64,), max_tokens=(2048,))
    local = fleet_search(MODEL, sp, **KW)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = fleet_search(MODEL, sp, executor="ray", **{**KW, "workers": None})
    finally:
        ray.shutdown()
    assert [(p.label, p.rate, p.metrics) for p in local.points] == \
        [(p.label, p.rate, p.metrics) for p in remote.points]


def test_cli_fleet_and_ray_hint(capsys, monkeypatch):
    from llmroofline.cli import main
    assert main(["fleet", "--tp", "1", "--max-batch", "64", "--max-tokens", "2048",
                 "--requests", "200", "--short-requests", "100", "--workers", "1"]) == 0
    assert "best:" in capsys.readouterr().out
    import builtins
    real = builtins.__import__

    def no_ray(name, *a, **k):
        if name == "ray":
            raise ImportError("no ray")
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_ray)
    assert main(["fleet", "--executor", "ray", "--tp", "1"]) == 2
    assert 'llmroofline[cluster]' in capsys.readouterr().err
