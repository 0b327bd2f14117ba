"""Comparison meshes, pictures and device ranking: physics first, files second.

The physics tests use the ideal roofline (datasheet peaks): they check what the roofline
itself predicts. A100 SXM 80GB: 312 TFLOPS BF16, 2,039 GB/s (ridge 153 FLOP/B); H20:
148 TFLOPS, 4,000 GB/s (ridge 37 FLOP/B). A decode step of a dense model has an
intensity of about ``batch`` FLOP/B in its projections and ~1 x (query heads per KV head)
in attention, so: at small batch both devices are memory-bound and the H20 wins by its
bandwidth; at large batch and short sequences the projections become compute-bound and
the A100 wins by its compute; as sequences grow, attention (bandwidth-bound on both)
takes over and the ratio falls back to the bandwidth ratio.
"""

from __future__ import annotations

import inspect
import json
import shutil
import struct
import subprocess
from importlib import resources

import numpy as np
import pytest

import llmroofline as lr
from llmroofline import cli
from llmroofline import compare as cmp
from llmroofline import report
from llmroofline.errors import InputError
from llmroofline.rank import load_prices, rank

A100, H20 = "a100-sxm-80gb", "h20"
A100_BW, H20_BW = 2039e9, 4000e9          # datasheet bandwidths (bytes/s)
A100_PEAK, H20_PEAK = 312e12, 148e12      # dense BF16 FLOP/s
IDEAL = {"profile": "ideal"} if "profile" in inspect.signature(lr.analyze).parameters else {}

BATCH = 2.0 ** np.arange(0, 12)          # 1 .. 2048
SEQ = 2.0 ** np.arange(7, 16)            # 128 .. 32768


def mesh(model, hw=(A100, H20), batch=BATCH, seq=SEQ, **kw):
    return cmp.compare_methods(model, list(hw), batch, seq, ignore_context=True,
                               **{**IDEAL, **kw})


def a100_win_fraction(m: cmp.Mesh) -> float:
    """Share of the mesh where the A100 is faster, memory capacity ignored (the ratio
    the chips' roofs give; e.g. what each device of a TP group sees)."""
    return float(np.mean(m.ratio_raw > 1))


def dense_twin_of_mixtral():
    """Mixtral-8x7B with its MoE replaced by one dense MLP of top_k x expert width: the
    same attention (GQA 32/8) and the same active parameters, without experts."""
    root = resources.files("llmroofline") / "data" / "models"
    cfg = json.loads((root / "mistralai__Mixtral-8x7B-v0.1.json").read_text())
    twin = {k: v for k, v in cfg.items() if k not in ("num_local_experts", "num_experts_per_tok",
                                                      "router_aux_loss_coef", "output_router_logits")}
    twin.update(model_type="mistral", intermediate_size=cfg["num_experts_per_tok"] * cfg["intermediate_size"])
    return lr.from_hf_config(twin, name="mixtral-dense-twin")


@pytest.fixture(scope="module")
def l13():
    return mesh("llama-2-13b")


# -- physics ----------------------------------------------------------------------------------
def test_ratio_falls_with_sequence_length(l13):
    r = l13["ops"].ratio_raw
    # at fixed batch the ratio never rises with sequence length ...
    assert np.all(np.diff(r, axis=1) <= 1e-9)
    # ... and falls strictly where the A100 had a compute advantage to lose
    big = list(BATCH).index(256)
    assert r[big, 0] > 1.2 and r[big, -1] < r[big, 0] * 0.5
    # at batch 1 both are memory-bound: the ratio is the bandwidth ratio at every length
    np.testing.assert_allclose(r[0], A100_BW / H20_BW, rtol=2e-3)
    # no cell beats the ratio of compute peaks or loses more than the bandwidth ratio
    assert np.all(r <= A100_PEAK / H20_PEAK + 1e-9) and np.all(r >= A100_BW / H20_BW - 1e-9)


