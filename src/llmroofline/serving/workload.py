"""Requests to serve: arrival process and prompt/output length distributions.

Arrivals (``arrival``):
- ``poisson``: exponential gaps of mean 1 / rate;
- ``gamma``: gamma-distributed gaps of mean 1 / rate and shape ``burstiness`` (vLLM's
  benchmark convention: 1 = Poisson, < 1 burstier, > 1 more regular);
- ``fixed``: one request every 1 / rate seconds;
- ``offline``: every request at t = 0 (a max-throughput benchmark);
- ``closed``: ``concurrency`` clients, each sending its next request the moment its
  previous one finishes (arrival times are decided during the simulation), as benchmark
  clients do (vLLM ``--max-concurrency``, genai-perf/aiperf ``--concurrency``). The clients
  start staggered: client k sends its first request at ``k x ramp_s / concurrency``.
  ``ramp_s`` None (default) is one request cycle estimated at this concurrency
  (:func:`closed_loop_ramp_s`), so the clients start where the desynchronized steady state
  puts them, as real clients drift apart within a few requests (jitter in tokenization,
  HTTP, scheduling); ``ramp_s = 0`` starts them all at t = 0 (synchronized waves with
  equal lengths). The first ``warmup`` requests of each client (the first
  ``warmup x concurrency`` requests) and those finishing after the last request is sent
  (the drain, at falling concurrency) are outside the measured window
  (``SimResult.measured``);
- a trace CSV with columns ``arrival_s,input_len,output_len`` (lengths then come from it).

Lengths (``--input-dist`` / ``--output-dist``): ``N`` or ``fixed:N``; ``uniform:a,b``
(integers, both ends included); ``range:N,r`` (vLLM's random dataset with
``--random-range-ratio r``: uniform integers in [int(N x (1 - r)), int(N x (1 + r))],
r in [0, 1));  ``lognormal:mean,sigma`` (``mean`` is the mean of the
distribution, ``sigma`` the standard deviation of the underlying normal, so
``mu = ln(mean) - sigma^2 / 2``); ``empirical:FILE.csv[:column]`` (draws with replacement
from a CSV column; default column ``input_len`` / ``output_len``). Draws are rounded to
integers >= 1 and clipped to the model's context (prompt first); the number of clipped
requests is reported.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError

ARRIVALS = ("poisson", "gamma", "fixed", "offline", "closed")


@dataclass(frozen=True)
class Workload:
    """``n`` requests: arrival times (NaN for closed-loop: decided by the simulation),
    prompt and output lengths (integers >= 1)."""

    arrival_s: np.ndarray
    input_len: np.ndarray
    output_len: np.ndarray
    arrival: str = "poisson"
    rate: float | None = None
    concurrency: int | None = None
    notes: tuple[str, ...] = field(default=())
    ramp_s: float | None = None   # closed loop: clients start over this span (None: auto)
    warmup: int = 0               # closed loop: requests per client outside the measurement
    think_s: np.ndarray | None = None  # closed loop: per request, seconds between the
                                  # previous finish (or the client's start) and its send

    @property
    def n(self) -> int:
        return int(self.input_len.size)


MAX_LENGTH_TOKENS = 10_000_000   # any length or distribution parameter (a finite prompt)


def _num(field_name: str, text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise InputError(f"{field_name}: '{text}' is not a number") from None
    if not -MAX_LENGTH_TOKENS <= v <= MAX_LENGTH_TOKENS:   # also NaN and infinities
        raise InputError(f"{field_name}: '{text.strip()}' must be a finite number in "
                         f"[-{MAX_LENGTH_TOKENS}, {MAX_LENGTH_TOKENS}]")
    return v


def sample_lengths(field_name: str, spec: str | int, n: int, rng: np.random.Generator,
                   column: str) -> np.ndarray:
    """Draw ``n`` integer lengths from a distribution spec (see module docstring)."""
    text = str(spec).strip()
    kind, _, args = text.partition(":")
    kind = kind.lower()
    if kind.replace(".", "", 1).isdigit() and not args:
        kind, args = "fixed", text
    usage = (f"{field_name}: expected N, fixed:N, uniform:a,b, range:N,ratio, "
             f"lognormal:mean,sigma or empirical:FILE.csv[:column], got '{text}'")
    if kind == "fixed":
        v = _num(field_name, args)
        if v < 1 or v != int(v):
            raise InputError(f"{field_name}: fixed length must be an integer >= 1, got {args}")
        return np.full(n, int(v), dtype=np.int64)
    if kind == "uniform":
        parts = args.split(",")
        if len(parts) != 2:
            raise InputError(usage)
        lo, hi = (_num(field_name, p) for p in parts)
        if not (1 <= lo <= hi) or lo != int(lo) or hi != int(hi):
            raise InputError(f"{field_name}: uniform:a,b needs integers 1 <= a <= b, got {args}")
        return rng.integers(int(lo), int(hi) + 1, size=n)
    if kind == "range":
        parts = args.split(",")
        if len(parts) != 2:
            raise InputError(usage)
        mid, ratio = (_num(field_name, p) for p in parts)
        if not (mid >= 1 and mid == int(mid) and 0 <= ratio < 1):
            raise InputError(f"{field_name}: range:N,ratio needs an integer N >= 1 and ratio "
                             f"in [0, 1), got {args}")
        lo, hi = max(int(mid * (1 - ratio)), 1), int(mid * (1 + ratio))
        return rng.integers(lo, hi + 1, size=n)
    if kind == "lognormal":
        parts = args.split(",")
        if len(parts) != 2:
            raise InputError(usage)
        mean, sigma = (_num(field_name, p) for p in parts)
        if not mean >= 1 or not 0 <= sigma <= 5:
            raise InputError(f"{field_name}: lognormal:mean,sigma needs mean >= 1 and "
                             f"sigma in [0, 5], got {args}")
        mu = np.log(mean) - sigma ** 2 / 2
        return np.maximum(np.round(rng.lognormal(mu, sigma, size=n)), 1).astype(np.int64)
    if kind == "empirical":
        path, _, col = args.partition(":")
        if not path:
            raise InputError(usage)
        values = _read_column(field_name, Path(path), col or column)
        return values[rng.integers(0, values.size, size=n)]
    raise InputError(usage)


def _read_column(field_name: str, path: Path, column: str) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{field_name}: file {path} does not exist")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or column not in rows[0]:
        raise InputError(f"{field_name}: {path} has no column '{column}'"
                         + (f" (columns: {', '.join(rows[0])})" if rows else " (empty file)"))
    out = []
    for i, r in enumerate(rows, start=2):
        v = _num(f"{field_name} ({path}:{i})", r[column])
        if v < 1 or v != int(v):
            raise InputError(f"{field_name}: {path}:{i}: {column} must be an integer >= 1, got {r[column]}")
        out.append(int(v))
    return np.array(out, dtype=np.int64)


def read_trace(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A trace CSV ``arrival_s,input_len,output_len`` (sorted by arrival on return)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"trace: file {p} does not exist")
    with p.open(newline="") as f:
        rows = list(csv.DictReader(f))
    need = ("arrival_s", "input_len", "output_len")
    if not rows:
        raise InputError(f"trace: {p} has no requests (expected a header "
                         "arrival_s,input_len,output_len and one row per request)")
    missing = [c for c in need if c not in rows[0]]
    if missing:
        raise InputError(f"trace: {p} lacks column(s) {', '.join(missing)} "
                         f"(expected arrival_s,input_len,output_len)")
    a, i, o = [], [], []
    for n, r in enumerate(rows, start=2):
        t = _num(f"trace ({p}:{n}) arrival_s", r["arrival_s"])
        x = _num(f"trace ({p}:{n}) input_len", r["input_len"])
        y = _num(f"trace ({p}:{n}) output_len", r["output_len"])
        if not np.isfinite(t) or t < 0:
            raise InputError(f"trace: {p}:{n}: arrival_s must be >= 0, got {r['arrival_s']}")
        for name, v in (("input_len", x), ("output_len", y)):
            if v < 1 or v != int(v):
                raise InputError(f"trace: {p}:{n}: {name} must be an integer >= 1, got {r[name]}")
        a.append(t), i.append(int(x)), o.append(int(y))
    order = np.argsort(np.array(a), kind="stable")
    return np.array(a)[order], np.array(i, dtype=np.int64)[order], np.array(o, dtype=np.int64)[order]


def arrival_times(arrival: str, n: int, rate: float | None, rng: np.random.Generator,
                  burstiness: float = 1.0) -> np.ndarray:
    """Arrival times of ``n`` requests, starting at 0 (first gap included for random ones)."""
    if arrival not in ARRIVALS:
        raise InputError(f"arrival: unknown process '{arrival}' (allowed: {', '.join(ARRIVALS)})")
    if arrival == "offline":
        return np.zeros(n)
    if arrival == "closed":
        return np.full(n, np.nan)
    if rate is None or not np.isfinite(rate) or rate <= 0:
        raise InputError(f"rate: must be a positive number of requests per second, got {rate!r}")
    if arrival == "fixed":
        return np.arange(n) / rate
    if arrival == "poisson":
        gaps = rng.exponential(1 / rate, size=n)
    else:
        if not 0 < burstiness <= 100:
            raise InputError(f"burstiness: must be in (0, 100], got {burstiness!r}")
        gaps = rng.gamma(burstiness, 1 / (rate * burstiness), size=n)
    return np.cumsum(gaps) - gaps[0]


def make_workload(n: int = 1000, *, rate: float | None = None, arrival: str | None = None,
                  input_dist: str | int = "lognormal:1024,0.6",
                  output_dist: str | int = "lognormal:256,0.8", trace: str | Path | None = None,
                  concurrency: int | None = None, burstiness: float = 1.0, seed: int = 0,
                  max_context: int | None = None, ramp_s: float | None = None,
                  warmup: int = 1, jitter_s: float = 0.0) -> Workload:
    """Build the request list (see module docstring). ``arrival`` defaults to ``poisson``
    with a rate, ``closed`` with a concurrency, ``offline`` with neither. ``ramp_s``,
    ``warmup``: closed loop only (staggered start, warm-up requests per client);
    ``jitter_s``: closed loop, each request is sent a uniform random 0 .. jitter_s seconds
    after the previous one of its client finishes (client-side timing noise)."""
    if not (np.isfinite(jitter_s) and 0 <= jitter_s <= 60):
        raise InputError(f"jitter_s: must be a number of seconds in [0, 60], got {jitter_s!r}")
    if ramp_s is not None and not (np.isfinite(ramp_s) and 0 <= ramp_s <= 1e6):
        raise InputError(f"ramp_s: must be a number of seconds in [0, 1e6], got {ramp_s!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, (int, np.integer)) or not 0 <= warmup <= 1000:
        raise InputError(f"warmup: must be an integer number of requests per client in "
                         f"[0, 1000], got {warmup!r}")
    rng = np.random.default_rng(seed)
    notes: list[str] = []
    if trace is not None:
        a, i, o = read_trace(trace)
        arr = "trace"
    else:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= 10_000_000:
            raise InputError(f"requests: must be an integer in [1, 10000000], got {n!r}")
        if concurrency is not None and (isinstance(concurrency, bool) or not 1 <= concurrency <= 1_000_000):
            raise InputError(f"concurrency: must be an integer in [1, 1000000], got {concurrency!r}")
        arr = arrival or ("closed" if concurrency else "poisson" if rate is not None else "offline")
        if arr == "closed" and not concurrency:
            raise InputError("concurrency: the closed-loop arrival needs --concurrency N")
        i = sample_lengths("input_dist", input_dist, n, rng, "input_len")
        o = sample_lengths("output_dist", output_dist, n, rng, "output_len")
        a = arrival_times(arr, n, rate, rng, burstiness)
    if max_context is not None:
        too_long = (i + o) > max_context
        if trace is not None and too_long.any():
            k = int(np.argmax(too_long))
            raise InputError(f"trace: request {k} needs {int(i[k] + o[k])} tokens "
                             f"(input {int(i[k])} + output {int(o[k])}), more than the "
                             f"model's context of {max_context}")
        if too_long.any():
            i = np.minimum(i, max_context - 1)
            o = np.minimum(o, max_context - i)
            notes.append(f"{int(too_long.sum())} of {i.size} requests clipped to the model's "
                         f"context of {max_context} tokens")
    closed = arr == "closed"
    think = rng.uniform(0, jitter_s, size=i.size) if closed and jitter_s > 0 else None
    return Workload(np.asarray(a, dtype=float), np.asarray(i, dtype=np.int64),
                    np.asarray(o, dtype=np.int64), arr, rate,
                    concurrency if closed else None, tuple(notes),
                    ramp_s if closed else None, int(warmup) if closed else 0, think)


def closed_loop_ramp_s(cost, cfg, wl: Workload) -> float:
    """One request cycle of a client at concurrency c, estimated before simulating: the
    span over which the clients start by default. With I, O the mean prompt and output
    lengths, ``t_pre(I)`` one unloaded prefill of I tokens, ``t_dec(c, L)`` a decode step
    of c rows attending to L tokens (``IterationCost``) and f the per-request fixed cost:
    ``cycle = f + c x t_pre(I) + (O - 1) x t_dec(c, I + O / 2)`` seconds: every client
    prefills once per cycle and decodes O - 1 tokens alongside the others (c = 1: exactly
    one unloaded request). With attention data-parallel ranks (``dp_attention`` A) a
    rank's cycle: c -> ceil(c / A), its share of the clients."""
    c = int(wl.concurrency or 1)
    adp = getattr(getattr(cost, "layout", None), "dp_attention", 1)
    c = -(-c // adp)
    I = max(int(round(float(wl.input_len.mean()))), 1)
    O = float(wl.output_len.mean())
    t_pre = cost.time([I], [I], prefill=True)
    L = I + int(O // 2)
    t_dec = cost.time(np.ones(c), np.full(c, L), prefill=False)
    return float(cfg.request_fixed_s + c * t_pre + max(O - 1, 0) * t_dec)


def closed_loop_starts_s(cost, cfg, wl: Workload) -> np.ndarray:
    """First-request times of the ``concurrency`` clients: ``k x ramp / c`` (seconds)."""
    c = int(wl.concurrency)
    ramp = wl.ramp_s if wl.ramp_s is not None else closed_loop_ramp_s(cost, cfg, wl)
    return np.arange(c) * (ramp / c)
