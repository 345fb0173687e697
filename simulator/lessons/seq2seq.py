"""The encoder-decoder as a lesson (`kind: seq2seq`): cross-attention, and the decoder-only GPT on the same task.

The original Transformer has three attentions: the encoder's self-attention (bidirectional), the
decoder's masked self-attention, and cross-attention, whose queries come from the decoder and whose
keys and values are the encoder's output. Here an encoder-decoder (`simulator/seq2seq/`) learns a
generated transduction (`seq2seq/task.py`: the invented world's sentences into an invented language with
another word order, or reversed), and beside it a decoder-only GPT of (nearly) the same parameter count
learns the same pairs as `source <sep> target`, prompt -> completion, the loss on the target tokens only.
Both see the same pairs at every step from one seed. One `Seq2SeqFrame` per step: both training losses,
and every `eval_every` steps the held-out evaluation of both (loss, token accuracy, greedy exact match,
attention on the aligned source word) and one held-out pair with the encoder-decoder's cross-attention.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import numpy as np

from simulator.i18n import N_, _
from simulator.lessons import Lesson, register
from simulator.lessons.cards_metrics import Impl, metric
from simulator.lessons.threads import one_thread
from simulator.rules import greater_than, non_empty, non_negative, one_of, positive_int
from simulator.seq2seq.task import (
    EOS,
    MAX_SOURCE,
    MAX_TARGET,
    TASKS,
    Pair,
    draw_pairs,
    held_out,
    make_task,
    pack_encdec,
    pack_prompt,
)
from simulator.seq2seq.train import (
    EncDecLearner,
    Evaluation,
    PromptLearner,
    Shape,
    batches_of,
    matched_width,
)
from simulator.yamlconfig import ParseContext

MODELS = ("encdec", "gpt")  # the keys of the card's metrics
MODEL_NAMES = {"encdec": N_("encoder-decoder"), "gpt": N_("decoder-only GPT")}
TASK_NAMES = {"translate": N_("translate: S V O with articles into an invented S O V language, adjectives after "
                              "their noun"),
              "reverse": N_("reverse: the source words in reverse order")}


@dataclass(frozen=True)
class Seq2SeqConfig:
    """Which task, the two models' sizes, how they train, and which held-out pair to show."""

    name: str = "seq2seq"
    description: str = "An encoder-decoder with cross-attention against a decoder-only GPT of the same size."
    task: str = "translate"  # translate | reverse
    src_len: Optional[int] = None  # the encoder's window, at least the longest source; None: that (10 words)
    tgt_len: Optional[int] = None  # the decoder's window, at least the longest target and <eos>; None: that
    d_model: int = 32
    n_head: int = 2
    enc_layers: int = 1
    dec_layers: int = 1
    gpt_layers: int = 2
    gpt_d_model: Optional[int] = None  # None: the width that matches the encoder-decoder's parameter count
    norm_position: str = "pre"
    batch_size: int = 32
    lr: float = 3e-3
    warmup: int = 20
    steps: int = 300
    eval_every: int = 30
    eval_pairs: int = 256  # rounded up to whole batches
    seed: int = 0
    shown: int = 0  # which held-out pair the tab shows (a row of the first batch)


@dataclass(frozen=True)
class Example:
    """One held-out pair, what both models wrote for it (greedy), and the encoder-decoder's cross-attention."""

    source: tuple[str, ...]
    target: tuple[str, ...]
    align: tuple[int, ...]
    encdec_output: tuple[str, ...]  # up to <eos> (or the window's end)
    gpt_output: tuple[str, ...]
    cross: np.ndarray  # (dec_layers, NH, len(target) + 1, len(source)): rows predict y1 .. ym, <eos>
    # (gpt_layers, NH, len(target) + 1, len(source)): the GPT's self-attention from the same predictions (the
    # positions <sep> .. ym of its prompt) onto the source words; the rest of each row is on <sep> and the target
    gpt_attention: np.ndarray


