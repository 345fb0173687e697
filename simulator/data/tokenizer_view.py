"""What a tokenizer view shows: the merges as they are learned, and one sentence split at several sizes.

Plain data for a UI tab or the CLI (no drawing here). Both trainers are prefix-consistent: training
with a smaller vocab_size learns exactly the first merges of a larger training, so one training at
the largest size gives every smaller tokenizer by truncation.
"""

from __future__ import annotations

from typing import NamedTuple

from simulator.data.bpe import N_BYTES, BPETokenizer, train_bpe_merges
from simulator.data.subword import surface
from simulator.data.wordpiece import SPECIALS, WordPieceTokenizer, base_pieces, train_wordpiece


class MergeStep(NamedTuple):
    """One learned token: which two tokens were joined, how often the pair occurred, and (WordPiece) its score."""

    index: int  # 0 for the first merge
    token_id: int
    left: str
    right: str
    new: str  # the new token as a person reads it ("##" kept for WordPiece continuations)
    count: int
    score: float | None  # WordPiece's count(ab) / (count(a) count(b)); None for BPE


def merge_steps(kind: str, text: str, vocab_size: int) -> list[MergeStep]:
    """Every merge learned on `text` up to `vocab_size` tokens, in order (kind: bpe or wordpiece)."""
    if kind == "bpe":
        counts: list[int] = []
        merges = train_bpe_merges(text, vocab_size, counts)
        pieces = BPETokenizer(merges).pieces
        return [MergeStep(k, N_BYTES + k, surface(pieces[a]), surface(pieces[b]), surface(pieces[N_BYTES + k]),
                          c, None) for k, ((a, b), c) in enumerate(zip(merges, counts, strict=True))]
    if kind == "wordpiece":
        steps: list[tuple[str, str, int, float]] = []
        train_wordpiece(text, vocab_size, steps)
        first = len(SPECIALS) + N_BYTES + len(base_pieces(text))
        out, ids = [], {}
        for k, (a, b, c, score) in enumerate(steps):
            new = a + b.removeprefix("##")
            ids.setdefault(new, first + len(ids))  # a piece made again by another pair keeps its id
            out.append(MergeStep(k, ids[new], a, b, new, c, score))
        return out
    raise ValueError(f"merge_steps needs kind bpe or wordpiece, got {kind!r}")


def tokenizers_at(kind: str, text: str, sizes: list[int]) -> dict[int, BPETokenizer | WordPieceTokenizer]:
    """The tokenizer of `kind` trained on `text` at each vocabulary size, from one training at the largest."""
    top = max(sizes)
    if kind == "bpe":
        merges = train_bpe_merges(text, top)
        return {n: BPETokenizer(merges[:max(0, n - N_BYTES)]) for n in sizes}
    base = base_pieces(text)
    learned = train_wordpiece(text, top)
    first = len(SPECIALS) + N_BYTES + len(base)
    return {n: WordPieceTokenizer(base, learned[:max(0, n - first)]) for n in sizes}


def splits_at(kind: str, text: str, sentence: str, sizes: list[int]) -> dict[int, list[str]]:
    """How `sentence` splits into tokens (as they read) at each vocabulary size; WordPiece keeps its ##."""
    out = {}
    for n, tok in tokenizers_at(kind, text, sizes).items():
        ids = tok.encode(sentence)
        shown = tok.pieces if kind == "wordpiece" else tok.chars
        out[n] = [shown[i] for i in ids.tolist()]
    return out
