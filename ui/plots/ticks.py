"""Tick labels drawn from glyph bitmaps, and log-axis labels in plain text (10⁻³, 2×10⁻¹).

A full draw of a plot tab is mostly text: every tick label is laid out and rendered glyph by glyph on every
draw (about 1 ms a label; a four-axes tab has sixty). When an axis must change (its limits grow, a colour
scale moves), that cost is paid again for labels that are mostly the same strings. `glyph_ticks` makes an
axes' tick labels `GlyphText` (ui.plots.textcache): each character is rendered once, and a label is a copy
of its characters' bitmaps. A log axis labels its ticks in mathtext ("$\\mathdefault{10^{-3}}$"), which is
slower still and cannot be composed from glyphs; `SuperscriptLogFormatter` writes the same numbers with
Unicode superscripts, which are plain text, where the fonts in use have those characters (DejaVu Sans has;
the CJK fonts of the Chinese window lack some, so there the labels stay mathtext). What a tick says is
unchanged.
"""

from __future__ import annotations

import functools
import re

import matplotlib
from matplotlib.font_manager import FontProperties
from matplotlib.ticker import LogFormatterSciNotation

from ui.plots.textcache import GlyphText

SUPERSCRIPT = str.maketrans("0123456789-−", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁻")
_MATH = re.compile(r"^\$\\mathdefault\{(?P<body>.*)\}\$$")
_POWER = re.compile(r"\^\{(?P<exp>[^{}]*)\}")


def plain_power(label: str) -> str:
    """A mathtext label of a log axis as plain text: "$\\mathdefault{2\\times10^{-3}}$" -> "2×10⁻³"; a label
    that is not of that form is returned as it is."""
    m = _MATH.match(label)
    if m is None:
        return label
    body = _POWER.sub(lambda p: p["exp"].translate(SUPERSCRIPT), m["body"]).replace("\\times", "×")
    return label if "\\" in body or "{" in body or "^" in body else body


@functools.lru_cache(maxsize=8)
def _fonts_have(chars: str, families: tuple, sans: tuple) -> bool:
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    try:  # the fonts matplotlib falls back along for this family list (`sans`: what "sans-serif" resolves to)
        paths = font_manager.fontManager._find_fonts_by_props(FontProperties(family=list(families)))
        have = set()
        for path in paths:
            have |= set(FT2Font(str(path)).get_charmap())
    except Exception:  # noqa: BLE001 - a font that cannot be read, or another matplotlib: keep mathtext
        return False
    return {ord(c) for c in chars} <= have


def superscripts_drawable() -> bool:
    """True when the text fonts in use can draw the superscript digits, minus and times sign."""
    rc = matplotlib.rcParams
    return _fonts_have("⁰¹²³⁴⁵⁶⁷⁸⁹⁻×", tuple(rc["font.family"]), tuple(rc["font.sans-serif"]))


class SuperscriptLogFormatter(LogFormatterSciNotation):
    """matplotlib's log-axis labels (which ticks get one, and their numbers), written with superscripts."""

    def __call__(self, x, pos=None):
        label = super().__call__(x, pos)
        return plain_power(label) if superscripts_drawable() else label


def plain_log_labels(ax, axis: str = "y") -> None:
    """The log (or symlog) `axis` of `ax` labels its ticks with `SuperscriptLogFormatter` (set after its scale)."""
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(SuperscriptLogFormatter())
    target.set_minor_formatter(SuperscriptLogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def glyph_ticks(fig) -> None:
    """Every axis of `fig` makes its tick labels as `GlyphText`, those it has and those it makes later
    (idempotent: a tab calls it before each draw, since its axes may have been built again)."""
    for ax in fig.axes:
        for axis in ax._axis_map.values():
            make = axis._get_tick
            if not getattr(make, "glyph_labels", False):
                def get_tick(major, _make=make):
                    tick = _make(major)
                    GlyphText.adopt(tick.label1)
                    GlyphText.adopt(tick.label2)
                    return tick

                get_tick.glyph_labels = True
                axis._get_tick = get_tick
            for ticks in (axis.majorTicks, axis.minorTicks):
                for tick in ticks:
                    for label in (tick.label1, tick.label2):
                        if not isinstance(label, GlyphText):
                            GlyphText.adopt(label)
