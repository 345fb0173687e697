"""A BERT-style encoder as a lesson (`kind: bert`): masked language modelling, and NSP against SOP.

Two learners train side by side from the same weights, each on MLM plus one sentence-pair task on the
[CLS] vector: NSP (is B the next sentence, or one from another document?) and SOP (are two consecutive
sentences in order, or swapped?). A bag-of-words probe (`encoder/probe.py`, no order information) is
measured on both tasks first: it solves NSP from topic cues alone and is at chance on SOP, which is what
the lesson shows about NSP. One `BertFrame` per step: each learner's training losses, and every
`eval_every` steps its held-out MLM loss and pair accuracy with one held-out pair shown (its masking, the
encoder's predictions, the attention from [CLS]).

Beside them a causal GPT of the same sizes trains the same steps on the same pairs (`encoder/causal.py`),
for fill in the blank (`encoder/fill.py`): the last frame carries both trained models behind `FillModels`
(the tab asks it for a typed sentence), their answers for `fill_sentences` and their score on held-out
blanks. Then, on the world corpus (whose documents have topics), the first learner's encoder is fine-tuned
on [CLS] to tell a sentence's topic, against a fresh encoder fine-tuned the same steps (`encoder/topics.py`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import numpy as np

from simulator.data.tokenizers import build_tokenizer
from simulator.data.wordpiece import base_size
from simulator.encoder.causal import CausalLearner
from simulator.encoder.contextual import contextual_cosines, site_label, word_positions
from simulator.encoder.fill import FillAnswer, FillError, FillModels, FillScore, held_out_blanks, parse_blank
from simulator.encoder.masking import KEPT_OUT, MASKINGS, TO_MASK, TO_RANDOM, UNCHANGED
from simulator.encoder.pairs import PAIR_TASKS, PairCorpus, draw_pair, pair_corpus
from simulator.encoder.probe import ProbeResult, bag_of_words_probe, fit_bags
from simulator.encoder.topics import LEARNERS, TopicResult, fine_tune, label_sentences
from simulator.encoder.train import EncoderShape, Evaluation, Learner, eval_set
from simulator.i18n import N_, _
from simulator.lessons import Lesson, register
from simulator.lessons.cards_metrics import Impl, metric
from simulator.lessons.threads import one_thread
from simulator.lessons.tokenizers import CORPORA, lesson_text, resolve_path
from simulator.lessons.worked_examples import ExplainError
from simulator.rules import at_least, greater_than, in_range, non_empty, non_negative, one_of, positive_int
from simulator.yamlconfig import ParseContext

HELD_OUT_EVERY = 10  # every 10th document is held out (texts of at least MIN_SPLIT documents)
MIN_SPLIT = 20
# how the tab names what the masking did at a position (masking.KEPT_OUT ...)
ACTIONS = {KEPT_OUT: N_("not chosen"), TO_MASK: N_("[MASK] (80%)"), TO_RANDOM: N_("random token (10%)"),
           UNCHANGED: N_("unchanged (10%)")}  # translated where shown
TASK_NAMES = {"nsp": N_("NSP (next sentence or another document's)"),
              "sop": N_("SOP (two sentences in order or swapped)")}
TOPIC_LABELS = {"pretrained": N_("pre-trained (MLM + NSP), then fine-tuned"),
                "scratch": N_("from scratch, fine-tuned the same steps")}


@dataclass(frozen=True)
class BertConfig:
    """Which text, which encoder, how it masks and trains, and what to show."""

    name: str = "bert-mlm"
    description: str = "A BERT-style encoder: masked language modelling, and NSP against SOP on [CLS]."
    corpus: str = "world"
    path: Optional[str] = None
    vocab_size: int = 900  # WordPiece tokens (the base alphabet of the world corpus is 312)
    seq_len: int = 48  # the window: [CLS] A [SEP] B [SEP], padded
    d_model: int = 32
    n_layer: int = 2
    n_head: int = 2
    masking: str = "token"  # token | whole_word | span
    mask_rate: float = 0.15
    tasks: tuple[str, ...] = ("nsp", "sop")
    batch_size: int = 32
    lr: float = 2e-3
    warmup: int = 20
    steps: int = 200
    eval_every: int = 25
    eval_pairs: int = 256
    probe_pairs: int = 2000  # pairs the bag-of-words probe is fitted on (tested on eval_pairs x 4 held-out ones)
    seed: int = 0
    shown: int = 0  # which held-out pair the tab shows (a row of the first evaluation batch)
    static_word: Optional[str] = "plough"  # static vs contextual: a word used two ways (none: skip)
    static_sentences: tuple[str, ...] = ("the lazy pigs plough one muddy field near the barn",
                                         "at last, the plough has handles")
    # fill in the blank: sentences the summary asks both models about, and held-out blanks they are scored on
    fill_sentences: tuple[str, ...] = ()  # each with one _ (the preset asks about the world corpus's words)
    fill_top: int = 5
    fill_blanks: int = 256
    # [CLS] fine-tuning on the documents' topics (world corpus): steps (0: none), learning rate, which sentence
    topic_steps: int = 100
    topic_lr: float = 2e-3
    topic_eval_every: int = 20
    topic_shown: int = 0  # which held-out sentence the tab shows the attention from [CLS] over


@dataclass(frozen=True)
class Example:
    """One held-out pair as the encoder read it, and what it predicted."""

    tokens: tuple[str, ...]  # the original tokens, real ones only
    shown: tuple[str, ...]  # what the encoder read (with [MASK] and random tokens)
    predicted: tuple[str, ...]  # its top prediction at each position
    action: np.ndarray  # (n,) int8 masking.KEPT_OUT / TO_MASK / TO_RANDOM / UNCHANGED
    segments: np.ndarray  # (n,) int32
    cls_attention: np.ndarray  # (NH, n): the last layer's attention from [CLS]
    label: int
    predicted_label: int


@dataclass(frozen=True)
class TaskPoint:
    """One learner at one step."""

    task: str
    mlm_loss: float  # the training batch's, before the update
    pair_loss: float
    eval: Evaluation | None = None  # held-out, every eval_every steps (and at the first and last)
    example: Example | None = None


@dataclass(frozen=True)
class BertFrame:
    step: int
    points: tuple[TaskPoint, ...]
    probes: tuple[ProbeResult, ...]  # the bag-of-words probe per task (the same in every frame)
    # the last frame: per task, (layer, cosine) between static_word's vectors in the two static_sentences
    contextual: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = ()
    gpt_loss: float | None = None  # the causal GPT's training batch next-token loss, before its update
    # the last frame: the trained encoder and GPT to ask (`FillModels.ask`), their answers for fill_sentences,
    # their score on held-out blanks; the topic fine-tuning (None: not run)
    fill: FillModels | None = None
    fill_answers: tuple[FillAnswer, ...] = ()
    fill_score: FillScore | None = None
    topics: TopicResult | None = None


# --------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class LessonData:
    """The tokenized text, split into training and held-out documents."""

    where: str
    full: PairCorpus
    train: PairCorpus
    test: PairCorpus
    held_out: bool  # False: too few documents, evaluation reuses the training documents
    topic_names: tuple[str, ...] = ()  # the documents' topics (world corpus), else ()
    train_topics: tuple[int, ...] = ()  # per training document, its topic's index in topic_names
    test_topics: tuple[int, ...] = ()


_DATA: dict[tuple, LessonData] = {}
_PROBES: dict[tuple, tuple[ProbeResult, ...]] = {}


def _subset(c: PairCorpus, keep) -> PairCorpus:
    docs = tuple(d for i, d in enumerate(c.documents) if keep(i))
    return PairCorpus(c.where, c.tokenizer, docs, c.vocab_ids, sum(len(s.ids) for d in docs for s in d))


def load_data(corpus: str, path: str | None, vocab_size: int) -> LessonData:
    """The lesson's text in WordPiece sentences (cached per text and size); ExplainError when it cannot be read."""
    text, where = lesson_text(corpus, path)
    key = (corpus, path, vocab_size, len(text), hash(text))
    found = _DATA.get(key)
    if found is None:
        n_base = base_size(text)
        if vocab_size < n_base:
            raise ExplainError(f"WordPiece on {where} needs vocab_size >= {n_base} (4 special, 256 byte and "
                               f"{n_base - 260} character pieces), got {vocab_size}")
        full = pair_corpus(text, where, build_tokenizer("wordpiece", text, vocab_size))
        split = len(full.documents) >= MIN_SPLIT
        in_train = lambda i: not split or i % HELD_OUT_EVERY != HELD_OUT_EVERY - 1  # noqa: E731
        in_test = lambda i: not split or i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1  # noqa: E731
        train, test = _subset(full, in_train), _subset(full, in_test)
        names, topics = _topics(corpus, full)
        found = LessonData(where, full, train, test, split, names,
                           tuple(t for i, t in enumerate(topics) if in_train(i)),
                           tuple(t for i, t in enumerate(topics) if in_test(i)))
        _DATA.clear()  # one text at a time
        _DATA[key] = found
    return found


