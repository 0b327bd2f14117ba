"""Operator table of one forward step: FLOPs and bytes per operator, vectorized.

``build_ops(model, precision, batch, q_len, kv_len)`` describes one forward pass in which
each of ``batch`` sequences feeds ``q_len`` new tokens and attends to ``kv_len`` tokens
(its cache plus the new ones). Prefill is ``q_len = kv_len = input_len``; a decode step is
``q_len = 1``. ``batch``, ``q_len`` and ``kv_len`` may be numpy arrays of any broadcastable
shape: every column of the table then has the broadcast shape.

Layers of the same type are one row with a ``count``; values in a row are totals over
those layers. Conventions (FLOP = 2 per multiply-add; causal attention; KV cache reads and
writes) are in ``docs/conventions.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .parallel import (Layout, alltoall_copies_per_token, expert_load_imbalance,
                       experts_hit_on_busiest_device, shard)
from .specs.model import Slice
from .specs.model import ModelSpec, conv_state_bytes
from .specs.precision import Precision

# Elementwise FLOPs per element; they never decide a bound but keep intensities honest.
NORM_FLOPS = {"rms": 4, "layer": 7}
ACT_FLOPS = {True: 5, False: 8}  # gated (silu(g) * u) vs plain GELU/ReLU
ROPE_FLOPS = 3
SOFTMAX_FLOPS = 5


@dataclass(frozen=True)
class Op:
    """One operator row. Arrays broadcast over the query grid; values are row totals."""

    name: str
    kind: str            # matmul | attention | norm | elementwise | embedding
    compute: str         # gemm | gemm16 | vector: which peak applies (see precision.compute_dtypes)
    count: int           # kernel launches per step (layers sharing this row)
    flops: np.ndarray
    weight_bytes: np.ndarray
    act_bytes: np.ndarray
    kv_bytes: np.ndarray
    window: float = np.inf  # attention ops: sliding window bounding the keys read
    comm_bytes: np.ndarray | float = 0.0  # collectives: message bytes per device
    collective: str = ""    # allreduce | allgather | reducescatter | alltoall | p2p
    group: int = 1          # devices taking part in the collective
    rows: np.ndarray | float = np.inf  # matmuls: M, the token rows of one GEMM
    cols: np.ndarray | float = np.inf  # matmuls: N, output columns of one GEMM (all groups)
    # attention: bytes read again when each query head of a GQA/MQA group reads its shared
    # KV head itself; on-chip caches serve a profile-dependent share (cost.py). Not in kv_bytes.
    kv_reread: np.ndarray | float = 0.0
    kv_group: float = 1.0   # attention: query heads per KV head on this rank

    @property
    def bytes(self) -> np.ndarray:
        return self.weight_bytes + self.act_bytes + self.kv_bytes


def causal_pairs(q_len, kv_len, window=np.inf):
    """(query, key) pairs a causal (optionally sliding-window) mask keeps, per sequence, per head.

    The ``q_len`` new tokens sit at positions ``kv_len - q_len .. kv_len - 1``; token ``i``
    sees ``min(i + 1, window)`` keys. Sum over u = i + 1 in [lo, hi] of min(u, W).
    """
    lo = kv_len - q_len + 1
    hi = kv_len

    def tri(n):
        return n * (n + 1) / 2

    w = window
    return (tri(np.minimum(hi, w)) - tri(np.minimum(lo - 1, w))
            + w * (np.maximum(hi - w, 0) - np.maximum(lo - 1 - w, 0))) if np.isfinite(w) \
        else tri(hi) - tri(lo - 1)


def chunked_pairs(q_len, kv_len, chunk):
    """(query, key) pairs of chunked local attention (Llama-4), per sequence, per head.

    Positions are cut into chunks of ``chunk`` tokens; the query at 0-based position p sees
    the keys of its own chunk up to itself, ``(p mod chunk) + 1`` of them. With
    ``S(n) = sum_{p < n} ((p mod C) + 1) = q C (C + 1) / 2 + r (r + 1) / 2`` (n = q C + r),
    the new tokens at ``kv_len - q_len .. kv_len - 1`` keep ``S(kv_len) - S(kv_len - q_len)``.
    """
    C = float(chunk)

    def S(n):
        q, r = np.floor(n / C), np.mod(n, C)
        return q * C * (C + 1) / 2 + r * (r + 1) / 2

    return S(kv_len) - S(kv_len - q_len)


def keys_touched(q_len, kv_len, window=np.inf):
    """Distinct keys any of the ``q_len`` queries attends to: min(kv_len, q_len + window - 1)."""
    return np.minimum(kv_len, q_len + window - 1)


@dataclass(frozen=True)
class _Step:
    """Shapes and byte widths of one step on one tensor-parallel rank (internal)."""

    m: ModelSpec
    prec: Precision
    layout: Layout
    shard: Slice
    B: np.ndarray
    T: np.ndarray
    L: np.ndarray
    N: np.ndarray
    zero: np.ndarray
    flash: bool
    ops: list

    def op(self, name, kind, compute, count, flops=0.0, w=0.0, a=0.0, kv=0.0, window=np.inf,
           comm=0.0, collective="", group=1, rows=np.inf, reread=0.0, cols=np.inf,
           kv_group=1.0):
        if not count:   # no layer of this kind (e.g. no mixer in an MoE-only block)
            return
        z = self.zero
        self.ops.append(Op(name, kind, compute, count, z + count * flops, z + count * w,
                           z + count * a, z + count * kv, float(window), z + count * comm,
                           collective, group, z + rows, z + cols, z + count * reread,
                           float(kv_group)))

    def linear(self, name, n_in, n_out, count, tokens=None, bias=False, wbytes=None,
               compute="gemm", weight_rows=None, wclass=""):
        """y = x W (+ b): 2 x tokens x n_in x n_out FLOPs; reads W (and b), x; writes y.
        ``wclass``: weight class (precision.WEIGHT_CLASSES) whose bytes per weight apply."""
        tokens = self.N if tokens is None else tokens
        if wclass:
            wbytes = self.prec.class_weight_bytes(wclass) if wbytes is None else wbytes
            compute = self.prec.class_compute(wclass, compute)
        wbytes = self.prec.weight_bytes if wbytes is None else wbytes
        rows = n_in if weight_rows is None else weight_rows
        ab, sb = self.prec.act_bytes, self.prec.base_bytes
        self.op(name, "matmul", compute, count, flops=2 * tokens * n_in * n_out,
                w=rows * n_out * wbytes + (n_out * sb if bias else 0),
                a=tokens * (n_in + n_out) * ab, rows=tokens, cols=n_out)

    def norm(self, name, count, tokens=None, width=None):
        tokens = self.N if tokens is None else tokens
        width = self.m.hidden_size if width is None else width
        sb, ab = self.prec.base_bytes, self.prec.act_bytes
        self.op(name, "norm", "vector", count, flops=NORM_FLOPS[self.m.norm] * tokens * width,
                w=width * sb * (2 if self.m.norm == "layer" else 1), a=2 * tokens * width * ab)

    def allreduce(self, name, count, tokens=None):
        """Row-parallel output: all-reduce of tokens x hidden activations over the TP group."""
        if self.layout.tp > 1 and count:
            tokens = self.N if tokens is None else tokens
            self.op(name, "communication", "comm", count,
                    comm=tokens * self.m.hidden_size * self.prec.act_bytes,
                    collective="allreduce", group=self.layout.tp)


def build_ops(m: ModelSpec, prec: Precision, batch, q_len, kv_len, *, flash: bool = True,
              mla_absorb: bool | None = None, layout: Layout | None = None,
              logits_per_seq=1) -> list[Op]:
    """Operator table of one step on one tensor-parallel rank (see module docstring).

    ``flash``: fused IO-aware attention (scores never leave the chip, masked tiles skipped)
    versus unfused score / softmax / weighted-sum kernels over the full key block.
    ``mla_absorb`` (MLA models; the cache always holds the compressed latent): ``True``
    absorbs the up-projections into the query and output and attends in the latent space;
    ``False`` decompresses every cached latent each step and runs multi-head attention
    (what Hugging Face transformers 5 does). ``None``: absorbed when ``q_len == 1``
    (decode), up-projection otherwise (prefill), as vLLM and SGLang do.
    ``layout``: tensor/expert parallel split (``parallel.py``); rows are per device and
    collectives appear as ``communication`` rows sized in ``comm_bytes``.
    ``logits_per_seq``: positions per sequence that need logits (1 for prefill and decode;
    k + 1 for a speculative verify step).
    """
    layout = layout or Layout()
    B = np.asarray(batch, dtype=float)
    T = np.asarray(q_len, dtype=float)
    L = np.asarray(kv_len, dtype=float)
    s = _Step(m, prec, layout, shard(m, layout), B, T, L, B * T,
              np.zeros(np.broadcast(B, T, L).shape), flash, [])
    h, nl, N, tp = m.hidden_size, m.num_layers, s.N, layout.tp
    ab = prec.act_bytes
    sh = s.shard

    # -- embedding (vocabulary-parallel: each rank looks up the tokens in its shard) ------
    rows = N / tp + (N if m.learned_positions else 0)
    s.op("embedding", "embedding", "vector", 1, w=rows * h * prec.class_weight_bytes("embedding"),
         a=N * h * ab)
    s.allreduce("embedding_allreduce", 1)
    if m.extra.get("mtp_of"):   # MTP draft step: enorm, hnorm, eh_proj(concat) -> hidden
        s.norm("mtp_input_norms", 2)
        s.linear("mtp_eh_proj", 2 * h, h, 1)

    # -- token mixers (attention, linear attention, Mamba-2) ---------------------------------
    mixers, ffns = m.layer_mixers, m.layer_ffns
    n_attn, n_mix = mixers.count("attention"), nl - mixers.count("none")
    n_ffn = nl - ffns.count("none")
    s.norm("attn_norm", n_mix)
    if m.v4:
        _v4_ops(s)
    elif m.mla:
        _mla_ops(s, mla_absorb)
    elif n_attn:
        d = m.head_dim
        q_dim, kv_dim = sh.heads * d, sh.kv_heads * d
        gate = q_dim if m.attn_output_gate else 0
        s.linear("qkv_proj", h, q_dim + gate + 2 * kv_dim, n_attn, bias=m.qkv_bias,
                 wclass="attn_qkv")
        if m.qk_norm:
            s.norm("qk_norm", n_attn, tokens=N * (sh.heads + sh.kv_heads), width=d)
        rot = m.extra.get("rotary_dim")
        if not m.learned_positions and rot != 0:
            rope_width = (sh.heads + sh.kv_heads) * min(d, rot or d)
            s.op("rope", "elementwise", "vector", n_attn, flops=ROPE_FLOPS * N * rope_width,
                 a=2 * N * rope_width * ab)
        for (window, chunked), count in _window_groups(m):
            _attention(s, count, window, heads=sh.heads, d_qk=d, d_v=d,
                       kv_read_width=2 * kv_dim, kv_write_width=2 * kv_dim,
                       suffix=_suffix(m, window, chunked), kv_group=sh.heads / sh.kv_heads,
                       chunked=chunked)
        if gate:   # o = attn x sigmoid(gate): read both, write one
            s.op("attn_output_gate", "elementwise", "vector", n_attn, flops=5 * N * q_dim,
                 a=3 * N * q_dim * ab)
        s.linear("o_proj", q_dim, h, n_attn, bias=m.o_bias, wclass="attn_out")
    if mixers.count("linear"):
        _linear_attn_ops(s, mixers.count("linear"))
    if mixers.count("mamba"):
        _mamba_ops(s, mixers.count("mamba"))

    # -- MLP block ---------------------------------------------------------------------------
    n_moe = m.num_moe_layers
    n_dense = m.num_dense_layers
    if m.parallel_block:
        # Attention and MLP partial sums are added before one all-reduce per layer.
        if m.norms_per_layer == 2:
            s.norm("mlp_norm", nl)
    else:
        s.allreduce("attn_allreduce", n_mix)
        s.op("attn_residual_add", "elementwise", "vector", n_mix, flops=N * h, a=3 * N * h * ab)
        if m.norms_per_layer == 4:
            s.norm("post_attn_norm", nl)
            s.norm("pre_mlp_norm", nl)
        else:
            s.norm("mlp_norm", n_ffn)
    if n_dense:
        _mlp(s, "", sh.ffn, n_dense, bias=m.mlp_bias)
    if n_moe:
        _moe(s, n_moe)
    if m.parallel_block:
        s.allreduce("allreduce", nl)
        s.op("residual_add", "elementwise", "vector", nl, flops=2 * N * h, a=4 * N * h * ab)
    else:
        if m.norms_per_layer == 4:
            s.norm("post_mlp_norm", nl)
        # MoE layers: the combine (EP) or the reduce-scatter (attention-DP) returns the sums
        s.allreduce("mlp_allreduce", n_dense + (n_moe if layout.ep == 1
                                                and layout.dp_attention == 1 else 0))
        s.op("mlp_residual_add", "elementwise", "vector", n_ffn, flops=N * h, a=3 * N * h * ab)

    # -- head ---------------------------------------------------------------------------------
    if m.final_norm:
        s.norm("final_norm", 1)
    # Only the last position of each sequence needs logits (prefill and decode alike).
    logits = B * logits_per_seq
    s.linear("lm_head", h, sh.vocab, 1, tokens=logits, bias=m.lm_head_bias,
             wbytes=prec.class_weight_bytes("lm_head"), compute="gemm16")
    if tp > 1:
        s.op("logits_allgather", "communication", "comm", 1, comm=logits * sh.vocab * ab,
             collective="allgather", group=tp)
    return s.ops


def _suffix(m: ModelSpec, window, chunked=False) -> str:
    if len({m.layer_windows[i] for i in m.attention_layers}) == 1:
        return ""
    if chunked:
        return " (chunked)"
    return " (local)" if window is not None else " (global)"


def _window_groups(m: ModelSpec) -> list[tuple[tuple[int | None, bool], int]]:
    """((window, chunked), layer count) over the softmax-attention layers."""
    groups: dict[tuple[int | None, bool], int] = {}
    for i in m.attention_layers:
        k = (m.layer_windows[i], m.layer_chunked[i])
        groups[k] = groups.get(k, 0) + 1
    return list(groups.items())


def _attention(s: _Step, count, window, *, heads, d_qk, d_v, kv_read_width, kv_write_width,
               suffix="", kv_bytes=None, kv_group=1.0, chunked=False, name="attention"):
    """Attention core of ``count`` layers on one rank.

    Fused: one kernel reading Q, the touched keys/values from the cache, writing O and the
    new tokens' cache entries; FLOPs over the causal (window-limited) pairs only.
    Unfused: QK^T over the whole key block (T x keys), softmax, PV; scores round-trip memory.
    ``kv_read_width``/``kv_write_width``: cached elements per token read/written.
    ``kv_group``: query heads per cached KV head (GQA/MQA); a kernel that lets each query
    head read its KV head itself reads the cache ``kv_group`` times (``Op.kv_reread``).
    MLA kernels read the shared latent once by design, so MLA passes 1.
    ``chunked``: ``window`` is a Llama-4 attention chunk; a multi-token step keeps the
    pairs of :func:`chunked_pairs`, a decode step reads ``min(L, chunk)`` keys (the upper
    bound of the sawtooth ``((L - 1) mod chunk) + 1``, so the decode sum stays affine).
    DSA sparse attention passes ``window = index_topk``: each query attends to at most
    top-k keys (the cache itself is not bounded).
    """
    B, T, L, N = s.B, s.T, s.L, s.N
    ab = s.prec.act_bytes
    kb = s.prec.kv_bytes if kv_bytes is None else kv_bytes
    W = np.inf if window is None else float(window)
    keys = keys_touched(T, L, W)
    q_width, out_width = heads * d_qk, heads * d_v
    kv_read = B * keys * kv_read_width * kb
    reread = kv_read * (kv_group - 1)
    kv_write = N * kv_write_width * kb
    if s.flash:
        per_head = causal_pairs(T, L, W)
        if chunked:
            per_head = np.where(T > 1, chunked_pairs(T, L, W), per_head)
        pairs = B * heads * per_head
        s.op(name + suffix, "attention", "gemm16", count,
             flops=2 * pairs * (d_qk + d_v), a=N * (q_width + out_width) * ab,
             kv=kv_read + kv_write, window=W, reread=reread, kv_group=kv_group)
        return
    scores = B * heads * T * keys
    k_frac = d_qk / (d_qk + d_v)
    s.op(name.replace("attention", "attn") + "_score" + suffix, "attention", "gemm16", count, flops=2 * scores * d_qk,
         a=N * q_width * ab + scores * ab, kv=kv_read * k_frac + kv_write, window=W,
         reread=reread * k_frac, kv_group=kv_group)
    s.op("softmax" + suffix, "elementwise", "vector", count, flops=SOFTMAX_FLOPS * scores,
         a=2 * scores * ab, window=W)
    s.op(name.replace("attention", "attn") + "_av" + suffix, "attention", "gemm16", count, flops=2 * scores * d_v,
         a=scores * ab + N * out_width * ab, kv=kv_read * (1 - k_frac), window=W,
         reread=reread * (1 - k_frac), kv_group=kv_group)


def _mla_ops(s: _Step, mla_absorb):
    """DeepSeek MLA: low-rank q, joint compressed KV latent (+ shared rope key).

    Under TP the down-projections (q_a, kv_a) and the latent cache are replicated; the
    up-projections and o_proj are split by heads.
    """
    m, a = s.m, s.m.mla
    h, H, nl = m.hidden_size, s.shard.heads, m.num_layers
    N, T, B, L = s.N, s.T, s.B, s.L
    ab, kb = s.prec.act_bytes, s.prec.kv_bytes
    if a.q_lora_rank:
        s.linear("q_a_proj", h, a.q_lora_rank, nl, wclass="attn_qkv")
        s.norm("q_a_norm", nl, width=a.q_lora_rank)
        s.linear("q_b_proj", a.q_lora_rank, H * a.qk_head_dim, nl, wclass="attn_qkv")
    else:
        s.linear("q_proj", h, H * a.qk_head_dim, nl, wclass="attn_qkv")
    latent = m.kv_cache_width()      # the cached latent: kv_lora_rank + qk_rope_head_dim
    s.linear("kv_a_proj", h, latent, nl, wclass="attn_qkv")
    s.norm("kv_a_norm", nl, width=a.kv_lora_rank)
    s.op("rope", "elementwise", "vector", nl, flops=ROPE_FLOPS * N * (H + 1) * a.qk_rope_head_dim,
         a=2 * N * (H + 1) * a.qk_rope_head_dim * ab)
    absorb = bool(np.all(T == 1)) if mla_absorb is None else mla_absorb
    kv_up = H * (a.qk_nope_head_dim + a.v_head_dim)
    topk = None
    if m.sparse:
        _indexer_ops(s)
        topk = m.sparse.index_topk
    if absorb:
        # Scores and values live in the latent space; heads share one latent "KV head".
        s.linear("q_absorb", a.qk_nope_head_dim, a.kv_lora_rank, nl, tokens=N * H,
                 weight_rows=H * a.qk_nope_head_dim, wclass="attn_qkv")
        _attention(s, nl, topk, heads=H, d_qk=latent, d_v=a.kv_lora_rank,
                   kv_read_width=latent, kv_write_width=latent,
                   suffix=" (top-k)" if topk else "")
        s.linear("o_absorb", a.kv_lora_rank, a.v_head_dim, nl, tokens=N * H,
                 weight_rows=H * a.kv_lora_rank, wclass="attn_qkv")
    else:
        # Up-projection: decompress every cached latent (W_UKV over B x L tokens), then
        # plain multi-head attention; the cache traffic is the latent read and write.
        s.linear("kv_b_proj", a.kv_lora_rank, kv_up, nl, tokens=B * L, wclass="attn_qkv")
        _attention(s, nl, topk, heads=H, d_qk=a.qk_head_dim, d_v=a.v_head_dim,
                   kv_read_width=0, kv_write_width=0, suffix=" (top-k)" if topk else "")
        s.op("latent_cache_io", "elementwise", "vector", nl,
             kv=B * (L - T) * latent * kb + N * latent * kb)
    s.linear("o_proj", H * a.v_head_dim, h, nl, bias=m.o_bias, wclass="attn_out")


def _v4_ops(s: _Step):
    """DeepSeek-V4 compressed attention + hyper-connections (see ``CompressedAttnSpec`` and
    docs/conventions.md "DeepSeek-V4"). Per layer on one rank (H = heads / tp, D = head_dim):

    - q_a (h -> q_lora, replicated), q_b (q_lora -> H D), kv_proj (h -> D, the single
      shared K = V head, replicated), grouped o_a (H D -> groups x o_lora, block-diagonal:
      2 H D o_lora FLOPs per token), o_b (groups x o_lora -> h);
    - every layer: sliding-window attention over ``window`` tokens, the K = V head read
      once (D elements per cached token);
    - CSA layers (ratio m): compressor GEMM h -> 4 D (kv and gate of two overlapping
      series), indexer (q_b q_lora -> Hi Di, kv/gate h -> 4 Di, weights h -> Hi) scoring
      each query against the L / m compressed index keys it may see (Hi (2 Di + 2) FLOPs
      per pair), attention over min(L / m, index_topk) compressed entries;
    - HCA layers (ratio m'): compressor GEMM h -> 2 D, attention over all L / m'
      compressed entries;
    - two hyper-connections: fn GEMM (N h -> (2 + N) N) and the stream mixing
      (2 N (N + 2) h FLOPs, (2 N + 2) h activations read/written per token).
    Compressed entries are counted as ``L / m`` (not floor), the softmax-gated pooling of
    the compressors as elementwise work over the compressed widths.
    """
    m, v, sh = s.m, s.m.v4, s.shard
    h, N, B, T, L = m.hidden_size, s.N, s.B, s.T, s.L
    ab, kb = s.prec.act_bytes, s.prec.kv_bytes
    D, H, ql = v.head_dim, sh.heads, v.q_lora_rank
    g = v.o_groups * H // m.num_heads
    nl = m.num_layers
    kinds = [v.kind(i) for i in range(nl)]
    n_csa, n_hca = kinds.count("csa"), kinds.count("hca")
    s.linear("q_a_proj", h, ql, nl, wclass="attn_qkv")
    s.norm("q_a_norm", nl, width=ql)
    s.linear("q_b_proj", ql, H * D, nl, wclass="attn_qkv")
    s.linear("kv_proj", h, D, nl, wclass="attn_qkv")
    s.norm("kv_norm", nl, width=D)
    s.op("rope", "elementwise", "vector", nl, flops=ROPE_FLOPS * N * (H + 1) * v.rope_dim,
         a=2 * N * (H + 1) * v.rope_dim * ab)
    _attention(s, nl, v.window, heads=H, d_qk=D, d_v=D, kv_read_width=D, kv_write_width=D,
               suffix=" (sliding)")
    Di, Hi, r = v.index_head_dim, v.index_n_heads, v.csa_rate
    if n_csa:
        s.linear("csa_compressor", h, 4 * D, n_csa, wclass="attn_qkv")
        s.op("csa_pool", "elementwise", "vector", n_csa, flops=6 * N * 2 * D, a=N * 2 * D * ab)
        s.linear("indexer_q_proj", ql, Hi * Di, n_csa, wclass="attn_qkv")
        s.linear("indexer_k_proj", h, 4 * Di + Hi, n_csa, wclass="attn_qkv")
        idx_pairs = B * causal_pairs(T, L) / r
        s.op("indexer_scores", "attention", "gemm16", n_csa,
             flops=idx_pairs * Hi * (2 * Di + 2), a=N * (Hi * Di + Hi) * ab,
             kv=B * L / r * Di * kb + N / r * Di * kb)
        s.op("indexer_topk", "elementwise", "vector", n_csa, flops=idx_pairs, a=2 * 4 * idx_pairs)
        # min(p / r, topk) = min(p, r topk) / r: a window of r x topk tokens in L's terms
        W = float(r * v.index_topk)
        pairs = B * H * causal_pairs(T, L, W) / r
        s.op("attention (compressed sparse)", "attention", "gemm16", n_csa,
             flops=2 * pairs * 2 * D, a=N * 2 * H * D * ab,
             kv=B * keys_touched(T, L, W) / r * D * kb + N / r * D * kb, window=W)
    if n_hca:
        rh = v.hca_rate
        s.linear("hca_compressor", h, 2 * D, n_hca, wclass="attn_qkv")
        s.op("hca_pool", "elementwise", "vector", n_hca, flops=6 * N * D, a=N * D * ab)
        pairs = B * H * causal_pairs(T, L) / rh
        s.op("attention (heavily compressed)", "attention", "gemm16", n_hca,
             flops=2 * pairs * 2 * D, a=N * 2 * H * D * ab,
             kv=B * L / rh * D * kb + N / rh * D * kb)
    s.linear("o_a_proj", H * D // g, g * v.o_lora_rank, nl, wclass="attn_out")
    s.linear("o_b_proj", g * v.o_lora_rank, h, nl, wclass="attn_out")
    hc = v.hc_mult
    s.linear("hc_fn", hc * h, (2 + hc) * hc, 2 * nl, wbytes=s.prec.base_bytes, compute="gemm16")
    s.op("hc_mix", "elementwise", "vector", 2 * nl, flops=2 * hc * (hc + 2) * h * N,
         a=(2 * hc + 2) * h * N * ab)


def _indexer_ops(s: _Step):
    """DSA lightning indexer of every layer that has one (replicated on each TP rank).

    Projections: ``wq_b`` (q_lora_rank -> index_heads x index_dim, from the MLA query
    latent), ``wk`` (hidden -> index_dim) and ``weights_proj`` (hidden -> index_heads) as one
    GEMM. Scoring: every query against every cached index key it may see (causal, no
    window; unfused: the whole T x L block, as transformers' eager path): ``(2 x index_dim + 2) x index_heads`` FLOPs per (query, key) pair (dot
    products, ReLU, head-weighted sum); reads the index-key cache (``index_dim`` elements
    per token, at ``kvbits``) and writes the new keys. Top-k selection: the fp32 scores are
    written and read once (8 bytes and ~1 FLOP per pair).
    """
    m, x = s.m, s.m.sparse
    count = sum(x.has_indexer(i) for i in range(m.num_layers))
    if not count:
        return
    h, N, B, T, L = m.hidden_size, s.N, s.B, s.T, s.L
    ab, kb = s.prec.act_bytes, s.prec.kv_bytes
    q_in = m.mla.q_lora_rank or h
    s.linear("indexer_q_proj", q_in, x.index_n_heads * x.index_head_dim, count,
             wclass="attn_qkv")
    s.linear("indexer_k_proj", h, x.index_head_dim + x.index_n_heads, count, wclass="attn_qkv")
    keys = keys_touched(T, L)
    # Fused kernels skip masked tiles (causal pairs); unfused ones score the whole block.
    pairs = B * (causal_pairs(T, L) if s.flash else T * keys)
    s.op("indexer_scores", "attention", "gemm16", count,
         flops=pairs * x.index_n_heads * (2 * x.index_head_dim + 2),
         a=N * (x.index_n_heads * x.index_head_dim + x.index_n_heads) * ab,
         kv=B * keys * x.index_head_dim * kb + N * x.index_head_dim * kb)
    s.op("indexer_topk", "elementwise", "vector", count, flops=pairs, a=2 * 4 * pairs)


def _short_conv(s: _Step, name, channels, kernel, count):
    """Depthwise causal conv1d (+ SiLU) over ``channels``: ``(2 x kernel + 4)`` FLOPs per
    element; reads/writes the activations once; the conv state (the last ``kernel - 1``
    inputs per channel per sequence, 16-bit) is read and written once per step (kv column)."""
    N, B, ab, sb = s.N, s.B, s.prec.act_bytes, s.prec.base_bytes
    s.op(name, "elementwise", "vector", count, flops=(2 * kernel + 4) * N * channels,
         w=channels * kernel * sb, a=2 * N * channels * ab,
         kv=2 * B * conv_state_bytes(channels, kernel))


def _linear_attn_ops(s: _Step, count):
    """Gated DeltaNet layers (Qwen3-Next / Qwen3.5) on one rank (heads split by TP).

    in_proj (q, k, v, z, b, a as one GEMM: hidden -> 2 kd + 2 vd + 2 nv), short conv over
    q, k, v, the gated delta rule, the gated RMSNorm (x silu(z)), out_proj (vd -> hidden).
    Delta rule per value head (dk = head_k_dim, dv = head_v_dim), FLOPs per token:
    - decode (q_len 1, recurrent): ``7 dk dv``: decay ``g S`` (dk dv), ``S^T k`` (2 dk dv),
      rank-1 update (2 dk dv), read-out ``S^T q`` (2 dk dv);
    - multi-token (chunked scan, chunk c = min(q_len, 64)): ``c (4 dk + 2 dv) + (c - 1)
      (dk + dv) + 6 dk dv``: per chunk the (beta K) K^T and Q K^T blocks (2 c^2 dk each), the
      two unit-triangular solves for U (values) and W (decayed keys) (c (c - 1) per
      right-hand column: c (c - 1) (dk + dv)), the intra-chunk output (2 c^2 dv) and the
      three state products W S, Q S, K^T (U - W S) (2 c dk dv each); transformers'
      ``torch_chunk_gated_delta_rule`` runs the same products.
    The recurrent state (nv x dk x dv at the config's ``mamba_ssm_dtype``) is read and
    written once per step (kv column): it does not grow with the context.
    """
    m, g, sh = s.m, s.m.linear_attn, s.shard
    h, N, B, T = m.hidden_size, s.N, s.B, s.T
    ab = s.prec.act_bytes
    nk, nv, dk, dv = sh.lin_k_heads, sh.lin_v_heads, g.head_k_dim, g.head_v_dim
    kd, vd = nk * dk, nv * dv
    s.linear("linear_attn_in_proj", h, 2 * kd + 2 * vd + 2 * nv, count, wclass="attn_qkv")
    _short_conv(s, "linear_attn_conv", 2 * kd + vd, g.conv_kernel, count)
    c = np.minimum(T, g.chunk)
    per_token = np.where(T > 1, c * (4 * dk + 2 * dv) + (c - 1) * (dk + dv) + 6 * dk * dv,
                         7 * dk * dv)
    s.op("gated_delta_rule", "attention", "gemm16", count, flops=N * nv * per_token,
         a=N * (2 * kd + vd + 2 * nv + vd) * ab,
         kv=2 * B * g.recurrent_state_bytes(nv))
    s.op("linear_attn_gated_norm", "norm", "vector", count, flops=(NORM_FLOPS["rms"] + 5) * N * vd,
         w=dv * s.prec.base_bytes, a=3 * N * vd * ab)
    s.linear("linear_attn_out_proj", vd, h, count, wclass="attn_out")


def _mamba_ops(s: _Step, count):
    """Mamba-2 (SSD) layers (Nemotron-H) on one rank (heads and groups split by TP).

    in_proj (hidden -> 2 d_inner + 2 G N + H: z, x, B, C, dt), short conv over x, B, C, the
    selective scan, the gated RMSNorm, out_proj (d_inner -> hidden). With H heads of P =
    head_dim, state N, G groups, FLOPs per token:
    - decode (recurrent): ``5 N P`` per head: decay (N P), ``dt B x^T`` rank-1 update
      (2 N P), read-out ``C h`` (2 N P);
    - multi-token (SSD chunks of c = min(q_len, chunk_size)): ``2 c N`` per group (C B^T
      block) + ``2 c P + 4 N P + N P / c`` per head (the masked block times x, chunk states
      B^T x, state read-out C h, the inter-chunk recurrence).
    The SSM state (H x P x N at ``mamba_ssm_cache_dtype``) is read and written once per
    step (kv column).
    """
    m, x, sh = s.m, s.m.mamba, s.shard
    h, N, B, T = m.hidden_size, s.N, s.B, s.T
    ab = s.prec.act_bytes
    H, G, P, S = sh.mamba_heads, sh.mamba_groups, x.head_dim, x.state_size
    di, gn = H * P, G * S
    s.linear("mamba_in_proj", h, 2 * di + 2 * gn + H, count, bias=x.bias, wclass="attn_qkv")
    _short_conv(s, "mamba_conv", di + 2 * gn, x.conv_kernel, count)
    c = np.minimum(T, x.chunk)
    per_token = np.where(T > 1, G * 2 * c * S + H * (2 * c * P + 4 * S * P + S * P / c),
                         H * 5 * S * P)
    s.op("ssm_scan", "attention", "gemm16", count, flops=N * per_token,
         a=N * (di + 2 * gn + H + di) * ab, kv=2 * B * x.recurrent_state_bytes(H))
    s.op("mamba_gated_norm", "norm", "vector", count, flops=(NORM_FLOPS["rms"] + 5) * N * di,
         w=di * s.prec.base_bytes, a=3 * N * di * ab)
    s.linear("mamba_out_proj", di, h, count, bias=x.bias, wclass="attn_out")


def _mlp(s: _Step, prefix, ffn, count, bias):
    h, N, ab = s.m.hidden_size, s.N, s.prec.act_bytes
    gated = s.m.gated_mlp
    wclass = "shared_experts" if prefix == "shared_" else "dense_mlp"
    s.linear(prefix + ("gate_up_proj" if gated else "up_proj"), h, (2 if gated else 1) * ffn,
             count, bias=bias, wclass=wclass)
    s.op(prefix + "act_fn", "elementwise", "vector", count, flops=ACT_FLOPS[gated] * N * ffn,
         a=N * ffn * ab * (3 if gated else 2))
    s.linear(prefix + "down_proj", ffn, h, count, bias=bias, wclass=wclass)


def _moe(s: _Step, count):
    """Router, routed experts (weights of the experts the step touches), shared experts.

    Per device with expert parallelism ``ep``: E/ep experts, each a ``moe_tp`` slice
    (``moe_tp = tp x dp_attention / ep``); the routed token-expert pairs are
    ``N_moe x k / ep`` times the expected load imbalance, where ``N_moe = dp_attention x N``
    are the tokens of all attention-DP groups (each group's step carries ``N``; the groups
    are taken to be equally loaded, as the busiest one's step sets the pace).

    Token exchange, bytes per device per MoE layer (``a`` the activation bytes, ``h`` the
    hidden (or latent) width, ``c`` = :func:`parallel.alltoall_copies_per_token`, top_k
    without group-limited routing):

    - ``ep`` > 1: all-to-all dispatch and combine, each ``N_moe / ep x c x h x a`` bytes
      sent by a device; ``cost.collective_time`` charges ``(g - 1) / g`` of it to the link
      (the share that leaves the device), so with ``dp_attention = ep`` (one attention group
      per rank, ``tp`` 1) each direction moves ``N x top_k x h x a x (ep - 1) / ep`` bytes.
      With attention-DP the dispatch is sent at 1 byte per element when the layout says so
      (``Layout.fp8_dispatch``: DeepEP in SGLang / TensorRT-LLM with FP8 checkpoints); the
      combine stays at ``a``.
    - ``ep`` = 1 with attention-DP (experts tensor-split over all ranks, vLLM's default
      DP + TP MoE): all-gather of each device's ``N / tp`` tokens (``N / tp x h x a`` bytes
      per device part) before the experts and reduce-scatter after, over all
      ``tp x dp_attention`` ranks.
    """
    m, e, lay = s.m, s.m.moe, s.layout
    N = s.N
    adp = lay.dp_attention
    Ng = N * adp                       # tokens of every attention-DP group
    wb, ab, sb = s.prec.class_weight_bytes("experts"), s.prec.act_bytes, s.prec.base_bytes
    ex = s.prec.class_compute("experts")
    # Router and qwen2_moe's shared-expert gate are small 16-bit matmuls (replicated).
    s.linear("router", m.hidden_size, e.num_experts + (1 if e.shared_gate else 0), count,
             bias=e.router_bias, wbytes=sb, compute="gemm16")
    h = e.latent or m.hidden_size   # nemotron-h latent MoE: experts (and dispatch) in latent
    if e.latent:
        s.linear("moe_latent_down", m.hidden_size, e.latent, count)
    copies = alltoall_copies_per_token(e, lay.ep)
    a2a_group = lay.ep if adp == 1 else lay.moe_ranks
    dispatch_b = 1.0 if (adp > 1 and lay.fp8_dispatch and s.prec.abits <= 8) else ab
    if lay.ep > 1:
        s.op("moe_dispatch", "communication", "comm", count,
             comm=Ng / lay.ep * copies * h * dispatch_b, collective="alltoall", group=a2a_group)
    elif adp > 1:
        s.op("moe_allgather", "communication", "comm", count,
             comm=N / lay.tp * h * ab, collective="allgather", group=lay.moe_ranks)
    pairs = Ng * e.top_k / lay.ep * expert_load_imbalance(Ng, e.top_k, lay.ep)
    hit = experts_hit_on_busiest_device(Ng, e.num_experts, e.top_k, lay.ep)
    f = s.shard.expert_ffn
    up_out = 2 * f if m.gated_mlp else f
    bias_up = (up_out * sb) if e.expert_bias else 0.0
    bias_down = (h * sb) if e.expert_bias else 0.0
    rows = pairs / np.maximum(hit, 1.0)   # tokens per expert GEMM
    # tokens whose outputs this device writes: all of them without attention-DP (as
    # before), else the copies it received
    n_out = N if adp == 1 else Ng / lay.ep * (copies if lay.ep > 1 else 1)
    s.op("experts_gate_up" if m.gated_mlp else "experts_up", "matmul", ex, count,
         flops=2 * pairs * h * up_out, w=hit * (h * up_out * wb + bias_up),
         a=pairs * (h + up_out) * ab, rows=rows, cols=hit * up_out)
    s.op("experts_act_fn", "elementwise", "vector", count, flops=ACT_FLOPS[m.gated_mlp] * pairs * f,
         a=pairs * f * ab * (3 if m.gated_mlp else 2))
    # The down projection's kernel also sums each token's top-k outputs (fused combine).
    s.op("experts_down", "matmul", ex, count, flops=2 * pairs * f * h,
         w=hit * (f * h * wb + bias_down), a=(pairs * f + n_out * h) * ab, rows=rows,
         cols=hit * h)
    if lay.ep > 1:
        s.op("moe_combine", "communication", "comm", count,
             comm=Ng / lay.ep * copies * h * ab, collective="alltoall", group=a2a_group)
    elif adp > 1:
        s.op("moe_reducescatter", "communication", "comm", count,
             comm=N / lay.tp * h * ab, collective="reducescatter", group=lay.moe_ranks)
    if e.latent:
        s.linear("moe_latent_up", e.latent, m.hidden_size, count)
    if e.shared_ffn:
        _mlp(s, "shared_", s.shard.shared_ffn, count, bias=False)