def test_a100_wins_at_short_sequences_and_large_batch(l13):
    m = l13["ops"]
    r = m.ratio_raw
    assert np.all(np.diff(r, axis=0) >= -1e-9)      # more batch never hurts the A100
    win = r > 1
    assert win[-1, 0] and not win[0].any() and not win[:, -1].any()
    # the region is a corner: a win at (b, s) implies wins at every larger b, shorter s
    for i, j in zip(*np.nonzero(win)):
        assert win[i:, : j + 1].all()
    # the same holds where both devices really fit the workload (masked mesh)
    v = m.valid & (m.ratio > 1)
    assert v.any()
    bi, si = np.nonzero(v)
    assert m.batch[bi].min() >= 64 and m.seq[si].max() <= 512


def test_gqa_enlarges_and_moe_shrinks_the_a100_region(l13):
    f13 = a100_win_fraction(l13["ops"])
    f70 = a100_win_fraction(mesh("llama-2-70b")["ops"])
    # Llama-2-70B: 8 KV heads for 64 query heads: per token of context it reads 2.5x less
    # KV cache than 13B (327 vs 819 kB) for 5.3x more weights, so attention (the
    # bandwidth-bound part) weighs less and the compute-rich A100 wins more of the mesh.
    assert f70 > f13 * 1.5
    # Mixtral-8x7B vs a dense model with the same attention and the same active
    # parameters: per decode step the MoE reads up to all 8 experts' weights for the
    # FLOPs of 2, so its intensity is lower and the A100's region smaller.
    twin = dense_twin_of_mixtral()
    mix = lr.analyze("mixtral-8x7b", H20, **IDEAL)
    assert lr.param_count(twin) == pytest.approx(mix.active_params, rel=0.001)
    f_mix = a100_win_fraction(mesh("mixtral-8x7b")["ops"])
    f_twin = a100_win_fraction(mesh(twin)["ops"])
    assert 0 < f_mix < f_twin * 0.8
    # Against Llama-2-13B (13.0 B vs 12.9 B active) the same holds on the mesh
    # (batch up to 256); at batch >= 512 Mixtral's GQA (6x less KV per token than 13B's
    # multi-head attention) outweighs the MoE effect at long sequences, so 13B is not a
    # clean control over larger batches.
    small = dict(batch=BATCH[BATCH <= 256])
    assert a100_win_fraction(mesh("mixtral-8x7b", **small)["ops"]) < \
        a100_win_fraction(mesh("llama-2-13b", **small)["ops"])


def test_global_and_ops_agree_on_the_winner_over_most_of_the_mesh(l13):
    agree = cmp.sign_agreement(l13["ops"], l13["global"])
    raw = np.mean(np.sign(np.log(l13["ops"].ratio_raw)) == np.sign(np.log(l13["global"].ratio_raw)))
    print(f"\nsign(log ratio) agreement ops vs global, Llama-2-13B A100/H20: "
          f"{100 * agree:.1f}% of fitting cells, {100 * raw:.1f}% of the whole mesh")
    assert agree > 0.8 and raw > 0.8


def test_global_method_by_hand():
    # Llama-2-7B, batch 1: a decode step moves 13.21e9 weight bytes (every weight but the
    # embedding table, docs/conventions.md) + 524,288 KV bytes per token of context; the
    # mean step attends to seq tokens (reads their K/V) and writes the new token's: seq + 1
    # (as in the worked example: 192 + 1). Memory-bound, so tokens/s = BW / bytes.
    params, vocab, h = 6_738_415_616, 32000, 4096
    weights = 2 * (params - vocab * h) + 2 * h
    seq = np.array([256.0, 2048.0])
    m = cmp.compare("llama-2-7b", [A100, H20], [1], seq, method="global", **IDEAL)
    for k, bw in enumerate((A100_BW, H20_BW)):
        np.testing.assert_allclose(m.throughput_tok_s[k, 0], bw / (weights + 524_288 * (seq + 1)),
                                   rtol=1e-9)


