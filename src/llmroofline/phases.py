"""Prefill, decode and end-to-end metrics, composed from per-operator costs.

Definitions (``docs/conventions.md`` has the full list):

- prefill: one forward of the whole batch over ``input_len`` tokens; ``ttft_s`` = its time.
- decode: output token 1 comes from the prefill; steps t = 2..output_len each feed one
  token per sequence and attend to ``kv_len = input_len + t - 1`` tokens. The sum over
  steps is exact and closed-form (each operator's FLOPs and bytes are affine in
  ``min(kv_len, window)``, so the sum of ``max(compute, memory)`` splits at the crossover).
- ``tpot_s`` = decode sum / (output_len - 1) (NaN when output_len = 1);
  ``e2e_s`` = ttft_s + decode sum; ``throughput_tok_s`` = batch x output_len / e2e_s.
- beam search of width W / parallel sampling of n: the prompt is prefilled once per
  request; decode runs ``batch x W`` (or ``x n``) rows, each attending to the whole
  context, i.e. it is exactly plain decoding at batch ``batch x W``. Sampling returns
  ``batch x n x output_len`` tokens, beam search ``batch x output_len``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .cost import Roofline, combine, exposed_fraction
from .errors import InputError
from .graph import Op, build_ops
from .memory import Memory, memory_footprint
from .parallel import Layout
from .deployment import Deployment, resolve
from .specs.catalog import DEFAULT_MODEL
from .specs.engine import Engine
from .specs.hardware import HardwareSpec
from .specs.model import ModelSpec, active_param_count, param_count
from .specs.precision import Precision
from .specs.profile import Efficiency, Profile


@dataclass(frozen=True)
class OpResult:
    """One operator row with its cost; arrays share the query grid's shape.

    Prefill rows are totals of the prefill; decode rows are the mean over decode steps.
    """

    name: str
    kind: str
    count: int
    flops: np.ndarray
    weight_bytes: np.ndarray
    act_bytes: np.ndarray
    kv_bytes: np.ndarray
    compute_s: np.ndarray
    memory_s: np.ndarray
    comm_s: np.ndarray
    overhead_s: np.ndarray
    time_s: np.ndarray
    bound: np.ndarray
    comm_bytes: np.ndarray | float = 0.0   # collective message bytes per device

    @property
    def bytes(self) -> np.ndarray:
        return self.weight_bytes + self.act_bytes + self.kv_bytes

    @property
    def intensity(self) -> np.ndarray:
        """Arithmetic intensity, FLOPs per byte moved."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.bytes > 0, self.flops / np.where(self.bytes > 0, self.bytes, 1), 0.0)


@dataclass(frozen=True)
class PhaseResult:
    """Prefill (totals) or decode (mean per step; ``steps`` steps in ``total_time_s``)."""

    name: str
    ops: list[OpResult]
    time_s: np.ndarray
    total_time_s: np.ndarray
    steps: np.ndarray

    @property
    def flops(self) -> np.ndarray:
        return sum(o.flops for o in self.ops)

    @property
    def bytes(self) -> np.ndarray:
        return sum(o.bytes for o in self.ops)

    def to_dataframe(self):
        """Operator table as a pandas DataFrame (scalar queries only)."""
        import pandas as pd
        rows = []
        for o in self.ops:
            rows.append({"name": o.name, "kind": o.kind, "count": o.count,
                         "flops": float(o.flops), "weight_bytes": float(o.weight_bytes),
                         "act_bytes": float(o.act_bytes), "kv_bytes": float(o.kv_bytes),
                         "bytes": float(o.bytes), "intensity": float(o.intensity),
                         "comm_bytes": float(o.comm_bytes),
                         "compute_s": float(o.compute_s), "memory_s": float(o.memory_s),
                         "comm_s": float(o.comm_s),
                         "overhead_s": float(o.overhead_s), "time_s": float(o.time_s),
                         "bound": str(o.bound)})
        return pd.DataFrame(rows)


