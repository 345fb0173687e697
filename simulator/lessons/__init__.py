"""The lessons beside the GPT: one module each, one `Lesson` spec each, one registry.

A lesson is a config dataclass (a preset with `kind: NAME` loads into it), the rules of its fields
by dotted path, its cross-field checks, `run` (plain-data frames a tab replays) and `summary` (what
`train --preset` prints). Importing this package imports every module in it, so the registry is
complete; a new lesson is a new module here and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from pkgutil import iter_modules
from typing import Any

from simulator.i18n import _
from simulator.optim import OptimError, check_optim
from simulator.rules import Rule
from simulator.yamlconfig import ParseContext, PresetError


@dataclass(frozen=True)
class Lesson:
    """What the engine, the CLI and the window know of one lesson."""

    kind: str  # the preset's `kind:` name
    title: str  # what a person reads on its tab
    config: type  # the frozen config dataclass, defaults included
    rules: Mapping[str, Rule]  # dotted path -> single-field rule, as the YAML walk applies them
    validate: Callable[[Any, ParseContext], Any]  # cross-field checks: ctx.fail(path, what, hint); returns the config
    run: Callable[[Any, int | None, Callable[[], bool]], list]  # (config, steps or None, cancelled) -> frames
    summary: Callable[[Any, list], str]  # (config, frames) -> the CLI's text
    preset: str | None = None  # the shipped preset its tab opens with; None: the config's defaults
    # (config, frames) -> one line naming where the run became NaN/Inf (the CLI exits 3), or None: it did not
    diverged: Callable[[Any, list], str | None] | None = None


_LESSONS: dict[str, Lesson] = {}


def register(lesson: Lesson) -> Lesson:
    """Adds a lesson to the registry (its kind and its config type must be new)."""
    if lesson.kind in _LESSONS or any(other.config is lesson.config for other in _LESSONS.values()):
        raise ValueError(f"lesson kind {lesson.kind!r} or its config {lesson.config.__name__} is registered twice")
    _LESSONS[lesson.kind] = lesson
    return lesson


def unregister(kind: str) -> None:
    """Removes a lesson (tests that register one of their own)."""
    _LESSONS.pop(kind, None)


def lesson_for(kind: str) -> Lesson | None:
    """The lesson of a preset's `kind:` name, or None."""
    return _LESSONS.get(kind)


def lesson_of(config) -> Lesson | None:
    """The lesson whose config type `config` is, or None (a GPT RunConfig)."""
    return next((lesson for lesson in _LESSONS.values() if type(config) is lesson.config), None)


def all_lessons() -> tuple[Lesson, ...]:
    """Every registered lesson, by kind (the window's tab order)."""
    return tuple(_LESSONS[kind] for kind in sorted(_LESSONS))


def check(config):
    """Runs the lesson's cross-field checks on a config built in code; a mistake raises a one-line PresetError."""
    lesson = lesson_of(config)
    return lesson.validate(config, ParseContext(None, Path.cwd(), lesson.rules))


def default_config(lesson: Lesson):
    """The config its tab shows first: the lesson's shipped preset, else the dataclass defaults."""
    from simulator.presets import load_any

    return load_any(lesson.preset) if lesson.preset else lesson.config()


def load_lesson(path, kind: str):
    """Loads a preset file (or shipped name) that must be of lesson `kind`."""
    from simulator.presets import load_any

    cfg = load_any(path)
    if type(cfg) is not lesson_for(kind).config:
        raise PresetError(_("{path}: kind: this preset is not a {kind} preset").format(path=path, kind=kind))
    return cfg


def optim_rules(prefix: str) -> dict[str, Rule]:
    """The GPT preset's rules of `optim.*`, at `prefix` instead ('optimizers.optim.' for a list of learners)."""
    from simulator.presets import RULES

    return {prefix + k.removeprefix("optim."): v for k, v in RULES.items() if k.startswith("optim.")}


def check_optim_at(ctx: ParseContext, prefix: str, optim) -> None:
    """The optimizer's own checks of an OptimConfig found at `prefix` ('optim' or 'optimizers[1].optim')."""
    try:
        check_optim(optim)
    except OptimError as err:  # its sentences name the field they are about first: 'optim.lr: must be ...'
        field, _, what = str(err).partition(": ")
        ctx.fail(prefix + field.removeprefix("optim"), what)


# Every module of this package is a lesson, which registers its LESSON when imported; the lesson cards
# (cards*.py: the `lesson:` sections of presets, simulator/lessons/cards.py) are not, and load when used.
for _module in sorted(m.name for m in iter_modules(__path__) if not m.name.startswith("cards")):
    import_module(f"{__name__}.{_module}")
