"""A tokenized text split into train and validation ids, and random (B, T) windows drawn from it."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from simulator.config import DataConfig
from simulator.data.corpus import builtin_corpus
from simulator.data.tokenizer import CharTokenizer, DataError
from simulator.data.tokenizers import build_tokenizer
from simulator.i18n import _

SPLITS = ("train", "val")


def _file_problem(path: Path, problem: str) -> DataError:
    """A DataError for a data file whose `problem` attribute reads without the 'data file' prefix."""
    err = DataError(_("data file {problem}").format(problem=problem))
    err.problem = problem
    return err


def read_text_file(path) -> str:
    """The text of a UTF-8 file; DataError says if it is missing, a folder, empty or not UTF-8 (and where)."""
    path = Path(path)
    shown = f"'{path}'"
    if not path.exists():
        raise _file_problem(path, _("{file} does not exist").format(file=shown))
    if path.is_dir():
        raise _file_problem(path, _("{file} is a folder, not a text file").format(file=shown))
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise _file_problem(path, _("{file} cannot be read: {reason}").format(
            file=shown, reason=e.strerror or e)) from None

    if not raw:
        raise _file_problem(path, _("{file} is empty").format(file=shown))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise _file_problem(path, _("{file} is not UTF-8 text: byte 0x{byte:02x} at byte offset {offset} (line "
                                    "{line}) cannot be decoded (save the file as UTF-8)").format(
            file=shown, byte=raw[e.start], offset=e.start, line=line)) from None

    # a byte-order mark is an encoding marker, not a character of the text
    return text.removeprefix("\ufeff")


def split_sizes(n: int, val_fraction: float) -> tuple[int, int]:
    """(train, val) token counts: the last `val_fraction` of the text is validation."""
    n_val = int(n * val_fraction)
    return n - n_val, n_val


def load_text(cfg: DataConfig) -> tuple[str, str]:
    """The raw text a data config names, and a short description of where it came from."""
    if cfg.kind == "builtin":
        return builtin_corpus(), "built-in corpus"
    if cfg.kind == "world":
        from simulator.data.world import world_corpus  # here: generating it costs a second, only when asked
        return world_corpus(), "invented-world corpus"
    if cfg.kind == "text_file":
        if not cfg.path:
            raise DataError(_("data.kind is text_file but data.path is not set"))
        return read_text_file(os.path.expanduser(cfg.path)), str(cfg.path)
    raise DataError(_("data.kind '{kind}' is not a known kind of data").format(kind=cfg.kind))


class TokenizerOnly:
    """A run's saved tokenizer without its text (a run folder copied to another machine): enough to sample, not
    to train or evaluate."""

    def __init__(self, tokenizer, source: str):
        self.tokenizer = tokenizer
        self.source = source

    @property
    def vocab_size(self) -> int:
        """Number of tokens of the run's tokenizer."""
        return self.tokenizer.vocab_size

    def check_fits(self, seq_len: int) -> None:
        """Nothing to check: there are no splits."""

    def split(self, name: str) -> np.ndarray:
        raise DataError(_("{source} is not at hand: a session from this checkpoint can sample, not train").format(
                            source=self.source))

    sample_batch = unigram_entropy = split


