"""YAML presets -> validated, frozen configs; every mistake is one line: `FILE:LINE: key.path: what (hint)`.

A preset mirrors the config dataclasses exactly. The YAML is composed into nodes (not loaded into
dicts) so that every key and value keeps its line; the nodes are walked against the dataclass type
hints, and each value is checked by a rule looked up by its dotted path (`RULES`), then the whole
config by a kind's cross-field check. Other preset kinds (an optimizer race, a regression lesson)
reuse the same machinery through `register_kind`.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from simulator import config as C
from simulator.config import RunConfig
from simulator.data.corpus import builtin_corpus
from simulator.data.dataset import read_text_file, split_sizes
from simulator.data.tokenizer import DataError

DEFAULT_PRESET = "tiny-gpt"
DEFAULT_KIND = "gpt"


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

RULES: dict[str, Rule] = {
    "name": non_empty,
    "model.vocab_size": positive_int,
    "model.d_model": positive_int,
    "model.n_layer": positive_int,
    "model.n_head": positive_int,
    "model.seq_len": positive_int,
    "model.mlp_ratio": positive_int,
    "model.norm": one_of(C.NORMS),
    "model.norm_position": one_of(C.NORM_POSITIONS),
    "model.activation": one_of(C.ACTIVATIONS),
    "model.dropout": unit_open,
    "model.positional": one_of(C.POSITIONALS),
    "model.init": one_of(C.INITS),
    "model.init_std": positive,
    "model.dropout_mode": one_of(C.DROPOUT_MODES),
    "model.batchnorm_momentum": in_range(0, 1),
    "model.attention.impl": one_of(C.ATTENTION_IMPLS),
    "model.attention.mask": one_of(C.ATTENTION_MASKS),
    "model.attention.scale": one_of(C.ATTENTION_SCALES),
    "model.attention.n_kv_head": positive_int,
    "model.attention.tile_q": non_negative,
    "model.attention.tile_k": non_negative,
    "optim.name": one_of(C.OPTIMIZERS),
    "optim.lr": positive,
    "optim.weight_decay": non_negative,
    "optim.beta1": unit_open,
    "optim.beta2": unit_open,
    "optim.eps": positive,
    "optim.momentum": non_negative,
    "optim.schedule": one_of(C.SCHEDULES),
    "optim.warmup_steps": non_negative,
    "optim.decay_steps": positive_int,
    "optim.min_lr": non_negative,
    "optim.grad_clip": non_negative,
    "optim.clip_mode": one_of(("norm", "value")),
    "optim.dampening": in_range(0, 1),
    "optim.rho": in_range(0, 1),
    "optim.l1": non_negative,
    "optim.l2": non_negative,
    "optim.ftrl_beta": non_negative,
    "optim.step_size": positive_int,
    "optim.gamma": non_negative,
    "data.kind": one_of(C.DATA_KINDS),
    "data.path": non_empty,
    "data.val_fraction": in_range(0, 0.5, low_open=True),
    "train.steps": positive_int,
    "train.batch_size": positive_int,
    "train.seed": non_negative,
    "train.eval_every": non_negative,
    "train.eval_batches": positive_int,
    "train.stats_every": non_negative,
    "train.watch_layer": non_negative,
    "train.watch_head": non_negative,
    "train.checkpoint_every": non_negative,
    "train.dtype": one_of(C.DTYPES),
    "sampling.prompt": non_empty,
    "sampling.max_new": positive_int,
    "sampling.temperature": positive,
    "sampling.top_k": non_negative,
    "sampling.top_p": in_range(0, 1, low_open=True),
    "sampling.min_p": unit_open,
    "sampling.seed": non_negative,
}


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


# -------------------------------------------------------------------------------------------- kinds
class _Kind(NamedTuple):
    cls: type
    rules: Mapping[str, Rule]
    validate: Callable[[Any, ParseContext], Any] | None


_KINDS: dict[str, _Kind] = {}
# Kinds that register themselves when their module is imported; loading such a preset imports it.
KIND_MODULES = {"optimizer_race": "simulator.races", "sparse_logreg": "simulator.ftrl_lesson",
                "deep_mlp": "simulator.mlp_lab"}


def register_kind(name: str, cls, rules: Mapping[str, Rule], validate_fn=None) -> None:
    """Let presets with `kind: name` load as dataclass `cls`; validate_fn(cfg, ctx) checks across fields."""
    _KINDS[name] = _Kind(cls, rules, validate_fn)


def _kind_of(cls) -> str | None:
    for name, kind in _KINDS.items():
        if kind.cls is cls:
            return name
    return None


def _yaml_root(text: str, source: str):
    """The composed root node of `text`, with syntax errors turned into one-line PresetErrors."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = f"YAML syntax error: {e.problem or e.context}"
        if e.context and "single document" in e.context:
            what = "the file holds more than one YAML document (a preset is one mapping: remove the '---')"
        elif e.context and e.problem and e.context_mark is not None:
            what += f" ({e.context} on line {e.context_mark.line + 1})"
        raise PresetError(f"{source}:{mark.line + 1 if mark else 1}: {what}") from None
    except yaml.reader.ReaderError as e:  # a control character the YAML reader refuses
        line = text.count("\n", 0, e.position) + 1
        code = ord(e.character) if isinstance(e.character, str) else e.character
        raise PresetError(f"{source}:{line}: character #x{code:04x} is not allowed in YAML ({e.reason})") from None