def _topics(corpus: str, full: PairCorpus) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """(topic names, each document's topic index) of the world corpus, whose generator knows them; else ((), ())."""
    if corpus != "world":
        return (), ()
    from simulator.data.world import TOPIC_NAMES, world_documents

    docs = world_documents()
    if len(docs) != len(full.documents):  # one paragraph a document: the two lists are one
        return (), ()
    return TOPIC_NAMES, tuple(TOPIC_NAMES.index(d.topic) for d in docs)


def shape_of(cfg: BertConfig, data: LessonData) -> EncoderShape:
    return EncoderShape(data.full.tokenizer.vocab_size, cfg.seq_len, cfg.d_model, cfg.n_layer, cfg.n_head,
                        cfg.batch_size, cfg.masking, cfg.mask_rate, cfg.lr, cfg.warmup)


def probes(cfg: BertConfig, data: LessonData) -> tuple[ProbeResult, ...]:
    """The bag-of-words probe per task (cached per process: it does not depend on the encoder)."""
    key = (id(data), cfg.tasks, cfg.probe_pairs, cfg.eval_pairs, cfg.seed)
    if key not in _PROBES:
        bags = fit_bags(data.train.documents)
        out = []
        for i, task in enumerate(cfg.tasks):
            rng = np.random.default_rng([cfg.seed, 3, i])
            train = [draw_pair(data.train, task, rng) for _ in range(cfg.probe_pairs)]
            test = [draw_pair(data.test, task, rng) for _ in range(4 * cfg.eval_pairs)]
            out.append(bag_of_words_probe(task, bags, train, test))
        _PROBES.clear()
        _PROBES[key] = tuple(out)
    return _PROBES[key]


