"""Devices and systems of 2025-2026, family lineage of efficiency, and native quantization.

Every expected number here is derived by hand in the test from the configs' shapes or
copied by hand from ``reference/hardware/new_devices_2026.md``; none is the engine's
output pasted back.
"""

from __future__ import annotations

import json
import math
from importlib import resources

import numpy as np
import pytest

import llmroofline as lr
from llmroofline.cost import Roofline, host_link_bytes_s
from llmroofline.errors import InputError
from llmroofline.graph import build_ops
from llmroofline.memory import weight_bytes_total
from llmroofline.parallel import Layout
from llmroofline.specs.catalog import load_model
from llmroofline.specs.hardware import from_dict, load_hardware
from llmroofline.specs.model import from_hf_config
from llmroofline.specs.precision import Precision
from llmroofline.specs.profile import Efficiency, load_profile
from llmroofline.specs.quant_config import resolve_precision

MIB = 1024 * 1024


def _builtin_config(name: str) -> dict:
    root = resources.files("llmroofline") / "data" / "models"
    return json.loads((root / name).read_text())


# -- devices: values hand-copied from reference/hardware/new_devices_2026.md ----------------
NEW_DEVICES = {
    # id: (memory GB, nvidia-smi MiB, TB/s, BF16 TF, FP8 TF, FP4 TF, INT8 TOPS, W,
    #      scale-out GB/s per GPU, NVLink domain)
    "b300": (288, 275_040, 7.75, 2250, 4500, 14_000, 153.5, 1100, 100, 8),
    "gb300": (288, 284_208, 8.0, 2500, 5000, 15_000, 165, 1400, 100, 72),
    # GH200: the NVL32 rack, NVLink 4 to the other GPUs (a standalone superchip is
    # --gpus-per-node 1)
    "gh200-96gb": (96, None, 4.0, 989, 1979, None, 1979, 1000, 50, 32),
    "gh200-144gb": (144, None, 4.9, 989, 1979, None, 1979, 1000, 50, 32),
    "rtx-pro-6000-server": (96, 97_887, 1.792, 467.8, 935.6, 1871, 935.6, 600, 50, 8),
}


@pytest.mark.parametrize("dev", list(NEW_DEVICES))
def test_new_device_entries_match_the_reference(dev):
    mem, mib, tbs, bf16, fp8, fp4, int8, watts, out_gbs, domain = NEW_DEVICES[dev]
    hw = load_hardware(dev)
    assert hw.memory_bytes == mem * 1e9
    assert hw.mem_bw_bytes_s == pytest.approx(tbs * 1e12, rel=1e-12)
    # the reference rounds H100-class peaks to 989 / 1979 TF; the catalog keeps 989.4 / 1978.9
    assert hw.peak("bf16") == pytest.approx(bf16 * 1e12, rel=1e-3)
    assert hw.peak("fp8") == pytest.approx(fp8 * 1e12, rel=1e-3)
    assert hw.peak("int8") == pytest.approx(int8 * 1e12, rel=1e-3)
    assert (hw.peak("fp4") is None) if fp4 is None else hw.peak("fp4") == fp4 * 1e12
    assert hw.tdp_w == watts
    assert hw.scaleout_bytes_s == out_gbs * 1e9
    assert hw.nvlink_domain == domain
    if mib is None:
        assert hw.memory_mib is None and hw.visible_memory_bytes == hw.memory_bytes
    else:
        assert hw.visible_memory_bytes == mib * MIB


def test_blackwell_ultra_int8_cut_and_fp4_everywhere():
    # Blackwell Ultra: INT8 cut to 153.5 / 165 TOPS, against 4500 / 5000 on B200 / GB200
    assert load_hardware("b300").peak("int8") < load_hardware("b200").peak("int8") / 25
    assert load_hardware("gb300").peak("int8") < load_hardware("gb200").peak("int8") / 25
    # reference README: B200 FP4 9 PF, GB200 10 PF dense; every Blackwell part has FP4
    assert load_hardware("b200").peak("fp4") == 9000e12
    assert load_hardware("gb200").peak("fp4") == 10_000e12
    for dev in ("b100", "b200", "gb200", "b300", "gb300", "rtx-5090", "rtx-pro-6000"):
        assert load_hardware(dev).peak("fp4"), dev
    for dev in ("h100", "h200", "gh200", "gh200-144"):
        assert load_hardware(dev).peak("fp4") is None, dev


