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
