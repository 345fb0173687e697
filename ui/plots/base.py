"""What every plot tab shares: a lazily built Figure on a Tk canvas, throttled full draws, and blitting.

A full `canvas.draw()` costs tens of milliseconds; blitting the few artists that changed costs a few.
So a tab builds its artists once, then only sets their data (`Line2D.set_data`, `AxesImage.set_data`,
`Rectangle.set_height`, `StepPatch.set_data`, texts) and blits them (`Blitter`, `PlotTab.present`) while
its axis limits, ticks and colour bars hold. It draws fully only when those must change, at most
`FULL_DRAW_HZ` times per second, and limits grow with headroom (`grow_limits`, `x_limit`,
`symmetric_limit`, `count_limit`) so that stays rare. Tabs draw only while they are visible; a hidden
tab just notes that it is stale.
"""

from __future__ import annotations

import functools
import math
import time
import tkinter as tk
import traceback
from tkinter import ttk

import matplotlib

matplotlib.use("Agg")  # the window embeds Agg canvases itself; never a pyplot window
import numpy as np  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.backends.backend_tkagg import FigureCanvasTkAgg  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.layout_engine import PlaceHolderLayoutEngine  # noqa: E402
from matplotlib.ticker import LogLocator  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from simulator.i18n import _, language  # noqa: E402
from ui.plots.background import DRAWER  # noqa: E402
from ui.plots.textcache import GlyphText, glyph_text  # noqa: E402
from ui.plots.ticks import glyph_ticks, plain_log_labels  # noqa: E402
from ui.protocol import Ready  # noqa: E402
from ui.timer import Timer  # noqa: E402

matplotlib.rcParams.update({"font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "legend.fontsize": 7,
                            "xtick.labelsize": 7, "ytick.labelsize": 7, "figure.dpi": 100})

# Chinese text: DejaVu Sans has no CJK glyphs; matplotlib falls back glyph by glyph along font.sans-serif
CJK_FAMILIES = ("Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei",
                "Microsoft YaHei", "SimHei", "PingFang SC", "Heiti SC", "Noto Sans CJK JP")


def use_language_fonts(code: str) -> list[str]:
    """An installed CJK family after the generic one in `font.family`, in either language (a figure made before a
    switch to Chinese then draws it too): matplotlib falls back along that list glyph by glyph, so Latin text
    keeps its look (DejaVu Sans). Returns it ([] when none is installed). For Chinese, a CJK font installed
    after matplotlib made its font cache is added from the system's font folders first."""
    known = {f.name for f in font_manager.fontManager.ttflist}
    if code.startswith("zh") and not known.intersection(CJK_FAMILIES):
        for path in font_manager.findSystemFonts():
            name = path.rsplit("/", 1)[-1].lower()
            if any(k in name for k in ("cjk", "wqy", "sourcehan", "msyh", "simhei", "pingfang")):
                try:
                    font_manager.fontManager.addfont(path)
                except (OSError, RuntimeError, ValueError):  # a file FreeType cannot read: the next one
                    continue
        known = {f.name for f in font_manager.fontManager.ttflist}
    found = [f for f in CJK_FAMILIES if f in known][:1]  # one is enough: every glyph it lacks, the next lacks too
    families = list(matplotlib.rcParams["font.family"])
    matplotlib.rcParams["font.family"] = [*[f for f in families if f not in CJK_FAMILIES], *found]
    return found


def monospace() -> list[str]:
    """The family list for monospaced text: a generic family resolves to one font, so the CJK fallback that
    `use_language_fonts` put in font.family is named after it (else Chinese in a table draws as empty boxes)."""
    return ["monospace", *[f for f in matplotlib.rcParams["font.family"] if f in CJK_FAMILIES]]


def fall_back_to(fig, families: list[str]) -> None:
    """Gives every text of `fig` made before the switch (whose family has no such fallback) these families."""
    if not families:
        return
    from matplotlib.text import Text

    for t in fig.findobj(Text):
        own = list(t.get_fontfamily())
        if not any(f in own for f in families):
            t.set_fontfamily([*own, *families])


use_language_fonts(language())

