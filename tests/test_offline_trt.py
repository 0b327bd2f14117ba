"""TensorRT-LLM 0.11-0.17 offline max-throughput rows (serving/offline_trt.py, engine
trtllm-0.1x, `validate` on that CSV)."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from llmroofline.errors import InputError
from llmroofline.serving import offline_trt
from llmroofline.serving.config import kv_blocks_of, scheduler_config
from llmroofline.serving.cost import IterationCost
from llmroofline.serving.offline import offline_throughput
from llmroofline.serving.sim import simulate
from llmroofline.serving.workload import Workload
from llmroofline.specs.engine import load_engine

COLS = ["id", "source_id", "engine", "hardware", "tp", "pp", "model", "weight_dtype", "act_dtype", "kv_dtype", "mode", "batch", "input_len", "output_len", "throughput_tok_s", "ttft_ms", "tpot_ms", "e2e_ms", "max_batch", "max_tokens", "kv_fraction", "runtime_gb", "ep", "parallel", "reported_value", "reported_unit", "notes"]


def row(i, **kw):
    base = {"id": f"M{i}", "source_id": "trtllm_v0.14.0", "engine": "TensorRT-LLM", "hardware": "h100-sxm",
                "tp": 1, "pp": 1, "model": "meta-llama/Llama-3.1-8B", "weight_dtype": "fp8", "act_dtype": "fp8",
                "kv_dtype": "fp8", "mode": "max_throughput", "batch": 200, "input_len": 128, "output_len": 128,
                "throughput_tok_s": 20000}
    base.update(kw)
    return base


def write(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, COLS)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in COLS})
    return path


def test_reader_sets_aside_what_the_catalogs_lack_and_counts_it(tmp_path):
    p = write(tmp_path / "off.csv", [
        row(1), row(2, weight_dtype="int2"), row(3, hardware="h999"),
        row(4, model="nobody/NoSuchModel-1B"), row(5, hardware="gh200", source_id="trtllm_v0.17.0"),
        row(6, pp=2)])
    rows, skipped = offline_trt.read_offline_csv(p)
    assert [r.id for r in rows] == ["M1", "M5"]
    assert rows[1].hardware == "gh200"      # the catalog alias of gh200-96gb
    why = dict(skipped)
    assert why["M2"].startswith("dtype not in the catalog") and "int2" in why["M2"]
    assert why["M3"].startswith("device not in the catalog")
    assert why["M4"].startswith("model not in the catalog")
    assert why["M6"].startswith("pp 2")
    assert offline_trt.skip_counts(skipped) == {"dtype not in the catalog": 1,
                                                "device not in the catalog": 1,
                                                "model not in the catalog": 1, "pp 2": 1}
    assert [offline_trt.release_of(r) for r in rows] == ["0.14", "0.17"]


def test_a_row_that_cannot_be_read_is_one_line_naming_row_and_column(tmp_path):
    p = write(tmp_path / "bad.csv", [row(1), row(2, input_len="12x")])
    with pytest.raises(InputError) as e:
        offline_trt.read_offline_csv(p)
    msg = str(e.value)
    assert "\n" not in msg and "row 3" in msg and "'input_len'" in msg and "12x" in msg
    p = write(tmp_path / "bad2.csv", [row(1, kv_fraction="1.5")])
    with pytest.raises(InputError, match="'kv_fraction' must be in \\(0, 1\\]"):
        offline_trt.read_offline_csv(p)


def test_engine_and_row_build_settings():
    """trtllm-0.1x: guaranteed-no-evict (full reservation), chunked context, 0.95 of the
    free memory; a row's printed build (v0.11: max_batch 128, 2048 tokens, 0.99) replaces
    those; Hopper XQA coverage up to 32 query heads per KV head."""
    e = load_engine("trtllm-0.1x")
    assert (e.batching.reserve, e.batching.chunked, e.kv_memory.rule, e.kv_memory.fraction) == (
        "full", True, "free_fraction", 0.95)
    assert e.coverage["hopper"]["gqa_max_group"] == 32.0
    from llmroofline.validate import Row
    base = Row("x", "h200", "meta-llama/Llama-3.1-8B", 1, 1, "fp8", "fp8", "fp8",
               "max_throughput", 100, 128, 128, {"throughput_tok_s": 1.0})
    c = offline_trt.row_config(base)
    assert (c.max_batch, c.max_tokens, c.kv_fraction, c.reserve) == (2048, 8192, 0.95, "full")
    c = offline_trt.row_config(replace(base, setup=(("max_batch", 128), ("max_tokens", 2048),
                                                    ("kv_fraction", 0.99))))
    assert (c.max_batch, c.max_tokens, c.kv_fraction) == (128, 2048, 0.99)
    # a build whose token budget is below its batch keeps max_tokens = max_batch
    c = offline_trt.row_config(replace(base, setup=(("max_batch", 4096), ("max_tokens", 2048))))
    assert (c.max_batch, c.max_tokens) == (4096, 4096)


def test_guaranteed_no_evict_admits_only_what_fits_whole():
    """With 100 KV blocks of 64 tokens, a 128 + 64-token request reserves 3 blocks up front
    (guaranteed-no-evict), so at most floor(99 / 3) = 33 run at once (one block kept free
    by the 1 % watermark: ceil(0.01 x 100) = 1) and none is ever preempted; reserving only
    the prompt (2 blocks) admits more and must preempt when outputs grow."""
    cfg = replace(scheduler_config(load_engine("trtllm-0.1x")), kv_blocks=100, max_batch=256,
                  max_tokens=8192)
    cost = IterationCost.of("meta-llama/Llama-3.1-8B", "h100-sxm", quant="fp8",
                            max_tokens=cfg.max_tokens, max_batch=cfg.max_batch)
    wl = Workload(np.zeros(120), np.full(120, 128), np.full(120, 64), "offline")
    full = simulate(workload=wl, config=cfg, cost=cost)
    assert int(full.preemptions.sum()) == 0
    assert full.summary()["batch"]["max"] <= 33
    assert full.summary()["batch"]["max"] >= 30      # the pool is used, not left idle
    prompt = simulate(workload=wl, config=replace(cfg, reserve="prompt"), cost=cost)
    assert prompt.summary()["batch"]["max"] > 33
    assert int(prompt.preemptions.sum()) > 0
    assert kv_blocks_of(cost, cfg) == 100


def test_sliding_windows_are_removed_for_these_builds():
    m = offline_trt.full_attention_model("mistralai/Mistral-7B-v0.1")
    assert all(w is None for w in m.layer_windows) and m.num_layers == 32
    from llmroofline.specs.catalog import load_model
    assert any(load_model("mistralai/Mistral-7B-v0.1").layer_windows)
    assert offline_trt.full_attention_model("meta-llama/Llama-3.1-8B") == load_model(
        "meta-llama/Llama-3.1-8B")


def test_is_offline_csv_only_for_releases_011_to_017(tmp_path):
    assert offline_trt.is_offline_csv(write(tmp_path / "a.csv", [
        row(1), row(2, source_id="trtllm_v0.11.0"), row(3, source_id="trtllm_v0.14.0_triton_serving")]))
    assert not offline_trt.is_offline_csv(write(tmp_path / "b.csv", [row(1, source_id="trtllm_v0.10.0")]))
    assert not offline_trt.is_offline_csv(write(tmp_path / "c.csv", [row(1, mode="static")]))
    assert not offline_trt.is_offline_csv(tmp_path / "missing.csv")


def test_validate_cli_on_offline_rows_matches_direct_simulation(tmp_path):
    """`validate FILE --json` on 0.14 rows: each prediction is the offline simulation under
    trtllm-0.1x's scheduler (built here by hand from the engine file's facts), the error is
    predicted / measured - 1, and the median |error| of the two rows is their mean."""
    p = write(tmp_path / "off.csv", [
        row(1, throughput_tok_s=20000),
        row(2, input_len=512, output_len=64, batch=100, throughput_tok_s=5000, max_batch=64,
            max_tokens=2048, kv_fraction=0.99, source_id="trtllm_v0.11.0"),
        row(3, hardware="h999")])
    out = subprocess.run([sys.executable, "-m", "llmroofline", "validate", str(p), "--json"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["profile"] == "trtllm-0.1x"
    assert [s["id"] for s in data["skipped"]] == ["M3"]
    e = load_engine("trtllm-0.1x")
    hand = replace(scheduler_config(e), reserve="full", chunked=True, kv_fraction=0.95)
    p1, _ = offline_throughput("meta-llama/Llama-3.1-8B", "h100-sxm", 128, 128, requests=200,
                               config=hand, engine=e, wbits=8, abits=8, kvbits=8)
    p2, _ = offline_throughput("meta-llama/Llama-3.1-8B", "h100-sxm", 512, 64, requests=100,
                               config=replace(hand, max_batch=64, max_tokens=2048, kv_fraction=0.99),
                               engine=e, wbits=8, abits=8, kvbits=8)
    got = {r["id"]: r for r in data["rows"]}
    assert got["M1"]["predicted"] == pytest.approx(p1, rel=1e-9)
    assert got["M2"]["predicted"] == pytest.approx(p2, rel=1e-9)
    e1, e2 = p1 / 20000 - 1, p2 / 5000 - 1
    assert got["M1"]["error"] == pytest.approx(e1)
    st = data["summary"]["overall"]["throughput_tok_s"]
    assert st["median_ape"] == pytest.approx((abs(e1) + abs(e2)) / 2)
    assert set(data["summary"]["by_release"]) == {"0.11", "0.14"}
    assert data["summary"]["by_dtype"]["fp8"]["throughput_tok_s"]["n"] == 2
    assert math.isfinite(data["seconds_per_row"]["median"])


def test_a100_pcie_tp4_all_reduce_runs_over_pcie_by_hand():
    """An NVLink bridge pairs two A100 PCIe cards (scaleup_group = 2), so TP 4 in the 8-card
    server is a ring over PCIe Gen4 x16: 64 GB/s bidirectional = 32e9 B/s per direction,
    5 us per hop, no all-to-all fabric. All-reduce of S = 64e6 bytes over n = 4:
    ring 2 (n-1) a + 2 (n-1)/n S / bw = 30 us + 3.0 ms = 3.030 ms (tree: 4 a + 2 S / bw
    = 4.02 ms, slower); TP 2 stays on the bridge (300e9 B/s per direction, 2 us)."""
    from llmroofline.cost import collective_time, link_for
    from llmroofline.parallel import Layout
    from llmroofline.specs.hardware import load_hardware
    hw = load_hardware("a100-pcie-80gb")
    assert hw.scaleup_group == 2
    four = link_for(hw, 4, Layout())
    assert (four.bytes_s, four.latency_s, four.all_to_all) == (32e9, 5e-6, False)
    assert float(collective_time("allreduce", 64e6, 4, four)) == pytest.approx(3.030e-3, rel=1e-9)
    two = link_for(hw, 2, Layout())
    assert (two.bytes_s, two.latency_s, two.all_to_all) == (300e9, 2e-6, True)
    # across two 8-card nodes the slower of PCIe (32) and the 50 GB/s network: PCIe, 10 us
    sixteen = link_for(hw, 16, Layout())
    assert (sixteen.bytes_s, sixteen.latency_s) == (32e9, 10e-6)
    # the SXM part has no such limit: NVSwitch at 300e9 B/s per direction for TP 8
    assert link_for(load_hardware("a100-sxm-80gb"), 8, Layout()).bytes_s == 300e9


def test_gh200_tp4_stays_on_nvlink():
    """GH200 systems (NVL32) join the superchips over NVLink 4, 450 GB/s per direction; an
    all-reduce of 64e6 bytes over 4 GPUs picks two-shot: 2 a + 2 (n-1)/n S / bw
    = 4 us + 96e6 / 450e9 s = 217.33 us (one-shot: 2 us + 3 S / bw = 428.7 us)."""
    from llmroofline.cost import collective_time, link_for
    from llmroofline.parallel import Layout
    from llmroofline.specs.hardware import load_hardware
    hw = load_hardware("gh200")
    link = link_for(hw, 4, Layout())
    assert (link.bytes_s, link.latency_s, link.all_to_all) == (450e9, 2e-6, True)
    assert float(collective_time("allreduce", 64e6, 4, link)) == pytest.approx(
        4e-6 + 96e6 / 450e9, rel=1e-9)
    # a standalone superchip (--gpus-per-node 1) crosses the 50 GB/s network instead
    assert link_for(hw, 4, Layout(gpus_per_node=1)).bytes_s == 50e9


@pytest.mark.parametrize("bad", [0, 3, 2.0, True])
def test_bad_scaleup_group_is_one_line(bad):
    from llmroofline.specs.hardware import from_dict
    d = {"name": "x", "memory_gb": 80, "mem_bw_gb_s": 2000, "bf16_tflops": 100,
         "nvlink_domain": 2, "scaleup_group": bad}
    with pytest.raises(InputError, match="'scaleup_group' must be an integer in \\[1, 2\\]") as e:
        from_dict("x", d)
    assert "\n" not in str(e.value)
