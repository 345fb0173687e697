"""The window fits the screen it opens on: sizes, positions, density and memory; pure rules and real Xvfb screens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tkinter as tk
from tkinter import font as tkfont

import pytest

if __name__ == "__main__":  # a child process that runs one scenario on its own screen (see run_on_screen)
    sys.path.insert(0, os.getcwd())
from tests.ui.conftest import pump  # noqa: E402
from ui.layout import SMALLEST, WINDOW
from ui.window_geometry import (
    Area,
    WindowState,
    display_scale,
    on_screen,
    opening_size,
    parse_geometry,
    parse_workarea,
    read_state,
    state_path,
    tk_scaling,
    write_state,
)

TINY = """\
name: fit-tiny
description: a very small model for the window-fit tests
model: {d_model: 16, n_layer: 2, n_head: 2, seq_len: 16, norm: layernorm}
optim: {name: adamw, lr: 0.003, schedule: constant, grad_clip: 1.0}
train: {batch_size: 4, seed: 7, eval_every: 0, stats_every: 2, eval_batches: 1}
sampling: {max_new: 12, temperature: 0.8}
"""


# ------------------------------------------------------------------ the pure rules
@pytest.mark.parametrize("ppi, factor", [(72, 1.0), (96, 1.0), (100, 1.0), (110, 1.0), (119, 1.0), (120, 1.25),
                                         (144, 1.5), (168, 1.75), (192, 2.0), (200, 2.0), (288, 3.0), (600, 4.0)])
def test_display_scale_snaps_to_quarters_above_ordinary_density(ppi, factor):
    assert display_scale(ppi, platform="linux") == factor
    assert display_scale(ppi, platform="win32") == factor


def test_display_scale_override_and_macos():
    assert display_scale(192, platform="darwin") == 1.0  # the system scales Retina screens itself
    assert display_scale(96, platform="linux", override="1.5") == 1.5
    assert display_scale(192, platform="darwin", override="2") == 2.0
    for bad in ("abc", "0.5", "9", "", "nan"):  # not a number in [1, 4]: the measured density decides
        assert display_scale(192, platform="linux", override=bad) == 2.0


def test_tk_scaling_makes_an_inch_96_pixels_times_the_factor():
    assert tk_scaling(1.0) * 72 == pytest.approx(96)
    assert tk_scaling(2.0) * 72 == pytest.approx(192)


@pytest.mark.parametrize("screen, size", [
    ((1920, 1080), WINDOW),            # fits: the default
    ((1366, 768), (1280, 768)),        # too short: the usable height, the default width
    ((1024, 700), (1024, 700)),        # just the smallest layout
    ((800, 600), (800, 600)),          # smaller than the smallest layout: the screen (the layout scrolls)
    ((2560, 1440), WINDOW),
])
def test_opening_size_is_the_default_where_it_fits_else_the_usable_area(screen, size):
    assert opening_size(Area(0, 0, *screen), WINDOW, SMALLEST) == size


def test_opening_size_keeps_a_remembered_size_within_the_screen_and_above_the_smallest():
    big = Area(0, 0, 1920, 1080)
    assert opening_size(big, WINDOW, SMALLEST, remembered=(1500, 900)) == (1500, 900)
    assert opening_size(big, WINDOW, SMALLEST, remembered=(3000, 2000)) == (1920, 1080)
    assert opening_size(big, WINDOW, SMALLEST, remembered=(300, 200)) == SMALLEST
    assert opening_size(Area(0, 0, 900, 650), WINDOW, SMALLEST, remembered=(300, 200)) == (900, 650)


def test_on_screen_pulls_a_window_back_inside_the_area():
    area = Area(0, 30, 1366, 700)
    assert on_screen((100, 100), (1000, 600), area) == (100, 100)  # already inside: unchanged
    assert on_screen((3000, 2000), (1000, 600), area) == (366, 130)  # a monitor that is gone
    assert on_screen((-500, -40), (1000, 600), area) == (0, 30)
    assert on_screen((50, 50), (2000, 900), area) == (0, 30)  # larger than the area: its top-left corner


def test_state_path_follows_xdg_config_home(tmp_path):
    assert state_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "transformer-sim" / "window.json"
    home = state_path({})
    assert home.parts[-3:] == (".config", "transformer-sim", "window.json")
    assert state_path({"XDG_CONFIG_HOME": "relative/dir"}) == home  # a relative value is not a config home


def test_state_round_trips_and_is_written_atomically(tmp_path):
    path = tmp_path / "cfg" / "transformer-sim" / "window.json"
    state = WindowState(1100, 650, 40, 30, 1.0)
    assert write_state(path, state)
    assert read_state(path) == state
    assert [p.name for p in path.parent.iterdir()] == ["window.json"]  # no temp file left beside it
    assert write_state(path, WindowState(1200, 700, 0, 0, 2.0)) and read_state(path).scale == 2.0
    assert read_state(path).size_at(1.0) == (600, 350)  # remembered at scale 2, opened at scale 1


def test_a_state_that_cannot_be_written_is_forgotten_quietly(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert write_state(blocker / "transformer-sim" / "window.json", WindowState(1, 1, 0, 0)) is False


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", "null", '{"version": 1}', "\xff\xfe garbage",
                                  '{"version": 2, "width": 1, "height": 1, "x": 0, "y": 0}',
                                  '{"version": 1, "width": "wide", "height": 1, "x": 0, "y": 0}',
                                  '{"version": 1, "width": 0, "height": 1, "x": 0, "y": 0}',
                                  '{"version": 1, "width": 5, "height": 5, "x": 0, "y": 0, "scale": 40}',
                                  '{"version": 1, "width": true, "height": 1, "x": 0, "y": 0}'])
def test_a_broken_state_file_is_ignored(tmp_path, text):
    path = tmp_path / "window.json"
    path.write_bytes(text.encode("latin-1"))
    assert read_state(path) is None
    assert read_state(tmp_path / "missing.json") is None
    assert read_state(tmp_path) is None  # a folder where the file should be


def test_parse_geometry_and_workarea():
    assert parse_geometry("1024x668+0+32") == (1024, 668, 0, 32)
    assert parse_geometry("800x600+-5+-7") == (800, 600, -5, -7)
    assert parse_geometry("garbage") is None
    assert parse_workarea("_NET_WORKAREA = 0, 27, 1366, 741, 0, 27, 1366, 741", (1366, 768)) == Area(0, 27, 1366, 741)
    assert parse_workarea("_NET_WORKAREA:  no such atom on any window.", (1366, 768)) is None
    assert parse_workarea("_NET_WORKAREA = 0, 0, 5000, 741", (1366, 768)) is None


# ------------------------------------------------------------------ real screens
# Each screen is an Xvfb of its own, and each window on it lives in a child process: Tk keeps a display's
# connection for as long as the interpreter lives, and a lost connection ends the whole process, so a
# server can only be stopped safely once the process that used it is gone. The child runs one scenario
# (the functions below, with plain asserts) and prints what it measured as JSON.

def run_on_screen(tmp_path, scenario: str, width: int, height: int, dpi: int = 100, *args: str) -> dict:
    """Runs `scenario` in a child process on a fresh width x height Xvfb screen at `dpi`; its JSON result."""
    from pyvirtualdisplay import Display

    disp = Display(backend="xvfb", size=(width, height), color_depth=24, extra_args=["-dpi", str(dpi)],
                   manage_global_env=False)
    disp.start()
    try:
        env = {**os.environ, "DISPLAY": disp.new_display_var, "XDG_CONFIG_HOME": str(tmp_path / "config"),
               "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
        env.pop("TRANSFORMER_SIM_SCALE", None)
        proc = subprocess.run([sys.executable, __file__, scenario, str(width), str(height), *args], env=env,
                              capture_output=True, text=True, timeout=300)
    finally:
        disp.stop()
    assert proc.returncode == 0, f"{scenario} on {width}x{height}@{dpi}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-5000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "fit-tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("width, height, dpi", [(1024, 700, 100), (1366, 768, 100), (2560, 1440, 100),
                                                (2560, 1440, 192)])
def test_window_and_every_key_widget_lie_inside_the_screen(tmp_path, tiny, shots, width, height, dpi):
    png = shots / f"fit-{width}x{height}@{dpi}.png"
    out = run_on_screen(tmp_path, "fit", width, height, dpi, tiny, str(png))
    factor = 2.0 if dpi == 192 else 1.0
    assert out["scale"] == factor
    assert tuple(out["size"]) == opening_size(Area(0, 0, width, height), (WINDOW[0] * factor, WINDOW[1] * factor),
                                              (SMALLEST[0] * factor, SMALLEST[1] * factor))
    # Tk's inch and the figures' dots grow by the same factor (Tk keeps the screen's size in whole millimetres,
    # so its inch is the factor's to within a percent)
    assert out["figure_dpi"] == pytest.approx(100 * out["inch"] / 96)  # matplotlib follows Tk's inch
    if factor != 1.0:
        assert out["inch"] == pytest.approx(96 * factor, rel=0.01)
        assert out["figure_dpi"] == pytest.approx(100 * factor, rel=0.01)
    from tests.ui.test_ui_window import colours

    n, top = colours(png)
    assert n > 50 and top < 0.9, (png, n, top)


def test_no_tab_cuts_a_label_button_or_entry_on_the_smallest_screen_in_either_language(tmp_path, tiny):
    out = run_on_screen(tmp_path, "every_tab", *SMALLEST, 100, tiny)
    assert out["cut"] == [] and out["seen"] > 200, out


def test_high_density_text_is_larger_by_the_factor(tmp_path):
    low = run_on_screen(tmp_path, "text", 1024, 700, 100)
    high = run_on_screen(tmp_path, "text", 1024, 700, 192)
    assert low["scale"] == 1.0 and high["scale"] == 2.0
    # text neither tiny nor blurry: drawn about twice as tall, at the screen's own resolution
    assert high["label_height"] >= 1.7 * low["label_height"]
    assert high["inch"] == pytest.approx(192, rel=0.01)


def test_a_screen_smaller_than_the_smallest_layout_scrolls_to_every_widget(tmp_path, tiny):
    out = run_on_screen(tmp_path, "scroll", 800, 600, 100, tiny)
    assert tuple(out["size"]) == (800, 600) and out["overflows"] == [True, True]
    assert sorted(out["reached"]) == sorted(KEY_WIDGETS)


def test_the_last_size_and_position_are_remembered_and_pulled_back_on_screen(tmp_path, tiny):
    path = tmp_path / "config" / "transformer-sim" / "window.json"
    out = run_on_screen(tmp_path, "remember", 1366, 768, 100, tiny, "1100", "720", "40", "30")
    saved = json.loads(path.read_text())
    assert (saved["width"], saved["height"], saved["x"], saved["y"]) == (1100, 720, 40, 30)
    out = run_on_screen(tmp_path, "open", 1366, 768, 100, tiny)
    assert (out["size"], out["corner"]) == ([1100, 720], [40, 30])

    write_state(path, WindowState(1200, 700, 5000, 3000, 1.0))  # a monitor that is no longer there
    out = run_on_screen(tmp_path, "open", 1366, 768, 100, tiny)
    assert out["size"] == [1200, 700] and out["corner"] == [1366 - 1200, 768 - 700]


def test_a_broken_state_file_opens_the_default_window_without_a_traceback(tmp_path, tiny):
    path = tmp_path / "config" / "transformer-sim" / "window.json"
    path.parent.mkdir(parents=True)
    path.write_text("{ not json", encoding="utf-8")
    out = run_on_screen(tmp_path, "open", 1920, 1080, 100, tiny)  # run_on_screen refuses a traceback
    assert out["size"] == list(WINDOW)
    assert read_state(path) is not None  # closing wrote a good one over it


# ------------------------------------------------------------------ the child's side
KEY_WIDGETS = ("tab row", "right-hand plots", "controls", "rewind", "gradient check", "Step", "Run", "Run N",
               "status line", "toolbar")


def open_app(preset, remember=False):
    from ui.app import build_app

    root = tk.Tk()
    app = build_app(root, preset, remember=remember)
    assert pump(root, lambda: app.info is not None, 60), "the model was never built"
    pump(root, lambda: app.layout.menu_height > 0, 10)
    pump(root, timeout=0.3)
    return app


def key_widgets(app) -> dict:
    lay = app.layout
    found = {"tab row": lay.notebook, "right-hand plots": lay.current_tab().canvas.get_tk_widget(),
             "controls": lay.controls, "rewind": lay.rewind_button, "gradient check": lay.gradcheck_button,
             "Step": lay.step_button, "Run": lay.run_button, "Run N": lay.run_n_button,
             "status line": lay.status_label, "toolbar": lay.toolbar}
    assert tuple(found) == KEY_WIDGETS
    return found


def outer_box(app) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the whole window on the screen, menu bar included."""
    root = app.root
    top = root.winfo_rooty() - app.layout.menu_height
    return root.winfo_rootx(), top, root.winfo_rootx() + root.winfo_width(), root.winfo_rooty() + root.winfo_height()