FULL_DRAW_HZ = 3.0
NOTE_FONT = ("DejaVu Sans", 8)  # a lesson's description above its plots
DRAW_DUTY = 6.0  # after a full draw of d seconds, the next waits at least DRAW_DUTY * d (at most ~15% of the loop)
# Titles at a fixed height: nothing is drawn above these axes, and placing a title automatically measures
# every tick label of its axes on each full draw (a fifth of a full draw of the Gradients tab)
TITLE_Y = 1.0
# 8 a second (6.25 in effect: draws land on 40 ms polls) is above the 5 the tabs aim at, and each blit more takes
# the GIL from the training thread for a few milliseconds
BLIT_HZ = 8.0
STATS_BLIT_HZ = 12.0  # tabs that draw statistics steps only (see `PlotTab.blit_hz`)
# and how many statistics steps a second such a tab asks for while it is on screen (`PlotTab.statistics_per_second`)
STATS_DISPLAY_HZ = 6.5
DRAW_WATCH_MS = 3  # how often the Tk thread looks whether a background draw is done (ui.plots.background)
WHOLE = "whole"  # a draw's result: copy the whole figure to the screen
OVERFLOW_SLACK = 1.0  # pixels of ink past the figure's edge, beyond what its layout left, that lay it out again
STEP_TEXT = {"fontsize": 7, "color": "0.35"}  # the small "step N" beside a static title