def parse_any_text(text: str, source_name: str = "<preset>", base_dir=None):
    """Parse preset text of any registered kind (top-level `kind:`, default gpt) into its config."""
    root = _yaml_root(text, source_name)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    if root is None:
        raise PresetError(f"{source_name}:1: the preset is empty (expected a mapping with name, description, "
                          "model, optim, data, train, sampling)")
    if not isinstance(root, MappingNode):
        raise PresetError(f"{source_name}:{_node_line(root)}: expected a mapping of settings at the top level, "
                          f"got {_describe_node(root)}")
    kind, pairs = DEFAULT_KIND, []
    for key_node, value_node in root.value:
        if isinstance(key_node, ScalarNode) and key_node.value == "kind":
            kind = _scalar(value_node) if isinstance(value_node, ScalarNode) else None
            if kind not in _KINDS and kind in KIND_MODULES:
                importlib.import_module(KIND_MODULES[kind])
            if kind not in _KINDS:
                known = list(_KINDS) + [k for k in KIND_MODULES if k not in _KINDS]
                msg = f"{_show(kind)} is not one of {', '.join(known)}" + _did_you_mean(str(kind), known)
                raise PresetError(f"{source_name}:{_node_line(key_node)}: kind: {msg}")
        else:
            pairs.append((key_node, value_node))
    spec = _KINDS[kind]
    ctx = ParseContext(source_name, base, spec.rules)
    node = MappingNode(root.tag, pairs, root.start_mark, root.end_mark)
    cfg = parse_dataclass(spec.cls, node, ctx, "")
    if spec.validate is not None:
        cfg = spec.validate(cfg, ctx) or cfg
    return cfg


def parse_preset_text(text: str, source_name: str = "<preset>", base_dir=None) -> RunConfig:
    """Parse the YAML text of a gpt preset into a validated RunConfig."""
    cfg = parse_any_text(text, source_name, base_dir)
    if not isinstance(cfg, RunConfig):
        raise PresetError(f"{source_name}: kind: this is a '{_kind_of(type(cfg))}' preset, not a gpt preset")
    return cfg


def _read_preset(path) -> tuple[str, Path]:
    """The text of a preset file (found by `find_preset`); a file that is not UTF-8 is reported with its line."""
    resolved = find_preset(path)
    try:
        raw = resolved.read_bytes()
    except OSError as e:
        raise PresetError(f"preset file '{path}' cannot be read: {e.strerror or e}") from None
    try:
        return raw.decode("utf-8").removeprefix("\ufeff"), resolved
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise PresetError(f"{path}:{line}: not UTF-8 text: byte 0x{raw[e.start]:02x} at byte offset {e.start} "
                          "cannot be decoded (save the file as UTF-8)") from None