@dataclass(frozen=True)
class Seq2SeqFrame:
    step: int
    losses: tuple[float, float]  # (encdec, gpt): the training batch's target-token loss, before the update
    params: tuple[int, int]  # (encdec, gpt)
    evals: tuple[Evaluation, Evaluation] | None = None  # every eval_every steps (and at the first and last)
    example: Example | None = None


def windows(cfg: Seq2SeqConfig) -> tuple[int, int]:
    """(encoder window, decoder window): as set, or just long enough for the task's longest pair."""
    return cfg.src_len or MAX_SOURCE, cfg.tgt_len or MAX_TARGET[cfg.task] + 1


def shape_of(cfg: Seq2SeqConfig) -> Shape:
    task = make_task(cfg.task, cfg.seed)
    s = Shape(task.vocab_size, *windows(cfg), cfg.d_model, cfg.n_head, cfg.enc_layers, cfg.dec_layers,
              cfg.gpt_layers, cfg.gpt_d_model or cfg.d_model, cfg.norm_position, cfg.batch_size, cfg.lr, cfg.warmup)
    return s if cfg.gpt_d_model else dataclasses.replace(s, gpt_d_model=matched_width(s))


# ------------------------------------------------------------------------------------------- lesson
def validate(cfg: Seq2SeqConfig, ctx: ParseContext) -> Seq2SeqConfig:
    """Windows that hold the longest pair, widths the heads divide, a shown pair that exists."""
    if cfg.src_len is not None and cfg.src_len < MAX_SOURCE:
        ctx.fail("src_len", _("{n} positions are fewer than the longest source sentence ({longest} words)").format(
            n=cfg.src_len, longest=MAX_SOURCE), _("use src_len: {value} or more").format(value=MAX_SOURCE))
    need = MAX_TARGET[cfg.task] + 1
    if cfg.tgt_len is not None and cfg.tgt_len < need:
        ctx.fail("tgt_len", _("{n} positions cannot hold the longest {task} target ({longest} words and <eos>)").format(
            n=cfg.tgt_len, task=cfg.task, longest=need - 1), _("use tgt_len: {value} or more").format(value=need))
    for key, width in (("d_model", cfg.d_model), ("gpt_d_model", cfg.gpt_d_model)):
        if width is not None and width % cfg.n_head:  # d_model's default is usual: the heads are what changed
            ctx.fail("n_head" if key == "d_model" else key, _("{n_head} heads do not divide {key} {width}").format(
                n_head=cfg.n_head, key=key, width=width))
    if cfg.shown >= cfg.batch_size:
        ctx.fail("shown", _("{shown} is not a row of a batch of {batch_size}").format(
            shown=cfg.shown, batch_size=cfg.batch_size), _("use 0 to {value}").format(value=cfg.batch_size - 1))
    return cfg


def run(cfg: Seq2SeqConfig, steps: int | None = None, cancelled=lambda: False) -> list[Seq2SeqFrame]:
    """Trains both learners in lockstep on the same pairs, one frame a step (the first `steps` when given).

    One thread for BLAS and numba, as the BERT lesson: at these sizes waking threads costs more than it gives.
    """
    if cancelled():
        return []
    with one_thread():
        return _run(cfg, steps, cancelled)


def _words(task, ids) -> tuple[str, ...]:
    """Token ids up to <eos> (not included) as words."""
    out = []
    for i in ids:
        if i == EOS:
            break
        out.append(task.words[int(i)])
    return tuple(out)


def _example(task, p: Pair, cross: np.ndarray, gpt_att: np.ndarray, encdec_out, gpt_out) -> Example:
    n, m = len(p.source), len(p.target)
    return Example(p.source, p.target, p.align, _words(task, encdec_out), _words(task, gpt_out),
                   cross[:, :, :m + 1, :n].copy(), gpt_att[:, :, n:n + m + 1, :n].copy())


