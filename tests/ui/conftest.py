"""A real X display for the window tests, and helpers that drive the app without a mainloop.

pytest-xvfb starts Xvfb from the `xvfb_*` settings in pyproject.toml (1280x1024x24). When the
display at hand is smaller or shallower (the plugin's own default is 800x600x16, which clips the
window and flattens its colours), these tests start their own Xvfb of the right size instead.
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import time
import tkinter as tk
from pathlib import Path

import pytest

WIDTH, HEIGHT, DEPTH = 1280, 1024, 24


def _display_ok() -> bool:
    """True when $DISPLAY is a screen of at least WIDTH x HEIGHT at DEPTH bits."""
    if not os.environ.get("DISPLAY") or shutil.which("xdpyinfo") is None:
        return False
    out = subprocess.run(["xdpyinfo"], capture_output=True, text=True, timeout=10).stdout
    dims = next((line.split()[1] for line in out.splitlines() if "dimensions:" in line), "0x0")
    depth = next((line.split()[-2] for line in out.splitlines() if "depth of root window:" in line), "0")
    w, h = (int(v) for v in dims.split("x"))
    return w >= WIDTH and h >= HEIGHT and int(depth) >= DEPTH


@pytest.fixture(scope="session", autouse=True)
def display():
    """A display the window fits on (the one pytest-xvfb started, or our own)."""
    if _display_ok():
        yield os.environ["DISPLAY"]
        return
    from pyvirtualdisplay import Display

    disp = Display(backend="xvfb", size=(WIDTH, HEIGHT), color_depth=DEPTH)
    disp.start()
    try:
        yield os.environ["DISPLAY"]
    finally:
        disp.stop()


def pump(root: tk.Tk, cond=lambda: False, timeout: float = 30.0) -> bool:
    """Runs the Tk loop by hand until cond() holds (True) or the timeout passes (False)."""
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        root.update()
        if cond():
            return True
        time.sleep(0.005)
    root.update()
    return bool(cond())


class Harness:
    """One app on its own Tk root, with the dialogs answered by the test."""

    def __init__(self, preset=None, snapshot_every: int = 10):
        from ui.app import build_app

        self.root = tk.Tk()
        self.app = build_app(self.root, preset, snapshot_every=snapshot_every)
        self.errors: list[str] = []
        self.questions: list[str] = []
        self.answer = True
        self.app.show_error = self.errors.append
        self.app.ask = lambda title, text: (self.questions.append(text), self.answer)[1]
        assert pump(self.root, lambda: self.app.info is not None, 60), "the model was never built"

    def pump(self, cond=lambda: False, timeout: float = 30.0) -> bool:
        """pump() on this app's root."""
        return pump(self.root, cond, timeout)

    def steps(self, n: int) -> None:
        """Runs n steps through Run N and waits for them."""
        target = self.app.step_count + n
        self.app.layout.n_var.set(str(n))
        self.app.layout.run_n_button.invoke()
        assert self.pump(lambda: self.app.step_count >= target and not self.app.running, 60)

    @property
    def session(self):
        """The worker's session (read while the worker is idle)."""
        return self.app.worker.session

    def close(self) -> None:
        """Closes the window and stops the worker."""
        self.app.close()


@pytest.fixture(autouse=True)
def _tk_objects_die_on_this_thread():
    """After every window test, a collection here: a Tk image or variable left in a cycle and collected
    later from another test's thread (the CUDA simulator's, a worker's) cannot delete itself there, and
    pytest reports the RuntimeError it ignores as a warning against that other test."""
    yield
    gc.collect()


@pytest.fixture
def harness():
    """Opens the app on a preset: harness(preset=None) -> Harness; closed after the test."""
    made: list[Harness] = []

    def make(preset=None, snapshot_every: int = 10) -> Harness:
        h = Harness(preset, snapshot_every)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()
    made.clear()
    # Tk objects (variables, images) must be freed on this thread: collected later from a worker or race
    # thread, each one would wait a second for a main loop that is not running
    gc.collect()


@pytest.fixture
def shots(tmp_path_factory) -> Path:
    """Where screenshots go (kept by pytest under its temporary folder for a person to look at)."""
    return tmp_path_factory.mktemp("screenshots")


# a preset small enough that a window test's step costs milliseconds on two cores
TINY = """\
name: ui-tiny
description: a very small model for the window tests
model: {d_model: 16, n_layer: 2, n_head: 2, seq_len: 16, norm: layernorm}
optim: {name: adamw, lr: 0.003, schedule: constant, grad_clip: 1.0}
train: {batch_size: 4, seed: 7, eval_every: 0, stats_every: 2, eval_batches: 1}
sampling: {max_new: 12, temperature: 0.8}
"""


@pytest.fixture
def tiny(tmp_path):
    """TINY written to a file: the preset path a window opens on."""
    path = tmp_path / "ui-tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    return str(path)
