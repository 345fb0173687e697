"""The text lessons' tabs (worked examples, leaf or flower): the engine's textbook numbers in the boxes, edits
recompute, a mistake is one dialog."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest

from simulator.lessons.leaf_flower import mlp_text
from simulator.lessons.worked_examples import norms_text, zscore_text
from ui.layout import WINDOW
from ui.lessons.text import InputError, parse_numbers, parse_rows


def on_screen(h, kind):
    """(harness, tab) with the lesson's tab on screen."""
    tab = h.app.layout.lesson_tabs[kind]
    h.app.layout.select_tab(tab)
    assert h.pump(lambda: h.app.layout.current_tab() is tab and tab.built)
    return h, tab


@pytest.fixture
def worked(harness):
    """The app with the Worked examples tab on screen: (harness, tab)."""
    return on_screen(harness(), "worked_examples")


@pytest.fixture
def leaf(harness):
    """The app with the Leaf or flower tab on screen: (harness, tab)."""
    return on_screen(harness(), "leaf_flower")


def update_numbers(text: str) -> tuple[float, float, float, float]:
    """(old, lr, grad, new) from the 'update: new = old - lr x grad = ...' line."""
    line = next(s for s in text.splitlines() if s.startswith("update: new = old - lr x grad"))
    m = re.search(r"= (\S+) - (\S+) x \((\S+)\) = (\S+)$", line)
    return tuple(float(g) for g in m.groups())


def test_parsers_accept_spaces_commas_and_semicolons_and_name_the_bad_word():
    assert parse_numbers(" 1, 2.5\t-3 ", "x") == [1.0, 2.5, -3.0]
    assert parse_rows("1 2 3; 4 5 6\n7 8 9;", "t") == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    with pytest.raises(InputError, match="'two' is not a number"):
        parse_numbers("1 two", "x")
    with pytest.raises(InputError, match="not a finite number"):
        parse_numbers("1 nan", "x")
    with pytest.raises(InputError, match="row 2 has 2 numbers but row 1 has 3"):
        parse_rows("1 2 3; 4 5", "t")
    with pytest.raises(InputError, match="type rows"):
        parse_rows(" ; ", "t")


def test_defaults_show_the_textbook_numbers(worked):
    h, tab = worked
    z = tab.text("values")
    assert z == zscore_text([20, 50, 60, 80, 90])
    lines = z.splitlines()
    assert lines[1].split()[:2] == ["mean", "60"]
    assert lines[2].split()[:2] == ["variance", "600"]
    assert lines[3].split()[:2] == ["std", "24.49"]
    assert lines[4].split()[1:6] == ["-1.63", "-0.41", "0", "0.82", "1.22"]
    assert lines[5].endswith("-1.63 -0.41 0 0.82 1.22")  # the engine's LayerNorm kernel agrees

    n = tab.text("rows")
    assert n == norms_text([[90, 80, 70], [60, 50, 40]])
    assert sum(s.strip().startswith("student") for s in n.splitlines()) == 4  # the table, then the results
    side = [s.split() for s in n.splitlines() if s.startswith("  student") and "1.22" in s]
    assert side[0][2:5] == ["1", "1", "1"] and side[1][2:5] == ["-1", "-1", "-1"]  # BatchNorm: per subject
    assert side[0][5:] == ["1.22", "0", "-1.22", "80", "8.16"] and side[1][5:] == ["1.22", "0", "-1.22", "50", "8.16"]
    assert any(s.split()[:4] == ["mean", "75", "65", "55"] for s in n.splitlines())
    assert any(s.split()[:4] == ["std", "15", "15", "15"] for s in n.splitlines())
    assert h.errors == []


def test_leaf_flower_defaults_show_one_update(leaf):
    h, tab = leaf
    m = tab.text("lr")
    assert tab.loss_var.get() == "cross-entropy" and tab.lr_var.get() == "0.5"
    assert m == mlp_text("cross_entropy", 0.5)
    old, lr, grad, new = update_numbers(m)
    assert lr == 0.5 and abs(new - (old - lr * grad)) < 1e-6
    assert "|1 - 0.6| + |0 - 0.4| = 0.8" in m
    assert h.errors == []


