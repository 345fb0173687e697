"""Fill in the blank: the encoder's distribution for a hidden word, next to the causal GPT's.

A person types a sentence with `_` where a word is missing ("the _ has horns"); one or more underscores
make one blank, and there is one blank per sentence. The blank is one token: the encoder reads
`[CLS] left [MASK] right [SEP]` (segment 0, as a sentence read alone) and gives its MLM distribution at the
[MASK]; the GPT reads `[CLS] left` and gives its next-token distribution after it. A hidden word of several
WordPiece pieces is therefore asked for by its first piece (BERT's own fill-mask does the same: one
[MASK], one token); the words the lesson scores itself are single pieces, so there the piece is the word.

Both distributions are restricted to the tokens that can begin a word and occur in the text (no `##`
continuation, no special token, no byte fallback) and renormalised there: the GPT may put mass on [SEP]
or a continuation after a left context, which no word in a blank can be, and the encoder on [MASK]
itself; neither is an answer to "which word goes here".

Sentences are read in batches of the models' training shape (so their arenas are not rebuilt); one
query fills the other rows with copies, which are read and ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from simulator.data.subword import word_chunks
from simulator.data.wordpiece import N_BYTES, SPECIALS
from simulator.encoder.model import Encoder
from simulator.encoder.pairs import CLS, MASK, PAD, SEP
from simulator.i18n import _
from simulator.model.gpt import GPT

_BLANK = re.compile(r"_+")


class FillError(ValueError):
    """A sentence that cannot be asked (no blank, two blanks, characters the text never uses): one sentence."""


@dataclass(frozen=True)
class Blank:
    """A sentence with one blank, in tokens: what comes before it and what comes after it."""

    text: str  # as read (whitespace collapsed, maybe lower-cased)
    left: np.ndarray  # (n_left,) int32
    right: np.ndarray  # (n_right,) int32


def _pieces(tok, text: str) -> list[int]:
    return [i for chunk in word_chunks(text) if not chunk.isspace() for i in tok.encode(chunk).tolist()]


def _unknown_words(tok, text: str) -> list[str]:
    """The words of `text` that need byte pieces (a character the tokenizer's text never uses)."""
    lo, hi = len(SPECIALS), len(SPECIALS) + N_BYTES
    return [c for c in word_chunks(text) if not c.isspace() and any(lo <= i < hi for i in tok.encode(c))]


def parse_blank(tok, text: str, seq_len: int) -> Blank:
    """The sentence's tokens before and after its blank; FillError naming what is wrong with it."""
    s = " ".join(text.split())
    found = list(_BLANK.finditer(s))
    if not found:
        raise FillError(_("put _ where the hidden word goes, e.g. \"the _ has horns\""))
    if len(found) > 1:
        raise FillError(_("one blank at a time: \"{text}\" has {n}").format(text=s, n=len(found)))
    a, e = found[0].span()
    if (a > 0 and s[a - 1].isalnum()) or (e < len(s) and s[e].isalnum()):
        raise FillError(_("the blank must be a word of its own: put a space before and after _"))
    around = lambda t: t[:a] + " " + t[e:]  # noqa: E731 - the sentence without its blank
    if _unknown_words(tok, around(s)) and not _unknown_words(tok, around(s.lower())):
        s = s.lower()  # the text is in lower case: "The _ has horns" is asked as "the _ has horns"
    unknown = _unknown_words(tok, around(s))
    if unknown:
        raise FillError(_("the text the models learned from never uses some characters of {words}").format(
            words=", ".join(f"\"{w}\"" for w in unknown)))
    left, right = _pieces(tok, s[:a]), _pieces(tok, s[e:])
    if len(left) + len(right) + 3 > seq_len:
        raise FillError(_("the sentence is {n} tokens with [CLS], [MASK] and [SEP]; the models read "
                          "{seq_len}").format(n=len(left) + len(right) + 3, seq_len=seq_len))
    return Blank(s, np.array(left, np.int32), np.array(right, np.int32))


def answer_tokens(tok, vocab_ids: np.ndarray) -> np.ndarray:
    """(V,) bool: the tokens a blank may be (begin a word, occur in the text, not special, not a byte)."""
    out = np.zeros(tok.vocab_size, bool)
    out[vocab_ids] = True
    out[:len(SPECIALS) + N_BYTES] = False
    return out & ~tok.is_continuation


def _restricted(logits: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Softmax of logits over the allowed tokens, in float64; 0 elsewhere."""
    z = np.where(allowed, logits.astype(np.float64), -np.inf)
    z -= z.max()
    p = np.exp(z)
    return p / p.sum()


def _batches(n: int, B: int):
    for start in range(0, n, B):
        yield start, min(n, start + B)


def encoder_probabilities(model: Encoder, blanks: list[Blank], allowed: np.ndarray, B: int, T: int) -> np.ndarray:
    """(n, V) the encoder's distribution at each blank's [MASK] (restricted to `allowed`, renormalised)."""
    out = np.zeros((len(blanks), len(allowed)))
    for start, end in _batches(len(blanks), B):
        ids = np.full((B, T), PAD, np.int32)
        lengths = np.zeros(B, np.int32)
        chosen = np.zeros((B, T), bool)
        for r in range(B):
            b = blanks[min(start + r, end - 1)]  # rows past the last blank: copies of it, ignored
            n_left, n = len(b.left), len(b.left) + len(b.right) + 3
            ids[r, :n] = [CLS, *b.left, MASK, *b.right, SEP]
            lengths[r] = n
            if start + r < end:
                chosen[r, 1 + n_left] = True
        model.run_forward(ids, np.zeros((B, T), np.int32), lengths, chosen, ids, np.zeros(B, np.int32))
        logits = model.acts["logits"][:end - start]  # (k, V): the chosen rows, gathered in row order
        for i in range(end - start):
            out[start + i] = _restricted(logits[i], allowed)
    return out


def gpt_probabilities(model: GPT, blanks: list[Blank], allowed: np.ndarray, B: int, T: int) -> np.ndarray:
    """(n, V) the causal GPT's next-token distribution after `[CLS] left` (restricted, renormalised)."""
    out = np.zeros((len(blanks), len(allowed)))
    for start, end in _batches(len(blanks), B):
        ids = np.full((B, T), PAD, np.int32)
        lengths = np.zeros(B, np.int32)
        for r in range(B):
            b = blanks[min(start + r, end - 1)]
            n = len(b.left) + 1
            ids[r, :n] = [CLS, *b.left]
            lengths[r] = n
        model.forward(ids, lengths=lengths)
        logits = model.logits()
        for i in range(end - start):
            out[start + i] = _restricted(logits[i, lengths[i] - 1], allowed)
    return out


def top_k(tok, probs: np.ndarray, k: int) -> tuple[tuple[str, float], ...]:
    """The k most likely tokens of one distribution as (piece, probability), most likely first."""
    order = np.argsort(-probs, kind="stable")[:k]
    return tuple((tok.pieces[i], float(probs[i])) for i in order if probs[i] > 0)


@dataclass(frozen=True)
class FillAnswer:
    """Both models' k most likely tokens for one blank, as (piece, probability)."""

    text: str  # the sentence as read
    encoder: tuple[tuple[str, float], ...]
    gpt: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class FillScore:
    """Both models on held-out blanks: the mean probability of the hidden word, and how often it is the top one."""

    n: int
    encoder_probability: float
    gpt_probability: float
    encoder_top1: float
    gpt_top1: float


def held_out_blanks(documents, tok, allowed: np.ndarray, n: int, T: int, rng: np.random.Generator
                    ) -> list[tuple[Blank, int]]:
    """Up to n (blank, hidden token) from the documents' sentences, one a sentence: a word of letters that is
    one piece (so its token is the word) and a possible answer, drawn at random among the sentence's."""
    out = []
    for d in documents:
        for s in d:
            ids = s.ids[:T - 3]
            ends = np.r_[s.starts[1:len(ids)], True]  # the next token begins a word (or there is none)
            words = [p for p in range(len(ids)) if s.starts[p] and ends[p] and allowed[ids[p]]
                     and tok.pieces[ids[p]].isalpha()]
            if words:
                p = words[int(rng.integers(len(words)))]
                left, right = ids[:p], ids[p + 1:]
                out.append((Blank(tok.decode(left), left.copy(), right.copy()), int(ids[p])))
    picked = rng.permutation(len(out))[:n]
    return [out[i] for i in sorted(picked)]


class FillModels:
    """A run's trained encoder and causal GPT, asked for blanks (one query at a time, any thread)."""

    def __init__(self, encoder: Encoder, gpt: GPT, tok, vocab_ids: np.ndarray, batch: int, T: int):
        import threading

        self.encoder, self.gpt, self.tok, self.B, self.T = encoder, gpt, tok, batch, T
        self.allowed = answer_tokens(tok, vocab_ids)
        self._lock = threading.Lock()  # the models' activations are one arena each

    def probabilities(self, blanks: list[Blank]) -> tuple[np.ndarray, np.ndarray]:
        """(n, V) each, the encoder's and the GPT's restricted distributions at the blanks."""
        with self._lock:
            return (encoder_probabilities(self.encoder, blanks, self.allowed, self.B, self.T),
                    gpt_probabilities(self.gpt, blanks, self.allowed, self.B, self.T))

    def ask(self, text: str, k: int = 5) -> FillAnswer:
        """Both models' top k for a typed sentence with one `_`; FillError when it cannot be asked."""
        blank = parse_blank(self.tok, text, self.T)
        enc, gpt = self.probabilities([blank])
        return FillAnswer(blank.text, top_k(self.tok, enc[0], k), top_k(self.tok, gpt[0], k))

    def score(self, blanks: list[tuple[Blank, int]]) -> FillScore:
        """Both models on (blank, hidden token) pairs."""
        enc, gpt = self.probabilities([b for b, _t in blanks])
        truth = np.array([t for _b, t in blanks])
        rows = np.arange(len(truth))
        return FillScore(len(truth), float(enc[rows, truth].mean()), float(gpt[rows, truth].mean()),
                         float(np.mean(enc.argmax(axis=1) == truth)), float(np.mean(gpt.argmax(axis=1) == truth)))
