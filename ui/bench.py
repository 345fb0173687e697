"""How responsive the window stays while it trains, tab by tab, and what the window costs the training speed.

`measure_all(seconds)` opens one window on the default preset and, for every tab that shows training
(Overview, Gradients, Activations, Attention, Step-through) and every lesson tab that plays frames
(while it replays), alternates slices of Run with that tab showing and slices of the same preset
trained headless on the main thread. For each tab it reports:

* heartbeat: an `after(10)` timer on the Tk loop; the gaps between its calls (p50, p95, max, in ms);
* plot refreshes per second of the visible tab (blits and full draws), and of those the full draws;
* steps per second with the window against headless, as a percentage: the median over the rounds of each
  window slice against the headless slice right after it.

`python main.py bench --ui` prints one line per tab, in the stable form that `LINE` parses:

    TAB: heartbeat p50 X ms, p95 Y ms, max Z ms; refreshes R/s (full draws F/s); training W % of headless

Under each, an indented line says where the window's CPU went while that tab trained (its Tk thread's and its
drawing thread's, ms a second) beside the two speeds.

They are numbers, not a pass/fail test (the targets: >= 5 refreshes/s, p95 < 30 ms, max < 100 ms,
>= 90 %). On a machine shared with other work the headless and window slices see different loads; the
alternation evens out slow drifts, and the median keeps a round that a passing load spoiled from moving
the number.
"""

from __future__ import annotations

import gc
import math
import re
import time
import tkinter as tk

import numpy as np

from simulator.i18n import _
from simulator.presets import DEFAULT_PRESET, load_preset
from simulator.session import TrainingSession
from ui.plots.background import DRAWER
from ui.timer import Timer

HEARTBEAT_MS = 10
ROUNDS = 6  # window / headless slice pairs per tab: the training share is their median
TRAINING_TABS = ("Overview", "Gradients", "Activations", "Attention", "Step-through")
LINE = re.compile(r"^(?P<tab>[^:]+): heartbeat p50 (?P<p50>[\d.]+) ms, p95 (?P<p95>[\d.]+) ms, max (?P<max>[\d.]+) "
                  r"ms; refreshes (?P<rate>[\d.]+)/s \(full draws (?P<full>[\d.]+)/s\); training (?P<training>[\d.]+) "
                  r"% of headless$")


def _steps_for(session: TrainingSession, seconds: float) -> tuple[int, float]:
    """Steps a bare session takes in `seconds` on this thread: (steps, elapsed)."""
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        session.step()
        n += 1
    return n, time.perf_counter() - t0


def _pump(root: tk.Tk, cond, timeout: float = 60.0) -> None:
    end = time.perf_counter() + timeout
    while not cond() and time.perf_counter() < end:
        root.update()
        time.sleep(0.005)


def playing_tabs(app) -> list:
    """The lesson tabs that play frames: those with a replay loop (`replay`) or a Play button (`toggle_play`)."""
    return [t for t in app.layout.lesson_tabs.values() if hasattr(t, "replay") or hasattr(t, "toggle_play")]


def _keep_playing(tab) -> None:
    """Starts (or restarts, once it has ended) a lesson tab's playing, so it plays through the whole slice."""
    if hasattr(tab, "replay"):
        if tab.result is not None and not tab.playing:
            tab.replay()
    elif hasattr(tab, "toggle_play"):
        if tab.trace is not None and (tab.trace.done or not tab.playing):
            if tab.trace.done:
                tab.restart()
            tab.toggle_play()


def _ready(tab) -> bool:
    """A lesson tab has something to play (its lesson computed, or q, k, v loaded)."""
    if hasattr(tab, "replay"):
        return tab.result is not None
    if hasattr(tab, "toggle_play"):
        return tab.trace is not None
    return True


def measure_tab(app, bare: TrainingSession, tab, seconds: float, rounds: int = ROUNDS) -> dict:
    """The numbers (see the module docstring) for one tab, in `rounds` alternating slices of `seconds` in all.

    The training share is the median over rounds of (steps/s with the window) / (steps/s headless right
    after it): each round compares two neighbouring slices, so a load that comes and goes on a shared
    machine spoils one round, not the number."""
    root = app.root
    app.layout.select_tab(tab)
    _pump(root, lambda: tab.built and _ready(tab), 60.0)
    beats: list[float] = []
    lesson = tab.title not in TRAINING_TABS

    def beat():
        beats.append(time.perf_counter())
        if lesson:
            _keep_playing(tab)
        timer.start(HEARTBEAT_MS)

    timer = Timer(root, beat)  # registered once: the heartbeat itself costs the Tk thread next to nothing
    win_steps = win_time = bare_steps = bare_time = 0.0
    tk_cpu = drawer_cpu = 0.0
    blits = full = 0
    gaps: list[float] = []
    shares: list[float] = []  # per round: window steps/s over headless steps/s
    for _round in range(rounds):
        app.run()
        _pump(root, lambda: app.running, 10.0)
        start = (app.step_count, tab.blits, tab.full_draws)
        beats.clear()
        timer.start(HEARTBEAT_MS)
        c0, d0 = time.thread_time(), DRAWER.cpu_seconds
        t0 = time.perf_counter()
        root.after(int(seconds / rounds * 1000), root.quit)
        root.mainloop()
        slice_time = time.perf_counter() - t0
        tk_cpu += time.thread_time() - c0
        drawer_cpu += DRAWER.cpu_seconds - d0
        win_time += slice_time
        timer.cancel()
        gaps += list(np.diff(np.asarray(beats)) * 1e3)
        slice_steps = app.step_count - start[0]
        win_steps += slice_steps
        blits += tab.blits - start[1]
        full += tab.full_draws - start[2]
        app.pause()
        _pump(root, lambda: not app.running, 10.0)
        n, dt = _steps_for(bare, seconds / rounds)
        bare_steps, bare_time = bare_steps + n, bare_time + dt
        if n:
            shares.append((slice_steps / slice_time) / (n / dt))
    gaps_ms = np.asarray(gaps)
    headless = bare_steps / bare_time
    with_window = win_steps / win_time
    return {
        "tab": tab.title,
        "seconds": round(win_time, 2),
        "heartbeat_p50_ms": float(np.percentile(gaps_ms, 50)) if gaps_ms.size else float("nan"),
        "heartbeat_p95_ms": float(np.percentile(gaps_ms, 95)) if gaps_ms.size else float("nan"),
        "heartbeat_max_ms": float(gaps_ms.max()) if gaps_ms.size else float("nan"),
        "refreshes_per_second": (blits + full) / win_time,
        "full_draws_per_second": full / win_time,
        "steps_per_second_window": with_window,
        "steps_per_second_headless": headless,
        "window_vs_headless": float(np.median(shares)) if shares else float("nan"),
        "window_vs_headless_spread": (float(min(shares)), float(max(shares))) if shares else (math.nan, math.nan),
        "tk_cpu_ms_per_second": 1e3 * tk_cpu / win_time,
        "drawing_cpu_ms_per_second": 1e3 * drawer_cpu / win_time,
    }


