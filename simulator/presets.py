"""YAML presets -> validated, frozen configs; every mistake is one line: `FILE:LINE: key.path: what (hint)`.

A preset mirrors the config dataclasses exactly. The generic walk (YAML nodes against dataclass
type hints, with lines kept) is `simulator/yamlconfig.py`; here are the rules of our presets by
dotted path (`RULES`), the GPT's cross-field checks, preset kinds (a top-level `kind:` names a lesson
of `simulator.lessons`, whose spec brings its config, rules and checks; no `kind:` is the GPT), dump /
override, and the shipped lessons.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from yaml.nodes import MappingNode, ScalarNode

from simulator import config as C
from simulator.config import RunConfig
from simulator.data.corpus import builtin_corpus
from simulator.data.dataset import load_dataset, read_text_file, split_sizes
from simulator.data.tokenizer import DataError
from simulator.i18n import _
from simulator.rules import (  # noqa: F401 (re-exported: rule helpers for other preset kinds)
    Rule,
    at_least,
    declared_rule,
    did_you_mean,
    greater_than,
    in_range,
    non_empty,
    non_negative,
    one_of,
    positive,
    positive_int,
    unit_open,
)
from simulator.yamlconfig import (
    Dumper,
    ParseContext,
    PresetError,
    check_rule,
    describe_node,
    from_value,
    leaf_paths,
    node_line,
    parse_dataclass,
    plain,
    replace_path,
    scalar,
    show,
    type_hints,
)

DEFAULT_PRESET = "tiny-gpt"
DEFAULT_KIND = "gpt"


# The gpt rules by dotted path, as the fields of RunConfig declare them (other kinds reuse the optim. ones).
RULES: dict[str, Rule] = {path: s.rule for path, s in C.SETTINGS.items() if s.rule is not None}


# -------------------------------------------------------------------------------------------- kinds
class _Kind(NamedTuple):
    name: str
    cls: type
    rules: Mapping[str, Rule]
    validate: Callable[[Any, ParseContext], Any]


def _kind(name: str) -> _Kind | None:
    """The gpt kind (the default), or the registered lesson of that name."""
    from simulator.lessons import lesson_for  # imported here: the lesson modules import this one

    if name == DEFAULT_KIND:
        return _Kind(DEFAULT_KIND, RunConfig, RULES, validate_gpt)
    lesson = lesson_for(name)
    return None if lesson is None else _Kind(lesson.kind, lesson.config, lesson.rules, lesson.validate)


def _kind_of_config(cfg) -> _Kind | None:
    """The kind a config dataclass belongs to (None for a dataclass no preset kind has)."""
    from simulator.lessons import lesson_of

    lesson = lesson_of(cfg)
    if lesson is not None:
        return _kind(lesson.kind)
    return _kind(DEFAULT_KIND) if type(cfg) is RunConfig else None


def _kind_names() -> list[str]:
    from simulator.lessons import all_lessons

    return [DEFAULT_KIND] + [lesson.kind for lesson in all_lessons()]


def _yaml_root(text: str, source: str):
    """The composed root node of `text`, with syntax errors turned into one-line PresetErrors."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        # the YAML library's own words (e.problem, e.context) stay English: they come from the parser
        what = _("YAML syntax error: {problem}").format(problem=e.problem or e.context)
        if e.context and "single document" in e.context:
            what = _("the file holds more than one YAML document (a preset is one mapping: remove the '---')")
        elif e.context and e.problem and e.context_mark is not None:
            what = _("YAML syntax error: {problem} ({context} on line {line})").format(
                problem=e.problem, context=e.context, line=e.context_mark.line + 1)
        raise PresetError(f"{source}:{mark.line + 1 if mark else 1}: {what}") from None
    except yaml.reader.ReaderError as e:  # a control character the YAML reader refuses
        line = text.count("\n", 0, e.position) + 1
        code = ord(e.character) if isinstance(e.character, str) else e.character
        raise PresetError(_("{source}:{line}: character #x{code:04x} is not allowed in YAML ({reason})").format(
            source=source, line=line, code=code, reason=e.reason)) from None


