"""YAML -> frozen dataclasses, keeping every value's line: the generic part of preset loading.

The YAML is composed into nodes (not loaded into dicts) so that every key and value keeps its
line; the nodes are walked against the dataclass type hints, and each value is checked by a rule
looked up by its dotted path. `simulator/presets.py` holds what is specific to our presets (the
GPT rules and cross-field checks, preset kinds, the shipped lessons) and re-exports this module's
public names.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode


class PresetError(Exception):
    """A person's mistake in a preset or an override; the message is one line naming where and what."""


# ---------------------------------------------------------------------------------------------- rules
# A rule takes a converted (non-null) value and returns None when it is fine, else what is wrong.
Rule = Callable[[Any], str | None]


def at_least(lo) -> Rule:
    """Values >= lo."""
    return lambda v: None if v >= lo else f"must be at least {lo}, got {v!r}"


def greater_than(lo) -> Rule:
    """Values > lo."""
    return lambda v: None if v > lo else f"must be greater than {lo}, got {v!r}"


def in_range(lo, hi, low_open: bool = False, high_open: bool = False) -> Rule:
    """Values in an interval; the message writes it as [lo, hi) and the like."""
    def rule(v):
        ok = (v > lo if low_open else v >= lo) and (v < hi if high_open else v <= hi)
        return None if ok else f"must be in {'(' if low_open else '['}{lo}, {hi}{')' if high_open else ']'}, got {v!r}"
    return rule


def one_of(choices) -> Rule:
    """Values from a fixed tuple of names, with a 'did you mean' hint."""
    def rule(v):
        if v in choices:
            return None
        return f"{v!r} is not one of {', '.join(choices)}" + _did_you_mean(str(v), choices, cutoff=0.45)
    return rule


def non_empty(v) -> str | None:
    """Strings that are not empty."""
    return None if v else "must not be empty"


positive_int = at_least(1)
non_negative = at_least(0)
positive = greater_than(0)
unit_open = in_range(0, 1, high_open=True)  # [0, 1)

def _did_you_mean(word: str, options, cutoff: float = 0.6) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=cutoff)
    return f" (did you mean '{close[0]}'?)" if close else ""


# ------------------------------------------------------------------------------------------- context
@dataclass
class ParseContext:
    """Where a config is being read from: names and lines for messages, rules, the folder for relative paths."""

    source: str | None  # file name shown in messages; None for command-line overrides (no line)
    base_dir: Path  # relative data paths resolve against this folder
    rules: Mapping[str, Rule] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)  # dotted path -> 1-based line of its key
    names: Mapping[str, str] = field(default_factory=dict)  # dotted path -> how a message shows it ('--steps')

    def name(self, path: str) -> str:
        """How a message names a dotted path."""
        return self.names.get(path, path)

    def given(self, path: str) -> bool:
        """Whether the preset (or the override) sets this path itself."""
        return path in self.lines or path in self.names

    def line(self, *paths: str) -> int | None:
        """Line of the first of `paths` present in the file, else of its nearest present parent section."""
        for p in paths:
            if p in self.lines:
                return self.lines[p]
        for p in paths:
            while "." in p:
                p = p.rsplit(".", 1)[0]
                if p in self.lines:
                    return self.lines[p]
        return 1 if self.source is not None else None

    def fail(self, path: str, what: str, hint: str | None = None, *, line: int | None = None,
             at: tuple[str, ...] = ()) -> typing.NoReturn:
        """Raise the one-line PresetError for `path` (line: given, else that of `at` or `path`)."""
        if line is None:
            line = self.line(*(at or (path,)))
        where = ""
        if self.source is not None:
            where = f"{self.source}:{line}: " if line is not None else f"{self.source}: "
        key = f"{self.name(path)}: " if path else ""
        tail = f" ({hint})" if hint else ""
        raise PresetError(" ".join(f"{where}{key}{what}{tail}".split("\n")))


# ------------------------------------------------------------------------------------ types and values
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _optional_inner(typ):
    """X for Optional[X], else None."""
    args = typing.get_args(typ)
    if typing.get_origin(typ) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"presets cannot read fields of type {typ!r}")
        return rest[0]
    return None


def _type_name(typ) -> str:
    inner = _optional_inner(typ)
    if inner is not None:
        return f"{_type_name(inner)} or null"
    if dataclasses.is_dataclass(typ):
        return "a mapping"
    if typing.get_origin(typ) in (tuple, list):
        return "a list"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(typ, str(typ))


