"""word2vec as a lesson (`kind: word2vec`): static word vectors learned from the words around each word.

The numbers are `simulator/text/word2vec.py`'s. Training is cut into `steps` chunks; one `W2VFrame` per
chunk holds the loss, the analogy accuracy per relation, the nearest neighbours of the asked words and a
2-D PCA map of each relation's words, so the tab can replay the map moving as the vectors train. The
last frame also holds the vectors. The summary adds the static-vector point: a word gets one vector
whatever its sentence.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
from tqdm import tqdm

from simulator.data.world import RELATIONS
from simulator.i18n import _
from simulator.lessons import Lesson, register
from simulator.lessons.tokenizers import CORPORA, lesson_text, resolve_path
from simulator.lessons.worked_examples import ExplainError
from simulator.rules import greater_than, non_empty, non_negative, one_of, positive_int
from simulator.text.tfidf import words
from simulator.text.word2vec import (
    MODELS,
    Vocab,
    Word2Vec,
    Word2VecParams,
    analogy_accuracy,
    build_vocab,
    encode,
    nearest,
    pca_2d,
    relation_pairs,
    unit_rows,
)
from simulator.yamlconfig import ParseContext

FREQUENT = "frequent"  # the map of the most frequent words, for a text without the world's relations
MAP_WORDS = 30


@dataclass(frozen=True)
class Word2VecConfig:
    """Which text, which model and how it trains, and what to show."""

    name: str = "word2vec"
    description: str = "Skip-gram or CBOW word vectors: nearest neighbours, analogies and a PCA map as they train."
    corpus: str = "world"
    path: Optional[str] = None
    model: str = "skipgram"
    dim: int = 50  # vector size D
    window: int = 3  # largest distance of a context word; each position draws its own from 1..window
    negative: int = 5  # noise words per prediction
    sample: float = 1e-3  # subsampling threshold t (0: off)
    min_count: int = 1
    epochs: int = 5
    lr: float = 0.05  # falls linearly to lr * 1e-4
    seed: int = 0
    steps: int = 50  # chunks of training: one frame each
    neighbours: tuple[str, ...] = ("queen", "goats", "tolm", "plough")
    k: int = 5  # neighbours shown per word
    static_word: Optional[str] = "plough"  # a word used two ways ("the plough has handles", "they plough")
    static_sentences: tuple[str, ...] = ()  # two sentences with static_word; empty: the two of the text that
    # share the fewest other words


@dataclass(frozen=True)
class W2VFrame:
    """One chunk of training and what the vectors show after it."""

    step: int
    words_done: int
    loss: float  # mean per prediction over the chunk
    lr: float
    accuracy: tuple[tuple[str, int, int], ...]  # (relation, solved, asked)
    neighbours: tuple[tuple[str, tuple[tuple[str, float], ...]], ...]  # (word, ((neighbour, cosine), ...))
    maps: tuple[tuple[str, tuple[str, ...], np.ndarray, np.ndarray], ...]  # (name, words, (n, 2) coords, (2,) var)
    vectors: np.ndarray | None = None  # (V, D) float32, on the last frame only


@dataclass(frozen=True)
class Corpus:
    """The lesson's text as word tokens, its vocabulary and id stream."""

    where: str
    tokens: list[str]
    vocab: Vocab
    ids: np.ndarray


_CORPORA: dict[tuple, Corpus] = {}


def load_corpus(corpus: str, path: str | None, min_count: int) -> Corpus:
    """The words of the lesson's corpus (cached per text and min_count); ExplainError for a text that cannot be read."""
    text, where = lesson_text(corpus, path)
    key = (corpus, path, min_count, len(text), hash(text))
    found = _CORPORA.get(key)  # read once: the window's lesson thread and the Tk thread both call this
    if found is None:
        tokens = words(text)
        vocab = build_vocab(tokens, min_count)
        found = Corpus(where, tokens, vocab, encode(tokens, vocab))
        _CORPORA.clear()  # one text at a time: a person's file may be large
        _CORPORA[key] = found
    # the name is in the language of now (the cached corpus may have been read in another)
    return found if found.where == where else replace(found, where=where)