class PlotTab:
    """One notebook tab; subclasses fill `build()` and `refresh()`."""

    title = "plot"
    full_draw_hz = FULL_DRAW_HZ  # heavy tabs draw less often
    # a tab that has something new on every record (curves, a lesson's frames); one drawing statistics steps
    # only, which come ~7 times a second, sets more: its data already limits it, and a cap near that rate
    # would skip every other one (draws land on 40 ms polls: 1/8 s is every 4th, 6.25 a second)
    blit_hz = BLIT_HZ
    # a tab that draws statistics steps asks the worker for this many a second while on screen (0: as the
    # preset's `train.stats_every` has them): at ~50 steps a second, every 10th step is under 5 a second
    statistics_per_second = 0.0
    # its periodic draws (`present` without force) on the drawing thread (ui.plots.background); forced ones,
    # and tabs that draw in other ways, stay on the Tk thread
    draws_in_background = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "refresh" in cls.__dict__:  # every refresh first lets a background draw finish: the figure is its
            cls.refresh = _after_drawing(cls.__dict__["refresh"])

    def __init__(self, app, notebook: ttk.Notebook):
        self.app = app
        self.frame = ttk.Frame(notebook)
        self.figure: Figure | None = None
        self.canvas: TabCanvas | None = None
        self.built = False
        self.preparing: ttk.Label | None = None  # the line shown while the tab is first built
        self.stale = True
        self.last_full = 0.0
        self.last_full_seconds = 0.0
        self.last_blit = 0.0
        self.full_draws = 0  # and partial ones (`present(only=...)`), which `partial_draws` counts
        self.partial_draws = 0
        self._owed_axes = None  # the axes a partial draw owes; None: the whole figure (when a draw is owed)
        self.blits = 0
        self._need_full = False  # a change needs a full draw that the throttle has not allowed yet
        self._layout_owed = False  # the last draw's ink left the frozen layout's figure: lay out and draw again
        self._job = None  # the background draw in flight (ui.plots.background.DrawJob), until it is on screen
        self._job_show = None  # what the Tk thread does with its result
        self._last_draw_seconds = 0.0  # the wall time of the last background blit (when to look first)
        self.clear()
        self.subscribe(app.bus)

    def subscribe(self, bus) -> None:
        """Asks `bus` for the worker's messages this tab draws (subclasses add theirs to this one)."""
        bus.subscribe(Ready, self.on_session)

    # ------------------------------------------------------------ building
    def ensure_built(self) -> None:
        """Builds the tab's widgets the first time it is shown (a faster start), saying so while it does.

        Of the two ways to keep a first look from being a blank tab, a "preparing" line is the one taken, not
        building every tab in idle time after launch: building a lesson's tab starts its computation in a
        thread, which would take a core from training for tabs a person may never open.
        """
        if not self.built:
            self.built = True
            shown = self._show_preparing()
            try:
                self.build()
                if self.app.info is not None:
                    self.setup(self.app.info)
            finally:
                if shown:  # once idle, after the first draw that the caller makes now: the line covers that too
                    self.frame.after_idle(self._hide_preparing)

    def _show_preparing(self) -> bool:
        """A line in the empty tab, painted before the build holds the Tk thread; False while the window is not up."""
        if not self.frame.winfo_toplevel().winfo_viewable():
            return False  # at launch: nothing is on screen to say it to yet
        self.preparing = ttk.Label(self.frame, text=_("Preparing the {tab} tab…").format(tab=_(self.title)),
                                   foreground="#555")
        self.preparing.place(relx=0.5, rely=0.4, anchor="center")  # placed: the tab's own packing is untouched
        self.frame.update_idletasks()  # map and paint it now: the build and the first draw block the loop
        return True

    def _hide_preparing(self) -> None:
        if self.preparing is not None:
            self.preparing.destroy()
            self.preparing = None

    def build(self) -> None:
        """Creates the figure and widgets (subclasses)."""

    def make_canvas(self, parent, figsize=(8, 5), layout: str | None = "constrained") -> Figure:
        """A Figure on a FigureCanvasTkAgg packed to fill `parent`.

        With the constrained layout, the layout is computed on the first draw, after a resize and after
        `relayout()`, then frozen: it costs as much as the rest of a draw, and most redraws only change data.
        """
        self.figure = Figure(figsize=figsize, layout=layout)
        self.canvas = TabCanvas(self.figure, master=parent)
        self.canvas.before_tk_draw = self.finish_drawing
        self.canvas.get_tk_widget().configure(highlightthickness=0, background="white")
        self.canvas.get_tk_widget().pack(fill="both", expand=True)
        if layout == "constrained":
            self.canvas.mpl_connect("resize_event", lambda e: self.relayout())
            self.canvas.mpl_connect("draw_event", self._freeze_layout)
        return self.figure

    def relayout(self) -> None:
        """Lays the figure out again on its next draw (its axes, labels or size changed)."""
        self.figure.set_layout_engine("constrained")

    def _freeze_layout(self, event) -> None:
        """After a draw with the layout engine on, freezes the layout (noting how far the ink then left the
        figure: what the layout could not fit). After a draw with it frozen, lays the figure out again on the
        next draw when the ink leaves the figure by more than that: longer tick labels came with new limits
        (an x axis that grew from 900 to 2500 steps), and the frozen layout would clip them at the edge."""
        if event.canvas is not self.canvas:
            return
        overflow = _overflow(self.figure.bbox, list(self.canvas.ink.values()))  # as this draw left it
        if not is_frozen(self.figure):
            self.canvas.laid_out_overflow = overflow
            self.figure.set_layout_engine("none")
        elif overflow > self.canvas.laid_out_overflow + OVERFLOW_SLACK:
            self.relayout()
            self._layout_owed = True

    # ------------------------------------------------------------ drawing
    def can_full_draw(self, now: float | None = None) -> bool:
        """True when a full draw is allowed now (at most FULL_DRAW_HZ per second)."""
        now = time.perf_counter() if now is None else now
        return now - self.last_full >= max(1.0 / self.full_draw_hz, DRAW_DUTY * self.last_full_seconds)

    def can_blit(self, now: float | None = None) -> bool:
        """True when a blit is allowed now (at most `blit_hz` per second)."""
        now = time.perf_counter() if now is None else now
        return now - self.last_blit >= 1.0 / self.blit_hz

    def full_draw(self) -> None:
        """Redraws the whole figure now."""
        t0 = time.perf_counter()
        self.full_draws += 1
        self.canvas.draw()
        self.last_full = time.perf_counter()
        self.last_full_seconds = self.last_full - t0

    # ------------------------------------------------------------ drawing on the drawing thread
    def drawing(self) -> bool:
        """True while a background draw of this tab is not on screen yet (its figure is not the Tk thread's)."""
        return self._job is not None

    def finish_drawing(self) -> None:
        """Waits for the background draw in flight, if any, and puts it on screen (the Tk thread's part)."""
        job, show = self._job, self._job_show
        if job is None:
            return
        job.done.wait()
        self._job = self._job_show = None
        if job.error is not None:  # printed by the job; the next refresh draws the whole figure again
            self._need_full = True
            self._owed_axes = None
            return
        try:
            show(job)
        except tk.TclError:  # the window closed while the figure drew
            pass

    def _watch_drawing(self) -> None:
        if self._job is None:
            return
        if self._job.done.is_set():
            try:
                self.finish_drawing()
            except Exception:  # noqa: BLE001 - a bug in one draw must not stop the window
                traceback.print_exc()
            return
        self._draw_watch.start(DRAW_WATCH_MS)

    def _draw_in_background(self, draw, show) -> None:
        """Runs `draw()` on the drawing thread, then `show(job)` on this one once it is done."""
        self._job_show = show
        self._job = DRAWER.submit(draw)
        if getattr(self, "_draw_watch", None) is None:
            self._draw_watch = Timer(self.frame, self._watch_drawing)
        self._draw_watch.cancel()  # a look still scheduled for a draw that a refresh already finished
        # the first look when a draw like the last one would be nearly done, then every few milliseconds
        self._draw_watch.start(max(DRAW_WATCH_MS, int(800 * self._last_draw_seconds)))

    def _agg_draw_and_blit(self, blitter) -> str | list:
        """The drawing thread's part of a blit: the artists over the background (a full draw when there is none)."""
        boxes = blitter.compose() if blitter is not None else None
        if boxes is None:
            self.canvas.draw_agg()
            return WHOLE
        return boxes

    def _show_drawn(self, job, full: bool) -> None:
        """The Tk thread's part: the drawn pixels to the screen, and the throttles' bookkeeping."""
        now = time.perf_counter()
        blitter = getattr(self, "blitter", None)
        if job.result == WHOLE or blitter is None:
            self.canvas.blit()
            full = True
        else:
            blitter.show(job.result)
        if full:
            self.full_draws += 1
            self.last_full = now
            self.last_full_seconds = job.seconds
        else:
            self.blits += 1
            self._last_draw_seconds = job.seconds
        self.last_blit = now

    def present(self, need_full: bool = False, force: bool = False, blit_while_owed: bool = False,
                only=None) -> bool:
        """Puts the artists the tab just updated on screen; True when something was drawn.

        A blit while the axes hold (limits, ticks, colour bars, layout); a full draw when `need_full` says they
        changed. A full draw waits for the throttle (`can_full_draw`) and stays owed until it happens. Until
        then the tab either blits its new data over the old axes (`blit_while_owed`: curves, where a moment
        of stale ticks misleads nobody) or draws nothing (False: the caller tries again on its next refresh),
        so that an image is never shown against a colour bar that does not belong to it. A tab whose data did
        not change since calls this again only once the owed full draw is allowed (no blit of the same data).

        `only`: the axes whose limits, ticks, titles or colour scale changed, when nothing else did. Then only
        those are drawn again (`Blitter.redraw_axes`: one axes costs a quarter to a half of a 4-axes figure),
        unless their boxes meet another's; what is owed from several calls adds up.
        """
        if self._layout_owed:  # a new layout moves every axes
            self._layout_owed = False
            need_full, only = True, None
        if need_full or force:
            if force or only is None:
                self._owed_axes = None  # the whole figure
            elif not self._need_full:
                self._owed_axes = set(only)
            elif getattr(self, "_owed_axes", None) is not None:
                self._owed_axes |= set(only)
        self._need_full = self._need_full or need_full or force
        background = self.draws_in_background and not force
        if self._need_full:
            if force or self.can_full_draw():
                owed = getattr(self, "_owed_axes", None)
                blitter = getattr(self, "blitter", None)
                if background:
                    self._need_full = False
                    self._owed_axes = None
                    self._draw_in_background(functools.partial(self._agg_full_draw, blitter, owed),
                                             functools.partial(self._show_drawn, full=True))
                    return True
                if owed and not force and blitter is not None and self._redraw_axes(blitter, owed):
                    return True
                self.full_draw()
                self._need_full = False
                return True
            if not blit_while_owed:
                return False
        blitter = getattr(self, "blitter", None)
        if background:
            self._draw_in_background(functools.partial(self._agg_draw_and_blit, blitter),
                                     functools.partial(self._show_drawn, full=False))
            return True
        if blitter is not None and blitter.blit():
            self.blits += 1
            self.last_blit = time.perf_counter()
            return True
        self.full_draw()  # no background yet: the first draw of these axes
        self._need_full = False
        return True

    def _agg_full_draw(self, blitter, owed) -> str | list:
        """The drawing thread's part of an owed draw: those axes alone when they can be, else the figure."""
        if owed and blitter is not None:
            boxes = blitter.compose_axes(list(owed))
            if boxes is not None:
                self.partial_draws += 1
                return boxes
        self.canvas.draw_agg()
        return WHOLE

    def _redraw_axes(self, blitter, axes) -> bool:
        """The owed axes drawn again over the background; timed and counted as a full draw (the throttle)."""
        t0 = time.perf_counter()
        if not blitter.redraw_axes(list(axes)):
            return False
        self.full_draws += 1
        self.partial_draws = getattr(self, "partial_draws", 0) + 1
        self.last_full = self.last_blit = time.perf_counter()
        self.last_full_seconds = self.last_full - t0
        self._need_full = False
        self._owed_axes = None
        return True

    def refresh(self, force: bool = False) -> bool:
        """Brings the tab up to date with the app's state; True when something was drawn (subclasses)."""
        return False

    def on_session(self, info) -> None:
        """A new session was built: forget the old run's data, and set the widgets up for the new one."""
        self.finish_drawing()
        self.stale = True
        self.clear()
        if self.built:
            self.setup(info)

    def clear(self) -> None:
        """Forgets the data of the previous session (subclasses)."""

    def setup(self, info) -> None:
        """Fits the tab's widgets to a session: choices of layers, tensors, sites (subclasses)."""

    def retranslate(self) -> None:
        """Sets the tab's own texts (figure and widgets) in the current language, or marks the artists that hold
        them to be built again on the next refresh (subclasses; called by `language_changed`)."""

    def language_changed(self) -> None:
        """The window's language changed: the figure's titles, labels, legends and cached texts are made again
        in it, and the tab draws fully once (now when it is on screen, else when it is next shown)."""
        if not self.built:
            return  # built later, in the language of then
        self.finish_drawing()
        families = use_language_fonts(language())
        self.retranslate()
        if self.figure is None:  # a tab of widgets only (the generated text): nothing to draw again
            return
        fall_back_to(self.figure, families)  # the titles and labels kept across the switch
        self.relayout()  # other words, other widths
        self._need_full = True
        self.stale = True
        if self.frame.winfo_ismapped():
            self.refresh(force=True)

    def cancel(self) -> None:
        """Stops background work of the tab (the window is closing)."""
        if getattr(self, "_cancel", None) is not None:
            self._cancel.set()
        self.finish_drawing()

    def wait_stopped(self, deadline: float) -> bool:
        """Waits (until the `time.perf_counter()` deadline) for the tab's cancelled background work to stop; True
        once it has (subclasses that have threads of their own)."""
        return True

    def export(self, path: str) -> None:
        """Writes the tab's figure as PNG or SVG (by the file's suffix)."""
        self.ensure_built()
        self.refresh(force=True)
        blitter = getattr(self, "blitter", None)
        artists = blitter.artists if blitter is not None else []
        for a in artists:  # animated artists are left out of a normal draw: put them in the file
            a.set_animated(False)
        try:
            self.figure.savefig(path, dpi=120 if path.lower().endswith(".png") else None)
        finally:
            for a in artists:
                a.set_animated(True)
            self.canvas.draw_idle()