def test_mesh_workload_and_masks():
    seq = np.array([128.0, 1024.0, 4096.0, 8192.0])
    m = cmp.compare("llama-2-13b", [A100, H20], [1, 64], seq, output_len=128, **IDEAL)
    np.testing.assert_array_equal(m.input_len, seq - 64)
    # beyond Llama-2's 4,096-token context: masked, not evaluated
    np.testing.assert_array_equal(m.in_context, [True, True, False, False])
    assert np.isnan(m.throughput_tok_s[:, :, 2:]).all()
    # memory masks are the engine's own verdict for the same workload
    a = lr.analyze("llama-2-13b", A100, 64, 1024 - 64, 128, **IDEAL)
    assert bool(m.fits[0, 1, 1]) == bool(a.memory.fits)
    assert not m.fits[0, 1, 1]                  # 64 x 1,088 tokens x 819 kB + 26 GB > 80 GB
    assert np.isnan(m.ratio[1, 1]) and np.isfinite(m.ratio_raw[1, 1])
    # the ops decode throughput is batch / TPOT of the engine
    np.testing.assert_allclose(m.throughput_tok_s[0, 1, 1], 64 / float(a.tpot_s), rtol=1e-12)
    s = m.summary()
    assert s["cells_beyond_context"] == 4 and s["cells_compared"] == int(m.valid.sum())


def test_one_vectorized_analyze_call_per_device(monkeypatch):
    calls = []
    real = cmp.analyze

    def counting(*a, **k):
        calls.append(np.shape(a[2]))
        return real(*a, **k)

    monkeypatch.setattr(cmp, "analyze", counting)
    cmp.compare_methods("llama-2-7b", [A100, H20, "h100-sxm"], np.arange(1, 33), SEQ[:6])
    assert len(calls) == 3


@pytest.mark.parametrize("kw,msg", [
    (dict(output_len=127), "even"),
    (dict(seq=[10, 100]), "seq must be >= output_len/2"),
    (dict(hardware_list=[A100]), "at least two devices"),
    (dict(hardware_list=[A100, A100]), "listed twice"),
    (dict(method="fast"), "method must be one of"),
    (dict(batch=[8, 4]), "strictly increasing"),
])
def test_compare_input_errors(kw, msg):
    args = dict(model="llama-2-7b", hardware_list=[A100, H20], batch=[1, 8], seq=[512, 1024])
    args.update(kw)
    with pytest.raises(InputError, match=msg):
        cmp.compare(**args)


# -- pictures ------------------------------------------------------------------------------------
def png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def small_both():
    return cmp.compare_methods("llama-2-13b", [A100, H20], 2.0 ** np.arange(0, 9),
                               2.0 ** np.arange(7, 14), **IDEAL)


