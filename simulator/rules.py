"""How a config field is declared: its rule, whether it is live, and the words a person reads.

A config dataclass declares each field once, with `setting(default, rule, live=..., help=..., label=...)`;
the YAML walk takes the rule from there, `config.LIVE_FIELDS` the liveness, the UI the label and help.
Pure Python (no yaml, no numpy), so `simulator/config.py` can import it.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from simulator.i18n import _

# A rule takes a converted (non-null) value and returns None when it is fine, else what is wrong.
Rule = Callable[[Any], str | None]


def did_you_mean(word: str, options, cutoff: float = 0.6, bare: bool = False) -> str:
    """' (did you mean 'x'?)' for the closest of `options` ('did you mean 'x'?' when `bare`: a hint of its own),
    or '' when none is close."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=cutoff)
    if not close:
        return ""
    return (_("did you mean '{word}'?") if bare else _(" (did you mean '{word}'?)")).format(word=close[0])



def at_least(lo) -> Rule:
    """Values >= lo."""
    return lambda v: None if v >= lo else _("must be at least {lo}, got {value!r}").format(lo=lo, value=v)


def greater_than(lo) -> Rule:
    """Values > lo."""
    return lambda v: None if v > lo else _("must be greater than {lo}, got {value!r}").format(lo=lo, value=v)


def in_range(lo, hi, low_open: bool = False, high_open: bool = False) -> Rule:
    """Values in an interval; the message writes it as [lo, hi) and the like."""
    def rule(v):
        ok = (v > lo if low_open else v >= lo) and (v < hi if high_open else v <= hi)
        interval = f"{'(' if low_open else '['}{lo}, {hi}{')' if high_open else ']'}"
        return None if ok else _("must be in {interval}, got {value!r}").format(interval=interval, value=v)
    return rule


def one_of(choices) -> Rule:
    """Values from a fixed tuple of names, with a 'did you mean' hint; `rule.choices` lists them (for a menu)."""
    def rule(v):
        if v in choices:
            return None
        return (_("{value!r} is not one of {choices}").format(value=v, choices=", ".join(choices))
                + did_you_mean(str(v), choices, cutoff=0.45))
    rule.choices = tuple(choices)
    return rule


def non_empty(v) -> str | None:
    """Strings that are not empty."""
    return None if v else _("must not be empty")



positive_int = at_least(1)
non_negative = at_least(0)
positive = greater_than(0)
unit_open = in_range(0, 1, high_open=True)  # [0, 1)


# ------------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class Setting:
    """What a field declares besides its default: its rule, liveness, a one-line help and a short label."""

    rule: Rule | None = None
    live: bool = False  # True: takes effect on the next step; False: structural, a change rebuilds the model
    help: str = ""
    label: str = ""  # how a control names it (empty: the field's name)


NO_SETTING = Setting()
_KEY = "setting"


def setting(default, rule: Rule | None = None, *, live: bool = False, help: str = "", label: str = "") -> Any:
    """A dataclass field with its default and its `Setting` in the field's metadata."""
    return dataclasses.field(default=default, metadata={_KEY: Setting(rule, live, help, label)})


def setting_of(f: dataclasses.Field) -> Setting:
    """The `Setting` a dataclass field declares (an empty one for a plain field)."""
    return f.metadata.get(_KEY, NO_SETTING)


def settings_of(cls, prefix: str = "") -> dict[str, Setting]:
    """Every leaf field of dataclass `cls` (nested dataclasses walked) by dotted path, with its Setting."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Setting] = {}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(settings_of(hints[f.name], f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = setting_of(f)
    return out


def declared_rule(cls, path: str) -> Rule | None:
    """The rule that the field at dotted `path` of dataclass `cls` declares, or None."""
    *sections, name = path.split(".")
    for part in sections:
        cls = typing.get_type_hints(cls)[part]
    return setting_of(next(f for f in dataclasses.fields(cls) if f.name == name)).rule


class Problem(NamedTuple):
    """What a cross-field check found: the path it blames, what is wrong, a hint, and the paths whose line to show."""

    path: str
    what: str
    hint: str | None = None
    at: tuple[str, ...] = ()

    def sentence(self) -> str:
        """The problem as one sentence without a file: 'optim.min_lr: 0.1 is larger than ... (hint)'."""
        return f"{self.path}: {self.what}" + (_(" ({hint})").format(hint=self.hint) if self.hint else "")

