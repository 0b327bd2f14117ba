"""Pictures of comparison meshes and roofline charts: PNG/SVG (matplotlib), HTML (plotly), CSV.

matplotlib and plotly are optional (the ``plot`` extra) and imported inside the functions,
so ``import llmroofline`` stays light. Figures have a fixed pixel size
(``figsize x dpi``, no tight bounding box) so callers and tests can rely on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import report
from .compare import Mesh
from .cost import Roofline
from .errors import InputError
from .phases import Analysis

DPI = 100
COMPARE_SIZE_IN = (7.0, 5.2)          # one panel; side by side doubles the width
ROOFLINE_SIZE_IN = (8.0, 6.0)
COMPARE_SUFFIXES = (".png", ".svg", ".html", ".csv")
ROOFLINE_SUFFIXES = (".png", ".svg", ".html", ".csv")
METHOD_TITLE = {"ops": "per-operator roofline", "global": "whole-model intensity (global)"}
DEVICE_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
                 "#17becf")
PHASE_MARKERS = {"prefill": ("o", "circle"), "decode": ("^", "triangle-up")}


def compare_figure_size_px(n_panels: int) -> tuple[int, int]:
    """Pixel size (width, height) of a comparison PNG with ``n_panels`` side by side."""
    return (round(COMPARE_SIZE_IN[0] * n_panels * DPI), round(COMPARE_SIZE_IN[1] * DPI))


def roofline_figure_size_px() -> tuple[int, int]:
    return (round(ROOFLINE_SIZE_IN[0] * DPI), round(ROOFLINE_SIZE_IN[1] * DPI))


def _suffix(path, allowed: Sequence[str]) -> str:
    s = Path(path).suffix.lower()
    if s not in allowed:
        raise InputError(f"out: file suffix must be one of {', '.join(allowed)}, got "
                         f"'{Path(path).name}'")
    return s


def _mpl():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return matplotlib, plt


def short(x: float) -> str:
    """1024 -> '1k', 32768 -> '32k', 100 -> '100' (binary k for powers of two)."""
    x = float(x)
    if x >= 1024 and x % 1024 == 0:
        return f"{x / 1024:g}k"
    if x >= 1e6:
        return f"{x / 1e6:.3g}M"
    if x >= 1e4:
        return f"{x / 1e3:.3g}k"
    return f"{x:g}"


def _edges(v: np.ndarray) -> np.ndarray:
    """Cell edges of a (log-spaced) axis: geometric midpoints, ends mirrored."""
    lv = np.log(v)
    if len(v) == 1:
        return np.exp(lv[0] + np.array([-0.5, 0.5]) * math.log(2))
    mid = (lv[:-1] + lv[1:]) / 2
    return np.exp(np.concatenate([[2 * lv[0] - mid[0]], mid, [2 * lv[-1] - mid[-1]]]))


def _ratio_ticks(limit: float) -> tuple[list[float], list[str]]:
    """Colour-bar ticks (log2 of round ratios within +-limit) and their labels."""
    coarse = [1 / 16, 1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8, 16]
    fine = [1 / 3, 2 / 3, 0.8, 0.9, 1.1, 1.25, 1.5, 3]
    keep = [r for r in coarse + fine if abs(math.log2(r)) <= limit + 1e-9]
    if len(keep) > 9:
        keep = [r for r in keep if r in coarse or r in (2 / 3, 1.5)]
    keep.sort()
    return [math.log2(r) for r in keep], [f"1/{1 / r:g}" if r < 0.3 else f"{round(r, 2):g}"
                                          for r in keep]


def _color_limit(meshes: Sequence[Mesh]) -> float:
    vals = [np.abs(np.log2(m.ratio[m.valid])) for m in meshes if m.valid.any()]
    lim = max((float(v.max()) for v in vals if v.size), default=1.0)
    lim = max(lim * 1.02, math.log2(1.25))
    for nice in (1.25, 1.5, 2, 3, 4, 6, 8, 16):   # stretch to a nearby round ratio for a tick
        if lim <= math.log2(nice) <= lim * 1.15:
            return math.log2(nice)
    return lim


def _runs(mask: np.ndarray):
    """Horizontal runs of True cells: (row, start column, end column exclusive)."""
    for i, row in enumerate(mask):
        j = 0
        n = len(row)
        while j < n:
            if row[j]:
                k = j
                while k < n and row[k]:
                    k += 1
                yield i, j, k
                j = k
            else:
                j += 1


def ratio_boundary(z: np.ndarray, tie: float = math.log2(1.001)) -> list[list[tuple[int, int]]]:
    """The ratio-1.0 line of a heatmap as polylines along cell edges.

    ``z`` (rows x columns) is log2 of the ratio, NaN where a cell is not compared. An edge
    is drawn between two neighbouring compared cells on opposite sides of 1 (beyond the
    ``tie`` band, the 0.1 % the winner rule also ignores), so the line follows exactly the
    cells drawn, instead of a contour through cell centres, which stops short at masked
    cells and breaks into fragments. Vertices are ``(row edge, column edge)`` indices:
    vertex (r, c) sits at (x edge c, y edge r). Edges are chained into the fewest paths
    (a vertex where four edges meet is split so no path crosses itself).
    """
    z = np.asarray(z, dtype=float)
    side = np.where(np.isnan(z), 0, np.where(z > tie, 1, np.where(z < -tie, -1, 0)))
    edges = []
    flip_h = side[:, :-1] * side[:, 1:] < 0            # between columns j and j + 1
    for i, j in zip(*np.nonzero(flip_h)):
        edges.append(((int(i), int(j) + 1), (int(i) + 1, int(j) + 1)))
    flip_v = side[:-1, :] * side[1:, :] < 0            # between rows i and i + 1
    for i, j in zip(*np.nonzero(flip_v)):
        edges.append(((int(i) + 1, int(j)), (int(i) + 1, int(j) + 1)))
    adj: dict[tuple[int, int], list[int]] = {}
    for k, (a, b) in enumerate(edges):
        adj.setdefault(a, []).append(k)
        adj.setdefault(b, []).append(k)
    used = [False] * len(edges)

    def walk(start):
        path, v = [start], start
        while True:
            nxt = [k for k in adj[v] if not used[k]]
            if not nxt:
                return path
            k = nxt[0]
            used[k] = True
            a, b = edges[k]
            v = b if a == v else a
            path.append(v)
            if len(adj[v]) > 2:       # a saddle: end here rather than cross over
                return path

    paths = []
    # start at path ends (odd degree) first so open lines come out whole
    for v in sorted(adj, key=lambda v: len(adj[v]) % 2 == 0):
        while any(not used[k] for k in adj[v]):
            paths.append(walk(v))
    return paths


def axis_ticks(vals: np.ndarray, max_ticks: int = 9) -> list[float]:
    """Tick values of a log-spaced grid axis: the first and last grid values (so the end
    columns are always labelled) and the powers of two between them, at most
    ``max_ticks``, none closer than half a tick step (in log2) to its neighbours."""
    vals = np.asarray(vals, dtype=float)
    lo, hi = math.log2(vals[0]), math.log2(vals[-1])
    if hi - lo < 1e-9:
        return [float(vals[0])]
    step = max(1, math.ceil((hi - lo) / (max_ticks - 1)))
    inner = [float(k) for k in range(math.ceil(lo), math.floor(hi) + 1, step)]
    gap = step / 2
    inner = [k for k in inner if k - lo >= gap and hi - k >= gap]
    return [float(vals[0])] + [2.0 ** k for k in inner] + [float(vals[-1])]


# -- comparison heatmap ------------------------------------------------------------------
def _draw_boundary(ax, paths, xe: np.ndarray, ye: np.ndarray) -> None:
    """Draw the ratio-1.0 paths (cell-edge vertices) and label the longest one "1.0"."""
    if not paths:
        return
    for path in paths:
        ax.plot([xe[c] for _, c in path], [ye[r] for r, _ in path], color="k", lw=1.8,
                solid_joinstyle="miter", zorder=2)
    longest = max(paths, key=len)
    r, c = longest[len(longest) // 2]
    ax.text(xe[c], ye[r], "1.0", fontsize=9, ha="center", va="center", zorder=3,
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none",
                  "alpha": 0.85})


def compare_figure(meshes: Mesh | Sequence[Mesh]):
    """Matplotlib figure: one heatmap panel per mesh (e.g. both methods side by side).

    Two devices: colour = log2(throughput ratio device 0 / device 1) on a diverging map
    centred at 1, with the 1.0 contour. More devices: colour = the fastest device.
    Hatched cells: the workload does not fit a device (grey ///) or exceeds the context (..).
    """
    matplotlib, plt = _mpl()
    from matplotlib.colors import BoundaryNorm, ListedColormap, TwoSlopeNorm
    from matplotlib.patches import Patch, Rectangle
    from matplotlib.collections import PatchCollection
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    meshes = [meshes] if isinstance(meshes, Mesh) else list(meshes)
    m0 = meshes[0]
    n_dev = len(m0.hardware)
    fig, axes = plt.subplots(1, len(meshes), figsize=(COMPARE_SIZE_IN[0] * len(meshes),
                                                      COMPARE_SIZE_IN[1]),
                             dpi=DPI, squeeze=False, layout="constrained")
    lim = _color_limit(meshes)
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-lim, vmax=lim)
    cmap = plt.get_cmap("RdBu").with_extremes(bad=(0, 0, 0, 0))
    dev_cmap = ListedColormap(DEVICE_COLORS[:n_dev])
    dev_norm = BoundaryNorm(np.arange(-0.5, n_dev + 0.5), n_dev)
    image = None
    for ax, m in zip(axes[0], meshes):
        xe, ye = _edges(m.seq), _edges(m.batch)
        if n_dev == 2:
            z = np.ma.masked_invalid(np.log2(m.ratio))
            image = ax.pcolormesh(xe, ye, z, cmap=cmap, norm=norm, rasterized=True)
            _draw_boundary(ax, ratio_boundary(z.filled(np.nan)), xe, ye)
        else:
            w = np.ma.masked_less(m.winner.astype(float), 0)
            image = ax.pcolormesh(xe, ye, w, cmap=dev_cmap, norm=dev_norm, rasterized=True)
        # masked cells: only one device fits (its colour, hatched), none fits (grey ///),
        # beyond the context (white ..)
        none_fit = ~np.any(m.fits, axis=0) & m.in_context[None, :]
        partial = ~np.all(m.fits, axis=0) & ~none_fit & m.in_context[None, :]
        beyond = np.broadcast_to(~m.in_context[None, :], none_fit.shape)
        layers = [(none_fit, "0.82", "///"), (beyond, "white", "..")]
        if n_dev == 2:
            for k, side in ((0, 0.7), (1, 0.3)):
                layers.append((m.only_fits[k], cmap(side), "xx"))
        else:
            layers.append((partial, "0.92", "\\\\"))
        for mask, face, hatch in layers:
            rects = [Rectangle((xe[j0], ye[i]), xe[j1] - xe[j0], ye[i + 1] - ye[i])
                     for i, j0, j1 in _runs(mask)]
            if rects:
                ax.add_collection(PatchCollection(rects, facecolor=face, edgecolor="0.55",
                                                  hatch=hatch, linewidth=0, zorder=0.5))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(xe[0], xe[-1])
        ax.set_ylim(ye[0], ye[-1])
        for axis, vals in ((ax.xaxis, m.seq), (ax.yaxis, m.batch)):
            axis.set_major_locator(FixedLocator(axis_ticks(vals)))
            axis.set_major_formatter(FuncFormatter(lambda v, _: short(v)))
            axis.set_minor_locator(NullLocator())
        ax.set_xlabel(f"sequence length (mean KV tokens of decode; output {m.output_len})")
        ax.set_ylabel("batch size (concurrent sequences)")
        frac = m.win_fraction()
        wins = ", ".join(f"{h} {100 * f:.0f}%" for h, f in zip(m.hardware, frac))
        ax.set_title(f"{METHOD_TITLE.get(m.method, m.method)}\ncells won: {wins}", fontsize=10)
    handles = [Patch(facecolor="0.82", edgecolor="0.55", hatch="///",
                     label="fits neither" if n_dev == 2 else "fits none")]
    if n_dev == 2:
        for k, side in ((0, 0.7), (1, 0.3)):
            if any(mm.only_fits[k].any() for mm in meshes):
                handles.append(Patch(facecolor=cmap(side), edgecolor="0.55", hatch="xx",
                                     label=f"only {m0.hardware[k]} fits"))
    elif any((~np.all(mm.fits, axis=0)).any() for mm in meshes):
        handles.append(Patch(facecolor="0.92", edgecolor="0.55", hatch="\\\\",
                             label="some devices do not fit"))
    if any((m.winner == -2).any() for m in meshes):
        handles.append(Patch(facecolor="white", edgecolor="0.55", label="tie (within 0.1 %)"))
    if (~m0.in_context).any():
        handles.append(Patch(facecolor="white", edgecolor="0.55", hatch="..",
                             label=f"beyond context ({m0.context_limit})"))
    if n_dev == 2:
        ticks, labels = _ratio_ticks(lim)
        cb = fig.colorbar(image, ax=list(axes[0]), ticks=ticks, shrink=0.9)
        cb.ax.set_yticklabels(labels)
        cb.set_label(f"decode throughput ratio (>1: {m0.hardware[0]} faster)")
        head = f"{m0.hardware[0]} vs {m0.hardware[1]}"
    else:
        cb = fig.colorbar(image, ax=list(axes[0]), ticks=range(n_dev), shrink=0.9)
        cb.ax.set_yticklabels(m0.hardware)
        cb.set_label("fastest device")
        head = " vs ".join(m0.hardware)
    axes[0][0].legend(handles=handles, loc="lower left", fontsize=8, framealpha=0.9)
    lay = "" if m0.layout == "1 device" else f", {m0.layout}"
    fig.suptitle(f"{head}: {m0.model} ({m0.precision}{lay})", fontsize=12)
    return fig


def compare_csv(meshes: Mesh | Sequence[Mesh], path) -> None:
    import pandas as pd
    meshes = [meshes] if isinstance(meshes, Mesh) else list(meshes)
    pd.concat([m.to_dataframe() for m in meshes]).to_csv(path, index=False)


def compare_html(meshes: Mesh | Sequence[Mesh], path) -> None:
    """Self-contained interactive HTML (plotly.js embedded: opens offline)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    meshes = [meshes] if isinstance(meshes, Mesh) else list(meshes)
    m0 = meshes[0]
    n_dev = len(m0.hardware)
    fig = make_subplots(rows=1, cols=len(meshes), horizontal_spacing=0.08,
                        subplot_titles=[METHOD_TITLE.get(m.method, m.method) for m in meshes])
    lim = _color_limit(meshes)
    ticks, labels = _ratio_ticks(lim)
    for c, m in enumerate(meshes, start=1):
        x, y = np.log2(m.seq), np.log2(m.batch)
        tp = m.throughput_tok_s
        hover = np.empty(m.shape, dtype=object)
        for i, j in np.ndindex(m.shape):
            parts = [f"batch {m.batch[i]:g}, seq {m.seq[j]:g} (input {m.input_len[j]:g})"]
            for d, hw in enumerate(m.hardware):
                fit = "" if m.fits[d, i, j] else " (does not fit)"
                parts.append(f"{hw}: {tp[d, i, j]:,.0f} tok/s{fit}")
            if not m.in_context[j]:
                parts.append(f"beyond context {m.context_limit}")
            elif n_dev >= 2 and m.valid[i, j]:
                parts.append(f"ratio {m.ratio[i, j]:.3f}")
            hover[i, j] = "<br>".join(parts)
        # masked cells: 0 = fits none / beyond context (grey), k + 1 = only device k fits
        masked = np.where(m.valid, np.nan, 0.0)
        colors = ["#d0d0d0"]
        if n_dev == 2:
            for k, col in ((0, "#a6cbe3"), (1, "#f4b0a0")):
                masked = np.where(m.only_fits[k], k + 1.0, masked)
                colors.append(col)
        scale = [[v, col] for i, col in enumerate(colors)
                 for v in (i / len(colors), (i + 1) / len(colors))]
        fig.add_trace(go.Heatmap(x=x, y=y, z=masked, zmin=-0.5, zmax=len(colors) - 0.5,
                                 colorscale=scale, showscale=False, text=hover,
                                 hoverinfo="text", name="masked"), row=1, col=c)
        if n_dev == 2:
            z = np.log2(m.ratio)
            fig.add_trace(go.Heatmap(
                x=x, y=y, z=z, zmid=0, zmin=-lim, zmax=lim, colorscale="RdBu", text=hover,
                hoverinfo="text", name="ratio", showscale=(c == 1),
                colorbar=dict(title="ratio", tickvals=ticks,
                              ticktext=labels)), row=1, col=c)
            # the 1.0 line along cell edges (as in the PNG): x/y in log2, paths split by None
            xe, ye = np.log2(_edges(m.seq)), np.log2(_edges(m.batch))
            bx, by = [], []
            for line in ratio_boundary(z):
                bx += [float(xe[cc]) for _, cc in line] + [None]
                by += [float(ye[r]) for r, _ in line] + [None]
            if bx:
                fig.add_trace(go.Scatter(x=bx, y=by, mode="lines", line={"color": "black", "width": 2},
                                         hoverinfo="skip", name="ratio 1.0", showlegend=False),
                              row=1, col=c)
        else:
            w = np.where(m.winner >= 0, m.winner, np.nan)
            scale = [[k / n_dev + e / n_dev, DEVICE_COLORS[k]] for k in range(n_dev) for e in (0, 1)]
            fig.add_trace(go.Heatmap(x=x, y=y, z=w, zmin=-0.5, zmax=n_dev - 0.5, colorscale=scale,
                                     text=hover, hoverinfo="text", showscale=(c == 1),
                                     colorbar=dict(title="fastest", tickvals=list(range(n_dev)),
                                                   ticktext=list(m.hardware))), row=1, col=c)
        for axis, vals, title in (("xaxis", m.seq, "sequence length (mean KV tokens)"),
                                  ("yaxis", m.batch, "batch size")):
            tv = axis_ticks(vals)
            fig.update_layout({f"{axis}{'' if c == 1 else c}": dict(
                title=title, tickvals=[math.log2(t) for t in tv],
                ticktext=[short(t) for t in tv])})
    head = " vs ".join(m0.hardware)
    fig.update_layout(title=f"{head}: {m0.model} ({m0.precision}), decode throughput; grey: "
                            f"fits neither or beyond context; light blue/red: only that device fits",
                      width=600 * len(meshes) + 120, height=560, plot_bgcolor="white")
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)


