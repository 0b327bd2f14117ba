"""Speculative decoding and MTP in the serving simulator: a decode iteration that verifies.

With a draft proposing ``k`` tokens per round, each accepted with probability ``a``
(docs/conventions.md, "Speculative decoding"; :func:`decoding.expected_tokens_per_round`),
a round of a running request is ``k`` draft decode steps plus one target *verify* step
(``k + 1`` tokens per sequence attending to its context plus the drafts, logits at all
``k + 1`` positions) and yields ``tau = (1 - a^(k+1)) / (1 - a)`` tokens on average.

:class:`SpeculativeCost` wraps an :class:`~.cost.IterationCost` so the scheduler
(``replica.py``) runs unchanged: a **pure-decode iteration** of B rows (row i attending
to L_i tokens) is one round spread over the ``tau`` tokens it yields on average::

    t_iter = (verify(B, k, L_i + k) + sum_{j<k} draft(B, L_i + j) + cpu) / tau - cpu

seconds, where ``verify`` prices the target's token ops at ``B (k + 1)`` tokens, its row
ops (lm_head) at ``B (k + 1)`` rows and its attention at the features of ``q = k + 1``
rows; ``draft`` is a decode step of the draft's own IterationCost (the MTP module, or a
draft model) and ``cpu`` the engine's per-iteration CPU cost, which the replica adds to
every iteration (so a round pays it once). Each iteration still emits one token per row,
so TPOT = round time / tau exactly, and a request's KV cache grows by one token per
emitted token (its expected path). Iterations that carry prefill tokens price their
decode rows as plain one-token rows (an approximation for mixed batches; a
disaggregated decode pool runs pure-decode iterations only). CUDA-graph padding applies
to the verify step (``pad_rows x (k + 1)`` tokens) and the draft steps alike.

KV memory (:meth:`SpeculativeCost.kv_capacity_tokens`): the draft's weights
(``decoding``'s rule: the MTP module's :func:`specs.model.mtp_param_count`, or the whole
draft model) come out of the pool, and every token holds the target's and the draft's KV.
Not modelled, as in ``decoding.py``: the last round's overshoot, rejection-sampling
arithmetic, tree speculation.
"""

from __future__ import annotations

import numpy as np

from ..decoding import check_accept, check_draft_k, expected_tokens_per_round
from ..errors import InputError
from ..graph import causal_pairs, keys_touched
from ..specs.model import mtp_draft, mtp_param_count
from .cost import IterationCost


def tokens_per_step(draft_k: int, accept: float) -> float:
    """Expected tokens one verify step yields: tau = (1 - a^(k+1)) / (1 - a) (k + 1 at a = 1)."""
    return float(expected_tokens_per_round(check_draft_k(draft_k), check_accept(accept)))


