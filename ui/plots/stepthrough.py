"""Step-through: the model as a diagram with the current phase highlighted, and an inspector for its tensors.

The diagram is built from the session's own phase list, so it always matches the step that runs:
one column per stage (data, embedding, each block, the output, the loss, the optimizer), ops top to
bottom in forward order. Blue arrows run forward on the left of the boxes, red arrows run backward
on the right. Phases already done in this step are tinted; the current one is filled.

The inspector lists every tensor the phase produced (in backward phases, gradients: 'd x') with its
shape and moments, and shows a small heatmap of the selected one.

The diagram is built once per session; a phase recolours its boxes and sets the preview image's data
in place, then draws (a full draw: the preview's colour bar changes with each tensor, but no new layout).
"""

from __future__ import annotations

from tkinter import ttk

import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.path import Path

from simulator.i18n import N_, _
from ui.plots.base import PlotTab, message_on, wrap_to_width
from ui.protocol import Phase, Record

FILL = {"forward": "#4c72b0", "backward": "#c44e52", "loss": "#8172b2", "clip": "#55a868", "update": "#55a868",
        "data": "#937860"}
TINT = {"forward": "#dbe4f3", "backward": "#f3dcdd", "loss": "#e6e1f1", "clip": "#dcefe0", "update": "#dcefe0",
        "data": "#ece4dc"}


# the diagram's column titles a person reads (a block's column is its name, 'block0')
COLUMN_TITLES = {"data": N_("data"), "embedding": N_("embedding"), "output": N_("output"), "loss": N_("loss"),
                 "optimizer": N_("optimizer")}
BOX_LABELS = {"head": N_("lm\nhead"), "norm_f": N_("final\nnorm"), "embed": N_("tok +\npos"),
              "batch": N_("batch\nids")}


def box_of(phase: str) -> str:
    """The diagram box a phase lights: 'forward.block0.attn' and 'backward.block0.attn' -> 'block0.attn'."""
    return phase.split(".", 1)[1] if phase.startswith(("forward.", "backward.")) else phase


def diagram_columns(phase_names: list[str]) -> list[tuple[str, list[str]]]:
    """(column title, boxes top to bottom) in forward order, from a session's phase names."""
    cols: list[tuple[str, list[str]]] = [("data", ["batch"])]
    for name in phase_names:
        if not name.startswith("forward."):
            continue
        box = box_of(name)
        title = box.split(".")[0] if box.startswith("block") else ("embedding" if box == "embed" else "output")
        if cols[-1][0] == title:
            cols[-1][1].append(box)
        else:
            cols.append((title, [box]))
    cols.append(("loss", ["loss"]))
    cols.append(("optimizer", [p for p in ("clip", "update") if p in phase_names]))
    return cols


def short_label(box: str, residual: bool) -> str:
    """What a box says: 'attn', 'mlp' (with a + when a residual add follows), 'norm1', 'lm head'."""
    op = box.split(".")[-1]
    if op in ("attn", "mlp") and residual:
        return f"{op}\n(+x)"
    return _(BOX_LABELS[op]) if op in BOX_LABELS else op


