"""View → Language under Xvfb: the window relabels itself in Chinese and back while a run keeps stepping, the
choice is remembered for the next window, and the font module picks a CJK family or falls back with a note."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tkinter as tk

import pytest

if __name__ == "__main__":  # a child process that opens the window on its own screen (see test_screenshots...)
    sys.path.insert(0, os.getcwd())
from simulator import i18n  # noqa: E402
from ui import fonts  # noqa: E402
from ui.language import language_path, read_language, startup_language  # noqa: E402

TINY = """\
name: lang-tiny
description: a very small model for the language tests
model: {d_model: 16, n_layer: 1, n_head: 2, seq_len: 16, norm: layernorm}
optim: {name: adamw, lr: 0.003, schedule: constant}
train: {batch_size: 2, seed: 3, eval_every: 0, stats_every: 2, eval_batches: 1}
"""


@pytest.fixture
def english():
    """Every test starts and ends in English (the suite reads English)."""
    i18n.set_language("en")
    yield
    i18n.set_language("en")


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "lang-tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    return str(path)


def menubar(root):
    return root.nametowidget(root.cget("menu"))


def labels(menu) -> list[str]:
    return [menu.entrycget(i,
            "label") for i in range(menu.index("end") + 1) if menu.type(i) not in ("separator", "tearoff")]


def choose(h, code: str) -> None:
    """Clicks View → Language → `code`'s entry, as a person would."""
    lay = h.app.layout
    menu = lay.language_menu
    menu.invoke(list(i18n.LANGUAGES).index(code))
    h.pump(timeout=0.2)


def test_switching_relabels_the_window_while_the_run_keeps_stepping(harness, tiny, english):
    h = harness(tiny)
    lay = h.app.layout
    assert labels(menubar(h.root)) == ["File", "Run", "View", "Help"]
    assert labels(lay.language_menu) == ["English", "简体中文"]  # each language in its own name
    h.app.run()
    assert h.pump(lambda: h.app.running and h.app.step_count >= 2, 60)
    before = h.app.step_count
    choose(h, "zh_CN")
    assert i18n.language() == "zh_CN" and h.app.language == "zh_CN"
    assert labels(menubar(h.root)) == ["文件", "运行", "视图", "帮助"]
    assert lay.run_button.cget("text") == "暂停" and lay.step_button.cget("text") == "单步"
    assert lay.status_label.cget("text") == "训练中"
    assert h.pump(lambda: h.app.step_count > before + 2, 60), "the run stopped at the switch"
    assert h.app.running and h.app.worker.session is not None
    assert h.pump(lambda: lay.status_vars["step"].get() == f"第 {h.app.step_count} 步", 5)
    assert lay.notebook.tab(lay.overview.frame, "text") == i18n._(lay.overview.title)
    assert lay.notebook.tab(lay.lessons, "text") == "更多课程"
    labelled = [w.cget("text") for w in lay.controls.inner.winfo_children()[1].winfo_children()
                if w.winfo_class() == "TLabel"]
    assert "学习率" in " ".join(w.cget("text") for box in lay.controls.inner.winfo_children()[1:]
                                for w in box.winfo_children() if w.winfo_class() == "TLabel"), labelled
    assert lay.gradcheck_button.cget("text") == "梯度检验"
    mid = h.app.step_count
    choose(h, "en")
    assert labels(menubar(h.root)) == ["File", "Run", "View", "Help"]
    assert lay.run_button.cget("text") == "Pause" and lay.status_label.cget("text") == "training"
    assert h.pump(lambda: h.app.step_count > mid + 2, 60)
    h.app.pause()
    assert h.pump(lambda: not h.app.running, 30)
    assert lay.run_button.cget("text") == "Run" and h.app.message == "paused"