def test_compare_files(tmp_path, small_both):
    from llmroofline import plots
    both = [small_both["ops"], small_both["global"]]
    png = plots.save_compare(both, tmp_path / "c.png")
    assert png_size(png) == plots.compare_figure_size_px(2)
    one = plots.save_compare(both[0], tmp_path / "c1.png")
    assert png_size(one) == plots.compare_figure_size_px(1)
    svg = plots.save_compare(both, tmp_path / "c.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    html = plots.save_compare(both, tmp_path / "c.html").read_text()
    assert 'class="plotly-graph-div"' in html
    assert "plotly.js v" in html and '<script src="http' not in html   # plotly.js embedded
    import pandas as pd
    df = pd.read_csv(plots.save_compare(both, tmp_path / "c.csv"))
    assert len(df) == 2 * 9 * 7 and set(df["method"]) == {"ops", "global"}
    with pytest.raises(InputError, match="suffix"):
        plots.save_compare(both, tmp_path / "c.jpg")


def test_roofline_points_lie_on_or_under_the_roofs(tmp_path):
    from llmroofline import plots
    an = [lr.analyze("llama-3.1-8b", h, 16, 1024, 128, **IDEAL) for h in (A100, H20)]
    pts = report.roofline_points(an)
    assert {p["phase"] for p in pts} == {"prefill", "decode"}
    for p in pts:
        bw = A100_BW if p["hardware"] == A100 else H20_BW
        peak = A100_PEAK if p["hardware"] == A100 else H20_PEAK
        roof = min(peak, p["intensity"] * bw)
        assert p["flops_s"] <= roof * (1 + 1e-9)
        if p["bound"] == "memory":     # memory-bound operators sit on the bandwidth line
            assert p["flops_s"] == pytest.approx(p["intensity"] * bw, rel=1e-9)
    assert report.ridge(an[0])["intensity"] == pytest.approx(A100_PEAK / A100_BW)
    assert png_size(plots.save_roofline(an, tmp_path / "r.png")) == plots.roofline_figure_size_px()
    html = plots.save_roofline(an, tmp_path / "r.html").read_text()
    assert 'class="plotly-graph-div"' in html and '<script src="http' not in html


def test_html_renders_in_headless_chromium(tmp_path, small_both):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        print("\nskipped: no chromium on PATH (apt-get install chromium)")
        pytest.skip("chromium is not installed")
    from llmroofline import plots
    page = plots.save_compare([small_both["ops"], small_both["global"]], tmp_path / "c.html")
    shot = tmp_path / "shot.png"
    subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--window-size=1400,640", f"--screenshot={shot}",
                    page.as_uri()], capture_output=True, timeout=120, check=True)
    import matplotlib.image as mpimg
    img = mpimg.imread(shot)[..., :3]
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    # the heatmap was drawn by the embedded JS: strong reds and blues are on the page
    assert np.sum((r > 0.5) & (b < 0.3) & (g < 0.3)) > 1000
    assert np.sum((b > 0.5) & (r < 0.5)) > 200


# -- ranking ---------------------------------------------------------------------------------
DEVICES = [A100, H20, "l4", "l40s", "rtx-4090", "tpu-v5p"]


def test_rank_honours_max_tpot():
    tpot = {h: float(lr.analyze("llama-3.1-8b", h, 8, 1024, 128, **IDEAL).tpot_s) for h in DEVICES}
    limit = 0.02
    assert any(t > limit for t in tpot.values()) and any(t <= limit for t in tpot.values())
    r = rank("llama-3.1-8b", DEVICES, batch=8, input_len=1024, output_len=128,
             max_tpot_s=limit, **IDEAL)
    assert {x.hardware for x in r.ranked} == {h for h, t in tpot.items() if t <= limit}
    for x in r.rows:
        if x.hardware not in {y.hardware for y in r.ranked}:
            assert x.rank is None and any("TPOT" in why for why in x.reasons)
    tput = [x.throughput_tok_s for x in r.ranked]
    assert tput == sorted(tput, reverse=True)


def test_rank_per_watt_is_tokens_per_second_over_tdp():
    r = rank("llama-3.1-8b", DEVICES, batch=8, input_len=1024, output_len=128,
             sort_by="tok_s_per_w", **IDEAL)
    with_tdp = [x for x in r.ranked if x.tdp_w]
    for x in with_tdp:
        assert x.tok_s_per_w == pytest.approx(x.throughput_tok_s / lr.load_hardware(x.hardware).tdp_w)
    assert [x.hardware for x in with_tdp] == sorted(
        (x.hardware for x in with_tdp), key=lambda h: -next(y.tok_s_per_w for y in with_tdp if y.hardware == h))
    # tpu-v5p has no TDP in the catalog: ranked last, with a note
    assert r.ranked[-1].hardware == "tpu-v5p" and any("TDP" in n for n in r.notes)


