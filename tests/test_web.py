"""`llmroofline serve`: the HTTP JSON API and the page.

- API tests with FastAPI's TestClient: every endpoint returns what the CLI's ``--json``
  prints for the same inputs; invalid requests get a 4xx naming the field, never a 500;
  nothing in a request reaches the file system or the network.
- End-to-end: ``llmroofline serve`` in a subprocess on a free loopback port, headless
  Chromium (Debian's /usr/bin/chromium driven by Playwright) changes the model and the
  device, and the summary shown must equal ``llmroofline analyze --json``. It takes the
  screenshot of docs/web.md: into docs/img/web.png when that file is missing or
  LLMROOFLINE_UPDATE_SCREENSHOT=1 is set (else into a temporary directory, so a test run
  leaves the work tree clean: rendering is not byte-for-byte reproducible). Without
  Chromium or Playwright the browser test is skipped with the reason.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmroofline import cli
from llmroofline.web import INSTALL_HINT, create_app, schemas

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "docs" / "img" / "web.png"


@pytest.fixture(scope="module")
def client():
    return TestClient(create_app(), base_url="http://127.0.0.1", raise_server_exceptions=False)


def cli_json(capsys, *args) -> object:
    capsys.readouterr()
    assert cli.main(list(args)) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def catalog_config(name: str) -> dict:
    return json.loads((resources.files("llmroofline") / "data" / "models" / name).read_text())


# -- every endpoint returns the CLI's numbers --------------------------------------------------
def test_models_and_hardware_equal_cli(client, capsys):
    assert client.get("/api/models").json() == cli_json(capsys, "models", "--json")
    assert client.get("/api/hardware").json() == cli_json(capsys, "hardware", "--json")
    assert client.get("/api/hardware/H20").json() == cli_json(capsys, "hardware", "h20", "--json")
    assert client.get("/api/limits").json()["mesh values per axis"] == schemas.MAX_MESH_AXIS


@pytest.mark.parametrize("body,args", [
    ({}, []),
    ({"model": "llama-3.1-8b", "hardware": "h100-sxm", "batch": 16, "input_len": 2048,
      "output_len": 256, "quant": "w4a16,kv-fp8", "tp": 2, "profile": "ideal", "flash": False},
     ["-m", "llama-3.1-8b", "-H", "h100-sxm", "-b", "16", "-i", "2048", "-o", "256",
      "--quant", "w4a16,kv-fp8", "--tp", "2", "--profile", "ideal", "--no-flash"]),
    ({"model": "mixtral-8x7b", "hardware": "h20", "batch": 64, "input_len": 1024, "output_len": 1,
      "wbits": 8, "abits": 8, "kvbits": 8, "tp": 2, "ep": 2, "dp": 3},
     ["-m", "mixtral-8x7b", "-H", "h20", "-b", "64", "-i", "1024", "-o", "1", "--wbits", "8",
      "--abits", "8", "--kvbits", "8", "--tp", "2", "--ep", "2", "--dp", "3"]),
    ({"model": "llama-2-7b", "hardware": "l40s", "batch": 4, "beams": 4, "pp": 2},
     ["-m", "llama-2-7b", "-H", "l40s", "-b", "4", "--beams", "4", "--pp", "2"]),
    ({"model": "llama-3.1-8b", "hardware": "h100-sxm", "cuda_graphs": True},
     ["-m", "llama-3.1-8b", "-H", "h100-sxm", "--cuda-graphs"]),
    ({"model": "llama-3.1-8b", "hardware": "h100-sxm", "input_len": 20000, "prefill_chunk": 4096},
     ["-m", "llama-3.1-8b", "-H", "h100-sxm", "-i", "20000", "--prefill-chunk", "4096"]),
])
def test_analyze_equals_cli(client, capsys, body, args):
    r = client.post("/api/analyze", json=body)
    assert r.status_code == 200, r.text
    assert r.json() == cli_json(capsys, "analyze", *args, "--json")


def test_uploaded_config_equals_catalog_model(client):
    body = {"hardware": "h20", "batch": 8, "input_len": 1000, "output_len": 100}
    ref = client.post("/api/analyze", json={**body, "model": "llama-2-13b"}).json()
    cfg = catalog_config("meta-llama__Llama-2-13b-hf.json")
    got = client.post("/api/analyze", json={**body, "config": cfg, "model": "my-13b"}).json()
    assert got["model"] == "my-13b" and ref["model"] == "meta-llama/Llama-2-13b-hf"
    assert {**got, "model": ref["model"]} == ref
    cfg.pop("_name_or_path", None)
    assert client.post("/api/analyze", json={**body, "config": cfg}).json()["model"] == "custom"


def test_roofline_equals_cli(client, capsys):
    r = client.post("/api/roofline", json={"model": "llama-2-13b", "hardware": ["a100-sxm-80gb", "h20"],
                                           "batch": 64, "phase": "decode", "quant": "fp8"})
    assert r.status_code == 200, r.text
    ref = cli_json(capsys, "roofline", "-m", "llama-2-13b", "-H", "a100-sxm-80gb", "-H", "h20",
                   "-b", "64", "--phase", "decode", "--quant", "fp8", "--json")
    data = r.json()
    assert {k: data[k] for k in ref} == ref
    assert data["precision"] == "W8A8KV8"
    assert len(data["warnings"]) == 1 and "a100-sxm-80gb has no fp8" in data["warnings"][0]


def test_compare_equals_cli(client, capsys):
    r = client.post("/api/compare", json={"model": "llama-2-7b", "hardware": ["a100-sxm-80gb", "h20"],
                                          "batch": "1:256", "seq": [128, 1024, 4000],
                                          "method": "both", "output_len": 64})
    assert r.status_code == 200, r.text
    ref = cli_json(capsys, "compare", "-m", "llama-2-7b", "a100-sxm-80gb", "h20", "--batch", "1:256",
                   "--seq", "128,1024,4000", "--method", "both", "--output", "64", "--json")
    data = r.json()
    assert {k: data[k] for k in ref} == ref
    assert len(data["meshes"]) == 2 and data["meshes"][0]["seq"] == [128, 1024, 4000]


def test_rank_equals_cli(client, capsys, tmp_path):
    r = client.post("/api/rank", json={"model": "llama-2-70b", "hardware": ["h100-sxm", "h20", "l40s"],
                                       "batch": "max", "tp": "auto", "max_tpot_s": 0.05,
                                       "prices": {"H100-SXM": 2.5, "h20": 1.2}, "sort": "tok_per_usd"})
    assert r.status_code == 200, r.text
    prices = tmp_path / "prices.csv"
    prices.write_text("device,usd_per_hour\nh100-sxm,2.5\nh20,1.2\n")
    ref = cli_json(capsys, "rank", "-m", "llama-2-70b", "h100-sxm", "h20", "l40s", "--batch", "max",
                   "--tp", "auto", "--max-tpot", "50ms", "--prices", str(prices),
                   "--sort", "tok_per_usd", "--json")
    assert r.json() == ref
    assert ref["devices"][0]["rank"] == 1 and ref["devices"][0]["tok_per_usd"] > 0


def test_rank_whole_catalog_is_bounded(client):
    t = time.perf_counter()
    r = client.post("/api/rank", json={"model": "llama-3.1-70b", "batch": "max", "tp": "auto"})
    assert r.status_code == 200, r.text
    assert len(r.json()["devices"]) == len(client.get("/api/hardware").json())
    assert time.perf_counter() - t < 30


def test_largest_allowed_mesh_is_bounded(client):
    t = time.perf_counter()
    r = client.post("/api/compare", json={
        "model": "deepseek-v3", "hardware": ["h100-sxm", "h200", "h20", "b200"], "tp": 8,
        "batch": f"1:{schemas.MAX_BATCH}:{schemas.MAX_MESH_AXIS}",
        "seq": f"128:131072:{schemas.MAX_MESH_AXIS}", "method": "both", "ignore_context": True})
    assert r.status_code == 200, r.text
    m = r.json()["meshes"][0]
    assert len(m["batch"]) * len(m["seq"]) <= schemas.MAX_MESH_AXIS ** 2
    assert time.perf_counter() - t < 30


def test_openapi_page_and_static_files(client):
    spec = client.get("/openapi.json").json()
    assert {"/api/models", "/api/hardware", "/api/analyze", "/api/compare", "/api/roofline",
            "/api/rank"} <= set(spec["paths"])
    props = spec["components"]["schemas"]["AnalyzeRequest"]["properties"]
    assert {"model", "config", "hardware", "batch", "input_len", "output_len", "tp", "quant",
            "wbits", "abits", "kvbits", "flash", "profile"} <= set(props)
    assert client.get("/docs").status_code == 404  # Swagger UI would load scripts from a CDN
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    assert 'src="/static/plotly.min.js"' in html and 'src="/static/app.js"' in html
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert "http" not in js.text.replace("HTTP ", "")  # no external URL in the page's script
    assert client.get("/static/app.css").status_code == 200
    plotly = client.get("/static/plotly.min.js")
    assert plotly.status_code == 200 and len(plotly.content) > 1_000_000
    for bad in ("/static/app.py", "/static/..%2Fapp.py", "/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
                "/static/../../pyproject.toml"):
        r = client.get(bad)
        assert r.status_code == 404, bad
        assert "[project]" not in r.text


# -- invalid requests: 4xx naming the field, never 500 --------------------------------------------
LLAMA = catalog_config("meta-llama__Llama-2-7b-hf.json")
INVALID = [
    # (path, body, status, field, text the message must contain)
    ("/api/analyze", {"batch": "16"}, 422, "batch", "integer"),
    ("/api/analyze", {"batch": 1.5}, 422, "batch", "integer"),
    ("/api/analyze", {"batch": True}, 422, "batch", "integer"),
    ("/api/analyze", {"batch": 0}, 422, "batch", "greater than or equal to 1"),
    ("/api/analyze", {"batch": 10 ** 7}, 422, "batch", str(schemas.MAX_BATCH)),
    ("/api/analyze", {"input_len": -5}, 422, "input_len", "greater than"),
    ("/api/analyze", {"output_len": 2 ** 21}, 422, "output_len", str(schemas.MAX_LEN)),
    ("/api/analyze", {"flash": "yes"}, 422, "flash", "boolean"),
    ("/api/analyze", {"wbits": 5}, 422, "wbits", "4, 8, 16 or 32"),
    ("/api/analyze", {"tp": 4096}, 422, "tp", "1024"),
    ("/api/analyze", {"profile": "/tmp/my-profile.toml"}, 422, "profile", "default"),
    ("/api/analyze", {"input": 512}, 422, "input", "Extra inputs"),
    ("/api/analyze", {"hardware": "h100"}, 400, "hardware", "did you mean"),
    ("/api/analyze", {"hardware": "/root/gpu.toml"}, 400, "hardware", "file path"),
    ("/api/analyze", {"model": "llama-9"}, 400, "model", "did you mean"),
    ("/api/analyze", {"model": "/etc/passwd"}, 400, "model", "file path"),
    ("/api/analyze", {"model": "../../data/models/x.json"}, 400, "model", "file path"),
    ("/api/analyze", {"model": "someone/not-a-model"}, 400, "model", "downloads nothing"),
    ("/api/analyze", {"model": "tests"}, 400, "model", "unknown model"),
    ("/api/analyze", {"tp": 3}, 400, "tp", "does not divide"),
    ("/api/analyze", {"quant": "fp7"}, 400, "quant", "did you mean"),
    ("/api/analyze", {"abits": 8, "wbits": 16}, 400, "abits", "wbits"),
    ("/api/analyze", {"beams": 2, "samples": 2}, 400, "samples", "cannot be combined"),
    ("/api/analyze", {"model": "opt-6.7b", "input_len": 2000, "output_len": 100}, 400,
     "output_len", "context"),
    ("/api/analyze", {"config": [1, 2]}, 422, "config", "dictionary"),
    ("/api/analyze", {"config": {"model_type": "llama", "hidden_size": 64}}, 400, "config",
     "missing field"),
    ("/api/analyze", {"config": {**LLAMA, "num_hidden_layers": 10 ** 9}}, 422, "config", "1024"),
    ("/api/analyze", {"config": {**LLAMA, "hidden_size": "big"}}, 400, "config", "hidden_size"),
    ("/api/analyze", {"config": {**LLAMA, "model_type": "bert"}}, 400, "config", "model_type"),
    ("/api/roofline", {"hardware": []}, 422, "hardware", "at least 1"),
    ("/api/roofline", {"hardware": ["h20", "H20"]}, 400, "hardware", "twice"),
    ("/api/roofline", {"phase": "both-ways"}, 422, "phase", "prefill"),
    ("/api/compare", {"batch": "1:65536:200"}, 422, "batch", "at most 64"),
    ("/api/compare", {"seq": list(range(1, 200))}, 422, "seq", "at most 64"),
    ("/api/compare", {"seq": [512, 256]}, 422, "seq", "increasing"),
    ("/api/compare", {"batch": "1:abc"}, 422, "batch", "batch must be"),
    ("/api/compare", {"hardware": ["h20"]}, 422, "hardware", "at least 2"),
    ("/api/compare", {"hardware": ["h20", "h200", "h100-sxm", "a100-sxm-80gb", "b200"]}, 422,
     "hardware", "at most 4"),
    ("/api/compare", {"hardware": ["h20", "h2O"]}, 400, "hardware", "did you mean"),
    ("/api/compare", {"output_len": 127}, 422, "output_len", "multiple of 2"),
    ("/api/compare", {"output_len": 512, "seq": "128:1024"}, 400, "seq", ">="),
    ("/api/compare", {"method": "fast"}, 422, "method", "ops"),
    ("/api/rank", {"batch": "mx"}, 422, "batch", "'max'"),
    ("/api/rank", {"tp": "manual"}, 422, "tp", "'auto'"),
    ("/api/rank", {"max_tpot_s": -1}, 422, "max_tpot_s", "greater than 0"),
    ("/api/rank", {"prices": {"h2000": 1.0}}, 400, "prices", "did you mean"),
    ("/api/rank", {"prices": "/etc/prices.csv"}, 422, "prices", "dictionary"),
    ("/api/rank", {"sort": "tok_per_usd"}, 400, "sort", "price"),
    ("/api/rank", {"vendor": "Nvidea"}, 400, "vendor", "did you mean"),
    ("/api/rank", {"hardware": ["h20", "tpu-v9000"]}, 400, "hardware", "unknown device"),
]


@pytest.mark.parametrize("path,body,status,field,text", INVALID,
                         ids=[f"{p.rsplit('/', 1)[1]}-{f}-{i}" for i, (p, _, _, f, _) in enumerate(INVALID)])
def test_invalid_request_names_the_field(client, path, body, status, field, text):
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    data = r.json()
    if status == 422:
        assert field in data["fields"], data
        message = data["message"]
        assert any(field == ".".join(map(str, e["loc"][1:2])) for e in data["detail"]), data
    else:
        assert data["field"] == field, data
        message = data["detail"]
    assert "\n" not in message and message.startswith(field), message
    assert text in message, message


def test_malformed_bodies(client):
    r = client.post("/api/analyze", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["fields"] == ["body"]
    r = client.post("/api/analyze")
    assert r.status_code == 422 and r.json()["message"].startswith("body")
    big = json.dumps({"config": {**LLAMA, "pad": "x" * schemas.MAX_BODY_BYTES}})
    r = client.post("/api/analyze", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "body" in r.json()["detail"]
    r = client.get("/api/hardware/h2")
    assert r.status_code == 404 and "did you mean: h20" in r.json()["detail"]
    assert client.get("/api/nothing").status_code == 404
    assert client.get("/api/analyze").status_code == 405


def test_a_bug_is_a_json_500(client, monkeypatch):
    from llmroofline.web import service

    def broken():
        raise RuntimeError("boom")

    monkeypatch.setattr(service, "models", broken)
    r = client.get("/api/models")
    assert r.status_code == 500 and r.json()["detail"].startswith("internal error (RuntimeError)")


def test_mutated_configs_never_give_500(client):
    """Every integer field of a real config set to odd values: 200 or a 4xx on `config`."""
    ints = [k for k, v in LLAMA.items() if isinstance(v, int) and not isinstance(v, bool)]
    assert len(ints) >= 7
    statuses = set()
    for k in ints:
        for v in (0, -1, 1, 3, 10 ** 12, "x", None, [], {}, 2.5):
            cfg = copy.deepcopy(LLAMA)
            cfg[k] = v
            r = client.post("/api/analyze", json={"config": cfg, "batch": 2, "tp": 1})
            assert r.status_code in (200, 400, 422), (k, v, r.text)
            if r.status_code == 400:
                assert r.json()["field"] in ("config", "output_len"), (k, v, r.text)
            statuses.add(r.status_code)
    assert statuses >= {200, 400}


# -- the serve command ----------------------------------------------------------------------------
def test_import_stays_light():
    code = ("import sys, llmroofline, llmroofline.cli; "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'plotly', 'matplotlib') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_serve_without_fastapi_is_one_line(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi -> ImportError
    assert cli.main(["serve", "--port", "8123"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and INSTALL_HINT in err and "fastapi" in err


def test_serve_port_errors(capsys):
    assert cli.main(["serve", "--port", "70000"]) == 2
    assert "port must be an integer in [1, 65535]" in capsys.readouterr().err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert cli.main(["serve", "--port", str(s.getsockname()[1])]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: port: cannot listen on 127.0.0.1:")


# -- end to end: the real server and headless Chromium (fixtures in conftest.py) -----------------
def _wait_render(page, rev: str | None) -> str:
    sel = "body[data-state=ready]" + (f":not([data-rev='{rev}'])" if rev is not None else "")
    page.wait_for_selector(sel, state="attached", timeout=30_000)
    return page.get_attribute("body", "data-rev")


def test_browser_end_to_end(chromium, chromium_flags, server, capsys, tmp_path):
    exe, sync_api = chromium
    t0 = time.perf_counter()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True, args=chromium_flags,
                                     timeout=60_000)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            requests, problems = [], []
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.goto(server + "/?batch=16&input_len=2048&output_len=256")
            rev = _wait_render(page, None)
            assert page.inner_text("#s-model") == "meta-llama/Llama-2-7b-hf"

            # change the model (search the catalog by alias) and the device
            page.fill("#model", "llama-3.1-8b")
            page.press("#model", "Enter")
            rev = _wait_render(page, rev)
            page.select_option("#hardware", "h100-sxm")
            rev = _wait_render(page, rev)
            assert page.inner_text("#s-model") == "meta-llama/Llama-3.1-8B"
            assert page.inner_text("#s-hardware") == "h100-sxm"

            ref = cli_json(capsys, "analyze", "-m", "llama-3.1-8b", "-H", "h100-sxm", "-b", "16",
                           "-i", "2048", "-o", "256", "--json")

            def shown(el):
                return page.get_attribute(el, "data-value"), page.inner_text(el)

            for el, key in (("#ttft", "ttft_s"), ("#tpot", "tpot_s"), ("#e2e", "e2e_s")):
                value, text = shown(el)
                assert float(value) == ref[key] and text == cli.secs(ref[key]), (el, value, text)
            value, text = shown("#throughput")
            assert float(value) == ref["throughput_tok_s"]
            assert text == f"{ref['throughput_tok_s']:,.1f}"
            assert int(shown("#max_batch")[0]) == ref["max_batch"]
            assert float(shown("#mem-total")[0]) == ref["memory"]["total_bytes"]
            assert shown("#mem-total")[1] == cli.gb(ref["memory"]["total_bytes"])
            assert float(shown("#mem-capacity")[0]) == ref["memory"]["capacity_bytes"]
            assert page.get_attribute("#mem-fits", "data-value") == str(ref["memory"]["fits"]).lower()

            # operator table: one row per decode operator, sortable by time
            rows = page.locator("#ops tbody tr")
            assert rows.count() == len(ref["decode"]["ops"])
            page.click("#ops th[data-key=time_s]")
            slowest = max(ref["decode"]["ops"], key=lambda o: o["time_s"])["name"]
            assert page.get_attribute("#ops tbody tr >> nth=0", "data-op") == slowest
            assert page.get_attribute("#ops th[data-key=time_s]", "aria-sort") == "descending"
            page.click("[data-phase=prefill]")
            assert rows.count() == len(ref["prefill"]["ops"])
            bounds = {page.inner_text(f"#ops tbody tr >> nth={i} >> .bound") for i in range(rows.count())}
            assert bounds <= {"compute", "memory", "overhead", "communication"} and len(bounds) >= 2

            # charts: roofline points and the comparison heatmap with hover values
            assert page.locator("#roofline-chart .scatterlayer .point").count() >= len(ref["decode"]["ops"])
            assert page.locator("#compare-chart .heatmaplayer").count() == 1
            assert "h100-sxm faster" in page.inner_text("#compare-summary")
            page.locator("#compare-chart").scroll_into_view_if_needed()
            box = page.locator("#compare-chart .nsewdrag").first.bounding_box()
            page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.7)
            page.wait_for_selector("#compare-chart .hoverlayer .hovertext", timeout=10_000)
            hover = page.locator("#compare-chart .hoverlayer").text_content()
            assert "tok/s" in hover and "batch" in hover

            # the URL holds the state: a new page on it shows the same view
            url = page.url
            assert "model=meta-llama%2FLlama-3.1-8B" in url and "hardware=h100-sxm" in url
            assert "batch=16" in url and "phase=prefill" in url
            page2 = browser.new_page(viewport={"width": 1440, "height": 1000})
            page2.goto(url)
            _wait_render(page2, None)
            assert page2.get_attribute("#ttft", "data-value") == page.get_attribute("#ttft", "data-value")
            assert page2.get_attribute("#ops tbody tr >> nth=0", "data-op") == \
                page.get_attribute("#ops tbody tr >> nth=0", "data-op")
            page2.close()

            # a bad value: the server's message naming the field is shown
            page.fill("#batch", "0")
            page.press("#batch", "Tab")
            page.wait_for_selector(f"body[data-state=error]:not([data-rev='{rev}'])", state="attached")
            assert page.inner_text("#error").startswith("batch:")
            page.fill("#batch", "16")
            page.press("#batch", "Tab")
            rev = _wait_render(page, None)
            page.click("[data-phase=decode]")
            page.mouse.move(5, 5)

            shot = SCREENSHOT if os.environ.get("LLMROOFLINE_UPDATE_SCREENSHOT") or \
                not SCREENSHOT.exists() else tmp_path / "web.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
            # offline: nothing but the local server was asked for anything
            assert requests and all(u.startswith(server + "/") for u in requests), requests
            assert all("422" in p for p in problems), problems  # only the bad batch above
        finally:
            browser.close()
    print(f"browser end-to-end: {time.perf_counter() - t0:.1f} s")
