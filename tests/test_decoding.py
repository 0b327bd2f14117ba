"""Decoding strategies: beam search, parallel sampling, speculative decoding.

Expected numbers are derived by hand from the definitions in docs/conventions.md
("Decoding strategies"), by Monte-Carlo simulation, or by recomputing round by round.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import llmroofline as lr
from llmroofline import cli, decoding, phases
from llmroofline.cost import Roofline
from llmroofline.errors import InputError
from llmroofline.graph import build_ops
from llmroofline.specs.precision import Precision

TARGET, DRAFT = "meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.2-1B"
H100_BW = 3350e9


# -- expected tokens per target step -------------------------------------------------------
@pytest.mark.parametrize("k,a", [(1, 0.5), (4, 0.3), (4, 0.7), (8, 0.9), (16, 0.95)])
def test_tau_matches_monte_carlo_of_accept_reject(k, a):
    rng = np.random.default_rng(k * 100 + int(a * 100))
    n = 200_000
    ok = rng.random((n, k)) < a
    # Drafts are checked left to right; the first rejection ends the round. The target
    # always contributes one token (the correction, or the bonus token after k accepts).
    accepted = np.where(ok.all(axis=1), k, np.argmin(ok, axis=1))
    simulated = float(np.mean(accepted + 1))
    assert decoding.expected_tokens_per_round(k, a) == pytest.approx(simulated, rel=0.01)


def test_tau_limits():
    assert decoding.expected_tokens_per_round(4, 0.0) == 1.0
    assert decoding.expected_tokens_per_round(4, 1.0) == 5.0
    assert decoding.expected_tokens_per_round(4, 1 - 1e-9) == pytest.approx(5.0, rel=1e-6)
    # geometric series 1 + a + ... + a^k
    assert decoding.expected_tokens_per_round(3, 0.5) == pytest.approx(1 + 0.5 + 0.25 + 0.125)


# -- beam search and parallel sampling ------------------------------------------------------
def test_beam_width_one_is_plain_decoding_exactly():
    kw = dict(batch=np.array([1, 8])[:, None], input_len=np.array([100, 2000]), output_len=64)
    plain = lr.analyze("llama-2-7b", "a100-sxm-80gb", **kw)
    for extra in (dict(beams=1), dict(samples=1)):
        a = lr.analyze("llama-2-7b", "a100-sxm-80gb", **kw, **extra)
        for f in ("ttft_s", "tpot_s", "e2e_s", "throughput_tok_s"):
            assert np.array_equal(getattr(a, f), getattr(plain, f))
        assert np.array_equal(a.memory.total_bytes, plain.memory.total_bytes)
        assert np.array_equal(a.max_batch, plain.max_batch)


@pytest.mark.parametrize("model,hw", [("llama-2-7b", "h100-sxm"),
                                      ("mistralai/Mixtral-8x7B-v0.1", "h100-sxm")])
def test_w_rows_decode_exactly_as_plain_decoding_at_batch_b_times_w(model, hw):
    B, W, I, O = 4, 8, 700, 50
    beam = lr.analyze(model, hw, batch=B, input_len=I, output_len=O, beams=W)
    wide = lr.analyze(model, hw, batch=B * W, input_len=I, output_len=O)
    narrow = lr.analyze(model, hw, batch=B, input_len=I, output_len=O)
    assert float(beam.decode.total_time_s) == float(wide.decode.total_time_s)
    assert float(beam.ttft_s) == float(narrow.ttft_s)        # the prompt is prefilled once
    e2e = float(narrow.ttft_s + wide.decode.total_time_s)
    assert float(beam.e2e_s) == pytest.approx(e2e, rel=1e-12)
    # beam search returns B sequences; sampling returns B x n
    assert float(beam.throughput_tok_s) == pytest.approx(B * O / e2e, rel=1e-12)
    samp = lr.analyze(model, hw, batch=B, input_len=I, output_len=O, samples=W)
    assert float(samp.decode.total_time_s) == float(wide.decode.total_time_s)
    assert float(samp.throughput_tok_s) == pytest.approx(B * W * O / e2e, rel=1e-12)


def test_beam_kv_cache_holds_prompt_once_and_generated_tokens_per_row():
    B, W, I, O = 3, 4, 1000, 200
    a = lr.analyze("meta-llama/Llama-2-7b-hf", "a100-sxm-80gb", batch=B, input_len=I,
                   output_len=O, beams=W)
    per_token = 2 * 32 * 32 * 128 * 2        # K and V, 32 layers, 32 heads x 128, fp16
    assert float(a.memory.kv_cache_bytes) == B * (I + W * O) * per_token
    # Sliding window (Mistral, 4096): each layer keeps min(L, 4096) tokens. Prompt part
    # min(4000, 4096) = 4000 once; each row adds min(4200, 4096) - 4000 = 96.
    m = lr.analyze("mistralai/Mistral-7B-v0.1", "h100-sxm", batch=1, input_len=4000,
                   output_len=200, samples=2)
    assert float(m.memory.kv_cache_bytes) == (4000 + 2 * 96) * 32 * (2 * 8 * 128 * 2)
    # max_batch counts requests: (capacity - weights) / (KV + activations per request)
    per_req = float(a.memory.kv_cache_bytes + a.memory.activation_bytes) / B
    assert int(a.max_batch) == math.floor((80e9 - a.memory.weights_bytes) / per_req)


@pytest.mark.parametrize("kw,msg", [
    (dict(beams=0), r"beams must be an integer in \[1, 1024\]"),
    (dict(samples=2000), r"samples must be an integer in \[1, 1024\]"),
    (dict(beams=2.5), "beams must be an integer"),
    (dict(beams=2, samples=2), "cannot be combined"),
])
def test_beam_and_sample_validation(kw, msg):
    with pytest.raises(InputError, match=msg):
        lr.analyze("llama-2-7b", "a100-sxm-80gb", **kw)


# -- speculative decoding: physics at batch 1 ----------------------------------------------
def _step_time(ops, hw="h100-sxm", layout=None):
    roof = Roofline.of(lr.load_hardware(hw), Precision(), layout)
    return float(phases.step_cost(ops, roof).time_s)


def test_verify_step_costs_a_decode_step_plus_k_tokens_of_activations():
    m = lr.load_model(TARGET)
    k, L = 4, 1000
    step = _step_time(build_ops(m, Precision(), 1, 1, L))
    verify = _step_time(decoding.verify_ops(m, Precision(), 1, k, L))
    # Both steps stream the same 16 GB of weights and read the same L cached tokens; the
    # k extra query tokens only add their activations (fp16). Per layer and token,
    # elements read + written: norms 2 x 2h, qkv h + q + 2kv, rope 2(q + kv), attention
    # q in + q out + 2kv written to the cache, o_proj q + h, residual adds 2 x 3h,
    # gate_up h + 2f, act 3f, down f + h  ->  14h + 6q + 6kv + 6f.
    h, q, kv, f, vocab = 4096, 32 * 128, 8 * 128, 14336, 128256
    per_layer = 14 * h + 6 * q + 6 * kv + 6 * f
    # Outside the layers: embedding row read + write (2h), final norm (2h), lm_head
    # input and logits (h + vocab): verification needs logits at all k + 1 positions.
    per_token = 32 * per_layer + 2 * h + 2 * h + h + vocab
    assert verify - step == pytest.approx(k * per_token * 2 / H100_BW, rel=1e-9)
    # "nearly the same": weights dominate at batch 1
    weights = 2 * (8_030_261_248 - vocab * h)
    assert 1 < verify / step < 1 + k * per_token * 2 / weights * 1.01
    assert verify / step < 1.01


def test_speculative_speedup_matches_weight_streaming_estimate():
    """Memory-bound target at batch 1: a step costs its weight bytes / bandwidth.

    speed-up = tau x t_target / (t_verify + k t_draft) with t = weight bytes / bandwidth
    (the verify step costs a plain step, see above); KV reads add < 1 %.
    """
    k, a = 4, 0.8
    s = decoding.speculative(TARGET, "h100-sxm", 1, 128, 257, draft=DRAFT, draft_k=k,
                             accept=a, profile="ideal")
    tau = (1 - a ** (k + 1)) / (1 - a)
    w_target = 2 * (8_030_261_248 - 128256 * 4096)   # the embedding table is not streamed
    w_draft = 2 * 1_235_814_400                      # tied: the table is read as lm_head
    expected = tau * w_target / (w_target + k * w_draft)
    assert float(s.tpot_speedup) == pytest.approx(expected, rel=0.01)
    assert float(s.tpot_speedup) > 1.8
    assert s.rounds == pytest.approx(256 / tau)
    assert float(s.tpot_s) == pytest.approx(float(s.decode_s) / 256, rel=1e-12)


def test_speculative_with_zero_acceptance_is_slower_than_plain():
    k = 4
    s = decoding.speculative(TARGET, "h100-sxm", 1, 128, 257, draft=DRAFT, draft_k=k,
                             accept=0.0, profile="ideal")
    # tau = 1: every token costs k draft steps + a verify step (>= a plain step).
    assert s.tau == 1.0 and float(s.rounds) == 256
    assert float(s.tpot_s) > float(s.plain.tpot_s) + k * 0.99 * 2 * 1_235_814_400 / H100_BW
    assert float(s.tpot_speedup) < 0.8 and float(s.e2e_speedup) < 1


def test_speculative_ttft_includes_both_prefills_and_throughput_definition():
    s = decoding.speculative(TARGET, "h100-sxm", 4, 512, 65, draft=DRAFT, draft_k=3,
                             accept=0.6, profile="ideal")
    t = lr.analyze(TARGET, "h100-sxm", 4, 512, 65, profile="ideal")
    d = lr.analyze(DRAFT, "h100-sxm", 4, 512, 65, profile="ideal")
    assert float(s.ttft_s) == pytest.approx(float(t.ttft_s + d.ttft_s), rel=1e-12)
    assert float(s.e2e_s) == pytest.approx(float(s.ttft_s + s.tpot_s * 64), rel=1e-12)
    assert float(s.throughput_tok_s) == pytest.approx(4 * 65 / float(s.e2e_s), rel=1e-12)


def _rounds_by_loop(target, draft, hw, B, I, O, k, a, tp=1):
    """Each round built and costed on its own: k draft steps at KV n_r .. n_r + k - 1,
    a verify step (q_len k + 1) at n_r + k, n_r = I + 1 + r tau; the last round counts
    by its fraction of (O - 1) / tau."""
    from llmroofline.parallel import Layout
    tm, dm, prec = lr.load_model(target), lr.load_model(draft), Precision()
    lay = Layout(tp=tp)
    tau = (1 - a ** (k + 1)) / (1 - a)
    rounds = (O - 1) / tau
    draft_s = verify_s = 0.0
    r = 0
    while r < rounds:
        w = min(1.0, rounds - r)
        n = I + 1 + r * tau
        for i in range(k):
            draft_s += w * _step_time(build_ops(dm, prec, B, 1, n + i, layout=lay), hw, lay)
        verify_s += w * _step_time(decoding.verify_ops(tm, prec, B, k, n + k, layout=lay), hw, lay)
        r += 1
    return draft_s, verify_s


@pytest.mark.parametrize("B,I,O,k,a,tp", [(1, 100, 40, 3, 0.6, 1), (16, 3000, 30, 5, 0.9, 2),
                                          (2, 50, 2, 2, 0.5, 1)])
def test_speculative_decode_sum_equals_round_by_round(monkeypatch, B, I, O, k, a, tp):
    monkeypatch.setattr(decoding, "_ROUND_CHUNK", 7 * k)      # several chunks
    s = decoding.speculative(TARGET, "h100-sxm", B, I, O, draft=DRAFT, draft_k=k, accept=a,
                             tp=tp, profile="ideal")
    draft_s, verify_s = _rounds_by_loop(TARGET, DRAFT, "h100-sxm", B, I, O, k, a, tp)
    assert float(s.draft_decode_s) == pytest.approx(draft_s, rel=1e-9)
    assert float(s.verify_s) == pytest.approx(verify_s, rel=1e-9)


def test_speculative_grid_matches_points():
    B = np.array([1, 16])[:, None]
    I = np.array([128, 1024])
    g = decoding.speculative(TARGET, "l40s", B, I, 33, draft=DRAFT, draft_k=4, accept=0.7)
    for i, b in enumerate((1, 16)):
        for j, n in enumerate((128, 1024)):
            p = decoding.speculative(TARGET, "l40s", b, n, 33, draft=DRAFT, draft_k=4, accept=0.7)
            assert g.tpot_s[i, j] == pytest.approx(float(p.tpot_s), rel=1e-12)
            assert g.memory.total_bytes[i, j] == float(p.memory.total_bytes)


def test_speculative_memory_adds_draft_weights_and_kv():
    B, I, O, k = 8, 1000, 500, 4
    s = decoding.speculative(TARGET, "h100-sxm", B, I, O, draft=DRAFT, draft_k=k, accept=0.7)
    assert s.memory.weights_bytes == 2 * 8_030_261_248 + 2 * 1_235_814_400
    target_kv = 32 * 2 * 8 * 128 * 2      # bytes per token: layers x (K, V) x kv heads x dim x fp16
    draft_kv = 16 * 2 * 8 * 64 * 2
    # both caches reserve input + output + k lookahead tokens
    assert float(s.memory.kv_cache_bytes) == B * (I + O + k) * (target_kv + draft_kv)
    assert float(s.memory.activation_bytes) == max(float(s.plain.memory.activation_bytes),
                                                   float(s.draft.memory.activation_bytes))


def test_draft_on_its_own_tensor_parallel_group():
    from llmroofline.memory import weight_bytes_total
    from llmroofline.parallel import Layout
    tm, dm = lr.load_model("meta-llama/Llama-3.1-70B"), lr.load_model(DRAFT)
    t8 = weight_bytes_total(tm, Precision(), Layout(tp=8))
    same = decoding.speculative(tm, "h100-sxm", 1, 512, 65, draft=DRAFT, tp=8)
    own = decoding.speculative(tm, "h100-sxm", 1, 512, 65, draft=DRAFT, tp=8, draft_tp=1)
    # the most loaded device holds its target slice plus the draft's slice (or all of it)
    assert same.memory.weights_bytes == t8 + weight_bytes_total(dm, Precision(), Layout(tp=8))
    assert own.memory.weights_bytes == t8 + 2 * 1_235_814_400
    assert float(own.draft_step_s) > float(same.draft_step_s)   # one GPU streams the whole draft


@pytest.mark.parametrize("kw,msg", [
    (dict(draft_k=0), r"draft_k must be an integer in \[1, 16\], got 0"),
    (dict(draft_k=17), r"draft_k must be an integer in \[1, 16\]"),
    (dict(draft_k=2.0), "draft_k must be an integer"),
    (dict(accept=1.5), r"accept .* must be in \[0, 1\], got 1.5"),
    (dict(accept=float("nan")), r"accept .* must be in \[0, 1\]"),
    (dict(pp=2), "pp: speculative decoding"),
    (dict(beams=2), "beams = samples = 1"),
    (dict(draft="no-such-model"), "no-such-model"),
    (dict(draft_tp=0), r"draft_tp must be an integer in \[1, 1024\], got 0"),
    (dict(tp=8, draft="gpt2"), "draft openai-community/gpt2: tp: 8 does not divide.*set draft_tp"),
])
def test_speculative_validation(kw, msg):
    args = dict(draft=DRAFT, draft_k=4, accept=0.7) | kw
    with pytest.raises(InputError, match=msg):
        decoding.speculative(TARGET, "h100-sxm", 1, 128, 64, **args)


def test_draft_with_another_vocabulary_warns():
    s = decoding.speculative(TARGET, "h100-sxm", 1, 128, 64, draft="llama-2-7b")
    assert any("vocab_size 32000" in w and "tokenizer" in w for w in s.warnings)
    ok = decoding.speculative(TARGET, "h100-sxm", 1, 128, 64, draft=DRAFT)
    assert not any("vocab" in w for w in ok.warnings)


# -- command line ----------------------------------------------------------------------------
def test_cli_speculative_section_and_json(capsys):
    args = ["analyze", "--model", TARGET, "--hardware", "h100-sxm", "--draft", DRAFT,
            "--draft-k", "4", "--accept", "0.7"]
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    assert "Speculative decoding" in text and "speed-up" in text
    assert cli.main(args + ["--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    sp = d["speculative"]
    assert sp["draft"] == DRAFT and sp["draft_k"] == 4
    assert sp["tau"] == pytest.approx((1 - 0.7 ** 5) / 0.3)
    assert sp["tpot_speedup"] == pytest.approx(d["tpot_s"] / sp["tpot_s"])
    assert cli.main(["analyze", "--beams", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["beams"] == 4


@pytest.mark.parametrize("args,msg", [(["--draft-k", "0"], "draft_k"), (["--accept", "-1"], "accept"),
                                      (["--samples", "0"], "samples")])
def test_cli_decoding_errors(capsys, args, msg):
    assert cli.main(["analyze", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1
