"""The lesson tabs: one tab class per lesson kind of `simulator.lessons`, registered against the kind.

The window builds one tab per lesson of the engine's registry (`all_lessons()`), from `TABS[kind]`;
importing this package imports every tab module in it, so `TABS` is complete.
"""

from __future__ import annotations

from importlib import import_module
from pkgutil import iter_modules

from simulator.lessons import all_lessons, lesson_for

TABS: dict[str, type] = {}


def lesson_tab(kind: str):
    """Class decorator: registers a tab class as the view of lesson `kind` (and gives it the lesson's title)."""
    def register(cls):
        cls.kind, cls.title = kind, lesson_for(kind).title
        TABS[kind] = cls
        return cls
    return register


def build_lesson_tabs(app, notebook, more) -> dict:
    """One tab per registered lesson, in the engine's order: in `notebook`, or in `more` for a nested tab."""
    return {lesson.kind: TABS[lesson.kind](app, more if TABS[lesson.kind].nested else notebook)
            for lesson in all_lessons()}


for _module in sorted(m.name for m in iter_modules(__path__)):
    import_module(f"{__name__}.{_module}")