def test_memory_mib_where_the_sources_state_it():
    assert load_hardware("a100").visible_memory_bytes == 81_920 * MIB
    assert load_hardware("h100").visible_memory_bytes == 81_559 * MIB
    assert load_hardware("h200").visible_memory_bytes == 143_771 * MIB
    assert load_hardware("gb200").visible_memory_bytes == 189_471 * MIB
    # memory_gb keeps its meaning: the marketed decimal capacity
    assert load_hardware("a100").memory_bytes == 80e9


def test_systems_and_aliases():
    assert load_hardware("gb200").nvlink_domain == 72
    assert load_hardware("gb300-nvl72").id == "gb300"
    assert load_hardware("h100").nvlink_domain == 8 and load_hardware("b200").nvlink_domain == 8
    assert load_hardware("gh200").id == "gh200-96gb"
    assert load_hardware("rtx-pro-6000").id == "rtx-pro-6000-server"
    # GH200 offload streams over NVLink-C2C: 900 GB/s bidirectional = 450 per direction
    assert host_link_bytes_s(load_hardware("gh200")) == 450e9
    assert host_link_bytes_s(load_hardware("h100")) == 64e9


@pytest.mark.parametrize("bad", [0, 2000, 8.5, "8"])
def test_bad_nvlink_domain_is_one_line(bad):
    d = {"name": "x", "memory_gb": 80, "mem_bw_gb_s": 2000, "bf16_tflops": 100, "nvlink_domain": bad}
    with pytest.raises(InputError, match="nvlink_domain") as e:
        from_dict("x", d)
    assert "\n" not in str(e.value)


# -- collectives across nodes, by hand -------------------------------------------------------
def test_allreduce_across_hgx_nodes_uses_the_network_by_hand():
    hw = load_hardware("h100-sxm")
    roof = Roofline.of(hw, Precision(), Layout(tp=16), Efficiency())
    n, a, bw = 16, 10e-6, 50e9          # 10 us per network hop, 400 Gb/s NIC per GPU
    for S in (1e3, 64 * 7168 * 2, 64e6):
        ring = 2 * (n - 1) * a + 2 * (n - 1) / n * S / bw
        tree = 2 * math.log2(n) * a + 2 * S / bw
        assert float(roof.comm_s("allreduce", S, n)) == pytest.approx(min(ring, tree), rel=1e-12)
    # 8 GPUs stay on NVLink (900 GB/s bidirectional -> 450 per direction, 2 us per hop)
    S = 64 * 7168 * 2
    one, two = 2e-6 + 7 * S / 450e9, 2 * 2e-6 + 2 * 7 / 8 * S / 450e9
    assert float(roof.comm_s("allreduce", S, 8)) == pytest.approx(min(one, two), rel=1e-12)


def test_tp16_inside_an_nvl72_rack_stays_on_nvlink_by_hand():
    roof = Roofline.of(load_hardware("gb200"), Precision(), Layout(tp=16), Efficiency())
    S, n, a, bw = 1e6, 16, 2e-6, 900e9
    one, two = a + (n - 1) * S / bw, 2 * a + 2 * (n - 1) / n * S / bw
    assert float(roof.comm_s("allreduce", S, n)) == pytest.approx(min(one, two), rel=1e-12)
    # ... unless the user says the domain is an 8-GPU node
    roof8 = Roofline.of(load_hardware("gb200"), Precision(), Layout(tp=16, gpus_per_node=8),
                        Efficiency())
    ring = 2 * (n - 1) * 10e-6 + 2 * (n - 1) / n * S / 50e9
    tree = 2 * 4 * 10e-6 + 2 * S / 50e9
    assert float(roof8.comm_s("allreduce", S, n)) == pytest.approx(min(ring, tree), rel=1e-12)