class StepThroughTab(PlotTab):
    """Diagram with the current phase, and the phase's tensors."""

    title = N_("Step-through")

    def build(self) -> None:
        bottom = ttk.Frame(self.frame)
        bottom.pack(side="bottom", fill="x")  # packed first: the table keeps its rows when the window is small
        top = ttk.Frame(self.frame)
        top.pack(side="top", fill="both", expand=True)
        self.make_canvas(top, figsize=(8, 3.6))
        self.caption = ttk.Label(bottom, text=_("Step into (F11) runs one phase of the step: forward op by op, the "
                                                "loss, backward in reverse, the clip and the update."), anchor="w")
        self.caption.pack(fill="x", padx=4)
        wrap_to_width(self.caption)
        cols = ("shape", "mean", "std", "min", "max")
        self.table = ttk.Treeview(bottom, columns=cols, height=5, selectmode="browse")
        self.table.column("#0", width=190, stretch=True)
        for c in cols:
            self.table.column(c, width=110 if c == "shape" else 80, anchor="e", stretch=True)
        self._headings()
        self.table.pack(fill="x", padx=4, pady=(0, 4))
        self.table.bind("<<TreeviewSelect>>", lambda e: self._select())
        self.selected = 0
        self.patches: dict[str, FancyBboxPatch] = {}
        self._diagram_for = None  # the session (Ready) the diagram was built for
        self._drawn = None

    def _headings(self) -> None:
        self.table.heading("#0", text=_("tensor"))
        for c, text in (("shape", _("shape")), ("mean", _("mean")), ("std", _("std")), ("min", _("min")),
                        ("max", _("max"))):
            self.table.heading(c, text=text)

    def retranslate(self) -> None:
        self._headings()
        if self.phase is None:
            self.caption.configure(text=_("Step into (F11) runs one phase of the step: forward op by op, the loss, "
                                          "backward in reverse, the clip and the update."))
        self._diagram_for = None  # the diagram is built again, its texts in the new language
        self._drawn = None

    def clear(self) -> None:
        self.phase, self.done, self._drawn = None, [], None

    def setup(self, info) -> None:
        self.table.delete(*self.table.get_children())
        self._drawn = None

    def on_phase(self, view) -> None:
        """A phase ran: highlight it and list its tensors."""
        if view.index == 0:
            self.done = []
        self.done.append(view.name)
        self.phase = view
        self.selected = 0
        self.stale = True
        if self.built:
            self.table.delete(*self.table.get_children())
            for i, t in enumerate(view.tensors):
                self.table.insert("", "end", iid=str(i), text=t.name, values=(
                    "x".join(map(str, t.shape)), f"{t.mean:.4g}", f"{t.std:.4g}", f"{t.min:.4g}", f"{t.max:.4g}"))
            if view.tensors:
                self.table.selection_set("0")

    def subscribe(self, bus) -> None:
        super().subscribe(bus)
        bus.subscribe(Phase, self.on_phase)
        bus.subscribe(Record, self.on_step_done)

    def on_step_done(self, _: Record) -> None:
        """A whole step completed (Step or Run): no phase is current any more."""
        if self.phase is not None and not self.phase.last:
            return
        self.done = []

    def _select(self) -> None:
        sel = self.table.selection()
        if sel and int(sel[0]) != self.selected:
            self.selected = int(sel[0])
            self._drawn = None
            self.stale = True

    def refresh(self, force: bool = False) -> bool:
        info = self.app.info
        if not self.built or info is None:
            return False
        key = (id(info), id(self.phase), self.selected)
        if key == self._drawn and not force:
            return False
        self._drawn = key
        if self._diagram_for is not info:  # the session's diagram is built once; a phase only recolours it
            self._build(info)
        self._colour()
        self._preview()
        v = self.phase
        if v is not None:
            text = _("phase {index}/{count} of step {step}: {name} ({ms:.2f} ms) - step complete") if v.last else \
                _("phase {index}/{count} of step {step}: {name} ({ms:.2f} ms) - next: {next}")
            following = info.phase_names[min(v.index + 1, len(info.phase_names) - 1)]
            self.caption.configure(text=text.format(index=v.index + 1, count=v.count,
                                                    step=v.step + (0 if v.last else 1), name=v.name,
                                                    ms=v.seconds * 1e3, next=following))
        self.full_draw()  # the preview's colour bar changes with each tensor: no blit, but no new layout either
        return True

    def _build(self, info) -> None:
        fig = self.figure
        fig.clear()
        self.relayout()  # new axes: lay them out on this draw
        grid = fig.add_gridspec(1, 4)
        self._diagram(fig.add_subplot(grid[0, :3]), info)
        self.ax_preview = ax = fig.add_subplot(grid[0, 3])
        self.preview_note = message_on(ax, "")
        self.preview_image = self.preview_bar = None
        ax.set_axis_off()
        self._diagram_for = info

    def _colour(self) -> None:
        """Fills the current phase's box and tints the ones done in this step."""
        current = box_of(self.phase.name) if self.phase is not None else None
        kind = self.phase.kind if self.phase is not None else None
        done_kind: dict[str, str] = {}
        for name in self.done[:-1]:
            done_kind[box_of(name)] = "backward" if name.startswith("backward.") else \
                ("forward" if name.startswith("forward.") else name if name in TINT else "data")
        for box, patch in self.patches.items():
            face, text_colour = "white", "#222"
            if box in done_kind:
                face = TINT.get(done_kind[box], "white")
            if box == current:
                face, text_colour = FILL.get(kind, "#4c72b0"), "white"
            patch.set_facecolor(face)
            self.labels[box].set_color(text_colour)

    def _diagram(self, ax, info) -> None:
        cols = diagram_columns(info.phase_names)
        residual = info.config.model.residual
        depth = max(len(b) for _, b in cols)
        self.patches, self.labels = {}, {}
        w, h = 0.74, 0.52
        centres: dict[str, tuple[float, float]] = {}
        for c, (title, boxes) in enumerate(cols):
            ax.text(c, 0.75, _(COLUMN_TITLES[title]) if title in COLUMN_TITLES else title, ha="center", va="bottom",
                    fontsize=8, color="#333", weight="bold")
            for r, box in enumerate(boxes):
                x, y = c, -r
                centres[box] = (x, y)
                patch = FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                       facecolor="white", edgecolor="#555", lw=1.0)
                ax.add_patch(patch)
                self.patches[box] = patch
                self.labels[box] = ax.text(x, y, short_label(box, residual), ha="center", va="center", fontsize=7.5,
                                           color="#222")
        order = [b for _, boxes in cols for b in boxes if b not in ("clip", "update")]
        for a, b in zip(order, order[1:], strict=False):
            self._arrow(ax, centres[a], centres[b], "#4c72b0", -0.16, w, h)
            if a != "batch":
                self._arrow(ax, centres[b], centres[a], "#c44e52", 0.16, w, h)
        if "clip" in centres:
            self._arrow(ax, centres["loss"], centres["clip"], "#55a868", 0.0, w, h, ls=":")
            if "update" in centres:
                self._arrow(ax, centres["clip"], centres["update"], "#55a868", 0.0, w, h)
        ax.text(-0.45, -depth + 0.2, _("→ forward (blue)   ← backward (red)   ··· gradients to the optimizer (green)"),
                fontsize=7, color="#444", ha="left", va="top")
        ax.set_xlim(-0.55, len(cols) - 0.45)
        ax.set_ylim(-depth - 0.1, 1.2)
        ax.set_axis_off()
        ax.set_title(_("the model, one step: the filled box is the phase that just ran"), fontsize=9)

    @staticmethod
    def _arrow(ax, p, q, colour, offset, w, h, ls="-") -> None:
        """Forward (offset < 0) or backward (offset > 0) arrow from box p to box q, kept off the boxes."""
        (x0, y0), (x1, y1) = p, q
        if x0 == x1:  # same column: vertical, beside the box centres
            s = np.sign(y0 - y1)
            verts = [(x0 + offset, y0 - s * h / 2), (x1 + offset, y1 + s * h / 2)]
        else:  # next column: out of the side, along the gap between columns, into the other side
            sx = np.sign(x1 - x0)
            gap = (x0 + x1) / 2 + offset * 0.25
            a, b = (x0 + sx * w / 2, y0 + offset * 0.5), (x1 - sx * w / 2, y1 + offset * 0.5)
            verts = [a, (gap, a[1]), (gap, b[1]), b] if y0 != y1 else [a, b]
        ax.add_patch(FancyArrowPatch(path=Path(verts), arrowstyle="-|>", mutation_scale=8, color=colour, lw=1.0,
                                     ls=ls, shrinkA=0, shrinkB=0))

    def _preview(self) -> None:
        """The selected tensor's strided preview: the image's data, extent and colour scale set in place."""
        ax, v = self.ax_preview, self.phase
        if v is None or not v.tensors:
            self.preview_note.set_text(_("no tensor yet:\npress Step into (F11)") if v is None else
                                       _("this phase\nproduced no tensor"))
            self.preview_note.set_visible(True)
            if self.preview_image is not None:
                self.preview_image.set_visible(False)
                self.preview_bar.ax.set_visible(False)
                ax.set_title("")
                ax.set_axis_off()
            return
        t = v.tensors[min(self.selected, len(v.tensors) - 1)]
        data = np.where(np.isfinite(t.preview), t.preview, np.nan)
        lim = float(np.nanmax(np.abs(data))) if np.isfinite(data).any() else 1.0
        lim = lim if lim > 0 else 1.0
        rows, cols = data.shape
        if self.preview_image is None:
            self.preview_image = ax.imshow(data, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto",
                                           interpolation="nearest")
            self.preview_bar = self.figure.colorbar(self.preview_image, ax=ax, shrink=0.8)
            ax.set_xlabel(_("last axis (strided)"))
            ax.set_ylabel(_("rows (strided)"))
            self.relayout()  # ticks, labels and a colour bar appeared: lay out again
        else:
            self.preview_image.set_data(data)
            self.preview_image.set_clim(-lim, lim)
        self.preview_image.set_extent((-0.5, cols - 0.5, rows - 0.5, -0.5))
        ax.set_xlim(-0.5, cols - 0.5)
        ax.set_ylim(rows - 0.5, -0.5)
        self.preview_image.set_visible(True)
        self.preview_bar.ax.set_visible(True)
        self.preview_note.set_visible(False)
        ax.set_axis_on()
        shape = "x".join(map(str, t.shape))
        title = f"{t.name} {shape}" if t.finite else _("{name} {shape} (NaN/Inf!)").format(name=t.name, shape=shape)
        ax.set_title(title, fontsize=8)
