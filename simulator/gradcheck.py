"""The "Gradient check": the model's analytic gradient against central differences, on the current batch.

It works on a float64 twin of the session's model (same weights, dropout off),
so the session itself - weights, gradients, activations, random streams - is
left exactly as it was. Each sampled coordinate costs two forward passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.i18n import _
from simulator.model.gpt import GPT


class GradCheckError(ValueError):
    """A gradient check was asked for something the model does not have (one sentence)."""


@dataclass(frozen=True)
class GradCheckRow:
    """One checked coordinate: analytic vs numeric derivative of the loss."""

    tensor: str
    index: int  # flat index within the tensor
    analytic: float
    numeric: float
    rel_err: float  # |analytic - numeric| / max(1, |analytic|, |numeric|)


def relative_error(analytic: float, numeric: float) -> float:
    """|a - n| / max(1, |a|, |n|): relative for large derivatives, absolute for small ones."""
    return abs(analytic - numeric) / max(1.0, abs(analytic), abs(numeric))


def check_gradients(session, n_per_tensor: int = 2, tensors=None, eps: float = 1e-6, seed: int = 0
                    ) -> list[GradCheckRow]:
    """Analytic vs central-difference gradients of the session's current batch on sampled coordinates."""
    model = session.model
    if model.shape is None:
        raise GradCheckError(_("the model has no batch yet; take a step before checking gradients"))
    if n_per_tensor < 1:
        raise GradCheckError(_("n_per_tensor must be at least 1, got {n_per_tensor}").format(
                                 n_per_tensor=n_per_tensor))
    if not eps > 0:
        raise GradCheckError(_("eps must be > 0, got {eps}").format(eps=eps))
    names = [s.name for s in model.layout] if tensors is None else list(tensors)
    unknown = [n for n in names if n not in model.layout.by_name]
    if unknown:
        raise GradCheckError(_("the model has no tensor named {value!r}; it has {items}").format(
                                 value=unknown[0], items=', '.join(model.p)))

    twin = GPT(model.cfg, np.float64)  # on the CPU, whatever backend the session runs on (as_host: a device copy)
    twin.params[...] = model.bk.as_host(model.params)  # float64 copy: the session's own buffers are never written
    if model.frozen is not None:  # LoRA: the frozen base weights (the adapters are `params`)
        twin.frozen[...] = model.frozen
    if model.qbase is not None:  # QLoRA: the same NF4 codes (a constant of the loss), decoded in float64
        twin.qbase = model.qbase
    for name, buf in model.buffers.items():  # BatchNorm's running statistics, which eval mode normalizes with
        twin.buffers[name][...] = model.bk.as_host(buf)
    # dropout off, so the loss is a fixed function of the weights; otherwise the session's mode
    # (train: BatchNorm on batch statistics, as a training step differentiates it)
    twin.dropout = 0.0
    twin.training = getattr(session, "mode", "train") == "train"
    ids, targets = model.ids.copy(), model.targets.copy()
    lengths = model.kv_len.copy() if model.padded else None  # a padded batch: check the loss over real tokens
    twin.forward(ids, targets, lengths)
    twin.loss_and_dlogits()
    twin.backward()
    grads = twin.grads.copy()

    rng = np.random.default_rng(seed)
    rows = []
    for name in names:
        spec = model.layout.by_name[name]
        g = grads[spec.offset:spec.offset + spec.size]
        for i in _sample(g, n_per_tensor, rng):
            k = spec.offset + i
            old = twin.params[k]
            twin.params[k] = old + eps
            up = twin.forward(ids, targets, lengths)
            twin.params[k] = old - eps
            down = twin.forward(ids, targets, lengths)
            twin.params[k] = old
            numeric = (up - down) / (2 * eps)
            analytic = float(g[i])
            rows.append(GradCheckRow(name, int(i), analytic, numeric, relative_error(analytic, numeric)))
    return rows


def _sample(g: np.ndarray, n: int, rng: np.random.Generator) -> list[int]:
    """The largest-magnitude coordinate (the one most worth checking), then distinct random ones."""
    first = int(np.argmax(np.abs(g)))
    rest = rng.permutation(g.size)
    return [first] + [int(i) for i in rest if i != first][:n - 1]
