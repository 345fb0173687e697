"""Keeps the translation catalogs in step with the code, and says what is missing.

    python -m simulator.i18n_catalogs           # add new messages to every catalog, drop unused ones
    python -m simulator.i18n_catalogs --check   # list what is untranslated or inconsistent; exit 1 if any

Messages are found by reading the code, not by running it: every `_("...")`, `N_("...")` and
`ngettext("...", "...", n)` whose arguments are string literals, in `simulator/`, `ui/` and `main.py`,
and the person-readable text of the lesson presets (`presets/*.yaml`: the description and the
`lesson:` card's title, why, steps, question, answers and claims), and the text the window shows from
the engine's declarations (a `setting(...)`'s label and help, a `Lesson(...)`'s title: area `ui`, the
window's controls and tabs being their only readers). A message's area (its `.po` file)
follows from where it was first found, so each part of the code has its own catalog.

English catalogs carry msgstr = msgid unless someone rewrote the English; Chinese entries start empty
and the check lists them until they are translated.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from simulator.i18n import LANGUAGES, LOCALE_DIR, SOURCE_LANGUAGE

ROOT = Path(__file__).resolve().parent.parent
CODE_DIRS = ("simulator", "ui")
PRESETS_DIR = ROOT / "presets"
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)?(?:[!:][^{}]*)?\}")


@dataclass
class Message:
    msgid: str
    area: str
    plural: str | None = None
    where: list[str] = field(default_factory=list)


def area_of(path: Path) -> str:
    rel = path.relative_to(ROOT).as_posix()
    if rel.startswith("ui/plots/"):
        return "plots"
    if rel.startswith("ui/"):
        return "ui"
    if rel.startswith("presets/") or rel.startswith("simulator/lessons/cards"):
        return "lessons"
    return "cli"


def code_files() -> list[Path]:
    files = [ROOT / "main.py"]
    for d in CODE_DIRS:
        files += sorted(p for p in (ROOT / d).rglob("*.py") if "__pycache__" not in p.parts)
    return files


def python_messages(path: Path) -> list[tuple[str, str | None, int]]:
    """(msgid, plural or None, line) for every literal `_`, `N_`, `ngettext` call in one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
        args = node.args
        literal = [isinstance(a, ast.Constant) and isinstance(a.value, str) for a in args]
        if name in ("_", "N_") and len(args) == 1 and literal[0]:
            found.append((args[0].value, None, node.lineno))
        elif name == "ngettext" and len(args) == 3 and literal[0] and literal[1]:
            found.append((args[0].value, args[1].value, node.lineno))
    return found