def parse_any_text(text: str, source_name: str = "<preset>", base_dir=None, read_data: bool = True,
                   fit_memory: bool = True, lesson: bool = True):
    """Parse preset text of any registered kind (top-level `kind:`, default gpt) into its config.

    read_data=False skips reading the training text (a checkpoint's saved config, to sample from);
    fit_memory=False accepts a GPT larger than this machine's free memory (the memory command bills it);
    lesson=False leaves a `lesson:` card section unchecked (simulator/lessons/cards.py reads it).
    """
    return parse_with_card(text, source_name, base_dir, read_data, fit_memory, lesson)[0]


def parse_with_card(text: str, source_name: str = "<preset>", base_dir=None, read_data: bool = True,
                    fit_memory: bool = True, lesson: bool = True):
    """(config, lesson card or None) of preset text: a top-level `lesson:` is a card (simulator/lessons/cards.py)."""
    root = _yaml_root(text, source_name)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    if root is None:
        raise PresetError(_("{file}:1: the preset is empty (expected a mapping with name, description, "
                            "model, optim, data, train, sampling)").format(file=source_name))
    if not isinstance(root, MappingNode):
        raise PresetError(_("{file}:{line}: expected a mapping of settings at the top level, got {value}").format(
            file=source_name, line=node_line(root), value=describe_node(root)))
    kind, pairs, card_pair = DEFAULT_KIND, [], None
    for key_node, value_node in root.value:
        if isinstance(key_node, ScalarNode) and key_node.value == "lesson" and card_pair is None:
            card_pair = (key_node, value_node)
        elif isinstance(key_node, ScalarNode) and key_node.value == "kind":
            kind = scalar(value_node) if isinstance(value_node, ScalarNode) else None
            if not isinstance(kind, str) or _kind(kind) is None:
                known = _kind_names()
                msg = _("{value} is not one of {choices}").format(value=show(kind), choices=", ".join(known))
                raise PresetError(f"{source_name}:{node_line(key_node)}: kind: {msg}{did_you_mean(str(kind), known)}")
        else:
            pairs.append((key_node, value_node))
    spec = _kind(kind)
    ctx = ParseContext(source_name, base, spec.rules, read_data=read_data, fit_memory=fit_memory)
    node = MappingNode(root.tag, pairs, root.start_mark, root.end_mark)
    cfg = parse_dataclass(spec.cls, node, ctx, "")
    cfg = spec.validate(cfg, ctx) or cfg
    if card_pair is None or not lesson:
        return cfg, None
    from simulator.lessons.cards import parse_card  # imported here: the lesson modules import this one

    return cfg, parse_card(*card_pair, cfg, ctx, getattr(cfg, "name", "") or Path(source_name).stem)


def parse_preset_text(text: str, source_name: str = "<preset>", base_dir=None, read_data: bool = True) -> RunConfig:
    """Parse the YAML text of a gpt preset into a validated RunConfig (read_data: see parse_any_text)."""
    cfg = parse_any_text(text, source_name, base_dir, read_data)
    if not isinstance(cfg, RunConfig):
        raise PresetError(_("{file}: kind: this is a '{kind}' preset, not a gpt preset").format(
            file=source_name, kind=_kind_of_config(cfg).name))
    return cfg


def _read_preset(path) -> tuple[str, Path]:
    """The text of a preset file (found by `find_preset`); a file that is not UTF-8 is reported with its line."""
    resolved = find_preset(path)
    try:
        raw = resolved.read_bytes()
    except OSError as e:
        raise PresetError(_("preset file '{path}' cannot be read: {reason}").format(
            path=path, reason=e.strerror or e)) from None
    try:
        return raw.decode("utf-8").removeprefix("\ufeff"), resolved
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise PresetError(_("{path}:{line}: not UTF-8 text: byte 0x{byte:02x} at byte offset {offset} cannot be "
                            "decoded (save the file as UTF-8)").format(
            path=path, line=line, byte=raw[e.start], offset=e.start)) from None