def save_compare(meshes: Mesh | Sequence[Mesh], path) -> Path:
    """Write a comparison to ``path``; the suffix picks the format (.png .svg .html .csv)."""
    s = _suffix(path, COMPARE_SUFFIXES)
    path = Path(path)
    if s == ".csv":
        compare_csv(meshes, path)
    elif s == ".html":
        compare_html(meshes, path)
    else:
        _, plt = _mpl()
        fig = compare_figure(meshes)
        try:
            fig.savefig(path, dpi=DPI, format=s[1:])
        finally:
            plt.close(fig)
    return path


# -- roofline chart --------------------------------------------------------------------
def _roofs(a: Analysis) -> dict:
    """Achievable roofs of the analysis' device: peaks and bandwidth x its efficiency."""
    return Roofline.of(a.hardware, a.precision, a.layout, a.efficiency).roofs()


def _check_scalar(analyses: Sequence[Analysis]) -> None:
    if not analyses:
        raise InputError("hardware: give at least one device")
    for a in analyses:
        if np.size(a.batch) != 1:
            raise InputError("roofline: batch, input and output must be single values")


def _label_groups(points: list[dict], min_share: float = 0.02, near_dec: float = 0.35) -> dict:
    """Operators that sit close together (within ``near_dec`` decades on both axes) share
    one label at the biggest one: {(x, y): [names]}."""
    groups: list[tuple[float, float, list[dict]]] = []
    for p in sorted(points, key=lambda p: -p["share"]):
        if p["share"] < min_share:
            continue
        lx, ly = math.log10(p["intensity"]), math.log10(p["flops_s"])
        for gx, gy, members in groups:
            if abs(gx - lx) <= near_dec and abs(gy - ly) <= near_dec:
                members.append(p)
                break
        else:
            groups.append((lx, ly, [p]))
    out = {}
    for _, _, ps in groups:
        names = [p["op"] for p in ps]
        if len(names) > 4:
            names = names[:3] + [f"+{len(names) - 3} more"]
        out[(ps[0]["intensity"], ps[0]["flops_s"])] = names
    return out


