"""Lesson cards: a preset's `lesson:` section, read and checked like every other key, run headless and verified.

A card is a title, a short why, ordered steps (text, an optional settings change applied through
`presets.override`, the one validated path the window's controls use, and a number of steps to run
or a preset to compare with), a prediction question and one or more claims. A claim is data — a
metric of `cards_metrics.METRICS`, where to read it (a step, the last or best value, a layer, tensor or
learner), a comparison and a threshold, optionally against another run of the same seed and steps —
and the engine measures it from the run's `StepRecord`s or the lesson's frames (never `eval`).

    parse_card(pair, cfg, ctx)   the `lesson:` node of a preset -> Card, mistakes one line FILE:LINE: key
    load_card(name)              (config, Card) of a preset file or shipped name
    run_card(card, seed=None)    -> CardResult: the runs (cached per process) and each claim's Verdict
    card_text(card, result)      what `python main.py lesson NAME` prints
"""

from __future__ import annotations

import dataclasses
import re
import textwrap
import time
from dataclasses import dataclass, field
from typing import Any

from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from simulator.i18n import _, ngettext
from simulator.lessons.cards_metrics import COMPARISONS, METRICS, REDUCERS, Run, train_run
from simulator.rules import did_you_mean, non_empty, one_of, positive_int, setting
from simulator.textcols import display_width
from simulator.yamlconfig import ParseContext, PresetError, describe_node, node_line, parse_dataclass, scalar

AT = ("last", "best", "first")


# ------------------------------------------------------------------------------------------- schema
@dataclass(frozen=True)
class Step:
    """One step of a card: what to read or do, and optionally settings to apply, steps to run, a run to compare."""

    text: str = setting("", non_empty)
    run: int | None = setting(None, positive_int)  # train this many steps (the card's run); at most one step
    compare_with: str | None = setting(None, non_empty)  # a preset to run beside it, same seed and steps
    settings: tuple = ()  # ((dotted path, value), ...) in file order, applied with presets.override


@dataclass(frozen=True)
class Prediction:
    """The question asked before the run is revealed."""

    question: str = setting("", non_empty)
    answers: tuple[str, ...] = ()
    expected: str = setting("", non_empty)  # one of answers


@dataclass(frozen=True)
class Claim:
    """A measured statement about a run: `metric` read `at` a place, compared with `threshold`."""

    text: str = setting("", non_empty)  # the claim in words
    metric: str = setting("", non_empty)  # a name of cards_metrics.METRICS that this kind of run records
    of: str | None = setting(None, non_empty)  # the layer, tensor or learner of a keyed metric
    reduce: str | None = setting(None, one_of(REDUCERS))  # a keyed metric over all its keys (default mean)
    at: str = setting("last", one_of(AT))  # which record of a per-step metric: last, best (lowest or highest), first
    step: int | None = setting(None, positive_int)  # the record of this step instead
    average: int = setting(1, positive_int)  # mean over this many records ending at `at` / `step`
    comparison: str = setting("", one_of(COMPARISONS))
    threshold: float | None = None
    value: str | None = None  # with `is`: the name a name-valued metric must have
    target: float | None = None  # with `within`: |measured - target| <= threshold
    other: str | None = setting(None, non_empty)  # another preset, run with the same seed and steps
    other_of: str | None = setting(None, non_empty)  # the key of the other side (default: `of`)
    other_settings: tuple = ()  # ((dotted path, value), ...): the other run is this card's with these changed


