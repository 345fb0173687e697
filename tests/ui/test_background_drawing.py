"""Plot tabs draw on a thread of their own; their images and tick labels draw faster and look the same.

* a periodic refresh of a training tab is drawn on the drawing thread and put on screen by the Tk thread,
  and what is on screen then is what a draw on the Tk thread makes;
* while a background draw runs, nothing on the Tk thread touches the figure: a forced refresh, a new session
  or a resize first waits for it;
* `PixelImage` draws the pixels `AxesImage` draws; tick labels as glyphs and log labels in superscripts say
  what matplotlib's say;
* a tab that shows statistics steps has the worker make them at its pace, and the run's numbers do not
  change with them.
"""

from __future__ import annotations

import dataclasses

import matplotlib
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from simulator.presets import load_preset
from simulator.session import TrainingSession
from ui.plots.background import DRAWER
from ui.plots.pixel_image import PixelImage, pixel_imshow, screen_pixels
from ui.plots.textcache import GlyphText
from ui.plots.ticks import SuperscriptLogFormatter, glyph_ticks, plain_power
from ui.timer import Timer


def _trained(h, tab, steps: int = 12):
    h.steps(steps)
    h.app.layout.select_tab(tab)
    assert h.pump(lambda: tab.built and not tab.drawing() and not tab._need_full, 20)
    h.pump(timeout=0.3)
    return tab


def _pixels(canvas) -> np.ndarray:
    return np.asarray(canvas.get_renderer().buffer_rgba()).copy()


@pytest.mark.parametrize("name", ["gradients", "attention", "activations", "overview"])
def test_a_periodic_refresh_is_drawn_on_the_drawing_thread_as_the_tk_thread_draws_it(harness, tiny, name):
    h = harness(tiny)
    tab = _trained(h, getattr(h.app.layout, name))
    assert tab.draws_in_background
    tab.full_draw()  # the reference: the whole figure drawn on the Tk thread
    reference = _pixels(tab.canvas)
    jobs, blits = DRAWER.jobs, tab.blits
    tab.last_blit = 0.0
    tab._drawn = tab._version = None  # as if a new statistics step came: the same data, drawn again
    assert tab.refresh()
    assert tab.drawing()  # handed to the drawing thread; the Tk thread goes on
    assert h.pump(lambda: not tab.drawing(), 10)  # the Tk loop puts it on screen once it is done
    assert DRAWER.jobs == jobs + 1 and tab.blits == blits + 1
    assert np.array_equal(_pixels(tab.canvas), reference)


def test_the_tk_thread_waits_for_a_background_draw_before_it_touches_the_figure(harness, tiny):
    h = harness(tiny)
    tab = _trained(h, h.app.layout.gradients)
    tab.last_blit = 0.0
    tab._drawn = None
    assert tab.refresh() and tab.drawing()
    assert tab.refresh(force=True)  # a forced refresh (the tab shown again) first finishes the draw in flight
    assert not tab.drawing()
    tab.last_blit, tab._drawn = 0.0, None
    assert tab.refresh() and tab.drawing()
    tab.canvas.draw()  # as a resize's idle draw does: it waits too
    assert not tab.drawing()
    tab.last_blit, tab._drawn = 0.0, None
    assert tab.refresh() and tab.drawing()
    tab.on_session(h.app.info)  # a new session clears the figure: after the draw
    assert not tab.drawing()


def test_a_draw_that_fails_on_the_drawing_thread_is_drawn_again_whole(harness, tiny, monkeypatch, capsys):
    h = harness(tiny)
    tab = _trained(h, h.app.layout.activations)

    def broken():
        raise RuntimeError("a bug in a draw")

    monkeypatch.setattr(tab.blitter, "compose", broken)
    tab.last_blit, tab._drawn = 0.0, None
    assert tab.refresh()
    assert h.pump(lambda: not tab.drawing(), 10)
    assert "a bug in a draw" in capsys.readouterr().err
    assert tab._need_full  # the next refresh draws the whole figure
    monkeypatch.undo()
    full = tab.full_draws
    tab.last_full = 0.0
    tab.refresh()
    assert h.pump(lambda: not tab.drawing() and tab.full_draws == full + 1, 10)


@pytest.mark.parametrize("shape, kwargs", [((64, 64), {}),
                                           ((6, 200), {"aspect": "auto", "extent": (0, 300, 5.5, -0.5)}),
                                           ((5, 9), {"origin": "lower"}), ((5, 9), {"aspect": "auto"}),
                                           ((3, 11), {"extent": (-2, 9, 0, 3), "aspect": "auto"})])
