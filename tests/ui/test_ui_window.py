"""The real window under X: opened on every shipped preset and driven by invoke() and by xdotool."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from simulator.lessons import all_lessons, default_config, lesson_of
from simulator.presets import dump_config, find_preset, list_presets, load_any, load_preset
from tests.ui.conftest import TINY
from ui.layout import SMALLEST, TITLE, WINDOW
from ui.protocol import SaveCheckpoint


def colours(png) -> tuple[int, float]:
    """(distinct colours, share of the most common one) of a screenshot."""
    from PIL import Image

    img = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    _, counts = np.unique(img, axis=0, return_counts=True)
    return len(counts), counts.max() / counts.sum()


def screenshot(path, size) -> None:
    subprocess.run(["import", "-window", "root", "-crop", f"{size[0]}x{size[1]}+0+0", str(path)], check=True,
                   timeout=30)


@pytest.mark.parametrize("preset", [p.name for p in list_presets()])
def test_opens_on_each_shipped_preset_and_trains(harness, preset):
    h = harness(preset)
    assert h.app.root.title().startswith(TITLE)
    lesson = lesson_of(load_any(preset))
    if lesson is not None:  # a lesson's preset opens its tab beside the default run
        tab = h.app.layout.lesson_tabs[lesson.kind]
        assert h.pump(lambda: h.app.layout.current_tab() is tab) and tab.cfg.name == preset
        assert h.session.config.name == "tiny-gpt"
    else:
        assert h.session.config.name == preset
    h.app.layout.step_button.invoke()
    assert h.pump(lambda: h.app.step_count == 1, 60)
    assert h.session.step_count == 1 and np.isfinite(h.app.history.loss.y[-1])
    assert h.errors == []


def test_every_lessons_preset_opens_in_its_tab(harness, tmp_path):
    h = harness()
    for lesson in all_lessons():
        cfg = default_config(lesson)
        path = tmp_path / f"{lesson.kind}.yaml"
        path.write_text(dump_config(cfg), encoding="utf-8")
        tab = h.app.layout.lesson_tabs[lesson.kind]
        assert h.app.files.open_preset(str(path))
        assert h.pump(lambda t=tab: h.app.layout.current_tab() is t and t.built) and tab.cfg == cfg, lesson.kind
    assert h.session.config.name == "tiny-gpt" and h.errors == []
    trace = h.app.layout.lesson_tabs["flash_trace"]  # a flash_trace preset walks its own q, k, v, not the model's
    while trace.step_tile():
        pass
    trace.refresh(force=True)
    text = trace.counters.cget("text")
    assert "standard attention's output" in text and float(text.split("= ")[-1].split()[0]) < 1e-12


def test_step_into_walks_exactly_the_session_phases(harness, tiny):
    h = harness(tiny)
    h.app.layout.select_tab(h.app.layout.stepthrough)
    names = h.session.phase_names
    for i, _ in enumerate(names):
        h.app.layout.step_into_button.invoke()
        assert h.pump(lambda n=i + 1: len(h.app.phase_log) == n)
        assert h.app.in_step == (i < len(names) - 1)
    assert h.app.phase_log == names
    assert h.pump(lambda: h.app.step_count == 1) and h.session.step_count == 1
    view = h.app.layout.stepthrough.phase
    assert view.last and view.name == "update" and view.tensors[0].name == "params"
    rows = h.app.layout.stepthrough.table.get_children()
    assert len(rows) == len(view.tensors)
    assert h.app.layout.stepthrough.refresh(force=True)


def test_run_and_pause(harness, tiny):
    h = harness(tiny)
    h.app.layout.run_button.invoke()
    assert h.pump(lambda: h.app.running and h.app.step_count >= 5, 60)
    assert h.app.layout.run_button.cget("text") == "Pause"
    h.app.layout.run_button.invoke()
    assert h.pump(lambda: not h.app.running)
    stopped = h.app.step_count
    h.pump(timeout=0.3)
    assert h.app.step_count == stopped == h.session.step_count and h.app.layout.run_button.cget("text") == "Run"


def test_reset_replays_the_same_batches(harness, tiny):
    h = harness(tiny)
    h.steps(3)
    first = list(h.app.history.loss.y)
    old = h.session
    h.app.layout.reset_button.invoke()
    assert h.pump(lambda: h.session is not old and h.app.info is not None and h.app.step_count == 0)
    assert len(h.app.history.loss) == 0
    h.steps(3)
    assert list(h.app.history.loss.y) == first  # same seed: same weights, same batches, same losses


def test_structural_and_live_changes_reach_the_session(harness, tiny):
    h = harness(tiny)
    h.steps(2)
    session = h.session
    h.app.layout.controls.set_value("optim.lr", "0.01")  # live: the same session takes it on the next step
    assert h.pump(lambda: session.config.optim.lr == 0.01)
    assert h.session is session and h.app.step_count == 2 and h.questions == []
    h.app.layout.controls.set_value("model.norm_position", "post")  # structural: asks, then rebuilds
    assert h.pump(lambda: h.session is not session and h.app.step_count == 0)
    assert len(h.questions) == 1 and "norm_position" in h.questions[0]
    assert h.session.config.model.norm_position == "post" and h.session.config.optim.lr == 0.01
    h.answer = False  # declined: nothing changes, the control shows the old value again
    session = h.session
    h.steps(1)
    h.app.layout.controls.set_value("model.norm", "rmsnorm")
    h.pump(timeout=0.3)
    assert h.session is session and h.session.config.model.norm == "layernorm"
    assert h.app.layout.controls.vars["model.norm"].get() == "layernorm" and h.errors == []


def test_a_bad_value_is_one_message_and_the_run_is_untouched(harness, tiny):
    h = harness(tiny)
    h.steps(2)
    session = h.session
    h.app.layout.controls.set_value("optim.lr", "-1")
    h.pump(timeout=0.3)
    assert len(h.errors) == 1 and "optim.lr" in h.errors[0] and "greater than 0" in h.errors[0]
    assert "\n" not in h.errors[0]
    assert h.session is session and session.config.optim.lr == 0.003 and h.app.step_count == 2
    assert h.app.layout.controls.vars["optim.lr"].get() == "0.003"
    h.app.layout.controls.set_value("model.n_head", "3")  # 16 is not divisible by 3
    assert len(h.errors) == 2 and "model.n_head" in h.errors[1] and h.session is session
    h.app.layout.n_var.set("many")
    h.app.layout.run_n_button.invoke()
    assert len(h.errors) == 3 and "Run N" in h.errors[2]
    h.steps(1)
    assert h.session is session and h.app.step_count == 3


def test_broken_and_unreadable_files_leave_the_run_alone(harness, tiny, tmp_path):
    h = harness(tiny)
    h.steps(1)
    session = h.session
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nmodel:\n  d_model: [1, 2\n", encoding="utf-8")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: x\n\xff\xfe\x00 garbage")
    assert not h.app.files.open_preset(str(broken))
    assert not h.app.files.open_preset(str(binary))
    assert not h.app.files.open_preset(str(tmp_path / "missing.yaml"))
    assert len(h.errors) == 3
    assert "broken.yaml:" in h.errors[0] and "YAML" in h.errors[0]
    assert "binary.yaml:2" in h.errors[1] and "UTF-8" in h.errors[1]
    assert "does not exist" in h.errors[2]
    h.pump(timeout=0.2)
    assert h.session is session and h.app.step_count == 1 and h.questions == []


def test_pin_and_compare(harness, tiny):
    h = harness(tiny)
    h.steps(4)
    h.app.layout.pin_button.invoke()
    h.app.layout.controls.set_value("model.norm_position", "post")
    assert h.pump(lambda: h.app.info.config.model.norm_position == "post" and h.app.step_count == 0)
    h.steps(4)
    assert len(h.app.pins) == 1 and len(h.app.pins[0].loss) == 4
    assert h.app.layout.overview.refresh(force=True)
    labels = [line.get_label() for line in h.app.layout.overview.pin_lines]
    assert "pinned 1: norm_position=pre" in labels
    assert list(h.app.history.loss.y) != list(h.app.pins[0].loss.y)  # the two runs differ only in the toggle


def test_rewind_branches_from_a_snapshot_bit_identically(harness, tiny):
    h = harness(tiny, snapshot_every=2)
    h.steps(5)
    losses = dict(zip(h.app.history.loss.x, h.app.history.loss.y, strict=True))
    assert h.app.snapshot_steps == [0, 2, 4]
    h.app.layout.rewind_scale.set(1)
    h.app.layout.rewind_button.invoke()
    assert h.pump(lambda: h.app.step_count == 2 and h.session.step_count == 2)
    assert max(h.app.history.loss.x) == 2 and h.app.snapshot_steps == [0, 2]
    h.steps(1)
    assert h.app.history.loss.y[-1] == losses[3]  # weights, optimizer state and batch stream all restored


def test_generate_produces_text_token_by_token(harness, tiny):
    h = harness(tiny)
    h.steps(2)
    h.app.layout.select_tab(h.app.layout.generate_tab)
    h.pump(timeout=0.2)
    h.app.layout.generate_tab.controls.set_value("sampling.max_new", "15")
    assert h.pump(lambda: h.session.config.sampling.max_new == 15)
    h.app.layout.generate_tab.button.invoke()
    assert h.pump(lambda: not h.app.generating and len(h.app.layout.generate_tab.events) == 15)
    tab = h.app.layout.generate_tab
    text = tab.text.get("1.0", "end-1c")
    assert len(tab.generated) == 15 and text == h.session.config.sampling.prompt + tab.generated
    assert tab.refresh(force=True) and h.errors == []


def test_divergence_pauses_and_names_step_and_tensor(harness, tmp_path):
    path = tmp_path / "diverge.yaml"
    path.write_text(TINY.replace("norm: layernorm", "norm: none").replace("lr: 0.003", "lr: 10000.0")
                    .replace("grad_clip: 1.0", "grad_clip: 0.0"), encoding="utf-8")
    h = harness(str(path))
    h.app.layout.run_button.invoke()
    assert h.pump(lambda: h.app.diverged is not None, 60)
    assert h.pump(lambda: not h.app.running)
    message = h.app.layout.status_label.cget("text")
    assert "diverged at step" in message and "NaN/Inf" in message and h.app.diverged == message
    assert str(h.app.layout.status_label.cget("style")) == "Red.TLabel"
    assert h.session.diverged is not None and h.session.diverged.tensor in message


def test_gradient_check_button_shows_small_errors(harness, tiny):
    h = harness(tiny)
    h.steps(1)
    h.app.layout.gradcheck_button.invoke()
    assert h.pump(lambda: h.app.gradcheck_rows, 60)
    assert max(r.rel_err for r in h.app.gradcheck_rows) < 1e-5
    assert "worst rel. error" in h.app.layout.gradcheck_label.cget("text")


def test_watch_choices_are_the_apps_and_reach_the_worker(harness, tiny):
    h = harness(tiny)
    h.steps(2)  # a statistics step: the probes have read the default choices
    layout = h.app.layout
    layout.select_tab(layout.gradients)
    assert h.pump(lambda: layout.gradients.built)
    name = h.app.info.tensor_names[-1]
    layout.gradients.tensor_var.set(name)
    layout.gradients.tensor_box.event_generate("<<ComboboxSelected>>")
    assert h.pump(lambda: layout.gradients.hists and layout.gradients.hists[-1][0] == 2)
    h.app.set_watch(attn_layer=1, attn_sample=3)
    assert h.pump(lambda: layout.attention.probe is not None and layout.attention.probe.attn_layer == 1)
    assert h.app.watch.grad_tensor == name and h.app.worker.watch == h.app.watch
    h.app.layout.controls.set_value("model.n_layer", "1")  # a new session: both copies are fitted to it
    assert h.pump(lambda: h.app.info.n_layer == 1)
    assert h.app.watch.attn_layer == 0 and h.app.watch.attn_sample == 3 and h.app.worker.watch == h.app.watch


def test_tiled_attention_matches_the_model(harness, tiny):
    h = harness(tiny)
    h.steps(1)
    tab = h.app.layout.lesson_tabs["flash_trace"]
    h.app.layout.select_tab(tab)
    assert h.pump(lambda: tab.trace is not None)
    while tab.step_tile():
        pass
    tab.refresh(force=True)
    text = tab.counters.cget("text")
    assert "max |tiled output - the model's attention output|" in text
    err = float(text.split("= ")[-1].split()[0])
    assert err < 1e-5


def test_race_tab_grows_every_path(harness):
    h = harness("optimizer-race")
    tab = h.app.layout.lesson_tabs["optimizer_race"]
    tab.steps_per_second = 2000.0
    assert h.pump(lambda: tab.result is not None and not tab.playing and tab.shown == tab.cfg.steps, 60)
    path, losses, _ = tab.result[0]["Adam"]
    assert path.shape == (tab.cfg.steps + 1, 2) and losses[-1] < losses[0]
    line = tab.lines["Adam"][0]
    assert len(line.get_xdata()) == tab.cfg.steps + 1
    # as drawn: each racer's path is a line of the map's collection, its head a marker at the path's end
    paths = tab.curve_sets[0]
    paths.commit()
    assert any(np.array_equal(seg, path) for seg in paths.lines.get_segments())
    assert any(np.array_equal(xy, path[-1]) for xy in paths.markers.get_offsets())
    assert len(paths.markers.get_offsets()) == len(tab.lines) and paths.artists == tab.blitter.artists[:2]


def test_files_round_trip(harness, tiny, tmp_path):
    h = harness(tiny)
    h.steps(3)
    h.app.files.save_preset(str(tmp_path / "saved.yaml"))
    assert load_preset(str(tmp_path / "saved.yaml")) == load_preset(tiny)
    h.app.files.export_csv(str(tmp_path / "m.csv"))
    assert len((tmp_path / "m.csv").read_text().strip().split("\n")) == 4
    for suffix in ("png", "svg"):
        h.app.files.export_plot(str(tmp_path / f"plot.{suffix}"))
        assert (tmp_path / f"plot.{suffix}").stat().st_size > 1000
    ckpt = tmp_path / "run.npz"
    h.app.worker.send(SaveCheckpoint(str(ckpt)))
    assert h.pump(lambda: ckpt.exists() and "checkpoint saved" in h.app.message)
    h.steps(2)
    h.app.files.load_checkpoint(str(ckpt))
    assert h.pump(lambda: h.app.step_count == 3 and h.session.step_count == 3)
    assert h.errors == []


def test_window_fits_at_both_sizes_and_screenshots_are_not_blank(harness, tiny, shots):
    h = harness(tiny)
    h.steps(4)
    app = h.app
    for size in (WINDOW, SMALLEST):
        app.layout.resize(*size)
        for tab in (app.layout.overview, app.layout.gradients, app.layout.stepthrough):
            app.layout.select_tab(tab)
            h.pump(timeout=0.4)
            root = app.root
            assert root.winfo_width() == size[0] and root.winfo_height() + app.layout.menu_height == size[1]
            for w in (app.layout.toolbar, app.layout.status_label, app.layout.gradcheck_button, app.layout.notebook):
                assert w.winfo_ismapped()
                right = w.winfo_rootx() - root.winfo_rootx() + w.winfo_width()
                bottom = w.winfo_rooty() - root.winfo_rooty() + w.winfo_height()
                assert right <= size[0] and bottom <= size[1] - app.layout.menu_height, (w, size)
            assert app.layout.toolbar.winfo_reqwidth() <= size[0]
            png = shots / f"{size[0]}x{size[1]}-{tab.title}.png"
            screenshot(png, size)
            n, top = colours(png)
            assert n > 50 and top < 0.9, (png, n, top)


def test_xdotool_click_on_step_changes_the_counter(harness, tiny):
    h = harness(tiny)
    h.pump(lambda: h.app.root.winfo_ismapped())
    ids = subprocess.run(["xdotool", "search", "--name", f"^{TITLE}"], capture_output=True, text=True,
                         timeout=10).stdout.split()
    assert ids, "the window is not on the display"
    b = h.app.layout.step_button
    x, y = b.winfo_rootx() + b.winfo_width() // 2, b.winfo_rooty() + b.winfo_height() // 2
    subprocess.run(["timeout", "10", "xdotool", "mousemove", "--sync", str(x), str(y), "click", "1"], check=True)
    assert h.pump(lambda: h.app.step_count == 1, 30)
    assert h.pump(lambda: h.app.layout.status_vars["step"].get() == "step 1")
    assert h.session.step_count == 1


def test_keyboard_shortcuts(harness, tiny):
    h = harness(tiny)
    root = h.app.root
    root.focus_force()
    h.pump(timeout=0.2)
    root.event_generate("<F10>")
    assert h.pump(lambda: h.app.step_count == 1)
    root.event_generate("<F11>")
    assert h.pump(lambda: h.app.phase_log == ["batch"])


def test_sparse_lesson_tab_shows_ftrl_zeros(harness):
    h = harness("ftrl-sparse")
    tab = h.app.layout.lesson_tabs["sparse_logreg"]
    tab.steps_per_second = 5000.0
    assert h.pump(lambda: tab.result is not None and not tab.playing and tab.shown == tab.cfg.steps, 120)
    out, baseline, best = tab.result
    ftrl, adagrad = out["FTRL l1=0.1"], out["AdaGrad"]
    assert ftrl[1][-1] > adagrad[1][-1] + 0.2  # L1 leaves far more weights at exactly zero
    assert best < baseline and ftrl[0][-1] < baseline
    assert len(tab.lines["AdaGrad"][1].get_xdata()) == tab.cfg.steps
    # as drawn: the zero fractions are the lines of their axes' collection, and the replay blitted them
    assert tab.blits >= 1 and tab.blitter.artists == [c.lines for c in tab.curve_sets]
    drawn = tab.curve_sets[1].lines.get_segments()
    assert [list(seg[:, 1]) for seg in drawn] == [list(zeros) for _loss, zeros in out.values()]


def test_deep_mlp_tab_shows_vanishing_gradients(harness, tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text(find_preset("deep-sigmoid").read_text(encoding="utf-8").replace("steps: 300", "steps: 40"),
                    encoding="utf-8")
    h = harness(str(path))
    tab = h.app.layout.lesson_tabs["deep_mlp"]
    tab.steps_per_second = 5000.0
    assert h.pump(lambda: tab.result is not None and not tab.playing and tab.shown == tab.steps_of(), 120)
    names, records = tab.result
    first = records[0].grad_norms
    assert names[0] == "l0.w" and names[-1] == "out.w" and len(first) == len(names)
    assert first[0] < 1e-6 * first[-1]  # twenty sigmoid layers: the gradient all but vanishes at the input
    heat = np.asarray(tab.heat.get_array())  # RGBA bytes, the whole lesson's; a norm of 0 is the grey of none
    grey = np.round(np.array(tab.cover.get_facecolor()) * 255)
    assert np.array_equal(heat, tab.colours.to_rgba(np.ma.masked_invalid(tab.grid), bytes=True))  # the colour bar's
    assert not tab.cover.get_visible()  # the whole lesson is on screen
    assert ((heat != grey).any(axis=-1)).sum() == np.isfinite(tab.grid).sum()
    tab.show_until(3)  # three steps: the rest under the grey cover, from step 3.5 to the right end
    assert tab.cover.get_visible() and tab.cover.get_x() == 3.5 and tab.cover.get_x() + tab.cover.get_width() \
        == tab.heat.get_extent()[1]
    assert [path.vertices[1, 1] for path in tab.bars.artist.get_paths()] == list(records[2].grad_norms)
    tab.vars["width"].set("0")
    tab._changed("width")
    assert len(h.errors) == 1 and "width" in h.errors[0] and tab.cfg.width == 32
    assert tab.vars["width"].get() == "32"


def test_lr_plot_shows_the_planned_schedule_and_the_next_step(harness, tiny):
    from simulator.api import lr_at

    h = harness(tiny)
    tab = h.app.layout.overview

    def planned():
        return np.asarray(tab.l_plan.get_xdata(), float), np.asarray(tab.l_plan.get_ydata(), float)

    def follows_schedule():
        x, y = planned()
        return len(x) > 0 and np.allclose(y, [lr_at(int(k) - 1, h.app.config.optim) for k in x])

    assert h.pump(lambda: len(planned()[0]) > 0)
    x, y = planned()
    steps = h.app.config.train.steps
    assert h.app.step_count == 0 and len(h.app.history.lr) == 0  # drawn before the first step
    assert x[0] == 1 and x[-1] == steps and len(x) == steps and np.allclose(y, 0.003)
    lo, hi = tab.ax_lr.get_xlim()
    assert lo <= 1 and hi >= steps and tab.ax_lr.get_ylim()[1] > 0.003
    assert tab.lr_marker.get_xdata()[0] == 1 and tab.lr_marker.get_ydata()[0] == 0.003

    h.app.change_setting("optim.schedule", "warmup_cosine")
    assert h.pump(lambda: not np.allclose(planned()[1], 0.003) and follows_schedule())
    assert planned()[1][-1] < planned()[1][0]  # the cosine has started to decay by the end of the planned run
    h.app.change_setting("optim.lr", "0.01")
    assert h.pump(lambda: np.isclose(planned()[1].max(), 0.01) and follows_schedule())
    assert tab.ax_lr.get_ylim()[1] >= 0.01
    h.app.change_setting("train.steps", "500")
    assert h.pump(lambda: planned()[0][-1] == 500) and tab.ax_lr.get_xlim()[1] >= 500

    h.steps(3)
    optim = h.app.config.optim
    assert h.pump(lambda: tab.lr_marker.get_xdata()[0] == 4)  # the marker sits at the step that comes next
    assert tab.lr_marker.get_ydata()[0] == lr_at(3, optim) and list(tab.lr_now.get_xdata()) == [4, 4]
    assert np.allclose(h.app.history.lr.y, [lr_at(s, optim) for s in range(3)])  # what was taken is the plan
    assert tab.lr_marker in tab.blitter.artists and tab.lr_now in tab.blitter.artists
    tab.refresh(force=True)
    draws, blits = tab.full_draws, tab.blits
    h.steps(1)  # the limits hold: the marker moves by a blit, not a full draw
    # (drawn on the drawing thread: the blit counts once it is on screen)
    assert h.pump(lambda: tab.lr_marker.get_xdata()[0] == 5 and tab.blits > blits and not tab.drawing())
    assert tab.full_draws == draws


def test_gradient_check_dialog_fits_every_number_in_its_column(harness, tiny):
    from tkinter import font as tkfont
    from tkinter import ttk

    from simulator.gradcheck import GradCheckRow
    from ui.dialogs import gradcheck_window

    def font_of(table, style):
        return tkfont.nametofont(ttk.Style(table).lookup(style, "font") or "TkDefaultFont")

    def check(win):
        table = win.table
        h.pump(lambda: table.winfo_ismapped(), 5)
        body, heading = font_of(table, "Treeview"), font_of(table, "Heading")
        columns = table.cget("columns")
        widths = [int(table.column(c, "width")) for c in columns]
        cells = [table.item(i, "values") for i in table.get_children()]
        assert cells and all(len(row) == len(columns) for row in cells)
        for row in cells:  # Tk pads a cell's text by 4 pixels each side
            for c, text, width in zip(columns, row, widths, strict=True):
                assert body.measure(str(text)) + 8 <= width, (c, text, width)
        for c, width in zip(columns, widths, strict=True):
            assert heading.measure(table.heading(c, "text")) + 8 <= width, c
        assert table.winfo_width() >= sum(widths)  # the window gives the table all of it
        return cells

    h = harness(tiny)
    h.steps(1)
    h.app.layout.gradcheck_button.invoke()
    assert h.pump(lambda: h.app.gradcheck_rows, 60)
    cells = check(h.app.gradcheck_window)
    assert [row[0] for row in cells] == [r.tensor for r in h.app.gradcheck_rows]
    assert float(cells[0][2]) == float(f"{h.app.gradcheck_rows[0].analytic:.9g}")  # the number, all of it
    long = [GradCheckRow("h11.attn.qkv.w", 1234567, -2.32056381e-05, -2.320563812e-05, 1.23e-10),
            GradCheckRow("wte", 0, -1.0e-300, 123456789.0, 0.5)]
    check(gradcheck_window(h.app.root, long))


def test_a_tab_opened_the_first_time_says_it_is_preparing(harness, tiny, shots):
    h = harness(tiny)
    assert h.pump(lambda: h.app.root.winfo_viewable())
    tab = h.app.layout.gradients
    assert not tab.built and tab.preparing is None  # never opened
    seen = {}
    build = tab.build

    def build_and_look():  # the moment the build holds the Tk thread: what is on the screen?
        note = tab.preparing
        seen.update(text=note.cget("text"), viewable=note.winfo_viewable(), figure=tab.figure)
        png = shots / "preparing.png"
        x, y = note.winfo_rootx(), note.winfo_rooty()
        subprocess.run(["import", "-window", "root", "-crop", f"{note.winfo_width()}x{note.winfo_height()}+{x}+{y}",
                        str(png)], check=True, timeout=30)
        seen["colours"] = colours(png)[0]
        build()

    tab.build = build_and_look
    h.app.layout.select_tab(tab)
    assert h.pump(lambda: tab.built and tab.preparing is None and tab.full_draws >= 1)
    assert seen["text"] == "Preparing the Gradients tab…" and seen["viewable"] and seen["figure"] is None
    assert seen["colours"] > 2  # the line was painted: text, not an empty box of background
    assert tab.canvas.get_tk_widget().winfo_viewable()
    h.app.layout.select_tab(h.app.layout.overview)
    h.app.layout.select_tab(tab)  # built once: no line the second time
    h.pump(timeout=0.2)
    assert tab.preparing is None
