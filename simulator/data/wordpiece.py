"""WordPiece (as in BERT): word-initial pieces and `##` continuation pieces, greedy longest-match-first.

Vocabulary, in id order: the special tokens [PAD] [CLS] [SEP] [MASK]; 256 byte-fallback tokens
<0x00>..<0xFF>; every character of the training text as a word-initial piece (sorted) and, for the
characters that occur inside a word, as a `##` piece (sorted); then the learned pieces in the order
they were learned.

Pre-tokenization (`subword.word_chunks`): runs of letters and digits are words; every other
character (space, newline, punctuation) is a word of its own. Unlike BERT, spaces and newlines stay
tokens, so decoding is exact. A word is encoded greedily, longest piece first, from the left; a
character that no piece covers becomes its UTF-8 bytes (byte fallback), so there is no [UNK] and any
UTF-8 text round-trips. Whole-word masking reads words off `is_continuation`: a word is a piece that
does not continue followed by the pieces that do (a byte token continues when it is not at the start
of a word; `word_starts` tells them apart from the text's own words).

Training (as the HF WordPiece trainer): repeatedly join the adjacent pair with the highest score
count(ab) / (count(a) count(b)), counts weighted by word frequency, which prefers pairs whose parts
seldom occur apart. Ties: the higher pair count, then the smaller (left, right) piece strings. No
random numbers are drawn. It stops at `vocab_size` or when no pair occurs twice.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable

import numpy as np

from simulator.data.subword import WordTable, byte_name, word_chunks
from simulator.data.tokenizer import DataError
from simulator.i18n import _

SPECIALS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]")
N_BYTES = 256
CONT = "##"
MIN_PAIR_COUNT = 2


def _is_word(chunk: str) -> bool:
    return len(chunk) > 1 or chunk.isalnum()


def base_pieces(text: str) -> list[str]:
    """The pieces every WordPiece vocabulary on `text` starts with, after the specials and bytes."""
    chunks = set(word_chunks(text))
    initial = sorted({c[0] for c in chunks})
    inner = sorted({ch for c in chunks for ch in c[1:]})
    return initial + [CONT + ch for ch in inner]


def base_size(text: str) -> int:
    """Specials + bytes + the characters of `text` (initial and ##): the smallest vocab_size on it."""
    return len(SPECIALS) + N_BYTES + len(base_pieces(text))


def _join(a: str, b: str) -> str:
    return a + b[len(CONT):]


def train_wordpiece(text: str, vocab_size: int, steps: list[tuple[str, str, int, float]] | None = None) -> list[str]:
    """The learned pieces (after the base ones), in the order they were learned.

    `steps`, when given, receives each join as (left piece, right piece, pair count, score).
    """
    base = base_pieces(text)
    n_base = len(SPECIALS) + N_BYTES + len(base)
    if vocab_size < n_base:
        raise DataError(_("WordPiece on this text needs vocab_size >= {n_base} ({n} special, {N_BYTES} "
                          "byte-fallback and {n2} character pieces), got {vocab_size}").format(
                            n_base=n_base, n=len(SPECIALS), N_BYTES=N_BYTES, n2=len(base), vocab_size=vocab_size))
    pieces = list(base)
    index = {p: i for i, p in enumerate(pieces)}
    words = Counter(c for c in word_chunks(text) if _is_word(c))
    keys = sorted(words)
    seqs = [[index[k[0]]] + [index[CONT + ch] for ch in k[1:]] for k in keys]
    counts = [words[k] for k in keys]
    table = WordTable(seqs, counts)
    unit: Counter = Counter()  # how often each piece occurs in the current segmentation
    for s, c in zip(seqs, counts, strict=True):
        for p in s:
            unit[p] += c
    learned: list[str] = []
    while n_base + len(learned) < vocab_size and table.pairs:
        def key(item):  # the smallest key wins: the highest score, then count, then the smaller strings
            (a, b), c = item
            return (-c / (unit[a] * unit[b]), -c, pieces[a], pieces[b])
        candidates = [item for item in table.pairs.items() if item[1] >= MIN_PAIR_COUNT]
        if not candidates:
            break
        (a, b), c = min(candidates, key=key)
        if steps is not None:
            steps.append((pieces[a], pieces[b], c, c / (unit[a] * unit[b])))
        new_piece = _join(pieces[a], pieces[b])
        if new_piece in index:  # "##a"+"##b" and "##ab" learned earlier from another pair: reuse the id
            new = index[new_piece]
        else:
            new = len(pieces)
            pieces.append(new_piece)
            index[new_piece] = new
            learned.append(new_piece)
        table.merge((a, b), new)
        done = table.replaced  # fewer than c when the pair overlaps itself ("##l ##l ##l")
        unit[a] -= done
        unit[b] -= done
        unit[new] += done
    return learned


class WordPieceTokenizer:
    """WordPiece with ## continuations and byte fallback: exact round trip on any UTF-8 text."""

    kind = "wordpiece"

    def __init__(self, base: Iterable[str], learned: Iterable[str]):
        self.base = list(base)
        self.learned = list(learned)
        self.pieces = tuple(SPECIALS) + tuple(byte_name(b) for b in range(N_BYTES)) + tuple(self.base + self.learned)
        self.special_ids = {s: i for i, s in enumerate(SPECIALS)}
        self._index = {p: i for i, p in enumerate(self.pieces) if i >= len(SPECIALS) + N_BYTES}
        if len(self._index) != len(self.pieces) - len(SPECIALS) - N_BYTES:
            raise DataError(_("tokenizer record is damaged: WordPiece pieces are not distinct"))
        self._byte0 = len(SPECIALS)
        self._bytes = [p.removeprefix(CONT).encode("utf-8") for p in self.pieces]
        for i in range(N_BYTES):
            self._bytes[self._byte0 + i] = bytes([i])
        for s, i in self.special_ids.items():
            self._bytes[i] = s.encode("utf-8")
        # what each token reads as: a continuation without its ##, so joined tokens read as the text
        self.chars = tuple(p.removeprefix(CONT) if i >= self._byte0 + N_BYTES else p
                           for i, p in enumerate(self.pieces))
        self.is_continuation = np.array([p.startswith(CONT) for p in self.pieces], dtype=bool)
        self._longest = max((len(p) for p in self._index), default=1)
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def train(cls, text: str, vocab_size: int) -> WordPieceTokenizer:
        """The tokenizer learned on `text` with at most `vocab_size` tokens."""
        return cls(base_pieces(text), train_wordpiece(text, vocab_size))

    @property
    def vocab_size(self) -> int:
        return len(self.pieces)

    def _encode_word(self, word: str) -> list[int]:
        ids = self._cache.get(word)
        if ids is not None:
            return ids
        ids, i, n = [], 0, len(word)
        while i < n:
            prefix = CONT if i else ""
            for j in range(min(n, i + self._longest), i, -1):  # longest match first
                k = self._index.get(prefix + word[i:j])
                if k is not None:
                    ids.append(k)
                    i = j
                    break
            else:  # no piece starts here: the character's bytes
                ids.extend(self._byte0 + b for b in word[i].encode("utf-8"))
                i += 1
        self._cache[word] = ids
        return ids

    def encode(self, text: str) -> np.ndarray:
        """Ids of `text` as an int32 array (never fails: uncovered characters become their bytes)."""
        out: list[int] = []
        for chunk in word_chunks(text):
            out.extend(self._encode_word(chunk))
        return np.array(out, dtype=np.int32)

    def word_starts(self, text: str) -> np.ndarray:
        """One bool per token of `encode(text)`: True where a word (pre-token) begins (for whole-word masking)."""
        out: list[bool] = []
        for chunk in word_chunks(text):
            k = len(self._encode_word(chunk))
            out.extend([True] + [False] * (k - 1))
        return np.array(out, dtype=bool)

    def decode(self, ids: np.ndarray | Iterable[int]) -> str:
        """The text of a sequence of ids (continuations lose their ##; special tokens read as their names)."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            bad = int(ids[(ids < 0) | (ids >= self.vocab_size)][0])
            raise DataError(_("token id {bad} is outside the vocabulary of {vocab_size} WordPiece tokens").format(
                                bad=bad, vocab_size=self.vocab_size))
        return b"".join(self._bytes[i] for i in ids.tolist()).decode("utf-8", errors="replace")

    def to_json(self) -> str:
        """JSON text that `from_json` turns back into an equal tokenizer (for checkpoints)."""
        return json.dumps({"type": self.kind, "base": self.base, "learned": self.learned}, ensure_ascii=True)

    @classmethod
    def from_record(cls, data: dict) -> WordPieceTokenizer:
        """The tokenizer of a parsed `to_json` record."""
        base, learned = data.get("base"), data.get("learned")
        if not all(isinstance(x, list) and all(isinstance(p, str) and p.removeprefix(CONT) for p in x)
                   for x in (base, learned)):
            raise DataError(_("tokenizer record is damaged: WordPiece 'base' and 'learned' must be lists of pieces"))
        return cls(base, learned)

    def __eq__(self, other) -> bool:
        return isinstance(other, WordPieceTokenizer) and self.pieces == other.pieces

    def __hash__(self) -> int:
        return hash(self.pieces)

    def __repr__(self) -> str:
        return f"WordPieceTokenizer(vocab_size={self.vocab_size})"
