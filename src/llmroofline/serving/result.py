"""Results of a simulation: per-request latencies, the iteration log, summaries."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import SchedulerConfig


@dataclass
class SimResult:
    """Per-request results and the iteration log of a simulation."""

    arrival_s: np.ndarray
    input_len: np.ndarray
    output_len: np.ndarray
    first_scheduled_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    preemptions: np.ndarray
    itl_s: np.ndarray             # inter-token latencies (values) ...
    itl_weight: np.ndarray        # ... and how many tokens had each value
    iter_start_s: np.ndarray      # iteration log
    iter_time_s: np.ndarray
    iter_rows: np.ndarray
    iter_tokens: np.ndarray
    iter_kv_tokens: np.ndarray    # KV tokens held after the iteration (on its replica)
    kv_capacity_tokens: int       # all replicas
    config: SchedulerConfig
    replica: np.ndarray | None = None        # replica of each request (decode replica if
    notes: tuple[str, ...] = field(default=())  # disaggregated)
    iter_replica: np.ndarray | None = None   # replica of each iteration
    roles: tuple[str, ...] = ()              # per replica: "mixed", "prefill" or "decode"
    replica_kv_tokens: tuple[int, ...] = ()  # KV capacity of each replica (tokens)
    swaps: np.ndarray | None = None          # preemptions by swap, per request
    kv_transfer_s: np.ndarray | None = None  # disaggregated: KV transfer time per request
    measured: np.ndarray | None = None       # closed loop: requests in the measured window
    concurrency: int | None = None           # closed loop: clients

    @property
    def ttft_s(self) -> np.ndarray:
        return self.first_token_s - self.arrival_s

    @property
    def e2e_s(self) -> np.ndarray:
        return self.finish_s - self.arrival_s

    @property
    def tpot_s(self) -> np.ndarray:
        """Mean time per output token after the first, per request (NaN for 1 token)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.output_len > 1, (self.finish_s - self.first_token_s)
                            / np.maximum(self.output_len - 1, 1), np.nan)

    @property
    def queue_s(self) -> np.ndarray:
        return self.first_scheduled_s - self.arrival_s

    @property
    def makespan_s(self) -> float:
        return float(self.finish_s.max() - self.arrival_s.min())

    @property
    def n_replicas(self) -> int:
        return len(self.roles) if self.roles else 1

    def meets(self, max_ttft_s=None, max_tpot_s=None, max_e2e_s=None) -> np.ndarray:
        ok = np.ones(self.arrival_s.size, dtype=bool)
        if max_ttft_s is not None:
            ok &= self.ttft_s <= max_ttft_s
        if max_tpot_s is not None:
            ok &= ~(self.tpot_s > max_tpot_s)     # NaN (1-token requests) meets it
        if max_e2e_s is not None:
            ok &= self.e2e_s <= max_e2e_s
        return ok

    def steady_state(self) -> dict:
        """Completion rate away from the run's ends: requests finishing between the 10th
        and the 90th percentile of finish times, per second of that window (the total over
        the makespan also counts the ramp-up and the drain). With an open-loop arrival
        process the offered rate is (n - 1) / (last - first arrival); the run is
        ``overloaded`` when it completes below 95 % of it, and the steady completion rate is
        then the saturation rate: the most this deployment serves."""
        n = int(self.finish_s.size)
        out = {"requests_s": None, "output_tok_s": None, "offered_requests_s": None,
               "overloaded": False, "saturation_requests_s": None}
        if n < 20:
            return out
        order = np.argsort(self.finish_s)
        fin = self.finish_s[order]
        i0, i1 = n // 10, n - n // 10 - 1
        dt = float(fin[i1] - fin[i0])
        if dt <= 0:
            return out
        rate = (i1 - i0) / dt
        out["requests_s"] = rate
        out["output_tok_s"] = rate * float(self.output_len[order[i0 + 1:i1 + 1]].mean())
        arr = np.sort(self.arrival_s)
        span = float(arr[-1] - arr[0])
        if span > 0:
            offered = (n - 1) / span
            out["offered_requests_s"] = offered
            if rate < 0.95 * offered:
                out["overloaded"] = True
                out["saturation_requests_s"] = rate
        return out

    def summary(self, max_ttft_s=None, max_tpot_s=None, max_e2e_s=None) -> dict:
        """Percentiles, throughput, goodput (requests/s meeting every given SLO), queueing,
        batch size and KV use. With several replicas, batch and KV use are per replica
        (time-weighted over each replica's busy time, then averaged). ``throughput`` is
        over the makespan; ``steady`` away from its ends (:meth:`steady_state`)."""
        span = self.makespan_s
        dur = self.iter_time_s
        busy = float(dur.sum())
        nrep = self.n_replicas

        good = self.meets(max_ttft_s, max_tpot_s, max_e2e_s)
        in_system = float(self.e2e_s.sum() / span) if span > 0 else float("nan")
        w = dur / busy if busy > 0 else dur
        kv_frac = self.iter_kv_tokens / self._iter_capacity()
        s = {
            "requests": int(self.arrival_s.size),
            "duration_s": span,
            "iterations": int(dur.size),
            "ttft_s": _pct(self.ttft_s), "tpot_s": _pct(self.tpot_s),
            "itl_s": _pct(self.itl_s, self.itl_weight), "e2e_s": _pct(self.e2e_s),
            "queue_s": _pct(self.queue_s),
            "throughput": {
                "requests_s": self.arrival_s.size / span if span > 0 else float("nan"),
                "input_tok_s": float(self.input_len.sum() / span) if span > 0 else float("nan"),
                "output_tok_s": float(self.output_len.sum() / span) if span > 0 else float("nan"),
            },
            "slo": {"max_ttft_s": max_ttft_s, "max_tpot_s": max_tpot_s, "max_e2e_s": max_e2e_s,
                    "attained": float(good.mean()),
                    "goodput_requests_s": float(good.sum() / span) if span > 0 else float("nan")},
            "steady": self.steady_state(),
            "mean_in_system": in_system,
            "batch": {"mean": float((self.iter_rows * w).sum()), "max": int(self.iter_rows.max())},
            "kv": {"capacity_tokens": int(self.kv_capacity_tokens),
                   "mean_used": float((kv_frac * w).sum()),
                   "max_used": float(kv_frac.max())},
            "busy": busy / span / nrep if span > 0 else float("nan"),
            "preemptions": int(self.preemptions.sum()),
            "swaps": int(self.swaps.sum()) if self.swaps is not None else 0,
            "replicas": nrep,
            "notes": list(self.notes),
        }
        if self.kv_transfer_s is not None:
            s["kv_transfer_s"] = _pct(self.kv_transfer_s)
        if self.measured is not None:
            s["benchmark"] = self.benchmark()
        return s

    def benchmark(self) -> dict:
        """A closed-loop benchmark's report over the measured window (``measured``): TTFT
        and TPOT mean and percentiles in seconds, TPOT per request = (e2e - TTFT) /
        (output - 1) (the first token excluded, as vLLM's and genai-perf's benchmarks
        report it), and throughput both over the window (output tokens of the measured
        requests / (last finish - first send) among them) and as the concurrency law
        ``c x mean O / (mean TTFT + mean TPOT x (mean O - 1))`` tokens/s (what the measured
        rows' throughput is computed from)."""
        m = self.measured if self.measured is not None else np.ones(self.arrival_s.size, bool)
        ttft, tpot = self.ttft_s[m], self.tpot_s[m]
        span = float(self.finish_s[m].max() - self.arrival_s[m].min()) if m.any() else float("nan")
        O = float(self.output_len[m].mean()) if m.any() else float("nan")
        c = self.concurrency or 1
        t1 = float(np.nanmean(ttft)) if m.any() else float("nan")
        t2 = float(np.nanmean(tpot)) if np.isfinite(tpot).any() else 0.0
        return {"concurrency": self.concurrency, "measured_requests": int(m.sum()),
                "excluded_requests": int(m.size - m.sum()), "window_s": span,
                "ttft_s": _pct(ttft), "tpot_s": _pct(tpot), "e2e_s": _pct(self.e2e_s[m]),
                "output_tok_s": float(self.output_len[m].sum() / span) if span > 0 else float("nan"),
                "output_tok_s_law": c * O / (t1 + t2 * (O - 1)) if m.any() else float("nan")}

    def _iter_capacity(self) -> np.ndarray | float:
        if self.iter_replica is None or not self.replica_kv_tokens:
            return float(self.kv_capacity_tokens)
        return np.asarray(self.replica_kv_tokens, float)[self.iter_replica.astype(int)]

    def to_csv(self, path) -> None:
        """Per-request CSV: arrival, lengths, queueing, TTFT, TPOT, e2e, preemptions."""
        import csv
        with open(path, "w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(["request", "replica", "arrival_s", "input_len", "output_len", "queue_s",
                         "ttft_s", "tpot_s", "e2e_s", "finish_s", "preemptions"])
            rep = self.replica if self.replica is not None else np.zeros(self.arrival_s.size, int)
            tp = self.tpot_s
            for k in range(self.arrival_s.size):
                wr.writerow([k, int(rep[k]), f"{self.arrival_s[k]:.6f}", int(self.input_len[k]),
                             int(self.output_len[k]), f"{self.queue_s[k]:.6f}",
                             f"{self.ttft_s[k]:.6f}", "" if np.isnan(tp[k]) else f"{tp[k]:.6f}",
                             f"{self.e2e_s[k]:.6f}", f"{self.finish_s[k]:.6f}",
                             int(self.preemptions[k])])