@dataclass(frozen=True)
class Analysis:
    """Everything ``analyze`` predicts for one model, device and (grid of) workloads."""

    model: ModelSpec
    hardware: HardwareSpec
    precision: Precision
    flash: bool
    batch: np.ndarray
    input_len: np.ndarray
    output_len: np.ndarray
    prefill: PhaseResult
    decode: PhaseResult
    memory: Memory
    warnings: tuple[str, ...] = field(default=())
    layout: Layout = field(default_factory=Layout)
    profile: str = "ideal"
    efficiency: Efficiency = field(default_factory=Efficiency)
    beams: int = 1      # beam width W: W decode rows per request, 1 sequence returned
    samples: int = 1    # parallel samples n: n decode rows per request, n sequences returned
    cuda_graphs: bool = False   # decode steps replayed from CUDA graphs
    prefill_chunk: int | None = None   # chunked prefill: tokens per chunk
    deployment: Deployment | None = None   # the resolved setup this analysis ran

    @property
    def engine(self) -> str:
        return self.deployment.engine.name if self.deployment else self.profile

    @property
    def ttft_s(self) -> np.ndarray:
        return self.prefill.time_s

    @property
    def tpot_s(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.decode.steps > 0, self.decode.total_time_s / self.decode.steps,
                            np.nan)

    @property
    def e2e_s(self) -> np.ndarray:
        return self.prefill.time_s + self.decode.total_time_s

    @property
    def throughput_tok_s(self) -> np.ndarray:
        """Returned tokens/s of the deployment: dp x B x samples x output_len / e2e.

        Beam search decodes B x W rows but returns B sequences, so only B x output_len
        tokens count (docs/conventions.md, "Decoding strategies").
        """
        return self.layout.dp * self.batch * self.samples * self.output_len / self.e2e_s

    @property
    def max_batch(self) -> np.ndarray | int:
        """Largest batch that fits: an int for a scalar query, else an integer-valued array."""
        mb = self.memory.max_batch
        return int(mb) if np.ndim(mb) == 0 and np.isfinite(mb) else mb

    @property
    def params(self) -> int:
        return param_count(self.model)

    @property
    def active_params(self) -> int:
        return active_param_count(self.model)


def _as_int_array(name: str, v, lo: int = 1) -> np.ndarray:
    a = np.asarray(v)
    if a.dtype == bool or not np.issubdtype(a.dtype, np.number):
        raise InputError(f"{name} must be an integer >= {lo}, got {v!r}")
    if a.size == 0:
        raise InputError(f"{name} must not be empty")
    if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
        raise InputError(f"{name} must be an integer >= {lo}, got {v!r}")
    if np.any(a < lo):
        raise InputError(f"{name} must be an integer >= {lo}, got {a.min():g}")
    return a.astype(float)


def sum_affine(p, q, a, b, w):
    """sum_{L=a}^{b} (p + q x(L)) with x(L) = min(L, w)."""
    b_lin = np.minimum(b, w)
    n_lin = np.maximum(b_lin - a + 1, 0)
    n_flat = np.maximum(b - np.maximum(a, w + 1) + 1, 0)
    flat = np.where(n_flat > 0, n_flat * (p + q * np.where(np.isfinite(w), w, 0)), 0.0)
    return n_lin * p + q * (a + b_lin) * n_lin / 2 + flat


def sum_max_affine(p, q, r, s, a, b, w):
    """Exact sum_{L=a}^{b} max(p + q x, r + s x), x = min(L, w), for integer L.

    max(u, v) = v + max(u - v, 0); the positive part of the affine g = (p - r) + (q - s) x
    is summed over the integer range on the right side of its root.
    """
    base = sum_affine(r, s, a, b, w)
    g0, dg = p - r, q - s
    b_lin = np.minimum(b, w)
    with np.errstate(divide="ignore", invalid="ignore"):
        root = np.where(dg != 0, -g0 / np.where(dg != 0, dg, 1), 0.0)
    c = np.where(dg > 0, np.maximum(a, np.floor(root) + 1), a)
    d = np.where(dg < 0, np.minimum(b_lin, np.ceil(root) - 1), b_lin)
    c = np.where((dg == 0) & (g0 <= 0), b_lin + 1, c)
    n = np.maximum(d - c + 1, 0)
    extra = np.where(n > 0, n * g0 + dg * (c + d) * n / 2, 0.0)
    wf = np.where(np.isfinite(w), w, 0)
    n_flat = np.maximum(b - np.maximum(a, w + 1) + 1, 0)
    extra_flat = np.where(n_flat > 0, n_flat * np.maximum(g0 + dg * wf, 0), 0.0)
    return base + extra + extra_flat


