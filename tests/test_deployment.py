"""One resolved deployment and engines as data: the resolver is the only place a setup is
merged, so analyze and the serving cost must price the same deployment identically; the
engines' KV-memory rules checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

import llmroofline as lr
from llmroofline.cli import main
from llmroofline.deployment import Deployment, merge_precision, resolve
from llmroofline.errors import InputError
from llmroofline.parallel import Layout
from llmroofline.serving.config import kv_blocks_of, scheduler_config
from llmroofline.serving.cost import IterationCost
from llmroofline.specs.engine import KVMemoryRule, compose_engine, load_engine
from llmroofline.specs.precision import Precision

# (scheme, overrides) -> the bits they must mean, written out by hand
PRECISIONS = [
    ("fp16", {}, (16, 16, 16)),
    ("fp8", {}, (8, 8, 8)),
    ("w4a16", {}, (4, 16, 16)),
    ("fp8", {"kvbits": 16}, (8, 8, 16)),
    ("w8a16,kv-fp8", {}, (8, 16, 8)),
    (Precision(), {"wbits": 4}, (4, 16, 16)),      # the old IterationCost.of dropped wbits
    (Precision(wbits=8, abits=8, kvbits=8), {"abits": 16}, (8, 16, 8)),
]


@pytest.mark.parametrize("quant,over,bits", PRECISIONS)
def test_merge_precision_by_hand(quant, over, bits):
    p = merge_precision(quant, **over)
    assert (p.wbits, p.abits, p.kvbits) == bits


@pytest.mark.parametrize("overlap", [False, True])
@pytest.mark.parametrize("quant,over,bits", PRECISIONS)
def test_serving_cost_equals_analyze_for_every_precision(quant, over, bits, overlap):
    """A pure-prefill and a pure-decode iteration of the serving cost equal analyze's
    prefill and decode step to 1e-9, for every precision given as scheme + overrides,
    with collectives hidden behind matmuls (overlap) and not."""
    lay = Layout(tp=2, overlap=overlap)
    c = IterationCost.of("llama-3.1-8b", "h100-sxm", quant=quant, layout=lay, max_batch=64,
                         max_tokens=4096, **over)
    assert (c.prec.wbits, c.prec.abits, c.prec.kvbits) == bits
    for B, I in ((1, 1000), (16, 200)):
        a = lr.analyze("llama-3.1-8b", "h100-sxm", B, I, 2, quant=quant, layout=lay, **over)
        pre = c.time(np.full(B, float(I)), np.full(B, float(I)), prefill=True)
        dec = c.time(np.ones(B), np.full(B, I + 1.0))
        assert pre == pytest.approx(float(a.ttft_s), rel=1e-9)
        assert dec == pytest.approx(float(a.decode.total_time_s), rel=1e-9)


def test_overlap_hides_collectives_in_both_paths():
    """With overlap the visible collective time is max(C - G, 0): it must shrink the step
    against the same layout without overlap, in analyze and the serving cost alike."""
    off = IterationCost.of("llama-3.1-8b", "h100-sxm", layout=Layout(tp=4), max_batch=8)
    on = IterationCost.of("llama-3.1-8b", "h100-sxm", layout=Layout(tp=4, overlap=True),
                          max_batch=8)
    q, L = np.full(8, 512.0), np.full(8, 512.0)
    assert on.time(q, L) < off.time(q, L)


def test_resolver_is_the_one_place_and_rejects_mixtures():
    d = resolve("llama-2-7b", "h100-sxm", quant="fp8", tp=2, engine="trtllm-0.8")
    assert isinstance(d, Deployment)
    assert (d.precision.wbits, d.layout.tp, d.engine.name) == (8, 2, "trtllm-0.8")
    assert resolve(d) is d
    with pytest.raises(InputError, match="deployment: given a resolved Deployment"):
        resolve(d, quant="fp16")
    with pytest.raises(InputError, match="layout: give either"):
        resolve("llama-2-7b", layout=Layout(tp=2), tp=2)
    # analyze and the serving cost take the resolved deployment as it is
    a = lr.analyze(d, batch=4, input_len=256, output_len=16)
    assert a.deployment is d and a.engine == "trtllm-0.8"
    b = lr.analyze("llama-2-7b", "h100-sxm", 4, 256, 16, quant="fp8", tp=2, engine="trtllm-0.8")
    assert float(a.e2e_s) == float(b.e2e_s)
    assert IterationCost.of(d).deployment is d


def test_profile_and_preset_are_the_two_halves_of_an_engine():
    trt, dflt = load_engine("trtllm-0.8"), load_engine("default")
    mixed = compose_engine(None, profile="trtllm-0.8", preset=None)
    assert mixed.profile == trt.profile and mixed.batching == dflt.batching
    mixed = compose_engine(None, profile=None, preset="trtllm")       # alias of trtllm-0.8
    assert mixed.profile == dflt.profile and mixed.batching == trt.batching
    assert mixed.runtime_gb == 3.0 and trt.batching.max_tokens == 2048
    with pytest.raises(InputError, match="preset: unknown engine 'sglangg'"):
        compose_engine(None, preset="sglangg")
    with pytest.raises(InputError, match=r"engine: unknown engine 'vlm' \(did you mean: vllm"):
        load_engine("vlm")


def test_engine_files_hold_the_shipped_facts():
    """Values written in the engine files, checked against the sources they cite."""
    v = load_engine("vllm")
    assert (v.batching.max_batch, v.batching.max_tokens, v.batching.block_size) == (256, 8192, 16)
    assert (v.kv_memory.rule, v.kv_memory.fraction) == ("total_fraction", 0.9)
    assert v.profile == load_engine("default").profile           # efficiency_from = default
    t = load_engine("trtllm-0.8")
    assert (t.batching.max_batch, t.batching.block_size, t.kv_memory.rule) == (2048, 64,
                                                                              "free_fraction")
    hop = load_engine("default").profile.families["hopper-a8"]
    assert (hop.gqa_max_group, hop.gqa_covers_sliding_window) == (16.0, False)
    assert load_engine("ideal").bare_roofline


def test_kv_rules_by_hand_llama2_70b_tp2_a100():
    """Llama-2-70B at TP 2 on A100 80 GB: vLLM's rule against TensorRT-LLM's by hand.

    Per device: weights = 68,976,648,192 parameters x 2 bytes / 2 ranks (the slices of
    parallel.py: embedding and lm_head split by vocabulary, norms replicated); KV per token
    = 2 (K, V) x 80 layers x 8 KV heads / 2 ranks x 128 x 2 bytes = 163,840 bytes. The
    activation peak of an 8192-token iteration is read from the engine (its own test
    covers it); the rules differ only in where the fraction applies."""
    c = IterationCost.of("meta-llama/Llama-2-70b-hf", "a100-sxm-80gb", layout=Layout(tp=2),
                         max_tokens=8192)
    assert c.kv_bytes_per_token == 2 * 80 * (8 // 2) * 128 * 2
    W = c.weights_bytes
    M_vis = 81920 * 2**20        # nvidia-smi's 81,920 MiB of an A100 80 GB
    M_mkt = 80e9                 # the datasheet's 80 GB
    from llmroofline.graph import build_ops
    from llmroofline.memory import activation_peak_bytes
    ops = build_ops(c.model, c.prec, 1, 8192.0, 8192.0, flash=True, layout=Layout(tp=2),
                    mla_absorb=None)
    A = float(activation_peak_bytes(c.model, c.prec, 1, 8192, ops))
    trt = int(0.9 * (M_mkt - W - A) // 163840)       # as the TensorRT-LLM 0.10 fit saw it
    vllm = int((0.9 * M_vis - W - A) // 163840)
    assert c.kv_capacity_tokens(8192, 0.9, 0.0, "free_fraction", "marketed") == trt == 55937
    assert c.kv_capacity_tokens(8192, 0.9, 0.0, "total_fraction", "visible") == vllm
    assert 45_000 < vllm < 46_500        # the "about 45,700" at the real 81,920 MiB
    # the engines' own scheduler configs pick their rule and capacity
    cfg = scheduler_config(load_engine("vllm"))
    assert (cfg.kv_rule, cfg.kv_capacity) == ("total_fraction", "visible")
    assert kv_blocks_of(c, cfg) == vllm // 16
    assert scheduler_config(load_engine("trtllm-0.8")).kv_capacity == "marketed"
    sg = KVMemoryRule("static_fraction", 0.88)
    assert sg.pool_bytes(M_vis, W, A) == pytest.approx(0.88 * M_vis - W)


def test_cli_engines_and_engine_option(capsys):
    assert main(["engines", "--json"]) == 0
    out = capsys.readouterr().out
    for name in ("default", "ideal", "trtllm-0.8", "lmdeploy-0.1", "vllm"):
        assert f'"name": "{name}"' in out
    assert main(["analyze", "--engine", "trtllm-0.8", "--json"]) == 0
    assert '"engine": "trtllm-0.8"' in capsys.readouterr().out
    assert main(["analyze", "--engine", "vlm"]) == 2
    assert "did you mean: vllm" in capsys.readouterr().err


def test_setup_fields_are_declared_once_for_cli_and_web():
    """Every declared setup field reaches the CLI options and the web schema with the
    declared default and help text (so a field is written in one place)."""
    import typer
    from llmroofline.cli.common import app
    from llmroofline.deployment import SETUP_FIELDS
    from llmroofline.web.schemas import AnalyzeRequest
    cmd = typer.main.get_command(app).commands["analyze"]
    opts = {p.name: p for p in cmd.params}
    for name, f in SETUP_FIELDS.items():
        assert opts[name].default == f.default and opts[name].help == f.help, name
        if f.web:
            w = AnalyzeRequest.model_fields[name]
            assert w.default == f.default and w.description == f.help, name
    # simulate takes the same declaration for the fields it lists
    sim = {p.name: p for p in typer.main.get_command(app).commands["simulate"].params}
    assert sim["engine"].help == SETUP_FIELDS["engine"].help and sim["tp"].default == 1