def load_any(path, fit_memory: bool = True):
    """Load a preset file (or shipped preset name) of any registered kind (fit_memory: see parse_any_text)."""
    text, resolved = _read_preset(path)
    return parse_any_text(text, str(path), resolved.parent, fit_memory=fit_memory)


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


def _split_name(val_fraction: float | None) -> str:
    """The training split (None), or the validation split with its share, as a message names it."""
    if val_fraction is None:
        return _("training split")
    return _("validation split (last {percent:g}%)").format(percent=100 * val_fraction)


def _check_text(cfg: RunConfig, ctx: ParseContext, text: str, where: str) -> None:
    """The data must hold a window in each split, fit vocab_size, and know every prompt character."""
    if cfg.data.tokenizer != "char":
        _check_subword(cfg, ctx, text, where)
        return
    at = ("data.path",) if cfg.data.kind == "text_file" else ("model.seq_len", "data")
    need = cfg.model.seq_len + 1
    n_train, n_val = split_sizes(len(text), cfg.data.val_fraction)
    for split, n in ((_split_name(None), n_train), (_split_name(cfg.data.val_fraction), n_val)):
        if n < need:
            ctx.fail(at[0], _("the {split} of {where} has {n} characters, fewer than model.seq_len + 1 = {need}")
                     .format(split=split, where=where, n=n, need=need),
                     _("use more text, another data.val_fraction or a smaller model.seq_len"), at=at)
    chars = set(text)
    if cfg.model.vocab_size is not None and cfg.model.vocab_size < len(chars):
        ctx.fail("model.vocab_size", _("{vocab_size} is smaller than the {n} distinct characters of {where}").format(
            vocab_size=cfg.model.vocab_size, n=len(chars), where=where), _("leave it out to take it from the data"))
    for i, ch in enumerate(cfg.sampling.prompt):
        if ch not in chars:
            ctx.fail("sampling.prompt", _("character {ch!r} at position {i} does not occur in {where}").format(
                ch=ch, i=i, where=where), _("a character model can only start from characters it was trained on"))
    if ctx.fit_memory:
        _check_memory(cfg, ctx, len(chars))


def _check_subword(cfg: RunConfig, ctx: ParseContext, text: str, where: str) -> None:
    """bpe / wordpiece: vocab_size holds the base alphabet; each split, tokenized, holds a window."""
    from simulator.data.tokenizers import build_tokenizer, min_vocab_size

    d, m = cfg.data, cfg.model
    if d.kind == "lines":
        ctx.fail("data.tokenizer", _("{tokenizer} does not work with data.kind lines yet (its <pad> is a character)")
                 .format(tokenizer=d.tokenizer), _("use data.tokenizer char, or data.kind builtin or text_file"),
                 at=("data.tokenizer",))
    n_train, _val = split_sizes(len(text), d.val_fraction)
    low = min_vocab_size(d.tokenizer, text[:n_train])
    if d.vocab_size < low:
        what = (_("{vocab_size} is smaller than the {low} tokens {tokenizer} starts from: its 256 byte tokens, "
                  "which let it encode any text") if d.tokenizer == "bpe" else
                _("{vocab_size} is smaller than the {low} tokens {tokenizer} starts from: its 4 special tokens, 256 "
                  "byte-fallback tokens and one piece per character (and ## continuation) of the training split of "
                  "{where}"))
        ctx.fail("data.vocab_size", what.format(vocab_size=d.vocab_size, low=low, tokenizer=d.tokenizer, where=where),
                 _("use at least {low}; a few hundred more give it room to learn").format(low=low),
                 at=("data.vocab_size",))
    tok = build_tokenizer(d.tokenizer, text[:n_train], d.vocab_size)
    need = m.seq_len + 1
    at = ("data.path",) if d.kind == "text_file" else ("model.seq_len", "data")
    for split, part in ((_split_name(None), text[:n_train]), (_split_name(d.val_fraction), text[n_train:])):
        n = len(tok.encode(part))
        if n < need:
            ctx.fail(at[0], _("the {split} of {where} has {n} {tokenizer} tokens, fewer than model.seq_len + 1 = "
                              "{need}").format(split=split, where=where, n=n, tokenizer=d.tokenizer, need=need),
                     _("use more text, another data.val_fraction or a smaller model.seq_len"), at=at)
    if m.vocab_size is not None and m.vocab_size < tok.vocab_size:
        ctx.fail("model.vocab_size", _("{vocab_size} is smaller than the {tokens} tokens of the {tokenizer} "
                                       "tokenizer").format(vocab_size=m.vocab_size, tokens=tok.vocab_size,
                                                           tokenizer=d.tokenizer),
                 _("leave it out to take it from the data"), at=("model.vocab_size",))
    if ctx.fit_memory:
        _check_memory(cfg, ctx, tok.vocab_size)


