"""A plot tab switches its figure's language: titles, labels and legends are made again and drawn once."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import i18n


@pytest.fixture
def chinese():
    before = i18n.language()
    yield
    i18n.set_language(before)


def texts(fig) -> set[str]:
    """Every text of a figure: titles, axis labels, legends, notes."""
    from matplotlib.text import Text

    return {t.get_text() for t in fig.findobj(Text) if t.get_text()}


def test_language_changed_retitles_every_plot_tab_and_draws_it_once(harness, tiny, chinese, shots):
    h = harness(tiny)
    h.steps(4)
    layout = h.app.layout
    tabs = (layout.overview, layout.gradients, layout.activations, layout.attention)
    for tab in tabs:  # each built and drawn in English
        layout.select_tab(tab)
        assert h.pump(lambda t=tab: t.built and t._drawn is not None if hasattr(t, "_drawn") else t.built, 20)
    h.pump(timeout=0.3)
    assert "loss" in texts(layout.overview.figure)
    shown = layout.gradients
    layout.select_tab(shown)
    h.pump(lambda: not shown._need_full, 10)
    full = shown.full_draws
    h.app.set_language("zh_CN")  # View -> Language: the window calls every tab's language_changed once
    assert shown.full_draws == full + 1  # the visible tab drew fully, once
    assert "各层的梯度范数（对数色标）" in texts(shown.figure) and "梯度值" in texts(shown.figure)
    assert shown.tensor_label.cget("text") == "梯度直方图的张量"
    assert "grad norm per tensor" not in texts(shown.figure)
    # the others draw in Chinese when next shown
    for tab, want in ((layout.overview, {"损失", "学习率", "训练", "验证"}), (layout.activations, {"各位置的均值"}),
                      (layout.attention, {"注意力权重", "键位置"})):
        layout.select_tab(tab)
        h.pump(lambda t=tab: not t._need_full, 10)
        h.pump(timeout=0.2)
        assert want <= texts(tab.figure), (tab.title, texts(tab.figure))
        import subprocess

        subprocess.run(["import", "-window", "root", "-crop", "1280x800+0+0", str(shots / f"zh-{tab.title}.png")],
                       check=True, timeout=30)
    # Chinese glyphs are drawn from a CJK font, not as empty boxes: the title's ink differs between two words
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ink = []
    for word in ("损失", "梯度"):
        fig = Figure(figsize=(1, 0.4), dpi=100)
        fig.text(0.5, 0.5, word, ha="center", va="center")
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        ink.append(np.asarray(canvas.buffer_rgba())[..., 0] < 128)
    assert ink[0].any() and (ink[0] != ink[1]).any()
    h.app.set_language("en")
    layout.select_tab(layout.overview)
    h.pump(lambda: not layout.overview._need_full, 10)
    assert "loss" in texts(layout.overview.figure) and "损失" not in texts(layout.overview.figure)