def _roofline_data(analyses: Sequence[Analysis], phases):
    """Operator points, device roofs and the x range (whole decades around them)."""
    _check_scalar(analyses)
    pts = report.roofline_points(analyses, phases)
    roofs = [_roofs(a) for a in analyses]
    xs = [p["intensity"] for p in pts] + [r["ridge"] for r in roofs]
    xmin = 10 ** math.floor(math.log10(max(min(xs), 1e-3)) - 0.3)
    xmax = 10 ** math.ceil(math.log10(max(xs)) + 0.3)
    return pts, roofs, xmin, xmax


def roofline_figure(analyses: Sequence[Analysis], phases=("prefill", "decode")):
    """Log-log roofline of one or more devices with the operators of the chosen phases."""
    matplotlib, plt = _mpl()
    pts, roofs, xmin, xmax = _roofline_data(analyses, phases)
    fig, ax = plt.subplots(figsize=ROOFLINE_SIZE_IN, dpi=DPI, layout="constrained")
    ridges = [r["ridge"] for r in roofs]
    lo, hi = min(ridges), max(ridges)
    ax.axvspan(xmin, lo, color="#cfe3f5", alpha=0.6, lw=0)
    ax.axvspan(hi, xmax, color="#f7d4d4", alpha=0.6, lw=0)
    if hi > lo * 1.01:
        ax.axvspan(lo, hi, color="0.92", alpha=0.8, lw=0)
    x = np.geomspace(xmin, xmax, 400)
    ymax = max(r["gemm"] for r in roofs)
    for k, (a, r) in enumerate(zip(analyses, roofs)):
        c = DEVICE_COLORS[k % len(DEVICE_COLORS)]
        ax.plot(x, np.minimum(r["gemm"], x * r["bw"]), color=c, lw=2.2,
                label=f"{a.hardware.id}: {r['gemm'] / 1e12:.0f} TFLOP/s, {r['bw'] / 1e9:.0f} GB/s")
        for peak, label in r["peaks"].items():
            if peak != r["gemm"]:
                xr = peak / r["bw"]
                xx = x[x >= xr]
                ax.plot(xx, np.full_like(xx, peak), color=c, lw=1, ls="--", alpha=0.7)
                ax.text(xmax / 1.1, peak * 1.06, label, color=c, fontsize=7, ha="right")
        ax.plot([r["ridge"]], [r["gemm"]], "o", color=c, ms=6, mec="k")
        ax.annotate(f"ridge {r['ridge']:.0f} FLOP/B", (r["ridge"], r["gemm"]),
                    textcoords="offset points", xytext=(6, 6 + 11 * k), fontsize=8, color=c)
        for ph in phases:
            sel = [p for p in pts if p["hardware"] == a.hardware.id and p["phase"] == ph]
            if not sel:
                continue
            ax.scatter([p["intensity"] for p in sel], [p["flops_s"] for p in sel],
                       s=[20 + 300 * p["share"] for p in sel], marker=PHASE_MARKERS[ph][0],
                       facecolor=c, edgecolor="k", linewidth=0.5, alpha=0.75, zorder=3)
            if k == 0:
                for (xi, yi), names in _label_groups(sel).items():
                    ax.annotate("\n".join(names), (xi, yi), fontsize=7, va="top",
                                textcoords="offset points", xytext=(6, -6), color="0.2")
    ymin = min([p["flops_s"] for p in pts] + [xmin * min(r["bw"] for r in roofs)]) / 2
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymin, ymax * 3)
    ax.set_xlabel("arithmetic intensity (FLOP / byte moved)")
    ax.set_ylabel("attainable FLOP/s")
    ax.text(xmin * 1.3, ymax * 1.8, "memory-bound", fontsize=9, color="#1f4e79")
    ax.text(xmax / 1.3, ymax * 1.8, "compute-bound", fontsize=9, color="#7f1d1d", ha="right")
    from matplotlib.lines import Line2D
    handles, _ = ax.get_legend_handles_labels()
    names = {"prefill": "prefill (total)", "decode": "decode (mean step)"}
    handles += [Line2D([], [], marker=PHASE_MARKERS[ph][0], ls="", color="0.4", mec="k",
                       label=f"{names[ph]} operator; size = time share") for ph in phases]
    ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.9)
    a = analyses[0]
    ax.set_title(f"{a.model.name} ({a.precision.label}): batch {a.batch.item():g}, input "
                 f"{a.input_len.item():g}, output {a.output_len.item():g}", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    return fig


def roofline_html(analyses: Sequence[Analysis], path, phases=("prefill", "decode")) -> None:
    import plotly.graph_objects as go

    pts, roofs, xmin, xmax = _roofline_data(analyses, phases)
    x = np.geomspace(xmin, xmax, 400)
    fig = go.Figure()
    for k, (a, r) in enumerate(zip(analyses, roofs)):
        c = DEVICE_COLORS[k % len(DEVICE_COLORS)]
        fig.add_trace(go.Scatter(x=x, y=np.minimum(r["gemm"], x * r["bw"]), mode="lines",
                                 line=dict(color=c, width=3), name=f"{a.hardware.id} roofline",
                                 hovertemplate="%{x:.3g} FLOP/B: %{y:.3s}FLOP/s<extra></extra>"))
        fig.add_trace(go.Scatter(x=[r["ridge"]], y=[r["gemm"]], mode="markers+text",
                                 marker=dict(color=c, size=9, line=dict(color="black", width=1)),
                                 text=[f"ridge {r['ridge']:.0f}"], textposition="top left",
                                 name=f"{a.hardware.id} ridge", showlegend=False))
        for ph in phases:
            sel = [p for p in pts if p["hardware"] == a.hardware.id and p["phase"] == ph]
            if not sel:
                continue
            fig.add_trace(go.Scatter(
                x=[p["intensity"] for p in sel], y=[p["flops_s"] for p in sel], mode="markers",
                marker=dict(color=c, symbol=PHASE_MARKERS[ph][1], line=dict(color="black", width=1),
                            size=[8 + 30 * math.sqrt(p["share"]) for p in sel], opacity=0.8),
                name=f"{a.hardware.id} {ph}",
                text=[f"{p['op']} ({ph})<br>{p['intensity']:.3g} FLOP/B, {p['flops_s'] / 1e12:.3g} "
                      f"TFLOP/s<br>{100 * p['share']:.1f}% of {ph} time, {p['bound']}-bound"
                      for p in sel], hoverinfo="text"))
    ridges = [r["ridge"] for r in roofs]
    fig.add_vrect(x0=xmin, x1=min(ridges), fillcolor="#cfe3f5", opacity=0.5, line_width=0,
                  layer="below")
    fig.add_vrect(x0=max(ridges), x1=xmax, fillcolor="#f7d4d4", opacity=0.5, line_width=0,
                  layer="below")
    a = analyses[0]
    fig.update_layout(title=f"Roofline: {a.model.name} ({a.precision.label}), batch "
                            f"{a.batch.item():g}, input {a.input_len.item():g}, output "
                            f"{a.output_len.item():g}",
                      xaxis=dict(type="log", title="arithmetic intensity (FLOP/byte)"),
                      yaxis=dict(type="log", title="attainable FLOP/s"),
                      width=900, height=620, plot_bgcolor="white")
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)


