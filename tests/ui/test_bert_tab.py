"""The BERT tab: the lesson's frames replayed (MLM loss, pair accuracy against the probe), the held-out pair
with its masking coloured, and the attention from [CLS]."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from simulator.lessons import default_config, lesson_for
from ui.lessons.bert import ACTION_COLOURS


def test_the_tab_replays_the_lessons_frames_and_shows_the_masked_pair(harness):
    h = harness()
    tab = h.app.layout.lesson_tabs["bert"]
    h.app.layout.select_tab(tab)
    assert h.pump(lambda: h.app.layout.current_tab() is tab and tab.built)
    cfg = dataclasses.replace(default_config(lesson_for("bert")), steps=20, eval_every=10, eval_pairs=32,
                              probe_pairs=200, fill_blanks=32, topic_steps=4, topic_eval_every=2)
    tab.load(cfg)
    assert h.pump(lambda: tab.result is not None and not tab.playing, 240)
    frames = lesson_for("bert").run(cfg, None, lambda: False)
    curves, probes, example, n = tab.result[:4]
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


def test_fill_in_the_blank_asks_both_trained_models_and_a_bad_sentence_is_one_line(harness):
    h = harness()
    tab = h.app.layout.lesson_tabs["bert"]
    h.app.layout.select_tab(tab)
    assert h.pump(lambda: h.app.layout.current_tab() is tab and tab.built)
    cfg = dataclasses.replace(default_config(lesson_for("bert")), steps=6, eval_every=3, eval_pairs=32,
                              probe_pairs=100, fill_blanks=32, topic_steps=4, topic_eval_every=2)
    tab.load(cfg)
    assert h.pump(lambda: tab.result is not None and tab.fill_answer is not None, 240)
    fill = tab.result[4]
    # the preset's first sentence is put in the box and asked when the lesson arrives
    assert tab.fill_var.get() == cfg.fill_sentences[0] and tab.fill_answer == fill.ask(cfg.fill_sentences[0], 5)

    for how in ("button", "return"):
        text = "the _ loves her kingdom" if how == "button" else "tolm is the capital of _"
        tab.fill_var.set(text)
        if how == "button":
            tab.fill_button.invoke()
        else:
            tab.fill_entry.focus_force()
            h.pump(lambda: tab.fill_entry.focus_get() is tab.fill_entry, 5)
            tab.fill_entry.event_generate("<Return>")
            h.pump(lambda text=text: tab.fill_answer.text == text, 5)
        want = fill.ask(text, 5)
        assert tab.fill_answer == want and tab.fill_message.cget("text") == ""
        for model, pairs in (("encoder", want.encoder), ("gpt", want.gpt)):
            assert tab.fill_rows(model) == [(piece, pytest.approx(p, rel=1e-3), f"{p:.1%}") for piece, p in pairs]
        assert want.encoder != want.gpt  # two models, two answers
        assert tab.fill_scale == max(p for _t, p in want.encoder + want.gpt)  # the longest bar: the largest share
    for bad, says in (("tolm is the capital", "put _ where the hidden word goes"),
                      ("the _ and the _", "one blank at a time"), ("the _ has hörns", "never uses some characters")):
        tab.fill_var.set(bad)
        tab.fill_button.invoke()
        message = tab.fill_message.cget("text")
        assert says in message and "\n" not in message and "Traceback" not in message
        assert tab.fill_answer.text == "tolm is the capital of _"  # the last answer stays
    # the topic fine-tuning's attention from [CLS]: both learners' heads over the held-out sentence's tokens
    topics = tab.result[6]
    image = tab.ax_topic_att.images[0].get_array()
    assert image.shape == (2 * cfg.n_head, len(topics.tokens))
    assert [t.get_text() for t in tab.ax_topic_att.get_xticklabels()] == list(topics.tokens)
    assert [tuple(line.get_xdata()) for line in tab.ax_topic.lines[:2]] == [(0, 2, 4)] * 2
