"""Pictures of a simulation and of a configuration search (PNG/SVG, matplotlib).

matplotlib is imported inside the functions (the ``plot`` extra), so ``import
llmroofline.serving`` stays light.

- :func:`plot_simulation`: batch size and KV cache use over time (per replica, time-
  weighted means over ``bins`` equal slices of the run: idle time counts as 0), and the
  TTFT and TPOT distributions with their p50/p99 and the SLO limits.
- :func:`plot_pareto`: a configuration search's points, capacity per device vs TPOT
  percentile, with the Pareto front and the cheapest configuration meeting the target.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .sim import SimResult

SUFFIXES = (".png", ".svg")
SIZE_IN = (12.0, 8.0)
DPI = 100
MAX_LINES = 8          # more replicas: their mean and min-max band


def check_plot_path(path) -> Path:
    from ..safeio import check_out_path
    return check_out_path("plot", path, SUFFIXES)


def _mpl():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def time_binned(start: np.ndarray, dur: np.ndarray, value: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean over each slice ``[edges[k], edges[k + 1])`` of the step function equal to
    ``value[i]`` during iteration i (``start[i]``, ``start[i] + dur[i]``) and 0 between
    iterations (exact: the cumulative integral is interpolated at the edges). The
    iterations must not overlap (one replica)."""
    if start.size == 0:
        return np.zeros(edges.size - 1)
    o = np.argsort(start, kind="stable")
    s, d, v = start[o], dur[o], value[o]
    t = np.empty(2 * s.size)
    t[0::2], t[1::2] = s, s + d
    area = np.zeros(2 * s.size)
    area[1::2] = v * d
    F = np.cumsum(area)
    Fe = np.interp(edges, t, F, left=0.0, right=F[-1])
    return np.diff(Fe) / np.diff(edges)


def _replica_series(r: SimResult, values: np.ndarray, edges: np.ndarray) -> list[np.ndarray]:
    rep = r.iter_replica if r.iter_replica is not None else np.zeros(r.iter_start_s.size, int)
    return [time_binned(r.iter_start_s[rep == j], r.iter_time_s[rep == j], values[rep == j], edges)
            for j in range(r.n_replicas)]


def _labels(r: SimResult) -> list[str]:
    roles = r.roles or ("mixed",)
    if len(roles) == 1:
        return [""]
    return [f"{role} {j}" if role != "mixed" else f"replica {j}" for j, role in enumerate(roles)]


def _series_panel(ax, x, series, labels, ylabel, title):
    if len(series) <= MAX_LINES:
        for y, lab in zip(series, labels):
            ax.plot(x, y, lw=1.0, label=lab or None, drawstyle="steps-mid")
        if any(labels):
            ax.legend(fontsize=7, ncol=2, loc="upper right")
    else:
        Y = np.array(series)
        ax.fill_between(x, Y.min(axis=0), Y.max(axis=0), alpha=0.25, step="mid",
                        label=f"min-max over {len(series)} replicas")
        ax.plot(x, Y.mean(axis=0), lw=1.0, drawstyle="steps-mid", label="mean")
        ax.legend(fontsize=7, loc="upper right")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)


def _dist_panel(ax, x, name, limit):
    x = np.asarray(x, float)
    x = x[np.isfinite(x) & (x > 0)]
    ax.set_title(f"{name} distribution", fontsize=10)
    if x.size == 0:
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
        return
    unit, k = ("ms", 1e3) if np.percentile(x, 99) < 1 else ("s", 1.0)
    x = x * k
    lo, hi = x.min(), x.max()
    if hi > 30 * lo:
        bins = np.geomspace(lo, hi * 1.0001, 60)
        ax.set_xscale("log")
    else:
        bins = np.linspace(lo, hi * 1.0001 if hi > lo else lo + 1e-9, 60)
    ax.hist(x, bins=bins, color="#1f77b4", alpha=0.8)
    for q, ls in ((50, "-"), (99, "--")):
        v = np.percentile(x, q)
        ax.axvline(v, color="k", ls=ls, lw=1, label=f"p{q} {v:.3g} {unit}")
    if limit is not None:
        ax.axvline(limit * k, color="#d62728", lw=1.5, label=f"SLO {limit * k:.4g} {unit}")
    ax.set_xlabel(f"{name} ({unit})")
    ax.set_ylabel("requests")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def plot_simulation(r: SimResult, path, title: str = "", max_ttft_s=None, max_tpot_s=None,
                    bins: int = 300) -> Path:
    """Four panels: batch size and KV use over time, TTFT and TPOT histograms."""
    p = check_plot_path(path)
    plt = _mpl()
    t0 = float(np.nanmin(r.arrival_s))
    t1 = float(np.nanmax(r.finish_s))
    edges = np.linspace(t0, t1 if t1 > t0 else t0 + 1e-9, bins + 1)
    mid = (edges[:-1] + edges[1:]) / 2
    labels = _labels(r)
    cap = np.asarray(r.replica_kv_tokens or (r.kv_capacity_tokens,), float)
    batch = _replica_series(r, r.iter_rows, edges)
    kv = [100 * y / cap[j] for j, y in enumerate(_replica_series(r, r.iter_kv_tokens, edges))]
    fig, axes = plt.subplots(2, 2, figsize=SIZE_IN, dpi=DPI)
    _series_panel(axes[0, 0], mid, batch, labels, "running requests per iteration",
                  "batch size over time (time-weighted mean per slice)")
    _series_panel(axes[0, 1], mid, kv, labels, "KV cache used (% of capacity)",
                  "KV cache memory over time")
    axes[0, 1].set_ylim(0, 105)
    _dist_panel(axes[1, 0], r.ttft_s, "TTFT", max_ttft_s)
    _dist_panel(axes[1, 1], r.tpot_s, "TPOT", max_tpot_s)
    if title:
        import textwrap
        fig.suptitle("\n".join(textwrap.wrap(title, 120)), fontsize=10)
    fig.tight_layout()
    fig.savefig(p, dpi=DPI)
    plt.close(fig)
    return p


