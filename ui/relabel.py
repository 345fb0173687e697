"""The window's text in the current language, and again after every switch (View → Language).

A switch relabels the widgets in place rather than rebuilding the widget tree: a rebuilt tree would
drop the tabs' figures and their subscriptions to the bus, the lessons' computed results and their
threads, the controls' half-typed values and the scroll positions, and a running training session
would have to be handed to new widgets. So every translatable text is registered with how to set it:

    relabel.text(button, N_("Run"))                 # sets text=_("Run") now and after every switch
    relabel.text(label, N_("step {step}"), step=3)  # placeholders filled after translating
    relabel.menu(menu, index, N_("Quit"))           # a menu entry's label
    relabel.keep(widget, lambda: ...)                # anything else (a notebook tab, a tree's headings)

Registering the same widget and option again replaces what it shows (the Run button's Run / Pause);
entries of destroyed widgets are dropped at the next switch. `Msg` is a message kept untranslated
until it is shown, for texts that outlive a switch (the status line).
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable

from simulator.i18n import _

_entries: dict[tuple[int, str, str], tuple[object, Callable[[], None]]] = {}  # (Tcl interpreter, path, key)


class Msg:
    """A message and its fields, translated each time it is turned into text (`str(msg)`)."""

    def __init__(self, msgid: str, **fields):
        self.msgid, self.fields = msgid, fields

    def __str__(self) -> str:
        if not self.fields:
            return _(self.msgid)
        return _(self.msgid).format(**{k: str(v) if isinstance(v, Msg) else v for k, v in self.fields.items()})

    def __repr__(self) -> str:
        return f"Msg({self.msgid!r})"


def composed(msgid: str, fields: dict) -> Msg:
    """A message whose field values are message ids too where the catalogs know them (the engine's own
    descriptions, e.g. where the kernels run and why not on the GPU); other values pass through."""
    return Msg(msgid, **{k: Msg(v) if isinstance(v, str) else v for k, v in fields.items()})


def keep(widget, apply: Callable[[], None], key: str = "") -> None:
    """Runs `apply()` now and after every language switch while `widget` exists (one entry per widget and key)."""
    apply()
    _entries[(id(widget.tk), str(widget), key)] = (widget, apply)  # two windows' widgets may share a path


def text(widget, msgid: str, option: str = "text", **fields):
    """Shows `_(msgid)` (formatted with `fields`) in `widget`'s `option`, now and after every switch; the widget."""
    msg = Msg(msgid, **fields)
    keep(widget, lambda: widget.configure(**{option: str(msg)}), key=option)
    return widget


def menu(m: tk.Menu, index: int | str, msgid: str, **fields) -> None:
    """A menu entry's label in the current language (index: the entry's position)."""
    msg = Msg(msgid, **fields)
    if isinstance(index, str):
        index = m.index(index)
    keep(m, lambda: m.entryconfigure(index, label=str(msg)), key=f"entry{index}")


def forget(root: tk.Misc) -> None:
    """Drops every entry of `root`'s Tcl interpreter (its window closes: nothing of it is relabelled again)."""
    for key in [k for k in _entries if k[0] == id(root.tk)]:
        del _entries[key]


def relabel() -> int:
    """Applies every registered text again (after a switch); drops destroyed widgets'. How many were applied."""
    done = 0
    for key, (widget, apply) in list(_entries.items()):
        try:
            alive = bool(widget.winfo_exists())
        except (tk.TclError, RuntimeError):
            alive = False
        if not alive:
            _entries.pop(key, None)
            continue
        try:
            apply()
            done += 1
        except tk.TclError:  # destroyed between the check and the call
            _entries.pop(key, None)
    return done