def example_of(data: LessonData, batch, masked, shown: int, pred: np.ndarray, att: np.ndarray,
               predicted_label: int) -> Example:
    """The `shown` row of a held-out batch, trimmed to its real tokens."""
    n = int(batch.lengths[shown])
    pieces = data.full.tokenizer.pieces
    names = lambda ids: tuple(pieces[i] for i in ids[:n])  # noqa: E731
    return Example(names(masked.targets[shown]), names(masked.ids[shown]), names(pred), masked.action[shown, :n].copy(),
                   batch.segments[shown, :n].copy(), att[:, :n].copy(), int(batch.labels[shown]), predicted_label)


# ------------------------------------------------------------------------------------------- lesson
def validate(cfg: BertConfig, ctx: ParseContext) -> BertConfig:
    """A readable text with documents enough for the tasks, a window the text can fill, sizes that fit."""
    cfg = resolve_path(cfg, ctx)
    where_key = "path" if cfg.corpus == "text_file" else "corpus"
    try:
        data = load_data(cfg.corpus, cfg.path, cfg.vocab_size)
    except ExplainError as e:
        ctx.fail("vocab_size" if "vocab_size" in str(e) else where_key, str(e))
    docs = data.full.documents
    if not cfg.tasks or len(set(cfg.tasks)) != len(cfg.tasks) or any(t not in PAIR_TASKS for t in cfg.tasks):
        ctx.fail("tasks", _("must be distinct pair tasks of {tasks}, got {value}").format(
            tasks=", ".join(PAIR_TASKS), value=list(cfg.tasks)))
    if not any(len(d) >= 2 for d in data.train.documents):
        ctx.fail(where_key, _("{where} has no document of two sentences or more; NSP and SOP pair a sentence "
                              "with the next one").format(where=data.where), _("end sentences with . ! or ?"))
    if "nsp" in cfg.tasks and len(docs) < 2:
        ctx.fail(where_key, _("{where} has {n} document; NSP draws its negatives from another document, so it "
                              "needs at least two").format(where=data.where, n=len(docs)),
                 _("separate documents by a blank line, or use tasks: [sop]"))
    if cfg.seq_len > data.full.n_tokens:
        ctx.fail("seq_len", _("a window of {seq_len} tokens is larger than {where} ({n} tokens)").format(
            seq_len=cfg.seq_len, where=data.where, n=data.full.n_tokens), _("use a smaller seq_len or a longer text"))
    if cfg.d_model % cfg.n_head:
        ctx.fail("n_head", _("{n_head} heads do not divide d_model {d_model}").format(
            n_head=cfg.n_head, d_model=cfg.d_model))
    if cfg.static_word is not None:
        if len(cfg.static_sentences) != 2:
            ctx.fail("static_sentences", _("needs two sentences with static_word, got {n}").format(
                n=len(cfg.static_sentences)))
        tok = data.full.tokenizer
        for s in cfg.static_sentences:
            where = word_positions(tok, s, cfg.static_word)
            if where is None:
                ctx.fail("static_sentences", _("{value!r} does not hold static_word '{static_word}'").format(
                    value=s, static_word=cfg.static_word))
            if where[0] >= cfg.seq_len - 1:
                ctx.fail("static_sentences", _("'{static_word}' comes after the window of {seq_len} tokens in "
                                               "{value!r}").format(static_word=cfg.static_word, seq_len=cfg.seq_len,
                                                                   value=s))
        if cfg.batch_size < 2:
            ctx.fail("batch_size", _("static vs contextual reads its two sentences in one batch: use at least 2"),
                     _("or static_word: null"))
    if cfg.shown >= cfg.batch_size:
        ctx.fail("shown", _("{shown} is not a row of a batch of {batch_size}").format(
            shown=cfg.shown, batch_size=cfg.batch_size), _("use 0 to {value}").format(value=cfg.batch_size - 1))
    for s in cfg.fill_sentences:
        try:
            parse_blank(data.full.tokenizer, s, cfg.seq_len)
        except FillError as e:
            ctx.fail("fill_sentences", f"{s!r}: {e}")
    n_test = sum(len(d) for d in data.test.documents)
    if data.topic_names and cfg.topic_steps and cfg.topic_shown >= n_test:
        ctx.fail("topic_shown", _("{shown} is not one of the {n} held-out sentences").format(
            shown=cfg.topic_shown, n=n_test))
    return cfg


