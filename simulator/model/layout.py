"""One flat buffer with named views: parameters, gradients and optimizer states share a layout."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# What a tensor is, so optimizers can treat groups differently (no weight decay
# on norms, biases and embeddings by default, as modern training does).
KINDS = ("matrix", "bias", "norm", "embedding")


@dataclass(frozen=True)
class ParamSpec:
    """One named tensor inside the flat buffer."""

    name: str
    shape: tuple[int, ...]
    offset: int
    kind: str

    @property
    def size(self) -> int:
        return math.prod(self.shape)


class ParamLayout:
    """Ordered named tensors laid end to end in one flat buffer."""

    def __init__(self, entries: list[tuple[str, tuple[int, ...], str]]):
        specs, offset = [], 0
        for name, shape, kind in entries:
            assert kind in KINDS, kind
            spec = ParamSpec(name, tuple(int(s) for s in shape), offset, kind)
            specs.append(spec)
            offset += spec.size
        self.specs: list[ParamSpec] = specs
        self.by_name: dict[str, ParamSpec] = {s.name: s for s in specs}
        self.size: int = offset

    def __iter__(self):
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def views(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Name -> a view into `flat` with the tensor's shape (no copy)."""
        assert flat.shape == (self.size,), (flat.shape, self.size)
        return {s.name: flat[s.offset:s.offset + s.size].reshape(s.shape) for s in self.specs}

    def mask(self, kinds: set[str], dtype=np.float32) -> np.ndarray:
        """A flat 0/1 array that is 1 on tensors of the given kinds (e.g. which weights decay)."""
        out = np.zeros(self.size, dtype=dtype)
        for s in self.specs:
            if s.kind in kinds:
                out[s.offset:s.offset + s.size] = 1
        return out
