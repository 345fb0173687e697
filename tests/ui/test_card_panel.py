"""The lesson card panel under Xvfb: Help → Course opens the table of contents, a card is walked step by step,
the prediction is asked before the run, and the claims are revealed with their numbers and ✓ / ✗; the progress
file in the user's config folder records it."""

from __future__ import annotations

import json

from simulator.lessons.cards_course import load_course
from ui.panels import progress


def help_menu(root):
    bar = root.nametowidget(root.cget("menu"))
    return bar.nametowidget(bar.entrycget("Help", "menu"))


def test_help_course_walks_a_card_end_to_end_and_keeps_progress(harness, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    h = harness()
    help_menu(h.root).invoke("Course (lesson cards)…")
    course = h.app.layout.course_window
    h.pump()
    sections = course.tree.get_children()
    assert len(sections) == len(load_course().sections) and course.tree.exists("leaf-flower")
    assert course.tree.set("leaf-flower", "progress") == "not started"
    course.tree.selection_set("leaf-flower")
    panel = course.open_selected()
    h.pump()
    assert len(panel.step_labels) == 1 and str(panel.run_button.cget("state")) == "disabled"
    while str(panel.next_button.cget("state")) != "disabled":
        panel.next_button.invoke()
    h.pump()
    assert len(panel.step_labels) == len(panel.card.steps) and panel.predict_frame.winfo_ismapped()
    assert "run 1 steps" in panel.step_labels[-1].cget("text")
    panel.run_button.invoke()
    assert panel.result is None, "no run before a prediction is chosen"
    wrong = next(b for b in panel.answer_buttons if b.cget("value") != panel.card.prediction.expected)
    wrong.invoke()
    assert str(panel.run_button.cget("state")) == "normal"
    panel.run_button.invoke()
    assert h.pump(lambda: panel.result is not None, 60), panel.error
    h.pump()
    assert panel.result_frame.winfo_ismapped() and len(panel.claim_labels) == len(panel.card.claims)
    text = panel.claim_labels[0].cget("text")
    assert text.startswith("✓ The step lowers the example's loss.") and "loss_drop: 0.353" in text and "> 0" in text
    assert "1 of 1 claims hold" in panel.status.cget("text")
    saved = json.loads((tmp_path / "transformer-sim" / "progress.json").read_text(encoding="utf-8"))
    assert saved["cards"]["leaf-flower"] == {"held": 1, "claims": 1, "predicted": wrong.cget("value"),
                                             "correct": False, "seed": None}
    assert course.tree.set("leaf-flower", "progress") == "✓ done" and "1 of" in course.summary.cget("text")
    assert not list(tmp_path.glob("transformer-sim/.progress-*")), "no temp file left behind"
    panel.close()


def test_progress_file_is_per_user_and_survives_a_bad_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert progress.load_progress() == {}
    (tmp_path / "cfg" / "transformer-sim").mkdir(parents=True)
    progress.progress_path().write_text("{not json", encoding="utf-8")
    assert progress.load_progress() == {}
    progress.record_card("overfit", 0, 1, "smaller", True, 1337)
    progress.record_card("leaf-flower", 1, 1, "lower", True, None)
    got = progress.load_progress()
    assert set(got) == {"overfit", "leaf-flower"} and not progress.is_done(got["overfit"])
    assert progress.is_done(got["leaf-flower"])
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert progress.progress_path() == tmp_path / "home" / ".config" / "transformer-sim" / "progress.json"


def test_apply_puts_a_steps_settings_into_the_main_windows_run(harness, tmp_path, monkeypatch):
    """A GPT card's step with settings: Apply goes through the window's validated path into its controls and run."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    h = harness()
    h.steps(1)  # a run to discard: a structural change asks first
    course = h.app.layout.open_course()
    course.tree.selection_set("unscaled-attention")
    panel = course.open_selected()
    h.pump()
    step = panel.card.steps[0]
    assert dict(step.settings)["model.n_layer"] == 1 and 0 in panel.apply_buttons
    assert h.app.config.model.n_layer != 1
    h.answer = False  # "Rebuild the model?" answered no: nothing changes
    panel.apply_buttons[0].invoke()
    assert len(h.questions) == 1 and h.app.config.model.n_layer != 1
    h.answer = True
    panel.apply_buttons[0].invoke()
    assert h.app.config.model.n_layer == 1 and h.app.config.train.batch_size == 8
    assert h.app.layout.controls.vars["model.n_layer"].get() == "1"  # the controls show what the run takes
    assert h.app.layout.controls.vars["train.batch_size"].get() == "8"
    assert h.pump(lambda: h.app.info is not None and h.app.info.config.model.n_layer == 1, 60), "never rebuilt"
    assert "applied to the window's run" in panel.status.cget("text")
    # a value the rules refuse is one dialog, and the run keeps its settings
    bad = h.app.change_settings([("optim.lr", "-1")])
    assert bad is False and h.errors and h.app.config.optim.lr > 0
    # a card of another lesson (leaf-flower) has no GPT run to apply to
    course.tree.selection_set("leaf-flower")
    other = course.open_selected()
    while str(other.next_button.cget("state")) != "disabled":
        other.next_button.invoke()
    assert other.apply_buttons == {}
    panel.close()
    other.close()
