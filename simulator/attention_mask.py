"""Which (query, key) pairs an attention mask lets through, as an explicit (T, T) boolean matrix.

The kernels never form it (they compute each row's span); the numpy reference, the display
diagnostics, the tests and the long-context lesson use it as the plain statement of the mask:
causal: key j <= query i; local: causal and i - j < window, except that the first n_global
positions are global (Longformer): a global query sees every earlier key, every query sees an
earlier global key.
"""

from __future__ import annotations

import numpy as np


def key_mask(T: int, mask: str = "causal", window: int = 0, n_global: int = 0) -> np.ndarray:
    """(T, T) bool, [query, key]: True where the query attends the key (padding not included)."""
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    if mask == "none":
        return np.ones((T, T), bool)
    visible = j <= i
    if mask == "local":
        visible &= (i - j < window) | (j < n_global) | (i < n_global)
    elif mask != "causal":
        raise ValueError(f"unknown attention mask {mask!r}")
    return visible


def check_window(causal, window, n_global):
    """ValueError unless (window, n_global) is a mask the kernels compute: a window is causal, n_global >= 0."""
    if window < 0 or n_global < 0:
        raise ValueError(f"window and n_global must be >= 0, got {window} and {n_global}")
    if window > 0 and not causal:
        raise ValueError("local attention (window > 0) is causal: pass causal=True")
    if n_global > 0 and window == 0:
        raise ValueError("n_global tokens need a window (without one every key is visible already)")
