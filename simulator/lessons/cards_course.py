"""The course: `presets/course.yaml` orders the lesson cards in sections, as the notes teach them.

    load_course(path=None)   -> Course, every mistake one line FILE:LINE: key (a card that is not one, twice)
    course_text()            the table of contents `python main.py lesson --course` prints
    cards_list_text()        every card, by name, with its title (`python main.py lesson`)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from simulator.i18n import _
from simulator.rules import non_empty, setting
from simulator.yamlconfig import ParseContext, PresetError, parse_dataclass


@dataclass(frozen=True)
class Section:
    """One part of the course: a title and its cards (preset names), in order; no cards: none written yet."""

    title: str = setting("", non_empty)
    cards: tuple[str, ...] = ()
    note: str = ""  # what a person reads beside it (why it has no card yet)


@dataclass(frozen=True)
class Course:
    """The course's title and its sections in teaching order."""

    title: str = setting("", non_empty)
    description: str = ""
    sections: tuple[Section, ...] = ()

    @property
    def cards(self) -> list[str]:
        """Every card of the course, in order."""
        return [c for s in self.sections for c in s.cards]


def course_path() -> Path:
    from simulator.presets import presets_dir

    return presets_dir() / "course.yaml"


def parse_course(text: str, source: str) -> Course:
    """Course text -> a checked Course: each card a shipped preset with a lesson card, none twice."""
    from simulator.lessons.cards import card_names
    from simulator.presets import _yaml_root
    from simulator.rules import did_you_mean

    root = _yaml_root(text, source)
    ctx = ParseContext(source, Path(source).parent)
    if root is None:
        raise PresetError(_("{source}:1: the course is empty (expected title and sections)").format(source=source))
    course = parse_dataclass(Course, root, ctx, "")
    if not course.sections:
        ctx.fail("sections", _("the course needs at least one section"))
    known, seen = card_names(), {}
    for i, section in enumerate(course.sections):
        for j, name in enumerate(section.cards):
            path = f"sections[{i}].cards[{j}]"
            if name not in known:
                ctx.fail(path, _("'{name}' is not a preset with a lesson card").format(name=name)
                         + did_you_mean(name, known),
                         at=(f"sections[{i}].cards",))
            if name in seen:
                ctx.fail(path, _("'{name}' is already in section {section}").format(name=name, section=seen[name] + 1),
                         at=(f"sections[{i}].cards",))

            seen[name] = i
        if not section.cards and not section.note:
            ctx.fail(f"sections[{i}].note", _("a section without cards says why (a note)"), at=(f"sections[{i}]",))
    return course


def load_course(path=None) -> Course:
    """The shipped course (or the one at `path`)."""
    path = Path(path) if path is not None else course_path()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PresetError(_("course file '{path}' cannot be read: {problem}").format(path=path, problem=e)) from None

    return parse_course(text, str(path))


def _titles() -> dict[str, str]:
    """Card name -> its title (a card that does not load shows its error instead)."""
    from simulator.lessons.cards import card_names, load_card

    out = {}
    for name in card_names():
        try:
            out[name] = _(load_card(name)[1].title.strip())
        except PresetError as e:
            out[name] = _("(cannot be read: {problem})").format(problem=e)
    return out


def cards_list_text() -> str:
    """Every shipped card by name with its title, and how to run one."""
    titles = _titles()
    width = max(map(len, titles), default=0)
    lines = [f"{name:<{width}}  {title}" for name, title in titles.items()]
    return "\n".join(lines + ["", _("run one: python main.py lesson NAME [--seed S]; in order: lesson --course")])


def course_text() -> str:
    """The course's table of contents: sections in order, their cards numbered, empty sections said so."""
    course, titles = load_course(), _titles()
    lines, n = [_(course.title.strip()), ""], 0
    for i, section in enumerate(course.sections, 1):
        lines.append(f"{i}. {_(section.title.strip())}")
        for name in section.cards:
            n += 1
            lines.append(f"   {n:>2}. {name:<24} {titles.get(name, '')}")
        if not section.cards:
            lines.append("       " + _("(no card yet: {note})").format(note=_(section.note.strip())))
    return "\n".join(lines)