def test_the_choice_is_remembered_for_the_next_window(harness, tiny, english, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("TRANSFORMER_SIM_LANG")
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    assert startup_language() == "en"  # nothing chosen yet: the system's
    h = harness(tiny)
    h.app.remember = True  # the real app's memory (a test window otherwise writes nothing)
    choose(h, "zh_CN")
    saved = json.loads(language_path().read_text(encoding="utf-8"))
    assert saved == {"language": "zh_CN"} and read_language() == "zh_CN"
    assert not list(language_path().parent.glob("*.tmp")), "no temp file left behind"
    h.close()
    i18n.set_language("en")
    import tkinter as tk

    from tests.ui.conftest import pump
    from ui.app import build_app

    root = tk.Tk()
    app = build_app(root, tiny, remember=True)  # reads language.json as `launch` does
    try:
        assert i18n.language() == "zh_CN"
        assert labels(menubar(root))[0] == "文件" and app.layout.run_button.cget("text") == "运行"
        assert pump(root, lambda: app.info is not None, 60)
        assert app.layout.language_var.get() == "zh_CN"
    finally:
        app.close()
    language_path().write_text("{broken", encoding="utf-8")
    assert read_language() is None and startup_language() == "en"
    monkeypatch.setenv("TRANSFORMER_SIM_LANG", "zh")  # one launch in another language wins over the memory
    assert startup_language() == "zh_CN"


def test_the_font_module_picks_a_cjk_family_or_falls_back(harness, tiny, english, monkeypatch):
    assert fonts.pick_cjk(["DejaVu Sans", "noto sans cjk sc", "WenQuanYi Micro Hei"]) == "noto sans cjk sc"
    assert fonts.pick_cjk(["DejaVu Sans", "WenQuanYi Zen Hei"]) == "WenQuanYi Zen Hei"
    assert fonts.pick_cjk(["DejaVu Sans"]) is None
    from tkinter import font as tkfont

    import matplotlib

    h = harness(tiny)
    before = list(matplotlib.rcParams["font.sans-serif"])
    monkeypatch.setattr(fonts, "tk_families", lambda root: ["DejaVu Sans", "Noto Sans CJK SC"])
    monkeypatch.setattr(fonts, "matplotlib_families", lambda: ["DejaVu Sans", "Noto Sans CJK SC"])
    choose(h, "zh_CN")
    assert tkfont.nametofont("TkDefaultFont", root=h.root).cget("family") == "Noto Sans CJK SC"
    assert matplotlib.rcParams["font.sans-serif"][0] == "Noto Sans CJK SC"
    assert h.app.message != i18n._(fonts.NO_CJK_FONT)
    choose(h, "en")
    assert tkfont.nametofont("TkDefaultFont", root=h.root).cget("family") == h.app.fonts.original["TkDefaultFont"]
    assert list(matplotlib.rcParams["font.sans-serif"]) == before
    # none installed: the window still switches, says so in one status line, and keeps its fonts
    monkeypatch.setattr(fonts, "tk_families", lambda root: ["DejaVu Sans"])
    monkeypatch.setattr(fonts, "matplotlib_families", lambda: ["DejaVu Sans"])
    monkeypatch.setattr(fonts, "add_system_cjk_fonts", lambda: 0)
    choose(h, "zh_CN")
    assert h.app.message == "未安装中文字体（请安装 fonts-noto-cjk）：部分文字可能显示为方框"
    assert h.app.layout.run_button.cget("text") == "运行"
    assert list(matplotlib.rcParams["font.sans-serif"]) == before


def test_the_installed_cjk_font_is_found_for_both_tk_and_matplotlib(harness, tiny, english):
    h = harness(tiny)
    if fonts.pick_cjk(fonts.tk_families(h.root)) is None:
        pytest.skip("no CJK font installed (scripts/setup.sh installs fonts-noto-cjk)")
    choose(h, "zh_CN")
    import matplotlib
    from matplotlib import font_manager

    family = matplotlib.rcParams["font.sans-serif"][0]
    assert family in fonts.CJK_FAMILIES
    path = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
    assert "cjk" in path.lower() or "wqy" in path.lower() or "han" in path.lower(), path


# ------------------------------------------------------------------ both languages on real screens
def cut_off(root) -> list[str]:
    """Every mapped label and button whose text is wider than the widget (text cut off), measured in its font."""
    from tkinter import font as tkfont
    from tkinter import ttk

    out, todo = [], [root]
    while todo:
        w = todo.pop()
        todo += w.winfo_children()
        if w.winfo_class() not in ("TLabel", "TButton") or not w.winfo_ismapped():
            continue
        var = str(w.cget("textvariable"))
        text = str(w.cget("text")) or (w.getvar(var) if var else "")
        keys = w.keys()
        if not text or ("wraplength" in keys and str(w.cget("wraplength"))):  # wrapped text breaks lines to fit
            continue
        style = str(w.cget("style")) or w.winfo_class()
        spec = (str(w.cget("font")) if "font" in keys else "") or ttk.Style(w).lookup(style, "font")
        font = tkfont.nametofont(spec or "TkDefaultFont", root=w) if (spec or "TkDefaultFont").startswith("Tk") \
            else tkfont.Font(root=w, font=spec)
        need = max(font.measure(line) for line in text.splitlines())
        room = w.winfo_width()
        if w.winfo_class() == "TButton":  # a button's text sits inside its padding, border and focus ring
            pad = ttk.Style(w).lookup(str(w.cget("style")) or "TButton", "padding") or "0"
            room -= 2 * (int(float(str(w.tk.splitlist(pad)[0]))) + 3)
        if need > room:
            out.append(f"{text!r}: {need} px of text in {room} px")
    return out


@pytest.mark.parametrize("width, height", [(1280, 800), (1024, 700)])
@pytest.mark.parametrize("language", ["en", "zh_CN"])
def test_screenshots_in_both_languages_cut_no_text_off(tmp_path, tiny, shots, language, width, height):
    """The window on a screen of each size in each language: no label or button narrower than its text."""
    from pyvirtualdisplay import Display

    png = shots / f"window-{language}-{width}x{height}.png"
    disp = Display(backend="xvfb", size=(width, height), color_depth=24, extra_args=["-dpi", "100"],
                   manage_global_env=False)
    disp.start()
    try:
        env = {**os.environ, "DISPLAY": disp.new_display_var, "XDG_CONFIG_HOME": str(tmp_path / "config"),
               "TRANSFORMER_SIM_LANG": language,
               "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
        proc = subprocess.run([sys.executable, __file__, str(width), str(height), tiny, str(png)], env=env,
                              capture_output=True, text=True, timeout=300)
    finally:
        disp.stop()
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["language"] == language and out["cut"] == [], out["cut"]
    assert out["toolbar"] <= out["width"]
    from tests.ui.test_ui_window import colours

    n, top = colours(png)
    assert n > 50 and top < 0.9, (png, n, top)


def child(width: int, height: int, preset: str, png: str) -> dict:
    from tests.ui.conftest import pump
    from ui.app import build_app

    root = tk.Tk()
    app = build_app(root, preset)
    assert pump(root, lambda: app.info is not None, 120)
    pump(root, lambda: app.layout.menu_height > 0, 10)
    app.layout.step_button.invoke()
    assert pump(root, lambda: app.step_count >= 1, 60)
    pump(root, timeout=0.5)
    subprocess.run(["import", "-window", "root", "-crop", f"{width}x{height}+0+0", png], check=True, timeout=30)
    out = {"language": app.language, "cut": cut_off(app.layout.top), "toolbar": app.layout.toolbar.winfo_reqwidth(),
           "width": root.winfo_width()}
    app.close()
    return out


if __name__ == "__main__":
    W, H, preset, png = sys.argv[1:]
    print(json.dumps(child(int(W), int(H), preset, png)))


def test_every_lesson_tab_redraws_its_figure_in_the_new_language(harness, tiny, english):
    """Lesson tabs built (three of them computed and drawn) survive a switch both ways; their titles follow it."""
    h = harness(tiny)
    lay = h.app.layout
    tabs = list(lay.lesson_tabs.values())
    for tab in tabs:
        lay.select_tab(tab)
        h.pump(timeout=0.2)
        assert tab.built
    drawn = [lay.lesson_tabs[k] for k in ("optimizer_race", "sparse_logreg", "deep_mlp")]
    for tab in drawn:  # a lesson's result is taken in while its tab is on screen
        lay.select_tab(tab)
        assert h.pump(lambda t=tab: t._static_for is not None, 300), tab.title
    race = lay.lesson_tabs["optimizer_race"]
    assert race.ax_loss.get_title() == "loss (function value) per step"
    choose(h, "zh_CN")
    assert race.ax_loss.get_title() == "每一步的损失（函数值）"
    assert lay.lesson_tabs["deep_mlp"].ax_loss.get_title().startswith("损失与验证准确率")
    assert lay.inner.tab(lay.lesson_tabs["deep_mlp"].frame, "text") == "深层 MLP"
    for tab in tabs:  # every tab shown and drawn in Chinese without an error
        lay.select_tab(tab)
        h.pump(timeout=0.3)
        if tab in drawn:
            tab.canvas.draw()
    choose(h, "en")
    assert race.ax_loss.get_title() == "loss (function value) per step"


def test_an_open_gradient_check_and_the_backend_words_follow_a_switch(harness, tiny, english):
    from tkinter import font as tkfont
    from tkinter import ttk

    from simulator.gradcheck import GradCheckRow
    from ui.dialogs import gradcheck_window

    h = harness(tiny)
    lay = h.app.layout
    h.app._show_ready(h.app.info)  # the status line names where the kernels run
    assert "on CPU (numba)" in lay.status_label.cget("text")
    rows = [GradCheckRow("h0.attn.qkv.w", 12, -2.3e-05, -2.3e-05, 1.2e-10)]
    win = gradcheck_window(h.root, rows)
    table = win.table
    assert win.title() == "Gradient check" and table.heading("tensor", "text") == "tensor"
    choose(h, "zh_CN")
    assert win.title() == "梯度检验" and table.heading("tensor", "text") == "张量"
    assert table.heading("rel_err", "text") == "相对误差"
    heading = tkfont.nametofont(ttk.Style(table).lookup("Heading", "font") or "TkDefaultFont")
    for c in table.cget("columns"):  # each column measured again for its Chinese heading
        assert heading.measure(table.heading(c, "text")) + 8 <= int(table.column(c, "width")), c
    assert "CPU（numba）" in lay.status_label.cget("text"), lay.status_label.cget("text")
    choose(h, "en")
    assert win.title() == "Gradient check" and "on CPU (numba)" in lay.status_label.cget("text")
    win.destroy()