def _pct(x, w=None) -> dict:
    x = np.asarray(x, dtype=float)
    ok = ~np.isnan(x)
    if not ok.any():
        return {"mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    if w is None:
        x = x[ok]
        p = np.percentile(x, [50, 90, 99])
        return {"mean": float(x.mean()), "p50": float(p[0]), "p90": float(p[1]),
                "p99": float(p[2]), "max": float(x.max())}
    w = np.asarray(w, dtype=float)[ok]
    x = x[ok]
    order = np.argsort(x, kind="stable")
    x, w = x[order], w[order]
    cw = np.cumsum(w)
    q = [float(x[min(np.searchsorted(cw, f * cw[-1], side="left"), x.size - 1)])
         for f in (0.5, 0.9, 0.99)]
    return {"mean": float((x * w).sum() / cw[-1]), "p50": q[0], "p90": q[1],
            "p99": q[2], "max": float(x.max())}


class IterationLog:
    """Iteration log of one replica: single iterations as tuples, decode stretches as
    arrays; :meth:`arrays` returns them in time order. ``itl`` collects inter-token
    latencies as (value(s), token count(s))."""

    def __init__(self) -> None:
        self.parts: list[tuple] = []
        self.single: list[tuple] = []
        self.itl: list[tuple] = []

    def add(self, start, dt, rows, tokens, kv) -> None:
        """One iteration (scalars; converted to float in :meth:`arrays`)."""
        self.single.append((start, dt, rows, tokens, kv))

    def add_run(self, start, dt, rows, tokens, kv) -> None:
        """A stretch: start, dt and kv arrays, rows and tokens constant (expanded in
        :meth:`arrays`)."""
        self.parts.append((start, dt, float(rows), float(tokens), kv))

    def arrays(self):
        parts = self.parts
        cols = [[p[0] for p in parts], [p[1] for p in parts], [], [], [p[4] for p in parts]]
        if parts:
            n = [p[0].size for p in parts]
            cols[2].append(np.repeat(np.array([p[2] for p in parts]), n))
            cols[3].append(np.repeat(np.array([p[3] for p in parts]), n))
        if self.single:
            one = np.array(self.single, dtype=float).reshape(-1, 5)
            for i in range(5):
                cols[i].append(one[:, i])
        if not cols[0]:
            z = np.zeros(0)
            return z, z, z, z, z
        cols[4] = [np.asarray(c, float) for c in cols[4]]
        out = [np.concatenate(c) for c in cols]
        order = np.argsort(out[0], kind="stable")
        return tuple(x[order] for x in out)

    def itl_arrays(self):
        if not self.itl:
            return np.zeros(0), np.zeros(0)
        v = np.concatenate([a if isinstance(a, np.ndarray) else (a,) for a, _ in self.itl])
        v = v.astype(float)
        n = [a.size if isinstance(a, np.ndarray) else 1 for a, _ in self.itl]
        w = [b for _, b in self.itl]
        if all(not isinstance(b, np.ndarray) for b in w):
            return v, np.repeat(np.array(w, dtype=float), n)
        w = np.concatenate([np.broadcast_to(np.asarray(b, float), (k,)) for b, k in zip(w, n)])
        return v, w


def simulation_payload(r: "SimResult", wl, cfg, cost, max_ttft_s=None, max_tpot_s=None, *,
                       workload_spec: dict | None = None, setup: dict | None = None) -> dict:
    """``simulate --json``'s data: the result's summary (goodput under the SLOs), the
    workload (``workload_spec`` as given: rate, distributions, seed ...; the drawn means)
    and the configuration (the deployment, every scheduler field, ``setup`` extras)."""
    import dataclasses
    s = r.summary(max_ttft_s, max_tpot_s)
    s["workload"] = {"arrival": wl.arrival, **(workload_spec or {}),
                     "mean_input_len": float(wl.input_len.mean()),
                     "mean_output_len": float(wl.output_len.mean())}
    dep = cost.deployment
    sched = {k: (list(v) if isinstance(v, tuple) else v)
             for k, v in dataclasses.asdict(cfg).items()}
    s["config"] = {"model": cost.model.name, "hardware": cost.roof.hw.id, "tp": dep.layout.tp,
                   "replicas": r.n_replicas, **(setup or {}), "engine": dep.engine.name,
                   "profile": dep.engine.profile.name, **sched}
    return s
