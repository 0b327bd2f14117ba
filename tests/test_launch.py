"""Launch commands (llmroofline.launch, `llmroofline launch`): every generated command parses
against the one argument table, and the values are the deployment's, checked by hand against
the engine files and the documented flag names."""

from __future__ import annotations

import json
import shlex
import tomllib
from importlib import resources

import pytest
import yaml

from llmroofline.cli import main
from llmroofline.deployment import resolve
from llmroofline.errors import InputError
from llmroofline.launch import (ARGS, PROGRAMS, TOOLS, Workload, check_command, check_yaml,
                                launch_commands, read_setup, setup_deployment, setup_workload)

W = Workload(concurrency=16, isl=4000, osl=1000, requests=160)


def engine_file(name: str) -> dict:
    """The engine's TOML read directly (not through the Engine loader)."""
    return tomllib.loads((resources.files("llmroofline") / "data" / "engines"
                          / f"{name}.toml").read_text())


def flags(argv: list[str]) -> dict[str, list[str]]:
    """Flag -> values, read off the argv by hand (a flag followed by a non-flag is a value)."""
    got: dict[str, list[str]] = {}
    for i, a in enumerate(argv):
        if a.startswith("--"):
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            got.setdefault(a, []).append(nxt if nxt is not None and not nxt.startswith("--")
                                         else True)
    return got


def plan(engine: str, **kw):
    d = resolve("Qwen/Qwen3-32B", "h100-sxm", tp=4, engine=engine, kvbits=8, **kw)
    return d, launch_commands(d, W)


def test_table_is_one_entry_per_flag_with_a_release():
    seen = set()
    for a in ARGS:
        assert (a.tool, a.flag) not in seen, a
        seen.add((a.tool, a.flag))
        assert a.meaning and a.source and a.release, a
        assert a.tool in PROGRAMS or a.tool == "trtllm-serve yaml"
    for server, yml, bench in TOOLS.values():
        assert server in PROGRAMS and bench in PROGRAMS


@pytest.mark.parametrize("engine", ["vllm-v1", "vllm", "sglang", "trtllm-1"])
def test_every_command_parses_against_the_table(engine):
    _, p = plan(engine)
    for key in ("serve", "bench", "aiperf"):
        got = check_command(p["tools"][key], p[key])
        assert got, key
    if p["yaml"] is not None:
        check_yaml(p["yaml"])
    with pytest.raises(InputError, match="not in the table"):
        check_command(p["tools"]["serve"], p["serve"] + ["--made-up-flag", "1"])


def test_vllm_values_by_hand():
    e = engine_file("vllm-v1")
    _, p = plan("vllm-v1")
    assert p["serve"][:3] == ["vllm", "serve", "Qwen/Qwen3-32B"]
    f = flags(p["serve"])
    assert f["--tensor-parallel-size"] == ["4"]
    assert f["--max-num-seqs"] == [str(e["batching"]["max_batch"])] == ["1024"]
    assert f["--max-num-batched-tokens"] == [str(e["batching"]["max_tokens"])] == ["8192"]
    assert f["--gpu-memory-utilization"] == ["0.9"]
    assert f["--kv-cache-dtype"] == ["fp8"]
    assert "--quantization" not in f and "--pipeline-parallel-size" not in f
    b = flags(p["bench"])
    assert p["bench"][:3] == ["vllm", "bench", "serve"]
    assert b["--max-concurrency"] == ["16"] and b["--num-prompts"] == ["160"]
    assert b["--random-input-len"] == ["4000"] and b["--random-output-len"] == ["1000"]
    assert b["--ignore-eos"] == [True] and b["--save-result"] == [True]


def test_sglang_values_by_hand():
    e = engine_file("sglang")
    _, p = plan("sglang", quant="fp8")
    f = flags(p["serve"])
    assert p["serve"][:3] == ["python", "-m", "sglang.launch_server"]
    assert f["--model-path"] == ["Qwen/Qwen3-32B"] and f["--tp-size"] == ["4"]
    assert f["--max-running-requests"] == [str(e["batching"]["max_batch"])]
    assert f["--chunked-prefill-size"] == ["8192"]
    assert f["--mem-fraction-static"] == [f"{e['kv_memory']['fraction']:g}"] == ["0.88"]
    assert f["--kv-cache-dtype"] == ["fp8_e4m3"]
    assert f["--quantization"] == ["fp8"]           # FP8 asked for a 16-bit checkpoint
    assert "--enable-mixed-chunk" not in f           # the engine file: mix_prefill = false
    b = flags(p["bench"])
    assert b["--max-concurrency"] == ["16"] and b["--num-prompts"] == ["160"]
    assert b["--random-range-ratio"] == ["1"]        # [ratio x len, len]: fixed lengths


def test_trtllm_values_and_yaml_by_hand(tmp_path):
    e = engine_file("trtllm-1")
    d = resolve("Qwen/Qwen3-30B-A3B", "h100-sxm", tp=4, ep=2, engine="trtllm-1", kvbits=8)
    p = launch_commands(d, W, max_batch=64, kv_fraction=0.85)
    f = flags(p["serve"])
    assert p["serve"][:2] == ["trtllm-serve", "Qwen/Qwen3-30B-A3B"]
    assert f["--tp_size"] == ["4"] and f["--ep_size"] == ["2"]
    assert f["--max_batch_size"] == ["64"]                               # the override
    assert f["--max_num_tokens"] == [str(e["batching"]["max_tokens"])]
    assert f["--extra_llm_api_options"] == ["extra_llm_api_options.yaml"]
    y = p["yaml"]
    assert y["kv_cache_config"]["free_gpu_memory_fraction"] == 0.85
    assert y["kv_cache_config"]["dtype"] == "fp8"
    assert y["enable_chunked_prefill"] is e["batching"]["chunked"] is False
    assert y["scheduler_config"]["capacity_scheduler_policy"] == "GUARANTEED_NO_EVICT"
    b = flags(p["bench"])
    assert p["bench"][:2] == ["genai-perf", "profile"]
    assert b["--concurrency"] == ["16"] and b["--request-count"] == ["160"]
    assert b["--synthetic-input-tokens-mean"] == ["4000"]
    assert b["--output-tokens-mean"] == ["1000"]
    assert b["--extra-inputs"] == ["ignore_eos:true", "min_tokens:1000"]
    with pytest.raises(InputError, match="not in the table"):
        check_yaml({"kv_cache_config": {"made_up": 1}})