def window_size(app) -> list[int]:
    return [app.root.winfo_width(), app.root.winfo_height() + app.layout.menu_height]


def assert_inside(app, width, height):
    left, top, right, bottom = outer_box(app)
    assert left >= 0 and top >= 0 and right <= width and bottom <= height, ((left, top, right, bottom), (width, height))
    for name, w in key_widgets(app).items():
        assert w.winfo_viewable(), name
        x, y = w.winfo_rootx(), w.winfo_rooty()
        assert 0 <= x and x + w.winfo_width() <= min(width, right), (name, x, w.winfo_width(), width)
        assert 0 <= y and y + w.winfo_height() <= min(height, bottom), (name, y, w.winfo_height(), height)


SQUEEZABLE = ("TLabel", "Label", "TButton", "TEntry", "TCombobox", "TSpinbox")


def cut_widgets(frame, root) -> tuple[int, list]:
    """(how many were looked at, those cut) of the labels, buttons and entries shown in `frame`: a label, entry or
    box narrower than it asks to be (a wrapped label asks for its wrapped width), a button narrower than its
    text, or any of them running past the window's right edge."""
    right = root.winfo_rootx() + root.winfo_width()
    seen, cut, todo = 0, [], [frame]
    while todo:
        w = todo.pop()
        todo.extend(w.winfo_children())
        kind = w.winfo_class()
        if kind not in SQUEEZABLE or not w.winfo_ismapped():
            continue
        text = str(w.cget("text")) if kind in ("TLabel", "Label", "TButton") else ""
        if kind in ("TLabel", "Label", "TButton") and not text:
            continue
        seen += 1
        need = tkfont.nametofont("TkDefaultFont").measure(text) + 8 if kind == "TButton" else w.winfo_reqwidth()
        if need > w.winfo_width() + 1 or w.winfo_rootx() + w.winfo_width() > right:
            cut.append([kind, text[:40], need, w.winfo_width()])
    return seen, cut


