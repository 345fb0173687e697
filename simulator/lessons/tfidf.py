"""TF-IDF as a lesson (`kind: tfidf`): the formulas, each document's keywords, cosine between documents, and
the point before word vectors: words of related meaning get unrelated TF-IDF vectors.

The numbers are `simulator/text/tfidf.py`'s. One frame: the fitted TF-IDF; the summary is its text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

import numpy as np

from simulator.i18n import N_, _
from simulator.lessons import Lesson, register
from simulator.lessons.tokenizers import CORPORA, lesson_text, resolve_path
from simulator.lessons.worked_examples import ExplainError
from simulator.rules import non_empty, one_of, positive_int
from simulator.text.tfidf import IDF_VARIANTS, Tfidf, fit_tfidf, split_documents, words
from simulator.yamlconfig import ParseContext

MAX_TABLE = 20_000_000  # documents x words: the dense (D, V) tables stay a few hundred MB at most
FORMULAS = {
    "smooth": N_("idf(t) = ln((1 + n) / (1 + df(t))) + 1   (smoothed: scikit-learn's default)"),
    "raw": N_("idf(t) = ln(n / df(t))   (raw: 0 for a word in every document)"),
}


def fit_corpus(corpus: str, path: str | None, idf: str) -> tuple[Tfidf, list[str], str]:
    """(TF-IDF, documents, where) of a lesson corpus split into paragraphs."""
    text, where = lesson_text(corpus, path)
    docs = split_documents(text)
    n_words = len({w for d in docs for w in words(d)})
    if len(docs) * n_words > MAX_TABLE:
        raise ExplainError(_("{where} has {n:,} documents and {n_words:,} distinct words, too many for the lesson's "
                             "dense table ({MAX_TABLE:,} cells); use a shorter text").format(
                               where=where, n=len(docs), n_words=n_words, MAX_TABLE=MAX_TABLE))
    if len(docs) < 2:
        raise ExplainError(_("{where} has {n} document; TF-IDF needs at least two paragraphs (separate documents by "
                             "a blank line)").format(where=where, n=len(docs)))
    return fit_tfidf(docs, idf_variant=idf), docs, where


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """Word pairs typed as 'king queen; goat goats' (ExplainError for a part that is not two words)."""
    pairs = []
    for part in re.split(r"[;\n,]", text):
        ws = part.split()
        if not ws:
            continue
        if len(ws) != 2:
            raise ExplainError(_("pairs: {strip!r} is not two words (type pairs like 'king queen; goat goats')").format(
                                   strip=part.strip()))
        pairs.append((ws[0].lower(), ws[1].lower()))
    if not pairs:
        raise ExplainError(_("pairs: type pairs of words, e.g. 'king queen; goat goats'"))
    return pairs


def keywords_text(t: Tfidf, docs: list[str], where: str, shown: list[int], k: int) -> str:
    """The formulas, the keywords of the shown documents, and the cosine between them."""
    bad = [i for i in shown if not 0 <= i < len(docs)]
    if bad:
        raise ExplainError(_("documents: {value} is not a document of {where} (0 to {value2})").format(
                               value=bad[0], where=where, value2=len(docs) - 1))
    lines = [_("TF-IDF of {where}: n = {n:,} documents (paragraphs), {words:,} words").format(
                 where=where, n=len(docs), words=len(t.vocab)),
             _("tf(t, d) = how often word t occurs in document d"),
             _(FORMULAS[t.idf_variant]),

             _("tfidf(t, d) = tf(t, d) * idf(t), then each document's row divided by its length (L2 norm)"), ""]
    for i in shown:
        head = docs[i].replace("\n", " ")
        lines.append(_("document {i}: {head}").format(i=i, head=f"{head[:70]}{'...' if len(head) > 70 else ''}"))
        lines.append("   " + "  ".join(f"{w} {v:.3f} (df {int(t.df[t.vocab.index(w)])})"
                                       for w, v in t.keywords(i, k)))
    sim = t.document_similarity()[np.ix_(shown, shown)]
    lines += ["", _("cosine between the documents' rows:"), "      " + "".join(f"{i:>7}" for i in shown)]
    lines += [f"{i:>6}" + "".join(f"{v:>7.3f}" for v in row) for i, row in zip(shown, sim, strict=True)]
    return "\n".join(lines)


def pairs_text(t: Tfidf, pairs: list[tuple[str, str]]) -> str:
    """Cosine between the TF-IDF columns (one weight per document) of each pair of words."""
    lines = [_("a word's TF-IDF vector is its column: its weight in each document. Cosine between two words:")]
    for a, b in pairs:
        missing = [w for w in (a, b) if w not in t.vocab]
        if missing:
            lines.append(f"  {a:>10} ~ {b:<10} " + _("'{word}' does not occur in these documents").format(
                word=missing[0]))
            continue
        shared = int(((t.counts[:, t.vocab.index(a)] > 0) & (t.counts[:, t.vocab.index(b)] > 0)).sum())
        lines.append(f"  {a:>10} ~ {b:<10} " + _("cosine {cosine:.3f}   (in {df_a} and {df_b} documents, {shared} of "
                                                  "them shared)").format(
            cosine=t.term_similarity(a, b), df_a=int(t.df[t.vocab.index(a)]), df_b=int(t.df[t.vocab.index(b)]),
            shared=shared))
    lines.append(_("Related meaning does not show: only sharing documents does. Word vectors (word2vec) learn "
                   "from the words around a word instead."))

    return "\n".join(lines)


# -------------------------------------------------------------------------------------------- lesson
@dataclass(frozen=True)
class TfidfConfig:
    """Which corpus, which idf, which documents and word pairs to show."""

    name: str = "tfidf"
    description: str = "TF-IDF keywords per document, cosine between documents, and words of related meaning."
    corpus: str = "world"
    path: Optional[str] = None
    idf: str = "smooth"
    documents: tuple[int, ...] = (0, 1, 2, 3, 4)
    keywords: int = 5
    pairs: tuple[str, ...] = ("king queen", "goat goats", "varnia tolm", "ship sailor")


def validate(cfg: TfidfConfig, ctx: ParseContext) -> TfidfConfig:
    """A readable corpus of at least two documents, documents that exist, pairs of two words."""
    cfg = resolve_path(cfg, ctx)
    if not cfg.documents:
        ctx.fail("documents", _("needs at least one document number"))
    try:
        _fit, docs, where = fit_corpus(cfg.corpus, cfg.path, cfg.idf)
    except ExplainError as e:
        ctx.fail("path" if cfg.corpus == "text_file" else "corpus", str(e))
    bad = [i for i in cfg.documents if not 0 <= i < len(docs)]
    if bad:
        ctx.fail("documents", _("{value} is not a document of {where}").format(value=bad[0], where=where),
                 _("use 0 to {last}").format(last=len(docs) - 1))
    try:
        parse_pairs("; ".join(cfg.pairs))
    except ExplainError as e:
        ctx.fail("pairs", str(e).removeprefix("pairs: "))
    return cfg


def run(cfg: TfidfConfig, steps: int | None = None, cancelled=lambda: False) -> list[Tfidf]:
    """One frame: the fitted TF-IDF (there are no steps)."""
    if cancelled():
        return []
    return [fit_corpus(cfg.corpus, cfg.path, cfg.idf)[0]]


def summary(cfg: TfidfConfig, frames: list[Tfidf]) -> str:
    """The keywords and similarities, then the word pairs."""
    _, docs, where = fit_corpus(cfg.corpus, cfg.path, cfg.idf)
    t = frames[0]
    return (keywords_text(t, docs, where, list(cfg.documents), cfg.keywords) + "\n\n"
            + pairs_text(t, parse_pairs("; ".join(cfg.pairs))))


_RULES = {"name": non_empty, "corpus": one_of(CORPORA), "path": non_empty, "idf": one_of(IDF_VARIANTS),
          "keywords": positive_int}
LESSON = register(Lesson("tfidf", "TF-IDF", TfidfConfig, _RULES, validate, run, summary, preset="tfidf"))
