"""TF-IDF against hand-worked numbers, scikit-learn's published example, and a plain-loop reference."""

import math

import numpy as np
import pytest

from simulator.data import builtin_corpus
from simulator.text.tfidf import (
    cosine_similarity,
    fit_tfidf,
    inverse_document_frequency,
    split_documents,
    words,
)


def test_a_hand_worked_two_document_corpus():
    # d0 = cat cat dog, d1 = dog bird; vocab (sorted) bird, cat, dog; n = 2, df = 1, 1, 2
    t = fit_tfidf(["Cat, cat dog!", "dog bird"])
    assert t.vocab == ["bird", "cat", "dog"]
    assert t.counts.tolist() == [[0, 2, 1], [1, 0, 1]] and t.df.tolist() == [1, 1, 2]
    a = math.log(3 / 2) + 1  # smooth idf of a word in one of two documents; dog: ln(3/3) + 1 = 1
    assert t.idf == pytest.approx([a, a, 1.0])
    n0, n1 = math.sqrt(4 * a * a + 1), math.sqrt(a * a + 1)
    assert t.matrix[0] == pytest.approx([0, 2 * a / n0, 1 / n0])
    assert t.matrix[1] == pytest.approx([a / n1, 0, 1 / n1])
    assert t.document_similarity() == pytest.approx(np.array([[1, 1 / (n0 * n1)], [1 / (n0 * n1), 1]]))
    assert [w for w, _ in t.keywords(0)] == ["cat", "dog"] and [w for w, _ in t.keywords(1)] == ["bird", "dog"]
    # raw idf: ln(2/1) for bird and cat, ln(2/2) = 0 for dog, which then drops out of both documents
    r = fit_tfidf(["Cat, cat dog!", "dog bird"], idf_variant="raw")
    assert r.idf == pytest.approx([math.log(2), math.log(2), 0.0])
    assert r.matrix == pytest.approx(np.array([[0, 1, 0], [1, 0, 0]]))
    assert r.document_similarity()[0, 1] == 0.0
    assert r.keywords(0) == [("cat", 1.0)]
    # relative tf divides counts by document length before idf; the L2 row norm then undoes a per-row factor
    rel = fit_tfidf(["Cat, cat dog!", "dog bird"], tf_variant="relative")
    assert rel.matrix == pytest.approx(t.matrix)
    unnormed = fit_tfidf(["Cat, cat dog!", "dog bird"], tf_variant="relative", norm=False)
    assert unnormed.matrix[0] == pytest.approx([0, 2 / 3 * a, 1 / 3])


def test_matches_scikit_learns_published_tfidfvectorizer_example():
    # the example in scikit-learn's TfidfVectorizer documentation (defaults: smooth idf, L2 rows, raw tf)
    corpus = ["This is the first document.", "This document is the second document.",
              "And this is the third one.", "Is this the first document?"]
    t = fit_tfidf(corpus)
    assert t.vocab == ["and", "document", "first", "is", "one", "second", "the", "third", "this"]
    assert t.matrix[0] == pytest.approx([0, 0.46979139, 0.58028582, 0.38408524, 0, 0, 0.38408524, 0,
                                         0.38408524], abs=1e-8)


def reference(docs: list[list[str]]) -> dict[tuple[int, str], float]:
    """TF-IDF by plain loops, from the formula: raw tf, idf = ln((1+n)/(1+df)) + 1, L2 rows."""
    n = len(docs)
    df = {}
    for doc in docs:
        for w in set(doc):
            df[w] = df.get(w, 0) + 1
    out = {}
    for d, doc in enumerate(docs):
        row = {w: doc.count(w) * (math.log((1 + n) / (1 + df[w])) + 1) for w in set(doc)}
        norm = math.sqrt(sum(v * v for v in row.values()))
        out.update({(d, w): v / norm for w, v in row.items()})
    return out


