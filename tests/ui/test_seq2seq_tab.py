"""The encoder-decoder tab: both models' curves replayed from the lesson's frames, and the cross-attention maps of
the held-out pair, labelled with its words, following the replay to the last evaluation."""

from __future__ import annotations

import dataclasses

import numpy as np

from simulator.lessons import default_config, lesson_for


def test_the_tab_replays_both_models_and_the_cross_attention_maps(harness):
    h = harness()
    tab = h.app.layout.lesson_tabs["seq2seq"]
    h.app.layout.select_tab(tab)
    assert h.pump(lambda: h.app.layout.current_tab() is tab and tab.built)
    cfg = dataclasses.replace(default_config(lesson_for("seq2seq")), steps=12, eval_every=6, eval_pairs=32,
                              dec_layers=2, gpt_layers=2)
    tab.load(cfg)
    assert h.pump(lambda: tab.result is not None and not tab.playing, 240)
    frames = lesson_for("seq2seq").run(cfg, None, lambda: False)
    assert tab.result["n"] == len(frames) == 12 and tab.shown == 12
    for i, key in enumerate(("encdec", "gpt")):
        train, held, exact, tokens = tab.lines[key]
        np.testing.assert_allclose(train.get_ydata(), [f.losses[i] for f in frames], rtol=1e-5)
        assert list(exact.get_xdata()) == [1, 6, 12]
        np.testing.assert_allclose(held.get_ydata(), [f.evals[i].loss for f in frames if f.evals], rtol=1e-4)
    ex = frames[-1].example
    # two decoder layers with two heads each, then the GPT's head with the most attention on the aligned words
    from simulator.lessons.seq2seq import best_head

    g_layer, g_head, _mass = best_head(frames[-1].evals[1])
    assert [image[1:] for image in tab.images] == [("encdec", 0, 0), ("encdec", 0, 1), ("encdec", 1, 0),
                                                   ("encdec", 1, 1), ("gpt", g_layer, g_head)]
    for i, ((im, key, layer, head), (ax, *_rest)) in enumerate(zip(tab.images, tab.map_axes, strict=True)):
        shown = np.asarray(im.get_array())  # RGBA bytes: each weight in viridis over 0..1
        assert shown.shape == (len(ex.target) + 1, len(ex.source), 4) and shown.dtype == np.uint8
        want = (ex.cross if key == "encdec" else ex.gpt_attention)[layer, head]
        np.testing.assert_array_equal(shown, _colours(want))
        if key == "encdec":  # each target row's cross-attention is over the source words
            np.testing.assert_allclose(want.sum(axis=1), 1.0, rtol=1e-4)
        else:  # the GPT's rows also attend to <sep> and the target so far
            assert np.all(want.sum(axis=1) <= 1 + 1e-5)
        assert [t.get_text() for t in ax.get_xticklabels()] == list(ex.source)
        rows = [t.get_text() for t in ax.get_yticklabels()]
        assert rows == (list(ex.target) + ["<eos>"] if i == 0 else [""] * (len(ex.target) + 1))
    assert " ".join(ex.source) in tab.caption.get_text()
    # the curves as drawn: each model's held-out losses are a line of the loss axes' collection, with markers
    tab.loss_curves.commit()
    segments = [seg for seg in tab.loss_curves.lines.get_segments() if len(seg) == 3]
    for i in range(2):
        held = [f.evals[i].loss for f in frames if f.evals]
        assert any(np.allclose(seg[:, 1], held, rtol=1e-4) for seg in segments)
    marks = tab.loss_curves.markers.get_offsets()
    assert len(marks) == 2 * 3 and np.allclose(sorted(marks[:, 0]), [1, 1, 6, 6, 12, 12])
    full = tab.full_draws
    tab.show_until(1)  # back at the first evaluation: the maps of the untrained model
    first = frames[0].example
    np.testing.assert_array_equal(np.asarray(tab.images[0][0].get_array()), _colours(first.cross[0, 0]))
    # the maps changed: painted into the blit's background, so the frame shows them as a full draw would
    assert tab.present() and tab.full_draws == full and tab.blitter.background is not None
    blitted = np.asarray(tab.canvas.buffer_rgba()).copy()
    tab.figure.canvas.draw()  # the caption, the maps and the curves draw (cached text included)
    drawn = np.asarray(tab.canvas.buffer_rgba())
    height = drawn.shape[0]
    for ax, *_rest in tab.map_axes:
        x0, y0, x1, y1 = (int(round(v)) for v in ax.bbox.extents)
        inside = (slice(height - y1 + 2, height - y0 - 2), slice(x0 + 2, x1 - 2))  # within the frame of the axes
        assert np.array_equal(blitted[inside], drawn[inside])
    assert tab.caption.get_text().startswith("step 1,")


def _colours(weights):
    """Attention weights as the maps colour them: viridis over 0..1, as bytes."""
    import matplotlib
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    return ScalarMappable(Normalize(0, 1), matplotlib.colormaps["viridis"]).to_rgba(weights, bytes=True)


def test_the_toolbar_sets_the_task_and_a_bad_value_is_one_dialog(harness):
    h = harness()
    tab = h.app.layout.lesson_tabs["seq2seq"]
    h.app.layout.select_tab(tab)
    assert h.pump(lambda: tab.built and tab.cfg is not None)
    small = dataclasses.replace(default_config(lesson_for("seq2seq")), steps=4, eval_every=2, eval_pairs=32)
    tab.load(small)
    assert tab.vars["task"].get() == "translate" and tab.vars["steps"].get() == "4"
    tab.vars["task"].set("reverse")
    tab._changed("task")  # the windows follow the task (null: long enough), so reverse needs no other setting
    assert tab.cfg.task == "reverse" and tab.cfg.steps == 4 and not h.errors
    assert h.pump(lambda: tab.result is not None and not tab.playing, 240)
    ex = tab.result["examples"][-1]
    assert ex.target == tuple(reversed(ex.source))
    tab.vars["d_model"].set("33")
    tab._changed("d_model")
    assert len(h.errors) == 1 and "n_head" in h.errors[0] and tab.cfg.d_model == 32
    assert tab.vars["d_model"].get() == "32"  # the toolbar shows the config that stays
