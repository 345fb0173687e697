"""Helpers shared by the model tests: the error measure, a randomised model, one forward + backward."""

import numpy as np

from simulator.config import ModelConfig
from simulator.model.gpt import GPT


def rel_err(a, n) -> float:
    """max |a - n| / max(1, |a|, |n|): relative for large values, absolute for small ones."""
    a, n = np.asarray(a, np.float64), np.asarray(n, np.float64)
    return float(np.max(np.abs(a - n) / np.maximum(1.0, np.maximum(np.abs(a), np.abs(n))), initial=0.0))


def random_model(cfg: ModelConfig, batch: tuple[int, int], dtype=np.float64, seed=0):
    """A model with large random weights (gains near 1) and a random batch: (model, ids, targets)."""
    model = GPT(cfg, dtype)
    rng = np.random.default_rng(seed)
    for spec in model.layout:
        w = rng.normal(0.0, 0.4, spec.shape)
        model.p[spec.name][...] = 1.0 + w if spec.kind == "norm" and spec.name.endswith(".w") else w
    ids = rng.integers(0, cfg.vocab_size, batch).astype(np.int32)
    targets = rng.integers(0, cfg.vocab_size, batch).astype(np.int32)
    return model, ids, targets


def analytic(model, ids, targets, lengths=None, before=None):
    """(loss, logits copy, grads copy) of one forward + backward; `before` runs first (e.g. resets an rng)."""
    if before:
        before()
    model.forward(ids, targets, lengths)
    loss = model.loss_and_dlogits()
    model.backward()
    return loss, model.logits().copy(), {k: v.copy() for k, v in model.g.items()}


def numeric_grad_at(loss, x, indices, eps=1e-6):
    """Central differences of the scalar loss() with respect to the entries `indices` of x's flat view (in place)."""
    flat = x.reshape(-1)
    assert np.shares_memory(flat, x)
    out = []
    for i in indices:
        old = flat[i]
        flat[i] = old + eps
        up = loss()
        flat[i] = old - eps
        down = loss()
        flat[i] = old
        out.append((up - down) / (2 * eps))
    return np.array(out)


def numeric_grad(loss, x, eps=1e-6):
    """Central differences of the scalar loss() with respect to every entry of x (perturbed in place)."""
    return numeric_grad_at(loss, x, range(x.size), eps).reshape(x.shape)