def _run(cfg: Seq2SeqConfig, steps: int | None, cancelled) -> list[Seq2SeqFrame]:
    task, s = make_task(cfg.task, cfg.seed), shape_of(cfg)
    n_eval = -(-cfg.eval_pairs // cfg.batch_size) * cfg.batch_size
    test = held_out(task, n_eval, np.random.default_rng([cfg.seed, 2]))
    avoid = frozenset(p.source for p in test)
    eval_encdec, eval_prompt = batches_of(task, test, s)
    golds, gold_lens = [b.tgt_out for b in eval_encdec], [b.tgt_len for b in eval_encdec]
    encdec, gpt = EncDecLearner(s, cfg.seed), PromptLearner(s, cfg.seed)
    params = (encdec.n_params, gpt.n_params)
    rng = np.random.default_rng([cfg.seed, 1])
    n = cfg.steps if steps is None else min(steps, cfg.steps)
    frames: list[Seq2SeqFrame] = []
    for k in range(n):
        if cancelled():
            return []
        pairs = draw_pairs(task, cfg.batch_size, rng, avoid)  # the same pairs for both
        losses = (encdec.step(pack_encdec(task, pairs, s.src_len, s.tgt_len)),
                  gpt.step(pack_prompt(task, pairs, s.prompt_len)))
        if k == 0 or (k + 1) % cfg.eval_every == 0 or k == n - 1:
            ea, maps, out_a = encdec.evaluate(eval_encdec, cfg.shown)
            eg, gpt_maps, out_g = gpt.evaluate(eval_prompt, golds, gold_lens, cfg.shown)
            ex = _example(task, test[cfg.shown], maps, gpt_maps, out_a, out_g)
            frames.append(Seq2SeqFrame(k + 1, losses, params, (ea, eg), ex))
        else:
            frames.append(Seq2SeqFrame(k + 1, losses, params))
    return frames


# --------------------------------------------------------------------------------------------- text
def last_eval(frames: list[Seq2SeqFrame]) -> Seq2SeqFrame:
    return next(f for f in reversed(frames) if f.evals is not None)


def best_head(e: Evaluation) -> tuple[int, int, float]:
    """(layer, head, mass) of the head whose attention falls most on the aligned source word."""
    layer, head = np.unravel_index(int(np.argmax(e.alignment)), e.alignment.shape)
    return int(layer), int(head), float(e.alignment[layer, head])


def summary(cfg: Seq2SeqConfig, frames: list[Seq2SeqFrame]) -> str:
    """The task, both models and their sizes, the held-out results side by side, one example, the alignment."""
    task, s = make_task(cfg.task, cfg.seed), shape_of(cfg)
    last, ev = frames[-1], last_eval(frames)
    lines = [_("Task: {task}; {vocab} word tokens, one vocabulary for both sides; {n} held-out pairs never "
               "trained on").format(task=_(TASK_NAMES[cfg.task]), vocab=task.vocab_size,
                                    n=-(-cfg.eval_pairs // cfg.batch_size) * cfg.batch_size),
             _("encoder-decoder: {enc} encoder + {dec} decoder layers (self-attention, cross-attention, MLP), d_model "
               "{d}, {heads} heads: {params:,} parameters").format(enc=cfg.enc_layers, dec=cfg.dec_layers, d=s.d_model,
                                                                  heads=s.n_head, params=last.params[0]),
             _("decoder-only GPT: {layers} layers, d_model {d}, {heads} heads, reading source <sep> target: {params:,} "
               "parameters ({share:+.1%})").format(layers=cfg.gpt_layers, d=s.gpt_d_model, heads=s.n_head,
                                                   params=last.params[1],
                                                   share=last.params[1] / last.params[0] - 1),
             _("both: the same pairs, batch {batch}, AdamW lr {lr:g}, seed {seed}; step {step} of {steps}; loss on "
               "the target tokens only").format(batch=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, step=last.step,
                                                steps=cfg.steps), "",
             f"{'':<18} {'train':>7} {'held out':>9} {'tokens':>7} {'exact':>6} {'on aligned word':>16}"]
    for i, key in enumerate(MODELS):
        e = ev.evals[i]
        layer, head, mass = best_head(e)
        lines.append(f"{_(MODEL_NAMES[key]):<18} {last.losses[i]:>7.3f} {e.loss:>9.3f} {e.token_accuracy:>7.1%} "
                     f"{e.exact_match:>6.1%} {mass:>7.1%} / {e.chance:.1%}")
    winner = MODELS[int(np.argmax([e.exact_match for e in ev.evals]))]
    lines += ["", _("tokens: teacher-forced top-1 accuracy; exact: greedy decoding writes the whole target right; on "
                    "aligned word: the best head's mean attention on the source word each target word comes from "
                    "(cross-attention; the GPT's self-attention over its prompt) / the same for uniform attention."),
              _("At (nearly) equal parameters and steps, the {winner} has more held-out pairs exactly right at step "
                "{step}.").format(winner=_(MODEL_NAMES[winner]), step=ev.step)]
    ex = ev.example
    if ex is not None:
        lines += ["", _("one held-out pair:"), "  " + _("source:") + " " + " ".join(ex.source),
                  "  " + _("target:") + " " + " ".join(ex.target),
                  "  " + _("{model}:").format(model=_(MODEL_NAMES["encdec"])) + " " + " ".join(ex.encdec_output),
                  "  " + _("{model}:").format(model=_(MODEL_NAMES["gpt"])) + " " + " ".join(ex.gpt_output)]
        layer, head, _mass = best_head(ev.evals[0])
        att = ex.cross[layer, head]
        lines.append("  " + _("cross-attention, layer {layer} head {head}: each target word -> the source word it "
                              "attends to most").format(layer=layer + 1, head=head + 1))
        lines.append("    " + ", ".join(f"{w} -> {ex.source[int(np.argmax(att[t]))]} ({att[t].max():.0%})"
                                        for t, w in enumerate(ex.target)))
    return "\n".join(lines)


# -------------------------------------------------------------------------------------- card metrics
def _keys(_cfg) -> list[str]:
    return list(MODELS)


def _eval_series(read):
    def series(run):
        return [(f.step, None if f.evals is None else {k: read(e) for k, e in zip(MODELS, f.evals, strict=True)})
                for f in run.frames]
    return Impl(series, keys=_keys, needs_key=True)


metric("seq2seq_exact_match", "seq2seq: per model (encdec, gpt), the share of held-out pairs greedy decoding gets "
       "exactly right", {"seq2seq": _eval_series(lambda e: e.exact_match)}, keyed=True, key_name="model",
       best="max")
metric("seq2seq_token_accuracy", "seq2seq: per model, the teacher-forced top-1 accuracy on the held-out target "
       "tokens", {"seq2seq": _eval_series(lambda e: e.token_accuracy)}, keyed=True, key_name="model", best="max")
metric("seq2seq_val_loss", "seq2seq: per model, the held-out cross-entropy per target token",
       {"seq2seq": _eval_series(lambda e: e.loss)}, keyed=True, key_name="model")
metric("alignment_over_chance", "seq2seq: per model, the best head's mean attention on the aligned source word "
       "over what uniform attention would give it", {"seq2seq": _eval_series(lambda e: best_head(e)[2] / e.chance)},
       keyed=True, key_name="model", best="max")
metric("param_ratio", "seq2seq: the decoder-only GPT's parameter count over the encoder-decoder's",
       {"seq2seq": Impl(lambda run: run.frames[0].params[1] / run.frames[0].params[0])}, per_step=False)

_RULES = {"name": non_empty, "task": one_of(TASKS), "src_len": positive_int, "tgt_len": positive_int,
          "d_model": positive_int, "n_head": positive_int, "enc_layers": positive_int, "dec_layers": positive_int,
          "gpt_layers": positive_int, "gpt_d_model": positive_int, "norm_position": one_of(("pre", "post")),
          "batch_size": positive_int, "lr": greater_than(0), "warmup": non_negative, "steps": positive_int,
          "eval_every": positive_int, "eval_pairs": positive_int, "seed": non_negative, "shown": non_negative}
LESSON = register(Lesson("seq2seq", "Encoder-decoder", Seq2SeqConfig, _RULES, validate, run, summary,
                         preset="seq2seq"))
