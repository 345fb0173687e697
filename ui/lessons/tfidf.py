"""TF-IDF: the formulas, each shown document's keywords, cosine between documents, and word pairs.

Every line is the text `simulator.lessons.tfidf` produces (the same as `train --preset tfidf`); this tab
only parses what was typed and shows the engine's answer.
"""

from __future__ import annotations

import tkinter as tk
from tkinter import ttk

from simulator.i18n import N_, _
from simulator.lessons.tfidf import IDF_VARIANTS, fit_corpus, keywords_text, pairs_text, parse_pairs
from ui import relabel
from ui.lessons import lesson_tab
from ui.lessons.text import InputError, TextLessonTab, parse_numbers


@lesson_tab("tfidf")
class TfidfTab(TextLessonTab):
    """The corpus and idf choice, keywords of the typed documents, and cosines of the typed word pairs."""

    def sections(self) -> None:
        self.docs_var = self.section(N_("TF-IDF: keywords and cosine between documents"), N_("documents"),
                                     self.compute_keywords, entry_width=14, extra=self._choices)
        self.pairs_var = self.section(N_("Words of related meaning"), N_("pairs"), self.compute_pairs, expand=True)

    def _choices(self, bar) -> None:
        self.corpus_var = tk.StringVar(self.frame, "world")
        self.idf_var = tk.StringVar(self.frame, IDF_VARIANTS[0])
        for label, var, values in ((N_("corpus"), self.corpus_var, ("world", "builtin")),
                                   (N_("idf"), self.idf_var, IDF_VARIANTS)):
            relabel.text(ttk.Label(bar), label).pack(side="left", padx=(0, 2))
            box = ttk.Combobox(bar, textvariable=var, state="readonly", width=8, values=list(values))
            box.pack(side="left", padx=(0, 8))
            box.bind("<<ComboboxSelected>>", lambda e: self.compute_all())
            if var is self.corpus_var:
                self.corpus_box = box

    def show_config(self, cfg) -> None:
        self.path = cfg.path if cfg.corpus == "text_file" else None
        self.corpus_box.configure(values=["world", "builtin"] + (["text_file"] if self.path else []))
        self.corpus_var.set(cfg.corpus)
        self.idf_var.set(cfg.idf)
        self.k = cfg.keywords
        self.docs_var.set(" ".join(str(i) for i in cfg.documents))
        self.pairs_var.set("; ".join(cfg.pairs))
        self.compute_all()

    def _fit(self):
        corpus = self.corpus_var.get()  # text_file is offered only when the preset named a file
        return fit_corpus(corpus, self.path if corpus == "text_file" else None, self.idf_var.get())

    def compute_all(self) -> None:
        """Recomputes both sections (a new corpus or idf)."""
        self.compute_keywords()
        self.compute_pairs()

    def compute_keywords(self) -> bool:
        """Recomputes the keywords and cosines of the typed document numbers."""
        def make() -> str:
            shown = parse_numbers(self.docs_var.get(), "documents")
            if not shown or any(i != int(i) for i in shown):
                raise InputError(_("documents: type document numbers such as 0 1 2, got {value!r}.").format(
                    value=self.docs_var.get()))
            t, docs, where = self._fit()
            return keywords_text(t, docs, where, [int(i) for i in shown], self.k)
        return self.run_section("documents", "documents", make)

    def compute_pairs(self) -> bool:
        """Recomputes the cosines of the typed word pairs."""
        def make() -> str:
            pairs = parse_pairs(self.pairs_var.get())
            return pairs_text(self._fit()[0], pairs)
        return self.run_section("pairs", "pairs", make)
