"""Many curves, or many bars, of one axes drawn as one collection.

The Gradients tab draws a curve per tensor (dozens) on log axes, the Activations tab a bar per site
(two dozen, twice), and every blit draws them all. As Line2D or Rectangle artists each costs its own
draw call and transform (measured: about half a millisecond each while the training thread runs, most
of it waiting for the GIL that numpy's small products release); as one collection a set is one draw
call and one transform. A curve with missing values (NaN: a step without statistics, a zero on a log
axis) breaks there, as a Line2D does; a bar with a missing value is not drawn.
"""

from __future__ import annotations

import numpy as np
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.lines import Line2D


def finite_runs(x: np.ndarray, y: np.ndarray) -> list[slice]:
    """The slices of consecutive points where both coordinates are finite."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.all():
        return [slice(0, len(x))] if len(x) else []
    edges = np.flatnonzero(np.diff(np.r_[0, ok.astype(np.int8), 0]))  # starts and ends of the runs, alternating
    return [slice(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


class LineSet:
    """Named curves in fixed colours: `set_data(name, x, y)` for each, then `commit()` hands them to the
    collection (`artist`, the one thing to blit)."""

    def __init__(self, ax, colours: dict[str, tuple], lw: float = 0.9, alpha: float = 0.85):
        self.colours = dict(colours)
        self.lw, self.alpha = lw, alpha
        self.data = {name: (np.empty(0), np.empty(0)) for name in colours}
        self.artist = LineCollection([], linewidths=lw, alpha=alpha)
        ax.add_collection(self.artist, autolim=False)  # the tab sets its limits itself, with headroom

    def set_data(self, name: str, x, y) -> None:
        self.data[name] = (np.asarray(x, dtype=float), np.asarray(y, dtype=float))

    def xdata(self, name: str) -> np.ndarray:
        return self.data[name][0]

    def ydata(self, name: str) -> np.ndarray:
        return self.data[name][1]

    def commit(self) -> None:
        segments, colours = [], []
        for name, (x, y) in self.data.items():
            for run in finite_runs(x, y):
                segments.append(np.column_stack([x[run], y[run]]))
                colours.append(self.colours[name])
        self.artist.set_segments(segments)
        self.artist.set_color(colours)

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