def plot_pareto(search, path, title: str = "") -> Path:
    """Capacity per device vs TPOT percentile of every configuration of a
    :class:`search.Search`; the Pareto front is joined and labelled, the chosen
    configuration (cheapest meeting the target) circled, the TPOT limit drawn."""
    p = check_plot_path(path)
    plt = _mpl()
    fig, ax = plt.subplots(figsize=(10, 6.5), dpi=DPI)
    pts = [q for q in search.points if q.rate > 0 and q.tpot_s is not None]
    hws = sorted({q.hardware for q in pts})
    marks = "osD^v<>p*h"
    pct = f"p{search.percentile:g}"
    for i, hw in enumerate(hws):
        for tp in sorted({q.tp for q in pts if q.hardware == hw}):
            g = [q for q in pts if q.hardware == hw and q.tp == tp]
            ax.scatter([q.tpot_s * 1e3 for q in g], [q.per_device for q in g], s=26,
                       marker=marks[i % len(marks)], alpha=0.75,
                       label=f"{hw} TP{tp}")
    front = sorted((q for q in pts if q.pareto), key=lambda q: q.tpot_s)
    if front:
        ax.plot([q.tpot_s * 1e3 for q in front], [q.per_device for q in front], c="k", lw=1,
                label="Pareto front")
    b = search.best
    if b is not None and b.tpot_s is not None:
        cost = f", ${b.cost_usd_h:.2f}/h" if b.cost_usd_h is not None else ""
        ax.scatter([b.tpot_s * 1e3], [b.per_device], s=220, facecolors="none",
                   edgecolors="#d62728", lw=1.8,
                   label=f"cheapest at {search.rate_target:g} req/s: {b.replicas} x {b.label} "
                         f"({b.devices} devices{cost})")
    lim = search.slo.get("max_tpot_s")
    if lim is not None:
        ax.axvline(lim * 1e3, color="#d62728", ls="--", lw=1, label=f"TPOT {pct} limit")
    ax.set_xlabel(f"TPOT {pct} at capacity (ms)")
    ax.set_ylabel("capacity per device (requests/s meeting the SLOs)")
    ax.set_title(title or f"{len(pts)} configurations: throughput per device vs TPOT {pct}",
                 fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    fig.tight_layout()              # final axes position first: labels are placed in pixels
    place_labels(ax, [(q.tpot_s * 1e3, q.per_device, q.label) for q in front])
    ax.legend(fontsize=7, loc="best")
    fig.savefig(p, dpi=DPI)
    plt.close(fig)
    return p


# label offsets tried in turn (points): right-above, left-above, right-below, left-below
_LABEL_SPOTS = ((4, 3, "left", "bottom"), (-4, 3, "right", "bottom"),
                (4, -3, "left", "top"), (-4, -3, "right", "top"))


def place_labels(ax, points, fontsize: float = 7) -> list:
    """Annotate ``(x, y, text)`` points so each label lies inside the axes and clear of the
    labels placed before it: the first of four spots around the point that fits
    (right-above, left-above, right-below, left-below), else the spot that sticks out
    least, inside the axes. Returns the annotations."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    box = ax.get_window_extent(renderer)
    placed, out = [], []
    for x, y, text in points:
        best = None
        for dx, dy, ha, va in _LABEL_SPOTS:
            a = ax.annotate(text, (x, y), fontsize=fontsize, xytext=(dx, dy),
                            textcoords="offset points", ha=ha, va=va)
            bb = a.get_window_extent(renderer)
            outside = (max(0, box.x0 - bb.x0) + max(0, bb.x1 - box.x1)
                       + max(0, box.y0 - bb.y0) + max(0, bb.y1 - box.y1))
            overlap = sum(max(0, min(bb.x1, o.x1) - max(bb.x0, o.x0))
                          * max(0, min(bb.y1, o.y1) - max(bb.y0, o.y0)) for o in placed)
            score = (outside > 0, overlap > 0, outside, overlap)
            if best is None or score < best[0]:
                if best is not None:
                    best[1].remove()
                best = (score, a, bb)
            else:
                a.remove()
            if score[:2] == (False, False):
                break
        _, a, bb = best
        if best[0][0]:      # no spot inside: push it in (an offset in points, 72 per inch)
            k = 72 / fig.dpi
            sx = max(0, box.x0 - bb.x0) - max(0, bb.x1 - box.x1)
            sy = max(0, box.y0 - bb.y0) - max(0, bb.y1 - box.y1)
            ox, oy = a.xyann
            a.xyann = (ox + sx * k, oy + sy * k)
            bb = a.get_window_extent(renderer)
        placed.append(bb)
        out.append(a)
    return out