def declared_texts(path: Path) -> list[tuple[str, int]]:
    """(text, line) of every literal `label=`/`help=` of a `setting(...)` and title of a `Lesson(kind, title, ...)`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
        if name == "setting":
            values = [k.value for k in node.keywords if k.arg in ("label", "help")]
        elif name == "Lesson" and len(node.args) > 1:
            values = [node.args[1]]
        else:
            continue
        found += [(v.value, node.lineno) for v in values
                  if isinstance(v, ast.Constant) and isinstance(v.value, str) and v.value]
    return found


def preset_texts(data: dict) -> list[str]:
    """The sentences of a preset a person reads: its description and its lesson card."""
    texts = []
    if isinstance(data.get("description"), str):
        texts.append(data["description"])
    card = data.get("lesson")
    if isinstance(card, dict):
        texts += [card.get("title"), card.get("why")]
        texts += [s.get("text") for s in card.get("steps") or [] if isinstance(s, dict)]
        prediction = card.get("prediction") or {}
        texts.append(prediction.get("question"))
        texts += list(prediction.get("answers") or [])
        texts += [c.get("text") for c in card.get("claims") or [] if isinstance(c, dict)]
    if isinstance(data.get("sections"), list):  # the course (presets/course.yaml): its title and sections
        texts.append(data.get("title"))
        texts += [s.get(k) for s in data["sections"] if isinstance(s, dict) for k in ("title", "note")]
    return [t.strip() for t in texts if isinstance(t, str) and t.strip()]


def collect() -> dict[str, Message]:
    import yaml

    messages: dict[str, Message] = {}

    def add(msgid, plural, area, where):
        msg = messages.setdefault(msgid, Message(msgid, area, plural))
        msg.where.append(where)

    for path in code_files():
        for msgid, plural, line in python_messages(path):
            add(msgid, plural, area_of(path), f"{path.relative_to(ROOT).as_posix()}:{line}")
    for path in code_files():
        if path.relative_to(ROOT).parts[0] == "simulator":
            for text, line in declared_texts(path):
                add(text, None, "ui", f"{path.relative_to(ROOT).as_posix()}:{line}")
    for path in sorted(PRESETS_DIR.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for text in preset_texts(data) if isinstance(data, dict) else []:
            add(text, None, "lessons", path.relative_to(ROOT).as_posix())
    return messages


def placeholders(text: str) -> list[str]:
    return sorted(m.group(1) or "" for m in PLACEHOLDER.finditer(text))


def _existing(code: str, area: str | None = None) -> dict[str, object]:
    import polib

    entries = {}
    for path in sorted((LOCALE_DIR / code).glob(f"{area or '*'}.po")):
        for entry in polib.pofile(str(path)):
            if not entry.obsolete:
                entries[entry.msgid] = entry
    return entries


def update(area: str | None = None) -> dict[str, int]:
    """Rewrites the catalogs (of one area, or all) from the code; translations made are kept. Counts per language."""
    import polib

    messages = {k: m for k, m in collect().items() if area is None or m.area == area}
    counts = {}
    for code in LANGUAGES:
        old = _existing(code)
        files: dict[str, polib.POFile] = {}
        for msg in sorted(messages.values(), key=lambda m: (m.area, m.where[0])):
            po = files.get(msg.area)
            if po is None:
                po = files[msg.area] = polib.POFile(wrapwidth=0)
                po.metadata = {
                    "Project-Id-Version": "transformer-sim",
                    "Language": code,
                    "MIME-Version": "1.0",
                    "Content-Type": "text/plain; charset=UTF-8",
                    "Content-Transfer-Encoding": "8bit",
                    "Plural-Forms": "nplurals=1; plural=0;" if code == "zh_CN" else "nplurals=2; plural=(n != 1);",
                }
            prev = old.get(msg.msgid)
            entry = polib.POEntry(msgid=msg.msgid, occurrences=[(w, "") for w in msg.where[:3]])
            if msg.plural is not None:
                entry.msgid_plural = msg.plural
                n = 1 if code == "zh_CN" else 2
                kept = prev.msgstr_plural if prev is not None and prev.msgid_plural else {}
                default = {0: msg.msgid, 1: msg.plural} if code == SOURCE_LANGUAGE else {}
                entry.msgstr_plural = {i: kept.get(i) or default.get(i, "") for i in range(n)}
            else:
                kept = prev.msgstr if prev is not None else ""
                entry.msgstr = kept or (msg.msgid if code == SOURCE_LANGUAGE else "")
            if prev is not None and "fuzzy" in prev.flags:
                entry.flags.append("fuzzy")
            po.append(entry)
        folder = LOCALE_DIR / code
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.po"):
            if area is None and stale.stem not in files:
                stale.unlink()
        for area, po in files.items():
            po.save(str(folder / f"{area}.po"))
        counts[code] = len(messages)
    return counts


def problems(area: str | None = None) -> list[str]:
    """Every message of the code (of one area, or all) that a catalog lacks, leaves untranslated or breaks."""
    messages = {k: m for k, m in collect().items() if area is None or m.area == area}
    out = []
    for code in LANGUAGES:
        have = _existing(code, area)
        for msgid, msg in messages.items():
            entry = have.get(msgid)
            where = msg.where[0]
            if entry is None:
                out.append(f"{code}: missing {msgid!r} ({where})")
                continue
            if "fuzzy" in entry.flags:
                out.append(f"{code}: fuzzy {msgid!r} ({where})")
            if msg.plural is not None:
                strs = [entry.msgstr_plural.get(i, "") for i in sorted(entry.msgstr_plural)] or [""]
                sources = [msg.msgid, msg.plural]
            else:
                strs, sources = [entry.msgstr], [msg.msgid]
            for s in strs:
                if not s:
                    out.append(f"{code}: untranslated {msgid!r} ({where})")
                elif not any(placeholders(s) == placeholders(src) for src in sources):
                    out.append(f"{code}: placeholders differ in {msgid!r}: {placeholders(s)} vs {placeholders(msgid)}")
        for msgid in set(have) - set(messages):
            out.append(f"{code}: {msgid!r} is in the catalog but no longer in the code")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.i18n_catalogs", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="list what is missing; change nothing")
    parser.add_argument("--area", choices=("ui", "plots", "cli", "lessons"), help="only this part's catalogs")
    args = parser.parse_args(argv)
    if args.check:
        found = problems(args.area)
        for line in found:
            print(line)
        print(f"{len(found)} problems")
        return 1 if found else 0
    for code, n in update(args.area).items():
        print(f"{code}: {n} messages in {LOCALE_DIR / code}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
