"""Character tokenizer: one id per distinct character of the training text, in sorted order."""

from __future__ import annotations

import json
from collections.abc import Iterable

import numpy as np

from simulator.i18n import _


class DataError(Exception):
    """A person's data problem (a bad file, an unknown character, too little text); one-line message."""


def _describe_char(ch: str) -> str:
    """A character as a person can read it in a one-line message, e.g. 'Q' (U+0051)."""
    return f"{ch!r} (U+{ord(ch):04X})"


class CharTokenizer:
    """Maps each character of a fixed, sorted alphabet to its index."""

    kind = "char"

    def __init__(self, chars: Iterable[str]):
        chars = tuple(chars)
        if any(len(c) != 1 for c in chars):
            raise ValueError("CharTokenizer takes single characters")
        if list(chars) != sorted(set(chars)):
            raise ValueError("CharTokenizer characters must be sorted and distinct")
        if not chars:
            raise DataError(_("the text has no characters, so there is no vocabulary to build"))
        self.chars = chars
        # code points in id order: sorted strings of one character sort by code point
        self._codes = np.array([ord(c) for c in chars], dtype=np.uint32)

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The tokenizer whose vocabulary is the sorted set of characters of `text`."""
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        """Number of distinct characters (ids run from 0 to vocab_size - 1)."""
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """Ids of the characters of `text` as an int32 array; DataError names the first unknown character."""
        # UTF-32 gives one fixed-width code point per character, so the lookup is one vectorised search
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        ids = np.searchsorted(self._codes, codes)
        ids = np.minimum(ids, len(self._codes) - 1)
        known = self._codes[ids] == codes
        if not known.all():
            pos = int(np.argmin(known))
            raise DataError(_("character {describe_char} at position {pos} is not in the vocabulary of {vocab_size} "
                              "characters").format(
                                describe_char=_describe_char(text[pos]), pos=pos, vocab_size=self.vocab_size))
        return ids.astype(np.int32)

    def decode(self, ids: np.ndarray | Iterable[int]) -> str:
        """The text of a sequence of ids."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            bad = int(ids[(ids < 0) | (ids >= self.vocab_size)][0])
            raise DataError(_("token id {bad} is outside the vocabulary of {vocab_size} characters").format(
                                bad=bad, vocab_size=self.vocab_size))
        return self._codes[ids].astype("<u4").tobytes().decode("utf-32-le")

    def to_json(self) -> str:
        """JSON text that `from_json` turns back into an equal tokenizer (for checkpoints)."""
        return json.dumps({"type": "char", "chars": "".join(self.chars)}, ensure_ascii=True)

    @classmethod
    def from_json(cls, text: str) -> CharTokenizer:
        """The tokenizer saved by `to_json`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(_("tokenizer record is not valid JSON: {msg} at offset {pos}").format(
                                msg=e.msg, pos=e.pos)) from None
        if not isinstance(data, dict) or data.get("type") != "char" or not isinstance(data.get("chars"), str):
            raise DataError(_("tokenizer record is not a character tokenizer (expected type 'char' and a 'chars' "
                              "string)"))
        chars = data["chars"]
        if list(chars) != sorted(set(chars)):
            raise DataError(_("tokenizer record is damaged: its characters are not sorted and distinct"))
        return cls(chars)

    def __eq__(self, other) -> bool:
        return isinstance(other, CharTokenizer) and self.chars == other.chars

    def __hash__(self) -> int:
        return hash(self.chars)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"