def _check_memory(cfg: RunConfig, ctx: ParseContext, n_chars: int) -> None:
    """A model must fit the memory this machine has free now, or it is refused before anything is allocated."""
    from simulator.memory import available_bytes, gib, memory_bill  # imported here: it builds on the model

    have = available_bytes()
    bill = memory_bill(cfg, vocab_size=cfg.model.vocab_size or n_chars)
    if have is not None and bill.total > have:
        ctx.fail("model", _("this model needs {bill}; this machine has {free} available").format(
            bill=bill.sentence(), free=gib(have)),
                 _("use a smaller d_model, n_layer, seq_len or train.batch_size"), at=("model",))


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


def _check_local_attention(ctx: ParseContext, m) -> None:
    """attention.window and global_tokens belong to mask local; a window of at least one key, fewer globals than T."""
    a, name = m.attention, ctx.name
    if a.mask != "local":
        for key, value in (("window", a.window), ("global_tokens", a.global_tokens)):
            if value:
                ctx.fail(f"model.attention.{key}", _("{value} is set but {mask_key} is {mask}").format(
                    value=value, mask_key=name("model.attention.mask"), mask=a.mask),
                    _("set {mask_key}: local, or leave {key} out").format(mask_key=name("model.attention.mask"),
                                                                          key=key),
                    at=(f"model.attention.{key}", "model.attention.mask"))
        return
    if a.window < 1:
        ctx.fail("model.attention.window", _("mask local needs a window of at least 1 key, got {window}").format(
            window=a.window), _("e.g. window: 256 (each position sees itself and the 255 before it)"),
            at=("model.attention.window", "model.attention.mask"))
    if a.global_tokens >= m.seq_len:
        ctx.fail("model.attention.global_tokens", _("{n} global tokens in a context of {key} {seq_len} makes every "
                                                    "position global").format(
            n=a.global_tokens, key=name("model.seq_len"), seq_len=m.seq_len),
            _("use fewer than {seq_len}, or mask: causal for full attention").format(seq_len=m.seq_len),
            at=("model.attention.global_tokens", "model.seq_len"))