class TabCanvas(FigureCanvasTkAgg):
    """A tab's Tk canvas whose draws and resizes on the Tk thread first let the tab's background draw finish
    (`before_tk_draw`): while one runs, the figure is the drawing thread's."""

    before_tk_draw = None
    laid_out_overflow = 0.0  # how far the ink left the figure after its last layout (what the layout could not fit)

    def __init__(self, figure, master=None):
        super().__init__(figure, master=master)
        # where each top-level axes has ink as last drawn: read after the draw, since once its limits change
        # its tick labels' extents move with them while their ink stays where it was (`Blitter.compose_axes`
        # wipes that ink). Its handler goes first, so the others' see this draw's.
        self.ink: dict = {}
        self.mpl_connect("draw_event", self._note_ink)

    def _note_ink(self, event) -> None:
        self.ink = drawn_extents(self.figure, event.renderer)

    def draw(self):
        if self.before_tk_draw is not None:
            self.before_tk_draw()
        self.draw_agg()
        self.blit()  # what FigureCanvasTkAgg.draw does after its Agg draw

    def draw_agg(self) -> None:
        """The figure drawn into the Agg buffer only (no Tk: the drawing thread's full draw)."""
        glyph_ticks(self.figure)
        FigureCanvasAgg.draw(self)

    def resize(self, event):
        if self.before_tk_draw is not None:
            self.before_tk_draw()
        super().resize(event)


