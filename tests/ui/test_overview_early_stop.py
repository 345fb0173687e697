"""The Overview marks where a run stopped early and the best evaluation, whose weights were restored."""

from __future__ import annotations

import subprocess

import numpy as np

from tests.ui.test_early_stop_status import PRESET


def test_the_loss_curves_mark_the_early_stop_and_the_best_step(harness, tmp_path, shots):
    path = tmp_path / "es-window.yaml"
    path.write_text(PRESET, encoding="utf-8")
    h = harness(str(path))
    tab = h.app.layout.overview
    h.app.layout.select_tab(tab)
    assert h.pump(lambda: tab.built, 20)
    assert not tab.stop_line.get_visible() and not tab.best_mark.get_visible()  # nothing stopped yet
    h.app.layout.run_button.invoke()
    assert h.pump(lambda: "early stop" in h.app.message and not h.app.running, 60), h.app.message
    assert h.pump(lambda: tab._early_drawn is not None and not tab._need_full, 10)
    es = tab.early_stop
    assert (es.step, es.best_step, es.restored) == (4, 2, True)
    # the line at the stopping step, the star on the validation point of the best step, their labels
    assert tab.stop_line.get_visible() and list(tab.stop_line.get_xdata()) == [4, 4]
    assert tab.stop_label.get_text().strip() == "early stop" and tab.stop_label.get_position()[0] == 4
    vx, vy = h.app.history.val.arrays()
    best = float(vy[list(vx).index(2)])
    assert tab.best_mark.get_visible()
    assert list(tab.best_mark.get_xdata()) == [2] and tab.best_mark.get_ydata()[0] == es.best_loss == best
    assert tab.best_label.get_text() == "best, restored" and tab.best_label.xy == (2, best)
    # on screen: the line's pixels are drawn at the stopping step
    h.pump(timeout=0.3)
    png = shots / "1280x800-Overview-early-stop.png"
    subprocess.run(["import", "-window", "root", "-crop", "1280x800+0+0", str(png)], check=True, timeout=30)
    buf = np.asarray(tab.canvas.buffer_rgba())
    x, _ = tab.ax_loss.transData.transform((4, 0))
    y0, y1 = tab.ax_loss.bbox.y0, tab.ax_loss.bbox.y1
    rows = slice(int(buf.shape[0] - y1) + 2, int(buf.shape[0] - y0) - 2)
    strip = buf[rows, int(round(x)) - 1:int(round(x)) + 2, :3].min(axis=(1, 2))  # the darkest of 3 columns, by row
    assert (strip < 200).mean() > 0.3, strip  # a dotted line over the axes' height
    # a rewind to before the stop takes the marks away
    h.app.rewind(0)
    assert h.pump(lambda: h.app.step_count == 0 and tab.early_stop is None and tab._early_drawn is None, 20)
    assert not tab.stop_line.get_visible() and not tab.best_label.get_visible()