def _step_row(rows: list, step_s, name: str = "step overhead") -> None:
    """Fixed cost per forward step outside kernels (scheduling, sampling, host sync)."""
    if np.any(np.asarray(step_s) > 0):
        shape = np.broadcast_shapes(np.shape(rows[0].time_s), np.shape(step_s))
        z = np.zeros(shape)
        rows.append(OpResult(name, "overhead", 1, z, z, z, z, z, z, z, z + step_s,
                             z + step_s, np.full(shape, "overhead")))


def _pipeline_row(name: str, extra_s, p2p_s, shape) -> OpResult:
    """Time the pipeline adds beyond one device's operators: idle slots and transfers."""
    z = np.zeros(shape)
    bound = np.where(p2p_s * 2 > extra_s, "communication", "overhead")
    return OpResult(name, "pipeline", 0, z, z, z, z, z, z, z, z, extra_s + z, bound)


def step_cost(ops: list[Op], roof: Roofline, name: str = "step") -> PhaseResult:
    """Cost of one forward step of any shape (``q_len``, ``kv_len``) on one pipeline stage:
    the per-operator roofline with collectives exposed as the layout says, plus the fixed
    step overhead. ``decoding.py`` prices speculative draft and verify steps with it."""
    return replace(_prefill(ops, roof, _Pipe(1, np.ones(())), roof.eff.step_overhead_s,
                            "step overhead"), name=name)