def run(cfg: BertConfig, steps: int | None = None, cancelled=lambda: False) -> list[BertFrame]:
    """Trains one learner per task in lockstep, one frame a step (the first `steps` steps when given).

    BLAS and numba's parallel kernels run on one thread: the arrays are small (d_model 32), and waking
    threads for them cost more than they gave, by far on a busy machine (numba's setting is per thread).
    """
    if cancelled():
        return []
    with one_thread():
        return _run(cfg, steps, cancelled)


def _run(cfg: BertConfig, steps: int | None, cancelled) -> list[BertFrame]:
    data = load_data(cfg.corpus, cfg.path, cfg.vocab_size)
    shape = shape_of(cfg, data)
    probe = probes(cfg, data)
    learners = [Learner(task, shape, data.train, cfg.seed, i) for i, task in enumerate(cfg.tasks)]
    gpt = CausalLearner(shape, data.train, cfg.seed, cfg.tasks[0])  # the pairs the fill encoder (learner 0) reads
    evals = [eval_set(data.test, task, cfg.eval_pairs, shape, np.random.default_rng([cfg.seed, 2, i]))
             for i, task in enumerate(cfg.tasks)]
    n = cfg.steps if steps is None else min(steps, cfg.steps)
    frames: list[BertFrame] = []
    for k in range(n):
        if cancelled():
            return []
        points = []
        for learner, ev in zip(learners, evals, strict=True):
            mlm, pair = learner.step()
            if k == 0 or (k + 1) % cfg.eval_every == 0 or k == n - 1:
                e, (pred, att, label) = learner.evaluate(ev, cfg.shown)
                b, m = ev.batches[0]
                ex = example_of(data, b, m, cfg.shown, pred, att, label)
                points.append(TaskPoint(learner.task, mlm, pair, e, ex))
            else:
                points.append(TaskPoint(learner.task, mlm, pair))
        frames.append(BertFrame(k + 1, tuple(points), probe, gpt_loss=gpt.step()))
    if not frames:
        return frames
    tok = data.full.tokenizer
    if cfg.static_word is not None:
        ctx = tuple((L.task, contextual_cosines(L.model, tok, tuple(cfg.static_sentences), cfg.static_word,
                                                cfg.batch_size, cfg.seq_len)) for L in learners)
        frames[-1] = dataclasses.replace(frames[-1], contextual=ctx)
    fill = FillModels(learners[0].model, gpt.model, tok, data.full.vocab_ids, cfg.batch_size, cfg.seq_len)
    blanks = held_out_blanks(data.test.documents, tok, fill.allowed, cfg.fill_blanks, cfg.seq_len,
                             np.random.default_rng([cfg.seed, 7]))
    frames[-1] = dataclasses.replace(frames[-1], fill=fill, fill_score=fill.score(blanks) if blanks else None,
                                     fill_answers=tuple(fill.ask(s, cfg.fill_top) for s in cfg.fill_sentences))
    if data.topic_names and cfg.topic_steps:
        train = label_sentences(data.train.documents, list(data.train_topics), cfg.seq_len)
        test = label_sentences(data.test.documents, list(data.test_topics), cfg.seq_len)
        topics = fine_tune(shape, learners[0].model, data.topic_names, train, test, cfg.topic_steps, cfg.topic_lr,
                           cfg.topic_eval_every, cfg.topic_shown, cfg.seed, tok.pieces, cancelled)
        if topics is None:
            return []
        frames[-1] = dataclasses.replace(frames[-1], topics=topics)
    return frames