def test_rank_fit_prices_vendor_and_auto_tp(tmp_path):
    toml = tmp_path / "p.toml"
    toml.write_text('[usd_per_hour]\n"a100-sxm-80gb" = 1.5\nh20 = 1.2\n')
    csv = tmp_path / "p.csv"
    csv.write_text("device,usd_per_hour\na100-sxm-80gb,1.5\nh20,1.2\n")
    assert load_prices(toml) == load_prices(csv) == {"a100-sxm-80gb": 1.5, "h20": 1.2}
    r = rank("llama-2-13b", [A100, H20, "rtx-4090"], batch=4, prices=csv, sort_by="tok_per_usd", **IDEAL)
    for x in r.ranked:
        assert x.tok_per_usd == pytest.approx(x.throughput_tok_s * 3600 / x.usd_per_hour)
    bad = next(x for x in r.rows if x.hardware == "rtx-4090")   # 26 GB of weights > 24 GB
    assert bad.rank is None and not bad.fits and "does not fit" in bad.reasons[0]
    (tmp_path / "typo.toml").write_text("a100-sxm-80g = 1.5\n")
    with pytest.raises(InputError, match="did you mean"):
        rank("llama-2-13b", [A100, H20], prices=tmp_path / "typo.toml")
    nv = rank("llama-2-7b", vendor="nvidia", **IDEAL)
    assert nv.rows and all(x.vendor == "NVIDIA" for x in nv.rows)
    with pytest.raises(InputError, match="did you mean"):
        rank("llama-2-7b", vendor="nvidai")
    # tp auto: the fewest devices that fit (70B at 16 bits: 138 GB of weights)
    auto = rank("llama-2-70b", [A100, "h200"], tp="auto", **IDEAL)
    got = {x.hardware: x.tp for x in auto.rows}
    assert got == {A100: 2, "h200": 1}
    assert not lr.analyze("llama-2-70b", A100, **IDEAL).memory.fits


def test_rank_max_batch_is_the_best_feasible_batch():
    limit = 0.04
    r = rank("llama-2-13b", ["l20"], batch="max", input_len=1024, output_len=128,
             max_tpot_s=limit, **IDEAL)
    best = r.rows[0]
    # brute force, one analyze per batch size
    feasible = {}
    for b in range(1, 200):
        a = lr.analyze("llama-2-13b", "l20", b, 1024, 128, **IDEAL)
        if bool(a.memory.fits) and float(a.tpot_s) <= limit:
            feasible[b] = float(a.throughput_tok_s)
    assert best.rank == 1 and best.batch == max(feasible, key=feasible.get)


# -- command line -------------------------------------------------------------------------------
def test_cli_commands(tmp_path, capsys):
    assert cli.main(["compare", "-m", "llama-2-7b", "--hardware", A100, H20, "--batch", "1:64",
                     "--seq", "256:4096", "--method", "both", "--json", "-p", "ideal"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [m["method"] for m in data["meshes"]] == ["ops", "global"]
    assert 0.8 < data["sign_agreement_ops_global"] <= 1
    assert cli.main(["compare", "-m", "llama-2-7b", f"{A100},{H20}", "--batch", "1,64",
                     "--seq", "256,1024"]) == 0
    text = capsys.readouterr().out
    assert "cells won" in text and A100 in text
    out = tmp_path / "r.csv"
    assert cli.main(["rank", "-m", "llama-2-7b", "--vendor", "AMD", "--max-tpot", "20ms",
                     "--out", str(out)]) == 0
    assert out.read_text().startswith("hardware,")
    capsys.readouterr()
    assert cli.main(["roofline", "-m", "llama-2-7b", A100, "--json"]) == 0
    assert "ridges" in json.loads(capsys.readouterr().out)
    for argv in (["compare", "--output", "3"], ["rank", "--max-tpot", "fast"],
                 ["compare", "--out", "x.gif"], ["rank", "--sort", "speed"]):
        capsys.readouterr()
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and err.count("\n") == 1