def test_analyze_tp16_shows_where_the_network_binds():
    a = lr.analyze("deepseek-ai/DeepSeek-V3", "h100-sxm", batch=64, input_len=128, output_len=2,
                   layout=Layout(tp=16), profile="ideal")
    rows = {o.name: o for o in a.decode.ops}
    ar = rows["attn_allreduce"]
    assert str(ar.bound) == "communication"
    # one decode step: 64 rows x 7168 hidden x 2 bytes per all-reduce, 61 layers
    S = 64 * 7168 * 2
    per = min(2 * 15 * 10e-6 + 2 * 15 / 16 * S / 50e9, 2 * 4 * 10e-6 + 2 * S / 50e9)
    assert float(ar.time_s) == pytest.approx(61 * per, rel=1e-9)
    assert any("NVLink domain" in w and "scale-out" in w for w in a.warnings)
    # the same split on a GB200 NVL72 rack stays on NVLink: no network note, faster
    b = lr.analyze("deepseek-ai/DeepSeek-V3", "gb200", batch=64, input_len=128, output_len=2,
                   layout=Layout(tp=16), profile="ideal")
    assert not any("NVLink domain" in w for w in b.warnings)
    assert float({o.name: o for o in b.decode.ops}["attn_allreduce"].time_s) < float(ar.time_s) / 10


def test_ep64_and_pp2_across_nodes_run():
    a = lr.analyze("deepseek-ai/DeepSeek-V3", "h100-sxm", batch=64, layout=Layout(tp=64, ep=64))
    assert {"moe_dispatch", "moe_combine"} <= {o.name for o in a.decode.ops}
    assert any("EP64" in w for w in a.warnings)
    p = lr.analyze("meta-llama/Llama-3.1-70B", "h100-sxm", batch=8, layout=Layout(tp=8, pp=2))
    assert any("PP2" in w for w in p.warnings)
    same = lr.analyze("meta-llama/Llama-3.1-70B", "h100-sxm", batch=8,
                      layout=Layout(tp=8, pp=2, gpus_per_node=16))
    assert float(p.tpot_s) > float(same.tpot_s)   # the stage boundary pays the network


# -- efficiency by family lineage ------------------------------------------------------------
def test_blackwell_resolves_as_hopper_not_the_fallback():
    prof = load_profile("default")
    for abits in (16, 8, 4):
        key = prof.entry_key("blackwell", abits)
        assert key != "fallback" and key == prof.entry_key("hopper", abits)
        assert prof.for_family("blackwell", abits) == prof.for_family("hopper", abits)
    # FP4 used to fall back to the all-rows entry (831 us step overhead)
    assert prof.for_family("blackwell", 4).step_overhead_s != prof.fallback.step_overhead_s


def test_b200_decode_step_between_physical_bounds():
    kw = dict(batch=1, input_len=128, output_len=64, quant="fp8")
    b200 = lr.analyze("meta-llama/Llama-3.1-8B", "b200", **kw)
    h100 = lr.analyze("meta-llama/Llama-3.1-8B", "h100-sxm", **kw)
    assert b200.efficiency == h100.efficiency          # same kernels, by lineage
    # lower bound: every FP8 matmul weight (16-bit lm_head) streamed once at 8 TB/s
    h, v, layers = 4096, 128_256, 32
    per_layer = h * (4096 + 2 * 1024) + 4096 * h + 3 * h * 14_336
    floor = (layers * per_layer * 1 + v * h * 2) / 8e12
    assert float(b200.tpot_s) > floor
    ideal = lr.analyze("meta-llama/Llama-3.1-8B", "b200", profile="ideal", **kw)
    assert floor <= float(ideal.tpot_s) <= float(b200.tpot_s)
    # upper bound: the same kernels on a device with less of everything (H100)
    assert float(b200.tpot_s) < float(h100.tpot_s)


