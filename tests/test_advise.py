"""The advisor's physics: the cure it ranks first matches the regime the time is spent in.

Each scenario uses the ideal roofline (``profile="ideal"``) or an explicit efficiency, so
the expected ranking follows from the roofline alone and not from a calibrated profile:

- batch-1 decode of a dense model is memory-bound: weight quantization is the best
  quantization lever, and FP8 compute (W8A8, 1 byte per weight) gains less than
  weight-only INT4 (0.5 byte + group scales);
- a large-batch long-prompt prefill on Hopper is compute-bound: FP8 (the 2x FP8 peak) is
  the best lever on the device, KV-cache quantization gains nothing;
- a tiny model with a per-kernel launch overhead is overhead-bound: CUDA graphs / fused
  kernels come first;
- Llama-2-70B over 8 PCIe L40S is communication-bound: fewer tensor-parallel devices or
  pipeline stages beat a 16-way tensor-parallel group;
- every reported gain is the ratio (and ``delta`` the difference) of two engine runs, which
  the tests recompute with ``analyze`` directly.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from types import SimpleNamespace

import llmroofline as lr
from llmroofline import cli, decoding
from llmroofline.advise import REGIMES, advise, diagnose
from llmroofline.specs.engine import load_engine

GRAPH_FACTOR = load_engine("default").cuda_graph_launch_factor   # 0.2 in the engine file
from llmroofline.errors import InputError
from llmroofline.specs.profile import Efficiency, Profile

LLAMA8B, LLAMA1B, LLAMA70B = "meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.2-1B", \
    "meta-llama/Llama-2-70b-hf"


def singles(adv, devices=False):
    """Accepted single levers, best first (device switches only if asked)."""
    return [lv for lv in adv.accepted if lv.category != "combination"
            and (devices or lv.category != "device")]


def by_name(adv, prefix):
    hits = [lv for lv in adv.levers if lv.lever.startswith(prefix)]
    assert hits, f"no lever starting with {prefix!r}: {[lv.lever for lv in adv.levers]}"
    return hits[0]


# -- memory-bound decode ---------------------------------------------------------------------
def test_memory_bound_decode_ranks_weight_quantization_first():
    adv = advise(LLAMA8B, "h100-sxm", 1, 512, 256, goal="tpot", profile="ideal", devices=())
    assert adv.diagnosis["dominant_regime"] == "memory"
    assert adv.diagnosis["decode"]["regimes"]["memory"] > 0.99
    quant = [lv for lv in singles(adv) if lv.category == "quantization"]
    assert quant[0].lever.startswith("weight-only INT4")
    assert singles(adv)[0] is quant[0]       # and it is the best lever on this device
    int4, fp8 = by_name(adv, "weight-only INT4"), by_name(adv, "W8A8 FP8")
    w8 = by_name(adv, "weight-only INT8")
    assert 1.5 < fp8.gain < int4.gain        # 1 byte per weight vs 0.5 + scales
    assert fp8.gain == pytest.approx(w8.gain, rel=0.01)   # FP8 compute buys nothing here
    assert int4.gain == pytest.approx(3.2, rel=0.1)
    kv8 = by_name(adv, "KV cache 8-bit")
    assert kv8.gain < 1.05                   # 512-token cache is ~1 % of the bytes
    assert int4.regime_after == "memory"


# -- compute-bound prefill ---------------------------------------------------------------------
def test_compute_bound_prefill_ranks_fp8_first_and_kv_quantization_gains_nothing():
    adv = advise(LLAMA8B, "h100-sxm", 16, 4096, 64, goal="ttft", profile="ideal", devices=())
    d = adv.diagnosis
    assert d["dominant_regime"] == "compute" and d["dominant_phase"] == "prefill"
    assert d["prefill"]["intensity"] > d["prefill"]["ridge_point"]
    assert singles(adv)[0].lever.startswith("W8A8 FP8")
    fp8 = by_name(adv, "W8A8 FP8")
    # FP8 doubles the compute-bound projection matmuls only: attention, lm_head (16-bit) and
    # the memory-bound elementwise ops (16-bit activations) keep their time.
    base = lr.analyze(LLAMA8B, "h100-sxm", 16, 4096, 64, profile="ideal")
    proj = sum(float(o.time_s) for o in base.prefill.ops
               if o.kind == "matmul" and o.name != "lm_head")
    assert str(next(o for o in base.prefill.ops if o.name == "qkv_proj").bound) == "compute"
    ttft = float(base.ttft_s)
    assert fp8.gain == pytest.approx(ttft / (ttft - proj / 2), rel=0.01)
    for name in ("KV cache 8-bit", "KV cache 4-bit", "weight-only INT4", "weight-only INT8"):
        assert by_name(adv, name).gain == pytest.approx(1.0, abs=0.005), name
    best_combo = next(lv for lv in adv.accepted if lv.category == "combination")
    assert "FP8" in best_combo.parts


# -- overhead-bound tiny model -------------------------------------------------------------------
def test_overhead_bound_tiny_model_ranks_cuda_graphs_first():
    prof = Profile("launch-20us", fallback=Efficiency(launch_overhead_s=20e-6))
    adv = advise(LLAMA1B, "h100-sxm", 1, 512, 256, goal="tpot", profile=prof)
    assert adv.diagnosis["dominant_regime"] == "overhead"
    first = singles(adv, devices=True)[0]      # device switches included: faster memory
    assert first.lever.startswith("CUDA graphs")  # does not remove launch overhead
    assert first.gain > 2 and first.regime_after == "memory"
    assert "CUDA graphs" in next(lv for lv in adv.accepted).parts
    assert by_name(adv, "weight-only INT4").gain < 1.2


def test_cuda_graphs_not_evaluated_without_launch_overhead():
    adv = advise(LLAMA1B, "h100-sxm", 1, 512, 64, goal="tpot", profile="ideal", devices=())
    assert any(n.startswith("CUDA graphs") for n, _ in adv.skipped)


# -- communication-bound PCIe tensor parallelism ----------------------------------------------
@pytest.mark.parametrize("goal", ["ttft", "throughput", "cost"])
def test_pcie_tp8_fewer_devices_or_pipeline_beat_more_tensor_parallelism(goal):
    adv = advise(LLAMA70B, "l40s", 64, 1024, 256, tp=8, goal=goal, profile="ideal", devices=())
    more = by_name(adv, "TP 8 -> 16")
    alternatives = [lv for lv in adv.accepted if lv.category == "parallelism"
                    and (lv.lever.startswith("TP 8 -> 4") or "PP" in lv.lever
                         or "DP 2" in lv.lever)]
    assert max(lv.gain for lv in alternatives) > more.gain
    if goal == "ttft":
        assert adv.diagnosis["dominant_regime"] == "communication"
        assert "PCIe" in adv.diagnosis["summary"]
        assert by_name(adv, "TP 8 -> PP 8").gain > 1.5 > more.gain
    if goal == "cost":   # tokens/s per device: half the devices do more than half the work
        assert by_name(adv, "TP 8 -> 4").gain > 1.2 > more.gain


# -- every gain is the ratio of two engine runs ------------------------------------------------
EFF = Efficiency(bandwidth=0.8, compute=0.7, launch_overhead_s=5e-6, step_overhead_s=100e-6)
PROF = Profile("explicit", fallback=EFF)
GRAPHS = Profile("graphs", fallback=replace(EFF, launch_overhead_s=5e-6 * GRAPH_FACTOR))


def _analyze(model, hw, batch, I, O, graphs=False, **kw):
    """analyze, or for CUDA graphs: the eager prefill of PROF and the decode steps of a
    profile whose launch overhead is GRAPH_FACTOR x smaller, joined by hand
    (e2e = TTFT + (O - 1) x TPOT, throughput = batch x O / e2e)."""
    eager = lr.analyze(model, hw, batch, I, O, **kw)
    if not graphs:
        return eager
    dec = lr.analyze(model, hw, batch, I, O, **{**kw, "profile": GRAPHS})
    e2e = eager.ttft_s + (O - 1) * dec.tpot_s
    return SimpleNamespace(tpot_s=dec.tpot_s, throughput_tok_s=batch * O / e2e)


def _rerun(lv, model, hw, batch, I, O, tp):
    """The lever's run, rebuilt from its meaning (not from the advisor's internals)."""
    name, cfg = lv.lever, lv.to_dict()["config"]
    kw = dict(profile=PROF, tp=tp)
    graphs = False
    if name.startswith("weight-only INT8"):
        kw["quant"] = "w8a16"
    elif name.startswith("weight-only INT4"):
        kw["quant"] = "w4a16"
    elif name.startswith("W8A8 FP8"):
        kw.update(quant="fp8", kvbits=16)
    elif name.startswith("W8A8 INT8"):
        kw["quant"] = "int8-sq"
    elif name.startswith("KV cache"):
        kw["kvbits"] = int(name.split()[2].split("-")[0])
    elif name.startswith(("larger batch", "paged KV")):
        batch = cfg["batch"]                      # the batch the advisor chose
    elif name.startswith("unfused"):
        kw["flash"] = False
    elif name.startswith("CUDA graphs"):
        graphs = True
    elif name.startswith("switch to"):
        hw = name.split()[-1]
    elif name.startswith(f"TP {tp} -> TP {tp // 2} x DP 2"):
        kw.update(tp=tp // 2, dp=2)
        batch = batch // 2
    elif " x PP " in name or " -> PP " in name:
        kw.update(tp=cfg["tp"], pp=cfg["pp"])
    elif name.startswith(f"TP {tp} -> "):
        kw["tp"] = int(name.split()[3])
    else:
        raise AssertionError(f"no independent recomputation for {name!r}")
    return _analyze(model, hw, batch, I, O, graphs, **kw)


@pytest.mark.parametrize("goal,attr", [("throughput", "throughput_tok_s"), ("tpot", "tpot_s")])
def test_every_gain_is_the_ratio_of_two_engine_runs(goal, attr):
    model, hw, B, I, O, tp = "llama-2-13b", "a100-sxm-80gb", 8, 1024, 128, 2
    adv = advise(model, hw, B, I, O, tp=tp, goal=goal, profile=PROF,
                 devices=["h100-sxm", "l40s"])
    base = getattr(lr.analyze(model, hw, B, I, O, tp=tp, profile=PROF), attr)
    assert adv.diagnosis["value"] == pytest.approx(base, rel=1e-12)
    checked = 0
    for lv in adv.levers:
        if lv.category == "combination":
            continue
        after = getattr(_rerun(lv, model, hw, B, I, O, tp), attr)
        assert lv.before == pytest.approx(base, rel=1e-12), lv.lever
        assert lv.after == pytest.approx(after, rel=1e-9), lv.lever
        assert lv.delta == pytest.approx(after - base, rel=1e-9, abs=1e-15), lv.lever
        ratio = after / base if goal == "throughput" else base / after
        assert lv.gain == pytest.approx(ratio, rel=1e-9), lv.lever
        checked += 1
    assert checked >= 12
    # combinations too, rebuilt part by part
    combos = [lv for lv in adv.levers if lv.category == "combination"]
    assert len(combos) >= 5
    for lv in combos:
        kw, batch, graphs = dict(profile=PROF, tp=tp), B, False
        for part in lv.parts:
            if part in ("W4A16", "W8A16", "INT8-SQ"):
                kw["quant"] = {"W4A16": "w4a16", "W8A16": "w8a16", "INT8-SQ": "int8-sq"}[part]
            elif part in ("KV4", "KV8"):
                kw["kvbits"] = int(part[2:])
            elif part == "CUDA graphs":
                graphs = True
            elif part.startswith("TP "):
                kw["tp"] = int(part.split()[1])
            elif part in ("paged KV", "larger batch"):
                batch = lv.to_dict()["config"]["batch"]
            else:
                raise AssertionError(f"unexpected part {part!r} in {lv.lever}")
        after = getattr(_analyze(model, hw, batch, I, O, graphs, **kw), attr)
        assert lv.after == pytest.approx(after, rel=1e-9), lv.lever


def test_speculative_lever_is_the_engine_speculative_run():
    adv = advise(LLAMA8B, "h100-sxm", 1, 512, 129, goal="tpot", profile="ideal", devices=(),
                 draft=LLAMA1B, draft_k=4, accept=0.8)
    lv = by_name(adv, "speculative decoding")
    sp = decoding.speculative(LLAMA8B, "h100-sxm", 1, 512, 129, draft=LLAMA1B, draft_k=4,
                              accept=0.8, profile="ideal")
    assert lv.after == pytest.approx(float(sp.tpot_s), rel=1e-12)
    assert lv.gain == pytest.approx(float(sp.tpot_speedup), rel=1e-9)
    assert lv.gain > 1.8          # memory-bound target, cheap draft (conventions: 2.02x)
    assert lv.memory_after_bytes == pytest.approx(float(sp.memory.total_bytes))


# -- constraints and memory ------------------------------------------------------------------------
def test_constraints_bound_the_batch_and_reject_violators():
    adv = advise("llama-2-7b", "a100-sxm-80gb", 8, 1024, 256, goal="throughput",
                 profile="ideal", devices=("h100-sxm", "t4"), max_tpot_s=0.012)
    big = by_name(adv, "larger batch")
    assert not big.rejected and big.outcome.tpot_s <= 0.012 and big.gain > 1
    assert big.outcome.setup.batch > 8
    for lv in adv.accepted:
        assert lv.outcome.fits and lv.outcome.tpot_s <= 0.012
    t4 = by_name(adv, "switch to t4")
    assert t4.rejected and "does not fit" in t4.rejected and "TPOT" in t4.rejected
    gains = [lv.gain for lv in adv.accepted]
    assert gains == sorted(gains, reverse=True)
    assert all(lv.rejected for lv in adv.levers[len(adv.accepted):])


def test_paged_kv_fits_more_sequences_than_static_reservation():
    adv = advise("llama-2-7b", "a100-sxm-80gb", 1, 256, 2048, goal="throughput",
                 profile="ideal", devices=())
    static, paged = by_name(adv, "larger batch"), by_name(adv, "paged KV")
    assert paged.outcome.setup.batch > 1.5 * static.outcome.setup.batch   # 1280 vs 2304 tokens
    assert paged.memory_after_bytes <= paged.capacity_bytes


def test_offloading_only_when_the_baseline_does_not_fit():
    adv = advise(LLAMA70B, "h100-sxm", 1, 512, 64, goal="tpot", profile="ideal", devices=())
    assert not adv.diagnosis["fits"] and adv.notes
    off = by_name(adv, "offload to host memory")
    assert off.outcome.fits and not off.rejected
    frac = off.outcome.setup.layout.offload_weights
    assert 0.4 < frac < 0.5        # 138 GB of weights into 80 GB
    assert off.gain < 0.2          # the host link sets the pace
    assert by_name(adv, "weight-only INT4").gain > 1 and by_name(adv, "weight-only INT4").fits
    assert by_name(adv, "KV cache 8-bit").rejected    # still 138 GB
    fits = advise(LLAMA8B, "h100-sxm", 1, 512, 64, goal="tpot", profile="ideal", devices=())
    assert any(n == "offload to host memory" for n, _ in fits.skipped)


def test_no_fp8_units_no_fp8_lever():
    adv = advise("llama-2-7b", "a100-sxm-80gb", 64, 2048, 16, goal="ttft", profile="ideal",
                 devices=())
    assert not any(lv.lever.startswith("W8A8 FP8") for lv in adv.levers)
    assert by_name(adv, "W8A8 INT8").gain > 1.5      # A100 has INT8 tensor cores
    v100 = advise("llama-2-7b", "v100-sxm2-32gb", 1, 512, 16, goal="ttft", profile="ideal",
                  devices=())
    assert any(n.startswith("W8A8") for n, _ in v100.skipped)


# -- diagnosis ----------------------------------------------------------------------------------------
def test_diagnosis_shares_sum_to_one_and_name_the_bottleneck():
    a = lr.analyze(LLAMA70B, "l40s", 8, 1024, 128, tp=4, profile="default")
    for goal in ("throughput", "latency", "ttft", "tpot", "cost"):
        d = diagnose(a, goal)
        for key in ("regimes", "classes"):
            assert sum(d[key].values()) == pytest.approx(1.0)
            for ph in ("prefill", "decode"):
                assert sum(d[ph][key].values()) == pytest.approx(1.0)
        assert d["dominant_regime"] in REGIMES
        assert d["summary"].lower().startswith(d["dominant_regime"])
    assert diagnose(a, "ttft")["phase_weights"] == {"prefill": 1.0, "decode": 0.0}
    pp = lr.analyze(LLAMA70B, "l40s", 8, 1024, 128, pp=4, profile="ideal")
    d = diagnose(pp, "ttft")      # GPipe prefill: (4 + 3) slots for 4 micro-batches
    assert 3 / 7 < d["regimes"]["pipeline"] < 0.6 and d["classes"]["pipeline"] > 3 / 7


def test_bad_inputs():
    with pytest.raises(InputError, match="goal"):
        advise("llama-2-7b", "a100-sxm-80gb", goal="speed")
    with pytest.raises(InputError, match="batch"):
        advise("llama-2-7b", "a100-sxm-80gb", batch=0)
    with pytest.raises(InputError, match="max_tpot"):
        advise("llama-2-7b", "a100-sxm-80gb", max_tpot_s=-1)
    with pytest.raises(InputError, match="devices"):
        advise("llama-2-7b", "a100-sxm-80gb", devices=["h100-sxn"])
    with pytest.raises(InputError, match="draft"):
        advise("llama-2-7b", "a100-sxm-80gb", draft="no-such-model")


# -- command line ------------------------------------------------------------------------------------
def test_cli_advise_json_contract(capsys):
    args = ["advise", "-m", "llama-2-7b", "-H", "a100-sxm-80gb", "-b", "4", "-i", "1024",
            "-o", "128", "--goal", "tpot", "--max-tpot", "20ms", "--devices", "h100-sxm,l4",
            "--json"]
    assert cli.main(args) == 0
    d = json.loads(capsys.readouterr().out)
    assert set(d) >= {"diagnosis", "levers", "skipped"}
    assert d["diagnosis"]["goal"] == "tpot" and d["diagnosis"]["summary"]
    keys = {"lever", "before", "after", "gain", "regime_after", "memory_after_bytes", "caveat",
            "rejected"}
    for lv in d["levers"]:
        assert keys <= set(lv)
    ok = [lv for lv in d["levers"] if not lv["rejected"]]
    assert [lv["gain"] for lv in ok] == sorted((lv["gain"] for lv in ok), reverse=True)
    assert d["levers"][: len(ok)] == ok
    l4 = next(lv for lv in d["levers"] if lv["lever"] == "switch to l4")
    assert l4["rejected"] and "TPOT" in l4["rejected"]


def test_cli_advise_table_and_errors(capsys):
    assert cli.main(["advise", "-m", "llama-2-7b", "-b", "1", "--devices", "none",
                     "--profile", "ideal", "--goal", "latency"]) == 0
    text = capsys.readouterr().out
    assert "Bottleneck:" in text and "weight-only INT4" in text and "Not evaluated" in text
    assert cli.main(["advise", "--goal", "fast"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: goal") and len(err.splitlines()) == 1


def test_stream_k_lever_is_the_run_without_wave_losses():
    # A 128-token prefill on an A100: o_proj and down_proj are 32 tiles on 108 SMs, so a
    # profile that pays 80 % of the idle share gains from stream-K GEMMs; the lever's run
    # equals analyze with the same profile rebuilt by hand with wave_quantization = 0.
    waves = replace(EFF, wave_quantization=0.8)
    adv = advise(LLAMA8B, "a100-sxm-80gb", 1, 128, 16, goal="ttft",
                 profile=Profile("w", fallback=waves))
    lv = by_name(adv, "stream-K GEMMs")
    flat = lr.analyze(LLAMA8B, "a100-sxm-80gb", 1, 128, 16,
                      profile=Profile("flat", fallback=replace(waves, wave_quantization=0.0)))
    base = lr.analyze(LLAMA8B, "a100-sxm-80gb", 1, 128, 16, profile=Profile("w", fallback=waves))
    assert lv.after == pytest.approx(float(flat.ttft_s), rel=1e-12)
    assert lv.gain == pytest.approx(float(base.ttft_s / flat.ttft_s), rel=1e-12)
    assert lv.gain > 1.05
    # no wave term in the profile: nothing to recover, said so
    plain = advise(LLAMA8B, "a100-sxm-80gb", 1, 128, 16, goal="ttft", profile=PROF)
    assert any(n == "stream-K GEMMs" for n, _ in plain.skipped)
    assert not any(lv.lever.startswith("stream-K") for lv in plain.levers)
