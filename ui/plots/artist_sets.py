"""Many curves, or many bars, of one axes drawn as one collection.

The Gradients tab draws a curve per tensor (dozens) on log axes, the Activations tab a bar per site
(two dozen, twice), and every blit draws them all. As Line2D or Rectangle artists each costs its own
draw call and transform (measured: about half a millisecond each while the training thread runs, most
of it waiting for the GIL that numpy's small products release); as one collection a set is one draw
call and one transform. The curves of one colour (a layer's tensors) are one path of several pieces,
so a log axis transforms a path per layer, not a path per tensor. A curve with missing values (NaN: a step
without statistics, a zero on a log axis) breaks there, as a Line2D does; a bar with a missing value is
not drawn.
"""

from __future__ import annotations

import functools

import numpy as np
from matplotlib.collections import Collection, PolyCollection
from matplotlib.lines import Line2D
from matplotlib.path import Path

LEGEND_ZORDER = 5  # matplotlib's Legend.zorder


def finite_runs(x: np.ndarray, y: np.ndarray) -> list[slice]:
    """The slices of consecutive points where both coordinates are finite."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.all():
        return [slice(0, len(x))] if len(x) else []
    edges = np.flatnonzero(np.diff(np.r_[0, ok.astype(np.int8), 0]))  # starts and ends of the runs, alternating
    return [slice(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


class WholeCurves(Collection):
    """A `LineSet`'s whole curves: their paths are made when they are asked for (by a full or an axes draw, on
    the drawing thread), not on every commit. Between those draws only the tail is drawn, so making the whole
    paths at each statistics step (28 curves of up to 2000 points, twice) was Tk-thread time, holding the
    GIL, for pictures nobody drew."""

    pending_paths = None  # what makes the paths from the last commit's curves, until they are drawn

    def get_paths(self):
        make, self.pending_paths = self.pending_paths, None
        if make is not None:
            make()
        return super().get_paths()


class LineSet:
    """Named curves in fixed colours: `set_data(name, x, y)` for each, then `commit()` hands them to the
    collections.

    Curves that grow at their right end are drawn as a trail (`Blitter.set_artists(..., trails=...)`): the
    whole curves (`artist`) are drawn by full and axes draws, so they are part of the blitter's background;
    what was added since (`tail`) is drawn into that background once (`Blitter._bake`), not every blit. A blit then
    costs the new pieces, not the whole history: drawn whole, the Gradients tab's two sets of 28 curves
    took 8 ms of a blit at 20 statistics steps and 18 ms at 125, all of it holding the GIL the training
    thread needs between kernels. A change that is not an extension (a history thinned or rewound) makes
    `commit` say that the axes must be drawn again."""

    def __init__(self, ax, colours: dict[str, tuple], lw: float = 0.9, alpha: float = 0.85):
        self.colours = dict(colours)
        self.lw, self.alpha = lw, alpha
        self.data = {name: (np.empty(0), np.empty(0)) for name in colours}
        style = {"facecolors": "none", "edgecolors": [], "linewidths": lw, "alpha": alpha,
                 "zorder": LEGEND_ZORDER + 0.5}  # over a legend, as an animated artist over its background
        self.artist = WholeCurves(**style)
        self.artist.set_paths([])
        self.tail = Collection(**style)
        self.tail.set_paths([])
        self.tail.set_animated(True)  # drawn by the blitter into its background only (`Blitter._bake`)
        for c in (self.artist, self.tail):
            ax.add_collection(c, autolim=False)  # the tab sets its limits itself, with headroom
        self._committed: dict = {}  # name -> (x, y) as the last commit drew them
        self._baked: dict = {}  # name -> (x, y) in the background
        self._baked_rows = None  # and as (x, ys) when they share one x
        self.pending = False  # the tail holds pieces not yet in the background

    def baked_whole(self) -> None:
        """The committed curves are in the background now: a full or axes draw drew `artist`, or the blitter drew
        the tail over the earlier ones."""
        self._baked = dict(self._committed)
        self._baked_rows = self._as_rows(self._baked)
        self.tail.set_paths([])
        self.pending = False

    def set_data(self, name: str, x, y) -> None:
        self.data[name] = (np.asarray(x, dtype=float), np.asarray(y, dtype=float))

    def xdata(self, name: str) -> np.ndarray:
        return self.data[name][0]

    def ydata(self, name: str) -> np.ndarray:
        return self.data[name][1]

    def set_rows(self, names: list[str], x, ys: np.ndarray) -> None:
        """Many curves over the same x at once: row i of `ys` (curves, points) is `names[i]`'s."""
        x = np.asarray(x, dtype=float)
        for name, y in zip(names, np.asarray(ys, dtype=float), strict=True):
            self.data[name] = (x, y)

    def commit(self) -> bool:
        """Hands the curves to the collections; True when they do not extend those in the background (a full
        or axes draw must show them)."""
        self._committed = dict(self.data)
        self.artist.pending_paths = functools.partial(self._set_paths, self.artist, self._committed)
        tails, extended = {}, True
        rows = self._as_rows(self.data)
        baked = self._baked_rows
        if rows is not None and (baked is not None or not self._baked):  # one x for all: the whole check at once
            x, ys = rows
            bx, bys = baked if baked is not None else (x[:0], ys[:, :0])
            n = len(bx)
            extended = len(x) >= n and np.array_equal(x[:n], bx) and np.array_equal(ys[:, :n], bys, equal_nan=True)
            if extended and len(x) > n:
                start = max(n - 1, 0)  # from the last point in the background: the curves go on from there
                tail_x = x[start:]  # one x object for all: the tail's paths are made at once too
                tails = {name: (tail_x, y) for name, y in zip(self.data, ys[:, start:], strict=True)}
        else:
            for name, (x, y) in self.data.items():
                bx, by = self._baked.get(name, (x[:0], y[:0]))
                n = len(bx)
                if len(x) < n or not (np.array_equal(x[:n], bx) and np.array_equal(y[:n], by, equal_nan=True)):
                    extended = False
                    break
                if len(x) > n:
                    start = max(n - 1, 0)
                    tails[name] = (x[start:], y[start:])
        self.pending = extended and bool(tails)
        self._set_paths(self.tail, tails if self.pending else {})
        return not extended

    @staticmethod
    def _as_rows(data: dict):
        """(x, ys (curves, points)) when every curve of `data` has the same x (as `set_rows` sets them), else None."""
        curves = list(data.values())
        if not curves or any(x is not curves[0][0] for x, _y in curves):
            return None
        return curves[0][0], np.stack([y for _x, y in curves])

    def _set_paths(self, artist, data: dict) -> None:
        """`artist`'s paths: one per colour, of the finite runs of its curves in `data`."""
        pieces: dict = {}  # colour -> the (points, codes) of its curves' finite runs
        groups: dict = {}  # colour -> its curves
        for name, xy in data.items():
            groups.setdefault(self.colours[name], []).append(xy)
        for colour, curves in groups.items():
            x = curves[0][0]
            if all(cx is x for cx, _y in curves) and len(x) >= 2:  # one x for all (a statistics step each)
                ys = np.stack([y for _x, y in curves])  # (curves, points)
                if np.isfinite(ys).all() and np.isfinite(x).all():  # the usual case: a whole piece each, at once
                    n, m = ys.shape
                    points = np.empty((n * m, 2))
                    points[:, 0] = np.tile(x, n)
                    points[:, 1] = ys.ravel()
                    codes = np.full(n * m, Path.LINETO, dtype=Path.code_type)
                    codes[::m] = Path.MOVETO
                    pieces[colour] = [(points, codes)]
                    continue
            for cx, cy in curves:
                self._add_runs(pieces.setdefault(colour, []), cx, cy)
        pieces = {c: runs for c, runs in pieces.items() if runs}
        artist.set_paths([Path(np.concatenate([p for p, _c in runs]), np.concatenate([c for _p, c in runs]))
                          for runs in pieces.values()])
        artist.set_edgecolor(list(pieces))

    @staticmethod
    def _add_runs(out: list, x: np.ndarray, y: np.ndarray) -> None:
        """The finite runs of one curve as (points, codes) pieces."""
        for run in finite_runs(x, y):
            if run.stop - run.start < 2:  # a lone point draws no line
                continue
            codes = np.full(run.stop - run.start, Path.LINETO, dtype=Path.code_type)
            codes[0] = Path.MOVETO  # each run starts a piece of its own
            out.append((np.column_stack([x[run], y[run]]), codes))

    def curves(self) -> list[np.ndarray]:
        """What is drawn, as (n, 2) point arrays: one a finite run of a curve, in the order they were set."""
        out = []
        for path in self.artist.get_paths():
            starts = np.flatnonzero(path.codes == Path.MOVETO)
            out += np.split(path.vertices, starts[1:])
        return out

    def legend_handle(self, name: str) -> Line2D:
        """A stand-in line for the legend, in `name`'s colour (not drawn itself)."""
        return Line2D([], [], color=self.colours[name], lw=self.lw, alpha=self.alpha)


class BarSet:
    """Bars at fixed x positions and colours, as `ax.bar` would place them: `set_heights(values)` moves their tops."""

    def __init__(self, ax, x, colours, width: float = 0.7):
        self.x = np.asarray(x, dtype=float)
        self.width = width
        self.heights = np.zeros(len(self.x))
        self.artist = PolyCollection([], facecolors=list(colours), edgecolors="none")
        ax.add_collection(self.artist, autolim=False)
        self.set_heights(self.heights)

    def set_heights(self, values) -> None:
        self.heights = np.asarray(values, dtype=float)
        h = np.where(np.isfinite(self.heights), self.heights, 0.0)  # a missing value: a bar of no height
        left, right = self.x - self.width / 2, self.x + self.width / 2
        zero = np.zeros_like(h)
        # (bars, 4 corners, xy): bottom left, top left, top right, bottom right
        verts = np.stack([np.column_stack([left, zero]), np.column_stack([left, h]),
                          np.column_stack([right, h]), np.column_stack([right, zero])], axis=1)
        self.artist.set_verts(verts)
