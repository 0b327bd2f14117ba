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
    from llmroofline.specs.profile import load_profile, resolve_efficiency
    calls = []
    real = phases.build_ops
    monkeypatch.setattr(phases, "build_ops", lambda *a, **k: calls.append(1) or real(*a, **k))
    I, C, B = 5000, 1024, 2
    a = lr.analyze("gemma-2-9b", "h100-sxm", B, I, 2, prefill_chunk=C)
    prefill_calls = len(calls) - 2                  # decode builds two tables (kv = 1, 2)
    assert prefill_calls == 1
    m, hw = lr.load_model("gemma-2-9b"), lr.load_hardware("h100-sxm")
    eff = resolve_efficiency(hw.efficiency, hw.family, load_profile(None), a.precision.abits)
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
