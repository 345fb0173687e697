"""Live refresh: a record updates the tabs' artists in place and blits them; the numbers drawn are the record's.

Each test trains the tiny preset a few steps in the window, then publishes crafted records and probes on the
app's bus (the worker is idle), so the values and whether the axes must change are known in advance.
"""

from __future__ import annotations

import dataclasses
import math
import queue

import numpy as np
import pytest

from simulator.records import StepRecord
from ui.bench import LINE, cost_line, line, measure_all
from ui.history import layer_of
from ui.plots.gradients import HEAT_COLUMNS, heat_columns
from ui.protocol import Outbox, Probe, Record, Run, Status


def shown_tab(h, tab):
    """Brings `tab` up after a few statistics steps and waits until it has drawn them (no full draw owed)."""
    h.app.layout.select_tab(tab)
    assert h.pump(lambda: tab.built and tab._drawn is not None and not tab._need_full, 20)
    h.pump(timeout=0.4)  # past the throttles
    return tab


def next_record(h, scale: float = 1.0) -> StepRecord:
    """The last statistics record again, one step later, its norms and activations scaled by `scale`."""
    last = h.app.history.last_stats
    return dataclasses.replace(
        last, step=h.app.step_count + 1,
        grad_norms={k: v * scale for k, v in last.grad_norms.items()},
        update_ratios={k: v * scale for k, v in last.update_ratios.items()},
        activations={k: (m * scale, s * scale, a * scale) for k, (m, s, a) in last.activations.items()})


def publish(h, tab, *messages) -> bool:
    """Publishes messages on the bus as the poll would, then lets the tab refresh once, unthrottled for blits."""
    for m in messages:
        h.app.bus.publish(m)
    tab.last_blit = 0.0
    drawn = tab.refresh()
    tab.finish_drawing()  # a draw on the drawing thread: on screen before the test looks
    return drawn


def probe_like(h, step: int, grad=None, act=None, attention=None) -> Probe:
    w = h.app.watch
    return Probe(step, w.grad_tensor, grad, w.act_site, act, w.attn_layer, w.attn_sample, attention, "abc")


def test_gradients_blit_a_new_record_and_show_its_numbers(harness, tiny):
    h = harness(tiny)
    h.steps(4)
    tab = shown_tab(h, h.app.layout.gradients)
    full, blits = tab.full_draws, tab.blits
    rec = next_record(h, scale=1.05)  # inside the log axes' headroom and the x axis (0..10)
    counts, edges = tab.hists[-1][1] * 1.1, tab.hists[-1][2]
    assert publish(h, tab, Record(rec), probe_like(h, rec.step, grad=(counts, edges)))
    assert tab.full_draws == full and tab.blits == blits + 1
    # the heatmap column just left of the new step holds the new layer norms (hypot over the layer's tensors)
    img = tab.heat_grid
    assert img.shape == (len(tab.rows), HEAT_COLUMNS)
    col = int((rec.step - 0.01) / tab.heat_right * HEAT_COLUMNS)
    for r, row in enumerate(tab.rows):
        want = math.sqrt(sum(v * v for k, v in rec.grad_norms.items() if layer_of(k) == row))
        assert img[r, col] == pytest.approx(want, rel=1e-12)
    assert np.isnan(img[:, -1]).all()  # right of the newest step: nothing yet
    lines = tab.grad_lines
    for name in lines.data:
        assert lines.xdata(name)[-1] == rec.step and lines.ydata(name)[-1] == rec.grad_norms[name]
    for name in tab.ratio_lines.data:
        assert tab.ratio_lines.ydata(name)[-1] == pytest.approx(rec.update_ratios[name], rel=1e-12)
    # what is drawn: one collection of a path per layer colour, a piece a tensor, ending at the new step's norm
    drawn = lines.curves()
    assert len(drawn) == len(lines.data)
    assert len(lines.artist.get_paths()) == len(set(lines.colours.values())) < len(lines.data)
    assert sorted(seg[-1, 1] for seg in drawn) == sorted(rec.grad_norms[name] for name in lines.data)
    assert all(seg[-1, 0] == rec.step for seg in drawn)
    newest = tab.stairs[-1].get_data()
    assert np.array_equal(newest.values, counts) and np.array_equal(newest.edges, edges)
    assert tab.hist_steps.get_text().endswith(f"-{rec.step}")  # the step text, beside a static title
    assert tab.hist_title.get_text() == f"gradient of {h.app.watch.grad_tensor}"
    # a step without statistics changes nothing this tab shows: no refresh at all
    plain = dataclasses.replace(rec, step=rec.step + 1, grad_norms={}, update_ratios={}, activations={})
    drawn = tab.blits + tab.full_draws
    assert not publish(h, tab, Record(plain)) and tab.blits + tab.full_draws == drawn
    # a norm far outside the colour scale must redraw the axes (the colour bar), once the throttle allows
    big = next_record(h, scale=1e4)
    tab.last_full = 0.0
    assert publish(h, tab, Record(big))
    assert tab.full_draws == full + 1
    assert tab.heat_colours.norm.vmax >= max(math.sqrt(sum(v * v for k, v in big.grad_norms.items()
                                                           if layer_of(k) == r))
                                     for r in tab.rows)