class TextDataset:
    """Token ids of one text, split into train and validation, with a character or sub-word tokenizer.

    char: the alphabet is the whole text's, and the ids are split. bpe, wordpiece: the text is split by
    characters first and the tokenizer is learned on the training part only, so the validation loss is
    measured on text the tokenizer has not seen either.
    """

    def __init__(self, text: str, val_fraction: float, source: str = "text", tokenizer: str = "char",
                 vocab_size: int = 512):
        if not text:
            raise DataError(_("{source} has no text").format(source=source))
        self.source = source
        if tokenizer == "char":
            self.tokenizer = CharTokenizer.from_text(text)
            ids = self.tokenizer.encode(text)
            n_train, _val = split_sizes(len(ids), val_fraction)
            self.train_ids = ids[:n_train]  # (N_train,) int32
            self.val_ids = ids[n_train:]  # (N_val,) int32
            self._chars = {"train": n_train, "val": len(ids) - n_train}
        else:
            n_train, _val = split_sizes(len(text), val_fraction)
            self.tokenizer = build_tokenizer(tokenizer, text[:n_train], vocab_size)
            self.train_ids = self.tokenizer.encode(text[:n_train])  # (N_train,) int32
            self.val_ids = self.tokenizer.encode(text[n_train:])  # (N_val,) int32
            self._chars = {"train": n_train, "val": len(text) - n_train}

    def chars_per_token(self, split: str = "val") -> float:
        """Characters of a split's text per token: a loss per token divided by this is a loss per character."""
        n = len(self.split(split))
        return self._chars[split] / n if n else float("nan")

    @property
    def vocab_size(self) -> int:
        """Number of tokens of the tokenizer (distinct characters, for char)."""
        return self.tokenizer.vocab_size

    def split(self, name: str) -> np.ndarray:
        """The ids of split 'train' or 'val'."""
        if name == "train":
            return self.train_ids
        if name == "val":
            return self.val_ids
        raise ValueError(f"split must be one of {SPLITS}, got {name!r}")

    def unigram_entropy(self) -> float:
        """Entropy in nats of the character frequencies of the train split (the loss of a no-context model)."""
        counts = np.bincount(self.train_ids, minlength=self.vocab_size)
        p = counts[counts > 0] / counts.sum()
        return float(-(p * np.log(p)).sum())

    def check_fits(self, seq_len: int) -> None:
        """DataError unless both splits hold at least one window of seq_len + 1 tokens."""
        for name in SPLITS:
            self._check_split(name, seq_len)

    def _check_split(self, name: str, seq_len: int) -> None:
        n = len(self.split(name))
        if n < seq_len + 1:
            what = (_("the validation split of {source} has {n} tokens, fewer than model.seq_len + 1 = {need} (use "
                      "more text, a different data.val_fraction or a smaller model.seq_len)") if name == "val" else
                    _("the training split of {source} has {n} tokens, fewer than model.seq_len + 1 = {need} (use "
                      "more text, a different data.val_fraction or a smaller model.seq_len)"))
            raise DataError(what.format(source=self.source, n=n, need=seq_len + 1))


    def sample_batch(self, split: str, rng: np.random.Generator, x_out: np.ndarray, y_out: np.ndarray) -> None:
        """Fill x_out and y_out (B, T) int32 with random windows of a split; y is x shifted by one token."""
        # x_out, y_out are (B, T) int32
        if x_out.ndim != 2 or x_out.shape != y_out.shape:
            raise ValueError(f"x_out and y_out must both be (B, T); got {x_out.shape} and {y_out.shape}")
        if x_out.dtype != np.int32 or y_out.dtype != np.int32:
            raise ValueError("x_out and y_out must be int32")
        ids = self.split(split)
        B, T = x_out.shape
        self._check_split(split, T)
        # a window needs T inputs and the one token after them: starts run over [0, n - T)
        offsets = rng.integers(0, len(ids) - T, size=B)  # (B,)
        for b in range(B):
            o = offsets[b]
            x_out[b] = ids[o:o + T]
            y_out[b] = ids[o + 1:o + T + 1]


def load_dataset(cfg: DataConfig) -> TextDataset:
    """The dataset a data config names (built-in corpus or a UTF-8 text file; lines: either, padded per line)."""
    if cfg.kind == "lines":
        if cfg.tokenizer != "char":
            raise DataError(_("data.tokenizer {tokenizer} does not work with data.kind lines yet (its <pad> is a "
                              "character); use data.tokenizer char or data.kind builtin / text_file").format(
                                tokenizer=cfg.tokenizer))
        from simulator.data.lines import LinesDataset  # here: lines.py builds on this module
        text, source = load_text(replace(cfg, kind="text_file" if cfg.path else "builtin"))
        return LinesDataset(text, cfg.val_fraction, f"{source} (one example per line)")
    text, source = load_text(cfg)
    return TextDataset(text, cfg.val_fraction, source, cfg.tokenizer, cfg.vocab_size)
