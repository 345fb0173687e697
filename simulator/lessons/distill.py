"""Knowledge distillation: the same small student trained on hard labels alone vs distilled from a larger teacher.

The teacher is a larger GPT pretrained on the built-in corpus by this lesson (once per process and teacher
setting: it is cached), or a person's run folder (`teacher_run`), whose tokenizer must be the student's:
the soft targets are a distribution over the teacher's vocabulary. Two students of one architecture, seed
and batches train the same steps: "hard labels" (the cross-entropy with the next token, alpha = 1) and
"distilled" (alpha CE + beta T^2 KL(teacher_T || student_T) + gamma (1 - cos) of the final hidden states,
`simulator.distill`). Both are measured on the same validation windows by the cross-entropy with the true
next token, which is what distillation should lower, against the teacher's own validation loss.

Every frame also holds one validation window with the teacher's logits at each position, from which the
tab shows the teacher's soft distribution at several temperatures beside the one-hot label ("dark
knowledge": which wrong tokens the teacher finds likely).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from simulator.config import ModelConfig, OptimConfig, RunConfig, TrainConfig
from simulator.data.corpus import builtin_corpus
from simulator.data.dataset import TextDataset
from simulator.distill import LossWeights, Terms, soft_targets
from simulator.i18n import N_, _, ngettext
from simulator.lessons import Lesson, register
from simulator.rules import at_least, in_range, non_empty, non_negative, positive, positive_int, setting, settings_of
from simulator.textcols import heading, pad
from simulator.yamlconfig import ParseContext

LABELS = (N_("hard labels"), N_("distilled"))  # the learners, also message ids for their legends
SHOWN_TEMPERATURES = (1.0, 2.0, 4.0)


@dataclass(frozen=True)
class DistillConfig:
    """The teacher (trained here, or a run folder), the student, the loss weights and the schedule."""

    name: str = setting("distill", non_empty)
    description: str = ""
    teacher_run: str = setting("", help=(
        "A run folder (or checkpoint file) whose model is the teacher; empty: this lesson trains its own."))
    teacher_d_model: int = setting(48, positive_int, help="Width of the teacher this lesson trains.")
    teacher_n_layer: int = setting(3, positive_int, help="Blocks of the teacher this lesson trains.")
    teacher_n_head: int = setting(4, positive_int)
    teacher_steps: int = setting(300, positive_int, help="Pretraining steps of the teacher on the built-in corpus.")
    teacher_lr: float = setting(2e-3, positive)
    d_model: int = setting(32, positive_int, help="Width of the student.")
    n_layer: int = setting(1, positive_int, help="Blocks of the student.")
    n_head: int = setting(4, positive_int)
    init_from_teacher: bool = setting(False, help=(
        "Both students start from every other block of the teacher (DistilBERT); needs the teacher's width."))
    seq_len: int = setting(32, positive_int)
    batch_size: int = setting(8, positive_int)
    steps: int = setting(150, positive_int, help="Training steps of each student.")
    lr: float = setting(3e-3, positive)
    alpha: float = setting(0.5, non_negative, help="Weight of the cross-entropy with the hard labels.")
    beta: float = setting(0.5, non_negative, help="Weight of T^2 KL(teacher_T || student_T), the soft targets.")
    gamma: float = setting(0.0, non_negative, help="Weight of 1 - cos between the final hidden states.")
    temperature: float = setting(2.0, positive, help="Softmax temperature of the soft targets (both models).")
    eval_every: int = setting(10, non_negative)
    eval_batches: int = setting(4, positive_int)
    val_fraction: float = setting(0.1, in_range(0, 0.5, low_open=True))
    seed: int = setting(0, at_least(0))

    @property
    def weights(self) -> LossWeights:
        return LossWeights(self.alpha, self.beta, self.gamma, self.temperature)


@dataclass(frozen=True)
class Model:
    """One model's shape as the summary and the tab print it."""

    label: str
    d_model: int
    n_layer: int
    parameters: int


@dataclass(frozen=True)
class Window:
    """One validation window: its tokens as text, the next-token ids and the teacher's logits (T, V) there."""

    tokens: tuple[str, ...]
    targets: np.ndarray  # (T,) ints
    logits: np.ndarray  # (T, V) float32, the teacher's
    vocab: tuple[str, ...]  # id -> text


@dataclass
class Point:
    """One student after one step: the batch's terms; its validation loss when this step evaluated (else None)."""

    label: str
    terms: Terms
    val: float | None


