"""Plain-data records the engine emits: what the UI and the CLI read, never engine objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from simulator.early_stopping import EarlyStop
from simulator.i18n import _


@dataclass
class PhaseEvent:
    """One phase of a training step has run (`TrainingSession.step_into`)."""

    step: int  # the step this phase belongs to (0-based count of completed steps)
    index: int  # position of the phase within the step
    name: str  # e.g. "forward.block0.attn", "loss", "backward.block1.mlp", "clip", "update"
    kind: str  # "forward" | "loss" | "backward" | "clip" | "update"
    tensors: dict[str, np.ndarray]  # name -> the tensor the phase produced (read-only views; copy to keep)
    seconds: float  # wall time the phase took
    last: bool  # True when this phase completed the step


@dataclass
class NonFinite:
    """Where a run first went NaN/Inf: the step, the phase and the tensor (in phase order)."""

    step: int
    phase: str
    tensor: str

    def sentence(self) -> str:
        """One line a person reads."""
        return _("training diverged at step {step}: {tensor} became NaN/Inf during {phase}; the update was not "
                 "applied and the weights are those of step {last}").format(
            step=self.step + 1, tensor=self.tensor, phase=self.phase, last=self.step)


@dataclass
class StepRecord:
    """Everything a person can look at after one training step."""

    step: int  # steps completed, counting this one (1 after the first step)
    loss: float
    lr: float
    grad_norm: float  # global norm before clipping
    clipped: bool
    tokens: int  # tokens processed in this step
    seconds: float  # time the step's phases took (pauses between step_into calls are not counted)
    phase_seconds: dict[str, float]  # phase kind -> seconds ("forward", "loss", "backward", "clip", "update")
    val_loss: Optional[float] = None  # every `train.eval_every` steps
    # Heavy statistics, filled every `train.stats_every` steps, else empty:
    grad_norms: dict[str, float] = field(default_factory=dict)  # parameter tensor -> grad norm
    update_ratios: dict[str, float] = field(default_factory=dict)  # tensor -> |update| / |param|
    param_norms: dict[str, float] = field(default_factory=dict)
    activations: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # site -> (mean, std, max|x|)
    attention: Optional[np.ndarray] = None  # (T, T) probabilities of the watched layer/head, first sequence
    # Attention lab, heavy like the statistics above (simulator/observe.py attention_statistics):
    # (NH,) mean entropy in nats of each head's rows in the watched layer, from the real probabilities
    # (0: every query looks at one key, a saturated softmax; log T: uniform over T keys)
    attention_entropy: Optional[np.ndarray] = None
    # (NH,) share of each head's rows (with two or more keys) whose top probability exceeds 0.99: a softmax
    # that saturated, passing at most ~4% of its gradient on to q and k (observe.attention_saturation)
    attention_saturated: Optional[np.ndarray] = None
    # "h0" -> gradient norms of the query, key and value columns of the layer's qkv weight
    qkv_grad_norms: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    # KV-cache bytes per generated token: "model" (this config), "MHA", "GQA" (when the model is one), "MQA"
    kv_cache_bytes: dict[str, int] = field(default_factory=dict)
    nonfinite: Optional[NonFinite] = None  # set when this step diverged (the update was not applied)
    # set when this step's evaluation ran out of early-stopping patience (simulator/early_stopping.py): the
    # run stops here, and with restore_best the session's weights are already those of the best evaluation
    early_stop: Optional[EarlyStop] = None
    mode: str = "train"  # the session's mode during the step: "train", or "eval" (no dropout, BatchNorm on running)
    # Normalization and stability, heavy like the statistics above (definitions in simulator/observe.py):
    # gamma/beta tensor ("h0.norm1.w" is gamma, "h0.norm1.b" beta) -> (mean, std, min, max)
    norm_params: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    # BatchNorm site -> (average running_mean, average running_var) over its channels
    running_stats: dict[str, tuple[float, float]] = field(default_factory=dict)
    # "h0.attn", "h0.mlp" -> share of the sublayer's input that reaches its output along the skip path
    # (observe.identity_fractions: 1 for pre-norm, about 1/sqrt(2) for post-norm once branch and stream match)
    identity_fraction: dict[str, float] = field(default_factory=dict)
    # "h0" -> share of MLP activations within 0.01 of a bound (sigmoid 0 or 1, tanh -1 or 1); those two only
    saturated_fraction: dict[str, float] = field(default_factory=dict)
    # "h0" -> share of the MLP's ReLU units that are inactive on every row of the batch; relu only
    dead_fraction: dict[str, float] = field(default_factory=dict)
    # "h0" -> largest difference between any MLP hidden unit's weights (in, bias, out) and unit 0's:
    # exactly 0 while every unit is identical (the symmetric-init lesson)
    unit_spread: dict[str, float] = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")