def validate_gpt(cfg: RunConfig, ctx: ParseContext) -> RunConfig:
    """Cross-field checks of a RunConfig; resolves data.path and reads the data once to check it."""
    from simulator.backend import backend_problem
    from simulator.model.lora import lora_problem
    from simulator.optim import optim_problem  # imported here: it compiles kernels

    m, o, t, d = cfg.model, cfg.optim, cfg.train, cfg.data
    if m.d_model % m.n_head:
        hint = _("divisors of {d_model} up to 16: {divisors}").format(d_model=m.d_model, divisors=_divisors(m.d_model))
        if ctx.given("model.d_model") and not ctx.given("model.n_head"):
            ctx.fail("model.d_model", _("{d_model} is not divisible by {key} {n_head}").format(
                d_model=m.d_model, key=ctx.name("model.n_head"), n_head=m.n_head), hint)
        ctx.fail("model.n_head", _("{n_head} does not divide {key} {d_model}").format(
            n_head=m.n_head, key=ctx.name("model.d_model"), d_model=m.d_model), hint,
            at=("model.n_head", "model.d_model"))

    if m.attention.n_kv_head is not None and m.n_head % m.attention.n_kv_head:
        ctx.fail("model.attention.n_kv_head", _("{n_kv_head} does not divide {key} {n_head}").format(
            n_kv_head=m.attention.n_kv_head, key=ctx.name("model.n_head"), n_head=m.n_head),
            _("each key/value head serves an equal group of query heads; use one of {divisors}").format(
                divisors=_divisors(m.n_head, m.n_head)), at=("model.attention.n_kv_head", "model.n_head"))
    _check_local_attention(ctx, m)
    if m.positional == "rope" and m.head_size % 2:
        ctx.fail("model.positional", _("rope rotates pairs of channels, so the head size must be even, but "
                                       "{key_d} {d_model} / {key_h} {n_head} = {head_size}").format(
            key_d=ctx.name("model.d_model"), d_model=m.d_model, key_h=ctx.name("model.n_head"), n_head=m.n_head,
            head_size=m.head_size),
            _("choose d_model and n_head with an even quotient"), at=("model.positional", "model.n_head"))
    if t.watch_layer >= m.n_layer:
        ctx.fail("train.watch_layer", _("{watch_layer} is not a layer of a {n_layer}-layer model").format(
            watch_layer=t.watch_layer, n_layer=m.n_layer),
            _("use 0 to {last}").format(last=m.n_layer - 1), at=("train.watch_layer", "model.n_layer"))
    if t.early_stopping.patience and not t.eval_every:
        ctx.fail("train.early_stopping.patience", _("{patience} needs validation losses to watch, but {key} is 0")
                 .format(patience=t.early_stopping.patience, key=ctx.name("train.eval_every")),
                 _("set train.eval_every to how often to evaluate"),
                 at=("train.early_stopping.patience", "train.eval_every"))
    if t.watch_head >= m.n_head:
        ctx.fail("train.watch_head", _("{watch_head} is not a head of a {n_head}-head model").format(
            watch_head=t.watch_head, n_head=m.n_head),
            _("use 0 to {last}").format(last=m.n_head - 1), at=("train.watch_head", "model.n_head"))

    problem = lora_problem(m, ctx.given("model.lora") or any(p.startswith("model.lora.") for p in ctx.lines))
    if problem is not None:
        ctx.fail(problem.path, problem.what, problem.hint, at=problem.at)
    problem = optim_problem(o, ctx.name)  # the optimizer's and the schedule's own cross-field checks
    if problem is not None:
        ctx.fail(problem.path, problem.what, problem.hint, at=problem.at)
    problem = backend_problem(cfg)  # what backend cuda cannot run yet (LoRA); a missing GPU is the session's
    if problem is not None:
        ctx.fail(problem.path, problem.what, problem.hint, at=problem.at)
    _backstop(ctx, cfg)
    if not ctx.read_data:
        return cfg
    if d.kind == "text_file" or (d.kind == "lines" and d.path is not None):
        if d.path is None:
            ctx.fail("data.kind", _("text_file needs data.path (the text file to train on)"), at=("data.kind",))
        cfg = _resolve_data_path(cfg, ctx)
        try:
            text = read_text_file(cfg.data.path)
        except DataError as e:
            ctx.fail("data.path", getattr(e, "problem", str(e)))
        _check_text(cfg, ctx, text, f"'{cfg.data.path}'")  # a file name, not a word to translate
    else:
        if d.path is not None:
            ctx.fail("data.path", _("is set but data.kind is {kind}").format(kind=d.kind),
                     _("set data.kind: text_file to train on the file, or remove data.path"))
        if d.kind == "world":
            from simulator.data.world import world_corpus
            _check_text(cfg, ctx, world_corpus(), _("the invented-world corpus"))
        else:
            _check_text(cfg, ctx, builtin_corpus(), _("the built-in corpus"))
    if m.init_from is not None:
        cfg = _check_init_from(cfg, ctx)
    return cfg


def _check_init_from(cfg: RunConfig, ctx: ParseContext) -> RunConfig:
    """model.init_from resolved against the preset's folder, and a checkpoint there that fits (LoRA: lora_io)."""
    from simulator.lora_io import init_from_problem, resolve

    path = resolve(cfg.model.init_from, ctx.base_dir)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, init_from=path))
    try:
        tokenizer = load_dataset(cfg.data).tokenizer
    except DataError as e:
        ctx.fail("data", str(e))
    problem = init_from_problem(cfg.model, tokenizer, path)
    if problem:
        ctx.fail("model.init_from", problem)
    return cfg