def test_activations_bars_are_the_records_means_and_stds(harness, tiny):
    h = harness(tiny)
    h.steps(4)
    tab = shown_tab(h, h.app.layout.activations)
    full, blits = tab.full_draws, tab.blits
    rec = next_record(h, scale=1.02)
    step, site, counts, edges = tab.hist
    new_counts = counts.copy()
    new_counts[len(counts) // 2] += 1
    assert publish(h, tab, Record(rec), probe_like(h, rec.step, act=(new_counts, edges)))
    assert tab.full_draws == full and tab.blits == blits + 1
    sites = list(rec.activations)
    assert list(tab.bars[1].heights) == [rec.activations[s][1] for s in sites]
    assert list(tab.bars[0].heights) == [rec.activations[s][0] for s in sites]
    tops = [path.vertices[1, 1] for path in tab.bars[1].artist.get_paths()]  # what is drawn: each bar's top
    assert tops == [rec.activations[s][1] for s in sites]
    assert tab.bars_step.get_text() == f"step {rec.step}" and tab.bar_titles[1].get_text().startswith("std per site")
    data = tab.stairs.get_data()
    assert np.array_equal(data.values, new_counts) and np.array_equal(data.edges, edges)
    # a std twice as large leaves the y axis: a full draw grows it
    tab.last_full = 0.0
    assert publish(h, tab, Record(next_record(h, scale=3.0)))
    assert tab.full_draws == full + 1
    top = max(tab.bars[1].heights)
    assert tab.ax_std.get_ylim()[1] >= top


def test_attention_maps_are_the_probes_and_are_blitted(harness, tiny):
    h = harness(tiny)
    h.steps(4)
    tab = shown_tab(h, h.app.layout.attention)
    full, blits = tab.full_draws, tab.blits
    nh, T, _ = tab.probe.attention.shape
    rng = np.random.default_rng(0)
    att = rng.random((nh, T, T)).astype(np.float32)
    att /= att.sum(-1, keepdims=True)
    assert publish(h, tab, probe_like(h, h.app.step_count + 1, attention=att))
    assert tab.full_draws == full and tab.blits == blits + 1
    hidden = np.triu(np.ones((T, T), bool), 1)
    assert np.array_equal(tab.shown.mask, np.broadcast_to(hidden, att.shape))
    assert np.array_equal(tab.shown.data[:, ~hidden], att[:, ~hidden])
    cmap, norm = tab.colours.get_cmap(), tab.colours.norm
    grey = np.round(np.array(cmap.get_bad()) * 255)
    for im, a in zip(tab.images, att, strict=True):  # each image's pixels: the colour bar's colour of its weight
        rgba = np.asarray(im.get_array())
        assert rgba.shape == (T, T, 4) and rgba.dtype == np.uint8
        assert np.array_equal(rgba[hidden], np.broadcast_to(grey, (int(hidden.sum()), 4)))
        want = np.round(np.asarray(cmap(norm(a[~hidden]))) * 255)
        assert np.abs(rgba[~hidden].astype(float) - want).max() <= 1.0
    assert f"step {h.app.step_count + 1}" in tab.suptitle.get_text()


def test_a_tab_refresh_during_run_blits_and_the_window_keeps_up(harness, tiny):
    h = harness(tiny)
    h.steps(2)
    tabs = (h.app.layout.gradients, h.app.layout.activations, h.app.layout.attention)
    for tab in tabs:
        shown_tab(h, tab)
        blits, full = tab.blits, tab.full_draws
        target = h.app.step_count + 40
        h.app.run(40)
        assert h.pump(lambda t=target: h.app.step_count >= t and not h.app.running, 60)
        h.pump(timeout=0.3)
        assert tab.blits > blits  # it followed the run by blitting
        assert tab.full_draws - full <= (tab.blits - blits)  # full draws stay the exception
    assert h.app.worker.out.dropped == 0


def test_outbox_keeps_order_coalesces_probes_and_stays_bounded():
    box = Outbox(latest_only=(Probe,), cap=5)
    p1, p2 = Probe(1, "", None, "", None, 0, 0, None, ""), Probe(2, "", None, "", None, 0, 0, None, "")
    r1, r2 = Status("one"), Status("two")
    for m in (p1, r1, p2, r2):
        box.put(m)
    assert box.qsize() == 3 and box.replaced == 1
    assert [box.get_nowait() for _ in range(3)] == [r1, p2, r2]  # the newer probe, in its own place
    with pytest.raises(queue.Empty):
        box.get_nowait()
    box.put(p1)
    assert box.get_nowait() is p1  # taken: the next one is not a replacement
    box.put(p2)
    assert box.replaced == 1
    box.get_nowait()
    for i in range(12):  # nobody takes them: the oldest go, counted
        box.put(Status(str(i)))
    assert box.qsize() == 5 and box.dropped == 7
    assert [box.get_nowait().text for _ in range(5)] == ["7", "8", "9", "10", "11"]


def test_the_window_gets_only_the_newest_undrawn_probe(harness, tiny):
    h = harness(tiny)
    h.app.closed = True  # the window stops taking messages (a stalled loop)
    h.app.worker.send(Run(8))
    assert h.pump(lambda: h.app.worker.session.step_count >= 8 and not h.app.worker.running, 60)
    msgs = []
    while True:
        try:
            msgs.append(h.app.worker.out.get_nowait())
        except queue.Empty:
            break
    probes = [m for m in msgs if isinstance(m, Probe)]
    records = [m.record.step for m in msgs if isinstance(m, Record)]
    assert records == list(range(1, 9))  # every record: the curves need each step
    assert [p.step for p in probes] == [8]  # statistics at 1, 2, 4, 6, 8: only the newest is left
    assert msgs.index(probes[0]) > next(i for i, m in enumerate(msgs) if isinstance(m, Record) and m.record.step == 8)
    h.app.closed = False


def test_heat_columns_hold_the_newest_statistics_step_at_or_before_each_column():
    steps = [1, 4, 6]
    norms = [{"a": 1.0, "b": 2.0}, {"a": 3.0}, {"a": -1.0, "b": 5.0}]
    img = heat_columns(steps, norms, ["a", "b"], right=10.0, columns=10)  # columns [0,1), [1,2), ...
    assert list(img[0, :5]) == [1.0, 1.0, 1.0, 3.0, 3.0]  # step 4 from the column that ends at 4
    assert list(img[1, :3]) == [2.0, 2.0, 2.0] and np.isnan(img[1, 3:5]).all()  # 'b' is missing at step 4
    assert np.isnan(img[0, 5]) and img[1, 5] == 5.0  # -1 is not a norm
    assert np.isnan(img[:, 6:]).all()  # after the newest step


def test_bench_prints_one_parsable_line_per_tab(tiny):
    results = measure_all(0.6, preset=tiny, tabs=["Overview", "Gradients"], rounds=1)
    assert [r["tab"] for r in results] == ["Overview", "Gradients"]
    for r in results:
        m = LINE.match(line(r))
        assert m is not None, line(r)
        assert m["tab"] == r["tab"] and float(m["p95"]) == pytest.approx(r["heartbeat_p95_ms"], abs=0.05)
        assert float(m["rate"]) == pytest.approx(r["refreshes_per_second"], abs=0.05)
        assert float(m["training"]) == pytest.approx(100 * r["window_vs_headless"], abs=0.5)
        assert r["refreshes_per_second"] >= r["full_draws_per_second"] >= 0.0
        # and, under it, where the window's CPU went (its two threads), with the two speeds compared
        cost = cost_line(r)
        assert cost.startswith("    CPU of the window: Tk thread ") and " ms/s, drawing thread " in cost
        assert r["tk_cpu_ms_per_second"] > 0.0 and r["drawing_cpu_ms_per_second"] >= 0.0


def test_every_live_tab_fits_and_is_not_blank_at_both_sizes(harness, tiny, shots):
    """Screenshots of every tab that follows training, after a short run, at the default and the smallest size."""
    from PIL import Image

    from ui.layout import SMALLEST, WINDOW

    h = harness(tiny)
    h.steps(12)
    layout = h.app.layout
    for size in (WINDOW, SMALLEST):
        layout.resize(*size)
        for tab in (layout.overview, layout.gradients, layout.activations, layout.attention, layout.stepthrough,
                    layout.lesson_tabs["flash_trace"]):
            layout.select_tab(tab)
            h.pump(lambda t=tab: t.built and not t._need_full, 10)
            h.pump(timeout=0.5)
            png = shots / f"{size[0]}x{size[1]}-{tab.title}.png"
            import subprocess

            subprocess.run(["import", "-window", "root", "-crop", f"{size[0]}x{size[1]}+0+0", str(png)], check=True,
                           timeout=30)
            img = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
            _, counts = np.unique(img, axis=0, return_counts=True)
            assert len(counts) > 50 and counts.max() / counts.sum() < 0.9, (png, len(counts))
            canvas = tab.canvas.get_tk_widget()
            right = canvas.winfo_rootx() - h.root.winfo_rootx() + canvas.winfo_width()
            bottom = canvas.winfo_rooty() - h.root.winfo_rooty() + canvas.winfo_height()
            assert right <= size[0] and bottom <= size[1], (tab.title, size)


def test_tiled_attention_blits_each_pair_and_shows_its_scores(harness, tiny):
    h = harness(tiny)
    h.steps(1)
    tab = h.app.layout.lesson_tabs["flash_trace"]
    h.app.layout.select_tab(tab)
    assert h.pump(lambda: tab.trace is not None, 20)
    tab.mem_var.set(str(4 * 8 * 4))  # tiles of 4 keys (head size 8): a 4 x 4 grid of tiles on T = 16
    tab.restart()
    assert h.pump(lambda: tab._drawn is not None and not tab._need_full, 20) and tab.trace.n_steps > 3
    blits = tab.blits
    for _ in range(3):
        assert tab.step_tile()
        tab.finish_drawing()  # the last pair's draw (on the drawing thread) is on screen
        tab.last_blit = 0.0
        assert tab.refresh()
    tab.finish_drawing()
    assert tab.blits >= blits + 1  # the pairs are blitted (a full draw only when m or l leaves its axis)
    scores = np.where(tab.hidden, np.nan, tab.grid)
    finite = scores[np.isfinite(scores)]
    assert finite.size and tab.colours.norm.vmin == finite.min() and tab.colours.norm.vmax == finite.max()
    shown = np.asarray(tab.scores.get_array())  # RGBA bytes: the scores so far in viridis over their range
    assert np.array_equal(shown, tab.colours.to_rgba(np.ma.masked_invalid(scores), bytes=True))
    assert np.array_equal(shown[..., 3] > 0, np.isfinite(scores))  # a score not computed yet is clear
    (r0, _), (c0, c1) = tab.last.q_rows, tab.last.k_cols
    assert tab.tile.get_xy() == (c0 - 0.5, r0 - 0.5) and tab.tile.get_width() == c1 - c0
    assert np.array_equal(tab.m_line.get_ydata(), tab.m, equal_nan=True)
    assert tab.counters.cget("text").split("\n")[2].startswith(f"pair {tab.last.index + 1}/{tab.trace.n_steps}")
    full = tab.full_draws
    tab.restart()  # the same shape of walk: the figure is reused, the scores start empty again
    tab.last_blit = 0.0
    assert tab.refresh()
    tab.finish_drawing()
    assert tab.full_draws == full
    assert not np.asarray(tab.scores.get_array())[..., 3].any() and not tab.tile.get_visible()


def test_a_lesson_replayed_again_only_blits(harness):
    h = harness("optimizer-race")
    tab = h.app.layout.lesson_tabs["optimizer_race"]
    tab.steps_per_second = 2000.0
    assert h.pump(lambda: tab.result is not None and not tab.playing and tab.shown == tab.cfg.steps, 60)
    full = tab.full_draws
    tab.replay()
    tab.t0 -= 0.05  # 100 steps in
    tab.last_blit = 0.0
    assert tab.refresh()
    assert tab.full_draws == full and tab.blits >= 2
    path = tab.result[0]["Adam"][0]
    line = tab.lines["Adam"][0]
    assert len(line.get_xdata()) == tab.shown + 1 and np.array_equal(line.get_xdata(), path[:tab.shown + 1, 0])


def test_step_through_recolours_its_diagram_and_shows_the_phases_tensor(harness, tiny, shots):
    from matplotlib.colors import to_rgba

    from ui.plots.stepthrough import FILL, box_of

    h = harness(tiny)
    tab = h.app.layout.stepthrough
    h.app.layout.select_tab(tab)
    assert h.pump(lambda: tab.built and tab._drawn is not None)
    patches = dict(tab.patches)
    for i in range(3):
        h.app.layout.step_into_button.invoke()
        assert h.pump(lambda n=i: tab.phase is not None and tab.phase.index == n and tab._drawn[1] == id(tab.phase))
    v = tab.phase
    assert tab.patches == patches  # the same boxes, recoloured: the diagram was not rebuilt
    assert tab.patches[box_of(v.name)].get_facecolor() == to_rgba(FILL[v.kind])
    assert all(p.get_facecolor() == to_rgba("white") for b, p in tab.patches.items()
               if b not in {box_of(n) for n in h.app.phase_log[-3:]})
    t = v.tensors[0]
    shown = np.asarray(tab.preview_image.get_array(), dtype=float)
    assert np.array_equal(shown, t.preview.astype(float), equal_nan=True)
    assert tab.preview_image.get_clim() == (-float(np.nanmax(np.abs(t.preview))), float(np.nanmax(np.abs(t.preview))))
    h.pump(timeout=0.5)
    png = shots / "1280x800-Step-through-phase-3.png"
    import subprocess

    subprocess.run(["import", "-window", "root", "-crop", "1280x800+0+0", str(png)], check=True, timeout=30)


@pytest.mark.parametrize("name, scale", [("gradients", 1e4), ("activations", 3.0)])
def test_an_axis_that_grows_is_drawn_again_alone_and_looks_as_a_full_draw(harness, tiny, name, scale):
    """A record that moves one axes' limits (or colour scale) redraws those axes only, not the figure; the
    canvas then holds what a full draw makes (the same pixels but for a few antialiased edges)."""
    h = harness(tiny)
    h.steps(4)
    tab = shown_tab(h, getattr(h.app.layout, name))
    partial, full = tab.partial_draws, tab.full_draws
    tab.last_full = 0.0
    assert publish(h, tab, Record(next_record(h, scale=scale)))
    assert tab.partial_draws == partial + 1 and tab.full_draws == full + 1, "not a partial draw"
    after = np.asarray(tab.canvas.buffer_rgba()).astype(int).copy()
    tab.canvas.draw()  # the whole figure, and the animated artists over it
    whole = np.asarray(tab.canvas.buffer_rgba()).astype(int)
    differ = np.abs(after - whole).max(axis=2) > 40
    assert differ.mean() < 0.002, differ.mean()
