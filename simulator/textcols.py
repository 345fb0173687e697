"""Text tables for a terminal in either language: widths in terminal columns, where a Chinese character
takes two, so a translated heading still sits over its numbers."""

from __future__ import annotations

import unicodedata


def display_width(text: str) -> int:
    """Columns a terminal gives `text`: Chinese characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def pad(text: str, width: int, right: bool = False) -> str:
    """`text` padded with spaces to `width` terminal columns (on the left when `right`)."""
    fill = " " * max(0, width - display_width(text))
    return fill + text if right else text + fill


def heading(*cells: tuple[str, int, str], sep: str = " ") -> str:
    """A table's heading row: each (text, width, "<" or ">") padded like the f-string `{text:<width}` would
    pad an ASCII text, by display width. A heading wider than its column is written whole."""
    return sep.join(pad(text, width, right=align == ">") for text, width, align in cells)
