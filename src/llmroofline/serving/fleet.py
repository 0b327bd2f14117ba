"""Fleet-scale configuration search: hundreds of serving configurations with queueing.

Axes (:class:`Space`): device kind, TP, PP, EP, attention-DP, replicas per node, max batch,
tokens per iteration, chunked prefill on/off, KV-cache dtype, CUDA graphs, MTP, and
(analytic only) disaggregated xPyD pools. SLOs are percentiles of TTFT, TPOT and e2e
(``{"ttft_p99": 2.0, "tpot_p50": 0.02}``) of a simulated open-loop (Poisson/gamma/fixed)
or closed-loop (``arrival="closed"``: the searched variable is the client count) workload.

What is searched per configuration: its **capacity per replica**, the highest load whose
percentiles meet the SLOs, by bisection over the rate (open loop) or the concurrency
(closed loop) with the discrete-event simulator (``sim.simulate``), as ``capacity`` does.
Each configuration then gives one point: x = per-user speed (1 / TPOT percentile at
capacity, tokens/s/user), y = output tokens/s per billed GPU (or per USD with prices);
the **Pareto front** is the non-dominated set; the **best** is the highest y (with a
``rate_target``: the cheapest fleet, ``ceil(target / capacity)`` replicas packed
``replicas_per_node`` to a node, billed by whole nodes).

Fast path (``fast=True``, the default):

1. **cost tables shared**: one :class:`IterationCost` per (device, TP, PP, EP, KV dtype,
   CUDA graphs), built for the largest max batch and token budget, and the KV block count
   per (table, token budget): every max batch / chunking / replicas-per-node variant
   reuses them;
2. **fluid estimate and bound** (:func:`fluid`, vectorized over a grid of rates, no
   simulation): steady state at rate r: each iteration of ``dt`` seconds carries
   ``n = r (O - 1) dt`` decode rows and ``p = r I dt`` prefill tokens, ``dt = T(n, p)``
   from the cost tables (fixed point); feasible while ``n <= max batch``, ``n + p <=``
   token budget, the KV cache holds ``n`` requests, the mean TPOT ``dt`` and the TTFT
   estimate meet the limits. The **bound** is the decode-throughput ceiling: r (O - 1) <=
   max over b of b / T_decode(b) at the shortest context, over batches whose step meets
   1.5 x the TPOT limit, times ``BOUND_SLACK`` (finite runs pass slightly above the
   steady-state capacity); a prompt that alone misses the TTFT limit makes it 0;
3. **stop early on dominated configurations**: configurations are simulated in order of
   their fluid objective; one whose bound on y is below the best confirmed y *and* whose
   fluid point is dominated (x and y both below, 10 % slack) by a simulated point is not
   simulated (``status="pruned"``);
4. **short simulations**: the others bisect with ``short_requests`` per trial inside a
   bracket around the fluid estimate (widened when both ends agree);
5. **confirmation**: the ``confirm`` best by the short runs are bisected again with
   ``requests`` per trial, bracketed by their short result; the best is chosen among them.

``fast=False`` is exhaustive bisection (every configuration, ``requests`` per trial, from
the offline saturation rate as ``capacity`` does). ``tests/test_search_fleet.py`` checks
that both return the same best configuration on a small space.

Disaggregated pools (``disagg=["1:1", "1:3"]``) are an **analytic estimate** in this
module (no simulation): x prefill replicas serve ``x / T_prefill(I)`` prompts/s, y decode
replicas ``y b / ((O - 1) T_decode(b))`` with the largest b meeting the TPOT limit and the
KV cache; capacity = the smaller; TTFT = prefill time + KV transfer over the scale-up
link. These points are marked ``analytic``.

Executors: ``local`` (a fork process pool of ``workers``, default) or ``ray`` (tasks on a
Ray cluster: ``ray.init(address=...)`` if one is running, else a local one; optional
extra ``[cluster]``). Each task is one configuration's bisection; results are the same.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from itertools import product

import numpy as np

from ..errors import InputError
from ..gridspec import parse_seconds
from ..parallel import Layout
from .config import SchedulerConfig, kv_blocks_of
from .cost import IterationCost
from .sim import simulate
from .workload import make_workload

MAX_CONFIGS = 100_000          # larger spaces need confirm=True (--yes)
BOUND_SLACK = 1.3              # finite runs pass a little above the steady-state ceiling
FLUID_SLACK = 2.0              # pruning bound: at most this x the fluid estimate (empirical:
                               # tests/test_search_fleet.py checks it on the simulated points)
KV_DTYPES = {"auto": None, "fp8": 8, "int8": 8, "fp16": 16, "bf16": 16, "fp4": 4}
METRICS = ("ttft", "tpot", "e2e")
RAY_HINT = 'ray is not installed: pip install "llmroofline[cluster]"'


# -- the space --------------------------------------------------------------------------------
@dataclass(frozen=True)
class FleetConfig:
    hardware: str
    tp: int = 1
    pp: int = 1
    ep: int = 1
    attention_dp: int = 1
    replicas_per_node: int = 1
    max_batch: int = 256
    max_tokens: int = 8192
    chunked: bool = True
    kv_dtype: str = "auto"
    cuda_graphs: bool = False
    mtp: bool = False
    disagg: str | None = None      # "xPyD" pools (analytic), None: aggregated

    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.pp * self.attention_dp

    @property
    def cost_key(self) -> tuple:
        return (self.hardware, self.tp, self.pp, self.ep, self.attention_dp, self.kv_dtype,
                self.cuda_graphs, self.mtp)

    @property
    def label(self) -> str:
        par = f"TP{self.tp}" + (f"PP{self.pp}" if self.pp > 1 else "") + (
            f"EP{self.ep}" if self.ep > 1 else "") + (
            f"ADP{self.attention_dp}" if self.attention_dp > 1 else "")
        opts = [f"{self.replicas_per_node}/node", f"b{self.max_batch}", f"t{self.max_tokens}"]
        if not self.chunked:
            opts.append("nochunk")
        if self.kv_dtype != "auto":
            opts.append(f"kv-{self.kv_dtype}")
        if self.cuda_graphs:
            opts.append("graphs")
        if self.mtp:
            opts.append("mtp")
        if self.disagg:
            opts.append(f"disagg {self.disagg}")
        return f"{par} {self.hardware} " + " ".join(opts)


def _ints(name, values) -> tuple[int, ...]:
    vals = tuple(values) if isinstance(values, (list, tuple, range)) else (values,)
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InputError(f"{name}: must be integers >= 1, got {v!r}")
    if not vals:
        raise InputError(f"{name}: give at least one value")
    return tuple(sorted({int(v) for v in vals}))


def _bools(name, values) -> tuple[bool, ...]:
    vals = tuple(values) if isinstance(values, (list, tuple)) else (values,)
    out = []
    for v in vals:
        if isinstance(v, str):
            s = v.strip().lower()
            if s not in ("on", "off", "true", "false", "yes", "no", "1", "0"):
                raise InputError(f"{name}: expected on/off, got {v!r}")
            v = s in ("on", "true", "yes", "1")
        out.append(bool(v))
    if not out:
        raise InputError(f"{name}: give at least one value")
    return tuple(sorted(set(out)))


@dataclass(frozen=True)
class Space:
    """Lists of values per axis; the configurations are their product."""
    hardware: tuple = ("h100-sxm",)
    tp: tuple = (1, 2, 4, 8)
    pp: tuple = (1,)
    ep: tuple = (1,)
    attention_dp: tuple = (1,)
    replicas_per_node: tuple | None = None   # None: as many as fit on a node
    max_batch: tuple = (64, 128, 256)
    max_tokens: tuple = (2048, 8192)
    chunked: tuple = (True,)
    kv_dtype: tuple = ("auto",)
    cuda_graphs: tuple = (False,)
    mtp: tuple = (False,)
    disagg: tuple = ()                       # xPyD ratios "x:y" (analytic)

    def __post_init__(self) -> None:
        hw = tuple(str(h) for h in ((self.hardware,) if isinstance(self.hardware, str)
                                    else self.hardware))
        if not hw:
            raise InputError("hardware: give at least one device")
        object.__setattr__(self, "hardware", hw)
        for f in ("tp", "pp", "ep", "attention_dp", "max_batch", "max_tokens"):
            object.__setattr__(self, f, _ints(f, getattr(self, f)))
        if self.replicas_per_node is not None:
            object.__setattr__(self, "replicas_per_node",
                               _ints("replicas_per_node", self.replicas_per_node))
        for f in ("chunked", "cuda_graphs", "mtp"):
            object.__setattr__(self, f, _bools(f, getattr(self, f)))
        kv = tuple(str(k).lower() for k in ((self.kv_dtype,) if isinstance(self.kv_dtype, str)
                                            else self.kv_dtype))
        for k in kv:
            if k not in KV_DTYPES:
                raise InputError(f"kv_dtype: must be one of {', '.join(KV_DTYPES)}, got {k!r}")
        object.__setattr__(self, "kv_dtype", kv or ("auto",))
        dis = tuple(self.disagg) if not isinstance(self.disagg, str) else (self.disagg,)
        for d in dis:
            _parse_ratio(d)
        object.__setattr__(self, "disagg", dis)

    @property
    def size(self) -> int:
        rpn = len(self.replicas_per_node) if self.replicas_per_node else 1
        agg = (len(self.hardware) * len(self.tp) * len(self.pp) * len(self.ep)
               * len(self.attention_dp) * rpn * len(self.max_batch) * len(self.max_tokens)
               * len(self.chunked) * len(self.kv_dtype) * len(self.cuda_graphs) * len(self.mtp))
        dis = (len(self.hardware) * len(self.tp) * len(self.max_batch) * len(self.kv_dtype)
               * len(self.disagg))
        return agg + dis

    def configs(self, node_size) -> list[FleetConfig]:
        out = []
        for hw, tp, pp, ep, adp, mb, mt, ch, kv, cg, mtp in product(
                self.hardware, self.tp, self.pp, self.ep, self.attention_dp, self.max_batch,
                self.max_tokens, self.chunked, self.kv_dtype, self.cuda_graphs, self.mtp):
            g = tp * pp * adp
            rpns = self.replicas_per_node or (max(1, node_size(hw) // g),)
            for rpn in rpns:
                out.append(FleetConfig(hw, tp, pp, ep, adp, rpn, mb, mt, ch, kv, cg, mtp))
        for hw, tp, mb, kv, d in product(self.hardware, self.tp, self.max_batch, self.kv_dtype,
                                         self.disagg):
            x, y = _parse_ratio(d)
            out.append(FleetConfig(hw, tp, 1, 1, 1, max(1, node_size(hw) // tp), mb,
                                   max(self.max_tokens), True, kv, False, False, f"{x}P{y}D"))
        return out


def _parse_ratio(text) -> tuple[int, int]:
    s = str(text).strip().upper().replace("P", ":").replace("D", "")
    parts = [p for p in s.split(":") if p]
    try:
        x, y = (int(p) for p in parts)
    except ValueError:
        raise InputError(f"disagg: expected x:y or xPyD (prefill:decode replicas), got {text!r}")
    if x < 1 or y < 1:
        raise InputError(f"disagg: both pools need >= 1 replica, got {text!r}")
    return x, y


def parse_slo(slo) -> dict[str, float]:
    """``{"ttft_p99": 2.0, ...}`` or ``"ttft_p99=2s,tpot_p50=20ms"`` -> {metric_pNN: s}."""
    if isinstance(slo, str):
        items = {}
        for part in slo.split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise InputError(f"slo: expected metric_pNN=seconds (ttft_p99=2s), got {part!r}")
            k, v = part.split("=", 1)
            items[k.strip().lower()] = parse_seconds(f"slo {k.strip()}", v)
        slo = items
    out = {}
    for k, v in dict(slo or {}).items():
        m, _, p = str(k).lower().partition("_p")
        try:
            pct = float(p)
        except ValueError:
            pct = -1
        if m not in METRICS or not 0 < pct <= 100:
            raise InputError(f"slo: {k!r}: expected ttft_pNN, tpot_pNN or e2e_pNN with NN in "
                             "(0, 100] (e.g. ttft_p99, tpot_p50, e2e_p90)")
        v = float(v)
        if not (np.isfinite(v) and v > 0):
            raise InputError(f"slo: {k}: must be a positive number of seconds, got {v!r}")
        out[f"{m}_p{pct:g}"] = v
    if not out:
        raise InputError("slo: give at least one limit (ttft_p99=2s, tpot_p99=30ms, e2e_p90=60s)")
    return out


# -- results ----------------------------------------------------------------------------------
@dataclass
class FleetPoint:
    config: FleetConfig
    status: str = "pending"   # simulated, confirmed, pruned, infeasible, refused, analytic
    error: str | None = None
    bound: float = 0.0        # upper bound on the capacity per replica (requests/s)
    ceiling: float = 0.0      # the decode-throughput ceiling alone (requests/s; caps trials)
    fluid: float = 0.0        # fluid estimate (requests/s)
    rate: float = 0.0         # capacity per replica (requests/s) from the simulations
    concurrency: int | None = None      # closed loop: clients per replica at capacity
    metrics: dict = field(default_factory=dict)   # percentiles at capacity
    trials: int = 0
    requests: int = 0         # requests per trial of the rate reported
    usd_per_gpu_h: float | None = None
    per_gpu: float = 0.0      # output tokens/s per billed GPU at capacity
    per_usd: float | None = None   # output tokens per USD
    per_user: float = 0.0     # tokens/s/user = 1 / TPOT percentile at capacity
    replicas: int | None = None
    nodes: int | None = None
    gpus: int | None = None
    cost_usd_h: float | None = None
    pareto: bool = False
    seconds: float = 0.0
    short_rate: float = 0.0      # fast path: capacity from the short trials
    same_as: str | None = None   # shares the simulations of this configuration (identical)

    @property
    def label(self) -> str:
        return self.config.label

    def to_dict(self) -> dict:
        d = asdict(self)
        d["label"] = self.label
        return d


@dataclass
class FleetSearch:
    points: list[FleetPoint]
    best: FleetPoint | None
    slo: dict
    objective: str
    rate_target: float | None
    stats: dict
    notes: list[str] = field(default_factory=list)
    isl: float = 0.0            # mean prompt / output lengths of the workload (tokens)
    osl: float = 0.0
    closed: bool = False
    deployments: dict = field(default_factory=dict, repr=False)   # label -> Deployment
    setup: dict = field(default_factory=dict, repr=False)         # the user's precision keys
    speculative: dict | None = None   # SpeculativeCost.of keywords of the MTP axis

    @property
    def front(self) -> list[FleetPoint]:
        return sorted((p for p in self.points if p.pareto), key=lambda p: -p.per_user)

    def to_dict(self) -> dict:
        return {"slo": self.slo, "objective": self.objective, "rate_target": self.rate_target,
                "best": self.best.to_dict() if self.best else None,
                "pareto_front": [p.label for p in self.front], "stats": self.stats,
                "notes": self.notes, "points": [p.to_dict() for p in self.points]}


# -- the model of one configuration ------------------------------------------------------------
_CACHE: dict = {}     # (model, engine kwargs, cost key, max_tokens, max_batch) -> IterationCost
_BLOCKS: dict = {}


def _cost(model, engine: dict, cfg: FleetConfig, max_tokens: int, max_batch: int,
          spec: dict | None = None):
    """The (shared) IterationCost of ``cfg``; with ``cfg.mtp`` the target's wrapped in a
    :class:`~.speculative.SpeculativeCost` of ``spec`` (``SpeculativeCost.of`` keywords)."""
    key = (model, tuple(sorted(engine.items())), cfg.cost_key, max_tokens, max_batch)
    if key in _CACHE:
        return _CACHE[key]
    if cfg.mtp:
        base = _cost(model, engine, replace(cfg, mtp=False), max_tokens, max_batch)
        if not isinstance(base, InputError):
            from .speculative import SpeculativeCost
            try:
                base = SpeculativeCost.of(base, **(spec or {}))
            except InputError as e:
                base = e
        _CACHE[key] = base
        return base
    if key not in _CACHE:
        kw = dict(engine)
        base = kw.pop("layout", None) or Layout()
        kv = KV_DTYPES[cfg.kv_dtype]
        if kv is not None:
            kw["kvbits"] = kv
        try:
            lay = replace(base, tp=cfg.tp, pp=cfg.pp, ep=cfg.ep, dp_attention=cfg.attention_dp)
            c = IterationCost.of(model, cfg.hardware, layout=lay, max_tokens=max_tokens,
                                 max_batch=max_batch, cuda_graphs=cfg.cuda_graphs, **kw)
            # a KV dtype equal to the resolved default (FP8 weights with FP8 KV, say) gives
            # the same deployment: share its table, so its simulations are shared too
            canon = (model, tuple(sorted(engine.items())), repr(c.deployment), max_tokens,
                     max_batch)
            c = _CACHE.setdefault(canon, c)
        except InputError as e:
            c = e
        _CACHE[key] = c
    return _CACHE[key]


def _sched(base: SchedulerConfig, cfg: FleetConfig, cost) -> SchedulerConfig:
    s = replace(base, max_batch=cfg.max_batch, max_tokens=cfg.max_tokens, chunked=cfg.chunked,
                kv_blocks=None)
    key = (id(cost), s.max_tokens, s.kv_fraction, s.runtime_gb, s.kv_rule, s.kv_capacity,
           s.block_size)
    if key not in _BLOCKS:
        _BLOCKS[key] = kv_blocks_of(cost, s)
    b = _BLOCKS[key]
    return replace(s, kv_blocks=b) if b >= 1 else s


def refusal(cfg: FleetConfig, model_spec, engine=None, draft=None) -> str | None:
    """One line when an axis value does not apply (else None): attention-DP needs a
    mixture-of-experts model and an engine whose ``[parallel] attention_dp`` runs it on
    one (``moe`` or ``any``); MTP needs the model's own MTP modules or a ``draft`` model."""
    if cfg.attention_dp > 1:
        if not model_spec.is_moe:
            return (f"attention-DP: {model_spec.name} is dense; attention data-parallel groups "
                    "apply to mixture-of-experts models only (use replicas per node)")
        if engine is not None and engine.attention_dp == "none":
            return (f"attention-DP: engine {engine.name} has no attention data-parallel mode "
                    "(engines with one: trtllm-1, sglang, vllm-v1)")
    if cfg.mtp and not getattr(model_spec, "mtp_layers", 0) and draft is None:
        return (f"mtp: {model_spec.name} has no multi-token-prediction modules; give a draft "
                "model (--draft) to search speculative decoding")
    return None