def _show(v) -> str:
    """A value as a message shows it: strings quoted, null/true/false as YAML writes them."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, (int, float)):
        return repr(v)
    return repr(str(v))


def _scalar(node: ScalarNode):
    """The Python value YAML gives a scalar node (int, float, bool, None, str, date)."""
    return yaml.constructor.SafeConstructor().construct_object(node, deep=True)


def _node_line(node) -> int:
    return node.start_mark.line + 1


def _describe_node(node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return _show(_scalar(node))


class _Bad(Exception):
    """A value of the wrong type; the message says what is wrong (the caller adds where)."""


def _coerce_scalar(v, typ, plain_text: bool):
    """The value as `typ`, else _Bad saying what is wrong. `plain_text`: an unquoted YAML word."""
    if typ is bool:
        if isinstance(v, bool):
            return v
        raise _Bad(f"expected true or false, got {_show(v)}")
    if typ is int:
        if isinstance(v, int) and not isinstance(v, bool):  # bool is an int in Python, never in a preset
            return v
        raise _Bad(f"expected an integer, got {_show(v)}")
    if typ is float:
        if isinstance(v, str) and plain_text and _NUMBER.match(v):
            v = float(v)  # YAML 1.1 reads 3e-3 (no dot) as text; a person means the number
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _Bad(f"expected a number, got {_show(v)}")
        if not math.isfinite(v):
            raise _Bad(f"must be a finite number, got {_show(v)}")
        return float(v)
    if typ is str:
        if isinstance(v, str):
            return v
        raise _Bad(f"expected a string, got {_show(v)} (put it in quotes)")
    raise TypeError(f"presets cannot read fields of type {typ!r}")


def _from_node(node, typ, ctx: ParseContext, path: str):
    """Convert a YAML node to a value of type `typ` (dataclass, tuple, Optional or scalar)."""
    inner = _optional_inner(typ)
    if inner is not None:
        if isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return None
        typ = inner
    if dataclasses.is_dataclass(typ):
        return parse_dataclass(typ, node, ctx, path)
    origin = typing.get_origin(typ)
    if origin in (tuple, list):
        if not isinstance(node, SequenceNode):
            ctx.fail(path, f"expected a list, got {_describe_node(node)}", line=_node_line(node))
        args = typing.get_args(typ)
        repeated = origin is list or (len(args) == 2 and args[1] is Ellipsis)  # list[X] or tuple[X, ...]
        if not repeated and len(node.value) != len(args):
            ctx.fail(path, f"expected a list of {len(args)} items, got {len(node.value)}", line=_node_line(node))
        items = [_from_node(child, args[0] if repeated else args[i], ctx, f"{path}[{i}]")
                 for i, child in enumerate(node.value)]
        return tuple(items) if origin is tuple else items
    if not isinstance(node, ScalarNode):
        ctx.fail(path, f"expected {_type_name(typ)}, got {_describe_node(node)}", line=_node_line(node))
    value = _scalar(node)
    try:
        return _coerce_scalar(value, typ, plain_text=node.style is None)
    except _Bad as e:
        hint = "leave the key out to use the default" if value is None and ctx.source is not None else None
        ctx.fail(path, str(e), hint, line=_node_line(node))


def _check_rule(ctx: ParseContext, path: str, value, line: int | None = None) -> None:
    rule = ctx.rules.get(re.sub(r"\[\d+\]", "", path))
    if rule is not None and value is not None:
        problem = rule(value)
        if problem:
            ctx.fail(path, problem, line=line)


def parse_dataclass(cls, node, ctx: ParseContext, keypath: str):
    """Build an instance of dataclass `cls` from a YAML mapping node; omitted keys keep their defaults."""
    if not isinstance(node, MappingNode):
        what = f"{keypath} settings" if keypath else "settings at the top level"
        ctx.fail(keypath, f"expected a mapping of {what}, got {_describe_node(node)}", line=_node_line(node))
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs: dict[str, Any] = {}
    for key_node, value_node in node.value:
        line = _node_line(key_node)
        if not isinstance(key_node, ScalarNode):
            ctx.fail(keypath, "a key must be a plain name", line=line)
        key = str(key_node.value)
        path = f"{keypath}.{key}" if keypath else key
        if key not in names:
            hint = _did_you_mean(key, names)[2:-1] or f"{keypath or 'the top level'} takes: {', '.join(names)}"
            ctx.fail(path, f"unknown key '{key}'", hint, line=line)
        if key in kwargs:
            ctx.fail(path, f"is given twice (first on line {ctx.lines[path]})", line=line)
        ctx.lines[path] = line
        kwargs[key] = _from_node(value_node, hints[key], ctx, path)
        _check_rule(ctx, path, kwargs[key], line=_node_line(value_node))
    return cls(**kwargs)


# ------------------------------------------------------------------------------------ dump, override
class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings as literal blocks, so a description reads as it was written."""


def _represent_str(dumper, s):
    # several lines read best as a literal block; a lone newline (the default prompt) as "\n"
    style = "|" if "\n" in s.rstrip("\n") else '"' if "\n" in s else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style=style)


_Dumper.add_representer(str, _represent_str)


def _plain(obj):
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [_plain(v) for v in obj]
    return obj


def _leaf_paths(cls, prefix: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(cls):
        typ = _hints(cls)[f.name]
        if dataclasses.is_dataclass(typ):
            out += _leaf_paths(typ, prefix + f.name + ".")
        else:
            out.append(prefix + f.name)
    return out


def _from_value(value, typ, ctx: ParseContext, path: str):
    """Convert a Python value (or command-line text) to `typ` by the same rules as a preset value."""
    inner = _optional_inner(typ) or typ
    if isinstance(value, str) and inner is not str:
        try:  # command-line text reads as YAML would read it: "3e-3", "true", "null", "64"
            node = yaml.compose(value, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            node = None
        if node is None and value.strip():
            ctx.fail(path, f"expected {_type_name(typ)}, got {value!r}")
        return _from_node(node or yaml.compose("null", Loader=yaml.SafeLoader), typ, ctx, path)
    if value is None:
        if inner is typ:
            ctx.fail(path, f"expected {_type_name(typ)}, got null")
        return None
    if dataclasses.is_dataclass(inner):
        if not isinstance(value, inner):
            ctx.fail(path, f"expected {inner.__name__}, got {_show(value)}")
        return value
    if typing.get_origin(inner) in (tuple, list):
        if not isinstance(value, (tuple, list)):
            ctx.fail(path, f"expected a list, got {_show(value)}")
        return typing.get_origin(inner)(value)
    try:
        return _coerce_scalar(value, inner, plain_text=False)
    except _Bad as e:
        ctx.fail(path, str(e))


def _replace_path(obj, parts: list[str], value):
    if len(parts) == 1:
        return dataclasses.replace(obj, **{parts[0]: value})
    return dataclasses.replace(obj, **{parts[0]: _replace_path(getattr(obj, parts[0]), parts[1:], value)})
