"""The window's language, remembered per user: `language.json` beside `window.json` in the config folder.

At launch the language is TRANSFORMER_SIM_LANG when set (one launch in another language), else the one
the person last chose in View → Language, else the system locale's (`simulator.i18n.system_language`).
The file is written atomically when the person chooses; a missing or broken file is ignored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from simulator.i18n import LANGUAGES, normalize, system_language
from ui.window_geometry import state_path

FILE = "language.json"


def language_path(environ=None) -> Path:
    """language.json in the user's config folder (the one window.json is in)."""
    return state_path(environ).parent / FILE


def read_language(path: Path | None = None) -> str | None:
    """The remembered language code, or None (no file, unreadable, or not a language we have)."""
    try:
        data = json.loads(Path(path or language_path()).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    code = data.get("language") if isinstance(data, dict) else None
    return code if isinstance(code, str) and code in LANGUAGES else None


def write_language(code: str, path: Path | None = None) -> bool:
    """Remembers `code` (temp file + rename: the old file or the new, never half); False when it cannot."""
    from simulator.api import write_atomically

    path = Path(path or language_path())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps({"language": code}) + "\n")
        return True
    except OSError:
        return False


def startup_language(environ=None) -> str:
    """The language a launch opens in: TRANSFORMER_SIM_LANG, else the remembered choice, else the system's."""
    environ = os.environ if environ is None else environ
    if environ.get("TRANSFORMER_SIM_LANG"):
        return normalize(environ["TRANSFORMER_SIM_LANG"])
    return read_language(language_path(environ)) or system_language()