@dataclass
class DistillFrame:
    """One step of both students; the models, the teacher's loss, the start losses and the window are shared."""

    step: int
    points: list[Point]
    models: tuple[Model, ...]  # teacher, student
    teacher_val: float
    start_val: tuple[float, ...]  # each student's validation loss before its first step
    window: Window
    projected: bool  # the cosine compares a learned projection of the student's hidden state


@lru_cache(maxsize=2)
def corpus(val_fraction: float) -> TextDataset:
    """The built-in corpus, the students' (and the lesson's teacher's) text."""
    return TextDataset(builtin_corpus(), val_fraction, "the built-in corpus")


def _run_config(cfg: DistillConfig, d_model: int, n_layer: int, n_head: int, steps: int, lr: float) -> RunConfig:
    model = ModelConfig(d_model=d_model, n_layer=n_layer, n_head=n_head, seq_len=cfg.seq_len)
    return RunConfig(name=cfg.name, model=model,
                     optim=OptimConfig(name="adamw", lr=lr, schedule="constant", weight_decay=0.0),
                     train=TrainConfig(steps=steps, batch_size=cfg.batch_size, seed=cfg.seed, eval_every=0,
                                       eval_batches=cfg.eval_batches, stats_every=0))


@lru_cache(maxsize=2)
def trained_teacher(d_model, n_layer, n_head, seq_len, batch_size, steps, lr, seed, val_fraction
                    ) -> tuple[ModelConfig, dict[str, np.ndarray]]:
    """(model config, weights by name, read-only) of the lesson's teacher after `steps`; cached per setting."""
    from simulator.session import TrainingSession  # imported here: it builds the kernels

    cfg = DistillConfig(seq_len=seq_len, batch_size=batch_size, seed=seed)
    session = TrainingSession(_run_config(cfg, d_model, n_layer, n_head, steps, lr), corpus(val_fraction))
    session.run(steps)
    params = session.model.params.copy()
    params.flags.writeable = False
    return session.config.model, session.model.layout.views(params)


def teacher_of(cfg: DistillConfig) -> tuple[ModelConfig, dict[str, np.ndarray]]:
    """The teacher's model config and weights: a run folder's (teacher_run), else the one trained here."""
    if cfg.teacher_run:
        from simulator.lora_io import base_of, read_base

        model, _, tensors = read_base(cfg.teacher_run)
        return base_of(model), tensors
    return trained_teacher(cfg.teacher_d_model, cfg.teacher_n_layer, cfg.teacher_n_head, cfg.seq_len,
                           cfg.batch_size, cfg.teacher_steps, cfg.teacher_lr, cfg.seed, cfg.val_fraction)


def _shown(token: str) -> str:
    return {"\n": "\\n", " ": "␣", "\t": "\\t"}.get(token, token)


def _window(session, teacher) -> Window:
    """Row 0 of the first validation batch with the teacher's logits."""
    ids, targets, _ = session.eval_batches("val")[0]
    teacher.forward(ids)
    tok = session.tokenizer
    vocab = tuple(_shown(tok.decode(np.array([i]))) for i in range(tok.vocab_size))
    logits = teacher.logits()[0, :, :tok.vocab_size].astype(np.float32)
    return Window(tuple(vocab[i] for i in ids[0]), targets[0].copy(), logits, vocab)


def _teacher_val(session, teacher) -> float:
    """The teacher's loss on the students' validation batches (the same windows)."""
    losses = [teacher.forward(ids, targets) for ids, targets, _ in session.eval_batches("val")]
    return float(np.mean(losses))


