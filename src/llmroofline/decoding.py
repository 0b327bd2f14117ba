"""Decoding strategies: beam search, parallel sampling and speculative decoding.

Beam search (width W) and parallel sampling (n samples) live in :func:`phases.analyze`
(``beams=``, ``samples=``): each request is prefilled once; decode runs ``batch x W`` rows,
which is *exactly* plain decoding at batch ``batch x W`` (every row reads the whole
context's KV, the shared prompt part included, once per step); the KV cache holds the
prompt once per request and the generated part once per row. Sampling returns
``batch x n x output_len`` tokens, beam search ``batch x output_len``.

Speculative decoding (:func:`speculative`) with a draft model proposing ``k`` tokens per
round, each accepted with probability ``a`` independently (Leviathan et al. 2023):

- expected tokens per target step, accepted drafts plus the target's correction or bonus
  token: ``tau = sum_{i=0..k} a^i = (1 - a^(k+1)) / (1 - a)`` (``k + 1`` when ``a = 1``);
- a round = ``k`` draft decode steps (batch B, ``q_len = 1``) + one target verify step
  (batch B, ``q_len = k + 1``, logits at all ``k + 1`` positions);
- ``rounds = (output_len - 1) / tau`` (the first token comes from the prefill). Round r
  (r = 0, 1, ...) starts with ``n_r = input_len + 1 + r x tau`` tokens of context (its
  expected value): draft step i (i = 0..k-1) attends to ``n_r + i`` tokens, the verify
  step to ``n_r + k``. Every round is costed at its own KV length and the rounds are
  summed (``floor(rounds)`` whole rounds plus the fractional last one), so the growing
  cache is exact on the expected path; the only approximation is evaluating each round at
  the expected context instead of averaging over its random spread (standard deviation
  sqrt(r) x that of the tokens per round: tens of tokens). That is exact wherever the step
  cost is affine in the KV length, i.e. unless an operator's compute/memory crossover or a
  sliding-window edge lies within that spread (by Jensen, slightly optimistic at a
  crossover, where the cost is convex in the length; slightly pessimistic at a window
  edge, where it is concave);
- ``ttft_s`` = target prefill + draft prefill; ``tpot_s`` = decode time / (output_len - 1);
  ``e2e_s`` = ttft_s + decode time; throughput = dp x batch x output_len / e2e_s;
- memory per device adds the draft's weights and KV cache; both caches are reserved for
  ``input_len + output_len + k`` tokens (k lookahead slots for the unverified drafts);
  the activation peak is the larger of the two prefills' (they run one after another).

MTP (``analyze --mtp N``): the model's own multi-token-prediction module is the draft
(:func:`specs.model.mtp_draft`): each of the N draft steps runs one MTP module (eh_proj +
one decoder layer like the last + the shared lm_head); its extra weights are
:func:`specs.model.mtp_param_count` (at ``wbits``, split over the TP group), its KV cache
one layer per module; its prefill is the module over the prompt.

Not modelled: the final round's overshoot (up to k drafted tokens past ``output_len``:
at most ``k / tau`` extra rounds per request), the draft re-processing the bonus token,
the rejection-sampling arithmetic, tree (multi-candidate) speculation and pipelines
(``pp`` must be 1). The draft runs on the target's tensor-parallel group (vLLM's default;
``draft_tp`` changes it), at the target's precision, never offloaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import phases
from .cost import Roofline
from .errors import InputError
from .graph import build_ops
from .memory import Memory, kv_cache_bytes_per_seq, largest_batch
from .parallel import Layout
from .specs.catalog import load_model
from .specs.model import ModelSpec, mtp_param_count

MAX_DRAFT_K = 16
_ROUND_CHUNK = 65536   # draft-step evaluations per build_ops call (bounds memory)


def expected_tokens_per_round(draft_k, accept):
    """tau = (1 - a^(k+1)) / (1 - a): tokens one target step yields with k drafts of
    i.i.d. acceptance a (k + 1 when a = 1). Vectorized over ``draft_k`` and ``accept``."""
    k = np.asarray(draft_k, dtype=float)
    a = np.asarray(accept, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = np.where(a < 1, (1 - a ** (k + 1)) / np.where(a < 1, 1 - a, 1), k + 1)
    return tau[()] if tau.ndim == 0 else tau


def check_draft_k(draft_k) -> int:
    if isinstance(draft_k, bool) or not isinstance(draft_k, (int, np.integer)) \
            or not 1 <= draft_k <= MAX_DRAFT_K:
        raise InputError(f"draft_k must be an integer in [1, {MAX_DRAFT_K}], got {draft_k!r}")
    return int(draft_k)


def check_accept(accept) -> float:
    if isinstance(accept, bool) or not isinstance(accept, (int, float, np.floating)) \
            or not 0 <= accept <= 1:
        raise InputError(f"accept (acceptance rate per draft token) must be in [0, 1], "
                         f"got {accept!r}")
    return float(accept)


@dataclass(frozen=True)
class Speculative:
    """Speculative decoding of one target with one draft; arrays share the query grid.

    ``plain`` is the target with plain decoding (the baseline; its prefill is the target
    prefill); ``draft`` is the draft model alone on the same workload (its prefill is
    part of TTFT). Totals are per request batch; ``*_step_s`` are means per step.
    """

    plain: phases.Analysis
    draft: phases.Analysis
    draft_k: int
    accept: float
    tau: float
    rounds: np.ndarray            # (output_len - 1) / tau
    draft_decode_s: np.ndarray    # all draft decode steps of the request batch
    verify_s: np.ndarray          # all target verify steps
    memory: Memory                # target + draft, most loaded device
    warnings: tuple[str, ...] = ()

    @property
    def ttft_s(self) -> np.ndarray:
        return self.plain.ttft_s + self.draft.ttft_s

    @property
    def decode_s(self) -> np.ndarray:
        return self.draft_decode_s + self.verify_s

    @property
    def tpot_s(self) -> np.ndarray:
        steps = self.plain.output_len - 1
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(steps > 0, self.decode_s / np.maximum(steps, 1), np.nan)

    @property
    def e2e_s(self) -> np.ndarray:
        return self.ttft_s + self.decode_s

    @property
    def throughput_tok_s(self) -> np.ndarray:
        p = self.plain
        return p.layout.dp * p.batch * p.output_len / self.e2e_s

    @property
    def tpot_speedup(self) -> np.ndarray:
        """Plain TPOT / speculative TPOT (> 1: speculation helps)."""
        return self.plain.tpot_s / self.tpot_s

    @property
    def e2e_speedup(self) -> np.ndarray:
        return self.plain.e2e_s / self.e2e_s

    @property
    def draft_step_s(self) -> np.ndarray:
        """Mean time of one draft decode step."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.draft_decode_s / (self.rounds * self.draft_k)

    @property
    def verify_step_s(self) -> np.ndarray:
        """Mean time of one target verify step (q_len = k + 1)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.verify_s / self.rounds

    @property
    def round_s(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.decode_s / self.rounds


def verify_ops(m: ModelSpec, prec, batch, draft_k: int, kv_len, *, flash: bool = True,
               layout: Layout | None = None):
    """Operator table of a target verify step: ``q_len = k + 1`` tokens per sequence
    attending to ``kv_len`` tokens, with logits at all ``k + 1`` positions."""
    return build_ops(m, prec, batch, draft_k + 1, kv_len, flash=flash, layout=layout,
                     logits_per_seq=draft_k + 1)


def _decode_totals(tm, dm, prec, flash, lay, dlay, roof, droof, B, I, O, k, tau):
    """Draft and verify seconds of one request batch (scalars B, I, O), summed per round."""
    rounds = (O - 1) / tau
    whole = math.floor(rounds + 1e-12)
    r = np.arange(whole + 1, dtype=float)
    weight = np.where(r < whole, 1.0, max(rounds - whole, 0.0))   # last entry: fractional round
    start = I + 1 + r * tau                              # context at the start of round r
    draft_s = verify_s = 0.0
    chunk = max(_ROUND_CHUNK // k, 1)
    for lo in range(0, len(r), chunk):
        n, w = start[lo:lo + chunk], weight[lo:lo + chunk]
        kv_draft = n[:, None] + np.arange(k)[None, :]
        d = phases.step_cost(build_ops(dm, prec, B, 1, kv_draft, flash=flash, layout=dlay),
                             droof, "draft step")
        v = phases.step_cost(verify_ops(tm, prec, B, k, n + k, flash=flash, layout=lay),
                             roof, "verify step")
        draft_s += float(np.sum(w[:, None] * np.broadcast_to(d.time_s, kv_draft.shape)))
        verify_s += float(np.sum(w * np.broadcast_to(v.time_s, n.shape)))
    return rounds, draft_s, verify_s


def speculative(model, hardware, batch=1, input_len=128, output_len=128, *, draft,
                draft_k: int = 4, accept: float = 0.7, draft_tp: int | None = None,
                **engine) -> Speculative:
    """Speculative decoding of ``model`` with the ``draft`` model (see module docstring).

    ``engine`` takes :func:`phases.analyze`'s keywords (``quant``, ``flash``, ``tp``,
    ``layout``, ``profile``, ...). ``draft_k`` in [1, 16] draft tokens per round,
    ``accept`` in [0, 1] the per-token acceptance rate. Grids of ``batch``/``input_len``/
    ``output_len`` are evaluated point by point.
    """
    k = check_draft_k(draft_k)
    a = check_accept(accept)
    if engine.get("beams", 1) != 1 or engine.get("samples", 1) != 1:
        raise InputError("draft: speculative decoding is modelled with beams = samples = 1")
    plain = phases.analyze(model, hardware, batch, input_len, output_len, **engine)
    lay = plain.layout
    if lay.pp > 1:
        raise InputError(f"pp: speculative decoding is modelled without pipeline stages "
                         f"(pp = 1), got pp = {lay.pp}")
    if draft_tp is not None and (isinstance(draft_tp, bool) or not isinstance(draft_tp, int)
                                 or not 1 <= draft_tp <= 1024):
        raise InputError(f"draft_tp must be an integer in [1, 1024], got {draft_tp!r}")
    dlay = Layout(tp=lay.tp if draft_tp is None else draft_tp, dp=lay.dp,
                  gpus_per_node=lay.gpus_per_node, overlap=lay.overlap, allreduce=lay.allreduce)
    dm = draft if isinstance(draft, ModelSpec) else load_model(draft)
    dengine = {k_: v for k_, v in engine.items()
               if k_ in ("flash", "engine", "profile", "cuda_graphs", "prefill_chunk")}
    try:
        dplain = phases.analyze(dm, plain.hardware, batch, input_len, output_len,
                                quant=plain.precision, layout=dlay, **dengine)
    except InputError as e:
        hint = " (the draft runs on the target's tensor-parallel group; set draft_tp)" \
            if draft_tp is None and lay.tp > 1 and str(e).startswith("tp") else ""
        raise InputError(f"draft {dm.name}: {e}{hint}") from None
    tm, prec, flash = plain.model, plain.precision, plain.flash
    warnings = list(plain.warnings)
    warnings += [w for w in dplain.warnings if w not in warnings]
    if dm.vocab_size != tm.vocab_size:
        warnings.append(f"draft: vocab_size {dm.vocab_size} of {dm.name} differs from "
                        f"{tm.vocab_size} of {tm.name}; speculative decoding needs the same "
                        "tokenizer (costs are modelled anyway)")
    # draft and verify steps are decode steps: graph-captured when the engine captures
    graphs = plain.deployment.engine.graphed if plain.cuda_graphs else (lambda e: e)
    roof = Roofline.of(plain.hardware, prec, lay, graphs(plain.efficiency))
    droof = Roofline.of(plain.hardware, prec, dlay, graphs(dplain.efficiency))
    tau = float(expected_tokens_per_round(k, a))
    B, I, O = plain.batch, plain.input_len, plain.output_len
    rounds, dsum, vsum = (np.zeros(B.shape) for _ in range(3))
    for idx in np.ndindex(B.shape):
        rounds[idx], dsum[idx], vsum[idx] = _decode_totals(
            tm, dm, prec, flash, lay, dlay, roof, droof, float(B[idx]), float(I[idx]),
            float(O[idx]), k, tau)
    reserve = I + O + k
    modules = dm.extra.get("mtp_modules", 1)   # MTP: every module keeps its own cache
    kv = B * (kv_cache_bytes_per_seq(tm, prec, reserve, lay) * (1 - lay.offload_kv)
              + modules * kv_cache_bytes_per_seq(dm, prec, reserve, dlay))
    draft_w = dplain.memory.weights_bytes
    if dm.extra.get("mtp_of"):   # MTP modules share the target's embedding and lm_head
        draft_w = mtp_param_count(tm) * prec.weight_bytes / dlay.tp
    weights = plain.memory.weights_bytes + draft_w
    act = np.maximum(plain.memory.activation_bytes, dplain.memory.activation_bytes)
    cap = plain.memory.capacity_bytes
    state = plain.memory.state_bytes   # the target's recurrent state (hybrid models)
    mem = Memory(weights, kv, act, cap, largest_batch(cap, weights, (kv + state + act) / B), state)
    return Speculative(plain, dplain, k, a, tau, rounds, dsum, vsum, mem, tuple(warnings))