def save_roofline(analyses: Sequence[Analysis], path, phases=("prefill", "decode")) -> Path:
    """Write a roofline chart (.png .svg .html) or its points (.csv)."""
    s = _suffix(path, ROOFLINE_SUFFIXES)
    path = Path(path)
    if s == ".csv":
        import pandas as pd
        _check_scalar(analyses)
        pd.DataFrame(report.roofline_points(analyses, phases)).to_csv(path, index=False)
    elif s == ".html":
        roofline_html(analyses, path, phases)
    else:
        _, plt = _mpl()
        fig = roofline_figure(analyses, phases)
        try:
            fig.savefig(path, dpi=DPI, format=s[1:])
        finally:
            plt.close(fig)
    return path


__all__ = ["compare_figure", "compare_html", "compare_csv", "save_compare", "roofline_figure",
           "roofline_html", "save_roofline", "compare_figure_size_px",
           "roofline_figure_size_px", "ratio_boundary", "axis_ticks", "validation_figure",
           "log_ticks", "plain_number"]


# -- validation scatter ---------------------------------------------------------------------
def validation_scatter(result, path) -> Path:
    """Predicted vs measured, log-log, one panel per metric, +-10 % and +-25 % bands,
    points coloured by device. ``result`` is a :class:`llmroofline.validate.Validation`."""
    kind = _suffix(path, (".png", ".svg"))
    fig = validation_figure(result)
    out = Path(path)
    try:
        fig.savefig(out, format=kind.lstrip("."), dpi=110)
    finally:
        _mpl()[1].close(fig)
    return out