def _after_drawing(refresh):
    """A tab's `refresh` that first puts its background draw in flight on screen (see `PlotTab.drawing`)."""

    @functools.wraps(refresh)
    def wrapped(self, *args, **kwargs):
        self.finish_drawing()
        return refresh(self, *args, **kwargs)

    return wrapped


class Blitter:
    """Redraws a few animated artists over a saved background; the background is retaken after each full draw.

    One per canvas: a tab that rebuilds its artists hands the new ones over with `set_artists`.
    """

    def __init__(self, canvas: TabCanvas, artists: list):
        self.canvas = canvas
        self.artists: list = []
        self.trails: list = []  # curve sets drawn into the background as they grow (artist_sets.LineSet)
        self.background = None
        self._last_region = None
        self.set_artists(artists)
        canvas.mpl_connect("draw_event", self._on_draw)

    def set_artists(self, artists: list, trails: tuple = ()) -> None:
        """The artists to blit from now on (animated: a full draw leaves them out of the background), and the
        trails: curve sets (`LineSet`) whose whole curves are in the background and whose new pieces are drawn
        into it once (`_bake`)."""
        for a in self.artists:
            if a not in artists:
                a.set_animated(False)
        self.artists = list(artists)
        self.trails = list(trails)
        for a in self.artists:
            a.set_animated(True)
        self.background = None  # the old background may hold the old artists' axes: draw fully first

    def _on_draw(self, event) -> None:
        if event is not None and event.canvas is not self.canvas:  # savefig draws on a file's canvas
            return
        self.background = self.canvas.copy_from_bbox(self.canvas.figure.bbox)
        for t in self.trails:
            t.baked_whole()
        self._last_region = None  # a full draw put the whole figure on screen
        self._draw_artists()

    def _bake(self, take_background: bool = True) -> list:
        """Draws the trails' new pieces into the restored background and (unless the caller does) takes it again;
        the boxes of their axes (what changed on screen), [] when none had any."""
        pending = [t for t in self.trails if t.pending]
        if not pending:
            return []
        fig = self.canvas.figure
        for t in pending:
            fig.draw_artist(t.tail)
            t.baked_whole()
        if take_background:
            self.background = self.canvas.copy_from_bbox(fig.bbox)
        return [b for b in (Bbox.intersection(t.tail.axes.bbox, fig.bbox) for t in pending) if b is not None]

    def _draw_artists(self) -> None:
        fig = self.canvas.figure
        for a in self.artists:
            if a.get_visible() and (a.axes is not None or a.figure is fig):  # axes' artists and figure texts
                fig.draw_artist(a)

    def _regions(self) -> list:
        """The parts of the canvas the artists may cover: their axes (clipped artists stay inside them, so each
        axes counts once) and the extents of those that are not clipped (titles, notes), overlapping boxes
        merged."""
        fig = self.canvas.figure
        renderer = self.canvas.get_renderer()
        boxes, seen = [], set()
        for a in self.artists:
            if not a.get_visible():
                continue
            if a.axes is not None and a.get_clip_on() and a.get_clip_box() is not None:
                if id(a.axes) not in seen:
                    seen.add(id(a.axes))
                    boxes.append(a.axes.bbox)
            else:
                boxes.append(a.get_window_extent(renderer).padded(2.0))  # and antialiased edges
        return merge_boxes([b for b in (Bbox.intersection(b, fig.bbox) for b in boxes) if b is not None])

    def show(self, boxes) -> None:
        """Copies a composed draw (`compose`, `compose_axes`) to the screen: these boxes, or the whole figure."""
        if boxes == WHOLE:
            self.canvas.blit()
        else:
            self._show(boxes)

    def _show(self, boxes: list) -> None:
        """Copies these boxes of the canvas to the screen: their union in one copy when it is not much larger
        than they are (each copy into Tk's image has a cost of its own: on a 4-axes tab, one copy of the
        union was measured at 2.3 ms of CPU, four of the axes at 3.7), else each."""
        boxes = merge_boxes(boxes)
        if not boxes:
            self.canvas.blit(self.canvas.figure.bbox)
            return
        union = Bbox.union(boxes)
        if union.width * union.height <= 1.5 * sum(b.width * b.height for b in boxes):
            self.canvas.blit(union)
            return
        for box in boxes:
            self.canvas.blit(box)

    def redraw_axes(self, axes: list) -> bool:
        """Draws these axes again (ticks, labels, titles, their static artists and inset colour bars) into the
        saved background, then the animated artists, and copies what changed to the screen: the cost of those
        axes, not of the figure. False, drawing nothing, when there is no background yet or their boxes, before
        or after, meet another axes' or a figure text (whose ink would be wiped): then draw fully."""
        boxes = self.compose_axes(axes)
        if boxes is None:
            return False
        self.show(boxes)
        return True

    def compose_axes(self, axes: list):
        """`redraw_axes` without the copy to the screen (no Tk: it may run on the drawing thread): the boxes to
        copy, WHOLE when the figure was drawn fully, None when nothing was drawn."""
        if self.background is None:
            return None
        canvas = self.canvas
        fig = canvas.figure
        renderer = canvas.get_renderer()
        tops = top_axes(fig)
        targets = []
        for a in axes:
            top = next((p for p in tops if p is a or a in p.child_axes), None)
            if top is None:
                return None
            if top not in targets:
                targets.append(top)
        ink = getattr(canvas, "ink", None)  # as last drawn (TabCanvas); a plain canvas reads the labels now

        def drawn(a):
            return ink[a] if ink is not None and a in ink else _drawn_extent(a, renderer)

        others = [drawn(a) for a in tops if a not in targets]
        others += [t.get_window_extent(renderer) for t in [*fig.texts, *fig.legends]
                   if t.get_visible() and not t.get_animated() and getattr(t, "get_text", lambda: "x")()]
        before = [drawn(a) for a in targets]  # the ticks and labels as last drawn, whatever the limits are now
        if any(b.overlaps(o) for b in before for o in others):
            return None
        glyph_ticks(fig)
        canvas.restore_region(self.background)
        buf = np.asarray(renderer.buffer_rgba())  # (height, width, 4), the top row first; writable
        face = (np.array(to_rgba(fig.get_facecolor())) * 255).round().astype(np.uint8)
        height, width = buf.shape[:2]
        for b in before:
            x0, x1 = max(0, int(math.floor(b.x0)) - 1), min(width, int(math.ceil(b.x1)) + 1)
            y0, y1 = max(0, int(math.floor(b.y0)) - 1), min(height, int(math.ceil(b.y1)) + 1)
            buf[height - y1:height - y0, x0:x1] = face
        for a in targets:
            a.draw(renderer)  # animated artists are left out, as in a full draw
        after = [_drawn_extent(a, renderer) for a in targets]
        if ink is not None:
            ink.update(zip(targets, after, strict=True))
        if any(b.overlaps(o) for b in after for o in others):  # longer labels reached a neighbour: start over
            canvas.draw_agg()  # the figure in Agg (its draw event retakes the background)
            return WHOLE
        if is_frozen(fig) and _overflow(fig.bbox, after) > getattr(canvas, "laid_out_overflow", 0.0) + OVERFLOW_SLACK:
            fig.set_layout_engine("constrained")  # longer labels leave the figure: lay it out again, draw it whole
            canvas.draw_agg()
            return WHOLE
        for t in self.trails:
            if t.tail.axes in targets:
                t.baked_whole()  # their axes drew the whole curves
        baked = self._bake(take_background=False)  # the other trails' new pieces, in the background taken now
        self.background = canvas.copy_from_bbox(fig.bbox)
        self._draw_artists()
        regions = self._regions()
        changed = [Bbox.intersection(Bbox.union([b, c]).padded(1.0), fig.bbox) for b, c in zip(before, after,
                                                                                               strict=True)]
        boxes = [b for b in changed if b is not None] + baked + regions + (self._last_region or [])
        self._last_region = regions
        return boxes

    def blit(self) -> bool:
        """Draws the artists over the background; False when there is no background yet (draw fully)."""
        boxes = self.compose()
        if boxes is None:
            return False
        self._show(boxes)
        return True

    def compose(self) -> list | None:
        """`blit` without the copy to the screen (no Tk: it may run on the drawing thread): the boxes to copy,
        None when there is no background yet."""
        if self.background is None:
            return None
        self.canvas.restore_region(self.background)
        baked = self._bake()
        self._draw_artists()
        regions = self._regions()
        # the regions of the last blit too: an artist that moved or shrank must be wiped where it was
        boxes = baked + regions + (self._last_region or [])
        self._last_region = regions
        return boxes


