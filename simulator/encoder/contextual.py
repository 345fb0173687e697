"""Static against contextual vectors: one word in two sentences, its vector at each layer of the encoder.

word2vec gives a word one row of a table whatever its sentence (cosine 1 between any two uses). The
encoder's vector of the word is the residual stream at its positions (the mean over its WordPiece pieces),
read after the embedding, after each block and after the final norm: from the embedding on it mixes in
the sentence, so the cosine between the two uses falls with depth. Each sentence is read alone, as
`[CLS] sentence [SEP]` (segment 0), in a batch of the training shape (the arena is not rebuilt).
"""

from __future__ import annotations

import numpy as np

from simulator.data.subword import word_chunks
from simulator.encoder.model import Encoder
from simulator.encoder.pairs import CLS, PAD, SEP, tokenize_sentence
from simulator.i18n import _


def word_positions(tok, sentence: str, word: str) -> list[int] | None:
    """Positions (in `[CLS] sentence [SEP]`) of the pieces of the first `word` of the sentence, or None."""
    t = 1
    for chunk in word_chunks(sentence):
        if chunk.isspace():
            continue
        n = len(tok.encode(chunk))
        if chunk == word:
            return list(range(t, t + n))
        t += n
    return None


def sites(model: Encoder) -> list[tuple[str, str]]:
    """(what a person reads, activation name) of the layers the cosine is read at."""
    out = [("embedding", "x0")]
    out += [(f"block {i + 1}", f"h{i}.res2" if model.cfg.residual else f"h{i}.mlp") for i in range(model.cfg.n_layer)]
    return out + [("final norm", model.final)]


def site_label(name: str) -> str:
    """A site of `sites` as a person reads it in the current language (`sites` keeps the English name as its key)."""
    if name.startswith("block "):
        return _("block {n}").format(n=name.split()[1])
    return {"embedding": _("embedding"), "final norm": _("final norm")}.get(name, name)


def contextual_cosines(model: Encoder, tok, sentences: tuple[str, str], word: str, batch: int, T: int
                       ) -> tuple[tuple[str, float], ...]:
    """Per layer, the cosine between `word`'s vectors in the two sentences (each read alone)."""
    ids = np.full((batch, T), PAD, np.int32)
    lengths = np.zeros(batch, np.int32)
    where = []
    for r, s in enumerate(sentences):
        pieces = tokenize_sentence(tok, s).ids[:T - 2]
        n = len(pieces) + 2
        ids[r, 0], ids[r, 1:n - 1], ids[r, n - 1] = CLS, pieces, SEP
        lengths[r] = n
        where.append([p for p in word_positions(tok, s, word) if p < n - 1])
    ids[2:], lengths[2:] = ids[0], lengths[0]  # the rest of the batch: copies, read and ignored
    zeros = np.zeros((batch, T), np.int32)
    model.run_forward(ids, zeros, lengths, np.zeros((batch, T), bool), ids, np.zeros(batch, np.int32))
    out = []
    for name, site in sites(model):
        x = model.acts[site].reshape(batch, T, -1)
        a, b = (x[r, where[r]].astype(np.float64).mean(axis=0) for r in range(2))
        out.append((name, float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-300))))
    return tuple(out)