def test_edits_recompute_through_the_engine(worked):
    h, tab = worked
    tab.zscore_var.set("1, 2, 3")
    assert tab.compute_zscores()
    z = tab.text("values").splitlines()
    assert z[1].split()[1] == "2" and z[4].split()[1:4] == ["-1.22", "0", "1.22"]
    tab.rows_var.set("1 2; 3 5; 5 8")
    assert tab.compute_norms()
    assert tab.text("rows") == norms_text([[1, 2], [3, 5], [5, 8]]) and "col 2" in tab.text("rows")
    assert h.errors == []


def test_leaf_flower_edits_recompute_through_the_engine(leaf):
    h, tab = leaf
    tab.loss_var.set("L1")
    tab.lr_var.set("0.1")
    tab.loss_box.event_generate("<<ComboboxSelected>>")
    h.pump(timeout=0.1)
    m = tab.text("lr")
    assert m == mlp_text("l1", 0.1) and "loss (L1) = |1 - p_leaf| + |0 - p_flower|" in m
    old, lr, grad, new = update_numbers(m)
    assert lr == 0.1 and abs(new - (old - lr * grad)) < 1e-6
    assert tab.outputs["lr"].cget("state") == "disabled"  # read-only: the person edits the entries, not the answer
    assert h.errors == []


@pytest.mark.parametrize(("kind", "var", "compute", "label", "typed", "says"), [
    ("worked_examples", "zscore_var", "compute_zscores", "values", "20 fifty 60", "'fifty' is not a number"),
    ("worked_examples", "zscore_var", "compute_zscores", "values", "", "at least two values"),
    ("worked_examples", "zscore_var", "compute_zscores", "values", "5 5 5", "standard deviation is 0"),
    ("worked_examples", "rows_var", "compute_norms", "rows", "90 80 70; 60 50", "row 2 has 2 numbers but row 1 has 3"),
    ("worked_examples", "rows_var", "compute_norms", "rows", "", "type rows of numbers"),
    ("worked_examples", "rows_var", "compute_norms", "rows", "90 80 70", "at least two rows"),
    ("leaf_flower", "lr_var", "compute_mlp", "lr", "fast", "'fast' is not a number"),
    ("leaf_flower", "lr_var", "compute_mlp", "lr", "-0.5", "one positive number"),
])
def test_a_mistake_is_one_dialog_and_keeps_the_previous_answer(harness, kind, var, compute, label, typed, says):
    h, tab = on_screen(harness(), kind)
    before = tab.text(label)
    assert before
    getattr(tab, var).set(typed)
    assert not getattr(tab, compute)()
    assert len(h.errors) == 1 and says in h.errors[0] and h.errors[0].startswith(f"{tab.title}: ")
    assert tab.text(label) == before


@pytest.mark.parametrize("kind", ["worked_examples", "leaf_flower"])
def test_tab_fits_the_window_and_screenshot_is_not_blank(harness, shots, kind):
    h, tab = on_screen(harness(), kind)
    h.app.layout.resize(*WINDOW)
    h.pump(timeout=0.5)
    root = h.app.root
    for out in tab.outputs.values():
        assert out.winfo_ismapped()
        bottom = out.winfo_rooty() - root.winfo_rooty() + out.winfo_height()
        assert bottom <= WINDOW[1] - h.app.layout.menu_height, "a worked example is cut off at the bottom"
        assert out.winfo_height() >= out.winfo_reqheight()  # every line of the answer shows
    png = shots / f"{kind}.png"
    subprocess.run(["import", "-window", "root", "-crop", f"{WINDOW[0]}x{WINDOW[1]}+0+0", str(png)], check=True,
                   timeout=30)
    from PIL import Image

    img = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    _, counts = np.unique(img, axis=0, return_counts=True)
    n, top = len(counts), counts.max() / counts.sum()
    assert n > 50 and top < 0.95, (n, top)
