"""Padded lines (`data.kind: lines`): each example is one line of the text, padded with <pad> to the window.

A batch then holds sequences of different lengths in one (B, T) array, which is what padding masks
are for: attention never looks at a pad key, and a pad position is no prediction, so it counts
neither in the loss nor in the gradient (GPT.set_lengths, fed by the lengths `sample_batch` returns).

A line "abc" becomes the example "\\nabc\\n": the model reads "\\nabc" and predicts "abc\\n", so a
newline starts and ends every example and the prompt "\\n" starts a line. A line longer than the
window gives a random window of itself, which fills its row unpadded. Blank lines are skipped.
The split is by lines: the last `val_fraction` of them are validation. The <pad> token is the
character U+0000 (NUL), which a text may not contain; its id is `pad_id`.
"""

from __future__ import annotations

import numpy as np

from simulator.data.dataset import TextDataset, split_sizes
from simulator.data.tokenizer import CharTokenizer, DataError
from simulator.i18n import _

PAD = "\x00"


class LinesDataset(TextDataset):
    """One example per line, padded with <pad>; `sample_batch` returns the real length of each row."""

    def __init__(self, text: str, val_fraction: float, source: str = "text"):  # builds its own splits, not super()'s
        if PAD in text:
            raise DataError(_("{source} contains the character U+0000, which data.kind lines uses as <pad>").format(
                                source=source))
        lines = [line for line in text.split("\n") if line.strip()]
        if not lines:
            raise DataError(_("{source} has no line that is not blank").format(source=source))
        self.source = source
        self.tokenizer = CharTokenizer.from_text(text + "\n" + PAD)
        self.pad_id = int(self.tokenizer.encode(PAD)[0])
        n_train, _val = split_sizes(len(lines), val_fraction)
        self._index: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._chars: dict[str, int] = {}
        for name, part in (("train", lines[:n_train]), ("val", lines[n_train:])):
            examples = ["\n" + line + "\n" for line in part]
            sizes = np.array([len(e) for e in examples], dtype=np.int64)
            starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
            ids = self.tokenizer.encode("".join(examples))
            setattr(self, f"{name}_ids", ids)  # the examples end to end, as TextDataset keeps a split
            self._chars[name] = len(ids)
            self._index[name] = (starts, sizes)

    def lines(self, split: str) -> int:
        """Number of examples (lines) in split 'train' or 'val'."""
        return len(self._index[split][0])

    def check_fits(self, seq_len: int) -> None:
        """DataError unless both splits hold at least one line (any line fits: a long one gives windows)."""
        for name in ("train", "val"):
            if self.lines(name) == 0:
                what = (_("the validation split of {source} has no line (use more lines of text or a different "
                          "data.val_fraction)") if name == "val" else
                        _("the training split of {source} has no line (use more lines of text or a different "
                          "data.val_fraction)"))
                raise DataError(what.format(source=self.source))


    def sample_batch(self, split: str, rng: np.random.Generator, x_out: np.ndarray, y_out: np.ndarray) -> np.ndarray:
        """Fill x_out, y_out (B, T) int32 with random lines of a split, padded; returns real lengths (B,) int32."""
        # x_out, y_out are (B, T) int32; positions past a row's length hold pad_id in both
        if x_out.ndim != 2 or x_out.shape != y_out.shape:
            raise ValueError(f"x_out and y_out must both be (B, T); got {x_out.shape} and {y_out.shape}")
        ids = self.split(split)
        starts, sizes = self._index[split]
        B, T = x_out.shape
        if len(starts) == 0:
            self.check_fits(T)
        picks = rng.integers(0, len(starts), size=B)
        lengths = np.empty(B, dtype=np.int32)
        x_out.fill(self.pad_id)
        y_out.fill(self.pad_id)
        for b in range(B):
            o, n = int(starts[picks[b]]), int(sizes[picks[b]])  # n tokens: "\n" + line + "\n"
            if n - 1 <= T:  # the whole line: n - 1 inputs, each with its next token as target
                m = n - 1
            else:  # a long line: a random window of T + 1 of its tokens
                o += int(rng.integers(0, n - T))
                m = T
            x_out[b, :m] = ids[o:o + m]
            y_out[b, :m] = ids[o + 1:o + m + 1]
            lengths[b] = m
        return lengths