def test_native_fp8_checkpoint_gets_no_quantization_flag():
    d = resolve("Qwen/Qwen3-235B-A22B-FP8", "h200", tp=8, engine="vllm-v1")
    assert d.precision.native                           # priced as released (FP8 blocks)
    for engine in ("vllm-v1", "sglang"):
        p = launch_commands(resolve("Qwen/Qwen3-235B-A22B-FP8", "h200", tp=8, engine=engine), W)
        assert "--quantization" not in p["serve"] and "Qwen/Qwen3-235B-A22B-FP8" in p["serve"]


def test_unknown_engine_is_one_line(capsys):
    assert main(["launch", "--engine", "default"]) == 2
    e = capsys.readouterr().err
    assert len(e.strip().splitlines()) == 1
    assert "vllm-v1" in e and "sglang" in e and "trtllm-1" in e
    assert main(["launch", "--engine", "ideal", "--json"]) == 2
    assert main(["launch", "--engine", "vllm-v1", "--kvbits", "4"]) == 2     # no 4-bit KV
    assert "16-bit or FP8" in capsys.readouterr().err


def test_cli_out_writes_files_and_setup_resolves_back(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["launch", "--model", "qwen3-32b", "-H", "h100-sxm", "--tp", "4", "-e",
                 "trtllm-1", "--kvbits", "8", "-c", "8", "--isl", "2000", "--osl", "500",
                 "-n", "64", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert names == ["aiperf.sh", "bench.sh", "extra_llm_api_options.yaml", "serve.sh",
                     "setup.toml"]
    serve = (out / "serve.sh").read_text().splitlines()[-1]
    assert serve in printed
    argv = shlex.split(serve)
    check_command("trtllm-serve", argv)
    y = yaml.safe_load((out / "extra_llm_api_options.yaml").read_text())
    assert y["kv_cache_config"]["dtype"] == "fp8"
    check_command("genai-perf profile", shlex.split((out / "bench.sh").read_text()
                                                    .splitlines()[-1]))
    rec = read_setup(out / "setup.toml")
    d = setup_deployment(rec)
    assert (d.model.name, d.hardware.id, d.layout.tp, d.engine.name, d.precision.kvbits) == (
        "Qwen/Qwen3-32B", "h100-sxm", 4, "trtllm-1", 8)
    assert setup_workload(rec) == Workload(8, 2000, 500, 64)


def test_json_is_plain_data(capsys):
    assert main(["launch", "-e", "sglang", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["launcher"] == "sglang" and data["serve"][2] == "sglang.launch_server"
    assert data["setup"]["workload"] == {"concurrency": 16, "isl": 1024, "osl": 256,
                                         "requests": 160}


def test_docs_list_every_argument_of_the_table():
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[1] / "docs" / "results.md").read_text()
    rows = {line.split("|")[1].strip() + " " + line.split("|")[2].strip().split("`")[1]
            for line in doc.splitlines() if line.startswith("| ") and "`" in line
            and line.split("|")[1].strip() in {a.tool for a in ARGS}}
    assert rows == {f"{a.tool} {a.flag}" for a in ARGS}


@pytest.mark.parametrize("engine", ["vllm-v1", "sglang", "trtllm-1"])
def test_attention_dp_and_speculative_flags(engine):
    """DEP (tp 1 x 4 attention groups, experts over the 4 ranks) with MTP, two draft tokens:
    each engine's names as documented (vLLM: DP ranks with expert parallelism; SGLang:
    --tp-size counts all ranks, --dp-size the attention groups; TensorRT-LLM: tp_size all
    ranks and enable_attention_dp in the YAML)."""
    d = resolve("deepseek-ai/DeepSeek-V3", "h200", tp=1, dp_attention=8, ep=8, engine=engine)
    p = launch_commands(d, W, speculative={"mtp": 2})
    server = TOOLS[p["launcher"]][0]
    got = check_command(server, p["serve"])
    if engine == "vllm-v1":
        assert got["--data-parallel-size"] == "8" and got["--tensor-parallel-size"] == "1"
        assert got["--enable-expert-parallel"] is True
        assert json.loads(got["--speculative-config"]) == {"method": "mtp",
                                                           "num_speculative_tokens": 2}
    elif engine == "sglang":
        assert (got["--tp-size"], got["--dp-size"], got["--ep-size"]) == ("8", "8", "8")
        assert got["--enable-dp-attention"] is True
        assert (got["--speculative-algorithm"], got["--speculative-num-steps"],
                got["--speculative-num-draft-tokens"]) == ("NEXTN", "2", "3")
    else:
        assert got["--tp_size"] == "8" and got["--ep_size"] == "8"
        assert p["yaml"]["enable_attention_dp"] is True
        assert p["yaml"]["speculative_config"] == {"decoding_type": "MTP",
                                                   "num_nextn_predict_layers": 2}
        check_yaml(p["yaml"])
    assert p["setup"]["deployment"]["dp_attention"] == 8
    assert p["setup"]["speculative"] == {"method": "mtp", "draft_k": 2, "accept": 0.7}
