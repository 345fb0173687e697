"""The distillation tab: both students' curves and the teacher's line are the engine's numbers, the dark-knowledge
bars are the teacher's soft distribution at the chosen position, and a bad position is one message."""

from __future__ import annotations

import numpy as np

from simulator.lessons.distill import LABELS, SHOWN_TEMPERATURES, DistillConfig, dark_knowledge, run
from simulator.presets import dump_config

SMALL = DistillConfig(teacher_d_model=16, teacher_n_layer=2, teacher_n_head=2, teacher_steps=20, d_model=8,
                      n_layer=1, n_head=2, seq_len=16, batch_size=2, steps=12, eval_every=4, eval_batches=1)


def _bars(ax):
    """Bar heights by label of the legend, in the order drawn."""
    out = {}
    for container in ax.containers:
        out[container.get_label()] = np.array([p.get_height() for p in container.patches])
    return out


def test_the_tab_shows_the_engines_curves_and_dark_knowledge(harness, tmp_path):
    h = harness()
    path = tmp_path / "small-distill.yaml"
    path.write_text(dump_config(SMALL), encoding="utf-8")
    tab = h.app.layout.lesson_tabs["distill"]
    assert h.app.files.open_preset(str(path))
    assert h.pump(lambda: h.app.layout.current_tab() is tab and tab.result is not None and not tab.playing, 120)
    frames = run(SMALL)
    for i, label in enumerate(LABELS):
        steps, vals = tab.lines[label].get_data()
        assert list(steps) == [0, 4, 8, 12]
        assert np.allclose(vals, [frames[0].start_val[i]] + [f.points[i].val for f in frames if f.points[i].val])
    teacher_line = [ln for ln in tab.ax_val.lines if ln.get_label().startswith("teacher")][0]
    assert np.isclose(teacher_line.get_ydata()[0], frames[0].teacher_val)

    window = frames[0].window
    for position in (10, 3):
        tab.position_var.set(str(position))
        assert tab.show_position()
        tokens, probs, onehot = dark_knowledge(window, position, SHOWN_TEMPERATURES)
        bars = _bars(tab.ax_dk)
        for j, T in enumerate(SHOWN_TEMPERATURES):
            assert np.allclose(bars[f"teacher, T = {T:g}"], probs[j])
        assert np.array_equal(bars["one-hot label"], onehot) and onehot.sum() == 1
        assert probs[2].max() < probs[0].max()  # a higher temperature spreads the teacher's mass
    assert h.errors == []
    tab.position_var.set("99")
    assert not tab.show_position()
    assert len(h.errors) == 1 and "from 0 to 15" in h.errors[0]