def log_ticks(lo: float, hi: float, max_ticks: int = 6) -> list[float]:
    """Round tick values inside [lo, hi] of a log axis: 1-2-5 per decade, thinned to
    1-per-decade, then every k-th decade, until at most ``max_ticks`` remain (at least
    two when the range holds two 1-2-5 values)."""
    d0, d1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    for mants in ((1, 2, 5), (1, 3), (1,)):
        vals = [m * 10.0 ** d for d in range(d0, d1 + 1) for m in mants]
        vals = [v for v in vals if lo <= v <= hi]
        if len(vals) <= max_ticks:
            break
    if len(vals) > max_ticks:
        k = math.ceil(len(vals) / max_ticks)
        vals = vals[::k]
    if len(vals) < 2:       # less than a 1-2-5 step wide: both ends, rounded
        vals = [float(f"{lo * 1.05:.2g}"), float(f"{hi / 1.05:.2g}")]
    return vals


def plain_number(v: float) -> str:
    """Decimal tick text: 0.5, 20, 500, 2k, 10k, 1M (k = 1e3, M = 1e6)."""
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def validation_figure(result):
    """The figure of :func:`validation_scatter` (returned open, for tests)."""
    _, plt = _mpl()
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter
    metrics = [m for m in ("throughput_tok_s", "ttft_ms", "tpot_ms", "e2e_ms")
               if any(p.metric == m for p in result.predictions)]
    if not metrics:
        raise InputError("plot: there are no predictions to plot")
    devices = sorted({p.row.hardware for p in result.predictions})
    colors = {d: plt.cm.tab10(i % 10) for i, d in enumerate(devices)}
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 4.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        ps = [p for p in result.predictions if p.metric == metric]
        meas = np.array([p.measured for p in ps])
        lo, hi = meas.min() / 1.6, meas.max() * 1.6
        x = np.geomspace(lo, hi, 50)
        ax.fill_between(x, x / 1.25, x * 1.25, color="0.9", label="±25 %")
        ax.fill_between(x, x / 1.1, x * 1.1, color="0.8", label="±10 %")
        ax.plot(x, x, color="0.4", lw=0.8)
        for d in devices:
            sel = [p for p in ps if p.row.hardware == d]
            if sel:
                ax.scatter([p.measured for p in sel], [p.predicted for p in sel], s=14,
                           color=colors[d], label=d, alpha=0.85, edgecolor="none")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        # matplotlib labels the minor ticks of a short log axis (6x10^0, 2x10^1, ...) and
        # they collide; a few round 1-2-5 values in plain numbers instead
        ticks = log_ticks(lo, hi)
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(FixedLocator(ticks))
            axis.set_major_formatter(FuncFormatter(lambda v, _: plain_number(v)))
            axis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"measured {metric}")
        ax.set_ylabel(f"predicted {metric}")
        e = np.abs([p.error for p in ps])
        ax.set_title(f"{metric}: n={len(ps)}, median |err| {np.median(e):.0%}", fontsize=9)
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"llmroofline predictions vs measurements (profile {result.profile})", fontsize=10)
    fig.tight_layout()
    return fig