def _decode_rows(beams, samples) -> int:
    """Decode rows per request: the beam width or the number of parallel samples."""
    for name, v in (("beams", beams), ("samples", samples)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= 1024:
            raise InputError(f"{name} must be an integer in [1, 1024], got {v!r}")
    if beams > 1 and samples > 1:
        raise InputError(f"samples: beam search (beams = {beams}) and parallel sampling "
                         f"(samples = {samples}) cannot be combined; set one of them to 1")
    return int(max(beams, samples))


def prefill_fixed_s(eff, input_len):
    """Fixed cost of a request's first step: the step overhead plus, for a prompt of more
    than one token, the prefill overhead (a one-token prompt runs as a decode step)."""
    return eff.step_overhead_s + np.where(np.asarray(input_len) > 1, eff.prefill_overhead_s, 0.0)


def _prefill(ops: list[Op], roof: Roofline, pipe: _Pipe, fixed_s,
             fixed_name: str = "step + prefill overhead") -> PhaseResult:
    terms = [(o, *roof.terms(o)) for o in ops]
    exposed = exposed_fraction(terms) if roof.layout.overlap else 1.0
    rows = []
    for o, c, m, comm, oh in terms:
        comm = comm * exposed
        t, bound = combine(c, m, comm, oh, roof.overlap(o))
        rows.append(OpResult(o.name, o.kind, o.count, o.flops, o.weight_bytes, o.act_bytes,
                             o.kv_bytes, c, m, comm + np.zeros_like(c), np.broadcast_to(oh, c.shape),
                             t, bound, np.zeros_like(c) + o.comm_bytes))
    _step_row(rows, fixed_s, fixed_name)
    ops_total = sum(r.time_s for r in rows)
    total = pipe.prefill(ops_total)
    if pipe.stages > 1:
        rows.append(_pipeline_row("pipeline (bubble + p2p)", total - ops_total,
                                  pipe.prefill_p2p_s, np.shape(total)))
    return PhaseResult("prefill", rows, total, total, np.ones_like(total))


_SUMMED = ("flops", "weight_bytes", "act_bytes", "kv_bytes", "compute_s", "memory_s", "comm_s",
           "overhead_s", "time_s")   # OpResult fields that add up over prefill chunks


# Work bound of a chunked prefill: every chunk is one column of one vectorized operator
# table (no Python loop over chunks), so its size is capped (docs/conventions.md).
MAX_PREFILL_CHUNKS = 4096            # chunks of one prompt: ceil(input_len / prefill_chunk)
MAX_CHUNK_CELLS = 1 << 16            # query grid points x chunks


def _chunk_slice(o: Op, j: int) -> Op:
    """Operator row of chunk ``j`` from a table whose last axis is the chunk index."""
    kw = {f: np.asarray(getattr(o, f))[..., j] for f in
          ("flops", "weight_bytes", "act_bytes", "kv_bytes", "comm_bytes", "rows", "cols",
           "kv_reread") if np.ndim(getattr(o, f))}
    return replace(o, **kw)


def _chunked_prefill(m: ModelSpec, prec: Precision, b, I, chunk: int, roof: Roofline,
                     pipe: _Pipe, flash: bool, lay: Layout) -> tuple[PhaseResult, list[Op]]:
    """Prefill in chunks of ``chunk`` tokens (vLLM / TensorRT-LLM chunked prefill): chunk j
    feeds ``q_j = min(chunk, I - j chunk)`` tokens attending to the ``min(I, (j + 1) chunk)``
    computed so far. Each chunk is one forward step: it streams the weights again, pays the
    step overhead and, as an iteration carrying prompt tokens (the serving simulator's
    rule), the prefill overhead, and reads the cache of the earlier chunks; causal pairs,
    and so attention FLOPs, add up to the unchunked prefill's.
    All chunks are costed at once: the chunk index is a trailing axis of one operator
    table (constant Python work; numpy work grows with the number of chunks, which is
    capped at ``MAX_PREFILL_CHUNKS`` per prompt and ``MAX_CHUNK_CELLS`` with the grid).
    Rows are totals over the chunks; returns the phase and the first chunk's operators
    (the activation peak)."""
    n_chunks = int(np.ceil(np.max(I) / chunk))
    cells = n_chunks * int(np.size(np.broadcast(b, I)))
    if n_chunks > MAX_PREFILL_CHUNKS or cells > MAX_CHUNK_CELLS:
        need = int(np.ceil(np.max(I) / min(MAX_PREFILL_CHUNKS,
                                           max(MAX_CHUNK_CELLS // max(cells // n_chunks, 1), 1))))
        raise InputError(f"prefill_chunk: {chunk} tokens cut input_len {int(np.max(I))} into "
                         f"{n_chunks} chunks (x {cells // n_chunks} grid points); at most "
                         f"{MAX_PREFILL_CHUNKS} chunks and {MAX_CHUNK_CELLS} chunk x grid "
                         f"cells are costed, so use prefill_chunk >= {need}")
    j = np.arange(n_chunks, dtype=float)
    bj, Ij = np.asarray(b, dtype=float)[..., None], np.asarray(I, dtype=float)[..., None]
    q = np.clip(Ij - j * chunk, 0, chunk)
    live = q > 0
    # absorbed MLA is a decode form; chunks always use the prefill form
    ops = build_ops(m, prec, bj, np.maximum(q, 1), np.maximum(np.minimum(Ij, (j + 1) * chunk), 1),
                    flash=flash, layout=lay, mla_absorb=False if m.mla else None)
    ph = _prefill(ops, roof, pipe, prefill_fixed_s(roof.eff, q))
    total = np.sum(np.where(live, ph.total_time_s, 0.0), axis=-1)
    rows = []
    for r in ph.ops:
        d = {f: np.sum(np.where(live, getattr(r, f), 0.0), axis=-1) for f in _SUMMED}
        _, bound = combine(d["compute_s"], d["memory_s"], d["comm_s"], d["overhead_s"])
        rows.append(replace(r, **d, bound=bound,
                            comm_bytes=np.asarray(r.comm_bytes)[..., 0] if np.ndim(r.comm_bytes)
                            else r.comm_bytes))
    total = np.asarray(total, dtype=float)
    first_ops = [_chunk_slice(o, 0) for o in ops]
    return PhaseResult("prefill", rows, total, total, np.ones_like(total)), first_ops


def check_prefill_chunk(chunk) -> int | None:
    if chunk is None:
        return None
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or not 1 <= chunk <= 10**7:
        raise InputError(f"prefill_chunk must be an integer number of tokens in [1, 10000000], "
                         f"got {chunk!r}")
    return int(chunk)


def _decode(ops1: list[Op], ops2: list[Op], roof: Roofline, first_kv, last_kv,
            pipe: _Pipe) -> PhaseResult:
    """Sum each op over kv_len in [first_kv, last_kv] from its values at kv = 1 and kv = 2."""
    steps = np.maximum(last_kv - first_kv + 1, 0)
    safe = np.maximum(steps, 1)
    t1 = [(o, *roof.terms(o)) for o in ops1]
    exposed = exposed_fraction(t1) if roof.layout.overlap else 1.0
    rows = []
    ops_total = 0.0
    for (o1, c1, m1, k1, oh), o2 in zip(t1, ops2):
        c2, m2, _, _ = roof.terms(o2)
        qc, qm = c2 - c1, m2 - m1
        pc, pm = c1 - qc, m1 - qm          # intercepts at kv = 0
        w = o1.window
        sum_c = sum_affine(pc, qc, first_kv, last_kv, w)
        sum_m = sum_affine(pm, qm, first_kv, last_kv, w)
        sum_k = steps * k1 * exposed        # collectives do not depend on the KV length
        sum_kernel = sum_max_affine(pc, qc, pm, qm, first_kv, last_kv, w)
        o_ = roof.overlap(o1)
        if o_ < 1:     # kernel_s = o max + (1 - o) (compute + memory): still closed form
            sum_kernel = o_ * sum_kernel + (1 - o_) * (sum_c + sum_m)
        sum_t = sum_kernel + sum_k + steps * oh
        mean = {}
        for name, a1, a2 in (("flops", o1.flops, o2.flops), ("w", o1.weight_bytes, o2.weight_bytes),
                             ("a", o1.act_bytes, o2.act_bytes), ("kv", o1.kv_bytes, o2.kv_bytes)):
            if np.isfinite(w):
                mean[name] = sum_affine(2 * a1 - a2, a2 - a1, first_kv, last_kv, w) / safe
            else:  # the mean of an affine function over L = a..b is its value at (a + b) / 2
                mean[name] = a1 + (a2 - a1) * ((first_kv + last_kv) / 2 - 1)
        _, bound = combine(sum_c, sum_m, sum_k, steps * oh)
        rows.append(OpResult(o1.name, o1.kind, o1.count, mean["flops"], mean["w"], mean["a"],
                             mean["kv"], sum_c / safe, sum_m / safe, sum_k / safe,
                             np.broadcast_to(oh, np.shape(sum_c)), sum_t / safe, bound,
                             np.zeros(np.shape(sum_c)) + o1.comm_bytes))
        ops_total = ops_total + sum_t
    if roof.eff.step_overhead_s > 0:
        _step_row(rows, roof.eff.step_overhead_s)
        ops_total = ops_total + steps * roof.eff.step_overhead_s
    ops_total = np.asarray(ops_total, dtype=float)
    total = pipe.decode(ops_total, steps)
    if pipe.stages > 1:
        rows.append(_pipeline_row("pipeline (bubble + p2p)", (total - ops_total) / safe,
                                  pipe.decode_p2p_s, np.shape(total)))
    return PhaseResult("decode", rows, total / safe, total, steps)


@dataclass(frozen=True)
class _Pipe:
    """Pipeline schedule of a static batch: ``stages`` stages, ``micro`` micro-batches.

    A stage runs 1/stages of the layers of one micro-batch, then sends its activations on
    (point-to-point). Prefill (GPipe fill and drain): (micro + stages - 1) stage slots.
    A decode step of every micro-batch in steady state: max(micro, stages) stage slots
    (with fewer micro-batches than stages the pipeline idles: the bubble).
    """

    stages: int
    micro: np.ndarray
    prefill_p2p_s: np.ndarray | float = 0.0
    decode_p2p_s: np.ndarray | float = 0.0

    def prefill(self, ops_s):
        if self.stages == 1:
            return ops_s
        return (self.micro + self.stages - 1) * (ops_s / self.stages + self.prefill_p2p_s)

    def decode(self, ops_sum_s, steps):
        if self.stages == 1:
            return ops_sum_s
        slots = np.maximum(self.micro, self.stages)
        return slots * (ops_sum_s / self.stages + steps * self.decode_p2p_s)


def _decode_phase(m, prec, rows_b, one, roof, I, O, pipe, flash, lay, notes) -> PhaseResult:
    """Decode steps; for MLA models both ways of computing attention are costed.

    MLA decode can absorb W_UK/W_UV into the query and output and attend in the latent
    space, or decompress the cached latents every step (up-projection). The cheaper one
    over the whole query is used, and the choice is reported in the notes.
    """
    def run(absorb):
        d1 = build_ops(m, prec, rows_b, one, one, flash=flash, layout=lay, mla_absorb=absorb)
        d2 = build_ops(m, prec, rows_b, one, 2 * one, flash=flash, layout=lay, mla_absorb=absorb)
        return _decode(d1, d2, roof, I + 1, I + O - 1, pipe)
    if not m.mla:
        return run(None)
    absorbed, up = run(True), run(False)
    t_abs, t_up = float(np.sum(absorbed.total_time_s)), float(np.sum(up.total_time_s))
    best, other, name = (absorbed, t_up, "absorbed") if t_abs <= t_up else (up, t_abs, "up-projection")
    chosen = min(t_abs, t_up)
    if chosen > 0:
        notes.append(f"MLA decode: {name} attention chosen ({100 * (other / chosen - 1):.0f}% "
                     "faster than the alternative)")
    return best


def _kernel_coverage_notes(ops, eff: Efficiency, profile: str) -> list[str]:
    """Say when the profile gives GQA layers no KV reuse because the engine's KV-sharing
    decode kernel does not cover their layout (``Efficiency.kv_reuse``)."""
    if eff.gqa_kv_reuse == 0:
        return []
    out = []
    for o in ops:
        if o.kind != "attention" or o.kv_group <= 1 or float(eff.kv_reuse(o.kv_group, o.window)):
            continue
        why = (f"a group of {o.kv_group:g} query heads per KV head (above {eff.gqa_max_group:g})"
               if o.kv_group > eff.gqa_max_group else "sliding-window layers")
        out.append(f"{o.name}: profile {profile} takes the engine's KV-sharing decode kernel "
                   f"not to cover {why}, so each query head reads its KV head itself there "
                   "(set gqa_max_group / gqa_covers_sliding_window in a profile if your "
                   "engine covers it; docs/accuracy.md, 'Kernel coverage')")
    return list(dict.fromkeys(out))


def _network_notes(hw: HardwareSpec, lay: Layout) -> list[str]:
    """Say which parallel groups outgrow the NVLink domain and pay the scale-out network."""
    node = lay.node_size(hw)
    groups = [(n, g) for n, g in (("TP", lay.tp), ("EP", lay.ep)) if g > node]
    if lay.dp_attention > 1 and lay.moe_ranks > node and lay.ep <= node:
        groups.append(("MoE group tp x dp_attention", lay.moe_ranks))
    if lay.pp > 1 and lay.devices_per_replica > node:
        groups.append(("PP", lay.pp))
    if not groups:
        return []
    where = ", ".join(f"{n}{g}" for n, g in groups)
    return [f"{where} spans more than one NVLink domain ({node} devices of {hw.id} per "
            f"domain): those collectives cross the {hw.scaleout_bytes_s / 1e9:g} GB/s "
            "scale-out network (--gpus-per-node / --nodes set the domain size)"]


def analyze(model: str | ModelSpec | Deployment = DEFAULT_MODEL,
            hardware: str | HardwareSpec | None = None,
            batch=1, input_len=128, output_len=128, *, quant: str | Precision | None = None,
            wbits: int | None = None, abits: int | None = None, kvbits: int | None = None,
            flash: bool = True, tp: int = 1, pp: int = 1, ep: int = 1, dp: int = 1,
            dp_attention: int = 1, layout: Layout | None = None, engine: str | Engine | None = None,
            profile: str | Profile | None = None, beams: int = 1, samples: int = 1,
            cuda_graphs: bool | None = None, prefill_chunk: int | None = None) -> Analysis:
    """Predict prefill, decode, end-to-end metrics and memory for a (grid of) workloads.

    ``model`` with the setup keywords is resolved by :func:`deployment.resolve` (one place
    for every check); or pass a resolved :class:`~llmroofline.deployment.Deployment` alone.
    ``batch``, ``input_len`` and ``output_len`` may be scalars or numpy arrays that
    broadcast together; every result array then has the broadcast shape. ``batch`` is per
    data-parallel replica; with ``dp_attention`` groups it is spread over them, the
    busiest running ``ceil(batch / dp_attention)`` (per-device rows and memory are that
    group's; ``max_batch`` is the replica's). ``tp``/``pp``/``ep``/``dp`` (or a full ``layout``) split the
    model over devices; per-operator rows and memory are per device. ``quant`` is a
    :class:`Precision` or a scheme string (``"fp8"``, ``"w4a16,kv-fp8"``, ...); explicit
    ``wbits``/``abits``/``kvbits`` override it. ``engine``: a serving engine
    (``llmroofline engines``; ``"default"``: calibrated to measured engines; ``"ideal"``:
    the bare roofline) or an engine/profile TOML file; ``profile`` replaces only its
    efficiency entries; a device file's own ``[efficiency]`` block takes precedence.
    ``beams`` (beam width W) or ``samples`` (parallel samples n), in [1, 1024]: each
    request is prefilled once and decoded as W (or n) rows sharing its prompt's KV cache.
    ``cuda_graphs``: decode steps replay captured CUDA graphs, so their kernels pay the
    engine's ``cuda_graph_launch_factor`` of the launch overhead; prefill runs eagerly, as
    in vLLM and TensorRT-LLM, which capture decode batch shapes only (None: the engine's
    default). ``prefill_chunk``: prefill the prompt in chunks of that many tokens (one
    forward step each); the activation peak is then a chunk's.
    """
    dep = resolve(model, hardware, quant=quant, wbits=wbits, abits=abits, kvbits=kvbits,
                  layout=layout, tp=tp, pp=pp, ep=ep, dp=dp, dp_attention=dp_attention,
                  engine=engine, profile=profile, flash=flash, cuda_graphs=cuda_graphs)
    m, hw, prec, lay, flash = dep.model, dep.hardware, dep.precision, dep.layout, dep.flash
    rows = _decode_rows(beams, samples)
    B = _as_int_array("batch", batch)
    I = _as_int_array("input_len", input_len)
    O = _as_int_array("output_len", output_len)
    longest = float(np.max(I + O))
    notes: list[str] = list(dep.notes) + [n for n in m.notes if n not in dep.notes]
    if longest > m.max_position_embeddings:
        msg = (f"input_len + output_len = {longest:g} exceeds the context of {m.name} "
               f"(max_position_embeddings = {m.max_position_embeddings})")
        if m.learned_positions:  # no position embedding exists past the table
            raise InputError(f"output_len: {msg}")
        notes.append(msg + "; rotary positions extrapolate, so cost is modelled, "
                     "but output quality past the context is not guaranteed")
    B, I, O = np.broadcast_arrays(B, I, O)
    prof = dep.engine.profile
    eff = dep.efficiency
    roof = Roofline.of(hw, prec, lay, eff)
    micro = np.minimum(lay.num_microbatches, B) if lay.pp > 1 else np.ones_like(B)
    # attention data-parallel: each group of tp ranks runs ceil(B / dp_attention) requests
    # (the busiest group sets the pace of the MoE layers that join them)
    B_rank = lay.rank_batch(B)
    b = B_rank / micro
    pipe = _Pipe(lay.pp, micro)
    if lay.pp > 1:
        # Stage boundaries cross the network once a replica outgrows one node.
        node = lay.node_size(hw)
        group = node + 1 if lay.devices_per_replica > node else 2
        act = m.hidden_size * prec.act_bytes
        pipe = _Pipe(lay.pp, micro, roof.comm_s("p2p", b * I * act, group),
                     roof.comm_s("p2p", b * act, group))
    notes += _network_notes(hw, lay)
    chunk = check_prefill_chunk(prefill_chunk)
    if chunk is not None and chunk < np.max(I):
        if lay.pp > 1:
            raise InputError("prefill_chunk: chunked prefill is modelled without pipeline "
                             "stages (pp = 1)")
        prefill, pre_ops = _chunked_prefill(m, prec, b, I, chunk, roof, pipe, flash, lay)
        act_len = np.minimum(I, chunk)
    else:
        pre_ops = build_ops(m, prec, b, I, I, flash=flash, layout=lay)
        prefill = _prefill(pre_ops, roof, pipe, prefill_fixed_s(eff, I))
        act_len = I
    notes += _kernel_coverage_notes(pre_ops, eff, prof.name)
    one = np.ones_like(B)
    droof = Roofline.of(hw, prec, lay, dep.decode_efficiency) if dep.cuda_graphs else roof
    decode = _decode_phase(m, prec, b * rows, one, droof, I, O, pipe, flash, lay, notes)
    mem = memory_footprint(m, prec, hw, B_rank, I, O, pre_ops, lay, micro_batch=b, rows=rows,
                           act_len=act_len)
    if lay.dp_attention > 1:   # per device as always; the largest batch is the replica's
        mem = replace(mem, max_batch=mem.max_batch * lay.dp_attention)
    return Analysis(m, hw, prec, flash, B, I, O, prefill, decode, mem,
                    tuple(notes) + roof.warnings, lay, prof.name, eff,
                    beams=beams, samples=samples, cuda_graphs=dep.cuda_graphs,
                    prefill_chunk=chunk, deployment=dep)
