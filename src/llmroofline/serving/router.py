"""Sending requests to replicas.

A **round-robin** router sends the k-th arrival to replica k mod N (the replicas are then
independent and simulated one after the other); **least-loaded** sends each arrival to the
replica with the fewest prompt tokens still waiting for their first token (queued or in
prefill) at its arrival time, ties broken by the fewest outstanding requests (routed, not
finished), then round-robin; **least-requests** uses the outstanding requests alone. Both
read each replica's state exactly at the arrival time (from its first-token and finish
times), which couples the replicas: they are advanced together, each up to the next
arrival. A closed loop (``concurrency`` clients) splits its clients over the replicas.
"""

from __future__ import annotations

import math

import numpy as np

from .replica import Replica

ROUTERS = ("round-robin", "least-loaded", "least-requests")


def route(reps: list[Replica], router: str, arrival: np.ndarray, inp, out, comp=None,
          gen=None, last_emit=None, concurrency: int | None = None,
          starts_s=None, think_s=None) -> np.ndarray:
    """Send requests (global ids 0..n-1) to replicas and run them all to the end; returns
    the replica of each request. ``comp``, ``gen``, ``last_emit``: per-request state on
    arrival (see :meth:`Replica.add`), ``None`` for fresh requests."""
    n = arrival.size
    R = len(reps)
    rep = np.zeros(n, dtype=np.int64)

    def add_all(rp, idx, arrivals, release=True):
        rp.add_many(idx, arrivals, inp[idx], out[idx],
                    None if comp is None else comp[idx], None if gen is None else gen[idx],
                    None if last_emit is None else last_emit[idx], release=release)

    if concurrency:                       # closed loop: clients split over the replicas
        rep = np.arange(n) % R
        for j, rp in enumerate(reps):
            idx = np.flatnonzero(rep == j)
            add_all(rp, idx, np.full(idx.size, math.nan), release=False)
            if idx.size:
                st = None if starts_s is None else starts_s[j::R]
                rp.set_closed_loop(len(range(j, concurrency, R)) or 1,
                                   st if st is not None and len(st) else None,
                                   None if think_s is None else think_s[idx])
                rp.advance()
        return rep
    order = np.argsort(arrival, kind="stable")
    if router == "round-robin" or R == 1:
        rep[order] = np.arange(n) % R
        reps[0].check_fit(order, inp[order], out[order])   # report the first one that
        for j, rp in enumerate(reps):                      # arrives (all replicas alike)
            idx = order[j::R]
            add_all(rp, idx, arrival[idx])
        for rp in reps:
            rp.advance()
        return rep
    for rp in reps:
        rp.metric = "requests" if router == "least-requests" else "prompt"
    last = R - 1
    for k in order.tolist():
        t = float(arrival[k])
        best, best_load = 0, None
        for j0 in range(R):                       # ties: round-robin order
            j = (last + 1 + j0) % R
            rp = reps[j]
            if rp.now < t and rp.busy():
                rp.advance(t)
            load = rp.load(t)
            if best_load is None or load < best_load:
                best, best_load = j, load
                if not any(load):
                    break
        rep[k] = best
        last = best
        reps[best].add(k, t, int(inp[k]), int(out[k]),
                       comp=int(comp[k]) if comp is not None else 0,
                       gen=int(gen[k]) if gen is not None else 0,
                       last_emit=float(last_emit[k]) if last_emit is not None else math.nan)
    for rp in reps:
        rp.advance()
    return rep
