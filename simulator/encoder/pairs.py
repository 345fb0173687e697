"""A text as documents of sentences in WordPiece tokens, and the sentence pairs BERT trains on.

Documents are paragraphs (blank lines between), sentences end at . ! or ?. Each sentence is kept as
its WordPiece ids without the whitespace tokens (BERT drops whitespace too; our WordPiece keeps it so
that decoding is exact, which an encoder does not need), with a flag per token for where a word
begins (whole-word and span masking choose whole words).

A pair is packed as `[CLS] A [SEP] B [SEP] [PAD] ...`: segment 0 up to and with the first [SEP],
segment 1 after it, real tokens first (the GPT's padding: kv_len hides the rest from attention).
Too long a pair is cut longest-first from the end, as BERT's data pipeline does.

* NSP (next sentence prediction): A is a sentence, B the next one of its document (label 1) or, half
  the time, a sentence of another document (label 0).
* SOP (sentence order prediction, ALBERT): A and B are two consecutive sentences of one document, in
  their order (label 1) or, half the time, swapped (label 0).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from simulator.data.subword import word_chunks
from simulator.data.wordpiece import SPECIALS, WordPieceTokenizer

PAD, CLS, SEP, MASK = (SPECIALS.index(s) for s in ("[PAD]", "[CLS]", "[SEP]", "[MASK]"))
PAIR_TASKS = ("nsp", "sop")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Sentence:
    """One sentence in tokens: its ids, where each word begins, and its text."""

    ids: np.ndarray  # (n,) int32, no whitespace tokens
    starts: np.ndarray  # (n,) bool: True where a word begins
    text: str


@dataclass(frozen=True)
class PairCorpus:
    """The documents of a text, tokenized, and what the pair tasks and the masking draw from."""

    where: str
    tokenizer: WordPieceTokenizer
    documents: tuple[tuple[Sentence, ...], ...]
    vocab_ids: np.ndarray  # the token ids that occur in the text: a "random token" of MLM is one of them
    n_tokens: int  # tokens of every sentence together

    @property
    def pairable(self) -> np.ndarray:
        """Indices of the documents with two sentences or more (where a pair can start)."""
        found = self.__dict__.get("_pairable")
        if found is None:
            found = np.array([i for i, d in enumerate(self.documents) if len(d) >= 2], np.intp)
            object.__setattr__(self, "_pairable", found)
        return found


def split_documents(text: str) -> list[list[str]]:
    """Paragraphs (blank-line separated) as lists of sentences; empty ones dropped."""
    docs = []
    for para in re.split(r"\n\s*\n", text):
        sentences = [" ".join(s.split()) for s in _SENTENCE_END.split(para.strip()) if s.strip()]
        if sentences:
            docs.append(sentences)
    return docs


def tokenize_sentence(tok: WordPieceTokenizer, text: str) -> Sentence:
    """A sentence's WordPiece ids without whitespace, and the word starts."""
    ids, starts = [], []
    for chunk in word_chunks(text):
        if chunk.isspace():
            continue
        pieces = tok.encode(chunk).tolist()
        ids += pieces
        starts += [True] + [False] * (len(pieces) - 1)
    return Sentence(np.array(ids, np.int32), np.array(starts, bool), text)


def pair_corpus(text: str, where: str, tok: WordPieceTokenizer) -> PairCorpus:
    """The tokenized documents of `text` (sentences without a token are dropped)."""
    docs = []
    for sentences in split_documents(text):
        toks = tuple(s for s in (tokenize_sentence(tok, t) for t in sentences) if len(s.ids))
        if toks:
            docs.append(toks)
    all_ids = np.concatenate([s.ids for d in docs for s in d]) if docs else np.zeros(0, np.int32)
    return PairCorpus(where, tok, tuple(docs), np.unique(all_ids).astype(np.int32), int(all_ids.size))


@dataclass(frozen=True)
class Pair:
    """Two sentences and the pair task's label (1: B follows A / in order)."""

    a: Sentence
    b: Sentence
    label: int


def draw_pair(c: PairCorpus, task: str, rng: np.random.Generator) -> Pair:
    """One NSP or SOP pair, label 1 or 0 with probability 1/2 each."""
    multi = c.pairable
    d = int(multi[rng.integers(len(multi))])
    doc = c.documents[d]
    i = int(rng.integers(len(doc) - 1))
    label = int(rng.random() < 0.5)
    if task == "sop":
        return Pair(doc[i], doc[i + 1], 1) if label else Pair(doc[i + 1], doc[i], 0)
    if label:
        return Pair(doc[i], doc[i + 1], 1)
    other = int(rng.integers(len(c.documents) - 1))
    other += other >= d  # any document but this one
    odoc = c.documents[other]
    return Pair(doc[i], odoc[int(rng.integers(len(odoc)))], 0)


@dataclass
class PairBatch:
    """B packed pairs: the arrays the encoder reads, and what the masking needs."""

    ids: np.ndarray  # (B, T) int32, [CLS] A [SEP] B [SEP] then [PAD]
    segments: np.ndarray  # (B, T) int32: 0 for [CLS] A [SEP], 1 for B [SEP] (and padding)
    lengths: np.ndarray  # (B,) int32 real tokens per row
    starts: np.ndarray  # (B, T) bool: a word begins here (False on special tokens and padding)
    labels: np.ndarray  # (B,) int32 the pair task's labels
    pairs: list[Pair]


def truncate(a: int, b: int, room: int) -> tuple[int, int]:
    """Lengths of A and B after cutting the longer one first until a + b <= room."""
    while a + b > room:
        if a >= b:
            a -= 1
        else:
            b -= 1
    return a, b


def pack(pairs: list[Pair], T: int) -> PairBatch:
    """The pairs as a batch of (B, T) arrays (T >= 5: [CLS], a token of each sentence and two [SEP])."""
    B = len(pairs)
    ids = np.full((B, T), PAD, np.int32)
    segments = np.ones((B, T), np.int32)
    starts = np.zeros((B, T), bool)
    lengths = np.zeros(B, np.int32)
    for r, p in enumerate(pairs):
        na, nb = truncate(len(p.a.ids), len(p.b.ids), T - 3)
        n = na + nb + 3
        ids[r, 0], ids[r, na + 1], ids[r, n - 1] = CLS, SEP, SEP
        ids[r, 1:na + 1] = p.a.ids[:na]
        ids[r, na + 2:n - 1] = p.b.ids[:nb]
        segments[r, :na + 2] = 0
        starts[r, 1:1 + na] = p.a.starts[:na]
        starts[r, na + 2:na + 2 + nb] = p.b.starts[:nb]
        lengths[r] = n
    return PairBatch(ids, segments, lengths, starts, np.array([p.label for p in pairs], np.int32), pairs)


def draw_batch(c: PairCorpus, task: str, B: int, T: int, rng: np.random.Generator) -> PairBatch:
    """B fresh pairs of `task`, packed into rows of T tokens."""
    return pack([draw_pair(c, task, rng) for _ in range(B)], T)
