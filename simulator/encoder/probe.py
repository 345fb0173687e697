"""The bag-of-words baseline of the pair tasks: logistic regression on features that carry no order.

Each sentence is a bag of words (presence of each word of the text, times its idf), projected onto
the text's `K` leading LSA directions (the SVD of the documents' word table: what words go together,
which on the world corpus is mostly the topic). A pair (A, B) becomes the products a_i b_j + a_j b_i of
its two sentences' coordinates (i <= j) and a bias: a bilinear "do these two bags go together" score.
Every feature is the same for (A, B) and (B, A), so the probe cannot tell the order of two sentences:
on SOP it is at chance by construction. On NSP it only has to see that both sentences are about one
topic, which is why NSP can be solved without any order or syntax.

Fitted by Newton's method (iteratively reweighted least squares) with an L2 penalty: no random
numbers, a unique optimum, a few iterations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from simulator.encoder.pairs import Pair, Sentence

_WORD = re.compile(r"[^\W_]+")
K, L2, NEWTON_STEPS = 8, 1.0, 15


def _words(s: Sentence) -> list[str]:
    return _WORD.findall(s.text.lower())


@dataclass(frozen=True)
class Bags:
    """The words of the text and the LSA projection of a sentence's bag of words."""

    vocab: dict[str, int]
    idf: np.ndarray  # (V,)
    directions: np.ndarray  # (V, K): the leading right-singular vectors of the documents' word table
    seen: dict = field(default_factory=dict)  # sentence text -> its embedding (sentences recur in pairs)

    def embed(self, s: Sentence) -> np.ndarray:
        """(K,) the sentence's bag (presence x idf, unit length) in the LSA directions."""
        found = self.seen.get(s.text)
        if found is not None:
            return found
        bag = np.zeros(len(self.vocab))
        for w in _words(s):
            if w in self.vocab:
                bag[self.vocab[w]] = 1.0
        bag *= self.idf
        n = np.linalg.norm(bag)
        self.seen[s.text] = found = (bag / n if n else bag) @ self.directions
        return found


def fit_bags(documents, k: int = K) -> Bags:
    """The LSA directions of `documents` (tuples of Sentences): SVD of the idf-weighted presence table."""
    words = sorted({w for d in documents for s in d for w in _words(s)})
    vocab = {w: i for i, w in enumerate(words)}
    table = np.zeros((len(documents), len(words)))
    for r, d in enumerate(documents):
        for s in d:
            for w in _words(s):
                table[r, vocab[w]] = 1.0
    idf = np.log((1 + len(documents)) / (1 + table.sum(axis=0))) + 1
    table *= idf
    table /= np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
    _, _, vt = np.linalg.svd(table, full_matrices=False)
    return Bags(vocab, idf, vt[:k].T.copy())


def features(pairs: list[Pair], bags: Bags) -> np.ndarray:
    """(n, K (K + 1) / 2 + 1): a_i b_j + a_j b_i for i <= j, then 1; symmetric in A and B."""
    k = bags.directions.shape[1]
    iu = np.triu_indices(k)
    X = np.ones((len(pairs), len(iu[0]) + 1))
    for r, p in enumerate(pairs):
        a, b = bags.embed(p.a), bags.embed(p.b)
        outer = np.outer(a, b)
        X[r, :-1] = (outer + outer.T)[iu]
    return X


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = L2, steps: int = NEWTON_STEPS) -> np.ndarray:
    """Weights w minimising the summed log-loss + l2 / 2 |w|^2, by Newton steps."""
    w = np.zeros(X.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(X @ w)))
        grad = X.T @ (p - y) + l2 * w
        hess = (X * (p * (1 - p))[:, None]).T @ X + l2 * np.eye(X.shape[1])
        w -= np.linalg.solve(hess, grad)
    return w


def accuracy(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    """Share of pairs whose predicted label (score > 0) is right."""
    return float(np.mean((X @ w > 0) == (y > 0.5)))


@dataclass(frozen=True)
class ProbeResult:
    """The bag-of-words probe on one pair task: accuracy on the pairs it was fitted on and on held-out ones."""

    task: str
    train_accuracy: float
    test_accuracy: float
    n_train: int
    n_test: int


def bag_of_words_probe(task: str, bags: Bags, train: list[Pair], test: list[Pair]) -> ProbeResult:
    """Fits the probe on `train` pairs and measures it on `test` pairs."""
    Xtr, Xte = features(train, bags), features(test, bags)
    ytr = np.array([p.label for p in train], float)
    yte = np.array([p.label for p in test], float)
    w = fit_logistic(Xtr, ytr)
    return ProbeResult(task, accuracy(w, Xtr, ytr), accuracy(w, Xte, yte), len(train), len(test))