@dataclass(frozen=True)
class Card:
    """A preset's lesson card, with where it came from (for messages)."""

    title: str = setting("", non_empty)
    why: str = setting("", non_empty)
    steps: tuple[Step, ...] = ()
    prediction: Prediction | None = None
    claims: tuple[Claim, ...] = ()
    # filled by parse_card, not read from the YAML:
    preset: str = ""  # the preset's name
    source: str = ""  # the file, as messages name it
    lines: tuple = ()  # ((dotted path, line), ...) for messages about claims found at run time
    config: Any = None  # the preset's config with every step's settings applied (what the card runs)
    others: tuple = ()  # ((claim index, config of the other run, label), ...)

    @property
    def run_steps(self) -> int | None:
        """Steps the card's run trains (None: the lesson's own default)."""
        return next((s.run for s in self.steps if s.run is not None), None)

    def where(self, path: str) -> str:
        """'FILE:LINE: ' of a path of the lesson section (its nearest given parent's line)."""
        lines = dict(self.lines)
        while path not in lines and path:
            path = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", path) if re.search(r"[.\[]", path) else ""
        return f"{self.source}:{lines.get(path, 1)}: "


# ------------------------------------------------------------------------------------------ parsing
def _settings_node(node, ctx: ParseContext, path: str) -> list[tuple[str, Any, int]]:
    """A `settings:` mapping of dotted paths to values -> [(path, value, line)], values as YAML reads them."""
    if not isinstance(node, MappingNode):
        ctx.fail(path, _("expected a mapping of dotted settings (optim.lr: 0.01), got {describe_node}").format(
                           describe_node=describe_node(node)),
                 line=node_line(node))
    out = []
    for key, value in node.value:
        if not isinstance(key, ScalarNode) or not isinstance(key.value, str) or not key.value:
            ctx.fail(path, _("a key must be a dotted setting name such as optim.lr"), line=node_line(key))
        if isinstance(value, SequenceNode) and all(isinstance(v, ScalarNode) for v in value.value):
            py = [scalar(v) for v in value.value]
        elif isinstance(value, ScalarNode):
            py = scalar(value)
        else:
            ctx.fail(f"{path}.{key.value}", _("expected a value, got {describe_node}").format(
                                                describe_node=describe_node(value)), line=node_line(value))
        if any(p == key.value for p, _, _ in out):
            ctx.fail(f"{path}.{key.value}", _("is given twice"), line=node_line(key))
        out.append((key.value, py, node_line(key)))
    return out


def _apply(cfg, changes, ctx: ParseContext, path: str):
    """cfg with `changes` applied one by one through presets.override; a refusal names the file line."""
    from simulator.presets import override

    if not changes:
        return cfg
    names = {key: f"{path}.{key}" for key, _, _ in changes}
    try:  # all at once: a step may change sizes that only fit together (n_layer with watch_layer)
        return override(cfg, names, **{key: value for key, value, _ in changes})
    except PresetError as e:
        line = next((n for key, _, n in changes if str(e).startswith(names[key])), changes[0][2])
        raise PresetError(f"{ctx.source}:{line}: {e}") from None


def _split_off(node, key: str):
    """(node without `key`, the value node of `key` or None, its key's line)."""
    if not isinstance(node, MappingNode):
        return node, None, None
    keep, found, line = [], None, None
    for k, v in node.value:
        if isinstance(k, ScalarNode) and k.value == key and found is None:
            found, line = v, node_line(k)
        else:
            keep.append((k, v))
    return MappingNode(node.tag, keep, node.start_mark, node.end_mark), found, line


def _list_items(node, ctx: ParseContext, path: str, what: str) -> list:
    if node is None:
        return []
    if not isinstance(node, SequenceNode):
        ctx.fail(path, _("expected a list of {what}, got {describe_node}").format(
                           what=what, describe_node=describe_node(node)), line=node_line(node))
    return list(node.value)


def parse_card(key_node, value_node, cfg, ctx: ParseContext, preset_name: str) -> Card:
    """The `lesson:` section of a preset (its config already parsed as `cfg`) -> a checked Card."""
    ctx.lines["lesson"] = node_line(key_node)
    if not isinstance(value_node, MappingNode):
        ctx.fail("lesson", _("expected a mapping (title, why, steps, prediction, claims), got {describe_node}").format(
                               describe_node=describe_node(value_node)), line=node_line(value_node))
    rest, steps_node, steps_line = _split_off(value_node, "steps")
    rest, claims_node, claims_line = _split_off(rest, "claims")
    card = parse_dataclass(Card, _without_filled(rest, ctx), ctx, "lesson")
    for p, line in (("lesson.steps", steps_line), ("lesson.claims", claims_line)):
        if line is not None:
            ctx.lines[p] = line
    steps, current = [], cfg
    for i, item in enumerate(_list_items(steps_node, ctx, "lesson.steps", "steps")):
        path = f"lesson.steps[{i}]"
        item, settings_node, line = _split_off(item, "settings")
        step = parse_dataclass(Step, item, ctx, path)
        if not step.text:
            ctx.fail(path, _("needs a text (one or two sentences the learner reads)"), line=node_line(item))
        changes = []
        if settings_node is not None:
            ctx.lines[f"{path}.settings"] = line
            changes = _settings_node(settings_node, ctx, f"{path}.settings")
            current = _apply(current, changes, ctx, f"{path}.settings")
        if step.compare_with is not None:
            _other_config(step.compare_with, cfg, ctx, f"{path}.compare_with")
        steps.append(dataclasses.replace(step, settings=tuple((k, v) for k, v, _ in changes)))
    runs = [i for i, s in enumerate(steps) if s.run is not None]
    if len(runs) > 1:
        ctx.fail(f"lesson.steps[{runs[1]}].run", _("a card has one run, and step {value} already runs").format(
                                                     value=runs[0] + 1),
                 _("compare with another preset through compare_with or a claim's other"))
    if runs and any(s.settings for s in steps[runs[0] + 1:]):
        late = next(i for i, s in enumerate(steps) if i > runs[0] and s.settings)
        ctx.fail(f"lesson.steps[{late}].settings", _("comes after the step that runs, so the run would not see it"),
                 _("put settings changes before the step with run:"))
    claims, others = [], []
    for i, item in enumerate(_list_items(claims_node, ctx, "lesson.claims", "claims")):
        path = f"lesson.claims[{i}]"
        item, other_node, line = _split_off(item, "other_settings")
        claim = parse_dataclass(Claim, item, ctx, path)
        changes = []
        if other_node is not None:
            ctx.lines[f"{path}.other_settings"] = line
            changes = _settings_node(other_node, ctx, f"{path}.other_settings")
            claim = dataclasses.replace(claim, other_settings=tuple((k, v) for k, v, _ in changes))
        _check_claim(claim, cfg, ctx, path, node_line(item))
        if claim.other is not None or changes:
            base = _other_config(claim.other, cfg, ctx, f"{path}.other") if claim.other else current
            other_cfg = _apply(base, changes, ctx, f"{path}.other_settings")
            label = (claim.other or preset_name) + "".join(f", {k}={v}" for k, v in claim.other_settings)
            others.append((i, other_cfg, label))
        claims.append(claim)
    if not claims:
        ctx.fail("lesson.claims", _("a card needs one or more claims (what the run must show)"),
                 line=claims_line or ctx.lines["lesson"])
    _check_prediction(card.prediction, ctx)
    for name in ("title", "why"):
        if not getattr(card, name):
            ctx.fail(f"lesson.{name}", _("is missing"), line=ctx.lines["lesson"])
    lines = tuple((p, n) for p, n in ctx.lines.items() if p.startswith("lesson"))
    return dataclasses.replace(card, steps=tuple(steps), claims=tuple(claims), preset=preset_name,
                               source=ctx.source or "<preset>", lines=lines, config=current, others=tuple(others))


_FILLED = {f.name for f in dataclasses.fields(Card)} - {"title", "why", "steps", "prediction", "claims"}


def _without_filled(node, ctx: ParseContext):
    """Refuses the Card fields parse_card fills itself (preset, source, ...) as unknown keys."""
    for k, _v in node.value:
        if isinstance(k, ScalarNode) and k.value in _FILLED:
            ctx.fail(f"lesson.{k.value}", _("unknown key '{key}'").format(key=k.value),
                     _("lesson takes: title, why, steps, prediction, claims"), line=node_line(k))
    return node


def _check_prediction(pred: Prediction | None, ctx: ParseContext) -> None:
    if pred is None:
        ctx.fail("lesson.prediction", _("is missing (a question with two to four answers, asked before the run)"),
                 line=ctx.lines["lesson"])
    if not pred.question:
        ctx.fail("lesson.prediction.question", _("is missing"))
    if not 2 <= len(pred.answers) <= 4:
        ctx.fail("lesson.prediction.answers", _("a question has two to four answers, got {n}").format(
                                                  n=len(pred.answers)))
    if len(set(pred.answers)) != len(pred.answers) or not all(a.strip() for a in pred.answers):
        ctx.fail("lesson.prediction.answers", _("answers must be different and not empty"))
    if pred.expected not in pred.answers:
        ctx.fail("lesson.prediction.expected", _("{expected!r} is not one of the answers").format(
                                                   expected=pred.expected)
                 + did_you_mean(pred.expected, pred.answers), at=("lesson.prediction.expected",
                                                                  "lesson.prediction"))


def _kind_name(cfg) -> str:
    from simulator.lessons import lesson_of

    lesson = lesson_of(cfg)
    return "gpt" if lesson is None else lesson.kind


def _check_claim(c: Claim, cfg, ctx: ParseContext, path: str, line: int) -> None:
    """Cross-field checks of one claim: the metric fits the kind, the comparison its operands."""
    kind = _kind_name(cfg)
    for name in ("text", "metric", "comparison"):
        if not getattr(c, name):
            ctx.fail(f"{path}.{name}", _("is missing"), line=line)
    fits = [n for n, mm in METRICS.items() if kind in mm.kinds]
    if c.metric not in METRICS:
        ctx.fail(f"{path}.metric",
                 _("'{metric}' is not a metric").format(metric=c.metric) + did_you_mean(c.metric, fits or METRICS),
                 _("{kind} runs measure: {items}").format(kind=kind, items=', '.join(fits)))
    m = METRICS[c.metric]
    if kind not in m.kinds:
        ctx.fail(f"{path}.metric", _("'{metric}' is not measured in a {kind} run").format(metric=c.metric, kind=kind),
                 _("{kind} runs measure: {items}").format(kind=kind, items=', '.join(fits)))
    if m.text != (c.comparison == "is"):
        ctx.fail(f"{path}.comparison", _("'{metric}' is a name, compare it with 'is' and a value").format(
                                           metric=c.metric) if m.text else
                 _("'is' compares a name, but '{metric}' is a number: use <, <=, >, >= or within").format(
                     metric=c.metric))
    if m.text:
        if c.value is None:
            ctx.fail(f"{path}.value", _("is missing (the name the metric must be, e.g. h0.attn)"),
                     at=(f"{path}.comparison",))
        if c.threshold is not None or c.target is not None:
            ctx.fail(f"{path}.threshold", _("a name is compared with 'is' and a value, not a threshold"),
                     at=(f"{path}.threshold", f"{path}.target"))
    else:
        if c.threshold is None:
            ctx.fail(f"{path}.threshold", _("is missing (the number the measurement is compared with)"),
                     at=(f"{path}.comparison",))
        if c.value is not None:
            ctx.fail(f"{path}.value", _("'{metric}' is a number: say the bound with threshold").format(
                                          metric=c.metric))
        if c.target is not None and c.comparison != "within":
            ctx.fail(f"{path}.target", _("only 'within' takes a target (|measured - target| <= threshold), not "
                                         "'{comparison}'").format(comparison=c.comparison))
        if c.comparison == "within" and c.threshold < 0:
            ctx.fail(f"{path}.threshold", _("'within' needs a tolerance of at least 0, got {threshold!r}").format(
                                              threshold=c.threshold))
    if c.target is not None and (c.other is not None or c.other_settings):
        ctx.fail(f"{path}.target", _("a claim compares with a target or with another run, not both"))
    impl = m.impls[kind]
    if not m.per_step and (c.step is not None or c.at != "last" or c.average != 1):
        ctx.fail(f"{path}.{'step' if c.step is not None else 'at' if c.at != 'last' else 'average'}",
                 _("'{metric}' is one number for the whole run, not a value per step").format(metric=c.metric))
    if c.step is not None and c.at != "last":
        ctx.fail(f"{path}.step", _("give step or at, not both"), at=(f"{path}.step", f"{path}.at"))
    if c.average > 1 and c.at != "last":
        ctx.fail(f"{path}.average", _("an average runs back from the last step or from step:, not from {at}").format(
                                        at=c.at))
    if m.keyed:
        if c.of is not None and c.reduce is not None:
            ctx.fail(f"{path}.reduce", _("give of (one key) or reduce (over every key), not both"))
        keys = impl.keys(cfg) if impl.keys else None
        for name, key in (("of", c.of), ("other_of", c.other_of)):
            if key is not None and keys is not None and key not in keys:
                ctx.fail(f"{path}.{name}", _("'{key}' is not one of {keys}").format(key=key, keys=", ".join(keys))
                         + did_you_mean(key, keys))
        if impl.needs_key and c.of is None:
            hint = f"one of {', '.join(keys)}" if keys else None
            ctx.fail(f"{path}.of", _("'{metric}' is measured per {key_name}: say which").format(
                                       metric=c.metric, key_name=m.key_name), hint,
                     at=(f"{path}.metric",))
    else:
        for name in ("of", "reduce", "other_of"):
            if getattr(c, name) is not None:
                ctx.fail(f"{path}.{name}", _("'{metric}' is one number per run, it has no {value}").format(
                                               metric=c.metric, value=m.key_name or 'keys'))
    if c.other_of is not None and c.other is None and not c.other_settings and c.of == c.other_of:
        ctx.fail(f"{path}.other_of", _("compares a key with itself in the same run"))


def _other_config(name: str, cfg, ctx: ParseContext, path: str):
    """The config of another preset (its own lesson section not read: cards may name each other)."""
    from simulator.presets import find_preset, parse_any_text

    try:
        found = find_preset(name)
        other = parse_any_text(found.read_text(encoding="utf-8"), str(found), found.parent, lesson=False)
    except (PresetError, OSError, UnicodeDecodeError) as e:
        ctx.fail(path, _("the run to compare with cannot be loaded: {e}").format(e=e))
    if _kind_name(other) != _kind_name(cfg):
        ctx.fail(path, _("'{name}' is a {kind_name} preset; a {kind_name2} run compares with its own kind").format(
                           name=name, kind_name=_kind_name(other), kind_name2=_kind_name(cfg)))
    return other


def load_card(name) -> tuple[Any, Card | None]:
    """(config, card) of a preset file or shipped name; card None when it has no lesson section."""
    from simulator.presets import _read_preset, parse_with_card

    text, resolved = _read_preset(name)
    return parse_with_card(text, str(name), resolved.parent)


def card_names() -> list[str]:
    """The shipped presets that carry a lesson card, by name."""
    from simulator.presets import list_presets

    out = []
    for info in list_presets():
        try:
            text = info.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if any(line.startswith("lesson:") for line in text.splitlines()):
            out.append(info.name)
    return out


# ----------------------------------------------------------------------------------------- running
_RUNS: dict[tuple, Run] = {}  # (config, steps) -> a finished run; the configs are frozen, so hashable


def seeded(cfg, seed: int | None):
    """cfg with its training seed set (the GPT's train.seed, a lesson's seed); unchanged for None."""
    if seed is None:
        return cfg
    from simulator.presets import override

    path = seed_path(cfg)
    if path is None:
        raise PresetError(_("this lesson ({kind_name}) has no seed: it computes the same numbers every time").format(
                              kind_name=_kind_name(cfg)))
    return override(cfg, {path: "--seed"}, **{path: seed})


def seed_path(cfg) -> str | None:
    """The dotted path of a config's training seed, or None when the lesson has no randomness."""
    from simulator.config import RunConfig

    if isinstance(cfg, RunConfig):
        return "train.seed"
    return "seed" if any(f.name == "seed" for f in dataclasses.fields(cfg)) else None


def seed_of(cfg) -> int | None:
    path = seed_path(cfg)
    if path is None:
        return None
    for part in path.split("."):
        cfg = getattr(cfg, part)
    return cfg


def cached_run(cfg, steps: int | None, label: str, cancelled=lambda: False) -> Run:
    """The run of `cfg` for `steps` steps, trained once per process (several claims and cards share it).

    GPT configs that differ only in `sampling` train the same weights, so they share one training; each
    gets its own Run (its config, and a fresh cache for what it samples)."""
    key = (_trained(cfg), steps)
    if key not in _RUNS:
        run = train_run(cfg, steps, label, cancelled)
        if cancelled():
            return run
        _RUNS[key] = run
    run = _RUNS[key]
    if run.cfg != cfg:
        run = dataclasses.replace(run, cfg=cfg, cache={})
    return run if run.label == label else dataclasses.replace(run, label=label)


def _trained(cfg):
    """What a run's weights depend on: a GPT config without its sampling settings (they only read the model)."""
    from simulator.config import RunConfig, SamplingConfig

    return dataclasses.replace(cfg, sampling=SamplingConfig()) if isinstance(cfg, RunConfig) else cfg



def clear_cache() -> None:
    """Forget every cached run (tests that need a fresh one)."""
    _RUNS.clear()


@dataclass
class Verdict:
    """One claim, measured: whether it holds and the numbers that say so."""

    claim: Claim
    holds: bool
    measured: str  # the numbers read, in words: 'val_loss at step 60: 2.71 (prenorm-deep), 3.18 (postnorm-deep)'
    test: str  # the comparison with the numbers put in: '-0.47 < -0.3'
    value: float | str | None = None  # the quantity compared (this run's, or this minus the other)


@dataclass
class CardResult:
    """What running a card found: its runs (this one first) and one verdict per claim."""

    card: Card
    seed: int | None
    runs: list[Run] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def holds(self) -> bool:
        return all(v.holds for v in self.verdicts)


def run_card(card: Card, seed: int | None = None, cancelled=lambda: False) -> CardResult:
    """Runs the card's run and every run its claims compare with (same seed, same steps), then each claim."""
    from simulator.lessons.cards_metrics import measure

    t0 = time.perf_counter()
    seed = seed_of(card.config) if seed is None else seed
    this_cfg = seeded(card.config, seed)
    steps = card.run_steps
    result = CardResult(card, seed)
    this = cached_run(this_cfg, steps, card.preset, cancelled)
    result.runs.append(this)
    others = {}
    for i, cfg, label in card.others:
        others[i] = cached_run(seeded(cfg, seed if seed_path(cfg) else None), steps, label, cancelled)
        if all(r is not others[i] and r.cfg != others[i].cfg for r in result.runs):
            result.runs.append(others[i])
    for i, claim in enumerate(card.claims):
        if cancelled():
            break
        try:
            result.verdicts.append(measure(claim, this, others.get(i)))
        except LookupError as e:  # a key or step the run does not have: the card's mistake, named where
            path = f"lesson.claims[{i}]"
            raise PresetError(f"{card.where(path + '.metric')}{path}: {e.args[0]}") from None
    result.seconds = time.perf_counter() - t0
    return result


# ------------------------------------------------------------------------------------------ text
def _wrap(text: str, indent: str) -> list[str]:
    """A card's text as lines of at most 110 columns (a YAML block's own line breaks are not kept).

    Chinese has no spaces between words and each character takes two columns, so such a text is broken
    between characters (never inside a run of Latin letters, digits and signs such as `optim.lr`)."""
    text = " ".join(text.split())
    if not _CJK.search(text):
        return textwrap.wrap(text, 110, initial_indent=indent, subsequent_indent=" " * (len(indent) + 2))
    lines, line, width, room = [], indent, display_width(indent), 110
    for piece in re.findall(r"[!-~]+|\s+|.", text):  # a Latin run, a space, or one character
        w = display_width(piece)
        if width + w > room and line.strip():
            lines.append(line.rstrip())
            line, width = " " * (display_width(indent) + 2), display_width(indent) + 2
            if piece.isspace():
                continue
        line, width = line + piece, width + w
    if line.strip():
        lines.append(line.rstrip())
    return lines


_CJK = re.compile(r"[\u3000-\u9fff\uff00-\uffef]")



def _fmt_value(v) -> str:
    from simulator.yamlconfig import show

    return show(v) if not isinstance(v, str) else v


def card_text(card: Card, result: CardResult | None = None) -> str:
    """The card as `python main.py lesson NAME` prints it: steps and prediction, then claims or their verdicts."""
    # the card's own texts are messages of the lessons catalog (stripped, as the extractor stores them)
    out = [_("{title}  (preset {preset})").format(title=_t(card.title), preset=card.preset), "",
           *_wrap(_t(card.why), ""), "", _("Steps:")]
    for i, s in enumerate(card.steps, 1):
        out += _wrap(_t(s.text), f"  {i}. ")
        for k, v in s.settings:
            out.append("     " + _("set {key} = {value}").format(key=k, value=_fmt_value(v)))
        if s.run is not None:
            out.append("     " + ngettext("run {n} step", "run {n} steps", s.run).format(n=s.run))
        if s.compare_with is not None:
            out.append("     " + _("compare with {preset} (same seed and steps)").format(preset=s.compare_with))
    p = card.prediction
    out += ["", *_wrap(_t(p.question), _("Predict: "))]
    out += [f"  {chr(ord('a') + i)}) {_t(a)}" for i, a in enumerate(p.answers)]
    if result is None:
        out += ["", _("Claims:")] + [line for c in card.claims for line in _wrap(_t(c.text), "  - ")]
        return "\n".join(out)
    return "\n".join(out) + "\n\n" + result_text(result)


def result_text(result: CardResult) -> str:
    """The expected answer, the runs, each claim's verdict with its numbers, and the count that held."""
    out = [_("Expected answer: {answer}").format(answer=_t(result.card.prediction.expected)), "", _("Runs:")]
    for r in result.runs:
        out.append(f"  {r.describe()}")
    out += ["", _("Claims:")]
    for v in result.verdicts:
        mark = "✓" if v.holds else "✗"
        out += _wrap(_t(v.claim.text), f"  {mark} ")
        out.append("      " + _("measured: {numbers}").format(numbers=v.measured))
        out.append("      " + (_("claim: {test}  -> holds") if v.holds else
                               _("claim: {test}  -> does not hold in this run")).format(test=v.test))
    n, total = sum(v.holds for v in result.verdicts), len(result.verdicts)
    # "claims" even for one: the English has always said "1 of 1 claims hold", and tests read it
    if result.seed is not None:
        verdict = (_("{n} of {total} claims hold at seed {seed}") if n == total else
                   _("{n} of {total} claims hold at seed {seed}: the run did not show what the card says (a finding "
                     "about this run, not an error)"))
    else:
        verdict = (_("{n} of {total} claims hold") if n == total else
                   _("{n} of {total} claims hold: the run did not show what the card says (a finding about this "
                     "run, not an error)"))
    out += ["", verdict.format(n=n, total=total, seed=result.seed),
            _("({seconds:.1f} s)").format(seconds=result.seconds)]

    return "\n".join(out)


def _t(text: str) -> str:
    """A card's text (title, why, a step, an answer, a claim) in the current language."""
    return _(text.strip()) if text else text
