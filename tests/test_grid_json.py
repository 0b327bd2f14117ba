"""The columnar grid payload (``analyze --json`` over a grid, ``report.grid_dict``): every
column equals the per-point value of ``report.to_dict`` at the same point, per-operator
arrays only with ``--ops``, units for every column, and the throughput column obeys the
static-batch formula batch x output / e2e."""

from __future__ import annotations

import json

import numpy as np
import pytest

import llmroofline as lr
from llmroofline import cli, decoding, report
from llmroofline.gridspec import cartesian

MODEL, HW = "llama-2-7b", "a100-sxm-80gb"
BATCH, INPUT, OUTPUT = [1.0, 8, 64], [128.0, 4096], [1.0, 64]    # output 1: TPOT is NaN


@pytest.fixture(scope="module")
def grid():
    ax = cartesian(batch=np.array(BATCH), input_len=np.array(INPUT), output_len=np.array(OUTPUT))
    a = lr.analyze(MODEL, HW, ax["batch"], ax["input_len"], ax["output_len"])
    spec = decoding.speculative(MODEL, HW, ax["batch"], ax["input_len"], np.array([[[9.0, 64]]]),
                                draft="llama-3.2-1b", draft_k=3, accept=0.7)
    return a, spec


def _same(col, ref):
    """Column value vs the per-point value (None where the point's value is NaN)."""
    if ref is None or (isinstance(ref, float) and np.isnan(ref)):
        return col is None
    return col == ref


def test_columns_equal_the_per_point_values(grid):
    a, _ = grid
    g = report.grid_dict(a)
    shape = (len(BATCH), len(INPUT), len(OUTPUT))
    assert g["shape"] == list(shape) and g["points"] == 12
    assert g["axes"] == {"batch": [1, 8, 64], "input_len": [128, 4096], "output_len": [1, 64]}
    c = g["columns"]
    assert all(len(v) == 12 for v in c.values())
    assert set(g["units"]) >= set(c)
    pairs = {"memory": ("kv_cache_bytes", "state_bytes", "activation_bytes", "total_bytes", "fits"),
             "prefill": ("time_s", "flops", "bytes"),
             "decode": ("time_s", "total_time_s", "steps", "flops", "bytes")}
    for k, idx in enumerate(np.ndindex(shape)):
        d = report.to_dict(a, idx)
        for key in ("batch", "input_len", "output_len", "ttft_s", "tpot_s", "e2e_s",
                    "throughput_tok_s", "max_batch"):
            assert _same(c[key][k], d[key]), (key, idx)
        for group, keys in pairs.items():
            for key in keys:
                name = key if group == "memory" else f"{group}_{key}"
                assert _same(c[name][k], d[group][key]), (name, idx)
        assert g["weights_bytes"] == d["memory"]["weights_bytes"]
        assert g["capacity_bytes"] == d["memory"]["capacity_bytes"]
    for key in ("model", "hardware", "precision", "tp", "layout", "params", "warnings"):
        assert g[key] == report.to_dict(a, (0, 0, 0))[key]
    # the formula, independently of the engine: tokens/s = batch x output / e2e
    b, o, e = (np.array(c[k], float) for k in ("batch", "output_len", "e2e_s"))
    assert np.allclose(np.array(c["throughput_tok_s"]), b * o / e, rtol=1e-12)
    assert [c["tpot_s"][k] is None for k in range(12)] == [oo == 1 for oo in c["output_len"]]
    assert "ops" not in g


def test_ops_arrays_equal_the_per_point_operator_rows(grid):
    a, _ = grid
    g = report.grid_dict(a, ops=True)
    shape = tuple(g["shape"])
    for phase in ("prefill", "decode"):
        rows = g["ops"][phase]
        assert [r["name"] for r in rows] == [o.name for o in getattr(a, phase).ops]
        for k, idx in enumerate(np.ndindex(shape)):
            ref = report.to_dict(a, idx)[phase]["ops"]
            for r, o in zip(rows, ref):
                assert (r["kind"], r["count"]) == (o["kind"], o["count"])
                for f in report.OP_FIELDS:
                    assert _same(r[f][k], o[f]), (phase, r["name"], f, idx)
    assert set(g["op_units"]) == set(report.OP_FIELDS)


def test_speculative_columns_equal_the_per_point_values(grid):
    _, spec = grid
    a = spec.plain
    g = report.grid_dict(a, spec)
    s = g["speculative"]
    assert (s["draft_k"], s["accept"]) == (3, 0.7)
    assert s["tau"] == pytest.approx((1 - 0.7 ** 4) / (1 - 0.7))     # (1 - a^(k+1)) / (1 - a)
    for k, idx in enumerate(np.ndindex(tuple(g["shape"]))):
        d = report.speculative_dict(spec, idx)
        for key, col in s["columns"].items():
            ref = d["memory"][key] if key in ("kv_cache_bytes", "total_bytes", "fits") else d[key]
            assert _same(col[k], ref), (key, idx)
    assert set(s["units"]) == set(s["columns"])


def test_cli_grid_json_is_compact_columns_and_ops_on_request(capsys):
    args = ["analyze", "-m", MODEL, "-b", "1,8", "-i", "128,512", "--json"]
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    g = json.loads(text)
    assert g["format"] == report.GRID_FORMAT and g["points"] == 4 and "ops" not in g
    assert text.count("\n") == 1                         # one line: no per-value newlines
    assert cli.main([*args, "--ops"]) == 0
    g2 = json.loads(capsys.readouterr().out)
    assert g2["columns"] == g["columns"] and len(g2["ops"]["decode"][0]["time_s"]) == 4
    # a single point keeps the per-point object (with its operator rows and the fit report)
    assert cli.main(["analyze", "-m", MODEL, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["batch"] == 1 and "ops" in d["decode"] and "fit" in d and "format" not in d