# --------------------------------------------------------------------------------------------- text
def _evaluated(frames: list[BertFrame], i: int) -> TaskPoint:
    return next(f.points[i] for f in reversed(frames) if f.points[i].eval is not None)


def example_text(ex: Example) -> str:
    """The pair as read: a chosen position as [original->read: prediction]."""
    out = []
    for tok, read, pred, act in zip(ex.tokens, ex.shown, ex.predicted, ex.action, strict=True):
        out.append(tok if act == KEPT_OUT else f"[{tok}->{read}: {pred}]")
    return " ".join(out)


def summary(cfg: BertConfig, frames: list[BertFrame]) -> str:
    """The data and model, each learner's losses and accuracies against the bag-of-words probe, one example."""
    data = load_data(cfg.corpus, cfg.path, cfg.vocab_size)
    tok = data.full.tokenizer
    n_words = sum(int(s.starts.sum()) for d in data.full.documents for s in d)
    last = frames[-1]
    split = (_("{train:,} for training, {test:,} held out").format(
        train=len(data.train.documents), test=len(data.test.documents)) if data.held_out
             else _("too few to hold any out: evaluation reuses them"))
    lines = [_("BERT-style encoder on {where}: {n:,} documents ({split}); WordPiece {vocab} tokens, {pieces:.2f} "
               "pieces per word").format(where=data.where, n=len(data.full.documents), split=split,
                                         vocab=tok.vocab_size, pieces=data.full.n_tokens / max(n_words, 1)),
             _("[CLS] A [SEP] B [SEP] in {seq_len} positions, token + segment + position embeddings; {n_layer} "
               "layers, d_model {d_model}, {n_head} heads, bidirectional attention").format(
                 seq_len=cfg.seq_len, n_layer=cfg.n_layer, d_model=cfg.d_model, n_head=cfg.n_head),
             _("MLM: {masking} masking of {rate:.0%} of the tokens (80% [MASK], 10% random, 10% unchanged), loss "
               "on those only").format(masking=cfg.masking, rate=cfg.mask_rate),
             _("batch {batch}, AdamW lr {lr:g}, seed {seed}; step {step} of {steps}; held out: {pairs} pairs per "
               "task").format(batch=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, step=last.step, steps=cfg.steps,
                              pairs=cfg.eval_pairs), "",
             f"{'task':<5} {'MLM loss':>9} {'held out':>9} {'top-1':>6} {'pair acc':>9} {'bag-of-words':>13}"]
    for i, p in enumerate(last.points):
        ev = _evaluated(frames, i).eval
        probe = next(r for r in last.probes if r.task == p.task)
        lines.append(f"{p.task:<5} {p.mlm_loss:>9.3f} {ev.mlm_loss:>9.3f} {ev.mlm_accuracy:>6.1%} "
                     f"{ev.pair_accuracy:>9.1%} {probe.test_accuracy:>13.1%}")
    lines += ["", _("pair acc: the [CLS] head on held-out pairs; bag-of-words: a logistic regression on which words "
                    "the two sentences hold,"),
              _("never their order (so it is at chance, 50%, on SOP by construction).") + " "
              + "; ".join(_(TASK_NAMES[t]) for t in cfg.tasks)]
    if last.contextual:
        first, second = (f'"{t}"' for t in cfg.static_sentences)
        lines += ["", _("static vs contextual: '{word}' in {first} and {second}; word2vec gives it one vector "
                        "(cosine 1). The encoder's vectors of it (each sentence read alone), cosine between the two "
                        "uses:").format(word=cfg.static_word, first=first, second=second)]
        for task, cos in last.contextual:
            lines.append("  " + _("{task} learner:").format(task=task) + " "
                         + ", ".join(f"{site_label(name)} {c:.3f}" for name, c in cos))
    lines += fill_lines(cfg, last) + topic_lines(cfg, data, last)
    ex = _evaluated(frames, 0).example
    if ex is not None:
        lines += ["", _("one held-out {task} pair (label {label}, predicted {predicted}); chosen positions as "
                        "[original->read: predicted]:").format(task=cfg.tasks[0].upper(), label=ex.label,
                                                               predicted=ex.predicted_label),
                  "  " + example_text(ex)]
    return "\n".join(lines)


