"""Named arrays carved from one allocation, made once per (B, T) and reused every step."""

from __future__ import annotations

import numpy as np


class Arena:
    """One flat buffer holding several named arrays of given shapes.

    `zeros(n, dtype)` allocates the flat buffer: numpy's by default, a backend's for device arrays (whose
    slices and reshapes are views too).
    """

    def __init__(self, shapes: dict[str, tuple[int, ...]], dtype, zeros=np.zeros):
        sizes = {k: int(np.prod(s)) for k, s in shapes.items()}
        self.flat = zeros(sum(sizes.values()), dtype)
        self.arrays: dict[str, np.ndarray] = {}
        self.offsets: dict[str, int] = {}  # where each array starts in `flat` (device reductions over several)
        offset = 0
        for name, shape in shapes.items():
            self.arrays[name] = self.flat[offset:offset + sizes[name]].reshape(shape)
            self.offsets[name] = offset
            offset += sizes[name]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def __contains__(self, name: str) -> bool:
        return name in self.arrays

    @property
    def nbytes(self) -> int:
        return self.flat.nbytes


class GradientArena(Arena):
    """The activations' gradients, looked up by activation name, in one allocation.

    Two names can be one gradient (`gradient_of`: `x = x + f` keeps the
    stream's), and gradients that are never alive at once can share a buffer
    (`buffer_of`: an op's inner gradients, one buffer for every layer).
    `zero()` starts a step: from then on every gradient reads as zero. Its
    buffer is cleared at the gradient's first use, so it is in cache for the op
    that fills it (one pass over a whole arena at the start of the backward
    cost a tiny step 2-3%), and not at all for a kernel that writes it whole
    (`for_writing`).
    """

    def __init__(self, shapes: dict[str, tuple[int, ...]], dtype, gradient_of: dict[str, str],
                 buffer_of: dict[str, str], zeros=np.zeros, fill=np.ndarray.fill):
        super().__init__(shapes, dtype, zeros)  # shapes by buffer
        self._fill = fill  # fill(array, value): a backend's, for device arrays
        self.gradient_of = gradient_of  # activation name -> gradient
        self.buffer_of = buffer_of  # gradient -> buffer
        self._started: set[str] = set()  # the gradients used in this step

    def zero(self) -> None:
        """Every gradient is zero from here (its buffer is cleared when the gradient is first used)."""
        self._started.clear()

    def __getitem__(self, name: str) -> np.ndarray:
        grad = self.gradient_of[name]
        buf = self.arrays[self.buffer_of[grad]]
        if grad not in self._started:
            self._fill(buf, 0.0)
            self._started.add(grad)
        return buf

    def is_zero(self, name: str) -> bool:
        """Whether `name`'s gradient still reads as zero in this step: nothing has used it yet."""
        return self.gradient_of[name] not in self._started

    def for_writing(self, name: str) -> np.ndarray:
        """The buffer of a gradient that is still zero, for a kernel that writes all of it (the same as adding)."""
        assert self.is_zero(name), name
        grad = self.gradient_of[name]
        self._started.add(grad)
        return self.arrays[self.buffer_of[grad]]

    def __contains__(self, name: str) -> bool:
        return name in self.gradient_of