def speculative_kw(model_spec, draft=None, draft_k: int = 2, accept: float = 0.7,
                   draft_tp: int | None = None) -> dict:
    """``SpeculativeCost.of`` keywords of the MTP axis: the model's own MTP modules
    (``draft_k`` draft tokens per round) when it has them and no ``draft`` is given, else
    the ``draft`` model."""
    from ..decoding import check_accept, check_draft_k
    k, a = check_draft_k(draft_k), check_accept(accept)
    if draft is None and getattr(model_spec, "mtp_layers", 0):
        return {"mtp": k, "accept": a}
    return {"draft": draft, "draft_k": k, "accept": a, "draft_tp": draft_tp}


def fluid(cost: IterationCost, sched: SchedulerConfig, isl: float, osl: float, slo: dict,
          kv_tokens: int, grid: int = 48) -> tuple[float, float, float]:
    """(bound, fluid estimate, per-user speed bound) in requests/s and tokens/s (see the
    module docstring). Vectorized over a geometric grid of rates, refined once."""
    B, M = sched.max_batch, sched.max_tokens
    I, O = max(float(isl), 1.0), max(float(osl), 1.0)
    F1 = cost.feature_sums(np.ones(1), np.array([I + 1.0]))          # one decode row, short
    Fm = cost.feature_sums(np.ones(1), np.array([I + O / 2]))        # one decode row, mean
    Fp = cost.feature_sums(np.array([I]), np.array([I]))             # one whole prompt
    step = float(sched.step_cpu_s)
    b_kv = max(0, min(B, int(kv_tokens // (I + 1))))
    tpot_lim = min([v for k, v in slo.items() if k.startswith("tpot")], default=math.inf)
    ttft_lim = min([v for k, v in slo.items() if k.startswith("ttft")], default=math.inf)
    e2e_lim = min([v for k, v in slo.items() if k.startswith("e2e")], default=math.inf)
    # a prompt alone, in chunks of M tokens (the whole prompt when not chunked)
    chunks = max(1, math.ceil(I / M)) if sched.chunked else 1
    if not sched.chunked and I > M:
        return 0.0, 0.0, 0.0
    alone = chunks * cost.time_of_sums(min(I, M), 1, Fp / chunks, True) + step \
        + float(sched.request_fixed_s)
    def dec_s(k):   # one pure-decode iteration of k rows at the shortest context
        if hasattr(cost, "tau"):   # speculative: rows priced one by one (windowed models)
            return cost.time(np.ones(k), np.full(k, I + 1.0), prefill=False)
        return cost.time_of_sums(k, k, F1 * k, False)

    dec1 = dec_s(1) + step
    if b_kv < 1 or alone > ttft_lim or dec1 > tpot_lim or alone + (O - 1) * dec1 > e2e_lim:
        return 0.0, 0.0, 1.0 / dec1 if dec1 > 0 else 0.0
    tdec = np.array([dec_s(int(k)) for k in np.unique(np.geomspace(1, b_kv, 24).astype(int))]) \
        + step
    bs = np.unique(np.geomspace(1, b_kv, 24).astype(int))
    good = tdec <= 1.5 * tpot_lim
    dec_tok_s = float(np.max(bs[good] / tdec[good])) if good.any() else 0.0
    pre_tok_s = M / (cost.token_s(M) + float(cost.attention_s(Fp * (M / I))))
    ub = min(dec_tok_s / max(O - 1, 1.0), pre_tok_s / I) * BOUND_SLACK if O > 1 else \
        pre_tok_s / I * BOUND_SLACK
    tok = np.asarray(cost.token_table)
    row = np.asarray(cost.row_table)
    pre_oh = cost._extra.get("raw_step_s", cost.step_overhead_s) + cost.prefill_overhead_s

    def feasible(rates):
        r = np.asarray(rates, float)
        dt = np.full(r.shape, dec1)
        for _ in range(40):
            n = r * (O - 1) * dt
            p = r * I * dt
            N = np.clip(np.rint(n + p), 1, len(tok) - 1).astype(int)
            R = np.clip(np.rint(n + np.minimum(p, 1.0)), 1, len(row) - 1).astype(int)
            att = cost.attention_s(np.outer(n, Fm) + np.outer(p / I, Fp))
            new = tok[N] + row[R] + att + step + np.where(p > 0, np.minimum(p, 1.0) * pre_oh,
                                                          cost.step_overhead_s)
            if np.allclose(new, dt, rtol=1e-6):
                dt = new
                break
            dt = new
        n = r * (O - 1) * dt
        p = r * I * dt
        conv = np.isclose(dt, np.asarray(new), rtol=1e-3) & np.isfinite(dt)
        ttft = alone + np.maximum(0, I / np.maximum(M - n, 1) - 1) * dt
        ok = (conv & (n <= B) & (n + p <= M) & (n * (I + O / 2) <= kv_tokens)
              & (dt <= tpot_lim) & (ttft <= ttft_lim) & (ttft + (O - 1) * dt <= e2e_lim))
        return ok

    hi = ub / BOUND_SLACK
    rates = np.geomspace(hi * 1e-3, hi, grid)
    ok = feasible(rates)
    if not ok.any():
        return ub, 0.0, 1.0 / dec1
    k = int(np.max(np.nonzero(ok)[0]))
    lo_r = rates[k]
    hi_r = rates[k + 1] if k + 1 < grid else hi
    fine = np.linspace(lo_r, hi_r, 16)
    okf = feasible(fine)
    est = float(fine[np.max(np.nonzero(okf)[0])]) if okf.any() else float(lo_r)
    return ub, est, 1.0 / dec1


# -- one configuration's bisection (a task) ----------------------------------------------------
def _pct(x, q):
    x = np.asarray(x, float)
    x = x[~np.isnan(x)]
    return float(np.percentile(x, q)) if x.size else 0.0


def _trial(cost, sched, wl_kw, slo, x, closed: bool, requests: int, pools=None):
    """Simulate at load ``x`` (rate or clients): (meets, percentiles, requests/s).
    ``pools`` = (x, y): on x prefill and y decode workers of this cost and scheduler
    (``disagg.simulate_disagg``), the load then being the group's."""
    if closed:
        wl = make_workload(requests, concurrency=int(x), arrival="closed", **wl_kw)
    else:
        wl = make_workload(requests, rate=float(x), **wl_kw)
    if pools is None:
        r = simulate(workload=wl, config=sched, cost=cost)
    else:
        from .disagg import Pool, simulate_disagg
        r = simulate_disagg(workload=wl, prefill=Pool(cost.layout, pools[0]),
                            decode=Pool(cost.layout, pools[1]), config=sched,
                            prefill_cost=cost, decode_cost=cost)
    keep = r.measured if closed and r.measured is not None and r.measured.any() else \
        np.ones(r.arrival_s.size, bool)
    vals = {"ttft": r.ttft_s[keep], "tpot": r.tpot_s[keep], "e2e": r.e2e_s[keep]}
    m = {k: _pct(vals[k.split("_p")[0]], float(k.split("_p")[1])) for k in slo}
    for k in ("tpot_p50", "tpot_p99", "ttft_p99"):
        m.setdefault(k, _pct(vals[k.split("_p")[0]], float(k.split("_p")[1])))
    e2e = vals["e2e"][~np.isnan(vals["e2e"])]
    m["e2e_mean"] = float(e2e.mean()) if e2e.size else 0.0   # Little's law (launch files)
    ok = all(m[k] <= v for k, v in slo.items())
    if closed:
        fin = r.finish_s[keep]
        arr = r.arrival_s[keep]
        span = float(fin.max() - arr.min()) if fin.size else math.inf
        thr = fin.size / span if span > 0 else 0.0
    else:
        thr = float(x)
    return ok, m, thr


def bisect(cost, sched, wl_kw, slo, closed, requests, lo=None, hi=None, rel_tol=0.05,
           max_trials=14, cap=None, pools=None):
    """Highest passing load on a fixed grid: rates ``(1 + rel_tol)^k`` (open loop) or
    integer client counts (closed loop), so that any bracket lands on the same answer
    (the fast path's confirmation equals exhaustive bisection when passing is monotone).
    ``lo``/``hi``: a bracket guess (checked, widened); none: start at the offline
    saturation rate (exhaustive mode, as ``capacity``). ``cap`` (open loop): rates above it
    fail unsimulated: the decode-throughput ceiling, which a short run whose requests all
    fit in one batch would pass at any rate. Returns (requests/s, load, percentiles,
    trials)."""
    trials = 0
    memo = {}
    step = math.log1p(rel_tol)

    def load(k):
        return int(k) if closed else math.exp(k * step)

    def run(k):
        nonlocal trials
        if cap and not closed and load(k) > cap:
            return False, {}, 0.0
        if k not in memo:
            trials += 1
            memo[k] = _trial(cost, sched, wl_kw, slo, load(k), closed, requests, pools)
        return memo[k]

    def idx(x, up):
        if closed:
            return max(1, int(math.ceil(x) if up else math.floor(x)))
        v = math.log(max(x, 1e-9)) / step
        return int(math.ceil(v - 1e-9) if up else math.floor(v + 1e-9))

    if lo is None:
        base_kw = {k: v for k, v in wl_kw.items() if k not in ("arrival", "burstiness")}
        wl = make_workload(requests, arrival="offline", **base_kw)
        sat = simulate(workload=wl, config=sched, cost=cost)
        trials += 1
        if closed:
            conc = float(np.mean(sat.iter_rows)) if sat.iter_rows.size else 1.0
            lo, hi = max(1.0, conc / 2), max(2.0, conc)
        else:
            sat_rate = requests / sat.makespan_s
            lo, hi = sat_rate / 2, sat_rate
    kl, kh = idx(lo, False), max(idx(hi, True), idx(lo, False) + 1)
    floor_k = 1 if closed else idx(1e-6, False)
    # widen down until kl passes, up until kh fails
    while not run(kl)[0]:
        kh, kl = kl, (kl // 2 if closed else kl - max(1, int(round(math.log(2) / step))))
        if kl < floor_k or trials >= 3 * max_trials:
            return 0.0, None, {}, trials
    while run(kh)[0]:
        gap = kh - kl
        kl, kh = kh, kh + max(1, gap, 1 if closed else int(round(math.log(1.5) / step)))
        if trials >= 3 * max_trials:
            break
    while kh - kl > 1 and trials < 3 * max_trials:
        mid = (kl + kh) // 2
        if run(mid)[0]:
            kl = mid
        else:
            kh = mid
    ok, m, thr = run(kl)
    return thr, load(kl), m, trials


# Task state: set in the parent before the local pool forks (inherited); Ray tasks rebuild.
_CTX: dict = {}


def run_task(task: dict, ctx: dict | None = None) -> dict:
    """One configuration's bisection: ``task`` = config index, bracket, requests."""
    c = ctx or _CTX
    t0 = time.perf_counter()
    cfg: FleetConfig = task["config"]
    cost = _cost(c["model"], c["engine"], cfg, c["max_tokens"], c["max_batch"], c.get("spec"))
    sched = _sched(c["sched"], cfg, cost)
    # disaggregated: the bisection is over the xPyD group's load; results per replica
    pools = _parse_ratio(cfg.disagg) if cfg.disagg else None
    g = 1 if pools is None or c["closed"] else sum(pools)
    lo, hi, cap = (None if v is None else v * g
                   for v in (task.get("lo"), task.get("hi"), task.get("cap")))
    rate, load, m, trials = bisect(cost, sched, c["wl_kw"], c["slo"], c["closed"],
                                   task["requests"], lo, hi, task.get("rel_tol", c["rel_tol"]),
                                   cap=cap, pools=pools)
    rate = rate / (sum(pools) if pools else 1)
    return {"i": task["i"], "rate": rate, "load": load, "metrics": m, "trials": trials,
            "requests": task["requests"], "seconds": time.perf_counter() - t0}


def _ray_remote():
    try:
        import ray
    except ImportError:
        raise InputError(RAY_HINT) from None
    return ray


class Executor:
    """Runs tasks locally (fork pool) or on Ray; results in task order."""

    def __init__(self, kind: str = "local", workers: int | None = None):
        if kind not in ("local", "ray"):
            raise InputError(f"executor: must be local or ray, got {kind!r}")
        self.kind, self.workers = kind, workers or (os.cpu_count() or 1)
        self._pool = None
        self._ray = None
        self._fn = None
        if kind == "ray":
            self._ray = _ray_remote()

    def map(self, tasks: list[dict], ctx: dict) -> list[dict]:
        if not tasks:
            return []
        if self.kind == "ray":
            ray = self._ray
            if not ray.is_initialized():
                try:
                    ray.init(address="auto", ignore_reinit_error=True, log_to_driver=False)
                except Exception:
                    ray.init(num_cpus=self.workers, ignore_reinit_error=True,
                             log_to_driver=False, include_dashboard=False)
            if self._fn is None:
                self._fn = ray.remote(_ray_task)
                self._ctx_ref = ray.put({k: v for k, v in ctx.items()})
            return ray.get([self._fn.remote(t, self._ctx_ref) for t in tasks])
        if self.workers > 1 and len(tasks) > 1:
            import multiprocessing as mp
            try:
                mctx = mp.get_context("fork")
            except ValueError:
                mctx = None
            if mctx is not None:
                if self._pool is None:
                    self._pool = mctx.Pool(self.workers)
                return self._pool.map(run_task, tasks, chunksize=1)
        return [run_task(t) for t in tasks]

    def close(self):
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None


def _ray_task(task, ctx):
    return run_task(task, ctx)


# -- the search --------------------------------------------------------------------------------
def _node_size(hw: str) -> int:
    from ..specs.hardware import load_hardware
    if hw not in _NODE:
        try:
            _NODE[hw] = int(load_hardware(hw).nvlink_domain)
        except InputError:
            _NODE[hw] = 8
    return _NODE[hw]


_NODE: dict = {}


def fleet_search(model="meta-llama/Llama-3.1-8B", space: Space | None = None, *, slo=None,
                 input_dist="lognormal:1024,0.6", output_dist="lognormal:256,0.8",
                 arrival: str = "poisson", burstiness: float = 1.0, seed: int = 0,
                 requests: int = 1000, short_requests: int = 300, rate_target: float | None = None,
                 prices: dict | str | None = None, fast: bool = True, confirm: int = 3,
                 rel_tol: float = 0.05, executor: str = "local", workers: int | None = None,
                 yes: bool = False, config: SchedulerConfig | None = None, draft=None,
                 draft_k: int = 2, accept: float = 0.7, draft_tp: int | None = None,
                 **engine) -> FleetSearch:
    """Search ``space`` (see the module docstring). ``engine``: quant, wbits, kvbits, layout
    (its tp/pp/ep/dp_attention are replaced), engine, profile, flash. ``yes``: allow a space
    over ``MAX_CONFIGS`` or more workers than cores. The MTP axis (``space.mtp``) runs
    :func:`speculative_kw`'s speculative decoding: the model's MTP modules, or ``draft``
    (``draft_k`` tokens per round, acceptance ``accept`` per token, on ``draft_tp``
    devices)."""
    t_wall, t_cpu = time.perf_counter(), _cpu()
    space = space or Space()
    slo = parse_slo(slo)
    if space.size > MAX_CONFIGS and not yes:
        raise InputError(f"search space: {space.size:,} configurations is over the limit of "
                         f"{MAX_CONFIGS:,}; narrow the lists or pass --yes")
    cores = os.cpu_count() or 1
    if workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise InputError(f"workers: must be an integer >= 1, got {workers!r}")
        if workers > cores and not yes and executor == "local":
            raise InputError(f"workers: {workers} is more than the {cores} cores here; pass "
                             f"--yes to oversubscribe")
    if arrival not in ("poisson", "gamma", "fixed", "closed"):
        raise InputError(f"arrival: poisson, gamma, fixed (open loop) or closed, got {arrival!r}")
    for name, v in (("requests", requests), ("short_requests", short_requests)):
        if isinstance(v, bool) or not isinstance(v, int) or not 20 <= v <= 1_000_000:
            raise InputError(f"{name}: must be an integer in [20, 1000000], got {v!r}")
    if rate_target is not None and not (np.isfinite(rate_target) and rate_target > 0):
        raise InputError(f"rate_target: must be a positive number of requests/s, got {rate_target!r}")
    if isinstance(prices, str) or hasattr(prices, "__fspath__"):
        from ..rank import load_prices
        prices = load_prices(prices)
    closed = arrival == "closed"
    if closed and rate_target is not None:
        raise InputError("rate_target: a closed-loop search sizes clients, not a rate; use an "
                         "open-loop arrival (poisson) with --rate-target")
    from ..specs.catalog import load_model
    from ..specs.engine import compose_engine
    model_spec = load_model(model)
    eng = compose_engine(engine.get("engine"), engine.get("profile"), engine.get("preset"))
    base = config or SchedulerConfig()
    spec = (speculative_kw(model_spec, draft, draft_k, accept, draft_tp)
            | {"step_cpu_s": base.step_cpu_s}) if any(space.mtp) else None
    ex = Executor(executor, workers)
    configs = space.configs(_node_size)
    mt_max, mb_max = max(space.max_tokens), max(space.max_batch)
    points = [FleetPoint(c) for c in configs]
    notes: list[str] = []
    # workload lengths (for the fluid estimate: means of a sample of the distributions)
    probe = make_workload(2000, rate=1.0, input_dist=input_dist, output_dist=output_dist, seed=seed)
    isl, osl = float(np.mean(probe.input_len)), float(np.mean(probe.output_len))
    wl_kw = dict(input_dist=input_dist, output_dist=output_dist, seed=seed)
    if not closed:
        wl_kw.update(arrival=arrival, burstiness=burstiness)
    ctx = dict(model=model, engine=engine, max_tokens=mt_max, max_batch=mb_max, sched=base,
               wl_kw=wl_kw, slo=slo, closed=closed, rel_tol=rel_tol, spec=spec)
    t_tables = time.perf_counter()
    for p in points:
        c = p.config
        why = refusal(c, model_spec, eng, draft)
        if why:
            p.status, p.error = "refused", why
            continue
        cost = _cost(model, engine, c, mt_max, mb_max, spec)
        if isinstance(cost, InputError):
            p.status, p.error = "infeasible", str(cost)
            continue
        if c.gpus_per_replica * c.replicas_per_node > _node_size(c.hardware) \
                and c.replicas_per_node > 1:
            why = (f"replicas_per_node: {c.replicas_per_node} x {c.gpus_per_replica} GPUs is "
                   f"more than a {_node_size(c.hardware)}-GPU node")
        if why:
            p.status, p.error = "refused", why
            continue
        if c.max_tokens < c.max_batch:
            p.status, p.error = "infeasible", f"max_tokens {c.max_tokens} < max_batch {c.max_batch}"
            continue
        wl_kw.setdefault("max_context", cost.model.max_position_embeddings)
        try:
            sched = _sched(base, c, cost)
        except InputError as e:
            p.status, p.error = "infeasible", str(e)
            continue
        if sched.kv_blocks is None:
            p.status, p.error = "infeasible", f"memory: no room for a KV cache on {c.hardware}"
            continue
        kv_tok = sched.kv_blocks * sched.block_size
        p.bound, p.fluid, speed = fluid(cost, sched, isl, osl, slo, kv_tok)
        # attention-DP: the fluid model is one rank's; the replica has attention_dp of them
        p.bound, p.fluid = p.bound * c.attention_dp, p.fluid * c.attention_dp
        p.ceiling = p.bound
        if p.fluid > 0 and not c.mtp:
            # (speculative decode rounds are outside the fluid step model: its estimate is
            # low by up to the tokens per round, so only the throughput bound caps them)
            p.bound = min(p.bound, FLUID_SLACK * p.fluid)
        p.per_user = speed
        usd = prices.get(cost.roof.hw.id.lower()) if prices else None
        p.usd_per_gpu_h = usd
        if c.disagg:
            _disagg(p, cost, sched, isl, osl, slo, kv_tok)
        elif p.bound <= 0:
            p.status, p.error = "infeasible", "no load meets the SLOs (a request alone misses them)"
    if prices:
        for hw in {p.config.hardware for p in points if p.usd_per_gpu_h is None
                   and p.status not in ("infeasible", "refused")}:
            notes.append(f"no price for {hw}: ranked by GPUs after the priced devices")
    ctx["wl_kw"] = wl_kw
    t_tables = time.perf_counter() - t_tables
    objective = "usd" if prices else "gpu"

    def y_of(p, rate):
        c = p.config
        node = _node_size(c.hardware)
        billed = node / c.replicas_per_node if c.replicas_per_node * c.gpus_per_replica <= node \
            else c.gpus_per_replica
        tok = rate * osl / billed
        if objective == "usd":
            return tok * 3600 / p.usd_per_gpu_h if p.usd_per_gpu_h else 0.0
        return tok

    def finish(p, r):
        p.rate, p.trials, p.requests = r["rate"], p.trials + r["trials"], r["requests"]
        p.metrics, p.seconds = r["metrics"], p.seconds + r["seconds"]
        if closed:
            p.concurrency = r["load"]
        tp_ = p.metrics.get("tpot_p50") or 0.0
        p.per_user = 1.0 / tp_ if tp_ > 0 else p.per_user
        if p.rate <= 0:
            p.status = "infeasible"
            p.error = p.error or "no load meets the SLOs"

    global _CTX
    _CTX = ctx
    live = [p for p in points if p.status == "pending"]
    memo: dict = {}
    n_sim = 0

    def skey(p, task):
        c = p.config
        return (id(_cost(model, engine, c, mt_max, mb_max, spec)), c.max_batch, c.max_tokens,
                c.chunked, c.disagg, task["requests"], task.get("lo"), task.get("hi"),
                task.get("rel_tol"))

    def dispatch(items, tasks):
        """Run the tasks of ``items``; identical simulations (same table and scheduler)
        run once and are shared (``same_as``)."""
        nonlocal n_sim
        todo, keys = [], []
        for p, t in zip(items, tasks):
            k = skey(p, t)
            keys.append(k)
            if k not in memo and all(k != kk for kk, _ in todo):
                todo.append((k, dict(t, i=len(todo))))
        for (k, _), r in zip(todo, ex.map([t for _, t in todo], ctx)):
            memo[k] = (r, None)
        n_sim += len(todo)
        for p, k in zip(items, keys):
            r, owner = memo[k]
            if owner is None:
                memo[k] = (r, p.label)
                finish(p, r)
            else:
                p.same_as = owner
                finish(p, dict(r, trials=0, seconds=0.0))

    try:
        if not fast:
            dispatch(live, [{"config": p.config, "requests": requests, "cap": p.ceiling}
                            for p in live])
            for p in live:
                p.status = "confirmed" if p.rate > 0 else p.status
        else:
            live.sort(key=lambda p: -y_of(p, p.fluid))
            done: list[FleetPoint] = []
            best_y = 0.0
            batch = max(2 * ex.workers, 4)
            k = 0
            while k < len(live):
                chunk = []
                while k < len(live) and len(chunk) < batch:
                    p = live[k]
                    k += 1
                    yb, yf = y_of(p, p.bound), y_of(p, p.fluid)
                    dominated = any(q.per_user >= 0.9 * p.per_user and y_of(q, q.rate) >= 1.1 * yf
                                    for q in done)
                    if yb < best_y and (dominated or yf <= 0):
                        p.status = "pruned"
                        continue
                    chunk.append(p)
                # centre the bracket on the fluid estimate times the median ratio of the
                # short results to it so far (the fluid model's bias on this space)
                ratios = [q.rate / q.fluid for q in done if q.fluid > 0 and q.same_as is None]
                ratio = float(np.median(ratios)) if len(ratios) >= 3 else 1.0
                tasks = []
                for p in chunk:
                    f = p.fluid * ratio if p.fluid > 0 else p.bound / BOUND_SLACK / 4
                    lo, hi = f * 0.9, f * 1.1
                    if closed:
                        lo = hi = None
                    tasks.append({"config": p.config, "requests": short_requests, "cap": p.ceiling,
                                  "lo": lo, "hi": hi, "rel_tol": max(rel_tol, 0.1)})
                dispatch(chunk, tasks)
                for p in chunk:
                    if p.rate > 0:
                        p.status = "simulated"
                        done.append(p)
                        best_y = max(best_y, y_of(p, p.rate))
            # confirm the best few (distinct simulations) with full-length trials, again
            # while an unconfirmed short result still beats the best confirmed one (short
            # runs pass above the capacity of longer ones, so they rank optimistically)
            best_c, beta = -1.0, 1.0
            for p in done:
                p.short_rate = p.rate
            for _ in range(8):
                cand = [p for p in sorted(done, key=lambda p: -y_of(p, p.rate))
                        if p.same_as is None and p.status == "simulated"
                        and y_of(p, p.rate) / beta > best_c]
                top = cand[:max(confirm, 1)]
                if not top:
                    break
                labels = {q.label for q in top}
                group = [p for p in done if p.label in labels or p.same_as in labels]
                rate0 = {p.label: p.rate for p in top}
                tasks = []
                for p in group:
                    r0 = rate0[p.same_as or p.label]
                    tasks.append({"config": p.config, "requests": requests, "cap": p.ceiling,
                                  "lo": None if closed else r0 * 0.9,
                                  "hi": None if closed else r0 * 1.1})
                for p in group:
                    p.same_as = None
                dispatch(group, tasks)
                for p in group:
                    p.status = "confirmed" if p.rate > 0 else p.status
                    if p.rate > 0:
                        best_c = max(best_c, y_of(p, p.rate))
                # how much the short runs overstate: the least seen on the confirmed ones
                seen = [p.short_rate / p.rate for p in done
                        if p.status == "confirmed" and p.rate > 0 and p.same_as is None]
                beta = max(1.0, min(seen)) if seen else 1.0
        # disaggregated pools: the analytic estimates on the front (all of them with
        # --exhaustive) are bisected with simulate_disagg, short trials first (bracketed by
        # the estimate), then full-length ones bracketed by the short result
        # (again while the front holds an analytic point: confirming one can expose another)
        for _round in range(6):
            front_now = {id(p) for p in _front([p for p in points if p.rate > 0], y_of)}
            dis = [p for p in points if p.status == "analytic"
                   and (not fast or id(p) in front_now)]
            if not dis:
                break
            _confirm_disagg(dis, dispatch, fast, closed, short_requests, requests, rel_tol, osl)
    finally:
        ex.close()
        _CTX = {}
    # fleet sizing, objective, Pareto front
    for p in points:
        if p.rate > 0:
            p.per_gpu = y_of(p, p.rate) if objective == "gpu" else \
                p.rate * osl / (_node_size(p.config.hardware) / p.config.replicas_per_node)
            p.per_usd = y_of(p, p.rate) if objective == "usd" else None
            if rate_target:
                c = p.config
                p.replicas = max(1, math.ceil(rate_target / p.rate * (1 - 1e-9)))
                p.nodes = math.ceil(p.replicas / c.replicas_per_node)
                p.gpus = p.nodes * max(_node_size(c.hardware), c.gpus_per_replica) \
                    if c.replicas_per_node > 1 else p.replicas * c.gpus_per_replica
                p.cost_usd_h = p.gpus * p.usd_per_gpu_h if p.usd_per_gpu_h else None
    ok = [p for p in points if p.rate > 0]
    front = {id(p) for p in _front(ok, y_of)}
    for p in ok:
        p.pareto = id(p) in front
    eligible = [p for p in ok if p.status in ("confirmed",)] or ok
    best = None
    if eligible:
        if rate_target:
            best = min(eligible, key=lambda p: (p.cost_usd_h if p.cost_usd_h is not None
                                                else math.inf, p.gpus, -p.per_user))
        else:
            best = max(eligible, key=lambda p: (round(y_of(p, p.rate), 9), p.per_user))
    else:
        notes.append("no configuration meets the SLOs at any load")
    counts = {s: sum(p.status == s for p in points) for s in
              ("confirmed", "simulated", "analytic", "pruned", "infeasible", "refused")}
    stats = {"configurations": len(points), "simulations": n_sim, **counts,
             "cost_tables": len({id(v) for v in _CACHE.values()}), "tables_and_bounds_s": t_tables,
             "wall_s": time.perf_counter() - t_wall, "cpu_s": _cpu() - t_cpu,
             "fast": fast, "executor": executor, "workers": ex.workers}
    stats["configs_per_cpu_s"] = len(points) / stats["cpu_s"] if stats["cpu_s"] > 0 else None
    deps = {}
    for p in points:
        if p.rate > 0:
            c = _cost(model, engine, p.config, mt_max, mb_max, spec)
            if not isinstance(c, InputError):
                deps[p.label] = c.deployment
    setup = {k: engine[k] for k in ("quant", "wbits", "abits", "kvbits") if engine.get(k) is not None}
    return FleetSearch(points, best, slo, objective, rate_target, stats, notes, isl, osl, closed,
                       deps, {"model": model, **setup}, spec)


def _confirm_disagg(dis, dispatch, fast, closed, short_requests, requests, rel_tol, osl):
    """Bisect analytic xPyD points with simulate_disagg (``run_task`` with pools): short
    trials bracketed by the estimate, then full-length ones bracketed by the short result
    (``--exhaustive``: full-length only). Sets rate, metrics and status."""
    for n_req, key in ((short_requests, "analytic"), (requests, "short")):
            if not dis or (key == "analytic" and not fast):
                continue
            tasks = []
            for p in dis:
                r0 = p.rate
                tasks.append({"config": p.config, "requests": n_req, "cap": p.ceiling,
                              "lo": None if closed else r0 * 0.9,
                              "hi": None if closed else r0 * 1.1,
                              "rel_tol": max(rel_tol, 0.1) if key == "analytic" else rel_tol})
                if closed:   # clients of the group: Little's law at the estimated rate
                    x, y = _parse_ratio(p.config.disagg)
                    e2e = p.metrics.get("ttft_p50", 0.0) + (osl - 1) * p.metrics.get(
                        "tpot_p50", 0.0)
                    tasks[-1]["lo"] = max(1.0, 0.9 * r0 * (x + y) * e2e)
                    tasks[-1]["hi"] = max(2.0, 1.1 * r0 * (x + y) * e2e)
            dispatch(dis, tasks)
            for p in dis:
                if p.rate > 0:
                    p.status = "confirmed" if key == "short" or not fast else "simulated"
                    if key == "analytic":
                        p.short_rate = p.rate
            dis = [p for p in dis if p.rate > 0]


def _front(ok: list[FleetPoint], y_of) -> list[FleetPoint]:
    """The non-dominated points: none other at least as fast per user and as productive
    (y), and better on one."""
    ys = [y_of(p, p.rate) for p in ok]
    return [p for p, yp in zip(ok, ys)
            if not any(q.per_user >= p.per_user and yq >= yp
                       and (q.per_user > p.per_user or yq > yp) for q, yq in zip(ok, ys))]


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the local pool)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _disagg(p: FleetPoint, cost, sched, isl, osl, slo, kv_tok) -> None:
    """Analytic xPyD estimate (module docstring): sets rate per group, metrics, status."""
    x, y = (int(v) for v in p.config.disagg.replace("D", "").split("P"))
    I, O = max(isl, 1.0), max(osl, 1.0)
    Fp = cost.feature_sums(np.array([I]), np.array([I]))
    M = sched.max_tokens
    per_prompt = cost.time_of_sums(min(I, M), 1, Fp, True) * max(1, math.ceil(I / M))
    bidir = cost.roof.hw.scaleup_bytes_s_bidir
    link = bidir / 2 if bidir else cost.roof.hw.scaleout_bytes_s
    xfer = I * cost.kv_bytes_per_token / max(link, 1e9)
    lim_tpot = min([v for k, v in slo.items() if k.startswith("tpot")], default=math.inf)
    lim_ttft = min([v for k, v in slo.items() if k.startswith("ttft")], default=math.inf)
    F = cost.feature_sums(np.ones(1), np.array([I + O / 2]))
    b_max = max(1, min(sched.max_batch, int(kv_tok // (I + O))))
    best, ceil_tok_s = (0.0, None), 0.0
    for b in sorted({1, 2, 4, 8, 16, 32, 64, 128, 256, 512, b_max}):
        if b > b_max:
            continue
        t = cost.time_of_sums(b, b, F * b, False) + float(sched.step_cpu_s)
        if t <= lim_tpot and b / t > best[0]:
            best = (b / t, t)
        if t <= 1.5 * lim_tpot:
            ceil_tok_s = max(ceil_tok_s, b / t)
    # the trials' cap (as the aggregated ceiling): decode rows/s of the y workers
    p.ceiling = BOUND_SLACK * y * ceil_tok_s / max(O - 1, 1.0) / (x + y)
    lam_p = x / per_prompt
    lam_d = y * best[0] / max(O - 1, 1.0)
    ttft = per_prompt + xfer + float(sched.request_fixed_s)
    if best[1] is None or ttft > lim_ttft:
        p.status, p.error = "infeasible", "analytic xPyD: misses the SLOs"
        return
    # M/D/1-style margin on the prefill pool: keep its utilization at 80 %
    rate = min(0.8 * lam_p, lam_d)
    p.rate = rate / (x + y)                     # per replica, for per-GPU comparisons
    p.metrics = {"ttft_p50": ttft, "tpot_p50": best[1]}
    p.per_user = 1.0 / best[1]
    p.status = "analytic"
    p.error = None


# -- launch files for the chosen configurations (fleet --out) --------------------------------
def chosen(s: FleetSearch) -> list[FleetPoint]:
    """The configurations ``fleet --out`` writes: the Pareto front, fastest per user first,
    then the best when it is not on the front (with ``rate_target`` the cheapest fleet
    need not be)."""
    out = list(s.front)
    if s.best is not None and all(p is not s.best for p in out):
        out.append(s.best)
    return out


def launch_workload(s: FleetSearch, p: FleetPoint):
    """The closed-loop benchmark of point ``p`` (``launch.Workload``): its clients per
    replica at capacity (closed loop), or by Little's law ``ceil(rate x mean e2e)`` (open
    loop: the mean number of requests in flight at the capacity rate); fixed lengths at the
    workload's mean ISL/OSL (rounded); the requests of the trial that gave the rate, at
    least 10 per client (``launch``'s default: a steady state needs several rounds)."""
    from ..launch import Workload as LaunchWorkload
    if s.closed and p.concurrency:
        conc = int(p.concurrency)
    else:
        conc = max(1, math.ceil(p.rate * p.metrics.get("e2e_mean", 0.0) * (1 - 1e-9)))
    return LaunchWorkload(concurrency=conc, isl=max(1, round(s.isl)), osl=max(1, round(s.osl)),
                          requests=max(int(p.requests), 10 * conc))


def write_launch(s: FleetSearch, folder, *, host: str = "127.0.0.1",
                 port: int | None = None) -> dict:
    """One folder per chosen configuration (:func:`chosen`) with ``launch.write_files``'s
    serve.sh, bench.sh, aiperf.sh, YAML and setup.toml for the engine it was simulated with,
    and ``index.json`` listing them with their predicted numbers. Disaggregated (analytic)
    points get no folder (``launch`` writes one server), only an index entry saying so."""
    from pathlib import Path
    from .. import jsonout
    from ..launch import launch_commands, write_files
    from ..safeio import atomic_write_text
    root = Path(folder)
    if root.exists() and not root.is_dir():
        raise InputError(f"out: {folder} exists and is not a folder")
    rows = []
    for n, p in enumerate(chosen(s), 1):
        c = p.config
        row = {"configuration": p.label, "status": p.status, "pareto": p.pareto,
               "best": p is s.best, "engine": None, "folder": None,
               "requests_s_per_replica": p.rate, "output_tok_s_per_gpu": p.per_gpu,
               "output_tok_per_usd": p.per_usd, "tok_s_per_user": p.per_user,
               "gpus_per_replica": c.gpus_per_replica, "replicas": p.replicas, "gpus": p.gpus,
               "cost_usd_h": p.cost_usd_h, "metrics_s": dict(p.metrics)}
        d = s.deployments.get(p.label)
        if c.disagg or d is None:
            row["note"] = ("disaggregated pools: no launch files (launch writes one server); "
                           "run the xPyD pools by hand") if c.disagg else "no deployment"
            rows.append(row)
            continue
        w = launch_workload(s, p)
        given = dict(s.setup)
        given["hardware"] = c.hardware
        kv = KV_DTYPES[c.kv_dtype]
        if kv is not None:
            given["kvbits"] = kv
        plan = launch_commands(d, w, max_batch=c.max_batch, max_tokens=c.max_tokens,
                               chunked=c.chunked, host=host, port=port, setup=given,
                               speculative=s.speculative if c.mtp else None)
        name = f"{n:02d}-" + "".join(ch if ch.isalnum() or ch in "-." else "_"
                                     for ch in p.label.replace(" ", "_").replace("/", "per"))
        write_files(plan, root / name)
        row.update(engine=d.engine.name, folder=name, launcher=plan["launcher"],
                   benchmark={"concurrency": w.concurrency, "isl": w.isl, "osl": w.osl,
                              "requests": w.requests},
                   notes=plan["notes"])
        rows.append(row)
    index = {"slo_s": s.slo, "objective": s.objective, "rate_target": s.rate_target,
             "workload_mean_isl": s.isl, "workload_mean_osl": s.osl,
             "closed_loop": s.closed, "configurations": rows}
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "index.json", jsonout.dumps(index) + "\n", "out")
    return index