# -- native quantization: weight bytes of releases, by hand -----------------------------------
def test_gpt_oss_120b_as_released_by_hand():
    """MXFP4 experts (4 bits + one E8M0 byte per 32), everything else BF16."""
    h, L, heads, kvh, d, E, f, vocab = 2880, 36, 64, 8, 64, 128, 2880, 201_088
    attn = h * heads * d + 2 * h * kvh * d + heads * d * h
    attn_bias = heads * d + 2 * kvh * d + h
    sinks = heads
    experts = E * (h * 2 * f + f * h)
    expert_bias = E * (2 * f + h)
    router = h * E + E
    norms = 2 * h
    bf16_params = L * (attn + attn_bias + sinks + expert_bias + router + norms) + h + 2 * vocab * h
    mxfp4 = 4 / 8 + 1 / 32
    expected = L * experts * mxfp4 + bf16_params * 2
    m = load_model("openai/gpt-oss-120b")
    prec, notes = resolve_precision(m)
    assert weight_bytes_total(m, prec) == pytest.approx(expected, rel=1e-12)
    assert 64e9 < expected < 66e9                      # the ~65 GB release
    assert weight_bytes_total(m, Precision()) > 230e9  # what the BF16 pricing said before
    assert prec.abits == 16 and "mxfp4" in notes[0]    # weight-only: BF16 activations


def _deepseek_v3_shapes():
    h, L, dense, F, f, E, q_lora, kv_lora, nope, rope, v, H, vocab = (
        7168, 61, 3, 18_432, 2048, 256, 1536, 512, 128, 64, 128, 128, 129_280)
    qkv = [(h, q_lora), (q_lora, H * (nope + rope)), (h, kv_lora + rope), (kv_lora, H * (nope + v))]
    o = [(H * v, h)]
    dense_mlp = [(h, F), (h, F), (F, h)]
    expert = [(h, f), (h, f), (f, h)]
    small = L * (2 * h + q_lora + kv_lora) + (L - dense) * h * E + h   # norms, router, final norm
    return dict(L=L, dense=dense, E=E, qkv=qkv, o=o, dense_mlp=dense_mlp, expert=expert,
                small=small, embed=2 * vocab * h)


def test_deepseek_v3_fp8_block_scaled_by_hand():
    """FP8 E4M3 weights with one FP32 scale per 128 x 128 block; lm_head/embedding BF16."""
    s = _deepseek_v3_shapes()

    def fp8(mats):
        return sum(r * c + 4 * math.ceil(r / 128) * math.ceil(c / 128) for r, c in mats)
    moe = s["L"] - s["dense"]
    expected = (s["L"] * fp8(s["qkv"] + s["o"]) + s["dense"] * fp8(s["dense_mlp"])
                + moe * (s["E"] + 1) * fp8(s["expert"]) + 2 * (s["small"] + s["embed"]))
    m = load_model("deepseek-ai/DeepSeek-V3")
    prec, _ = resolve_precision(m)
    # the engine spreads the block scales per element (4 / 16384 bytes); the exact block
    # count differs only where a side is not a multiple of 128 (kv_a_proj's 576 columns)
    assert weight_bytes_total(m, prec) == pytest.approx(expected, rel=1e-5)
    assert 670e9 < expected < 676e9                    # the ~673 GB FP8 release
    assert weight_bytes_total(m, Precision()) > 1300e9
    assert (prec.wbits, prec.abits) == (8, 8)


def _nvfp4_bytes(r, c):
    """NVFP4: 4-bit E2M1 + one FP8 E4M3 scale per 16, plus two FP32 per-tensor scales
    (weight_scale_2, input_scale) that the engine neglects."""
    return r * c / 2 + r * c / 16 + 8


QWEN3_235B = {
    "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": 4096,
    "num_hidden_layers": 94, "num_attention_heads": 64, "num_key_value_heads": 4, "head_dim": 128,
    "intermediate_size": 12288, "moe_intermediate_size": 1536, "num_experts": 128,
    "num_experts_per_tok": 8, "vocab_size": 151_936, "max_position_embeddings": 40960,
    "tie_word_embeddings": False, "attention_bias": False, "decoder_sparse_step": 1,
    "mlp_only_layers": [], "use_sliding_window": False, "sliding_window": None}
