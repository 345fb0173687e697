"""The word2vec tab: the lesson's frames replayed (map, accuracy, neighbours), toolbar changes recompute, a
mistake is one dialog, and the map's alignment keeps each frame's shape."""

from __future__ import annotations

import numpy as np

from simulator.lessons import default_config, lesson_for
from simulator.lessons.word2vec import load_corpus, neighbours_text, static_point
from ui.lessons.word2vec import align


def test_align_turns_each_map_onto_the_last_without_changing_its_shape():
    rng = np.random.default_rng(0)
    last = rng.normal(size=(9, 2))
    turn = np.array([[0.0, -1.0], [-1.0, 0.0]])  # a reflection: what a PCA axis flip does
    maps = align([3.0 * last @ turn + 5.0, last])
    np.testing.assert_allclose(maps[0], maps[1], atol=1e-12)  # the same shape, turned back
    for m in maps:
        d = np.linalg.norm(m[:, None] - m[None], axis=-1)
        ref = np.linalg.norm(last[:, None] - last[None], axis=-1)
        np.testing.assert_allclose(d / d.max(), ref / ref.max(), atol=1e-12)  # distances kept up to the scale


def test_the_tab_replays_the_lessons_frames_and_recomputes_on_a_change(harness):
    h = harness()
    tab = h.app.layout.lesson_tabs["word2vec"]
    h.app.layout.select_tab(tab)
    assert h.pump(lambda: h.app.layout.current_tab() is tab and tab.built)
    assert h.pump(lambda: tab.result is not None and not tab.playing, 120)
    cfg = default_config(lesson_for("word2vec"))
    frames = lesson_for("word2vec").run(cfg, None, lambda: False)
    shown, maps, static = tab.result
    assert tab.steps_of() == cfg.steps == len(frames) and tab.shown == cfg.steps
    last = frames[-1]
    assert [f.loss for f in shown] == [f.loss for f in frames]  # the engine's own frames (same seed)
    assert tab.map_var.get() == "capital" and list(maps) == [m[0] for m in last.maps]
    np.testing.assert_allclose(tab.dots.get_offsets(), maps["capital"][1][-1])
    assert last.maps[2][0] == "capital" and [t.get_text() for t in tab.labels] == list(last.maps[2][1])
    assert tab.neighbours.get_text().startswith("\n".join(neighbours_text(last)))
    # the panel's extent (where a blit copies it to the screen) is read from its bitmap: the text's own, to a pixel
    from matplotlib.text import Text

    renderer = tab.canvas.get_renderer()
    for t in (tab.neighbours, tab.step_text):
        np.testing.assert_allclose(t.get_window_extent(renderer).extents,
                                   Text.get_window_extent(t, renderer).extents, atol=1.5)
    point = static_point(cfg, load_corpus(cfg.corpus, cfg.path, cfg.min_count), last.vectors)
    assert static.endswith(f"have cosine {point.between:.2f}. BERT's vectors are contextual: one per sentence.")
    assert tab.static_note.get_text() == static and "'plough' in" in static  # drawn once, under the neighbours
    for rel, hits, asked in last.accuracy:
        assert tab.acc[rel].get_ydata()[-1] == hits / asked
    assert len(tab.pairs.get_segments()) == len(last.maps[2][1]) // 2 == 8
    tab.map_var.set("gender")
    tab.show_map()
    assert {t.get_text() for t in tab.labels} >= {"king", "queen"} and len(tab.pairs.get_segments()) == 12
    tab.vars["window"].set("0")  # a mistake: one dialog, the lesson kept
    tab._changed("window")
    assert len(h.errors) == 1 and "window: must be at least 1, got 0" in h.errors[0] and tab.cfg == cfg
    tab.vars["model"].set("cbow")
    tab._changed("model")
    assert tab.cfg.model == "cbow"
    assert h.pump(lambda: tab.result is not None and not tab.playing, 120)
    assert [f.loss for f in tab.result[0]] != [f.loss for f in frames] and len(h.errors) == 1
