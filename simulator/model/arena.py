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