def is_frozen(fig) -> bool:
    """True when `fig` was laid out by the constrained layout and then frozen (`PlotTab.make_canvas`)."""
    return isinstance(fig.get_layout_engine(), PlaceHolderLayoutEngine)


def _overflow(frame: Bbox, boxes: list) -> float:
    """How many pixels the furthest of `boxes` reaches outside `frame` (0 when all are inside)."""
    return max([0.0] + [max(frame.x0 - b.x0, b.x1 - frame.x1, frame.y0 - b.y0, b.y1 - frame.y1) for b in boxes])


def top_axes(fig) -> list:
    """The visible axes of `fig` that are not another's inset (those count with their parent)."""
    return [a for a in fig.axes if a.get_visible() and not any(a in p.child_axes for p in fig.axes)]


def drawn_extents(fig, renderer) -> dict:
    """Each of `top_axes(fig)` -> `_drawn_extent`."""
    return {a: _drawn_extent(a, renderer) for a in top_axes(fig)}


def _drawn_extent(ax, renderer) -> Bbox:
    """Where `ax` has ink as it was last drawn (or just now): its box, its tick labels, axis labels and offset
    texts, titles, legend, texts, and its inset axes. Read from the artists' last positions: no new tick
    layout (unlike `get_tightbbox`). Tick labels out beside the axes (spare ticks from an older range) are
    left out."""
    boxes = [ax.bbox]
    bb = ax.bbox
    for axis, horizontal in ((ax.xaxis, True), (ax.yaxis, False)):
        if not axis.get_visible():
            continue
        for tick in [*axis.majorTicks, *axis.minorTicks]:
            for label in (tick.label1, tick.label2):
                if not (label.get_visible() and label.get_text()):
                    continue
                e = label.get_window_extent(renderer)
                centre = (e.x0 + e.x1) / 2 if horizontal else (e.y0 + e.y1) / 2
                lo, hi = (bb.x0, bb.x1) if horizontal else (bb.y0, bb.y1)
                if lo - 2 <= centre <= hi + 2:
                    boxes.append(e)
        for text in (axis.label, axis.offsetText):
            if text.get_visible() and text.get_text():
                boxes.append(text.get_window_extent(renderer))
    for text in (ax.title, ax._left_title, ax._right_title, *ax.texts):
        if text.get_visible() and text.get_text() and not text.get_animated():
            boxes.append(text.get_window_extent(renderer))
    legend = ax.get_legend()
    if legend is not None and legend.get_visible():
        boxes.append(legend.get_window_extent(renderer))
    for child in ax.child_axes:
        if child.get_visible():
            boxes.append(_drawn_extent(child, renderer))
    return Bbox.union(boxes)


