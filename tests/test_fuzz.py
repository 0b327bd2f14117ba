"""Fuzz the command line parsers and the HTTP API schemas (hypothesis, a few seconds).

Whatever the input: no traceback (``cli.main`` returns 0 or 2; the API never answers 5xx),
``--json`` and API answers are strict JSON (no NaN/Infinity tokens), and every number in
them is finite.
"""

from __future__ import annotations

import json
import math
import os

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from llmroofline import cli  # noqa: E402

# LLMROOFLINE_FUZZ_EXAMPLES=500 (and LLMROOFLINE_FUZZ_RANDOM=1 for new examples each run)
# fuzzes longer than the suite's few seconds.
EXAMPLES = int(os.environ.get("LLMROOFLINE_FUZZ_EXAMPLES", "15"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                derandomize=not os.environ.get("LLMROOFLINE_FUZZ_RANDOM"),
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FUZZ_API = settings(FUZZ, max_examples=max(EXAMPLES, 40))

NASTY = ["nan", "inf", "-inf", "1e400", "1e-300", "-1", "0", "1e308", "", " ", "abc", "1.5",
         "\udcff", "4:1", "1:1e9", "1,,2", "9" * 40, "0x10", "1e6", "65536"]
numberish = st.one_of(st.sampled_from(NASTY), st.integers(-10, 70000).map(str),
                      st.floats(allow_nan=True, allow_infinity=True).map(repr),
                      st.text(max_size=6))


def finite_json(text: str):
    def bad(c):
        raise AssertionError(f"{c} in JSON output")
    data = json.loads(text, parse_constant=bad)

    def walk(x):
        if isinstance(x, float):
            assert math.isfinite(x)
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(data)
    return data


def run_cli(capsys, argv):
    capsys.readouterr()
    rc = cli.main(argv)                     # an unexpected exception fails the test here
    o = capsys.readouterr()
    assert rc in (0, 2), (argv, rc, o.err)
    assert "Traceback" not in o.err
    if rc == 2:
        assert len(o.err.strip().splitlines()) == 1 and o.err.startswith("error:"), (argv, o.err)
    return rc, o.out


ANALYZE_OPTS = {
    "--batch": numberish, "--input": numberish, "--output": numberish,
    "--tp": st.sampled_from(["1", "2", "3", "0", "-4", "1024", "x"]),
    "--quant": st.sampled_from(["fp8", "w4a16,kv-fp8", "int8-sq", "fp9", "", ",", "fp4"]),
    "--host-bw": numberish, "--offload-weights": numberish, "--offload-kv": numberish,
    "--prefill-chunk": numberish, "--beams": st.sampled_from(["1", "2", "0", "2000"]),
    "-H": st.sampled_from(["h100-sxm", "a100-sxm-80gb", "l40s", "nope", "/dev/null", "."]),
    "-m": st.sampled_from(["llama-2-7b", "gpt2", "mixtral-8x7b", "x/y/z", "/dev/zero", "a.json"]),
}


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(ANALYZE_OPTS)), st.none(), max_size=4)
       .flatmap(lambda keys: st.fixed_dictionaries({k: ANALYZE_OPTS[k] for k in keys})))
def test_fuzz_analyze_options(capsys, opts):
    argv = ["analyze", "--json"]
    if "--offload-weights" not in opts and "--host-bw" in opts:
        opts = {**opts, "--offload-weights": "0.5"}
    for k, v in opts.items():
        argv += [k, v]
    rc, out = run_cli(capsys, argv)
    if rc == 0:
        finite_json(out)


SIM_OPTS = {
    "--input-dist": st.one_of(numberish, numberish.map(lambda x: f"fixed:{x}"),
                              st.tuples(numberish, numberish).map(lambda t: f"uniform:{t[0]},{t[1]}"),
                              st.tuples(numberish, numberish).map(lambda t: f"lognormal:{t[0]},{t[1]}")),
    "--output-dist": st.sampled_from(["16", "fixed:nan", "uniform:1,inf", "lognormal:32,0.5", "0"]),
    "-r": numberish, "--seed": st.sampled_from(["0", "-1", "7", "x", str(2**70)]),
    "--max-batch": st.sampled_from(["1", "0", "8", "-3"]),
    "--max-tokens": st.sampled_from(["1", "64", "0", "100000000"]),
    "--kv-fraction": numberish, "--burstiness": numberish,
}


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(SIM_OPTS)), st.none(), max_size=3)
       .flatmap(lambda keys: st.fixed_dictionaries({k: SIM_OPTS[k] for k in keys})))
def test_fuzz_simulate_options(capsys, opts):
    argv = ["simulate", "-n", "12", "--json", "-m", "llama-3.2-1b"]
    for k, v in opts.items():
        argv += [k, v]
    rc, out = run_cli(capsys, argv)
    if rc == 0:
        finite_json(out)


# -- API ------------------------------------------------------------------------------------
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                      st.floats(allow_nan=True, allow_infinity=True),
                      st.text(max_size=8), st.sampled_from(["\ud800", "max", "auto", "1:64"]))
json_value = st.recursive(json_leaf, lambda c: st.lists(c, max_size=3)
                          | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=6)
FIELDS = ["model", "hardware", "batch", "input_len", "output_len", "quant", "wbits", "tp", "ep",
          "prefill_chunk", "profile", "beams", "config", "seq", "method", "max_ttft_s", "prices",
          "vendor", "phase", "sort", "flash"]


@pytest.fixture(scope="module")
def client():
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from llmroofline.web import create_app
    return TestClient(create_app(), base_url="http://127.0.0.1", raise_server_exceptions=False)


@FUZZ_API
@given(route=st.sampled_from(["/api/analyze", "/api/rank", "/api/compare", "/api/roofline"]),
       body=st.dictionaries(st.sampled_from(FIELDS), json_value, max_size=3))
def test_fuzz_api_bodies(client, route, body):
    if route == "/api/rank" and "hardware" not in body:
        body = {**body, "hardware": ["h100-sxm"]}            # keep each example quick
    raw = json.dumps(body, allow_nan=True)                   # NaN/Infinity tokens on purpose
    r = client.post(route, content=raw.encode("utf-8", "surrogatepass"),
                    headers={"content-type": "application/json"})
    assert r.status_code < 500, (route, raw, r.text)
    data = finite_json(r.text)
    if r.status_code >= 400:
        assert isinstance(data, dict) and ("message" in data or "detail" in data)