def test_matches_a_plain_loop_reference_on_random_documents():
    rng = np.random.default_rng(5)
    lexicon = [f"w{i}" for i in range(23)]
    docs = [" ".join(lexicon[j] for j in rng.integers(0, 23, int(rng.integers(1, 30)))) for _ in range(17)]
    t = fit_tfidf(docs)
    ref = reference([words(d) for d in docs])
    dense = np.zeros_like(t.matrix)
    for (d, w), v in ref.items():
        dense[d, t.vocab.index(w)] = v
    assert t.matrix == pytest.approx(dense, abs=1e-12)
    assert np.linalg.norm(t.matrix, axis=1) == pytest.approx(np.ones(17))
    sim = t.document_similarity()
    assert sim == pytest.approx(sim.T) and np.diag(sim) == pytest.approx(np.ones(17))
    i, j = 3, 11
    assert sim[i, j] == pytest.approx(float(dense[i] @ dense[j]))


def test_related_words_get_unrelated_vectors():
    # "cat" and "cats" mean nearly the same, but they never share a document: their columns are orthogonal
    t = fit_tfidf(["the cat sleeps on the mat", "the cats sleep on the mats", "a dog barks at the moon"])
    assert t.term_similarity("cat", "cats") == 0.0
    assert t.term_similarity("the", "on") > 0.5  # function words that share documents look alike
    with pytest.raises(KeyError, match="'kitten' is not a word"):
        t.column("kitten")


def test_idf_variants_and_bad_input():
    assert inverse_document_frequency(np.array([1, 4]), 4, "smooth") == pytest.approx(
        [math.log(5 / 2) + 1, 1.0])
    with pytest.raises(ValueError, match="one of smooth, raw"):
        inverse_document_frequency(np.array([1]), 1, "bm25")
    with pytest.raises(ValueError, match="at least one document"):
        fit_tfidf([])
    assert cosine_similarity(np.zeros((1, 3)), np.ones((1, 3)))[0, 0] == 0.0  # an empty document


def test_the_built_in_corpus_splits_into_documents_with_their_own_keywords():
    docs = split_documents(builtin_corpus())
    assert len(docs) > 1000 and all(words(d) for d in docs)
    t = fit_tfidf(docs)
    assert t.n_docs == len(docs)
    the = t.vocab.index("the")
    assert t.df[the] > len(docs) // 2 and t.idf[the] < np.median(t.idf)  # a word of most documents weighs little
    counting = next(i for i, d in enumerate(docs) if d.startswith("count:"))
    assert all(w.isdigit() for w, _ in t.keywords(counting, 3))  # "count" is in every counting paragraph
    kw = {w for i in range(40) for w, _ in t.keywords(i, 3)}
    assert len(kw) > 20  # documents differ in what stands out


def test_the_lessons_claim_related_words_get_low_cosines_while_topics_show(tmp_path):
    from simulator.lessons import check
    from simulator.lessons.tfidf import TfidfConfig, fit_corpus, pairs_text
    t, docs, _ = fit_corpus("world", None, "smooth")
    for a, b in (("king", "queen"), ("goat", "goats")):  # what presets/tfidf.yaml says
        assert t.term_similarity(a, b) < 0.5
    text = pairs_text(t, [("king", "queen"), ("kitten", "cat")])
    assert f"cosine {t.term_similarity('king', 'queen'):.3f}" in text and "'kitten' does not occur" in text
    assert check(TfidfConfig()) == TfidfConfig()


def test_the_lessons_mistakes_are_one_line(tmp_path):
    from simulator.presets import PresetError, parse_any_text
    (tmp_path / "one.txt").write_text("just one paragraph\nof two lines\n", encoding="utf-8")
    cases = [("corpus: text_file\npath: one.txt\n", "one.txt' has 1 document; TF-IDF needs at least two"),
             ("documents: [0, 5000]\n", "documents: 5000 is not a document of the invented-world corpus"),
             ("pairs: ['king queen', 'goat']\n", "pairs: 'goat' is not two words"),
             ("idf: bm25\n", "idf: 'bm25' is not one of smooth, raw"),
             ("corpus: text_file\n", "path: corpus text_file needs a path")]
    for body, says in cases:
        with pytest.raises(PresetError) as err:
            parse_any_text("kind: tfidf\n" + body, "t.yaml", tmp_path)
        assert says in str(err.value) and str(err.value).startswith("t.yaml:") and "\n" not in str(err.value)
