"""Worked examples a learner can edit: z-scores, and BatchNorm vs LayerNorm on a grades table.

Every number shown is the text `simulator.lessons.worked_examples` produces (the same as `main.py explain
...`); this tab only parses what was typed, asks the engine, and puts the answer in a read-only box.
"""

from __future__ import annotations

from simulator.i18n import N_
from simulator.lessons.worked_examples import norms_text, nums, zscore_text
from ui.lessons import lesson_tab
from ui.lessons.text import TextLessonTab, parse_numbers, parse_rows


@lesson_tab("worked_examples")
class WorkedTab(TextLessonTab):
    """Two editable worked examples, each an entry, a Compute button and the engine's text."""

    def sections(self) -> None:
        self.zscore_var = self.section(N_("z-scores: z = (x - mean) / std"), N_("values"), self.compute_zscores)
        self.rows_var = self.section(N_("BatchNorm vs LayerNorm (rows: students, columns: subjects)"), N_("rows"),
                                     self.compute_norms, expand=True)

    def show_config(self, cfg) -> None:
        self.zscore_var.set(nums(cfg.values))
        self.rows_var.set("; ".join(nums(r) for r in cfg.grades))
        self.compute_zscores()
        self.compute_norms()

    def compute_zscores(self) -> bool:
        """Recomputes the z-scores of the typed values."""
        return self.run_section("z-scores", "values",
                                lambda: zscore_text(parse_numbers(self.zscore_var.get(), "z-scores")))

    def compute_norms(self) -> bool:
        """Recomputes BatchNorm and LayerNorm of the typed table."""
        return self.run_section("grades table", "rows",
                                lambda: norms_text(parse_rows(self.rows_var.get(), "grades table")))
