"""Regression tests of issue 21: bounded work, no tracebacks, no silent wrong numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import llmroofline as lr
from llmroofline import phases
from llmroofline.errors import InputError


# -- 1. bounded work ----------------------------------------------------------------------
def test_chunked_prefill_is_one_vectorized_table_and_matches_a_per_chunk_loop(monkeypatch):
    """Chunks are costed in one build_ops call; the totals equal a per-chunk loop of
    unchunked steps (the definition), computed here independently with ``step_cost``."""
    from llmroofline.cost import Roofline
    from llmroofline.graph import build_ops
    from llmroofline.specs.engine import load_engine
    calls = []
    real = phases.build_ops
    monkeypatch.setattr(phases, "build_ops", lambda *a, **k: calls.append(1) or real(*a, **k))
    I, C, B = 5000, 1024, 2
    a = lr.analyze("gemma-2-9b", "h100-sxm", B, I, 2, prefill_chunk=C)
    prefill_calls = len(calls) - 2                  # decode builds two tables (kv = 1, 2)
    assert prefill_calls == 1
    m, hw = lr.load_model("gemma-2-9b"), lr.load_hardware("h100-sxm")
    eff = load_engine(None).efficiency(hw.efficiency, hw.family, a.precision.abits)
    roof = Roofline.of(hw, a.precision, a.layout, eff)
    want = 0.0
    for j in range(math.ceil(I / C)):
        q = min(C, I - j * C)
        ops = build_ops(m, a.precision, B, q, min(I, (j + 1) * C), layout=a.layout)
        want += float(phases._prefill(ops, roof, phases._Pipe(1, np.ones(())),
                                      phases.prefill_fixed_s(eff, q)).total_time_s)
    assert float(a.ttft_s) == pytest.approx(want, rel=1e-12)


def test_chunked_prefill_caps_the_number_of_chunks():
    with pytest.raises(InputError, match=r"^prefill_chunk: .*at most 4096 chunks.*>= 245"):
        lr.analyze("llama-3.1-8b", "h100-sxm", 1, 1_000_000, 2, prefill_chunk=1)
    with pytest.raises(InputError, match=r"^prefill_chunk: .*grid points"):
        lr.analyze("llama-3.1-8b", "h100-sxm", np.arange(1, 65)[:, None], 4096, 2, prefill_chunk=1)
    a = lr.analyze("llama-3.1-8b", "h100-sxm", 1, 4096, 2, prefill_chunk=1)  # at the cap
    assert np.isfinite(a.ttft_s)


# -- 2. web: no 500 on odd JSON, bounded requests, Host header ---------------------------
@pytest.fixture(scope="module")
def client():
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from llmroofline.web import create_app
    return TestClient(create_app(), base_url="http://127.0.0.1", raise_server_exceptions=False)


@pytest.mark.parametrize("route", ["/api/analyze", "/api/rank", "/api/compare", "/api/roofline"])
@pytest.mark.parametrize("raw, field", [
    ('{"batch": NaN}', "batch"), ('{"batch": Infinity}', "batch"), ('{"batch": 1e400}', "batch"),
    ('{"batch": -Infinity}', "batch"), ('{"model": "\\ud800"}', "model"),
    ('{"hardware": ["\\udc00x"]}', "hardware"), ('{"config": {"hidden_size": NaN}}', "config"),
    ('{"config": {"x": [1e400]}}', "config"), ('{"model": "a\\ud800b", "batch": NaN}', "model"),
])
def test_non_finite_numbers_and_lone_surrogates_are_4xx_naming_the_field(client, route, raw, field):
    r = client.post(route, content=raw, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    body = json.loads(r.text)          # strict JSON: no NaN token, encodable text
    assert field in body["fields"]
    assert field in body["message"]


def test_rank_finite_limits_and_prices(client):
    for raw in ('{"max_ttft_s": NaN}', '{"max_tpot_s": 1e400}', '{"prices": {"h100-sxm": Infinity}}',
                '{"vendor": "\\ud800"}', '{"prices": {"\\ud800": 1}}'):
        r = client.post("/api/rank", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422, (raw, r.text)
        assert json.loads(r.text)["fields"][0] in raw


def test_a_request_beyond_the_chunked_prefill_cap_is_refused_quickly(client):
    import time
    t = time.perf_counter()
    r = client.post("/api/rank", json={"prefill_chunk": 1, "input_len": 1_048_576})
    assert r.status_code == 400 and r.json()["field"] == "prefill_chunk"
    assert "4096" in r.json()["detail"]
    assert time.perf_counter() - t < 5
    assert client.get("/api/limits").json()["prefill chunks"] == phases.MAX_PREFILL_CHUNKS


@pytest.mark.parametrize("host, ok", [
    ("127.0.0.1", True), ("127.0.0.1:8000", True), ("localhost:8000", True), ("[::1]:8000", True),
    ("LOCALHOST.", True), ("evil.example", False), ("evil.example:8000", False),
    ("127.0.0.1.evil.example", False), ("", False),
])
def test_host_header_must_name_this_server(client, host, ok):
    r = client.get("/api/limits", headers={"host": host})
    assert (r.status_code == 200) == ok, r.text
    if not ok:
        assert r.status_code == 421 and r.json()["field"] == "host"


def test_host_policy_for_other_bindings():
    from llmroofline.web import allowed_host
    assert allowed_host("10.0.0.5:8000", "10.0.0.5")
    assert not allowed_host("10.0.0.6:8000", "10.0.0.5")
    assert allowed_host("10.0.0.6:8000", "0.0.0.0")          # any interface: IP literals
    assert not allowed_host("rebind.example", "0.0.0.0")
    assert allowed_host("llm.internal:443", "127.0.0.1", ("llm.internal",))


# -- 3. CLI: one line, non-zero exit, for every signature of the issue -------------------
def run(capsys, *argv) -> tuple[int, str, str]:
    from llmroofline import cli
    capsys.readouterr()
    rc = cli.main([str(a) for a in argv])
    o = capsys.readouterr()
    return rc, o.out, o.err


def one_line_error(capsys, *argv, needles=()) -> str:
    rc, out, err = run(capsys, *argv)
    assert rc == 2, (rc, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for n in needles:
        assert n.lower() in lines[0].lower(), (n, lines[0])
    return lines[0]


LONG = "x" * 300


@pytest.mark.parametrize("dist", ["fixed:inf", "fixed:nan", "fixed:1e300", "uniform:1,inf",
                                  "lognormal:inf,1", "uniform:nan,4", "lognormal:100,nan"])
def test_simulate_non_finite_distributions(capsys, dist):
    one_line_error(capsys, "simulate", "-n", 5, "--input-dist", dist, needles=["input_dist"])
    one_line_error(capsys, "simulate", "-n", 5, "--output-dist", dist, needles=["output_dist"])


def test_simulate_seed_and_rate_bounds(capsys):
    one_line_error(capsys, "simulate", "-n", 5, "--seed", -1, needles=["seed", "[0"])
    one_line_error(capsys, "capacity", "-n", 5, "--seed", -1, "--max-ttft-p99", "1s",
                   needles=["seed"])
    for r in ("1e-300", "1e300", "0"):
        one_line_error(capsys, "simulate", "-n", 5, "-r", r, needles=["rate", "requests/s"])


def test_long_names_without_a_file_suffix_are_unknown_names(capsys):
    one_line_error(capsys, "analyze", "-m", LONG, needles=["model: unknown model"])
    one_line_error(capsys, "analyze", "-H", LONG, needles=["hardware: unknown device"])


@pytest.mark.parametrize("argv, field", [
    (["analyze", "-m", LONG + ".json"], "model"), (["analyze", "-m", "/tmp/" + LONG], "model"),
    (["analyze", "-H", LONG + ".toml"], "hardware"),
    (["analyze", "-p", LONG + ".toml"], "profile"),
    (["compare", "-H", "h100-sxm", "h20", "--out", LONG + ".png"], "out"),
    (["roofline", "-H", "h100-sxm", "--out", LONG + ".html"], "out"),
    (["simulate", "-n", "5", "--plot", LONG + ".png"], "plot"),
    (["simulate", "-n", "5", "--csv", LONG + ".csv"], "csv"),
    (["calibrate", "x.csv", "--out", LONG + ".toml"], "out"),
])
def test_file_names_longer_than_the_file_system_allows(capsys, argv, field):
    one_line_error(capsys, *argv, needles=[field, "longer than the file system allows"])


@pytest.mark.parametrize("opt", ["--csv", "--plot"])
def test_outputs_at_a_missing_folder_or_a_folder(capsys, tmp_path, opt):
    field = opt[2:]
    suffix = ".csv" if opt == "--csv" else ".png"
    one_line_error(capsys, "simulate", "-n", 5, opt, f"/nonexistent/x{suffix}",
                   needles=[field, "does not exist"])
    d = tmp_path / f"folder{suffix}"
    d.mkdir()
    one_line_error(capsys, "simulate", "-n", 5, opt, d, needles=[field, "folder"])


def test_validate_plot_and_compare_out_at_a_folder(capsys, tmp_path):
    d = tmp_path / "pic.png"
    d.mkdir()
    one_line_error(capsys, "compare", "-H", "h100-sxm", "h20", "--out", d, needles=["out", "folder"])
    one_line_error(capsys, "validate", "--plot", d, needles=["plot", "folder"])
    one_line_error(capsys, "validate", "--plot", "/nonexistent/v.png", needles=["plot", "does not exist"])


def test_model_file_must_be_a_regular_bounded_file(capsys, tmp_path):
    import os
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    one_line_error(capsys, "analyze", "-m", fifo, needles=["model", "not a regular file"])
    one_line_error(capsys, "analyze", "-m", "/dev/zero", needles=["model", "not a regular file"])
    one_line_error(capsys, "analyze", "-H", "/dev/zero", needles=["hardware", "not a regular file"])
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(17_000_000)              # sparse: no disk used
    one_line_error(capsys, "analyze", "-m", big, needles=["model", "at most 16,000,000"])


def test_model_cell_of_a_measurements_csv_is_read_safely(capsys, tmp_path):
    from llmroofline import validate as val
    text = val.shipped_measurements().read_text().splitlines()
    head = text[0].split(",")
    row = text[1].split(",")
    row[head.index("model")] = "/dev/zero"
    f = tmp_path / "m.csv"
    f.write_text(text[0] + "\n" + ",".join(row) + "\n")
    rc, out, err = run(capsys, "validate", f, "--json")
    assert "Traceback" not in err
    if rc == 0:                            # the row is skipped with its reason
        assert "not a regular file" in json.dumps(json.loads(out)["skipped"])
    else:
        assert rc == 2 and "not a regular file" in err


def test_bench_config_with_a_string_layer_count(capsys, tmp_path):
    from importlib import resources
    cfg = json.loads((resources.files("llmroofline") / "data" / "models"
                      / "meta-llama__Llama-3.2-1B.json").read_text())
    for key in ("num_hidden_layers", "num_attention_heads"):
        bad = dict(cfg, **{key: str(cfg[key])})
        f = tmp_path / f"{key}.json"
        f.write_text(json.dumps(bad))
        from llmroofline.specs.catalog import load_config_file
        with pytest.raises(InputError, match=key):
            load_config_file(f)            # what bench reads before it shrinks the config


def test_no_silent_infinities(capsys, tmp_path):
    one_line_error(capsys, "analyze", "--host-bw", "1e-300", "--offload-weights", "0.5",
                   needles=["host_bw", "bytes/s"])
    dev = tmp_path / "dev.toml"
    dev.write_text('name = "x"\nmemory_gb = 1e308\nmem_bw_gb_s = 2000\nbf16_tflops = 100\n')
    one_line_error(capsys, "analyze", "-H", dev, needles=["memory_gb", "1e+07"])
    rc, out, err = run(capsys, "analyze", "--host-bw", "1e6", "--offload-weights", "0.5", "--json")
    assert rc == 0
    json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))


def test_calibrate_out_is_checked_before_the_fit(capsys, monkeypatch):
    from llmroofline import fit
    monkeypatch.setattr(fit, "calibrate", lambda *a, **k: pytest.fail("fit ran"))
    from llmroofline import validate as val
    csv = val.shipped_measurements()
    one_line_error(capsys, "calibrate", csv, "--out", "/nonexistent/x.toml",
                   needles=["out", "does not exist"])


# -- 4. calibrate writes atomically, never over its input; profiles carry a checksum -------
def test_calibrate_refuses_to_overwrite_its_input(capsys, tmp_path):
    f = tmp_path / "m.toml"
    f.write_text("id,x\n")
    before = f.read_bytes()
    one_line_error(capsys, "calibrate", f, "--out", f, needles=["out", "measurements file itself"])
    assert f.read_bytes() == before


def test_profile_checksum_detects_truncation_and_edits(tmp_path):
    from llmroofline.specs.profile import load_profile, profile_to_toml
    prof = load_profile("trtllm-0.8")
    text = profile_to_toml(prof)
    ok = tmp_path / "ok.toml"
    ok.write_text(text)
    back = load_profile(ok)
    assert set(back.families) == set(prof.families)
    assert back.fallback.bandwidth == pytest.approx(prof.fallback.bandwidth, rel=1e-12)
    cut = tmp_path / "cut.toml"
    cut.write_text(text[: len(text) // 2])            # a failed write: half a file
    with pytest.raises(InputError, match=r"^profile: .*incomplete"):
        load_profile(cut)
    edited = tmp_path / "edited.toml"
    edited.write_text(text.replace("[fallback]\n", "[fallback]\n# a comment\n"))
    with pytest.raises(InputError, match=r"^profile: .*sha256"):
        load_profile(edited)
    hand = tmp_path / "hand.toml"                     # written by hand: no checked header
    hand.write_text("[fallback]\nbandwidth = 0.8\n")
    assert load_profile(hand).fallback.bandwidth == 0.8


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    import os
    from llmroofline import safeio
    f = tmp_path / "p.toml"
    f.write_text("old")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(InputError, match="out: cannot write .*No space left"):
        safeio.atomic_write_text(f, "new", "out")
    assert f.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["p.toml"]     # no temporary file left


@pytest.mark.parametrize("rows, needle", [
    (["a", "a"], "already the id of row 2"),
    (['"a\nb"'], "one non-empty line"),
    ([" a"], "one non-empty line"),
])
def test_measurement_ids_unique_and_one_line(tmp_path, rows, needle):
    from llmroofline import validate as val
    text = val.shipped_measurements().read_text().splitlines()
    head = text[0].split(",")
    base = text[1].split(",")
    lines = [text[0]]
    for rid in rows:
        r = list(base)
        r[head.index("id")] = rid
        lines.append(",".join(r))
    f = tmp_path / "m.csv"
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=needle):
        val.read_measurements(f)


# -- 5. answers a user could misread ---------------------------------------------------------
def test_a_configuration_that_does_not_fit_says_so_and_what_would(capsys):
    argv = ["analyze", "--model", "meta-llama/Llama-2-70b-hf", "--hardware", "h100-sxm",
            "--batch", "16", "--input", "2048", "--output", "256"]
    rc, out, err = run(capsys, *argv)
    assert rc == 0 and "does not fit" in err and "would fit" in err
    rc, out, err = run(capsys, *argv, "--json")
    d = json.loads(out)
    assert d["fit"]["fits"] is False and d["memory"]["fits"] is False
    # independently: 69e9 FP16 parameters alone are 138 GB against 80 GB
    assert lr.param_count(lr.load_model("meta-llama/Llama-2-70b-hf")) * 2 > 80e9
    opts = d["fit"]["would_fit"]
    assert "--tp 2" in opts and any(o.startswith("--offload-weights") for o in opts)
    assert any(o.startswith("--quant") for o in opts)
    for o in opts:                         # every suggestion really fits, per the CLI itself
        rc, out, err = run(capsys, *argv, *o.split(), "--json")
        assert rc == 0 and json.loads(out)["fit"]["fits"] is True, o
    rc, out, err = run(capsys, "analyze", "--json")
    assert json.loads(out)["fit"] == {"fits": True, "message": None, "would_fit": []}


def test_grid_points_that_do_not_fit_are_counted_on_stderr(capsys):
    rc, out, err = run(capsys, "analyze", "-m", "llama-2-7b", "-b", "1,4096", "-i", "4096")
    assert rc == 0 and "1 of 2 grid points do not fit" in err


def test_fp8_on_an_a100_warns_that_it_is_costed_at_int8(capsys):
    rc, out, err = run(capsys, "analyze", "-H", "a100-sxm-80gb", "--quant", "fp8")
    assert rc == 0 and "no fp8 tensor units" in err and "int8 peak" in err


def test_max_batch_is_an_int_for_a_scalar_query():
    a = lr.analyze("llama-2-7b", "a100-sxm-80gb", 16, 2048, 256)
    assert type(a.max_batch) is int and a.max_batch == int(a.memory.max_batch)
    g = lr.analyze("llama-2-7b", "a100-sxm-80gb", np.array([1, 8]), 2048, 256)
    assert g.max_batch.shape == (2,)


def test_simulate_above_capacity_is_overloaded_with_its_saturation_rate(capsys):
    rc, out, err = run(capsys, "simulate", "-r", "60", "-n", "400", "--json")
    assert rc == 0 and "overloaded" in err and "saturation rate" in err
    s = json.loads(out)["steady"]
    assert s["overloaded"] and s["saturation_requests_s"] < 0.95 * s["offered_requests_s"]
    # the saturation rate is what the deployment serves: a run at that rate keeps up
    sat = s["saturation_requests_s"]
    rc, out, err = run(capsys, "simulate", "-r", f"{0.5 * sat:.3f}", "-n", "400", "--json")
    calm = json.loads(out)["steady"]
    assert "overloaded" not in err and not calm["overloaded"]
    assert calm["requests_s"] == pytest.approx(calm["offered_requests_s"], rel=0.1)


def test_steady_state_throughput_is_separate_from_the_makespan_total():
    from llmroofline.serving.result import SimResult
    n = 100                                  # arrivals 1/s; 10 s each; an idle tail
    arr = np.arange(n, dtype=float)
    fin = arr + 10.0
    fin[-1] += 1000.0                        # one straggler stretches the makespan
    z = np.zeros(n)
    r = SimResult(arr, np.ones(n, int), np.full(n, 5), arr, arr + 1, fin, z, np.zeros(1),
                  np.ones(1), np.zeros(1), np.ones(1), np.ones(1), np.ones(1), np.ones(1), 10,
                  None)
    st = r.steady_state()
    assert st["requests_s"] == pytest.approx(1.0) and not st["overloaded"]
    assert st["offered_requests_s"] == pytest.approx(1.0)
    assert r.arrival_s.size / r.makespan_s < 0.1


# -- 6. the quick-start install draws pictures; tables stay readable at 80 columns ---------
def test_plotting_libraries_are_core_dependencies():
    import tomllib
    from pathlib import Path
    deps = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split(">")[0].split("=")[0].split(";")[0].strip() for d in deps}
    assert {"matplotlib", "plotly"} <= names


def test_a_missing_plotting_library_is_one_line_with_the_install_hint(capsys, monkeypatch, tmp_path):
    import sys
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # import fails as if absent
    one_line_error(capsys, "compare", "-H", "h100-sxm", "h20", "--out", tmp_path / "x.png",
                   needles=["matplotlib is not installed", "pip install"])
    monkeypatch.setitem(sys.modules, "plotly", None)
    monkeypatch.delitem(sys.modules, "plotly.graph_objects", raising=False)
    one_line_error(capsys, "roofline", "-H", "h100-sxm", "--out", tmp_path / "x.html",
                   needles=["plotly is not installed", "pip install"])


@pytest.mark.parametrize("argv", [["analyze"], ["analyze", "--tp", "2", "--pp", "2", "-H", "h100-sxm"],
                                  ["analyze", "-b", "1,8", "-i", "128,4096"], ["models"],
                                  ["hardware"], ["rank", "--vendor", "NVIDIA"]])
def test_tables_keep_every_number_at_80_columns(capsys, monkeypatch, argv):
    import importlib
    import io
    from llmroofline.cli.common import _Out
    buf = io.StringIO()
    con = _Out(width=80, file=buf, force_terminal=False, color_system=None)
    for m in ("analyze", "catalog", "compare", "accuracy", "common"):
        monkeypatch.setattr(importlib.import_module(f"llmroofline.cli.{m}"), "out", con)
    rc, _, _ = run(capsys, *argv)
    text = buf.getvalue()
    assert rc == 0 and text
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    if argv == ["analyze"]:          # the decode time of qkv_proj, whole, as at 132 columns
        a = lr.analyze()
        qkv = next(o for o in a.decode.ops if o.name == "qkv_proj")
        from llmroofline.cli.common import secs
        assert secs(float(qkv.time_s)) in text