def merge_boxes(boxes: list) -> list:
    """The boxes with every group of overlapping ones replaced by its union (identical ones once)."""
    out: list[list[float]] = []
    for box in boxes:
        x0, y0, x1, y1 = box.extents
        merged = True
        while merged:  # a union may now overlap one kept earlier
            merged = False
            for other in out:
                if x0 <= other[2] and other[0] <= x1 and y0 <= other[3] and other[1] <= y1:
                    out.remove(other)
                    x0, y0 = min(x0, other[0]), min(y0, other[1])
                    x1, y1 = max(x1, other[2]), max(y1, other[3])
                    merged = True
                    break
        out.append([x0, y0, x1, y1])
    return [Bbox.from_extents(*b) for b in out]


def grow_limits(current: tuple[float, float], lo: float, hi: float, log: bool = False,
                pad: float = 0.08) -> tuple[float, float] | None:
    """New limits when [lo, hi] leaves `current` (with headroom, so this is rare), else None."""
    if not (lo == lo and hi == hi) or lo == float("inf"):  # no finite data
        return None
    if log:
        lo, hi = max(lo, 1e-12), max(hi, 1e-12)
        if current[0] > 0 and current[0] <= lo and hi <= current[1]:
            return None
        return lo / 3.0, hi * 3.0
    if current[0] <= lo and hi <= current[1]:
        return None
    span = max(hi - lo, abs(hi) * 0.05, 1e-6)
    return lo - pad * span, hi + pad * 2.5 * span


