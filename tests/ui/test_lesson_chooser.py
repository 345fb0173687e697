"""The "More lessons" page chooses its lesson with a combobox that names each lesson in full, in the window's
language; toolbars too wide for the window flow onto another row instead of squeezing their last widgets."""

import tkinter as tk
from tkinter import ttk

from ui.flow import flow, rows_for


def test_the_chooser_selects_a_lesson_and_follows_a_selection_made_elsewhere(harness, tiny):
    h = harness(tiny)
    lay = h.app.layout
    chooser, pages = lay.lessons, lay.lessons.pages
    titles = [title for _frame, title in pages]
    assert list(chooser.box.cget("values")) == titles and len(titles) >= 10
    assert all(lay.inner.tab(frame, "text") == title for frame, title in pages)  # the notebook keeps its titles
    tab = next(t for t in lay.tabs if t.frame is pages[3][0])
    lay.notebook.select(lay.lessons)
    chooser.box.current(3)
    chooser.box.event_generate("<<ComboboxSelected>>")
    assert h.pump(lambda: lay.current_tab() is tab and tab.built)
    other = next(t for t in lay.tabs if t.frame is pages[-1][0])
    lay.select_tab(other)  # as the View menu and a lesson's preset do
    assert h.pump(lambda: chooser.var.get() == other.title and lay.current_tab() is other)
    h.app.set_language("zh_CN")
    assert h.pump(lambda: chooser.var.get() != other.title)
    assert "深层 MLP" in chooser.box.cget("values") and lay.current_tab() is other
    h.app.set_language("en")
    assert h.pump(lambda: chooser.var.get() == other.title)
    assert h.errors == []


def test_rows_break_before_a_label_and_keep_the_order():
    groups = [["a", "A"], ["b", "B"], ["c"], ["d", "D"]]
    widths = {"a": 30, "A": 50, "b": 30, "B": 50, "c": 60, "d": 30, "D": 90}
    assert rows_for(groups, widths, 1000) == [["a", "A", "b", "B", "c", "d", "D"]]
    assert rows_for(groups, widths, 200) == [["a", "A", "b", "B"], ["c", "d", "D"]]
    assert rows_for(groups, widths, 100) == [["a", "A"], ["b", "B"], ["c"], ["d", "D"]]
    assert rows_for(groups, widths, 50) == [["a", "A"], ["b", "B"], ["c"], ["d", "D"]]  # a wide group: a row


def test_a_bar_too_wide_for_its_window_flows_onto_rows_and_back():
    root = tk.Tk()
    try:
        bar = ttk.Frame(root)
        bar.pack(fill="x")
        widgets = []
        for i in range(8):
            label = ttk.Label(bar, text=f"setting {i}")
            label.pack(side="left", padx=(6, 2))
            entry = ttk.Entry(bar, width=8)
            entry.pack(side="left")
            widgets += [label, entry]
        button = ttk.Button(bar, text="Replay")
        button.pack(side="left", padx=6)
        widgets.append(button)
        root.update()
        need = bar.winfo_reqwidth()  # one row's width
        f = flow(bar)

        def settle(width):
            root.geometry(f"{width}x200")
            for _ in range(20):
                root.update()

        settle(need + 40)
        assert f.rows == 1 and all(w.winfo_manager() == "pack" and w.pack_info()["in"] is bar for w in widgets)
        settle(need // 2)
        assert f.rows >= 2
        for w in widgets:  # every widget whole, inside the window, and in a row with its label
            assert w.winfo_ismapped() and w.winfo_width() >= w.winfo_reqwidth() - 1, w
            assert w.winfo_rootx() + w.winfo_width() <= root.winfo_rootx() + root.winfo_width()
        for label, entry in zip(widgets[0:-1:2], widgets[1:-1:2], strict=True):
            assert label.pack_info()["in"] is entry.pack_info()["in"]
            assert label.winfo_rootx() < entry.winfo_rootx()
        settle(need + 40)
        assert f.rows == 1 and all(w.pack_info()["in"] is bar for w in widgets)
        assert [w for w in bar.pack_slaves()] == widgets  # the original order
    finally:
        root.destroy()
