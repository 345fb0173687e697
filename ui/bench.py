"""How responsive the window stays while it trains, and what the window costs the training speed.

`measure(seconds, tab=...)` alternates slices of Run in the window (with that tab showing) and of the
same preset trained headless on the main thread, and reports:

* heartbeat: an `after(10)` timer on the Tk loop; the gaps between its calls (p50, p95, max, in ms).
  A responsive window keeps p95 under 50 ms.
* plot refreshes per second of the visible tab (blits and full draws), target at least 5.
* steps per second with the window and headless, and their ratio, target at least 0.8.

`python main.py bench --ui` prints these for the Overview tab (blitted curves) and the Gradients tab (the
heaviest full draws); they are numbers, not a pass/fail test. On a machine shared with other work the
headless and window slices see different loads; the alternation only evens out slow drifts.
"""

from __future__ import annotations

import time
import tkinter as tk

import numpy as np

from simulator.presets import DEFAULT_PRESET, load_preset
from simulator.session import TrainingSession

HEARTBEAT_MS = 10


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


def measure(seconds: float = 10.0, preset: str = DEFAULT_PRESET, rounds: int = 4, tab: str = "Overview") -> dict:
    """The responsiveness numbers (see the module docstring) for `seconds` of Run on `preset`.

    The window's Run and the headless reference alternate in `rounds` slices, so a machine whose load
    drifts (other programs) weighs on both alike. While the headless slice runs on the main thread, the
    window's worker is paused and its loop is not serviced: that slice is the headless CLI's loop.
    """
    from ui.app import build_app

    root = tk.Tk()
    app = build_app(root, preset)
    _pump(root, lambda: app.info is not None)
    app.step()
    _pump(root, lambda: app.step_count >= 1)
    bare = TrainingSession(load_preset(preset))
    bare.step()
    beats: list[float] = []
    shown = next(t for t in app.layout.tabs if t.title == tab)
    app.layout.select_tab(shown)
    _pump(root, lambda: shown.built, 10.0)
    tab = shown

    def beat():
        beats.append(time.perf_counter())
        beat.after_id = root.after(HEARTBEAT_MS, beat)

    win_steps = win_time = bare_steps = bare_time = 0.0
    blits = full = 0
    gaps: list[float] = []
    for _ in range(rounds):
        start = (app.step_count, tab.blits, tab.full_draws)
        app.run()
        _pump(root, lambda: app.running, 10.0)
        beats.clear()
        beat.after_id = root.after(HEARTBEAT_MS, beat)
        t0 = time.perf_counter()
        root.after(int(seconds / rounds * 1000), root.quit)
        root.mainloop()
        win_time += time.perf_counter() - t0
        root.after_cancel(beat.after_id)
        gaps += list(np.diff(np.asarray(beats)) * 1e3)
        win_steps += app.step_count - start[0]
        blits += tab.blits - start[1]
        full += tab.full_draws - start[2]
        app.pause()
        _pump(root, lambda: not app.running, 10.0)
        n, dt = _steps_for(bare, seconds / rounds)
        bare_steps, bare_time = bare_steps + n, bare_time + dt
    app.close()
    gaps_ms = np.asarray(gaps)
    headless = bare_steps / bare_time
    with_window = win_steps / win_time
    return {
        "preset": preset,
        "tab": shown.title,
        "seconds": round(win_time, 2),
        "heartbeat_p50_ms": float(np.percentile(gaps_ms, 50)) if gaps_ms.size else float("nan"),
        "heartbeat_p95_ms": float(np.percentile(gaps_ms, 95)) if gaps_ms.size else float("nan"),
        "heartbeat_max_ms": float(gaps_ms.max()) if gaps_ms.size else float("nan"),
        "refreshes_per_second": (blits + full) / win_time,
        "full_draws_per_second": full / win_time,
        "steps_per_second_window": with_window,
        "steps_per_second_headless": headless,
        "window_vs_headless": with_window / headless if headless > 0 else float("nan"),
    }


def report(r: dict) -> str:
    """The numbers as a few lines a person reads."""
    return "\n".join([
        f"window benchmark: preset {r['preset']}, Run for {r['seconds']} s with the {r['tab']} tab showing",
        f"  heartbeat (after {HEARTBEAT_MS} ms) gaps: p50 {r['heartbeat_p50_ms']:.1f} ms, "
        f"p95 {r['heartbeat_p95_ms']:.1f} ms (target < 50), max {r['heartbeat_max_ms']:.1f} ms",
        f"  plot refreshes: {r['refreshes_per_second']:.1f}/s (target >= 5), of which full draws "
        f"{r['full_draws_per_second']:.2f}/s",
        f"  training: {r['steps_per_second_window']:.2f} steps/s with the window, "
        f"{r['steps_per_second_headless']:.2f} headless: {100 * r['window_vs_headless']:.0f}% (target >= 80%)",
    ])


def main(seconds: float = 10.0) -> int:
    """`python main.py bench --ui`: prints the numbers; 2 when no window can open."""
    import sys

    try:
        for tab in ("Overview", "Gradients"):
            print(report(measure(seconds, tab=tab)), flush=True)
    except tk.TclError as err:
        print(f"error: the window cannot open ({err})", file=sys.stderr)
        return 2
    return 0
