"""word2vec: skip-gram and CBOW with negative sampling (Mikolov et al. 2013), trained by `word2vec_kernels.py`.

Words are tfidf's tokens (lowercased runs of letters and digits, `tfidf.words`), one stream: windows do
not stop at sentence ends. The vocabulary is every word seen at least `min_count` times, most frequent
first (ties alphabetical); rarer words are dropped from the stream before training.

* Noise distribution: P_n(w) = count(w)^0.75 / sum_v count(v)^0.75 (`noise_distribution`); each pair
  (skip-gram) or position (CBOW) draws `negative` words from it.
* Subsampling of frequent words, word2vec.c's variant (also gensim's): with f(w) = count(w) / total
  words and threshold t, a word is *kept* with probability min(1, sqrt(t / f) + t / f)
  (`keep_probability`). The paper's formula discards with 1 - sqrt(t / f); the code's keeps a little
  more. t = 0 turns it off. Dropped words leave the stream before windows are drawn, so windows reach
  further past them.
* Windows: each position draws its radius uniformly from 1..window (nearer words count more often).
* Learning rate: linear from lr to lr * 1e-4 over all the words of all the epochs, by the raw word
  position (subsampled words count too), as word2vec.c.
* Start: w_in uniform in [-0.5, 0.5) / D, w_out zero.

One seed gives one `np.random.Generator` for the start, the subsampling, the windows and the negatives,
drawn chunk by chunk in a fixed order; the kernels draw nothing, so the same seed gives the same vectors.
Training is cut into `chunks` equal spans of the epochs' words (the lesson's steps); windows stop at a
chunk's edges.

Evaluation: cosine nearest neighbours, analogies b - a + c (3CosAdd over unit vectors, a, b, c left out,
as `tests/test_world_corpus.py` measures the count-based embedding) and a 2-D PCA of a set of words.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from simulator.text.word2vec_kernels import cbow_pass, skipgram_pass

MODELS = ("skipgram", "cbow")
NOISE_POWER = 0.75
LR_FLOOR = 1e-4  # the learning rate never falls below lr * LR_FLOOR (word2vec.c's floor)


# ------------------------------------------------------------------------------ vocabulary and sampling
@dataclass(frozen=True)
class Vocab:
    """Words most frequent first (ties alphabetical), their counts, and word -> id."""

    words: tuple[str, ...]
    counts: np.ndarray  # (V,) int64

    @property
    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)


def build_vocab(tokens: list[str], min_count: int = 1) -> Vocab:
    """The vocabulary of the words seen at least `min_count` times."""
    kept = sorted(((w, c) for w, c in Counter(tokens).items() if c >= min_count), key=lambda wc: (-wc[1], wc[0]))
    return Vocab(tuple(w for w, _ in kept), np.array([c for _, c in kept], dtype=np.int64))


def encode(tokens: list[str], vocab: Vocab) -> np.ndarray:
    """(N,) int64 ids of the tokens in the vocabulary (the others dropped)."""
    index = vocab.index
    return np.array([index[w] for w in tokens if w in index], dtype=np.int64)


def noise_distribution(counts: np.ndarray, power: float = NOISE_POWER) -> np.ndarray:
    """(V,) float64 P_n(w) = count^power / sum count^power."""
    p = np.asarray(counts, dtype=np.float64) ** power
    return p / p.sum()


def keep_probability(counts: np.ndarray, sample: float) -> np.ndarray:
    """(V,) float64 chance that one occurrence stays: min(1, sqrt(t / f) + t / f), f = count / total (t = 0: 1)."""
    counts = np.asarray(counts, dtype=np.float64)
    if sample <= 0:
        return np.ones_like(counts)
    ratio = sample / (counts / counts.sum())  # t / f
    return np.minimum(1.0, np.sqrt(ratio) + ratio)


def draw_negatives(rng: np.random.Generator, cdf: np.ndarray, shape) -> np.ndarray:
    """int64 word ids of `shape` drawn from the distribution whose cumulative sums are `cdf`."""
    return np.minimum(np.searchsorted(cdf, rng.random(shape), side="right"), len(cdf) - 1).astype(np.int64)


def pair_count(radius: np.ndarray) -> int:
    """How many (center, context) pairs the windows `radius` (N,) make in a stream of N positions."""
    i = np.arange(len(radius))
    return int((np.minimum(radius, i) + np.minimum(radius, len(radius) - 1 - i)).sum())


# ---------------------------------------------------------------------------------------------- training
@dataclass(frozen=True)
class Word2VecParams:
    """How word2vec trains (the lesson's config carries the same fields)."""

    model: str = "skipgram"
    dim: int = 50
    window: int = 5
    negative: int = 5
    sample: float = 1e-3
    epochs: int = 5
    lr: float = 0.025
    seed: int = 0


@dataclass(frozen=True)
class ChunkStats:
    """What one chunk of training did."""

    words_done: int  # raw words (subsampled ones included) of all chunks so far
    kept: int  # positions of this chunk after subsampling
    terms: int  # pairs (skip-gram) or predicted positions (CBOW) of this chunk
    loss: float  # mean loss per term, before each term's own step
    lr: float  # the learning rate at the chunk's last word


class Word2Vec:
    """Trains word vectors on an id stream, one chunk at a time (`train_chunk`), or all at once (`train`)."""

    def __init__(self, ids: np.ndarray, vocab: Vocab, params: Word2VecParams, chunks: int = 1):
        if params.model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, got {params.model!r}")
        self.ids, self.vocab, self.params = np.asarray(ids, dtype=np.int64), vocab, params
        V, D = len(vocab), params.dim
        self.rng = np.random.default_rng(params.seed)
        self.w_in = ((self.rng.random((V, D)) - 0.5) / D).astype(np.float32)  # (V, D)
        self.w_out = np.zeros((V, D), dtype=np.float32)  # (V, D)
        self.keep = keep_probability(vocab.counts, params.sample)
        self.cdf = np.cumsum(noise_distribution(vocab.counts))
        self.total = params.epochs * len(self.ids)
        self.bounds = np.linspace(0, self.total, chunks + 1).round().astype(np.int64)
        self.chunk = 0
        self._h = np.zeros(D, dtype=np.float32)
        self._dh = np.zeros(D, dtype=np.float32)

    @property
    def chunks(self) -> int:
        return len(self.bounds) - 1

    def done(self) -> bool:
        return self.chunk >= self.chunks

    def lr_at(self, words_done: np.ndarray | int) -> np.ndarray:
        """The learning rate at a raw word position of the whole run: linear from lr to lr * LR_FLOOR."""
        frac = 1.0 - np.asarray(words_done, dtype=np.float64) / max(self.total, 1)
        return self.params.lr * np.maximum(frac, LR_FLOOR)

    def train_chunk(self) -> ChunkStats:
        """Trains the next chunk (the parts of epochs it spans, each its own stream)."""
        a, b = self.bounds[self.chunk], self.bounds[self.chunk + 1]
        n = len(self.ids)
        loss, terms, kept = 0.0, 0, 0
        while a < b:
            epoch, start = divmod(int(a), n)
            stop = min(n, start + int(b - a))
            l_, t_, k_ = self._train_span(start, stop, epoch * n)
            loss, terms, kept = loss + l_, terms + t_, kept + k_
            a += stop - start
        self.chunk += 1
        return ChunkStats(int(b), kept, terms, loss / max(terms, 1), float(self.lr_at(int(b))))

    def _train_span(self, start: int, stop: int, offset: int) -> tuple[float, int, int]:
        """One SGD pass over ids[start:stop] of the epoch starting at raw position `offset`."""
        p = self.params
        span = self.ids[start:stop]
        where = np.flatnonzero(self.rng.random(len(span)) < self.keep[span])  # subsampling
        ids = span[where]
        radius = self.rng.integers(1, p.window + 1, size=len(ids)).astype(np.int64)
        scale = (-self.lr_at(offset + start + where)).astype(np.float32)
        if p.model == "skipgram":
            terms = pair_count(radius)
            negatives = draw_negatives(self.rng, self.cdf, (terms, p.negative))
            loss = skipgram_pass(self.w_in, self.w_out, self._dh, self.w_in, self.w_out, ids, radius, negatives,
                                 scale)
        else:
            negatives = draw_negatives(self.rng, self.cdf, (len(ids), p.negative))
            terms = len(ids) if len(ids) > 1 else 0  # a position predicts its word when it has a neighbour
            loss = cbow_pass(self.w_in, self.w_out, self._h, self._dh, self.w_in, self.w_out, ids, radius,
                             negatives, scale)
        return float(loss), terms, len(ids)

    def train(self) -> list[ChunkStats]:
        """Every remaining chunk."""
        return [self.train_chunk() for _ in range(self.chunks - self.chunk)]


# -------------------------------------------------------------------------------------------- evaluation
def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """float64 rows divided by their norms (a zero row stays zero)."""
    v = np.asarray(vectors, dtype=np.float64)
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(n > 0, n, 1.0)


def nearest(vectors: np.ndarray, vocab: Vocab, word: str, k: int = 5) -> list[tuple[str, float]]:
    """The k words of highest cosine with `word` (itself left out), best first."""
    e = unit_rows(vectors)
    i = vocab.index[word]
    s = e @ e[i]
    s[i] = -np.inf
    order = np.argsort(-s, kind="stable")[:k]
    return [(vocab.words[j], float(s[j])) for j in order]


def relation_pairs(pairs, vocab: Vocab) -> list[tuple[str, str]]:
    """The pairs whose both words are in the vocabulary."""
    index = vocab.index
    return [(a, b) for a, b in pairs if a in index and b in index]


def analogy_hits(vectors: np.ndarray, vocab: Vocab, pairs) -> tuple[int, int]:
    """(solved, asked) over a:b :: c:d for ordered pairs of different pairs: is d the nearest word to b - a + c?"""
    return analogy_accuracy(vectors, vocab, {"": pairs})[0][1:]


def analogy_accuracy(vectors: np.ndarray, vocab: Vocab, relations) -> list[tuple[str, int, int]]:
    """(relation, solved, asked) of `analogy_hits` for each relation of a {name: pairs} mapping, in one product."""
    index = vocab.index
    quads, owner = [], []
    for r, pairs in enumerate(relations.values()):
        pairs = relation_pairs(pairs, vocab)
        quads += [(index[a], index[b], index[c], index[d]) for a, b in pairs for c, d in pairs if a != c]
        owner += [r] * (len(quads) - len(owner))
    hits = np.zeros(len(relations), dtype=np.int64)
    if quads:
        q = np.array(quads)  # (M, 4)
        e = unit_rows(vectors)
        s = (e[q[:, 1]] - e[q[:, 0]] + e[q[:, 2]]) @ e.T  # (M, V)
        rows = np.arange(len(q))
        for col in range(3):
            s[rows, q[:, col]] = -np.inf
        np.add.at(hits, np.array(owner), np.argmax(s, axis=1) == q[:, 3])
    asked = np.bincount(np.array(owner, dtype=np.int64), minlength=len(relations))
    return [(name, int(h), int(a)) for name, h, a in zip(relations, hits, asked, strict=True)]


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((n, 2) coordinates on the first two principal axes, (2,) share of the variance each explains).

    The axes are the top eigenvectors of the (D, D) scatter matrix (eigh: LAPACK's SVD of the (n, D) rows
    takes 10-25 ms with threaded OpenBLAS on a busy 2-core machine, eigh 1 ms). Each axis's sign is fixed
    so that its largest coordinate (in absolute value) is positive.
    """
    x = np.asarray(vectors, dtype=np.float64)
    x = x - x.mean(axis=0)
    vals, vecs = np.linalg.eigh(x.T @ x)  # ascending
    k = min(2, len(vals))
    coords = np.zeros((len(x), 2))
    coords[:, :k] = x @ vecs[:, ::-1][:, :k]
    for j in range(k):
        if coords[np.argmax(np.abs(coords[:, j])), j] < 0:
            coords[:, j] = -coords[:, j]
    total = float(np.maximum(vals, 0).sum())
    share = np.zeros(2)
    share[:k] = np.maximum(vals[::-1][:k], 0) / total if total > 0 else 0.0
    return coords, share
