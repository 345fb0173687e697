"""A person's progress through the lesson cards: a small JSON file in their config folder, written atomically.

The folder is $XDG_CONFIG_HOME/transformer-sim (default ~/.config/transformer-sim). The file maps a
card's name to what its last run found: {"cards": {"prenorm-deep": {"held": 3, "claims": 3,
"predicted": "pre-norm", "correct": true, "seed": 1337}}}. A file that cannot be read counts as no
progress (it is rewritten on the next card), never as an error that stops the window.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

FILE = "progress.json"


def config_dir() -> Path:
    """The user's config folder for this program."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "transformer-sim"


def progress_path() -> Path:
    return config_dir() / FILE


def load_progress() -> dict[str, dict]:
    """Card name -> what its last run found (empty when there is no readable file)."""
    try:
        data = json.loads(progress_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    cards = data.get("cards") if isinstance(data, dict) else None
    return {k: v for k, v in cards.items() if isinstance(v, dict)} if isinstance(cards, dict) else {}


def record_card(name: str, held: int, claims: int, predicted: str | None, correct: bool | None,
                seed: int | None) -> Path:
    """Stores one card's outcome (temp file + fsync + rename: a crash leaves the old file or the new one)."""
    cards = load_progress()
    cards[name] = {"held": held, "claims": claims, "predicted": predicted, "correct": correct, "seed": seed}
    path = progress_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".progress-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"cards": cards}, f, indent=1, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def is_done(entry: dict | None) -> bool:
    """A card counts as done when its last run showed every claim."""
    return bool(entry) and entry.get("claims", 0) > 0 and entry.get("held") == entry.get("claims")