def run(cfg: DistillConfig, steps: int | None = None, cancelled=lambda: False) -> list[DistillFrame]:
    """Gets (or trains) the teacher, then steps both students `steps` times (default the config's)."""
    from simulator.distill import Distiller, init_every_other_layer, teacher_model
    from simulator.session import TrainingSession

    steps = cfg.steps if steps is None else steps
    if cancelled():
        return []
    data = corpus(cfg.val_fraction)
    tcfg, tensors = teacher_of(cfg)
    teacher = teacher_model(tcfg, tensors)
    distillers = {}
    for label in LABELS:
        weights = LossWeights(1.0, 0.0, 0.0, cfg.temperature) if label == LABELS[0] else cfg.weights
        s = TrainingSession(_run_config(cfg, cfg.d_model, cfg.n_layer, cfg.n_head, steps, cfg.lr), data)
        if cfg.init_from_teacher:
            init_every_other_layer(s.model, tcfg, tensors)
        distillers[label] = Distiller(s, teacher, weights, projection_seed=cfg.seed)
    first = distillers[LABELS[0]].session
    models = (Model("teacher", tcfg.d_model, tcfg.n_layer, int(teacher.layout.size)),
              Model("student", cfg.d_model, cfg.n_layer, first.parameter_count))
    teacher_val, window = _teacher_val(first, teacher), _window(first, teacher)
    start = tuple(d.session.evaluate("val") for d in distillers.values())
    projected = first.model.cfg.d_model != tcfg.d_model
    frames = []
    for t in range(1, steps + 1):
        if cancelled():
            break
        evaluate = t % cfg.eval_every == 0 or t == steps if cfg.eval_every else t == steps
        points = []
        for label, d in distillers.items():
            terms = d.step()
            points.append(Point(label, terms, d.session.evaluate("val") if evaluate else None))
        frames.append(DistillFrame(t, points, models, teacher_val, start, window, projected))
    return frames


def dark_knowledge(window: Window, position: int, temperatures=SHOWN_TEMPERATURES, top: int = 10):
    """For one position of the window: (token texts, probabilities (len(temperatures), k), one-hot (k,)).

    The k tokens are the teacher's `top` most likely at T = 1 and the true next token, most likely first.
    """
    probs = soft_targets(window.logits[position], temperatures)
    target = int(window.targets[position])
    order = [int(i) for i in np.argsort(-probs[0], kind="stable")[:top]]
    if target not in order:
        order.append(target)
    onehot = np.array([1.0 if i == target else 0.0 for i in order])
    return tuple(window.vocab[i] for i in order), probs[:, order], onehot


def _blocks(n: int) -> str:
    return ngettext("{n} block", "{n} blocks", n).format(n=n)


def summary(cfg: DistillConfig, frames: list[DistillFrame]) -> str:
    """The teacher, the student, both students' validation loss at the start, the end and its best."""
    if not frames:
        return _("distillation: no steps")
    last = frames[-1]
    teacher, student = last.models
    source = cfg.teacher_run or _("trained here {steps} steps on the built-in corpus").format(steps=cfg.teacher_steps)
    w = cfg.weights
    who = (_("student: d_model {d_model} x {blocks}, {parameters:,} parameters, {steps} steps each, seed {seed}, "
             "started from every other teacher block") if cfg.init_from_teacher else
           _("student: d_model {d_model} x {blocks}, {parameters:,} parameters, {steps} steps each, seed {seed}"))
    loss = (_("distilled loss: {alpha:g} CE + {beta:g} T^2 KL (T = {t:g}) + {gamma:g} (1 - cos) (cosine through a "
              "learned projection)") if last.projected and w.gamma else
            _("distilled loss: {alpha:g} CE + {beta:g} T^2 KL (T = {t:g}) + {gamma:g} (1 - cos)"))
    lines = [_("teacher: d_model {d_model} x {blocks}, {parameters:,} parameters ({source}): validation loss "
               "{val:.4f}").format(d_model=teacher.d_model, blocks=_blocks(teacher.n_layer),
                                   parameters=teacher.parameters, source=source, val=last.teacher_val),
             who.format(d_model=student.d_model, blocks=_blocks(student.n_layer), parameters=student.parameters,
                        steps=last.step, seed=cfg.seed),
             loss.format(alpha=w.alpha, beta=w.beta, t=w.temperature, gamma=w.gamma),
             heading((_("student"), 12, "<"), (_("val start"), 9, ">"), (_("val end"), 9, ">"),
                     (_("val best"), 9, ">"), (_("KL to teacher"), 13, ">"))]
    ends = []
    for i, label in enumerate(LABELS):
        vals = [f.points[i].val for f in frames if f.points[i].val is not None]
        ends.append(vals[-1])
        lines.append(f"{pad(_(label), 12)} {last.start_val[i]:>9.4f} {vals[-1]:>9.4f} {min(vals):>9.4f} "
                     f"{last.points[i].terms.kl:>13.4f}")
    gain = ends[0] - ends[1]
    verdict = (_("at equal steps the distilled student's validation loss is lower than the hard-label one's "
                 "({distilled:.4f} vs {hard:.4f}, difference {gain:+.4f}); the teacher's is {teacher:.4f}")
               if gain > 0 else
               _("at equal steps the distilled student's validation loss is not lower than the hard-label one's "
                 "({distilled:.4f} vs {hard:.4f}, difference {gain:+.4f}); the teacher's is {teacher:.4f}"))
    lines.append(verdict.format(distilled=ends[1], hard=ends[0], gain=gain, teacher=last.teacher_val))
    lines.append(_("KL to teacher: of the last training batch at T, so how close each student's soft outputs came"))

    return "\n".join(lines)


