"""Tokenizers: the merges BPE or WordPiece learns, step by step, and one sentence split at several sizes.

Every line is the text `simulator.lessons.tokenizers` produces (the same as `train --preset tokenizers`);
this tab only parses what was typed and shows the engine's answer.
"""

from __future__ import annotations

import tkinter as tk
from tkinter import ttk

from simulator.i18n import N_, _
from simulator.lessons.tokenizers import SUBWORD_KINDS, lesson_text, merges_text, splits_text
from ui import relabel
from ui.lessons import lesson_tab
from ui.lessons.text import InputError, TextLessonTab, parse_numbers


@lesson_tab("tokenizers")
class TokenizersTab(TextLessonTab):
    """The tokenizer and corpus choice, the merge table, and the sentence at several vocabulary sizes."""

    def sections(self) -> None:
        self.merges_var = self.section(N_("Merges learned step by step"), N_("merges"), self.compute_merges,
                                       entry_width=6, extra=self._choices)
        self.sentence_var = self.section(N_("How a sentence splits"), N_("sentence"), self.compute_splits, expand=True)

    def _choices(self, bar) -> None:
        self.kind_var = tk.StringVar(self.frame, SUBWORD_KINDS[0])
        self.corpus_var = tk.StringVar(self.frame, "builtin")
        for label, var, values in ((N_("tokenizer"), self.kind_var, SUBWORD_KINDS),
                                   (N_("corpus"), self.corpus_var, ("builtin", "world"))):
            relabel.text(ttk.Label(bar), label).pack(side="left", padx=(0, 2))
            box = ttk.Combobox(bar, textvariable=var, state="readonly", width=10, values=list(values))
            box.pack(side="left", padx=(0, 8))
            box.bind("<<ComboboxSelected>>", lambda e: self.compute_all())
            if var is self.corpus_var:
                self.corpus_box = box

    def show_config(self, cfg) -> None:
        self.kind_var.set(cfg.tokenizer)
        self.path = cfg.path if cfg.corpus == "text_file" else None
        self.corpus_box.configure(values=["builtin", "world"] + (["text_file"] if self.path else []))
        self.corpus_var.set(cfg.corpus)
        self.learned = list(cfg.learned)
        self.merges_var.set(str(cfg.merges))
        self.sentence_var.set(cfg.sentence)
        self.compute_all()

    def _text(self):
        corpus = self.corpus_var.get()  # text_file is offered only when the preset named a file
        return lesson_text(corpus, self.path if corpus == "text_file" else None)

    def compute_all(self) -> None:
        """Recomputes both sections (a new tokenizer or corpus)."""
        self.compute_merges()
        self.compute_splits()

    def compute_merges(self) -> bool:
        """Recomputes the merge table for the typed number of merges."""
        def make() -> str:
            n = parse_numbers(self.merges_var.get(), "merges")
            if len(n) != 1 or n[0] != int(n[0]) or not 1 <= n[0] <= 5000:
                raise InputError(_("merges: type one whole number from 1 to 5000, got {value!r}.").format(
                    value=self.merges_var.get()))
            text, where = self._text()
            return merges_text(self.kind_var.get(), text, where, int(n[0]))
        return self.run_section("merges", "merges", make)

    def compute_splits(self) -> bool:
        """Recomputes how the typed sentence splits."""
        def make() -> str:
            text, where = self._text()
            return splits_text(self.kind_var.get(), text, where, self.sentence_var.get(), self.learned)
        return self.run_section("sentence", "sentence", make)
