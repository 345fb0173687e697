"""TF-IDF: term frequency, inverse document frequency, per-document keywords, cosine between documents.

Words are runs of letters and digits, lowercased (`words`); a document is a paragraph (text between
blank lines, `split_documents`). The vocabulary is sorted, so column j is the j-th term in
alphabetical order. With n documents and df(t) of them containing term t:

    tf(t, d)       = count of t in d                      (raw; "relative" divides by the words of d)
    idf_raw(t)     = ln(n / df(t))                        (the textbook form: 0 for a word in every document)
    idf_smooth(t)  = ln((1 + n) / (1 + df(t))) + 1        (scikit-learn's default, smooth_idf=True: as if one
                                                           more document held every word once; the +1 keeps
                                                           words of every document in the vector)
    tfidf(t, d)    = tf(t, d) * idf(t), each row then divided by its L2 norm (an empty row stays 0)

With raw tf, smooth idf and L2 rows this is what `TfidfVectorizer()` gives on the same tokens. A
word's TF-IDF *vector* is its column: which documents it is weighty in. Two words of related meaning
("cat", "cats") used in different documents get near-orthogonal columns: TF-IDF knows spelling and
co-occurrence within a document, never meaning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_WORD = re.compile(r"[^\W_]+")
IDF_VARIANTS = ("smooth", "raw")
TF_VARIANTS = ("raw", "relative")


def words(text: str) -> list[str]:
    """The word tokens of `text`: runs of letters and digits, lowercased (punctuation and spaces dropped)."""
    return _WORD.findall(text.lower())


def split_documents(text: str) -> list[str]:
    """Paragraphs of `text` (separated by blank lines, outer whitespace stripped) that hold at least one word."""
    return [p.strip() for p in re.split(r"\n\s*\n", text) if words(p)]


def count_matrix(docs: list[list[str]]) -> tuple[list[str], np.ndarray]:
    """(sorted vocabulary, counts (D, V) int64): counts[d, j] = how often vocab[j] occurs in document d."""
    vocab = sorted({w for doc in docs for w in doc})
    index = {w: j for j, w in enumerate(vocab)}
    counts = np.zeros((len(docs), len(vocab)), dtype=np.int64)  # (D, V)
    for d, doc in enumerate(docs):
        np.add.at(counts[d], [index[w] for w in doc], 1)
    return vocab, counts


def term_frequency(counts: np.ndarray, variant: str = "raw") -> np.ndarray:
    """(D, V) float64 term frequencies: raw counts, or counts / words in the document ("relative")."""
    if variant == "raw":
        return counts.astype(np.float64)
    if variant == "relative":
        total = counts.sum(axis=1, keepdims=True)  # (D, 1)
        return counts / np.maximum(total, 1)
    raise ValueError(f"tf variant must be one of {', '.join(TF_VARIANTS)}, got {variant!r}")


def document_frequency(counts: np.ndarray) -> np.ndarray:
    """(V,) number of documents each term occurs in."""
    return (counts > 0).sum(axis=0)


def inverse_document_frequency(df: np.ndarray, n_docs: int, variant: str = "smooth") -> np.ndarray:
    """(V,) idf: smooth ln((1 + n) / (1 + df)) + 1, or raw ln(n / df)."""
    df = np.asarray(df, dtype=np.float64)
    if variant == "smooth":
        return np.log((1.0 + n_docs) / (1.0 + df)) + 1.0
    if variant == "raw":
        if (df <= 0).any():
            raise ValueError("raw idf needs every term in at least one document (df > 0)")
        return np.log(n_docs / df)
    raise ValueError(f"idf variant must be one of {', '.join(IDF_VARIANTS)}, got {variant!r}")


def l2_rows(m: np.ndarray) -> np.ndarray:
    """Each row divided by its Euclidean norm; an all-zero row stays zero."""
    norms = np.sqrt((m * m).sum(axis=1, keepdims=True))  # (D, 1)
    return m / np.where(norms > 0, norms, 1.0)


def cosine_similarity(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """(Da, Db) cosines between the rows of a and of b (b: a itself); zero rows give 0."""
    a = l2_rows(np.asarray(a, dtype=np.float64))
    b = a if b is None else l2_rows(np.asarray(b, dtype=np.float64))
    return a @ b.T


@dataclass(frozen=True)
class Tfidf:
    """A fitted TF-IDF: the vocabulary, counts, df, idf and the (D, V) weight matrix."""

    vocab: list[str]
    counts: np.ndarray  # (D, V) int64
    df: np.ndarray  # (V,) int64
    idf: np.ndarray  # (V,) float64
    matrix: np.ndarray  # (D, V) float64, rows L2-normalised unless norm=False
    idf_variant: str
    tf_variant: str

    @property
    def n_docs(self) -> int:
        return self.counts.shape[0]

    def column(self, term: str) -> np.ndarray:
        """(D,) the term's weight in each document: its TF-IDF vector as a word."""
        try:
            return self.matrix[:, self.vocab.index(term)]
        except ValueError:
            raise KeyError(f"'{term}' is not a word of these documents") from None

    def keywords(self, doc: int, k: int = 10) -> list[tuple[str, float]]:
        """The k highest-weighted terms of document `doc`, best first (ties: alphabetical); zero weights left out."""
        row = self.matrix[doc]
        order = sorted(np.flatnonzero(row > 0).tolist(), key=lambda j: (-row[j], self.vocab[j]))
        return [(self.vocab[j], float(row[j])) for j in order[:k]]

    def document_similarity(self) -> np.ndarray:
        """(D, D) cosine between the documents' TF-IDF rows."""
        return cosine_similarity(self.matrix)

    def term_similarity(self, a: str, b: str) -> float:
        """Cosine between two words' TF-IDF columns (over documents)."""
        return float(cosine_similarity(self.column(a)[None, :], self.column(b)[None, :])[0, 0])


def fit_tfidf(documents: list[str], idf_variant: str = "smooth", tf_variant: str = "raw",
              norm: bool = True) -> Tfidf:
    """TF-IDF of a list of document texts (word tokens via `words`)."""
    if not documents:
        raise ValueError("TF-IDF needs at least one document")
    vocab, counts = count_matrix([words(d) for d in documents])
    df = document_frequency(counts)
    idf = inverse_document_frequency(df, len(documents), idf_variant)
    m = term_frequency(counts, tf_variant) * idf[None, :]  # (D, V)
    return Tfidf(vocab, counts, df, idf, l2_rows(m) if norm else m, idf_variant, tf_variant)