def assert_labels_whole(frame, root) -> None:
    seen, cut = cut_widgets(frame, root)
    assert seen and not cut, cut


def scenario_fit(width, height, preset, png) -> dict:
    app = open_app(preset)
    root = app.root
    assert app.layout.area.overflows == (False, False)  # nothing scrolls where the smallest layout fits
    app.layout.step_button.invoke()
    assert pump(root, lambda: app.step_count == 1, 60)
    for tab in (app.layout.gradients, app.layout.activations, app.layout.attention, app.layout.overview):
        app.layout.select_tab(tab)
        pump(root, timeout=0.5)
        assert_inside(app, width, height)
        if tab is not app.layout.overview:  # a figure alone
            assert_labels_whole(tab.frame, root)
        canvas = tab.canvas.get_tk_widget()  # the plots take the notebook's width, the layout's right side
        assert canvas.winfo_width() > 0.5 * (root.winfo_width() - app.layout.controls.winfo_width())
    assert app.layout.toolbar.winfo_reqwidth() <= root.winfo_width()
    subprocess.run(["import", "-window", "root", "-crop", f"{width}x{height}+0+0", png], check=True, timeout=30)
    out = {"scale": app.scale, "size": window_size(app), "inch": root.winfo_fpixels("1i"),
           "figure_dpi": app.layout.overview.figure.dpi}
    app.close()
    return out


