"""The Tokenizers tab: the engine's merge table and splits in the boxes, choices recompute, a mistake is one dialog."""

from __future__ import annotations

from simulator.data.corpus import builtin_corpus
from simulator.data.world import world_corpus
from simulator.lessons.tokenizers import merges_text, splits_text


def test_the_tab_shows_the_engines_merges_and_splits_and_follows_the_choices(harness):
    h = harness()
    tab = h.app.layout.lesson_tabs["tokenizers"]
    h.app.layout.select_tab(tab)
    assert h.pump(lambda: h.app.layout.current_tab() is tab and tab.built)
    learned = [0, 50, 150, 350, 750]
    assert tab.text("merges") == merges_text("bpe", builtin_corpus(), "the built-in corpus", 64)
    assert tab.text("sentence") == splits_text("bpe", builtin_corpus(), "the built-in corpus",
                                               "the sleepy foxes watched the children.", learned)
    tab.kind_var.set("wordpiece")
    tab.corpus_var.set("world")
    tab.merges_var.set("10")
    tab.sentence_var.set("the princess rests in tolm.")
    tab.compute_all()
    assert tab.text("merges") == merges_text("wordpiece", world_corpus(), "the invented-world corpus", 10)
    assert "##" in tab.text("sentence") and len(tab.text("merges").splitlines()) == 12
    assert h.errors == []
    tab.merges_var.set("ten")
    assert not tab.compute_merges()
    assert len(h.errors) == 1 and "'ten' is not a number" in h.errors[0]
    assert tab.text("merges") == merges_text("wordpiece", world_corpus(), "the invented-world corpus", 10)


def test_the_tfidf_tab_shows_the_engines_keywords_and_pairs(harness):
    from simulator.lessons.tfidf import fit_corpus, keywords_text, pairs_text
    h = harness()
    tab = h.app.layout.lesson_tabs["tfidf"]
    h.app.layout.select_tab(tab)
    assert h.pump(lambda: h.app.layout.current_tab() is tab and tab.built)
    t, docs, where = fit_corpus("world", None, "smooth")
    assert tab.text("documents") == keywords_text(t, docs, where, [0, 1, 2, 3, 4], 5)
    assert tab.text("pairs") == pairs_text(t, [("king", "queen"), ("goat", "goats"), ("varnia", "tolm"),
                                              ("ship", "sailor")])
    tab.idf_var.set("raw")
    tab.docs_var.set("7 8")
    tab.compute_all()
    raw, _, _ = fit_corpus("world", None, "raw")
    assert tab.text("documents") == keywords_text(raw, docs, where, [7, 8], 5) and "ln(n / df(t))" in tab.text(
        "documents")
    assert h.errors == []
    tab.docs_var.set("99999")
    assert not tab.compute_keywords()
    assert len(h.errors) == 1 and "99999 is not a document" in h.errors[0]
