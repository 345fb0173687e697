"""YAML -> frozen dataclasses, keeping every value's line: the generic part of preset loading.

The YAML is composed into nodes (not loaded into dicts) so that every key and value keeps its
line; the nodes are walked against the dataclass type hints, and each value is checked by the rule
its field declares (`simulator/rules.py`), or by one a kind passes for its dotted path. The rule
helpers live in `simulator/rules.py`; `simulator/presets.py` holds what is specific to our presets
(the GPT's cross-field checks, preset kinds, the shipped lessons).
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from simulator.i18n import _
from simulator.rules import Rule, did_you_mean, setting_of


class PresetError(Exception):
    """A person's mistake in a preset or an override; the message is one line naming where and what."""


# ------------------------------------------------------------------------------------------- context
@dataclass
class ParseContext:
    """Where a config is being read from: names and lines for messages, rules, the folder for relative paths."""

    source: str | None  # file name shown in messages; None for command-line overrides (no line)
    base_dir: Path  # relative data paths resolve against this folder
    rules: Mapping[str, Rule] = field(default_factory=dict)  # dotted path -> rule, before the field's own
    lines: dict[str, int] = field(default_factory=dict)  # dotted path -> 1-based line of its key
    names: Mapping[str, str] = field(default_factory=dict)  # dotted path -> how a message shows it ('--steps')
    read_data: bool = True  # False: a checkpoint's own config, whose training text may be gone (sampling needs none)
    fit_memory: bool = True  # False: the memory command, which bills a model too large to build here

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
        tail = _(" ({hint})").format(hint=hint) if hint else ""

        raise PresetError(" ".join(f"{where}{key}{what}{tail}".split("\n")))


# ------------------------------------------------------------------------------------ types and values
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_HINTS: dict[type, dict[str, Any]] = {}


def type_hints(cls) -> dict[str, Any]:
    """The resolved type hints of a dataclass, computed once per class."""
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
        return _("{type} or null").format(type=_type_name(inner))
    if dataclasses.is_dataclass(typ):
        return _("a mapping")
    if typing.get_origin(typ) in (tuple, list):
        return _("a list")
    return {int: _("an integer"), float: _("a number"), str: _("a string"), bool: _("true or false")}.get(typ, str(typ))


def show(v) -> str:
    """A value as a message shows it: strings quoted, null/true/false as YAML writes them."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return _("a list")
    if isinstance(v, dict):
        return _("a mapping")
    if isinstance(v, (int, float)):
        return repr(v)
    return repr(str(v))


def scalar(node: ScalarNode):
    """The Python value YAML gives a scalar node (int, float, bool, None, str, date)."""
    return yaml.constructor.SafeConstructor().construct_object(node, deep=True)


def node_line(node) -> int:
    """The 1-based line a YAML node starts on."""
    return node.start_mark.line + 1


def describe_node(node) -> str:
    """A node as a message shows it: 'a mapping', 'a list' or its value."""
    if isinstance(node, MappingNode):
        return _("a mapping")
    if isinstance(node, SequenceNode):
        return _("a list")
    return show(scalar(node))


class _Bad(Exception):
    """A value of the wrong type; the message says what is wrong (the caller adds where)."""


def _coerce_scalar(v, typ, plain_text: bool):
    """The value as `typ`, else _Bad saying what is wrong. `plain_text`: an unquoted YAML word."""
    if typ is bool:
        if isinstance(v, bool):
            return v
        raise _Bad(_("expected true or false, got {value}").format(value=show(v)))
    if typ is int:
        if isinstance(v, int) and not isinstance(v, bool):  # bool is an int in Python, never in a preset
            return v
        raise _Bad(_("expected an integer, got {value}").format(value=show(v)))
    if typ is float:
        if isinstance(v, str) and plain_text and _NUMBER.match(v):
            v = float(v)  # YAML 1.1 reads 3e-3 (no dot) as text; a person means the number
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _Bad(_("expected a number, got {value}").format(value=show(v)))
        if not math.isfinite(v):
            raise _Bad(_("must be a finite number, got {value}").format(value=show(v)))
        return float(v)
    if typ is str:
        if isinstance(v, str):
            return v
        raise _Bad(_("expected a string, got {value} (put it in quotes)").format(value=show(v)))
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
            ctx.fail(path, _("expected a list, got {value}").format(value=describe_node(node)), line=node_line(node))
        args = typing.get_args(typ)
        repeated = origin is list or (len(args) == 2 and args[1] is Ellipsis)  # list[X] or tuple[X, ...]
        if not repeated and len(node.value) != len(args):
            ctx.fail(path, _("expected a list of {n} items, got {got}").format(n=len(args), got=len(node.value)),
                     line=node_line(node))
        items = [_from_node(child, args[0] if repeated else args[i], ctx, f"{path}[{i}]")
                 for i, child in enumerate(node.value)]
        return tuple(items) if origin is tuple else items
    if not isinstance(node, ScalarNode):
        ctx.fail(path, _("expected {type}, got {value}").format(type=_type_name(typ), value=describe_node(node)),
                 line=node_line(node))
    value = scalar(node)
    try:
        return _coerce_scalar(value, typ, plain_text=node.style is None)
    except _Bad as e:
        hint = _("leave the key out to use the default") if value is None and ctx.source is not None else None
        ctx.fail(path, str(e), hint, line=node_line(node))


def check_rule(ctx: ParseContext, path: str, value, line: int | None = None, rule: Rule | None = None) -> None:
    """Fail when `value` breaks the rule the context gives its path, else `rule` (the field's own)."""
    rule = ctx.rules.get(re.sub(r"\[\d+\]", "", path), rule)
    if rule is not None and value is not None:
        problem = rule(value)
        if problem:
            ctx.fail(path, problem, line=line)


def parse_dataclass(cls, node, ctx: ParseContext, keypath: str):
    """Build an instance of dataclass `cls` from a YAML mapping node; omitted keys keep their defaults."""
    if not isinstance(node, MappingNode):
        what = (_("expected a mapping of {key} settings, got {value}") if keypath else
                _("expected a mapping of settings at the top level, got {value}"))
        ctx.fail(keypath, what.format(key=keypath, value=describe_node(node)), line=node_line(node))
    hints = type_hints(cls)
    declared = {f.name: f for f in dataclasses.fields(cls) if f.init}
    names = list(declared)
    kwargs: dict[str, Any] = {}
    for key_node, value_node in node.value:
        line = node_line(key_node)
        if not isinstance(key_node, ScalarNode):
            ctx.fail(keypath, _("a key must be a plain name"), line=line)
        key = str(key_node.value)
        path = f"{keypath}.{key}" if keypath else key
        if key not in names:
            hint = did_you_mean(key, names, bare=True) or (
                _("{key} takes: {names}") if keypath else _("the top level takes: {names}")).format(
                key=keypath, names=", ".join(names))
            ctx.fail(path, _("unknown key '{key}'").format(key=key), hint, line=line)
        if key in kwargs:
            ctx.fail(path, _("is given twice (first on line {line})").format(line=ctx.lines[path]), line=line)
        ctx.lines[path] = line
        kwargs[key] = _from_node(value_node, hints[key], ctx, path)
        check_rule(ctx, path, kwargs[key], line=node_line(value_node), rule=setting_of(declared[key]).rule)
    return cls(**kwargs)


# ------------------------------------------------------------------------------------ dump, override
class Dumper(yaml.SafeDumper):
    """Writes multi-line strings as literal blocks, so a description reads as it was written."""


def _represent_str(dumper, s):
    # several lines read best as a literal block; a lone newline (the default prompt) as "\n"
    style = "|" if "\n" in s.rstrip("\n") else '"' if "\n" in s else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style=style)