def _answers(pairs) -> str:
    return ", ".join(f"{piece} {p:.0%}" for piece, p in pairs)


def fill_lines(cfg: BertConfig, last: BertFrame) -> list[str]:
    """Fill in the blank: both models' answers for fill_sentences, and their score on held-out blanks."""
    lines = ["", _("fill in the blank: the encoder reads both sides of the blank, the causal GPT (same sizes, same "
                   "pairs, {steps} steps, next-token loss {loss:.3f} at the end) only the left one; top {k} tokens "
                   "that can begin a word:").format(steps=last.step, loss=last.gpt_loss, k=cfg.fill_top)]
    for a in last.fill_answers:
        lines += [f'  "{a.text}"', "    " + _("encoder: {answers}").format(answers=_answers(a.encoder)),
                  "    " + _("GPT:     {answers}").format(answers=_answers(a.gpt))]
    sc = last.fill_score
    if sc is not None:
        lines.append("  " + _("{n} held-out blanks (one word of one piece per held-out sentence): probability of the "
                              "hidden word, encoder {enc:.1%}, GPT {gpt:.1%}; top-1, encoder {enc1:.1%}, GPT "
                              "{gpt1:.1%}").format(n=sc.n, enc=sc.encoder_probability, gpt=sc.gpt_probability,
                                                   enc1=sc.encoder_top1, gpt1=sc.gpt_top1))
    return lines