def _teacher_problem(cfg: DistillConfig, ctx: ParseContext) -> DistillConfig:
    """A teacher run folder that exists, reads, has the student's tokens and covers its windows."""
    from simulator.lora_io import LoraFileError, read_base, resolve

    path = resolve(cfg.teacher_run, ctx.base_dir)
    cfg = replace(cfg, teacher_run=path)
    try:
        model, tokenizer, _meta = read_base(path)
    except LoraFileError as e:
        ctx.fail("teacher_run", str(e))
    own = corpus(cfg.val_fraction).tokenizer
    if tokenizer != own:
        ctx.fail("teacher_run", _("{path}: the teacher's vocabulary ({vocab_size} tokens) is not the student's "
                                  "({vocab_size2} characters of the built-in corpus), so its soft targets are over "
                                  "other tokens").format(
                                    path=path, vocab_size=tokenizer.vocab_size, vocab_size2=own.vocab_size),
                 _("distill from a teacher trained with the student's tokenizer"))
    if model.vocab_size != own.vocab_size:
        ctx.fail("teacher_run", _("{path}: the teacher has {vocab_size} logits, the student's vocabulary "
                                  "{vocab_size2} tokens").format(
                                    path=path, vocab_size=model.vocab_size, vocab_size2=own.vocab_size))
    if model.seq_len < cfg.seq_len:
        ctx.fail("seq_len", _("{seq_len} is longer than the teacher's seq_len {seq_len2}").format(
                                seq_len=cfg.seq_len, seq_len2=model.seq_len),
                 _("use at most {seq_len}").format(seq_len=model.seq_len))
    if model.norm == "batchnorm":
        ctx.fail("teacher_run", _("{path}: a BatchNorm teacher's running statistics are not in its weights").format(
                                    path=path))
    if model.attention.mask != "causal":
        ctx.fail("teacher_run", _("{path}: the teacher sees the future (attention.mask {mask})").format(
                                    path=path, mask=model.attention.mask))
    return cfg


def validate(cfg: DistillConfig, ctx: ParseContext) -> DistillConfig:
    """Loss weights not all zero, heads that divide the widths, a teacher that fits the student."""
    if not (cfg.alpha or cfg.beta or cfg.gamma):
        ctx.fail("alpha", _("alpha, beta and gamma are all 0: the distilled student would have no loss"),
                 _("give at least one a positive weight"), at=("alpha", "beta", "gamma"))
    for prefix in ("teacher_", ""):
        d, h = getattr(cfg, f"{prefix}d_model"), getattr(cfg, f"{prefix}n_head")
        if d % h:
            ctx.fail(f"{prefix}n_head", _("{h} does not divide {prefix}d_model {d}").format(h=h, prefix=prefix, d=d))
    if cfg.teacher_run:
        cfg = _teacher_problem(cfg, ctx)
    if cfg.init_from_teacher:
        from simulator.distill import init_problem
        from simulator.lora_io import read_base

        teacher = read_base(cfg.teacher_run)[0] if cfg.teacher_run else _model_config(cfg, "teacher_")
        problem = init_problem(_model_config(cfg, ""), teacher)
        if problem:
            ctx.fail("init_from_teacher", problem)
    return cfg


def _model_config(cfg: DistillConfig, prefix: str) -> ModelConfig:
    """The model config of the student (prefix "") or of the teacher this lesson trains ("teacher_")."""
    vocab = corpus(cfg.val_fraction).tokenizer.vocab_size
    d, n, h = (getattr(cfg, f"{prefix}{k}") for k in ("d_model", "n_layer", "n_head"))
    return replace(_run_config(cfg, d, n, h, 1, 1.0).model, vocab_size=vocab)


_RULES = {path: s.rule for path, s in settings_of(DistillConfig).items() if s.rule is not None}
LESSON = register(Lesson("distill", N_("Knowledge distillation"), DistillConfig, _RULES, validate, run, summary,
                         preset="distill"))
