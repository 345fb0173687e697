"""The long-context tab: its lines are the lesson's numbers (time, bytes, copy losses), revealed frame by frame,
and the naive line stops where the budget does, with a note that says so."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from simulator.lessons.long_context import STRATEGIES, run
from simulator.presets import dump_config
from tests.test_long_context import SMALL

# naive at T = 512 would need 2 MiB of (T, T) arrays: over this budget, so its line stops at 256
CFG = replace(SMALL, max_seq_len=512, memory_budget_mib=1)


def test_the_tab_draws_the_lessons_numbers(harness, tmp_path):
    h = harness()
    path = tmp_path / "small-long-context.yaml"
    path.write_text(dump_config(CFG), encoding="utf-8")
    tab = h.app.layout.lesson_tabs["long_context"]
    assert h.app.files.open_preset(str(path))
    assert h.pump(lambda: h.app.layout.current_tab() is tab and tab.result is not None, 120)
    tab.show_until(tab.steps_of())
    frames = tab.result  # digested; the frames themselves are recomputed (times differ from run to run)
    impls, curves, chance, budget, n_cost, n, _ = frames
    assert n_cost == 3 and n == 3 + len(STRATEGIES) and budget == 1
    T, ms = tab.time_lines["naive"].get_data()
    assert list(T) == [128, 256, 512] and np.isnan(ms[2]) and np.all(np.isfinite(ms[:2]))
    T, mib = tab.mem_lines["naive"].get_data()
    assert list(T) == [128, 256] and np.allclose(mib, [2 * t * t * 4 / 2**20 + 8 * t * 16 * 4 / 2**20 for t in T])
    assert any("naive not run at T \u2265 512" in t.get_text() for t in tab.ax_time.texts)
    fresh = run(CFG)  # the copy task is seeded: its losses are the same in a second run
    for f in fresh[n_cost:]:
        steps, losses = tab.loss_lines[f.strategy].get_data()
        assert list(steps) == [s for s, _ in f.curve] and np.allclose(losses, [v for _, v in f.curve], atol=1e-6)
    tab.show_until(n_cost)  # the sweep shown, no strategy yet
    assert all(len(line.get_xdata()) == 0 for line in tab.loss_lines.values())
    # then the curves grow an evaluation a tick, one strategy after the other, as they trained
    first, second = fresh[n_cost].curve, fresh[n_cost + 1].curve
    assert tab.steps_of() == n_cost + sum(len(f.curve) for f in fresh[n_cost:])
    tab.show_until(n_cost + len(first) + 2)
    assert list(tab.loss_lines[STRATEGIES[0]].get_xdata()) == [s for s, _ in first]
    assert list(tab.loss_lines[STRATEGIES[1]].get_xdata()) == [s for s, _ in second[:2]]
    assert all(len(tab.loss_lines[s].get_xdata()) == 0 for s in STRATEGIES[2:])
    assert h.errors == []
