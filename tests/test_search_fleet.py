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
    # Llama-3.1-8B is dense and has no MTP modules (no draft given): both axes refused
    assert {p.label for p in refused} == {p.label for p in s.points
                                          if p.config.attention_dp > 1 or p.config.mtp}
    assert any("attention-DP" in p.error and "dense" in p.error for p in refused)
    assert any("mtp" in p.error and "--draft" in p.error for p in refused)
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


def _argv(script):
    """The command line of a written .sh file (its last line), split as the shell would."""
    import shlex
    return shlex.split(script.read_text().strip().splitlines()[-1])


@pytest.mark.parametrize("engine,arrival", [("vllm-v1", "poisson"), ("sglang", "closed")])
def test_fleet_out_writes_launch_files_that_parse_and_round_trip(tmp_path, engine, arrival):
    import json
    from llmroofline.launch import (TOOLS, check_command, read_setup, setup_deployment,
                                    setup_workload)
    from llmroofline.serving.fleet import chosen, write_launch
    sp = Space(hardware=("h100-sxm",), tp=(1, 2), max_batch=(32, 64), max_tokens=(2048,),
               kv_dtype=("auto", "fp8"))
    s = fleet_search(MODEL, sp, engine=engine, arrival=arrival, input_dist="1000",
                     output_dist="200", **KW)
    index = write_launch(s, tmp_path)
    assert json.loads((tmp_path / "index.json").read_text()) == json.loads(
        json.dumps(index, default=str))
    rows = index["configurations"]
    picked = chosen(s)
    assert [r["configuration"] for r in rows] == [p.label for p in picked]
    assert all(p.pareto for p in picked[:-1]) and (picked[-1].pareto or picked[-1] is s.best)
    server, _, bench = TOOLS["vllm" if engine == "vllm-v1" else "sglang"]
    for p, r in zip(picked, rows):
        c, f = p.config, tmp_path / r["folder"]
        assert r["requests_s_per_replica"] == p.rate and r["tok_s_per_user"] == p.per_user
        serve = check_command(server, _argv(f / "serve.sh"))
        check_command(bench, _argv(f / "bench.sh"))
        check_command("aiperf profile", _argv(f / "aiperf.sh"))
        if engine == "vllm-v1":
            assert serve["--tensor-parallel-size"] == str(c.tp)
            assert serve["--max-num-seqs"] == str(c.max_batch)
            assert serve.get("--kv-cache-dtype") == ("fp8" if c.kv_dtype == "fp8" else None)
        else:
            assert serve["--tp-size"] == str(c.tp)
            assert serve["--max-running-requests"] == str(c.max_batch)
            assert serve["--chunked-prefill-size"] == "2048"
        rec = read_setup(f / "setup.toml")
        d = setup_deployment(rec)
        assert (d.layout.tp, d.engine.name, d.hardware.id) == (c.tp, engine, "h100-sxm")
        assert d.precision.kvbits == (8 if c.kv_dtype == "fp8" else 16)
        w = setup_workload(rec)
        assert (w.isl, w.osl) == (1000, 200)
        assert w.requests == max(p.requests, 10 * w.concurrency)
        if arrival == "closed":
            assert w.concurrency == p.concurrency
        else:
            # Little's law: requests in flight = rate x mean time in the system, which with
            # fixed lengths is near TTFT + 199 TPOT (medians here)
            guess = p.rate * (p.metrics["ttft_p99"] / 2 + 199 * p.metrics["tpot_p50"])
            assert 0.5 * guess <= w.concurrency <= 2 * guess


def test_fleet_out_needs_an_engine_with_launch_commands(tmp_path, capsys):
    from llmroofline.cli import main
    assert main(["fleet", "--tp", "1", "--out", str(tmp_path / "o")]) == 2
    e = capsys.readouterr().err
    assert "out:" in e and "--engine" in e and "Traceback" not in e
    assert not (tmp_path / "o").exists()


def test_attention_dp_axis_for_moe_models_on_engines_that_run_it():
    sp = Space(hardware=("h100-sxm",), tp=(1,), attention_dp=(1, 2), max_batch=(64,),
               max_tokens=(2048,))
    moe = "Qwen/Qwen3-30B-A3B"
    s = fleet_search(moe, sp, engine="sglang", **KW)
    one, two = sorted(s.points, key=lambda p: p.config.attention_dp)
    assert two.status in ("confirmed", "simulated") and two.error is None
    # an ADP2 replica is two attention ranks on 2 GPUs, four replicas to an 8-GPU node
    assert (two.config.gpus_per_replica, two.config.replicas_per_node) == (2, 4)
    assert s.deployments[two.label].layout.dp_attention == 2
    # two ranks, each with its own batch and KV cache, serve more than one rank alone
    assert two.rate > one.rate > 0
    # vLLM (V0) has no attention-DP mode: refused in one line naming the engine
    s = fleet_search(moe, sp, engine="vllm", **KW)
    r = [p for p in s.points if p.config.attention_dp == 2][0]
    assert r.status == "refused" and "engine vllm" in r.error and "\n" not in r.error


def test_mtp_axis_with_a_draft_model():
    sp = Space(hardware=("h100-sxm",), tp=(1,), max_batch=(64,), max_tokens=(2048,),
               mtp=(False, True))
    s = fleet_search(MODEL, sp, draft="meta-llama/Llama-3.2-1B", draft_k=3, accept=0.8, **KW)
    off, on = sorted(s.points, key=lambda p: p.config.mtp)
    assert on.status in ("confirmed", "simulated") and on.rate > 0
    # tau = (1 - 0.8^4) / 0.2 = 2.95 tokens per round for a round of one 8B verify step
    # and three 1B draft steps (~1.5 steps of the 8B): within the same TPOT limit it serves
    # more requests/s, each faster
    assert on.per_user > off.per_user and on.rate > off.rate
    assert s.speculative == {"draft": "meta-llama/Llama-3.2-1B", "draft_k": 3, "accept": 0.8,
                             "draft_tp": None, "step_cpu_s": 0.0}
