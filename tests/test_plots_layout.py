"""Layout properties of the pictures (not pixels): the ratio-1.0 line of the comparison
heatmap is whole and sits on cell edges between cells on opposite sides of 1, every axis
end has a tick label, log-axis tick labels do not overlap, and the Pareto labels stay
inside their axes and clear of each other."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from llmroofline import plots
from llmroofline.serving import plots as splots


# -- the 1.0 line ---------------------------------------------------------------------------
def _edges_of(paths):
    out = set()
    for p in paths:
        for a, b in itertools.pairwise(p):
            out.add(frozenset((a, b)))
    return out


def test_boundary_of_a_staircase_is_one_path_on_the_right_edges():
    # rows = batch (up), columns = seq; device 0 faster (z > 0) at small seq and large batch
    z = np.array([[-1.0, -1, -1, -1],
                  [1.0, -1, -1, -1],
                  [1.0, 1, -1, -1],
                  [1.0, 1, 1, np.nan]])
    paths = plots.ratio_boundary(z)
    assert len(paths) == 1
    # hand-traced (vertex = (row edge, column edge)): along row edge 1 under cell (1, 0),
    # up column edge 1, along row edge 2 under (2, 1), up column edge 2, along row edge 3
    # under (3, 2); cell (3, 3) is not compared, so no edge borders it
    expected = {frozenset(e) for e in [((1, 0), (1, 1)), ((1, 1), (2, 1)), ((2, 1), (2, 2)),
                                       ((2, 2), (3, 2)), ((3, 2), (3, 3))]}
    assert _edges_of(paths) == expected
    ends = {paths[0][0], paths[0][-1]}
    assert ends == {(1, 0), (3, 3)}


def test_boundary_edges_separate_opposite_cells_and_ties_draw_nothing():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(9, 11))
    z[rng.random(z.shape) < 0.2] = np.nan
    z[0, 0] = 0.0                                  # a tie: within 0.1 %, on neither side
    for e in _edges_of(plots.ratio_boundary(z)):
        (r0, c0), (r1, _) = sorted(e)
        if r0 == r1:          # horizontal edge on row edge r0 between rows r0 - 1 and r0
            a, b = z[r0 - 1, c0], z[r0, c0]
        else:                 # vertical edge on column edge c0 between columns c0 - 1, c0
            a, b = z[r0, c0 - 1], z[r0, c0]
        assert a * b < 0, (e, a, b)
    # every pair of opposite neighbours has its edge
    n_expected = int(np.sum(z[:, :-1] * z[:, 1:] < 0) + np.sum(z[:-1] * z[1:] < 0))
    assert len(_edges_of(plots.ratio_boundary(z))) == n_expected
    assert plots.ratio_boundary(np.zeros((3, 3))) == []


@pytest.fixture(scope="module")
def mesh_fig():
    """The docs/README case: Llama-2-13B, A100 vs H20, 1:256 x 128:4032 (default profile)."""
    from llmroofline import compare as cmp
    from llmroofline.gridspec import parse_grid
    ms = cmp.compare_methods("llama-2-13b", ["a100-sxm-80gb", "h20"], parse_grid("b", "1:256"),
                             parse_grid("s", "128:4032"))
    meshes = [ms["ops"], ms["global"]]
    fig = plots.compare_figure(meshes)
    fig.canvas.draw()
    yield meshes, fig
    plots._mpl()[1].close(fig)


def test_compare_heatmap_draws_the_one_line_whole(mesh_fig):
    meshes, fig = mesh_fig
    for ax, m in zip(fig.axes[:2], meshes):
        z = np.log2(m.ratio)
        paths = plots.ratio_boundary(z)
        # this mesh has device 0 ahead only in the top-left corner: one connected line
        assert len(paths) == 1
        lines = [ln for ln in ax.get_lines() if ln.get_color() == "k"]
        assert len(lines) == 1
        xe, ye = plots._edges(m.seq), plots._edges(m.batch)
        # the drawn vertices lie on cell edges
        x, y = lines[0].get_data()
        assert all(np.isclose(xe, xi).any() for xi in x)
        assert all(np.isclose(ye, yi).any() for yi in y)
        assert "1.0" in [t.get_text() for t in ax.texts]


def test_compare_heatmap_labels_first_and_last_column_and_row(mesh_fig):
    meshes, fig = mesh_fig
    for ax, m in zip(fig.axes[:2], meshes):
        for axis, vals in ((ax.xaxis, m.seq), (ax.yaxis, m.batch)):
            ticks = {round(t.get_loc(), 6): t.label1.get_text() for t in axis.get_major_ticks()
                     if t.label1.get_visible()}
            assert ticks[round(float(vals[0]), 6)] == plots.short(vals[0])
            assert ticks[round(float(vals[-1]), 6)] == plots.short(vals[-1])
            assert all(ticks.values())
        _assert_no_overlap(ax.get_xticklabels(), fig)


def test_axis_ticks_ends_and_spacing():
    seq = np.round(np.geomspace(128, 32768, 40))
    t = plots.axis_ticks(seq)
    assert t[0] == seq[0] and t[-1] == seq[-1] and len(t) <= 9
    gaps = np.diff(np.log2(t))
    assert gaps.min() >= 0.5 - 1e-9          # never closer than half a power of two step
    assert plots.axis_ticks(np.array([64.0])) == [64.0]
    assert plots.axis_ticks(np.array([1.0, 2, 4, 8])) == [1.0, 2.0, 4.0, 8.0]


# -- validation scatter: log ticks --------------------------------------------------------------
def _assert_no_overlap(labels, fig):
    r = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(r) for t in labels if t.get_visible() and t.get_text()]
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), (a, b)
    return boxes


def test_log_ticks_are_round_and_few():
    assert plots.log_ticks(6, 60) == [10, 20, 50]
    # 1-2-5 gives 10 values (50 .. 5e4): too many; 1-3 gives six
    assert plots.log_ticks(40, 5e4) == [100, 300, 1e3, 3e3, 1e4, 3e4]
    assert plots.log_ticks(1, 1e8) == [1, 100, 1e4, 1e6, 1e8]  # every other decade
    assert plots.log_ticks(1, 1e9)[0] == 1 and len(plots.log_ticks(1, 1e9)) <= 6
    lo_hi = plots.log_ticks(11, 19)                             # no 1-2-5 value inside
    assert len(lo_hi) == 2 and 11 <= lo_hi[0] < lo_hi[1] <= 19
    assert [plots.plain_number(v) for v in (0.5, 20, 3000, 1e5, 2e6)] == \
        ["0.5", "20", "3k", "100k", "2M"]


def test_validation_scatter_tick_labels_do_not_overlap():
    from llmroofline.validate import validate
    res = validate()
    fig = plots.validation_figure(res)
    try:
        fig.canvas.draw()
        for ax in fig.axes:
            for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
                boxes = _assert_no_overlap(labels, fig)
                assert len(boxes) >= 2
            # minor ticks carry no text (they were what collided: 6x10^0, 2x10^1, ...)
            assert not any(t.get_text() for t in ax.get_xticklabels(minor=True))
    finally:
        plots._mpl()[1].close(fig)


# -- Pareto labels ---------------------------------------------------------------------------
def _fake_search():
    """Points like docs/img/serving_pareto.png: the front ends at the top right, next to
    the TPOT limit, with two labels close together there."""
    def pt(hw, tp, b, t, rate, tpot, pareto=False):
        return SimpleNamespace(hardware=hw, tp=tp, max_batch=b, max_tokens=t, rate=rate,
                               tpot_s=tpot, pareto=pareto, per_device=rate / tp,
                               label=f"{f'TP{tp} ' if tp > 1 else ''}{hw} b{b} t{t}")
    pts = [pt("h100-sxm", 4, 64, 8192, 23.2, 0.0112, True),
           pt("h100-sxm", 2, 64, 8192, 16.2, 0.0151, True),
           pt("h100-sxm", 1, 64, 8192, 10.0, 0.0229, True),
           pt("h100-sxm", 2, 128, 8192, 21.1, 0.0251, True),
           pt("h100-sxm", 1, 128, 8192, 13.4, 0.0387, True),
           pt("h100-sxm", 1, 256, 2048, 14.2, 0.0481, True),
           pt("h100-sxm", 1, 256, 8192, 14.42, 0.0487, True),
           pt("a100-sxm-80gb", 1, 256, 8192, 4.8, 0.0496)]
    best = pts[-2]
    best.replicas, best.devices, best.cost_usd_h = 7, 7, 20.93
    return SimpleNamespace(points=pts, best=best, rate_target=100.0, percentile=99.0,
                           slo={"max_tpot_s": 0.050})


def test_pareto_labels_inside_axes_and_apart(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt
    seen = {}
    real_savefig = plt.Figure.savefig

    def spy(fig, *a, **k):          # look at the figure as it is written
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        ax = fig.axes[0]
        seen["box"] = ax.get_window_extent(r)
        seen["labels"] = [t for t in ax.texts if t.get_text()]
        seen["boxes"] = [t.get_window_extent(r) for t in seen["labels"]]
        return real_savefig(fig, *a, **k)

    monkeypatch.setattr(plt.Figure, "savefig", spy)
    out = splots.plot_pareto(_fake_search(), tmp_path / "pareto.png")
    assert out.exists()
    box = seen["box"]
    texts = sorted(t.get_text() for t in seen["labels"])
    assert texts == sorted(q.label for q in _fake_search().points if q.pareto)
    for bb in seen["boxes"]:
        assert box.x0 - 0.5 <= bb.x0 and bb.x1 <= box.x1 + 0.5, (bb, box)
        assert box.y0 - 0.5 <= bb.y0 and bb.y1 <= box.y1 + 0.5, (bb, box)
    for a, b in itertools.combinations(seen["boxes"], 2):
        inter = max(0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(0, min(a.y1, b.y1) - max(a.y0, b.y0))
        assert inter == 0 or math.isclose(inter, 0, abs_tol=1.0), (a, b)