def load_any(path):
    """Load a preset file (or shipped preset name) of any registered kind."""
    text, resolved = _read_preset(path)
    return parse_any_text(text, str(path), resolved.parent)


def load_preset(path) -> RunConfig:
    """Load a gpt preset file (or shipped preset name such as 'tiny-gpt') into a validated RunConfig."""
    text, resolved = _read_preset(path)
    return parse_preset_text(text, str(path), resolved.parent)


# --------------------------------------------------------------------------------------- gpt checks
def _divisors(n: int, up_to: int = 16) -> str:
    return ", ".join(str(d) for d in range(1, min(n, up_to) + 1) if n % d == 0)


def _resolve_data_path(cfg: RunConfig, ctx: ParseContext) -> RunConfig:
    p = Path(os.path.expanduser(cfg.data.path))
    if not p.is_absolute():
        p = ctx.base_dir / p
    path = os.path.abspath(p)
    if path != cfg.data.path:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=path))
    return cfg


def _check_text(cfg: RunConfig, ctx: ParseContext, text: str, where: str) -> None:
    """The data must hold a window in each split, fit vocab_size, and know every prompt character."""
    at = ("data.path",) if cfg.data.kind == "text_file" else ("model.seq_len", "data")
    need = cfg.model.seq_len + 1
    n_train, n_val = split_sizes(len(text), cfg.data.val_fraction)
    val_split = f"validation split (last {100 * cfg.data.val_fraction:g}%)"
    for split, n in (("training split", n_train), (val_split, n_val)):
        if n < need:
            ctx.fail(at[0], f"the {split} of {where} has {n} characters, fewer than model.seq_len + 1 = {need}",
                     "use more text, another data.val_fraction or a smaller model.seq_len", at=at)
    chars = set(text)
    if cfg.model.vocab_size is not None and cfg.model.vocab_size < len(chars):
        ctx.fail("model.vocab_size", f"{cfg.model.vocab_size} is smaller than the {len(chars)} distinct characters "
                 f"of {where}", "leave it out to take it from the data")
    for i, ch in enumerate(cfg.sampling.prompt):
        if ch not in chars:
            ctx.fail("sampling.prompt", f"character {ch!r} at position {i} does not occur in {where}",
                     "a character model can only start from characters it was trained on")


_OWN_MESSAGE = re.compile(r"^((?:model|optim|data|train|sampling)\.[a-z0-9_]+)\s*:?\s*(.*)$")


def _backstop(ctx: ParseContext, cfg: RunConfig) -> None:
    """The optimizer's and the sampler's own checks, so a preset never passes what they would refuse."""
    from simulator.optim import OptimError, check_optim  # imported here: it compiles kernels
    from simulator.sampling import SamplingError, validate_sampling

    for check, arg, error in ((check_optim, cfg.optim, OptimError), (validate_sampling, cfg.sampling, SamplingError)):
        try:
            check(arg)
        except error as e:
            m = _OWN_MESSAGE.match(str(e))
            if m is None:
                ctx.fail("optim" if error is OptimError else "sampling", str(e))
            ctx.fail(m.group(1), m.group(2))