def params_of(cfg: Word2VecConfig) -> Word2VecParams:
    return Word2VecParams(cfg.model, cfg.dim, cfg.window, cfg.negative, cfg.sample, cfg.epochs, cfg.lr, cfg.seed)


def map_sets(vocab: Vocab) -> list[tuple[str, tuple[str, ...]]]:
    """(name, words) of each map: every relation with a pair in the vocabulary, then the most frequent words."""
    out = []
    for rel, pairs in RELATIONS.items():
        present = relation_pairs(pairs, vocab)
        if len(present) >= 2:
            out.append((rel, tuple(w for pair in present for w in pair)))
    out.append((FREQUENT, vocab.words[:MAP_WORDS]))
    return out


def describe(vectors: np.ndarray, c: Corpus, cfg: Word2VecConfig, step: int, stats, vectors_kept: bool) -> W2VFrame:
    """The frame of the vectors after one chunk."""
    acc = tuple(analogy_accuracy(vectors, c.vocab, RELATIONS))
    nbs = tuple((w, tuple(nearest(vectors, c.vocab, w, cfg.k))) for w in cfg.neighbours)
    index = c.vocab.index
    maps = tuple((name, ws, *pca_2d(vectors[[index[w] for w in ws]])) for name, ws in map_sets(c.vocab))
    return W2VFrame(step, stats.words_done, stats.loss, stats.lr, acc, nbs, maps,
                    vectors.copy() if vectors_kept else None)


# ------------------------------------------------------------------------------------------------- text
def accuracy_text(frame: W2VFrame) -> list[str]:
    lines = [_("analogies a : b :: c : ? (nearest word to b - a + c by cosine, a, b, c left out):")]
    for rel, hits, asked in frame.accuracy:
        lines.append(f"  {rel:<8} " + (_("{share:6.1%}  ({hits} of {asked})").format(
            share=hits / asked, hits=hits, asked=asked) if asked else _("no pair of this relation in the text")))
    return lines


def neighbours_text(frame: W2VFrame) -> list[str]:
    lines = [_("nearest neighbours (cosine):")]
    for w, nbs in frame.neighbours:
        lines.append(f"  {w:>10}: " + ", ".join(f"{n} {s:.2f}" for n, s in nbs))
    return lines


def sentences_with(tokens_text: str, word: str, limit: int = 200) -> list[str]:
    """Up to `limit` sentences of the text (split at . ! ? and blank lines) that hold `word`."""
    out = []
    for s in re.split(r"[.!?]+|\n\s*\n", tokens_text):
        if word in words(s):
            out.append(" ".join(s.split()))
            if len(out) >= limit:
                break
    return out


def pick_sentences(text: str, word: str) -> list[str]:
    """The two sentences with `word` that share the fewest other words (Jaccard; the first such pair), or fewer."""
    found = sentences_with(text, word)
    if len(found) < 2:
        return found
    bags = [set(words(s)) - {word} for s in found]
    _, i, j = min((len(bags[i] & bags[j]) / max(1, len(bags[i] | bags[j])), i, j)
                  for i in range(len(found)) for j in range(i + 1, len(found)))
    return [found[i], found[j]]


@dataclass(frozen=True)
class StaticPoint:
    """One word in two sentences: how alike the sentences' other words are, and the word's one vector."""

    word: str
    sentences: tuple[str, ...]  # two, or fewer when the text has fewer
    with_word: tuple[float, ...]  # cosine of each sentence's other words (their mean vector) with the word
    between: float  # cosine between the two sentences' other words