class SpeculativeCost:
    """An IterationCost whose pure-decode iterations are speculative rounds / tau (module
    docstring). Everything else (prefill iterations, KV bytes, the tables) is the target's."""

    def __init__(self, target: IterationCost, draft: IterationCost, draft_k: int, accept: float,
                 step_cpu_s: float = 0.0, draft_weights_bytes: float | None = None) -> None:
        self.base, self.draft = target, draft
        self.k = check_draft_k(draft_k)
        self.accept = check_accept(accept)
        self.tau = float(expected_tokens_per_round(self.k, self.accept))
        self.cpu = float(step_cpu_s)
        self.draft_weights_bytes = (draft.weights_bytes if draft_weights_bytes is None
                                    else float(draft_weights_bytes))
        self._L = None      # per-row contexts of the last feature_sums call (windowed models)

    @classmethod
    def of(cls, target: IterationCost, *, draft=None, mtp: int | None = None, draft_k: int = 4,
           accept: float = 0.7, draft_tp: int | None = None, step_cpu_s: float = 0.0
           ) -> SpeculativeCost:
        """Wrap ``target`` with a ``draft`` model (id or ModelSpec, on ``draft_tp`` devices,
        default the target's TP group) or the model's own MTP module (``mtp`` = k draft
        tokens per round), at acceptance ``accept`` per draft token."""
        from dataclasses import replace
        if mtp is not None and draft is not None:
            raise InputError("mtp: give either --mtp or --draft, not both")
        dep = target.deployment
        if mtp is not None:
            dm, draft_k = mtp_draft(dep.model), mtp
            dlay, dweights = dep.layout, None
        elif draft is not None:
            from ..specs.catalog import load_model
            from ..specs.model import ModelSpec
            dm = draft if isinstance(draft, ModelSpec) else load_model(draft)
            if draft_tp is not None and (isinstance(draft_tp, bool) or not isinstance(
                    draft_tp, int) or not 1 <= draft_tp <= 1024):
                raise InputError(f"draft_tp must be an integer in [1, 1024], got {draft_tp!r}")
            dlay = replace(dep.layout, tp=dep.layout.tp if draft_tp is None else draft_tp,
                           ep=1 if not dm.is_moe else dep.layout.ep)
            dweights = None
        else:
            raise InputError("draft: speculative decoding needs --draft MODEL or --mtp N")
        k = check_draft_k(draft_k)
        try:
            dcost = IterationCost.of(replace(dep, model=dm, layout=dlay),
                                     max_tokens=target.token_table.size - 1,
                                     max_batch=target.row_table.size - 1)
        except InputError as e:
            raise InputError(f"draft {dm.name}: {e}") from None
        if mtp is not None:   # the MTP module shares the target's embedding and lm_head
            dweights = mtp_param_count(dep.model) * dep.precision.weight_bytes / dlay.tp
        return cls(target, dcost, k, accept, step_cpu_s, dweights)

    def __getattr__(self, name):
        # everything not overridden is the target's (tables, roof, model, KV bytes, ...)
        if name in ("base", "draft"):
            raise AttributeError(name)
        return getattr(self.base, name)

    # -- the verify step --------------------------------------------------------------------
    def _priced(self, eager: bool):
        b = self.base
        return b if eager or "graphs" not in b._extra else b._extra["graphs"]

    def _verify_fixed_s(self, rows: int, eager: bool) -> float:
        """Token ops at rows (k + 1) tokens, lm_head at rows (k + 1) positions, overheads."""
        g, n = self._priced(eager), rows * (self.k + 1)
        return g.token_s(n) + g.row_s(n) + g._exposed(n, n) + g.step_overhead_s

    def verify_features(self, L: np.ndarray) -> np.ndarray:
        """Summed attention features of verify rows (q = k + 1) whose plain decode row
        would attend to ``L`` tokens: they attend to ``L + k``."""
        q = np.full(np.shape(L), self.k + 1.0)
        return self.base.feature_sums(q, np.asarray(L, dtype=float) + self.k)

    def _verify_features_of_sum(self, rows: int, sum_L):
        """Windowless: with S' = sum(L) + rows k and q = k + 1, the features are q rows,
        pairs q S' - rows q (q - 1) / 2, keys S', q x keys q S' (vectorized over sum_L)."""
        q = self.k + 1.0
        S = np.asarray(sum_L, dtype=float) + rows * self.k
        return np.stack(np.broadcast_arrays(np.full(S.shape, q * rows),
                                            q * S - rows * q * (q - 1) / 2, S, q * S), axis=-1)

    def _round_to_iter(self, t):
        return (t + self.cpu) / self.tau - self.cpu

    # -- what the replica calls ---------------------------------------------------------------
    def feature_sums(self, q, L):
        q = np.asarray(q, dtype=float)
        if q.size and np.all(q == 1):      # a pure-decode batch (replica.py, windowed path)
            self._L = np.asarray(L, dtype=float)
            return self.verify_features(self._L)
        self._L = None
        return self.base.feature_sums(q, L)

    def time(self, q, L, prefill: bool | None = None) -> float:
        q = np.asarray(q, dtype=float)
        L = np.asarray(L, dtype=float)
        if q.size == 0:
            return 0.0
        if prefill is None:
            prefill = bool(np.any(q > 1))
        if prefill or np.any(q != 1):
            return self.base.time(q, L, prefill)
        return self._decode(q.size, L, None, False)

    def _decode(self, rows: int, L, pad_rows, eager: bool) -> float:
        priced = rows if pad_rows is None else pad_rows
        g = self._priced(eager)
        t = self._verify_fixed_s(priced, eager) + float(g.attention_s(self.verify_features(L)))
        t += float(np.sum(self.draft.decode_run(L, self.k, pad_rows, eager)))
        return self._round_to_iter(t)

    def time_of_sums(self, n_tokens, n_rows: int, feats, prefill: bool,
                     pad_rows: int | None = None, eager: bool = False) -> float:
        if prefill:
            return self.base.time_of_sums(n_tokens, n_rows, feats, prefill, pad_rows, eager)
        rows = int(n_rows)
        priced = rows if pad_rows is None else pad_rows
        g = self._priced(eager)
        if self.base.windowless:
            S = float(feats[2])           # the rows' summed contexts (keys of q = 1 rows)
            fv = self._verify_features_of_sum(rows, S)
            d = self.draft.decode_run_of_sum(rows, S, self.k, pad_rows, eager)
        else:                             # feats came from feature_sums: verify features
            if self._L is None or self._L.size != rows:
                raise RuntimeError("speculative: windowed decode priced without its rows")
            fv = feats
            d = self.draft.decode_run(self._L, self.k, pad_rows, eager)
        t = self._verify_fixed_s(priced, eager) + float(g.attention_s(fv)) + float(np.sum(d))
        return self._round_to_iter(t)

    def decode_run(self, L0, k: int, pad_rows: int | None = None, eager: bool = False):
        """``k`` consecutive pure-decode iterations (rows at ``L0 + j`` in iteration j)."""
        L0 = np.asarray(L0, dtype=float)
        if self.base.windowless:
            return self.decode_run_of_sum(L0.size, float(L0.sum()), k, pad_rows, eager)
        B, K = L0.size, self.k
        priced = B if pad_rows is None else pad_rows
        g = self._priced(eager)
        j = np.arange(k, dtype=float)[:, None]
        Lv = L0[None, :] + j + K                      # verify rows attend to L + k
        q = K + 1.0
        cols = [np.full(k, q * B)]
        for W in g.windows:
            keys = keys_touched(q, Lv, W)
            cols += [causal_pairs(q, Lv, W).sum(axis=1), keys.sum(axis=1), q * keys.sum(axis=1)]
        fv = np.stack(cols, axis=1)
        d = self.draft.decode_run(L0, k + K - 1, pad_rows, eager)
        dsum = np.convolve(d, np.ones(K))[K - 1:K - 1 + k]     # sum of steps j .. j + K - 1
        t = self._verify_fixed_s(priced, eager) + g.attention_s(fv) + dsum
        return self._round_to_iter(t)

    def decode_run_of_sum(self, rows: int, sum_L0, k: int, pad_rows: int | None = None,
                          eager: bool = False):
        K = self.k
        priced = rows if pad_rows is None else pad_rows
        g = self._priced(eager)
        S = float(sum_L0) + rows * np.arange(k, dtype=float)
        fv = self._verify_features_of_sum(rows, S)
        d = self.draft.decode_run_of_sum(rows, sum_L0, k + K - 1, pad_rows, eager)
        dsum = np.convolve(d, np.ones(K))[K - 1:K - 1 + k]
        t = self._verify_fixed_s(priced, eager) + g.attention_s(fv) + dsum
        return self._round_to_iter(t)

    def kv_capacity_tokens(self, max_tokens: int, kv_fraction: float = 0.9,
                           runtime_bytes: float = 0.0, rule: str = "free_fraction",
                           capacity: str = "marketed") -> int:
        """The target's KV pool less the draft's weights, shared by target + draft KV per
        token (MTP: one layer per module)."""
        b = self.base
        pool = b.kv_capacity_tokens(max_tokens, kv_fraction, runtime_bytes, rule,
                                    capacity) * b.kv_bytes_per_token
        pool -= self.draft_weights_bytes
        return max(int(pool // (b.kv_bytes_per_token + self.draft.kv_bytes_per_token)), 0)