def measure_all(seconds: float = 6.0, preset: str = DEFAULT_PRESET, tabs: list[str] | None = None, rounds: int = ROUNDS,
                on_result=None) -> list[dict]:
    """`measure_tab` for every training tab and every playing lesson tab (or those titled in `tabs`), one window.

    `on_result(r)` is called after each tab (the command prints its line as soon as it is measured).
    """
    from ui.app import build_app

    root = tk.Tk()
    app = build_app(root, preset)
    app.show_error = lambda text: None  # a dialog would wait for a person
    _pump(root, lambda: app.info is not None)
    app.step()
    _pump(root, lambda: app.step_count >= 1)
    bare = TrainingSession(load_preset(preset))
    bare.step()
    shown = [t for t in app.layout.tabs if t.title in TRAINING_TABS] + playing_tabs(app)
    if tabs is not None:
        shown = [t for t in shown if t.title in tabs]
    results = []
    try:
        for tab in shown:
            r = measure_tab(app, bare, tab, seconds, rounds)
            r["preset"] = preset
            results.append(r)
            if on_result is not None:
                on_result(r)
    finally:
        app.close()
        # Tk variables must be freed on this thread: collected later from another one, each would wait for a loop
        gc.collect()
    return results


def measure(seconds: float = 10.0, preset: str = DEFAULT_PRESET, rounds: int = 4, tab: str = "Overview") -> dict:
    """The numbers of one tab (the whole of `measure_all` for one title)."""
    return measure_all(seconds, preset, tabs=[tab], rounds=rounds)[0]


def line(r: dict) -> str:
    """One tab's numbers in the stable form `LINE` parses."""
    return (f"{r['tab']}: heartbeat p50 {r['heartbeat_p50_ms']:.1f} ms, p95 {r['heartbeat_p95_ms']:.1f} ms, "
            f"max {r['heartbeat_max_ms']:.1f} ms; refreshes {r['refreshes_per_second']:.1f}/s "
            f"(full draws {r['full_draws_per_second']:.1f}/s); "
            f"training {100 * r['window_vs_headless']:.0f} % of headless")


def cost_line(r: dict) -> str:
    """Where the window's CPU went while that tab trained (an indented line under the stable one)."""
    return (f"    CPU of the window: Tk thread {r['tk_cpu_ms_per_second']:.0f} ms/s, drawing thread "
            f"{r['drawing_cpu_ms_per_second']:.0f} ms/s; {r['steps_per_second_window']:.1f} steps/s with the window, "
            f"{r['steps_per_second_headless']:.1f} headless")


def main(seconds: float = 6.0, tabs: list[str] | None = None) -> int:
    """`python main.py bench --ui`: prints one line per tab (or per tab titled in `tabs`); 2 when no window can open.

    `python -m ui.bench [--seconds S] [--tab TITLE ...]` measures some tabs only, for a before and after.
    """
    import sys

    try:
        print(f"window benchmark: preset {DEFAULT_PRESET}, {seconds:g} s of Run per tab, alternating with headless "
              "training (targets: >= 5 refreshes/s, p95 < 30 ms, max < 100 ms, >= 90 % of headless)", flush=True)
        results = measure_all(seconds, tabs=tabs, on_result=lambda r: print(f"{line(r)}\n{cost_line(r)}", flush=True))
        if not results:
            print(_("error: {message}").format(message=_("no tab is titled {titles!r}").format(
                titles=", ".join(tabs or []))), file=sys.stderr)
            return 2
        headless = float(np.mean([r["steps_per_second_headless"] for r in results]))
        every = load_preset(DEFAULT_PRESET).train.stats_every
        print(f"headless training: {headless:.1f} steps/s; statistics every {every} steps, so Gradients, "
              f"Activations and Attention have at most {headless / every:.1f} new states/s to show", flush=True)
    except tk.TclError as err:
        print(_("error: {message}").format(message=_("the window cannot open ({why})").format(why=err)),
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m ui.bench", description="the window benchmark, for some tabs")
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds of Run per tab (default 6)")
    parser.add_argument("--tab", action="append", help="a tab's title, as the window shows it (repeatable)")
    args = parser.parse_args()
    sys.exit(main(args.seconds, args.tab))