def static_point(cfg: Word2VecConfig, c: Corpus, vectors: np.ndarray) -> StaticPoint:
    """The measurement behind the static-vector point: the contexts differ, the word's vector cannot."""
    word = cfg.static_word
    shown = tuple(cfg.static_sentences) or tuple(pick_sentences(lesson_text(cfg.corpus, cfg.path)[0], word))
    if len(shown) < 2:
        return StaticPoint(word, shown, (), float("nan"))
    e = unit_rows(vectors)
    index = c.vocab.index
    v = e[index[word]]
    contexts = []
    for s in shown:
        others = [index[w] for w in words(s) if w != word and w in index]
        m = e[others].mean(axis=0) if others else np.zeros_like(v)
        contexts.append(m / max(float(np.linalg.norm(m)), 1e-12))
    return StaticPoint(word, shown, tuple(float(m @ v) for m in contexts), float(contexts[0] @ contexts[1]))


def static_text(cfg: Word2VecConfig, c: Corpus, vectors: np.ndarray) -> list[str]:
    """Two sentences that use `static_word` differently, and the one vector word2vec gives it in both."""
    p = static_point(cfg, c, vectors)
    if len(p.sentences) < 2:
        return [_("static vectors: '{word}' occurs in fewer than two sentences of {where}").format(
            word=p.word, where=c.where)]
    lines = [_("static vectors: word2vec gives '{word}' one vector whatever its sentence:").format(word=p.word)]
    for s, cos in zip(p.sentences, p.with_word, strict=True):
        lines.append(f"  \"{s}\"  " + _("(its other words, averaged: cosine {cosine:.2f} with '{word}')").format(
            cosine=cos, word=p.word))
    lines += ["  " + _("the two sentences' other words: cosine {cosine:.2f} with each other; '{word}' is one row of "
                       "the table in both (cosine 1)").format(cosine=p.between, word=p.word),
              "  " + _("its nearest neighbours, one list for every use: ")
              + ", ".join(f"{n} {s:.2f}" for n, s in nearest(vectors, c.vocab, p.word, cfg.k)),
              "  " + _("A contextual encoder (BERT) gives a word one vector per sentence instead.")]
    return lines


# -------------------------------------------------------------------------------------------- lesson
def validate(cfg: Word2VecConfig, ctx: ParseContext) -> Word2VecConfig:
    """A readable text with enough words for the window, and shown words that are in its vocabulary."""
    cfg = resolve_path(cfg, ctx)
    try:
        c = load_corpus(cfg.corpus, cfg.path, cfg.min_count)
    except ExplainError as e:
        ctx.fail("path" if cfg.corpus == "text_file" else "corpus", str(e))
    where_key = "path" if cfg.corpus == "text_file" else "corpus"
    if len(c.ids) < 2 * cfg.window + 1:
        counted = f" seen at least {cfg.min_count} times (min_count)" if cfg.min_count > 1 else ""
        ctx.fail(where_key, _("{where} has {n} words{counted}, fewer than one window of {value} (window {window} on "
                              "each side)").format(
                                where=c.where, n=len(c.ids), counted=counted, value=2 * cfg.window + 1,
                                window=cfg.window),
                 _("use a longer text or a smaller window"))
    if len(c.vocab) < 2:
        ctx.fail(where_key, _("{where} has {n} distinct word; word2vec needs at least two").format(
                                where=c.where, n=len(c.vocab)))
    if cfg.k >= len(c.vocab):
        ctx.fail("k", _("{k} neighbours asked, but {where} has only {n} words").format(
                          k=cfg.k, where=c.where, n=len(c.vocab)),
                 _("use at most {value}").format(value=len(c.vocab) - 1))
    missing = [w for w in cfg.neighbours if w not in c.vocab.index]
    if missing:
        ctx.fail("neighbours", _("'{value}' is not a word of {where} (seen at least {min_count} times)").format(
                                   value=missing[0], where=c.where, min_count=cfg.min_count))
    if cfg.static_word is not None and cfg.static_word not in c.vocab.index:
        ctx.fail("static_word", _("'{static_word}' is not a word of {where}").format(
                                    static_word=cfg.static_word, where=c.where))
    if cfg.static_sentences and (len(cfg.static_sentences) != 2 or cfg.static_word is None):
        ctx.fail("static_sentences", _("needs two sentences and a static_word, got {n}").format(
                                         n=len(cfg.static_sentences)))
    bad = [s for s in cfg.static_sentences if cfg.static_word not in words(s)]
    if bad:
        ctx.fail("static_sentences", _("{value!r} does not hold static_word '{static_word}'").format(
                                         value=bad[0], static_word=cfg.static_word))
    return cfg


