"""Which tokenizer a data config asks for, trained once per text, and tokenizers read back from JSON."""

from __future__ import annotations

import json
from functools import lru_cache

from simulator.config import TOKENIZERS
from simulator.data.bpe import N_BYTES, BPETokenizer
from simulator.data.tokenizer import CharTokenizer, DataError
from simulator.data.wordpiece import WordPieceTokenizer, base_size
from simulator.i18n import _


def min_vocab_size(kind: str, text: str) -> int:
    """The smallest data.vocab_size a sub-word tokenizer of `kind` can have on `text` (its base alphabet)."""
    return N_BYTES if kind == "bpe" else base_size(text)


@lru_cache(maxsize=8)
def _trained(kind: str, vocab_size: int, text: str):
    # a preset check, the dataset and a checkpoint load all ask for the same tokenizer: train it once
    return BPETokenizer.train(text, vocab_size) if kind == "bpe" else WordPieceTokenizer.train(text, vocab_size)


def build_tokenizer(kind: str, text: str, vocab_size: int):
    """The tokenizer of `kind` for `text`: char takes the sorted characters, bpe and wordpiece are trained
    (deterministically, no seed needed) with at most `vocab_size` tokens; a trained one is cached."""
    if kind == "char":
        return CharTokenizer.from_text(text)
    if kind not in TOKENIZERS:
        raise DataError(_("data.tokenizer '{kind}' is not one of {items}").format(
                            kind=kind, items=', '.join(TOKENIZERS)))
    return _trained(kind, vocab_size, text)


def tokenizer_from_json(text: str):
    """A tokenizer saved by any tokenizer's `to_json` (a checkpoint's 'tokenizer' entry)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(_("tokenizer record is not valid JSON: {msg} at offset {pos}").format(
            msg=e.msg, pos=e.pos)) from None

    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "bpe":
        return BPETokenizer.from_record(data)
    if kind == "wordpiece":
        return WordPieceTokenizer.from_record(data)
    return CharTokenizer.from_json(text)
