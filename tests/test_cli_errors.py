"""The command line as a user meets it: one clear stderr line and exit 2 for bad input.

Every case runs ``python -m llmroofline`` in a subprocess (offline: HF_HUB_OFFLINE=1) and
checks the project rule: exit status 2, exactly one non-empty line on stderr that names
the offending field or name (and the allowed range or a close match), and no traceback.
A few positive runs pin the ``--json`` contract and the listing commands.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

# A complete device description in the catalog's field names (see data/hardware/devices.toml).
DEVICE = {
    "name": "Test Accelerator 64GB",
    "vendor": "Acme",
    "memory_gb": 64,
    "mem_bw_gb_s": 2000,
    "bf16_tflops": 400,
    "fp16_tflops": 400,
    "fp32_tflops": 50,
    "fp8_tflops": 800,
    "tdp_w": 500,
    "source": "made up for the test suite",
}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "PY_COLORS")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", NO_COLOR="1", PYTHONIOENCODING="utf-8")
    return env


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmroofline", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=120)


def toml_text(d: dict) -> str:
    return "".join(f"{k} = {json.dumps(v)}\n" for k, v in d.items())


def yaml_text(d: dict) -> str:
    return "".join(f"{k}: {json.dumps(v)}\n" for k, v in d.items())


def builtin_config(hf_id: str) -> dict:
    name = hf_id.replace("/", "__", 1) + ".json"
    return json.loads((resources.files("llmroofline") / "data" / "models" / name).read_text())


# -- files some cases need: name -> content (written to tmp_path, the subprocess cwd) ----------
def _files_incomplete() -> dict[str, str]:
    cfg = builtin_config("meta-llama/Llama-2-7b-hf")
    del cfg["hidden_size"]
    return {"incomplete.json": json.dumps(cfg)}


def _files_unknown_type() -> dict[str, str]:
    cfg = builtin_config("meta-llama/Llama-2-7b-hf")
    cfg["model_type"] = "frobnicator"
    return {"weird.json": json.dumps(cfg)}


def _device(**changes) -> str:
    d = dict(DEVICE)
    for k, v in changes.items():
        if v is None:
            d.pop(k)
        else:
            d[k] = v
    return toml_text(d)


def _typo_device() -> str:
    d = dict(DEVICE)
    d["bf16_tflop"] = d.pop("bf16_tflops")
    return toml_text(d)


# (id, argv, files to write, strings stderr must contain (case-insensitive))
ERROR_CASES = [
    ("batch-zero", ["analyze", "--batch", "0"], {}, ["batch", "[1,"]),
    ("batch-negative", ["analyze", "--batch", "-3"], {}, ["batch", "[1,"]),
    ("batch-fraction", ["analyze", "--batch", "1.5"], {}, ["batch", "1.5"]),
    ("input-not-a-number", ["analyze", "--input", "abc"], {}, ["input_len", "abc"]),
    ("output-zero", ["analyze", "--output", "0"], {}, ["output_len", "[1,"]),
    ("prefill-chunk-zero", ["analyze", "--prefill-chunk", "0"], {}, ["prefill_chunk", "[1,"]),
    ("prefill-chunk-with-pp", ["analyze", "-m", "llama-2-7b", "-i", "4096", "--pp", "2",
                               "--prefill-chunk", "1024"], {}, ["prefill_chunk", "pp"]),
    ("unknown-model", ["analyze", "-m", "llama-2-7c"], {}, ["llama-2-7c", "llama-2-7b"]),
    ("unknown-hardware", ["analyze", "-H", "a100-sxm-80"], {}, ["a100-sxm-80", "a100-sxm-80gb"]),
    ("wbits-5", ["analyze", "--wbits", "5"], {}, ["wbits", "4, 8, 16, 32", "5"]),
    ("kvbits-3", ["analyze", "--kvbits", "3"], {}, ["kvbits", "4, 8, 16, 32", "3"]),
    ("wbits-not-int", ["analyze", "--wbits", "abc"], {}, ["--wbits"]),
    ("a8-w16", ["analyze", "--abits", "8", "--wbits", "16"], {}, ["abits", "wbits"]),
    ("longer-than-context", ["analyze", "-m", "gpt2", "-i", "1000", "-o", "100"], {},
     ["output_len", "1024", "gpt2"]),
    ("config-invalid-json", ["analyze", "-m", "broken.json"],
     {"broken.json": '{"model_type": "llama", "hidden_size": 4096,'}, ["broken.json", "JSON"]),
    ("config-missing-field", ["analyze", "-m", "incomplete.json"], _files_incomplete(),
     ["hidden_size", "missing"]),
    ("config-unknown-model-type", ["analyze", "-m", "weird.json"], _files_unknown_type(),
     ["frobnicator", "supported", "llama", "mixtral", "gpt2"]),
    ("config-not-text", ["analyze", "-m", "binary.json"], {"binary.json": "\udcff\udcfe\x00"},
     ["binary.json"]),
    ("device-missing-field", ["analyze", "-H", "dev.toml"], {"dev.toml": _device(mem_bw_gb_s=None)},
     ["mem_bw_gb_s", "missing"]),
    ("device-negative", ["analyze", "-H", "dev.toml"], {"dev.toml": _device(memory_gb=-80)},
     ["memory_gb", "positive", "-80"]),
    ("device-nan", ["analyze", "-H", "dev.toml"], {"dev.toml": _device().replace(
        "mem_bw_gb_s = 2000", "mem_bw_gb_s = nan")}, ["mem_bw_gb_s", "positive"]),
    ("device-unknown-field", ["analyze", "-H", "dev.toml"], {"dev.toml": _typo_device()},
     ["bf16_tflop", "bf16_tflops"]),
    ("device-file-missing", ["analyze", "-H", "nowhere.toml"], {}, ["nowhere.toml", "not exist"]),
    ("device-is-a-directory", ["analyze", "-H", "."], {}, ["hardware", "not a file"]),
    ("grid-reversed", ["analyze", "--batch", "256:1"], {}, ["batch", "256", "end"]),
    ("hub-offline", ["analyze", "-m", "someorg/some-model"], {},
     ["someorg/some-model", "could not be fetched", "local"]),
    ("hardware-show-unknown", ["hardware", "no-such-gpu"], {}, ["no-such-gpu"]),
    ("unknown-option", ["analyze", "--bacth", "4"], {}, ["--bacth"]),
]


@pytest.mark.parametrize("argv, files, needles", [c[1:] for c in ERROR_CASES],
                         ids=[c[0] for c in ERROR_CASES])
def test_bad_input_is_one_clear_line(tmp_path, argv, files, needles):
    for name, content in files.items():
        # surrogateescape lets a case write raw non-UTF-8 bytes ("\udcff" -> 0xff)
        (tmp_path / name).write_bytes(content.encode("utf-8", "surrogateescape"))
    r = run_cli(*argv, cwd=tmp_path)
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"expected one stderr line, got {r.stderr!r}"
    assert lines[0].startswith("error:"), lines[0]
    for needle in needles:
        assert needle.lower() in lines[0].lower(), f"{needle!r} not in {lines[0]!r}"


# -- positive runs ------------------------------------------------------------------------------
def test_analyze_defaults_prints_totals():
    r = run_cli("analyze")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    for needle in ("TTFT", "TPOT", "end-to-end latency", "tokens/s", "largest batch that fits",
                   "Llama-2-7b-hf", "a100-sxm-80gb"):
        assert needle in r.stdout, needle


OP_KEYS = {"name", "flops", "bytes", "weight_bytes", "activation_bytes", "kv_bytes", "intensity",
           "time_s", "bound"}
TOP_KEYS = {"model", "hardware", "batch", "input_len", "output_len", "ttft_s", "tpot_s", "e2e_s",
            "throughput_tok_s", "memory", "max_batch", "params", "prefill", "decode"}
MEMORY_KEYS = {"weights_bytes", "kv_cache_bytes", "activation_bytes", "total_bytes",
               "capacity_bytes", "fits"}


def check_point(d: dict) -> None:
    assert TOP_KEYS <= set(d), TOP_KEYS - set(d)
    assert MEMORY_KEYS <= set(d["memory"]), MEMORY_KEYS - set(d["memory"])
    assert isinstance(d["memory"]["fits"], bool)
    for phase in ("prefill", "decode"):
        p = d[phase]
        assert {"time_s", "flops", "bytes", "ops"} <= set(p)
        assert p["ops"], phase
        for op in p["ops"]:
            assert OP_KEYS <= set(op), (phase, OP_KEYS - set(op))
            assert op["bound"] in ("compute", "memory", "overhead", "communication")
            assert op["bytes"] == pytest.approx(op["weight_bytes"] + op["activation_bytes"]
                                                + op["kv_bytes"], rel=1e-12)
        assert p["flops"] == pytest.approx(sum(o["flops"] for o in p["ops"]), rel=1e-9)
        assert p["time_s"] == pytest.approx(sum(o["time_s"] for o in p["ops"]), rel=1e-9)
    assert d["ttft_s"] == pytest.approx(d["prefill"]["time_s"], rel=1e-12)
    assert d["e2e_s"] == pytest.approx(d["ttft_s"] + d["tpot_s"] * (d["output_len"] - 1), rel=1e-9)
    assert d["throughput_tok_s"] == pytest.approx(d["batch"] * d["output_len"] / d["e2e_s"], rel=1e-9)
    m = d["memory"]
    assert m["total_bytes"] == pytest.approx(m["weights_bytes"] + m["kv_cache_bytes"]
                                             + m["activation_bytes"], rel=1e-9)
    assert m["fits"] == (m["total_bytes"] <= m["capacity_bytes"])


def test_analyze_json_contract():
    r = run_cli("analyze", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert isinstance(d, dict)
    check_point(d)
    assert (d["model"], d["hardware"]) == ("meta-llama/Llama-2-7b-hf", "a100-sxm-80gb")
    assert (d["batch"], d["input_len"], d["output_len"]) == (1, 128, 128)
    assert d["params"] == 6_738_415_616


def test_grid_json_is_columnar():
    # a grid prints one object of columns (docs/conventions.md, "Grid JSON"), not a list
    r = run_cli("analyze", "--batch", "1:8", "--input", "128,256", "--json")
    assert r.returncode == 0, r.stderr
    g = json.loads(r.stdout)
    assert isinstance(g, dict) and g["format"] == "columnar-1" and g["points"] == 4 * 2
    assert g["axes"] == {"batch": [1, 2, 4, 8], "input_len": [128, 256], "output_len": [128]}
    c = g["columns"]
    assert list(zip(c["batch"], c["input_len"])) == [(b, i) for b in (1, 2, 4, 8) for i in (128, 256)]
    assert "ops" not in g
    data = [{k: c[k][n] for k in ("batch", "input_len", "throughput_tok_s")} for n in range(8)]
    # more sequences per step: higher throughput at fixed input length
    by = {(d["batch"], d["input_len"]): d["throughput_tok_s"] for d in data}
    assert by[(1, 128)] < by[(2, 128)] < by[(4, 128)] < by[(8, 128)]


def test_models_json_lists_the_catalog():
    r = run_cli("models", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) >= 41
    ids = {row["id"] for row in rows}
    assert len(ids) == len(rows)
    assert {"meta-llama/Llama-2-7b-hf", "openai-community/gpt2"} <= ids
    assert all(row["params"] > 0 for row in rows)


def test_hardware_json_lists_the_catalog():
    r = run_cli("hardware", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) >= 41
    by_id = {row["id"]: row for row in rows}
    assert len(by_id) == len(rows)
    assert {"a100-sxm-80gb", "h100-sxm", "h20"} <= set(by_id)
    for row in rows:
        assert row["memory_gb"] > 0 and row["mem_bw_gb_s"] > 0
    assert by_id["h100-sxm"]["source"]


def test_hardware_show_includes_source():
    r = run_cli("hardware", "h100-sxm")
    assert r.returncode == 0, r.stderr
    assert "source" in r.stdout and "H100" in r.stdout
    assert "datasheet" in r.stdout.lower()


def test_device_file_yaml_equals_toml(tmp_path):
    (tmp_path / "acme.toml").write_text(toml_text(DEVICE))
    (tmp_path / "acme.yaml").write_text(yaml_text(DEVICE))
    results = {}
    for name in ("acme.toml", "acme.yaml"):
        r = run_cli("analyze", "-H", name, "--batch", "8", "--json", "-p", "ideal", cwd=tmp_path)
        assert r.returncode == 0, (name, r.stderr)
        results[name] = d = json.loads(r.stdout)
        check_point(d)
        assert d["hardware"] == "acme"
        assert d["memory"]["capacity_bytes"] == pytest.approx(64e9)
    t, y = results["acme.toml"], results["acme.yaml"]
    for k in ("ttft_s", "tpot_s", "e2e_s", "throughput_tok_s"):
        assert t[k] == y[k], k
    # batch 8 decode of a 7B model is memory-bound: the step is close to weights / bandwidth
    weights_per_step = sum(o["weight_bytes"] for o in t["decode"]["ops"])
    assert t["tpot_s"] == pytest.approx(weights_per_step / 2000e9, rel=0.1)


def test_fine_tuned_variants_resolve_to_their_built_in_base_offline(monkeypatch):
    """An -Instruct / -chat / Meta- named variant has the base model's shapes; it resolves
    without the network (the hub is made unreachable here) and keeps the asked-for name.
    Shapes from the models' published config.json files: Llama-3.1-70B 8192 x 80 layers,
    64 heads, 8 KV heads; Falcon-180B 14848 x 80, 232 heads, 8 KV heads."""
    from llmroofline.specs import catalog

    def offline(repo_id):
        raise AssertionError(f"hub fetch attempted for {repo_id}")
    monkeypatch.setattr(catalog, "_fetch_hub_config", offline)
    for name, shape in (("meta-llama/Meta-Llama-3.1-70B-Instruct", (8192, 80, 64, 8)),
                        ("meta-llama/Llama-3.1-70B-Instruct", (8192, 80, 64, 8)),
                        ("tiiuae/falcon-180B-chat", (14848, 80, 232, 8))):
        m = catalog.load_model(name)
        assert m.name == name
        assert (m.hidden_size, m.num_layers, m.num_heads, m.num_kv_heads) == shape
    r = run_cli("analyze", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["model"] == "meta-llama/Llama-3.1-8B-Instruct"


def test_hardware_aliases_resolve_common_names():
    from llmroofline.specs.hardware import _catalog_raw, hardware_aliases, load_hardware
    for name, dev in (("H100-SXM5-80GB", "h100-sxm"), ("h100", "h100-sxm"),
                      ("A100-SXM4-80GB", "a100-sxm-80gb"), ("a100", "a100-sxm-80gb"),
                      ("H200 SXM 141GB", "h200"), ("RTX_4090", "rtx-4090")):
        assert load_hardware(name).id == dev
    # every alias names exactly one device and never shadows a catalog id
    aliases = [a for d in _catalog_raw().values() for a in d.get("aliases", [])]
    assert len(aliases) == len(set(aliases)) == len(hardware_aliases())
    assert not set(hardware_aliases()) & set(_catalog_raw())
    r = run_cli("analyze", "--hardware", "h10")
    assert r.returncode == 2 and "did you mean" in r.stderr and "h100" in r.stderr


def test_unreachable_hub_fails_fast_reads_only_the_cache_and_asks_once(monkeypatch):
    import huggingface_hub
    from llmroofline.errors import InputError
    from llmroofline.specs import catalog
    calls = []

    def fake_download(repo_id, filename, local_files_only=False):
        calls.append((repo_id, local_files_only))
        raise FileNotFoundError("not in the cache")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(catalog, "_hub_host_resolves", lambda: False)
    catalog._hub_config_path.cache_clear()
    try:
        for _ in range(3):
            with pytest.raises(InputError, match="no network.*no cached copy"):
                catalog.load_model("someorg/unreachable-model")
    finally:
        catalog._hub_config_path.cache_clear()
    assert calls == [("someorg/unreachable-model", True)]
