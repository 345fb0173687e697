"""Every string a person reads goes through here: gettext catalogs in English and Simplified Chinese.

The catalogs are the `.po` sources in `simulator/locale/<language>/<area>.po` (one file per area of
the code, so the window's, the CLI's and the lesson cards' translators never edit the same file).
They are read directly with polib, so nothing has to be compiled before a source checkout runs, and
all of a language's areas are merged into one table.

    from simulator.i18n import _, N_
    label = _("Validation loss")                       # translated now, in the current language
    TITLE = N_("Gradients")                            # marked for the catalogs, translated where shown: _(TITLE)
    line = _("early stop at step {step}").format(step=375)   # placeholders are str.format names

The language follows the system locale (`LANGUAGE`, `LC_ALL`, `LC_MESSAGES`, `LANG`, as gettext
reads them), or `TRANSFORMER_SIM_LANG`; `set_language` switches it while the program runs and tells
the listeners registered with `on_language_change` (the window relabels itself there).
`python -m simulator.i18n_catalogs` brings the catalogs up to date with the code.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

LOCALE_DIR = Path(__file__).parent / "locale"
SOURCE_LANGUAGE = "en"
# code -> the language's own name, as a menu shows it
LANGUAGES = {"en": "English", "zh_CN": "简体中文"}

_lock = threading.Lock()
_tables: dict[str, dict[str, object]] = {}  # language -> msgid -> msgstr (str, or a list of plural forms)
_current = SOURCE_LANGUAGE
_listeners: list[Callable[[str], None]] = []


def N_(msgid: str) -> str:
    """Marks a string for the catalogs without translating it (for constants built at import time)."""
    return msgid


def _(msgid: str) -> str:
    """The current language's translation of `msgid` (itself when the catalog has none)."""
    text = _table(_current).get(msgid)
    return text if isinstance(text, str) and text else msgid


def ngettext(singular: str, plural: str, n: int) -> str:
    """The form for count `n` (Chinese has one form; English two)."""
    forms = _table(_current).get(singular)
    if isinstance(forms, list) and forms:
        return forms[_plural_index(_current, n)] or (singular if n == 1 else plural)
    return singular if n == 1 else plural


def language() -> str:
    return _current


def set_language(code: str | None) -> str:
    """Switches the language (None: the system's); returns the one now in use. Listeners are told."""
    global _current
    resolved = system_language() if code is None else normalize(code)
    _table(resolved)
    changed = resolved != _current
    _current = resolved
    if changed:
        for listener in list(_listeners):
            listener(resolved)
    return resolved


def on_language_change(listener: Callable[[str], None]) -> Callable[[], None]:
    """Calls `listener(code)` after every switch; returns a function that unregisters it."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


def normalize(code: str) -> str:
    """'zh_CN.UTF-8', 'zh-Hans', 'zh' -> 'zh_CN'; anything without a catalog -> 'en'."""
    base = code.split(".")[0].split("@")[0].replace("-", "_")
    if base in LANGUAGES:
        return base
    if base.lower().startswith("zh"):
        return "zh_CN"
    return SOURCE_LANGUAGE


def system_language() -> str:
    """The language the environment asks for, read in gettext's order."""
    for var in ("TRANSFORMER_SIM_LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(var, "")
        for code in value.split(":"):  # LANGUAGE may list several
            if code and code not in ("C", "POSIX"):
                return normalize(code)
    return SOURCE_LANGUAGE


def catalog_files(code: str) -> list[Path]:
    return sorted((LOCALE_DIR / code).glob("*.po"))


def _table(code: str) -> dict[str, object]:
    table = _tables.get(code)
    if table is None:
        with _lock:
            table = _tables.get(code)
            if table is None:
                table = _tables[code] = _load(code)
    return table


def _load(code: str) -> dict[str, object]:
    import polib

    table: dict[str, object] = {}
    for path in catalog_files(code):
        for entry in polib.pofile(str(path)):
            if entry.obsolete or "fuzzy" in entry.flags:
                continue
            if entry.msgid_plural:
                table[entry.msgid] = [entry.msgstr_plural[i] for i in sorted(entry.msgstr_plural)]
            else:
                table[entry.msgid] = entry.msgstr
    return table


def _plural_index(code: str, n: int) -> int:
    return 0 if code == "zh_CN" else (0 if n == 1 else 1)


_current = system_language()