def topic_lines(cfg: BertConfig, data: LessonData, last: BertFrame) -> list[str]:
    """[CLS] fine-tuning on topics: held-out accuracy of the pre-trained and the fresh encoder against chance."""
    if not data.topic_names or not cfg.topic_steps:
        return ["", _("[CLS] fine-tuning on topics: not run (only the world corpus's documents carry topics, and "
                      "topic_steps must be above 0)")]
    t = last.topics
    lines = ["", _("[CLS] fine-tuning: a sentence's topic ({names}), {steps} steps at lr {lr:g} on {train:,} training "
                   "sentences; held-out accuracy on {test:,} sentences (chance {chance:.0%}, the commonest topic "
                   "{majority:.1%}):").format(names=", ".join(t.names), steps=cfg.topic_steps, lr=cfg.topic_lr,
                                              train=t.n_train, test=t.n_test, chance=1 / len(t.names),
                                              majority=t.majority)]
    for c in t.curves:
        lines.append("  " + _(TOPIC_LABELS[c.label]) + ": " + ", ".join(
            _("step {step} {accuracy:.1%}").format(step=k, accuracy=a) for k, a in zip(c.steps, c.accuracy,
                                                                                       strict=True)))
    return lines


# -------------------------------------------------------------------------------------- card metrics
def _tasks_of(cfg) -> list[str]:
    return list(cfg.tasks)


def _eval_series(read):
    def series(run):
        return [(f.step, {p.task: read(p.eval) for p in f.points if p.eval is not None} or None) for f in run.frames]
    return Impl(series, keys=_tasks_of, needs_key=True)


metric("mlm_val_loss", "BERT: per pair task's learner, the held-out MLM loss over the chosen positions (every "
       "eval_every steps)", {"bert": _eval_series(lambda e: e.mlm_loss)}, keyed=True, key_name="task")
metric("pair_accuracy", "BERT: per pair task (nsp, sop), the held-out accuracy of the pair head on [CLS]",
       {"bert": _eval_series(lambda e: e.pair_accuracy)}, keyed=True, key_name="task", best="max")
metric("probe_accuracy", "BERT: per pair task, the held-out accuracy of the bag-of-words probe (no order)",
       {"bert": Impl(lambda run: {r.task: r.test_accuracy for r in run.frames[0].probes}, keys=_tasks_of,
                     needs_key=True)}, per_step=False, keyed=True, key_name="task")

metric("topic_accuracy", "BERT: per learner (pretrained, scratch), the held-out accuracy of the topic classifier "
       "on [CLS] after fine-tuning", {"bert": Impl(
           lambda run: {c.label: c.accuracy[-1] for c in run.frames[-1].topics.curves} if run.frames[-1].topics
           else {}, keys=lambda cfg: list(LEARNERS), needs_key=True)}, per_step=False, keyed=True, key_name="learner",
       best="max")
metric("fill_probability", "BERT: per model (encoder, gpt), the mean probability of the hidden word on held-out "
       "blanks", {"bert": Impl(
           lambda run: {"encoder": run.frames[-1].fill_score.encoder_probability,
                        "gpt": run.frames[-1].fill_score.gpt_probability} if run.frames[-1].fill_score else {},
           keys=lambda cfg: ["encoder", "gpt"], needs_key=True)}, per_step=False, keyed=True, key_name="model",
       best="max")

_RULES = {"name": non_empty, "corpus": one_of(CORPORA), "path": non_empty, "vocab_size": positive_int,
          "seq_len": at_least(5), "d_model": positive_int, "n_layer": positive_int, "n_head": positive_int,
          "masking": one_of(MASKINGS), "mask_rate": in_range(0, 1, low_open=True, high_open=True),
          "batch_size": positive_int, "lr": greater_than(0), "warmup": non_negative, "steps": positive_int,
          "eval_every": positive_int, "eval_pairs": positive_int, "probe_pairs": at_least(10),
          "seed": non_negative, "shown": non_negative, "static_word": non_empty, "fill_top": positive_int,
          "fill_blanks": positive_int, "topic_steps": non_negative, "topic_lr": greater_than(0),
          "topic_eval_every": positive_int, "topic_shown": non_negative}
LESSON = register(Lesson("bert", "BERT", BertConfig, _RULES, validate, run, summary, preset="bert-mlm"))