# ------------------------------------------------------------------------------------ dump, override
def dump_config(cfg) -> str:
    """YAML text of a config dataclass in field order; parsing it gives back an equal config."""
    data = plain(cfg)
    if isinstance(cfg, RunConfig) and not cfg.model.lora.on:  # no adapters: no section (rank 0 is not a setting)
        del data["model"]["lora"]
    kind = _kind_of_config(cfg)
    if kind is not None and kind.name != DEFAULT_KIND:
        data = {"kind": kind.name, **data}
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=120)


def flag_name(path: str, cls=RunConfig) -> str:
    """The command-line style name of a dotted path: '--steps', or '--train.seed' where the last part is shared."""
    leaf = path.rsplit(".", 1)[-1]
    shared = sum(p.rsplit(".", 1)[-1] == leaf for p in leaf_paths(cls)) > 1
    return "--" + (path if shared else leaf).replace("_", "-")


def override(cfg, flag_names: Mapping[str, str] | None = None, **dotted):
    """A new config with dotted paths replaced (`**{"train.steps": 10}`), checked by the preset rules."""
    spec = _kind_of_config(cfg) or _Kind("", type(cfg), {}, lambda c, _ctx: c)
    names = {p: (flag_names or {}).get(p) or flag_name(p, type(cfg)) for p in dotted}
    ctx = ParseContext(None, Path.cwd(), spec.rules, names=names)
    leaves = leaf_paths(type(cfg))
    for path, value in dotted.items():
        typ = type(cfg)
        for part in path.split("."):
            hints = type_hints(typ) if dataclasses.is_dataclass(typ) else {}
            if part not in hints:
                ctx.fail(path, _("is not a setting") + did_you_mean(path, leaves))
            typ = hints[part]
        converted = from_value(value, typ, ctx, path)
        check_rule(ctx, path, converted, rule=declared_rule(type(cfg), path))
        cfg = replace_path(cfg, path.split("."), converted)
    return spec.validate(cfg, ctx) or cfg


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


NOT_PRESETS = ("course",)  # presets/course.yaml orders the lesson cards (simulator/lessons/cards_course.py)


def list_presets(folder=None) -> list[PresetInfo]:
    """The presets of a folder (default: the shipped ones), sorted by name."""
    folder = Path(folder) if folder is not None else presets_dir()
    out = []
    for path in sorted(folder.glob("*.yaml")):
        if path.stem in NOT_PRESETS:
            continue
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            desc = data.get("description", "") if isinstance(data, dict) else ""
            # the whole description is one message of the catalogs; its first line is the summary
            summary = _(str(desc).strip()).split("\n", 1)[0] if desc else ""
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            summary = _("(cannot be read: check it with load_preset)")

        out.append(PresetInfo(path.stem, summary, path))
    return out


def find_preset(name_or_path) -> Path:
    """The file of a preset given as 'tiny-gpt', 'tiny-gpt.yaml' or a path."""
    text = str(name_or_path)
    path = Path(os.path.expanduser(text))
    if path.is_file():
        return path
    if path.is_dir():
        raise PresetError(_("preset file '{text}' is a folder, not a YAML file").format(text=text))
    if "/" in text or os.sep in text or path.suffix not in ("", ".yaml"):
        raise PresetError(_("preset file '{text}' does not exist").format(text=text))
    stem = text.removesuffix(".yaml")
    shipped = presets_dir() / f"{stem}.yaml"
    if shipped.is_file():
        return shipped
    names = [p.name for p in list_presets()]
    hint = did_you_mean(stem, names, bare=True)
    raise PresetError((_("no preset named '{name}' and no such file ({hint} available: {names})") if hint else
                       _("no preset named '{name}' and no such file (available: {names})")).format(
        name=text, hint=hint, names=", ".join(names)))
