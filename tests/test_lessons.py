"""The lesson registry: every lesson has a config that validates, runs a few steps, and `train` prints its summary."""

from __future__ import annotations

import dataclasses

import pytest

from simulator import lessons
from simulator.cli import main
from simulator.presets import dump_config, load_any, parse_any_text

KINDS = [lesson.kind for lesson in lessons.all_lessons()]


def test_the_registry_holds_every_lesson_module_in_name_order():
    assert KINDS == ["bert", "deep_mlp", "distill", "finetune", "flash_trace", "leaf_flower", "long_context",
                     "optimizer_race",
                     "seq2seq", "sparse_logreg", "tfidf", "tokenizers", "word2vec",
                     "worked_examples"]
    for lesson in lessons.all_lessons():
        assert lessons.lesson_for(lesson.kind) is lesson and lessons.lesson_of(lesson.config()) is lesson
        assert lesson.title and dataclasses.is_dataclass(lesson.config)
    assert lessons.lesson_for("gpt") is None and lessons.lesson_of(object()) is None


@pytest.mark.parametrize("kind", KINDS)
def test_each_lesson_has_a_config_that_validates_and_runs(kind):
    lesson = lessons.lesson_for(kind)
    cfg = lessons.default_config(lesson)
    assert type(cfg) is lesson.config and lessons.check(cfg) == cfg
    again = parse_any_text(dump_config(cfg), "again.yaml")  # a preset of its kind, through the YAML walk
    assert again == cfg and dump_config(cfg).startswith(f"kind: {kind}\n")
    frames = lesson.run(cfg, 3, lambda: False)
    assert 1 <= len(frames) <= 3
    text = lesson.summary(cfg, frames)
    assert isinstance(text, str) and text.strip()
    assert lesson.run(cfg, 3, lambda: True) == [] or kind == "worked_examples"  # the examples have no steps


@pytest.mark.parametrize("kind", KINDS)
def test_train_preset_prints_the_lessons_summary(kind, tmp_path, capsys):
    lesson = lessons.lesson_for(kind)
    path = tmp_path / f"{kind}.yaml"
    path.write_text(dump_config(lessons.default_config(lesson)), encoding="utf-8")
    cfg = load_any(path)
    assert main(["train", "--preset", str(path), "--steps", "2", "--quiet"]) == 0
    assert capsys.readouterr().out == lesson.summary(cfg, lesson.run(cfg, 2, lambda: False)) + "\n"