def validate_gpt(cfg: RunConfig, ctx: ParseContext) -> RunConfig:
    """Cross-field checks of a RunConfig; resolves data.path and reads the data once to check it."""
    m, o, t, d = cfg.model, cfg.optim, cfg.train, cfg.data
    if m.d_model % m.n_head:
        hint = f"divisors of {m.d_model} up to 16: {_divisors(m.d_model)}"
        if ctx.given("model.d_model") and not ctx.given("model.n_head"):
            ctx.fail("model.d_model", f"{m.d_model} is not divisible by {ctx.name('model.n_head')} {m.n_head}", hint)
        ctx.fail("model.n_head", f"{m.n_head} does not divide {ctx.name('model.d_model')} {m.d_model}", hint,
                 at=("model.n_head", "model.d_model"))
    if m.attention.n_kv_head is not None and m.n_head % m.attention.n_kv_head:
        ctx.fail("model.attention.n_kv_head", f"{m.attention.n_kv_head} does not divide {ctx.name('model.n_head')} "
                 f"{m.n_head}", f"each key/value head serves an equal group of query heads; use one of "
                 f"{_divisors(m.n_head, m.n_head)}", at=("model.attention.n_kv_head", "model.n_head"))
    if m.positional == "rope" and m.head_size % 2:
        ctx.fail("model.positional", f"rope rotates pairs of channels, so the head size must be even, but "
                 f"{ctx.name('model.d_model')} {m.d_model} / {ctx.name('model.n_head')} {m.n_head} = {m.head_size}",
                 "choose d_model and n_head with an even quotient", at=("model.positional", "model.n_head"))
    if t.watch_layer >= m.n_layer:
        ctx.fail("train.watch_layer", f"{t.watch_layer} is not a layer of a {m.n_layer}-layer model",
                 f"use 0 to {m.n_layer - 1}", at=("train.watch_layer", "model.n_layer"))
    if t.watch_head >= m.n_head:
        ctx.fail("train.watch_head", f"{t.watch_head} is not a head of a {m.n_head}-head model",
                 f"use 0 to {m.n_head - 1}", at=("train.watch_head", "model.n_head"))
    if o.schedule in ("cosine", "warmup_cosine", "linear_decay") and o.min_lr > o.lr:
        ctx.fail("optim.min_lr", f"{o.min_lr!r} is larger than {ctx.name('optim.lr')} {o.lr!r}",
                 f"schedule {o.schedule} goes from lr down to min_lr", at=("optim.min_lr", "optim.lr"))
    if o.schedule in ("warmup_cosine", "linear_decay") and o.warmup_steps >= o.decay_steps:
        ctx.fail("optim.warmup_steps", f"{o.warmup_steps} is not less than {ctx.name('optim.decay_steps')} "
                 f"{o.decay_steps}", f"schedule {o.schedule} decays between the two",
                 at=("optim.warmup_steps", "optim.decay_steps"))
    if o.name in ("momentum", "nesterov") and o.momentum <= 0:
        ctx.fail("optim.momentum", f"must be greater than 0 for optimizer {o.name}, got {o.momentum!r}",
                 "e.g. 0.9", at=("optim.momentum", "optim.name"))
    if o.name == "nesterov" and o.dampening != 0:
        ctx.fail("optim.dampening", f"must be 0 for optimizer nesterov, got {o.dampening!r}")
    if o.name == "ftrl" and o.weight_decay != 0:
        ctx.fail("optim.weight_decay", "is not used by ftrl", "set optim.l1 / optim.l2 instead",
                 at=("optim.weight_decay", "optim.name"))
    _backstop(ctx, cfg)
    if d.kind == "text_file" or (d.kind == "lines" and d.path is not None):
        if d.path is None:
            ctx.fail("data.kind", "text_file needs data.path (the text file to train on)", at=("data.kind",))
        cfg = _resolve_data_path(cfg, ctx)
        try:
            text = read_text_file(cfg.data.path)
        except DataError as e:
            ctx.fail("data.path", getattr(e, "problem", str(e)))
        _check_text(cfg, ctx, text, f"'{cfg.data.path}'")
    else:
        if d.path is not None:
            ctx.fail("data.path", f"is set but data.kind is {d.kind}",
                     "set data.kind: text_file to train on the file, or remove data.path")
        _check_text(cfg, ctx, builtin_corpus(), "the built-in corpus")
    return cfg


register_kind(DEFAULT_KIND, RunConfig, RULES, validate_gpt)


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