QWEN3_235B_SIDECAR = {
    "producer": {"name": "modelopt", "version": "0.33.0"},
    "quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": "FP8", "group_size": 16,
                     "exclude_modules": [f"model.layers.{i}.mlp.gate" for i in range(94)]
                     + ["lm_head"]}}


def test_qwen3_235b_nvfp4_release_by_hand(tmp_path):
    """nvidia/Qwen3-235B-A22B-NVFP4: attention and experts NVFP4 (only the routers and
    lm_head are excluded), KV cache FP8; the sidecar is found beside the config file."""
    (tmp_path / "nvidia__Qwen3-235B-A22B-NVFP4.json").write_text(json.dumps(QWEN3_235B))
    (tmp_path / "nvidia__Qwen3-235B-A22B-NVFP4.hf_quant_config.json").write_text(
        json.dumps(QWEN3_235B_SIDECAR))
    h, L, H, kvh, d, E, f, vocab = 4096, 94, 64, 4, 128, 128, 1536, 151_936
    attn = [(h, H * d), (h, kvh * d), (h, kvh * d), (H * d, h)]
    expert = [(h, f), (h, f), (f, h)]
    nvfp4 = L * (sum(_nvfp4_bytes(*x) for x in attn) + E * sum(_nvfp4_bytes(*x) for x in expert))
    bf16 = L * (2 * h + 2 * d + h * E) + h + 2 * vocab * h    # norms, q/k norms, router, head
    expected = nvfp4 + 2 * bf16
    m = load_model(str(tmp_path / "nvidia__Qwen3-235B-A22B-NVFP4.json"))
    prec, _ = resolve_precision(m)
    assert weight_bytes_total(m, prec) == pytest.approx(expected, rel=1e-5)
    assert (prec.wbits, prec.abits, prec.kvbits) == (4, 4, 8)
    # NVFP4 scales (1 byte / 16) cost twice MXFP4's (1 byte / 32)
    assert m.native_quant.bytes_per_weight("experts") == 4.5 / 8
    assert load_model("openai/gpt-oss-120b").native_quant.bytes_per_weight("experts") == 4.25 / 8


def test_deepseek_v31_nvfp4_keeps_mla_projections_16bit_by_hand(tmp_path):
    """nvidia/DeepSeek-V3.1-NVFP4 excludes q_a/q_b/kv_a/kv_b of every layer (and the MTP
    layer 61, not priced) but quantizes o_proj, the dense and shared MLPs and the experts."""
    cfg = {k: v for k, v in _builtin_config("deepseek-ai__DeepSeek-V3.json").items()
           if k != "quantization_config"}
    excl = ["lm_head", "model.layers.61*"] + [
        f"model.layers.{i}.self_attn.{p}" for i in range(61)
        for p in ("kv_a_proj_with_mqa", "kv_b_proj", "q_a_proj", "q_b_proj")]
    side = {"quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": "FP8",
                             "group_size": 16, "exclude_modules": excl}}
    (tmp_path / "ds.json").write_text(json.dumps(cfg))
    (tmp_path / "ds.hf_quant_config.json").write_text(json.dumps(side))
    s = _deepseek_v3_shapes()
    moe = s["L"] - s["dense"]
    fp4 = (s["L"] * sum(_nvfp4_bytes(*x) for x in s["o"])
           + s["dense"] * sum(_nvfp4_bytes(*x) for x in s["dense_mlp"])
           + moe * (s["E"] + 1) * sum(_nvfp4_bytes(*x) for x in s["expert"]))
    bf16 = s["L"] * sum(r * c for r, c in s["qkv"]) + s["small"] + s["embed"]
    expected = fp4 + 2 * bf16
    m = load_model(str(tmp_path / "ds.json"))
    prec, _ = resolve_precision(m)
    assert weight_bytes_total(m, prec) == pytest.approx(expected, rel=1e-5)
    nq = m.native_quant
    assert nq.bytes_per_weight("attn_qkv") == 2 and nq.bytes_per_weight("attn_out") == 0.5625
    # the 16-bit MLA projections run 16-bit GEMMs; the NVFP4 ones the FP4 peak
    ops = {o.name: o for o in build_ops(m, prec, 1, 1, 16)}
    assert ops["q_a_proj"].compute == "gemm16" and ops["o_proj"].compute == "gemm"
    assert float(ops["q_a_proj"].weight_bytes) == 61 * 7168 * 1536 * 2


