"""A lesson's growing curves of one axes as two artists: one LineCollection for the lines, one PathCollection for
their markers.

A replay blits every curve of the figure on each frame, and each Line2D costs its own draw call, transform and
marker pass (about a millisecond each while the training thread runs: a tab of a dozen curves spent most of its
frame there). A `CurveSet` keeps each curve's style as Line2D would draw it (colour, width, dash, alpha,
round markers of a size in points) and hands them to its two collections when drawn. Each curve is a
`Curve` with Line2D's data methods (`set_data`, `get_data`, `get_xdata`, `get_ydata`), and a stand-in
`legend_handle()` for the legend. A curve breaks at missing values (NaN), as a Line2D does.
"""

from __future__ import annotations

import numpy as np
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.colors import to_rgba
from matplotlib.lines import Line2D
from matplotlib.markers import MarkerStyle
from matplotlib.transforms import IdentityTransform

from ui.plots.artist_sets import finite_runs

MARKER_SIZE = {"o": 1.0, ".": 0.5}  # a marker's diameter against its `ms` (Line2D draws "." as a half-size circle)


class Curve:
    """One curve of a `CurveSet`: its data and style (read by the set when it is drawn)."""

    def __init__(self, owner: CurveSet, color, lw: float, ls: str, alpha: float, marker: str | None, ms: float,
                 label: str, mec=None):
        self.owner = owner
        self.color, self.lw, self.ls, self.alpha = color, lw, ls, alpha
        self.marker, self.ms, self.label, self.mec = marker, ms, label, mec
        self.x = self.y = np.empty(0)
        self.visible = True

    def set_data(self, x, y) -> None:
        self.x, self.y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
        self.owner.dirty = True

    def get_data(self) -> tuple[np.ndarray, np.ndarray]:
        return self.x, self.y

    def get_xdata(self) -> np.ndarray:
        return self.x

    def get_ydata(self) -> np.ndarray:
        return self.y

    def get_label(self) -> str:
        return self.label

    def set_label(self, label: str) -> None:
        self.label = label

    def set_visible(self, on: bool) -> None:
        self.visible = bool(on)
        self.owner.dirty = True

    def rgba(self) -> tuple:
        return to_rgba(self.color, self.alpha)

    def legend_handle(self) -> Line2D:
        """A line in this curve's style for the legend (not drawn itself)."""
        return Line2D([], [], color=self.color, lw=self.lw, ls=self.ls, alpha=self.alpha, marker=self.marker,
                      ms=self.ms, mec=self.mec, label=self.label)


class _Lines(LineCollection):
    """The set's lines: brings the collections up to date with the curves before each draw."""

    def __init__(self, owner: CurveSet, **kwargs):
        super().__init__([], **kwargs)
        self.owner = owner

    def draw(self, renderer) -> None:
        self.owner.commit()
        super().draw(renderer)


class _Markers(PathCollection):
    def __init__(self, owner: CurveSet, **kwargs):
        super().__init__([MarkerStyle("o").get_path().transformed(MarkerStyle("o").get_transform())], **kwargs)
        self.owner = owner

    def draw(self, renderer) -> None:
        self.owner.commit()
        super().draw(renderer)


class CurveSet:
    """The curves of one axes: `add(...)` each (as `ax.plot` would style it), then `set_data` on the curves;
    `artists` are the two things to blit. Limits are the tab's (the collections leave autoscaling alone)."""

    def __init__(self, ax, zorder: float = 2.0):
        self.ax = ax
        self.curves: list[Curve] = []
        self.dirty = True
        self._line_style = self._marker_style = None  # what the collections were last given
        # butt caps, as Line2D's dashes (its solid lines' projecting caps reach half a line width further at the ends:
        # one cap style serves the whole collection, and projecting ones would close a dash's gaps)
        self.lines = _Lines(self, zorder=zorder, capstyle="butt", joinstyle="round")
        self.markers = _Markers(self, zorder=zorder + 0.01, offsets=np.empty((0, 2)),
                                offset_transform=ax.transData)
        ax.add_collection(self.lines, autolim=False)
        ax.add_collection(self.markers, autolim=False)
        self.markers.set_transform(IdentityTransform())  # as `scatter`: the marker's path in points, at each offset

    @property
    def artists(self) -> list:
        return [self.lines, self.markers]

    def add(self, color, lw: float = 1.5, ls: str = "-", alpha: float = 1.0, marker: str | None = None,
            ms: float = 6.0, label: str = "", mec=None) -> Curve:
        """A curve styled as `ax.plot(..., color=, lw=, ls=, alpha=, marker=, ms=, mec=)` ("o" or "." markers;
        `ls=""`: markers only)."""
        if marker not in (None, "", *MARKER_SIZE):
            raise ValueError(f"a CurveSet draws round markers only, not {marker!r}")
        curve = Curve(self, color, lw, ls, alpha, marker or None, ms, label, mec)
        self.curves.append(curve)
        self.dirty = True
        return curve

    def commit(self) -> None:
        """Hands the curves' data to the collections (when something changed since the last time)."""
        if not self.dirty:
            return
        self.dirty = False
        segments, colours, widths, styles = [], [], [], []
        offsets, mcolours, edges, sizes = [], [], [], []
        for c in self.curves:
            if not c.visible:
                continue
            if c.ls not in ("", "none", "None") and c.lw > 0:
                for run in finite_runs(c.x, c.y):
                    if run.stop - run.start >= 2:
                        segments.append(np.column_stack([c.x[run], c.y[run]]))
                        colours.append(c.rgba())
                        widths.append(c.lw)
                        styles.append(c.ls)
            if c.marker is not None:
                ok = np.isfinite(c.x) & np.isfinite(c.y)
                if ok.any():
                    offsets.append(np.column_stack([c.x[ok], c.y[ok]]))
                    mcolours += [c.rgba()] * int(ok.sum())
                    edges += [c.rgba() if c.mec is None else to_rgba(c.mec, c.alpha)] * int(ok.sum())
                    sizes += [(c.ms * MARKER_SIZE[c.marker]) ** 2] * int(ok.sum())
        self.lines.set_segments(segments)
        style = (colours, widths, styles)
        if segments and style != self._line_style:  # the styles are set again only when they change (costly)
            self.lines.set_color(colours)
            self.lines.set_linewidth(widths)
            self.lines.set_linestyle(styles)
            self._line_style = style
        self.markers.set_offsets(np.concatenate(offsets) if offsets else np.empty((0, 2)))
        style = (mcolours, edges, sizes)
        if offsets and style != self._marker_style:
            self.markers.set_facecolor(mcolours)
            self.markers.set_edgecolor(edges)
            self.markers.set_linewidth(1.0)  # Line2D's marker edge (lines.markeredgewidth)
            self.markers.set_sizes(sizes)
            self._marker_style = style

    def legend_handles(self) -> list[Line2D]:
        return [c.legend_handle() for c in self.curves]