def dump_config(cfg) -> str:
    """YAML text of a config dataclass in field order; parsing it gives back an equal config."""
    data = _plain(cfg)
    kind = _kind_of(type(cfg))
    if kind is not None and kind != DEFAULT_KIND:
        data = {"kind": kind, **data}
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=120)


def _leaf_paths(cls, prefix: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(cls):
        typ = _hints(cls)[f.name]
        if dataclasses.is_dataclass(typ):
            out += _leaf_paths(typ, prefix + f.name + ".")
        else:
            out.append(prefix + f.name)
    return out


def flag_name(path: str, cls=RunConfig) -> str:
    """The command-line style name of a dotted path: '--steps', or '--train.seed' where the last part is shared."""
    leaf = path.rsplit(".", 1)[-1]
    shared = sum(p.rsplit(".", 1)[-1] == leaf for p in _leaf_paths(cls)) > 1
    return "--" + (path if shared else leaf).replace("_", "-")


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


def override(cfg, flag_names: Mapping[str, str] | None = None, **dotted):
    """A new config with dotted paths replaced (`**{"train.steps": 10}`), checked by the preset rules."""
    spec = _KINDS.get(_kind_of(type(cfg)) or "", _Kind(type(cfg), {}, None))
    names = {p: (flag_names or {}).get(p) or flag_name(p, type(cfg)) for p in dotted}
    ctx = ParseContext(None, Path.cwd(), spec.rules, names=names)
    leaves = _leaf_paths(type(cfg))
    for path, value in dotted.items():
        typ = type(cfg)
        for part in path.split("."):
            hints = _hints(typ) if dataclasses.is_dataclass(typ) else {}
            if part not in hints:
                ctx.fail(path, "is not a setting" + _did_you_mean(path, leaves))
            typ = hints[part]
        converted = _from_value(value, typ, ctx, path)
        _check_rule(ctx, path, converted)
        cfg = _replace_path(cfg, path.split("."), converted)
    if spec.validate is not None:
        cfg = spec.validate(cfg, ctx) or cfg
    return cfg


# ------------------------------------------------------------------------------------ shipped presets
class PresetInfo(NamedTuple):
    """A shipped preset as a list shows it."""

    name: str
    description: str  # first line of the preset's description
    path: Path


def presets_dir() -> Path:
    """The folder of shipped presets: the repository's presets/ when present, else the installed package data."""
    root = Path(__file__).resolve().parent.parent
    in_repo = (root / "pyproject.toml").is_file() and (root / "presets").is_dir()  # not some other site-packages dir
    return root / "presets" if in_repo else Path(__file__).resolve().parent / "presets_data"


def list_presets(folder=None) -> list[PresetInfo]:
    """The presets of a folder (default: the shipped ones), sorted by name."""
    folder = Path(folder) if folder is not None else presets_dir()
    out = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            desc = data.get("description", "") if isinstance(data, dict) else ""
            summary = str(desc).strip().split("\n", 1)[0] if desc else ""
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            summary = "(cannot be read: check it with load_preset)"
        out.append(PresetInfo(path.stem, summary, path))
    return out


def find_preset(name_or_path) -> Path:
    """The file of a preset given as 'tiny-gpt', 'tiny-gpt.yaml' or a path."""
    text = str(name_or_path)
    path = Path(os.path.expanduser(text))
    if path.is_file():
        return path
    if path.is_dir():
        raise PresetError(f"preset file '{text}' is a folder, not a YAML file")
    if "/" in text or os.sep in text or path.suffix not in ("", ".yaml"):
        raise PresetError(f"preset file '{text}' does not exist")
    stem = text.removesuffix(".yaml")
    shipped = presets_dir() / f"{stem}.yaml"
    if shipped.is_file():
        return shipped
    names = [p.name for p in list_presets()]
    hint = _did_you_mean(stem, names)[2:-1]
    raise PresetError(f"no preset named '{text}' and no such file ({hint + ' ' if hint else ''}"
                      f"available: {', '.join(names)})")
