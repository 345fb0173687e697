"""What the sub-word tokenizers share: pre-tokenization, byte-fallback tokens, and the word-count table
that both trainers merge over.

Both trainers work on *words* (pre-tokens), never across them: the text is first cut into chunks by a
fixed rule, each distinct chunk is kept once with its count, and merges happen inside chunks only. A
generated corpus has a few hundred distinct chunks, so a merge touches few of them.
"""

from __future__ import annotations

import re
from collections import Counter
from itertools import pairwise

# GPT-2's split, written with the standard `re` module: an optional leading space and then a run of
# letters, a run of digits or a run of other visible characters; whitespace runs keep their last space
# for the next word. The final alternative catches anything left, so the chunks always add up to the text.
_BPE_CHUNK = re.compile(r" ?[^\W\d_]+| ?\d+| ?[^\s\w]+| ?_+|\s+(?!\S)|\s+|[\s\S]")
# WordPiece (BERT-like): runs of letters and digits are words; every other character is a chunk of its own.
# Unlike BERT, spaces and newlines are kept as tokens, so decoding gives the text back exactly.
_WORD_CHUNK = re.compile(r"[^\W_]+|[\s\S]")


def bpe_chunks(text: str) -> list[str]:
    """The pre-tokens a byte-level BPE merges inside ("".join of them is `text`)."""
    return _BPE_CHUNK.findall(text)


def word_chunks(text: str) -> list[str]:
    """The pre-tokens WordPiece splits: letter/digit runs and single other characters ("".join is `text`)."""
    return _WORD_CHUNK.findall(text)


def byte_name(b: int) -> str:
    """How a byte-fallback token is shown: <0xE2>."""
    return f"<0x{b:02X}>"


def surface(piece: bytes) -> str:
    """A token's bytes as text a person reads (an incomplete UTF-8 character shows as \\xNN escapes)."""
    return piece.decode("utf-8", errors="backslashreplace")


class WordTable:
    """Distinct words as lists of symbol ids with their counts, and the adjacent-pair counts kept up to date.

    `where[pair]` is the set of word indices that may hold the pair (a superset: it is cleaned lazily),
    so a merge only rewrites the words it can change.
    """

    def __init__(self, words: list[list[int]], counts: list[int]):
        self.words = words
        self.counts = counts
        self.pairs: Counter = Counter()
        self.where: dict[tuple[int, int], set[int]] = {}
        self.replaced = 0
        for i, w in enumerate(words):
            self._add(i, w)

    def _add(self, i: int, w: list[int]) -> None:
        c = self.counts[i]
        for pair in pairwise(w):
            self.pairs[pair] += c
            self.where.setdefault(pair, set()).add(i)

    def _remove(self, i: int, w: list[int]) -> None:
        c = self.counts[i]
        for pair in pairwise(w):
            self.pairs[pair] -= c
            if self.pairs[pair] == 0:
                del self.pairs[pair]

    def merge(self, pair: tuple[int, int], new: int) -> set[tuple[int, int]]:
        """Replace every non-overlapping (a, b), left to right, by `new`; returns the pairs whose count changed."""
        changed: set[tuple[int, int]] = set()
        self.replaced = 0  # how many (a, b) were replaced, weighted by word count
        for i in sorted(self.where.pop(pair, ())):
            w = self.words[i]
            out = merge_all(w, pair, new)
            if len(out) == len(w):
                continue  # a stale index: the pair had already left this word
            self.replaced += (len(w) - len(out)) * self.counts[i]
            changed.update(pairwise(w))
            changed.update(pairwise(out))
            self._remove(i, w)
            self.words[i] = out
            self._add(i, out)
        self.pairs.pop(pair, None)
        changed.discard(pair)
        return changed


def merge_all(symbols: list[int], pair: tuple[int, int], new: int) -> list[int]:
    """`symbols` with every non-overlapping occurrence of `pair`, left to right, replaced by `new`."""
    a, b = pair
    out, j, n = [], 0, len(symbols)
    while j < n:
        if j + 1 < n and symbols[j] == a and symbols[j + 1] == b:
            out.append(new)
            j += 2
        else:
            out.append(symbols[j])
            j += 1
    return out
