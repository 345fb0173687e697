"""Fonts that can draw the current language: a CJK-capable family for Tk's named fonts and for Matplotlib.

In Chinese, Tk's named fonts (TkDefaultFont, TkMenuFont, ...) and Matplotlib's `font.sans-serif` get the
first installed family of `CJK_FAMILIES` (Latin letters and digits are in those fonts too); in English
they go back to what they were. Matplotlib keeps a cache of the fonts it found when it first ran, so a
font package installed since (`scripts/setup.sh` installs fonts-noto-cjk) is added from the system's font
files. With no CJK font installed the window still opens: `apply_fonts` returns a one-line note for the
status line and the text falls back to whatever the system draws.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Iterable
from pathlib import Path
from tkinter import font as tkfont

from simulator.i18n import N_

# Simplified Chinese families, best first: Noto / Source Han (Debian's fonts-noto-cjk), WenQuanYi, then the
# families Windows and macOS ship (not Droid Sans Fallback: it has no Latin letters, so every label's digits and
# units would fall back to another font)
CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "Source Han Sans CN",
                "WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "Microsoft YaHei",
                "PingFang SC", "Hiragino Sans GB", "SimHei", "Noto Sans CJK JP")
CJK_FILE_HINTS = ("notosanscjk", "sourcehansans", "wqy", "droidsansfallback", "msyh", "pingfang", "simhei")
TK_NAMED = ("TkDefaultFont", "TkTextFont", "TkMenuFont", "TkHeadingFont", "TkCaptionFont", "TkSmallCaptionFont",
            "TkIconFont", "TkTooltipFont")
LATIN_FAMILY = "DejaVu Sans"  # the window's own fonts in English (Matplotlib's default family too)
NO_CJK_FONT = N_("no Chinese font is installed (install fonts-noto-cjk): some text may show as boxes")


def pick_cjk(available: Iterable[str]) -> str | None:
    """The first family of CJK_FAMILIES among `available` (compared without case), or None."""
    have = {name.lower(): name for name in available}
    return next((have[f.lower()] for f in CJK_FAMILIES if f.lower() in have), None)


def tk_families(root: tk.Misc) -> list[str]:
    return list(tkfont.families(root))


def matplotlib_families() -> list[str]:
    from matplotlib import font_manager

    return [f.name for f in font_manager.fontManager.ttflist]


def add_system_cjk_fonts() -> int:
    """Adds the system's CJK font files that Matplotlib's cache does not know yet; how many were added."""
    from matplotlib import font_manager

    known = {f.fname for f in font_manager.fontManager.ttflist}
    added = 0
    for path in font_manager.findSystemFonts():
        if path not in known and any(h in Path(path).name.lower() for h in CJK_FILE_HINTS):
            try:
                font_manager.fontManager.addfont(path)
                added += 1
            except (OSError, RuntimeError, ValueError):  # a broken font file: the next one may do
                pass
    return added


_MPL_SANS_ORIGINAL: list[str] | None = None  # font.sans-serif before the first switch of the process


class Fonts:
    """The fonts of one Tk root, switched with the language; `family` is what the window's own fonts use."""

    def __init__(self, root: tk.Misc):
        self.root = root
        self.original = {}  # named font -> its family before any switch
        for name in TK_NAMED:
            try:
                self.original[name] = tkfont.nametofont(name, root=root).cget("family")
            except tk.TclError:
                pass
        import matplotlib

        # Matplotlib's settings are the process's, not this window's: the list as it was before any window of the
        # process switched it (a second window opened while Chinese is on must not take the CJK-first list as English)
        global _MPL_SANS_ORIGINAL
        if _MPL_SANS_ORIGINAL is None:
            _MPL_SANS_ORIGINAL = list(matplotlib.rcParams["font.sans-serif"])
        self.mpl_original = list(_MPL_SANS_ORIGINAL)
        self.family = LATIN_FAMILY
        self.cjk: str | None = None

    def apply(self, language: str) -> str | None:
        """Sets the families for `language`; None, or a one-line note when Chinese has no font to draw it."""
        import matplotlib

        if language != "zh_CN":
            self.family, self.cjk = LATIN_FAMILY, None
            for name, family in self.original.items():
                tkfont.nametofont(name, root=self.root).configure(family=family)
            matplotlib.rcParams["font.sans-serif"] = self.mpl_original
            return None
        tk_cjk = pick_cjk(tk_families(self.root))
        mpl_cjk = pick_cjk(matplotlib_families())
        if tk_cjk is not None and mpl_cjk != tk_cjk and add_system_cjk_fonts():  # a font newer than the cache
            mpl_cjk = pick_cjk(matplotlib_families())
        if tk_cjk is not None:
            self.family = self.cjk = tk_cjk
            for name in self.original:
                tkfont.nametofont(name, root=self.root).configure(family=tk_cjk)
        if mpl_cjk is not None:  # first, and the Latin fonts after it for any glyph it lacks
            matplotlib.rcParams["font.sans-serif"] = [mpl_cjk] + [f for f in self.mpl_original if f != mpl_cjk]
            matplotlib.rcParams["font.family"] = "sans-serif"
        return NO_CJK_FONT if tk_cjk is None or mpl_cjk is None else None

    def font(self, size: int, weight: str = "normal") -> tuple:
        """A font description in the window's family for this language."""
        return (self.family, size, weight)
