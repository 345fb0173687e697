"""Axes drawn again after their limits changed leave nothing of their old tick labels, and labels that grow past
the figure's edge lay the figure out again, so none is cut off."""

import tkinter as tk

import numpy as np
import pytest
from matplotlib.figure import Figure

from ui.plots.base import Blitter, TabCanvas, _overflow, is_frozen


@pytest.fixture
def canvas():
    root = tk.Tk()
    c = TabCanvas(Figure(figsize=(6, 3), dpi=100), master=root)
    c.get_tk_widget().pack()
    yield c
    root.destroy()


def _pixels(canvas) -> np.ndarray:
    return np.asarray(canvas.get_renderer().buffer_rgba())[..., :3].astype(int)


def test_an_axes_drawn_again_with_new_limits_wipes_its_old_tick_labels(canvas):
    fig = canvas.figure
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for ax in (left, right):
        ax.plot([0, 2500], [0, 1])
        ax.set_xlim(0, 2500)
    blitter = Blitter(canvas, [])
    canvas.draw_agg()
    # the old labels (0 ... 2500) sit under the axes where the new ones (0 ... 7000) do not: once the limits
    # changed, reading the labels' extents now would place them where the new limits put those numbers
    right.set_xlim(0, 7000)
    boxes = blitter.compose_axes([right])
    assert isinstance(boxes, list)  # drawn as one axes, not the figure
    redrawn = _pixels(canvas)
    canvas.draw_agg()
    whole = _pixels(canvas)
    assert np.array_equal(redrawn, whole)
    assert canvas.ink[right].x1 > canvas.ink[right].x0  # the redraw noted where its new labels are


def _tab_with_long_labels_coming(h, tiny):
    h.steps(6)
    tab = h.app.layout.gradients
    h.app.layout.select_tab(tab)
    assert h.pump(lambda: tab.built and not tab.drawing() and not tab._need_full, 20)
    fig = tab.figure
    assert is_frozen(fig) and _overflow(fig.bbox, list(tab.canvas.ink.values())) <= 1.0
    # the right-hand axes' last tick label, at the figure's right edge, becomes much longer than the layout was
    # made for (a run that grew from tens of steps to a hundred thousand)
    tab.ax_ratio.set_xlim(0, 100000)
    return tab


def _fits(h, tab) -> bool:
    assert h.pump(lambda: not tab.drawing() and not tab._need_full and not tab._layout_owed, 20)
    fig = tab.figure
    return is_frozen(fig) and _overflow(fig.bbox, list(tab.canvas.ink.values())) <= 1.0


def test_an_axes_redraw_whose_labels_leave_the_figure_lays_it_out_again(harness, tiny):
    h = harness(tiny)
    tab = _tab_with_long_labels_coming(h, tiny)
    full, tab.last_full = tab.full_draws, 0.0  # the throttle allows a full draw now
    assert tab.present(need_full=True, only=[tab.ax_ratio])  # on the drawing thread: one axes, then the figure
    assert _fits(h, tab) and tab.full_draws == full + 1
    assert "100000" in [t.get_text() for t in tab.ax_ratio.get_xticklabels()]


def test_a_full_draw_whose_labels_leave_the_figure_is_followed_by_one_laid_out_again(harness, tiny):
    h = harness(tiny)
    tab = _tab_with_long_labels_coming(h, tiny)
    tab.full_draw()  # on the Tk thread, the layout frozen: the label is cut off at the edge
    fig = tab.figure
    assert _overflow(fig.bbox, list(tab.canvas.ink.values())) > 1.0 and tab._layout_owed
    tab.last_full = 0.0  # the throttle allows the next full draw now
    assert tab.present()
    assert _fits(h, tab)


def test_ink_a_layout_cannot_fit_does_not_lay_the_figure_out_on_every_draw(harness, tiny):
    h = harness(tiny)
    tab = _tab_with_long_labels_coming(h, tiny)
    tab.canvas.laid_out_overflow = 500.0  # as if the last layout itself had left the labels this far out
    tab.full_draw()
    assert not tab._layout_owed and is_frozen(tab.figure)