def run(cfg: Word2VecConfig, steps: int | None = None, cancelled=lambda: False) -> list[W2VFrame]:
    """Trains chunk by chunk, one frame each (the first `steps` chunks of the full schedule when given).

    On the main thread (the CLI) a progress bar goes to stderr when it is a terminal; the window runs lessons
    in a thread of its own and shows none.
    """
    if cancelled():
        return []
    c = load_corpus(cfg.corpus, cfg.path, cfg.min_count)
    model = Word2Vec(c.ids, c.vocab, params_of(cfg), chunks=cfg.steps)
    n = cfg.steps if steps is None else min(steps, cfg.steps)
    frames: list[W2VFrame] = []
    quiet = True if threading.current_thread() is not threading.main_thread() else None  # None: tty only
    with tqdm(total=n, unit="step", desc=f"word2vec {cfg.model}", disable=quiet, leave=False) as bar:
        for k in range(n):
            if cancelled():
                return []
            stats = model.train_chunk()
            frames.append(describe(model.w_in, c, cfg, k + 1, stats, vectors_kept=k == n - 1))
            bar.set_postfix(loss=f"{stats.loss:.3f}", refresh=False)
            bar.update()
    return frames


def summary(cfg: Word2VecConfig, frames: list[W2VFrame]) -> str:
    """The training, the neighbours and analogies after the last frame, and the static-vector point."""
    c = load_corpus(cfg.corpus, cfg.path, cfg.min_count)
    last = frames[-1]
    head = {"skipgram": _("word2vec skip-gram (a word predicts its neighbours), negative sampling, on {where}: "
                          "{words:,} words, {vocab:,} in the vocabulary"),
            "cbow": _("word2vec CBOW (the mean of the neighbours predicts the word), negative sampling, on "
                      "{where}: {words:,} words, {vocab:,} in the vocabulary")}[cfg.model]
    lines = [head.format(where=c.where, words=len(c.ids), vocab=len(c.vocab)),
             _("D = {dim}, window 1..{window}, {negative} negatives from count^0.75, subsampling t = {sample:g}, "
               "{epochs} epochs, lr {lr:g} falling linearly, seed {seed}").format(
                 dim=cfg.dim, window=cfg.window, negative=cfg.negative, sample=cfg.sample, epochs=cfg.epochs,
                 lr=cfg.lr, seed=cfg.seed),
             _("step {step} of {steps} ({words:,} words): loss {loss:.3f} per prediction (first step {first:.3f}), "
               "lr {lr:.3g}").format(step=last.step, steps=cfg.steps, words=last.words_done, loss=last.loss,
                                     first=frames[0].loss, lr=last.lr), ""]

    lines += neighbours_text(last) + [""] + accuracy_text(last)
    if cfg.static_word is not None:
        lines += [""] + static_text(cfg, c, last.vectors)
    return "\n".join(lines)


_RULES = {"name": non_empty, "corpus": one_of(CORPORA), "path": non_empty, "model": one_of(MODELS),
          "dim": positive_int, "window": positive_int, "negative": positive_int, "sample": non_negative,
          "min_count": positive_int, "epochs": positive_int, "lr": greater_than(0), "seed": non_negative,
          "steps": positive_int, "k": positive_int, "static_word": non_empty}
LESSON = register(Lesson("word2vec", "word2vec", Word2VecConfig, _RULES, validate, run, summary, preset="word2vec"))