def test_reference_files_match_the_embedded_copies():
    """The configs above are hand-copied from reference/model_configs_2026 (when present)."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[2] / "shared" / "reference" / "model_configs_2026"
    if not root.is_dir():
        root = Path("/work/shared/reference/model_configs_2026")
    if not (root / "nvidia__Qwen3-235B-A22B-NVFP4.json").is_file():
        pytest.skip("reference configs not available")
    cfg = json.loads((root / "nvidia__Qwen3-235B-A22B-NVFP4.json").read_text())
    assert {k: cfg[k] for k in QWEN3_235B} == QWEN3_235B
    side = json.loads((root / "nvidia__Qwen3-235B-A22B-NVFP4.hf_quant_config.json").read_text())
    q = side["quantization"]
    assert sorted(q["exclude_modules"]) == sorted(QWEN3_235B_SIDECAR["quantization"]["exclude_modules"])
    m = load_model(str(root / "nvidia__DeepSeek-V3.1-NVFP4.json"))
    assert m.native_quant.bytes_per_weight("attn_qkv") == 2


def test_explicit_quant_overrides_native_with_a_note():
    a = lr.analyze("openai/gpt-oss-120b", "h100-sxm", quant="fp8", output_len=2)
    assert a.precision.native == () and a.precision.wbits == 8
    assert any("overrides the release's native mxfp4" in w for w in a.warnings)
    kv = lr.analyze("openai/gpt-oss-120b", "h100-sxm", quant="kv-fp8", output_len=2)
    assert kv.precision.native and kv.precision.kvbits == 8     # weights stay as released
    assert float(kv.memory.weights_bytes) == pytest.approx(
        float(lr.analyze("openai/gpt-oss-120b", "h100-sxm", output_len=2).memory.weights_bytes))


def test_unquantized_models_are_unchanged():
    m = load_model("meta-llama/Llama-3.1-8B")
    assert m.native_quant is None
    prec, notes = resolve_precision(m, "w4a16")
    assert notes == [] and prec == Precision(wbits=4, abits=16, group_size=128, scale_bits=20)


@pytest.mark.parametrize("qc,field", [
    ({"quant_method": "awq-magic"}, "quant_method"),
    ({"quant_method": "fp8", "weight_block_size": [128]}, "weight_block_size"),
    ({"quant_method": "fp8", "modules_to_not_convert": "lm_head"}, "modules_to_not_convert"),
    ({"quant_method": "modelopt", "quant_algo": "INT3"}, "quant_algo"),
    ({"quant_method": "compressed-tensors", "config_groups": {}}, "config_groups"),
])
def test_bad_quantization_config_is_one_line(qc, field):
    cfg = {**QWEN3_235B, "quantization_config": qc}
    with pytest.raises(InputError, match=field) as e:
        from_hf_config(cfg, "bad")
    assert "\n" not in str(e.value)


def test_compressed_tensors_int4_group32_by_hand():
    """moonshotai/Kimi-K2.5-style: INT4 experts, group 32, BF16 scale per group; attention,
    shared experts, dense MLPs and lm_head ignored (16-bit)."""
    qc = {"quant_method": "compressed-tensors", "format": "pack-quantized",
          "config_groups": {"group_0": {"targets": ["Linear"], "input_activations": None,
                                        "weights": {"num_bits": 4, "group_size": 32,
                                                    "strategy": "group", "symmetric": True,
                                                    "type": "int"}}},
          "ignore": ["lm_head", "re:.*self_attn.*", "re:.*shared_experts.*",
                     "re:.*mlp\\.(gate|up|gate_up|down)_proj.*"]}
    m = from_hf_config({**_builtin_config("deepseek-ai__DeepSeek-V3.json"), "quantization_config": qc})
    nq = m.native_quant
    assert nq.bytes_per_weight("experts") == 0.5 + 2 / 32
    for cls in ("attn_qkv", "attn_out", "dense_mlp", "shared_experts", "lm_head"):
        assert nq.bytes_per_weight(cls) == 2, cls
    assert nq.abits == 16
    assert np.isclose(nq.precision().class_weight_bytes("experts"), 0.5625)


def test_sidecar_in_a_model_directory(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(QWEN3_235B))
    assert load_model(str(tmp_path / "config.json")).native_quant is None
    (tmp_path / "hf_quant_config.json").write_text(json.dumps(QWEN3_235B_SIDECAR))
    m = load_model(str(tmp_path / "config.json"))
    assert m.native_quant.method == "modelopt nvfp4"
    assert m.native_quant.bytes_per_weight("attn_qkv") == 0.5625


def test_node_size_defaults_to_the_device_and_overrides_validate():
    assert Layout().node_size(load_hardware("gb300")) == 72
    assert Layout(gpus_per_node=4).node_size(load_hardware("gb300")) == 4
    with pytest.raises(InputError, match=r"gpus_per_node must be an integer in \[1, 1024\]"):
        Layout(gpus_per_node=0)
    from llmroofline.deployment import setup_kwargs
    assert setup_kwargs({"tp": 16})["layout"].gpus_per_node is None   # the device's domain
    lay = setup_kwargs({"tp": 16, "nodes": 2})["layout"]
    assert lay.gpus_per_node == 8        # --nodes 2 of a TP 16 replica: 8 per node


def test_native_formats_without_tensor_units_run_weight_only():
    """DeepSeek-V3's FP8 on an A100 (no FP8 units) and NVFP4 on an H100 (no FP4 units) run
    as weight-only kernels: 16-bit GEMMs, the weight bytes as released."""
    a100 = lr.analyze("deepseek-ai/DeepSeek-V3", "a100", tp=8, output_len=2)
    h100 = lr.analyze("deepseek-ai/DeepSeek-V3", "h100", tp=8, output_len=2)
    assert (a100.precision.abits, h100.precision.abits) == (16, 8)
    assert any("no fp8 tensor units" in w and "weight-only" in w for w in a100.warnings)
    assert float(a100.memory.weights_bytes) == float(h100.memory.weights_bytes)


def test_pipeline_boundary_across_nodes_by_hand():
    """TP 8 x PP 2 on HGX H100: the stage boundary is a point-to-point send of the prompt's
    activations (1 x 512 tokens x 8192 hidden x 2 bytes); with 8 GPUs per domain it crosses
    the network (10 us + S / 50 GB/s), with 16 per domain NVLink (2 us + S / 450 GB/s). One
    micro-batch through 2 stages pays it (1 + 2 - 1) = 2 times in the prefill."""
    kw = dict(batch=1, input_len=512, output_len=2, profile="ideal")
    net = lr.analyze("meta-llama/Llama-3.1-70B", "h100-sxm", layout=Layout(tp=8, pp=2), **kw)
    nvl = lr.analyze("meta-llama/Llama-3.1-70B", "h100-sxm",
                     layout=Layout(tp=8, pp=2, gpus_per_node=16), **kw)
    S = 512 * 8192 * 2
    expected = 2 * ((10e-6 + S / 50e9) - (2e-6 + S / 450e9))
    assert float(net.ttft_s - nvl.ttft_s) == pytest.approx(expected, rel=1e-9)


def test_a_quantized_name_without_quantization_config_says_so():
    a = lr.analyze("Qwen/Qwen3-30B-A3B-FP8", "h100-sxm", output_len=2)   # the built-in base
    assert a.precision.wbits == 16
    assert any("name says FP8" in w and "16 bits" in w for w in a.warnings)
    b = lr.analyze("Qwen/Qwen3-30B-A3B-FP8", "h100-sxm", quant="fp8", output_len=2)
    assert not any("name says" in w for w in b.warnings)
