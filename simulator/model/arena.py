"""Named arrays carved from one allocation, made once per (B, T) and reused every step."""

from __future__ import annotations

import numpy as np


class Arena:
    """One flat buffer holding several named arrays of given shapes."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], dtype):
        sizes = {k: int(np.prod(s)) for k, s in shapes.items()}
        self.flat = np.zeros(sum(sizes.values()), dtype=dtype)
        self.arrays: dict[str, np.ndarray] = {}
        offset = 0
        for name, shape in shapes.items():
            self.arrays[name] = self.flat[offset:offset + sizes[name]].reshape(shape)
            offset += sizes[name]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def __contains__(self, name: str) -> bool:
        return name in self.arrays

    @property
    def nbytes(self) -> int:
        return self.flat.nbytes


class GradientArena(Arena):
    """The activations' gradients: buffers in one allocation, looked up by activation name (names may share one).

    `zero()` starts a step: from then on every buffer reads as zero. Each is
    cleared at its first use in the step rather than all at once, so a buffer
    is still in cache when the op that fills it runs (one pass over the whole
    arena at the start of the backward cost a tiny step 2-3%), and a buffer
    that a kernel is about to write whole (`for_writing`) is not cleared at all.
    """

    def __init__(self, shapes: dict[str, tuple[int, ...]], dtype, buffer_of: dict[str, str]):
        super().__init__(shapes, dtype)
        self.buffer_of = buffer_of  # activation name -> buffer name
        self._cleared: set[str] = set()

    def zero(self) -> None:
        """Every gradient is zero from here (each buffer is cleared when first used)."""
        self._cleared.clear()

    def __getitem__(self, name: str) -> np.ndarray:
        key = self.buffer_of[name]
        buf = self.arrays[key]
        if key not in self._cleared:
            buf.fill(0.0)
            self._cleared.add(key)
        return buf

    def is_zero(self, name: str) -> bool:
        """Whether `name`'s gradient still reads as zero in this step: nothing has used its buffer yet."""
        return self.buffer_of[name] not in self._cleared

    def for_writing(self, name: str) -> np.ndarray:
        """The buffer of a gradient that is still zero, for a kernel that writes all of it (the same as adding)."""
        assert self.is_zero(name), name
        key = self.buffer_of[name]
        self._cleared.add(key)
        return self.arrays[key]

    def __contains__(self, name: str) -> bool:
        return name in self.buffer_of
