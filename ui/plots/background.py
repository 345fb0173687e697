"""Figures drawn on a thread of their own, so the Tk loop keeps answering while a figure draws.

A tab's figure is drawn into its Agg buffer (matplotlib's own drawing: ticks, texts, lines, images), then
copied into the Tk photo image on screen. The first part is most of the cost (a blit of a four-axes tab
is 15-20 ms of CPU, a full draw 150-350 ms) and needs no Tk; the copy is a few milliseconds and must run
on the Tk thread, which alone may touch Tk. While training runs, the training thread takes the GIL
between its kernels, so a draw on the Tk thread took about twice its CPU time in wall time, and the window
answered nothing for that long (the Gradients tab: heartbeat p95 39 ms, max 317 ms). Drawn here instead,
the Tk thread only sets the artists' data before and copies the pixels after.

The rules that keep this safe, kept by `PlotTab` (ui.plots.base):

* one draw per tab at a time, and while it runs the tab's figure is this thread's alone: the Tk thread
  neither refreshes the tab (the poll skips it) nor draws, resizes or changes it (`PlotTab.finish_drawing`
  waits for the draw first: a resize, a new session, a language switch, an export, a forced refresh);
* the thread touches no Tk object (it would wait for the Tk thread: a deadlock if that one waits here);
* matplotlib keeps one FreeType font object per thread, so texts drawn here and on the Tk thread at the
  same time (another figure's) do not share one;
* no garbage is collected here (`gc` is off while a job runs): a Tk object freed on this thread would call
  into Tk from it, and wait for a Tk thread that may be waiting for this draw.
"""

from __future__ import annotations

import gc
import queue
import threading
import time
import traceback
from collections.abc import Callable


class DrawJob:
    """One draw: `draw()` runs on the drawing thread and returns what the Tk thread copies to the screen."""

    def __init__(self, draw: Callable[[], object]):
        self.draw = draw
        self.done = threading.Event()
        self.result: object = None
        self.error: BaseException | None = None
        self.seconds = 0.0  # the draw's wall time
        self.cpu_seconds = 0.0  # and its CPU time on the drawing thread

    def run(self) -> None:
        t0, c0 = time.perf_counter(), time.thread_time()
        collecting = gc.isenabled()
        gc.disable()  # the whole process's automatic collection waits for the end of the draw (see above)
        try:
            self.result = self.draw()
        except Exception as err:  # noqa: BLE001 - a bug in a draw: the Tk thread reports it and draws fully
            self.error = err
            traceback.print_exc()
        finally:
            if collecting:
                gc.enable()
            self.seconds = time.perf_counter() - t0
            self.cpu_seconds = time.thread_time() - c0
            self.done.set()


class FigureDrawer:
    """The drawing thread, started on the first job; jobs run one after another in the order given."""

    def __init__(self):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.cpu_seconds = 0.0  # the CPU time of every job so far (the window benchmark reads it)
        self.jobs = 0

    def submit(self, draw: Callable[[], object]) -> DrawJob:
        job = DrawJob(draw)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="figure-drawer", daemon=True)
                self._thread.start()
        self._jobs.put(job)
        return job

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            job.run()
            self.cpu_seconds += job.cpu_seconds
            self.jobs += 1


DRAWER = FigureDrawer()  # one for the process: one tab is on screen at a time