Dumper.add_representer(str, _represent_str)


def plain(obj):
    """A config as plain nested dicts and lists (what a preset file holds), in field order."""
    if dataclasses.is_dataclass(obj):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [plain(v) for v in obj]
    return obj


def leaf_paths(cls, prefix: str = "") -> list[str]:
    """Dotted paths of every non-dataclass field of `cls`, nested dataclasses walked."""
    out = []
    for f in dataclasses.fields(cls):
        typ = type_hints(cls)[f.name]
        if dataclasses.is_dataclass(typ):
            out += leaf_paths(typ, prefix + f.name + ".")
        else:
            out.append(prefix + f.name)
    return out


def from_value(value, typ, ctx: ParseContext, path: str):
    """Convert a Python value (or command-line text) to `typ` by the same rules as a preset value."""
    inner = _optional_inner(typ) or typ
    if isinstance(value, str) and inner is not str:
        try:  # command-line text reads as YAML would read it: "3e-3", "true", "null", "64"
            node = yaml.compose(value, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            node = None
        if node is None and value.strip():
            ctx.fail(path, _("expected {type}, got {value!r}").format(type=_type_name(typ), value=value))
        return _from_node(node or yaml.compose("null", Loader=yaml.SafeLoader), typ, ctx, path)
    if value is None:
        if inner is typ:
            ctx.fail(path, _("expected {type}, got null").format(type=_type_name(typ)))
        return None
    if dataclasses.is_dataclass(inner):
        if not isinstance(value, inner):
            ctx.fail(path, _("expected {type}, got {value}").format(type=inner.__name__, value=show(value)))
        return value
    if typing.get_origin(inner) in (tuple, list):
        if not isinstance(value, (tuple, list)):
            ctx.fail(path, _("expected a list, got {value}").format(value=show(value)))

        return typing.get_origin(inner)(value)
    try:
        return _coerce_scalar(value, inner, plain_text=False)
    except _Bad as e:
        ctx.fail(path, str(e))


def replace_path(obj, parts: list[str], value):
    """A copy of a frozen config with the field at path `parts` replaced."""
    if len(parts) == 1:
        return dataclasses.replace(obj, **{parts[0]: value})
    return dataclasses.replace(obj, **{parts[0]: replace_path(getattr(obj, parts[0]), parts[1:], value)})