def scenario_every_tab(width, height, preset) -> dict:
    """Each tab on screen, in English and in Chinese: the labels, buttons and entries cut (none, we hope)."""
    app = open_app(preset)
    root = app.root
    out = {"seen": 0, "cut": []}
    for code in ("en", "zh_CN"):
        app.set_language(code)
        for tab in app.layout.tabs:
            app.layout.select_tab(tab)
            assert pump(root, lambda t=tab: t.built, 60)
            pump(root, timeout=0.3)
            seen, cut = cut_widgets(tab.frame, root)
            out["seen"] += seen
            out["cut"] += [[code, tab.title, *c] for c in cut]
    app.close()
    return out


def scenario_text(width, height) -> dict:
    from ui.window_geometry import apply_scale

    root = tk.Tk()
    factor = apply_scale(root)
    label = tk.Label(root, text="Step", font="TkDefaultFont")
    out = {"scale": factor, "label_height": label.winfo_reqheight(), "inch": root.winfo_fpixels("1i")}
    root.destroy()
    return out


def scenario_scroll(width, height, preset) -> dict:
    app = open_app(preset)
    root, area = app.root, app.layout.area
    assert app.layout.top.winfo_width() >= SMALLEST[0]  # the layout keeps its smallest size
    left, top, right, bottom = outer_box(app)
    assert right <= width and bottom <= height
    reached = []
    for name, w in key_widgets(app).items():
        area.see(w)
        pump(root, timeout=0.1)
        x, y = w.winfo_rootx(), w.winfo_rooty()
        # brought into view: its corner inside the window, and as much of it as the window holds
        assert left <= x < right and top <= y < bottom, (name, x, y)
        assert x + min(w.winfo_width(), right - x) <= right and y + min(w.winfo_height(), bottom - y) <= bottom
        assert x + w.winfo_width() <= right or x == area.winfo_rootx(), name
        assert y + w.winfo_height() <= bottom or y == area.winfo_rooty(), name
        reached.append(name)
    area.canvas.xview_moveto(1.0)
    area.canvas.yview_moveto(1.0)
    pump(root, timeout=0.1)
    status = app.layout.status_label  # the far corner: the status line's end lies inside the window
    assert status.winfo_rooty() + status.winfo_height() <= bottom
    assert status.winfo_rootx() + status.winfo_width() <= right
    out = {"size": window_size(app), "overflows": list(area.overflows), "reached": reached}
    app.close()
    return out


def scenario_open(width, height, preset) -> dict:
    app = open_app(preset, remember=True)
    assert_inside(app, width, height)
    left, top, _, _ = outer_box(app)
    out = {"size": window_size(app), "corner": [left, top], "scale": app.scale}
    app.close()
    return out


def scenario_remember(width, height, preset, w, h, x, y) -> dict:
    app = open_app(preset, remember=True)
    app.root.geometry(f"{w}x{int(h) - app.layout.menu_height}+{x}+{y}")
    pump(app.root, lambda: app.root.winfo_width() == int(w), 5)
    out = {"size": window_size(app)}
    app.close()
    return out


if __name__ == "__main__":
    name, W, H, *rest = sys.argv[1:]
    result = globals()[f"scenario_{name}"](int(W), int(H), *rest)
    print(json.dumps(result))
