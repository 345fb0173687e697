"""The BERT tab: the lesson's frames replayed (MLM loss, pair accuracy against the probe), the held-out pair
with its masking coloured, and the attention from [CLS]."""

from __future__ import annotations

import dataclasses

import numpy as np

from simulator.lessons import default_config, lesson_for
from ui.lessons.bert import ACTION_COLOURS


def test_the_tab_replays_the_lessons_frames_and_shows_the_masked_pair(harness):
    h = harness()
    tab = h.app.layout.lesson_tabs["bert"]
    h.app.layout.select_tab(tab)
    assert h.pump(lambda: h.app.layout.current_tab() is tab and tab.built)
    cfg = dataclasses.replace(default_config(lesson_for("bert")), steps=20, eval_every=10, eval_pairs=32,
                              probe_pairs=200)
    tab.load(cfg)
    assert h.pump(lambda: tab.result is not None and not tab.playing, 240)
    frames = lesson_for("bert").run(cfg, None, lambda: False)
    curves, probes, example, n = tab.result
    assert n == len(frames) == 20 and tab.shown == 20
    for i, task in enumerate(cfg.tasks):
        train, held, acc = tab.lines[task]
        # the same seed gives the same run; inside the window (its worker thread busy beside the lesson's) the
        # float32 sums were seen to differ in the 9th digit, hence approx
        np.testing.assert_allclose(train.get_ydata(), [f.points[i].mlm_loss for f in frames], rtol=1e-6)
        evals = [f.points[i].eval for f in frames if f.points[i].eval is not None]
        assert list(acc.get_xdata()) == [1, 10, 20]
        np.testing.assert_allclose(acc.get_ydata(), [e.pair_accuracy for e in evals], atol=1 / 32 + 1e-9)
        np.testing.assert_allclose(held.get_ydata(), [e.mlm_loss for e in evals], rtol=1e-5)
        assert probes[task] == frames[0].probes[i].test_accuracy
    last = frames[-1].points[0].example
    assert example.tokens == last.tokens and example.tokens[0] == "[CLS]" and tab.result[2] is example
    boxes = [t.get_bbox_patch().get_facecolor() for t in tab.ax_ex.texts]
    assert len(boxes) == len(example.tokens)
    chosen = example.action != 0
    assert chosen.any() and not chosen[0]
    from matplotlib.colors import to_rgba
    for face, act in zip(boxes, example.action, strict=True):
        assert face == to_rgba(ACTION_COLOURS[int(act)])
    image = tab.ax_att.images[0].get_array()
    assert image.shape == (cfg.n_head, len(example.tokens))
    np.testing.assert_allclose(np.asarray(image).sum(axis=1), 1.0, rtol=1e-5)  # [CLS] attends to real tokens only
