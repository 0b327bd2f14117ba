"""Time of one engine iteration with a mixed batch, from the per-operator engine.

An iteration runs ``B`` rows; row ``i`` feeds ``q_i`` new tokens and attends to ``L_i``
tokens (its cache plus the new ones): a decode row has ``q_i = 1``, a prefill chunk
``q_i`` = the chunk length and ``L_i`` = the tokens computed so far plus the chunk. The
operators of ``graph.build_ops`` split into three exact, separable groups:

- **token ops** (projections, MLP/MoE, norms, rotary, residuals, embedding, collectives):
  their FLOPs and bytes depend only on the total token count ``N = sum q_i``. Their
  per-operator roofline time is tabulated once for ``N = 1 .. max_tokens`` (one vectorized
  ``build_ops`` call) and looked up; larger ``N`` are costed on demand (cached).
- **row ops** (``lm_head`` and the logits all-gather): depend only on ``B`` (logits of the
  last position of each row); tabulated for ``B = 1 .. max_batch``.
- **attention ops** (fused attention, or score/softmax/weighted-sum when unfused): their
  FLOPs and bytes are sums over rows of terms linear in four per-row features, for each
  sliding window ``W`` of the model: ``q``, causal pairs ``pairs(q, L, W)``, keys touched
  ``keys(q, L, W)`` and ``q x keys(q, L, W)``. The coefficients that turn the feature sums
  into compute and memory seconds are read off the engine itself (``build_ops`` at batch 1
  on a few (q, L) points, then ``Roofline.terms``; a least-squares solve that must be
  exact), so no physics is duplicated. The batch's attention is then one kernel:
  ``max(compute, memory) + launch overhead`` over the summed features.

Plus the profile's ``step_overhead`` per iteration and ``prefill_overhead`` once per
iteration that contains prefill tokens (``analyze`` adds it once per batched prefill).

With these rules an iteration of ``B`` identical decode rows equals one decode step of
``analyze`` at batch ``B``, and an iteration of ``B`` identical whole prompts equals its
prefill (``tests/test_serving.py`` checks both to 1e-9).

Limits: pipeline parallelism (``pp > 1``) is not supported; MLA models (DeepSeek) use the
absorbed (decode) form of attention for every row, which over-counts prefill attention
FLOPs; with ``overlap`` the collectives' exposure is computed within the token ops.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
import numpy as np

from ..cost import Roofline, combine, exposed_comm_s
from ..errors import InputError
from ..graph import build_ops, causal_pairs, keys_touched
from ..memory import (activation_peak_bytes, kv_cache_bytes_per_seq, state_bytes_per_seq,
                      weight_bytes_total)
from ..parallel import Layout
from ..deployment import Deployment, resolve
from ..specs.model import ModelSpec
from ..specs.precision import Precision
from ..specs.engine import KVMemoryRule
from ..specs.profile import Efficiency

# (q, L) sample points at batch 1 for reading the attention coefficients off the engine.
_SAMPLE_Q = np.array([1, 1, 1, 1, 2, 3, 7, 16, 16, 64, 100, 257, 1000, 5000, 1, 33])
_SAMPLE_L = np.array([1, 2, 17, 5000, 2, 40, 7, 16, 900, 64, 3000, 9000, 1000, 70000, 70000, 33])


def _features(q, L, W):
    """Per-row attention features (pairs, keys, q x keys) for window ``W``; broadcasts."""
    keys = keys_touched(q, L, W)
    return causal_pairs(q, L, W), keys, q * keys


def _op_values(op):
    return np.stack([np.broadcast_to(v, np.shape(op.flops)).astype(float) for v in
                     (op.flops, op.weight_bytes, op.act_bytes, op.kv_bytes, op.comm_bytes)])


@dataclass
class IterationCost:
    """Seconds of one iteration of a mixed batch (see module docstring).

    Build with :meth:`of`; call :meth:`time` with per-row ``q`` and ``L`` arrays, or
    :meth:`decode_run` for ``k`` consecutive pure-decode iterations.
    """

    model: ModelSpec
    roof: Roofline
    prec: Precision
    layout: Layout
    flash: bool
    token_table: np.ndarray           # [N] seconds of the token ops, N = 0 .. max_tokens
    row_table: np.ndarray             # [B] seconds of lm_head (+ all-gather), B = 0 .. max_batch
    windows: list[float]              # distinct attention windows
    coef_c: np.ndarray                # (ops, 1 + 3 x windows) compute seconds per feature
    coef_m: np.ndarray                # (ops, 1 + 3 x windows) memory seconds per feature
    attn_overhead_s: np.ndarray       # (ops,) launch overhead of each attention op
    step_overhead_s: float
    prefill_overhead_s: float
    kv_bytes_per_token: float         # per device, all layers (full width)
    weights_bytes: float
    memory_bytes: float
    _extra: dict = field(default_factory=dict)

    @classmethod
    def of(cls, model, hardware=None, *, quant=None, wbits=None, abits=None, kvbits=None,
           flash: bool = True, layout: Layout | None = None, engine=None, profile=None,
           max_tokens: int = 8192, max_batch: int = 256, cuda_graphs: bool | None = None,
           _efficiency: Efficiency | None = None) -> "IterationCost":
        """The iteration cost of a deployment: ``model`` with the setup keywords (resolved
        by :func:`deployment.resolve`, as ``analyze`` does) or a resolved Deployment alone.
        ``cuda_graphs``: pure-decode iterations replay CUDA graphs (launch overhead x the
        engine's ``cuda_graph_launch_factor``, as ``analyze(cuda_graphs=True)`` prices decode
        steps); iterations with prefill tokens run eagerly, as in vLLM."""
        dep = resolve(model, hardware, quant=quant, wbits=wbits, abits=abits, kvbits=kvbits,
                      layout=layout, engine=engine, profile=profile, flash=flash,
                      cuda_graphs=cuda_graphs)
        m, hw, prec, lay, flash = dep.model, dep.hardware, dep.precision, dep.layout, dep.flash
        if lay.pp > 1:
            raise InputError("pp: the serving simulator does not model pipeline parallelism "
                             "yet; use --tp (or --pp 1)")
        eff = _efficiency or dep.efficiency
        roof = Roofline.of(hw, prec, lay, eff)
        kw = dict(flash=flash, layout=lay, mla_absorb=True if m.mla else None)

        # Classify ops: attention ops change with L; row ops change with B at fixed N.
        base = build_ops(m, prec, 1, 1, 1, **kw)
        longer = build_ops(m, prec, 1, 1, 3, **kw)
        as_tok = build_ops(m, prec, 1, 4, 4, **kw)
        as_row = build_ops(m, prec, 4, 1, 4, **kw)
        attn = [not np.allclose(_op_values(a), _op_values(b)) for a, b in zip(base, longer)]
        row = [not a_ and not np.allclose(_op_values(a), _op_values(b))
               for a_, a, b in zip(attn, as_tok, as_row)]

        # Token ops on N = 1..max_tokens (batch 1, q = L = N; attention/row ops dropped).
        n = np.arange(1, max_tokens + 1, dtype=float)
        # With overlap the step's visible collective time max(C - G, 0) couples the token
        # and row ops (lm_head is a matmul), so their collective (C) and matmul (G) seconds
        # are tabulated apart and joined per iteration in _exposed.
        tok_keep = [not (a or r) for a, r in zip(attn, row)]
        token_table, tok_c, tok_g = (np.zeros(max_tokens + 1) for _ in range(3))
        token_table[1:], tok_c[1:], tok_g[1:] = _sum_parts(build_ops(m, prec, 1, n, n, **kw),
                                                           roof, tok_keep)
        b = np.arange(1, max_batch + 1, dtype=float)
        row_table, row_c, row_g = (np.zeros(max_batch + 1) for _ in range(3))
        row_table[1:], row_c[1:], row_g[1:] = _sum_parts(build_ops(m, prec, b, 1, 1, **kw),
                                                         roof, row)

        # Attention coefficients: compute_s and memory_s are linear in the features.
        sample = build_ops(m, prec, 1, _SAMPLE_Q, _SAMPLE_L, **kw)
        attn_ops = [o for o, a in zip(sample, attn) if a]
        windows = sorted({float(o.window) for o in attn_ops})
        cols = [_SAMPLE_Q.astype(float)]
        for W in windows:
            cols += list(_features(_SAMPLE_Q.astype(float), _SAMPLE_L.astype(float), W))
        X = np.stack(cols, axis=1)
        coef_c, coef_m, oh = [], [], []
        for o in attn_ops:
            c, mem, comm, over = roof.terms(o)
            cc = _exact_lstsq(X, np.asarray(c, float), o.name)
            cm = _exact_lstsq(X, np.asarray(mem, float), o.name)
            coef_c.append(cc)
            coef_m.append(cm)
            oh.append(float(np.max(over)))
        # Paged engines of this generation allocate full-length blocks in every layer,
        # sliding-window layers included: count full width.
        kv_tok = float(kv_cache_bytes_per_seq(m, prec, 1, lay))
        cost = cls(m, roof, prec, lay, flash, token_table, row_table, windows,
                   np.array(coef_c).reshape(len(attn_ops), -1),
                   np.array(coef_m).reshape(len(attn_ops), -1), np.array(oh),
                   # as phases._step_row: a numerically zero fitted overhead is dropped
                   eff.step_overhead_s if eff.step_overhead_s > 1e-9 else 0.0,
                   eff.prefill_overhead_s, kv_tok,
                   weight_bytes_total(m, prec, lay) * (1 - lay.offload_weights),
                   hw.memory_bytes, {"kw": kw, "classes": (attn, row), "big": {},
                                     "raw_step_s": float(eff.step_overhead_s),
                                     "finite_windows": any(np.isfinite(w) for w in windows),
                                     "attn_oh": float(np.sum(oh)),
                                     "overlap": bool(lay.overlap),
                                     "comm": (tok_c.tolist(), tok_g.tolist(), row_c.tolist(),
                                              row_g.tolist()),
                                     # recurrent state (hybrid models), reserved per row
                                     "state_bytes": max_batch * state_bytes_per_seq(m, lay)})
        cost._extra["deployment"] = dep
        if dep.cuda_graphs and _efficiency is None:
            cost._extra["graphs"] = cls.of(replace(dep, cuda_graphs=False),
                                           max_tokens=max_batch, max_batch=max_batch,
                                           _efficiency=dep.engine.graphed(eff))
        return cost

    @property
    def deployment(self) -> Deployment:
        return self._extra["deployment"]

    def __post_init__(self) -> None:
        # the simulator prices thousands of iterations one at a time: read the tables as
        # Python floats, and with one attention op take its two dot products directly (the
        # same ddot as ``coef @ feats`` on a one-row matrix, so the same values)
        self._tokens = self.token_table.tolist()
        self._rows = self.row_table.tolist()
        self._one_op = ((self.coef_c[0].copy(), self.coef_m[0].copy())
                        if self.coef_c.shape[0] == 1 else None)

    # -- pieces ------------------------------------------------------------------------------
    def token_s(self, n) -> float:
        n = int(n)
        if n < len(self._tokens):
            return self._tokens[n]
        return self._big("token", n)

    def row_s(self, b) -> float:
        b = int(b)
        if b < len(self._rows):
            return self._rows[b]
        return self._big("row", b)

    def _big(self, kind: str, n: int) -> float:
        """Token or row ops beyond the tables, costed on demand and cached."""
        cache = self._extra["big"]
        if (kind, n) not in cache:
            attn, row = self._extra["classes"]
            if kind == "token":
                ops = build_ops(self.model, self.prec, 1, float(n), float(n), **self._extra["kw"])
                keep = [not (a or r) for a, r in zip(attn, row)]
            else:
                ops = build_ops(self.model, self.prec, float(n), 1, 1, **self._extra["kw"])
                keep = row
            cache[(kind, n)] = tuple(float(x) for x in _sum_parts(ops, self.roof, keep))
        return cache[(kind, n)][0]

    def _exposed(self, n_tokens, n_rows) -> float:
        """Visible collective seconds of an iteration under overlap (0 without: the tables
        then hold the collectives): ``cost.exposed_comm_s`` over its token and row ops."""
        if not self._extra.get("overlap"):
            return 0.0
        tc, tg, rc, rg = self._extra["comm"]
        n, b = int(n_tokens), int(n_rows)
        big = self._extra["big"]
        if n < len(tc):
            c1, g1 = tc[n], tg[n]
        else:
            self._big("token", n)
            _, c1, g1 = big[("token", n)]
        if b < len(rc):
            c2, g2 = rc[b], rg[b]
        else:
            self._big("row", b)
            _, c2, g2 = big[("row", b)]
        return float(exposed_comm_s(c1 + c2, g1 + g2))

    def feature_sums(self, q: np.ndarray, L: np.ndarray) -> np.ndarray:
        """Summed features over the rows: [N, (pairs, keys, q*keys) per window]."""
        if not self._extra.get("finite_windows", True):
            # no sliding window: pairs = tri(L) - tri(L - q), keys = L. Every feature is an
            # integer, so these dot products are exact (below 2^53) and equal the row sums.
            D = L - q
            sL = float(L.sum())
            return np.array([float(q.sum()),
                             0.5 * (float(L @ L) + sL - float(D @ D) - float(D.sum())),
                             sL, float(q @ L)])
        out = [float(q.sum())]
        for W in self.windows:
            p, k, qk = _features(q, L, W)
            out += [float(p.sum()), float(k.sum()), float(qk.sum())]
        return np.array(out)

    def attention_s(self, feats: np.ndarray) -> np.ndarray:
        """Attention seconds from summed features; ``feats`` (..., F) -> (...)."""
        if feats.ndim == 1:
            oh = self._extra.get("attn_oh")
            if oh is None:
                oh = self._extra["attn_oh"] = float(self.attn_overhead_s.sum())
            if self._one_op is not None:
                c, m = self._one_op
                return max(float(np.dot(c, feats)), float(np.dot(m, feats))) + oh
            return float(np.maximum(self.coef_c @ feats, self.coef_m @ feats).sum()) + oh
        c = feats @ self.coef_c.T
        mm = feats @ self.coef_m.T
        return np.maximum(c, mm).sum(axis=-1) + self.attn_overhead_s.sum()

    # -- public -----------------------------------------------------------------------------
    def time(self, q, L, prefill: bool | None = None) -> float:
        """Seconds of one iteration with rows (q_i, L_i). ``prefill``: whether the iteration
        carries prefill tokens (adds ``prefill_overhead``); default: any q_i > 1."""
        q = np.asarray(q, dtype=float)
        L = np.asarray(L, dtype=float)
        if q.size == 0:
            return 0.0
        if prefill is None:
            prefill = bool(np.any(q > 1))
        return self.time_of_sums(q.sum(), q.size, self.feature_sums(q, L), prefill)

    @property
    def windowless(self) -> bool:
        """No sliding-window attention: a row's features are (q, pairs, L, q x L)."""
        return not self._extra.get("finite_windows", True)

    def time_of_sums(self, n_tokens, n_rows: int, feats: np.ndarray, prefill: bool,
                     pad_rows: int | None = None, eager: bool = False) -> float:
        """:meth:`time` from the rows' token count, row count and :meth:`feature_sums`.
        ``pad_rows`` (pure decode): token and row ops priced at this many rows (a CUDA
        graph captured for a larger batch; the padding rows attend to nothing);
        ``eager``: no graph replay even with ``cuda_graphs``."""
        if pad_rows is not None and not prefill:
            n_tokens = n_rows = pad_rows
        if not prefill and not eager and "graphs" in self._extra:
            return self._extra["graphs"].time_of_sums(n_tokens, n_rows, feats, False)
        t = (self.token_s(n_tokens) + self.row_s(n_rows) + float(self.attention_s(feats))
             + self._exposed(n_tokens, n_rows))
        if prefill:   # as phases._prefill: the sum is dropped when numerically zero
            extra = self._extra.get("raw_step_s", self.step_overhead_s) + self.prefill_overhead_s
            return t + (extra if extra > 1e-9 else 0.0)
        return t + self.step_overhead_s

    def decode_run(self, L0: np.ndarray, k: int, pad_rows: int | None = None,
                   eager: bool = False) -> np.ndarray:
        """Seconds of ``k`` consecutive pure-decode iterations of the rows whose first
        iteration attends to ``L0`` tokens (``L0 + j`` in iteration j); ``pad_rows``,
        ``eager``: as in :meth:`time_of_sums`."""
        if not eager and "graphs" in self._extra:
            return self._extra["graphs"].decode_run(L0, k, pad_rows)
        L0 = np.asarray(L0, dtype=float)
        B = L0.size
        if self.windowless:
            # the summed L0 is an exact integer: equal to the sorted cumulative sum below
            return self.decode_run_of_sum(B, float(L0.sum()), k, pad_rows, eager=True)
        j = np.arange(k, dtype=float)
        feats = np.empty((k, 1 + 3 * len(self.windows)))
        feats[:, 0] = float(B)
        L0 = np.sort(L0)
        csum = np.concatenate([[0.0], np.cumsum(L0)])
        for i, W in enumerate(self.windows):
            if np.isfinite(W):
                idx = np.searchsorted(L0, W - j, side="left")   # rows with L0 + j < W
                s = csum[idx] + j * idx + W * (B - idx)
            else:
                s = csum[-1] + j * B
            feats[:, 1 + 3 * i:4 + 3 * i] = s[:, None]   # q = 1: pairs = keys = q x keys
        priced = B if pad_rows is None else pad_rows
        fixed = (self.token_s(priced) + self.row_s(priced) + self.step_overhead_s
                 + self._exposed(priced, priced))
        return fixed + self.attention_s(feats)

    def decode_run_of_sum(self, rows: int, sum_L0, k: int, pad_rows: int | None = None,
                          eager: bool = False) -> np.ndarray:
        """:meth:`decode_run` without sliding windows, where only the row count and the
        summed ``L0`` (an exact integer) matter (``pad_rows``, ``eager``: as in
        :meth:`time_of_sums`)."""
        if not eager and "graphs" in self._extra:
            return self._extra["graphs"].decode_run_of_sum(rows, sum_L0, k, pad_rows)
        j = np.arange(k, dtype=float)
        feats = np.empty((k, 1 + 3 * len(self.windows)))
        feats[:, 0] = float(rows)
        feats[:, 1:] = (float(sum_L0) + j * rows)[:, None]
        priced = rows if pad_rows is None else pad_rows
        fixed = (self.token_s(priced) + self.row_s(priced) + self.step_overhead_s
                 + self._exposed(priced, priced))
        return fixed + self.attention_s(feats)

    def kv_capacity_tokens(self, max_tokens: int, kv_fraction: float = 0.9,
                           runtime_bytes: float = 0.0, rule: str = "free_fraction",
                           capacity: str = "marketed") -> int:
        """Tokens of KV cache that fit on a device: the engine's KV-memory ``rule``
        (:class:`~llmroofline.specs.engine.KVMemoryRule`) at ``kv_fraction``, with the
        activation reserve of a ``max_tokens`` iteration and the engine's runtime memory,
        from the device's ``visible`` (driver-reported) or ``marketed`` capacity, less the
        recurrent state of max_batch sequences (hybrid models)."""
        ops = build_ops(self.model, self.prec, 1, float(max_tokens), float(max_tokens),
                        **self._extra["kw"])
        act = float(activation_peak_bytes(self.model, self.prec, 1, max_tokens, ops))
        mem = self.roof.hw.visible_memory_bytes if capacity == "visible" else self.memory_bytes
        pool = KVMemoryRule(rule, kv_fraction, capacity).pool_bytes(mem, self.weights_bytes,
                                                                     act, runtime_bytes
                                                                     + self._extra.get("state_bytes", 0.0))
        return int(pool // self.kv_bytes_per_token)


def _sum_parts(ops, roof: Roofline, keep):
    """Seconds of the kept ops: (kernels + launch overheads [+ collectives when the layout
    does not overlap them], collective seconds, matmul kernel seconds), each an array;
    the last two are what ``cost.exposed_comm_s`` needs to join ops of one step."""
    kept = [o for o, k in zip(ops, keep) if k]
    base = comm = gemm = 0.0
    for o in kept:
        c, mem, k, oh = roof.terms(o)
        t, _ = combine(c, mem, 0.0 * k, oh, roof.overlap(o))
        base, comm = base + t, comm + k
        if o.kind == "matmul":
            gemm = gemm + np.maximum(c, mem)
    if not roof.layout.overlap:
        base, comm, gemm = base + comm, 0.0 * comm, 0.0 * comm
    return tuple(np.asarray(x, dtype=float) for x in (base, comm, gemm))


def _exact_lstsq(X: np.ndarray, y: np.ndarray, name: str) -> np.ndarray:
    y = np.broadcast_to(y, X.shape[:1])
    scale = np.abs(X).max(axis=0)
    scale[scale == 0] = 1
    coef, *_ = np.linalg.lstsq(X / scale, y, rcond=None)
    coef = coef / scale
    resid = np.abs(X @ coef - y).max()
    if resid > 1e-9 * max(np.abs(y).max(), 1e-30) + 1e-18:
        raise InputError(f"model: the attention operator '{name}' is not linear in the "
                         "per-row features the simulator uses; cannot simulate this model")
    return coef
