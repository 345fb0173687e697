"""Which positions the masked language model predicts, and what it reads there (BERT's 80/10/10).

Candidates are the real tokens of sentence A and B: never [CLS], [SEP] or padding. Three ways to
choose among them (`MASKINGS`):

* token (BERT): each candidate independently with probability `rate` (as Hugging Face's collator
  draws it), so the share chosen is `rate` on average.
* whole_word (BERT's later release): words (a token that begins a word and the `##` pieces after
  it) in a random order, each taken whole while the chosen tokens stay within the budget
  round(rate x candidates) (at least 1); a word that would overshoot is skipped, as BERT's
  `create_pretraining_data.py` does.
* span (SpanBERT): a span length in words drawn from a geometric distribution (p = 0.2, clipped at
  10), a random word to start at, the span cut at its sentence's end; spans are added until the
  budget is reached, and the last one is cut to the whole words that still fit. A span that would
  touch an already chosen token is drawn again (at most `MAX_TRIES` draws a row).

Of the chosen positions, each independently: 80 % are replaced by [MASK], 10 % by a random token
(drawn uniformly from the tokens that occur in the text, so never a special), 10 % left unchanged.
The targets are the original tokens; the loss reads only the chosen positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.encoder.pairs import CLS, MASK, PAD, SEP

MASKINGS = ("token", "whole_word", "span")
SPAN_P, SPAN_MAX = 0.2, 10  # SpanBERT's geometric span lengths, clipped
MAX_TRIES = 100
# what happened at a position (`Masked.action`)
KEPT_OUT, TO_MASK, TO_RANDOM, UNCHANGED = 0, 1, 2, 3


@dataclass
class Masked:
    """A batch after masking: what the encoder reads and what the MLM loss compares against."""

    ids: np.ndarray  # (B, T) int32: the input with [MASK] / random tokens in
    targets: np.ndarray  # (B, T) int32: the original tokens (read only where chosen)
    chosen: np.ndarray  # (B, T) bool: the positions the loss counts
    action: np.ndarray  # (B, T) int8: KEPT_OUT, TO_MASK, TO_RANDOM or UNCHANGED


def candidates(ids: np.ndarray) -> np.ndarray:
    """(B, T) bool: the positions that may be chosen (real tokens that are not [CLS], [SEP], [PAD])."""
    return (ids != CLS) & (ids != SEP) & (ids != PAD)


def words_of(cand: np.ndarray, starts: np.ndarray) -> list[tuple[int, int]]:
    """(first, end) of each word in one row: a word start, then the candidates that continue it."""
    out, t, T = [], 0, len(cand)
    while t < T:
        if cand[t]:
            end = t + 1
            while end < T and cand[end] and not starts[end]:
                end += 1
            out.append((t, end))
            t = end
        else:
            t += 1
    return out


def span_lengths(rng: np.random.Generator, n: int) -> np.ndarray:
    """n span lengths in words: geometric with p = SPAN_P (1, 2, ...), clipped at SPAN_MAX."""
    return np.minimum(rng.geometric(SPAN_P, size=n), SPAN_MAX)


def budget(n_candidates: int, rate: float) -> int:
    """How many tokens whole-word and span masking choose in a row: round(rate x n), at least 1 (0 for none)."""
    return 0 if n_candidates == 0 else max(1, int(round(rate * n_candidates)))


def _whole_words(cand, starts, rate, rng) -> np.ndarray:
    chosen = np.zeros(len(cand), bool)
    words = words_of(cand, starts)
    room = budget(int(cand.sum()), rate)
    for w in rng.permutation(len(words)):
        a, e = words[w]
        if e - a <= room:
            chosen[a:e] = True
            room -= e - a
        if room == 0:
            break
    return chosen


def _spans(cand, starts, rate, rng) -> np.ndarray:
    chosen = np.zeros(len(cand), bool)
    words = words_of(cand, starts)
    room = budget(int(cand.sum()), rate)
    # the words of one sentence are consecutive in `words`; a span must not cross [SEP]
    sentence_end, last = [0] * len(words), len(words)
    for i in range(len(words) - 1, -1, -1):
        if i + 1 < len(words) and words[i][1] != words[i + 1][0]:
            last = i + 1
        sentence_end[i] = last
    tries = 0
    while room > 0 and words and tries < MAX_TRIES:
        tries += 1
        length = int(span_lengths(rng, 1)[0])
        w0 = int(rng.integers(len(words)))
        w1 = min(w0 + length, sentence_end[w0])
        while w1 > w0 and words[w1 - 1][1] - words[w0][0] > room:  # the last span: the whole words that fit
            w1 -= 1
        if w1 == w0:
            continue
        a, e = words[w0][0], words[w1 - 1][1]
        lo, hi = max(a - 1, 0), min(e + 1, len(cand))  # not touching a chosen span: spans stay apart
        if chosen[lo:hi].any():
            continue
        chosen[a:e] = True
        room -= e - a
    return chosen


def choose(ids: np.ndarray, starts: np.ndarray, rate: float, how: str, rng: np.random.Generator) -> np.ndarray:
    """(B, T) bool: the positions the MLM predicts, by `how` (one of MASKINGS)."""
    cand = candidates(ids)
    if how == "token":
        return cand & (rng.random(ids.shape) < rate)
    pick = _whole_words if how == "whole_word" else _spans
    return np.stack([pick(cand[r], starts[r], rate, rng) for r in range(ids.shape[0])])


def corrupt(ids: np.ndarray, chosen: np.ndarray, vocab_ids: np.ndarray, rng: np.random.Generator) -> Masked:
    """BERT's 80/10/10 on the chosen positions: [MASK], a random token of `vocab_ids`, or unchanged."""
    u = rng.random(ids.shape)
    random_ids = vocab_ids[rng.integers(len(vocab_ids), size=ids.shape)]
    action = np.where(~chosen, KEPT_OUT, np.where(u < 0.8, TO_MASK, np.where(u < 0.9, TO_RANDOM, UNCHANGED)))
    out = np.where(action == TO_MASK, MASK, np.where(action == TO_RANDOM, random_ids, ids)).astype(np.int32)
    return Masked(out, ids.astype(np.int32, copy=True), chosen, action.astype(np.int8))


def mask_batch(ids, starts, vocab_ids, rate: float, how: str, rng: np.random.Generator) -> Masked:
    """Chooses positions and corrupts them: the MLM's input, targets and loss positions of one batch."""
    return corrupt(ids, choose(ids, starts, rate, how, rng), vocab_ids, rng)
