"""Byte-level BPE (as in GPT-2): 256 byte tokens, then merges of the most frequent adjacent pair.

Training starts from the UTF-8 bytes of every pre-token (`subword.bpe_chunks`), so any text, in any
script, with characters never seen in training, encodes: at worst a character becomes its bytes
(byte fallback) and decoding joins the bytes again. Ids 0-255 are the bytes, id 256 + k is merge k.

Training is deterministic and draws no random numbers: each step merges the pair with the highest
count; among equal counts, the pair with the smaller left id, then the smaller right id. It stops at
`vocab_size` tokens or when no pair occurs twice (then the vocabulary is smaller than asked).
Encoding applies the merges to each pre-token by rank (lowest merge number first), which segments a
training word exactly as training did.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter
from collections.abc import Iterable
from itertools import pairwise

import numpy as np

from simulator.data.subword import WordTable, bpe_chunks, merge_all, surface
from simulator.data.tokenizer import DataError
from simulator.i18n import _

N_BYTES = 256
MIN_PAIR_COUNT = 2  # a pair seen once is not merged: it would spend a token on a single occurrence


def train_bpe_merges(text: str, vocab_size: int, counts: list[int] | None = None) -> list[tuple[int, int]]:
    """The merges (left id, right id) learned on `text`, in order; merge k makes token 256 + k.

    `counts`, when given, receives each merge's pair count at the moment it was chosen.
    """
    if vocab_size < N_BYTES:
        raise DataError(_("a byte-level BPE needs vocab_size >= {N_BYTES} (its byte tokens), got {vocab_size}").format(
                            N_BYTES=N_BYTES, vocab_size=vocab_size))
    words = Counter(bpe_chunks(text))
    keys = sorted(words)  # sorted, so the table (and every stale-index walk) is the same on every run
    table = WordTable([list(k.encode("utf-8")) for k in keys], [words[k] for k in keys])
    # max-heap by count through (-count, a, b): the smallest tuple is the highest count, then the smaller ids
    heap = [(-c, a, b) for (a, b), c in table.pairs.items()]
    heapq.heapify(heap)
    merges: list[tuple[int, int]] = []
    while N_BYTES + len(merges) < vocab_size and heap:
        neg, a, b = heapq.heappop(heap)
        if table.pairs.get((a, b), 0) != -neg:
            continue  # a stale entry: the pair's count has changed since it was pushed
        if -neg < MIN_PAIR_COUNT:
            break
        new = N_BYTES + len(merges)
        merges.append((a, b))
        if counts is not None:
            counts.append(-neg)
        for pair in table.merge((a, b), new):
            c = table.pairs.get(pair, 0)
            if c:
                heapq.heappush(heap, (-c, *pair))
    return merges


class BPETokenizer:
    """Byte-level BPE: encode text to ids and back, exactly, for any UTF-8 text."""

    kind = "bpe"

    def __init__(self, merges: Iterable[tuple[int, int]]):
        self.merges = [tuple(int(x) for x in m) for m in merges]
        self._rank = {m: k for k, m in enumerate(self.merges)}
        pieces = [bytes([b]) for b in range(N_BYTES)]
        for k, (a, b) in enumerate(self.merges):
            if not (0 <= a < N_BYTES + k and 0 <= b < N_BYTES + k):
                raise DataError(_("BPE merge {k} joins ids {a} and {b}, which do not exist yet").format(k=k, a=a, b=b))
            pieces.append(pieces[a] + pieces[b])
        self.pieces = tuple(pieces)  # the bytes of each token
        self.chars = tuple(surface(p) for p in pieces)  # what each token reads as (the sampler shows these)
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def train(cls, text: str, vocab_size: int) -> BPETokenizer:
        """The tokenizer learned on `text` with at most `vocab_size` tokens."""
        return cls(train_bpe_merges(text, vocab_size))

    @property
    def vocab_size(self) -> int:
        """256 byte tokens plus one per merge."""
        return len(self.pieces)

    def _encode_chunk(self, chunk: str) -> list[int]:
        ids = self._cache.get(chunk)
        if ids is None:
            ids = list(chunk.encode("utf-8"))
            while len(ids) > 1:
                ranked = [(self._rank.get(p, len(self._rank)), p) for p in pairwise(ids)]
                rank, pair = min(ranked)
                if rank == len(self._rank):
                    break  # no adjacent pair is a merge
                ids = merge_all(ids, pair, N_BYTES + rank)
            self._cache[chunk] = ids
        return ids

    def encode(self, text: str) -> np.ndarray:
        """Ids of `text` as an int32 array (never fails: unknown characters become their bytes)."""
        out: list[int] = []
        for chunk in bpe_chunks(text):
            out.extend(self._encode_chunk(chunk))
        return np.array(out, dtype=np.int32)

    def decode(self, ids: np.ndarray | Iterable[int]) -> str:
        """The text of a sequence of ids (a cut inside a character shows as U+FFFD, as UTF-8 decoding does)."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            bad = int(ids[(ids < 0) | (ids >= self.vocab_size)][0])
            raise DataError(_("token id {bad} is outside the vocabulary of {vocab_size} BPE tokens").format(
                                bad=bad, vocab_size=self.vocab_size))
        return b"".join(self.pieces[i] for i in ids.tolist()).decode("utf-8", errors="replace")

    def to_json(self) -> str:
        """JSON text that `from_json` turns back into an equal tokenizer (for checkpoints)."""
        return json.dumps({"type": self.kind, "merges": self.merges})

    @classmethod
    def from_record(cls, data: dict) -> BPETokenizer:
        """The tokenizer of a parsed `to_json` record."""
        merges = data.get("merges")
        if not isinstance(merges, list) or not all(isinstance(m, list) and len(m) == 2
                                                   and all(isinstance(x, int) for x in m) for m in merges):
            raise DataError(_("tokenizer record is damaged: BPE 'merges' must be a list of [left, right] id pairs"))
        return cls(merges)

    def __eq__(self, other) -> bool:
        return isinstance(other, BPETokenizer) and self.merges == other.merges

    def __hash__(self) -> int:
        return hash(tuple(self.merges))

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size})"
