"""Overheads and decode loops of ``probe``: the tiny models whose kernels do no work.

- :func:`_framework`: a tiny Llama (hidden 64) with 1..8 layers run by ``transformers``
  exactly as ``bench`` runs models (static cache, manual loop): per-layer and per-step time
  of prefill and decode, fitted to the engine's launch/step/prefill overheads
  (``fit.fit_overhead``).
- :func:`_framework_decoder`: the same line from the plain-torch decoder (``decoder.py``)
  for quick runs without transformers loaded (its import alone takes 4-6 s on a 2-core VM).
- :func:`_decode_rows`: decode loops as kernel-table rows (``decode_eager``,
  ``decode_graph``), the tiny model at each depth and on CUDA a 1B-class width.

Every step is cut to the time it is allowed (rounds first, then steps).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .fit import fit_overhead
from .timing import median, require_torch

if TYPE_CHECKING:  # pragma: no cover
    from .measure import ProbeResult
    from .timing import Clock

clock_s = __import__("time").perf_counter

TINY_PREFILL_TOKENS = 16


def tiny_config(layers: int) -> dict:
    """A Llama whose kernels do negligible work: what remains is framework overhead."""
    return {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
            "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": layers,
            "vocab_size": 256, "max_position_embeddings": 512, "tie_word_embeddings": False,
            "rms_norm_eps": 1e-5, "bos_token_id": 0, "eos_token_id": 1}



def _framework(cfg: dict, dtype: str, device: str, reps: int, allowed_s: float = math.inf,
               res: ProbeResult | None = None) -> dict:
    """Per-layer and per-step time of tiny models run like ``bench`` runs models.

    The models with 1..8 layers are timed in turns (one generation each per round) so a
    slow spell of a shared machine does not bend the fitted line.
    """
    t_start = clock_s()                 # the import and the builds count against allowed_s
    require_torch(transformers=True)
    from ..bench.model import build_model
    from ..bench.run import Generator, Timings
    from ..graph import build_ops
    from ..specs.model import from_hf_config
    from ..specs.precision import Precision
    steps = cfg["tiny_steps"]
    layers = list(cfg["tiny_layers"])
    gens = [Generator(build_model(tiny_config(n), dtype, device), 1, TINY_PREFILL_TOKENS,
                      steps + 1, device) for n in layers]
    timings = [Timings() for _ in gens]
    for g in gens:
        g.generation(steps=4)
    t1 = clock_s()
    for g in gens:
        g.generation(steps=4)
    # one round = each model's full generation (~(steps + 1) / 5 of a 4-step warm-up)
    per_round = (clock_s() - t1) * (steps + 1) / 5
    n = max(reps, 7)                    # ~1 ms steps: cheap on an idle machine
    left = allowed_s - (clock_s() - t_start)
    if per_round * n > left:
        n = max(2, int(left // max(per_round, 1e-9)))
        if res is not None:
            res.skipped.append(f"framework overhead: {n} generation(s) per tiny model (budget)")
    for _ in range(n):
        for g, t in zip(gens, timings):
            pre, times = g.generation()
            t.prefill_s.append(pre)
            t.step_s.append(times)
            t.steps = len(times)
    dec = [t.tpot_s for t in timings]
    pre = [t.ttft_s for t in timings]
    launches = [sum(o.count for o in build_ops(from_hf_config(tiny_config(n)), Precision(), 1, 1, 2))
                for n in (1, 2)]
    per_layer = launches[1] - launches[0]
    fit = fit_overhead(layers, dec, pre, per_layer, launches[0] - per_layer)
    fit.update(layers=layers, decode_s=dec, prefill_s=pre, engine_launches_per_layer=per_layer,
               engine_fixed_launches=launches[0] - per_layer, source="transformers (as bench runs)")
    return fit


DECODER_1B = dict(hidden=2048, heads=32, kv_heads=8, ffn=8192, vocab=128256)   # Llama-3.2-1B


def _decode_specs(cuda: bool, tiny_layers) -> list[tuple]:
    """(DecoderShape, batch, max_len, start, steps, graphs) of the decode loops to time:
    the tiny model at each depth (overheads) everywhere; on CUDA also a 1B-class width at
    2 and 4 layers, eager and as CUDA graphs."""
    from .decoder import DecoderShape, TINY
    from dataclasses import replace
    out = [(replace(TINY, layers=n), 1, 64, 16, 16, False) for n in tiny_layers]
    if cuda:
        out += [(replace(TINY, layers=n), 1, 64, 16, 16, True) for n in tiny_layers]
        for n in (2, 4):
            sh = DecoderShape(layers=n, **DECODER_1B)
            out += [(sh, 1, 1024, 512, 32, False), (sh, 1, 1024, 512, 32, True)]
    return out


def _fit_rounds(step_s: list[float], steps: list[int], rounds: int, allowed_s: float):
    """(rounds, steps per loop) whose cost ``rounds x sum(steps_i x step_s_i)`` fits
    ``allowed_s``: fewer rounds first (down to 1), then fewer steps (down to 2)."""
    per_round = sum(n * t for n, t in zip(steps, step_s))
    if per_round * rounds <= allowed_s:
        return rounds, steps
    r = int(allowed_s // per_round) if per_round > 0 else rounds
    if r >= 1:
        return r, steps
    scale = allowed_s / per_round
    return 1, [max(2, int(n * scale)) for n in steps]


def _decode_rows(cfg: dict, tdt, dtype: str, device: str, clock: Clock, res: ProbeResult,
                 rounds: int = 5, allowed_s: float = math.inf) -> list[list[float]]:
    """Time the decode loops of :func:`_decode_specs` in turns (``rounds`` rounds, median
    per step position, mean over positions) and add them as kernel rows; returns the
    per-loop step samples. The 2-step warm-ups give each loop's step time, and rounds and
    steps are cut to fit ``allowed_s`` (a CPU shared with busy neighbours can run these
    tiny steps 30x slower with 2 threads than with 1)."""
    from .decoder import Decoder, time_steps
    t0 = clock_s()
    specs = _decode_specs(clock.cuda, cfg["tiny_layers"])
    decs, warm = [], []
    for sh, b, max_len, start, steps, graphs in specs:
        d = Decoder(sh, b, max_len, tdt, device)
        if graphs:
            d.capture()
        warm.append(median(time_steps(d, clock, 2, start, graphs)))     # warm-up
        decs.append(d)
    n_rounds, n_steps = _fit_rounds(warm, [s[4] for s in specs], rounds,
                                    allowed_s - (clock_s() - t0))
    if n_rounds < rounds or n_steps != [s[4] for s in specs]:
        res.skipped.append(f"decode loops cut to {n_rounds} round(s) of {min(n_steps)}+ steps "
                           "by the budget")
    specs = [s[:4] + (n,) + s[5:] for s, n in zip(specs, n_steps)]
    samples = [[] for _ in specs]
    for _ in range(n_rounds):
        for (sh, b, max_len, start, steps, graphs), d, out in zip(specs, decs, samples):
            out.append(time_steps(d, clock, steps, start, graphs))
    for (sh, b, max_len, start, steps, graphs), out in zip(specs, samples):
        step_s = float(np.mean([median(col) for col in zip(*out)]))
        res.kernels.append({"op": "decode_graph" if graphs else "decode_eager", "dtype": dtype,
                            "m": b, "heads": sh.heads, "kv_heads": sh.kv_heads,
                            "head_dim": sh.d, "kv_len": max_len, "layers": sh.layers,
                            "hidden": sh.hidden, "ffn": sh.ffn, "vocab": sh.vocab,
                            "flops": 0.0, "bytes": float(_decoder_bytes(sh, b, max_len, tdt)),
                            "time_s": step_s, "repeats": len(out)})
    return samples


def _decoder_bytes(sh, batch: int, max_len: int, tdt) -> float:
    """Weights + KV cache read by one step of the plain-torch decoder (bytes)."""
    import torch
    elt = torch.empty((), dtype=tdt).element_size()
    d = sh.d
    per_layer = ((sh.heads + 2 * sh.kv_heads) * d * sh.hidden + sh.hidden * sh.heads * d
                 + 3 * sh.ffn * sh.hidden + 2 * batch * sh.kv_heads * max_len * d)
    return float((sh.layers * per_layer + sh.vocab * sh.hidden) * elt)


def _framework_decoder(cfg: dict, tdt, dtype: str, device: str, reps: int, clock: Clock,
                       res: ProbeResult, allowed_s: float = math.inf) -> dict:
    """Framework overhead from the plain-torch decoder (``decoder.py``) at each depth of
    ``tiny_layers``: the same line fit as :func:`_framework`, with the engine's operator
    rows of the equivalent Llama config. Prefill is not run: ``prefill_overhead`` = 0."""
    from ..graph import build_ops
    from ..specs.model import from_hf_config
    from ..specs.precision import Precision
    from .decoder import TINY
    from dataclasses import replace
    layers = list(cfg["tiny_layers"])
    _decode_rows(cfg, tdt, dtype, device, clock, res, rounds=max(reps, 5), allowed_s=allowed_s)
    eager = [r for r in res.kernels if r["op"] == "decode_eager" and r["hidden"] == TINY.hidden]
    dec = [r["time_s"] for r in eager]
    launches = [sum(o.count for o in build_ops(from_hf_config(replace(TINY, layers=n).hf_config(64)),
                                                Precision(), 1, 1, 2)) for n in (1, 2)]
    per_layer = launches[1] - launches[0]
    fit = fit_overhead(layers, dec, dec, per_layer, launches[0] - per_layer)
    fit.update(layers=layers, decode_s=dec, prefill_s=[], engine_launches_per_layer=per_layer,
               engine_fixed_launches=launches[0] - per_layer, source="torch decoder (decoder.py)",
               prefill_per_layer_s=0.0)
    return fit