def test_pixel_image_draws_the_pixels_of_a_nearest_neighbour_axes_image(shape, kwargs):
    rgba = np.random.default_rng(0).integers(0, 256, size=(*shape, 4), dtype=np.uint8)
    rgba[..., 3] = 255

    def render(show):
        fig = Figure(figsize=(3.3, 2.7), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_axes([0.13, 0.11, 0.71, 0.77])
        image = show(ax, rgba, interpolation="nearest", **kwargs)
        fig.canvas.draw()
        return image, np.asarray(fig.canvas.buffer_rgba()).copy()

    _plain, want = render(lambda ax, d, **k: ax.imshow(d, **k))
    fast, got = render(pixel_imshow)
    assert isinstance(fast, PixelImage)
    assert np.array_equal(got, want)


def test_screen_pixels_gathers_the_cell_under_each_pixel_centre():
    rgba = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)  # 2 rows, 3 columns
    # columns 0..2 over x 10..16 (2 px each); row 0 at the top edge y 8, row 1 down to y 4 (2 px each)
    pixels, x, y = screen_pixels(rgba, (10.0, 16.0), (8.0, 4.0), (0.0, 0.0, 100.0, 100.0))
    assert (x, y) == (10, 4) and pixels.shape == (4, 6, 4)
    # the block's first row is the bottom one, as Agg's draw_image takes it: row 1 of the array
    assert np.array_equal(pixels[0, ::2], rgba[1]) and np.array_equal(pixels[3, ::2], rgba[0])
    assert np.array_equal(pixels[:, 0], pixels[:, 1])
    # clipped: only what is inside the clip box
    pixels, x, y = screen_pixels(rgba, (10.0, 16.0), (8.0, 4.0), (12.0, 0.0, 14.0, 6.0))
    assert (x, y) == (12, 4) and pixels.shape == (2, 2, 4)
    assert np.array_equal(pixels[0, 0], rgba[1, 1])
    assert screen_pixels(rgba, (10.0, 16.0), (8.0, 4.0), (20.0, 0.0, 30.0, 6.0)) is None


def test_log_labels_in_superscripts_say_what_the_mathtext_ones_say():
    assert plain_power("$\\mathdefault{10^{-3}}$") == "10⁻³"
    assert plain_power("$\\mathdefault{2\\times10^{-1}}$") == "2×10⁻¹"
    assert plain_power("$\\mathdefault{10^{12}}$") == "10¹²"
    assert plain_power("$\\mathdefault{0}$") == "0"
    assert plain_power("") == "" and plain_power("0.5") == "0.5"
    assert plain_power("$\\mathdefault{10^{\\frac{1}{2}}}$") == "$\\mathdefault{10^{\\frac{1}{2}}}$"  # not ours

    def labels(formatter=None):
        fig = Figure()
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.set_yscale("log")
        ax.set_ylim(2e-5, 3.0)
        if formatter is not None:
            ax.yaxis.set_major_formatter(formatter)
        fig.canvas.draw()
        return [t.get_text() for t in ax.get_yticklabels()]

    theirs, ours = labels(), labels(SuperscriptLogFormatter())
    assert ours == [plain_power(t) for t in theirs] and "10⁻³" in ours and "10⁰" in ours


def test_glyph_ticks_makes_every_tick_label_glyph_text_now_and_later():
    fig = Figure(figsize=(4, 3), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1])
    glyph_ticks(fig)
    glyph_ticks(fig)  # idempotent
    fig.canvas.draw()
    before = [t.get_text() for t in ax.get_xticklabels()]
    ax.set_xlim(0, 1000)  # other ticks, more of them: made by the axis later
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(12))
    fig.canvas.draw()
    labels = ax.get_xticklabels()
    assert len(labels) > len(before)
    assert all(isinstance(t, GlyphText) for t in labels + ax.get_yticklabels())
    assert [t.get_text() for t in labels][:3] == ["0", "100", "200"]


def test_a_timer_calls_its_callback_each_time_it_is_started(harness, tiny):
    h = harness(tiny)
    calls = []
    timer = Timer(h.root, lambda: calls.append(1))
    name = timer.name
    for n in range(3):
        timer.start(1)
        assert h.pump(lambda n=n: len(calls) > n, 5)
    assert len(calls) == 3 and timer.name == name  # one Tcl command for all of them
    timer.start(50)
    timer.cancel()
    h.pump(timeout=0.2)
    assert len(calls) == 3


def test_extra_statistics_steps_change_none_of_the_runs_numbers(tiny):
    config = load_preset(tiny)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, stats_every=5))
    plain, asked = TrainingSession(config), TrainingSession(config)
    for step in range(1, 9):
        asked.request_statistics()
        a, b = plain.step(), asked.step()
        assert a.loss == b.loss and a.grad_norm == b.grad_norm
        assert bool(a.grad_norms) == (step % 5 == 0 or step == 1)  # the preset's own statistics steps
        assert b.grad_norms and b.update_ratios  # and one on every step asked for
    assert np.array_equal(plain.model.params, asked.model.params)
    off = dataclasses.replace(config, train=dataclasses.replace(config.train, stats_every=0))
    quiet = TrainingSession(off)
    quiet.request_statistics()
    assert not quiet.step().grad_norms  # statistics turned off stay off


def test_a_statistics_tab_on_screen_asks_the_worker_for_statistics_at_its_pace(harness, tiny):
    h = harness(tiny)
    h.steps(2)
    layout = h.app.layout
    layout.select_tab(layout.gradients)
    assert h.pump(lambda: h.app.worker.statistics_per_second == layout.gradients.statistics_per_second > 0, 10)
    layout.select_tab(layout.overview)
    assert h.pump(lambda: h.app.worker.statistics_per_second == 0.0, 10)
