"""The encoder-decoder against the decoder-only GPT: both losses by step, held-out exact match and token accuracy,
and the encoder-decoder's cross-attention over one held-out pair as an alignment, one small map per decoder layer
and head, growing sharper as the replay runs (`simulator.lessons.seq2seq`).

A replay frame is cheap (built once: set data, blit): the curves of each axes are one `CurveSet` (two artists, not
four lines), the maps are handed over as RGBA bytes coloured once per evaluation (`ScalarMappable.to_rgba`), and
the caption, which changes only at an evaluation, is drawn from bitmaps rendered in the lesson's thread
(`CachedText`): laid out and rendered as text on every frame it was most of a frame's cost. The maps themselves
change only at an evaluation too: they are painted into the blit's background then (`present`), not drawn on
every frame."""

from __future__ import annotations

import tkinter as tk
from tkinter import ttk

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.transforms import Bbox

from simulator.i18n import N_, _
from simulator.lessons.seq2seq import MODEL_NAMES, MODELS, TASKS, best_head  # the lesson is public, its engine not
from ui import relabel
from ui.lessons import lesson_tab
from ui.lessons.base import LessonTab, labelled_combo
from ui.lessons.curves import CurveSet
from ui.plots.textcache import CachedText, cached_text

COLOURS = {"encdec": "C0", "gpt": "C3"}
MAX_MAPS = 6  # cross-attention maps at most (the first layers' heads)
CAPTION = {"fontsize": 7, "ha": "left", "va": "top"}
MAP_COLOURS = ScalarMappable(Normalize(0.0, 1.0), matplotlib.colormaps["viridis"])  # an attention weight's colour


