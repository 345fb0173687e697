"""Tensors -> plain statistics for a StepRecord (computed every `train.stats_every` steps)."""

from __future__ import annotations

import numpy as np

from simulator.config import TrainConfig
from simulator.records import StepRecord


def _norm(x: np.ndarray) -> float:
    return float(np.sqrt(np.dot(x.ravel().astype(np.float64), x.ravel().astype(np.float64))))


def step_statistics(record: StepRecord, model, params_before: np.ndarray | None, cfg: TrainConfig) -> None:
    """Fills the heavy fields of `record` from the model's current tensors."""
    grads = model.layout.views(model.grads)
    params = model.layout.views(model.params)
    before = model.layout.views(params_before) if params_before is not None else None
    for spec in model.layout:
        name = spec.name
        record.grad_norms[name] = _norm(grads[name])
        pn = _norm(params[name])
        record.param_norms[name] = pn
        if before is not None:
            record.update_ratios[name] = _norm(params[name] - before[name]) / pn if pn > 0 else 0.0
    acts = model.acts
    for site in model.activation_sites:
        x = acts[site].astype(np.float64, copy=False)
        record.activations[site] = (float(x.mean()), float(x.std()), float(np.abs(x).max()))
    layer = min(cfg.watch_layer, model.cfg.n_layer - 1)
    head = min(cfg.watch_head, model.cfg.n_head - 1)
    record.attention = acts[f"h{layer}.att"][0, head].astype(np.float32, copy=True)  # (T, T)