def x_limit(step: float, current: float, planned: float = 0.0) -> float | None:
    """A right x limit for `step`, else None when it still fits: the planned run (`train.steps`) while it holds
    the step, then twice the step. Each growth is a full draw (new ticks, 100-200 ms of a 4-axes tab), so the
    axes start at the planned run's length and double after it: a run to ten times its plan redraws 4 times."""
    if step <= current:
        return None
    return max(10.0, float(planned)) if step <= planned else max(10.0, step * 2.0)


def planned_steps(app) -> float:
    """The planned run's length, where the step axes start (`x_limit`)."""
    return float(getattr(getattr(app.config, "train", None), "steps", 0) or 0)


def symmetric_limit(current: float, needed: float, shrink: float = 4.0, pad: float = 1.15) -> float | None:
    """A half-width for an axis centred on 0 (a histogram over [-m, m]) that holds `needed`, else None.

    It grows with headroom when the data leaves it, and shrinks only when the data fills less than 1/`shrink`
    of it (gradients shrink by orders of magnitude as a run trains: a fixed axis would show a spike).
    """
    if not (needed > 0 and math.isfinite(needed)):
        return None
    if current > 0 and needed <= current and needed * shrink >= current:
        return None
    return needed * pad


def count_limit(current: float, needed: float) -> float | None:
    """An upper limit for counts (a histogram's y) that holds `needed` with headroom, else None."""
    if not (needed > 0 and math.isfinite(needed)):
        return None
    if needed <= current:
        return None
    return needed * 2.0


def light_log_y(ax) -> None:
    """A log y axis with minor ticks at 2 and 5 of each decade and grid lines at the decades only.

    Gradient norms and update ratios span five to eight decades; with matplotlib's eight minor ticks a decade
    and a grid line at each, their ticks were most of a full draw of the axes (48 minor ticks on the ratio
    axes: 15 of its 60 ms)."""
    ax.set_yscale("log")
    ax.yaxis.set_minor_locator(LogLocator(base=10.0, subs=(2.0, 5.0)))
    plain_log_labels(ax)
    ax.grid(True, which="major", alpha=0.3)


def step_text(ax, text: str = "") -> GlyphText:
    """A small text at the right end of `ax`'s title row (the title stays static and centred): the step a
    statistics view shows, which changes on every refresh, drawn from glyph bitmaps (`GlyphText`)."""
    return glyph_text(ax, 1.0, TITLE_Y, text, transform=ax.transAxes + ax.titleOffsetTrans, ha="right",
                      va="baseline", **STEP_TEXT)


def message_on(ax, text: str, axis_off: bool = False):
    """A grey centred note in an empty axes (e.g. 'waiting for the first statistics step')."""
    if axis_off:
        ax.set_axis_off()
    return ax.text(0.5, 0.5, text, ha="center", va="center", color="#777", transform=ax.transAxes, wrap=True)


def combo(parent, label: str, values, width: int = 14, command=None) -> tuple[ttk.Combobox, tk.StringVar]:
    """A labelled readonly combobox packed left in `parent`."""
    ttk.Label(parent, text=label).pack(side="left", padx=(6, 2))
    var = tk.StringVar(parent)
    box = ttk.Combobox(parent, textvariable=var, values=list(values), state="readonly", width=width)
    box.pack(side="left")
    if command is not None:
        box.bind("<<ComboboxSelected>>", lambda e: command())
    return box, var


def wrap_to_width(label: ttk.Label, minimum: int = 200) -> ttk.Label:
    """`label` wraps its text at the width it is given (a note that would run past a narrow window's edge)."""
    label.bind("<Configure>", lambda e: label.configure(wraplength=max(minimum, e.width - 8)))
    return label