@lesson_tab("seq2seq")
class Seq2SeqTab(LessonTab):
    """Losses, held-out accuracy, and a row of maps (target words x source words): the encoder-decoder's
    cross-attention per layer and head, and the GPT's best head from the same predictions onto its prompt's source."""

    steps_per_second = 40.0
    _bitmaps: tuple = (None, {})  # (the digest, its captions' bitmaps, rendered in the lesson's thread)
    # the settings the toolbar edits: (path, label, entry width)
    ENTRIES = (("steps", N_("steps"), 5), ("d_model", N_("width"), 4), ("enc_layers", N_("encoder layers"), 3),
               ("dec_layers", N_("decoder layers"), 3), ("gpt_layers", N_("GPT layers"), 3), ("lr", N_("lr"), 6),
               ("seed", N_("seed"), 4))

    def build_controls(self, bar) -> None:
        self.vars: dict[str, tk.StringVar] = {}
        _box, self.vars["task"] = labelled_combo(bar, N_("task"), TASKS, width=10,
                                                 command=lambda: self._changed("task"))
        for path, label, width in self.ENTRIES:
            relabel.text(ttk.Label(bar), label).pack(side="left", padx=(6, 2))
            var = self.vars[path] = tk.StringVar(self.frame)
            entry = ttk.Entry(bar, textvariable=var, width=width)
            entry.pack(side="left")
            for seq in ("<Return>", "<FocusOut>"):
                entry.bind(seq, lambda e, p=path: self._changed(p), add="+")

    @staticmethod
    def _text(v) -> str:
        return f"{v:g}" if isinstance(v, float) else str(v)

    def show_config(self, cfg) -> None:
        for path, var in self.vars.items():
            var.set(self._text(getattr(cfg, path)))

    def _changed(self, path: str) -> None:
        """A toolbar value was set: recompute when it differs (checked by the lesson's rules, a mistake a dialog)."""
        text = str(self.vars[path].get())
        if text != self._text(getattr(self.cfg, path)):
            self.change(path, text)

    def digest(self, cfg, frames):
        """Steps and training losses per model; eval steps with held-out loss, exact match, token accuracy; the
        examples by eval step (their maps change as the model learns); the parameter counts."""
        if not frames:
            return None
        steps = np.array([f.step for f in frames], float)
        train = {k: np.array([f.losses[i] for f in frames]) for i, k in enumerate(MODELS)}
        ev = [f for f in frames if f.evals is not None]
        es = np.array([f.step for f in ev], float)
        held = {k: np.array([f.evals[i].loss for f in ev]) for i, k in enumerate(MODELS)}
        exact = {k: np.array([f.evals[i].exact_match for f in ev]) for i, k in enumerate(MODELS)}
        tokens = {k: np.array([f.evals[i].token_accuracy for f in ev]) for i, k in enumerate(MODELS)}
        out = {"steps": steps, "train": train, "es": es, "held": held, "exact": exact, "tokens": tokens,
               "examples": [f.example for f in ev], "params": frames[0].params, "n": len(frames),
               "last_evals": ev[-1].evals}
        self._prerender(out)
        return out

    def _prerender(self, r) -> None:
        """Renders the caption of every evaluation (in the lesson's thread): a replay draws them as bitmaps."""
        dpi = self.figure.dpi if self.figure is not None else 100.0
        bitmaps: dict = {}
        CachedText(0, 0, "", bitmaps=bitmaps, **CAPTION).prerender(
            [self._caption(r, i) for i in range(max(len(r["examples"]), 1))], dpi)
        self._bitmaps = (r, bitmaps)

    @staticmethod
    def _caption(r, i: int) -> str:
        """The caption at evaluation i: the held-out pair and both models' outputs."""
        ex = r["examples"][i]
        return _("step {step}, held-out: {source} -> {target} (circles: the source word each target word "
                 "translates)\n{a}: {out_a}   |   {b}: {out_b}").format(
            source=" ".join(ex.source), target=" ".join(ex.target), a=_(MODEL_NAMES["encdec"]),
            out_a=" ".join(ex.encdec_output), b=_(MODEL_NAMES["gpt"]), out_b=" ".join(ex.gpt_output),
            step=int(r["es"][i]) if len(r["es"]) else 0)

    def steps_of(self) -> int:
        return self.result["n"] if self.result else 0

    def draw_static(self) -> list:
        r = self.result
        fig = self.figure
        fig.clear()
        ex = r["examples"][-1]
        # one row of maps: the encoder-decoder's cross-attention heads, then the GPT's head that puts most of its
        # attention on the aligned source words at the last evaluation (its other heads mostly read <sep> and
        # the target so far)
        g_layer, g_head, _mass = best_head(r["last_evals"][1])
        maps = [("encdec", layer, head) for layer in range(ex.cross.shape[0])
                for head in range(ex.cross.shape[1])][:MAX_MAPS] + [("gpt", g_layer, g_head)]
        grid = fig.add_gridspec(3, 1, height_ratios=(1, 1.1, 0.25))  # the last row: the caption
        top = grid[0].subgridspec(1, 2, wspace=0.25)
        self.ax_loss, self.ax_acc = fig.add_subplot(top[0]), fig.add_subplot(top[1])
        sub = grid[1].subgridspec(1, len(maps), wspace=0.3)
        self.map_axes = [(fig.add_subplot(sub[i]), *m) for i, m in enumerate(maps)]
        self.lines = {}
        loss_curves, acc_curves = self.loss_curves, self.acc_curves = CurveSet(self.ax_loss), CurveSet(self.ax_acc)
        for k in MODELS:
            name, c = _(MODEL_NAMES[k]), COLOURS[k]
            train = loss_curves.add(c, lw=0.6, alpha=0.5, label=_("{model}: training batch").format(model=name))
            held = loss_curves.add(c, lw=1.6, marker="o", ms=3, label=_("{model}: held out").format(model=name))
            exact = acc_curves.add(c, lw=1.6, marker="o", ms=3, label=_("{model}: exact match").format(model=name))
            tokens = acc_curves.add(c, lw=1.0, ls="--", label=_("{model}: tokens").format(model=name))
            self.lines[k] = (train, held, exact, tokens)
        artists = [*loss_curves.artists, *acc_curves.artists]
        n = max(r["n"], 1)
        losses = np.concatenate([np.r_[r["train"][k], r["held"][k]] for k in MODELS])
        ax = self.ax_loss
        ax.set_xlim(0, n)
        ax.set_ylim(0, float(np.nanmax(losses)) * 1.05)
        ax.set_title(_("loss per target token ({a:,} vs {b:,} parameters)").format(a=r["params"][0],
                                                                                 b=r["params"][1]), fontsize=9)
        ax.set_xlabel(_("step"))
        ax.grid(alpha=0.3)
        ax.legend(handles=loss_curves.legend_handles(), fontsize=7, loc="upper right")
        ax = self.ax_acc
        ax.set_xlim(0, n)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(_("held-out pairs: exact match (greedy) and token accuracy"), fontsize=9)
        ax.set_xlabel(_("step"))
        ax.grid(alpha=0.3)
        ax.legend(handles=acc_curves.legend_handles(), fontsize=7, loc="upper left")
        self.images, circles = [], []
        self._colours = {}  # evaluation -> each map's RGBA bytes (coloured on first show)
        m, n_src = ex.cross.shape[2], ex.cross.shape[3]
        rows = list(ex.target) + ["<eos>"]
        for ax, key, layer, head in self.map_axes:
            im = ax.imshow(np.zeros((m, n_src, 4), np.uint8), aspect="auto", interpolation="nearest")
            self.images.append((im, key, layer, head))
            # the alignment the task was made with: where each target word's attention should go
            circles.append(ax.scatter(list(ex.align), range(len(ex.align)), s=40, facecolors="none",
                                      edgecolors="white", lw=0.8))
            ax.set_xticks(range(n_src), ex.source, rotation=70, fontsize=6)
            ax.set_yticks(range(m), rows, fontsize=6)
            title = _("cross-attention\nlayer {layer}, head {head}") if key == "encdec" else \
                _("GPT's self-attention on the source\nlayer {layer}, head {head} (its best)")
            ax.set_title(title.format(layer=layer + 1, head=head + 1), fontsize=8)
            if ax is not self.map_axes[0][0]:
                ax.set_yticks(range(m), [""] * m)  # the target words once, on the first map
        # the maps change only at an evaluation: not blitted on every frame, but painted into the background when
        # they change (`present`), with the circles over them
        self.circles = circles
        self._maps_at, self._maps_owed = None, False
        ax_caption = fig.add_subplot(grid[2])
        ax_caption.set_axis_off()
        bitmaps = self._bitmaps[1] if self._bitmaps[0] is r else None
        self.caption = cached_text(ax_caption, 0.0, 1.0, "", transform=ax_caption.transAxes, bitmaps=bitmaps,
                                   **CAPTION)
        artists.append(self.caption)
        return artists

    def show_until(self, k: int) -> None:
        r = self.result
        shown, eshown = r["steps"] <= k, r["es"] <= k
        for key in MODELS:
            train, held, exact, tokens = self.lines[key]
            train.set_data(r["steps"][shown], r["train"][key][shown])
            held.set_data(r["es"][eshown], r["held"][key][eshown])
            exact.set_data(r["es"][eshown], r["exact"][key][eshown])
            tokens.set_data(r["es"][eshown], r["tokens"][key][eshown])
        i = max(int(np.sum(eshown)) - 1, 0)  # the last evaluation up to step k (the first before any)
        if i != self._maps_at:
            for (im, *_key), rgba in zip(self.images, self.map_colours(i), strict=True):
                im.set_data(rgba)
            self._maps_at, self._maps_owed = i, True
        self.caption.set_text(self._caption(r, i))

    def present(self, need_full: bool = False, force: bool = False, blit_while_owed: bool = False,
                only=None) -> bool:
        """`PlotTab.present`, after painting maps that changed into the blit's background (then copied to the screen
        with the frame): the three maps and their circles cost most of a frame, and change only at an evaluation."""
        blitter = self.blitter
        if self._maps_owed and blitter is not None and blitter.background is not None:
            canvas, fig = self.canvas, self.figure
            canvas.restore_region(blitter.background)
            for (im, *_key), circles in zip(self.images, self.circles, strict=True):
                fig.draw_artist(im)  # opaque over its whole axes: the old map is gone
                fig.draw_artist(circles)
            blitter.background = canvas.copy_from_bbox(fig.bbox)
            blitter.also_show(Bbox.union([ax.bbox for ax, *_rest in self.map_axes]))  # copied with the frame
        self._maps_owed = False  # painted, or a full draw is owed (no background yet), which draws them
        return super().present(need_full, force, blit_while_owed, only)

    def attention_map(self, i: int, key: str, layer: int, head: int) -> np.ndarray:
        """(target words + 1, source words): the weights one map shows at evaluation i."""
        ex = self.result["examples"][i]
        return (ex.cross if key == "encdec" else ex.gpt_attention)[layer, head]

    def map_colours(self, i: int) -> list[np.ndarray]:
        """Each map's (rows, columns, 4) RGBA bytes at evaluation i, coloured once (viridis over 0..1)."""
        hit = self._colours.get(i)
        if hit is None:
            hit = self._colours[i] = [MAP_COLOURS.to_rgba(self.attention_map(i, *image[1:]), bytes=True)
                                      for image in self.images]
        return hit
